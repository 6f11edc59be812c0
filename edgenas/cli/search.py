"""``edgenas search`` / ``worker`` / ``pareto`` / ``samplers``: the multi-objective search journey.

The flags only build a :class:`~edgenas.jobs.JobConfig` (a job file first, when given, then the flags
over it) and hand it to :func:`edgenas.search.run.run_search`; the printing is here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgenas.cli.common import add_model_arguments, add_torch_device_argument, flag_message, space_options, split_list
from edgenas.errors import EdgenasError
from edgenas.jobs import (
    ConfigError,
    DeviceConfig,
    EstimatorConfig,
    JobConfig,
    SearchConfig,
    SpaceConfig,
    default_run_dir,
)
from edgenas.options import parse_kv

if TYPE_CHECKING:
    from edgenas.search.run import SearchResult

COMMAND_HELP = "multi-objective search under budgets (Optuna): front table, CSV/JSON, PNG, HTML plots"


# -- flags -> job -------------------------------------------------------------------------------------
def job_from_args(args: argparse.Namespace) -> JobConfig:
    """The job of ``edgenas search``: the job file (when given), then every flag over it (flags win)."""
    if args.config:
        cfg = JobConfig.from_toml(args.config)
        cfg = dataclasses.replace(cfg, export=None, describe=None)  # `edgenas run` exports; search searches
    elif args.space:
        cfg = JobConfig(space=SpaceConfig(args.space))
    else:
        raise EdgenasError("give a job file (edgenas search JOB.toml) or --space")
    if cfg.search is None:
        cfg = dataclasses.replace(cfg, search=SearchConfig())
    assert cfg.search is not None
    opts = space_options(args)
    space = None
    if args.space or opts:
        same = not args.space or args.space == cfg.space.name
        space = {"name": args.space, "options": {**(cfg.space.options if same else {}), **opts}}
    device = _device_table(args, cfg.device)
    estimator = _estimator_table(args, cfg.estimator)
    search = {"objectives": split_list(args.objectives), "budgets": list(args.budget) if args.budget else None,
              "sampler": args.sampler, "seed": args.seed, "trials": args.trials, "timeout": args.timeout,
              "workers": args.workers, "storage": args.storage, "study": args.study, "precision": args.precision,
              "out": args.out}
    if args.sampler_opt:
        search["sampler_options"] = {**cfg.search.sampler_options, **parse_kv(args.sampler_opt, "--sampler-opt")}
    if args.reference:
        search["reference"] = {**cfg.search.reference, **parse_kv(args.reference, "--reference")}
    return cfg.with_overrides(space=space, task={"num_classes": args.classes, "in_channels": args.in_channels,
                                                 "resolution": args.resolution},
                              device=device, estimator=estimator, search=search)


def _device_table(args: argparse.Namespace, current: DeviceConfig | None) -> DeviceConfig | None:
    """``--device`` replaces the job file's devices; ``--latency-csv`` adds measured latencies."""
    if not (args.device or args.latency_csv or args.latency_column or args.devices_dir):
        return None
    base = current or DeviceConfig()
    names = split_list(args.device)
    return DeviceConfig(name=None if names is not None else base.name,
                        names=names if names is not None else list(base.names),
                        devices_dir=args.devices_dir or base.devices_dir,
                        latency_csv=args.latency_csv or base.latency_csv,
                        latency_column=args.latency_column or base.latency_column)


def _estimator_table(args: argparse.Namespace, current: EstimatorConfig | None) -> EstimatorConfig | None:
    """``--estimator`` (with ``--est-opt`` / ``--keep``) replaces the job file's estimator; ``--dataset``,
    ``--weights``, ``--est-seed`` and ``--torch-device`` alone change the job file's."""
    given = {"seed": args.est_seed, "dataset": args.dataset, "weights": args.weights,
             "torch_device": args.torch_device}
    given = {k: v for k, v in given.items() if v is not None}
    if args.estimator:
        return EstimatorConfig.chain(args.estimator, parse_kv(args.est_opt, "--est-opt"), args.keep, **given)
    if args.est_opt or args.keep is not None:
        raise EdgenasError("--est-opt/--keep need --estimator")
    if given and current is None:
        raise EdgenasError(f"--{next(iter(given)).replace('_', '-')} needs --estimator (or an [estimator] table)")
    return dataclasses.replace(current, **given) if given and current is not None else None


# -- commands -----------------------------------------------------------------------------------------
def cmd_search(args: argparse.Namespace) -> int:
    from edgenas.logs import quiet_third_party
    from edgenas.search.run import resume_search, run_search

    quiet_third_party(args.verbose)
    command = ["edgenas", *sys.argv[1:]]
    try:
        if args.resume:
            result = resume_search(args.resume, args.trials, args.timeout, args.workers, quiet=args.quiet,
                                   progress=not args.no_progress, devices_dir=args.devices_dir, command=command)
        else:
            cfg = job_from_args(args)
            assert cfg.search is not None
            run_dir = Path(cfg.search.out) if cfg.search.out else default_run_dir(cfg.space.name)
            devices_dir = cfg.device.devices_dir if cfg.device else None
            if cfg.supernet is not None:  # the job file's [supernet]: trained (or reused) first
                from edgenas.search.run import check_new_search
                from edgenas.supernet.run import run_supernet

                check_new_search(cfg, run_dir, devices_dir)
                sn = run_supernet(cfg, progress=not args.no_progress,
                                  say=(lambda m: None) if args.quiet else None)
                cfg = cfg.with_supernet_weights(sn.path)
            result = run_search(cfg, run_dir, quiet=args.quiet, progress=not args.no_progress,
                                devices_dir=devices_dir, command=command)
    except ConfigError as exc:
        raise EdgenasError(flag_message(exc)) from None
    print_search(result)
    return 0


