"""Every use of Optuna internals, in one place (the package pins ``optuna>=5,<6`` for them).

The search needs a few things Optuna's public API does not offer:

* **claiming a waiting trial atomically** (exact trial budgets shared by workers): the storage's
  ``set_trial_state_values`` on a trial id, then ``optuna.Trial(study, trial_id)``;
* **trial and study ids** (``Study._storage``, ``Study._study_id``, ``Trial._trial_id``) for storage calls;
* **stale heartbeats** (``RDBStorage._get_stale_trial_ids``): which running trials' workers died;
* **a journal file flushed per append but not fsync'ed** (``optuna.storages.journal._file.get_lock_file``
  and the backend's ``_lock`` / ``_file_path``): SIGKILL-safe at half the cost of an fsync per write;
* **whether a distribution contains a value** (``BaseDistribution._contains``), for samplers that plan a
  whole spec and answer Optuna's per-parameter questions from the plan.

Each hook is tested against the installed Optuna (tests/search/test_optuna_compat.py); a missing hook is
one line naming the Optuna version, not an AttributeError deep in a worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from edgenas.errors import EdgenasError

SUPPORTED = ">=5,<6"


def _missing(what: str) -> EdgenasError:
    return EdgenasError(f"optuna {optuna.__version__} lacks {what}, which edgenas needs; install optuna{SUPPORTED} "
                        f"(pip install 'optuna{SUPPORTED}')")


# -- ids ------------------------------------------------------------------------------------------
def storage_of(study: optuna.Study) -> BaseStorage:
    try:
        return study._storage
    except AttributeError:
        raise _missing("Study._storage") from None


def study_id(study: optuna.Study) -> int:
    try:
        return int(study._study_id)
    except AttributeError:
        raise _missing("Study._study_id") from None


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    try:
        return int(trial._trial_id)
    except AttributeError:
        raise _missing("Trial._trial_id") from None


# -- trial state ------------------------------------------------------------------------------------
def waiting_trials(study: optuna.Study) -> list[FrozenTrial]:
    return storage_of(study).get_all_trials(study_id(study), deepcopy=False, states=(TrialState.WAITING,))


def set_state(study: optuna.Study, trial: optuna.Trial | FrozenTrial, state: TrialState) -> bool:
    """Move a trial to ``state``; False when another worker changed it first (the atomic step that
    makes claiming and failing safe with several workers)."""
    try:
        return bool(storage_of(study).set_trial_state_values(trial_id(trial), state=state))
    except UpdateFinishedTrialError:
        return False


def set_system_attr(study: optuna.Study, trial: optuna.Trial | FrozenTrial, key: str, value: Any) -> None:
    storage_of(study).set_trial_system_attr(trial_id(trial), key, value)


def trial_handle(study: optuna.Study, frozen: FrozenTrial) -> optuna.Trial:
    """A live ``optuna.Trial`` for a trial this worker has just claimed."""
    return optuna.Trial(study, trial_id(frozen))


# -- heartbeats (RDB storages) ----------------------------------------------------------------------
def heartbeat_interval(study: optuna.Study) -> int | None:
    getter = getattr(storage_of(study), "get_heartbeat_interval", None)
    return getter() if callable(getter) else None


def record_heartbeat(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> None:
    storage_of(study).record_heartbeat(trial_id(trial))  # type: ignore[attr-defined]


def stale_trial_ids(study: optuna.Study) -> set[int]:
    """Running trials whose heartbeat stopped for longer than the storage's grace period (empty for
    storages without heartbeats)."""
    storage = storage_of(study)
    if not heartbeat_interval(study):
        return set()
    fn = getattr(storage, "_get_stale_trial_ids", None)
    if fn is None:
        raise _missing("RDBStorage._get_stale_trial_ids")
    return set(fn(study_id(study)))


# -- journal files ----------------------------------------------------------------------------------
def journal_storage(path: Path, fsync: bool = False) -> optuna.storages.JournalStorage:
    """Optuna's journal storage on ``path``; without ``fsync``, every append is flushed to the kernel
    but not fsync'ed: a killed process (even SIGKILL) loses nothing it has written, only an OS crash or
    power cut could lose the last writes. fsync per write costs ~0.3 ms, and a trial makes ~40 writes
    (one per parameter), so it would double a search's own overhead."""
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

    if fsync:
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    try:
        from optuna.storages.journal._file import get_lock_file
    except ImportError:
        raise _missing("optuna.storages.journal._file.get_lock_file") from None

    class FlushedJournalFileBackend(JournalFileBackend):
        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            with get_lock_file(self._lock):
                data = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
                with open(self._file_path, "ab") as f:
                    f.write(data.encode("utf-8"))
                    f.flush()

    backend = FlushedJournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
    if not hasattr(backend, "_lock") or not hasattr(backend, "_file_path"):
        raise _missing("JournalFileBackend._lock / _file_path")
    return JournalStorage(backend)


# -- distributions ----------------------------------------------------------------------------------
def contains(distribution: BaseDistribution, value: Any) -> bool:
    """True when ``value`` (external representation) is a valid value of ``distribution``."""
    try:
        internal = distribution.to_internal_repr(value)
    except (ValueError, TypeError):
        return False
    fn = getattr(distribution, "_contains", None)
    if fn is None:
        raise _missing("BaseDistribution._contains")
    return bool(fn(internal))
