"""LiteRT (TFLite) with the XNNPACK CPU delegate: models converted by litert-torch (no TensorFlow).

Conversion costs about a second per call, so ``export_many`` converts up to ``batch`` units at once as
parallel branches of one module and splits the result per branch (see ``tflite_split``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgenas.latency.runtimes import register_runtime
from edgenas.latency.runtimes.base import DeviceRuntime, ExportItem, file_stem
from edgenas.latency.runtimes.tflite_split import split_branches

MAX_BRANCH_ELEMS = 40_000_000  # keep a batch's total input size moderate (conversion memory)


@contextlib.contextmanager
def quiet() -> Any:
    """Silence litert-torch's progress lines and absl/TF logging during conversion."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        for name in ("absl", "torch", "litert_torch", "jax"):
            logging.getLogger(name).setLevel(logging.ERROR)
        yield


def convert_tflite(module: Any, input_shapes: Sequence[tuple[int, ...]]) -> bytes:
    """Convert an eval-mode module taking batch-1 float32 inputs to a .tflite flatbuffer."""
    import litert_torch
    import torch

    args = tuple(torch.randn(1, *s) for s in input_shapes)
    with quiet(), torch.no_grad():
        edge = litert_torch.convert(module.eval(), args)
        return bytes(edge.model_content())


class Branches:
    """K independent modules run side by side: forward(x_0..x_{K-1}) -> (y_0..y_{K-1})."""

    def __new__(cls, modules: Sequence[Any]) -> Any:
        import torch.nn as nn

        class _Branches(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.branches = nn.ModuleList(modules)

            def forward(self, *xs: Any) -> tuple[Any, ...]:
                return tuple(m(x) for m, x in zip(self.branches, xs))

        return _Branches()


@register_runtime
class LiteRTRuntime(DeviceRuntime):
    name = "litert"
    suffix = ".tflite"

    def __init__(self, threads: int = 1, options: dict[str, Any] | None = None, batch: int = 32) -> None:
        super().__init__(threads, options)
        self.batch = int((options or {}).get("convert_batch", batch))

    def version(self) -> str:
        import ai_edge_litert

        return "ai-edge-litert " + getattr(ai_edge_litert, "__version__", "unknown")

    def export_many(
        self, items: Sequence[ExportItem], out_dir: Path, progress: Callable[[int], None] | None = None
    ) -> dict[str, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for group in self._groups(items):
            try:
                blobs = split_branches(
                    convert_tflite(Branches([it.module for it in group]), [it.input_shape for it in group]),
                    len(group),
                )
            except Exception:
                blobs = [convert_tflite(it.module, [it.input_shape]) for it in group]
            for it, blob in zip(group, blobs):
                p = out_dir / (file_stem(it.key) + self.suffix)
                p.write_bytes(blob)
                paths[it.key] = p
            if progress:
                progress(len(group))
        return paths

    def _groups(self, items: Sequence[ExportItem]) -> list[list[ExportItem]]:
        groups: list[list[ExportItem]] = []
        cur: list[ExportItem] = []
        size = 0
        for it in items:
            n = 1
            for d in it.input_shape:
                n *= d
            if cur and (len(cur) >= self.batch or size + n > MAX_BRANCH_ELEMS):
                groups.append(cur)
                cur, size = [], 0
            cur.append(it)
            size += n
        if cur:
            groups.append(cur)
        return groups