def print_search(result: SearchResult) -> None:
    """The front table and where the run folder is (after ``search`` and ``run``)."""
    from edgenas.search.outputs import front_report
    from edgenas.search.owncost import describe_cost

    job = result.job
    print(front_report(result.front, job.objectives, result.state, job.estimator_label, job.budgets))
    run_dir = result.run_dir
    print(f"\nrun folder: {run_dir}  (front.csv, front.json, pareto.png, plots/*.html, run.json; "
          f"{result.wall_s:.0f} s)")
    print(describe_cost(result.cost))
    print(f"re-print: edgenas pareto {run_dir}    dashboard: optuna-dashboard {run_dir / 'study.journal'}"
          if not job.search.storage else f"re-print: edgenas pareto {run_dir}")


def cmd_worker(args: argparse.Namespace) -> int:
    from edgenas.search.run import WorkerSpec, join_study, worker_id_text

    spec = WorkerSpec(args.storage, args.study, args.worker_index, args.seed, args.timeout, args.max_trials,
                      args.devices_dir, args.threads, args.verbose, args.wait)
    n = join_study(spec)
    if not args.quiet:
        print(f"worker {worker_id_text()}: finished {n} trial(s)")
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    from edgenas.search.outputs import front_report
    from edgenas.search.run import read_front, rewrite_run_files

    if not args.run_dir and not args.storage:
        raise EdgenasError("give a run folder or --storage URL --study NAME")
    view = read_front(args.run_dir, args.storage, args.study)
    out = Path(args.out) if args.out else (Path(args.run_dir) if args.run_dir else None)
    if out is not None:
        rewrite_run_files(view, out, plots=not args.no_plots)
    if args.json:
        print(json.dumps(view.front, indent=1, default=str))
        return 0
    print(front_report(view.front, view.job.objectives, view.state, view.job.estimator_label, view.job.budgets))
    if view.partial:
        print(f"\n(the search has not finished: these are the {view.state.finished} trials done so far)")
    if out is not None:
        plots = "" if args.no_plots else ", pareto.png, plots/"
        print(f"\nwrote {out}/front.csv, front.json, trials.csv, run.json{plots}")
    return 0


def cmd_samplers(args: argparse.Namespace) -> int:
    from edgenas.search.samplers import sampler_entry, sampler_names, sampler_options

    for name in sampler_names():
        e = sampler_entry(name)
        opts = sampler_options(name)
        tag = "[edgenas]" if e.ours and e.origin == "edgenas" else "[optuna]" if e.origin == "edgenas" else \
            f"[plug-in: {e.origin}]"
        print(f"{name}: {e.summary} {tag}")
        if opts:
            print("  options: " + ", ".join(f"{k}={v!r}" for k, v in opts.items()))
    return 0


# -- parsers --------------------------------------------------------------------------------------------
def add_search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="TOML job file with [space], [task], [device], [estimator], [search]")
    g = p.add_argument_group("what to search")
    g.add_argument("--space", help="search space (tiny, mbv3, nb201, fbnet, proxyless; see 'edgenas spaces')")
    g.add_argument("--space-opt", action="append", metavar="KEY=VALUE", help="space option (repeatable)")
    add_model_arguments(g)
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
    add_torch_device_argument(g, "an estimator that trains (--workers N spread over the GPUs)")
    g = p.add_argument_group("objectives and budgets")
    g.add_argument("--objectives", action="append", metavar="F,F,...",
                   help="one or more of accuracy, latency_ms, macs, params, peak_ram_bytes, size_bytes "
                        "(default accuracy,latency_ms)")
    g.add_argument("--budget", action="append", metavar="FIELD<=VALUE",
                   help="hard budget, e.g. latency_ms<=2.5, peak_ram_bytes<=64KiB, macs<=30M (repeatable)")
    g.add_argument("--precision", help="what peak_ram_bytes/size_bytes mean: int8 (default) or fp32")
    g.add_argument("--reference", action="append", metavar="FIELD=VALUE",
                   help="hypervolume reference value of a field (default: budget, else worst seen)")
    g = p.add_argument_group("how to search")
    g.add_argument("--sampler", help="nsga2 (default), tpe, gp, random, frontier, evolution, random-feasible, "
                                     "rl (see 'edgenas samplers')")
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
    p.add_argument("--wait", type=float, metavar="SECONDS",
                   help="wait up to this long for the search to create the study (workers started first)")
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
