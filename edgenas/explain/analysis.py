"""Why a front looks the way it does: which architecture choices drive each objective, how, and which
of them trade quality against cost.

Three views of a finished search, all in terms of the space's own choices (the Optuna parameters a
spec is made of, :meth:`SearchSpace.trial_params`):

* **fANOVA importance** (Optuna's :class:`~optuna.importance.FanovaImportanceEvaluator`, Hutter et al.
  2014) of each choice for each objective, fitted on the evaluated trials. fANOVA sees only the
  choices every trial has; choices that exist only in some specs (the blocks of a deeper stage) are
  listed as not seen by it.
* **Main effects** (partial dependence) of every choice, conditional ones included, from a model of
  each objective: the search's own accuracy surrogate (the ``frontier`` sampler's Gaussian process on
  the space's surrogate features) for estimated objectives, and the exact cost model / latency table
  for cheap ones, which need no model. For a choice ``p`` and value ``v`` the effect is the mean
  prediction over a uniform sample of the space with ``p`` set to ``v`` (the rest of each spec kept;
  choices a new depth adds are drawn). Its importance is the variance of those means over the values
  divided by the variance of the predictions over the sample: a first-order (Sobol) share, averaged
  over the whole space as fANOVA's is.
* **Trade-offs**: a choice trades a quality objective against a cost objective when the values that
  raise quality are the values that raise cost (Spearman correlation of the two main effects, oriented
  so that positive means both better); its strength is that conflict times the geometric mean of the
  two importances. Along the front (sorted by cost) the front's own values of the strongest trading
  choices show how the search moved between cheap and good models.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgenas.errors import EdgenasError
from edgenas.search.fields import Field
from edgenas.spaces import ArchSpec, SearchSpace, Task
from edgenas.spaces.params import ReplayTrial, param_choices

MIN_TRIALS = 10
"""Fewer evaluated trials than this cannot support an importance analysis."""


@dataclass
class Choice:
    """One architecture choice: an Optuna parameter of the space and the values it takes."""

    name: str
    values: tuple[Any, ...]
    everywhere: bool
    """Present in every analysed trial (fANOVA sees only these)."""


@dataclass
class Effect:
    """What one choice does to one objective."""

    choice: str
    fanova: float | None
    """Optuna fANOVA importance (normalised over the choices it sees); None when it cannot see the
    choice."""
    share: float
    """First-order share of the objective's variance over the space from the main effect (0..1)."""
    means: dict[Any, float]
    """Main effect: the mean objective value with the choice set to each value."""

    @property
    def best(self) -> Any:
        return max(self.means, key=lambda v: self.means[v])

    def best_for(self, maximize: bool) -> Any:
        return max(self.means, key=lambda v: self.means[v] if maximize else -self.means[v])


@dataclass
class ObjectiveExplanation:
    objective: Field
    trials: int
    """Trials with a finite value of this objective."""
    model: str
    """What gave the main effects: ``surrogate`` (GP on the evaluated trials) or ``exact``."""
    effects: list[Effect]
    """Most important first, by :attr:`primary`."""
    fit_r2: float | None = None
    """Cross-validated R^2 of the surrogate on the trials (None for exact models)."""

    @property
    def primary(self) -> str:
        """The ranking explain leads with: ``share`` where the objective's model is exact (the cost model or
        latency table itself: nothing is fitted), else ``fanova`` (fitted on the trials' own choices, where
        the share depends on a surrogate fitted on derived features)."""
        return "share" if self.model == "exact" else "fanova"

    def ranked(self, by: str | None = None) -> list[str]:
        """Choice names, most important first, by ``fanova`` (only the choices it sees), ``share``, or by
        default :attr:`primary` (then, for ``fanova``, the choices it cannot see by share)."""
        if by is None:
            if self.primary == "share":
                return self.ranked("share")
            seen = self.ranked("fanova")
            return seen + [c for c in self.ranked("share") if c not in seen]
        if by == "fanova":
            seen = [e for e in self.effects if e.fanova is not None]
            return [e.choice for e in sorted(seen, key=lambda e: -(e.fanova or 0.0))]
        return [e.choice for e in sorted(self.effects, key=lambda e: -e.share)]

    def effect(self, choice: str) -> Effect | None:
        return next((e for e in self.effects if e.choice == choice), None)


@dataclass
class TradeOff:
    choice: str
    quality: str
    cost: str
    conflict: float
    """-Spearman correlation of the two oriented main effects (1: the value best for one is worst for
    the other, in the same order)."""
    strength: float
    best_for_quality: Any
    best_for_cost: Any


@dataclass
class Explanation:
    space: str
    objectives: list[Field]
    choices: list[Choice]
    per_objective: list[ObjectiveExplanation]
    tradeoffs: list[TradeOff]
    front: list[dict[str, Any]]
    """Front rows (arch, objectives) with the values of every choice, sorted by the first cost objective."""
    samples: int
    seed: int
    notes: list[str] = field(default_factory=list)

    def objective(self, name: str) -> ObjectiveExplanation:
        return next(o for o in self.per_objective if o.objective.name == name)


