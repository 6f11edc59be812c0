"""Device specs (``devices/*.toml``) and where devices and their latency tables are found.

Lookup order for reading: the user directory (``--devices-dir``, else ``$EDGENAS_DEVICES_DIR``, else
``~/.edgenas``), then the specs and tables shipped with edgenas (``edgenas.devices`` and
``edgenas.latency_tables`` package data). Writes (``lut import``, ``lut import-kit``, ``lut fit``,
``profile``) go to the user directory, laid out like the repository: ``<dir>/devices/*.toml`` and
``<dir>/latency_tables/*.json``. A device's table for a space is ``<device>__<space>.json`` unless its
spec maps the space to another file in ``[tables]``.

Device and space names become file names, so every name is checked with :func:`edgenas.names.check_name`
before a path is built from it (``../../x``, ``/abs``, an empty name or one holding quotes or newlines is
refused), ``[tables]`` may only name plain ``*.json`` files inside the store, and specs are written with
a TOML writer (:func:`edgenas.fileio.write_toml`), never by string formatting.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgenas.errors import EdgenasError, UnknownNameError
from edgenas.fileio import atomic_write, read_toml, write_toml
from edgenas.latency.table import LatencyTable
from edgenas.names import RULE, check_name, is_safe_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRECISIONS = ("fp32", "int8")
INT8_RUNTIMES = ("litert",)  # runtimes whose profiler can time full-integer models
DEVICES_ENV = "EDGENAS_DEVICES_DIR"
TABLE_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,126}\.json")
"""A table file named in a spec's ``[tables]``: a plain ``*.json`` name in the store's table folder."""


def check_table_file(name: object, origin: str = "") -> str:
    """``name`` if it is a plain table file name (no folder, no ``..``); else an :class:`EdgenasError`."""
    if not isinstance(name, str) or TABLE_FILE.fullmatch(name) is None or ".." in name:
        where = f"device spec {origin!r}: " if origin else ""
        raise EdgenasError(f"{where}table file {name!r} is not allowed; [tables] maps a space to a plain file name "
                           f"in latency_tables/ (letters, digits, '.', '_', '-', ending in .json)")
    return name


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
        """The file name of this device's table for ``space`` (names checked: it becomes a path)."""
        check_name(space, "space")
        if space in self.tables:
            return check_table_file(self.tables[space], self.path)
        return f"{check_name(self.name, 'device')}__{space}.json"


_KEYS = {"name", "runtime", "threads", "local", "description", "precision", "runtime_options", "memory", "energy",
         "tables"}


def runtime_choices() -> list[str]:
    """Every registered runtime (edgenas' own and plug-ins'), what a device spec may name."""
    from edgenas.latency.runtimes import runtime_names

    return runtime_names()


