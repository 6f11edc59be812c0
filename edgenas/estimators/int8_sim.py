"""Simulated int8 accuracy: how a candidate would score once post-training quantized, in milliseconds
instead of a litert-torch conversion and a quantizer run per candidate (tens of seconds each).

The simulation follows what the ``tflite-int8`` exporter builds (ai-edge-quantizer's static recipe,
global min/max calibration, :func:`edgenas.exporters.convert.quantize_int8`):

* BatchNorm folded into the convolutions first (:func:`edgenas.exporters.convert.fold_batchnorm`, as
  the converter does), so the quantized weights are the file's;
* every Conv2d / Linear weight rounded per output channel, symmetric int8 (-127..127, scale
  ``max |w| / 127``);
* the output of every module rounded per tensor, asymmetric int8 (-128..127) over its global min/max
  on the calibration examples, as is the input: leaf modules (convolutions, activations, poolings,
  linear) and containers too, whose ``forward`` may end in an op of its own (a residual addition, a
  squeeze-excite multiplication); where a container just returns its last child's output, rounding
  it again on the same range changes nothing;
  a convolution or linear layer followed by ReLU / ReLU6 is one op in the file (fused activation), so
  only the activation's output is rounded.

Ops in the middle of a ``forward`` (not at its end) stay float here, and int32 biases and the kernels'
fixed-point rescaling are not modelled. The score is the
top-1 accuracy of this fake-quantized model (:func:`int8_top1`). Used by the ``train`` and
``supernet`` estimators with ``precision = "int8"``, which the ``accuracy_int8`` search objective sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import pairwise
from typing import Any

import torch
import torch.nn as nn

PRECISIONS = ("fp32", "int8")
"""What an accuracy estimator scores: the float model, or its simulated int8 quantization."""
SKIP = (nn.Identity, nn.Flatten, nn.Dropout)
"""Modules that do not compute (no rounding after them: the converter makes no op of them)."""


def check_precision(value: Any, who: str) -> str:
    """``value`` if it is one of :data:`PRECISIONS`, else a one-line EdgenasError."""
    from edgenas.errors import EdgenasError

    if value not in PRECISIONS:
        raise EdgenasError(f"{who}: precision must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return str(value)


class _Range:
    """A forward hook: records the global min/max of a module's output, then (``active``) rounds it."""

    def __init__(self) -> None:
        self.lo = float("inf")
        self.hi = float("-inf")
        self.active = False

    def observe(self, t: torch.Tensor) -> None:
        self.lo = min(self.lo, float(t.min()))
        self.hi = max(self.hi, float(t.max()))

    def round(self, t: torch.Tensor) -> torch.Tensor:
        a, b = min(self.lo, 0.0), max(self.hi, 0.0)
        if not b > a:
            return t
        scale = (b - a) / 255.0
        zero = int(min(127, max(-128, round(-128 - a / scale))))
        return torch.fake_quantize_per_tensor_affine(t, scale, zero, -128, 127)

    def __call__(self, module: nn.Module, inputs: Any, out: Any) -> Any:
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            return out
        if not self.active:
            self.observe(out)
            return out
        return self.round(out)


def quantize_weights_(model: nn.Module) -> None:
    """Round every Conv2d / Linear weight of ``model`` in place to per-output-channel symmetric int8."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                scale = torch.clamp(w.reshape(w.shape[0], -1).abs().amax(dim=1) / 127.0, min=1e-12).float()
                zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
                w.copy_(torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127))


FUSED_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh)
"""Activations the converter fuses into the convolution or linear op before them (one int8 output)."""


def _fused_into_activation(model: nn.Module) -> set[int]:
    """ids of the Conv2d / Linear modules directly followed (identities skipped) by a fused activation
    inside an ``nn.Sequential``: their own output is never an int8 tensor in the file."""
    out: set[int] = set()
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        mods = [m for m in seq if not isinstance(m, nn.Identity)]
        for a, b in pairwise(mods):
            if isinstance(a, (nn.Conv2d, nn.Linear)) and isinstance(b, FUSED_ACTIVATIONS):
                out.add(id(a))
    return out


class SimulatedInt8(nn.Module):
    """``model`` as the int8 file would compute it (see the module docstring), calibrated on
    ``calibration`` (batches already at the model's input size and device)."""

    def __init__(self, model: nn.Module, calibration: Iterable[torch.Tensor]) -> None:
        from edgenas.exporters.convert import fold_batchnorm

        super().__init__()
        self.model = fold_batchnorm(model).eval()
        quantize_weights_(self.model)
        self.input_range = _Range()
        self.ranges = []
        fused = _fused_into_activation(self.model)
        for m in self.model.modules():  # containers too: a block's own residual add or SE multiply is an op
            if not isinstance(m, SKIP) and id(m) not in fused:
                r = _Range()
                m.register_forward_hook(r)
                self.ranges.append(r)
        with torch.no_grad():
            for x in calibration:
                self.input_range.observe(x)
                self.model(x)
        for r in [self.input_range, *self.ranges]:
            r.active = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.input_range.round(x))


def int8_top1(model: nn.Module, calibration: Iterable[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
              prep: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
    """Top-1 accuracy of ``model``'s simulated int8 quantization on ``x`` / ``y`` (chunks through ``prep``,
    default: to the model's device), calibrated on ``calibration`` (batches at the model's device)."""
    from edgenas.estimators.training import top1_accuracy

    return top1_accuracy(SimulatedInt8(model, calibration), x, y, prep)
