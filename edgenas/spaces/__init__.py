"""Search-space registry: ``get_space(name, **options)`` and ``parse_arch(text)``."""

from __future__ import annotations

from typing import Any

from edgenas.errors import ArchParseError, EdgenasError, UnknownNameError
from edgenas.spaces.base import ArchSpec, CostReport, SearchSpace, Task

_REGISTRY: dict[str, type[SearchSpace]] = {}


def register_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    """Class decorator: make a space available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def space_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get_space(name: str, **options: Any) -> SearchSpace:
    """Instantiate a registered space; ``options`` are the space's constructor keywords."""
    _load_builtins()
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown space {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[name](**options)
    except TypeError as exc:
        raise EdgenasError(f"bad options for space {name!r}: {exc}") from None


def parse_arch(text: str, space: str | SearchSpace | None = None) -> ArchSpec:
    """Parse an arch in any accepted form; without ``space`` the ``<space>:`` prefix decides."""
    if isinstance(space, SearchSpace):
        return space.parse(text)
    if space is None:
        prefix, sep, _ = text.strip().partition(":")
        if not sep or prefix not in space_names():
            raise ArchParseError(
                f"cannot tell the space of arch {text.strip()[:60]!r}; prefix it with '<space>:' or pass a space"
            )
        space = prefix
    return get_space(space).parse(text)


_LOADED = False


def _load_builtins() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from edgenas.spaces import fbnet, mbv3, nb201, proxyless, tiny  # noqa: F401  (registration side effect)

__all__ = [
    "ArchSpec",
    "CostReport",
    "SearchSpace",
    "Task",
    "get_space",
    "parse_arch",
    "register_space",
    "space_names",
]
