"""``edgenas explain RUN_DIR``: which architecture choices drive each objective of a finished search, how,
and which of them trade quality against cost (files in the run folder; see docs/search.md#explain)."""

from __future__ import annotations

import argparse
import sys

COMMAND_HELP = "why a search's front looks the way it does: choice importances, main effects, trade-offs"


def cmd_explain(args: argparse.Namespace) -> int:
    from edgenas.explain import ExplainJob, explain_run
    from edgenas.logs import quiet_third_party

    job = ExplainJob(args.run_dir, out=args.out, samples=args.samples, seed=args.seed, top=args.top,
                     plots=not args.no_plots, storage=args.storage, study=args.study, devices_dir=args.devices_dir)
    quiet_third_party(args.verbose)
    expl, out, written = explain_run(job)
    for o in expl.per_objective:
        ranked = o.effects[:job.top]  # in the objective's primary order
        print(f"{o.objective.name} (by {o.primary}): " + ", ".join(f"{e.choice} (share {e.share:.2f}"
                                                  + (f", fANOVA {e.fanova:.2f})" if e.fanova is not None else ")")
                                                  for e in ranked))
    for t in expl.tradeoffs[:3]:
        print(f"trade-off: {t.choice} ({t.quality} best at {t.best_for_quality}, {t.cost} best at "
              f"{t.best_for_cost}; strength {t.strength:.2f})")
    print(f"wrote {', '.join(str(out / w) for w in written)}", file=sys.stderr)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help=COMMAND_HELP, description=COMMAND_HELP)
    p.add_argument("run_dir", help="a finished search run folder")
    p.add_argument("--out", help="write explain.md/json/png/html here (default: the run folder)")
    p.add_argument("--samples", type=int, default=64,
                   help="uniform specs of the space the main effects average over (default 64)")
    p.add_argument("--top", type=int, default=3, help="main effects drawn per objective (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample, fANOVA's forest and the surrogate")
    p.add_argument("--storage", help="storage URL (instead of, or overriding, the run folder's)")
    p.add_argument("--study", help="study name")
    p.add_argument("--devices-dir", metavar="DIR", help="user folder of device specs")
    p.add_argument("--no-plots", action="store_true", help="only explain.md and explain.json")
    p.add_argument("-v", "--verbose", action="store_true", help="show Optuna's and other libraries' logs")
    p.set_defaults(func=cmd_explain)
