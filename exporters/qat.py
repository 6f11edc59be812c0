"""Quantization-aware fine-tuning (the ``int8 = "qat"`` export option): a few epochs of training with the
int8 rounding in the forward pass, from the trained float model, then the ordinary int8 lowering.

The model's BatchNorms are first folded into their convolutions (as the .tflite has them), then

* every Conv2d / Linear weight is fake-quantized per output channel, symmetric int8 (scale = max |w| /
  127), what ai-edge-quantizer's static recipe does with the weights;
* the output of every Conv2d, Linear, activation and pooling module is fake-quantized per tensor,
  asymmetric int8, over a range first set by the representative set's min/max (the exporter's
  calibration) and then followed by an exponential moving average of each training batch's min/max.

Rounding passes gradients straight through (``torch.fake_quantize_per_*_affine``). Training is the
export's own recipe (:func:`edgenas.estimators.training.train_and_evaluate`: SGD, cosine schedule) at
:data:`QAT_LR_SCALE` of its learning rate. The fine-tuned float weights then go through the same
litert-torch conversion and ai-edge-quantizer min/max int8 recipe as every other int8 file: the int8
weights are the fake-quantized ones exactly (same per-channel rule), the activation ranges are
re-calibrated on the same representative set.

Why not litert-torch's PT2E QAT (``PT2EQuantizer`` with ``is_qat=True`` and ``prepare_qat_pt2e``): with
litert-torch 0.10, torchao 0.18 and torch 2.13 as installed here, its conv+BatchNorm annotator fails
(``torch.export.export`` of a pattern *function*: "Expected `mod` to be an instance of
`torch.nn.Module`"), and its PTQ path would be a second int8 lowering with its own arithmetic choices
(per-tensor histogram observers) beside ai-edge-quantizer's. Fake-quant training in torch plus
ai-edge-quantizer keeps one lowering path, so every int8 option differs only in weights and ranges.

Device-agnostic: training runs on ``torch_device`` (:mod:`edgenas.torchdevice`); the model comes back on
the CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

QAT_EPOCHS = 2
"""Default fine-tuning epochs."""
QAT_LR_SCALE = 0.1
"""Fine-tuning runs the training recipe at a tenth of its learning rate: the weights are already trained."""
EMA_MOMENTUM = 0.99
"""Weight of the running activation range against each training batch's min/max."""
ACTIVATION_MODULES = (nn.Conv2d, nn.Linear, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid,
                      nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d)
"""Modules whose outputs are int8 tensors in the lowered file (approximately: LiteRT fuses a ReLU into
the convolution before it, so such a pair is rounded twice here, once in the file)."""


class WeightFakeQuant(nn.Module):
    """Per-output-channel symmetric int8 fake quantization of a weight (a parametrization)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = (w.detach().abs().amax(dim=tuple(range(1, w.dim()))).clamp_min(1e-8) / 127).float()
        zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


class ActivationFakeQuant:
    """A forward hook: per-tensor asymmetric int8 fake quantization of a module's output over a tracked
    range (global min/max while calibrating, a moving average while training, fixed in eval)."""

    def __init__(self) -> None:
        self.lo: float | None = None
        self.hi: float | None = None
        self.calibrating = False

    def __call__(self, module: nn.Module, inputs: Any, out: torch.Tensor) -> torch.Tensor:
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            return out
        lo, hi = float(out.detach().min()), float(out.detach().max())
        if self.calibrating or self.lo is None or self.hi is None:
            self.lo = lo if self.lo is None else min(self.lo, lo)
            self.hi = hi if self.hi is None else max(self.hi, hi)
        elif module.training:
            self.lo = EMA_MOMENTUM * self.lo + (1 - EMA_MOMENTUM) * lo
            self.hi = EMA_MOMENTUM * self.hi + (1 - EMA_MOMENTUM) * hi
        if self.calibrating:
            return out
        a, b = min(self.lo, 0.0), max(self.hi, 0.0)
        scale = max((b - a) / 255, 1e-8)
        zero = int(np.clip(round(-128 - a / scale), -128, 127))
        return torch.fake_quantize_per_tensor_affine(out, scale, zero, -128, 127)


@dataclass
class QatResult:
    module: nn.Module
    """The fine-tuned float model (eval mode, on the CPU, no fake quantization left in it)."""
    reference: np.ndarray
    """The fine-tuned model's logits on the validation images *with* its fake quantization (eval mode, final
    ranges): what the int8 file approximates, and what it is checked against. Its float logits are not:
    QAT trains the weights for the rounded forward pass, not the float one."""
    record: dict[str, Any] = field(default_factory=dict)
    """Epochs, learning rate, examples, seconds, device, and the fake-quant model's validation accuracy."""


def qat_finetune(
    module: nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
    representative: np.ndarray, epochs: int = QAT_EPOCHS, seed: int = 0, hparams: dict[str, Any] | None = None,
    torch_device: str = "cpu",
) -> QatResult:
    """A copy of ``module`` fine-tuned ``epochs`` with int8 fake quantization on ``train`` (images at the
    model's input size, labels); ``representative`` (float32 NCHW) sets the first activation ranges."""
    from edgenas.estimators.training import train_and_evaluate
    from edgenas.exporters.convert import fold_batchnorm
    from edgenas.exporters.weights import TRAIN_DEFAULTS
    from edgenas.torchdevice import resolve_device

    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"qat epochs must be an integer >= 1, got {epochs!r}")
    device = resolve_device(torch_device)
    t0 = time.perf_counter()
    model = fold_batchnorm(module).cpu()
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            parametrize.register_parametrization(m, "weight", WeightFakeQuant())
    hooks = [(ActivationFakeQuant(), m) for m in model.modules() if isinstance(m, ACTIVATION_MODULES)]
    handles = [m.register_forward_hook(h) for h, m in hooks]
    try:
        for h, _ in hooks:
            h.calibrating = True
        model.eval()
        with torch.no_grad():
            rep = torch.from_numpy(np.ascontiguousarray(representative, dtype=np.float32))
            for i in range(0, len(rep), 64):
                model(rep[i:i + 64])
        for h, _ in hooks:
            h.calibrating = False
        hp = {**TRAIN_DEFAULTS, **(hparams or {})}
        hp["lr"] = hp["lr"] * QAT_LR_SCALE
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            res = train_and_evaluate(model, train, val, epochs=epochs, generator=torch.Generator().manual_seed(seed),
                                     **hp, device=device)
        model.to("cpu").eval()
        with torch.no_grad():  # what the int8 file should compute: the fake-quant model at its final ranges
            vx = val[0].float()
            reference = torch.cat([model(vx[i:i + 256]) for i in range(0, len(vx), 256)]).numpy()
    finally:
        for handle in handles:
            handle.remove()
    model.to("cpu")
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
    model.eval()
    return QatResult(model, reference, {"epochs": epochs, "lr": hp["lr"], "batch_size": hp["batch_size"],
                             "train_examples": len(train[0]), "torch_device": str(device),
                             "fake_quant_val_accuracy": float(res.accuracy),
                             "seconds": round(time.perf_counter() - t0, 2)})
