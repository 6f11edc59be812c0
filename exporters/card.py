"""The model card: everything a deployer needs to trust, reproduce and budget one exported model.

``model_card.json`` holds: ``arch`` (canonical), ``files`` (one entry per file: ``path`` relative to the
card, ``format``, ``bytes``, ``sha256``), the cost model's numbers (MACs, params, size and peak-RAM
estimates, ``arena_bytes_tflm``), each artifact's real size next to its estimate, ``tflm_arena_bytes``
(measured), predicted latency per device next to each artifact's measured latency on this host,
estimated (search) and measured (torch, each artifact) accuracy, the trust metrics (worst-class accuracy,
calibration error, accuracy under input noise; the int8 file's accuracy), parity, input/output details,
dataset split and training settings, seeds, library versions, and the command that reproduces it.
``model_card.md`` is the same for a person.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgenas.exporters.pipeline import ExportSettings, ModelExport
    from edgenas.exporters.weights import TrainedModel
    from edgenas.spaces.base import CostReport

VERSIONED = ("edgenas", "torch", "numpy", "onnx", "onnxruntime", "onnxscript", "ai-edge-litert", "litert-torch",
             "ai-edge-quantizer", "tflite-micro")
CARD_VERSION = 1
INT8_FORMATS = ("tflite-int8", "tflm")
"""Formats holding the int8 model; the first one exported gives the card's ``int8_accuracy``."""


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in VERSIONED:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def model_card(
    result: ModelExport, trained: TrainedModel, settings: ExportSettings, cost: CostReport
) -> dict[str, Any]:
    req = result.request
    folder = result.folder
    cost_rec = cost.as_record()
    files = [{"path": "weights.pt", "format": "pytorch-state-dict", "bytes": (folder / "weights.pt").stat().st_size,
              "sha256": _sha(folder / "weights.pt")}] if (folder / "weights.pt").exists() else []
    for extra, fmt in (("sample_input.npy", "numpy-sample"), ("sample_label.json", "sample-label")):
        if (folder / extra).exists():
            files.append({"path": extra, "format": fmt, "bytes": (folder / extra).stat().st_size,
                          "sha256": _sha(folder / extra)})
    artifacts = []
    for a in result.artifacts:
        entry: dict[str, Any] = {"format": a.format, "ok": a.ok, "runtime": a.runtime,
                                 "seconds": round(a.seconds, 3), "build_seconds": round(a.build_seconds, 3)}
        if a.error:
            entry["error"] = a.error
        if a.path is not None and a.path.exists():
            files.append({"path": a.path.name, "format": a.format, "bytes": a.bytes, "sha256": a.sha256})
            entry["path"] = a.path.name
            entry["bytes"] = a.bytes
            from edgenas.exporters.base import get_exporter

            field = get_exporter(a.format).size_field
            est = cost_rec.get(field)
            if est:
                entry["size_estimate"] = {"field": field, "bytes": est, "ratio": round(a.bytes / est, 4)}
        for p in a.companions:
            if p.exists():
                files.append({"path": p.name, "format": f"{a.format}-source", "bytes": p.stat().st_size,
                              "sha256": _sha(p)})
        if a.parity is not None:
            entry["parity"] = a.parity.as_dict()
        entry["accuracy"] = a.accuracy
        entry["latency_ms"] = a.latency_ms
        entry.update(a.extra)
        if "xnnpack" in a.extra:  # measured in the file; the cost model's prediction beside it
            prec = "int8" if a.format == "tflite-int8" else "fp32"
            entry["xnnpack"] = {**a.extra["xnnpack"],
                                "predicted_partitions": cost_rec.get(f"delegate_partitions_{prec}")}
        artifacts.append(entry)
    latency = []
    for t in req.targets:
        art = next((a for a in result.artifacts if a.format == t.format and a.ok), None)
        row: dict[str, Any] = {"device": t.device, "predicted_ms": t.predicted_ms, "format": t.format}
        if art is not None and art.latency_ms is not None:
            row["measured_ms"] = art.latency_ms
            row["threads"] = t.threads
            if t.predicted_ms:
                row["measured_over_predicted"] = round(art.latency_ms / t.predicted_ms, 4)
        latency.append(row)
    tflm = next((a for a in result.artifacts if a.format == "tflm" and a.ok), None)
    card = {
        "card_version": CARD_VERSION,
        "name": req.name,
        "arch": str(req.spec),
        "space": req.space.name,
        "source_model": _source_model(req.space, req.spec),
        "task": {"num_classes": trained.num_classes, "input_shape": list(trained.input_shape)},
        "trial": req.trial,
        "run_dir": settings.run_dir,
        "ok": result.ok,
        "files": files,
        "cost": cost_rec,
        "tflm_arena_bytes": tflm.extra.get("tflm_arena_bytes") if tflm else None,
        "artifacts": artifacts,
        "latency": {"predicted_by_device": latency,
                    "measured_on_host": {a.format: a.latency_ms for a in result.artifacts if a.latency_ms is not None},
                    "host": platform.processor() or platform.machine()},
        "accuracy": {"estimated": req.estimate.get("accuracy"), "estimator": req.estimate.get("estimator"),
                     "estimate_record": {k: v for k, v in req.estimate.items() if k != "accuracy"},
                     "inherited": trained.record.get("inherited_accuracy"),
                     "torch": trained.accuracy,
                     "artifacts": {a.format: a.accuracy for a in result.artifacts if a.accuracy is not None},
                     "trust": _trust(result)},
        "training": {k: v for k, v in trained.record.items() if k not in ("preprocessing", "class_names")},
        "preprocessing": trained.record.get("preprocessing"),
        "class_names": trained.record.get("class_names"),
        "sample": _sample(folder),
        "seeds": {"export": settings.seed, "spec": trained.record.get("seed")},
        "options": {k: v for k, v in settings.options.__dict__.items() if k != "verbose"},
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": settings.command,
    }
    return card


