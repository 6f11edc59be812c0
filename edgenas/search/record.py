"""What a search stores in its Optuna study: every attribute key, the trial status, and the trial record.

Study user attributes (set once, when the study is created): ``edgenas:config`` (the resolved job),
``edgenas:tables`` (the latency tables as they were when the search started) and ``edgenas:meta``.
Trial user attributes: ``arch`` (the canonical arch string, set as soon as the spec is known) and
``edgenas`` (the :class:`TrialRecord`, set when the trial is evaluated); ``error`` when the estimator
raised; ``search_cost`` (what the trial cost the machine: ``cpu_s``, ``wall_s``, ``energy_j``). Trial
system attributes: ``edgenas:worker`` (host and pid of the worker that claimed it) and
``edgenas:abandoned`` (its worker died; the trial was failed and replaced). Study user attributes
``edgenas:session:<host>:<pid>:<start ms>``: what each search or worker process cost
(:mod:`edgenas.search.owncost`).

This module is the only place that knows these keys and how a record is laid out; everything that
reads a study (the front, the run folder, samplers, benchmarks, export) goes through it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from optuna.trial import FrozenTrial, TrialState

CONFIG_ATTR = "edgenas:config"
TABLES_ATTR = "edgenas:tables"
META_ATTR = "edgenas:meta"
WORKER_ATTR = "edgenas:worker"
ABANDONED_ATTR = "edgenas:abandoned"
ARCH_ATTR = "arch"
"""Trial user attribute: the canonical arch string (also what ``optuna-dashboard`` shows)."""
RECORD_ATTR = "edgenas"
"""Trial user attribute: the :class:`TrialRecord` (costs, feasibility, status, the estimator's record)."""
ERROR_ATTR = "error"
"""Trial user attribute: why the estimator failed on this trial's spec (the search went on)."""
COST_ATTR = "search_cost"
"""Trial user attribute: ``{"cpu_s", "wall_s", "energy_j"}`` the trial cost (:mod:`edgenas.search.owncost`)."""
SESSION_ATTR_PREFIX = "edgenas:session:"
"""Study user attributes ``edgenas:session:<host>:<pid>:<start ms>``: one search or worker process's cost."""

WORST = float("-inf")
"""The accuracy of a candidate that was not scored (over budget) or scored as degenerate."""


class TrialStatus(str, Enum):
    """What happened to a trial's candidate."""

    EVALUATED = "evaluated"
    """Scored by the estimator (a new candidate within every cheap budget)."""
    INFEASIBLE = "infeasible"
    """Over a cheap budget: finished with its real costs, never scored."""
    DUPLICATE = "duplicate"
    """Already scored in this study: the earlier result was reused."""
    REJECTED = "rejected"
    """Scored, but the estimator gave no finite score (filtered out by a cheap stage, or degenerate)."""
    FAILED = "failed"
    """The estimator raised, or the worker died (see ``abandoned``)."""

    def __str__(self) -> str:
        return self.value

    @property
    def queried_estimator(self) -> bool:
        """An accuracy query was spent on this trial (evaluated or rejected)."""
        return self in (TrialStatus.EVALUATED, TrialStatus.REJECTED)


@dataclass
class TrialRecord:
    """One finished trial as the search recorded it.

    ``costs`` holds every cheap field of the candidate (exact costs and table latencies, by field
    name); ``estimate`` the estimator's own record (score, seconds, epochs, samples) when it ran.
    """

    arch: str
    status: TrialStatus
    feasible: bool
    costs: dict[str, Any] = field(default_factory=dict)
    accuracy: float = WORST
    estimate: dict[str, Any] | None = None
    estimator: str | None = None
    duplicate_of: int | None = None

    # -- storage -------------------------------------------------------------------------------
    def to_attrs(self) -> dict[str, Any]:
        """The ``edgenas`` user attribute: the costs flat, then feasibility, status and the estimate."""
        out: dict[str, Any] = {**self.costs, "feasible": self.feasible, "status": self.status.value,
                               "accuracy": self.accuracy}
        if self.estimate is not None:
            out["estimate"] = dict(self.estimate)
        if self.estimator is not None:
            out["estimator"] = self.estimator
        if self.duplicate_of is not None:
            out["duplicate_of"] = self.duplicate_of
        return out

    @classmethod
    def from_attrs(cls, arch: str, attrs: dict[str, Any]) -> TrialRecord:
        rec = dict(attrs)
        status = rec.pop("status", TrialStatus.EVALUATED.value)
        try:
            st = TrialStatus(status)
        except ValueError:
            st = TrialStatus.FAILED
        feasible = bool(rec.pop("feasible", True))
        acc = rec.pop("accuracy", WORST)
        estimate = rec.pop("estimate", None)
        estimator = rec.pop("estimator", None)
        dup = rec.pop("duplicate_of", None)
        return cls(arch, st, feasible, rec, float(acc) if isinstance(acc, (int, float)) else WORST,
                   dict(estimate) if isinstance(estimate, dict) else None, estimator,
                   int(dup) if isinstance(dup, int) else None)

    @classmethod
    def from_trial(cls, t: FrozenTrial) -> TrialRecord | None:
        """The record of a finished trial; None while it runs, or when it failed before it was recorded
        (an estimator error or a dead worker: see :func:`trial_status`)."""
        attrs = t.user_attrs.get(RECORD_ATTR)
        if not isinstance(attrs, dict):
            return None
        return cls.from_attrs(str(t.user_attrs.get(ARCH_ATTR, "")), attrs)

    # -- views ---------------------------------------------------------------------------------
    @property
    def scored(self) -> bool:
        """Has a finite accuracy from the estimator (evaluated, or a duplicate of an evaluated one)."""
        return self.status in (TrialStatus.EVALUATED, TrialStatus.DUPLICATE) and math.isfinite(self.accuracy)


def trial_arch(t: FrozenTrial) -> str | None:
    """The canonical arch string of a trial, or None before its spec was known."""
    a = t.user_attrs.get(ARCH_ATTR)
    return str(a) if a else None


def trial_status(t: FrozenTrial) -> TrialStatus | None:
    """The status of a finished trial (None while it waits or runs)."""
    if t.state in (TrialState.WAITING, TrialState.RUNNING):
        return None
    rec = TrialRecord.from_trial(t)
    if rec is not None and t.state == TrialState.COMPLETE:
        return rec.status
    return TrialStatus.FAILED if t.state == TrialState.FAIL else (rec.status if rec else None)


def is_abandoned(t: FrozenTrial) -> bool:
    """Its worker died; it was failed and replaced (it does not count towards the trial budget)."""
    return bool(t.system_attrs.get(ABANDONED_ATTR))


def trial_error(t: FrozenTrial) -> str | None:
    e = t.user_attrs.get(ERROR_ATTR)
    return str(e) if e else None
