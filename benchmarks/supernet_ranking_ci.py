"""Benchmark (analysis): how sure are the supernet benchmark's ranking numbers?

``benchmarks/supernet.py`` scores 50 random ``tiny`` specs per task with each estimator and compares the
scores with the specs' stand-alone accuracy (mean of two training seeds) by Kendall tau. With 50 specs a tau
is itself uncertain, so "the supernet's tau is 0.02 below 2-epoch training's" may or may not be a
difference. This script reads that benchmark's cache (``benchmarks/results/supernet_cache``, filled by
``python benchmarks/supernet.py --jobs 2 [--no-e2e]``) and, per task, resamples the 50 specs with
replacement (paired: every estimator and the ground truth on the same resample) to give each tau a
bootstrap confidence interval and each difference of taus its interval and the share of resamples in
which the supernet ranks at least as well. It trains nothing.

    .venv/bin/python benchmarks/supernet_ranking_ci.py [--resamples 5000] [--seed 0]

Writes ``benchmarks/results/supernet_ranking_ci.{md,json}`` (with every spec's scores, so the analysis can
be redone without the cache).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402
import supernet as sn  # noqa: E402

ESTIMATORS = ("supernet", "train", "synflow")
SANDWICH = "supernet (smallest_prob=1)"
"""The supernet trained with the sandwich rule (the default until 2026-12-08), when its scores are cached."""
LEVEL = 0.90


def _tau(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    t = kendalltau(a, b).statistic
    return float(t) if np.isfinite(t) else 0.0


def task_scores(plan: Any, source: str) -> dict[str, Any]:
    """Per spec: the two seeds' stand-alone accuracies and each estimator's score (specs with all of them)."""
    rows = []
    for arch in plan.specs:
        seeds = [plan.standalone(source, arch, s) for s in sn.SEEDS]
        est = {n: sn._read_json(plan.estimate_path(source, n, arch)) for n in ESTIMATORS}
        sandwich = sn._read_json(plan.estimate_path(source, "supernet", arch, ("", plan.etag))) if plan.ttag else None
        if all(seeds) and all(est.values()):
            rows.append({"arch": arch, **{f"seed{s}": r["accuracy"] for s, r in zip(sn.SEEDS, seeds)},
                         **{n: r["score"] for n, r in est.items()},
                         **({SANDWICH: sandwich["score"]} if sandwich else {})})
    return {"source": source, "specs": rows}


def analyse(rows: list[dict[str, Any]], resamples: int, seed: int) -> dict[str, Any]:
    seeds = [f"seed{s}" for s in sn.SEEDS]
    truth = np.mean([[r[s] for s in seeds] for r in rows], axis=1)
    names = [*ESTIMATORS, *([SANDWICH] if all(SANDWICH in r for r in rows) else [])]
    cols = {n: np.array([r[n] for r in rows]) for n in names}
    s0, s1 = (np.array([r[s] for r in rows]) for s in seeds[:2])
    point = {n: _tau(cols[n], truth) for n in names}
    point["ceiling"] = _tau(s0, s1)
    rng = np.random.default_rng(seed)
    n = len(rows)
    boot = {k: np.empty(resamples) for k in point}
    for i in range(resamples):
        idx = rng.integers(0, n, n)
        for name in names:
            boot[name][i] = _tau(cols[name][idx], truth[idx])
        boot["ceiling"][i] = _tau(s0[idx], s1[idx])
    lo, hi = 100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2

    def ci(x: np.ndarray) -> list[float]:
        return [round(float(np.percentile(x, lo)), 3), round(float(np.percentile(x, hi)), 3)]

    out: dict[str, Any] = {"n": n, "tau": {k: round(v, 4) for k, v in point.items()},
                           "tau_ci": {k: ci(v) for k, v in boot.items()}, "differences": {}}
    for other in [n for n in names if n != "supernet"]:
        d = boot["supernet"] - boot[other]
        out["differences"][f"supernet - {other}"] = {
            "point": round(point["supernet"] - point[other], 4), "ci": ci(d),
            "share_supernet_at_least_as_good": round(float(np.mean(d >= 0)), 3)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resamples", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=sn.CACHE)
    a = ap.parse_args()
    st = sn.Settings(tasks=["digits", sn.HARD], cache=a.cache, e2e=False)
    plan = sn.Plan(st)
    rows, tasks = [], []
    for label, source in plan.sources():
        if source is None:
            continue
        scores = task_scores(plan, source)
        if len(scores["specs"]) < 10:
            print(f"{label}: {len(scores['specs'])} specs with every score in {a.cache}; run benchmarks/supernet.py "
                  f"first", file=sys.stderr)
            continue
        res = analyse(scores["specs"], a.resamples, a.seed)
        tasks.append({"task": label, **scores, "analysis": res})
        for name in (*[n for n in res["tau"] if n != "ceiling"], "ceiling"):
            row = {"task": label, "estimator": {"train": "train (2 epochs)",
                                                "ceiling": "seed 0 vs seed 1 (ceiling)"}.get(name, name),
                   "n": res["n"], "kendall_tau": res["tau"][name],
                   f"ci{int(LEVEL * 100)}": f"{res['tau_ci'][name][0]:.3f} .. {res['tau_ci'][name][1]:.3f}"}
            for key, d in res["differences"].items():
                if key == f"supernet - {name}":
                    row["supernet minus this"] = f"{d['point']:+.3f} ({d['ci'][0]:+.3f} .. {d['ci'][1]:+.3f})"
                    row["P(supernet >= this)"] = d["share_supernet_at_least_as_good"]
            rows.append(row)
    if not tasks:
        return 1
    notes = (f"Paired bootstrap over specs ({a.resamples} resamples, seed {a.seed}): each resample draws the specs "
             f"with replacement and recomputes every tau on it; intervals are the central {int(LEVEL * 100)}% of "
             f"the resampled values; 'P(supernet >= this)' is the share of resamples in which the supernet's tau "
             f"is at least the other estimator's. Kendall tau-b (scipy) against the 2-seed stand-alone mean; the "
             f"ceiling is seed 0 against seed 1. Scores from the supernet benchmark's cache (its settings: "
             f"benchmarks/results/supernet.md); every spec's scores are in the JSON.")
    json_tasks = {"Per-spec scores": ([{"task": t["task"], **r} for t in tasks for r in t["specs"]],
                                      ["task", "arch", "seed0", "seed1", *ESTIMATORS, SANDWICH])}
    common.write_results("supernet_ranking_ci", "Supernet benchmark: confidence in the ranking taus", rows,
                         ["task", "estimator", "n", "kendall_tau", f"ci{int(LEVEL * 100)}", "supernet minus this",
                          "P(supernet >= this)"],
                         {"resamples": a.resamples, "seed": a.seed, "level": LEVEL, "cache": str(a.cache),
                          "supernet_settings": st.params()}, notes, packages=("scipy",), extra_tables=json_tasks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
