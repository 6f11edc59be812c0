"""Benchmark: exact analytic cost model vs. building and counting the torch module.

For each space: cost 10,000 seeded random specs analytically (cold layer cache, then warm), and build
+ count a subset of them as torch modules (torch FLOP counter + FX liveness, the check the tests use),
extrapolated per spec. Target: >= 5,000 specs/s analytic for ``mbv3`` on the 2-core CI machine.

    python benchmarks/cost_model.py [--n 10000] [--n-build 50] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from common import write_results

from edgenas import get_space
from edgenas.layers import layer_cost
from edgenas.modelcount import count_module, count_params

TARGET_MBV3_SPECS_PER_S = 5000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10_000, help="specs costed analytically per space")
    ap.add_argument("--n-build", type=int, default=50, help="specs built as torch modules per space")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = []
    from edgenas.spaces import space_names

    for name in space_names():  # every registered space that stands alone
        space = get_space(name)
        if not space.size():  # the model space needs a source model: benchmarks/compress.py measures it
            continue
        specs = space.sample(args.n, args.seed)
        layer_cost.cache_clear()
        t0 = time.perf_counter()
        costs = [space.cost(s) for s in specs]
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        for s in specs:
            space.cost(s)
        warm = time.perf_counter() - t0

        subset = specs[: args.n_build]
        t0 = time.perf_counter()
        for s in subset:
            count_params(space.build(s))
        build_only = (time.perf_counter() - t0) / len(subset)
        t0 = time.perf_counter()
        mismatches = 0
        for s, c in zip(subset, costs):
            rec = c.as_record()
            rec.pop("arch")
            mismatches += count_module(space.build(s), space.input_shape(s), str(s)) != rec
        build_count = (time.perf_counter() - t0) / len(subset)
        rows.append({
            "space": name,
            "analytic specs/s (cold cache)": args.n / cold,
            "analytic specs/s (warm)": args.n / warm,
            "build module specs/s": 1 / build_only,
            "build+count specs/s": 1 / build_count,
            f"time for {args.n:,} analytic (s)": cold,
            f"time for {args.n:,} build+count (s, extrapolated)": build_count * args.n,
            "speed-up vs build+count": build_count / (cold / args.n),
            "mismatches (of built subset)": mismatches,
        })
    mbv3 = next(r for r in rows if r["space"] == "mbv3")["analytic specs/s (cold cache)"]
    verdict = "meets" if mbv3 >= TARGET_MBV3_SPECS_PER_S else "MISSES"
    notes = (
        f"Analytic = `SearchSpace.cost` (no torch), {args.n:,} seeded random specs per space, layer cache cleared "
        f"first. Build+count = build the `torch.nn.Module` and count it with `edgenas.modelcount.count_module` "
        f"(torch FLOP counter for MACs, FX liveness for peak RAM) on the first {args.n_build} of those specs; its "
        f"10,000-spec time is extrapolated from that subset. Every built spec's counts equal the analytic ones "
        f"(mismatch column). mbv3 analytic throughput {mbv3:,.0f} specs/s {verdict} the "
        f"{TARGET_MBV3_SPECS_PER_S:,} specs/s target."
    )
    write_results("cost_model", "Cost model throughput: analytic vs. built module", rows, list(rows[0]),
                  {"n": args.n, "n_build": args.n_build, "seed": args.seed, "torch_threads": 2}, notes)
    return 0 if mbv3 >= TARGET_MBV3_SPECS_PER_S and not any(r["mismatches (of built subset)"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
