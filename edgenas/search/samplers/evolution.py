"""Budget-aware evolution (Once-for-All's search, generalised to several objectives) and random
search over the feasible region.

``evolution``: the first ``population`` evaluations are uniform feasible specs; after that each
generation keeps the best ``parent_ratio`` of everything evaluated (by accuracy with one objective;
by non-domination rank, then crowding distance, with several) and fills the population with children:
``mutate_ratio`` of it by mutation (each choice redrawn with probability ``mutation_prob``), the rest
by uniform crossover of two parents. Children that break a budget are redrawn before they are ever
evaluated; duplicates of evaluated or running specs are skipped. OFA's setting is the default:
population 100, 25% parents, mutation probability 0.1, half the population from mutation.

``random-feasible``: uniform over the specs that meet every cheap budget (never an infeasible or a
repeated evaluation): the fair random baseline under budgets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from optuna.trial import FrozenTrial

from edgenas.search.pareto import nondominated
from edgenas.search.samplers.base import Observation, SearchContext, SpecSampler, minimised, register_sampler
from edgenas.spaces import ArchSpec

if TYPE_CHECKING:
    from optuna.study import Study


def rank_observations(obs: list[Observation], context: SearchContext) -> list[Observation]:
    """Best first: non-domination rank, then crowding distance (larger first); with one objective
    simply by value."""
    if not obs:
        return []
    Y = np.array([minimised(o.values or [], context.objectives) for o in obs], dtype=float)
    Y = np.where(np.isfinite(Y), Y, np.nanmax(np.where(np.isfinite(Y), Y, np.nan), axis=0, initial=0) + 1e9)
    if Y.shape[1] == 1:
        return [obs[i] for i in np.argsort(Y[:, 0], kind="stable")]
    remaining = np.arange(len(obs))
    ordered: list[int] = []
    while len(remaining):
        mask = nondominated(Y[remaining])
        layer = remaining[mask]
        ordered += [int(i) for i in layer[np.argsort(-_crowding(Y[layer]), kind="stable")]]
        remaining = remaining[~mask]
    return [obs[i] for i in ordered]


def _crowding(Y: np.ndarray) -> np.ndarray:
    n = len(Y)
    d = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(Y.shape[1]):
        o = np.argsort(Y[:, k])
        span = Y[o[-1], k] - Y[o[0], k]
        d[o[0]] = d[o[-1]] = np.inf
        if span > 0:
            d[o[1:-1]] += (Y[o[2:], k] - Y[o[:-2], k]) / span
    return d


@register_sampler("evolution", "budget-aware evolution (OFA's: population 100, 25% parents, mutation 0.1)")
class EvolutionSampler(SpecSampler):
    name = "evolution"

    def __init__(self, context: SearchContext, seed: int | None = None, population: int = 100,
                 parent_ratio: float = 0.25, mutate_ratio: float = 0.5, mutation_prob: float = 0.1) -> None:
        super().__init__(context, seed)
        if population < 4:
            raise ValueError(f"population must be >= 4, got {population}")
        if not 0 < parent_ratio < 1 or not 0 <= mutate_ratio <= 1 or not 0 < mutation_prob <= 1:
            raise ValueError("parent_ratio must be in (0, 1), mutate_ratio in [0, 1], mutation_prob in (0, 1]")
        self.population = population
        self.n_parents = max(2, round(parent_ratio * population))
        self.n_mutants = round(mutate_ratio * population)
        self.mutation_prob = mutation_prob

    def propose(self, study: Study, trial: FrozenTrial) -> ArchSpec:
        done, _, taken, queued = self.observe(study)
        if queued is not None:
            return queued
        feasible = [o for o in done if o.feasible and o.values is not None]
        if len(feasible) < self.population:
            return self.random_feasible(taken)[0]
        parents = [o.spec for o in rank_observations(feasible, self.context)[: self.n_parents]]
        self._queue = self._children(parents, taken)
        return self._queue.pop(0) if self._queue else self.random_feasible(taken)[0]

    def _children(self, parents: list[ArchSpec], taken: set[str]) -> list[ArchSpec]:
        space, oracle, rng = self.context.space, self.context.oracle, self.rng
        want = self.population - self.n_parents
        kids: dict[str, ArchSpec] = {}
        for make, count in ((lambda: space.mutate(rng.choice(parents), rng, self.mutation_prob), self.n_mutants),
                            (lambda: space.crossover(rng.choice(parents), rng.choice(parents), rng), want)):
            tries = 0
            while len(kids) < min(count, want) and tries < 50 * want:
                batch = [make() for _ in range(32)]
                tries += 32
                for s in oracle.feasible_specs(batch):
                    if str(s) not in taken and str(s) not in kids and len(kids) < min(count, want) \
                            and self.screened(s):
                        kids[str(s)] = s
        return list(kids.values())


@register_sampler("random-feasible", "uniform over the candidates that meet every budget; no repeats")
class RandomFeasibleSampler(SpecSampler):
    """``roi=True`` also keeps only candidates whose cost objectives beat the context's reference
    values (the region where an evaluation can count for the hypervolume)."""

    name = "random-feasible"

    def __init__(self, context: SearchContext, seed: int | None = None, roi: bool = False) -> None:
        super().__init__(context, seed)
        self.roi = roi

    def propose(self, study: Study, trial: FrozenTrial) -> ArchSpec:
        done, running = self.history.read(study)
        taken = self.taken(done, running)
        if not self.roi:
            return self.random_feasible(taken)[0]
        ref = {f.name: self.context.reference[f.name] for f in self.context.objectives
               if f.cheap and f.name in self.context.reference}
        for _ in range(200):
            for s in self.random_feasible(taken, 16):
                rec = self.context.oracle.record(s)
                if all((rec[k] > v) if f.maximize else (rec[k] < v)
                       for f in self.context.objectives for k, v in ref.items() if f.name == k):
                    return s
        return self.random_feasible(taken)[0]
