"""The sampler contract suite (:class:`SamplerContract`), in the style of Optuna's tests/samplers_tests.

Each sampler runs real trials through the search's trial objective (budgets first, duplicates reused)
on the synthetic board's latency table (:mod:`edgenas.testing.board`), and must

* be registered with a one-line summary and refuse an unknown option with a user error;
* finish every trial with a valid spec of the space, in single-, two- and three-objective studies;
* repeat itself exactly under the same seed;
* continue a study another sampler instance started (resume from storage);
* (spec-level samplers, ``ours``) never spend a trial on a candidate over budget or on a repeat, also
  on a space small enough to list (nb201).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import optuna
import pytest

from edgenas.errors import EdgenasError
from edgenas.search.record import ARCH_ATTR, RECORD_ATTR
from edgenas.search.samplers import get_sampler, sampler_entry, sampler_names, sampler_options
from edgenas.testing.board import make_job, run_trials
from edgenas.testing.isolation import IsolatedUserDir


def archs(study: optuna.Study) -> list[str]:
    """The canonical arch string of every trial of ``study``, in trial order."""
    return [t.user_attrs[ARCH_ATTR] for t in study.get_trials(deepcopy=False)]


class SamplerContract(IsolatedUserDir):
    """Subclass as ``class TestMySampler(SamplerContract): sampler_name = "mine"`` with
    ``sampler_options`` small enough that the sampler leaves any random start-up phase within about
    ten trials. Override the ``name`` and ``options`` fixtures to run it over several samplers."""

    sampler_name: ClassVar[str] = ""
    sampler_options: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def name(self) -> str:
        if not self.sampler_name:
            pytest.fail(f"{type(self).__name__} must set sampler_name (or override the 'name' fixture)")
        return self.sampler_name

    @pytest.fixture
    def options(self, name: str) -> dict[str, Any]:
        return dict(self.sampler_options)

    @pytest.fixture(autouse=True)
    def _quiet(self) -> Iterator[None]:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield

    @staticmethod
    def job_for(name: str, options: dict[str, Any], **kw: Any) -> Any:
        """A search job on the synthetic board (``tiny`` unless ``space=`` says otherwise)."""
        return make_job(sampler=name, sampler_options=options, **kw)

    # -- the contract ---------------------------------------------------------------------------
    def test_registered_with_a_summary_and_options(self, name: str, options: dict[str, Any]) -> None:
        assert name in sampler_names()
        entry = sampler_entry(name)
        assert entry.name == name and isinstance(entry.summary, str) and entry.summary.strip()
        assert "\n" not in entry.summary
        accepted = sampler_options(name)
        assert set(options) <= set(accepted), f"options {sorted(set(options) - set(accepted))} are not accepted"

    def test_unknown_option_is_a_user_error(self, name: str, options: dict[str, Any]) -> None:
        from edgenas.search.samplers.base import SearchContext

        job = self.job_for(name, options)
        ctx = SearchContext(job.space, job.task, job.oracle, job.objectives, job.budgets)
        assert isinstance(get_sampler(name, ctx, 0, **options), optuna.samplers.BaseSampler)
        with pytest.raises(EdgenasError, match="unknown option"):
            get_sampler(name, ctx, 0, **options, no_such_option_xyz=1)

    def test_multi_objective_run_under_budgets(self, name: str, options: dict[str, Any]) -> None:
        # each budget alone admits about half of tiny's members, both together about 44%: a sampler blind
        # to cost meets feasible and infeasible candidates alike within 18 trials
        job = self.job_for(name, options, budgets=("latency_ms<=3", "peak_ram_bytes<=64KiB"))
        study = run_trials(job, 18)
        trials = study.get_trials()
        assert len(trials) == 18 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        for t in trials:
            spec = job.space.parse(t.user_attrs[ARCH_ATTR])
            rec = t.user_attrs[RECORD_ATTR]
            assert rec["feasible"] == job.oracle.feasible(job.oracle.record(spec))
            assert set(t.constraints) == {"latency_ms<=3", "peak_ram_bytes_int8<=65536"}
            if not rec["feasible"]:
                assert rec["status"] == "infeasible" and "estimate" not in rec  # never scored
                assert t.values[0] == float("-inf")
        assert any(t.user_attrs[RECORD_ATTR]["feasible"] for t in trials)

    def test_same_seed_same_proposals(self, name: str, options: dict[str, Any]) -> None:
        a = archs(run_trials(self.job_for(name, options, budgets=("latency_ms<=0.5",)), 12))
        b = archs(run_trials(self.job_for(name, options, budgets=("latency_ms<=0.5",)), 12))
        assert a == b

    def test_single_objective_and_three_objectives(self, name: str, options: dict[str, Any]) -> None:
        one = run_trials(self.job_for(name, options, objectives=("accuracy",), budgets=("latency_ms<=0.4",)), 10)
        assert len(one.directions) == 1 and len(one.get_trials()) == 10
        three = run_trials(self.job_for(name, options, objectives=("accuracy", "latency_ms", "params")), 10)
        assert len(three.directions) == 3 and all(t.values is not None for t in three.get_trials())

    def test_continues_a_study_from_storage(self, name: str, options: dict[str, Any], tmp_path: Path) -> None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        job = self.job_for(name, options, budgets=("latency_ms<=0.5",))
        storage = JournalStorage(JournalFileBackend(str(tmp_path / "s.journal")))
        study = optuna.create_study(study_name="s", storage=storage, directions=job.directions)
        run_trials(job, 8, study)
        again = optuna.load_study(study_name="s",
                                  storage=JournalStorage(JournalFileBackend(str(tmp_path / "s.journal"))))
        run_trials(self.job_for(name, options, budgets=("latency_ms<=0.5",)), 7, again, seed=1)
        assert len(again.get_trials()) == 15

    def test_ours_spend_trials_only_on_new_feasible_candidates(self, name: str, options: dict[str, Any]) -> None:
        if not sampler_entry(name).ours:
            pytest.skip(f"{name} is a stock sampler: it may propose infeasible or repeated candidates")
        job = self.job_for(name, options, budgets=("latency_ms<=0.3", "peak_ram_bytes<=40KiB"))
        study = run_trials(job, 25)
        recs = [t.user_attrs[RECORD_ATTR] for t in study.get_trials()]
        assert all(r["feasible"] for r in recs)
        assert len(set(archs(study))) == 25

    def test_ours_on_a_listable_space(self, name: str, options: dict[str, Any]) -> None:
        """nb201 (15,625 cells): spec-level samplers work on the exhaustive pool too."""
        if not sampler_entry(name).ours:
            pytest.skip(f"{name} is a stock sampler: it may propose infeasible or repeated candidates")
        job = self.job_for(name, options, space="nb201", budgets=("latency_ms<=5",))
        study = run_trials(job, 15)
        assert all(t.user_attrs[RECORD_ATTR]["feasible"] for t in study.get_trials())
        assert len(set(archs(study))) == 15
