"""From a search's run folder (or one arch string) to verified artifacts with model cards.

For each chosen model: final weights (trained on the run's dataset for ``train_epochs``, or loaded from
a state dict), then every requested format through its exporter (build, atomic write, verification in
the target runtime, accuracy, latency on this host), then ``model_card.json`` / ``model_card.md``.
A model or format that fails is recorded with its reason and the rest still export.

Folder layout: ``OUT/<model>/{weights.pt, model.onnx, model_fp32.tflite, model_int8.tflite,
model_tflm.{tflite,cc,h}, model_card.json, model_card.md}`` plus ``OUT/export.json`` (the summary).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgenas.errors import EdgenasError
from edgenas.estimators.base import spec_seed
from edgenas.estimators.trust import DEFAULT_SNR_DB, trust_report
from edgenas.exporters.base import Artifact, ExportJob, ExportOptions, get_exporter
from edgenas.exporters.card import model_card, model_card_markdown
from edgenas.exporters.metadata import ModelInfo
from edgenas.exporters.weights import export_data, inherit_from_supernet, load_weights, save_weights, train_final
from edgenas.fileio import atomic_write, ensure_writable_dir
from edgenas.jobs import ExportConfig, SpaceConfig, TaskConfig
from edgenas.spaces import ArchSpec, SearchSpace, Task

DEFAULT_FORMATS = ("onnx", "tflite", "tflite-int8")
WEIGHTS_FILE = "weights.pt"


@dataclass
class LatencyTarget:
    """A device of the run: its table's prediction for the model, and which format it times."""

    device: str
    predicted_ms: float | None
    format: str | None
    """The artifact format this device runs (``onnx`` for ONNX Runtime, ``tflite`` / ``tflite-int8``
    for LiteRT by the device's precision), or None when the device is not this host."""
    threads: int = 1
    runtime: str = ""
    runtime_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportRequest:
    """One model to export and what the search knew about it."""

    space: SearchSpace
    spec: ArchSpec
    task: Task
    name: str
    """Folder name (``trial_0022``, or the arch's short hash)."""
    trial: int | None = None
    estimate: dict[str, Any] = field(default_factory=dict)
    """The search's record for the spec (estimated accuracy, estimator, its cost)."""
    targets: list[LatencyTarget] = field(default_factory=list)
    weights: Path | None = None


@dataclass
class ModelExport:
    request: ExportRequest
    folder: Path
    artifacts: list[Artifact] = field(default_factory=list)
    error: str | None = None
    """Why the model itself failed (training, weights) before any format."""
    card: dict[str, Any] = field(default_factory=dict)
    trust: dict[str, Any] = field(default_factory=dict)
    """The trained torch model's trust metrics on the validation examples the artifacts are scored on
    (:func:`edgenas.estimators.trust.trust_report`; empty without labels)."""

    @property
    def ok(self) -> bool:
        return self.error is None and all(a.ok for a in self.artifacts)


# -- choosing models --------------------------------------------------------------------------------
def device_targets(config: dict[str, Any], row: dict[str, Any], devices_dir: str | None = None) -> list[LatencyTarget]:
    """The run's devices with the row's predicted latency and, for a device that is this host, the
    format that runs in its runtime."""
    from edgenas.latency import DeviceStore

    devices = [d for d in config.get("devices", []) if not d.get("csv")]
    store = DeviceStore(devices_dir)
    known = {d.name: d for d in store.devices()}
    out = []
    for d in devices:
        name = d["name"]
        key = "latency_ms" if len(config.get("devices", [])) == 1 else f"latency_ms@{name}"
        pred = row.get(key)
        spec = known.get(name)
        fmt = None
        if spec is not None and spec.local:
            if spec.runtime == "onnxruntime":
                fmt = "onnx"
            elif spec.runtime == "litert":
                fmt = "tflite-int8" if getattr(spec, "precision", "fp32") == "int8" else "tflite"
        out.append(LatencyTarget(name, float(pred) if isinstance(pred, (int, float)) else None, fmt,
                                 spec.threads if spec else 1, spec.runtime if spec else "",
                                 dict(spec.runtime_options) if spec else {}))
    return out


