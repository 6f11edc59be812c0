"""``edgenas search`` / ``worker`` / ``pareto`` / ``samplers``: the multi-objective search journey."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from edgenas.cli.describe import parse_space_options
from edgenas.cli.estimate import parse_estimator_options
from edgenas.errors import EdgenasError

COMMAND_HELP = "multi-objective search under budgets (Optuna): front table, CSV/JSON, PNG, HTML plots"


# -- configuration --------------------------------------------------------------------------------
def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _kv(items: list[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise EdgenasError(f"{what} {item!r} must look like key=value")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def estimator_table(name: str, options: dict[str, Any], keep: float | None, seed: int | None,
                    dataset: str | None, weights: str | None) -> dict[str, Any]:
    """``--estimator`` as an [estimator] table; ``cheap>expensive`` is a filter chain whose ``--est-opt``
    options go to the expensive member (``keep``/``pool``/``reference`` to the filter)."""
    table: dict[str, Any] = {"name": name}
    if ">" in name:
        cheap, _, expensive = (x.strip() for x in name.partition(">"))
        if not cheap or not expensive or ">" in expensive:
            raise EdgenasError(f"--estimator {name!r}: a chain is CHEAP>EXPENSIVE, e.g. synflow>train")
        own = {k: options.pop(k) for k in ("keep", "pool", "reference") if k in options}
        table = {"name": "filter", "options": {"cheap": cheap, "expensive": expensive, **own,
                                               "keep": keep if keep is not None else own.get("keep", 0.25)}}
        if options:
            table["options"]["expensive_options"] = options
    elif options:
        table["options"] = options
    if keep is not None and ">" not in name:
        raise EdgenasError("--keep applies to an estimator chain CHEAP>EXPENSIVE")
    if seed is not None:
        table["seed"] = seed
    if dataset is not None:
        table["dataset"] = dataset
    if weights is not None:
        table["weights"] = weights
    return table


def build_config(args: argparse.Namespace) -> tuple[dict[str, Any], str | None, str | None]:
    """The resolved job config from a TOML file (optional) and flags (flags win), the out folder and
    the devices folder."""
    from edgenas.config import load_config
    from edgenas.search.job import check_search_table

    cfg: dict[str, Any] = {}
    devices_dir = None
    if args.config:
        raw = load_config(args.config)
        base = Path(args.config).parent
        cfg["space"] = {"name": raw["space"]["name"], "options": dict(raw["space"].get("options", {}))}
        cfg["task"] = dict(raw.get("task", {}))
        dev = raw.get("device", {})
        devices_dir = dev.get("devices_dir")
        names = list(dev.get("names", [])) + ([dev["name"]] if "name" in dev else [])
        cfg["devices"] = [{"name": n} for n in names]
        if "latency_csv" in dev:
            col = dev.get("latency_column")
            if not col:
                raise EdgenasError(f"config {Path(args.config).name}: [device] latency_csv needs latency_column")
            cfg["devices"].append({"name": col, "csv": dev["latency_csv"], "column": col})
        if "estimator" in raw:
            est = dict(raw["estimator"])
            from edgenas.datasets import BUILTIN_DATASETS

            for key in ("dataset", "weights"):
                v = est.get(key)
                if isinstance(v, str) and v.split(":")[0] not in BUILTIN_DATASETS and not Path(v).is_absolute():
                    est[key] = str((base / v).resolve())
            cfg["estimator"] = est
        cfg["search"] = dict(raw.get("search", {}))
        check_search_table(cfg["search"], f"config {Path(args.config).name}: [search]")
    elif not args.space:
        raise EdgenasError("give a TOML config (edgenas search CONFIG.toml) or --space")
    if args.space:
        cfg["space"] = {"name": args.space, "options": parse_space_options(args.space_opt)}
    elif args.space_opt:
        cfg["space"]["options"].update(parse_space_options(args.space_opt))
    task = cfg.setdefault("task", {})
    for flag, key in (("classes", "num_classes"), ("in_channels", "in_channels"), ("resolution", "resolution")):
        v = getattr(args, flag)
        if v is not None:
            if v <= 0:
                raise EdgenasError(f"--{flag.replace('_', '-')} must be positive, got {v}")
            task[key] = v
    if args.device:
        cfg["devices"] = [{"name": n} for n in _split(args.device)]
    if args.latency_csv:
        if not args.latency_column:
            raise EdgenasError("--latency-csv needs --latency-column (the column of milliseconds)")
        cfg.setdefault("devices", []).append({"name": args.latency_column, "csv": str(Path(args.latency_csv)),
                                              "column": args.latency_column})
    cfg.setdefault("devices", [])
    if args.estimator:
        cfg["estimator"] = estimator_table(args.estimator, parse_estimator_options(args.est_opt), args.keep,
                                           args.est_seed, args.dataset, args.weights)
    elif args.est_opt or args.keep is not None:
        raise EdgenasError("--est-opt/--keep need --estimator")
    s = cfg.setdefault("search", {})
    if args.objectives:
        s["objectives"] = _split(args.objectives)
    if args.budget:
        s["budgets"] = list(args.budget)
    for flag in ("sampler", "seed", "trials", "timeout", "workers", "storage", "study", "precision"):
        v = getattr(args, flag)
        if v is not None:
            s[flag] = v
    if args.sampler_opt:
        s["sampler_options"] = {**s.get("sampler_options", {}), **_kv(args.sampler_opt, "--sampler-opt")}
    if args.reference:
        s["reference"] = {**s.get("reference", {}), **_kv(args.reference, "--reference")}
    out = args.out or s.get("out")
    s.pop("out", None)
    return cfg, out, args.devices_dir or devices_dir


def cmd_search(args: argparse.Namespace) -> int:
    from edgenas.search.run import print_front, run_search
    from edgenas.search.samplers import sampler_entry

    if args.resume:
        run_dir = Path(args.resume)
        from edgenas.search.job import load_job_config

        if not (run_dir / "config.json").is_file():
            raise EdgenasError(f"{str(run_dir)!r} holds no search to resume (no config.json)")
        cfg = load_job_config(run_dir / "config.json")
        s = cfg.setdefault("search", {})
        for flag in ("trials", "timeout", "workers"):
            v = getattr(args, flag)
            if v is not None:
                s[flag] = v
        devices_dir = args.devices_dir
    else:
        cfg, out, devices_dir = build_config(args)
        sampler_entry(cfg["search"].get("sampler", "nsga2"))  # unknown sampler: fail before any work
        run_dir = Path(out or f"runs/{cfg['space']['name']}-{time.strftime('%Y%m%d-%H%M%S')}")
    _quiet_third_party(args.verbose)
    result = run_search(cfg, run_dir, resume=bool(args.resume), quiet=args.quiet, progress=not args.no_progress,
                        devices_dir=devices_dir, command=["edgenas", *sys.argv[1:]])
    from edgenas.search.job import SearchJob

    job = SearchJob(result.study.user_attrs["edgenas:config"], devices_dir=devices_dir)
    print(print_front(result.front, job.objectives, result.state, _estimator_label(job.config), job.budgets))
    print(f"\nrun folder: {run_dir}  (front.csv, front.json, pareto.png, plots/*.html, run.json; "
          f"{result.wall_s:.0f} s)")
    print(f"re-print: edgenas pareto {run_dir}    dashboard: optuna-dashboard {run_dir / 'study.journal'}"
          if not cfg.get("search", {}).get("storage") else f"re-print: edgenas pareto {run_dir}")
    args.finished_run_dir = run_dir
    return 0


def search_from_config(path: str) -> tuple[int, Path]:
    """``edgenas run CONFIG`` with a [search] table: the same as ``edgenas search CONFIG``; returns the
    exit code and the run folder."""
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    args = parser.parse_args([path])
    rc = cmd_search(args)
    return rc, args.finished_run_dir


def cmd_worker(args: argparse.Namespace) -> int:
    import optuna

    from edgenas.search import study as st
    from edgenas.search.job import SearchJob
    from edgenas.search.run import make_sampler, worker_seed
    from edgenas.search.worker import StopRule, run_worker

    _quiet_third_party(args.verbose)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    storage = st.open_storage(args.storage)
    try:
        study = optuna.load_study(study_name=args.study, storage=storage)
    except KeyError:
        raise EdgenasError(f"no study named {args.study!r} in {args.storage}") from None
    cfg = st.load_config(study)
    job = SearchJob(cfg, devices_dir=args.devices_dir)
    job.use_tables(study.user_attrs.get(st.TABLES_ATTR) or {})
    meta = st.study_meta(study)
    first = (meta.get("prepare") or {}).get("first_feasible")
    seed = args.seed if args.seed is not None else worker_seed(int(job.search.get("seed", 0)), args.worker_index + 1)
    study.sampler = make_sampler(job, seed, [job.space.parse(first)] if first else [])
    bounded = meta.get("trials") is not None
    n = run_worker(job, study, StopRule(bounded=bounded, timeout_s=args.timeout, max_trials=args.max_trials))
    if not args.quiet:
        print(f"worker {st.worker_id()}: finished {n} trial(s)")
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    import optuna

    from edgenas.search import study as st
    from edgenas.search.front import front_rows, read_state
    from edgenas.search.job import SearchJob
    from edgenas.search.outputs import write_run_files
    from edgenas.search.run import DEFAULT_STUDY, print_front

    run_dir = Path(args.run_dir) if args.run_dir else None
    info: dict[str, Any] = {}
    if run_dir is not None:
        if not (run_dir / "run.json").exists() and not (run_dir / "config.json").exists():
            raise EdgenasError(f"{str(run_dir)!r} is not a search run folder (no run.json)")
        if (run_dir / "run.json").exists():
            info = json.loads((run_dir / "run.json").read_text())
    url = args.storage or info.get("storage") or (str(run_dir / "study.journal") if run_dir else None)
    if url is None:
        raise EdgenasError("give a run folder or --storage URL --study NAME")
    name = args.study or info.get("study") or DEFAULT_STUDY
    try:
        study = optuna.load_study(study_name=name, storage=st.open_storage(url))
    except KeyError:
        raise EdgenasError(f"no study named {name!r} in {url}") from None
    job = SearchJob(st.load_config(study), devices_dir=None)
    state, trials = read_state(study, job.objectives, job.budgets, job.search.get("reference") or {})
    label = _estimator_label(job.config)
    front = front_rows(trials, state)
    out = Path(args.out) if args.out else run_dir
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        info = {**info, "storage": url, "study": name}
        write_run_files(out, study, trials, state, info, plots=not args.no_plots)
    if args.json:
        print(json.dumps(front, indent=1, default=str))
    else:
        print(print_front(front, job.objectives, state, label, job.budgets))
        if out is not None:
            plots = "" if args.no_plots else ", pareto.png, plots/"
            print(f"\nwrote {out}/front.csv, front.json, trials.csv, run.json{plots}")
    return 0


def cmd_samplers(args: argparse.Namespace) -> int:
    from edgenas.search.samplers import sampler_entry, sampler_names, sampler_options

    for name in sampler_names():
        e = sampler_entry(name)
        opts = sampler_options(name)
        print(f"{name}: {e.summary}" + (" [edgenas]" if e.ours else " [optuna]"))
        if opts:
            print("  options: " + ", ".join(f"{k}={v!r}" for k, v in opts.items()))
    return 0


def _estimator_label(cfg: dict[str, Any]) -> str:
    est = cfg.get("estimator") or {}
    if est.get("name") == "filter":
        o = est.get("options", {})
        return f"{o.get('cheap', 'synflow')}>{o.get('expensive', 'train')} (keep {o.get('keep', 0.25)})"
    return str(est.get("name", ""))


def _quiet_third_party(verbose: bool) -> None:
    """Optuna logs every trial at INFO and warns on experimental features: shown with -v only."""
    import logging
    import warnings

    import optuna

    if not verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message=".*Clip non-finite values.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
        logging.getLogger("optuna").setLevel(logging.WARNING)


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="TOML job config with [space], [task], [device], [estimator], [search]")
    g = p.add_argument_group("what to search")
    g.add_argument("--space", help="search space (tiny, mbv3, nb201, fbnet, proxyless)")
    g.add_argument("--space-opt", action="append", metavar="KEY=VALUE", help="space option (repeatable)")
    g.add_argument("--classes", type=int, help="output classes")
    g.add_argument("--in-channels", type=int, help="input channels")
    g.add_argument("--resolution", type=int, help="input resolution (nb201, fbnet)")
    g.add_argument("--device", action="append", metavar="NAME",
                   help="device(s) whose latency tables give latency_ms (repeatable or comma list; several devices "
                        "give latency_ms@NAME fields)")
    g.add_argument("--latency-csv", metavar="FILE", help="measured whole-network latencies (ms) instead of a device")
    g.add_argument("--latency-column", metavar="C", help="column of --latency-csv (also the device's name)")
    g.add_argument("--devices-dir", metavar="DIR", help="user folder of devices and tables (default ~/.edgenas)")
    g = p.add_argument_group("accuracy")
    g.add_argument("--estimator", help="estimator (synflow, train, ...) or a chain CHEAP>EXPENSIVE, e.g. synflow>train")
    g.add_argument("--est-opt", action="append", metavar="KEY=VALUE", help="estimator option (repeatable)")
    g.add_argument("--keep", type=float, help="fraction a chain's cheap estimator passes on (default 0.25)")
    g.add_argument("--est-seed", type=int, help="estimator seed")
    g.add_argument("--dataset", help="dataset for estimators that train (digits, synthetic, a folder, a .npz)")
    g.add_argument("--weights", help="weights of an external predictor (ofa-predictor)")
    g = p.add_argument_group("objectives and budgets")
    g.add_argument("--objectives", action="append", metavar="F,F,...",
                   help="one or more of accuracy, latency_ms, macs, params, peak_ram_bytes, size_bytes "
                        "(default accuracy,latency_ms)")
    g.add_argument("--budget", action="append", metavar="FIELD<=VALUE",
                   help="hard budget, e.g. latency_ms<=2.5, peak_ram_bytes<=64KiB, macs<=30M (repeatable)")
    g.add_argument("--precision", choices=["int8", "fp32"], help="what peak_ram_bytes/size_bytes mean (default int8)")
    g.add_argument("--reference", action="append", metavar="FIELD=VALUE",
                   help="hypervolume reference value of a field (default: budget, else worst seen)")
    g = p.add_argument_group("how to search")
    g.add_argument("--sampler", help="nsga2 (default), tpe, gp, random, frontier, evolution, random-feasible "
                                     "(see 'edgenas samplers')")
    g.add_argument("--sampler-opt", action="append", metavar="KEY=VALUE", help="sampler option (repeatable)")
    g.add_argument("--seed", type=int, help="sampler seed (default 0)")
    g.add_argument("--trials", type=int, help="number of trials (exact, shared by all workers)")
    g.add_argument("--timeout", type=float, help="stop after this many seconds")
    g.add_argument("--workers", type=int, help="worker processes on this machine (default 1)")
    g.add_argument("--storage", help="Optuna storage URL (default: a journal file in the run folder)")
    g.add_argument("--study", help="study name (default 'edgenas')")
    p.add_argument("--out", help="run folder (default runs/<space>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the search in RUN_DIR (its config and study)")
    p.add_argument("--no-progress", action="store_true", help="no live progress bar")
    p.add_argument("-q", "--quiet", action="store_true", help="only the front table")
    p.add_argument("-v", "--verbose", action="store_true", help="show Optuna's and other libraries' logs")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help=COMMAND_HELP)
    add_search_arguments(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("worker", help="join a search through its storage (PostgreSQL for several machines)")
    p.add_argument("--storage", required=True, help="the search's Optuna storage URL (or journal file)")
    p.add_argument("--study", default="edgenas", help="study name (default 'edgenas')")
    p.add_argument("--timeout", type=float, help="stop after this many seconds")
    p.add_argument("--max-trials", type=int, help="stop after this many trials (runs without --trials)")
    p.add_argument("--seed", type=int, help="sampler seed (default: derived from the run's seed and --worker-index)")
    p.add_argument("--worker-index", type=int, default=0, help="distinguishes workers' sampler seeds")
    p.add_argument("--threads", type=int, help="torch threads for training estimators")
    p.add_argument("--devices-dir", metavar="DIR", help="user folder of device specs")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("pareto", help="re-print (and re-write) a search's Pareto front")
    p.add_argument("run_dir", nargs="?", help="a search run folder")
    p.add_argument("--storage", help="storage URL (instead of, or overriding, the run folder's)")
    p.add_argument("--study", help="study name")
    p.add_argument("--out", help="write the front files here (default: the run folder)")
    p.add_argument("--json", action="store_true", help="print the front as JSON")
    p.add_argument("--no-plots", action="store_true", help="skip pareto.png and the HTML plots")
    p.set_defaults(func=cmd_pareto)

    p = sub.add_parser("samplers", help="list the search samplers and their options")
    p.set_defaults(func=cmd_samplers)
