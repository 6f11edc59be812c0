"""The digits part of benchmarks/compress.py: compress a trained model vs search from scratch.

The user journey, through the CLI: train the model the user "has" (a ``tiny`` w1.0 spec, 20 epochs on
digits) and save it whole (``torch.save(model)``); ``edgenas search --model src.pt --estimator
prune-finetune --budget arena_bytes_tflm<=64KiB``; ``edgenas search --space tiny --estimator train`` with the
same budget for the same wall time on the same machine (each search's CPU seconds are measured and shown);
then ``edgenas export`` of each search's most accurate feasible trial (the compressed one fine-tuned 20
epochs from its inherited weights, the from-scratch one trained 20 epochs like the source), as int8 TFLite
and TFLite Micro files whose arena is measured by the TFLite Micro interpreter. The compressed space also
searches the input side (32, 48 or 64 px, the source's), as the ``tiny`` search does.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from edgenas import Task, get_space

PY = sys.executable
FINAL_FORMATS = "onnx,tflite-int8,tflm"


def _child_cpu() -> float:
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return c.ru_utime + c.ru_stime


def _run(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run an edgenas command; (wall s, CPU s of the child and its own children)."""
    c0, t0 = _child_cpu(), time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}); see {log}:\n{log.read_text()[-2000:]}")
    return time.perf_counter() - t0, _child_cpu() - c0


def _best_feasible(run: Path) -> dict[str, Any]:
    """The most accurate trial that meets the budget, from the run's trials.csv."""
    import csv

    with (run / "trials.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["state"] == "complete"]
    feasible = [r for r in rows if r["feasible"] == "True" and r["status"] == "evaluated"]
    best = max(feasible, key=lambda r: float(r["accuracy"]))
    return {"trial": int(best["trial"]), "arch": best["arch"], "estimated": float(best["accuracy"]),
            "trials": len(rows), "feasible": len(feasible)}


def _export(run: Path, trial: int, epochs: int, out: Path, log: Path) -> tuple[dict[str, Any], float]:
    wall, _ = _run([PY, "-m", "edgenas.cli.main", "export", str(run), "--trials", str(trial), "--formats",
                    FINAL_FORMATS, "--train-epochs", str(epochs), "--out", str(out), "--no-latency"], log)
    (card_path,) = out.glob("*/model_card.json")
    return json.loads(card_path.read_text()), wall


def digits_comparison(search_s: float, seed: int, budget: int, source_arch: str,
                      work: Path | None = None) -> tuple[list[dict], list[str]]:
    """The comparison; in ``work`` (a new temporary folder by default) the steps already done there (the
    source model, a finished search) are reused, so an interrupted run resumes."""
    from edgenas.datasets import load_dataset
    from edgenas.exporters.weights import train_final

    work = work or Path(tempfile.mkdtemp(prefix="edgenas-compress-"))
    work.mkdir(parents=True, exist_ok=True)
    tiny = get_space("tiny")
    spec = tiny.parse(source_arch)
    ds = load_dataset("digits", seed=0)
    task = Task(num_classes=ds.num_classes, in_channels=ds.channels)
    src_path, src_info = work / "source.pt", work / "source.json"
    if not src_info.exists():
        print("digits: training the source model (20 epochs)", file=sys.stderr, flush=True)
        c0 = time.process_time()
        src = train_final(tiny, spec, task, ds, 20, seed=seed, torch_device="cpu")
        torch.save(src.module, src_path)
        src_info.write_text(json.dumps({"accuracy": src.accuracy, "cpu_s": time.process_time() - c0}))
    info = json.loads(src_info.read_text())
    src_arena = tiny.cost(spec, task).arena_bytes_tflm
    rows: list[dict[str, Any]] = [{
        "path": "source (tiny w1.0, 20 epochs)", "arch": source_arch, "search_trials": "-", "search_cpu_s": "-",
        "estimated": "-", "final_training": "20 epochs from scratch", "final_top1": round(info["accuracy"], 4),
        "arena_est_kib": round(src_arena / 1024, 1), "arena_tflm_kib": "-",
        "fits": "yes" if src_arena <= budget else "no",
        "cpu_s": round(info["cpu_s"], 1) if info["cpu_s"] is not None else "-"}]
    common = ["--dataset", "digits", "--budget", f"arena_bytes_tflm<={budget}", "--objectives", "accuracy,macs",
              "--timeout", str(search_s), "--seed", str(seed), "--no-progress"]
    runs = {
        "compress": [PY, "-m", "edgenas.cli.main", "search", "--model", str(src_path), "--space-opt", "resolution=64",
                     "--space-opt", "resolutions=32,48,64",
                     "--estimator", "prune-finetune", "--est-opt", "epochs=1", "--est-opt", "train_samples=512",
                     "--out", str(work / "run-compress"), *common],
        "scratch": [PY, "-m", "edgenas.cli.main", "search", "--space", "tiny", "--space-opt", "widths=1.0",
                    "--estimator", "train", "--est-opt", "epochs=3", "--est-opt", "train_samples=512",
                    "--out", str(work / "run-scratch"), *common],
    }
    notes = []
    for name, cmd in runs.items():
        run = work / f"run-{name}"
        if (run / "run.json").exists() and (run / "trials.csv").exists():  # finished before: reuse
            cost = json.loads((run / "run.json").read_text()).get("search_cost", {})
            wall, cpu = float(cost.get("wall_s", 0)), float(cost.get("cpu_s", 0))
        else:
            print(f"digits: {name} search ({search_s:.0f} s wall)", file=sys.stderr, flush=True)
            wall, cpu = _run(cmd, work / f"{name}-search.log")
        best = _best_feasible(work / f"run-{name}")
        epochs = 20
        print(f"digits: exporting the {name} winner", file=sys.stderr, flush=True)
        shutil.rmtree(work / f"export-{name}", ignore_errors=True)
        card, ewall = _export(work / f"run-{name}", best["trial"], epochs, work / f"export-{name}",
                              work / f"{name}-export.log")
        rows.append({
            "path": "compress: prune-finetune search of the source" if name == "compress"
            else "from scratch: train search of tiny w1.0",
            "arch": best["arch"][:48] + ("..." if len(best["arch"]) > 48 else ""),
            "search_trials": f"{best['trials']} ({best['feasible']} feasible)", "search_cpu_s": round(cpu, 1),
            "estimated": round(best["estimated"], 4),
            "final_training": "20 epochs fine-tune from inherited weights" if name == "compress"
            else "20 epochs from scratch",
            "final_top1": round(card["accuracy"]["torch"], 4), "arena_est_kib": round(card["cost"]["arena_bytes_tflm"]
                                                                                     / 1024, 1),
            "arena_tflm_kib": round((card.get("tflm_arena_bytes") or 0) / 1024, 1),
            "fits": "yes" if (card.get("tflm_arena_bytes") or 1 << 30) <= budget else "no", "cpu_s": round(cpu, 1)})
        notes.append(f"digits: {name} search wall {wall:.0f} s, CPU {cpu:.0f} s; export wall {ewall:.0f} s; int8 top-1 "
                     f"{card['accuracy']['artifacts'].get('tflite-int8')}")
    return rows, notes
