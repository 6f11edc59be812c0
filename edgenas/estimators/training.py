"""Low-fidelity training: a few epochs on a subset, at the spec's (or a lower) resolution.

``train`` trains each spec from its per-spec-seeded initialisation with SGD (momentum, Nesterov,
weight decay) under a per-step cosine schedule and optional label smoothing, without augmentation, on
``train_samples`` examples of the dataset's training split (the same seeded subset for every spec),
re-estimates the BatchNorm statistics on up to 512 training examples (OFA's practice: after a few
dozen steps the running averages are still far off), and scores it by top-1 accuracy (a fraction in
[0, 1]) on ``val_samples`` examples of the validation split. Its
:class:`~edgenas.estimators.base.Estimate` reports ``epochs`` and ``samples`` (training examples
processed) and, from the same validation pass, the trust metrics of its ``metrics`` option
(:mod:`edgenas.estimators.trust`). A run whose loss becomes NaN/inf is reported as diverged:
:data:`~edgenas.estimators.base.WORST_SCORE`.

``halving`` / :class:`SuccessiveHalving` promote the best 1/eta of the specs from each rung to the next
(budgets ``min_epochs * eta**i`` up to ``max_epochs``), retraining from scratch at each budget. edgenas
brings its own rung logic because Optuna's pruners do not work in multi-objective studies
(optuna#3450).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgenas.datasets import adapt_images
from edgenas.errors import EdgenasError
from edgenas.estimators.base import WORST_SCORE, Estimate, Estimator, Outcome, register_estimator, spec_seed
from edgenas.estimators.data import data_task, resolve_dataset
from edgenas.estimators.trust import (
    DEFAULT_METRICS,
    DEFAULT_SNR_DB,
    TRUST_METRICS,
    check_metrics,
    check_snr,
    evaluate,
)
from edgenas.spaces.base import Task
from edgenas.torchdevice import host_tensor, resolve_device, to_device

if TYPE_CHECKING:
    from edgenas.datasets import Dataset
    from edgenas.spaces.base import ArchSpec, SearchSpace

EVAL_CHUNK = 256
BN_RECALIBRATION_SAMPLES = 512
PRERESIZE_BYTES = 128 * 2**20
"""Train/val subsets up to this size (float32 bytes at the input shape) are resized once per shape."""


@dataclass(frozen=True)
class TrainResult:
    accuracy: float
    """Top-1 validation accuracy in [0, 1], or WORST_SCORE when training diverged."""
    epochs: int
    samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    """The trust metrics asked of :func:`train_and_evaluate`, on the same validation pass."""


def recalibrate_batchnorm(
    model: nn.Module, x: torch.Tensor, batch_size: int, prep: Callable[[torch.Tensor], torch.Tensor],
    max_samples: int = BN_RECALIBRATION_SAMPLES,
) -> None:
    """Replace BatchNorm running statistics by exact averages over (up to ``max_samples``) training
    examples, as OFA does before evaluating a sub-network. After a few dozen SGD steps the default
    exponential averages (momentum 0.1) still remember the initial statistics, and an eval-mode
    network scores at chance; recalibrated, it scores what it has learned. (The supernet's
    :func:`~edgenas.supernet.bn.recalibrate_bn` on batches of ``x``, each through ``prep``.)"""
    from edgenas.supernet.bn import batches_of, recalibrate_bn

    if min(int(x.shape[0]), max_samples) >= 2:  # fewer: no batch BatchNorm can use, nothing to do
        recalibrate_bn(model, (prep(b) for b in batches_of(x, batch_size, max_samples)))


def top1_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  prep: Callable[[torch.Tensor], torch.Tensor] | None = None, chunk: int = EVAL_CHUNK) -> float:
    """Top-1 accuracy (a fraction) of ``model`` in eval mode on ``x`` / ``y``, ``chunk`` examples at a time,
    each chunk through ``prep`` (default: moved to the model's device)."""
    device = next(model.parameters()).device
    prep = prep or (lambda t: to_device(t, device, non_blocking=True))
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, int(x.shape[0]), chunk):
            logits = model(prep(x[start:start + chunk]))
            correct += int((logits.argmax(1) == y[start:start + chunk].to(logits.device)).sum())
    return correct / max(1, int(x.shape[0]))


