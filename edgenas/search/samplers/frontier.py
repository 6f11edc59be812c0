"""``frontier``: surrogate-assisted, budget-aware search that spends accuracy evaluations only where
the Pareto front can still move.

Each proposal batch:

1. fits a Gaussian process (:mod:`edgenas.search.surrogate`) to the accuracies evaluated so far, on
   the space's surrogate features (for ``nb201`` invariant to dead edges, so cells computing the same
   function share what was learned);
2. builds a candidate pool of specs that meet every budget and that no finished or running trial
   covers: the whole feasible space when it can be listed (``nb201``), otherwise uniform feasible
   draws plus mutations and crossovers of the current front, refined by mutating the best-scoring
   candidates again;
3. scores the pool by expected hypervolume improvement (:mod:`edgenas.search.acquisition`) — exact,
   because every objective but accuracy is known before evaluation — against the front of
   evaluated trials plus running trials at their predicted accuracy;
4. takes the ``batch`` best greedily, adding each pick to the front at its predicted accuracy
   (kriging believer) so a batch spreads along the front; when the estimator is a cheap filter in
   front of an expensive one, candidates the filter would reject are skipped (their cheap score is
   computed and cached, no trial is spent on them).

Before the model is fitted the first ``init`` proposals are uniform feasible specs. The median of
their accuracies is the accuracy reference (an evaluation only counts when it beats a typical
feasible candidate), unless ``reference`` names one. Reference for a cost objective: ``reference``,
else its budget, else the worst value in the pool. With one objective the acquisition is expected
improvement; with only cheap objectives no model is needed and the exact front is proposed.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.trial import FrozenTrial

from edgenas.search.acquisition import ehvi
from edgenas.search.fields import given_reference
from edgenas.search.pareto import nondominated
from edgenas.search.samplers.base import Observation, SearchContext, SpecSampler, minimised, register_sampler
from edgenas.search.samplers.evolution import rank_observations
from edgenas.search.surrogate import GPSurrogate
from edgenas.spaces import ArchSpec

if TYPE_CHECKING:
    from optuna.study import Study

ENUMERATE_LIMIT = 20000
SCREEN_LIMIT = 20
"""With a cheap filter, at most this many x batch candidates are screened out per batch."""
FEATURE_CACHE = 1 << 17


@register_sampler("frontier", "ours: GP surrogate + exact EHVI over feasible candidates (cost known, accuracy not)")
class FrontierSampler(SpecSampler):
    name = "frontier"

    def __init__(self, context: SearchContext, seed: int | None = None, init: int = 20, batch: int = 5,
                 pool: int = 2000, reference: dict[str, Any] | None = None) -> None:
        super().__init__(context, seed)
        if init < 2 or batch < 1 or pool < 10:
            raise ValueError("need init >= 2, batch >= 1, pool >= 10")
        self.init, self.batch, self.pool_size = init, batch, pool
        self.reference = {**context.reference, **(reference or {})}
        self._features: OrderedDict[str, np.ndarray] = OrderedDict()
        self._all_feasible: list[ArchSpec] | None = None
        self.surrogate = GPSurrogate(seed=seed or 0)
        self._rejected: list[int] = []
        self.fits = 0

    # -- proposal ----------------------------------------------------------------------------
    def propose(self, study: Study, trial: FrozenTrial) -> ArchSpec:
        done, running, taken, queued = self.observe(study)
        if queued is not None:
            return queued
        feasible = [o for o in done if o.feasible and o.values is not None]
        if self.context.accuracy_index is None:
            picks = self._cheap_front(feasible, taken)
        elif len(feasible) < self.init:
            return self.random_feasible(taken)[0]
        else:
            picks = self._select(feasible, running, taken)
        self._queue = picks[1:]
        return picks[0] if picks else self.random_feasible(taken)[0]

    # -- pieces ------------------------------------------------------------------------------
    def features(self, specs: list[ArchSpec]) -> np.ndarray:
        rows = []
        for s in specs:
            key = str(s)
            f = self._features.get(key)
            if f is None:
                f = self._features[key] = np.asarray(self.context.space.surrogate_features(s, self.context.task))
                if len(self._features) > FEATURE_CACHE:
                    self._features.popitem(last=False)
            rows.append(f)
        return np.array(rows, dtype=float)

    def cost_matrix(self, specs: list[ArchSpec]) -> np.ndarray:
        """Cheap objectives of ``specs`` in minimisation form, (n, k)."""
        cheap = [f for f in self.context.objectives if f.cheap]
        recs = self.context.oracle.records(specs)
        return np.array([[(-r[f.name] if f.maximize else r[f.name]) for f in cheap] for r in recs],
                        dtype=float).reshape(len(specs), len(cheap))

    def _enumerable(self) -> list[ArchSpec] | None:
        space = self.context.space
        if not hasattr(space, "all_specs") or space.size() > ENUMERATE_LIMIT:
            return None
        if self._all_feasible is None:
            self._all_feasible = self.context.oracle.feasible_specs(space.all_specs())  # type: ignore[attr-defined]
        return self._all_feasible

    def _pool(self, parents: list[ArchSpec], taken: set[str]) -> list[ArchSpec]:
        everything = self._enumerable()
        if everything is not None:
            return [s for s in everything if str(s) not in taken]
        space, oracle, rng = self.context.space, self.context.oracle, self.rng
        out: dict[str, ArchSpec] = {}
        for s in oracle.sample_feasible(self.pool_size // 4, rng, self.context.seeds):
            out.setdefault(str(s), s)
        if parents:
            kids = []
            for i in range(3 * self.pool_size // 4):
                if i % 4 == 3 and len(parents) > 1:
                    kids.append(space.crossover(rng.choice(parents), rng.choice(parents), rng))
                else:
                    kids.append(space.mutate(rng.choice(parents), rng, rng.choice((0.05, 0.1, 0.2))))
            for s in oracle.feasible_specs(kids):
                out.setdefault(str(s), s)
        return [s for k, s in out.items() if k not in taken]

    def _refine(self, best: list[ArchSpec], taken: set[str], have: set[str]) -> list[ArchSpec]:
        """Small mutations of the best-scoring candidates (a local search on the acquisition)."""
        space, rng = self.context.space, self.rng
        kids = [space.mutate(s, rng, 0.05) for s in best for _ in range(30)]
        out = {}
        for s in self.context.oracle.feasible_specs(kids):
            k = str(s)
            if k not in taken and k not in have:
                out[k] = s
        return list(out.values())

    def _accuracy_reference(self, feasible: list[Observation], ai: int) -> float:
        """The user's ``reference['accuracy']``, else the median accuracy of the first ``init``
        (uniform feasible) evaluations: an evaluation counts when it beats a typical feasible
        candidate. (A model's median over the population mean-reverts towards the degenerate tail.)"""
        if "accuracy" in self.reference:
            return float(self.reference["accuracy"])
        first = sorted(feasible, key=lambda o: o.number)[: self.init]
        vals = [o.values[ai] for o in first if o.values is not None and np.isfinite(o.values[ai])]
        return float(np.median(vals)) if vals else -np.inf

    def _cost_reference(self, pool_cost: np.ndarray, obs_cost: np.ndarray) -> np.ndarray:
        cheap = [f for f in self.context.objectives if f.cheap]
        both = np.vstack([pool_cost, obs_cost]) if len(obs_cost) else pool_cost
        ref = []
        for j, f in enumerate(cheap):
            given = given_reference(f, self.context.budgets, self.reference)
            if given is None:
                hi, lo = both[:, j].max(), both[:, j].min()
                given = hi + 0.01 * (hi - lo) + 1e-12
            ref.append(given)
        return np.array(ref, dtype=float)

    def _select(self, feasible: list[Observation], running: list[Observation], taken: set[str]) -> list[ArchSpec]:
        ctx = self.context
        ai = ctx.accuracy_index
        assert ai is not None
        acc = np.array([o.values[ai] for o in feasible], dtype=float)  # type: ignore[index]
        finite = np.isfinite(acc)
        if not finite.any():
            return self.random_feasible(taken, self.batch)
        acc = np.where(finite, acc, acc[finite].min())
        specs = [o.spec for o in feasible]
        self.surrogate.fit(self.features(specs), acc)
        self.fits += 1

        parents = [o.spec for o in rank_observations(feasible, ctx)[:20]]
        pool = self._pool(parents, taken)
        if not pool:
            return []
        cheap_idx = [j for j, f in enumerate(ctx.objectives) if f.cheap]
        obs = np.array([minimised(o.values, ctx.objectives) for o in feasible], dtype=float)  # type: ignore[arg-type]
        front = np.column_stack([-acc, obs[:, cheap_idx]]) if cheap_idx else (-acc)[:, None]
        if running:
            rmu, _ = self.surrogate.predict(self.features([o.spec for o in running]))
            front = np.vstack([front, np.column_stack([-rmu, self.cost_matrix([o.spec for o in running])])])
        pool_cost = self.cost_matrix(pool)
        ref = np.concatenate([[-self._accuracy_reference(feasible, ai)],
                              self._cost_reference(pool_cost, front[:, 1:])])
        if not np.isfinite(ref[0]):
            ref[0] = float(np.max(-acc)) + 1e-9
        # A candidate whose known costs do not all beat the reference cannot add hypervolume whatever its
        # accuracy (its EHVI is exactly 0): leave it out before the surrogate's prediction, the costly part.
        inside = np.all(pool_cost < ref[1:], axis=1) if len(ref) > 1 else np.ones(len(pool), dtype=bool)
        if inside.any() and not inside.all():
            pool = [s for s, keep in zip(pool, inside) if keep]
            pool_cost = pool_cost[inside]

        mu, sd = self.surrogate.predict(self.features(pool))
        score = ehvi(-mu, sd, pool_cost, front, ref)
        if len(pool) > 50 and self._enumerable() is None:
            for _ in range(2):  # local search on the acquisition around its best candidates
                best = [pool[i] for i in np.argsort(-score)[:10]]
                extra = self._refine(best, taken, {str(s) for s in pool})
                if not extra:
                    break
                emu, esd = self.surrogate.predict(self.features(extra))
                ecost = self.cost_matrix(extra)
                pool += extra
                mu, sd = np.concatenate([mu, emu]), np.concatenate([sd, esd])
                pool_cost = np.vstack([pool_cost, ecost])
                score = np.concatenate([score, ehvi(-emu, esd, ecost, front, ref)])

        picks: list[int] = []
        screened_out = 0
        while len(picks) < min(self.batch, len(pool)) and screened_out < SCREEN_LIMIT * self.batch:
            if picks:
                score = ehvi(-mu, sd, pool_cost, front, ref)
                score[picks] = -np.inf
            score[self._rejected] = -np.inf
            i = int(np.argmax(score))
            if not np.isfinite(score[i]) or (score[i] <= 0 and picks):
                break
            if not self.screened(pool[i]):  # the cheap filter would reject it: not worth a trial
                self._rejected.append(i)
                screened_out += 1
                continue
            picks.append(i)
            front = np.vstack([front, np.concatenate([[-mu[i]], pool_cost[i]])])
        self._rejected = []
        return [pool[i] for i in picks]

    def _cheap_front(self, feasible: list[Observation], taken: set[str]) -> list[ArchSpec]:
        """Every objective is known before evaluation: propose the unevaluated members of the exact
        front of the pool (cheap objectives only)."""
        parents = [o.spec for o in rank_observations(feasible, self.context)[:20]]
        pool = self._pool(parents, taken)
        if not pool:
            return []
        cost = self.cost_matrix(pool)
        mask = nondominated(cost)
        return [s for s, m in zip(pool, mask) if m][: self.batch]
