"""Search benchmarks: `edgenas benchmark` on both tasks, results in benchmarks/results/search_*.{json,md,png}.

    cd benchmarks && python search.py            # everything (~2-3 h on 2 idle cores)
    python search.py --only nb201 --seeds 3      # a quicker look
    python search.py --only ofa --resume         # continue an interrupted run (finished runs are kept)

Runs, in order (one at a time, so wall-time curves are not shared with another benchmark):
  search_nb201      NB201 C10 x raspi4: random, random-roi, nsga2, tpe, evolution, frontier, rl; 10 seeds;
                    50/100/300/1000 evaluations; plus the zero-cost variant (frontier on synflow, front
                    scored with the table)
  search_nb201_gp   Optuna's GP sampler, 5 seeds to 300 evaluations (about 10 min a run here)
  search_ofa        mbv3 w1.2 / OFA predictor / note10 <= 30 ms: random-feasible, nsga2, evolution, frontier, rl;
                    5 seeds; 500/1000/2000 queries
  search_ofa_tpe    the same with Optuna's TPE, to 1000 queries (its cost per trial grows with the trials: a
                    run to 2000 had not finished after 20 min here)
Optuna's GP sampler is benchmarked on nb201 only (300 evaluations took about 10 min a run there).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from edgenas.cli.main import main as edgenas  # noqa: E402

RESULTS = HERE / "results"
RESUME = False


def run(args: list[str]) -> None:
    if RESUME:
        args = [*args, "--resume"]
    line = "edgenas " + " ".join(args)
    print(f"\n$ {line}", flush=True)
    rc = edgenas([*args, "--command-line", line])
    if rc:
        raise SystemExit(rc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["nb201", "nb201_gp", "ofa", "ofa_tpe"], action="append")
    ap.add_argument("--seeds", type=int, help="override the seed counts (quick looks; not for committed results)")
    ap.add_argument("--resume", action="store_true", help="keep the runs already in the results files")
    a = ap.parse_args()
    global RESUME
    RESUME = a.resume
    only = set(a.only or ["nb201", "nb201_gp", "ofa", "ofa_tpe"])
    RESULTS.mkdir(exist_ok=True)
    if "nb201" in only:
        run(["benchmark", "nb201", "--methods", "frontier,random,random-roi,nsga2,tpe,evolution,rl",
         "--seeds", str(a.seeds or 10), "--evaluations", "50,100,300,1000",
             "--proxy", "synflow", "--results", str(RESULTS), "--name", "search_nb201"])
    if "nb201_gp" in only:
        run(["benchmark", "nb201", "--methods", "gp", "--seeds", str(a.seeds or 5), "--evaluations", "50,100,300",
             "--results", str(RESULTS), "--name", "search_nb201_gp"])
    if "ofa" in only:
        run(["benchmark", "ofa", "--methods", "frontier,random-feasible,nsga2,evolution,rl",
             "--seeds", str(a.seeds or 5), "--evaluations", "500,1000,2000", "--results", str(RESULTS),
             "--name", "search_ofa"])
    if "ofa_tpe" in only:
        run(["benchmark", "ofa", "--methods", "tpe", "--seeds", str(a.seeds or 5), "--evaluations", "500,1000",
             "--results", str(RESULTS), "--name", "search_ofa_tpe"])


if __name__ == "__main__":
    main()
