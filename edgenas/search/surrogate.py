"""The search-time accuracy model: a Gaussian process over the space's surrogate features.

A GP gives calibrated uncertainty from a few dozen points, which is what expected-improvement
acquisitions need (tree ensembles' spread is not a posterior). Matern 5/2 on standardised features
plus a white-noise term that learns the evaluation noise (training seeds, table noise), so the
predicted spread is that of a *new evaluation*. Kernel hyperparameters are fitted by marginal
likelihood (on at most 300 seeded points) on every fit up to 100 points, then whenever the data has
grown by 10%, otherwise kept: the posterior is then one Cholesky solve, which keeps a 1,000-point
model cheap to update.
Low outliers of the target (degenerate or diverged candidates) are winsorised at Q1 - 1.5 IQR (Tukey's fence) so they
do not flatten the model where it matters.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Kernel, Matern, WhiteKernel

HYPER_SUBSET = 300
"""Kernel hyperparameters are fitted on at most this many (seeded random) points."""


class GPSurrogate:
    def __init__(self, seed: int = 0, refit_growth: float = 0.1) -> None:
        self.seed = seed
        self.refit_growth = refit_growth
        self._kernel: Kernel | None = None
        self._fitted_n = 0
        self._gp: GaussianProcessRegressor | None = None
        self._x_mean = self._x_scale = None
        self._y_mean, self._y_scale = 0.0, 1.0

    def fit(self, X: np.ndarray, y: np.ndarray) -> GPSurrogate:
        """``y``: higher is better (accuracy); any finite values."""
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        q1, q3 = np.quantile(y, [0.25, 0.75])
        y = np.maximum(y, q1 - 1.5 * max(q3 - q1, 1e-12))
        self._x_mean = X.mean(0)
        scale = X.std(0)
        self._x_scale = np.where(scale > 0, scale, 1.0)
        self._y_mean, self._y_scale = float(y.mean()), float(y.std()) or 1.0
        Xs, ys = self._scale(X), (y - self._y_mean) / self._y_scale
        refit = self._kernel is None or len(y) >= (1 + self.refit_growth) * self._fitted_n or len(y) < 100
        if refit:
            kernel: Kernel = (ConstantKernel(1.0, (1e-2, 1e2)) * Matern(np.sqrt(X.shape[1]), (1e-2, 1e3), nu=2.5)
                              + WhiteKernel(1e-2, (1e-6, 1.0)))
            optimizer: str | None = "fmin_l_bfgs_b"
        else:
            kernel, optimizer = self._kernel, None  # type: ignore[assignment]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if refit and len(ys) > HYPER_SUBSET:
                # marginal likelihood on a seeded subset (O(n^3) per optimiser step), posterior on all
                idx = np.random.default_rng(self.seed + len(ys)).choice(len(ys), HYPER_SUBSET, replace=False)
                sub = GaussianProcessRegressor(kernel, optimizer=optimizer, random_state=self.seed)
                kernel, optimizer = sub.fit(Xs[idx], ys[idx]).kernel_, None
            gp = GaussianProcessRegressor(kernel, optimizer=optimizer, normalize_y=False, random_state=self.seed)
            gp.fit(Xs, ys)
        if refit:
            self._kernel = gp.kernel_
            self._fitted_n = len(y)
        self._gp = gp
        return self

    def _scale(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=float) - self._x_mean) / self._x_scale

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted mean and standard deviation of a new evaluation (accuracy units)."""
        assert self._gp is not None, "fit first"
        mu, sd = self._gp.predict(self._scale(X), return_std=True)
        return mu * self._y_scale + self._y_mean, np.maximum(sd, 1e-9) * self._y_scale
