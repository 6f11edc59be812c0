"""Delegate partitions predicted from the deployed graph vs what LiteRT does with the converted file
(issue 21, item 1): for SPECS random specs of every image space, fp32 and int8, the number of XNNPACK
``DELEGATE`` nodes and the ops left off the delegate, as :func:`edgenas.delegates.predict` computes them
from the cost model's deployed graph and as :func:`edgenas.delegates.measure` reads them from the
interpreter.

    cd benchmarks && python delegate_partitions.py [--specs 30] [--jobs 2]

Models are built with seeded random BatchNorm statistics and affine parameters (as a trained model has:
a fresh BatchNorm's zero mean, unit scale and zero shift would let the converter drop a standalone
BatchNorm's SUB, MUL and ADD), converted with litert-torch as branches of
one module (as the latency profiler does) and, for int8, quantized by the int8 exporter's quantizer.
Writes results/delegate_partitions.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import write_results  # noqa: E402

SPACES: dict[str, dict[str, Any]] = {
    "tiny": {"resolutions": [32]}, "mbv3": {"resolutions": [128]}, "proxyless": {"resolutions": [96]},
    "fbnet": {}, "nb201": {"cells_per_stage": 2},
}
"""Image spaces and the options that keep conversion short (resolution does not change the graph's ops;
NB201 at 2 cells per stage holds every op of its cells)."""
BATCH = 10


def random_bn(module: Any, seed: int) -> None:
    """Seeded non-trivial BatchNorm statistics and affine parameters (as training leaves them)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)


def run_space(name: str, n_specs: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows (fp32, int8) and mismatches of one space."""
    import torch

    from edgenas.delegates import measure, predict
    from edgenas.latency.runtimes.litert import Branches, convert_tflite, quantize
    from edgenas.latency.runtimes.tflite_split import split_branches
    from edgenas.spaces import Task, get_space

    torch.set_num_threads(1)
    space = get_space(name, **SPACES[name])
    task = Task(num_classes=10, in_channels=3)
    specs = space.sample(n_specs, 0)
    mismatches: list[dict[str, Any]] = []
    stats = {p: {"n": 0, "partitions_equal": 0, "ops_off_equal": 0, "partitions": [], "ops_off": []}
             for p in ("fp32", "int8")}
    for start in range(0, len(specs), BATCH):
        group = specs[start:start + BATCH]
        mods, shapes = [], []
        for i, spec in enumerate(group):
            torch.manual_seed(start + i)
            m = space.build(spec, task).eval()
            random_bn(m, start + i)
            mods.append(m)
            shapes.append(space.input_shape(spec, task))
        blobs = split_branches(convert_tflite(Branches(mods), shapes), len(mods))
        with tempfile.TemporaryDirectory() as tmp:
            for spec, shape, fp32 in zip(group, shapes, blobs):
                deployed = space.cost(spec, task).deployed
                for prec, blob in (("fp32", fp32), ("int8", quantize(fp32, shape))):
                    path = Path(tmp) / f"m_{prec}.tflite"
                    path.write_bytes(blob)
                    got, want = measure(path), predict(deployed, "xnnpack", prec)
                    s = stats[prec]
                    s["n"] += 1
                    s["partitions_equal"] += got.partitions == want.partitions
                    s["ops_off_equal"] += got.ops_off_delegate == want.ops_off_delegate
                    s["partitions"].append(got.partitions)
                    s["ops_off"].append(got.ops_off_delegate)
                    if got.as_dict() != want.as_dict():
                        mismatches.append({"space": name, "precision": prec, "arch": str(spec),
                                           "measured": got.as_dict(), "predicted": want.as_dict()})
        print(name, start + len(group), "of", len(specs), flush=True)
    rows = [{"space": name, "precision": prec, "specs": s["n"], "partitions_equal": s["partitions_equal"],
             "ops_off_equal": s["ops_off_equal"],
             "measured_partitions": f"{min(s['partitions'])}-{max(s['partitions'])}",
             "measured_ops_off": f"{min(s['ops_off'])}-{max(s['ops_off'])}"} for prec, s in stats.items()]
    return rows, mismatches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--specs", type=int, default=30)
    ap.add_argument("--spaces", default=",".join(SPACES))
    ap.add_argument("--jobs", type=int, default=1, help="spaces converted in parallel processes")
    args = ap.parse_args()
    from concurrent.futures import ProcessPoolExecutor

    names = args.spaces.split(",")
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run_space, names, [args.specs] * len(names)))
    rows = [r for rs, _ in results for r in rs]
    mismatches = [m for _, ms in results for m in ms]
    notes = (f"{len(mismatches)} of {sum(r['specs'] for r in rows)} models differ (any field of the report: "
             "partitions, ops off the delegate, total ops, off-op names).")
    extra = {"Mismatches": (mismatches, ["space", "precision", "arch", "measured", "predicted"])} if mismatches else {}
    write_results("delegate_partitions", "XNNPACK delegate partitions: predicted from the deployed graph vs LiteRT",
                  rows, ["space", "precision", "specs", "partitions_equal", "ops_off_equal", "measured_partitions",
                         "measured_ops_off"],
                  {"specs": args.specs, "sample_seed": 0, "spaces": SPACES, "delegate": "xnnpack"}, notes,
                  packages=("torch", "ai-edge-litert", "litert-torch", "ai-edge-quantizer"), extra_tables=extra)


if __name__ == "__main__":
    main()
