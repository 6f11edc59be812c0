"""Pareto fronts and hypervolume, in minimisation form (negate what is maximised).

Optuna's hypervolume code is private (``optuna._hypervolume``), so edgenas keeps its own: an exact
sweep in two dimensions and exact recursive slicing (HSO) above that, which is fast for the front
sizes a search produces (tens to a few hundred points, 2-4 objectives).
"""

from __future__ import annotations

import numpy as np


def nondominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the points no other point dominates (<= everywhere, < somewhere). Duplicates
    of a non-dominated point are all kept."""
    P = np.asarray(points, dtype=float)
    n = len(P)
    if n == 0:
        return np.zeros(0, dtype=bool)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        if not keep[i]:
            continue
        dominated = np.all(P <= P[i], axis=1) & np.any(P < P[i], axis=1)
        if dominated.any():
            keep[i] = False
            continue
        worse = np.all(P[i] <= P, axis=1) & np.any(P[i] < P, axis=1)
        keep &= ~worse
    return keep


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (minimisation). Points that do not
    strictly beat the reference in every objective add nothing."""
    P = np.asarray(points, dtype=float).reshape(-1, len(reference))
    ref = np.asarray(reference, dtype=float)
    P = P[np.all(np.isfinite(P), axis=1) & np.all(P < ref, axis=1)]
    if len(P) == 0:
        return 0.0
    P = P[nondominated(P)]
    return _hv(np.unique(P, axis=0), ref)


def _hv(P: np.ndarray, ref: np.ndarray) -> float:
    d = P.shape[1]
    if d == 1:
        return float(ref[0] - P[:, 0].min())
    if d == 2:
        P = P[np.lexsort((P[:, 1], P[:, 0]))]  # by first objective, then second
        volume, best = 0.0, ref[1]
        for x, y in P:
            if y < best:
                volume += (ref[0] - x) * (best - y)
                best = y
        return float(volume)
    # slice along the last objective: between consecutive levels, the points at or below the level
    # dominate a (d-1)-dimensional region
    order = np.argsort(P[:, -1])
    P = P[order]
    volume = 0.0
    for i in range(len(P)):
        upper = P[i + 1, -1] if i + 1 < len(P) else ref[-1]
        height = upper - P[i, -1]
        if height <= 0:
            continue
        sub = P[: i + 1, :-1]
        sub = sub[nondominated(sub)]
        volume += height * _hv(np.unique(sub, axis=0), ref[:-1])
    return float(volume)