def train_and_evaluate(
    model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor], *,
    epochs: int, batch_size: int, lr: float, momentum: float, weight_decay: float, label_smoothing: float,
    nesterov: bool, generator: torch.Generator, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str = "cpu", metrics: Sequence[str] = (), snr_db: float = DEFAULT_SNR_DB,
    noise_seed: int = 0,
) -> TrainResult:
    """Train ``model`` in place on ``device`` (it stays there) and return its validation accuracy and the
    work done. ``transform`` (e.g. resizing) is applied to each minibatch on ``device``, so large inputs
    are never materialised at once; without one the (pre-tensored) subsets move to ``device`` once.
    ``metrics``: trust metrics to compute on the same validation pass (:func:`edgenas.estimators.trust.evaluate`;
    ``noisy_accuracy`` at ``snr_db``, its noise drawn from ``noise_seed``)."""
    dev = torch.device(device)
    x, y = train
    xv, yv = val
    if transform is None:
        x, xv = x.to(dev), xv.to(dev)
    else:  # per-batch copies from page-locked host memory when a GPU reads them
        x, xv = host_tensor(x, dev), host_tensor(xv, dev)
    y, yv = y.to(dev), yv.to(dev)
    model.to(dev)

    def prep(t: torch.Tensor) -> torch.Tensor:
        t = to_device(t, dev, non_blocking=True)
        return transform(t) if transform is not None else t

    n = int(x.shape[0])
    steps_per_epoch = max(1, n // batch_size + (1 if n % batch_size > 1 else 0))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                          nesterov=nesterov and momentum > 0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * steps_per_epoch))
    samples = 0
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator).to(dev)
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            if len(idx) < 2:  # BatchNorm needs two examples
                continue
            loss = F.cross_entropy(model(prep(x[idx])), y[idx], label_smoothing=label_smoothing)
            if not torch.isfinite(loss):
                return TrainResult(WORST_SCORE, epochs, samples)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            samples += len(idx)
    recalibrate_batchnorm(model, x, batch_size, prep)
    accuracy, found = evaluate(model, xv, yv, metrics, prep, snr_db, noise_seed, EVAL_CHUNK)
    return TrainResult(accuracy, epochs, samples, found)


