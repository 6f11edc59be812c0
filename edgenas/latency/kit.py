"""On-device profiling kits: micro-models + manifest + the standalone runner, and importing results.

``write_kit`` exports every unit of a space (and a few whole networks, for fitting the device model
on the board) in the device's runtime format, copies ``runner.py`` beside them and writes
``manifest.json``. On the board: ``python3 runner.py KIT_DIR``. With ``runner="native"`` it also writes
the device script and adb wrapper that time the models with the runtime's own benchmark tool
(:mod:`edgenas.latency.native`). Back on the host, ``import_kit`` turns a ``results.json`` or the
native tools' raw logs into a validated latency table.

An import trusts nothing in the files it reads: names are checked before they become paths
(:func:`edgenas.names.check_name`), every time must be finite, positive and plausible
(:data:`edgenas.latency.table.MAX_MEASURED_MS`), run counts positive integers, unit keys real layers of
the space (and, beside the kit's manifest, exactly the kit's units), and the whole table, with its
fitted device model, is built and checked before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import uuid
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from edgenas.errors import EdgenasError
from edgenas.fileio import atomic_write, read_json
from edgenas.latency.devices import DeviceSpec, runtime_choices
from edgenas.latency.features import spec_features
from edgenas.latency.profile import Progress, _keyed, export_units, network_unit
from edgenas.latency.runtimes import get_runtime
from edgenas.latency.table import LatencyTable, check_measured
from edgenas.latency.validate import CONTEXT_FEATURES, fit_device_model, latency_metrics
from edgenas.layers import Layer
from edgenas.names import check_name
from edgenas.spaces import ArchSpec, SearchSpace, Task, get_space

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
    if out_dir.exists() and not out_dir.is_dir():
        raise EdgenasError(f"kit folder {str(out_dir)!r} is a file; choose an empty or new folder")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "manifest.json").exists():
        raise EdgenasError(f"kit folder {str(out_dir)!r} exists and is not a kit; choose an empty or new folder")
    measured = [p for p in (out_dir / "results.json", out_dir / native.LOG_DIR) if p.exists()]
    if measured:
        raise EdgenasError(f"kit folder {str(out_dir)!r} already holds measurements ({measured[0].name}); import them "
                           f"with 'edgenas lut import-kit', then choose a new folder for a new kit")
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
    atomic_write(out_dir / "manifest.json", json.dumps(manifest, indent=1) + "\n")
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


def import_kit(path: Path, device: str | None = None) -> LatencyTable:
    """A latency table from a kit's results: a runner's ``results.json``, or a native kit's raw tool
    logs (``path`` is the kit folder, its ``manifest.json`` or its ``logs/`` folder). With >= 10 timed
    networks the device model is fitted on half of them and validated on the other half (then refitted
    on all). ``device`` stores it under another name. Any bad input raises before anything is written."""
    data, origin = load_results(Path(path))
    return table_from_results(data, origin, device)


def _read_manifest(path: Path) -> dict[str, Any]:
    """A kit's ``manifest.json``, checked: the kit format, its device and space names, and its models."""
    manifest = read_json(path, "kit manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != KIT_FORMAT:
        raise EdgenasError(f"{str(path)!r} is not an edgenas kit manifest (written by 'edgenas profile kit')")

    def bad(msg: str) -> EdgenasError:
        return EdgenasError(f"kit manifest {str(path)!r}: {msg}; write the kit again with 'edgenas profile kit'")

    if manifest.get("version", 1) != 1:
        raise bad(f"format version {manifest.get('version')!r} is not supported (this edgenas reads 1)")
    for key, kind in (("device", "device"), ("space", "space")):
        try:
            check_name(manifest.get(key), kind)
        except EdgenasError as exc:
            raise bad(str(exc)) from None
    for key in ("entries", "networks"):
        items = manifest.get(key, [])
        if not isinstance(items, list) or not all(
                isinstance(it, dict) and isinstance(it.get("key"), str) and isinstance(it.get("file"), str)
                for it in items):
            raise bad(f"{key!r} must be a list of {{key, file}} objects")
    if not manifest.get("entries"):
        raise bad("it lists no unit models")
    for it in manifest.get("networks", []):
        if not isinstance(it.get("units", []), list) or not isinstance(it.get("features", {}), dict):
            raise bad(f"network {it['key']!r} needs a 'units' list and a 'features' object")
    if manifest.get("runner") == "native":
        native = manifest.get("native")
        if not (isinstance(native, dict) and isinstance(native.get("tool"), str) and _is_int(native.get("threads"))
                and isinstance(native.get("args"), list) and isinstance(native.get("model_prefix"), str)):
            raise bad("its 'native' settings (tool, threads, args, model_prefix) are missing or malformed")
    return manifest


def load_results(path: Path) -> tuple[dict[str, Any], str]:
    """The kit results behind ``path`` (see :func:`import_kit`) and a name for messages. A native kit's
    logs are parsed into the same results format (plus per-operator profiles). Results beside their
    kit's manifest must time exactly the kit's models."""
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
        manifest = _read_manifest(manifest_path)
        if manifest.get("runner") != "native":
            if (kit_dir / "results.json").exists():
                return load_results(kit_dir / "results.json")
            raise EdgenasError(f"kit {str(kit_dir)!r} has no results.json yet; run 'python3 runner.py' on the board")
        return native.results_from_logs(kit_dir, manifest, log_dir), str(kit_dir)
    data = read_json(path, "kit results")
    beside = path.parent / "manifest.json"
    if isinstance(data, dict) and beside.is_file():
        manifest = _read_manifest(beside)
        if manifest.get("kit_id") == data.get("kit") and isinstance(data.get("entries"), dict):
            want = {it["key"] for it in manifest["entries"]}
            extra, lacking = sorted(set(data["entries"]) - want), sorted(want - set(data["entries"]))
            if extra or lacking:
                which = (f"{len(extra)} unit(s) the kit does not have, e.g. {extra[0][:80]!r}" if extra
                         else f"no time for {len(lacking)} of the kit's units, e.g. {lacking[0][:80]!r}")
                raise EdgenasError(f"kit results {str(path)!r} have {which}; run 'python3 runner.py' on the board "
                                   f"again")
    return data, str(path)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_KEY = re.compile(r"([a-z][a-z0-9_]*)\((.*)\)")


@lru_cache(maxsize=16)
def _unit_kinds(space_name: str) -> dict[str, type[Layer]]:
    """The layer classes a space's units are made of, by kind (from a deterministic set of its specs)."""
    space = get_space(space_name)
    specs = [*space.covering_specs()[:64], *space.sample(64, 0)]
    return {u.kind: type(u) for s in specs for u in space.units(s)}


class _NotRoundTrippable(Exception):
    """A layer field type a key cannot round-trip (e.g. a plug-in's tuple or float): kind alone is checked."""


def _field_value(raw: str, typ: Any) -> Any:
    if typ in ("int", int):
        if not re.fullmatch(r"-?\d{1,9}", raw):
            raise ValueError(raw)
        return int(raw)
    if typ in ("bool", bool):
        if raw not in ("0", "1"):
            raise ValueError(raw)
        return raw == "1"
    if typ in ("str", str):
        return raw
    raise _NotRoundTrippable(typ)


def is_space_unit_key(space: str, key: str) -> bool:
    """True when ``key`` is the key of a latency unit of ``space``: one of the space's layer kinds, whose
    fields rebuild a layer with exactly this key (so its shapes are consistent). Kinds with field types a
    key cannot round-trip (a plug-in's) are checked by kind and syntax only."""
    kinds = _unit_kinds(space)
    m = _KEY.fullmatch(key)
    if m is None or m.group(1) not in kinds:
        return False
    cls = kinds[m.group(1)]
    parts = [p.partition("=") for p in m.group(2).split(",")]
    if any(not sep or not name for name, sep, _ in parts):
        return False
    given = {name: raw for name, _, raw in parts}
    if len(given) != len(parts) or "i" not in given or "o" not in given:
        return False
    try:
        cin, hw = (int(v) for v in given.pop("i").split("x"))
        out = given.pop("o").split("x")
        kwargs: dict[str, Any] = {"cin": cin, "hw": hw}
        for f in dataclasses.fields(cls):
            if f.name in ("cin", "hw") or not f.init:
                continue
            if f.name in cls._key_skip:
                if f.name == "cout":
                    kwargs["cout"] = int(out[0])
                continue
            kwargs[f.name] = _field_value(given.pop(f.name), f.type)
        if given:
            return False
        return cls(**kwargs).key == key
    except _NotRoundTrippable:
        return True  # kind and syntax matched; the layer cannot be rebuilt from its key
    except Exception:  # any failure to rebuild the layer means the key is not a unit
        return False


def _results_error(origin: str) -> Callable[[str], EdgenasError]:
    def bad(msg: str) -> EdgenasError:
        return EdgenasError(f"kit results {origin!r}: {msg}")
    return bad


def _check_results(data: Any, origin: str, device: str | None) -> tuple[str, str]:
    """Check a results document before any of it is used; returns the (device, space) to store under."""
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise EdgenasError(f"{origin!r} is not an edgenas kit results file (runner.py output)")
    bad = _results_error(origin)
    if data.get("version", 1) != 1:
        raise bad(f"format version {data.get('version')!r} is not supported (this edgenas reads 1)")
    for key in ("device", "space", "runtime", "entries"):
        if key not in data:
            raise bad(f"lack {key!r}")
    name = device if device is not None else data["device"]
    try:
        check_name(name, "device")
        check_name(data["space"], "space")
    except EdgenasError as exc:
        raise bad(f"{exc}" + ("" if device is not None else "; or store it under another name with --device NAME")) \
            from None
    get_space(data["space"])  # an unknown space is one line naming the known ones
    if not isinstance(data["runtime"], dict) or not isinstance(data["runtime"].get("name"), str):
        raise bad("'runtime' must be an object with a 'name'")
    for key in ("host", "protocol", "networks", "network_units", "network_features", "op_profiles", "logs"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise bad(f"{key!r} must be an object")
    entries = data["entries"]
    if not isinstance(entries, dict):
        raise bad("'entries' must be an object of unit key -> statistics")
    if not entries:
        raise bad("'entries' is empty: no unit was timed; run the kit on the board again")
    unknown = [k for k in entries if not isinstance(k, str) or not is_space_unit_key(data["space"], k)]
    if unknown:
        raise bad(f"{len(unknown)} of {len(entries)} entries are not units of space {data['space']!r}, e.g. "
                  f"{str(unknown[0])[:80]!r} (results of another space, or edited keys?)")
    for k, v in entries.items():
        check_measured(v, f"kit results {origin!r}: entry {k[:80]!r}")
    for k, v in (data.get("networks") or {}).items():
        if not k.startswith(f"{data['space']}:"):
            raise bad(f"network {k[:80]!r} is not an arch of space {data['space']!r}")
        check_measured(v, f"kit results {origin!r}: network {k[:80]!r}")
    for k, units in (data.get("network_units") or {}).items():
        if not isinstance(units, list) or not all(isinstance(u, str) for u in units):
            raise bad(f"network_units of {k[:80]!r} must be a list of unit keys")
    for k, feats in (data.get("network_features") or {}).items():
        if not isinstance(feats, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in feats.values()):
            raise bad(f"network_features of {k[:80]!r} must be an object of finite numbers")
    for k, ops in (data.get("op_profiles") or {}).items():
        if not isinstance(ops, list) or not all(
                isinstance(o, dict) and isinstance(o.get("type"), str) and isinstance(o.get("avg_ms"), (int, float))
                and math.isfinite(o["avg_ms"]) and o["avg_ms"] >= 0 and _is_int(o.get("times_called", 1))
                and o.get("times_called", 1) >= 0 for o in ops):
            raise bad(f"op_profiles of {k[:80]!r} must be a list of operators with finite avg_ms >= 0")
    return name, data["space"]


def table_from_results(data: Any, origin: str, device: str | None = None) -> LatencyTable:
    """The validated table of kit results (:func:`import_kit`), stored under ``device`` when given."""
    name, space = _check_results(data, origin, device)
    entries = {k: check_measured(v, k) for k, v in data["entries"].items()}
    table = LatencyTable(device=name, space=space, runtime=data["runtime"], entries=entries,
                         host=data.get("host") or {}, source=f"kit:{data.get('kit')}")
    if (data.get("host") or {}).get("runner") == "native":
        statistic = (data.get("protocol") or {}).get("statistic")
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
                                       [nets[k]["p50_ms"] for k in ks], [feats[k] for k in ks] if with_feats else None,
                                       table.min_unit_ms())

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
    # the whole table, device model included, must load back before anything is written
    LatencyTable.from_json(table.to_json(), f"table from kit results {origin}")
    return table


def check_kit_runtime(table: LatencyTable) -> Callable[[DeviceSpec], None]:
    """A check for :meth:`DeviceStore.save_table`: an existing device whose runtime is not the one the
    kit was timed with does not get the kit's table."""
    kit_runtime = table.runtime.get("name")

    def check(device: DeviceSpec) -> None:
        if kit_runtime in runtime_choices() and kit_runtime != device.runtime:
            raise EdgenasError(f"the kit was timed with {kit_runtime}, but device {device.name!r} runs "
                               f"{device.runtime} ({device.path}); store it under another name with --device NAME")
    return check
