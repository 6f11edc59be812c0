"""One search worker: claim a trial, evaluate it (budgets first), tell the study; repeat.

Evaluation order in a trial: the sampler's spec -> its canonical string (the ``arch`` user attribute)
-> exact cost and table latency -> every budget as an Optuna constraint. A candidate that breaks a
cheap budget is finished right there with accuracy ``-inf`` and its real costs (samplers learn from
its constraint values): it is never trained or scored and is not an accuracy evaluation. A
candidate already evaluated in this study (any worker) reuses that result. Only then does the
estimator run. What each trial cost the machine (CPU, wall, energy: :mod:`edgenas.search.owncost`)
is recorded with it, from the claim to the result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from edgenas.errors import EdgenasError
from edgenas.search import optuna_compat as compat
from edgenas.search import study as st
from edgenas.search.fields import estimated_value
from edgenas.search.job import SearchJob
from edgenas.search.meter import process_meter
from edgenas.search.owncost import set_trial_cost
from edgenas.search.record import ABANDONED_ATTR, ARCH_ATTR, ERROR_ATTR, RECORD_ATTR, TrialRecord, TrialStatus

WAIT_S = 1.0


@dataclass
class StopRule:
    """When a worker stops: no waiting trial left (bounded runs), ``timeout_s`` elapsed, or
    ``max_trials`` run by this worker (unbounded runs)."""

    bounded: bool
    timeout_s: float | None = None
    max_trials: int | None = None
    started: float = field(default_factory=time.monotonic)

    def expired(self) -> bool:
        return self.timeout_s is not None and time.monotonic() - self.started >= self.timeout_s


class Evaluator:
    """The trial objective of a job, with the study-wide result cache that skips duplicates."""

    def __init__(self, job: SearchJob, study: optuna.Study) -> None:
        self.job = job
        self.study = study
        self._known: dict[str, tuple[int, dict[str, Any], float]] = {}
        self._scanned = -1

    def _lookup(self, arch: str) -> tuple[int, dict[str, Any], float] | None:
        if arch in self._known:
            return self._known[arch]
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(trials) != self._scanned:
            ai = next((i for i, f in enumerate(self.job.objectives) if f.base == "accuracy"), None)
            for t in trials:
                rec = TrialRecord.from_trial(t)
                if rec is None or rec.status != TrialStatus.EVALUATED or rec.arch in self._known or t.values is None:
                    continue
                acc = t.values[ai] if ai is not None else rec.accuracy
                self._known[rec.arch] = (t.number, rec.estimate or {}, float(acc))
            self._scanned = len(trials)
        return self._known.get(arch)

    def __call__(self, trial: optuna.Trial) -> list[float]:
        job = self.job
        spec = job.space.suggest(trial)
        arch = str(spec)
        trial.set_user_attr(ARCH_ATTR, arch)
        costs: dict[str, Any] = job.oracle.full_record(spec)
        feasible = job.oracle.feasible(costs)
        for b in job.budgets:
            if b.field.cheap:
                trial.set_constraint(str(b), b.violation(costs[b.field.name]))
        rec = TrialRecord(arch, TrialStatus.INFEASIBLE, feasible, costs)
        if feasible and job.needs_estimator:
            prior = self._lookup(arch)
            if prior is not None:
                rec.status, rec.duplicate_of, rec.estimate, rec.accuracy = TrialStatus.DUPLICATE, *prior
            else:
                assert job.estimator is not None and job.job.estimator is not None
                est = job.estimator.estimate(spec)
                rec.accuracy = est.score
                rec.estimate = {k: v for k, v in est.as_record().items() if k != "arch"}
                rec.estimator = job.job.estimator.name
                rec.status = TrialStatus.EVALUATED if math.isfinite(rec.accuracy) else TrialStatus.REJECTED
                if rec.status == TrialStatus.EVALUATED:
                    self._known[arch] = (trial.number, rec.estimate, rec.accuracy)
        elif feasible:
            rec.status = TrialStatus.EVALUATED
        for b in job.budgets:
            if not b.field.cheap:  # accuracy, trust budgets: known only now (unknown for infeasible: 0 = not counted)
                value = estimated_value(b.field, rec.accuracy, rec.estimate)
                ok = feasible and math.isfinite(value)
                trial.set_constraint(str(b), b.violation(value) if ok else (1.0 if feasible else 0.0))
        trial.set_user_attr(RECORD_ATTR, rec.to_attrs())
        return [costs[f.name] if f.cheap else estimated_value(f, rec.accuracy, rec.estimate) for f in job.objectives]


def run_worker(
    job: SearchJob, study: optuna.Study, stop: StopRule,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> int:
    """Run trials until ``stop``; returns how many this worker finished. Estimator exceptions fail
    the trial (recorded with the error) and the search goes on; input errors and interrupts stop it
    (the interrupted trial is failed and marked abandoned, so ``--resume`` replaces it)."""
    evaluate = Evaluator(job, study)
    meter = process_meter()
    done = 0
    while not stop.expired() and (stop.max_trials is None or done < stop.max_trials):
        start = meter.mark()  # the trial's cost: its claim (the sampler's proposal) to its result
        if stop.bounded:
            st.replace_abandoned(study, bounded=True)
            trial = st.claim(study)
            if trial is None:
                # nothing left to claim; while other workers' trials run, one may turn out abandoned
                # (its worker died) and be replaced: wait for them rather than leave a hole
                if st.running_count(study) == 0:
                    break
                time.sleep(WAIT_S)
                continue
        else:
            trial = st.new_trial(study)
        try:
            with st.heartbeat(study, trial):
                values = evaluate(trial)
        except (KeyboardInterrupt, EdgenasError):
            compat.set_system_attr(study, trial, ABANDONED_ATTR, True)
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:  # an estimator bug on one spec must not end the search
            trial.set_user_attr(ERROR_ATTR, f"{exc.__class__.__name__}: {exc}"[:500])
            set_trial_cost(trial, meter.since(start))
            frozen = study.tell(trial, state=TrialState.FAIL)
        else:
            set_trial_cost(trial, meter.since(start))
            frozen = study.tell(trial, values)
        done += 1
        if on_trial is not None:
            on_trial(frozen)
    return done