def parse_device(data: dict[str, Any], origin: str) -> DeviceSpec:
    def bad(msg: str) -> EdgenasError:
        return EdgenasError(f"device spec {origin!r}: {msg}")

    if not isinstance(data, dict):
        raise bad("must be a TOML table of keys")
    unknown = set(data) - _KEYS
    if unknown:
        raise bad(f"unknown key(s) {sorted(unknown)}; known: {', '.join(sorted(_KEYS))}")
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise bad("needs a 'name' string")
    try:
        check_name(data["name"], "device")
    except EdgenasError as exc:
        raise bad(str(exc)) from None
    for key in ("runtime_options", "memory", "energy", "tables"):
        if not isinstance(data.get(key, {}), dict):
            raise bad(f"[{key}] must be a table")
    for key, typ in (("description", str), ("local", bool)):
        if key in data and not isinstance(data[key], typ):
            raise bad(f"'{key}' must be a {typ.__name__}")
    known = runtime_choices()
    if data.get("runtime") not in known:
        raise bad(f"'runtime' must be one of {', '.join(known)}, got {data.get('runtime')!r}")
    threads = data.get("threads", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise bad("'threads' must be a positive integer")
    memory = data.get("memory", {})
    for key in ("ram_bytes", "flash_bytes"):
        v = memory.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
            raise bad(f"[memory] {key} must be a positive integer (bytes)")
    tables = data.get("tables", {})
    if not all(isinstance(v, str) for v in tables.values()):
        raise bad("[tables] maps space names to table file names")
    for space, file in tables.items():
        try:
            check_name(space, "space")
        except EdgenasError as exc:
            raise bad(f"[tables]: {exc}") from None
        check_table_file(file, origin)
    precision = data.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise bad(f"'precision' must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and data["runtime"] not in INT8_RUNTIMES:
        raise bad(f"precision int8 needs runtime {' or '.join(INT8_RUNTIMES)} (full-integer TFLite models)")
    options = dict(data.get("runtime_options", {}))
    if "precision" in options:
        raise bad("'precision' belongs at the top level of the spec, not in [runtime_options]")
    if "delegate" in options:
        from edgenas.devices.runner import LITERT_DELEGATES as LOCAL
        from edgenas.latency.native import LITERT_DELEGATES as NATIVE

        delegate = str(options["delegate"]).lower()
        if data["runtime"] != "litert":
            raise bad(f"[runtime_options] delegate is a litert option; runtime {data['runtime']!r} has none")
        if delegate not in NATIVE:
            raise bad(f"[runtime_options] delegate must be one of {', '.join(NATIVE)}, got {options['delegate']!r}")
        if data.get("local") and delegate not in LOCAL:
            raise bad(f"[runtime_options] delegate {delegate!r} cannot run on this host (a local device runs "
                      f"{', '.join(LOCAL)}); time it on the device through a native kit")
    if precision != "fp32":
        options["precision"] = precision
    return DeviceSpec(
        name=data["name"], runtime=data["runtime"], threads=threads, local=bool(data.get("local", False)),
        description=str(data.get("description", "")), runtime_options=options,
        ram_bytes=memory.get("ram_bytes"), flash_bytes=memory.get("flash_bytes"),
        energy=dict(data.get("energy", {})), tables=dict(tables), path=origin, precision=precision,
    )


def load_device_file(path: str | Path) -> DeviceSpec:
    """The spec in a ``.toml`` file; a missing, binary or malformed file is one line naming it."""
    p = Path(path)
    return parse_device(read_toml(p, "device spec"), str(p))


def new_device_spec(name: str, runtime: str, note: str = "") -> dict[str, Any]:
    """The minimal spec of a remote device that ``lut import``/``import-kit``/``fit`` create (a dict, so
    it is written with a TOML writer and checked by :func:`parse_device` before anything is written)."""
    spec = {"name": check_name(name, "device"), "description": note, "runtime": runtime, "threads": 1,
            "local": False}
    parse_device(spec, f"{name}.toml")
    return spec


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
        """A device by name, or by the path of a ``.toml`` spec file (which must exist; the name inside
        is checked like any other)."""
        files = self.device_files()
        if isinstance(name, str) and name not in files and name.endswith(".toml"):
            p = Path(name)
            if not p.is_file():
                raise EdgenasError(f"device spec file {name!r} not found (a device is a name such as "
                                   f"local-cpu-ort, or the path of an existing .toml spec)")
            return load_device_file(p)
        check_name(name, "device")
        if name not in files:
            raise UnknownNameError(
                f"unknown device {name!r}; known: {', '.join(sorted(files)) or 'none'} "
                f"(add <name>.toml under {self.user_dir / 'devices'} or pass --devices-dir)"
            )
        spec = load_device_file(files[name])
        if spec.name != name:
            raise EdgenasError(f"device spec {str(files[name])!r} is named {spec.name!r}; rename the file or the name")
        return spec

    def devices(self) -> list[DeviceSpec]:
        """Every device spec found; a spec file whose name is not a safe device name is skipped with a
        note (it cannot be used by name, and must not make every command fail)."""
        out = []
        for n in sorted(self.device_files()):
            if not is_safe_name(n):
                print(f"edgenas: skipping device spec {str(self.device_files()[n])!r}: its file name is not a "
                      f"device name ({RULE})", file=sys.stderr)
                continue
            out.append(self.device(n))
        return out

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
        """Where ``device``'s table for ``space`` is written: always inside ``<user dir>/latency_tables``."""
        folder = self.user_dir / "latency_tables"
        p = folder / device.table_name(space)
        if p.parent != folder:  # table_name() allows plain file names only; never write elsewhere
            raise EdgenasError(f"table file {device.table_name(space)!r} of device {device.name!r} is outside "
                               f"{str(folder)!r}")
        return p

    def device_path(self, name: str) -> Path:
        """Where the spec of device ``name`` is written: ``<user dir>/devices/<name>.toml``."""
        return self.user_dir / "devices" / f"{check_name(name, 'device')}.toml"

    def save_device(self, spec: dict[str, Any] | str, name: str, overwrite: bool = False) -> Path:
        """Write the spec of device ``name`` atomically and return its path.

        ``spec`` is a dict (written with a TOML writer) or TOML text; either way it is parsed and checked
        (:func:`parse_device`, whose ``name`` must equal ``name``) before anything is written, so a value
        cannot inject keys. An existing spec is kept unless ``overwrite``."""
        p = self.device_path(name)
        data = tomllib.loads(spec) if isinstance(spec, str) else spec
        parsed = parse_device(data, str(p))
        if parsed.name != name:
            raise EdgenasError(f"device spec for {name!r} is named {parsed.name!r}; make them equal")
        if p.exists() and not overwrite:
            raise EdgenasError(f"device spec {str(p)!r} already exists; edit it, or choose another device name")
        if isinstance(spec, str):
            return atomic_write(p, spec)
        return write_toml(p, spec)

    def save_table(self, table: LatencyTable, new_spec: dict[str, Any] | None = None,
                   check: Any = None) -> tuple[Path, Path | None]:
        """Store ``table`` under its device; returns (table path, spec path if a spec was created).

        Everything is checked before anything is written: the names, the whole table (it must load back:
        finite numbers, a finite device model), the device (``new_spec`` is written only when the device
        is unknown, and ``check(spec)`` may refuse a known one) and the file it replaces (a table of
        another device or space there is never overwritten). The old table stays until the new one is
        complete (atomic write); if the table cannot be written, a spec created for it is removed."""
        check_name(table.device, "device")
        check_name(table.space, "space")
        LatencyTable.from_json(table.to_json(), f"new table for {table.device}/{table.space}")
        created: Path | None = None
        if table.device in self.device_files():
            device = self.device(table.device)
            if check is not None:
                check(device)
        else:
            if new_spec is None:
                raise UnknownNameError(f"unknown device {table.device!r}; add {self.device_path(table.device)}")
            device = parse_device(new_spec, str(self.device_path(table.device)))
            if device.name != table.device:
                raise EdgenasError(f"device spec for {table.device!r} is named {device.name!r}")
        path = self.write_path(device, table.space)
        if path.exists():
            try:
                old = LatencyTable.load(path)
            except EdgenasError:
                old = None  # an unreadable table is replaced by a good one
            if old is not None and (old.device, old.space) != (table.device, table.space):
                raise EdgenasError(f"{str(path)!r} holds the table of {old.device}/{old.space}; it is not replaced "
                                   f"by one for {table.device}/{table.space} (check [tables] in the device spec)")
        folders = [f for f in (self.device_path(table.device).parent, path.parent) if not f.exists()]
        try:
            if new_spec is not None and table.device not in self.device_files():
                created = self.save_device(new_spec, table.device)
            table.save(path)
        except BaseException:
            if created is not None:
                created.unlink(missing_ok=True)
            for folder in folders:  # folders this call created, now empty again
                try:
                    folder.rmdir()
                except OSError:
                    pass
            raise
        return path, created
