"""The search's own cost: what each trial and each process of a search cost the machine, and the run's
total (``search_cost`` in run.json, the summary line a search prints). Measured with
:class:`~edgenas.search.meter.Meter`: CPU seconds, wall seconds, and energy where the machine has a meter
(Linux RAPL powercap, NVIDIA NVML), else ``energy_j: null`` with the reason, never an estimate.

* **A trial** (trial user attribute ``search_cost``: ``cpu_s``, ``wall_s``, ``energy_j``): from the moment
  its worker starts claiming it (the sampler's proposal included) until its result is ready, just before
  it is told to the study. Written by the worker that ran it, on any machine.
* **A session**: every ``edgenas search`` process (and each ``--resume``) and every ``edgenas worker``
  records, when it ends, the study user attribute ``edgenas:session:<host>:<pid>:<start ms>``: its wall
  interval, its CPU seconds (its own and its ended child processes': the ``workers = N`` processes it
  started are its children, measured by it, and record no session of their own), the energy over its
  wall time, and the numbers and CPU seconds of the trials it and those children ran.
* **The run** (:func:`run_cost`, over everything in the storage: every trial, session and worker, and
  every earlier session of a resumed run): ``cpu_s`` = the trials' CPU seconds + each session's overhead
  (its CPU seconds outside its trials: latency tables, budget checks, samplers' work after a trial is
  told, storage writes, worker start-up, the run folder); ``wall_s`` = the time during which any session
  or trial ran (the gap between a run and its resume is not counted); ``energy_j`` = the sessions' energy
  (plus that of trials no session covers), null unless every part was metered.

Not counted: a process killed before it recorded its session (SIGKILL, a lost machine) loses its overhead
and its interrupted trial; its finished trials are kept. ``complete`` is false and ``not_counted`` says
so when a finished trial belongs to no recorded session (also while a worker elsewhere still runs). Work
outside the search (a job's supernet training, the export) is not the search's cost, nor is a process's
start before its session (Python and imports; a ``workers = N`` process is counted whole). Energy meters cover
whole devices: every process on the machine is in it, and two sessions on one machine at the same time
count their shared time twice (``not_counted`` names them).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from edgenas.search.meter import Meter, Spent, process_meter
from edgenas.search.record import COST_ATTR, SESSION_ATTR_PREFIX, WORKER_ATTR


def set_trial_cost(trial: optuna.Trial, spent: Spent) -> None:
    """Record what ``trial`` cost (before it is told to the study: a finished trial is read-only)."""
    trial.set_user_attr(COST_ATTR, spent.as_dict())


def trial_cost(t: FrozenTrial) -> dict[str, Any] | None:
    """``{"cpu_s", "wall_s", "energy_j"}`` of a trial, or None when it was not measured (interrupted,
    or run by an edgenas older than this record)."""
    c = t.user_attrs.get(COST_ATTR)
    if isinstance(c, dict) and isinstance(c.get("cpu_s"), (int, float)) and isinstance(c.get("wall_s"), (int, float)):
        return c
    return None


def _start_epoch(t: FrozenTrial) -> float | None:
    return t.datetime_start.timestamp() if t.datetime_start is not None else None


def _covers(host: str, pids: Sequence[int], started: float, ended: float, t: FrozenTrial) -> bool:
    """``t`` was claimed by one of ``pids`` on ``host`` between ``started`` and ``ended`` (asked by a session
    itself, on the clock of the machine that claimed the trial; run totals then go by the trial numbers it
    recorded). The window tells apart two sessions of one process (a search and its resume in one
    Python program)."""
    w = t.system_attrs.get(WORKER_ATTR) or {}
    start = _start_epoch(t)
    return w.get("host") == host and w.get("pid") in pids and start is not None and started <= start <= ended


class Session:
    """One process's part in a search, from its creation to :meth:`finish`."""

    def __init__(self, role: str, meter: Meter | None = None) -> None:
        self.role = role
        self.meter = meter or process_meter()
        self.start = self.meter.mark()
        self.children: list[int] = []
        """pids of the worker processes this one started (``workers = N``): measured as its children."""

    @property
    def key(self) -> str:
        return f"{SESSION_ATTR_PREFIX}{socket.gethostname()}:{os.getpid()}:{int(self.start.time * 1000)}"

    def record(self, study: optuna.Study) -> dict[str, Any]:
        """What this process (and its ended children) spent so far, with the trials they ran."""
        spent = self.meter.since(self.start)
        host, pids, ended = socket.gethostname(), [os.getpid(), *self.children], time.time()
        rec: dict[str, Any] = {"role": self.role, "host": host, "pids": pids, "started": round(self.start.time, 3),
                               "ended": round(ended, 3), **spent.as_dict(), **self.meter.describe()}
        mine = [t for t in study.get_trials(deepcopy=False) if _covers(host, pids, self.start.time, ended, t)]
        rec["trials"] = [t.number for t in mine]  # an interrupted one too: its CPU is in the overhead
        rec["trials_cpu_s"] = round(sum(float(c["cpu_s"]) for t in mine if (c := trial_cost(t)) is not None), 6)
        return rec

    def finish(self, study: optuna.Study) -> dict[str, Any]:
        """Store this session's record in the study (its own key: safe with any number of workers)."""
        rec = self.record(study)
        study.set_user_attr(self.key, rec)
        return rec


