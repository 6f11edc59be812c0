"""Trust metrics: what a validation pass says about a model beyond its top-1 accuracy.

A model that is accurate on average can still fail one class, be confidently wrong, or break under a
little sensor noise; these metrics make those failures searchable (objectives and budgets) and show
them on model cards. All are computed on the same validation examples as the accuracy:

* ``worst_class_accuracy`` (maximised): the lowest per-class top-1 accuracy, over the classes present
  in the validation examples (a class with no validation example has no accuracy to take).
* ``calibration_error`` (minimised): the expected calibration error (ECE) of Guo et al. 2017, "On
  Calibration of Modern Neural Networks": the softmax confidence (the top probability) is binned into
  :data:`ECE_BINS` equal-width bins ``((m-1)/M, m/M]``, and ECE = sum over bins of
  ``|B_m| / n * |accuracy(B_m) - mean confidence(B_m)|``, in [0, 1].
* ``noisy_accuracy`` (maximised): top-1 accuracy when every validation input gets additive white
  Gaussian noise at a stated signal-to-noise ratio (``snr_db``, default :data:`DEFAULT_SNR_DB`): for
  each example, noise power = signal power / 10^(SNR/10), the signal power being the mean square of
  the network's input (after the dataset's standardisation, i.e. what the first layer sees). The
  draws come from a generator seeded by the caller, so the score is deterministic.

The first two come from the logits the accuracy already needs (no extra forward pass); the third
costs one more forward pass over the validation examples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from edgenas.errors import EdgenasError

WORST_CLASS = "worst_class_accuracy"
CALIBRATION = "calibration_error"
NOISY = "noisy_accuracy"
TRUST_METRICS: tuple[str, ...] = (WORST_CLASS, CALIBRATION, NOISY)
"""Every trust metric, in the order records show them."""
MAXIMISED: dict[str, bool] = {WORST_CLASS: True, CALIBRATION: False, NOISY: True}
"""Whether a larger value is better, per metric."""
DEFAULT_METRICS: tuple[str, ...] = (WORST_CLASS, CALIBRATION)
"""What ``train`` and ``supernet`` compute unless told otherwise: the metrics that cost no extra pass."""
ECE_BINS = 15
"""Equal-width confidence bins of the calibration error (Guo et al. 2017 use 15)."""
DEFAULT_SNR_DB = 20.0
"""Signal-to-noise ratio (dB) of ``noisy_accuracy`` unless an estimator's ``noise_snr_db`` says otherwise."""
EVAL_CHUNK = 256


def check_metrics(value: Iterable[str], who: str) -> tuple[str, ...]:
    """The trust metrics named in ``value`` (a list of names), each once, in :data:`TRUST_METRICS`
    order; an unknown name is a one-line error naming ``who``."""
    names = [str(v).strip() for v in value if str(v).strip()]
    unknown = [n for n in names if n not in TRUST_METRICS]
    if unknown:
        raise EdgenasError(f"{who}: unknown trust metric(s) {', '.join(unknown)}; choose from "
                           f"{', '.join(TRUST_METRICS)}")
    return tuple(m for m in TRUST_METRICS if m in names)


