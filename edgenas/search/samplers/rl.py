"""``rl``: MnasNet's reinforcement-learning search, a REINFORCE controller over the space's choices.

MnasNet (Tan et al., "MnasNet: Platform-Aware Neural Architecture Search for Mobile", CVPR 2019)
trains a controller that samples architectures and rewards each sampled model ``m`` with

    reward(m) = ACC(m) x [LAT(m) / T] ** w,   w = alpha if LAT(m) <= T else beta

(their eq. 2), with ``alpha = beta = -0.07`` for the soft constraint they search with (``alpha = 0,
beta = -1`` is their hard constraint). Here the controller is a table of logits, one softmax per
parameter the space asks for (``space.suggest`` run on a
:class:`~edgenas.spaces.params.ReplayTrial` drawing from the policy), so every space gets a
controller without space-specific code: a conditional parameter (the blocks a deeper stage adds) is
drawn, and learned, only when it appears. The controller is trained with REINFORCE (Williams 1992;
MnasNet used PPO) and a moving-average baseline as in Zoph & Le (2017) and ENAS (Pham et al. 2018):
for a finished trial with reward ``r`` and baseline ``b``, every parameter the spec drew moves its
logits by ``lr * (r - b) * (onehot(choice) - softmax(logits))`` (the gradient of its log-probability),
plus ``lr * entropy * dH/dlogits`` when an entropy bonus is set; then
``b <- decay * b + (1 - decay) * r``.

What the pieces are in a search:

* ``ACC``: the study's accuracy objective (``accuracy`` or ``accuracy_int8``, else the first maximised
  objective the estimator gives; with none, ``ACC = 1`` and the reward is the cost term alone). A
  negative score (some proxies) is divided by the cost factor instead, so a cheaper model still scores
  higher.
* ``LAT``: the latency field a budget bounds (``latency_ms<=...``), else the first latency objective,
  else the first device's latency; when the search has no latency at all, the first cheap cost
  objective (e.g. ``macs``), else the first cheap budget's field; ``cost_field`` names it explicitly.
* ``T``: ``target`` when given, else that field's upper budget, else the search's hypervolume
  reference for it, else the median of the field over the first ``warmup`` evaluated trials.
* Multi-objective studies: the reward uses only accuracy and ``LAT``; Optuna still records every
  objective, and the run's front is computed from them as for any sampler.
* Advantage: with ``normalize`` (the default) ``r - b`` is divided by a moving standard deviation of
  the rewards (same ``decay``, updated before it is used, so a normalised advantage stays below
  ``1 / sqrt(1 - decay)`` in size): one learning rate then serves accuracies in % and fractions alike.
  ``normalize=false`` is the plain update. The baseline and the deviation start at the mean and
  variance of the first ``warmup`` rewards, and no update is made before those ``warmup`` trials exist.

Budgets and repeats: a draw that breaks a cheap budget, that a finished or running trial already took,
or that the cheap filter would reject is redrawn without an evaluation and without an update (it is not
a trial, so a policy rebuilt from the study would not know it). After ``MAX_DRAWS`` draws without a new
feasible spec (a converged policy), the trial takes a uniform feasible spec instead.

State and resume: the policy is a function of the study's finished trials taken in trial order (every
finished feasible trial with a finite accuracy updates it, as if the controller had drawn it, also
another worker's or another sampler's). The sampler applies new trials incrementally and replays from
scratch when a trial finishes out of order (several workers), so a resumed study, a second worker and
an uninterrupted run hold the same logits after the same trials. Draws use the sampler's seeded
generator: a seed repeats a run.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.trial import FrozenTrial

from edgenas.search.samplers.base import Observation, SearchContext, SpecSampler, register_sampler
from edgenas.spaces import ArchSpec, SearchSpace
from edgenas.spaces.params import ReplayTrial

if TYPE_CHECKING:
    from optuna.study import Study

ALPHA = -0.07
"""MnasNet's exponent below the target (soft constraint, Tan et al. 2019)."""
BETA = -0.07
"""MnasNet's exponent above the target (soft constraint)."""
MAX_DRAWS = 2048
"""Policy draws per proposal before falling back to a uniform feasible spec."""
MIN_RATIO = 1e-6
"""``LAT / T`` is clamped here from below, so a zero cost (e.g. no partitions) gives a finite reward."""

