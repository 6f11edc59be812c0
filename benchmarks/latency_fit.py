"""Benchmark: latency tables fitted from end-to-end measurements (``edgenas lut fit``).

For each space and device of the public dev data (NB201: raspi4, pixel3, gold_6226; FBNet CIFAR-100:
raspi4, pixel3), train on N random measured architectures (N = 20, 50, 100, 500), predict ALL the
others, and report Spearman and the share within +-10% (median over seeds) for

* ``naive``: non-negative least squares with one weight per (edge, op) of the NB201 cell (per (layer,
  block) for FBNet), plain ms residuals: the baseline of issue 3;
* ``ours``: :func:`edgenas.latency.fit.fit_latency_table` without a prior (analytic proxy base costs);
* ``ours+prior``: the same with a prior table fitted on ALL measurements of ANOTHER device of the same
  dev CSV (see ``PRIOR_DEVICE``). The target device contributes only its N training rows.

    python benchmarks/latency_fit.py                 # full run (writes benchmarks/results/latency_fit.*)
    python benchmarks/latency_fit.py --quick         # 2 seeds, N in {20, 100}, no writing
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_results

from edgenas.latency.fit import (
    SPACE_FEATURES,
    build_design,
    fit_latency_table,
    predict_design,
    space_unit_layers,
)
from edgenas.latency.table import LatencyTable
from edgenas.paths import shared_data_dir
from edgenas.spaces import ArchSpec, SearchSpace, get_space

SIZES = (20, 50, 100, 500)
SEEDS = (0, 1, 2, 3, 4)
DEVICES = {"nb201": ("raspi4", "pixel3", "gold_6226"), "fbnet": ("raspi4", "pixel3")}
# prior table for each target device: fitted on all measurements of this other device
PRIOR_DEVICE = {
    "nb201": {"raspi4": "pixel3", "pixel3": "raspi4", "gold_6226": "pixel3"},
    "fbnet": {"raspi4": "pixel3", "pixel3": "raspi4"},
}


def load(space_name: str, data: Path) -> tuple[SearchSpace, list[ArchSpec], dict[str, np.ndarray]]:
    if space_name == "nb201":
        space = get_space("nb201", table=data / "nb201" / "nb201_cifar10.csv")
        rows = list(csv.DictReader(open(data / "latency" / "nb201_latency_dev.csv")))
        specs = [space.parse("#" + r["index"]) for r in rows]
    else:
        space = get_space("fbnet")
        rows = list(csv.DictReader(open(data / "latency" / "fbnet_cifar100_latency_dev.csv")))
        specs = [space.parse(r["op_idx_list"]) for r in rows]
    lat = {d: np.array([float(r[d]) for r in rows]) for d in DEVICES[space_name]}
    return space, specs, lat


def naive_design(space: SearchSpace, specs: list[ArchSpec]) -> np.ndarray:
    """One-hot (edge, op) / (layer, block): ``space.encode``, which is exactly that for nb201 and fbnet."""
    return np.array([space.encode(s) for s in specs], float)


def naive_predict(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    coef, _ = nnls(X[train], y[train])
    return X[test] @ coef


def metrics(pred: np.ndarray, meas: np.ndarray) -> dict[str, float]:
    rel = np.abs(pred - meas) / meas
    return {"spearman": float(spearmanr(pred, meas).statistic), "within_10pct": float((rel <= 0.10).mean()),
            "mape_pct": float(100 * np.median(rel))}


def run(sizes: tuple[int, ...], seeds: tuple[int, ...], spaces: tuple[str, ...]) -> list[dict[str, Any]]:
    data = shared_data_dir()
    if data is None:
        raise SystemExit("public dev data not found (../shared/data or $EDGENAS_DATA)")
    rows: list[dict[str, Any]] = []
    for space_name in spaces:
        space, specs, lat = load(space_name, data)
        feats = sorted({f for fs in SPACE_FEATURES.get(space_name, []) for f in fs})
        keys = sorted(space_unit_layers(space))
        full = build_design(space, specs, feats, keys=keys)  # every network, every unit: for scoring
        X_naive = naive_design(space, specs)
        priors: dict[str, LatencyTable] = {}
        for dev in DEVICES[space_name]:
            src = PRIOR_DEVICE[space_name][dev]
            if src not in priors:
                t0 = time.time()
                priors[src] = fit_latency_table(space, specs, lat[src], src, seed=0)
                print(f"[{space_name}] prior from {src}: {priors[src].validation['model']} "
                      f"({time.time() - t0:.0f}s)", flush=True)
            y = lat[dev]
            for n in sizes:
                per: dict[str, list[dict[str, float]]] = {"naive": [], "ours": [], "ours+prior": []}
                chosen: dict[str, Counter[str]] = {"ours": Counter(), "ours+prior": Counter()}
                for seed in seeds:
                    perm = np.random.default_rng(seed).permutation(len(specs))
                    train, test = perm[:n], perm[n:]
                    per["naive"].append(metrics(naive_predict(X_naive, y, train, test), y[test]))
                    for method, prior in (("ours", None), ("ours+prior", priors[src])):
                        table = fit_latency_table(space, [specs[i] for i in train], y[train], dev, prior=prior,
                                                  seed=seed)
                        pred = predict_design(table, full.subset(test))
                        per[method].append(metrics(pred, y[test]))
                        chosen[method][table.validation["model"]] += 1
                for method, ms in per.items():
                    row = {
                        "space": space_name, "device": dev, "n_train": n, "method": method,
                        "prior": f"{src} (all {len(specs)} rows)" if method == "ours+prior" else "-",
                        "spearman": float(np.median([m["spearman"] for m in ms])),
                        "within_10pct": float(np.median([m["within_10pct"] for m in ms])),
                        "median_ape_pct": float(np.median([m["mape_pct"] for m in ms])),
                        "spearman_min": float(np.min([m["spearman"] for m in ms])),
                        "within_10pct_min": float(np.min([m["within_10pct"] for m in ms])),
                        "n_test": len(specs) - n,
                        "models": "; ".join(f"{k} x{v}" for k, v in chosen[method].most_common())
                        if method in chosen else "NNLS one-hot",
                    }
                    rows.append(row)
                    print(f"{space_name} {dev} N={n} {method}: Spearman {row['spearman']:.3f} "
                          f"within10 {row['within_10pct']:.1%}  [{row['models']}]", flush=True)
    return rows


NOTES = """
Train on N random measured architectures (seeds 0-4: the first N of a seeded permutation), predict all
the others (n_test); figures are medians over the 5 seeds (`*_min`: worst seed). `median_ape_pct` is
the median absolute percentage error. Methods:

