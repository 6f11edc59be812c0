"""Export benchmark: time per model and format, parity, file sizes vs the cost model, TFLM arena vs its
estimate, for random `tiny` and `mbv3` specs.

    cd benchmarks && python export.py [--specs 10] [--spaces tiny,mbv3]

Each spec is trained briefly (digits for tiny; seeded synthetic 4-class images for mbv3) so parity is
checked on a model with real margins, then exported to every format its space targets (tiny: onnx,
tflite, tflite-int8, tflm; mbv3: onnx, tflite, tflite-int8) through the same exporters as `edgenas
export`. Targets on this machine: ONNX <= 5 s and TFLite <= 30 s per model (build time: conversion and,
for int8, quantization; verification and timing are reported separately). Torch runs on 1 thread.
Writes results/export.{json,md}.

    cd benchmarks && python export.py --int8-recovery mbv3:5,tiny:0-9,mbv3:0-4,mbv3:6-9

rebuilds only the int8 recovery table (every `--int8` option of the exporter on the listed models, retrained
with the same seeds) and keeps the rest of the results as they are.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402
from common import PARTIAL_BANNER  # noqa: E402

from edgenas.datasets import load_dataset  # noqa: E402
from edgenas.estimators.data import data_task  # noqa: E402
from edgenas.exporters import ExportJob, ExportOptions, exporter_names, get_exporter  # noqa: E402
from edgenas.exporters.metadata import ModelInfo  # noqa: E402
from edgenas.exporters.weights import export_data, train_final  # noqa: E402
from edgenas.search.benchmark import machine  # noqa: E402
from edgenas.spaces import Task, get_space  # noqa: E402

RESULTS = HERE / "results"
SPACES = {
    # space -> (space options, dataset, training epochs, validation fraction, formats). The synthetic task
    # is easy enough to learn in two short epochs (a model near chance has near-tied logits, and int8 top-1
    # agreement would then measure ties, not quantization); mbv3 at 96-160 px keeps training minutes
    # short, conversion time does not depend on the resolution. Its validation half (256 images, as many
    # as tiny's digits split gives) makes the 98% agreement check mean what it says: on 64 images (the
    # first design, n=320 at 20%) it allowed one disagreement, 1.6% per image.
    "tiny": ({}, "digits", 3, 0.2, ["onnx", "tflite", "tflite-int8", "tflm"]),
    "mbv3": ({"resolutions": [96, 128, 160]}, "synthetic:n=512,classes=4,channels=3,size=32,noise=0.5", 2, 0.5,
             ["onnx", "tflite", "tflite-int8"]),
}
TRAIN = {"lr": 0.05, "batch_size": 16}
TARGET_S = {"onnx": 5.0, "tflite": 30.0, "tflite-int8": 30.0, "tflm": 30.0}


def run_space(name: str, n: int, seed: int, out: Path,
              on_model: Callable[[list[dict]], None] | None = None) -> list[dict]:
    opts, data, epochs, val_fraction, formats = SPACES[name]
    formats = [f for f in formats if f in exporter_names()]
    space = get_space(name, **opts)
    ds = load_dataset(data, seed=0, val_fraction=val_fraction)
    cpu = machine()["cpu"]
    rows = []
    for i, spec in enumerate(space.sample(n, seed=seed)):
        task = data_task(space, Task(in_channels=ds.channels), ds)
        t0 = time.perf_counter()
        trained = train_final(space, spec, task, ds, epochs, seed=seed, hparams=TRAIN)
        train_s = time.perf_counter() - t0
        rep, vx, vy = export_data(ds, trained.input_shape, seed, validation=256)  # the exporter's calibration size
        job = ExportJob(trained.module, trained.input_shape, rep, vx, vy, ExportOptions(measure_latency=True),
                        info=ModelInfo(str(spec), name, ds.preprocessing(), tuple(ds.class_names)))
        cost = space.cost(spec, task).as_record()
        for fmt in formats:
            ex = get_exporter(fmt)
            art = ex.export(job, out / name / f"{i:02d}")
            est = cost.get(ex.size_field)
            row = {"space": name, "index": i, "arch": str(spec), "format": fmt, "ok": art.ok, "error": art.error,
                   "build_s": round(art.build_seconds, 3), "total_s": round(art.seconds, 3), "bytes": art.bytes,
                   "size_field": ex.size_field, "size_estimate": est,
                   "size_ratio": round(art.bytes / est, 4) if est and art.bytes else None,
                   "max_abs_diff": art.parity.max_abs_diff if art.parity else None,
                   "top1_agreement": art.parity.top1_agreement if art.parity else None,
                   "parity_passed": bool(art.parity and art.parity.passed), "accuracy": art.accuracy,
                   "torch_accuracy": trained.accuracy, "latency_ms": art.latency_ms, "train_s": round(train_s, 2),
                   "macs": cost["macs"], "params": cost["params"],
                   "latency_windows_set_aside": (art.extra.get("latency_timing") or {}).get("windows_set_aside")}
            if fmt == "tflm":
                row["arena_bytes"] = art.extra.get("tflm_arena_bytes")
                row["arena_estimate"] = cost.get("arena_bytes_tflm")
                if row["arena_bytes"] and row["arena_estimate"]:
                    row["arena_ratio"] = round(row["arena_estimate"] / row["arena_bytes"], 4)
            row["cpu"] = cpu
            rows.append(row)
            status = "ok" if art.ok else f"FAILED: {art.error}"
            ratio = f"size x{row['size_ratio']:.3f}" if row["size_ratio"] else ""
            print(f"{name} {i:2d} {fmt:12s} build {art.build_seconds:6.2f} s  {ratio}  {status}", flush=True)
            if fmt == "tflite-int8":
                row.update(calibration_alternative(job, out / name / f"{i:02d}"))
        if on_model:
            on_model(rows)
    return rows


def calibration_alternative(job: ExportJob, folder: Path) -> dict:
    """The same fp32 file quantized with ai-edge-quantizer's own range rule (moving average of each
    example's min/max) instead of the exporter's global min/max: top-1 agreement and max |diff| with torch
    on the same validation images (the exporters' own ``compare``), to show what the choice is worth."""
    from edgenas.exporters.base import compare
    from edgenas.exporters.convert import quantize_int8
    from edgenas.exporters.tflite import fp32_tflite, litert_runner

    path = folder / "model_int8_moving_average.tflite"
    path.write_bytes(quantize_int8(fp32_tflite(job), job.representative, calibration="moving-average"))
    parity = compare("quantized", litert_runner(path)(job.val_x), job.torch_logits())
    return {"moving_average_top1_agreement": round(parity.top1_agreement, 4),
            "moving_average_max_abs_diff": round(parity.max_abs_diff, 4)}


RECOVERY = ("minmax", "percentile", "mse", "mixed16", "minmax+bc", "mixed16+bc", "qat")
"""The int8 options compared by --int8-recovery (edgenas.exporters.int8_options); ``+bc``: with
--int8-bias-correction (edgenas.exporters.bias_correction)."""


def train_spec(name: str, index: int, seed: int) -> tuple:
    """(spec, trained model, export job, training data) of model ``index`` of ``name``, as run_space makes them."""
    opts, data, epochs, val_fraction, _ = SPACES[name]
    space = get_space(name, **opts)
    ds = load_dataset(data, seed=0, val_fraction=val_fraction)
    spec = space.sample(index + 1, seed=seed)[index]
    task = data_task(space, Task(in_channels=ds.channels), ds)
    trained = train_final(space, spec, task, ds, epochs, seed=seed, hparams=TRAIN)
    rep, vx, vy = export_data(ds, trained.input_shape, seed, validation=256)
    job = ExportJob(trained.module, trained.input_shape, rep, vx, vy, ExportOptions(measure_latency=False),
                    info=ModelInfo(str(spec), name, ds.preprocessing(), tuple(ds.class_names)))
    return spec, trained, job, ds.train(trained.input_shape)


def int8_recovery(job: ExportJob, train_data: tuple, folder: Path, arena: bool = True) -> list[dict]:
    """Every int8 option of RECOVERY on one model through the tflite-int8 exporter (its own check: top-1
    agreement >= 98% with the model the file was made from, the fine-tuned one for qat), plus agreement
    with the original float model, accuracy, file size, TFLM arena (bisected) and build time. The options
    share the float conversion, the min/max statistics and the activation histograms (job cache)."""
    from edgenas.exporters.base import compare
    from edgenas.exporters.tflite import litert_runner
    from edgenas.exporters.tflm import measure_arena

    shared = {k: v for k, v in job.cache.items() if k.startswith("tflite-fp32")}
    rows = []
    for label in RECOVERY:
        mode, bc = label.removesuffix("+bc"), label.endswith("+bc")
        j = ExportJob(job.module, job.input_shape, job.representative, job.val_x, job.val_y,
                      ExportOptions(measure_latency=False, int8=mode, int8_bias_correction=bc), cache=dict(shared),
                      info=job.info, train_data=train_data if mode == "qat" else None)
        art = get_exporter("tflite-int8").export(j, folder, stem=f"model_int8_{label.replace('+', '_')}")
        shared.update({k: v for k, v in j.cache.items() if k.startswith(("tflite-fp32", "int8-minmax", "int8-hist"))})
        row = {"int8": label, "ok": art.ok, "error": art.error, "bytes": art.bytes,
               "build_s": round(art.build_seconds, 2), "accuracy": art.accuracy,
               "top1_agreement": art.parity.top1_agreement if art.parity else None}
        if art.path is not None and art.path.exists():
            out = litert_runner(art.path)(job.val_x)
            row["top1_agreement_original"] = compare("quantized", out, job.torch_logits()).top1_agreement
            if arena:
                t0 = time.perf_counter()
                try:
                    row["arena_bytes"] = measure_arena(art.path.read_bytes())["arena_bytes"]
                except Exception as exc:  # an op TFLM lacks (e.g. an int16 kernel): recorded, not fatal
                    row["arena_error"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:160]}"
                row["arena_s"] = round(time.perf_counter() - t0, 2)
        method = art.extra.get("int8_method", {})
        if "int16_ops" in method:
            row["int16_ops"] = [f"{o['op']} {o['tensor']}" for o in method["int16_ops"]]
            row["int16_activations"] = method.get("int16_activations")
            row["mixed16"] = {k: method.get(k) for k in ("int16_candidates", "representative_top1_agreement_minmax",
                                                         "representative_top1_agreement", "tried")}
        if "qat" in method:
            row["qat"] = method["qat"]
        if "bias_correction" in method:
            row["bias_correction"] = method["bias_correction"]
        rows.append(row)
        print(f"  int8 {label:10s} ok={art.ok} agree={row['top1_agreement']} orig={row.get('top1_agreement_original')} "
              f"acc={art.accuracy} {art.bytes} B arena={row.get('arena_bytes')} {art.build_seconds:.1f} s", flush=True)
    return rows


