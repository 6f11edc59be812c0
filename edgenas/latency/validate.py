"""Validation of a latency table against end-to-end measurements, and the device-model fit.

``calibrate`` fits the table's device model (``overhead_ms + scale * sum + per_unit_ms * n_units``) by
least squares on whole networks measured in the real runtime: it closes the gap between a sum of
isolated micro-model timings and a network (per-invoke overhead counted once instead of per unit,
cache and layout effects). ``validate`` then measures *fresh* random networks and reports how well
the table predicts them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgenas.latency.table import DeviceModel, LatencyTable


def latency_metrics(predicted_ms: Sequence[float], measured_ms: Sequence[float]) -> dict[str, float]:
    """MAPE (%), RMSE (ms), share within +-5% / +-10%, Kendall tau and Spearman rho."""
    from scipy.stats import kendalltau, spearmanr

    p = np.asarray(predicted_ms, dtype=float)
    m = np.asarray(measured_ms, dtype=float)
    rel = np.abs(p - m) / np.maximum(m, 1e-9)
    out = {
        "n": len(m),
        "mape_pct": float(100 * rel.mean()),
        "rmse_ms": float(np.sqrt(np.mean((p - m) ** 2))),
        "within_5pct": float((rel <= 0.05).mean()),
        "within_10pct": float((rel <= 0.10).mean()),
        "max_err_pct": float(100 * rel.max()),
    }
    if len(m) > 2:
        tau = kendalltau(p, m).statistic
        rho = spearmanr(p, m).statistic
        out["kendall_tau"] = float(tau) if not math.isnan(tau) else 0.0
        out["spearman"] = float(rho) if not math.isnan(rho) else 0.0
    return out


# Context features a calibration may add to the affine model (see edgenas.latency.features); each is a
# cost the isolated micro-models pay and the network does not, hence a coefficient <= 0.
CONTEXT_FEATURES: tuple[str, ...] = ("unit_io_melems",)
MIN_NETWORKS_FOR_TERMS = 10  # below this, leave-one-out cannot tell a better model from a lucky one


def _fit(s: np.ndarray, n: np.ndarray, F: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Parameters (overhead, scale, per_unit, *term coefficients) of the robust relative-error fit."""
    from scipy.optimize import least_squares

    def residuals(p: np.ndarray) -> np.ndarray:
        return (p[0] + p[1] * s + p[2] * n + F @ p[3:] - y) / y

    k = F.shape[1]
    x0 = np.array([0.0, float(np.median(y / np.maximum(s, 1e-12))), 0.0, *([0.0] * k)])
    lo = [0.0, 1e-6, -np.inf, *([-np.inf] * k)]
    hi = [np.inf, np.inf, 0.0, *([0.0] * k)]
    return least_squares(residuals, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.05).x


def _fit_floored(s: np.ndarray, n: np.ndarray, F: np.ndarray, y: np.ndarray, min_unit_ms: float | None) -> np.ndarray:
    """:func:`_fit`, then, when ``per_unit < -scale * min_unit_ms`` (a unit of the table would count
    below zero), the fit again with ``per_unit = -scale * min_unit_ms``: the largest per-unit saving
    the table's fastest unit allows."""
    p = _fit(s, n, F, y)
    if min_unit_ms is None or min_unit_ms <= 0 or p[2] >= -p[1] * min_unit_ms:
        return p
    q = _fit(s - min_unit_ms * n, np.zeros_like(n), F, y)  # per_unit tied to scale: fit scale on s'
    q[2] = -q[1] * min_unit_ms
    return q


def _loo_error(s: np.ndarray, n: np.ndarray, F: np.ndarray, y: np.ndarray) -> float:
    """Mean soft-L1 of the leave-one-out relative errors (the loss the fit itself uses)."""
    errs = []
    for i in range(len(y)):
        m = np.arange(len(y)) != i
        p = _fit(s[m], n[m], F[m], y[m])
        r = (p[0] + p[1] * s[i] + p[2] * n[i] + F[i] @ p[3:] - y[i]) / y[i] / 0.05
        errs.append(2 * (np.sqrt(1 + r * r) - 1))
    return float(np.mean(errs))


