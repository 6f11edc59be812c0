"""Expected hypervolume improvement when only one objective is uncertain.

In a hardware-aware search every objective but the accuracy is known exactly before evaluation
(cost model, latency table), so a candidate is a known cost vector ``c`` plus an uncertain error
``e ~ N(mu, sd)`` (error = negated accuracy; everything minimised). With the current front
``{(e_j, p_j)}`` and reference ``(r_e, r_c)``, the improvement of adding the candidate is

    HVI(e) = integral from e to r_e of A(t) dt,
    A(t)   = vol(box[c, r_c]) - HV({max(p_j, c) : e_j <= t})

(the part of the candidate's cost box that no front point with error <= t covers). ``A`` is a step
function of t, so ``EHVI = sum_s A_s * (G(t_{s+1}) - G(t_s))`` with ``G(t) = (t - mu) Phi(z) + sd
phi(z)``, ``z = (t - mu) / sd``: exact, closed form. With no cheap objective it is the expected
improvement; with one it vectorises over all candidates.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from edgenas.search.pareto import hypervolume, nondominated


def _G(t: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Integral of P(e <= x) for x from -inf to t, for e ~ N(mu, sd)."""
    z = (t - mu) / sd
    return (t - mu) * norm.cdf(z) + sd * norm.pdf(z)


def ehvi(
    mu: np.ndarray, sd: np.ndarray, cost: np.ndarray, front: np.ndarray, reference: np.ndarray,
) -> np.ndarray:
    """EHVI of each candidate.

    ``mu``, ``sd``: (n,) predicted error; ``cost``: (n, k) known objectives; ``front``: (m, 1 + k)
    points (error first) — any points, dominated ones change nothing; ``reference``: (1 + k,).
    """
    mu = np.asarray(mu, dtype=float)
    sd = np.maximum(np.asarray(sd, dtype=float), 1e-12)
    n = len(mu)
    cost = np.asarray(cost, dtype=float).reshape(n, -1)
    k = cost.shape[1]
    front = np.asarray(front, dtype=float).reshape(-1, 1 + k)
    ref = np.asarray(reference, dtype=float)
    front = front[np.all(np.isfinite(front), axis=1) & (front[:, 0] < ref[0])]
    if len(front) > 1:  # dominated points cover nothing new: drop them (a search passes every point)
        front = np.unique(front[nondominated(front)], axis=0)
    order = np.argsort(front[:, 0], kind="stable")
    front = front[order]
    levels = front[:, 0]  # sorted error levels t_1 <= ... <= t_m (< r_e)
    bounds = np.concatenate([levels, [ref[0]]])
    out = np.zeros(n)
    inside = np.all(cost < ref[1:], axis=1)
    if not inside.any():
        return out
    c = cost[inside]
    m_, s_ = mu[inside], sd[inside]
    G = np.stack([_G(np.full(len(c), b), m_, s_) for b in bounds])  # (m+1, n_in)
    if k == 0:
        # A(t) = 1 below the best error, 0 above: the expected improvement over the best
        best = levels[0] if len(levels) else ref[0]
        out[inside] = _G(np.full(len(c), best), m_, s_)
        return out
    if k == 1:
        r = ref[1]
        acc = np.zeros(len(c))
        prefix_min = np.minimum.accumulate(front[:, 1]) if len(front) else np.zeros(0)
        # segment below the first level: nothing covers the box
        a = r - c[:, 0]
        acc += a * G[0]
        for s in range(len(levels)):
            covered_from = np.maximum(c[:, 0], prefix_min[s])  # points with e <= t cover [prefix_min, r)
            a = np.clip(covered_from, None, r) - c[:, 0]
            acc += a * (G[s + 1] - G[s])
        out[inside] = acc
        return out
    # k >= 2: exact k-dimensional volumes, one candidate at a time
    for row, (ci, g) in enumerate(zip(c, G.T)):
        box = float(np.prod(ref[1:] - ci))
        total = box * g[0]
        for s in range(len(levels)):
            pts = np.maximum(front[: s + 1, 1:], ci)
            a = box - hypervolume(pts, ref[1:])
            total += a * (g[s + 1] - g[s])
        out[np.flatnonzero(inside)[row]] = total
    return out
