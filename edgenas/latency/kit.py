"""On-device profiling kits: micro-models + manifest + the standalone runner, and importing results.

``write_kit`` exports every unit of a space (and a few whole networks, for fitting the device model
on the board) in the device's runtime format, copies ``runner.py`` beside them and writes
``manifest.json``. On the board: ``python3 runner.py KIT_DIR``. Back on the host,
``import_kit(results.json)`` turns the results into a validated latency table.
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


def write_kit(
    device: DeviceSpec, space: SearchSpace, out_dir: Path, networks: list[ArchSpec], task: Task | None = None,
    specs: list[ArchSpec] | None = None, jobs: int = 2, show_progress: bool | None = None,
) -> dict[str, Any]:
    """Write a kit for ``device`` covering the units of ``specs`` (default: the whole space)."""
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
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    runner = resources.files("edgenas.devices") / "runner.py"
    shutil.copyfile(str(runner), out_dir / "runner.py")
    (out_dir / "README.txt").write_text(
        f"edgenas profiling kit for device {device.name}, space {space.name} ({len(unit_paths)} units, "
        f"{len(net_paths)} networks).\n\nOn the board (Python 3.8+, numpy, and {device.runtime}):\n"
        f"    python3 runner.py .            # writes results.json\n\nBack on the host:\n"
        f"    edgenas lut import-kit results.json\n"
    )
    return manifest


def import_kit(results_path: Path) -> LatencyTable:
    """A latency table from a runner's results; with >= 10 timed networks the device model is fitted
    on half of them and validated on the other half (then refitted on all)."""
    try:
        data = json.loads(Path(results_path).read_text())
    except FileNotFoundError:
        raise EdgenasError(f"kit results {str(results_path)!r} not found") from None
    except json.JSONDecodeError:
        raise EdgenasError(f"kit results {str(results_path)!r} are not valid JSON") from None
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise EdgenasError(f"{str(results_path)!r} is not an edgenas kit results file (runner.py output)")
    for key in ("device", "space", "runtime", "entries"):
        if key not in data:
            raise EdgenasError(f"kit results {str(results_path)!r} lack {key!r}")
    try:
        entries = {k: Entry(float(v["mean_ms"]), float(v["std_ms"]), float(v["p50_ms"]), int(v["n"]))
                   for k, v in data["entries"].items()}
    except (KeyError, TypeError, ValueError):
        raise EdgenasError(f"kit results {str(results_path)!r} have a malformed entry") from None
    table = LatencyTable(device=data["device"], space=data["space"], runtime=data["runtime"], entries=entries,
                         host=data.get("host", {}), source=f"kit:{data.get('kit')}")
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
