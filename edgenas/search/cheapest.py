"""Before a search: the cheapest member of the space for each budget, and a first feasible candidate.

An impossible budget is a user error caught before any trial runs ("no tiny architecture meets
latency_ms <= 0.01 on local-cpu-ort; the fastest is 0.031 ms"). Spaces that can list their members
(``nb201``: 15,625 cells) are searched exhaustively. Elsewhere a best-improvement coordinate descent
over the space's choices runs from the cheapest specs of a seeded sample: every cost in edgenas is a
sum (or max) of per-block terms, each block's choices act independently, so single-choice moves
reach the minimum; several starts guard against the coupling through width and resolution.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgenas.errors import EdgenasError
from edgenas.search.fields import Budget, format_value
from edgenas.search.oracle import CostOracle
from edgenas.spaces import ArchSpec
from edgenas.spaces.params import ReplayTrial, param_choices

ENUMERATE_LIMIT = 20000


@dataclass(frozen=True)
class Extreme:
    """The best value of one field over the space, and a spec that reaches it."""

    value: float
    spec: ArchSpec
    exhaustive: bool


def neighbours(oracle: CostOracle, spec: ArchSpec, rng: random.Random) -> list[ArchSpec]:
    """Every spec one choice away from ``spec`` (choices a new block needs are drawn)."""
    space = oracle.space
    params = space.trial_params(spec)
    out = []
    for name, choices in param_choices(space, spec).items():
        for value in choices:
            if params.get(name) != value:
                out.append(space.suggest(ReplayTrial({**params, name: value}, rng)))  # type: ignore[arg-type]
    return out


def minimise(
    oracle: CostOracle, score: Callable[[dict[str, float]], float], seed: int = 0,
    starts: int = 3, sample: int = 256, steps: int = 200,
) -> Extreme:
    """The spec minimising ``score(record)`` (exhaustive when the space lists its members)."""
    space = oracle.space
    if hasattr(space, "all_specs") and space.size() <= ENUMERATE_LIMIT:
        specs = space.all_specs()  # type: ignore[attr-defined]
        values = [score(r) for r in oracle.records(specs)]
        i = min(range(len(specs)), key=values.__getitem__)
        return Extreme(values[i], specs[i], True)
    rng = random.Random(seed)
    pool = space.sample(sample, seed)
    ranked = sorted(zip((score(r) for r in oracle.records(pool)), range(len(pool))))
    best: tuple[float, ArchSpec] | None = None
    for value, i in ranked[:starts]:
        current, current_value = pool[i], value
        for _ in range(steps):
            cand = neighbours(oracle, current, rng)
            if not cand:
                break
            vals = [score(r) for r in oracle.records(cand)]
            j = min(range(len(cand)), key=vals.__getitem__)
            if vals[j] >= current_value:
                break
            current, current_value = cand[j], vals[j]
        if best is None or current_value < best[0]:
            best = (current_value, current)
    assert best is not None
    return Extreme(best[0], best[1], False)


def _what(budget: Budget) -> tuple[str, str]:
    base = budget.field.base
    if base == "latency_ms":
        return ("fastest", "takes")
    if base in ("macs",):
        return ("cheapest", "needs")
    return ("smallest", "needs") if budget.upper else ("largest", "has")


def check_consistent(budgets: Sequence[Budget]) -> None:
    """Budgets on one field that no value can meet together (``macs<=5M`` and ``macs>=10M``) are an
    impossible budget: an :class:`EdgenasError` before any trial runs."""
    by_field: dict[str, list[Budget]] = {}
    for b in budgets:
        by_field.setdefault(b.field.name, []).append(b)
    for group in by_field.values():
        uppers = [b for b in group if b.upper]
        lowers = [b for b in group if not b.upper]
        if uppers and lowers:
            hi = min(uppers, key=lambda b: b.limit)
            lo = max(lowers, key=lambda b: b.limit)
            if lo.limit > hi.limit:
                raise EdgenasError(f"budgets {lo.describe()} and {hi.describe()} contradict each other: no "
                                   f"architecture meets both; drop or relax one")


def check_budgets(oracle: CostOracle, budgets: Sequence[Budget], seed: int = 0) -> dict[str, Extreme]:
    """The extreme of each cheap budget's field; an unreachable or self-contradictory budget raises
    :class:`EdgenasError`."""
    check_consistent(budgets)
    out = {}
    name = oracle.space.name
    for b in budgets:
        if not b.field.cheap:
            continue
        sign = 1.0 if b.upper else -1.0
        ext = minimise(oracle, lambda r, f=b.field.name, s=sign: s * r[f], seed)
        value = sign * ext.value
        out[str(b)] = Extreme(value, ext.spec, ext.exhaustive)
        if not b.met(value):
            where = f" on {b.field.device}" if b.field.device else ""
            adjective, _ = _what(b)
            op = "<=" if b.upper else ">="
            found = "" if ext.exhaustive else " found"
            raise EdgenasError(
                f"no {name} architecture meets {b.field.name} {op} {format_value(b.limit, b.field)}{where}; "
                f"the {adjective}{found} is {format_value(value, b.field)} ({ext.spec})"
            )
    return out


def first_feasible(oracle: CostOracle, extremes: dict[str, Extreme], seed: int = 0) -> ArchSpec | None:
    """A spec meeting every cheap budget at once (None if the descent on the summed violation from
    each budget's extreme finds none: the budgets are then very likely jointly impossible)."""
    if not oracle.budgets:
        return oracle.space.sample(1, seed)[0]
    starts = [e.spec for e in extremes.values()]
    for s in starts:
        if oracle.feasible(oracle.record(s)):
            return s
    rng = random.Random(seed)
    for start in starts:
        current, value = start, oracle.total_violation(oracle.record(start))
        for _ in range(200):
            cand = neighbours(oracle, current, rng)
            vals = [oracle.total_violation(r) for r in oracle.records(cand)]
            j = min(range(len(cand)), key=vals.__getitem__)
            if vals[j] >= value:
                break
            current, value = cand[j], vals[j]
            if value <= 0:
                return current
    return None
