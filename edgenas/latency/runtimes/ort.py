"""ONNX Runtime (CPU execution provider): models exported with ``torch.onnx.export``."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from edgenas.latency.runtimes import register_runtime
from edgenas.latency.runtimes.base import DeviceRuntime, ExportItem, file_stem

OPSET = 18


def export_onnx(module: object, input_shape: tuple[int, ...], path: Path) -> Path:
    """Export an eval-mode module with a batch-1 float32 input named ``x`` (output ``y``).

    Uses the TorchScript-based exporter (about 0.05 s per small model), falling back to the dynamo
    exporter when a module needs it; both produce standard ONNX for onnxruntime."""
    import torch

    module = module.eval()  # type: ignore[attr-defined]
    x = torch.randn(1, *input_shape)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                              opset_version=17, do_constant_folding=True)
        except Exception:
            torch.onnx.export(module, (x,), str(path), dynamo=True, input_names=["x"], output_names=["y"],
                              opset_version=OPSET, external_data=False)
    return path


@register_runtime
class OrtRuntime(DeviceRuntime):
    name = "onnxruntime"
    suffix = ".onnx"

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def export_many(
        self, items: Sequence[ExportItem], out_dir: Path, progress: Callable[[int], None] | None = None
    ) -> dict[str, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for item in items:
            paths[item.key] = export_onnx(item.module, item.input_shape, out_dir / (file_stem(item.key) + self.suffix))
            if progress:
                progress(1)
        return paths
