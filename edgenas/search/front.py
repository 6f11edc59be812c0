"""The result of a search, read back from its study: trial rows, the feasible Pareto front, and its
hypervolume. Used by the live progress line, the run directory's files and ``edgenas pareto``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from edgenas.search.fields import TRUST_FIELDS, Budget, Field, estimated_value, given_reference
from edgenas.search.owncost import trial_cost
from edgenas.search.pareto import hypervolume, nondominated
from edgenas.search.record import TrialRecord, TrialStatus, trial_arch, trial_error, trial_status


def trial_row(t: FrozenTrial, objectives: Sequence[Field]) -> dict[str, Any]:
    """One flat record per trial: number, state, arch, status, objectives, costs, estimator record (its
    trust metrics under their own names)."""
    rec = TrialRecord.from_trial(t)
    status = trial_status(t)
    row: dict[str, Any] = {"trial": t.number, "state": t.state.name.lower(), "arch": trial_arch(t) or "",
                           "status": status.value if status is not None else ""}
    if t.values is not None:
        for f, v in zip(objectives, t.values):
            row[f.name] = v
    if rec is not None:
        attrs = rec.to_attrs()
        est = attrs.pop("estimate", None) or {}
        attrs.pop("status", None)
        row.update({k: v for k, v in attrs.items() if k not in row})
        for k in ("score", "seconds", "epochs", "samples"):
            if k in est:
                row[f"estimate_{k}"] = est[k]
        for k in TRUST_FIELDS:  # the estimate's trust metrics, also when they are not objectives
            if k in est and k not in row:
                row[k] = est[k]
    err = trial_error(t)
    if err:
        row["error"] = err
    row.update({k: v for k, v in (trial_cost(t) or {}).items() if k not in row})  # cpu_s, wall_s, energy_j
    if t.datetime_start and t.datetime_complete:
        row["duration_s"] = (t.datetime_complete - t.datetime_start).total_seconds()
    return row


@dataclass
class FrontState:
    """Feasible, evaluated points so far and their front, in the study's objective order."""

    objectives: list[Field]
    budgets: list[Budget]
    reference: dict[str, float]

    def __post_init__(self) -> None:
        self.finished = 0
        self.feasible = 0
        self.evaluated = 0
        self.rejected = 0
        self.points: list[list[float]] = []
        self.numbers: list[int] = []

    def add(self, t: FrozenTrial) -> None:
        if t.state not in (TrialState.COMPLETE, TrialState.FAIL):
            return
        self.finished += 1
        rec = TrialRecord.from_trial(t)
        if t.state != TrialState.COMPLETE or t.values is None or rec is None:
            return
        if rec.feasible:
            self.feasible += 1
        if rec.status == TrialStatus.EVALUATED:
            self.evaluated += 1
        elif rec.status == TrialStatus.REJECTED:
            self.rejected += 1
        ok = rec.feasible and all(math.isfinite(v) for v in t.values) and all(  # budgets on estimated fields
            b.met(estimated_value(b.field, rec.accuracy, rec.estimate)) for b in self.budgets if not b.field.cheap)
        if ok:
            self.points.append(list(t.values))
            self.numbers.append(t.number)

    @property
    def evaluations(self) -> int:
        """Estimator queries: scored candidates plus those it rejected (filtered out, degenerate)."""
        return self.evaluated + self.rejected

    def minimised(self) -> np.ndarray:
        P = np.array(self.points, dtype=float).reshape(-1, len(self.objectives))
        signs = np.array([-1.0 if f.maximize else 1.0 for f in self.objectives])
        return P * signs

    def front_numbers(self) -> list[int]:
        if not self.points:
            return []
        mask = nondominated(self.minimised())
        return [n for n, m in zip(self.numbers, mask) if m]

    def reference_point(self) -> np.ndarray:
        """Minimisation-form reference: the user's ``reference``, else an upper budget, else the worst
        feasible value seen (so the figure is comparable within a run, not across runs)."""
        P = self.minimised()
        ref = []
        for j, f in enumerate(self.objectives):
            given = given_reference(f, self.budgets, self.reference)
            ref.append(given if given is not None else (float(P[:, j].max()) if len(P) else 0.0))
        return np.array(ref)

    def hypervolume(self) -> float:
        if not self.points:
            return 0.0
        return hypervolume(self.minimised(), self.reference_point())


def read_state(study: optuna.Study, objectives: list[Field], budgets: list[Budget],
               reference: dict[str, float]) -> tuple[FrontState, list[FrozenTrial]]:
    state = FrontState(objectives, budgets, reference)
    trials = study.get_trials(deepcopy=False)
    for t in trials:
        state.add(t)
    return state, trials


def front_rows(trials: Iterable[FrozenTrial], state: FrontState) -> list[dict[str, Any]]:
    """Rows of the front's trials, best accuracy (else first objective) first."""
    wanted = set(state.front_numbers())
    rows = [trial_row(t, state.objectives) for t in trials if t.number in wanted]
    key = next((f for f in state.objectives if not f.cheap), state.objectives[0])
    rows.sort(key=lambda r: (-r[key.name] if key.maximize else r[key.name], r["trial"]))
    return rows
