"""Helpers for the export tests: one small *trained* model per image space, exported once per session.

Random-init networks give near-constant logits, so int8 parity on them means nothing; each model here is
trained briefly (digits for ``tiny``, seeded synthetic images elsewhere) at a small resolution, which
keeps the litert-torch conversions (the slow part) to one per space and format.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from edgenas.datasets import load_dataset
from edgenas.estimators.data import data_task
from edgenas.exporters import Artifact, ExportJob, ExportOptions, exporter_names, get_exporter
from edgenas.exporters.weights import export_data, train_final
from edgenas.spaces import ArchSpec, SearchSpace, Task, get_space

SYNTHETIC = "synthetic:n=320,classes=4,channels=3,size=32,noise=0.5"
"""Easy enough to learn in two short epochs: a model near chance has near-tied logits, and int8 parity
on it would measure ties, not quantization. 320 images: 256 to train, 64 to verify on (so a 98% top-1
agreement allows one flip)."""
# space -> (space options, arch (None: seeded sample at the given resolution), dataset, epochs)
MODELS: dict[str, tuple[dict, str | None, str, int]] = {
    "tiny": ({"resolutions": [32]}, None, "digits", 3),
    "mbv3": ({"widths": [1.0]}, "mbv3:w1.0:r96:k3e3-k3e3_k5e3-k3e3_k3e3-k3e3_k3e3-k3e3_k5e3-k3e3", SYNTHETIC, 2),
    "nb201": ({}, "nb201:c3-c1-c3-avg-skip-c3", SYNTHETIC, 2),
    "fbnet": ({}, None, SYNTHETIC, 2),
    "proxyless": ({"resolutions": [96]}, None, SYNTHETIC, 2),
}
TRAIN = {"lr": 0.05, "batch_size": 16}
IMAGE_SPACES = list(MODELS)


@dataclass
class Trained:
    space: SearchSpace
    spec: ArchSpec
    task: Task
    job: ExportJob


@functools.cache
def trained(space_name: str) -> Trained:
    opts, arch, data, epochs = MODELS[space_name]
    space = get_space(space_name, **opts)
    spec = space.parse(arch) if arch else space.sample(1, seed=7)[0]
    ds = load_dataset(data, seed=0)
    task = data_task(space, Task(in_channels=ds.channels), ds)
    torch.manual_seed(0)
    model = train_final(space, spec, task, ds, epochs, seed=0, hparams=TRAIN).module
    rep, vx, vy = export_data(ds, space.input_shape(spec, task), seed=0, representative=64, validation=200)
    return Trained(space, spec, task, ExportJob(model, space.input_shape(spec, task), rep, vx, vy,
                                                ExportOptions(measure_latency=False)))


_EXPORTED: dict[tuple[str, str], Artifact] = {}


def exported(space_name: str, fmt: str, out_root: Path) -> Artifact:
    """The artifact of ``fmt`` for the space's trained model (exported once per session)."""
    key = (space_name, fmt)
    if key not in _EXPORTED:
        t = trained(space_name)
        _EXPORTED[key] = get_exporter(fmt).export(t.job, out_root / space_name)
    return _EXPORTED[key]


def formats() -> list[str]:
    return exporter_names()
