"""TFLite Micro arena: the cost model's ``arena_bytes_tflm`` against the minimal arena measured in the
real TFLM interpreter, and the deployed file sizes against ``size_bytes_int8``, for random specs.

Specs are converted (litert-torch + ai-edge-quantizer, int8 I/O, NCHW input: what ``edgenas export``
writes) in batches as branches of one model and cut apart; each int8 file's minimal arena is found by
bisection in ``tflite_micro.runtime.Interpreter`` (``edgenas.exporters.tflm.measure_arenas``).

    .venv/bin/python benchmarks/tflm_arena.py --space tiny --n 40
"""

from __future__ import annotations

import argparse
import sys
import time

from common import write_results

from edgenas import get_space
from edgenas.exporters.tflm import cached_batch_int8_tflite, measure_arenas


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="tiny")
    ap.add_argument("--n", type=int, default=30, help="random specs")
    ap.add_argument("--batch", type=int, default=30, help="specs per litert-torch conversion")
    ap.add_argument("--seed", type=int, default=2024,
                    help="the seed of tests/exporters/test_tflm.py: they share conversions")
    args = ap.parse_args()
    space = get_space(args.space)
    specs = space.sample(args.n, args.seed)
    rows = []
    t0 = time.perf_counter()
    for i in range(0, len(specs), args.batch):
        chunk = specs[i:i + args.batch]
        blobs = cached_batch_int8_tflite(space, chunk)
        for s, blob, m in zip(chunk, blobs, measure_arenas(blobs)):
            c = space.cost(s)
            rows.append({
                "arch": str(s), "arena_measured": m["arena_bytes"], "arena_estimate": c.arena_bytes_tflm,
                "arena_ratio": round(c.arena_bytes_tflm / m["arena_bytes"], 4),
                "head_measured": m.get("head_bytes"), "tail_measured": m.get("tail_bytes"),
                "peak_ram_bytes_int8": c.peak_ram_bytes_int8, "int8_bytes": len(blob),
                "size_ratio_int8": round(len(blob) / c.size_bytes_int8, 4),
            })
        print(f"{len(rows)}/{len(specs)} specs, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    ratios = [r["arena_ratio"] for r in rows]
    sizes = [r["size_ratio_int8"] for r in rows]
    within = sum(1.0 <= q <= 1.1 for q in ratios)
    notes = (f"{len(rows)} random `{args.space}` specs (seed {args.seed}). arena estimate / measured: min "
             f"{min(ratios):.4f}, max {max(ratios):.4f}; {within}/{len(rows)} within [1.00, 1.10] (never below, "
             f"at most 10% above). int8 file / size_bytes_int8: {min(sizes):.4f}..{max(sizes):.4f}. "
             f"Measured arena / peak_ram_bytes_int8 (the MCUNet activation peak): "
             f"{min(r['arena_measured'] / r['peak_ram_bytes_int8'] for r in rows):.2f}.."
             f"{max(r['arena_measured'] / r['peak_ram_bytes_int8'] for r in rows):.2f}x. "
             f"Wall time {time.perf_counter() - t0:.0f} s (conversions dominate).")
    write_results("tflm_arena", f"TFLite Micro arena vs estimate ({args.space})", rows,
                  ["arch", "arena_measured", "arena_estimate", "arena_ratio", "head_measured", "tail_measured",
                   "peak_ram_bytes_int8", "int8_bytes", "size_ratio_int8"],
                  vars(args), notes, packages=("tflite-micro", "litert-torch", "ai-edge-quantizer", "torch"))
    return 0 if within == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
