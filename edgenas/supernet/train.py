"""Supernet training: the sandwich rule with in-place distillation, checkpointed every epoch.

Each step trains, on one minibatch, the largest subnet (cross-entropy on the labels), the smallest and
``n_random`` random subnets (BigNAS / AttentiveNAS): the others learn from the largest one's soft
predictions on the same batch (KL divergence at ``temperature``, "in-place distillation"), or from the
labels when ``distill`` is off. Gradients of all of them are summed into one SGD step (momentum,
Nesterov, weight decay) under a per-step cosine schedule: the recipe of edgenas' ``train`` estimator
and export training (:mod:`edgenas.estimators.training`). Each subnet sees the batch at its own
resolution (resized on the training device; pre-resized once per resolution when that fits in
:data:`PRERESIZE_BYTES`).

``smallest_prob`` is the probability that a step trains the smallest subnet (1: the sandwich rule of
BigNAS / AttentiveNAS); a step that does not trains one more random subnet in its place (same count per
step). Trained on every step, the smallest subnet's weights fit it better than the shared weights fit any
other subnet, and its inherited accuracy and its neighbourhood's are over-rated against stand-alone
training. The default is 0 (since 2026-12-08; 1 before): it trains the smallest no more often than any
other subnet (FairNAS' argument: a spec trained more often than its rivals is ranked above them for that
alone). On 50 random ``tiny`` specs of two tasks, measured twice on two days' code
(benchmarks/results/supernet.md), 0 ranked better in three of four runs (Kendall tau 0.340 vs 0.127 and
0.526 vs 0.254 on 2026-12-07; 0.252 vs 0.188 and 0.413 vs 0.467 on 2026-12-03) and its searches' fronts
retrained better in all four comparisons.

Reproducible: initialisation, example order and sampled subnets derive from ``seed`` and the epoch
alone, so a run resumed from its checkpoint ends with the same weights as one never interrupted. The
checkpoint (``torch.save`` of plain data, loaded with ``weights_only=True``; written atomically by
:func:`edgenas.fileio.atomic_write`) holds the supernet's state dict, the optimizer and scheduler
states, the epoch reached, the space name and options, the task, the seed, the hyper-parameters and
the dataset split record. :func:`load_supernet` rebuilds the supernet from it.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from edgenas.datasets import adapt_images
from edgenas.errors import EdgenasError
from edgenas.fileio import atomic_write
from edgenas.spaces.base import Task
from edgenas.supernet.elastic import Supernet
from edgenas.torchdevice import host_tensor, resolve_device, to_device

if TYPE_CHECKING:
    from edgenas.datasets import Dataset
    from edgenas.spaces.base import ArchSpec, SearchSpace

CHECKPOINT_FORMAT = "edgenas-supernet"
CHECKPOINT_VERSION = 1
PRERESIZE_BYTES = 128 * 2**20
"""Training images are kept resized per resolution up to this many float32 bytes in all (else per batch)."""

TRAIN_DEFAULTS: dict[str, Any] = {
    "batch_size": 64, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True,
    "label_smoothing": 0.0, "n_random": 2, "distill": True, "temperature": 1.0, "train_samples": 0,
    "smallest_prob": 0.0,
}
"""Hyper-parameters of :func:`train_supernet` (SGD ones as edgenas' export training)."""
LEGACY_HPARAMS: dict[str, Any] = {"smallest_prob": 1.0}
"""What a checkpoint written before an option existed was trained with, where that differs from today's
default (checked when such a checkpoint is resumed)."""


@dataclass
class SupernetRun:
    """A finished (or resumed and finished) training run."""

    supernet: Supernet
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)
    """Per epoch: ``epoch``, ``loss_largest`` (cross-entropy), ``loss_subnets`` (distillation or
    cross-entropy, per subnet), ``lr`` at its end, ``seconds``."""
    resumed_from: int = 0
    """Epochs already done in the checkpoint this run resumed from (0: a fresh run)."""
    checkpoint: dict[str, Any] = field(default_factory=dict, repr=False)
    """The last checkpoint dict (also what was written to ``checkpoint``, when given)."""

    @property
    def seconds(self) -> float:
        return sum(h["seconds"] for h in self.history)