def fit_device_model(
    sums_ms: Sequence[float], n_units: Sequence[int], measured_ms: Sequence[float],
    features: Sequence[dict[str, float]] | None = None, min_unit_ms: float | None = None,
) -> DeviceModel:
    """Robust, physically constrained fit of ``overhead + scale * sum + per_unit * n_units`` (+ terms).

    Each isolated unit timing includes the runtime's per-invoke cost, which a network pays once:
    so ``overhead >= 0`` and ``per_unit <= 0``. Residuals are relative (targets are judged by
    relative error and networks span an order of magnitude) and pass a soft-L1 loss, so a network
    timed during a burst of background load cannot drag the fit. Falls back to a pure scale when
    there are too few networks for three parameters.

    ``features`` (one dict per network, e.g. :data:`CONTEXT_FEATURES` from ``spec_features``) offers
    extra terms, each with a coefficient <= 0; with at least ``MIN_NETWORKS_FOR_TERMS`` networks the
    model with terms is kept only when its leave-one-out error beats the affine model's.

    ``min_unit_ms`` (the table's fastest unit, :meth:`LatencyTable.min_unit_ms`) bounds the per-unit
    saving: ``per_unit >= -scale * min_unit_ms``, so no network built of the table's units is predicted
    below the overhead. Calibration networks timed under heavy load once fitted ``per_unit`` -0.026 ms
    with ``scale`` 1.56 over units of ~0.01 ms, and small networks came out at negative latencies."""
    s = np.asarray(sums_ms, float)
    n = np.asarray(n_units, float)
    y = np.asarray(measured_ms, float)
    if len(y) == 0:
        return DeviceModel(fitted_on=0)
    if len(y) < 5:
        scale = float(np.median(y / np.maximum(s, 1e-12)))
        return DeviceModel(scale=scale, fitted_on=len(y))
    names = sorted(features[0]) if features else []
    none = np.zeros((len(y), 0))
    if names and len(y) >= MIN_NETWORKS_FOR_TERMS:
        F = np.array([[f[k] for k in names] for f in features])  # type: ignore[union-attr]
        if _loo_error(s, n, F, y) < _loo_error(s, n, none, y):
            p = _fit_floored(s, n, F, y, min_unit_ms)
            return DeviceModel(overhead_ms=float(p[0]), scale=float(p[1]), per_unit_ms=float(p[2]), fitted_on=len(y),
                               terms={k: float(c) for k, c in zip(names, p[3:])})
    p = _fit_floored(s, n, none, y, min_unit_ms)
    return DeviceModel(overhead_ms=float(p[0]), scale=float(p[1]), per_unit_ms=float(p[2]), fitted_on=len(y))


def plot_predicted_vs_measured(predicted_ms: Sequence[float], measured_ms: Sequence[float], path: Path,
                               title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, m = np.asarray(predicted_ms), np.asarray(measured_ms)
    lo, hi = float(min(p.min(), m.min())) * 0.9, float(max(p.max(), m.max())) * 1.1
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="tab:green", alpha=0.15,
                    label="±10%")
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1)
    ax.scatter(m, p, s=12, color="tab:blue")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def validation_record(metrics: dict[str, float], seed: int, calibration: int, png: Path | None,
                      space_opts: dict[str, Any] | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {**metrics, "seed": seed, "calibration_networks": calibration}
    if png is not None:
        rec["plot"] = str(png)
    if space_opts:
        rec["space_options"] = space_opts
    return rec


def refit_and_validate(
    table: LatencyTable, unit_keys_cal: list[list[str]], measured_cal: list[float],
    unit_keys_val: list[list[str]], measured_val: list[float],
    features_cal: Sequence[dict[str, float]] | None = None, features_val: Sequence[dict[str, float]] | None = None,
) -> tuple[dict[str, float], list[float]]:
    """Fit the device model on the calibration networks, then score the validation networks.
    ``features_*``: per-network context features (see :func:`fit_device_model`)."""
    if unit_keys_cal:
        table.model = fit_device_model([table.sum_ms(k) for k in unit_keys_cal], [len(k) for k in unit_keys_cal],
                                       measured_cal, features_cal, table.min_unit_ms())
    fv = list(features_val) if features_val is not None else [None] * len(unit_keys_val)
    predicted = [table.predict_ms(k, f) for k, f in zip(unit_keys_val, fv)]
    return latency_metrics(predicted, measured_val), predicted
