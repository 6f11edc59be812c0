"""The throwaway PostgreSQL helper (tests/pgserver.py) with Optuna's RDB storage over psycopg 3.

Skips only when no PostgreSQL server binaries exist and they cannot be installed (see pgserver); set
$EDGENAS_REQUIRE_POSTGRES to turn that skip into a failure.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import warnings

import optuna
from pgserver import start_for_pytest

N_WORKERS = 2
TRIALS_PER_WORKER = 6

# One Optuna worker process: joins an existing study (the parent created tables + study first: several
# processes creating the tables of an empty database at once collide inside PostgreSQL).
WORKER = r"""
import sys, warnings
import optuna
warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, name, worker, n_trials = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=5)
study = optuna.load_study(study_name=name, storage=storage)

def objective(trial):
    trial.set_user_attr("worker", worker)
    x = trial.suggest_float("x", -2.0, 2.0)
    return (x - 0.5) ** 2

study.optimize(objective, n_trials=n_trials)
"""

# A worker that hangs inside its trial until killed: its trial must end up stale.
HANGING_WORKER = r"""
import sys, time, warnings
import optuna
warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = optuna.storages.RDBStorage(sys.argv[1], heartbeat_interval=1, grace_period=2)
study = optuna.load_study(study_name=sys.argv[2], storage=storage)

def objective(trial):
    print("started", trial.number, flush=True)
    time.sleep(600)
    return 0.0

study.optimize(objective, n_trials=1)
"""


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _quiet_storage(url: str, **kwargs: int) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, **kwargs)


def test_server_serves_concurrent_optuna_workers_then_stops() -> None:
    pg = start_for_pytest()
    try:
        assert pg.url == f"postgresql+psycopg://edgenas@127.0.0.1:{pg.port}/edgenas"
        assert pg.is_running()
        assert _accepts_connections(pg.host, pg.port)
        base_dir = pg.base_dir
        assert base_dir is not None and base_dir.is_dir()

        storage = _quiet_storage(pg.url)
        assert storage.engine.dialect.name == "postgresql"
        assert storage.engine.dialect.driver == "psycopg"
        study = optuna.create_study(study_name="shared", storage=storage, direction="minimize")

        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, pg.url, "shared", f"w{i}", str(TRIALS_PER_WORKER)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for i in range(N_WORKERS)
        ]
        for p in procs:
            try:
                _out, err = p.communicate(timeout=60)
            finally:
                p.kill()
            assert p.returncode == 0, err

        trials = study.get_trials(deepcopy=False)
        assert len(trials) == N_WORKERS * TRIALS_PER_WORKER
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        assert sorted(t.number for t in trials) == list(range(N_WORKERS * TRIALS_PER_WORKER))
        per_worker = {f"w{i}": 0 for i in range(N_WORKERS)}
        for t in trials:
            per_worker[t.user_attrs["worker"]] += 1
        assert per_worker == {f"w{i}": TRIALS_PER_WORKER for i in range(N_WORKERS)}
        # a fresh storage object (another "machine") sees the same study
        assert len(optuna.load_study(study_name="shared", storage=pg.url).trials) == len(trials)
        storage.engine.dispose()
    finally:
        pg.stop()

    assert not pg.is_running()
    assert not _accepts_connections(pg.host, pg.port)
    assert not base_dir.exists()
    pg.stop()  # idempotent


def test_heartbeat_fails_the_trial_of_a_killed_worker() -> None:
    with start_for_pytest() as pg:
        storage = _quiet_storage(pg.url, heartbeat_interval=1, grace_period=2)
        study = optuna.create_study(study_name="hb", storage=storage)
        proc = subprocess.Popen([sys.executable, "-c", HANGING_WORKER, pg.url, "hb"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            assert line.startswith("started"), proc.stderr.read() if proc.stderr else line
            time.sleep(1.2)  # at least one heartbeat recorded by the worker's heartbeat thread
        finally:
            proc.kill()
            proc.communicate(timeout=30)
        assert [t.state for t in study.get_trials(deepcopy=False)] == [optuna.trial.TrialState.RUNNING]

        deadline = time.monotonic() + 15
        states: list[optuna.trial.TrialState] = []
        while time.monotonic() < deadline:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            states = [t.state for t in study.get_trials(deepcopy=False)]
            if states != [optuna.trial.TrialState.RUNNING]:
                break
            time.sleep(0.25)
        assert states == [optuna.trial.TrialState.FAIL]
        storage.engine.dispose()