def space_options(space: SearchSpace) -> dict[str, Any]:
    """The constructor options that rebuild ``space`` with ``get_space(space.name, **options)``: its
    constructor's keywords read back from the attributes of the same name."""
    opts: dict[str, Any] = {}
    for name, p in inspect.signature(type(space).__init__).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if hasattr(space, name):
            opts[name] = _plain(getattr(space, name))
    return opts


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _task_record(task: Task) -> dict[str, Any]:
    return {"num_classes": task.num_classes, "in_channels": task.in_channels, "resolution": task.resolution}


def _derived_seed(seed: int, what: str, epoch: int) -> int:
    digest = hashlib.sha256(f"{seed}:{what}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def _check_hparams(hp: dict[str, Any]) -> None:
    for key, lo in (("batch_size", 2), ("n_random", 0), ("train_samples", 0)):
        v = hp[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise EdgenasError(f"supernet training: {key} must be an integer >= {lo}, got {v!r}")
    for key in ("lr", "temperature"):
        if not float(hp[key]) > 0:
            raise EdgenasError(f"supernet training: {key} must be positive, got {hp[key]!r}")
    if not 0.0 <= float(hp["label_smoothing"]) < 1.0:
        raise EdgenasError(f"supernet training: label_smoothing must be in [0, 1), got {hp['label_smoothing']!r}")
    p = hp["smallest_prob"]
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise EdgenasError(f"supernet training: smallest_prob must be a number in [0, 1], got {p!r}")
    if float(hp["momentum"]) < 0 or float(hp["weight_decay"]) < 0:
        raise EdgenasError("supernet training: momentum and weight_decay must be >= 0")


# -- checkpoints -------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write a checkpoint dict atomically (a crash never leaves half a file; the last good one stays)."""
    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    return atomic_write(path, buf.getvalue())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A supernet checkpoint written by :func:`train_supernet`, read with ``weights_only=True``; any
    other file is one :class:`EdgenasError` line naming it."""
    from edgenas.fileio import read_torch

    p = Path(path)
    ck = read_torch(p, "supernet checkpoint", "torch file", "write one with 'edgenas supernet train'")
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise EdgenasError(f"{str(p)!r} is not an edgenas supernet checkpoint (no format {CHECKPOINT_FORMAT!r}); "
                           f"write one with 'edgenas supernet train'")
    if ck.get("version") != CHECKPOINT_VERSION:
        raise EdgenasError(f"supernet checkpoint {str(p)!r} has version {ck.get('version')!r}; this edgenas reads "
                           f"version {CHECKPOINT_VERSION}")
    return ck


def supernet_from_checkpoint(ck: dict[str, Any], device: str | torch.device = "cpu", what: str = "checkpoint"
                             ) -> Supernet:
    """The supernet a checkpoint dict describes, with its weights, on ``device``, in eval mode."""
    from edgenas.spaces import get_space

    space = get_space(ck["space"], **ck["space_options"])
    with torch.random.fork_rng(devices=[]):
        sn = Supernet(space, Task(**ck["task"]), kernel_transform=bool(ck.get("kernel_transform")))
    sn.load_weights(ck["state_dict"], what)
    return to_device(sn, resolve_device(str(device), "supernet device")).eval()


def load_supernet(path: str | Path, device: str | torch.device = "cpu") -> tuple[Supernet, dict[str, Any]]:
    """The trained supernet in a checkpoint file (on ``device``, eval mode) and the checkpoint's
    metadata (everything but the tensors: space, task, seed, epochs, hyper-parameters, dataset)."""
    dev = resolve_device(str(device), "supernet device")  # before reading: a wrong device is the first error
    ck = read_checkpoint(path)
    sn = supernet_from_checkpoint(ck, dev, f"supernet checkpoint {str(path)!r}")
    meta = {k: v for k, v in ck.items() if k not in ("state_dict", "optimizer", "scheduler")}
    return sn, meta


# -- data --------------------------------------------------------------------------------------
class _Images:
    """The training subset on the training device, resized per input shape (cached when small)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
        self.x = to_device(host_tensor(x.contiguous(), device), device, non_blocking=True)
        self.y = to_device(host_tensor(y, device), device, non_blocking=True)
        self.cache: dict[tuple[int, int, int], torch.Tensor] = {}
        self.cached_bytes = 0

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def get(self, idx: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
        if shape in self.cache:
            return self.cache[shape][idx]
        nbytes = 4 * len(self) * shape[0] * shape[1] * shape[2]
        if self.cached_bytes + nbytes <= PRERESIZE_BYTES:
            self.cache[shape] = adapt_images(self.x, shape)
            self.cached_bytes += nbytes
            return self.cache[shape][idx]
        return adapt_images(self.x[idx], shape)


# -- training ----------------------------------------------------------------------------------
def train_supernet(
    space: SearchSpace, task: Task | None, dataset: str | Dataset | None, epochs: int, *, seed: int = 0,
    device: str | torch.device = "cpu", checkpoint: str | Path | None = None, resume: bool = False,
    init: Supernet | None = None, kernel_transform: bool = False, progress: bool = False,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None, batch_size: int = 64, lr: float = 0.05,
    momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = True, label_smoothing: float = 0.0,
    n_random: int = 2, distill: bool = True, temperature: float = 1.0, train_samples: int = 0,
    smallest_prob: float = 0.0,
) -> SupernetRun:
    """Train a supernet of ``space`` for ``task`` (``None``: the dataset's classes and channels) on the
    training split of ``dataset`` (a :class:`~edgenas.datasets.Dataset` or a source string) for
    ``epochs`` epochs with the sandwich rule (see the module docstring).

    ``device``: a torch device name (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; see
    :mod:`edgenas.torchdevice`, the one device path every training loop takes). ``checkpoint``: written
    after every epoch; with ``resume`` the run continues from it (it must exist and match every
    setting). ``init``: start from this supernet's weights (e.g. imported from OFA) instead of a seeded
    initialisation. ``on_epoch(epoch, record)`` is called after each epoch's checkpoint. ``progress``:
    a progress bar on a terminal's stderr (a line per epoch otherwise). ``train_samples``: a seeded
    subset of the training split (0: all of it). ``smallest_prob``: the probability that a step trains
    the smallest subnet (1: every step, the sandwich rule; otherwise a random subnet takes its place; default
    0, see the module docstring).
    Returns the supernet in eval mode; recalibrate its
    BatchNorm statistics for a spec (:func:`~edgenas.supernet.recalibrate_bn`) before evaluating it.
    """
    from edgenas.estimators.data import data_task, resolve_dataset

    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise EdgenasError(f"supernet training: epochs must be an integer >= 1, got {epochs!r}")
    hp: dict[str, Any] = {"batch_size": batch_size, "lr": float(lr), "momentum": float(momentum),
                          "weight_decay": float(weight_decay), "nesterov": bool(nesterov),
                          "label_smoothing": float(label_smoothing), "n_random": n_random, "distill": bool(distill),
                          "temperature": float(temperature), "train_samples": train_samples,
                          "smallest_prob": smallest_prob}
    _check_hparams(hp)
    hp["smallest_prob"] = float(smallest_prob)
    dev = resolve_device(str(device), "supernet training device")
    ds = resolve_dataset(dataset)
    net_task = data_task(space, task, ds)
    meta: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "space": space.name,
        "space_options": space_options(space), "task": _task_record(net_task), "seed": int(seed), "epochs": epochs,
        "hparams": hp, "kernel_transform": bool(kernel_transform if init is None else init.kernel_transform),
        "dataset": ds.split_record(),
    }
    ck_path = Path(checkpoint) if checkpoint is not None else None
    if resume and ck_path is None:
        raise EdgenasError("supernet training: resume needs the checkpoint to resume from")
    previous = read_checkpoint(ck_path) if resume and ck_path is not None else None
    if previous is not None:
        _check_resumable(previous, meta, ck_path)

    # the training subset (seeded), on the device once
    g = torch.Generator().manual_seed(int(seed))
    tr = torch.as_tensor(ds.train_idx)
    tr = tr[torch.randperm(len(tr), generator=g)[: train_samples or len(tr)].sort().values]
    data = _Images(ds.x[tr], ds.y[tr], dev)
    n = len(data)
    if n < 2:
        raise EdgenasError(f"supernet training: dataset {ds.name!r} has {n} training example(s); need 2 or more")
    steps_per_epoch = len(range(0, n, batch_size)) - (1 if n % batch_size == 1 else 0)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if init is not None:
            if init.space.name != space.name or space_options(init.space) != meta["space_options"]:
                raise EdgenasError(f"supernet training: init is a supernet of {init.space.name} "
                                   f"{space_options(init.space)}, not of {space.name} {meta['space_options']}")
            if _task_record(init.task) != meta["task"]:
                raise EdgenasError(f"supernet training: init was built for task {_task_record(init.task)}, the "
                                   f"dataset needs {meta['task']}")
            sn = init
        else:
            sn = Supernet(space, net_task, kernel_transform=kernel_transform)
        sn = to_device(sn, dev)
        opt = torch.optim.SGD(sn.parameters(), lr=hp["lr"], momentum=hp["momentum"],
                              weight_decay=hp["weight_decay"], nesterov=hp["nesterov"] and hp["momentum"] > 0)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * steps_per_epoch))
        start, history = 0, []
        if previous is not None:
            sn.load_weights(to_device(previous["state_dict"], dev), f"supernet checkpoint {str(ck_path)!r}")
            opt.load_state_dict(previous["optimizer"])
            sched.load_state_dict(previous["scheduler"])
            start, history = int(previous["epoch"]), list(previous["history"])
        ck: dict[str, Any] = dict(previous or {})
        largest, smallest = sn.largest(), sn.smallest()
        bar = _progress_bar(progress, (epochs - start) * steps_per_epoch)
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            sn.train()
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_derived_seed(seed, "order", epoch)))
            rng = random.Random(_derived_seed(seed, "subnets", epoch))
            sums = [0.0, 0.0, 0]
            for start_i in range(0, n, batch_size):
                idx = order[start_i:start_i + batch_size]
                if len(idx) < 2:  # BatchNorm needs two examples
                    continue
                subnets = _step_subnets(rng, space, smallest, n_random, hp["smallest_prob"])
                loss_l, loss_s = _sandwich_step(sn, data, to_device(idx, dev), largest, subnets, hp)
                opt.step()
                sched.step()
                sums[0] += loss_l
                sums[1] += loss_s
                sums[2] += 1
                if bar is not None:
                    bar.set_postfix_str(f"epoch {epoch + 1}/{epochs} loss {loss_l:.3f}/{loss_s:.3f}", refresh=False)
                    bar.update(1)
            steps = max(1, int(sums[2]))
            record = {"epoch": epoch + 1, "loss_largest": sums[0] / steps, "loss_subnets": sums[1] / steps,
                      "lr": float(sched.get_last_lr()[0]), "seconds": round(time.perf_counter() - t0, 3)}
            history.append(record)
            ck = {**meta, "epoch": epoch + 1, "history": history,
                  "state_dict": {k: v.detach().cpu() for k, v in sn.state_dict().items()},
                  "optimizer": to_device(opt.state_dict(), torch.device("cpu")), "scheduler": sched.state_dict()}
            if ck_path is not None:
                save_checkpoint(ck_path, ck)
            if progress and bar is None:
                print(f"supernet: epoch {epoch + 1}/{epochs}, loss largest {record['loss_largest']:.4f}, subnets "
                      f"{record['loss_subnets']:.4f}, {record['seconds']:.1f} s", file=sys.stderr, flush=True)
            if on_epoch is not None:
                on_epoch(epoch + 1, record)
        if bar is not None:
            bar.close()
    sn.eval()
    return SupernetRun(sn, epochs, history, start, ck)