Key = tuple[str, tuple[Any, ...]]
"""A policy parameter: the space's parameter name and its choices."""


def mnas_reward(accuracy: float, cost: float | None, target: float | None,
                alpha: float = ALPHA, beta: float = BETA) -> float:
    """MnasNet's reward ``ACC x (LAT / T) ** w``, ``w = alpha`` if ``LAT <= T`` else ``beta``.

    Without a cost or a positive target the reward is the accuracy. A negative accuracy (a proxy
    score) is divided by the factor, so the reward still rises as the cost falls (for ``w < 0``)."""
    if cost is None or target is None or not target > 0 or not math.isfinite(cost):
        return float(accuracy)
    ratio = max(cost / target, MIN_RATIO)
    factor = ratio ** (alpha if cost <= target else beta)
    return float(accuracy * factor if accuracy >= 0 else accuracy / factor)


class Policy:
    """The controller: logits per (parameter, choice), softmax per parameter, REINFORCE updates."""

    def __init__(self) -> None:
        self.logits: dict[Key, np.ndarray] = {}
        self._cdf: dict[Key, list[float]] = {}

    def probabilities(self, key: Key) -> np.ndarray:
        """The softmax over ``key``'s choices (uniform for a parameter not seen yet)."""
        z = self.logits.get(key)
        if z is None:
            return np.full(len(key[1]), 1.0 / len(key[1]))
        e = np.exp(z - z.max())
        return e / e.sum()

    def probability(self, name: str, value: Any) -> float:
        """The probability that parameter ``name`` draws ``value`` (for reports and tests)."""
        for key in self.logits:
            if key[0] == name and value in key[1]:
                return float(self.probabilities(key)[key[1].index(value)])
        raise KeyError(f"parameter {name!r} with choice {value!r} is not in the policy")

    def draw(self, key: Key, rng: random.Random) -> int:
        """The index of a choice drawn from ``key``'s softmax."""
        cdf = self._cdf.get(key)
        if cdf is None:
            cdf = self._cdf[key] = np.cumsum(self.probabilities(key)).tolist()
        return min(bisect.bisect_right(cdf, rng.random() * cdf[-1]), len(cdf) - 1)

    def update(self, drawn: Sequence[tuple[Key, int]], advantage: float, lr: float, entropy: float = 0.0) -> None:
        """One REINFORCE step for a spec that drew ``drawn``: each logit vector moves by
        ``lr * advantage * (onehot - softmax)``, plus ``lr * entropy`` times the entropy's gradient."""
        for key, idx in drawn:
            p = self.probabilities(key)
            grad = -p * advantage
            grad[idx] += advantage
            if entropy:
                logp = np.log(np.maximum(p, 1e-300))
                h = -float(np.dot(p, logp))
                grad -= entropy * p * (logp + h)
            z = self.logits.get(key)
            self.logits[key] = (np.zeros(len(key[1])) if z is None else z) + lr * grad
            self._cdf.pop(key, None)


def drawn_choices(space: SearchSpace, spec: ArchSpec) -> list[tuple[Key, int]]:
    """The (parameter, choice index) pairs ``spec`` takes in ``space`` (its parameters replayed; a value
    outside the parameter's choices is not listed)."""
    trial = ReplayTrial(space.trial_params(spec), random.Random(0))
    space.suggest(trial)  # type: ignore[arg-type]
    return [((name, choices), choices.index(trial.values[name]))
            for name, choices in trial.distributions.items() if trial.replayed(name)]