def _source_model(space: Any, spec: Any) -> dict[str, Any] | None:
    """For a member of a space derived from a user's model (``--model``): the source and, per group of
    coupled channels, the channels kept (and the residual blocks dropped)."""
    describe = getattr(space, "describe_source", None)
    if describe is None:
        return None
    return {**describe(), "kept": space.kept_channels(spec)}


def _trust(result: ModelExport) -> dict[str, Any] | None:
    """The trust metrics (:mod:`edgenas.estimators.trust`): the trained torch model's worst-class accuracy,
    calibration error (ECE, 15 bins) and accuracy under Gaussian input noise at the stated SNR, and the
    int8 file's accuracy and worst-class accuracy, all on the same validation examples (None without
    labels)."""
    if not result.trust:
        return None
    out: dict[str, Any] = {**result.trust}
    int8 = next((a for a in result.artifacts if a.format in INT8_FORMATS and a.accuracy is not None), None)
    if int8 is not None:
        out.update(int8_format=int8.format, int8_accuracy=int8.accuracy,
                   int8_worst_class_accuracy=int8.extra.get("worst_class_accuracy"))
    return out


def _sample(folder: Any) -> dict[str, Any] | None:
    import json

    from edgenas.exporters.pipeline import SAMPLE_FILE

    if not (folder / SAMPLE_FILE).exists():
        return None
    label = json.loads((folder / "sample_label.json").read_text()).get("label")
    return {"path": SAMPLE_FILE, "label": label, "note": "one preprocessed validation example, float32 C x H x W"}


def _sha(path: Any) -> str:
    from edgenas.exporters.base import sha256_of

    return sha256_of(path)


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return f"{v}{unit}"


