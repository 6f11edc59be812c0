"""Device specs (``devices/*.toml``) and where devices and their latency tables are found.

Lookup order for reading: the user directory (``--devices-dir``, else ``$EDGENAS_DEVICES_DIR``, else
``~/.edgenas``), then the specs and tables shipped with edgenas (``edgenas.devices`` and
``edgenas.latency_tables`` package data). Writes (``lut import``, ``lut import-kit``, ``lut fit``,
``profile``) go to the user directory, laid out like the repository: ``<dir>/devices/*.toml`` and
``<dir>/latency_tables/*.json``. A device's table for a space is ``<device>__<space>.json`` unless its
spec maps the space to another file in ``[tables]``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgenas.errors import EdgenasError, UnknownNameError
from edgenas.latency.table import LatencyTable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RUNTIMES = ("onnxruntime", "litert")
PRECISIONS = ("fp32", "int8")
INT8_RUNTIMES = ("litert",)  # runtimes whose profiler can time full-integer models
DEVICES_ENV = "EDGENAS_DEVICES_DIR"


@dataclass(frozen=True)
class DeviceSpec:
    """One target: how to run models on it and what it can hold.

    ``precision = "int8"`` means the device runs full-integer models (int8 weights and activations,
    int8 input and output), quantized the way ``edgenas export --formats tflite-int8`` quantizes them;
    its table and validation time such models. The runtime learns it through ``runtime_options``
    (``{"precision": "int8"}`` is added there), so every place that builds the device's runtime
    (profiling, kits) exports the same kind of model."""

    name: str
    runtime: str
    threads: int = 1
    local: bool = False
    description: str = ""
    runtime_options: dict[str, Any] = field(default_factory=dict)
    ram_bytes: int | None = None
    flash_bytes: int | None = None
    energy: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    path: str = ""
    precision: str = "fp32"

    def table_name(self, space: str) -> str:
        return self.tables.get(space, f"{self.name}__{space}.json")


_KEYS = {"name", "runtime", "threads", "local", "description", "precision", "runtime_options", "memory", "energy",
         "tables"}


def parse_device(data: dict[str, Any], origin: str) -> DeviceSpec:
    def bad(msg: str) -> EdgenasError:
        return EdgenasError(f"device spec {origin!r}: {msg}")

    unknown = set(data) - _KEYS
    if unknown:
        raise bad(f"unknown key(s) {sorted(unknown)}; known: {', '.join(sorted(_KEYS))}")
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise bad("needs a 'name' string")
    if data.get("runtime") not in RUNTIMES:
        raise bad(f"'runtime' must be one of {', '.join(RUNTIMES)}, got {data.get('runtime')!r}")
    threads = data.get("threads", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise bad("'threads' must be a positive integer")
    memory = data.get("memory", {})
    for key in ("ram_bytes", "flash_bytes"):
        v = memory.get(key)
        if v is not None and (not isinstance(v, int) or v <= 0):
            raise bad(f"[memory] {key} must be a positive integer (bytes)")
    tables = data.get("tables", {})
    if not all(isinstance(v, str) for v in tables.values()):
        raise bad("[tables] maps space names to table file names")
    precision = data.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise bad(f"'precision' must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and data["runtime"] not in INT8_RUNTIMES:
        raise bad(f"precision int8 needs runtime {' or '.join(INT8_RUNTIMES)} (full-integer TFLite models)")
    options = dict(data.get("runtime_options", {}))
    if "precision" in options:
        raise bad("'precision' belongs at the top level of the spec, not in [runtime_options]")
    if precision != "fp32":
        options["precision"] = precision
    return DeviceSpec(
        name=data["name"], runtime=data["runtime"], threads=threads, local=bool(data.get("local", False)),
        description=str(data.get("description", "")), runtime_options=options,
        ram_bytes=memory.get("ram_bytes"), flash_bytes=memory.get("flash_bytes"),
        energy=dict(data.get("energy", {})), tables=dict(tables), path=origin, precision=precision,
    )


def load_device_file(path: str | Path) -> DeviceSpec:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise EdgenasError(f"device spec {str(p)!r} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise EdgenasError(f"device spec {str(p)!r} is not valid TOML: {exc}") from None
    return parse_device(data, str(p))


class DeviceStore:
    """Finds device specs and latency tables; writes to the user directory."""

    def __init__(self, user_dir: str | Path | None = None) -> None:
        if user_dir is None:
            user_dir = os.environ.get(DEVICES_ENV) or Path.home() / ".edgenas"
        self.user_dir = Path(user_dir).expanduser()

    # -- locations ---------------------------------------------------------------------------
    def device_dirs(self) -> list[Path]:
        return [self.user_dir / "devices", Path(str(resources.files("edgenas.devices")))]

    def table_dirs(self) -> list[Path]:
        return [self.user_dir / "latency_tables", Path(str(resources.files("edgenas.latency_tables")))]

    # -- devices -----------------------------------------------------------------------------
    def device_files(self) -> dict[str, Path]:
        """name -> spec file; the user directory shadows the packaged specs."""
        found: dict[str, Path] = {}
        for d in reversed(self.device_dirs()):
            if d.is_dir():
                for f in sorted(d.glob("*.toml")):
                    found[f.stem] = f
        return found

    def device(self, name: str) -> DeviceSpec:
        files = self.device_files()
        if name not in files:
            if Path(name).suffix == ".toml" and Path(name).exists():
                return load_device_file(name)
            raise UnknownNameError(
                f"unknown device {name!r}; known: {', '.join(sorted(files)) or 'none'} "
                f"(add <name>.toml under {self.user_dir / 'devices'} or pass --devices-dir)"
            )
        spec = load_device_file(files[name])
        if spec.name != name:
            raise EdgenasError(f"device spec {str(files[name])!r} is named {spec.name!r}; rename the file or the name")
        return spec

    def devices(self) -> list[DeviceSpec]:
        return [self.device(n) for n in sorted(self.device_files())]

    # -- tables ------------------------------------------------------------------------------
    def find_table(self, device: DeviceSpec, space: str) -> Path | None:
        for d in self.table_dirs():
            p = d / device.table_name(space)
            if p.exists():
                return p
        return None

    def load_table(self, device: DeviceSpec, space: str) -> LatencyTable | None:
        p = self.find_table(device, space)
        if p is None:
            return None
        table = LatencyTable.load(p)
        if table.space != space or table.device != device.name:
            raise EdgenasError(f"latency table {str(p)!r} is for {table.device}/{table.space}, "
                               f"not {device.name}/{space}")
        return table

    def write_path(self, device: DeviceSpec, space: str) -> Path:
        return self.user_dir / "latency_tables" / device.table_name(space)

    def save_device(self, spec_text: str, name: str) -> Path:
        p = self.user_dir / "devices" / f"{name}.toml"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(spec_text)
        return p