def requests_from_run(run_dir: Path, trials: str | list[int] = "pareto", devices_dir: str | None = None) -> tuple[
        list[ExportRequest], dict[str, Any]]:
    """The models to export from a finished run folder (``pareto`` = its feasible front, ``pareto:N`` = N of
    them spread along it, or trial numbers) and the run's resolved configuration."""
    from edgenas.search.fields import TRUST_FIELDS
    from edgenas.search.job import SearchJob
    from edgenas.search.runfolder import TRIALS_CSV, RunFolder

    folder = RunFolder(run_dir).require_finished("export")
    config = folder.config()
    job = SearchJob(config, devices_dir=devices_dir)
    if isinstance(trials, str) and (trials == "pareto" or trials.startswith("pareto:")):
        rows = folder.front()
        if not rows:
            raise EdgenasError(f"{run_dir} has an empty Pareto front (no feasible scored trial); pass --trials IDS")
        if trials != "pareto":
            rows = spread_along_front(rows, int(trials.split(":", 1)[1]))
    else:
        table = folder.trial_rows()
        missing = [t for t in trials if t not in table]
        if missing:
            raise EdgenasError(f"trial(s) {', '.join(map(str, missing))} not in {folder.file(TRIALS_CSV)} "
                               f"(it has {len(table)} trials)")
        rows = [table[t] for t in trials]
    out = []
    for r in rows:
        if not isinstance(r.get("arch"), str) or not r["arch"]:
            raise EdgenasError(f"trial {r.get('trial')} of {run_dir} has no arch (it failed or never ran); "
                               f"choose another with --trials")
        spec = job.space.parse(r["arch"])
        est = {k: r[k] for k in r if k == "accuracy" or k.startswith("estimat") or k in TRUST_FIELDS}
        out.append(ExportRequest(job.space, spec, job.task, f"trial_{int(r['trial']):04d}", int(r["trial"]), est,
                                 device_targets(config, r, devices_dir)))
    return out, config