@register_estimator
class LowFidelityTraining(Estimator):
    name = "train"
    summary = "validation accuracy after a few epochs of SGD+cosine on a data subset"
    needs_data = True
    trust_metrics = TRUST_METRICS

    def __init__(
        self, space: SearchSpace, task: Task | None = None, seed: int = 0,
        dataset: str | Dataset | None = None, epochs: int = 3, train_samples: int = 1024,
        val_samples: int = 512, resolution: int | None = None, batch_size: int = 64, lr: float = 0.05,
        momentum: float = 0.9, weight_decay: float = 5e-4, label_smoothing: float = 0.0, nesterov: bool = True,
        torch_device: str = "auto", precision: str = "fp32", metrics: Sequence[str] = DEFAULT_METRICS,
        noise_snr_db: float = DEFAULT_SNR_DB,
    ) -> None:
        """``epochs``: training epochs; ``train_samples``/``val_samples``: subset sizes (0 = the whole
        split); ``resolution``: train and evaluate at this input size instead of the spec's (the nets
        are fully convolutional); ``torch_device``: where to train (``auto``: a GPU when there is one,
        see :mod:`edgenas.torchdevice`); ``precision``: score the float model (``fp32``) or its simulated
        int8 quantization (``int8``, calibrated on up to 256 of the training examples:
        :mod:`edgenas.estimators.int8_sim`; the ``accuracy_int8`` objective sets it); ``metrics``: the
        trust metrics each estimate carries (:mod:`edgenas.estimators.trust`; by default the two that
        cost no extra pass, ``worst_class_accuracy`` and ``calibration_error``; ``noisy_accuracy`` adds a
        forward pass with Gaussian input noise at ``noise_snr_db`` dB, the same draws for every spec;
        with ``precision=int8`` they are the simulated int8 model's); the rest are the SGD
        hyper-parameters."""
        from edgenas.estimators.int8_sim import check_precision

        super().__init__(space, task, seed)
        self.precision = check_precision(precision, self.name)
        self.metrics = check_metrics(metrics, self.name)
        self.noise_snr_db = check_snr(noise_snr_db, self.name)
        self.noise_seed = spec_seed(self.seed, "trust:noise")
        """Seeds the noise of ``noisy_accuracy``: the same draws for every spec of an input shape, so specs
        are compared on the same noisy images."""
        resolve_device(torch_device, f"{self.name}: torch_device")  # a device this machine lacks fails here
        self.torch_device = torch_device
        for key, v, lo in (("epochs", epochs, 1), ("train_samples", train_samples, 0),
                           ("val_samples", val_samples, 0), ("batch_size", batch_size, 2)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise EdgenasError(f"train: {key} must be an integer >= {lo}, got {v!r}")
        if resolution is not None and (not isinstance(resolution, int) or resolution < 4):
            raise EdgenasError(f"train: resolution must be an integer >= 4, got {resolution!r}")
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise EdgenasError(f"train: label_smoothing must be in [0, 1), got {label_smoothing!r}")
        if float(lr) <= 0:
            raise EdgenasError(f"train: lr must be positive, got {lr!r}")
        self.dataset = resolve_dataset(dataset)
        base = data_task(space, task, self.dataset)
        self.net_task = Task(base.num_classes, base.in_channels, resolution or base.resolution)
        self.epochs = epochs
        self.train_samples = train_samples
        self.val_samples = val_samples
        self.resolution = resolution
        self.hparams: dict[str, Any] = {
            "batch_size": batch_size, "lr": float(lr), "momentum": float(momentum),
            "weight_decay": float(weight_decay), "label_smoothing": float(label_smoothing),
            "nesterov": bool(nesterov),
        }
        g = torch.Generator().manual_seed(self.seed)
        tr, va = self.dataset.train_idx, self.dataset.val_idx
        self._train_pos = torch.randperm(len(tr), generator=g)[: train_samples or len(tr)].sort().values
        self._val_pos = torch.randperm(len(va), generator=g)[: val_samples or len(va)].sort().values
        self._prepared: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def input_shape(self, spec: ArchSpec) -> tuple[int, int, int]:
        c, h, w = self.space.input_shape(spec, self.net_task)
        return (c, self.resolution, self.resolution) if self.resolution else (c, h, w)

    def _data(
        self, shape: tuple[int, int, int]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], Callable | None]:
        """Train/val subsets; pre-resized when they fit in PRERESIZE_BYTES, else resized per batch."""
        x, y = self.dataset.x, self.dataset.y
        tr = torch.as_tensor(self.dataset.train_idx)[self._train_pos]
        va = torch.as_tensor(self.dataset.val_idx)[self._val_pos]
        nbytes = 4 * (len(tr) + len(va)) * shape[0] * shape[1] * shape[2]
        if nbytes <= PRERESIZE_BYTES:
            if shape not in self._prepared:
                self._prepared.clear()
                self._prepared[shape] = (adapt_images(x[tr], shape), adapt_images(x[va], shape))
            xt, xv = self._prepared[shape]
            return (xt, y[tr]), (xv, y[va]), None
        return (x[tr], y[tr]), (x[va], y[va]), partial(adapt_images, shape=shape)

    def provides(self) -> tuple[str, ...]:
        return self.metrics

    def _compute(self, spec: ArchSpec) -> Outcome:
        train, val, transform = self._data(self.input_shape(spec))
        seed = self.spec_seed(spec)
        int8 = self.precision == "int8"
        trust = {"metrics": () if int8 else self.metrics, "snr_db": self.noise_snr_db, "noise_seed": self.noise_seed}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.space.build(spec, self.net_task)
            device = resolve_device(self.torch_device, f"{self.name}: torch_device")
            res = train_and_evaluate(model, train, val, epochs=self.epochs, transform=transform,
                                     generator=torch.Generator().manual_seed(seed), **self.hparams, device=device,
                                     **trust)
        if int8 and res.accuracy != WORST_SCORE:
            acc, found = int8_accuracy(model, train[0], val, transform, self.hparams["batch_size"], device,
                                       metrics=self.metrics, snr_db=self.noise_snr_db, noise_seed=self.noise_seed)
            return Outcome(acc, res.epochs, res.samples, found)
        return Outcome(res.accuracy, res.epochs, res.samples, res.metrics)


