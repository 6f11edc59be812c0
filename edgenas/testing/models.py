"""One small *trained* model per image space, exported once per process per format (for exporter tests).

Random-init networks give near-constant logits, so int8 parity on them means nothing; each model here is
trained briefly (digits for ``tiny``, seeded synthetic images elsewhere) at a small resolution, which
keeps the conversions (litert-torch: the slow part) to one per space and format in a test session.

A plug-in space gets a model by adding its recipe to :data:`MODELS` (``add_model``) before the tests use
it; a plug-in exporter is tested on the recipes of the spaces its contract names.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgenas.exporters import Artifact, ExportJob, ExportOptions, exporter_names, get_exporter
from edgenas.exporters.metadata import ModelInfo
from edgenas.spaces import ArchSpec, SearchSpace, Task

SYNTHETIC = "synthetic:n=320,classes=4,channels=3,size=32,noise=0.5"
"""Easy enough to learn in two short epochs: a model near chance has near-tied logits, and int8 parity
on it would measure ties, not quantization. 320 images: 256 to train, 64 to verify on (so a 98% top-1
agreement allows one flip)."""

MODELS: dict[str, tuple[dict[str, Any], str | None, str, int]] = {
    "tiny": ({"resolutions": [32]}, None, "digits", 3),
    "mbv3": ({"widths": [1.0]}, "mbv3:w1.0:r96:k3e3-k3e3_k5e3-k3e3_k3e3-k3e3_k3e3-k3e3_k5e3-k3e3", SYNTHETIC, 2),
    "nb201": ({"cells_per_stage": 2}, "nb201:c3-c1-c3-avg-skip-c3", SYNTHETIC, 2),
    "fbnet": ({}, "fbnet:cifar100:k3e1-k3e1g2-skip-skip-skip-k3e3-skip-skip-skip-k3e6-skip-skip-skip-k5e1-k5e1g2-"
                  "skip-skip-skip-k5e3-skip-skip-k5e6", SYNTHETIC, 2),
    "proxyless": ({"resolutions": [96]}, "proxyless:w1.0:r96:k3e3-k5e6_k7e3_k3e6-k5e3_k7e6_k5e3-k3e3_k3e6", SYNTHETIC,
                  2),
}
"""space -> (space options, arch (None: a seeded sample), dataset, training epochs). Each arch holds every
kind of block of its space at least once and no more blocks than that needs, because training and the
litert-torch conversion grow with the block count: ``nb201`` keeps 2 cells per stage (7 cells, not 17;
each cell holds every op of the arch, the reduction blocks are unchanged); ``fbnet`` has each of its 9
block types once (a ``skip`` on every other layer: the identity, and the 1x1 projection where the stage
changes width); ``proxyless`` has every kernel and expand ratio at 1-2 blocks a stage (residual blocks
where a stage has 2)."""
TRAIN = {"lr": 0.05, "batch_size": 16}
IMAGE_SPACES = list(MODELS)
"""edgenas' own image spaces (the built-in exporter suite runs over each)."""


def add_model(space_name: str, options: dict[str, Any] | None = None, arch: str | None = None,
              data: str = SYNTHETIC, epochs: int = 2) -> None:
    """Give a (plug-in) space a trained test model: ``options`` of the space, the arch (None: a seeded
    sample), the dataset and the training epochs. Keep the resolution small: conversions are the slow
    part."""
    MODELS[space_name] = (dict(options or {}), arch, data, int(epochs))


@dataclass
class Trained:
    """A trained model of one space and the export job built from it."""

    space: SearchSpace
    spec: ArchSpec
    task: Task
    job: ExportJob


@functools.cache
def trained(space_name: str) -> Trained:
    """The space's trained model (trained once per process; see :data:`MODELS`)."""
    import torch

    from edgenas.datasets import load_dataset
    from edgenas.estimators.data import data_task
    from edgenas.exporters.weights import export_data, train_final
    from edgenas.spaces import get_space

    if space_name not in MODELS:
        raise KeyError(f"no test model for space {space_name!r}; add one with edgenas.testing.models.add_model")
    opts, arch, data, epochs = MODELS[space_name]
    space = get_space(space_name, **opts)
    spec = space.parse(arch) if arch else space.sample(1, seed=7)[0]
    ds = load_dataset(data, seed=0)
    task = data_task(space, Task(in_channels=ds.channels), ds)
    torch.manual_seed(0)
    model = train_final(space, spec, task, ds, epochs, seed=0, hparams=TRAIN, torch_device="cpu").module
    rep, vx, vy = export_data(ds, space.input_shape(spec, task), seed=0, representative=64, validation=200)
    info = ModelInfo(str(spec), space.name, ds.preprocessing(), tuple(ds.class_names))
    return Trained(space, spec, task, ExportJob(model, space.input_shape(spec, task), rep, vx, vy,
                                                ExportOptions(measure_latency=False), info=info))


_EXPORTED: dict[tuple[str, str], Artifact] = {}
_ROOT: list[Path] = []


def _default_root() -> Path:
    """A process-wide temporary folder for exports, removed at exit."""
    if not _ROOT:
        root = Path(tempfile.mkdtemp(prefix="edgenas-testing-exports-"))
        atexit.register(shutil.rmtree, root, True)
        _ROOT.append(root)
    return _ROOT[0]


def exported(space_name: str, fmt: str, out_root: Path | None = None) -> Artifact:
    """The artifact of format ``fmt`` for the space's trained model, exported once per process (under
    ``out_root``/<space> the first time it is asked for; a process-wide temporary folder by default)."""
    key = (space_name, fmt)
    if key not in _EXPORTED:
        t = trained(space_name)
        root = Path(out_root) if out_root is not None else _default_root()
        _EXPORTED[key] = get_exporter(fmt).export(t.job, root / space_name)
    return _EXPORTED[key]


def formats() -> list[str]:
    """Every registered export format (edgenas' own and plug-ins')."""
    return exporter_names()
