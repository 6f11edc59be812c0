"""Benchmark: does ``edgenas explain`` rank first the choices an exhaustive analysis ranks first?

NAS-Bench-201 has ground truth: the CIFAR-10 accuracy (200 epochs) and a measured latency (Raspberry Pi 4,
HW-NAS-Bench) of all 15,625 cells. For each sampler and seed a real search runs through the job layer
(space ``nb201``, the ``tabular`` estimator, the measured latencies as the device, objectives accuracy and
latency_ms, TRIALS trials), then ``edgenas explain``'s analysis. The exhaustive answer: for each of the
six edges, the first-order share of the objective's variance over all cells (variance over the edge's
five operations of the mean objective with the edge fixed, over the total variance). Reported per
objective: the exhaustive top choice, whether explain's top choice (by fANOVA on the trials and by the
model share) is the same, and the rank correlation of the six edges' orders.

    cd benchmarks && python explain_nb201.py [--trials 300] [--seeds 0 1 2] [--samplers tpe frontier]

Writes results/explain_nb201.{json,md}; needs ../shared/data (NB201 tables), else exits with the reason.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import write_results  # noqa: E402

LATENCY_COLUMN = "raspi4"


def exhaustive_shares(space: Any, specs: list[Any], y: list[float]) -> dict[str, float]:
    """First-order variance share of each choice over every spec (uniform over the table)."""
    import numpy as np

    params = [space.trial_params(s) for s in specs]
    y_arr = np.asarray(y, dtype=float)
    total = float(np.var(y_arr))
    out = {}
    for name in params[0]:
        groups: dict[Any, list[float]] = {}
        for p, v in zip(params, y_arr):
            groups.setdefault(p[name], []).append(float(v))
        means = np.array([np.mean(g) for g in groups.values()])
        out[name] = float(np.var(means) / total) if total > 0 else 0.0
    return out


def ground_truth(acc_csv: Path, lat_csv: Path) -> tuple[dict[str, dict[str, float]], int]:
    from edgenas.archio import read_arch_column
    from edgenas.latency.lookup import MeasuredLatency
    from edgenas.spaces import get_space

    space = get_space("nb201")
    rows = read_arch_column(str(acc_csv), space, "cifar10_test_200ep", bad="skip")
    specs = [r.spec for r in rows]
    acc = [float(r.value) for r in rows if r.value is not None]
    lat = MeasuredLatency(space, str(lat_csv), LATENCY_COLUMN, LATENCY_COLUMN).predict_many(specs)
    return {"accuracy": exhaustive_shares(space, specs, acc),
            "latency_ms": exhaustive_shares(space, specs, lat)}, len(specs)


def ranking(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=lambda k: -scores[k])


def kendall(a: list[str], b: list[str]) -> float:
    from scipy.stats import kendalltau

    common = [x for x in a if x in b]
    return float(kendalltau([a.index(x) for x in common], [b.index(x) for x in common]).statistic)


def run_one(sampler: str, seed: int, trials: int, acc_csv: Path, lat_csv: Path, work: Path) -> dict[str, Any]:
    from edgenas.explain import ExplainJob, explain_run
    from edgenas.jobs import JobConfig
    from edgenas.search.run import run_search

    cfg = JobConfig.from_dict({
        "space": {"name": "nb201"},
        "device": {"latency_csv": str(lat_csv), "latency_column": LATENCY_COLUMN},
        "estimator": {"name": "tabular", "options": {"path": str(acc_csv), "column": "cifar10_test_200ep"}},
        "search": {"objectives": ["accuracy", "latency_ms"], "sampler": sampler, "trials": trials, "seed": seed},
    })
    run = work / f"{sampler}-{seed}"
    t0 = time.perf_counter()
    run_search(cfg, run, quiet=True, progress=False)
    search_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    expl, _, _ = explain_run(ExplainJob(str(run), seed=seed, plots=False))
    return {"expl": expl, "search_s": search_s, "explain_s": time.perf_counter() - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--samplers", nargs="+", default=["tpe", "frontier"])
    args = ap.parse_args()
    from edgenas.paths import shared_file

    acc_csv, lat_csv = shared_file("nb201", "nb201_cifar10.csv"), shared_file("latency", "nb201_latency_dev.csv")
    if acc_csv is None or lat_csv is None:
        print("explain_nb201: needs ../shared/data/nb201/nb201_cifar10.csv and latency/nb201_latency_dev.csv "
              "(or $EDGENAS_DATA_DIR)", file=sys.stderr)
        return 2
    truth, cells = ground_truth(acc_csv, lat_csv)
    print({k: {c: round(v, 4) for c, v in s.items()} for k, s in truth.items()}, flush=True)
    rows, detail = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for sampler in args.samplers:
            for seed in args.seeds:
                r = run_one(sampler, seed, args.trials, acc_csv, lat_csv, Path(tmp))
                for o in r["expl"].per_objective:
                    name = o.objective.name
                    true_rank = ranking(truth[name])
                    fan = o.ranked("fanova")
                    sh = o.ranked("share")
                    lead = o.ranked()
                    row = {"sampler": sampler, "seed": seed, "objective": name, "trials": o.trials,
                           "truth_top": true_rank[0], "explain_top": lead[0], "by": o.primary,
                           "explain_top_ok": lead[0] == true_rank[0], "explain_tau": round(kendall(true_rank, lead), 3),
                           "fanova_top": fan[0] if fan else None,
                           "share_top": sh[0], "fanova_top_ok": bool(fan) and fan[0] == true_rank[0],
                           "share_top_ok": sh[0] == true_rank[0],
                           "fanova_tau": round(kendall(true_rank, fan), 3) if fan else None,
                           "share_tau": round(kendall(true_rank, sh), 3),
                           "model": o.model, "surrogate_cv_r2": None if o.fit_r2 is None else round(o.fit_r2, 3),
                           "search_s": round(r["search_s"], 1), "explain_s": round(r["explain_s"], 1)}
                    rows.append(row)
                    detail.append({**row, "truth": truth[name], "fanova": {e.choice: e.fanova for e in o.effects},
                                   "share": {e.choice: e.share for e in o.effects}})
                    print(row, flush=True)
    summary = []
    for name in ("accuracy", "latency_ms"):
        rs = [r for r in rows if r["objective"] == name]
        summary.append({"objective": name, "truth_top": ranking(truth[name])[0],
                        "truth_order": " > ".join(ranking(truth[name])),
                        "truth_top_share": round(max(truth[name].values()), 3),
                        "explain_top_ok": f"{sum(r['explain_top_ok'] for r in rs)}/{len(rs)}",
                        "explain_tau_median": statistics.median(r["explain_tau"] for r in rs),
                        "fanova_top_ok": f"{sum(r['fanova_top_ok'] for r in rs)}/{len(rs)}",
                        "share_top_ok": f"{sum(r['share_top_ok'] for r in rs)}/{len(rs)}",
                        "fanova_tau_median": statistics.median(r["fanova_tau"] for r in rs
                                                               if r["fanova_tau"] is not None),
                        "share_tau_median": statistics.median(r["share_tau"] for r in rs)})
    notes = (f"Ground truth: first-order variance shares of the six edges over all {cells:,} cells (accuracy: "
             f"cifar10_test_200ep; latency: the {LATENCY_COLUMN} column of the shared HW-NAS-Bench table). Each run: "
             f"`edgenas search --space nb201 --estimator tabular --latency-csv ... --latency-column {LATENCY_COLUMN} "
             f"--sampler S --seed K --trials {args.trials}`, then `edgenas explain RUN` (64 uniform specs for the "
             "shares). explain_*: the ranking explain leads with: by the share where the objective's model is "
             "exact (cheap objectives such as latency: the table itself), by fANOVA where it is fitted (estimated "
             "objectives such as accuracy). That rule was set after this benchmark's first run, in which the "
             "GP-based share ranked accuracy's top edge second on 2 of the 6 runs (surrogate cross-validated R^2 "
             "0.09-0.33 on trials concentrated near the front); the rule is the principle that an exact model beats "
             "a fitted one and that fANOVA fits the trials' own choices, not a threshold tuned here. "
             "fanova_* / share_*: each view alone. *_top_ok: its first choice is the exhaustive first; tau: "
             "Kendall's tau of the six edges' orders. Latency's shares use the measured table on the 64 sampled "
             "specs (exact values, a sample of the space); fANOVA sees only the trials.")
    write_results("explain_nb201", "explain on NAS-Bench-201 vs the exhaustive analysis", summary,
                  ["objective", "truth_top", "truth_top_share", "truth_order", "explain_top_ok", "explain_tau_median",
                   "fanova_top_ok", "share_top_ok", "fanova_tau_median", "share_tau_median"],
                  {"trials": args.trials, "seeds": args.seeds, "samplers": args.samplers}, notes,
                  packages=("edgenas", "optuna", "scikit-learn", "numpy"),
                  extra_tables={"Runs": (rows, ["sampler", "seed", "objective", "trials", "by", "explain_top",
                                                "explain_top_ok", "fanova_top", "share_top",
                                                "fanova_top_ok", "share_top_ok", "fanova_tau", "share_tau",
                                                "surrogate_cv_r2", "search_s", "explain_s"])})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