* `naive`: NNLS over one-hot (edge, op) of the NB201 cell ((layer, block) for FBNet), plain ms.
* `ours`: `fit_latency_table` without a prior: analytic proxy base costs (MACs + 8 x activations) per
  latency unit (`space.units` keys, shared across edges and cells), rescaled per group (one scale, per
  unit kind, or per unit) with a ridge toward the common scale, NB201 dead-branch feature terms
  (`nb201_const_in_*`, `nb201_dead_zero_*`, `nb201_dead_*`, `nb201_disconnected`), robust
  (Huber) relative-error weighting, model chosen by 5-fold CV on the N training rows only.
* `ours+prior`: the same, also offered a prior table: the table `fit_latency_table` fits on ALL rows of
  the prior device named in `prior` (another device's column of the same dev CSV). No row of the target
  device beyond the N training rows is used (the prior never sees the target column; the CV that picks
  the model runs on the N rows).

NB201 raspi4/pixel3 (HW-NAS-Bench TFLite) are not additive over live units: the exported nets still run
some dead branches and ops on all-zero nodes, and disconnected cells fold to ~0.01 ms. Part of this is
captured by the dead-branch features. The rest is measurement noise, and the section "Repeatability of
the NB201 measurements" below measures it directly: pairs of arch strings that are the *same computation
graph* (edge 2<-1 `none`, nodes 1 and 2 swapped) were measured as different archs, and on raspi4 / pixel3
only about 71% / 62% of those pairs agree within +-10% of each other (gold_6226: 85%). Fitting the noise
distribution to those pairs puts the share of measurements within +-10% of their own noise-free value, the
score of a perfect predictor, at about 86% (raspi4) and 78% (pixel3): the 80% target at N=100 lies above
the pixel3 ceiling and close to the raspi4 one. A gradient-boosted model on the one-hot encoding trained on
10,000 archs reaches 72% / 74% (column `gbm_10k_within_10pct`), about what `ours` reaches from 100-500.
FBNet latencies are exact sums of per-layer LUT entries (HW-NAS-Bench), so a per-unit table recovers
them once the units are pinned down.
"""


def repeatability(space: SearchSpace, specs: list[ArchSpec], lat: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """How well the NB201 measurements agree with themselves: a ceiling for any predictor.

    When edge 2<-1 is ``none``, swapping nodes 1 and 2 (edges 1<-0 with 2<-0, 3<-1 with 3<-2) gives a
    different arch string for the *same computation graph* (same ops, same shapes, same data flow). Any
    difference between the two measured latencies is measurement noise (or run order), not architecture.
    From these pairs: the share agreeing within +-10% of each other, and, fitting a two-component normal
    mixture to the per-measurement log-noise (pair log-ratios are its self-convolution), the expected share
    of measurements within +-10% of their noise-free value, i.e. what a perfect predictor would score.
    A high-capacity reference: gradient boosting on the one-hot (edge, op) encoding, trained on 10,000
    connected archs and scored on the other connected ones.
    """
    from scipy.optimize import minimize
    from scipy.stats import norm
    from sklearn.ensemble import HistGradientBoostingRegressor

    pos = {s.ops: i for i, s in enumerate(specs)}  # type: ignore[attr-defined]
    pairs = []
    for i, s in enumerate(specs):
        o = s.ops  # type: ignore[attr-defined]
        t = (o[1], o[0], "none", o[3], o[5], o[4])
        if o[2] == "none" and t != o and s.is_connected and pos[t] > i:  # type: ignore[attr-defined]
            pairs.append((i, pos[t]))
    a, b = np.array(pairs).T
    conn = np.array([s.is_connected for s in specs])  # type: ignore[attr-defined]
    ops = sorted({o for s in specs for o in s.ops})  # type: ignore[attr-defined]
    onehot = np.array([[float(o == op) for o in s.ops for op in ops] for s in specs])  # type: ignore[attr-defined]
    rows = []
    for dev, y in lat.items():
        r = np.log(y[a] / y[b])

        def nll(th: np.ndarray, r: np.ndarray = r) -> float:
            p, s1, s2 = 1 / (1 + np.exp(-th[0])), np.exp(th[1]), np.exp(th[2])
            like = ((1 - p) ** 2 * norm.pdf(r, 0, s1 * np.sqrt(2)) + 2 * p * (1 - p) * norm.pdf(r, 0, np.hypot(s1, s2))
                    + p**2 * norm.pdf(r, 0, s2 * np.sqrt(2)))
            return float(-np.log(like + 1e-300).sum())

        fit = min((minimize(nll, [p0, np.log(s1), np.log(s2)], method="Nelder-Mead")
                   for p0 in (-2.0, 0.0) for s1 in (0.02, 0.05) for s2 in (0.2, 0.5)), key=lambda z: z.fun)
        p, s1, s2 = 1 / (1 + np.exp(-fit.x[0])), float(np.exp(fit.x[1])), float(np.exp(fit.x[2]))
        t = np.log(1.1)
        ceiling = (1 - p) * (2 * norm.cdf(t / s1) - 1) + p * (2 * norm.cdf(t / s2) - 1)
        idx = np.flatnonzero(conn)
        np.random.default_rng(0).shuffle(idx)
        tr, te = idx[:10000], idx[10000:]
        gbm = HistGradientBoostingRegressor(max_iter=600, learning_rate=0.05, loss="absolute_error", random_state=0)
        gbm.fit(onehot[tr], np.log(y[tr]))
        gbm_within = float((np.abs(np.exp(gbm.predict(onehot[te])) / y[te] - 1) <= 0.10).mean())
        rows.append({"device": dev, "pairs": len(pairs),
                     "pairs_within_10pct": float((np.abs(np.expm1(r)) <= 0.10).mean()),
                     "pair_median_diff_pct": float(100 * np.median(np.abs(np.expm1(r)))),
                     "noise_mixture": f"{1 - p:.2f} x N(0, {s1:.3f}) + {p:.2f} x N(0, {s2:.3f})",
                     "ceiling_within_10pct": float(ceiling), "gbm_10k_within_10pct": gbm_within})
        print(f"repeatability {dev}: {rows[-1]}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, N in {20, 100}; print only")
    ap.add_argument("--spaces", nargs="+", default=["nb201", "fbnet"], choices=["nb201", "fbnet"])
    args = ap.parse_args()
    sizes, seeds = ((20, 100), (0, 1)) if args.quick else (SIZES, SEEDS)
    t0 = time.time()
    rows = run(sizes, seeds, tuple(args.spaces))
    extra = {}
    if "nb201" in args.spaces:
        space, specs, lat = load("nb201", shared_data_dir())  # type: ignore[arg-type]
        extra["Repeatability of the NB201 measurements"] = (
            repeatability(space, specs, lat),
            ["device", "pairs", "pairs_within_10pct", "pair_median_diff_pct", "noise_mixture",
             "ceiling_within_10pct", "gbm_10k_within_10pct"])
    print(f"total {time.time() - t0:.0f}s")
    if args.quick:
        return
    cols = ["space", "device", "n_train", "method", "spearman", "within_10pct", "median_ape_pct", "spearman_min",
            "within_10pct_min", "prior", "models"]
    write_results("latency_fit", "Latency tables fitted from end-to-end measurements (lut fit)", rows, cols,
                  params={"sizes": list(sizes), "seeds": list(seeds), "prior_device": PRIOR_DEVICE,
                          "data": "shared/data/latency/{nb201_latency_dev,fbnet_cifar100_latency_dev}.csv"},
                  notes=NOTES,
                  packages=("scipy", "scikit-learn"), extra_tables=extra)


if __name__ == "__main__":
    main()
