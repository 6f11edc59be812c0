"""One contract suite over every registered sampler (Optuna's and edgenas' own), in the style of
Optuna's tests/samplers_tests: each runs real trials through the search's trial objective (budgets
first, duplicates reused) on a synthetic board's latency table, and must

* finish every trial with a valid spec of the space, in multi- and single-objective studies;
* repeat itself exactly under the same seed;
* continue a study another sampler instance started (resume from storage);
* (edgenas' own) never spend a trial on a candidate over budget or on a repeat.
"""

from __future__ import annotations

import warnings

import optuna
import pytest
from searchkit import make_job, run_trials

from edgenas.search.samplers import sampler_entry, sampler_names
from edgenas.search.samplers.base import ARCH_ATTR, RECORD_ATTR

SAMPLERS = sampler_names()
OURS = [n for n in SAMPLERS if sampler_entry(n).ours]
# small settings so every sampler leaves its random start-up phase within a short test
FAST = {"nsga2": {"population_size": 8}, "tpe": {"n_startup_trials": 5}, "gp": {"n_startup_trials": 5},
        "frontier": {"init": 5, "batch": 3, "pool": 200}, "evolution": {"population": 8}}


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def job_for(name: str, **kw):
    return make_job(sampler=name, sampler_options=FAST.get(name, {}), **kw)


def archs(study: optuna.Study) -> list[str]:
    return [t.user_attrs[ARCH_ATTR] for t in study.get_trials(deepcopy=False)]


def test_every_sampler_is_registered():
    assert {"nsga2", "tpe", "gp", "random", "frontier", "evolution", "random-feasible"} <= set(SAMPLERS)


@pytest.mark.parametrize("name", SAMPLERS)
def test_multi_objective_run_under_budgets(name):
    job = job_for(name, budgets=("latency_ms<=0.5", "peak_ram_bytes<=48KiB"))
    study = run_trials(job, 18)
    trials = study.get_trials()
    assert len(trials) == 18 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for t in trials:
        spec = job.space.parse(t.user_attrs[ARCH_ATTR])
        rec = t.user_attrs[RECORD_ATTR]
        assert rec["feasible"] == job.oracle.feasible(job.oracle.record(spec))
        assert set(t.constraints) == {"latency_ms<=0.5", "peak_ram_bytes_int8<=49152"}
        if not rec["feasible"]:
            assert rec["status"] == "infeasible" and "estimate" not in rec  # never scored
            assert t.values[0] == float("-inf")
    assert any(t.user_attrs[RECORD_ATTR]["feasible"] for t in trials)


@pytest.mark.parametrize("name", SAMPLERS)
def test_same_seed_same_proposals(name):
    a = archs(run_trials(job_for(name, budgets=("latency_ms<=0.5",)), 12))
    b = archs(run_trials(job_for(name, budgets=("latency_ms<=0.5",)), 12))
    assert a == b


@pytest.mark.parametrize("name", SAMPLERS)
def test_single_objective_and_three_objectives(name):
    one = run_trials(job_for(name, objectives=("accuracy",), budgets=("latency_ms<=0.4",)), 10)
    assert len(one.directions) == 1 and len(one.get_trials()) == 10
    three = run_trials(job_for(name, objectives=("accuracy", "latency_ms", "params")), 10)
    assert len(three.directions) == 3 and all(t.values is not None for t in three.get_trials())


@pytest.mark.parametrize("name", SAMPLERS)
def test_continues_a_study_from_storage(name, tmp_path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    job = job_for(name, budgets=("latency_ms<=0.5",))
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "s.journal")))
    study = optuna.create_study(study_name="s", storage=storage, directions=job.directions)
    run_trials(job, 8, study)
    again = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(tmp_path / "s.journal"))))
    run_trials(job_for(name, budgets=("latency_ms<=0.5",)), 7, again, seed=1)
    assert len(again.get_trials()) == 15


@pytest.mark.parametrize("name", OURS)
def test_ours_spend_trials_only_on_new_feasible_candidates(name):
    job = job_for(name, budgets=("latency_ms<=0.3", "peak_ram_bytes<=40KiB"))
    study = run_trials(job, 25)
    recs = [t.user_attrs[RECORD_ATTR] for t in study.get_trials()]
    assert all(r["feasible"] for r in recs)
    assert len(set(archs(study))) == 25


@pytest.mark.parametrize("name", OURS)
def test_ours_on_a_listable_space(name):
    """nb201 (15,625 cells): edgenas' samplers work on the exhaustive pool too."""
    job = make_job(space="nb201", sampler=name, sampler_options=FAST.get(name, {}), budgets=("latency_ms<=5",))
    study = run_trials(job, 15)
    assert all(t.user_attrs[RECORD_ATTR]["feasible"] for t in study.get_trials())
    assert len(set(archs(study))) == 15