def spread_along_front(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` of the front's models, evenly spaced in its order from most to least accurate (both ends kept;
    all of them when the front has no more than ``n``): a front of 11 becomes, for n = 4, its 1st, 4th, 8th
    and 11th most accurate models."""
    if len(rows) <= n:
        return list(rows)
    ranked = sorted(rows, key=lambda r: -float(r.get("accuracy") or 0.0))
    if n == 1:
        return ranked[:1]
    picks = sorted({round(i * (len(ranked) - 1) / (n - 1)) for i in range(n)})
    return [ranked[i] for i in picks]


def run_noise_snr_db(config: dict[str, Any]) -> float:
    """The SNR (dB) at which the run's estimator measured ``noisy_accuracy`` (its ``noise_snr_db`` option, a
    chain's expensive member's), else :data:`~edgenas.estimators.trust.DEFAULT_SNR_DB`: the card states the
    exported model's noisy accuracy at the SNR the search used."""
    opts = (config.get("estimator") or {}).get("options") or {}
    value = opts.get("noise_snr_db", (opts.get("expensive_options") or {}).get("noise_snr_db"))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else DEFAULT_SNR_DB


def run_dataset_source(config: dict[str, Any]) -> str | None:
    """The dataset the run's estimator trained or scored on (None for data-free estimators)."""
    est = config.get("estimator") or {}
    src = est.get("dataset") or (est.get("options") or {}).get("dataset")
    return str(src) if src else None


# -- exporting --------------------------------------------------------------------------------------
@dataclass
class ExportSettings:
    formats: Sequence[str] = DEFAULT_FORMATS
    train_epochs: int = 10
    seed: int = 0
    options: ExportOptions = field(default_factory=ExportOptions)
    dataset: str | None = None
    command: str = ""
    run_dir: str | None = None
    torch_device: str = "auto"
    supernet: str | None = None
    """A supernet checkpoint the models inherit their weights from (then fine-tuned ``train_epochs``)."""
    noise_snr_db: float = DEFAULT_SNR_DB
    """The SNR (dB) of the card's ``noisy_accuracy`` (the run estimator's ``noise_snr_db`` when it set one)."""


def export_models(
    requests: Sequence[ExportRequest], out_dir: Path, settings: ExportSettings,
    say: Callable[[str], None] | None = None,
) -> list[ModelExport]:
    """Export every request; returns one :class:`ModelExport` each (check ``.ok``)."""
    from edgenas.estimators.data import data_task, resolve_dataset

    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    exporters = [get_exporter(f) for f in settings.formats]
    dataset = resolve_dataset(settings.dataset) if settings.dataset else None
    results = []
    for i, req in enumerate(requests, 1):
        folder = out_dir / req.name
        result = ModelExport(req, folder)
        results.append(result)
        t0 = time.perf_counter()
        try:
            task = data_task(req.space, req.task, dataset) if dataset is not None else req.task
            if req.weights is not None:
                trained = load_weights(req.space, req.spec, task, req.weights, dataset)
            elif dataset is None:
                raise EdgenasError("no dataset to train on: pass --dataset (or --weights)")
            elif settings.supernet is not None:
                say(f"[{i}/{len(requests)}] {req.name}: {req.spec} from supernet {settings.supernet}, fine-tuned "
                    f"for {settings.train_epochs} epoch(s)")
                trained = inherit_from_supernet(req.space, req.spec, task, dataset, settings.supernet,
                                                settings.train_epochs, settings.seed,
                                                torch_device=settings.torch_device)
            else:
                say(f"[{i}/{len(requests)}] {req.name}: training {req.spec} for {settings.train_epochs} epoch(s)")
                trained = train_final(req.space, req.spec, task, dataset, settings.train_epochs, settings.seed,
                                      torch_device=settings.torch_device)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / WEIGHTS_FILE, save_weights(trained.module, folder / WEIGHTS_FILE))
        except EdgenasError as exc:
            result.error = str(exc)
            say(f"[{i}/{len(requests)}] {req.name}: FAILED: {exc}")
            continue
        rep, vx, vy = export_data(dataset, trained.input_shape, settings.seed)
        trained.record["preprocessing"] = dataset.preprocessing() if dataset is not None else None
        trained.record["class_names"] = list(dataset.class_names) if dataset is not None else None
        _write_sample(folder, vx, vy)
        if vy is not None:
            result.trust = trust_report(trained.module, vx, vy, settings.noise_snr_db,
                                        spec_seed(settings.seed, "trust:noise"))
        job = ExportJob(trained.module, trained.input_shape, rep, vx, vy, _options_for(settings.options, req),
                        info=ModelInfo(str(req.spec), req.space.name, trained.record["preprocessing"],
                                       tuple(trained.record["class_names"] or ())))
        if settings.options.int8 == "qat" and dataset is not None:
            job.train_data = dataset.train(trained.input_shape)
        for ex in exporters:
            job.options = _options_for(settings.options, req, ex.name)
            art = ex.export(job, folder)
            result.artifacts.append(art)
            say(f"[{i}/{len(requests)}] {req.name}: {_artifact_line(art)}")
        result.card = model_card(result, trained, settings, cost=req.space.cost(req.spec, task))
        try:
            atomic_write(folder / "model_card.json", (json.dumps(result.card, indent=1) + "\n").encode())
            atomic_write(folder / "model_card.md", model_card_markdown(result.card).encode())
        except OSError as exc:
            result.error = f"cannot write the model card: {exc}"
        say(f"[{i}/{len(requests)}] {req.name}: {'ok' if result.ok else 'FAILED'} in "
            f"{time.perf_counter() - t0:.1f} s -> {folder}")
    return results


@dataclass
class ExportResult:
    """What :func:`run_export` did: one :class:`ModelExport` per model, and where it wrote them."""

    out_dir: Path
    models: list[ModelExport]
    settings: ExportSettings

    @property
    def ok(self) -> bool:
        """Every model and format exported and verified."""
        return all(m.ok for m in self.models)


def run_export(
    cfg: ExportConfig, *, run_dir: str | Path | None = None, space: SpaceConfig | None = None,
    arch: str | None = None, task: TaskConfig | None = None, weights: str | Path | None = None,
    measure_latency: bool = True, devices_dir: str | None = None, command: str = "", verbose: bool = False,
    say: Callable[[str], None] | None = None,
) -> ExportResult:
    """The export job: a run folder's front (or ``cfg.trials``), or one ``arch`` of ``space``; each model
    trained (or loaded from ``weights``), exported in every format, verified, and given a model card.
    Input problems raise :class:`EdgenasError` before any work; a model or format that fails is recorded
    in the result (``.ok`` False) and the others still export."""
    import torch

    from edgenas.latency.runtimes.base import file_stem
    from edgenas.torchdevice import resolve_device

    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    cfg.check_formats()
    resolve_device(cfg.torch_device)  # a GPU this machine lacks is one line, before any work
    torch.set_num_threads(cfg.threads)
    supernet = cfg.supernet_path()
    if weights is not None and supernet is not None:
        raise EdgenasError("give either --weights or --init supernet:PATH, not both")
    if supernet is not None:
        from edgenas.supernet.train import read_checkpoint

        read_checkpoint(supernet)  # not a checkpoint: one line, before any output
    dataset = cfg.dataset
    snr_db = DEFAULT_SNR_DB
    if run_dir is not None:
        if space is not None or arch is not None:
            raise EdgenasError("give either a run folder or a space and an arch, not both")
        requests, config = requests_from_run(Path(run_dir), cfg.trials, devices_dir)
        dataset = dataset or run_dataset_source(config)
        snr_db = run_noise_snr_db(config)
        out_dir = Path(cfg.out) if cfg.out else Path(run_dir) / "export"
    else:
        if space is None or not arch:
            raise EdgenasError("export needs a run folder, or a space and an arch (with an output folder)")
        if not cfg.out:
            raise EdgenasError("exporting one arch needs an output folder (--out DIR)")
        sp = space.build()
        spec = sp.parse(arch)
        requests = [ExportRequest(sp, spec, (task or TaskConfig()).task(), f"{sp.name}-{file_stem(str(spec))[:10]}")]
        out_dir = Path(cfg.out)
        if dataset is None and not weights:
            if sp.name != "tiny":
                raise EdgenasError("an arch without weights is trained: give a dataset (e.g. digits, a folder, an "
                                   ".npz)")
            dataset = "digits"
    inherit = all(getattr(r.space, "inherits_weights", False) for r in requests)
    if cfg.train_epochs < 1 and not weights and supernet is None and not inherit:
        raise EdgenasError("train_epochs must be >= 1 to train the models (or give weights, or --init supernet:PATH, "
                           "to export as they are)")
    if weights is not None:
        wpath = Path(weights)
        if not wpath.is_file():
            raise EdgenasError(f"weights {str(wpath)!r} not found")
        if len(requests) != 1:
            raise EdgenasError(f"weights fit one model, but {len(requests)} are chosen; choose one trial")
        req = requests[0]
        from edgenas.estimators.data import data_task, resolve_dataset
        from edgenas.exporters.weights import check_weights

        task_now = data_task(req.space, req.task, resolve_dataset(dataset)) if dataset else req.task
        check_weights(req.space, req.spec, task_now, wpath)  # a bad file is one line, before any output
        req.weights = wpath
    if cfg.int8 == "qat" and dataset is None and {"tflite-int8", "tflm"} & set(cfg.formats):
        raise EdgenasError("--int8 qat fine-tunes on the training split: give the dataset (--dataset)")
    ensure_writable_dir(out_dir, "export folder")
    options = ExportOptions(nhwc=cfg.nhwc, int8_io=not cfg.float_io, opset=cfg.opset,
                            measure_latency=measure_latency, verbose=verbose, int8=cfg.int8,
                            int8_sensitivity=cfg.int8_sensitivity, qat_epochs=cfg.qat_epochs,
                            int8_bias_correction=cfg.int8_bias_correction,
                            torch_device=cfg.torch_device)
    settings = ExportSettings(cfg.formats, cfg.train_epochs, cfg.seed, options, dataset, command,
                              str(run_dir) if run_dir is not None else None, cfg.torch_device, supernet, snr_db)
    say(f"exporting {len(requests)} model(s) as {', '.join(cfg.formats)} to {out_dir}")
    models = export_models(requests, out_dir, settings, say)
    atomic_write(out_dir / "export.json", json.dumps(summary_json(models, settings), indent=1) + "\n")
    return ExportResult(out_dir, models, settings)


def export_report(result: ExportResult) -> str:
    """For people: one row per model (each format's KiB, host latency and accuracy, or the first
    problem), then how many verified and where the cards and failures are."""
    rows = []
    for r in result.models:
        row: dict[str, str] = {"model": r.request.name, "ok": "yes" if r.ok else "NO"}
        problem = r.error
        for a in r.artifacts:
            if a.ok:
                row[f"{a.format} KiB"] = f"{a.bytes / 1024:.1f}"
                if a.latency_ms is not None:
                    row[f"{a.format} ms"] = f"{a.latency_ms:.4g}"
                if a.accuracy is not None:
                    row[f"{a.format} acc"] = f"{a.accuracy:.4f}"
                if "tflm_arena_bytes" in a.extra:
                    row["arena KiB"] = f"{a.extra['tflm_arena_bytes'] / 1024:.1f}"
            elif problem is None:
                problem = f"{a.format}: {a.error}"
        if problem:
            row["problem"] = problem
        rows.append(row)
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols and k != "problem"]
    if any("problem" in row for row in rows):
        cols.append("problem")
    widths = {c: max(len(c), *(len(row.get(c, "-")) for row in rows)) for c in cols}
    lines = ["  ".join(c.rjust(widths[c]) if c != "problem" else c for c in cols)]
    for row in rows:
        lines.append("  ".join(row.get(c, "-").rjust(widths[c]) if c != "problem" else row.get(c, "")
                               for c in cols).rstrip())
    ok = sum(m.ok for m in result.models)
    n = len(result.models)
    lines.append(f"\n{ok} of {n} model(s) exported and verified; cards: {result.out_dir}/*/model_card.md"
                 + ("" if ok == n else f"; failures are listed in {result.out_dir / 'export.json'}"))
    return "\n".join(lines)


SAMPLE_FILE = "sample_input.npy"


def _write_sample(folder: Path, vx: Any, vy: Any) -> None:
    """One preprocessed validation example (float32, C x H x W) and its label, for the examples/
    scripts and for a first on-device check."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(vx[0], dtype=np.float32))
    atomic_write(folder / SAMPLE_FILE, buf.getvalue())
    label = int(vy[0]) if vy is not None else None
    atomic_write(folder / "sample_label.json", (json.dumps({"label": label}) + "\n").encode())


def _options_for(base: ExportOptions, req: ExportRequest, fmt: str | None = None) -> ExportOptions:
    """Time each format as the run's device that runs it (threads, runtime options) when there is one."""
    target = next((t for t in req.targets if t.format == fmt), None) if fmt else None
    if target is None:
        return base
    opts = {**base.runtime_options, target.runtime: target.runtime_options}
    return ExportOptions(**{**base.__dict__, "threads": target.threads, "runtime_options": opts})


def _artifact_line(a: Artifact) -> str:
    if not a.ok:
        return f"{a.format}: FAILED: {a.error}"
    p = a.parity
    check = (f"max |diff| {p.max_abs_diff:.1e}" if p and p.kind == "exact" else
             f"top-1 agreement {p.top1_agreement:.1%}" if p else "")
    acc = f", accuracy {a.accuracy:.4f}" if a.accuracy is not None else ""
    lat = f", {a.latency_ms:.4f} ms" if a.latency_ms is not None else ""
    arena = f", arena {a.extra['tflm_arena_bytes']} B" if "tflm_arena_bytes" in a.extra else ""
    return f"{a.format}: {a.bytes:,} B, {check}{acc}{lat}{arena} ({a.seconds:.1f} s)"


def summary_json(results: Sequence[ModelExport], settings: ExportSettings) -> dict[str, Any]:
    return {
        "command": settings.command, "run_dir": settings.run_dir, "formats": list(settings.formats),
        "models": [{"name": r.request.name, "arch": str(r.request.spec), "folder": str(r.folder), "ok": r.ok,
                    "error": r.error, "failed_formats": {a.format: a.error for a in r.artifacts if not a.ok}}
                   for r in results],
    }