def _int8_lines(a: dict[str, Any]) -> list[str]:
    """How an int8 artifact was made (``--int8``) and its most sensitive ops (``--int8-sensitivity``)."""
    out = []
    m = a.get("int8_method")
    if m and m.get("method") != "minmax":
        text = f"{a['format']} made with --int8 {m['method']}"
        if m.get("int16_ops") is not None:
            ops = ", ".join(f"{o['op']} {o['tensor']}" for o in m["int16_ops"]) or "none needed"
            agree = _fmt(m.get("representative_top1_agreement"))
            text += f": int16 activations on {ops} (representative agreement {agree})"
        if m.get("qat"):
            q = m["qat"]
            text += (f": {q['epochs']} epoch(s) of quantization-aware fine-tuning at lr {q['lr']:g}; checked "
                     f"against the fine-tuned model, top-1 agreement of the fine-tuned with the original model "
                     f"{q['top1_agreement_with_original']:.1%}")
        out += ["", text + "."]
    s = a.get("int8_sensitivity")
    if s and s.get("layers"):
        out += ["", f"int8 sensitivity ({a['format']}; each op quantized alone, {s['examples']} representative images, "
                    "relative RMS logit error):", "", "| op | tensor | position | logit error | top-1 agree |",
                "|---|---|---|---|---|"]
        out += [f"| {r['op']} | {r['tensor']} | {r['position']} | {r['logit_error']:.4f} | {r['top1_agreement']:.3f} |"
                for r in s["layers"]]
    return out


def _trust_lines(t: dict[str, Any] | None) -> list[str]:
    """The trust metrics for a person: one paragraph under the accuracy."""
    if not t:
        return []
    text = (f"Trust, on {t['examples']} validation examples: the trained model's accuracy {_fmt(t.get('accuracy'))}, "
            f"worst-class accuracy {_fmt(t.get('worst_class_accuracy'))}, calibration error (ECE, 15 bins) "
            f"{_fmt(t.get('calibration_error'))}, accuracy under Gaussian input noise at {t['noise_snr_db']:g} dB SNR "
            f"{_fmt(t.get('noisy_accuracy'))}")
    if t.get("int8_format"):
        text += (f"; the int8 file ({t['int8_format']}): accuracy {_fmt(t.get('int8_accuracy'))}, worst-class "
                 f"accuracy {_fmt(t.get('int8_worst_class_accuracy'))}")
    return [text + ".", ""]


def _source_lines(src: dict[str, Any] | None) -> list[str]:
    if not src:
        return []
    kept = ", ".join(f"`{k}` {v}" for k, v in src["kept"].items())
    return [f"Compressed from `{src['model']}` (hash {src['hash']}, {src['params']:,} parameters, weights: "
            f"{src['weights']}). Channels kept per coupled group (root layer: kept/total) and dropped blocks: "
            f"{kept}.", ""]


