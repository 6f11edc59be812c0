"""Distributed search through a real PostgreSQL server (Optuna RDB storage, psycopg 3): several
``edgenas`` worker processes share one study and an exact trial budget; a worker killed mid-trial
leaves a stale heartbeat, and its trial is failed and replaced, so none is lost or run twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
from searchkit import BOARD, user_dir, write_board

pytestmark = pytest.mark.xdist_group("postgres")  # one PostgreSQL server per worker: keep its users on one

EDGENAS = [sys.executable, "-m", "edgenas.cli.main"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
"""Three processes share two cores: with torch's default thread count each, OpenMP's spinning threads
slowed a 0.2 s trial to 10 s (measured here); one math thread per process, as `--workers` gives its own."""
N_TRIALS = 24


def _storage(url: str) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.storages.RDBStorage(url)


def _wait_for_study(url: str, name: str, coordinator: subprocess.Popen, timeout: float = 120) -> optuna.Study:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if coordinator.poll() is not None and coordinator.returncode != 0:
            raise AssertionError(f"edgenas search failed: {coordinator.stderr.read()}")
        try:
            study = optuna.load_study(study_name=name, storage=_storage(url))
            if study.get_trials(deepcopy=False):  # created and its budget enqueued
                return study
        except KeyError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"study {name} never appeared")


def _search(url: str, name: str, out: Path, workers: int, extra: list[str],
            env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [*EDGENAS, "search", "--space", "tiny", "--space-opt", "resolutions=96", "--device", BOARD,
         "--estimator", "synflow", "--sampler", "random-feasible", "--budget", "latency_ms<=4",
         "--trials", str(N_TRIALS), "--storage", url, "--study", name, "--workers", str(workers),
         "--out", str(out), "--no-progress", "-q", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**(env or os.environ), **ONE_THREAD})


def _worker(url: str, name: str, index: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A worker started before the search: it waits for the study, so it is ready when the first trial is."""
    return subprocess.Popen([*EDGENAS, "worker", "--storage", url, "--study", name, "--worker-index", str(index),
                             "--wait", "300", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**(env or os.environ), **ONE_THREAD})


def _check_exact(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    complete = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == N_TRIALS
    assert len({t.number for t in complete}) == N_TRIALS
    assert not [t for t in study.get_trials() if t.state in (optuna.trial.TrialState.WAITING,
                                                              optuna.trial.TrialState.RUNNING)]
    return complete


@pytest.fixture
def board() -> str:
    write_board(user_dir(), "tiny", resolutions=[96])
    return BOARD


def test_three_workers_share_one_study_exactly(postgres_url, board, tmp_path):
    name = "three-workers"
    extra = [_worker(postgres_url, name, i) for i in (1, 2)]
    coordinator = _search(postgres_url, name, tmp_path / "run", 1, [])
    for p in (coordinator, *extra):
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    study = optuna.load_study(study_name=name, storage=_storage(postgres_url))
    complete = _check_exact(study)
    assert len(study.get_trials()) == N_TRIALS  # nothing failed, nothing extra
    by_pid: dict[int, int] = {}
    for t in complete:
        pid = t.system_attrs["edgenas:worker"]["pid"]
        by_pid[pid] = by_pid.get(pid, 0) + 1
    assert len(by_pid) == 3, by_pid  # all three processes ran trials
    assert (tmp_path / "run" / "front.csv").is_file()
    # the front of the shared study can be re-printed from the storage alone
    r = subprocess.run([*EDGENAS, "pareto", "--storage", postgres_url, "--study", name, "--no-plots",
                        "--out", str(tmp_path / "again")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Pareto front:" in r.stdout, r.stderr
    # the search's own cost over the whole storage: each process recorded its session, every trial its cost
    cost = json.loads((tmp_path / "again" / "run.json").read_text())["search_cost"]
    assert sorted(s["role"] for s in cost["sessions"]) == ["search", "worker", "worker"]
    assert cost["complete"] and cost["trials"]["measured"] == N_TRIALS
    assert sorted(s["trials"] for s in cost["sessions"]) == sorted(by_pid.values())
    assert cost["cpu_s"] == pytest.approx(cost["trials"]["cpu_s"] + cost["overhead_cpu_s"], abs=1e-5)


def test_killed_worker_trial_is_replaced(postgres_url, board, tmp_path):
    name = "killed-worker"
    env = {**os.environ, "EDGENAS_HEARTBEAT_S": "1", "EDGENAS_GRACE_S": "4"}
    victim = _worker(postgres_url, name, 1, env)
    survivor = _worker(postgres_url, name, 2, env)
    coordinator = _search(postgres_url, name, tmp_path / "run", 1, [], env)
    study = _wait_for_study(postgres_url, name, coordinator)
    deadline = time.time() + 120
    killed = False
    while time.time() < deadline and not killed:  # kill the victim while it holds a running trial
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if t.system_attrs.get("edgenas:worker", {}).get("pid") == victim.pid:
                os.kill(victim.pid, signal.SIGKILL)
                killed = True
                break
        time.sleep(0.05)
    if not killed:
        by_pid = {}
        for t in study.get_trials(deepcopy=False):
            pid = t.system_attrs.get("edgenas:worker", {}).get("pid")
            by_pid[pid] = by_pid.get(pid, 0) + 1
        victim.kill()
        raise AssertionError(f"the victim worker (pid {victim.pid}) never held a running trial; trials by pid: "
                             f"{by_pid}; victim exit {victim.poll()}: {victim.communicate()[1][-2000:]}")
    victim.wait(timeout=30)
    for p in (coordinator, survivor):
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    study = optuna.load_study(study_name=name, storage=_storage(postgres_url))
    _check_exact(study)
    abandoned = [t for t in study.get_trials() if t.system_attrs.get("edgenas:abandoned")]
    assert len(abandoned) == 1 and abandoned[0].state == optuna.trial.TrialState.FAIL
    assert abandoned[0].system_attrs["edgenas:worker"]["pid"] == victim.pid
    assert len(study.get_trials()) == N_TRIALS + 1
    from edgenas.search.owncost import run_cost

    cost = run_cost(study)  # the killed worker recorded no session: its overhead is missing, and says so
    assert not cost["complete"] and "recorded no session" in cost["not_counted"][0]
    assert sorted(s["role"] for s in cost["sessions"]) == ["search", "worker"]
