"""The sampler plug-in contract: Optuna samplers, stock and edgenas' own, built from one registry.

Every sampler is an ``optuna.samplers.BaseSampler``, so it runs inside any Optuna study and storage,
with several workers, and resumes from what the storage holds. A factory registered with
:func:`register_sampler` builds it from a :class:`SearchContext` (the space, the cheap-cost oracle,
objectives, budgets), the seed and the user's options.

edgenas' own samplers subclass :class:`SpecSampler`: they propose a *whole spec* per trial — knowing
its exact cost and latency before proposing it — and answer Optuna's per-parameter questions from
that plan. Only the accuracy is expensive, so they spend it only on candidates that meet the budgets
and that no finished or running trial already covers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from edgenas.errors import EdgenasError
from edgenas.registry import GROUPS, Registry
from edgenas.search import optuna_compat as compat
from edgenas.search.fields import Budget, Field
from edgenas.search.oracle import CostOracle
from edgenas.search.record import TrialRecord, trial_arch
from edgenas.spaces import ArchSpec, SearchSpace, Task

if TYPE_CHECKING:
    from optuna.study import Study



@dataclass
class SearchContext:
    """What a sampler may know about the search it serves."""

    space: SearchSpace
    task: Task | None
    oracle: CostOracle
    objectives: list[Field]
    budgets: list[Budget] = field(default_factory=list)
    seeds: list[ArchSpec] = field(default_factory=list)
    """Known feasible specs (e.g. the first feasible candidate found before the search)."""
    reference: dict[str, float] = field(default_factory=dict)
    """Optional hypervolume reference values by field name (the worst value that still counts)."""
    workers: int = 1
    screen: Callable[[ArchSpec], bool] | None = None
    """When the estimator is a cheap filter in front of an expensive one: would it pass this
    candidate on to the expensive stage? Samplers that can, skip candidates it would reject (the
    cheap score is cached, so the trial reuses it)."""

    @property
    def accuracy_index(self) -> int | None:
        return next((i for i, f in enumerate(self.objectives) if not f.cheap), None)


@dataclass
class Observation:
    """One finished (or running) trial as a sampler sees it."""

    number: int
    arch: str
    spec: ArchSpec
    feasible: bool
    values: list[float] | None
    """Objective values in the study's order (None while running)."""


class History:
    """The study's trials, parsed once per trial and kept across calls (specs are immutable)."""

    def __init__(self, context: SearchContext) -> None:
        self.context = context
        self._parsed: dict[str, ArchSpec] = {}

    def spec(self, arch: str) -> ArchSpec:
        s = self._parsed.get(arch)
        if s is None:
            s = self._parsed[arch] = self.context.space.parse(arch)
        return s

    def read(self, study: Study) -> tuple[list[Observation], list[Observation]]:
        """(finished observations with a record, running ones with an arch), in trial order."""
        done, running = [], []
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            arch = trial_arch(t)
            if arch is None:
                continue
            if t.state == TrialState.RUNNING:
                running.append(Observation(t.number, arch, self.spec(arch), True, None))
                continue
            rec = TrialRecord.from_trial(t)
            values = list(t.values) if t.values is not None else None
            done.append(Observation(t.number, arch, self.spec(arch), rec.feasible if rec else True, values))
        return done, running