def model_card_markdown(card: dict[str, Any]) -> str:
    c = card["cost"]
    lines = [f"# Model card: {card['name']}", "", f"`{card['arch']}`", "",
             f"Space `{card['space']}`, input {card['task']['input_shape']} (C, H, W), "
             f"{card['task']['num_classes']} classes. Status: {'verified' if card['ok'] else 'INCOMPLETE'}.", "",
             *_source_lines(card.get("source_model")),
             "## Cost model", "",
             f"MACs {_fmt(c.get('macs'))}, params {_fmt(c.get('params'))}, "
             f"size fp32 {_fmt(c.get('size_bytes_fp32'))} B, "
             f"size int8 {_fmt(c.get('size_bytes_int8'))} B, peak RAM int8 {_fmt(c.get('peak_ram_bytes_int8'))} B"
             + (f", TFLM arena (estimate) {_fmt(c.get('arena_bytes_tflm'))} B" if c.get("arena_bytes_tflm") else "")
             + ".", "",
             "## Artifacts", "",
             "| format | file | bytes | size vs estimate | parity | accuracy | latency ms (this host) |",
             "|---|---|---|---|---|---|---|"]
    for a in card["artifacts"]:
        p = a.get("parity") or {}
        parity = ("-" if not p else f"max diff {p['max_abs_diff']:.1e}" if p["kind"] == "exact"
                  else f"top-1 agree {p['top1_agreement']:.1%}") + ("" if a["ok"] else f" FAILED: {a.get('error')}")
        est = a.get("size_estimate")
        size = f"{est['ratio']:.3f} x {est['field']}" if est else "-"
        lines.append(f"| {a['format']} | {a.get('path', '-')} | {_fmt(a.get('bytes'))} | {size} | {parity} | "
                     f"{_fmt(a.get('accuracy'))} | {_fmt(a.get('latency_ms'))} |")
    for a in card["artifacts"]:
        x = a.get("xnnpack")
        if x:
            off = ", ".join(f"{n} x{k}" for n, k in x["off_ops"].items()) or "none"
            lines += ["", f"{a['format']} in LiteRT with XNNPACK: {x['partitions']} delegate partition(s) "
                          f"(predicted {_fmt(x.get('predicted_partitions'))}), {x['ops_off_delegate']} of "
                          f"{x['ops_total']} ops on the built-in kernels ({off})."]
    for a in card["artifacts"]:
        lines += _int8_lines(a)
    if card.get("tflm_arena_bytes"):
        lines += ["", f"TFLite Micro: minimal arena {card['tflm_arena_bytes']:,} B (bisected in the TFLM interpreter)."]
    lat = card["latency"]["predicted_by_device"]
    if lat:
        lines += ["", "## Latency", "", "| device | predicted ms | artifact | measured ms | measured / predicted |",
                  "|---|---|---|---|---|"]
        for r in lat:
            lines.append(f"| {r['device']} | {_fmt(r['predicted_ms'])} | {r.get('format') or '-'} | "
                         f"{_fmt(r.get('measured_ms'))} | {_fmt(r.get('measured_over_predicted'))} |")
    acc = card["accuracy"]
    origin = ("the pruned source model" if card["training"].get("source") == "pruned"
              else f"the supernet {card['training'].get('supernet')}")
    inherited = (f"inherited from {origin} (BatchNorm re-estimated): {_fmt(acc['inherited'])}; "
                 if acc.get("inherited") is not None else "")
    lines += ["", "## Accuracy", "",
              f"Estimated during the search: {_fmt(acc['estimated'])} ({acc.get('estimator') or '-'}); "
              + inherited + f"torch after final training: {_fmt(acc['torch'])}; "
              + ", ".join(f"{k} {_fmt(v)}" for k, v in acc["artifacts"].items()) + ".", ""]
    lines += _trust_lines(acc.get("trust"))
    tr = card["training"]
    lines += ["## Training", ""] + [f"- {k}: {v}" for k, v in tr.items()]
    if card.get("preprocessing"):
        lines += ["", "## Input preprocessing", ""] + [f"- {k}: {v}" for k, v in card["preprocessing"].items()]
    io = next((a for a in card["artifacts"] if a.get("input", {}).get("dtype") == "int8"), None)
    if io:
        i, o = io["input"], io["output"]
        lines += ["", f"int8 I/O ({io['format']}): input q = round(x / {i['scale']:.6g}) + {i['zero_point']}, "
                      f"output x = (q - {o['zero_point']}) * {o['scale']:.6g}."]
    lines += ["", "## Files", "", "| path | format | bytes | sha256 |", "|---|---|---|---|"]
    lines += [f"| {f['path']} | {f['format']} | {f['bytes']:,} | `{f['sha256']}` |" for f in card["files"]]
    lines += ["", "## Reproduce", "", f"```\n{card['command']}\n```", "", "## Versions", ""]
    lines += [f"- {k}: {v}" for k, v in card["versions"].items()]
    return "\n".join(lines) + "\n"
