"""Latency tables fitted from end-to-end measurements (``edgenas lut fit``).

Many users can time whole networks on their board but not single layers. Given measured networks
``(spec, latency_ms)``, :func:`fit_latency_table` fits a :class:`~edgenas.latency.table.LatencyTable`
whose entries are keyed by the same latency units the profiler measures (``space.units(spec)``), so the
result plugs into :class:`~edgenas.latency.predict.LatencyPredictor` unchanged, plus a device model
whose named ``terms`` (:mod:`edgenas.latency.features`) carry the non-additive part.

Model. Every unit ``u`` has a base cost ``x0_u``: the effective per-unit cost of a *prior* table
(another device's, or a local profile) or, without one, an analytic proxy (MACs + activation traffic).
The fit rescales the base costs by group::

    latency_ms = overhead_ms + sum_g s_g * sum_{u in g} count_u * x0_u + sum_f c_f * feature_f(spec)

where the groups ``g`` are either all units (one scale: the rescaled prior), unit kinds (``nb201op:c3``,
``mbconv:k5g1``, ...: a few scale factors), or single units (free non-negative per-unit costs). A ridge
penalty pulls each ``s_g`` toward the common scale of the prior (and each ``c_f`` toward the prior's
term, or 0), so scarce data moves few degrees of freedom and plentiful data frees them all. Units
whose counts are collinear over the training networks (NB201's three stages, FBNet's repeated layers of
a stage) are split in proportion to their base costs instead of arbitrarily. Rows are weighted by
1/latency (targets are judged by relative error), with a floor so that near-zero outliers (folded,
disconnected networks) cannot dominate, and re-weighted with Huber weights (robust to bad
measurements). Unit scales are non-negative; feature coefficients are non-negative except for the
features in :data:`SIGNED_FEATURES`.

Model selection (grouping x ridge strength x feature set x base) is by K-fold cross-validation on the
training networks only; :func:`cross_validate` scores the whole procedure (nested) on held-out folds.
The fitted table is plain JSON and reproduces its predictions after save/load.
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
GROUPINGS = ("all", "kind", "unit")
RIDGE_GRID = (30.0, 3.0, 0.3, 0.03, 0.003, 0.0003)
MIN_ROWS = 5
WEIGHT_FLOOR = 0.25  # rows are weighted by 1 / max(latency, WEIGHT_FLOOR * median latency)
HUBER_K = 1.345
IRLS_STEPS = 4
CV_ERROR_CAP = 0.5  # CV criterion: mean of min(|relative error|, cap)
SELECT_MAX_ROWS = 1000  # model selection on at most this many rows (the final fit uses all)


@dataclass(frozen=True)
class FitConfig:
    """One candidate model: unit grouping, ridge strength, feature set and base costs."""

    grouping: str
    ridge: float
    features: tuple[str, ...] = ()
    base: str = "proxy"  # "prior" or "proxy"

    def describe(self) -> str:
        feats = f"{len(self.features)} feature terms" if self.features else "no feature terms"
        return f"{self.base} base, {self.grouping} scales, ridge {self.ridge:g}, {feats}"


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


@dataclass
class FitResult:
    """A solved model: base costs times group scales, feature coefficients and overhead."""

    config: FitConfig
    overhead_ms: float
    unit_ms: dict[str, float]  # fitted cost of every unit key in the design (and beyond: see ``fit_table``)
    terms: dict[str, float]
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
    """Base per-unit costs and prior feature coefficients the fit rescales."""

    name: str
    unit_ms: Callable[[str, Layer], float]
    terms: dict[str, float]
    overhead_ms: float


def proxy_base() -> Base:
    return Base("proxy", lambda key, layer: proxy_ms(layer), {}, 0.0)


def prior_base(prior: LatencyTable, layers: dict[str, Layer]) -> Base:
    """Effective per-unit costs of a prior table (``scale * p50 + per_unit``); units it lacks get the
    proxy times the median prior/proxy ratio of the units it has."""
    m = prior.model
    eff = {k: m.scale * e.p50_ms + m.per_unit_ms for k, e in prior.entries.items()}
    ratios = [eff[k] / proxy_ms(layers[k]) for k in layers if k in eff and eff[k] > 0]
    ratio = float(np.median(ratios)) if ratios else 1.0

    def unit_ms(key: str, layer: Layer) -> float:
        v = eff.get(key)
        return max(v, 1e-9) if v is not None and v > 0 else ratio * proxy_ms(layer)

    return Base(f"prior:{prior.device}", unit_ms, dict(m.terms), m.overhead_ms)


# -- solver -------------------------------------------------------------------------------------
def _row_weights(y: np.ndarray) -> np.ndarray:
    return 1.0 / np.maximum(y, WEIGHT_FLOOR * float(np.median(y)))


def _solve_bounded(A: np.ndarray, b: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """min ||A x - b|| with x >= lower (column-scaled for conditioning; BVLS, exact for small problems)."""
    from scipy.optimize import lsq_linear

    norms = np.linalg.norm(A, axis=0)
    norms[norms == 0] = 1.0
    res = lsq_linear(A / norms, b, bounds=(lower * norms, np.inf), method="bvls")
    return res.x / norms


def solve(design: Design, y: np.ndarray, config: FitConfig, base: Base) -> FitResult:
    """Fit one candidate model to measured latencies ``y`` (ms)."""
    y = np.asarray(y, float)
    x0 = np.array([base.unit_ms(k, design.layers[k]) for k in design.keys])
    fidx = [design.feature_names.index(f) for f in config.features]
    F = design.features[:, fidx] if fidx else np.zeros((len(y), 0))
    c0 = np.array([base.terms.get(f, 0.0) for f in config.features])
    base_ms = design.counts @ x0 + (F @ c0 if c0.size else 0.0)
    w0 = _row_weights(y)

    # 1) anchor: overhead + one scale on the base prediction (robust)
    A = np.stack([np.ones_like(y), base_ms], axis=1)
    h = np.ones_like(y)
    coef = np.array([0.0, 1.0])
    for _ in range(IRLS_STEPS):
        w = w0 * h
        coef = _solve_bounded(A * w[:, None], y * w, np.array([-np.inf, 0.0]))
        h = _huber(((A @ coef) - y) / y)
    o_anchor, s = float(coef[0]), float(coef[1])
    if s <= 0:  # base carries no signal on this data: fall back to its own scale
        s = float(np.median(y) / max(np.median(base_ms), 1e-12))
        o_anchor = 0.0

    # 2) groups
    if config.grouping == "all":
        group_of = dict.fromkeys(design.keys, "all")
    elif config.grouping == "kind":
        group_of = {k: unit_group(design.layers[k]) for k in design.keys}
    else:
        group_of = {k: k for k in design.keys}
    groups = sorted(set(group_of.values()))
    gidx = {g: i for i, g in enumerate(groups)}
    G = np.zeros((len(design.keys), len(groups)))
    for j, k in enumerate(design.keys):
        G[j, gidx[group_of[k]]] = x0[j]
    Xg = design.counts @ G  # (n, n_groups): base ms of each group

    # 3) ridge toward the anchor, robust re-weighting. Unknowns: [overhead, s_g..., c_f...]
    lam = math.sqrt(config.ridge)
    med = float(np.median(y))
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
    unit = {k: float(scales[group_of[k]] * x0[j]) for j, k in enumerate(design.keys)}
    terms = {f: float(theta[1 + n_g + j]) for j, f in enumerate(config.features)}
    return FitResult(config, float(theta[0]), unit, terms, s, scales)


def _huber(r: np.ndarray) -> np.ndarray:
    """Huber weights of residuals ``r`` with a MAD scale."""
    sigma = max(1.4826 * float(np.median(np.abs(r - np.median(r)))), 1e-3)
    return np.minimum(1.0, HUBER_K * sigma / np.maximum(np.abs(r), 1e-12))


# -- model selection ----------------------------------------------------------------------------
def candidate_configs(space: SearchSpace, has_prior: bool) -> list[FitConfig]:
    """The grid, simplest first (ties in CV go to the earlier candidate)."""
    feature_sets: list[tuple[str, ...]] = [()]
    feature_sets += [tuple(fs) for fs in SPACE_FEATURES.get(space.name, []) if all(f in FEATURES for f in fs)]
    bases = ["prior", "proxy"] if has_prior else ["proxy"]
    out = []
    for base in bases:
        for feats in feature_sets:
            out.append(FitConfig("all", RIDGE_GRID[0], feats, base))
            for grouping in ("kind", "unit"):
                out += [FitConfig(grouping, lam, feats, base) for lam in RIDGE_GRID]
    return out


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return [perm[i::k] for i in range(k)]


def cv_errors(design: Design, y: np.ndarray, configs: Sequence[FitConfig], bases: dict[str, Base],
              folds: int, seed: int) -> np.ndarray:
    """Out-of-fold relative errors, (n_configs, n_rows)."""
    n = len(y)
    k = max(2, min(folds, n))
    err = np.zeros((len(configs), n))
    for test in _folds(n, k, seed):
        train = np.setdiff1d(np.arange(n), test)
        d_tr, d_te = design.subset(train), design.subset(test)
        for ci, cfg in enumerate(configs):
            pred = solve(d_tr, y[train], cfg, bases[cfg.base]).predict(d_te)
            err[ci, test] = np.abs(pred - y[test]) / y[test]
    return err


def select_config(design: Design, y: np.ndarray, configs: Sequence[FitConfig], bases: dict[str, Base],
                  folds: int, seed: int) -> tuple[FitConfig, list[dict[str, Any]]]:
    """The candidate with the lowest capped out-of-fold relative error (on at most SELECT_MAX_ROWS)."""
    rows = np.arange(len(y))
    if len(y) > SELECT_MAX_ROWS:
        rows = np.sort(np.random.default_rng(seed + 1).choice(len(y), SELECT_MAX_ROWS, replace=False))
    err = cv_errors(design.subset(rows), y[rows], configs, bases, folds, seed)
    score = np.minimum(err, CV_ERROR_CAP).mean(axis=1)
    best = int(np.argmin(score))
    report = [{"config": c.describe(), "cv_capped_mre": float(sc), "cv_within_10pct": float((e <= 0.10).mean())}
              for c, sc, e in zip(configs, score, err)]
    return configs[best], report


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


def fit_latency_table(
    space: SearchSpace, specs: Sequence[ArchSpec], latencies_ms: Sequence[float], device_name: str,
    prior: LatencyTable | None = None, seed: int = 0, task: Task | None = None, folds: int = 5,
    runtime: dict[str, Any] | None = None, configs: Sequence[FitConfig] | None = None,
) -> LatencyTable:
    """Fit a latency table for ``device_name`` from whole networks measured end to end.

    ``prior``: a table of the same space from another device (or a local profile) whose per-unit costs
    are rescaled; without it the base costs are an analytic proxy. The model is chosen among
    :func:`candidate_configs` (or ``configs``) by ``folds``-fold CV on these measurements only.
    The table's ``validation`` holds the CV figures of the chosen model; run :func:`cross_validate`
    for a nested (unbiased) estimate.
    """
    y = check_measurements(specs, latencies_ms)
    if prior is not None and prior.space != space.name:
        raise EdgenasError(f"prior table is for space {prior.space!r}, not {space.name!r}")
    configs = list(configs) if configs is not None else candidate_configs(space, prior is not None)
    feature_names = sorted({f for c in configs for f in c.features})
    design = build_design(space, specs, feature_names, task)
    all_layers = {**space_unit_layers(space, task), **design.layers}
    design.layers = all_layers
    bases = {"proxy": proxy_base()}
    if prior is not None:
        bases["prior"] = prior_base(prior, all_layers)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # many small solves: one BLAS thread is faster and leaves the cores free
        if len(configs) > 1:
            best, report = select_config(design, y, configs, bases, folds, seed)
        else:
            best, report = configs[0], []
        result = solve(design, y, best, bases[best.base])
    return _to_table(result, design, all_layers, bases[best.base], y, space, device_name, prior, runtime,
                     report, folds, seed)


def _to_table(result: FitResult, design: Design, all_layers: dict[str, Layer], base: Base, y: np.ndarray,
              space: SearchSpace, device_name: str, prior: LatencyTable | None, runtime: dict[str, Any] | None,
              report: list[dict[str, Any]], folds: int, seed: int) -> LatencyTable:
    """Entries for every unit of the space: fitted where the data saw it, else base * the anchor scale
    (or the unit's group scale when it has one)."""
    seen = dict(zip(design.keys, (design.counts > 0).sum(axis=0).tolist()))
    entries: dict[str, Entry] = {}
    for key, layer in sorted(all_layers.items()):
        if key in result.unit_ms:
            ms = result.unit_ms[key]
        else:
            g = {"all": "all", "kind": unit_group(layer)}.get(result.config.grouping, key)
            ms = result.group_scales.get(g, result.anchor_scale) * base.unit_ms(key, layer)
        entries[key] = Entry(mean_ms=ms, std_ms=0.0, p50_ms=ms, n=int(seen.get(key, 0)))
    table = LatencyTable(
        device=device_name, space=space.name,
        runtime=runtime or {"name": "unknown", "version": "", "threads": 1, "options": {}},
        entries=entries,
        model=DeviceModel(overhead_ms=result.overhead_ms, scale=1.0, per_unit_ms=0.0, fitted_on=len(y),
                          terms={k: v for k, v in result.terms.items() if v != 0.0}),
        host=host_info(), source="fitted",
        notes=(f"fitted on {len(y)} end-to-end measurements by 'edgenas lut fit': {result.config.describe()}"
               + (f"; prior table from device {prior.device!r}" if prior is not None else "")
               + ". Entry n = number of training networks that contain the unit (0: extrapolated)."),
    )
    chosen = next((r for r in report if r["config"] == result.config.describe()), None)
    table.validation = {
        "kind": "cross-validation (model selection)", "folds": folds, "seed": seed, "n": len(y),
        "model": result.config.describe(),
        **({"cv_capped_mre": chosen["cv_capped_mre"], "cv_within_10pct": chosen["cv_within_10pct"]}
           if chosen else {}),
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


def cross_validate(
    space: SearchSpace, specs: Sequence[ArchSpec], latencies_ms: Sequence[float],
    prior: LatencyTable | None = None, folds: int = 5, seed: int = 0, task: Task | None = None,
) -> dict[str, Any]:
    """Nested K-fold CV of the whole procedure (model selection included): each fold's table is fitted
    on the other folds only and predicts the held-out networks. Returns :func:`latency_metrics` of
    the out-of-fold predictions plus ``folds``."""
    from edgenas.latency.validate import latency_metrics

    y = check_measurements(specs, latencies_ms)
    if len(y) < 2 * MIN_ROWS:
        raise EdgenasError(f"cross-validation needs at least {2 * MIN_ROWS} measured networks, got {len(y)}")
    k = max(2, min(folds, len(y) // MIN_ROWS))
    pred = np.zeros_like(y)
    for test in _folds(len(y), k, seed):
        train = np.setdiff1d(np.arange(len(y)), test)
        t = fit_latency_table(space, [specs[i] for i in train], y[train], "cv", prior=prior, seed=seed,
                              task=task, folds=folds)
        pred[test] = predict_with_table(t, space, [specs[i] for i in test], task)
    return {**latency_metrics(pred.tolist(), y.tolist()), "folds": k}
