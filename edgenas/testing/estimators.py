"""The accuracy-estimator contract suite (:class:`EstimatorContract`), in the style of Optuna's
samplers_tests.

Every estimator must: be registered under its name and refuse an unknown option with a user error;
return one :class:`~edgenas.estimators.Estimate` per spec with the canonical string, a float score and
its own cost; be deterministic per seed (and, when seeded, depend on the seed); cache by canonical
string; give the same scores in a batch as one by one (or, for batch-dependent estimators, be
deterministic and treat a batch of one as the single case); and survive degenerate specs. An estimator
declaring trust metrics (``trust_metrics``) must give each one asked of it with every finite score, in
[0, 1], seeded, cached and equal in a batch and alone like the score.

Inputs are kept tiny (8-16 px, 4-16 examples) so the suite is fast.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from edgenas.errors import EdgenasError
from edgenas.estimators import WORST_SCORE, Estimate, Estimator, estimator_class, estimator_names, get_estimator
from edgenas.spaces import ArchSpec, SearchSpace, Task, get_space

DEGENERATE: dict[str, list[str]] = {
    "nb201": ["none-none-none-none-none-none", "none-skip-avg-none-skip-none", "c3-none-none-none-none-none"],
}
"""Per space: members whose output does not depend on their input (NB201 cells cut off by 'none' edges)."""
SMALL_TASKS: dict[str, Task] = {"nb201": Task(resolution=8)}
"""Per space: the task the suite uses when none is given (small inputs keep it fast)."""


class EstimatorContract:
    """Subclass as ``class TestMyEstimator(EstimatorContract): estimator_name = "mine"`` with
    ``estimator_options`` (small, fast ones) and, optionally, ``space_name`` / ``space_options`` /
    ``task`` (default: nb201 at 8 px if the estimator supports it, else mbv3). Override the ``name``
    fixture (with ``params``) and the ``options`` fixture to run it over several estimators."""

    estimator_name: ClassVar[str] = ""
    estimator_options: ClassVar[dict[str, Any]] = {}
    space_name: ClassVar[str | None] = None
    space_options: ClassVar[dict[str, Any]] = {}
    task: ClassVar[Task | None] = None
    trains_models: ClassVar[bool] = False
    """The estimator trains (its estimates report epochs and samples)."""
    worst_on_degenerate: ClassVar[bool] = False
    """Degenerate specs must score exactly WORST_SCORE (true of zero-cost proxies)."""
    min_samples_per_epoch: ClassVar[int] = 1
    """For a training estimator: at least this many examples per epoch reported."""

    # -- what is tested: override these -----------------------------------------------------------
    @pytest.fixture
    def name(self) -> str:
        if not self.estimator_name:
            pytest.fail(f"{type(self).__name__} must set estimator_name (or override the 'name' fixture)")
        return self.estimator_name

    @pytest.fixture
    def options(self, name: str) -> dict[str, Any]:
        return dict(self.estimator_options)

    def contract_space(self, name: str) -> tuple[SearchSpace, Task | None]:
        """The space and task the estimator is tested on."""
        if self.space_name is not None:
            space = get_space(self.space_name, **self.space_options)
        elif estimator_class(name).unsupported_reason(get_space("nb201")) is None:
            space = get_space("nb201")
        else:
            space = get_space("mbv3")
        return space, self.task if self.task is not None else SMALL_TASKS.get(space.name, Task())

    def trains(self, name: str) -> bool:
        return self.trains_models

    def seed_matters(self, name: str) -> bool:
        """Whether another seed must give other scores (default: the class's ``seeded``)."""
        return estimator_class(name).seeded

    def degenerate_is_worst(self, name: str) -> bool:
        return self.worst_on_degenerate

    def specs_for(self, space: SearchSpace) -> list[ArchSpec]:
        """Four seeded samples, plus the space's degenerate members (:data:`DEGENERATE`)."""
        return space.sample(4, seed=11) + [space.parse(d) for d in DEGENERATE.get(space.name, [])]

    @pytest.fixture
    def make(self, name: str, options: dict[str, Any]) -> Callable[..., Estimator]:
        """``make(seed=0, **more)``: a fresh estimator instance (``more``: options on top of ``options``)."""
        space, task = self.contract_space(name)

        def build(seed: int = 0, **more: Any) -> Estimator:
            return get_estimator(name, space, task, seed=seed, **{**options, **more})

        return build

    # -- the contract ---------------------------------------------------------------------------
    def test_registered_under_its_name(self, name: str) -> None:
        assert name in estimator_names()
        cls = estimator_class(name)
        assert issubclass(cls, Estimator) and cls.name == name
        assert isinstance(cls.summary, str) and cls.summary

    def test_unknown_option_is_a_user_error(self, name: str, options: dict[str, Any]) -> None:
        space, task = self.contract_space(name)
        with pytest.raises(EdgenasError, match="unknown option"):
            get_estimator(name, space, task, **options, no_such_option_xyz=3)

    def test_estimates_are_records_with_their_cost(self, name: str, make: Callable[..., Estimator]) -> None:
        est = make()
        specs = self.specs_for(est.space)
        ests = est.estimate_many(specs)
        assert len(ests) == len(specs)
        trains = self.trains(name)
        for spec, e in zip(specs, ests):
            assert isinstance(e, Estimate)
            assert e.arch == str(spec)
            assert isinstance(e.score, float) and not math.isnan(e.score)
            assert math.isfinite(e.seconds) and e.seconds >= 0
            assert isinstance(e.epochs, int) and isinstance(e.samples, int)
            assert e.as_record() == {"arch": e.arch, "score": e.score, "seconds": e.seconds,
                                     "epochs": e.epochs, "samples": e.samples, **e.metrics}
            assert set(e.metrics) == (set(est.provides()) if math.isfinite(e.score) else set())
            if trains and e.score > WORST_SCORE:
                assert e.epochs >= 1 and e.samples >= e.epochs * self.min_samples_per_epoch
            elif not trains:
                assert e.epochs == 0 and e.samples == 0
        assert sum(e.seconds for e in ests) > 0
        assert any(e.score > WORST_SCORE for e in ests)
        assert est.seconds_total > 0

    def test_deterministic_per_seed(self, name: str, make: Callable[..., Estimator]) -> None:
        specs = self.specs_for(self.contract_space(name)[0])
        a = make(seed=1).score_many(specs)
        b = make(seed=1).score_many(specs)
        assert a == b
        if self.seed_matters(name):
            c = make(seed=2).score_many(specs)
            assert a != c, "a seeded estimator's scores should depend on its seed"

    def test_cached_by_canonical_string(self, make: Callable[..., Estimator]) -> None:
        est = make()
        spec = self.specs_for(est.space)[0]
        first = est.estimate(spec)
        n = est.computed
        alias = est.space.parse(json.dumps(est.space.to_json(spec)))  # another spelling of the same spec
        assert alias == spec
        again = est.estimate(alias)
        if est.batch_dependent:
            assert est.computed == n + 1  # not cached at this level, but deterministic
            assert again == first
        else:
            assert est.computed == n, "a cache hit must not recompute"
            assert again is first and est.cached(spec) is first
            est.estimate_many([spec, alias, spec])
            assert est.computed == n

    def test_batch_equals_single(self, make: Callable[..., Estimator]) -> None:
        est = make()
        specs = self.specs_for(est.space)[:4]
        batch = est.score_many(specs)
        if est.batch_dependent:
            assert make().score_many(specs) == batch
            single = make()
            assert single.score_many([specs[0]]) == [single.score(specs[0])]
            return
        singles = [make().score(s) for s in specs]
        assert batch == singles
        assert make().score_many(specs[::-1]) == batch[::-1]

    def test_degenerate_specs_never_crash(self, name: str, make: Callable[..., Estimator]) -> None:
        space, _ = self.contract_space(name)
        if not DEGENERATE.get(space.name):
            pytest.skip(f"no degenerate specs known in {space.name}")
        est = make()
        degenerate = [space.parse(d) for d in DEGENERATE[space.name]]
        if space.name == "nb201":
            assert not any(s.is_connected for s in degenerate)
        scores = est.score_many(degenerate)
        assert all(isinstance(v, float) and not math.isnan(v) for v in scores)
        if self.degenerate_is_worst(name):
            assert scores == [WORST_SCORE] * len(degenerate)

    def test_trust_metrics_are_given_in_range_seeded_and_cached(self, name: str,
                                                               make: Callable[..., Estimator]) -> None:
        cls = estimator_class(name)
        if not cls.trust_metrics:
            pytest.skip(f"{name} declares no trust metrics")
        asked = list(cls.trust_metrics)
        est = make(seed=1, metrics=asked)
        assert set(est.provides()) == set(asked)
        specs = self.specs_for(est.space)[:3]
        batch = est.estimate_many(specs)
        assert any(math.isfinite(e.score) for e in batch)
        for e in batch:
            assert set(e.metrics) == (set(asked) if math.isfinite(e.score) else set())
            assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in e.metrics.values()), e.metrics
            if 0.0 <= e.score <= 1.0 and "worst_class_accuracy" in e.metrics:  # the score is an accuracy
                assert e.metrics["worst_class_accuracy"] <= e.score + 1e-12  # a mean of per-class accuracies
        assert [e.metrics for e in make(seed=1, metrics=asked).estimate_many(specs)] == [e.metrics for e in batch]
        if est.batch_dependent:
            single = make(seed=1, metrics=asked)
            assert single.estimate_many([specs[0]])[0].metrics == single.estimate(specs[0]).metrics
        else:
            n = est.computed
            assert est.estimate(specs[0]) is batch[0] and est.computed == n  # cached with the score
            assert [make(seed=1, metrics=asked).estimate(s).metrics for s in specs] == [e.metrics for e in batch]
        assert all(e.metrics == {} for e in make(seed=1, metrics=[]).estimate_many(specs[:1]))
        with pytest.raises(EdgenasError, match="unknown trust metric"):
            make(metrics=["no_such_metric"])
