"""A learned surrogate: a scikit-learn regressor on the space's numeric encoding (``space.encode``).

Fit it on already-evaluated specs (:meth:`Surrogate.fit` with scores, :meth:`Surrogate.update` with
:class:`~edgenas.estimators.base.Estimate` records, or the option ``data=CSV`` with an ``arch`` column
and a score column, e.g. the output of ``edgenas estimate --csv``), then use it as a cheap estimator.

* ``model="forest"`` (default): a random forest; the uncertainty is the standard deviation of the
  trees' predictions.
* ``model="gbm"``: gradient boosting (squared error) for the mean, and two quantile-loss models at
  the 15.9th and 84.1st percentiles; the uncertainty is half their distance (one sigma for a normal).

Non-finite scores (degenerate specs) are left out of the fit. Refitting clears the cache (the
predictions change). A surrogate that has not been fitted raises :class:`EdgenasError` when asked for
a score.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgenas.archio import read_arch_column
from edgenas.errors import EdgenasError
from edgenas.estimators.base import BatchEstimator, Estimate, register_estimator

if TYPE_CHECKING:
    from edgenas.spaces.base import ArchSpec, SearchSpace, Task

MODELS = ("forest", "gbm")
SIGMA_QUANTILES = (0.15865, 0.84135)


def read_scored_csv(path: str | Path, space: SearchSpace, column: str) -> tuple[list[ArchSpec], list[float]]:
    """(specs, scores) from a CSV with an ``arch`` (or ``arch_str``/``op_idx_list``) column and ``column``."""
    rows = read_arch_column(path, space, column, what="score file")
    return [r.spec for r in rows], [float(r.value) for r in rows]  # type: ignore[arg-type]


@register_estimator
class Surrogate(BatchEstimator):
    name = "surrogate"
    summary = "random forest / gradient boosting on space.encode(spec), fit on evaluated specs"

    def __init__(
        self, space: SearchSpace, task: Task | None = None, seed: int = 0, model: str = "forest",
        n_estimators: int = 200, data: str | None = None, column: str = "score",
    ) -> None:
        """``model``: forest or gbm; ``n_estimators``: trees / boosting stages; ``data``: optional CSV of
        evaluated specs to fit on at once, its score ``column``."""
        super().__init__(space, task, seed)
        if model not in MODELS:
            raise EdgenasError(f"surrogate: model must be one of {', '.join(MODELS)}, got {model!r}")
        if not isinstance(n_estimators, int) or n_estimators < 2:
            raise EdgenasError(f"surrogate: n_estimators must be an integer >= 2, got {n_estimators!r}")
        self.model = model
        self.n_estimators = n_estimators
        self._models: list[Any] = []
        self.n_fit = 0
        self.fit_seconds = 0.0
        if data is not None:
            self.fit(*read_scored_csv(data, space, column))

    @property
    def fitted(self) -> bool:
        return bool(self._models)

    def _x(self, specs: Sequence[ArchSpec]) -> np.ndarray:
        return np.asarray([self.space.encode(s) for s in specs], dtype=float).reshape(len(specs), -1)

    def fit(self, specs: Sequence[ArchSpec], scores: Sequence[float]) -> Surrogate:
        """Fit on (spec, score) pairs; non-finite scores are skipped. Needs two or more usable pairs."""
        if len(specs) != len(scores):
            raise EdgenasError(f"surrogate: {len(specs)} specs but {len(scores)} scores")
        pairs = [(s, float(v)) for s, v in zip(specs, scores) if math.isfinite(float(v))]
        if len(pairs) < 2:
            raise EdgenasError(f"surrogate: need at least 2 specs with finite scores to fit, got {len(pairs)}")
        t0 = time.perf_counter()
        x = self._x([s for s, _ in pairs])
        y = np.asarray([v for _, v in pairs])
        from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

        if self.model == "forest":
            models: list[Any] = [RandomForestRegressor(n_estimators=self.n_estimators, random_state=self.seed,
                                                       min_samples_leaf=1, n_jobs=1)]
        else:
            kw = {"n_estimators": self.n_estimators, "random_state": self.seed, "max_depth": 3,
                  "learning_rate": 0.05, "subsample": 0.8}
            models = [GradientBoostingRegressor(loss="squared_error", **kw)]
            models += [GradientBoostingRegressor(loss="quantile", alpha=a, **kw) for a in SIGMA_QUANTILES]
        for m in models:
            m.fit(x, y)
        self._models = models
        self.n_fit = len(pairs)
        self.clear_cache()
        dt = time.perf_counter() - t0
        self.fit_seconds += dt
        self.seconds_total += dt
        return self

    def update(self, estimates: Iterable[Estimate]) -> Surrogate:
        """Fit on estimate records (e.g. those of an expensive estimator)."""
        ests = list(estimates)
        return self.fit([self.space.parse(e.arch) for e in ests], [e.score for e in ests])

    def predict(self, specs: Sequence[ArchSpec]) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) predictions; std is the uncertainty described in the module doc."""
        if not self.fitted:
            raise EdgenasError("surrogate is not fitted: pass data=CSV (arch and score columns) or call fit()")
        x = self._x(specs)
        if self.model == "forest":
            forest = self._models[0]
            per_tree = np.stack([t.predict(x) for t in forest.estimators_])  # trees x specs
            # exact sums: a spec's prediction must not depend on the shape of its batch
            n = per_tree.shape[0]
            mean = np.array([math.fsum(col) / n for col in per_tree.T])
            std = np.array([math.sqrt(math.fsum((col - m) ** 2) / n) for col, m in zip(per_tree.T, mean)])
            return mean, std
        mean = self._models[0].predict(x)
        lo, hi = (m.predict(x) for m in self._models[1:])
        return mean, np.abs(hi - lo) / 2.0

    def _scores(self, specs: list[ArchSpec]) -> list[float]:
        return [float(v) for v in self.predict(specs)[0]]
