"""Composite estimators: a rank-average ensemble and a cheap filter in front of an expensive estimator.

Both need to compare a spec with *other* specs. ``pool="reference"`` (the default) compares it with a
fixed, seeded reference sample of the space (``reference`` specs drawn with the estimator seed), so a
spec's score does not depend on what else is in the batch: it is cacheable, batch == single holds, and
it works one trial at a time inside a search. ``pool="batch"`` compares it with the other specs of the
same :meth:`~edgenas.estimators.base.Estimator.estimate_many` call (the zero-cost literature's
"rank among the candidates"); such scores are not cached and a batch of one is its own pool.

The reference sample's cost is a one-off overhead: it is counted in ``seconds_total`` and
``overhead_seconds``, not in any spec's ``seconds``. A spec's ``seconds`` is the sum of its members'
(what the members' estimates of that spec cost, cached or not).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edgenas.errors import EdgenasError
from edgenas.estimators.base import (
    WORST_SCORE,
    Estimate,
    Estimator,
    SearchParticipant,
    as_name_list,
    build_member,
    register_estimator,
)

if TYPE_CHECKING:
    from edgenas.datasets import Dataset
    from edgenas.spaces.base import ArchSpec, SearchSpace, Task

POOLS = ("reference", "batch")
STRATIFIED_REFERENCE = 128
"""Reference candidates a filter compares with inside a search when it can stratify by cost (it then
compares each candidate with the 16 nearest in cost)."""


def _check_pool(pool: str, reference: int) -> None:
    if pool not in POOLS:
        raise EdgenasError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
    if pool == "reference" and (not isinstance(reference, int) or reference < 2):
        raise EdgenasError(f"reference must be an integer >= 2, got {reference!r}")


def percentile(sorted_ref: np.ndarray, value: float) -> float:
    """Mid-rank empirical CDF of ``value`` in a sorted reference sample, in [0, 1]."""
    lo = np.searchsorted(sorted_ref, value, side="left")
    hi = np.searchsorted(sorted_ref, value, side="right")
    return float((lo + hi) / (2.0 * len(sorted_ref)))


@register_estimator
class RankEnsemble(Estimator, SearchParticipant):
    """Average of the members' ranks (as fractions in [0, 1]); higher is better.

    With ``pool="reference"`` a member's rank of a spec is its mid-rank percentile among the member's
    scores of the reference sample; with ``pool="batch"`` its average rank within the batch divided by
    the batch size. A spec that any member scores :data:`WORST_SCORE` (degenerate) scores
    :data:`WORST_SCORE`.
    """

    name = "ensemble"
    summary = "rank-average ensemble of member estimators (option members=a,b,...)"

    def __init__(
        self, space: SearchSpace, task: Task | None = None, seed: int = 0,
        members: str | list[str] = "synflow,naswot", pool: str = "reference", reference: int = 32,
        dataset: str | Dataset | None = None, batch_size: int | None = None,
        member_options: dict[str, dict[str, Any]] | None = None, torch_device: str | None = None,
        weights: str | None = None,
    ) -> None:
        """``members``: estimator names; ``member_options``: per-member options by name; ``dataset``,
        ``batch_size``, ``torch_device`` and ``weights`` (e.g. a supernet's) go to the members that take
        them; ``pool``/``reference``: see the module doc."""
        super().__init__(space, task, seed)
        names = as_name_list(members)
        if len(set(names)) != len(names):
            raise EdgenasError(f"{self.name}: duplicate members in {names}")
        _check_pool(pool, reference)
        extra = set(member_options or {}) - set(names)
        if extra:
            raise EdgenasError(f"{self.name}: member_options for non-members {sorted(extra)}")
        shared = {"dataset": dataset, "batch_size": batch_size, "torch_device": torch_device, "weights": weights}
        self.members = [build_member(n, space, task, seed, shared, (member_options or {}).get(n)) for n in names]
        self.pool = pool
        self.reference = reference
        self.batch_dependent = pool == "batch"
        self.seeded = any(m.seeded for m in self.members)
        self.needs_data = any(m.needs_data for m in self.members)
        self.overhead_seconds = 0.0
        self.reference_pool: list[ArchSpec] | None = None
        self._ref: list[np.ndarray] | None = None

    def reference_specs(self) -> list[ArchSpec]:
        """The reference sample: ``reference_pool`` when a caller set one (a search sets the candidates
        that meet its budgets), else ``reference`` seeded draws from the space."""
        return list(self.reference_pool) if self.reference_pool else self.space.sample(self.reference, self.seed)

    def reference_size(self, stratified: bool) -> int:
        return self.reference if self.pool == "reference" else 0

    def use_reference(self, specs: Sequence[ArchSpec],
                      stratify: Callable[[ArchSpec], Sequence[float]] | None = None) -> None:
        self.reference_pool = list(specs)
        self._ref = None

    def _calibrate(self) -> list[np.ndarray]:
        if self._ref is None:
            t0 = time.perf_counter()
            specs = self.reference_specs()
            self._ref = [np.sort(np.asarray(m.score_many(specs), dtype=float)) for m in self.members]
            self.overhead_seconds += time.perf_counter() - t0
        return self._ref

    def _compute_many(self, specs: list[ArchSpec]) -> list[Estimate]:
        per_member = [m.estimate_many(specs) for m in self.members]
        scores = np.array([[e.score for e in ests] for ests in per_member], dtype=float)  # members x specs
        degenerate = np.any(scores == WORST_SCORE, axis=0)
        if self.pool == "reference":
            ref = self._calibrate()
            ranks = np.array([[percentile(ref[i], v) for v in row] for i, row in enumerate(scores)])
        else:
            from scipy.stats import rankdata  # scipy.stats costs ~1 s to import: only when ranking

            ranks = np.array([rankdata(row, method="average") / len(row) for row in scores])
        out = []
        for j, spec in enumerate(specs):
            col = [ests[j] for ests in per_member]
            value = WORST_SCORE if degenerate[j] else float(ranks[:, j].mean())
            out.append(Estimate(str(spec), value, sum(e.seconds for e in col),
                                sum(e.epochs for e in col), sum(e.samples for e in col)))
        return out


@register_estimator
class CheapFilter(Estimator, SearchParticipant):
    """Score with ``cheap`` first; only the top ``keep`` fraction is scored with ``expensive``.

    With ``pool="reference"`` a spec passes when its cheap score reaches the (1 - keep) quantile of the
    cheap scores of the reference sample; with ``pool="batch"`` the top ceil(keep * n) specs of the
    batch pass (ties broken by canonical string). A passing spec gets the expensive score and the cost
    of both (and the expensive estimate's metrics); a filtered-out (or degenerate) spec gets
    :data:`WORST_SCORE` — not its cheap rank, because cheap and expensive scores are on different
    scales — and the cost of the cheap estimate only.
    """

    name = "filter"
    summary = "cheap estimator keeps the top fraction, the expensive one scores it (cheap=, expensive=, keep=)"

    def __init__(
        self, space: SearchSpace, task: Task | None = None, seed: int = 0,
        cheap: str = "synflow", expensive: str = "train", keep: float = 0.25, pool: str = "reference",
        reference: int = 32, dataset: str | Dataset | None = None,
        cheap_options: dict[str, Any] | None = None, expensive_options: dict[str, Any] | None = None,
        torch_device: str | None = None, weights: str | None = None,
    ) -> None:
        """``cheap``/``expensive``: estimator names with their ``*_options``; ``dataset``, ``torch_device``
        and ``weights`` (e.g. ``supernet>train`` with the supernet's checkpoint) go to those that take
        them; ``keep`` in (0, 1]; ``pool``/``reference``: see the module doc."""
        super().__init__(space, task, seed)
        if not isinstance(keep, (int, float)) or not 0.0 < float(keep) <= 1.0:
            raise EdgenasError(f"{self.name}: keep must be in (0, 1], got {keep!r}")
        _check_pool(pool, reference)
        shared = {"dataset": dataset, "torch_device": torch_device, "weights": weights}
        self.cheap = build_member(cheap, space, task, seed, shared, cheap_options)
        self.expensive = build_member(expensive, space, task, seed, shared, expensive_options)
        self.keep = float(keep)
        self.pool = pool
        self.reference = reference
        self.batch_dependent = pool == "batch"
        self.seeded = self.cheap.seeded or self.expensive.seeded
        self.needs_data = self.cheap.needs_data or self.expensive.needs_data
        self.overhead_seconds = 0.0
        self.reference_pool: list[ArchSpec] | None = None
        """Set by a caller (a search: the candidates meeting its budgets) to replace the seeded sample."""
        self.stratify: Callable[[ArchSpec], Sequence[float]] | None = None
        """Set by a caller to compare a spec only with the reference specs of similar cost (a search:
        its cheap objectives). Proxies like synflow grow with model size, so one global threshold
        would filter out every small model and with it the cheap end of a Pareto front."""
        self.neighbours = 16
        self._threshold: float | None = None
        self._strata: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def reference_size(self, stratified: bool) -> int:
        if self.pool != "reference":
            return 0
        return max(self.reference, STRATIFIED_REFERENCE if stratified else 0)

    def use_reference(self, specs: Sequence[ArchSpec],
                      stratify: Callable[[ArchSpec], Sequence[float]] | None = None) -> None:
        self.reference_pool = list(specs)
        self.stratify = stratify
        self._threshold = None
        self._strata = None

    def screen(self) -> Callable[[ArchSpec], bool] | None:
        return self.passes if self.pool == "reference" else None

    def _stratified_pass(self, spec: ArchSpec, score: float) -> bool:
        """Does ``score`` reach the (1 - keep) quantile of the cheap scores of the ``neighbours``
        reference specs nearest to ``spec`` in ``stratify`` space (each axis scaled by its spread)?"""
        assert self.stratify is not None
        if self._strata is None:
            t0 = time.perf_counter()
            pool = list(self.reference_pool) if self.reference_pool else self.space.sample(self.reference, self.seed)
            scores = np.asarray(self.cheap.score_many(pool), dtype=float)
            keys = np.array([list(self.stratify(s)) for s in pool], dtype=float).reshape(len(pool), -1)
            keys, scores = keys[scores > WORST_SCORE], scores[scores > WORST_SCORE]
            center = np.median(keys, axis=0) if len(keys) else np.zeros(keys.shape[1])
            spread = (np.quantile(keys, 0.75, axis=0) - np.quantile(keys, 0.25, axis=0)) if len(keys) else center
            spread = np.where(spread > 0, spread, 1.0)
            self._strata = ((keys - center) / spread, scores, center, spread)
            self.overhead_seconds += time.perf_counter() - t0
        keys, scores, center, spread = self._strata
        if not len(scores):
            return True
        k = (np.asarray(list(self.stratify(spec)), dtype=float) - center) / spread
        near = np.argsort(np.linalg.norm(keys - k, axis=1), kind="stable")[: self.neighbours]
        return bool(score >= np.quantile(scores[near], 1.0 - self.keep))

    def provides(self) -> tuple[str, ...]:
        """The expensive member's metrics: a passing spec carries them (a filtered-out one has none)."""
        return self.expensive.provides()

    def threshold(self) -> float:
        """The cheap score a spec must reach (reference pool), computed once."""
        if self._threshold is None:
            t0 = time.perf_counter()
            pool = list(self.reference_pool) if self.reference_pool else self.space.sample(self.reference, self.seed)
            ref = np.asarray(self.cheap.score_many(pool), dtype=float)
            finite = ref[ref > WORST_SCORE]
            self._threshold = float(np.quantile(finite, 1.0 - self.keep)) if len(finite) else math.inf
            self.overhead_seconds += time.perf_counter() - t0
        return self._threshold

    def passes(self, spec: ArchSpec) -> bool:
        """Would ``spec`` pass the cheap stage (reference pool only)? The cheap score is cached, so a
        search can screen candidates before proposing them and the later estimate reuses it."""
        if self.pool != "reference":
            raise EdgenasError(f"{self.name}: only pool='reference' can screen a single spec")
        score = self.cheap.estimate(spec).score
        if score == WORST_SCORE:
            return False
        if self.stratify is not None:
            return self._stratified_pass(spec, score)
        return score >= self.threshold()

    def _compute_many(self, specs: list[ArchSpec]) -> list[Estimate]:
        cheap = self.cheap.estimate_many(specs)
        if self.pool == "reference" and self.stratify is not None:
            passed = [c.score > WORST_SCORE and self._stratified_pass(s, c.score) for s, c in zip(specs, cheap)]
        elif self.pool == "reference":
            thr = self.threshold()
            passed = [c.score > WORST_SCORE and c.score >= thr for c in cheap]
        else:
            n_keep = math.ceil(self.keep * len(specs))
            order = sorted(range(len(specs)), key=lambda i: (-cheap[i].score, cheap[i].arch))
            top = {i for i in order[:n_keep] if cheap[i].score > WORST_SCORE}
            passed = [i in top for i in range(len(specs))]
        chosen = [s for s, p in zip(specs, passed) if p]
        expensive = iter(self.expensive.estimate_many(chosen)) if chosen else iter(())
        out = []
        for spec, c, p in zip(specs, cheap, passed):
            if p:
                e = next(expensive)
                out.append(Estimate(str(spec), e.score, c.seconds + e.seconds, e.epochs, e.samples, dict(e.metrics)))
            else:
                out.append(Estimate(str(spec), WORST_SCORE, c.seconds))
        return out
