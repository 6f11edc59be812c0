"""Optuna's own samplers, registered under short names. They sample Optuna parameters blind to cost:
infeasible proposals are recorded with their costs (never trained) and steer them through the
constraint values; duplicates reuse the earlier result."""

from __future__ import annotations

import optuna

from edgenas.search.samplers.base import SearchContext, register_sampler


@register_sampler("nsga2", "Optuna NSGA-II (constrained domination), the default", ours=False)
def nsga2(context: SearchContext, seed: int | None = None, population_size: int = 50,
          mutation_prob: float | None = None, crossover_prob: float = 0.9) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(population_size=population_size, mutation_prob=mutation_prob,
                                         crossover_prob=crossover_prob, seed=seed)


@register_sampler("tpe", "Optuna TPE, multivariate with conditional groups (c-TPE under budgets)", ours=False)
def tpe(context: SearchContext, seed: int | None = None, n_startup_trials: int = 10,
        multivariate: bool = True) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(n_startup_trials=n_startup_trials, multivariate=multivariate,
                                      group=multivariate, constant_liar=context.workers > 1, seed=seed)


@register_sampler("gp", "Optuna GP-BO (log-EHVI / constrained EI)", ours=False)
def gp(context: SearchContext, seed: int | None = None, n_startup_trials: int = 10) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(n_startup_trials=n_startup_trials, seed=seed)


@register_sampler("random", "Optuna random search (uniform over the space, budgets ignored)", ours=False)
def random_sampler(context: SearchContext, seed: int | None = None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)
