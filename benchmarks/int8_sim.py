"""Simulated int8 accuracy (the ``accuracy_int8`` objective) against real LiteRT int8 files, on the export
benchmark's models.

    cd benchmarks && python int8_sim.py [--specs 10] [--spaces tiny,mbv3]

Each spec of benchmarks/export.py (same spaces, data, epochs, seeds) is trained, converted to the
exporter's int8 .tflite (litert-torch, ai-edge-quantizer min/max on the same 256 representative images)
and run in LiteRT on the validation images; the same trained model is scored by
:mod:`edgenas.estimators.int8_sim` (calibrated on the same representative images). Reported per model:
float, simulated int8 and LiteRT int8 top-1, the top-1 agreement of the simulation with the file, and
the drop (float - int8) each predicts. Writes results/int8_sim.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from export import SPACES, TRAIN  # noqa: E402

from edgenas.datasets import load_dataset  # noqa: E402
from edgenas.estimators.data import data_task  # noqa: E402
from edgenas.estimators.int8_sim import SimulatedInt8  # noqa: E402
from edgenas.exporters.convert import quantize_int8, tflite_fp32_bytes  # noqa: E402
from edgenas.exporters.tflite import litert_runner  # noqa: E402
from edgenas.exporters.weights import export_data, train_final  # noqa: E402
from edgenas.search.benchmark import machine  # noqa: E402
from edgenas.spaces import Task, get_space  # noqa: E402

RESULTS = HERE / "results"


def run_model(space_name: str, index: int, spec: object, space: object, ds: object, seed: int, tmp: Path) -> dict:
    epochs = SPACES[space_name][2]
    task = data_task(space, Task(in_channels=ds.channels), ds)
    trained = train_final(space, spec, task, ds, epochs, seed=seed, hparams=TRAIN, torch_device="cpu")
    rep, vx, vy = export_data(ds, trained.input_shape, seed, validation=256)
    t0 = time.perf_counter()
    path = tmp / f"{space_name}{index}.tflite"
    path.write_bytes(quantize_int8(tflite_fp32_bytes(trained.module, trained.input_shape), rep))
    convert_s = time.perf_counter() - t0
    lite = litert_runner(path)(vx)
    t0 = time.perf_counter()
    r = torch.from_numpy(rep)
    sim = SimulatedInt8(trained.module, [r[i:i + 64] for i in range(0, len(r), 64)])
    with torch.no_grad():
        s = sim(torch.from_numpy(vx)).numpy()
        f = trained.module(torch.from_numpy(vx)).numpy()
    sim_s = time.perf_counter() - t0

    def acc(z: np.ndarray) -> float:
        return round(float(np.mean(z.argmax(1) == vy)), 4)

    return {"space": space_name, "index": index, "arch": str(spec), "float_top1": acc(f), "sim_int8_top1": acc(s),
            "litert_int8_top1": acc(lite),
            "sim_vs_litert_agreement": round(float(np.mean(s.argmax(1) == lite.argmax(1))), 4),
            "float_vs_litert_agreement": round(float(np.mean(f.argmax(1) == lite.argmax(1))), 4),
            "sim_mean_abs_diff": round(float(np.abs(s - lite).mean()), 4),
            "float_mean_abs_diff": round(float(np.abs(f - lite).mean()), 4),
            "convert_s": round(convert_s, 2), "sim_s": round(sim_s, 2), "examples": len(vy)}


def markdown(rows: list[dict], settings: dict, mach: dict) -> str:
    lines = ["# Simulated int8 accuracy vs LiteRT int8 files", "", f"Command: `{settings['command']}`", "",
             "Per model of the export benchmark: top-1 of the float model, of its simulated int8 quantization "
             "(edgenas/estimators/int8_sim.py, what the `accuracy_int8` objective scores) and of the real int8 "
             ".tflite in LiteRT; agreement = share of validation images with the same top-1; mean |diff| = mean "
             "absolute logit difference to the LiteRT file (simulation, float model). Times on a 2-core machine "
             "shared with other jobs.", "",
             "| space | model | float top-1 | sim int8 top-1 | LiteRT int8 top-1 | sim/LiteRT agree | float/LiteRT "
             "agree | sim mean diff | float mean diff | convert s | sim s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['space']} | {r['index']} | {r['float_top1']:.3f} | {r['sim_int8_top1']:.3f} | "
                     f"{r['litert_int8_top1']:.3f} | {r['sim_vs_litert_agreement']:.3f} | "
                     f"{r['float_vs_litert_agreement']:.3f} | {r['sim_mean_abs_diff']:.3f} | "
                     f"{r['float_mean_abs_diff']:.3f} | {r['convert_s']:.1f} | {r['sim_s']:.1f} |")
    if rows:
        err_sim = [abs(r["sim_int8_top1"] - r["litert_int8_top1"]) for r in rows]
        err_float = [abs(r["float_top1"] - r["litert_int8_top1"]) for r in rows]
        closer = sum(r["sim_mean_abs_diff"] < r["float_mean_abs_diff"] for r in rows)
        lines += ["", f"|top-1 error| vs the LiteRT file: simulation mean {np.mean(err_sim):.4f} (max "
                  f"{max(err_sim):.4f}), float model mean {np.mean(err_float):.4f} (max {max(err_float):.4f}); the "
                  f"simulation's logits are nearer the file's than the float model's on {closer}/{len(rows)} models."]
    lines += ["", "## Settings", ""] + [f"- {k}: {v}" for k, v in settings.items()]
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in mach.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", type=int, default=10)
    ap.add_argument("--spaces", default="tiny,mbv3")
    ap.add_argument("--only", default=None, help="comma list of model indices to run (default all)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    settings = {"specs_per_space": a.specs, "only": a.only, "seed": a.seed, "train": TRAIN,
                "command": "cd benchmarks && python int8_sim.py " + " ".join(sys.argv[1:])}
    only = {int(x) for x in a.only.split(",")} if a.only else None
    rows: list[dict] = []
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.spaces.split(","):
            opts, data, _, val_fraction, _ = SPACES[name]
            space = get_space(name, **opts)
            ds = load_dataset(data, seed=0, val_fraction=val_fraction)
            for i, spec in enumerate(space.sample(a.specs, seed=a.seed)):
                if only is not None and i not in only:
                    continue
                rows.append(run_model(name, i, spec, space, ds, a.seed, Path(tmp)))
                print(json.dumps(rows[-1]), flush=True)
                mach = machine()
                (RESULTS / "int8_sim.json").write_text(json.dumps({"settings": settings, "machine": mach,
                                                                   "models": rows}, indent=1) + "\n")
                (RESULTS / "int8_sim.md").write_text(markdown(rows, settings, mach))
    print(markdown(rows, settings, machine()))


if __name__ == "__main__":
    main()