def run_recovery(models: list[tuple[str, int]], seed: int, out: Path, done: list[dict],
                 on_model: Callable[[list[dict]], None]) -> list[dict]:
    for name, index in models:
        t0 = time.perf_counter()
        spec, trained, job, train_data = train_spec(name, index, seed)
        print(f"{name} {index}: torch accuracy {trained.accuracy:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        rows = int8_recovery(job, train_data, out / name / f"{index:02d}", arena=True)
        done.append({"space": name, "index": index, "arch": str(spec), "torch_accuracy": trained.accuracy,
                     "train_s": round(trained.record["seconds"], 1), "options": rows, "cpu": machine()["cpu"]})
        on_model(done)
    return done


def recovery_markdown(rec: dict) -> list[str]:
    """The int8 recovery section of export.md."""
    def f(v: object, d: int = 3) -> str:
        return "-" if v is None else f"{v:.{d}f}" if isinstance(v, float) else str(v)

    lines = ["", "## int8 recovery: min/max vs percentile / MSE ranges vs mixed int16 vs bias correction vs QAT", "",
             f"Command: `{rec['command']}`" + (f" ({rec['note']})" if rec.get("note") else ""), "",
             "Each model retrained as above (same seeds), then one tflite-int8 file per option through the exporter. "
             "agree = top-1 agreement with the model the file was made from (the exporter's 98% check; for qat the "
             "fine-tuned model), agree orig = with the original float model, acc = the file's validation accuracy, "
             "arena = the minimal TFLM arena bisected (- with the reason when TFLM cannot run the file), build s = "
             "quantization (qat: fine-tuning + conversion + quantization) on the 2-core machine, loaded or idle as the "
             "runs' conditions above say.", "",
             "| space | model | torch acc | int8 | check | agree | agree orig | acc | KiB | arena KiB | build s "
             "| notes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in rec["models"]:
        for r in m["options"]:
            notes = []
            if r.get("int16_activations") == "all":
                notes.append("int16 activations on every op (no subset of ops reached 98%)")
            elif r.get("int16_ops"):
                notes.append(f"int16: {', '.join(r['int16_ops'])}")
            if r.get("bias_correction"):
                notes.append(f"bias correction on {r['bias_correction']['ops_corrected']} ops")
            if r.get("qat"):
                notes.append(f"{r['qat']['epochs']} epochs, {r['qat']['seconds']:.0f} s fine-tuning")
            if r.get("arena_error"):
                notes.append(f"TFLM: {r['arena_error']}")
            arena = f"{r['arena_bytes'] / 1024:.1f}" if r.get("arena_bytes") else "-"
            lines.append(f"| {m['space']} | {m['index']} | {f(m['torch_accuracy'])} | {r['int8']} | "
                         f"{'pass' if r['ok'] else 'FAIL'} | {f(r['top1_agreement'])} | "
                         f"{f(r.get('top1_agreement_original'))} | {f(r['accuracy'])} | {r['bytes'] / 1024:.1f} | "
                         f"{arena} | {f(r['build_s'], 1)} | {'; '.join(notes)} |")
    lines += ["", "Per option over the models above: models passing the check, min agreement, median KiB and arena "
              "KiB relative to min/max.", "", "| int8 | pass | min agree | min agree orig | size vs minmax | "
              "arena vs minmax |", "|---|---|---|---|---|---|"]
    for mode in RECOVERY:
        rs = [(m, r) for m in rec["models"] for r in m["options"] if r["int8"] == mode]
        if not rs:
            continue
        base = {(m["space"], m["index"]): r for m in rec["models"] for r in m["options"] if r["int8"] == "minmax"}
        size = [r["bytes"] / base[(m["space"], m["index"])]["bytes"] for m, r in rs
                if base.get((m["space"], m["index"]), {}).get("bytes") and r["bytes"]]
        ar = [r["arena_bytes"] / base[(m["space"], m["index"])]["arena_bytes"] for m, r in rs
              if r.get("arena_bytes") and base.get((m["space"], m["index"]), {}).get("arena_bytes")]
        agree = [r["top1_agreement"] for _, r in rs if r["top1_agreement"] is not None]
        orig = [r["top1_agreement_original"] for _, r in rs if r.get("top1_agreement_original") is not None]
        lines.append(f"| {mode} | {sum(r['ok'] for _, r in rs)}/{len(rs)} | {f(min(agree) if agree else None)} | "
                     f"{f(min(orig) if orig else None)} | "
                     f"{f(statistics.median(size)) if size else '-'} | {f(statistics.median(ar)) if ar else '-'} |")
    return lines


def tflite_chains(rows: list[dict]) -> list[dict]:
    """Per model, the TFLite formats built together: the int8 (and tflm) files reuse the fp32 conversion,
    so their own build time is quantization only; this row is the whole chain, what one model costs."""
    out = []
    for key in dict.fromkeys((r["space"], r["index"]) for r in rows):
        rs = [r for r in rows if (r["space"], r["index"]) == key and r["format"].startswith(("tflite", "tflm"))]
        if len(rs) > 1:
            out.append({**rs[0], "format": "+".join(r["format"] for r in rs), "ok": all(r["ok"] for r in rs),
                        "parity_passed": all(r["parity_passed"] for r in rs),
                        "build_s": round(sum(r["build_s"] for r in rs), 3), "size_ratio": None,
                        "max_abs_diff": None, "top1_agreement": None, "arena_ratio": None})
    return out


def summarise(rows: list[dict]) -> list[dict]:
    rows = rows + tflite_chains(rows)
    out = []
    for space in dict.fromkeys(r["space"] for r in rows):
        for fmt in dict.fromkeys(r["format"] for r in rows if r["space"] == space):
            rs = [r for r in rows if r["space"] == space and r["format"] == fmt]
            target = TARGET_S.get(fmt, TARGET_S["tflite"] if "+" in fmt else None)
            b = [r["build_s"] for r in rs if r["ok"]]
            ratios = [r["size_ratio"] for r in rs if r["size_ratio"]]
            arena = [r["arena_ratio"] for r in rs if r.get("arena_ratio")]
            moving = [r["moving_average_top1_agreement"] for r in rs
                      if r.get("moving_average_top1_agreement") is not None]
            out.append({
                "space": space, "format": fmt, "models": len(rs), "ok": sum(r["ok"] for r in rs),
                "parity_passed": sum(r["parity_passed"] for r in rs),
                "build_s_median": round(statistics.median(b), 2) if b else None, "build_s_max": max(b) if b else None,
                "target_s": target, "within_target": sum(x <= (target or 1e9) for x in b),
                "size_ratio_min": min(ratios) if ratios else None, "size_ratio_max": max(ratios) if ratios else None,
                "size_within_10pct": sum(abs(x - 1) <= 0.10 for x in ratios) if ratios else None,
                "max_abs_diff_max": max((r["max_abs_diff"] for r in rs if r["max_abs_diff"] is not None), default=None),
                "top1_agreement_min": min((r["top1_agreement"] for r in rs if r["top1_agreement"] is not None),
                                          default=None),
                "arena_ratio_min": min(arena) if arena else None, "arena_ratio_max": max(arena) if arena else None,
                "moving_average_top1_agreement_min": min(moving) if moving else None,
                "moving_average_passed": sum(x >= 0.98 for x in moving) if moving else None,
            })
    return out


def markdown(summary: list[dict], rows: list[dict], settings: dict, mach: dict) -> str:
    def f(v: object, d: int = 3) -> str:
        return "-" if v is None else f"{v:.{d}f}" if isinstance(v, float) else str(v)

    lines = ["# Export benchmark", "", f"Command: `{settings['command']}`", "",
             "Build time = conversion (+ quantization for int8; + arena bisection for tflm) per model; the int8 and "
             "tflm files reuse the fp32 conversion, so the `tflite+tflite-int8+tflm` row (the whole TFLite chain of "
             "one model) is what the 30 s target is held to; parity = "
             "float files max |diff| vs torch, int8 files top-1 agreement with torch, on the validation batch; size "
             "ratio = file bytes / the cost model's estimate (size_bytes_fp32 for float files, size_bytes_int8 for "
             "int8); arena ratio = the cost model's arena_bytes_tflm / the minimal arena bisected in TFLM.", "",
             "| space | format | ok | parity | build s median | build s max | target s | within target | "
             "size ratio min | size ratio max | within ±10% | max diff | min top-1 agree | arena ratio min..max |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        arena = f"{f(s['arena_ratio_min'])}..{f(s['arena_ratio_max'])}" if s["arena_ratio_min"] else "-"
        within = "-" if s["size_within_10pct"] is None else f"{s['size_within_10pct']}/{s['models']}"
        lines.append(f"| {s['space']} | {s['format']} | {s['ok']}/{s['models']} | {s['parity_passed']}/{s['models']} "
                     f"| {f(s['build_s_median'], 2)} | {f(s['build_s_max'], 2)} | {f(s['target_s'], 0)} | "
                     f"{s['within_target']}/{s['ok']} | {f(s['size_ratio_min'])} | {f(s['size_ratio_max'])} | "
                     f"{within} | {f(s['max_abs_diff_max'], 7)} | "
                     f"{f(s['top1_agreement_min'])} | {arena} |")
    int8 = [r for r in rows if r.get("moving_average_top1_agreement") is not None]
    if int8:
        lines += ["", "## int8 calibration: global min/max (the exporter) vs moving average (ai-edge-quantizer's "
                  "default)", "",
                  "The same fp32 file and representative set; top-1 agreement with torch and max |logit diff| on the "
                  "validation batch.", "",
                  "| space | model | accuracy (torch) | min/max agreement | moving-average agreement | "
                  "min/max max diff | moving-average max diff |", "|---|---|---|---|---|---|---|"]
        for r in int8:
            lines.append(f"| {r['space']} | {r['index']} | {f(r['torch_accuracy'])} | {f(r['top1_agreement'])} | "
                         f"{f(r['moving_average_top1_agreement'])} | {f(r['max_abs_diff'])} | "
                         f"{f(r['moving_average_max_abs_diff'])} |")
    if settings.get("int8_recovery"):
        lines += recovery_markdown(settings["int8_recovery"])
    failures = [r for r in rows if not r["ok"]]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {r['space']} {r['index']} {r['format']}: {r['error']}" for r in failures]
    if settings.get("note"):
        lines += ["", "## Notes", "", settings["note"]]
    lines += ["", "## Settings", ""] + [f"- {k}: {v}" for k, v in settings.items()
                                        if k not in ("note", "int8_recovery")]
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in mach.items()]
    return "\n".join(lines) + "\n"


def parse_models(text: str) -> list[tuple[str, int]]:
    """``mbv3:5,tiny:0-9`` -> [("mbv3", 5), ("tiny", 0), ...] (each once, in the order given)."""
    out: list[tuple[str, int]] = []
    for part in text.split(","):
        name, _, idx = part.strip().partition(":")
        lo, _, hi = idx.partition("-")
        for i in range(int(lo), int(hi or lo) + 1):
            if (name, i) not in out:
                out.append((name, i))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", type=int, default=10, help="random specs per space (default 10)")
    ap.add_argument("--spaces", default="tiny,mbv3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="keep the exported files in this folder")
    ap.add_argument("--merge", action="store_true",
                    help="keep the existing results' models of the spaces not run now (each row records its machine)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite results/export.md (and the summary in export.json) from the models in export.json")
    ap.add_argument("--note", default=None,
                    help="findings or conditions, recorded in the results (with --report-only: replaces them)")
    ap.add_argument("--int8-recovery", metavar="MODELS",
                    help="only the int8 recovery table, on these models (e.g. mbv3:5,tiny:0-9,mbv3:0-9); kept in "
                         "export.json beside the existing results, which are not re-run")
    ap.add_argument("--recovery-merge", action="store_true",
                    help="with --int8-recovery: keep the table's rows of the models not run now")
    ap.add_argument("--recovery-note", default=None, help="conditions of the --int8-recovery run, in the results")
    a = ap.parse_args()
    if a.int8_recovery:
        torch.set_num_threads(1)
        data = json.loads((RESULTS / "export.json").read_text())
        models = parse_models(a.int8_recovery)
        kept = [m for m in (data["settings"].get("int8_recovery") or {}).get("models", [])
                if a.recovery_merge and (m["space"], m["index"]) not in models]
        rec = {"command": "cd benchmarks && python export.py " + " ".join(sys.argv[1:]), "note": a.recovery_note,
               "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "models": []}
        prev = data["settings"].get("int8_recovery") or {}
        if kept:  # the rows kept came from the earlier command(s)
            rec["command"] = f"{prev.get('command')}`, then `{rec['command']}"
            rec["note"] = "; ".join(n for n in (prev.get("note"), a.recovery_note) if n)
        data["settings"]["int8_recovery"] = rec

        def save(models: list[dict]) -> None:
            rec["models"] = models
            rec["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            (RESULTS / "export.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
            (RESULTS / "export.md").write_text(markdown(data["summary"], data["models"], data["settings"],
                                                         data["machine"]))

        with tempfile.TemporaryDirectory() as tmp:
            run_recovery(models, a.seed, Path(a.keep) if a.keep else Path(tmp), kept, save)
        print((RESULTS / "export.md").read_text())
        return
    if a.report_only:
        data = json.loads((RESULTS / "export.json").read_text())
        data["summary"] = summarise(data["models"])
        if a.note is not None:
            data["settings"]["note"] = a.note
        (RESULTS / "export.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
        md = markdown(data["summary"], data["models"], data["settings"], data["machine"])
        (RESULTS / "export.md").write_text(md)
        print(md)
        return
    torch.set_num_threads(1)
    settings = {"specs_per_space": a.specs, "seed": a.seed, "spaces": {k: SPACES[k][:4] for k in a.spaces.split(",")},
                "train": TRAIN,
                "torch_threads": 1, "command": "cd benchmarks && python export.py " + " ".join(sys.argv[1:])}
    if a.note:
        settings["note"] = a.note
    done: list[dict] = []
    if (RESULTS / "export.json").exists():  # the int8 recovery table is its own run (--int8-recovery): kept
        recovery = json.loads((RESULTS / "export.json").read_text())["settings"].get("int8_recovery")
        if recovery:
            settings["int8_recovery"] = recovery
    if a.merge and (RESULTS / "export.json").exists():
        old = json.loads((RESULTS / "export.json").read_text())
        now = {k.strip() for k in a.spaces.split(",")}
        for r in old["models"]:
            if r["space"] not in now:
                r.setdefault("cpu", old.get("machine", {}).get("cpu", ""))
                done.append(r)
        settings["merged_from"] = old["settings"].get("command")

    def write(rows: list[dict], partial: bool) -> str:
        summary = summarise(rows)
        mach = machine()
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "export.json").write_text(json.dumps({"settings": settings, "partial": partial, "machine": mach,
                                                         "summary": summary, "models": rows}, indent=1,
                                                        default=str) + "\n")
        md = markdown(summary, rows, settings, mach)
        if partial:
            md = md.replace("\n\n", f"\n\n{PARTIAL_BANNER}\n\n", 1)
        (RESULTS / "export.md").write_text(md)
        return md

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.keep) if a.keep else Path(tmp)
        for name in a.spaces.split(","):
            rows = run_space(name.strip(), a.specs, a.seed, out, lambda rs, d=done: write(d + rs, partial=True))
            done.extend(rows)
    print(write(done, partial=False))


if __name__ == "__main__":
    main()
