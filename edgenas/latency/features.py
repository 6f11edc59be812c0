"""Named per-spec features for the non-additive part of a device model.

A table's device model may carry ``terms``: a coefficient in ms for each named feature. Prediction
adds ``sum(coef * feature(space, spec, task))`` to the affine part. Features are registered here by
name so that a table stays plain JSON (the name, never code) and loads anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from edgenas.errors import EdgenasError
from edgenas.registry import GROUPS, Registry
from edgenas.spaces import ArchSpec, SearchSpace, Task

Feature = Callable[[SearchSpace, ArchSpec, "Task | None"], float]


def _check_feature(name: str, obj: Any) -> None:
    if not callable(obj):
        raise EdgenasError(f"latency feature plug-in {name!r} must be a function (space, spec, task) -> float")


FEATURES: Registry[Feature] = Registry("latency feature", GROUPS["latency feature"], check=_check_feature)
"""Named features a device model's ``terms`` may use (edgenas' own are defined below; more through the
``edgenas.latency_features`` entry points)."""


def register_feature(name: str) -> Callable[[Feature], Feature]:
    def deco(fn: Feature) -> Feature:
        return FEATURES.register(fn, name=name)

    return deco


def spec_features(names: list[str], space: SearchSpace, spec: ArchSpec, task: Task | None = None) -> dict[str, float]:
    out = {}
    for n in names:
        if n not in FEATURES:
            raise EdgenasError(f"latency table uses unknown feature {n!r}; known: {', '.join(FEATURES.names())}")
        out[n] = float(FEATURES.get(n)(space, spec, task))
    return out


@register_feature("n_units")
def _n_units(space: SearchSpace, spec: ArchSpec, task: Task | None) -> float:
    return float(len(space.units(spec, task)))


@register_feature("macs_m")
def _macs_m(space: SearchSpace, spec: ArchSpec, task: Task | None) -> float:
    """Million MACs (analytic)."""
    return space.cost(spec, task).macs / 1e6


@register_feature("unit_io_melems")
def _unit_io_melems(space: SearchSpace, spec: ArchSpec, task: Task | None) -> float:
    """Million activation elements crossing unit boundaries: each unit's input plus output, summed.

    An isolated micro-model pays for its boundary (the input copy, reorders to and from the runtime's
    blocked layout) on every call; inside a whole network those tensors stay put. The calibration prices
    this per element (a negative coefficient), which plain ``scale`` and ``per_unit`` cannot: it grows
    with activation size, not with compute or unit count."""
    total = 0
    for u in space.units(spec, task):
        c, h, w = u.out_shape
        total += u.cin * max(u.hw, 1) ** 2 + c * max(h, 1) * max(w, 1)
    return total / 1e6


# -- NB201 exporter-folding features (used by ``edgenas lut fit``) ------------------------------
# ``NB201CellLayer.units`` keeps only live edge ops: the ones a constant-folding exporter runs. Real
# exports fold less. These features count, over the whole network, the cell ops ``units`` prunes, by
# the reason they are dead, so a device model fitted on end-to-end times can price what a given
# exporter actually leaves in the graph (HW-NAS-Bench's TFLite NB201 nets, for one, still compute ops
# applied to all-zero nodes). Every value is a deterministic function of the spec's six edge ops.
def _nb201_dead_counts(space: SearchSpace, spec: ArchSpec, task: Task | None) -> dict[str, float]:
    from edgenas.spaces.nb201 import NB201Spec

    if not isinstance(spec, NB201Spec):
        raise EdgenasError(f"nb201 features need an nb201 spec, got a {spec.space!r} spec")
    cells = _nb201_cells(space, task)
    return {k: cells * v for k, v in _nb201_cell_dead_counts(spec.ops).items()}


@lru_cache(maxsize=64)
def _nb201_cells(space: SearchSpace, task: Task | None) -> int:
    """Number of cells in the network (the same for every spec of a space instance and task)."""
    from edgenas.spaces.nb201 import NB201CellLayer, NB201Spec

    probe = NB201Spec(ops=("skip",) * 6)
    return sum(isinstance(layer, NB201CellLayer) for layer in space.layers(probe, task))


@lru_cache(maxsize=1 << 15)
def _nb201_cell_dead_counts(ops: tuple[str, ...]) -> dict[str, float]:
    """Per-cell counts of pruned ops by class (see the feature docstrings)."""
    from edgenas.spaces.nb201 import EDGES

    live_in = {0: True}
    for j in (1, 2, 3):
        live_in[j] = any(live_in[f] and op != "none" for (t, f), op in zip(EDGES, ops) if t == j)
    reaches = {3: True}
    for j in (2, 1, 0):
        reaches[j] = any(reaches[t] and op != "none" for (t, f), op in zip(EDGES, ops) if f == j)
    has_zero = {j: any(op == "none" for (t, _), op in zip(EDGES, ops) if t == j) for j in (1, 2, 3)}
    out = {f"{cls}_{op}": 0.0 for cls in ("const_in", "dead_zero", "dead") for op in ("c1", "c3", "avg", "add")}
    for j in (1, 2, 3):
        terms = [(f, op) for (t, f), op in zip(EDGES, ops) if t == j and op != "none"]
        if reaches[j]:
            const = [op for f, op in terms if not live_in[f]]
            for op in const:
                if op != "skip":
                    out[f"const_in_{op}"] += 1
            # additions the live-unit list omits: the node's sum minus those over live summands
            n_live = len(terms) - len(const)
            out["const_in_add"] += max(0, len(terms) - 1) - (max(0, n_live - 1) if live_in[j] else 0)
            continue
        cls = "dead_zero" if has_zero[j] else "dead"
        for _, op in terms:
            if op != "skip":
                out[f"{cls}_{op}"] += 1
        out[f"{cls}_add"] += max(0, len(terms) - 1)
    return out


def _register_nb201_dead(cls: str, op: str, doc: str) -> None:
    name = f"nb201_{cls}_{op}"

    def feature(space: SearchSpace, spec: ArchSpec, task: Task | None) -> float:
        return _nb201_dead_counts(space, spec, task)[f"{cls}_{op}"]

    feature.__doc__ = doc
    feature.__name__ = name
    register_feature(name)(feature)


for _cls, _what in (
    ("const_in", "ops whose result reaches the cell output but whose input is a constant (all-zero) node"),
    ("dead_zero", "ops into a node that never reaches the output but sums a zero ('none') edge"),
    ("dead", "ops into a node that never reaches the output (no zero summand)"),
):
    for _op in ("c1", "c3", "avg", "add"):
        _register_nb201_dead(_cls, _op, f"NB201, network total: {_op} {_what}.")


@register_feature("nb201_disconnected")
def _nb201_disconnected(space: SearchSpace, spec: ArchSpec, task: Task | None) -> float:
    """NB201: 1 when the cell output does not depend on its input (an exporter may fold the whole net)."""
    from edgenas.spaces.nb201 import NB201Spec

    if not isinstance(spec, NB201Spec):
        raise EdgenasError(f"nb201 features need an nb201 spec, got a {spec.space!r} spec")
    return 0.0 if spec.is_connected else 1.0
