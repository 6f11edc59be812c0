"""``edgenas benchmark nb201|ofa``: every method, the same protocol, several seeds, one report."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from edgenas.errors import EdgenasError


def _ints(text: str, what: str) -> list[int]:
    try:
        vals = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise EdgenasError(f"{what} takes a comma list of integers, e.g. 50,100,300,1000") from None
    if not vals or vals[0] < 1:
        raise EdgenasError(f"{what}: need positive integers")
    return vals


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _finished_runs(path: Path, settings: dict[str, Any], trace_cls: Any) -> dict[tuple[str, int], Any]:
    """The runs of an earlier (possibly partial) results file, if its protocol matches this one's."""
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EdgenasError(f"--resume: cannot read {path}: {e}; delete it or drop --resume") from None
    mine = {k: settings[k] for k in ("task", "evaluations", "max_trials_factor")}
    theirs = {k: old.get("settings", {}).get(k) for k in mine}
    if mine != theirs:
        raise EdgenasError(f"--resume: {path} was run with {theirs}, not {mine}; use another --name or drop --resume")
    out = {}
    for t in old.get("traces", []):
        out[(t["method"], int(t["seed"]))] = trace_cls(t["method"], int(t["seed"]), times_s=t["times_s"],
                                                           cpu_s=t.get("cpu_s", []), quality=t["quality"],
                                                           trials=t.get("trials", 0), energy_j=t.get("energy_j", []))
    return out