INT8_CALIBRATION_SAMPLES = 256
"""Training examples that calibrate a simulated int8 score (the exporter's representative set size)."""


def int8_accuracy(model: nn.Module, train_x: torch.Tensor, val: tuple[torch.Tensor, torch.Tensor],
                  transform: Callable[[torch.Tensor], torch.Tensor] | None, batch_size: int,
                  device: torch.device, metrics: Sequence[str] = (), snr_db: float = DEFAULT_SNR_DB,
                  noise_seed: int = 0) -> tuple[float, dict[str, float]]:
    """Top-1 on ``val`` of the trained ``model``'s simulated int8 quantization, calibrated on the first
    :data:`INT8_CALIBRATION_SAMPLES` of ``train_x`` (each batch through ``transform``, on ``device``),
    and the trust ``metrics`` of that simulated model (:func:`edgenas.estimators.trust.evaluate`)."""
    from edgenas.estimators.int8_sim import SimulatedInt8

    def prep(t: torch.Tensor) -> torch.Tensor:
        t = to_device(t, device, non_blocking=True)
        return transform(t) if transform is not None else t

    calib = train_x[:INT8_CALIBRATION_SAMPLES]
    sim = SimulatedInt8(model.eval(), (prep(calib[i:i + batch_size]) for i in range(0, len(calib), batch_size)))
    return evaluate(sim, val[0], val[1], metrics, prep, snr_db, noise_seed, EVAL_CHUNK)


# -- successive halving ------------------------------------------------------------------------
@dataclass(frozen=True)
class Rung:
    """One fidelity level: its budget, the estimates of every spec trained at it, and who moved on."""

    epochs: int
    estimates: list[Estimate]
    promoted: list[str]


@dataclass(frozen=True)
class HalvingResult:
    rungs: list[Rung]
    estimates: list[Estimate]
    """One per input spec: score = index of the last rung reached + accuracy there (specs that went
    further always rank higher); cost = the sum over the rungs it was trained in; metrics: those of the
    last rung it was trained in."""

    @property
    def best(self) -> Estimate:
        return max(self.estimates, key=lambda e: (e.score, e.arch))

    @property
    def seconds(self) -> float:
        return sum(e.seconds for e in self.estimates)

    @property
    def samples(self) -> int:
        return sum(e.samples for e in self.estimates)


def rung_budgets(min_epochs: int, max_epochs: int, eta: int) -> list[int]:
    """``min_epochs * eta**i`` for every i with a value <= ``max_epochs``."""
    if not (isinstance(eta, int) and eta >= 2):
        raise EdgenasError(f"halving: eta must be an integer >= 2, got {eta!r}")
    if not (isinstance(min_epochs, int) and 1 <= min_epochs <= max_epochs):
        raise EdgenasError(f"halving: need 1 <= min_epochs <= max_epochs, got {min_epochs} and {max_epochs}")
    out = [min_epochs]
    while out[-1] * eta <= max_epochs:
        out.append(out[-1] * eta)
    return out


