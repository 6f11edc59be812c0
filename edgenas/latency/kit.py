"""On-device profiling kits: micro-models + manifest + the standalone runner, and importing results.

``write_kit`` exports every unit of a space (and a few whole networks, for fitting the device model
on the board) in the device's runtime format, copies ``runner.py`` beside them and writes
``manifest.json``. On the board: ``python3 runner.py KIT_DIR``. With ``runner="native"`` it also writes
the device script and adb wrapper that time the models with the runtime's own benchmark tool
(:mod:`edgenas.latency.native`). Back on the host, ``import_kit`` turns a ``results.json`` or the
native tools' raw logs into a validated latency table.
"""

from __future__ import annotations

import json
import shutil
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

from edgenas.errors import EdgenasError
from edgenas.latency.devices import DeviceSpec
from edgenas.latency.features import spec_features
from edgenas.latency.profile import Progress, _keyed, export_units, network_unit
from edgenas.latency.runtimes import get_runtime
from edgenas.latency.table import Entry, LatencyTable
from edgenas.latency.validate import CONTEXT_FEATURES, fit_device_model, latency_metrics
from edgenas.spaces import ArchSpec, SearchSpace, Task

KIT_FORMAT = "edgenas-kit"
RESULTS_FORMAT = "edgenas-kit-results"


RUNNERS = ("python", "native")


def write_kit(
    device: DeviceSpec, space: SearchSpace, out_dir: Path, networks: list[ArchSpec], task: Task | None = None,
    specs: list[ArchSpec] | None = None, jobs: int = 2, show_progress: bool | None = None,
    runner: str = "python", warmup: int = 10, repeats: int = 50, max_seconds: float = 10.0,
) -> dict[str, Any]:
    """Write a kit for ``device`` covering the units of ``specs`` (default: the whole space).
    ``runner="native"`` adds the native benchmark-tool scripts (the Python runner is always included)."""
    from edgenas.latency import native

    if runner not in RUNNERS:
        raise EdgenasError(f"unknown kit runner {runner!r}; choose {' or '.join(RUNNERS)}")
    settings = native.native_settings(device, warmup, repeats, max_seconds) if runner == "native" else None
    runtime = get_runtime(device.runtime, device.threads, device.runtime_options)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "manifest.json").exists():
        raise EdgenasError(f"kit folder {str(out_dir)!r} exists and is not a kit; choose an empty or new folder")
    models = out_dir / "models"
    units: dict[str, Any] = {}
    base = specs if specs is not None else space.covering_specs()
    for s in [*base, *networks]:  # the networks' own units too, so the device model can be fitted
        for u in space.units(s, task):
            units.setdefault(u.key, u)
    nets = {str(s): network_unit(space, s, task) for s in networks}
    total = len(units) + len(nets)
    bar = Progress(total, "export", show_progress)
    unit_paths = export_units(runtime, list(units.values()), models, jobs, bar)
    net_paths = export_units(runtime, _keyed(list(nets.items())), models, jobs, bar) if nets else {}
    manifest = {
        "format": KIT_FORMAT,
        "version": 1,
        "kit_id": uuid.uuid4().hex[:12],
        "device": device.name,
        "space": space.name,
        "runtime": device.runtime,
        "threads": device.threads,
        "runtime_options": device.runtime_options,
        "exported_with": runtime.describe(),
        "entries": [{"key": k, "file": str(p.relative_to(out_dir))} for k, p in unit_paths.items()],
        "networks": [
            {"key": k, "file": str(net_paths[k].relative_to(out_dir)), "units": [u.key for u in space.units(s, task)],
             "features": spec_features(list(CONTEXT_FEATURES), space, s, task)}
            for k, s in ((str(s), s) for s in networks)
        ],
        "runner": runner,
    }
    if settings is not None:
        manifest["native"] = settings.to_json()
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    runner_py = resources.files("edgenas.devices") / "runner.py"
    shutil.copyfile(str(runner_py), out_dir / "runner.py")
    text = (f"edgenas profiling kit for device {device.name}, space {space.name} ({len(unit_paths)} units, "
            f"{len(net_paths)} networks).\n\nOn a board with Python 3.8+, numpy, and {device.runtime}:\n"
            f"    python3 runner.py .            # writes results.json\n"
            f"then on the host:\n    edgenas lut import-kit results.json\n")
    if settings is not None:
        native.write_native_scripts(out_dir, manifest, settings)
        text += (f"\nWithout Python, with {settings.tool} ({settings.threads} thread(s): "
                 f"{' '.join(settings.args)}):\n"
                 f"    sh native_adb.sh --tool /path/to/{settings.tool}   # Android, from this host (adb)\n"
                 f"    sh native_runner.sh .                              # or on the device itself\n"
                 f"Raw logs land in logs/; then on the host:\n    edgenas lut import-kit <this folder>\n")
    (out_dir / "README.txt").write_text(text)
    return manifest


