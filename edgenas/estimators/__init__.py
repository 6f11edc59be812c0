"""Accuracy estimators: zero-cost proxies, low-fidelity training, surrogates, external predictors, tables.

::

    from edgenas import get_space
    from edgenas.estimators import get_estimator, estimator_names

    space = get_space("nb201")
    est = get_estimator("synflow", space, seed=0)
    est.score(space.sample(1, 0)[0])                      # float, higher is better
    est.estimate_many(space.sample(8, 0))                 # [Estimate(arch, score, seconds, epochs, samples)]

See :mod:`edgenas.estimators.base` for the contract every estimator keeps.
"""

from __future__ import annotations

from edgenas.estimators.base import (
    ESTIMATORS,
    RECORD_FIELDS,
    WORST_SCORE,
    Estimate,
    Estimator,
    estimator_class,
    estimator_names,
    estimator_options,
    get_estimator,
    register_estimator,
)

__all__ = [
    "ESTIMATORS",
    "RECORD_FIELDS",
    "WORST_SCORE",
    "Estimate",
    "Estimator",
    "estimator_class",
    "estimator_names",
    "estimator_options",
    "get_estimator",
    "register_estimator",
]