class SpecSampler(optuna.samplers.BaseSampler):
    """Base class of edgenas' own samplers: :meth:`propose` returns the next spec to evaluate."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(self, context: SearchContext, seed: int | None = None) -> None:
        self.context = context
        self.seed = seed
        self.rng = random.Random(seed)
        self.history = History(context)
        self._plans: dict[int, dict[str, Any]] = {}
        self._queue: list[ArchSpec] = []
        """Proposals planned ahead (a batch, a generation), served in order by :meth:`next_queued`."""
        self._fallback = optuna.samplers.RandomSampler(seed=seed)

    # -- subclass hook -----------------------------------------------------------------------
    def propose(self, study: Study, trial: FrozenTrial) -> ArchSpec:
        raise NotImplementedError

    # -- Optuna's sampler interface ------------------------------------------------------------
    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        plan = self._plans.get(trial.number)
        if plan is None:
            plan = self._plans[trial.number] = self.context.space.trial_params(self.propose(study, trial))
        value = plan.get(param_name)
        if value is not None and compat.contains(param_distribution, value):
            return value
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._plans.pop(trial.number, None)

    # -- helpers -----------------------------------------------------------------------------
    def observe(self, study: Study) -> tuple[list[Observation], list[Observation], set[str], ArchSpec | None]:
        """(finished, running, taken arch strings, the next queued proposal still free or None)."""
        done, running = self.history.read(study)
        taken = self.taken(done, running)
        return done, running, taken, self.next_queued(taken)

    def next_queued(self, taken: set[str]) -> ArchSpec | None:
        """The next planned proposal that no trial has taken meanwhile (other workers), or None."""
        while self._queue:
            spec = self._queue.pop(0)
            if str(spec) not in taken:
                return spec
        return None

    def taken(self, done: list[Observation], running: list[Observation]) -> set[str]:
        """Arch strings no proposal should repeat: evaluated or being evaluated."""
        return {o.arch for o in done} | {o.arch for o in running}

    def screened(self, spec: ArchSpec) -> bool:
        """True unless the context's screen (a cheap filter) would reject ``spec``."""
        return self.context.screen is None or self.context.screen(spec)

    def random_feasible(self, taken: set[str], n: int = 1) -> list[ArchSpec]:
        """``n`` distinct feasible specs not in ``taken`` (uniform over the feasible region; over those
        the context's screen passes, when there is one)."""
        out: list[ArchSpec] = []
        for _ in range(10):
            for s in self.context.oracle.sample_feasible(max(4 * n, 16), self.rng, self.context.seeds):
                if str(s) not in taken and len(out) < n and self.screened(s):
                    out.append(s)
                    taken = taken | {str(s)}
            if len(out) >= n:
                break
        if not out:  # the feasible region is exhausted or unreachable: let Optuna's trial run anyway
            out = [self.context.space.random(self.rng)]
        return out


def minimised(values: Sequence[float], objectives: Sequence[Field]) -> list[float]:
    """Objective values in minimisation form (maximised ones negated); NaN/-inf accuracy -> +inf."""
    out = []
    for v, f in zip(values, objectives):
        x = -v if f.maximize else v
        out.append(math.inf if math.isnan(x) else x)
    return out


# -- registry ---------------------------------------------------------------------------------
SamplerFactory = Callable[..., optuna.samplers.BaseSampler]


@dataclass(frozen=True)
class SamplerEntry:
    name: str
    factory: SamplerFactory
    summary: str
    ours: bool
    """edgenas' own spec-level sampler (proposes whole specs knowing their cost) rather than a stock one."""
    origin: str = "edgenas"


SAMPLERS: Registry[SamplerFactory] = Registry(
    "sampler", GROUPS["sampler"], sort=False,
    builtins=[f"edgenas.search.samplers.{m}" for m in ("stock", "frontier", "evolution", "rl")])
"""Every sampler factory by name (``nsga2`` first: the listing order is the registration order)."""


def register_sampler(name: str, summary: str, ours: bool = True) -> Callable[[SamplerFactory], SamplerFactory]:
    """Decorator for a factory ``f(context, seed, **options) -> BaseSampler`` (a SpecSampler class
    itself is such a factory)."""

    def deco(factory: SamplerFactory) -> SamplerFactory:
        return SAMPLERS.register(factory, name=name, summary=summary, ours=ours)

    return deco


def sampler_names() -> list[str]:
    return SAMPLERS.names()


def sampler_entry(name: str) -> SamplerEntry:
    e = SAMPLERS.entry(name)
    factory = e.obj
    summary = e.meta.get("summary") or getattr(factory, "summary", "") or (factory.__doc__ or "").strip().split("\n")[0]
    ours = e.meta.get("ours", isinstance(factory, type) and issubclass(factory, SpecSampler))
    return SamplerEntry(e.name, factory, summary, bool(ours), e.origin)


FACTORY_ARGS = ("context", "seed")


def sampler_options(name: str) -> dict[str, Any]:
    from edgenas.options import accepted_options

    return {k: p.default for k, p in accepted_options(sampler_entry(name).factory, FACTORY_ARGS).items()}


def get_sampler(
    name: str, context: SearchContext, seed: int | None = None, **options: Any
) -> optuna.samplers.BaseSampler:
    """Build a registered sampler; unknown options are an error naming the accepted ones."""
    from edgenas.options import coerce_options

    entry = sampler_entry(name)
    opts = coerce_options(entry.factory, options, f"sampler {name!r}", skip=FACTORY_ARGS)
    try:
        return entry.factory(context, seed, **opts)
    except (TypeError, ValueError) as exc:
        raise EdgenasError(f"sampler {name!r}: {exc}") from None
