"""The Optuna study behind a search: storage, metadata, and an exact trial budget shared by workers.

Storage is any Optuna storage URL (``sqlite:///...``, ``postgresql+psycopg://...``; RDB storages get
a heartbeat so a dead worker's trial is failed and replaced), or a journal file (a path ending in
``.journal``, or ``journal:PATH``) — the default, in the run directory.

Exact budgets: ``--trials N`` enqueues N trials up front; workers only ever *claim* a waiting trial
(an atomic state change in every Optuna storage) and never create one, so any number of workers on
any number of machines run exactly N trials between them, none twice. A trial whose worker died
(SIGKILL, lost machine) is failed and replaced on ``--resume`` or, with an RDB heartbeat, by the
next worker that notices.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from edgenas.errors import EdgenasError
from edgenas.search import optuna_compat as compat
from edgenas.search.record import ABANDONED_ATTR, CONFIG_ATTR, META_ATTR, TABLES_ATTR, WORKER_ATTR, is_abandoned

HEARTBEAT_S = int(os.environ.get("EDGENAS_HEARTBEAT_S", "20"))
GRACE_S = int(os.environ.get("EDGENAS_GRACE_S", "90"))
"""RDB storages: a running trial records a heartbeat every HEARTBEAT_S seconds; one silent for GRACE_S
is a dead worker's, failed and replaced by the next worker that looks (both overridable by env)."""


def check_storage_url(url: str) -> None:
    """Check a storage URL without opening or writing anything: its form, and for a database URL that the
    driver it names is installed (a missing one is one line naming the pip extra)."""
    if url.startswith(("journal:", "journal-fsync:")) or url.endswith(".journal") or url.endswith(".log"):
        return
    if "://" not in url:
        raise EdgenasError(f"storage {url!r}: give an Optuna URL (sqlite:///run.db, postgresql+psycopg://user@host/db) "
                           f"or a journal file path ending in .journal")
    from sqlalchemy.engine import make_url

    try:
        dialect = make_url(url).get_dialect()
    except Exception as exc:  # unknown dialect or malformed URL
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise EdgenasError(f"storage {url!r} is not a database URL edgenas can open: {first}") from None
    try:
        dialect.import_dbapi()
    except ModuleNotFoundError as exc:
        from edgenas.extras import missing_extra

        raise missing_extra((exc.name or "").split(".")[0], f"storage {url!r}") from None


def open_storage(url: str) -> BaseStorage:
    """An Optuna storage from a URL or journal path (errors are one line, exit 2). A journal path (or
    ``journal:PATH``) is flushed per write; ``journal-fsync:PATH`` also fsyncs every write."""
    if url.startswith(("journal:", "journal-fsync:")) or url.endswith(".journal") or url.endswith(".log"):
        fsync = url.startswith("journal-fsync:")
        path = Path(url.removeprefix("journal-fsync:").removeprefix("journal:"))
        if not path.parent.exists():
            raise EdgenasError(f"storage folder {str(path.parent)!r} does not exist")
        return compat.journal_storage(path, fsync)
    if "://" not in url:
        raise EdgenasError(f"storage {url!r}: give an Optuna URL (sqlite:///run.db, postgresql+psycopg://user@host/db) "
                           f"or a journal file path ending in .journal")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            if url.startswith("sqlite"):
                return optuna.storages.RDBStorage(url)
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                              engine_kwargs={"pool_pre_ping": True})
    except ModuleNotFoundError as exc:
        from edgenas.extras import missing_extra

        raise missing_extra((exc.name or "").split(".")[0], f"storage {url!r}") from None
    except Exception as exc:  # SQLAlchemy connection / URL errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise EdgenasError(f"cannot open storage {url!r}: {first}") from None


def study_meta(study: optuna.Study) -> dict[str, Any]:
    return dict(study.user_attrs.get(META_ATTR) or {})


def load_config(study: optuna.Study) -> dict[str, Any]:
    cfg = study.user_attrs.get(CONFIG_ATTR)
    if not isinstance(cfg, dict):
        raise EdgenasError(f"study {study.study_name!r} was not created by edgenas search (no {CONFIG_ATTR})")
    return cfg


