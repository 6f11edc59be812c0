"""One test per Optuna internal edgenas uses (edgenas/search/optuna_compat.py), against the installed Optuna
and real storages, so an Optuna release that moves one fails here and not inside a worker."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from edgenas.search import optuna_compat as compat
from edgenas.search import study as st

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def journal_study(path: Path) -> optuna.Study:
    return optuna.create_study(study_name="s", storage=compat.journal_storage(path), directions=["minimize"])


def test_the_optuna_bound_in_pyproject_is_the_one_the_hooks_were_checked_for():
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(r'"optuna([^"]*)"', text)
    assert m is not None and m.group(1).replace(" ", "") == compat.SUPPORTED
    major = int(optuna.__version__.split(".")[0])
    assert major == 5  # the version these hooks are tested with


def test_ids_of_study_and_trials(tmp_path):
    study = journal_study(tmp_path / "a.journal")
    trial = study.ask()
    assert isinstance(compat.study_id(study), int) and isinstance(compat.trial_id(trial), int)
    frozen = study.get_trials(deepcopy=False)[0]
    assert compat.trial_id(frozen) == compat.trial_id(trial)
    assert compat.storage_of(study) is study._storage


def test_flushed_journal_is_complete_on_disk_after_every_write(tmp_path):
    """Without fsync, each append is still flushed: another reader (a new process after a SIGKILL) sees it."""
    path = tmp_path / "a.journal"
    study = journal_study(path)
    study.enqueue_trial({"x": 1})
    backend = compat.storage_of(study)._backend
    assert hasattr(backend, "_lock") and hasattr(backend, "_file_path")
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    other = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    assert [t.state for t in other.get_trials()] == [TrialState.WAITING]
    fsynced = optuna.create_study(study_name="f", storage=compat.journal_storage(tmp_path / "f.journal", fsync=True))
    fsynced.enqueue_trial({})
    assert (tmp_path / "f.journal").stat().st_size > 0


def test_claiming_waiting_trials_is_exact_under_concurrency(tmp_path):
    study = journal_study(tmp_path / "a.journal")
    st.enqueue(study, 20)
    claimed: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        s = optuna.load_study(study_name="s", storage=compat.journal_storage(tmp_path / "a.journal"))
        while (t := st.claim(s)) is not None:
            with lock:
                claimed.append(t.number)
            s.tell(t, 1.0)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(claimed) == list(range(20))  # every waiting trial once, none twice, none created
    assert len(study.get_trials()) == 20


def test_set_state_is_refused_once_a_trial_finished(tmp_path):
    study = journal_study(tmp_path / "a.journal")
    trial = study.ask()
    assert compat.set_state(study, trial, TrialState.FAIL)
    assert not compat.set_state(study, trial, TrialState.RUNNING)


def test_system_attrs_and_trial_handles(tmp_path):
    study = journal_study(tmp_path / "a.journal")
    st.enqueue(study, 1)
    (frozen,) = compat.waiting_trials(study)
    assert compat.set_state(study, frozen, TrialState.RUNNING)
    compat.set_system_attr(study, frozen, "edgenas:test", {"a": 1})
    handle = compat.trial_handle(study, frozen)
    study.tell(handle, 2.0)
    (done,) = study.get_trials()
    assert done.state == TrialState.COMPLETE and done.system_attrs["edgenas:test"] == {"a": 1}


@pytest.mark.slow  # waits for a heartbeat to go stale
def test_stale_heartbeats_are_found(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'h.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name="h", storage=storage)
    assert compat.heartbeat_interval(study) == 1
    trial = study.ask()
    compat.record_heartbeat(study, trial)
    assert compat.trial_id(trial) not in compat.stale_trial_ids(study)
    time.sleep(2.5)
    assert compat.trial_id(trial) in compat.stale_trial_ids(study)
    journal = journal_study(tmp_path / "a.journal")
    assert compat.heartbeat_interval(journal) is None and compat.stale_trial_ids(journal) == set()


@pytest.mark.parametrize(("dist", "inside", "outside"), [
    (CategoricalDistribution([3, 5, 7]), 5, 4),
    (CategoricalDistribution(["a", "b"]), "b", "c"),
    (IntDistribution(1, 4), 3, 9),
    (FloatDistribution(0.0, 1.0), 0.5, 1.5),
])
def test_distribution_contains(dist, inside, outside):
    assert compat.contains(dist, inside)
    assert not compat.contains(dist, outside)
