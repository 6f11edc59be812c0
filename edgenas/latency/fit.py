"""Latency tables fitted from end-to-end measurements (``edgenas lut fit``).

Many users can time whole networks on their board but not single layers. Given measured networks
``(spec, latency_ms)``, :func:`fit_latency_table` fits a :class:`~edgenas.latency.table.LatencyTable`
whose entries are keyed by the same latency units the profiler measures (``space.units(spec)``), so the
result plugs into :class:`~edgenas.latency.predict.LatencyPredictor` unchanged, plus a device model
whose named ``terms`` (:mod:`edgenas.latency.features`) carry the non-additive part.

Model. Every unit ``u`` has a base cost ``x0_u``; the fit rescales the base costs by group::

    latency_ms = overhead_ms + sum_g s_g * sum_{u in g} count_u * x0_u + sum_f c_f * feature_f(spec)

where the groups ``g`` are either all units (one scale), unit kinds (``nb201op:c3``, ``mbconv:k5g1``,
...: a few scale factors), or single units (free non-negative per-unit costs). A ridge penalty pulls
each ``s_g`` toward the common scale of the base (and each ``c_f`` toward the base's term, or 0), so
scarce data moves few degrees of freedom and plentiful data frees them all. Units whose counts are
collinear over the training networks (NB201's three stages, FBNet's repeated layers of a stage) are
split in proportion to their base costs instead of arbitrarily. Rows are weighted by 1/latency (targets
are judged by relative error), with a floor so that near-zero outliers (folded, disconnected networks)
cannot dominate, and re-weighted with Huber weights (robust to bad measurements). Unit scales are
non-negative; feature coefficients are non-negative except for the features in :data:`SIGNED_FEATURES`.

Base costs (:class:`Base`), the few-shot part: ``proxy`` (MACs + 8 x activation elements), ``analytic``
(a non-negative mix of per-unit MACs, activation traffic, weights and a per-unit constant, fitted to the
rows: a roofline-like stand-in for a device nothing is known about), one per *prior* table (another
device's effective per-unit costs and terms: ``prior:<device>``), and ``mix``: a non-negative mix of
every prior (each rescaled) and the analytic parts. Mix weights are fitted on the training rows of
each fold, so cross-validation scores the mix honestly.

Execution semantics. ``space.units`` lists the ops a constant-folding runtime runs; some runtimes run
every op of an NB201 cell, dead branches included (eager frameworks, graphs exported unfolded). A
*dense* candidate ties the NB201 dead-op features to the cost of the live op they duplicate (one
shared cost per op type, as a network of pruned units plus tied terms), which a handful of rows can
pin down where thirteen free terms cannot.

Model selection (base x grouping x ridge strength x feature set x semantics) is by K-fold
cross-validation on the training networks only: the candidates the CV cannot rule out (a paired
t-test against the best, after a one-standard-error rule that keeps the priors' own shape unless the
rows clearly say otherwise) are combined by convex stacking of their out-of-fold predictions, and the
table is that combination (the model is linear, so it is still one table). :func:`cross_validate`
scores the whole procedure (nested) on held-out folds and :func:`learning_curve` the same procedure on
fewer rows. The fitted table is plain JSON and reproduces its predictions after save/load.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from edgenas.errors import EdgenasError
from edgenas.latency.features import FEATURES, spec_features
from edgenas.latency.table import DeviceModel, Entry, LatencyTable, host_info
from edgenas.layers import Layer
from edgenas.spaces import ArchSpec, SearchSpace, Task

# Candidate non-additive feature sets per space, tried by cross-validation (the empty set always is).
NB201_DEAD = [f"nb201_{c}_{op}" for c in ("const_in", "dead_zero", "dead") for op in ("c1", "c3", "avg", "add")]
SPACE_FEATURES: dict[str, list[list[str]]] = {
    "nb201": [[*NB201_DEAD, "nb201_disconnected"]],
}
# features whose coefficient may be negative (e.g. a folded, disconnected network is *faster*)
SIGNED_FEATURES = frozenset({"nb201_disconnected"})
# Dense execution: feature -> (unit kind, op) of the live units whose cost the pruned op shares
# (one unit per stage: the feature counts over the whole network, the tie takes the stage mean).
SPACE_TIES: dict[str, dict[str, tuple[str, str | None]]] = {
    "nb201": {f"nb201_{c}_{op}": ("add", None) if op == "add" else ("nb201op", op)
              for c in ("const_in", "dead_zero", "dead") for op in ("c1", "c3", "avg", "add")},
}
# features left free (not tied) in a dense candidate
SPACE_TIE_FREE: dict[str, tuple[str, ...]] = {"nb201": ("nb201_disconnected",)}
GROUPINGS = ("all", "kind", "unit")
RIDGE_GRID = (30.0, 3.0, 0.3, 0.03, 0.003, 0.0003)
MIN_ROWS = 5
WEIGHT_FLOOR = 0.25  # rows are weighted by 1 / max(latency, WEIGHT_FLOOR * median latency)
HUBER_K = 1.345
IRLS_STEPS = 4
CV_ERROR_CAP = 0.5  # CV criterion: mean of min(|relative error|, cap)
SELECT_MAX_ROWS = 1000  # model selection on at most this many rows (the final fit uses all)
ANALYTIC_PARTS = ("macs", "traffic", "weights", "one")
ONE_SE = True  # one-standard-error rule toward prior-faithful candidates (see ensemble_weights)
ENSEMBLE_MAX = 30  # at most this many candidates enter the stacking pool
ENSEMBLE_MIN_WEIGHT = 0.02  # pool: plausibility below this (the best has 1) drops a candidate


@dataclass(frozen=True)
class FitConfig:
    """One candidate model: unit grouping, ridge strength, free feature terms, base costs and whether
    the space's tied (dense-execution) features are used."""

    grouping: str
    ridge: float
    features: tuple[str, ...] = ()
    base: str = "proxy"  # "proxy", "analytic", "prior:<device>", "mix" (or "prior": the only prior)
    tied: tuple[str, ...] = ()

    def describe(self) -> str:
        feats = f"{len(self.features)} feature terms" if self.features else "no feature terms"
        dense = ", dense cells (dead ops priced as live)" if self.tied else ""
        return f"{self.base} base, {self.grouping} scales, ridge {self.ridge:g}, {feats}{dense}"