# -- the pieces ---------------------------------------------------------------------------------------
def space_choices(space: SearchSpace, specs: Sequence[ArchSpec]) -> list[Choice]:
    """Every parameter the specs use, in first-seen order, with their value lists; ``everywhere`` when
    all specs have it."""
    seen: dict[str, tuple[Any, ...]] = {}
    count: dict[str, int] = {}
    for s in specs:
        for name, values in param_choices(space, s).items():
            seen.setdefault(name, tuple(values))
            count[name] = count.get(name, 0) + 1
    return [Choice(n, v, count[n] == len(specs)) for n, v in seen.items()]


def fanova_importances(params: Sequence[dict[str, Any]], y: np.ndarray, choices: Sequence[Choice],
                       seed: int = 0) -> dict[str, float]:
    """Optuna's fANOVA importance of the choices present in every trial, for one objective ``y``
    (normalised to sum to 1). Choices with one value are left out (nothing to explain)."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.importance import FanovaImportanceEvaluator

    usable = [c for c in choices if c.everywhere and len(c.values) > 1]
    if not usable:
        return {}
    from edgenas.logs import optuna_quiet

    if float(np.ptp(y)) == 0.0:  # a constant objective: nothing to attribute
        return {c.name: 0.0 for c in usable}
    dists = {c.name: CategoricalDistribution(list(c.values)) for c in usable}
    with optuna_quiet():  # a scratch study: its "created" line is noise
        study = optuna.create_study(direction="minimize")
    study.add_trials([optuna.trial.create_trial(params={c.name: p[c.name] for c in usable}, distributions=dists,
                                                value=float(v)) for p, v in zip(params, y)])
    imp = FanovaImportanceEvaluator(seed=seed).evaluate(study)
    total = sum(imp.values()) or 1.0
    return {k: float(v) / total for k, v in imp.items()}


def with_choice(space: SearchSpace, spec: ArchSpec, name: str, value: Any, seed: int) -> ArchSpec:
    """``spec`` with choice ``name`` set to ``value`` (choices a changed depth adds drawn with ``seed``)."""
    params = space.trial_params(spec)
    params[name] = value
    return space.suggest(ReplayTrial(params, random.Random(seed)))  # type: ignore[arg-type]


def main_effects(space: SearchSpace, base: Sequence[ArchSpec], choices: Sequence[Choice],
                 predict: Callable[[list[ArchSpec]], np.ndarray], seed: int = 0
                 ) -> tuple[dict[str, dict[Any, float]], float]:
    """Per choice, the mean prediction over ``base`` with the choice set to each value; and the variance
    of the predictions over ``base`` itself (the denominator of the shares). Every modified spec of
    every choice is predicted in one batch."""
    batch: list[ArchSpec] = []
    index: list[tuple[str, Any]] = []
    for c in choices:
        for v in c.values:
            for i, s in enumerate(base):
                batch.append(with_choice(space, s, c.name, v, seed * 1_000_003 + i))
            index.append((c.name, v))
    pred = np.asarray(predict(batch), dtype=float).reshape(len(index), len(base))
    out: dict[str, dict[Any, float]] = {}
    for (name, v), row in zip(index, pred):
        out.setdefault(name, {})[v] = float(np.mean(row))
    total = float(np.var(np.asarray(predict(list(base)), dtype=float)))
    return out, total


def share(means: dict[Any, float], total_var: float) -> float:
    """First-order share: variance of the main effect over the choice's values / total variance."""
    if total_var <= 0 or len(means) < 2:
        return 0.0
    return float(min(1.0, np.var(np.array(list(means.values()))) / total_var))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) < 2 or float(np.ptp(a)) == 0 or float(np.ptp(b)) == 0:
        return 0.0
    r = spearmanr(a, b).statistic
    return 0.0 if not math.isfinite(r) else float(r)


def tradeoffs(per_objective: Sequence[ObjectiveExplanation]) -> list[TradeOff]:
    """Choices whose better values for a quality objective are worse for a cost objective, strongest
    first (only conflicts: a choice that helps both is not a trade-off)."""
    out = []
    quality = [o for o in per_objective if not o.objective.cheap]
    cost = [o for o in per_objective if o.objective.cheap]
    for q in quality:
        for c in cost:
            for eq in q.effects:
                ec = c.effect(eq.choice)
                if ec is None or len(eq.means) < 2:
                    continue
                values = list(eq.means)
                good_q = [eq.means[v] if q.objective.maximize else -eq.means[v] for v in values]
                good_c = [ec.means[v] if c.objective.maximize else -ec.means[v] for v in values]
                conflict = -spearman(good_q, good_c)
                if conflict <= 0:
                    continue
                out.append(TradeOff(eq.choice, q.objective.name, c.objective.name, conflict,
                                    conflict * math.sqrt(eq.share * ec.share),
                                    eq.best_for(q.objective.maximize), ec.best_for(c.objective.maximize)))
    return sorted(out, key=lambda t: -t.strength)