def check_snr(value: float, who: str) -> float:
    """``value`` as a finite float (dB), else a one-line error naming ``who``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise EdgenasError(f"{who}: noise_snr_db must be a finite number of dB, got {value!r}")
    return float(value)


def worst_class_accuracy(pred: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """The lowest per-class top-1 accuracy over the classes present in ``y`` (``pred``: predicted
    labels). NaN when ``y`` is empty."""
    p, t = np.asarray(pred).reshape(-1), np.asarray(y).reshape(-1)
    if t.size == 0:
        return math.nan
    return float(min(np.mean(p[t == c] == c) for c in np.unique(t)))


def expected_calibration_error(probs: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """ECE (Guo et al. 2017) of class probabilities ``probs`` (n x classes, rows summing to 1) against
    labels ``y``: confidences binned into ``bins`` equal-width bins ``((m-1)/M, m/M]`` (the first
    also takes 0), sum of ``|B_m|/n * |acc(B_m) - conf(B_m)|``. NaN when there are no examples."""
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(y).reshape(-1)
    if p.shape[0] == 0:
        return math.nan
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == t).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], conf, side="left")  # edges[m] < conf <= edges[m+1] -> m
    total = 0.0
    for m in range(bins):
        sel = which == m
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def add_noise(x: torch.Tensor, snr_db: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` (a batch, examples along dim 0) plus white Gaussian noise at ``snr_db``: per example,
    noise standard deviation sqrt(mean(x_i^2) / 10^(snr_db/10)). The draws come from ``generator``
    (a CPU generator: the same draws on every device) and keep ``x``'s memory format."""
    flat = x.detach().float().reshape(x.shape[0], -1)
    power = flat.pow(2).mean(dim=1)
    sigma = torch.sqrt(power / 10.0 ** (snr_db / 10.0)).reshape(-1, *([1] * (x.dim() - 1)))
    noise = torch.randn(tuple(x.shape), generator=generator, dtype=torch.float32).to(x.device)
    out = x + (sigma.to(x.device) * noise).to(x.dtype)
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def _logits(model: nn.Module, x: torch.Tensor, prep: Callable[[torch.Tensor], torch.Tensor], chunk: int,
            noise: tuple[float, torch.Generator] | None = None) -> torch.Tensor:
    """``model``'s logits on ``x`` (eval mode, ``chunk`` examples at a time through ``prep``, then noise
    when given), as a float32 CPU tensor."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, int(x.shape[0]), chunk):
            t = prep(x[start:start + chunk])
            if noise is not None:
                t = add_noise(t, noise[0], noise[1])
            out.append(model(t).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, metrics: Sequence[str] = (),
    prep: Callable[[torch.Tensor], torch.Tensor] | None = None, snr_db: float = DEFAULT_SNR_DB,
    noise_seed: int = 0, chunk: int = EVAL_CHUNK,
) -> tuple[float, dict[str, float]]:
    """Top-1 accuracy of ``model`` on ``x`` / ``y`` and the requested trust ``metrics``, from one pass
    (plus a second, noisy one for ``noisy_accuracy``, its noise drawn from ``noise_seed``). ``prep``
    maps each chunk to the model's input (default: moved to the model's device). The accuracy is the
    one :func:`edgenas.estimators.training.top1_accuracy` gives (the same chunks, the same argmax)."""
    if prep is None:
        device = next(model.parameters()).device
        prep = lambda t: t.to(device)  # noqa: E731
    labels = torch.as_tensor(y).cpu()
    n = int(x.shape[0])
    logits = _logits(model, x, prep, chunk)
    pred = logits.argmax(1) if n else torch.zeros(0, dtype=torch.long)
    accuracy = int((pred == labels).sum()) / max(1, n)
    out: dict[str, float] = {}
    if WORST_CLASS in metrics:
        out[WORST_CLASS] = worst_class_accuracy(pred.numpy(), labels.numpy())
    if CALIBRATION in metrics:
        out[CALIBRATION] = expected_calibration_error(torch.softmax(logits.double(), 1).numpy(), labels.numpy())
    if NOISY in metrics:
        g = torch.Generator().manual_seed(int(noise_seed))
        noisy = _logits(model, x, prep, chunk, (float(snr_db), g))
        out[NOISY] = int((noisy.argmax(1) == labels).sum()) / max(1, n) if n else math.nan
    return accuracy, {k: v for k, v in out.items() if not math.isnan(v)}


def trust_report(model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
                 snr_db: float = DEFAULT_SNR_DB, noise_seed: int = 0) -> dict[str, float | int]:
    """Every trust metric of a trained ``model`` (on its own device) on ``x`` / ``y``, with the accuracy
    on the same examples, their number and the SNR: what a model card records next to its files'
    accuracies."""
    xt = torch.as_tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    yt = torch.as_tensor(np.asarray(y)) if isinstance(y, np.ndarray) else y
    accuracy, found = evaluate(model, xt, yt, TRUST_METRICS, snr_db=snr_db, noise_seed=noise_seed)
    return {"examples": int(xt.shape[0]), "noise_snr_db": float(snr_db), "accuracy": accuracy, **found}