@dataclass
class Design:
    """Everything the solver needs about a set of networks: unit counts, base costs and features."""

    keys: list[str]  # unit keys (columns of ``counts``)
    counts: np.ndarray  # (n_networks, n_keys) unit counts
    layers: dict[str, Layer]  # key -> unit descriptor
    feature_names: list[str]
    features: np.ndarray  # (n_networks, n_features)

    def subset(self, rows: np.ndarray) -> Design:
        return Design(self.keys, self.counts[rows], self.layers, self.feature_names, self.features[rows])

    def tie_matrix(self, tied: Sequence[str]) -> np.ndarray:
        """(n_tied, n_keys): a pruned op counted by feature ``f`` adds 1/n_stages to each live unit of its
        op (see :data:`SPACE_TIES`)."""
        return _tie_matrix(tuple(self.keys), tuple(tied), self.layers)

    def dense_counts(self, tied: Sequence[str]) -> np.ndarray:
        """Unit counts plus the tied features' pruned ops spread over their op's units."""
        if not tied:
            return self.counts
        idx = [self.feature_names.index(f) for f in tied]
        return self.counts + self.features[:, idx] @ self.tie_matrix(tied)


_TIE_CACHE: dict[tuple[tuple[str, ...], tuple[str, ...]], np.ndarray] = {}


def _tie_matrix(keys: tuple[str, ...], tied: tuple[str, ...], layers: dict[str, Layer]) -> np.ndarray:
    ck = (keys, tied)
    if ck not in _TIE_CACHE:
        ties = {f: t for ties in SPACE_TIES.values() for f, t in ties.items()}
        T = np.zeros((len(tied), len(keys)))
        for i, f in enumerate(tied):
            kind, op = ties[f]
            cols = [j for j, k in enumerate(keys) if layers[k].kind == kind and getattr(layers[k], "op", None) == op]
            if cols:
                T[i, cols] = 1.0 / len(cols)
        _TIE_CACHE[ck] = T
    return _TIE_CACHE[ck]


@dataclass
class FitResult:
    """A solved model: base costs times group scales, feature coefficients and overhead."""

    config: FitConfig
    overhead_ms: float
    unit_ms: dict[str, float]  # fitted cost of every unit key in the design (and beyond: see ``fit_table``)
    terms: dict[str, float]  # free and tied feature coefficients (ms per unit of feature)
    anchor_scale: float
    group_scales: dict[str, float] = field(default_factory=dict)

    def predict(self, design: Design) -> np.ndarray:
        x = np.array([self.unit_ms.get(k, 0.0) for k in design.keys])
        c = np.array([self.terms.get(n, 0.0) for n in design.feature_names])
        return self.overhead_ms + design.counts @ x + (design.features @ c if c.size else 0.0)


# -- design -----------------------------------------------------------------------------------
def unit_group(layer: Layer) -> str:
    """The scale group of a unit under the ``kind`` grouping: kind plus its op-shaping fields."""
    parts = [layer.kind]
    for name in ("op", "k", "pg", "act"):
        if hasattr(layer, name):
            parts.append(f"{name}{getattr(layer, name)}")
    if getattr(layer, "se", 0):
        parts.append("se")
    if hasattr(layer, "expand") and not layer.expand:
        parts.append("noexp")
    return ":".join(parts)


def proxy_ms(layer: Layer) -> float:
    """Analytic stand-in for a unit's cost when no prior table has it: MACs plus 8 x activation elements
    (memory traffic; pools and additions have no MACs), in arbitrary units (rescaled by the fit)."""
    c = layer.cost()
    return float(c.macs + 8 * c.peak_act_elems) + 1.0


@lru_cache(maxsize=1 << 16)
def analytic_parts(layer: Layer) -> tuple[float, float, float, float]:
    """Per-unit analytic components (:data:`ANALYTIC_PARTS`): MACs, activation traffic (input + output
    elements), weights (parameters) and 1 (a per-op dispatch cost)."""
    c = layer.cost()
    oc, oh, ow = layer.out_shape
    traffic = layer.cin * max(layer.hw, 1) ** 2 + oc * max(oh, 1) * max(ow, 1)
    return float(c.macs), float(traffic), float(c.params), 1.0


@lru_cache(maxsize=1 << 16)
def unit_key(layer: Layer) -> str:
    """``layer.key``, cached (keys are recomputed from dataclass fields on every access)."""
    return layer.key


def build_design(space: SearchSpace, specs: Sequence[ArchSpec], feature_names: Sequence[str] = (),
                 task: Task | None = None, keys: Sequence[str] | None = None) -> Design:
    """Unit counts and feature values of ``specs``; columns are ``keys`` (default: every unit seen)."""
    per_spec = [[(unit_key(u), u) for u in space.units(s, task)] for s in specs]
    layers: dict[str, Layer] = {}
    for units in per_spec:
        for k, u in units:
            layers.setdefault(k, u)
    cols = list(keys) if keys is not None else sorted(layers)
    index = {k: i for i, k in enumerate(cols)}
    counts = np.zeros((len(specs), len(cols)))
    for i, units in enumerate(per_spec):
        for k, _ in units:
            if k in index:
                counts[i, index[k]] += 1
    names = list(feature_names)
    feats = np.array([[spec_features(names, space, s, task)[n] for n in names] for s in specs], float)
    return Design(cols, counts, layers, names, feats.reshape(len(specs), len(names)))


_UNIT_CACHE: dict[tuple[str, str, Task | None], dict[str, Layer]] = {}


def space_unit_layers(space: SearchSpace, task: Task | None = None) -> dict[str, Layer]:
    """Every latency unit of the space (from its covering specs), by key; cached per space options."""
    ck = (space.name, repr(sorted(vars(space).items())), task)
    if ck not in _UNIT_CACHE:
        unique = {u for s in space.covering_specs() for u in space.units(s, task)}
        _UNIT_CACHE[ck] = {unit_key(u): u for u in unique}
    return dict(_UNIT_CACHE[ck])