@register_sampler("rl", "MnasNet's REINFORCE controller: reward accuracy x (latency/target)^-0.07, "
                        "moving-average baseline")
class RLSampler(SpecSampler):
    """Options: ``lr`` (learning rate of the logits), ``decay`` (of the moving-average baseline and
    deviation), ``alpha`` / ``beta`` (MnasNet's exponents below / above the target), ``target`` (T, in
    the cost field's unit), ``cost_field`` (LAT's field), ``warmup`` (trials before the first update),
    ``entropy`` (entropy bonus weight), ``normalize`` (divide the advantage by the moving deviation)."""

    name = "rl"

    def __init__(self, context: SearchContext, seed: int | None = None, lr: float = 0.1, decay: float = 0.95,
                 alpha: float = ALPHA, beta: float = BETA, target: float | None = None,
                 cost_field: str | None = None, warmup: int = 10, entropy: float = 0.0,
                 normalize: bool = True) -> None:
        super().__init__(context, seed)
        if not lr > 0 or not 0 <= decay < 1:
            raise ValueError(f"need lr > 0 and 0 <= decay < 1, got lr={lr}, decay={decay}")
        if warmup < 1 or entropy < 0:
            raise ValueError(f"need warmup >= 1 and entropy >= 0, got warmup={warmup}, entropy={entropy}")
        if target is not None and not target > 0:
            raise ValueError(f"target must be > 0, got {target}")
        self.lr, self.decay, self.alpha, self.beta = lr, decay, alpha, beta
        self.warmup, self.entropy, self.normalize = warmup, entropy, normalize
        self.given_target = target
        self.cost_field = self._resolve_cost_field(cost_field)
        self.policy = Policy()
        self.target: float | None = None
        self.baseline = 0.0
        self.variance = 0.0
        self.applied: list[int] = []
        """Trial numbers the policy has learned from, in order."""
        self.rebuilds = 0
        self._drawn: dict[str, list[tuple[Key, int]]] = {}

    # -- what the reward uses ------------------------------------------------------------------
    def _resolve_cost_field(self, name: str | None) -> str | None:
        ctx = self.context
        known = set(ctx.oracle.fields)
        if name is not None:
            if name not in known:
                raise ValueError(f"cost_field {name!r} is not a cheap field of this search; choose from "
                                 f"{', '.join(sorted(known))}")
            return name
        upper = [b for b in ctx.budgets if b.field.cheap and b.upper]
        cheap = [f for f in ctx.objectives if f.cheap]
        lat_budget = next((b.field.name for b in upper if b.field.base == "latency_ms"), None)
        lat_objective = next((f.name for f in cheap if f.base == "latency_ms"), None)
        lat_device = next((ctx.oracle.latency_field(d) for d in ctx.oracle.latency), None)
        minimised = next((f.name for f in cheap if not f.maximize), None)
        bounded = upper[0].field.name if upper else None
        return lat_budget or lat_objective or lat_device or minimised or bounded

    def _cost(self, spec: ArchSpec) -> float | None:
        if self.cost_field is None:
            return None
        rec = self.context.oracle.record(spec)
        value = rec.get(self.cost_field)
        if value is None:
            value = self.context.oracle.full_record(spec)[self.cost_field]
        return float(value)

    def _fixed_target(self) -> float | None:
        """T when the search gives it: the option, the field's upper budget, or its reference."""
        if self.given_target is not None or self.cost_field is None:
            return self.given_target
        budget = next((b.limit for b in self.context.budgets
                       if b.field.name == self.cost_field and b.upper), None)
        if budget is not None:
            return float(budget)
        ref = self.context.reference.get(self.cost_field)
        return float(ref) if ref is not None else None

    def reward(self, accuracy: float, spec: ArchSpec) -> float:
        """MnasNet's reward of an evaluated spec (with the target fixed by :meth:`learn`)."""
        return mnas_reward(accuracy, self._cost(spec), self.target, self.alpha, self.beta)

    # -- learning ------------------------------------------------------------------------------
    @property
    def accuracy_index(self) -> int | None:
        """ACC's objective: the first whose base is ``accuracy`` (``accuracy``, ``accuracy_int8``), else
        the first maximised one the estimator gives, else None."""
        objectives = self.context.objectives
        return next((i for i, f in enumerate(objectives) if f.base == "accuracy"),
                    next((i for i, f in enumerate(objectives) if not f.cheap and f.maximize), None))

    def _usable(self, done: list[Observation]) -> Iterator[tuple[int, ArchSpec, float]]:
        """(trial number, spec, accuracy) of the finished feasible trials with a finite accuracy."""
        ai = self.accuracy_index
        for o in done:
            if not o.feasible or o.values is None:
                continue
            acc = 1.0 if ai is None else float(o.values[ai])
            if math.isfinite(acc):
                yield o.number, o.spec, acc

    def _reset(self) -> None:
        self.policy = Policy()
        self.target = None
        self.baseline = self.variance = 0.0
        self.applied = []

    def learn(self, done: list[Observation]) -> None:
        """Bring the policy up to date with the finished trials (``done`` in trial order): apply the
        new ones, or replay all of them when one finished out of order."""
        usable = sorted(self._usable(done), key=lambda u: u[0])
        if len(usable) < self.warmup:
            return
        numbers = [u[0] for u in usable]
        if numbers[: len(self.applied)] != self.applied:
            self._reset()
            self.rebuilds += 1
        if not self.applied:
            first = usable[: self.warmup]
            self.target = self._fixed_target()
            if self.target is None and self.cost_field is not None:
                costs = [c for c in (self._cost(s) for _, s, _ in first) if c is not None and math.isfinite(c)]
                self.target = float(np.median(costs)) if costs else None
            rewards = [self.reward(a, s) for _, s, a in first]
            self.baseline = float(np.mean(rewards))
            self.variance = float(np.var(rewards))
        for number, spec, acc in usable[len(self.applied):]:
            self._step(spec, self.reward(acc, spec))
            self.applied.append(number)

    def _step(self, spec: ArchSpec, reward: float) -> None:
        delta = reward - self.baseline
        if self.normalize:
            self.variance = self.decay * self.variance + (1 - self.decay) * delta * delta
            advantage = delta / math.sqrt(self.variance) if self.variance > 0 else 0.0
        else:
            advantage = delta
        key = str(spec)
        drawn = self._drawn.get(key)
        if drawn is None:
            drawn = self._drawn[key] = drawn_choices(self.context.space, spec)
        self.policy.update(drawn, advantage, self.lr, self.entropy)
        self.baseline = self.decay * self.baseline + (1 - self.decay) * reward

    # -- proposal ------------------------------------------------------------------------------
    def draw(self) -> ArchSpec:
        """One spec drawn from the policy (budgets not checked)."""
        trial = ReplayTrial({}, self.rng, draw=lambda name, choices: choices[self.policy.draw(
            (name, tuple(choices)), self.rng)])
        return self.context.space.suggest(trial)  # type: ignore[arg-type]

    def propose(self, study: Study, trial: FrozenTrial) -> ArchSpec:
        done, _, taken, _ = self.observe(study)
        self.learn(done)
        oracle = self.context.oracle
        drawn, batch = 0, 1
        while drawn < MAX_DRAWS:
            fresh: dict[str, ArchSpec] = {}
            for _ in range(batch):
                s = self.draw()
                if str(s) not in taken:
                    fresh.setdefault(str(s), s)
            drawn += batch
            batch = min(2 * batch, 64)
            for s in oracle.feasible_specs(list(fresh.values())):
                if self.screened(s):
                    return s
            taken = taken | set(fresh)
        return self.random_feasible(taken)[0]