def cmd_benchmark(args: argparse.Namespace) -> int:
    import optuna

    from edgenas.fileio import atomic_write
    from edgenas.logs import quiet_third_party
    from edgenas.search import benchmark as bm

    quiet_third_party(args.verbose)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    budgets = _ints(args.evaluations or ("50,100,300,1000" if args.task == "nb201" else "500,1000,2000"),
                    "--evaluations")
    if args.seeds < 1:
        raise EdgenasError(f"--seeds must be >= 1, got {args.seeds}")
    default_methods = bm.NB201_METHODS if args.task == "nb201" else bm.OFA_METHODS
    names = [m.strip() for m in (args.methods or ",".join(default_methods)).split(",") if m.strip()]
    methods = [bm.method(n) for n in names]
    outs = [p for p in (args.json, args.results) if p]
    for p in outs:
        parent = Path(p) if p == args.results else Path(p).parent
        if not parent.exists():
            raise EdgenasError(f"output folder {str(parent)!r} does not exist; create it first")
    name = args.name or f"search_{args.task}"
    settings: dict[str, Any] = {"task": args.task, "methods": names, "seeds": list(range(args.seeds)),
                                "evaluations": budgets, "max_trials_factor": bm.MAX_TRIALS_FACTOR}
    traces: list[Any] = []
    proxy_traces: list[Any] = []
    key = "hv_ratio" if args.task == "nb201" else "best_accuracy"
    command = args.command_line or " ".join(["edgenas", *sys.argv[1:]])

    done: dict[tuple[str, int], Any] = {}
    if args.resume:
        if not args.results:
            raise EdgenasError("--resume needs --results DIR (it continues the runs recorded there)")
        done = _finished_runs(Path(args.results) / f"{name}.json", settings, bm.RunTrace)

    def run_or_reuse(label: str, seed: int, *run_args: Any, **run_kwargs: Any) -> Any:
        """The run ``label`` x ``seed`` already in the results file being resumed, else a new
        ``bm.run_method(*run_args, **run_kwargs)``."""
        t = done.get((label, seed))
        if t is not None:
            _say(f"{label} seed {seed}: kept from {Path(args.results) / name}.json")
            return t
        return bm.run_method(*run_args, **run_kwargs)

    def write(final: bool) -> None:
        """Write every output from the runs finished so far (after each run, so an interrupted
        benchmark keeps what it measured; ``partial`` says whether every run is in)."""
        all_traces = traces + proxy_traces
        if not all_traces:
            return
        summary = bm.summarise(all_traces, budgets)
        recs = bm.records(all_traces, budgets, key)
        if args.json:
            atomic_write(Path(args.json), json.dumps(recs, indent=1) + "\n")
        if args.results:
            out = Path(args.results)
            full = {"settings": settings, "partial": not final, "machine": bm.machine(), "summary": summary,
                    "records": recs,
                    "traces": [{"method": t.method, "seed": t.seed, "trials": t.trials, "times_s": t.times_s,
                                "cpu_s": t.cpu_s, "energy_j": t.energy_j, "quality": t.quality}
                               for t in all_traces]}
            atomic_write(out / f"{name}.json", json.dumps(full, indent=1, default=_json_default) + "\n")
            report = bm.markdown_report(name, settings, summary, budgets, key, full["machine"], command)
            if not final:
                report = report.replace("\n", f"\n\n**Partial: {len(all_traces)} runs finished so far.**\n", 1)
            atomic_write(out / f"{name}.md", report)
            bm.plot(out / f"{name}.png", all_traces, budgets, key, settings)
        if final:
            print(bm.markdown_table(summary, budgets, key))
            if args.json:
                _say(f"wrote {len(recs)} records to {args.json}")
            if args.results:
                _say(f"wrote {Path(args.results) / name}.json, .md, .png")

    if args.task == "nb201":
        acc_default, lat_default = bm.default_nb201_paths() if not (args.accuracy_csv and args.latency_csv) \
            else (args.accuracy_csv, args.latency_csv)
        task = bm.NB201Task(args.accuracy_csv or acc_default, args.accuracy_column, args.latency_csv or lat_default,
                            args.latency_column)
        settings.update({"accuracy_csv": task.accuracy_csv, "accuracy_column": task.accuracy_column,
                         "latency_csv": task.latency_csv, "latency_column": task.latency_column,
                         "cells": len(task.archs), "reference_point": {"error_pct": float(task.reference[0]),
                                                                        "latency_ms": float(task.reference[1])},
                         "true_front_hypervolume": task.true_hv,
                         "quality": "HV(found)/HV(true front), (error %, latency ms), reference = table medians"})
        _say(f"nb201: {len(task.archs)} cells; reference (error {task.reference[0]:.3f} %, latency "
             f"{task.reference[1]:.4g} ms); true front HV {task.true_hv:.4g}")
        for m in methods:
            for seed in range(args.seeds):
                traces.append(run_or_reuse(m.name, seed, task.config(), m, seed, budgets[-1], task.hv_ratio,
                                           task.roi, every=args.every, progress=_say))
                write(final=False)
        if args.proxy:
            settings["proxy"] = {"estimator": args.proxy, "method": args.proxy_method,
                                 "quality": "the front found on (proxy score, latency), scored with the table"}
            pm = bm.method(args.proxy_method)
            cfg = task.config({"name": args.proxy})
            pname = f"{args.proxy_method}+{args.proxy}"
            for seed in range(args.seeds):
                t = run_or_reuse(pname, seed, cfg, pm, seed, budgets[-1], task.proxy_front_ratio, task.roi,
                                 every=args.every, progress=_say)
                t.method = pname
                proxy_traces.append(t)
                write(final=False)
    else:
        w_default, n_default = bm.default_ofa_paths() if not (args.weights and args.note10) else (args.weights,
                                                                                                   args.note10)
        task = bm.OFATask(args.weights or w_default, args.note10 or n_default, args.budget_ms)
        settings.update({"weights": task.weights, "note10": task.note10, "budget_ms": task.budget_ms,
                         "space": "mbv3 w1.2, resolutions " + ",".join(map(str, bm.OFA_RESOLUTIONS)),
                         "quality": "best predicted accuracy among the feasible candidates evaluated"})
        for m in methods:
            for seed in range(args.seeds):
                traces.append(run_or_reuse(m.name, seed, task.config(), m, seed, budgets[-1], task.best,
                                           tables={"note10-ofa": task.table}, every=1, progress=_say))
                write(final=False)
    write(final=True)
    return 0


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and math.isnan(o):
        return None
    return str(o)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="compare search methods on a benchmark task (nb201, ofa) over seeds")
    p.add_argument("task", choices=["nb201", "ofa"],
                   help="nb201: tabular accuracy + latency; ofa: OFA predictor + note10")
    p.add_argument("--methods", help="comma list of samplers (default: nb201 random,random-roi,nsga2,tpe,evolution,"
                                     "frontier,rl; ofa random-feasible,nsga2,tpe,evolution,frontier,rl); also gp")
    p.add_argument("--seeds", type=int, default=5, help="seeds per method (default 5)")
    p.add_argument("--evaluations",
                   help="accuracy-evaluation budgets (default nb201 50,100,300,1000; ofa 500,1000,2000)")
    p.add_argument("--every", type=int, default=1, help="score the found set after every N evaluations (nb201)")
    p.add_argument("--json", metavar="OUT", help="write records {method, seed, evaluations, hv_ratio|best_accuracy}")
    p.add_argument("--results", metavar="DIR",
                   help="write <name>.json, .md and .png (settings, machine, seeds, curves)")
    p.add_argument("--name", help="file name stem for --results (default search_<task>)")
    p.add_argument("--resume", action="store_true",
                   help="keep the method x seed runs already in --results/<name>.json (same settings) and run "
                        "only the missing ones")
    p.add_argument("--command-line", help=argparse.SUPPRESS)
    g = p.add_argument_group("nb201")
    g.add_argument("--accuracy-csv", help="accuracy table (default: shared nb201/nb201_cifar10.csv)")
    g.add_argument("--accuracy-column", default="cifar10_test_200ep", help="accuracy column (%% or fraction)")
    g.add_argument("--latency-csv", help="latency table (default: shared latency/nb201_latency_dev.csv)")
    g.add_argument("--latency-column", default="raspi4", help="latency column (ms)")
    g.add_argument("--proxy", help="also run a proxy-only search with this estimator (e.g. synflow) and score its "
                                   "front with the table")
    g.add_argument("--proxy-method", default="frontier", help="sampler of the proxy-only search (default frontier)")
    g = p.add_argument_group("ofa")
    g.add_argument("--weights", help="OFA's acc_predictor.pth (default: shared ofa/acc_predictor.pth)")
    g.add_argument("--note10", help="folder of OFA's note10 LUT YAMLs (default: shared ofa/note10)")
    g.add_argument("--budget-ms", type=float, default=30.0, help="latency budget on note10 (default 30)")
    p.add_argument("-v", "--verbose", action="store_true", help="show third-party logs")
    p.set_defaults(func=cmd_benchmark)