# -- base costs ---------------------------------------------------------------------------------
@dataclass
class Base:
    """Base per-unit costs and prior feature coefficients the fit rescales. Static bases ignore the
    data; :class:`MixBase` fits its weights to each training set (:meth:`fit`)."""

    name: str
    unit_ms: Callable[[str, Layer], float]
    terms: dict[str, float]
    overhead_ms: float
    components: dict[str, float] = field(default_factory=dict)  # a fitted mix: component -> weight
    shares: dict[str, float] = field(default_factory=dict)  # a fitted mix: component -> share of the prediction
    _vec: dict[int, tuple[list[str], np.ndarray]] = field(default_factory=dict, repr=False)

    def vector(self, design: Design) -> np.ndarray:
        """Base costs of the design's columns (cached per column list)."""
        hit = self._vec.get(id(design.keys))
        if hit is None or hit[0] is not design.keys:
            hit = (design.keys, np.array([self.unit_ms(k, design.layers[k]) for k in design.keys]))
            self._vec[id(design.keys)] = hit
        return hit[1]

    def fit(self, design: Design, y: np.ndarray, tied: Sequence[str] = ()) -> Base:
        return self


def proxy_base() -> Base:
    return Base("proxy", lambda key, layer: proxy_ms(layer), {}, 0.0)


def _part_base(i: int) -> Base:
    return Base(ANALYTIC_PARTS[i], lambda key, layer: analytic_parts(layer)[i], {}, 0.0)


def prior_base(prior: LatencyTable, layers: dict[str, Layer], name: str | None = None) -> Base:
    """Effective per-unit costs of a prior table (``scale * p50 + per_unit``); units it lacks get the
    proxy times the median prior/proxy ratio of the units it has."""
    m = prior.model
    eff = {k: m.scale * e.p50_ms + m.per_unit_ms for k, e in prior.entries.items()}
    ratios = [eff[k] / proxy_ms(layers[k]) for k in layers if k in eff and eff[k] > 0]
    ratio = float(np.median(ratios)) if ratios else 1.0

    def unit_ms(key: str, layer: Layer) -> float:
        v = eff.get(key)
        return max(v, 1e-9) if v is not None and v > 0 else ratio * proxy_ms(layer)

    return Base(name or f"prior:{prior.device}", unit_ms, dict(m.terms), m.overhead_ms)


class MixBase(Base):
    """A non-negative mix of component bases, weights fitted (robust, relative NNLS with an offset) to
    the rows it is given: ``x0 = sum_c w_c x0_c``, terms likewise."""

    def __init__(self, name: str, parts: Sequence[Base]) -> None:
        super().__init__(name, self._no_unit, {}, 0.0)
        self.parts = list(parts)

    @staticmethod
    def _no_unit(key: str, layer: Layer) -> float:
        raise RuntimeError("a mix base must be fitted before use")

    def fit(self, design: Design, y: np.ndarray, tied: Sequence[str] = ()) -> Base:
        counts = design.dense_counts(tied)
        free = [j for j, n in enumerate(design.feature_names) if n not in tied]
        cols = []
        for p in self.parts:
            c0 = np.array([p.terms.get(design.feature_names[j], 0.0) for j in free])
            col = counts @ p.vector(design)
            if c0.size:
                col = col + design.features[:, free] @ c0
            cols.append(col)
        A = np.stack([np.ones_like(y), *cols], axis=1)
        w0 = _row_weights(y)
        h = np.ones_like(y)
        coef = np.zeros(A.shape[1])
        for _ in range(IRLS_STEPS):
            w = w0 * h
            coef = _solve_bounded(A * w[:, None], y * w, np.array([-np.inf, *([0.0] * len(self.parts))]))
            h = _huber((A @ coef - y) / y)
        weights = {p.name: float(wt) for p, wt in zip(self.parts, coef[1:]) if wt > 0}
        contrib = {p.name: float(wt * np.mean(col)) for p, wt, col in zip(self.parts, coef[1:], cols) if wt > 0}
        total = sum(contrib.values())
        if not weights:  # no component carries signal: fall back to the analytic proxy
            fallback = proxy_base()
            fallback.name = self.name
            return fallback
        parts = [(p, float(wt)) for p, wt in zip(self.parts, coef[1:]) if wt > 0]

        def unit_ms(key: str, layer: Layer) -> float:
            return max(sum(wt * p.unit_ms(key, layer) for p, wt in parts), 1e-12)

        terms: dict[str, float] = {}
        for p, wt in parts:
            for f, c in p.terms.items():
                terms[f] = terms.get(f, 0.0) + wt * c
        return Base(self.name, unit_ms, terms, float(coef[0]), weights,
                    {k: v / total for k, v in contrib.items()} if total > 0 else {})


def analytic_base() -> MixBase:
    return MixBase("analytic", [_part_base(i) for i in range(len(ANALYTIC_PARTS))])


def make_bases(priors: Sequence[LatencyTable], layers: dict[str, Layer]) -> dict[str, Base]:
    """Every candidate base: ``proxy``, ``analytic``, one per prior, and (with priors) ``mix``."""
    bases: dict[str, Base] = {"proxy": proxy_base(), "analytic": analytic_base()}
    pbases = [prior_base(p, layers, f"prior:{p.device}") for p in priors]
    for b in pbases:
        bases[b.name] = b
    if pbases:
        bases["mix"] = MixBase("mix", [*pbases, *(_part_base(i) for i in range(len(ANALYTIC_PARTS)))])
    return bases