def surrogate_predictor(space: SearchSpace, task: Task | None, specs: Sequence[ArchSpec], y: np.ndarray,
                        seed: int) -> tuple[Callable[[list[ArchSpec]], np.ndarray], float | None]:
    """The frontier sampler's GP fitted on the trials' surrogate features, and its 5-fold
    cross-validated R^2 (how much of the objective the model explains; None with too few trials)."""
    from edgenas.search.surrogate import GPSurrogate

    X = np.array([space.surrogate_features(s, task) for s in specs], dtype=float)
    r2 = None
    if len(y) >= 20:
        rng = np.random.default_rng(seed)
        folds = np.array_split(rng.permutation(len(y)), 5)
        pred = np.empty(len(y))
        for k in folds:
            train = np.setdiff1d(np.arange(len(y)), k)
            pred[k] = GPSurrogate(seed=seed).fit(X[train], y[train]).predict(X[k])[0]
        ss = float(np.sum((y - y.mean()) ** 2))
        r2 = 1.0 - float(np.sum((y - pred) ** 2)) / ss if ss > 0 else None
    gp = GPSurrogate(seed=seed).fit(X, y)
    cache: dict[str, float] = {}

    def predict(batch: list[ArchSpec]) -> np.ndarray:
        todo = list({str(s): s for s in batch if str(s) not in cache}.values())
        if todo:
            mu = gp.predict(np.array([space.surrogate_features(s, task) for s in todo], dtype=float))[0]
            cache.update(zip((str(s) for s in todo), (float(m) for m in mu)))
        return np.array([cache[str(s)] for s in batch])

    return predict, r2


# -- the whole analysis --------------------------------------------------------------------------------
def explain(space: SearchSpace, task: Task | None, objectives: Sequence[Field], specs: Sequence[ArchSpec],
            values: dict[str, np.ndarray], front: Sequence[dict[str, Any]],
            exact: Callable[[Field, list[ArchSpec]], np.ndarray] | None = None,
            samples: int = 64, seed: int = 0) -> Explanation:
    """Explain one search from its evaluated ``specs`` and their objective ``values`` (by field name,
    aligned with ``specs``; non-finite entries are left out per objective). ``exact(field, specs)``
    gives cheap fields for any spec (the search's cost oracle); without it, cheap objectives use the
    surrogate too. ``samples``: size of the uniform sample of the space the main effects average over."""
    if len(specs) < MIN_TRIALS:
        raise EdgenasError(f"explain needs at least {MIN_TRIALS} evaluated trials, the search has {len(specs)}; "
                           f"run more trials (edgenas search --resume RUN_DIR --trials N)")
    choices = space_choices(space, specs)
    params = [space.trial_params(s) for s in specs]
    base = space.sample(samples, seed=seed)
    notes = []
    hidden = [c.name for c in choices if not c.everywhere]
    if hidden:
        notes.append(f"{len(hidden)} of {len(choices)} choices exist only in some specs (blocks of deeper stages); "
                     "fANOVA cannot see them, the main effects include them")
    per_objective = []
    for f in objectives:
        y_all = np.asarray(values[f.name], dtype=float)
        ok = np.isfinite(y_all)
        if ok.sum() < MIN_TRIALS:
            notes.append(f"{f.name}: only {int(ok.sum())} trials have a finite value; not analysed")
            continue
        idx = np.flatnonzero(ok)
        y = y_all[idx]
        fan = fanova_importances([params[i] for i in idx], y, choices, seed=seed)
        r2 = None
        if f.cheap and exact is not None:
            def predict(batch: list[ArchSpec], f: Field = f) -> np.ndarray:
                return np.asarray(exact(f, batch), dtype=float)
            model = "exact"
        else:
            predict, r2 = surrogate_predictor(space, task, [specs[i] for i in idx], y, seed)
            model = "surrogate"
        means, total = main_effects(space, base, choices, predict, seed=seed)
        effects = [Effect(c.name, fan.get(c.name), share(means[c.name], total), means[c.name]) for c in choices]
        o = ObjectiveExplanation(f, len(idx), model, effects, r2)
        order = {name: i for i, name in enumerate(o.ranked())}
        o.effects.sort(key=lambda e: order[e.choice])
        per_objective.append(o)
    trades = tradeoffs(per_objective)
    cost = next((f for f in objectives if f.cheap), None)
    rows = []
    for r in front:
        spec = space.parse(str(r["arch"]))
        rows.append({"arch": str(r["arch"]), **{f.name: r.get(f.name) for f in objectives},
                     "choices": space.trial_params(spec)})
    if cost is not None:
        rows.sort(key=lambda r: (r[cost.name] if isinstance(r[cost.name], (int, float)) else math.inf))
    return Explanation(space.name, list(objectives), choices, per_objective, trades, rows, samples, seed, notes)
