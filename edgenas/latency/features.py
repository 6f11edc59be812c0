"""Named per-spec features for the non-additive part of a device model.

A table's device model may carry ``terms``: a coefficient in ms for each named feature. Prediction
adds ``sum(coef * feature(space, spec, task))`` to the affine part. Features are registered here by
name so that a table stays plain JSON (the name, never code) and loads anywhere.
"""

from __future__ import annotations

from collections.abc import Callable

from edgenas.errors import EdgenasError
from edgenas.spaces import ArchSpec, SearchSpace, Task

Feature = Callable[[SearchSpace, ArchSpec, "Task | None"], float]
FEATURES: dict[str, Feature] = {}


def register_feature(name: str) -> Callable[[Feature], Feature]:
    def deco(fn: Feature) -> Feature:
        FEATURES[name] = fn
        return fn

    return deco


def spec_features(names: list[str], space: SearchSpace, spec: ArchSpec, task: Task | None = None) -> dict[str, float]:
    out = {}
    for n in names:
        if n not in FEATURES:
            raise EdgenasError(f"latency table uses unknown feature {n!r}; known: {', '.join(sorted(FEATURES))}")
        out[n] = float(FEATURES[n](space, spec, task))
    return out


@register_feature("n_units")
def _n_units(space: SearchSpace, spec: ArchSpec, task: Task | None) -> float:
    return float(len(space.units(spec, task)))


@register_feature("macs_m")
def _macs_m(space: SearchSpace, spec: ArchSpec, task: Task | None) -> float:
    """Million MACs (analytic)."""
    return space.cost(spec, task).macs / 1e6