def sessions_of(study: optuna.Study) -> list[dict[str, Any]]:
    """Every recorded session of the study, oldest first."""
    out = [v for k, v in study.user_attrs.items() if k.startswith(SESSION_ATTR_PREFIX) and isinstance(v, dict)
           and all(isinstance(v.get(f), (int, float)) for f in ("started", "ended", "cpu_s", "trials_cpu_s"))]
    return sorted(out, key=lambda s: float(s["started"]))


def _union_s(intervals: Sequence[tuple[float, float]]) -> float:
    total, end = 0.0, -float("inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _sum(values: Sequence[Any]) -> float | None:
    """The sum, or None when any part is unmetered (or there is none)."""
    if not values or any(not isinstance(v, (int, float)) for v in values):
        return None
    return round(float(sum(values)), 6)


def run_cost(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None) -> dict[str, Any]:
    """The search's own cost over everything in its storage (see the module docstring)."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    sessions = sessions_of(study)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)]
    measured = [(t, c) for t in finished if (c := trial_cost(t)) is not None]
    covered = {int(n) for s in sessions for n in (s.get("trials") or []) if isinstance(n, int)}
    uncovered = [t for t in finished if t.number not in covered]
    uncovered_ids = {t.number for t in uncovered}
    trial_cpu = sum(float(c["cpu_s"]) for _, c in measured)
    overhead = sum(float(s["cpu_s"]) - float(s["trials_cpu_s"]) for s in sessions)
    intervals = [(float(s["started"]), float(s["ended"])) for s in sessions]
    intervals += [(a, a + float(c["wall_s"])) for t, c in measured
                  if t.number in uncovered_ids and (a := _start_epoch(t)) is not None]
    energy_parts = [s.get("energy_j") for s in sessions]
    energy_parts += [c.get("energy_j") for t, c in measured if t.number in uncovered_ids]
    energy_parts += [None for t in uncovered if trial_cost(t) is None]  # lost with its process
    meters = list(dict.fromkeys(f"{s['host']}: {s.get('energy_meter')}" for s in sessions))
    if len({s.get("energy_meter") for s in sessions}) == 1:
        meters = [str(sessions[0].get("energy_meter"))]
    scopes = list(dict.fromkeys(str(s["energy_scope"]) for s in sessions if s.get("energy_scope")))
    not_counted = []
    if uncovered:
        not_counted.append(f"{len(uncovered)} finished trial(s) ran in processes that recorded no session (killed, "
                           f"still running, or an older edgenas): those processes' overhead is not counted")
    lost = [t for t in finished if trial_cost(t) is None]
    if lost:
        not_counted.append(f"{len(lost)} trial(s) ended before their cost was recorded (interrupted, or an older "
                           f"edgenas): counted only in their process's overhead, when it recorded one")
    for i, a in enumerate(sessions):
        for b in sessions[i + 1:]:
            if a["host"] == b["host"] and a.get("energy_j") is not None and b.get("energy_j") is not None \
                    and float(b["started"]) < float(a["ended"]) and float(a["started"]) < float(b["ended"]):
                not_counted.append(f"sessions {a['pids'][0]} and {b['pids'][0]} on {a['host']} overlapped: each "
                                   f"metered the whole machine, so energy_j counts their shared time twice")
    return {
        "cpu_s": round(trial_cpu + overhead, 6) if sessions or measured else None,
        "wall_s": round(_union_s(intervals), 6) if intervals else None,
        "energy_j": _sum(energy_parts),
        "energy_meter": "; ".join(meters) if meters else "none: no process of this search recorded its meter",
        "energy_scope": "; ".join(scopes) or None,
        "trials": {"measured": len(measured), "cpu_s": round(trial_cpu, 6),
                   "wall_s": round(sum(float(c["wall_s"]) for _, c in measured), 6),
                   "energy_j": _sum([c.get("energy_j") for _, c in measured])},
        "overhead_cpu_s": round(overhead, 6),
        "sessions": [{**s, "trials": len(s.get("trials") or [])} for s in sessions],
        "complete": not uncovered,
        "not_counted": not_counted,
    }


def describe_cost(cost: dict[str, Any]) -> str:
    """One line for people: ``search cost: 14.2 CPU-s (12.0 in 24 trials + 2.2 overhead), 10.3 s wall, ...``."""
    if not cost or cost.get("cpu_s") is None:
        return "search cost: not measured (no trial or process of this search recorded it)"
    t = cost.get("trials") or {}
    line = (f"search cost: {cost['cpu_s']:.1f} CPU-s ({t.get('cpu_s', 0.0):.1f} in {t.get('measured', 0)} trials + "
            f"{cost.get('overhead_cpu_s', 0.0):.1f} overhead), {cost['wall_s']:.1f} s wall, ")
    if cost.get("energy_j") is not None:
        line += f"{cost['energy_j']:.1f} J ({cost['energy_meter']}; whole machine, not only this search)"
    else:
        line += f"energy not measured ({cost.get('energy_meter')})"
    if not cost.get("complete", True) and cost.get("not_counted"):
        line += f"; incomplete: {cost['not_counted'][0]}"
    return line
