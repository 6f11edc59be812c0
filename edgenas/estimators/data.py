"""Shared plumbing of data-dependent estimators: which dataset, and which task the network is built for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgenas.datasets import Dataset, load_dataset
from edgenas.errors import EdgenasError
from edgenas.spaces.base import Task

if TYPE_CHECKING:
    from edgenas.spaces.base import SearchSpace

DEFAULT_DATASET = "digits"
SPLIT_SEED = 0
"""Datasets named by a string are split with this seed, so every estimator sees the same split."""

_LOADED: dict[str, Dataset] = {}


def resolve_dataset(dataset: str | Dataset | None) -> Dataset:
    """A :class:`Dataset` from an object, a source string (loaded once per process) or None (digits)."""
    if isinstance(dataset, Dataset):
        return dataset
    source = DEFAULT_DATASET if dataset is None else str(dataset)
    if source not in _LOADED:
        _LOADED[source] = load_dataset(source, seed=SPLIT_SEED)
    return _LOADED[source]


def data_task(space: SearchSpace, task: Task | None, ds: Dataset) -> Task:
    """The task a network is built for when it sees ``ds``: the dataset's class count (unless the task
    sets one, which must cover every label) and channels (unless the task sets them; a one-channel
    dataset is then repeated across channels)."""
    if task is None:
        return Task(num_classes=ds.num_classes, in_channels=ds.channels)
    classes = task.num_classes or ds.num_classes
    if classes < ds.num_classes:
        raise EdgenasError(f"dataset {ds.name!r} has {ds.num_classes} classes but the task has {classes}")
    if task.in_channels != ds.channels and ds.channels != 1:
        raise EdgenasError(f"dataset {ds.name!r} has {ds.channels} channels but the task has {task.in_channels}; "
                           f"pass --in-channels {ds.channels}")
    return Task(num_classes=classes, in_channels=task.in_channels, resolution=task.resolution)