def _step_subnets(rng: random.Random, space: SearchSpace, smallest: ArchSpec, n_random: int, smallest_prob: float
                  ) -> list[ArchSpec]:
    """The subnets a step trains besides the largest: the smallest (with probability ``smallest_prob``,
    else one more random subnet) and ``n_random`` random ones. At 1 no coin is drawn, so the sequence
    of subnets is the one of edgenas versions before the option."""
    if smallest_prob >= 1.0 or rng.random() < smallest_prob:
        return [smallest] + [space.random(rng) for _ in range(n_random)]
    return [space.random(rng) for _ in range(n_random + 1)]


def _sandwich_step(sn: Supernet, data: _Images, idx: torch.Tensor, largest: ArchSpec, subnets: list[ArchSpec],
                   hp: dict[str, Any]) -> tuple[float, float]:
    """Gradients of one sandwich step accumulated into ``sn`` (the caller steps the optimizer);
    returns (largest's loss, mean loss of the others)."""
    for p in sn.parameters():
        p.grad = None
    y = data.y[idx]
    logits = sn(data.get(idx, sn.input_shape(largest)), largest)
    loss = F.cross_entropy(logits, y, label_smoothing=hp["label_smoothing"])
    _check_finite(loss, largest)
    loss.backward()
    temp = hp["temperature"]
    soft = F.softmax(logits.detach() / temp, dim=1)
    total = 0.0
    for spec in subnets:
        out = sn(data.get(idx, sn.input_shape(spec)), spec)
        if hp["distill"]:
            sub = F.kl_div(F.log_softmax(out / temp, dim=1), soft, reduction="batchmean") * temp * temp
        else:
            sub = F.cross_entropy(out, y, label_smoothing=hp["label_smoothing"])
        _check_finite(sub, spec)
        sub.backward()
        total += float(sub.detach())
    return float(loss.detach()), total / max(1, len(subnets))


