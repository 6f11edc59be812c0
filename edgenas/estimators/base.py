"""The accuracy-estimator plug-in contract: one base class, a registry, and TOML construction.

An :class:`Estimator` scores specs of one search space (higher is better). Every estimator

* is **seeded**: the score of a spec depends only on ``(estimator options, seed, str(spec))`` — each
  spec gets its own seed derived from the estimator seed and its canonical string, so scoring a batch
  gives the same numbers as scoring its members one by one, in any order;
* is **cached** by the canonical string ``str(spec)``: a spec is computed once per estimator instance;
* is **batch-friendly**: :meth:`Estimator.estimate_many` hands all cache misses to
  :meth:`Estimator._compute_many`, which estimators with a vectorised path (surrogates, predictors,
  tables) override;
* reports **its own cost** per spec in an :class:`Estimate` record: ``seconds`` of wall time spent
  computing it and, for training, ``epochs`` and ``samples`` (training examples processed; 0 when not
  applicable). A cached estimate is returned unchanged: its cost is what it cost when it was computed;
* may give **further metrics** of the same evaluation (``Estimate.metrics``, e.g. the trust metrics of
  :mod:`edgenas.estimators.trust`, which a search can use as objectives and budgets): they are cached
  with the score, follow the same seeding, and are left out when the score is not finite.

Degenerate specs (e.g. NB201 cells whose output is disconnected from the input) never raise: they
score :data:`WORST_SCORE` (``-inf``), which sorts below every real score. Tables and CSV files show it
as ``-inf``; JSON output as ``-Infinity`` (Python's JSON dialect). A NaN produced by a computation is
mapped to :data:`WORST_SCORE` too.

Estimators whose score of a spec depends on the rest of the batch (``batch_dependent = True``, e.g. a
filter or ensemble in ``pool="batch"`` mode, successive halving) are not cached at their own level.
"""

from __future__ import annotations

import hashlib
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from edgenas.errors import EdgenasError
from edgenas.registry import GROUPS, Registry

if TYPE_CHECKING:
    from edgenas.spaces.base import ArchSpec, SearchSpace, Task

WORST_SCORE: float = float("-inf")
"""The score of a degenerate spec (and of a spec filtered out by :class:`CheapFilter`)."""

RECORD_FIELDS = ["arch", "score", "seconds", "epochs", "samples"]


@dataclass(frozen=True)
class Estimate:
    """One scored spec and what the score cost.

    ``score``: higher is better (:data:`WORST_SCORE` for degenerate specs). ``seconds``: wall time spent
    computing it. ``epochs``: training epochs run (0 for training-free estimators). ``samples``:
    training examples processed, i.e. epochs x training-subset size (0 for training-free estimators).
    ``metrics``: further numbers from the same evaluation, by name (the trust metrics of
    :mod:`edgenas.estimators.trust` for ``train``, ``halving`` and ``supernet``; empty for the others and
    whenever the score is not finite).
    """

    arch: str
    score: float
    seconds: float
    epochs: int = 0
    samples: int = 0
    metrics: dict[str, float] = field(default_factory=dict, hash=False)

    def as_record(self) -> dict[str, Any]:
        """The record estimate tables, trial records and CSV files hold: :data:`RECORD_FIELDS`, then
        each metric under its own name."""
        return {"arch": self.arch, "score": self.score, "seconds": self.seconds,
                "epochs": self.epochs, "samples": self.samples, **self.metrics}


@dataclass(frozen=True)
class Outcome:
    """What :meth:`Estimator._compute` returns for one spec; the base class adds arch and seconds."""

    score: float
    epochs: int = 0
    samples: int = 0
    metrics: dict[str, float] = field(default_factory=dict, hash=False)


def clean_metrics(score: float, metrics: dict[str, float]) -> dict[str, float]:
    """The metrics an estimate keeps: none when its score is not finite (a diverged, degenerate or
    filtered-out spec has no metrics to trust), and no NaN."""
    if not math.isfinite(score):
        return {}
    return {str(k): float(v) for k, v in metrics.items() if not math.isnan(float(v))}


def clean_score(value: float) -> float:
    """NaN (a failed computation) becomes :data:`WORST_SCORE`; everything else passes unchanged."""
    value = float(value)
    return WORST_SCORE if math.isnan(value) else value


