"""The cheap side of a candidate: exact cost and table latency, known before any training.

:class:`CostOracle` computes every cheap field of a spec (the cost model's fields plus one latency per
device) once, caches it by canonical string, and checks the search's budgets. Samplers use it to keep
their proposals inside the budgets; the trial objective uses it to record infeasible candidates
without ever training them.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

from edgenas.search.fields import COST_FIELDS, Budget, Field
from edgenas.spaces import ArchSpec, CostReport, SearchSpace, Task


class LatencySource(Protocol):
    """Anything that predicts whole-network latency in ms: a device's :class:`LatencyPredictor`, a
    measured-latency CSV (:class:`~edgenas.latency.lookup.MeasuredLatency`)."""

    def predict_many(self, specs: Sequence[ArchSpec], task: Task | None = None) -> list[float]: ...


CACHE_SIZE = 1 << 18
DEPLOYED_FIELDS = ("size_bytes_fp32", "size_bytes_int8", "arena_bytes_tflm", "delegate_partitions_fp32",
                   "delegate_partitions_int8", "ops_off_delegate_fp32", "ops_off_delegate_int8")
"""Cost fields that come from emulating the deployed graph (about 1 ms a spec for the TFLM arena): a
candidate's record has them only when a budget or objective uses them; a trial's full record always."""


class CostOracle:
    """Cheap fields of candidates, cached. ``latency``: device name -> source, in the search's order;
    a single device's field is ``latency_ms``, several are ``latency_ms@<device>``."""

    def __init__(
        self, space: SearchSpace, task: Task | None, latency: dict[str, LatencySource],
        budgets: Sequence[Budget] = (), objectives: Sequence[Field] | None = None,
    ) -> None:
        self.space = space
        self.task = task
        self.latency = dict(latency)
        self.budgets = [b for b in budgets if b.field.cheap]
        used = {b.field.name for b in self.budgets} | {f.name for f in (objectives or ())}
        self._deployed = [f for f in DEPLOYED_FIELDS if objectives is None or f in used]
        self._cache: OrderedDict[str, dict[str, float]] = OrderedDict()
        self.lookups = 0

    def latency_field(self, device: str) -> str:
        return "latency_ms" if len(self.latency) == 1 else f"latency_ms@{device}"

    @property
    def fields(self) -> list[str]:
        return [*COST_FIELDS, *(self.latency_field(d) for d in self.latency)]

    def records(self, specs: Sequence[ArchSpec]) -> list[dict[str, float]]:
        """Cheap fields of each spec (cached; misses are computed together, latency in one batch)."""
        keys = [str(s) for s in specs]
        missing = {k: s for k, s in zip(keys, specs) if k not in self._cache}
        if missing:
            todo = list(missing.values())
            recs = [self._cost_fields(self.space.cost(s, self.task), self._deployed) for s in todo]
            for dev, source in self.latency.items():
                for rec, ms in zip(recs, source.predict_many(todo, self.task)):
                    rec[self.latency_field(dev)] = float(ms)
            for k, rec in zip(missing, recs):
                self._cache[k] = rec
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        self.lookups += len(keys)
        return [self._cache[k] if k in self._cache else self.records([s])[0] for k, s in zip(keys, specs)]

    def record(self, spec: ArchSpec) -> dict[str, float]:
        return self.records([spec])[0]

    def full_record(self, spec: ArchSpec) -> dict[str, float]:
        """Every cheap field of one spec (what a trial records), whatever the search uses."""
        rec = dict(self.record(spec))
        missing = [f for f in DEPLOYED_FIELDS if f not in rec]
        if missing:
            rec.update(self._cost_fields(self.space.cost(spec, self.task), missing))
        return rec

    @staticmethod
    def _cost_fields(cost: CostReport, deployed: Sequence[str]) -> dict[str, float]:
        rec: dict[str, float] = {f: getattr(cost, f) for f in COST_FIELDS if f not in DEPLOYED_FIELDS}
        rec.update({f: getattr(cost, f) for f in deployed})
        return rec

    def violations(self, rec: dict[str, float]) -> dict[str, float]:
        """Each cheap budget's relative violation (> 0 broken, <= 0 met), by the budget's text."""
        return {str(b): b.violation(rec[b.field.name]) for b in self.budgets}

    def feasible(self, rec: dict[str, float]) -> bool:
        return all(b.met(rec[b.field.name]) for b in self.budgets)

    def feasible_specs(self, specs: Sequence[ArchSpec]) -> list[ArchSpec]:
        return [s for s, r in zip(specs, self.records(specs)) if self.feasible(r)]

    def total_violation(self, rec: dict[str, float]) -> float:
        return sum(max(0.0, v) for v in self.violations(rec).values())

    def sample_feasible(
        self, n: int, rng: random.Random, seeds: Sequence[ArchSpec] = (), max_draws: int | None = None,
    ) -> list[ArchSpec]:
        """Up to ``n`` distinct feasible specs: uniform draws kept when they meet the budgets (a
        uniform sample of the feasible region), topped up, when the budgets are tight, by mutating
        feasible specs found so far and ``seeds`` (known feasible specs)."""
        out: dict[str, ArchSpec] = {}
        draws = max_draws if max_draws is not None else 20 * n
        batch = max(16, min(256, n))
        tried = 0
        while len(out) < n and tried < draws:
            specs = [self.space.random(rng) for _ in range(batch)]
            tried += batch
            for s in self.feasible_specs(specs):
                out.setdefault(str(s), s)
        pool = list(out.values()) or [s for s in seeds if self.feasible(self.record(s))]
        attempts = 0
        while len(out) < n and pool and attempts < 50 * n:
            kids = [self.space.mutate(rng.choice(pool), rng, rng.choice((0.05, 0.1, 0.2))) for _ in range(batch)]
            attempts += batch
            for s in self.feasible_specs(kids):
                if str(s) not in out:
                    out[str(s)] = s
                    pool.append(s)
        return list(out.values())[:n]


def finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))
