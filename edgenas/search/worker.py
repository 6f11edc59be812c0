"""One search worker: claim a trial, evaluate it (budgets first), tell the study; repeat.

Evaluation order in a trial: the sampler's spec -> its canonical string (the ``arch`` user attribute)
-> exact cost and table latency -> every budget as an Optuna constraint. A candidate that breaks a
cheap budget is finished right there with accuracy ``-inf`` and its real costs (samplers learn from
its constraint values): it is never trained or scored and is not an accuracy evaluation. A
candidate already evaluated in this study (any worker) reuses that result. Only then does the
estimator run.
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
from edgenas.search import study as st
from edgenas.search.job import SearchJob
from edgenas.search.samplers.base import ARCH_ATTR, RECORD_ATTR

WORST = float("-inf")
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
            ai = next((i for i, f in enumerate(self.job.objectives) if not f.cheap), None)
            for t in trials:
                rec = t.user_attrs.get(RECORD_ATTR) or {}
                a = t.user_attrs.get(ARCH_ATTR)
                if a and rec.get("status") == "evaluated" and a not in self._known and t.values is not None:
                    acc = t.values[ai] if ai is not None else rec.get("accuracy", WORST)
                    self._known[a] = (t.number, rec.get("estimate") or {}, float(acc))
            self._scanned = len(trials)
        return self._known.get(arch)

    def __call__(self, trial: optuna.Trial) -> list[float]:
        job = self.job
        spec = job.space.suggest(trial)
        arch = str(spec)
        trial.set_user_attr(ARCH_ATTR, arch)
        rec: dict[str, Any] = job.oracle.full_record(spec)
        feasible = job.oracle.feasible(rec)
        for b in job.budgets:
            if b.field.cheap:
                trial.set_constraint(str(b), b.violation(rec[b.field.name]))
        rec["feasible"] = feasible
        accuracy = WORST
        if not feasible:
            rec["status"] = "infeasible"
        elif job.needs_estimator:
            prior = self._lookup(arch)
            if prior is not None:
                rec["status"], rec["duplicate_of"], rec["estimate"] = "duplicate", prior[0], prior[1]
                accuracy = prior[2]
            else:
                est = job.estimator.estimate(spec)
                accuracy = est.score
                rec["estimate"] = {k: v for k, v in est.as_record().items() if k != "arch"}
                rec["estimator"] = job.config["estimator"]["name"]
                rec["status"] = "evaluated" if math.isfinite(accuracy) else "rejected"
                if math.isfinite(accuracy):
                    self._known[arch] = (trial.number, rec["estimate"], accuracy)
        else:
            rec["status"] = "evaluated"
        rec["accuracy"] = accuracy
        for b in job.budgets:
            if not b.field.cheap:  # accuracy budgets: known only now (unknown for infeasible: 0 = not counted)
                v = b.violation(accuracy) if feasible and math.isfinite(accuracy) else (1.0 if feasible else 0.0)
                trial.set_constraint(str(b), v)
        trial.set_user_attr(RECORD_ATTR, rec)
        return [accuracy if not f.cheap else rec[f.name] for f in job.objectives]


def run_worker(
    job: SearchJob, study: optuna.Study, stop: StopRule,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> int:
    """Run trials until ``stop``; returns how many this worker finished. Estimator exceptions fail
    the trial (recorded with the error) and the search goes on; input errors and interrupts stop it
    (the interrupted trial is failed and marked abandoned, so ``--resume`` replaces it)."""
    evaluate = Evaluator(job, study)
    done = 0
    while not stop.expired() and (stop.max_trials is None or done < stop.max_trials):
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
            study._storage.set_trial_system_attr(trial._trial_id, st.ABANDONED_ATTR, True)
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:  # an estimator bug on one spec must not end the search
            trial.set_user_attr("error", f"{exc.__class__.__name__}: {exc}"[:500])
            frozen = study.tell(trial, state=TrialState.FAIL)
        else:
            frozen = study.tell(trial, values)
        done += 1
        if on_trial is not None:
            on_trial(frozen)
    return done
