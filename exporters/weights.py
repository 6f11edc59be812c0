"""Final weights of an exported spec: full-fidelity training on the run's dataset, or a given state dict.

Training uses the same recipe as the ``train`` estimator (SGD with Nesterov momentum, per-step cosine
schedule, BatchNorm statistics re-estimated at the end) but on the *whole* training split and for the
requested number of epochs, at the spec's own input size. The state dict is saved so that
``torch.load(path, weights_only=True)`` restores it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edgenas.datasets import Dataset, adapt_images
from edgenas.errors import EdgenasError
from edgenas.estimators.base import spec_seed
from edgenas.estimators.training import top1_accuracy, train_and_evaluate
from edgenas.spaces.base import Task
from edgenas.torchdevice import resolve_device

if TYPE_CHECKING:
    from edgenas.spaces.base import ArchSpec, SearchSpace

TRAIN_DEFAULTS: dict[str, Any] = {"batch_size": 64, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
                                  "label_smoothing": 0.0, "nesterov": True}
REPRESENTATIVE_SAMPLES = 256
"""Calibration examples for int8 quantization (seeded draw from the training split; all of it when
smaller). Activation ranges are the global min/max over them (``convert.CALIBRATIONS``), so the set
must cover what deployment inputs reach: a few hundred, TFLite's guidance."""
VALIDATION_SAMPLES = 512
"""Validation examples on which every artifact is checked against torch (at most)."""


@dataclass
class TrainedModel:
    """A spec's module with its final weights and where they came from."""

    module: torch.nn.Module
    input_shape: tuple[int, int, int]
    accuracy: float | None
    """Top-1 of the torch model on the validation split (None without labels)."""
    record: dict[str, Any] = field(default_factory=dict)
    """Training settings and cost, for the model card."""
    num_classes: int = 0


def train_final(
    space: SearchSpace, spec: ArchSpec, task: Task, dataset: Dataset, epochs: int, seed: int = 0,
    hparams: dict[str, Any] | None = None, torch_device: str = "auto",
) -> TrainedModel:
    """Train ``spec`` from its per-spec-seeded initialisation on the whole training split, on
    ``torch_device`` (see :mod:`edgenas.torchdevice`); the model comes back on the CPU, for export."""
    if getattr(space, "inherits_weights", False):  # a pruned --model: fine-tuned from the source's weights
        if not isinstance(epochs, int) or epochs < 0:
            raise EdgenasError(f"--train-epochs must be an integer >= 0 for a --model member, got {epochs!r}")
        model = space.build(spec, task)  # deterministic: the source's weights, cut
        describe = getattr(space, "describe_source", dict)
        trained = getattr(space, "trained_weights", True)  # a random-weight source trains at the full rate
        return finetune_inherited(model, space, spec, task, dataset, epochs, seed, hparams,
                                  resolve_device(torch_device), {"source": "pruned", "model": describe()},
                                  lr_scale=FINETUNE_LR_SCALE if trained else 1.0)
    if not isinstance(epochs, int) or epochs < 1:
        raise EdgenasError(f"--train-epochs must be an integer >= 1, got {epochs!r}")
    device = resolve_device(torch_device)
    hp = {**TRAIN_DEFAULTS, **(hparams or {})}
    shape = space.input_shape(spec, task)
    s = spec_seed(seed, str(spec))
    t0 = time.perf_counter()
    xt, yt = dataset.train(shape)
    xv, yv = dataset.val(shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s)
        model = space.build(spec, task)
        res = train_and_evaluate(model, (xt, yt), (xv, yv), epochs=epochs,
                                 generator=torch.Generator().manual_seed(s), **hp, device=device)
    model.to("cpu")
    if not np.isfinite(res.accuracy):
        raise EdgenasError(f"training {spec} diverged (loss became NaN/inf); try a lower lr")
    model.eval()
    rec = {"source": "trained", "epochs": epochs, "train_examples": len(xt), "val_examples": len(xv),
           "seed": s, "hyperparameters": hp, "torch_device": str(device),
           "seconds": round(time.perf_counter() - t0, 3),
           "dataset": dataset.split_record()}
    return TrainedModel(model, shape, float(res.accuracy), rec, task.num_classes or 0)