def import_kit(path: Path) -> LatencyTable:
    """A latency table from a kit's results: a runner's ``results.json``, or a native kit's raw tool
    logs (``path`` is the kit folder, its ``manifest.json`` or its ``logs/`` folder). With >= 10 timed
    networks the device model is fitted on half of them and validated on the other half (then refitted
    on all). Any bad input raises before anything is written."""
    data, origin = load_results(Path(path))
    return table_from_results(data, origin)


def load_results(path: Path) -> tuple[dict[str, Any], str]:
    """The kit results behind ``path`` (see :func:`import_kit`) and a name for messages. A native kit's
    logs are parsed into the same results format (plus per-operator profiles)."""
    from edgenas.latency import native

    path = Path(path)
    if path.is_dir() or path.name == "manifest.json":
        kit_dir, log_dir = (path if path.is_dir() else path.parent), None
        if path.is_dir() and path.name == native.LOG_DIR and (path.parent / "manifest.json").exists():
            kit_dir, log_dir = path.parent, path
        manifest_path = kit_dir / "manifest.json"
        if not manifest_path.exists():
            if (kit_dir / "results.json").exists():
                return load_results(kit_dir / "results.json")
            raise EdgenasError(f"{str(path)!r} is not a kit folder (no manifest.json)")
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            raise EdgenasError(f"{str(manifest_path)!r} is not valid JSON") from None
        if not isinstance(manifest, dict) or manifest.get("format") != KIT_FORMAT:
            raise EdgenasError(f"{str(manifest_path)!r} is not an edgenas kit manifest")
        if manifest.get("runner") != "native":
            if (kit_dir / "results.json").exists():
                return load_results(kit_dir / "results.json")
            raise EdgenasError(f"kit {str(kit_dir)!r} has no results.json yet; run 'python3 runner.py' on the board")
        return native.results_from_logs(kit_dir, manifest, log_dir), str(kit_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgenasError(f"kit results {str(path)!r} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EdgenasError(f"kit results {str(path)!r} are not valid JSON") from None
    return data, str(path)


def table_from_results(data: Any, origin: str) -> LatencyTable:
    """The validated table of kit results (:func:`import_kit`)."""
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise EdgenasError(f"{origin!r} is not an edgenas kit results file (runner.py output)")
    for key in ("device", "space", "runtime", "entries"):
        if key not in data:
            raise EdgenasError(f"kit results {origin!r} lack {key!r}")
    try:
        entries = {k: Entry(float(v["mean_ms"]), float(v["std_ms"]), float(v["p50_ms"]), int(v["n"]))
                   for k, v in data["entries"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise EdgenasError(f"kit results {origin!r} have a malformed entry") from None
    table = LatencyTable(device=data["device"], space=data["space"], runtime=data["runtime"], entries=entries,
                         host=data.get("host", {}), source=f"kit:{data.get('kit')}")
    if data.get("host", {}).get("runner") == "native":
        statistic = data.get("protocol", {}).get("statistic")
        table.notes = (f"imported from {data['host'].get('tool')} raw logs ({statistic})"
                       + ("; per-operator profiles parsed" if data.get("op_profiles") else ""))
    nets = data.get("networks") or {}
    units = data.get("network_units") or {}
    keys = [k for k in nets if units.get(k) and not table.missing(units[k])]
    # context features of each network, as the kit recorded them (kits from before they existed: none)
    feats = data.get("network_features") or {}
    with_feats = bool(keys) and all(isinstance(feats.get(k), dict) and feats[k] for k in keys)

    def fit(ks: list[str]) -> None:
        table.model = fit_device_model([table.sum_ms(units[k]) for k in ks], [len(units[k]) for k in ks],
                                       [nets[k]["p50_ms"] for k in ks], [feats[k] for k in ks] if with_feats else None)

    if len(keys) >= 10:
        half = len(keys) // 2
        cal, val = keys[:half], keys[half:]
        fit(cal)
        predicted = [table.predict_ms(units[k], feats.get(k)) for k in val]
        table.validation = {**latency_metrics(predicted, [nets[k]["p50_ms"] for k in val]),
                            "calibration_networks": len(cal), "source": "kit networks (held-out half)"}
        fit(keys)
    elif len(keys) >= 3:
        fit(keys)
    return table