def spec_seed(seed: int, arch: str) -> int:
    """The per-spec seed: a stable 31-bit hash of the estimator seed and the canonical string.

    Independent of call order and batch composition (that is what makes batch == single), and of
    Python's randomised ``hash()``.
    """
    digest = hashlib.sha256(f"{seed}:{arch}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class Estimator:
    """Base class of all accuracy estimators; register subclasses with :func:`register_estimator`.

    Subclasses implement :meth:`_compute` (one spec) or override :meth:`_compute_many` (a batch of
    cache misses). Constructor keywords after ``space, task, seed`` are the estimator's options; they are
    what ``--est-opt key=value`` and a TOML ``[estimator]`` table set.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    needs_data: ClassVar[bool] = False
    """True when the estimator reads a dataset (option ``dataset``)."""
    seeded: ClassVar[bool] = True
    """False when the seed cannot change any score (cost baselines, tables, fixed predictors)."""
    batch_dependent: ClassVar[bool] = False
    """True when a spec's score depends on the other specs of the batch (then it is not cached)."""
    trust_metrics: ClassVar[tuple[str, ...]] = ()
    """The trust metrics (:data:`edgenas.estimators.trust.TRUST_METRICS`) this estimator can give; it
    then takes the options ``metrics`` (which to compute) and ``noise_snr_db``."""

    def __init__(self, space: SearchSpace, task: Task | None = None, seed: int = 0) -> None:
        reason = self.unsupported_reason(space)
        if reason:
            raise EdgenasError(f"estimator {self.name!r} does not support space {space.name!r}: {reason}")
        self.space = space
        self.task = task
        self.seed = int(seed)
        self._cache: dict[str, Estimate] = {}
        self.computed = 0
        """Number of specs actually computed (cache misses) by this instance."""
        self.seconds_total = 0.0
        """Wall seconds spent in computations, including shared overheads (calibration, fitting)."""

    # -- capability --------------------------------------------------------------------------
    @classmethod
    def unsupported_reason(cls, space: SearchSpace) -> str | None:
        """None when the estimator can score specs of ``space``; else why not (one line)."""
        return None

    # -- public API --------------------------------------------------------------------------
    def estimate(self, spec: ArchSpec) -> Estimate:
        return self.estimate_many([spec])[0]

    def estimate_many(self, specs: Sequence[ArchSpec]) -> list[Estimate]:
        """Estimates in input order; cache misses are computed together in one batch."""
        specs = list(specs)
        if self.batch_dependent:
            return self._run(specs)
        missing: dict[str, ArchSpec] = {}
        for s in specs:
            key = str(s)
            if key not in self._cache and key not in missing:
                missing[key] = s
        if missing:
            for est in self._run(list(missing.values())):
                self._cache[est.arch] = est
        return [self._cache[str(s)] for s in specs]

    def score(self, spec: ArchSpec) -> float:
        """The score of one spec (higher is better)."""
        return self.estimate(spec).score

    def score_many(self, specs: Sequence[ArchSpec]) -> list[float]:
        return [e.score for e in self.estimate_many(specs)]

    def provides(self) -> tuple[str, ...]:
        """The metric names every estimate of this instance with a finite score carries."""
        return ()

    def clear_cache(self) -> None:
        self._cache.clear()

    def cached(self, spec: ArchSpec) -> Estimate | None:
        """The cached estimate of ``spec``, if any (no computation)."""
        return self._cache.get(str(spec))

    # -- subclass hooks ----------------------------------------------------------------------
    def _run(self, specs: list[ArchSpec]) -> list[Estimate]:
        t0 = time.perf_counter()
        out = self._compute_many(specs)
        self.seconds_total += time.perf_counter() - t0
        self.computed += len(specs)
        if len(out) != len(specs):  # pragma: no cover - a subclass bug
            raise RuntimeError(f"{type(self).__name__}._compute_many returned {len(out)} results for {len(specs)}")
        scores = [clean_score(e.score) for e in out]
        return [Estimate(e.arch, v, e.seconds, e.epochs, e.samples, clean_metrics(v, e.metrics))
                for e, v in zip(out, scores)]

    def _compute_many(self, specs: list[ArchSpec]) -> list[Estimate]:
        """Default: time :meth:`_compute` spec by spec."""
        out = []
        for spec in specs:
            t0 = time.perf_counter()
            res = self._compute(spec)
            out.append(Estimate(str(spec), res.score, time.perf_counter() - t0, res.epochs, res.samples,
                                dict(res.metrics)))
        return out

    def _compute(self, spec: ArchSpec) -> Outcome:  # pragma: no cover - overridden
        raise NotImplementedError(f"{type(self).__name__} must implement _compute or _compute_many")

    def spec_seed(self, spec: ArchSpec) -> int:
        return spec_seed(self.seed, str(spec))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(space={self.space.name!r}, seed={self.seed})"


class BatchEstimator(Estimator, ABC):
    """An estimator whose natural unit is a whole batch (one vectorised call); the batch wall time is
    split evenly over its specs."""

    @abstractmethod
    def _scores(self, specs: list[ArchSpec]) -> list[float]: ...

    def _compute_many(self, specs: list[ArchSpec]) -> list[Estimate]:
        t0 = time.perf_counter()
        scores = self._scores(specs)
        each = (time.perf_counter() - t0) / max(1, len(specs))
        return [Estimate(str(s), float(v), each) for s, v in zip(specs, scores)]


class SearchParticipant(ABC):
    """A declared capability: an estimator that takes part in a search beyond scoring candidates.

    Composite estimators compare a candidate with a reference sample (:mod:`edgenas.estimators.compose`).
    Inside a search the fair sample is the candidates that meet the budgets, so the search offers one
    (:meth:`reference_size`, :meth:`use_reference`); a cheap filter can also tell a sampler, before a
    trial is spent, whether a candidate would pass its cheap stage (:meth:`screen`).
    """

    @abstractmethod
    def reference_size(self, stratified: bool) -> int:
        """How many feasible reference candidates it wants from the search (0: it keeps its own sample).
        ``stratified``: the search can also give a cost position per candidate (see :meth:`use_reference`)."""

    @abstractmethod
    def use_reference(self, specs: Sequence[ArchSpec],
                      stratify: Callable[[ArchSpec], Sequence[float]] | None = None) -> None:
        """Compare candidates with ``specs`` from now on; ``stratify`` maps a spec to its cost position
        (log cheap objectives), for estimators that compare a candidate with its cost neighbours only."""

    def screen(self) -> Callable[[ArchSpec], bool] | None:
        """A cheap test a sampler may apply before proposing a candidate (None: none)."""
        return None


# -- registry ----------------------------------------------------------------------------------
def _check_estimator(name: str, obj: Any) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Estimator)):
        raise EdgenasError(f"estimator plug-in {name!r} must be an Estimator subclass, got {obj!r}")
    if obj.name != name:
        raise EdgenasError(f"estimator class {obj.__name__} is named {obj.name!r}, registered as {name!r}")