FINETUNE_LR_SCALE = 0.1
"""Fine-tuning weights inherited from a supernet runs the training recipe at a tenth of its learning
rate (the weights are already good: the full rate would first undo much of what the supernet learnt)."""
BN_EXAMPLES = 512
"""Training examples that re-estimate an inherited subnet's BatchNorm statistics (as the estimator)."""


def inherit_from_supernet(
    space: SearchSpace, spec: ArchSpec, task: Task, dataset: Dataset, supernet: str | Path, epochs: int,
    seed: int = 0, hparams: dict[str, Any] | None = None, torch_device: str = "auto",
) -> TrainedModel:
    """``spec`` with the weights of a trained supernet (``edgenas supernet train`` checkpoint): cut out,
    BatchNorm statistics re-estimated on training examples, scored (the *inherited* accuracy), then
    fine-tuned for ``epochs`` (0: exported as inherited) at FINETUNE_LR_SCALE of the training rate."""
    from edgenas.supernet import load_supernet

    if not isinstance(epochs, int) or epochs < 0:
        raise EdgenasError(f"--train-epochs must be an integer >= 0 with --init, got {epochs!r}")
    device = resolve_device(torch_device)
    sn, meta = load_supernet(supernet, "cpu")
    if meta["space"] != space.name:
        raise EdgenasError(f"--init supernet {str(supernet)!r} is a supernet of {meta['space']!r}, the models are "
                           f"{space.name!r}")
    if (sn.task.num_classes, sn.task.in_channels) != (task.num_classes, task.in_channels):
        raise EdgenasError(f"--init supernet {str(supernet)!r} was trained for {sn.task.num_classes} classes and "
                           f"{sn.task.in_channels} input channel(s); the export's data needs {task.num_classes} and "
                           f"{task.in_channels}")
    model = sn.extract(str(spec))
    rec = {"source": "supernet", "supernet": str(supernet), "supernet_epochs": meta.get("epoch"),
           "supernet_seed": meta.get("seed"), "supernet_dataset": meta.get("dataset")}
    return finetune_inherited(model, space, spec, task, dataset, epochs, seed, hparams, device, rec)


def finetune_inherited(
    model: torch.nn.Module, space: SearchSpace, spec: ArchSpec, task: Task, dataset: Dataset, epochs: int,
    seed: int, hparams: dict[str, Any] | None, device: torch.device, record: dict[str, Any],
    lr_scale: float = FINETUNE_LR_SCALE,
) -> TrainedModel:
    """A model holding inherited weights (a supernet's subnet, a pruned ``--model``): BatchNorm statistics
    re-estimated on training examples, scored (the *inherited* accuracy), then fine-tuned for ``epochs``
    (0: kept as inherited) at ``lr_scale`` (FINETUNE_LR_SCALE) of the training rate."""
    from edgenas.supernet import batches_of, recalibrate_bn

    hp = {**TRAIN_DEFAULTS, **(hparams or {})}
    hp["lr"] = hp["lr"] * lr_scale
    shape = space.input_shape(spec, task)
    s = spec_seed(seed, str(spec))
    t0 = time.perf_counter()
    xt, yt = dataset.train(shape)
    xv, yv = dataset.val(shape)
    model = model.to(device)
    order = torch.randperm(len(xt), generator=torch.Generator().manual_seed(s))
    recalibrate_bn(model, batches_of(xt[order], int(hp["batch_size"]), BN_EXAMPLES))
    inherited = top1_accuracy(model, xv, yv)
    accuracy = inherited
    if epochs:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            res = train_and_evaluate(model, (xt, yt), (xv, yv), epochs=epochs,
                                     generator=torch.Generator().manual_seed(s), **hp, device=device)
        if not np.isfinite(res.accuracy):
            raise EdgenasError(f"fine-tuning {spec} diverged (loss became NaN/inf); try fewer epochs or a lower lr")
        accuracy = float(res.accuracy)
    model.to("cpu").eval()
    rec = {**record, "inherited_accuracy": inherited, "epochs": epochs, "train_examples": len(xt),
           "val_examples": len(xv), "seed": s, "hyperparameters": hp, "torch_device": str(device),
           "seconds": round(time.perf_counter() - t0, 3), "dataset": dataset.split_record()}
    return TrainedModel(model, shape, accuracy, rec, task.num_classes or 0)