class SuccessiveHalving:
    """Successive halving over a fixed set of specs: at each rung every survivor is scored by
    ``estimator_at(epochs)``; the best ``max(1, n // eta)`` (ties broken by canonical string) go on."""

    def __init__(
        self, estimator_at: Callable[[int], Estimator], min_epochs: int = 1, max_epochs: int = 9, eta: int = 3
    ) -> None:
        self.budgets = rung_budgets(min_epochs, max_epochs, eta)
        self.eta = eta
        self._factory = estimator_at
        self._estimators: dict[int, Estimator] = {}

    def estimator(self, epochs: int) -> Estimator:
        if epochs not in self._estimators:
            self._estimators[epochs] = self._factory(epochs)
        return self._estimators[epochs]

    def run(self, specs: list[ArchSpec]) -> HalvingResult:
        unique = list({str(s): s for s in specs}.values())
        alive = unique
        rungs: list[Rung] = []
        history: dict[str, list[Estimate]] = {str(s): [] for s in unique}
        for i, epochs in enumerate(self.budgets):
            ests = self.estimator(epochs).estimate_many(alive)
            for e in ests:
                history[e.arch].append(e)
            last = i == len(self.budgets) - 1
            n_keep = 0 if last else max(1, len(alive) // self.eta)
            ranked = sorted(zip(alive, ests), key=lambda p: (-p[1].score, p[1].arch))
            keep = [s for s, e in ranked[:n_keep] if e.score > WORST_SCORE]
            rungs.append(Rung(epochs, ests, [str(s) for s in keep]))
            alive = keep
            if not alive:
                break
        out = []
        for s in specs:
            hist = history[str(s)]
            final = hist[-1].score
            score = WORST_SCORE if final == WORST_SCORE else (len(hist) - 1) + final
            out.append(Estimate(str(s), score, sum(e.seconds for e in hist), sum(e.epochs for e in hist),
                                sum(e.samples for e in hist), dict(hist[-1].metrics)))
        return HalvingResult(rungs, out)


@register_estimator
class Halving(Estimator):
    name = "halving"
    summary = "successive halving of 'train' over the batch (rung reached + accuracy; min_epochs, max_epochs, eta)"
    needs_data = True
    batch_dependent = True
    trust_metrics = TRUST_METRICS

    def __init__(
        self, space: SearchSpace, task: Task | None = None, seed: int = 0,
        dataset: str | Dataset | None = None, min_epochs: int = 1, max_epochs: int = 9, eta: int = 3,
        train_options: dict[str, Any] | None = None, torch_device: str = "auto",
        metrics: Sequence[str] = DEFAULT_METRICS, noise_snr_db: float = DEFAULT_SNR_DB,
    ) -> None:
        """Rungs of ``train`` at ``min_epochs * eta**i`` epochs up to ``max_epochs``; ``train_options``
        are the other ``train`` options (``epochs`` is set by the rung); ``torch_device``: where they
        train; ``metrics`` / ``noise_snr_db``: the trust metrics each estimate carries, those of the last
        rung the spec was trained in (as ``train``'s options of the same names)."""
        super().__init__(space, task, seed)
        opts = {"torch_device": torch_device, **(train_options or {})}
        if "epochs" in opts:
            raise EdgenasError("halving: the rungs set 'epochs'; use min_epochs/max_epochs instead")
        unknown = sorted(set(opts) - set(inspect.signature(LowFidelityTraining.__init__).parameters))
        if unknown or "dataset" in opts:
            raise EdgenasError(f"halving: train_options {unknown or ['dataset']} are not 'train' options "
                               "(pass the dataset as the halving option 'dataset')")
        for key in ("metrics", "noise_snr_db"):
            if key in opts:
                raise EdgenasError(f"halving: give {key!r} as a halving option, not in train_options")
        self.metrics = check_metrics(metrics, self.name)
        self.noise_snr_db = check_snr(noise_snr_db, self.name)
        opts.update(metrics=self.metrics, noise_snr_db=self.noise_snr_db)
        self.dataset = resolve_dataset(dataset)
        self.driver = SuccessiveHalving(
            lambda epochs: LowFidelityTraining(space, task, seed, dataset=self.dataset, epochs=epochs, **opts),
            min_epochs, max_epochs, eta,
        )
        self.last_result: HalvingResult | None = None

    def provides(self) -> tuple[str, ...]:
        return self.metrics

    def _compute_many(self, specs: list[ArchSpec]) -> list[Estimate]:
        self.last_result = self.driver.run(specs)
        return self.last_result.estimates
