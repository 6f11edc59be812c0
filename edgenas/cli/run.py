"""``edgenas run JOB.toml``: run a job file (see :mod:`edgenas.jobs`): a search when it has a [search]
table (then the export of its front when it has an [export] table), else the describe job (cost,
latency and score of a sample)."""

from __future__ import annotations

import argparse
import sys

from edgenas.jobs import JobConfig, run_job


def cmd_run(args: argparse.Namespace) -> int:
    from edgenas.logs import quiet_third_party

    cfg = JobConfig.from_toml(args.config)
    quiet_third_party(args.verbose)
    result = run_job(cfg, quiet=args.quiet, progress=not args.no_progress, verbose=args.verbose,
                     command=["edgenas", *sys.argv[1:]], on_search=_print_search)
    if result.describe is not None:
        from edgenas.report import format_table, write_csv

        d = result.describe
        print(f"space {d.space.name}: {d.space.size():.3g} members; task {d.task}")
        print(format_table(d.records, d.columns))
        desc = cfg.describe
        if desc is not None and desc.csv:
            write_csv(desc.csv, d.records, d.columns)
            print(f"wrote {len(d.records)} records to {desc.csv}")
    if result.export is not None:
        from edgenas.exporters.pipeline import export_report

        print(export_report(result.export))
    return 0 if result.ok else 1


def _print_search(result: object) -> None:
    from edgenas.cli.search import print_search

    print_search(result)  # type: ignore[arg-type]
    print(flush=True)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a TOML job file (e.g. examples/demo.toml)")
    p.add_argument("config", help="path to the TOML job file")
    p.add_argument("--no-progress", action="store_true", help="no live progress bar")
    p.add_argument("-q", "--quiet", action="store_true", help="only the results")
    p.add_argument("-v", "--verbose", action="store_true", help="show third-party libraries' logs")
    p.set_defaults(func=cmd_run)
