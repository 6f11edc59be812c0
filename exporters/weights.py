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
from edgenas.estimators.training import train_and_evaluate
from edgenas.spaces.base import Task

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
    hparams: dict[str, Any] | None = None,
) -> TrainedModel:
    """Train ``spec`` from its per-spec-seeded initialisation on the whole training split."""
    if not isinstance(epochs, int) or epochs < 1:
        raise EdgenasError(f"--train-epochs must be an integer >= 1, got {epochs!r}")
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
                                 generator=torch.Generator().manual_seed(s), **hp)
    if not np.isfinite(res.accuracy):
        raise EdgenasError(f"training {spec} diverged (loss became NaN/inf); try a lower lr")
    model.eval()
    rec = {"source": "trained", "epochs": epochs, "train_examples": len(xt), "val_examples": len(xv),
           "seed": s, "hyperparameters": hp, "seconds": round(time.perf_counter() - t0, 3),
           "dataset": dataset.split_record()}
    return TrainedModel(model, shape, float(res.accuracy), rec, task.num_classes or 0)


def load_weights(
    space: SearchSpace, spec: ArchSpec, task: Task, path: Path, dataset: Dataset | None = None
) -> TrainedModel:
    """Build ``spec`` and load a state dict saved by :func:`save_weights` (or any matching one)."""
    model = space.build(spec, task)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise EdgenasError(f"cannot read weights {path}: {str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise EdgenasError(f"weights {path} do not fit {spec}: {str(exc).splitlines()[0]}") from None
    model.eval()
    shape = space.input_shape(spec, task)
    acc = None
    if dataset is not None:
        xv, yv = dataset.val(shape)
        with torch.no_grad():
            acc = float((model(xv).argmax(1) == yv).float().mean())
    return TrainedModel(model, shape, acc, {"source": "weights file", "path": str(path)}, task.num_classes or 0)


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
