"""Device runtimes (one base class, a registry): export models and time them.

Third-party runtimes register through the ``edgenas.runtimes`` entry-point group."""

from __future__ import annotations

from typing import Any

from edgenas.errors import EdgenasError
from edgenas.latency.runtimes.base import DeviceRuntime, ExportItem
from edgenas.registry import GROUPS, Registry


def _check_runtime(name: str, obj: Any) -> None:
    if not (isinstance(obj, type) and issubclass(obj, DeviceRuntime)):
        raise EdgenasError(f"runtime plug-in {name!r} must be a DeviceRuntime subclass, got {obj!r}")


RUNTIMES: Registry[type[DeviceRuntime]] = Registry(
    "runtime", GROUPS["runtime"], builtins=["edgenas.latency.runtimes.litert", "edgenas.latency.runtimes.ort"],
    check=_check_runtime)


def register_runtime(cls: type[DeviceRuntime]) -> type[DeviceRuntime]:
    return RUNTIMES.register(cls)


def runtime_names() -> list[str]:
    return RUNTIMES.names()


def get_runtime(name: str, threads: int = 1, options: dict | None = None) -> DeviceRuntime:
    cls = RUNTIMES.get(name)
    cls.check_available()
    return cls(threads=threads, options=options or {})


__all__ = ["RUNTIMES", "DeviceRuntime", "ExportItem", "get_runtime", "register_runtime", "runtime_names"]
