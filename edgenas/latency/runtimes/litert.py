"""LiteRT (TFLite) on the CPU: models converted by litert-torch (no TensorFlow), run with the XNNPACK
delegate (the interpreter's default) or, with ``options["delegate"] == "none"`` (a device spec's
``[runtime_options] delegate = "none"``), on LiteRT's built-in kernels only. Which one is faster depends
on the op: this wheel's XNNPACK runs 3x3 and 5x5 depthwise convolutions 3.5-5x faster than the built-in
kernels but 7x7 ones up to 3x slower (benchmarks/results/litert_kernels.md), so the configuration is
part of the device and every timing of the device (units, networks, validation, kits) uses it.

Conversion costs about a second per call, so ``export_many`` converts up to ``batch`` units at once as
parallel branches of one module and splits the result per branch (see ``tflite_split``).

With ``options["precision"] == "int8"`` (a device spec's ``precision = "int8"``) every model is then
made full-integer by the exporter's own quantizer, :func:`edgenas.exporters.convert.quantize_int8`
(ai-edge-quantizer ``static_wi8_ai8``, int8 input and output, then ``compact_tflite``), so a table
times what ``edgenas export --formats tflite-int8`` ships. Each branch is quantized after the split:
the quantizer takes one input per model, and quantizing the split branches one by one costs about the
same as one calibration of the K-input model (measured: 1.3 s vs 1.0 s for 16 mbv3 units).

Calibration data (:func:`representative`): ``CALIBRATION_SAMPLES`` seeded standard-normal tensors of
the model's input shape, for units and whole networks alike. For a network they stand for
standardised images (edgenas datasets are standardised per channel); for a unit, for the intermediate
activation it receives inside a network. What an int8 kernel costs depends on shapes, ops and which
kernel the runtime picks, not on the values or on the scales calibration yields: timing the 22 int8
units of an mbv3 r144 network calibrated four ways (the network prefix's real activations on the
seeded images, N(0, 1), 0.01 * N(0, 1), ReLU(N(0, 1))) gave unit sums of 43.4, 43.7, 43.4 and 42.9 ms
(thread CPU time), against 42.8 ms for the int8 network, and per-unit differences at noise level.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgenas.latency.runtimes import register_runtime
from edgenas.latency.runtimes.base import DeviceRuntime, ExportItem, file_stem
from edgenas.latency.runtimes.tflite_split import split_branches

MAX_BRANCH_ELEMS = 40_000_000  # keep a batch's total input size moderate (conversion memory)
PRECISIONS = ("fp32", "int8")
CALIBRATION_SAMPLES = 8
CALIBRATION_SEED = 0


def representative(input_shape: Sequence[int], n: int = CALIBRATION_SAMPLES, seed: int = CALIBRATION_SEED) -> Any:
    """Seeded calibration inputs (n, C, H, W), float32 standard normal (see the module docstring)."""
    import numpy as np

    return np.random.default_rng(seed).standard_normal((n, *input_shape)).astype(np.float32)


def quantize(fp32_model: bytes, input_shape: Sequence[int]) -> bytes:
    """The full-integer (int8 I/O) model the int8 exporter would make from ``fp32_model``."""
    from edgenas.exporters.convert import quantize_int8

    return quantize_int8(fp32_model, representative(input_shape), int8_io=True)


def quiet() -> Any:
    """Capture litert-torch's progress lines, torchao load failures and absl/TF/pytree logs, at the
    file-descriptor level (C++ logs too): the exporters' ``quiet``."""
    from edgenas.exporters.convert import quiet as capture

    return capture()


def convert_tflite(module: Any, input_shapes: Sequence[tuple[int, ...]]) -> bytes:
    """Convert an eval-mode module taking batch-1 float32 inputs to a .tflite flatbuffer."""
    import torch

    from edgenas.exporters.convert import fold_batchnorm

    with quiet():
        import litert_torch  # its import prints torchao load failures and a pytree warning
    args = tuple(torch.randn(1, *s) for s in input_shapes)
    with quiet(), torch.no_grad():
        edge = litert_torch.convert(fold_batchnorm(module), args)
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
    requires = ("ai_edge_litert", "litert_torch", "ai_edge_quantizer")

    def __init__(self, threads: int = 1, options: dict[str, Any] | None = None, batch: int = 32) -> None:
        super().__init__(threads, options)
        self.batch = int((options or {}).get("convert_batch", batch))
        self.precision = str((options or {}).get("precision", "fp32"))
        if self.precision not in PRECISIONS:
            raise ValueError(f"litert precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        from edgenas.devices.runner import delegate_name

        self.delegate = delegate_name(options)  # recorded; checked where it is timed (runner.litert_delegate)

    def version(self) -> str:
        import ai_edge_litert

        v = "ai-edge-litert " + getattr(ai_edge_litert, "__version__", "unknown")
        if self.precision == "int8":
            from importlib.metadata import version

            v += f", ai-edge-quantizer {version('ai-edge-quantizer')} (static_wi8_ai8, int8 I/O)"
        return v

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "precision": self.precision, "delegate": self.delegate}

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
            if self.precision == "int8":
                blobs = [quantize(blob, it.input_shape) for it, blob in zip(group, blobs)]
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
