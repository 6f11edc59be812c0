"""``qmc``: Optuna's quasi-Monte Carlo sampler as an edgenas sampler."""

from __future__ import annotations

import optuna
from edgenas.errors import EdgenasError
from edgenas.search.samplers import SearchContext

QMC_TYPES = ("sobol", "halton")


def qmc(context: SearchContext, seed: int | None = None, qmc_type: str = "sobol",
        scramble: bool = True) -> optuna.samplers.BaseSampler:
    """Optuna quasi-Monte Carlo (Sobol/Halton): even coverage of the space, budgets ignored"""
    if qmc_type not in QMC_TYPES:
        raise EdgenasError(f"sampler 'qmc': qmc_type must be one of {', '.join(QMC_TYPES)}, got {qmc_type!r}")
    # choices that only some members have (a block of a deeper stage) are drawn by the seeded
    # independent sampler; QMC covers the parameters every member has
    return optuna.samplers.QMCSampler(qmc_type=qmc_type, scramble=scramble, seed=seed,
                                      warn_independent_sampling=False)