def _check_finite(loss: torch.Tensor, spec: ArchSpec) -> None:
    if not torch.isfinite(loss.detach()):
        raise EdgenasError(f"supernet training diverged (loss of {spec} became NaN/inf); try a lower lr")


def _check_resumable(previous: dict[str, Any], meta: dict[str, Any], path: Path | None) -> None:
    """A checkpoint resumes only the run that wrote it: every setting must match."""
    for key in ("space", "space_options", "task", "seed", "epochs", "hparams", "kernel_transform", "dataset"):
        theirs = previous.get(key)
        if key == "space_options" and isinstance(theirs, dict):  # options added since take their defaults
            from edgenas.spaces import get_space

            try:
                theirs = space_options(get_space(str(previous.get("space")), **theirs))
            except EdgenasError:
                pass  # reported as a mismatch below
        if key == "hparams" and isinstance(theirs, dict):  # options added since have their old behaviour
            before = {**TRAIN_DEFAULTS, **LEGACY_HPARAMS}
            theirs = {**{k: v for k, v in before.items() if k not in theirs and k in meta[key]}, **theirs}
        if theirs != meta[key]:
            raise EdgenasError(f"cannot resume from {str(path)!r}: its {key} is {theirs!r}, this run's is "
                               f"{meta[key]!r}")


def _progress_bar(progress: bool, total: int) -> Any:
    if not (progress and sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="supernet", dynamic_ncols=True, file=sys.stderr)