ESTIMATORS: Registry[type[Estimator]] = Registry(
    "estimator", GROUPS["estimator"], check=_check_estimator,
    builtins=[f"edgenas.estimators.{m}" for m in ("compose", "ofa_predictor", "prune_finetune", "supernet",
                                                    "surrogate", "tabular", "training", "zero_cost")])
"""Every estimator by name: edgenas' own and those of ``edgenas.estimators`` entry points."""


def register_estimator(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator: make an estimator available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    return ESTIMATORS.register(cls)


def estimator_names() -> list[str]:
    return ESTIMATORS.names()


def estimator_class(name: str) -> type[Estimator]:
    return ESTIMATORS.get(name)


CONSTRUCTOR_ARGS = ("space", "task", "seed")
"""Positional constructor arguments every estimator takes; the keywords after them are its options."""


def estimator_options(name: str) -> dict[str, Any]:
    """The options an estimator accepts and their defaults (``inspect.Parameter.empty`` if required)."""
    from edgenas.options import accepted_options

    return {k: p.default for k, p in accepted_options(estimator_class(name), CONSTRUCTOR_ARGS).items()}


def get_estimator(
    name: str, space: SearchSpace, task: Task | None = None, seed: int = 0, **options: Any
) -> Estimator:
    """Instantiate a registered estimator for ``space``; ``options`` are its constructor keywords, typed
    or as command-line text (checked and converted against the signature).

    Unknown options raise :class:`EdgenasError` naming the accepted ones (a typo must not silently fall
    back to a default).
    """
    from edgenas.options import coerce_options

    cls = estimator_class(name)
    opts = coerce_options(cls, options, f"estimator {name!r}", skip=CONSTRUCTOR_ARGS)
    return cls(space, task, seed=seed, **opts)


def build_member(
    name: str, space: SearchSpace, task: Task | None, seed: int, shared: dict[str, Any],
    options: dict[str, Any] | None = None,
) -> Estimator:
    """A member estimator of a composite: ``shared`` options (e.g. ``dataset``) are passed only to
    members that accept them; ``options`` are passed as given (unknown ones are errors)."""
    accepted = estimator_options(name)
    opts = {k: v for k, v in shared.items() if k in accepted and v is not None}
    opts.update(options or {})
    return get_estimator(name, space, task, seed, **opts)


def as_name_list(value: str | Iterable[str]) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (option values from the CLI or TOML)."""
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    out = [v.strip() for v in items if v.strip()]
    if not out:
        raise EdgenasError("expected at least one estimator name")
    return out