def read_state_dict(path: str | Path, what: str = "--weights") -> dict[str, torch.Tensor]:
    """The state dict (parameter name -> tensor) in a ``torch.save`` file, read with
    ``weights_only=True`` so a pickle that would run code is refused unread. A missing, empty, text,
    foreign or malicious file, or one holding something other than a state dict (a list, a bare tensor,
    a whole pickled module), is one :class:`EdgenasError` line naming ``what`` and the file."""
    from edgenas.fileio import read_torch

    p = Path(path)
    fix = "save one with torch.save(model.state_dict(), path)"
    state = read_torch(p, what, "torch state dict file", fix)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a checkpoint wrapping its state dict
    if not isinstance(state, dict) or not state:
        kind = "an empty dict" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise EdgenasError(f"{what} {str(p)!r} is not a state dict (it holds {kind}); {fix}")
    bad = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise EdgenasError(f"{what} {str(p)!r} is not a state dict (entry {str(bad)[:60]!r} is not a named tensor); "
                           f"{fix}")
    return state


def load_state_dict_into(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path,
                         arch: str, what: str = "--weights") -> None:
    """Load ``state`` into ``model`` (the architecture ``arch``), or one line saying how they differ:
    missing and unexpected parameter names, or the first parameter whose shape differs."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = next((k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)), None)
    head = f"{what} {str(path)!r} is not a state dict for this architecture ({arch})"
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of its {len(own)} parameters missing, e.g. {missing[0]!r}")
        if unexpected:
            parts.append(f"{len(unexpected)} unknown, e.g. {unexpected[0][:60]!r}")
        raise EdgenasError(f"{head}: {'; '.join(parts)}")
    if shape is not None:
        raise EdgenasError(f"{head}: {shape!r} has shape {tuple(state[shape].shape)}, the architecture needs "
                           f"{tuple(own[shape].shape)}")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise EdgenasError(f"{head}: {first}") from None


def load_weights(
    space: SearchSpace, spec: ArchSpec, task: Task, path: Path, dataset: Dataset | None = None
) -> TrainedModel:
    """Build ``spec`` and load a state dict saved by :func:`save_weights` (or any matching one); any
    file that is not such a state dict is one :class:`EdgenasError` line (see :func:`read_state_dict`)."""
    state = read_state_dict(path)
    model = space.build(spec, task)
    load_state_dict_into(model, state, path, str(spec))
    model.eval()
    shape = space.input_shape(spec, task)
    acc = None
    if dataset is not None:
        xv, yv = dataset.val(shape)
        with torch.no_grad():
            acc = float((model(xv).argmax(1) == yv).float().mean())
    return TrainedModel(model, shape, acc, {"source": "weights file", "path": str(path)}, task.num_classes or 0)


def check_weights(space: SearchSpace, spec: ArchSpec, task: Task, path: str | Path) -> None:
    """Raise the one-line :class:`EdgenasError` :func:`load_weights` would, without keeping anything: for
    callers that check ``--weights`` before creating any output."""
    load_state_dict_into(space.build(spec, task), read_state_dict(path), path, str(spec))


def save_weights(model: torch.nn.Module, path: Path) -> bytes:
    """The state dict serialised as ``torch.save`` bytes (written atomically by the caller)."""
    import io

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def export_data(dataset: Dataset | None, shape: tuple[int, int, int], seed: int = 0,
                representative: int = REPRESENTATIVE_SAMPLES, validation: int = VALIDATION_SAMPLES,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(representative set from the training split, validation images, their labels), float32 NCHW.

    Without a dataset: seeded standard-normal images and no labels (parity is still checked)."""
    if dataset is None:
        g = torch.Generator().manual_seed(seed)
        return (torch.randn(representative, *shape, generator=g).numpy(),
                torch.randn(min(validation, 128), *shape, generator=g).numpy(), None)
    rep, _ = dataset.batch(representative, seed, shape)
    va = torch.as_tensor(dataset.val_idx[:validation])
    xv = adapt_images(dataset.x[va], shape)
    return (np.ascontiguousarray(rep.numpy(), dtype=np.float32), np.ascontiguousarray(xv.numpy(), dtype=np.float32),
            dataset.y[va].numpy())
