"""Per-trial overhead of a search (sampling, cost model, latency look-up, storage, bookkeeping), with an
estimator that costs nothing (`params`), so what is timed is edgenas + Optuna, not training.

    cd benchmarks && python search_overhead.py [--trials 1000]

For each storage (journal file = the default, in-memory, SQLite) and sampler it runs the real trial loop
(`edgenas.search.worker.run_worker`: claim an enqueued trial, suggest the spec, cost + latency, set
constraints, record, tell) and, as the baseline, plain Optuna with the same space (`space.suggest` only)
and sampler. Target: <= 20 ms per trial with NSGA-II over 1,000 trials (journal storage).
Writes results/search_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import optuna  # noqa: E402
from common import PARTIAL_BANNER  # noqa: E402

from edgenas.paths import shared_file  # noqa: E402
from edgenas.search import study as st  # noqa: E402
from edgenas.search.benchmark import OFA_RESOLUTIONS, machine  # noqa: E402
from edgenas.search.job import SearchJob  # noqa: E402
from edgenas.search.run import make_sampler, prepare  # noqa: E402
from edgenas.search.worker import StopRule, run_worker  # noqa: E402

RESULTS = HERE / "results"


def storage_for(kind: str, folder: Path) -> tuple[object, str]:
    if kind == "journal":
        url = str(folder / "study.journal")
    elif kind == "sqlite":
        url = f"sqlite:///{folder / 'study.db'}"
    else:
        return optuna.storages.InMemoryStorage(), "memory"
    return st.open_storage(url), url


def edgenas_loop(cfg: dict, kind: str, trials: int, devices_dir: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        job = SearchJob(json.loads(json.dumps(cfg)), devices_dir=devices_dir)
        prep = prepare(job, quiet=True)
        storage, _ = storage_for(kind, Path(tmp))
        study, _ = st.create_or_load(storage, "bench", job.directions, job.config, prep["tables"], {},
                                     sampler=make_sampler(job, 0))
        st.enqueue(study, trials)
        t0, c0 = time.perf_counter(), time.process_time()
        run_worker(job, study, StopRule(bounded=True))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        n = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
        assert n == trials, n
    return {"ms_per_trial": 1000 * wall / trials, "wall_s": wall, "cpu_ms_per_trial": 1000 * cpu / trials}


def optuna_loop(cfg: dict, kind: str, trials: int, sampler: str) -> dict:
    from edgenas.spaces import get_space

    space = get_space(cfg["space"]["name"], **cfg["space"].get("options", {}))
    make = {"nsga2": lambda: optuna.samplers.NSGAIISampler(seed=0),
            "tpe": lambda: optuna.samplers.TPESampler(seed=0, multivariate=True, group=True),
            "random": lambda: optuna.samplers.RandomSampler(seed=0)}.get(sampler)
    if make is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        storage, _ = storage_for(kind, Path(tmp))
        study = optuna.create_study(storage=storage, directions=["maximize", "minimize"], sampler=make())
        n_params = []

        def objective(trial: optuna.Trial) -> tuple[float, float]:
            spec = space.suggest(trial)
            n_params.append(len(trial.params))
            return 0.0, float(len(str(spec)))

        t0, c0 = time.perf_counter(), time.process_time()
        study.optimize(objective, n_trials=trials)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"ms_per_trial": 1000 * wall / trials, "wall_s": wall, "cpu_ms_per_trial": 1000 * cpu / trials,
            "params_per_trial": sum(n_params) / len(n_params)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--samplers", default="nsga2,tpe,random-feasible,evolution")
    ap.add_argument("--storages", default="journal,memory,sqlite")
    ap.add_argument("--note", default="", help="measurement conditions (e.g. other jobs sharing the cores)")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    note10 = shared_file("ofa", "note10")
    if note10 is None:
        raise SystemExit("needs OFA's note10 tables (../shared/data/ofa/note10 or $EDGENAS_DATA_DIR)")
    from edgenas.latency.importers import import_published

    devices = tempfile.mkdtemp()
    table = import_published([note10], "ofa", "note10-ofa")
    table.save(Path(devices) / "latency_tables" / "note10-ofa__mbv3.json")
    cfg = {"space": {"name": "mbv3", "options": {"widths": [1.2], "resolutions": OFA_RESOLUTIONS}}, "task": {},
           "devices": [{"name": "note10-ofa"}], "estimator": {"name": "params"},
           "search": {"objectives": ["accuracy", "latency_ms"], "budgets": ["latency_ms<=30"]}}
    rows = []
    for kind in a.storages.split(","):
        for sampler in a.samplers.split(","):
            cfg["search"]["sampler"] = sampler
            ours = edgenas_loop(cfg, kind, a.trials, devices)
            base = optuna_loop(cfg, kind, a.trials, sampler)
            row = {"storage": kind, "sampler": sampler, "trials": a.trials,
                   "edgenas_ms_per_trial": round(ours["ms_per_trial"], 2),
                   "optuna_only_ms_per_trial": round(base["ms_per_trial"], 2) if base else None,
                   "edgenas_cpu_ms_per_trial": round(ours["cpu_ms_per_trial"], 2),
                   "optuna_only_cpu_ms_per_trial": round(base["cpu_ms_per_trial"], 2) if base else None,
                   "params_per_trial": round(base.get("params_per_trial", 0), 1) if base else None}
            row["edgenas_extra_ms"] = (round(row["edgenas_ms_per_trial"] - row["optuna_only_ms_per_trial"], 2)
                                       if base else None)
            rows.append(row)
            print(json.dumps(row), flush=True)
            write(rows, cfg, a, partial=len(rows) < len(a.storages.split(",")) * len(a.samplers.split(",")))
    print("wrote results/search_overhead.json, .md")


def write(rows: list[dict], cfg: dict, a: argparse.Namespace, partial: bool) -> None:
    """Results so far (after every row: an interrupted run keeps what it measured)."""
    RESULTS.mkdir(exist_ok=True)
    info = {"settings": {"space": "mbv3 w1.2, 5 resolutions (note10-ofa table)", "estimator": "params (free)",
                         "objectives": cfg["search"]["objectives"], "budgets": cfg["search"]["budgets"],
                         "trials": a.trials, "seed": 0}, "partial": partial, "conditions": a.note,
            "machine": machine(), "rows": rows}
    (RESULTS / "search_overhead.json").write_text(json.dumps(info, indent=1) + "\n")
    command = "cd benchmarks && python search_overhead.py " + " ".join(sys.argv[1:])
    lines = ["# search_overhead", "", f"Command: `{command}`", ""]
    if partial:
        lines += [PARTIAL_BANNER, ""]
    if a.note:
        lines += [f"Conditions: {a.note}", ""]
    lines += ["Per-trial wall time of the search loop with a free estimator (`params`): sampling, exact cost, "
              "note10 latency look-up, budgets as constraints, trial records, storage. `optuna only` is plain "
              "Optuna on the same space (define-by-run suggest, two constant objectives) and sampler.", "",
              "| storage | sampler | edgenas ms/trial | optuna only ms/trial | edgenas extra ms | "
              "edgenas CPU ms/trial | optuna only CPU ms/trial | params/trial |",
              "|---|---|---|---|---|---|---|---|"]

    def cell(v: object) -> str:
        return "-" if v is None else str(v)

    for r in rows:
        lines.append(f"| {r['storage']} | {r['sampler']} | {r['edgenas_ms_per_trial']} | "
                     f"{cell(r['optuna_only_ms_per_trial'])} | {cell(r['edgenas_extra_ms'])} | "
                     f"{r['edgenas_cpu_ms_per_trial']} | {cell(r['optuna_only_cpu_ms_per_trial'])} | "
                     f"{r['params_per_trial'] or '-'} |")
    lines += ["", "Target: <= 20 ms per trial with NSGA-II over 1,000 trials (journal storage, the default). CPU "
              "ms/trial is the process's CPU time (robust when other jobs share the machine; see the load average "
              "under Machine).", "",
              "## Machine", ""] + [f"- {k}: {v}" for k, v in info["machine"].items()]
    (RESULTS / "search_overhead.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
