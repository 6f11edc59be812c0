"""Device runtimes (one base class, a registry): export models and time them."""

from __future__ import annotations

from edgenas.errors import UnknownNameError
from edgenas.latency.runtimes.base import DeviceRuntime, ExportItem

_REGISTRY: dict[str, type[DeviceRuntime]] = {}


def register_runtime(cls: type[DeviceRuntime]) -> type[DeviceRuntime]:
    _REGISTRY[cls.name] = cls
    return cls


def runtime_names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get_runtime(name: str, threads: int = 1, options: dict | None = None) -> DeviceRuntime:
    _load()
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown runtime {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](threads=threads, options=options or {})


def _load() -> None:
    from edgenas.latency.runtimes import litert, ort  # noqa: F401  (registration side effect)


__all__ = ["DeviceRuntime", "ExportItem", "get_runtime", "register_runtime", "runtime_names"]