def counts(study: optuna.Study) -> dict[str, int]:
    out = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] += 1
    return out


def enqueue(study: optuna.Study, n: int) -> None:
    """Add ``n`` waiting trials (the run's remaining budget)."""
    for _ in range(n):
        study.enqueue_trial({}, skip_if_exists=False)


def claim(study: optuna.Study) -> optuna.Trial | None:
    """Take one waiting trial atomically, or None when none is left. Never creates a trial."""
    for t in compat.waiting_trials(study):
        if not compat.set_state(study, t, TrialState.RUNNING):
            continue
        compat.set_system_attr(study, t, WORKER_ATTR, worker_id())
        return compat.trial_handle(study, t)
    return None


def new_trial(study: optuna.Study) -> optuna.Trial:
    """An unbounded run's next trial (a waiting one first)."""
    trial = study.ask()
    compat.set_system_attr(study, trial, WORKER_ATTR, worker_id())
    return trial


def worker_id() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def abandoned_trials(study: optuna.Study, assume_dead: bool = False) -> list[Any]:
    """Running trials whose worker is gone: a process of this host that no longer exists, any
    worker when ``assume_dead`` (resuming a local run), or a stale RDB heartbeat."""
    host = socket.gethostname()
    out = []
    stale_ids = compat.stale_trial_ids(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        w = t.system_attrs.get(WORKER_ATTR) or {}
        if assume_dead or compat.trial_id(t) in stale_ids or (
                w.get("host") == host and not _pid_alive(int(w.get("pid", -1)))):
            out.append(t)
    return out


def replace_abandoned(study: optuna.Study, bounded: bool, assume_dead: bool = False) -> int:
    """Fail the trials of dead workers (marked ``edgenas:abandoned``) and, in a bounded run, enqueue
    one waiting trial for each, so the run still ends with its requested number. Each abandoned
    trial is replaced exactly once: only the worker whose state change succeeds enqueues."""
    n = 0
    for t in abandoned_trials(study, assume_dead):
        try:
            compat.set_system_attr(study, t, ABANDONED_ATTR, True)
        except UpdateFinishedTrialError:
            continue
        if not compat.set_state(study, t, TrialState.FAIL):
            continue
        n += 1
        if bounded:
            enqueue(study, 1)
    return n


def running_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def finished_count(study: optuna.Study) -> int:
    """Trials that count towards the budget: complete, and failed by the estimator (not abandoned)."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)):
        if not is_abandoned(t):
            n += 1
    return n


@contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat in the background when the storage supports it (RDB)."""
    interval = compat.heartbeat_interval(study)
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                compat.record_heartbeat(study, trial)
            except Exception:  # a transient DB error must not kill the trial
                pass

    compat.record_heartbeat(study, trial)
    th = threading.Thread(target=beat, daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join(timeout=5)


def create_or_load(
    storage: BaseStorage, name: str, directions: list[str], config: dict[str, Any] | None = None,
    tables: dict[str, Any] | None = None, meta: dict[str, Any] | None = None, sampler: Any = None,
    must_exist: bool = False, metric_names: list[str] | None = None,
) -> tuple[optuna.Study, bool]:
    """(study, created). A new study gets the config, tables and meta as user attributes."""
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        created = False
    except KeyError:
        if must_exist:
            raise EdgenasError(f"no study named {name!r} in this storage") from None
        study = optuna.create_study(study_name=name, storage=storage, directions=directions, sampler=sampler)
        created = True
        if metric_names:
            with warnings.catch_warnings():  # experimental since Optuna 3.2: edgenas relies on it knowingly
                warnings.simplefilter("ignore", ExperimentalWarning)
                study.set_metric_names(list(metric_names))
        if config is not None:
            study.set_user_attr(CONFIG_ATTR, config)
        if tables is not None:
            study.set_user_attr(TABLES_ATTR, tables)
        study.set_user_attr(META_ATTR, {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(meta or {})})
    if not created and [d.name.lower() for d in study.directions] != [d.lower() for d in directions]:
        raise EdgenasError(f"study {name!r} optimises {[d.name.lower() for d in study.directions]}, "
                           f"not {directions}; use another --study name")
    return study, created


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, default=str)