# -- solver -------------------------------------------------------------------------------------
def _med(x: np.ndarray) -> float:
    """Median of a 1-d array (np.median's overhead dominates on the small arrays of a fit)."""
    xs = np.sort(x)
    n = len(xs)
    return float(xs[n // 2]) if n % 2 else float(0.5 * (xs[n // 2 - 1] + xs[n // 2]))


def _row_weights(y: np.ndarray) -> np.ndarray:
    return 1.0 / np.maximum(y, WEIGHT_FLOOR * _med(y))


def _solve_bounded(A: np.ndarray, b: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """min ||A x - b|| with x >= lower (column-scaled for conditioning). Exact, by NNLS (Lawson-Hanson):
    x = lower + z for bounded columns, x = z+ - z- for unbounded ones."""
    from scipy.optimize import nnls

    norms = np.linalg.norm(A, axis=0)
    norms[norms == 0] = 1.0
    As = A / norms
    free = ~np.isfinite(lower)
    lo = np.where(free, 0.0, lower * norms)
    rhs = b - As @ lo
    M = np.concatenate([As, -As[:, free]], axis=1)
    z, _ = nnls(M, rhs, maxiter=50 * M.shape[1])
    x = lo + z[: A.shape[1]]
    x[free] -= z[A.shape[1]:]
    return x / norms


def _base_prediction(design: Design, config: FitConfig, base: Base) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                             np.ndarray, np.ndarray]:
    """(x0, effective counts, free-feature matrix, their base terms, the base's prediction) of a config."""
    x0 = base.vector(design)
    counts = design.dense_counts(config.tied)
    fidx = [design.feature_names.index(f) for f in config.features]
    F = design.features[:, fidx] if fidx else np.zeros((len(design.counts), 0))
    c0 = np.array([base.terms.get(f, 0.0) for f in config.features])
    return x0, counts, F, c0, counts @ x0 + (F @ c0 if c0.size else 0.0)


def anchor(design: Design, y: np.ndarray, config: FitConfig, base: Base) -> tuple[float, float]:
    """Overhead and one common scale of the base prediction (robust): what the ridge pulls toward. The
    same for every config with the same base, semantics and feature terms."""
    y = np.asarray(y, float)
    base_ms = _base_prediction(design, config, base)[4]
    w0 = _row_weights(y)
    A = np.stack([np.ones_like(y), base_ms], axis=1)
    h = np.ones_like(y)
    coef = np.array([0.0, 1.0])
    for _ in range(IRLS_STEPS):
        w = w0 * h
        coef = _solve_bounded(A * w[:, None], y * w, np.array([-np.inf, 0.0]))
        h = _huber(((A @ coef) - y) / y)
    o_anchor, s = float(coef[0]), float(coef[1])
    if s <= 0:  # base carries no signal on this data: fall back to its own scale
        return 0.0, float(_med(y) / max(_med(base_ms), 1e-12))
    return o_anchor, s


_GROUP_CACHE: dict[tuple[int, str], tuple[list[str], list[str], np.ndarray]] = {}


def _groups(design: Design, grouping: str) -> tuple[list[str], np.ndarray]:
    """The scale groups of a grouping over the design's columns, and each column's group index."""
    hit = _GROUP_CACHE.get((id(design.keys), grouping))
    if hit is None or hit[0] is not design.keys:
        if grouping == "all":
            group_of = ["all"] * len(design.keys)
        elif grouping == "kind":
            group_of = [unit_group(design.layers[k]) for k in design.keys]
        else:
            group_of = list(design.keys)
        groups = sorted(set(group_of))
        index = {g: i for i, g in enumerate(groups)}
        if len(_GROUP_CACHE) > 256:
            _GROUP_CACHE.clear()
        hit = (design.keys, groups, np.array([index[g] for g in group_of], dtype=int))
        _GROUP_CACHE[(id(design.keys), grouping)] = hit
    return hit[1], hit[2]


def solve(design: Design, y: np.ndarray, config: FitConfig, base: Base,
          anchored: tuple[float, float] | None = None) -> FitResult:
    """Fit one candidate model to measured latencies ``y`` (ms); ``base`` must already be fitted (a
    :class:`MixBase` is fitted with :meth:`Base.fit` on the same rows). ``anchored``: :func:`anchor`'s
    result when the caller has it."""
    y = np.asarray(y, float)
    x0, counts, F, c0, _ = _base_prediction(design, config, base)
    w0 = _row_weights(y)
    # 1) anchor: overhead + one scale on the base prediction
    o_anchor, s = anchored if anchored is not None else anchor(design, y, config, base)

    # 2) groups
    groups, gi = _groups(design, config.grouping)
    G = np.zeros((len(design.keys), len(groups)))
    G[np.arange(len(design.keys)), gi] = x0
    Xg = counts @ G  # (n, n_groups): base ms of each group

    # 3) ridge toward the anchor, robust re-weighting. Unknowns: [overhead, s_g..., c_f...]
    lam = math.sqrt(config.ridge)
    med = _med(y)
    n_g, n_f = len(groups), len(config.features)
    ftau = np.array([med / max(float(np.mean(np.abs(F[:, j]))), 1e-9) for j in range(n_f)])
    P = np.zeros((1 + n_g + n_f, 1 + n_g + n_f))
    q = np.zeros(1 + n_g + n_f)
    P[0, 0], q[0] = lam / med, lam * o_anchor / med  # overhead: relative to the median latency
    for i in range(n_g):
        P[1 + i, 1 + i], q[1 + i] = lam / s, lam  # (s_g - s) / s
    for j in range(n_f):
        P[1 + n_g + j, 1 + n_g + j] = lam / ftau[j]
        q[1 + n_g + j] = lam * s * c0[j] / ftau[j]
    D = np.concatenate([np.ones((len(y), 1)), Xg, F], axis=1)
    lower = np.concatenate([[-np.inf], np.zeros(n_g),
                            [-np.inf if f in SIGNED_FEATURES else 0.0 for f in config.features]])
    h = np.ones_like(y)
    theta = np.zeros(D.shape[1])
    for _ in range(IRLS_STEPS):
        w = w0 * h
        theta = _solve_bounded(np.concatenate([D * w[:, None], P]), np.concatenate([y * w, q]), lower)
        h = _huber((D @ theta - y) / y)
    scales = {g: float(theta[1 + i]) for i, g in enumerate(groups)}
    unit_vec = theta[1 + gi] * x0
    unit = dict(zip(design.keys, unit_vec.tolist()))
    terms = {f: float(theta[1 + n_g + j]) for j, f in enumerate(config.features)}
    if config.tied:
        terms.update(zip(config.tied, (design.tie_matrix(config.tied) @ unit_vec).tolist()))
    return FitResult(config, float(theta[0]), unit, terms, s, scales)


def _huber(r: np.ndarray) -> np.ndarray:
    """Huber weights of residuals ``r`` with a MAD scale."""
    sigma = max(1.4826 * _med(np.abs(r - _med(r))), 1e-3)
    return np.minimum(1.0, HUBER_K * sigma / np.maximum(np.abs(r), 1e-12))


# -- model selection ----------------------------------------------------------------------------
def candidate_configs(space: SearchSpace, bases: Sequence[str] = ("proxy", "analytic")) -> list[FitConfig]:
    """The grid for each base, simplest first (ties in CV go to the earlier candidate)."""
    variants: list[tuple[tuple[str, ...], tuple[str, ...]]] = [((), ())]
    variants += [(tuple(fs), ()) for fs in SPACE_FEATURES.get(space.name, []) if all(f in FEATURES for f in fs)]
    ties = SPACE_TIES.get(space.name)
    if ties and all(f in FEATURES for f in ties):
        variants.append((SPACE_TIE_FREE.get(space.name, ()), tuple(ties)))
    out = []
    for base in bases:
        for feats, tied in variants:
            out.append(FitConfig("all", RIDGE_GRID[0], feats, base, tied))
            for grouping in ("kind", "unit"):
                out += [FitConfig(grouping, lam, feats, base, tied) for lam in RIDGE_GRID]
    return out


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return [perm[i::k] for i in range(k)]


def _fitted_bases(design: Design, y: np.ndarray, configs: Sequence[FitConfig],
                  bases: dict[str, Base]) -> dict[tuple[str, tuple[str, ...]], Base]:
    return {(b, t): bases[b].fit(design, y, t) for b, t in dict.fromkeys((c.base, c.tied) for c in configs)}


def cv_predictions(design: Design, y: np.ndarray, configs: Sequence[FitConfig], bases: dict[str, Base],
                   folds: int, seed: int) -> np.ndarray:
    """Out-of-fold predictions (ms), (n_configs, n_rows); mix bases are refitted on each training fold."""
    n = len(y)
    k = max(2, min(folds, n))
    pred = np.zeros((len(configs), n))
    for test in _folds(n, k, seed):
        train = np.setdiff1d(np.arange(n), test)
        d_tr, d_te = design.subset(train), design.subset(test)
        fitted = _fitted_bases(d_tr, y[train], configs, bases)
        anchors: dict[tuple[str, tuple[str, ...], tuple[str, ...]], tuple[float, float]] = {}
        for ci, cfg in enumerate(configs):
            b = fitted[(cfg.base, cfg.tied)]
            ak = (cfg.base, cfg.tied, cfg.features)
            if ak not in anchors:
                anchors[ak] = anchor(d_tr, y[train], cfg, b)
            pred[ci, test] = solve(d_tr, y[train], cfg, b, anchors[ak]).predict(d_te)
    return pred


def cv_errors(design: Design, y: np.ndarray, configs: Sequence[FitConfig], bases: dict[str, Base],
              folds: int, seed: int) -> np.ndarray:
    """Out-of-fold relative errors, (n_configs, n_rows)."""
    return np.abs(cv_predictions(design, y, configs, bases, folds, seed) - y) / y


def reference_candidates(configs: Sequence[FitConfig], bases: dict[str, Base]) -> list[int]:
    """The prior-faithful candidates: each base rescaled as a whole (``all`` scales, strongest ridge),
    with the feature terms its table carries (pulled to them) and the execution semantics it was fitted
    with. The one-standard-error rule of :func:`ensemble_weights` prefers these."""
    out = []
    for i, c in enumerate(configs):
        if c.grouping != "all" or c.tied:
            continue
        b = bases[c.base]
        terms = set(b.terms) if not isinstance(b, MixBase) else {f for p in b.parts for f in p.terms}
        if (terms <= set(c.features)) if terms else not c.features:
            out.append(i)
    return out


def ensemble_weights(err: np.ndarray, max_members: int = ENSEMBLE_MAX, reference: Sequence[int] = (),
                     one_se: float = 1.0) -> np.ndarray:
    """Plausibility weights of the candidates, from their capped out-of-fold errors (n_configs, n_rows):
    the pool :func:`stack_weights` combines.

    One-standard-error rule: a candidate other than the best ``reference`` one (prior-faithful) is
    charged ``one_se`` standard errors of its paired difference to it, so the rows must show, not just
    suggest, that a table should depart from what its priors say. Then each candidate's paired
    t-statistic against the best (charged) one, ``t = mean(d) / se(d)`` with ``d`` its per-row excess
    error, gives the weight ``2 P(Z > t)`` (1 for the best; the chance, under a normal paired difference,
    that the CV ranked the two wrongly). At most ``max_members`` candidates keep a weight."""
    from scipy.stats import norm

    capped = np.minimum(err, CV_ERROR_CAP)
    n = capped.shape[1]
    score = capped.mean(axis=1)

    def se(d: np.ndarray) -> np.ndarray:
        return d.std(axis=-1, ddof=1) / math.sqrt(n) if n > 1 else np.zeros(d.shape[:-1])

    charged = score.copy()
    if len(reference):
        ref = min(reference, key=lambda i: score[i])
        charge = one_se * se(capped - capped[ref])
        charge[ref] = 0.0
        charged = score + charge
    best = int(np.argmin(charged))
    dm = charged - charged[best]
    s = se(capped - capped[best])
    t = np.where(s > 1e-12, dm / np.maximum(s, 1e-12), np.where(dm > 1e-12, np.inf, 0.0))
    w = 2.0 * norm.sf(np.maximum(t, 0.0))
    order = np.argsort(charged, kind="stable")
    w[order[max_members:]] = 0.0
    w[w < ENSEMBLE_MIN_WEIGHT] = 0.0
    return w / w.sum()


def stack_weights(pred: np.ndarray, y: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Convex stacking (Breiman's stacked regression, the super learner): the non-negative weights,
    summing to one, of the ``pool`` candidates (non-zero weight) that minimise the relative error of
    their combined out-of-fold predictions ``pred`` (n_configs, n_rows). The fitted table is that
    combination: the model is linear in entries, overhead and terms, so averaging tables averages
    predictions."""
    from scipy.optimize import nnls

    idx = np.flatnonzero(pool > 0)
    if len(idx) <= 1:
        return pool
    w0 = _row_weights(y)
    lam = 1e3 * math.sqrt(len(y))  # the sum-to-one row
    A = np.concatenate([(pred[idx] * w0).T, lam * np.ones((1, len(idx)))])
    z, _ = nnls(A, np.concatenate([y * w0, [lam]]))
    out = np.zeros_like(pool)
    out[idx] = z / z.sum() if z.sum() > 0 else pool[idx]
    out[out < 1e-3] = 0.0
    return out / out.sum()


def select_config(design: Design, y: np.ndarray, configs: Sequence[FitConfig], bases: dict[str, Base],
                  folds: int, seed: int) -> tuple[FitConfig, list[dict[str, Any]], np.ndarray]:
    """Model selection on at most SELECT_MAX_ROWS rows: the stacked weights of the candidates
    (:func:`ensemble_weights` pool, :func:`stack_weights`), the candidate with the largest weight and the
    per-candidate report (plus the combination's out-of-fold figures, ``"ensemble"``)."""
    rows = np.arange(len(y))
    if len(y) > SELECT_MAX_ROWS:
        rows = np.sort(np.random.default_rng(seed + 1).choice(len(y), SELECT_MAX_ROWS, replace=False))
    pred = cv_predictions(design.subset(rows), y[rows], configs, bases, folds, seed)
    err = np.abs(pred - y[rows]) / y[rows]
    score = np.minimum(err, CV_ERROR_CAP).mean(axis=1)
    pool = ensemble_weights(err, ENSEMBLE_MAX, reference_candidates(configs, bases) if ONE_SE else ())
    weights = stack_weights(pred, y[rows], pool)
    best = int(np.argmax(weights))
    ens = weights @ pred
    ens_err = np.abs(ens - y[rows]) / y[rows]
    report = [{"config": c.describe(), "base": c.base, "cv_capped_mre": float(sc),
               "cv_within_10pct": float((e <= 0.10).mean()), "weight": float(wt)}
              for c, sc, e, wt in zip(configs, score, err, weights)]
    report.append({"config": "ensemble", "base": "ensemble",
                   "cv_capped_mre": float(np.minimum(ens_err, CV_ERROR_CAP).mean()),
                   "cv_within_10pct": float((ens_err <= 0.10).mean()), "weight": 0.0})
    return configs[best], report, weights


def base_summary(report: list[dict[str, Any]], chosen: FitConfig) -> dict[str, Any]:
    """Which base won the selection and by how much: the best CV score of each base, the ensemble's
    weight on each, the gain of the chosen base (the best single candidate's) over the best prior-free
    base (``proxy``/``analytic``) and over the runner-up base."""
    best: dict[str, dict[str, Any]] = {}
    weight: dict[str, float] = {}
    for r in report:
        if r["base"] == "ensemble":
            continue
        weight[r["base"]] = weight.get(r["base"], 0.0) + r["weight"]
        if r["base"] not in best or r["cv_capped_mre"] < best[r["base"]]["cv_capped_mre"]:
            best[r["base"]] = r
    chosen_score = best[chosen.base]["cv_capped_mre"]
    no_prior = min((v["cv_capped_mre"] for b, v in best.items() if b in ("proxy", "analytic")), default=None)
    others = sorted((v["cv_capped_mre"], b) for b, v in best.items() if b != chosen.base)
    ens = next((r for r in report if r["base"] == "ensemble"), None)
    return {
        "chosen": chosen.base,
        "cv_capped_mre": chosen_score,
        "ensemble_cv_capped_mre": ens["cv_capped_mre"] if ens else None,
        "no_prior_cv_capped_mre": no_prior,
        "gain_vs_no_prior": (no_prior - chosen_score) if no_prior is not None else None,
        "runner_up": others[0][1] if others else None,
        "gain_vs_runner_up": (others[0][0] - chosen_score) if others else None,
        "ensemble_weights": {b: round(w, 4) for b, w in sorted(weight.items(), key=lambda kv: -kv[1]) if w > 0},
        "by_base": {b: {"cv_capped_mre": v["cv_capped_mre"], "cv_within_10pct": v["cv_within_10pct"],
                        "best_config": v["config"]} for b, v in sorted(best.items())},
    }


# -- public API ---------------------------------------------------------------------------------
def check_measurements(specs: Sequence[ArchSpec], latencies_ms: Sequence[float]) -> np.ndarray:
    y = np.asarray(latencies_ms, float)
    if len(specs) != len(y):
        raise EdgenasError(f"{len(specs)} architectures but {len(y)} latencies")
    if len(y) < MIN_ROWS:
        raise EdgenasError(f"need at least {MIN_ROWS} measured networks to fit a table, got {len(y)}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise EdgenasError("latencies must be positive, finite milliseconds")
    return y


def _check_priors(space: SearchSpace, prior: LatencyTable | None,
                  priors: Sequence[LatencyTable] | None) -> list[LatencyTable]:
    out = list(priors or []) + ([prior] if prior is not None else [])
    for p in out:
        if p.space != space.name:
            raise EdgenasError(f"prior table {p.device!r} is for space {p.space!r}, not {space.name!r}")
    names = [p.device for p in out]
    if len(set(names)) != len(names):
        raise EdgenasError(f"prior tables must come from different devices, got {', '.join(names)}")
    return out


def fit_latency_table(
    space: SearchSpace, specs: Sequence[ArchSpec], latencies_ms: Sequence[float], device_name: str,
    prior: LatencyTable | None = None, seed: int = 0, task: Task | None = None, folds: int = 5,
    runtime: dict[str, Any] | None = None, configs: Sequence[FitConfig] | None = None,
    priors: Sequence[LatencyTable] | None = None,
) -> LatencyTable:
    """Fit a latency table for ``device_name`` from whole networks measured end to end.

    ``prior`` / ``priors``: tables of the same space from other devices (or a local profile). Every
    prior is a candidate base alone, and with priors the ``mix`` of all of them (plus the analytic
    parts) is one too; without priors the bases are analytic. The model is chosen among
    :func:`candidate_configs` (or ``configs``) by ``folds``-fold CV on these measurements only. The
    table's ``validation`` holds the CV figures of the chosen model and ``prior_selection`` (which base
    won, by how much); run :func:`cross_validate` for a nested (unbiased) estimate.
    """
    y = check_measurements(specs, latencies_ms)
    plist = _check_priors(space, prior, priors)
    all_layers = space_unit_layers(space, task)
    bases = make_bases(plist, all_layers)
    if prior is not None and not priors:
        bases["prior"] = bases[f"prior:{prior.device}"]  # FitConfig(base="prior") names the only prior
    if configs is None:
        configs = candidate_configs(space, [b for b in bases if b != "prior"])
    configs = list(configs)
    unknown = {c.base for c in configs} - set(bases)
    if unknown:
        raise EdgenasError(f"fit configs name unknown base(s) {sorted(unknown)}; have {sorted(bases)}")
    tied = sorted({f for c in configs for f in c.tied})
    feature_names = sorted({f for c in configs for f in (*c.features, *c.tied)})
    seen = {unit_key(u) for s in specs for u in space.units(s, task)}
    ties = SPACE_TIES.get(space.name, {})
    tied_units = {k for k, u in all_layers.items() for f in tied
                  if (u.kind, getattr(u, "op", None)) == ties[f]} if tied else set()
    design = build_design(space, specs, feature_names, task, keys=sorted(seen | tied_units))
    design.layers = {**all_layers, **design.layers}
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # many small solves: one BLAS thread is faster and leaves the cores free
        if len(configs) > 1:
            best, report, weights = select_config(design, y, configs, bases, folds, seed)
        else:
            best, report, weights = configs[0], [], np.ones(1)
        fitted = _fitted_bases(design, y, [c for c, w in zip(configs, weights) if w > 0], bases)
        members = [(float(w), solve(design, y, c, fitted[(c.base, c.tied)]), fitted[(c.base, c.tied)])
                   for c, w in zip(configs, weights) if w > 0]
    table = _to_table(members, design, design.layers, y, space, device_name, plist, runtime, report, folds, seed)
    if report:
        best_base = fitted[(best.base, best.tied)]
        table.validation["prior_selection"] = {**base_summary(report, best), "components": best_base.components,
                                               "component_shares": best_base.shares,
                                               "candidates": [p.device for p in plist]}
    return table


def _member_entries(result: FitResult, design: Design, all_layers: dict[str, Layer], base: Base) -> dict[str, float]:
    """Unit costs for every unit of the space: fitted where the data saw it, else base * the anchor
    scale (or the unit's group scale when it has one)."""
    out = {}
    for key, layer in all_layers.items():
        if key in result.unit_ms:
            out[key] = result.unit_ms[key]
        else:
            g = {"all": "all", "kind": unit_group(layer)}.get(result.config.grouping, key)
            out[key] = result.group_scales.get(g, result.anchor_scale) * base.unit_ms(key, layer)
    return out


def _to_table(members: list[tuple[float, FitResult, Base]], design: Design, all_layers: dict[str, Layer],
              y: np.ndarray, space: SearchSpace, device_name: str, priors: list[LatencyTable],
              runtime: dict[str, Any] | None, report: list[dict[str, Any]], folds: int, seed: int) -> LatencyTable:
    """One table from the weighted ensemble members (the model is linear in entries, overhead and
    terms, so averaging them averages the predictions)."""
    seen = dict(zip(design.keys, (design.counts > 0).sum(axis=0).tolist()))
    unit = dict.fromkeys(all_layers, 0.0)
    terms: dict[str, float] = {}
    overhead = 0.0
    for w, result, base in members:
        for k, v in _member_entries(result, design, all_layers, base).items():
            unit[k] += w * v
        for f, c in result.terms.items():
            terms[f] = terms.get(f, 0.0) + w * c
        overhead += w * result.overhead_ms
    entries = {k: Entry(mean_ms=v, std_ms=0.0, p50_ms=v, n=int(seen.get(k, 0))) for k, v in sorted(unit.items())}
    top = max(members, key=lambda m: m[0])
    bases_used = {m[1].config.base for m in members}
    used = [p.device for p in priors if bases_used & {f"prior:{p.device}", "prior", "mix"}]
    if bases_used <= {"prior"}:
        used = used[:1]
    mix = (f" (mix weights: {', '.join(f'{k} {v:.3g}' for k, v in sorted(top[2].components.items()))})"
           if top[2].components else "")
    what = (f"{top[1].config.describe()}{mix}" if len(members) == 1 else
            f"average of {len(members)} candidates weighted by CV, the largest ({top[0]:.2f}): "
            f"{top[1].config.describe()}{mix}")
    table = LatencyTable(
        device=device_name, space=space.name,
        runtime=runtime or {"name": "unknown", "version": "", "threads": 1, "options": {}},
        entries=entries,
        model=DeviceModel(overhead_ms=overhead, scale=1.0, per_unit_ms=0.0, fitted_on=len(y),
                          terms={k: v for k, v in sorted(terms.items()) if v != 0.0}),
        host=host_info(), source="fitted",
        notes=(f"fitted on {len(y)} end-to-end measurements by 'edgenas lut fit': {what}"
               + (f"; prior table(s) from {', '.join(used)}" if used else "")
               + ". Entry n = number of training networks that contain the unit (0: extrapolated)."),
    )
    ens = next((r for r in report if r["base"] == "ensemble"), None)
    table.validation = {
        "kind": "cross-validation (model selection)", "folds": folds, "seed": seed, "n": len(y),
        "model": top[1].config.describe() + (f" (+{len(members) - 1} averaged)" if len(members) > 1 else ""),
        "members": len(members),
        **({"cv_capped_mre": ens["cv_capped_mre"], "cv_within_10pct": ens["cv_within_10pct"]} if ens else {}),
    }
    return table


def predict_with_table(table: LatencyTable, space: SearchSpace, specs: Sequence[ArchSpec],
                       task: Task | None = None) -> np.ndarray:
    """Vectorised ``LatencyPredictor.predict_many`` for a fitted (non-scoped) table: same formula,
    one matrix product (used for large evaluations; the tests check both agree)."""
    missing = {unit_key(u) for s in specs for u in space.units(s, task)} - set(table.entries)
    if missing:
        raise EdgenasError(f"table lacks {len(missing)} unit(s), e.g. {sorted(missing)[0]}")
    return predict_design(table, build_design(space, specs, list(table.model.terms), task, keys=sorted(table.entries)))


def predict_design(table: LatencyTable, design: Design) -> np.ndarray:
    """The table's predictions (ms) for the networks of ``design``, whose columns must include every
    unit the networks use and whose features must include the table's terms."""
    m = table.model
    p50 = np.array([table.entries[k].p50_ms if k in table.entries else 0.0 for k in design.keys])
    coef = np.array([m.terms.get(n, 0.0) for n in design.feature_names])
    extra = design.features @ coef if coef.size else 0.0
    return m.overhead_ms + m.scale * (design.counts @ p50) + m.per_unit_ms * design.counts.sum(axis=1) + extra


def cv_fold_count(n: int, folds: int) -> int:
    """Outer folds for ``n`` rows: at most ``folds``, and every training part keeps MIN_ROWS rows."""
    k = min(folds, n)
    while k > 2 and n - math.ceil(n / k) < MIN_ROWS:
        k -= 1
    return max(2, k)


def cross_validate(
    space: SearchSpace, specs: Sequence[ArchSpec], latencies_ms: Sequence[float],
    prior: LatencyTable | None = None, folds: int = 5, seed: int = 0, task: Task | None = None,
    priors: Sequence[LatencyTable] | None = None,
) -> dict[str, Any]:
    """Nested K-fold CV of the whole procedure (model and base selection included): each fold's table is
    fitted on the other folds only and predicts the held-out networks. Returns :func:`latency_metrics`
    of the out-of-fold predictions plus ``folds``, ``capped_mre`` and ``rows`` (training rows per fold)."""
    from edgenas.latency.validate import latency_metrics

    y = check_measurements(specs, latencies_ms)
    if len(y) < 2 * MIN_ROWS:
        raise EdgenasError(f"cross-validation needs at least {2 * MIN_ROWS} measured networks, got {len(y)}")
    k = cv_fold_count(len(y), folds)
    pred = np.zeros_like(y)
    for test in _folds(len(y), k, seed):
        train = np.setdiff1d(np.arange(len(y)), test)
        t = fit_latency_table(space, [specs[i] for i in train], y[train], "cv", prior=prior, priors=priors,
                              seed=seed, task=task, folds=folds)
        pred[test] = predict_with_table(t, space, [specs[i] for i in test], task)
    rel = np.abs(pred - y) / y
    return {**latency_metrics(pred.tolist(), y.tolist()), "folds": k, "rows": len(y) - math.ceil(len(y) / k),
            "capped_mre": float(np.minimum(rel, CV_ERROR_CAP).mean())}


CURVE_GAIN = 0.002  # "more rows help" while they add at least this much Spearman per 10 networks
CURVE_PAIRS = 24  # a curve point pools repeats until it has scored about this many (prediction, row) pairs
CURVE_MAX_REPEATS = 6


def learning_curve(
    space: SearchSpace, specs: Sequence[ArchSpec], latencies_ms: Sequence[float],
    priors: Sequence[LatencyTable] | None = None, folds: int = 5, seed: int = 0, task: Task | None = None,
    max_points: int = 3,
) -> list[dict[str, float]]:
    """The CV curve over the rows the user has: for sizes m from MIN_ROWS up to (not including) the
    nested CV's training size, the whole procedure is fitted on random m-row subsets and scored on the
    remaining rows, pooled over enough repeats for about CURVE_PAIRS scored pairs (like the pooled
    out-of-fold predictions of :func:`cross_validate`, which gives the curve's last point). Returns one
    point per size (Spearman, within +-10%, capped relative error, pairs)."""
    from scipy.stats import spearmanr

    y = check_measurements(specs, latencies_ms)
    n = len(y)
    m_cv = n - math.ceil(n / cv_fold_count(n, folds))
    sizes = sorted({round(float(v)) for v in np.geomspace(MIN_ROWS, m_cv, max_points + 1)[:-1]} - {m_cv})
    sizes = [m for m in sizes if MIN_ROWS <= m < m_cv and n - m >= 3]
    points = []
    for m in sizes:
        preds, meas = [], []
        for r in range(min(CURVE_MAX_REPEATS, math.ceil(CURVE_PAIRS / (n - m))) if n <= 200 else 1):
            idx = np.random.default_rng([seed, m, r]).permutation(n)
            tr, te = idx[:m], idx[m:]
            t = fit_latency_table(space, [specs[i] for i in tr], y[tr], "curve", priors=priors, seed=seed, task=task,
                                  folds=folds)
            preds.append(predict_with_table(t, space, [specs[i] for i in te], task))
            meas.append(y[te])
        p, q = np.concatenate(preds), np.concatenate(meas)
        rel = np.abs(p - q) / q
        rs = spearmanr(p, q).statistic
        points.append({"rows": m, "spearman": 0.0 if math.isnan(rs) else float(rs),
                       "within_10pct": float((rel <= 0.10).mean()),
                       "capped_mre": float(np.minimum(rel, CV_ERROR_CAP).mean()), "pairs": len(q)})
    return points


def curve_advice(points: Sequence[dict[str, float]], n: int) -> dict[str, Any]:
    """Extrapolate a curve of (rows, Spearman) points, the last one at ``n``-ish rows: fit
    ``1 - rho(m) = a + b * m^-alpha`` (a, b >= 0; alpha on a grid, 0.5 with two points), then report the
    predicted Spearman at 2n, the gain per 10 more networks at n, and how many more networks it takes
    until that gain drops below :data:`CURVE_GAIN`."""
    pts = [(float(p["rows"]), 1.0 - float(p["spearman"])) for p in points if p.get("spearman") is not None]
    if len(pts) < 2:
        return {"points": len(pts)}
    m = np.array([p[0] for p in pts])
    e = np.array([p[1] for p in pts])
    from scipy.optimize import nnls

    best = None
    for alpha in (np.arange(0.25, 1.51, 0.05) if len(pts) >= 3 else [0.5]):
        A = np.stack([np.ones_like(m), m ** -alpha], axis=1)
        coef, res = nnls(A, e)
        if best is None or res < best[0] - 1e-12:
            best = (res, float(alpha), float(coef[0]), float(coef[1]))
    _, alpha, a, b = best  # type: ignore[misc]

    def rho(x: float) -> float:
        return 1.0 - (a + b * x ** -alpha)

    gain10 = 10 * b * alpha * n ** (-alpha - 1)
    m_star = (10 * b * alpha / CURVE_GAIN) ** (1 / (alpha + 1)) if b > 0 else 0.0
    more = max(0, math.ceil(m_star - n))
    return {"points": len(pts), "alpha": alpha, "floor_spearman": 1.0 - a, "spearman_at_n": rho(n),
            "spearman_at_2n": rho(2 * n), "gain_per_10_rows": gain10, "more_rows": more,
            "more_rows_capped": more > 10 * n}
