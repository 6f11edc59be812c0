"""``edgenas benchmark``: the NAS best-practice checklist as one command.

Every method runs through the same trial objective as a real search (:class:`~edgenas.search.worker.
Evaluator`: budgets first, duplicates reused, only feasible new candidates evaluated), in an
in-memory Optuna study, with the same space, data, evaluation budgets and seeds. An *evaluation* is
one accuracy query of a new candidate: infeasible proposals and repeats are free, as in a real
search, and a method that keeps proposing them is stopped after ``MAX_TRIALS_FACTOR`` x the largest
budget trials. Each run goes to the largest budget once; the smaller budgets are its prefixes.

Tasks:

* ``nb201`` (tabular): NAS-Bench-201 accuracy and measured latency from CSV tables. Quality after k
  evaluations = HV(found) / HV(true front of the whole table) on (error %, latency ms), reference
  point = (median error, median latency) of the table. The latency half of the reference is the task's
  region of interest and is free (latency is known for every cell); it is given to every method's
  context. The error half is not given to any method.
* ``ofa``: ``mbv3`` w1.2 at OFA's five note10 resolutions, OFA's accuracy predictor, OFA's note10
  latency table, one objective (accuracy) under ``latency_ms <= budget``. Quality = best predicted
  accuracy found within k queries.
* ``nb201-proxy`` (the zero-cost variant): search on (synflow, latency) with no table accuracy, then
  score the found front with the table.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from edgenas.errors import EdgenasError
from edgenas.latency.lookup import read_arch_table
from edgenas.paths import DATA_ENV, shared_file
from edgenas.search.job import SearchJob
from edgenas.search.meter import process_meter
from edgenas.search.pareto import hypervolume
from edgenas.search.record import TrialRecord
from edgenas.search.run import make_sampler
from edgenas.search.worker import Evaluator

MAX_TRIALS_FACTOR = 20
NB201_METHODS = ("random", "random-roi", "nsga2", "tpe", "evolution", "frontier", "rl")
OFA_METHODS = ("random-feasible", "nsga2", "tpe", "evolution", "frontier", "rl")


@dataclass
class Method:
    """A benchmark contender: a registered sampler plus options (``random-roi`` is
    ``random-feasible`` restricted to the task's region of interest)."""

    name: str
    sampler: str
    options: dict[str, Any] = field(default_factory=dict)


def method(name: str) -> Method:
    if name == "random-roi":
        return Method(name, "random-feasible", {"roi": True})
    from edgenas.search.samplers import sampler_entry

    sampler_entry(name)
    return Method(name, name)


@dataclass
class RunTrace:
    """One method x seed run: after each evaluation, the wall time and the quality so far."""

    method: str
    seed: int
    times_s: list[float] = field(default_factory=list)
    """Wall seconds since the run started, after each evaluation."""
    cpu_s: list[float] = field(default_factory=list)
    """CPU seconds of this process since the run started (what the method itself cost: unlike wall
    time, not inflated when other jobs share the machine)."""
    quality: list[float] = field(default_factory=list)
    energy_j: list[float] = field(default_factory=list)
    """Joules the machine's energy meter counted since the run started, after each evaluation (the whole
    machine: see ``machine()["energy_scope"]``); empty where there is no meter (``energy_meter`` says why)."""
    trials: int = 0
    archs: list[str] = field(default_factory=list)

    def at(self, evaluations: int) -> float | None:
        if evaluations > len(self.quality) or evaluations < 1:
            return None
        return self.quality[evaluations - 1]


def run_method(
    config: dict[str, Any], m: Method, seed: int, max_evaluations: int,
    quality: Callable[[list[str], list[float]], float], context_reference: dict[str, float] | None = None,
    tables: dict[str, Any] | None = None, every: int = 1, progress: Callable[[str], None] | None = None,
) -> RunTrace:
    """Run one method to ``max_evaluations`` evaluations; ``quality(archs, accuracies)`` scores the
    evaluated set (called after every ``every``-th evaluation and at budget points)."""
    cfg = {**config, "search": {**config["search"], "sampler": m.sampler, "sampler_options": dict(m.options),
                                "reference": dict(context_reference or {}), "seed": seed}}
    job = SearchJob(cfg)
    job.use_tables(tables or {})
    sampler = make_sampler(job, seed)
    study = optuna.create_study(directions=job.directions, sampler=sampler)
    evaluate = Evaluator(job, study)
    trace = RunTrace(m.name, seed)
    accs: list[float] = []
    t0 = time.perf_counter()
    c0 = time.process_time()
    meter = process_meter()
    e0 = meter.mark()
    last_q = 0.0
    while len(trace.archs) < max_evaluations and trace.trials < MAX_TRIALS_FACTOR * max_evaluations:
        trial = study.ask()
        values = evaluate(trial)
        frozen = study.tell(trial, values)
        trace.trials += 1
        rec = TrialRecord.from_trial(frozen)
        if rec is None or not rec.status.queried_estimator:
            continue
        trace.archs.append(rec.arch)
        accs.append(rec.accuracy)
        n = len(trace.archs)
        t = time.perf_counter() - t0
        if n % every == 0 or n == max_evaluations:
            last_q = quality(trace.archs, accs)
        trace.times_s.append(t)
        trace.cpu_s.append(time.process_time() - c0)
        trace.quality.append(last_q)
        energy = meter.since(e0).energy_j if meter.has_energy else None
        if energy is not None and len(trace.energy_j) == n - 1:  # a meter that failed stops the series
            trace.energy_j.append(energy)
    if progress:
        secs = trace.times_s[-1] if trace.times_s else 0.0
        q = trace.quality[-1] if trace.quality else 0.0
        cpu = trace.cpu_s[-1] if trace.cpu_s else 0.0
        joules = f", {trace.energy_j[-1]:.1f} J" if trace.energy_j else ""
        progress(f"{m.name} seed {seed}: {len(trace.archs)} evaluations in {trace.trials} trials, "
                 f"{secs:.1f} s wall, {cpu:.1f} s CPU{joules}, quality {q:.4f}")
    return trace


# -- task: nb201 --------------------------------------------------------------------------------
@dataclass
class NB201Task:
    accuracy_csv: str
    accuracy_column: str
    latency_csv: str
    latency_column: str

    def __post_init__(self) -> None:
        from edgenas.spaces import get_space

        self.space = get_space("nb201")
        acc = read_arch_table(self.accuracy_csv, self.space, self.accuracy_column)
        lat = read_arch_table(self.latency_csv, self.space, self.latency_column)
        self.archs = sorted(set(acc) & set(lat))
        if len(self.archs) < 100:
            raise EdgenasError(f"only {len(self.archs)} cells are in both tables; join them on index or arch_str")
        self.error = {a: 100.0 - acc[a] if acc[a] <= 100.0 else math.nan for a in self.archs}
        if max(acc[a] for a in self.archs) <= 1.0:  # accuracies given as fractions
            self.error = {a: 100.0 * (1.0 - acc[a]) for a in self.archs}
        self.latency = {a: lat[a] for a in self.archs}
        E = np.array([self.error[a] for a in self.archs])
        L = np.array([self.latency[a] for a in self.archs])
        self.reference = np.array([float(np.median(E)), float(np.median(L))])
        self.true_hv = float(hypervolume(np.column_stack([E, L]), self.reference))
        self.front_size = 0

    def config(self, estimator: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "space": {"name": "nb201", "options": {}},
            "task": {},
            "devices": [{"name": self.latency_column, "csv": self.latency_csv, "column": self.latency_column}],
            "estimator": estimator or {"name": "tabular", "options": {"path": self.accuracy_csv,
                                                                        "column": self.accuracy_column}},
            "search": {"objectives": ["accuracy", "latency_ms"]},
        }

    def hv_ratio(self, archs: Sequence[str], _accs: Sequence[float] | None = None) -> float:
        if not archs:
            return 0.0
        P = np.array([[self.error[a], self.latency[a]] for a in archs])
        return hypervolume(P, self.reference) / self.true_hv

    @property
    def roi(self) -> dict[str, float]:
        return {"latency_ms": float(self.reference[1])}


def default_nb201_paths() -> tuple[str, str]:
    acc = shared_file("nb201", "nb201_cifar10.csv")
    lat = shared_file("latency", "nb201_latency_dev.csv")
    if acc is None or lat is None:
        raise EdgenasError(f"the nb201 task needs NAS-Bench-201 tables: pass --accuracy-csv/--latency-csv or set "
                           f"{DATA_ENV} to the shared data folder")
    return str(acc), str(lat)


# -- task: ofa ----------------------------------------------------------------------------------
OFA_RESOLUTIONS = [160, 176, 192, 208, 224]


@dataclass
class OFATask:
    weights: str
    note10: str
    budget_ms: float = 30.0

    def __post_init__(self) -> None:
        from edgenas.latency.importers import import_published

        self.table = import_published([Path(self.note10)], "ofa", "note10-ofa").to_json()

    def config(self) -> dict[str, Any]:
        return {
            "space": {"name": "mbv3", "options": {"widths": [1.2], "resolutions": OFA_RESOLUTIONS}},
            "task": {},
            "devices": [{"name": "note10-ofa"}],
            "estimator": {"name": "ofa-predictor", "weights": self.weights},
            "search": {"objectives": ["accuracy"], "budgets": [f"latency_ms<={self.budget_ms:g}"]},
        }

    @staticmethod
    def best(_archs: Sequence[str], accs: Sequence[float]) -> float:
        finite = [a for a in accs if math.isfinite(a)]
        return max(finite) if finite else 0.0


def default_ofa_paths() -> tuple[str, str]:
    w = shared_file("ofa", "acc_predictor.pth")
    n = shared_file("ofa", "note10")
    if w is None or n is None:
        raise EdgenasError(f"the ofa task needs OFA's acc_predictor.pth and note10 tables: pass --weights/--note10 "
                           f"or set {DATA_ENV} to the shared data folder")
    return str(w), str(n)


# -- summaries ----------------------------------------------------------------------------------
def summarise(traces: list[RunTrace], budgets: Sequence[int]) -> dict[str, dict[int, dict[str, float]]]:
    """Per method and budget: median, quartiles, min, max over seeds (and median wall / CPU seconds, and
    joules where the machine has an energy meter)."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for name in dict.fromkeys(t.method for t in traces):
        runs = [t for t in traces if t.method == name]
        out[name] = {}
        for b in budgets:
            vals = [v for v in (t.at(b) for t in runs) if v is not None]
            secs = [t.times_s[b - 1] for t in runs if len(t.times_s) >= b]
            cpu = [t.cpu_s[b - 1] for t in runs if len(t.cpu_s) >= b]
            energy = [t.energy_j[b - 1] for t in runs if len(t.energy_j) >= b]
            if not vals:
                continue
            q1, q3 = np.quantile(vals, [0.25, 0.75])
            out[name][b] = {"median": statistics.median(vals), "q1": float(q1), "q3": float(q3), "min": min(vals),
                            "max": max(vals), "n": len(vals), "seconds": statistics.median(secs) if secs else math.nan,
                            "cpu_seconds": statistics.median(cpu) if cpu else math.nan}
            if energy:
                out[name][b]["energy_j"] = statistics.median(energy)
    return out


def records(traces: list[RunTrace], budgets: Sequence[int], key: str) -> list[dict[str, Any]]:
    return [{"method": t.method, "seed": t.seed, "evaluations": b, key: t.at(b)}
            for t in traces for b in budgets if t.at(b) is not None]


def machine() -> dict[str, Any]:
    import os

    from edgenas.latency.table import host_info
    from edgenas.search.outputs import versions

    host = host_info()
    return {"cpu": host["cpu"], "cores": host["cores"], "versions": versions(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "load_average_1_5_15min": [round(v, 2) for v in os.getloadavg()], **process_meter().describe()}


def _proxy_front_ratio(self: NB201Task, archs: Sequence[str], proxy: Sequence[float]) -> float:
    """The front found on (proxy score, latency), scored with the table's errors."""
    from edgenas.search.pareto import nondominated

    ok = [(a, p) for a, p in zip(archs, proxy) if math.isfinite(p)]
    if not ok:
        return 0.0
    P = np.array([[-p, self.latency[a]] for a, p in ok])
    front = [a for (a, _), m in zip(ok, nondominated(P)) if m]
    return self.hv_ratio(front)


NB201Task.proxy_front_ratio = _proxy_front_ratio  # type: ignore[attr-defined]


def markdown_table(summary: dict[str, dict[int, dict[str, float]]], budgets: Sequence[int], key: str) -> str:
    digits = 3 if key == "hv_ratio" else 4
    metered = any("energy_j" in s for per in summary.values() for s in per.values())
    head = ("| method | " + " | ".join(f"{b} evals" for b in budgets) + f" | wall s @ {budgets[-1]} | "
            f"CPU s @ {budgets[-1]} |" + (f" energy J @ {budgets[-1]} |" if metered else ""))
    lines = [head, "|---|" + "---|" * (len(budgets) + 2 + metered)]
    for name, per in summary.items():
        cells = []
        for b in budgets:
            s = per.get(b)
            cells.append("-" if s is None else
                         f"{s['median']:.{digits}f} [{s['q1']:.{digits}f}, {s['q3']:.{digits}f}]")
        last = per.get(budgets[-1])
        secs = f"{last['seconds']:.1f}" if last and math.isfinite(last["seconds"]) else "-"
        cpu = f"{last['cpu_seconds']:.1f}" if last and math.isfinite(last.get("cpu_seconds", math.nan)) else "-"
        joules = (f" {last['energy_j']:.1f} |" if last and "energy_j" in last else " - |") if metered else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {secs} | {cpu} |{joules}")
    return "\n".join(lines)


def markdown_report(name: str, settings: dict[str, Any], summary: dict[str, dict[int, dict[str, float]]],
                    budgets: Sequence[int], key: str, mach: dict[str, Any], command: str) -> str:
    what = ("hypervolume ratio HV(found)/HV(true front)" if key == "hv_ratio"
            else "best predicted accuracy (OFA predictor) under the latency budget")
    lines = [f"# {name}", "", f"Command: `{command}`", "",
             f"Quality: {what}; median over seeds [quartiles]; an evaluation is one accuracy query of a new "
             f"candidate that meets the budgets. Time: wall seconds, and CPU seconds of the benchmark process "
             f"(what the method itself cost; wall time is inflated when other jobs share the machine, see the "
             f"load average under Machine). Energy, where the machine has a meter: joules it counted over the run, the "
             f"whole machine's (energy_meter and energy_scope under Machine).", "",
             markdown_table(summary, budgets, key), "",
             f"![{name}]({name}.png)", "", "## Settings", ""]
    for k, v in settings.items():
        lines.append(f"- {k}: {v}")
    lines += ["", "## Machine", ""]
    for k, v in mach.items():
        lines.append(f"- {k}: {v}")
    return "\n".join(lines) + "\n"


def plot(path: Path, traces: list[RunTrace], budgets: Sequence[int], key: str, settings: dict[str, Any]) -> None:
    """Median (and quartile band) of quality against evaluations and against wall time, per method."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgenas.fileio import atomic_write

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in dict.fromkeys(t.method for t in traces):
        runs = [t for t in traces if t.method == name and t.quality]
        if not runs:
            continue
        n = min(len(t.quality) for t in runs)
        Q = np.array([t.quality[:n] for t in runs])
        x = np.arange(1, n + 1)
        line = a1.plot(x, np.median(Q, 0), label=name)[0]
        a1.fill_between(x, *np.quantile(Q, [0.25, 0.75], axis=0), color=line.get_color(), alpha=0.15)
        tmax = max(t.cpu_s[-1] for t in runs)
        grid = np.geomspace(max(1e-3, min(t.cpu_s[0] for t in runs)), max(tmax, 2e-3), 200)
        T = np.array([[t.quality[i] if (i := np.searchsorted(t.cpu_s, g, side="right") - 1) >= 0 else np.nan
                       for g in grid] for t in runs], dtype=float)
        a2.plot(grid, np.nanmedian(T, 0), label=name, color=line.get_color())
    ylabel = "HV(found) / HV(true front)" if key == "hv_ratio" else "best predicted accuracy"
    cpu_label = "search time: CPU seconds of the process (= wall time on an idle core)"
    for ax, xl in ((a1, "accuracy evaluations"), (a2, cpu_label)):
        ax.set_xscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    for b in budgets:
        a1.axvline(b, color="0.8", lw=0.8, zorder=0)
    a1.legend(fontsize=8)
    title = settings.get("task", "")
    if key == "hv_ratio":
        title += f" ({settings.get('accuracy_column')} x {settings.get('latency_column')})"
        a1.set_ylim(bottom=max(0.0, a1.get_ylim()[0]))
    else:
        title += f" (latency <= {settings.get('budget_ms')} ms)"
    fig.suptitle(f"{title}: median over {len(set(t.seed for t in traces))} seeds, quartile band")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
