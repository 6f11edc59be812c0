"""Search-space registry: ``get_space(name, **options)`` and ``parse_arch(text)``.

Spaces register with :func:`register_space` (edgenas' own) or through the ``edgenas.spaces`` entry-point
group (a separate package; see :mod:`edgenas.registry`).
"""

from __future__ import annotations

from typing import Any

from edgenas.errors import ArchParseError, EdgenasError
from edgenas.names import check_name
from edgenas.registry import GROUPS, Registry
from edgenas.spaces.base import ArchSpec, CostReport, SearchSpace, Task


def _check_space(name: str, obj: Any) -> None:
    check_name(name, "space")
    if not (isinstance(obj, type) and issubclass(obj, SearchSpace)):
        raise EdgenasError(f"space plug-in {name!r} must be a SearchSpace subclass, got {obj!r}")
    if getattr(obj, "name", None) != name:
        raise EdgenasError(f"space class {obj.__name__} is named {getattr(obj, 'name', None)!r}, registered as "
                           f"{name!r}; its canonical strings start with its name, so make them equal")


SPACES: Registry[type[SearchSpace]] = Registry(
    "space", GROUPS["space"], builtins=[f"edgenas.spaces.{m}" for m in ("fbnet", "mbv3", "nb201", "proxyless",
                                                                          "tiny")] + ["edgenas.compress.space"],
    check=_check_space)


def register_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    """Class decorator: make a space available by its ``name``."""
    return SPACES.register(cls)


def space_names() -> list[str]:
    return SPACES.names()


def space_class(name: str) -> type[SearchSpace]:
    return SPACES.get(name)


def get_space(name: str, **options: Any) -> SearchSpace:
    """Instantiate a registered space; ``options`` are the space's constructor keywords, given typed
    (``widths=[1.0]``) or as command-line text (``widths="1.0,1.2"``): both are checked and converted
    against the constructor's signature."""
    from edgenas.options import coerce_options

    cls = SPACES.get(name)
    opts = coerce_options(cls, options, f"space {name!r}")
    try:
        return cls(**opts)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, EdgenasError):
            raise
        raise EdgenasError(f"bad options for space {name!r}: {exc}") from None


def parse_arch(text: str, space: str | SearchSpace | None = None) -> ArchSpec:
    """Parse an arch in any accepted form; without ``space`` the ``<space>:`` prefix decides."""
    if isinstance(space, SearchSpace):
        return space.parse(text)
    if space is None:
        prefix, sep, _ = text.strip().partition(":")
        if not sep or prefix not in SPACES:
            raise ArchParseError(
                f"cannot tell the space of arch {text.strip()[:60]!r}; prefix it with '<space>:' or pass a space"
            )
        space = prefix
    return get_space(space).parse(text)


__all__ = [
    "SPACES",
    "ArchSpec",
    "CostReport",
    "SearchSpace",
    "Task",
    "get_space",
    "parse_arch",
    "register_space",
    "space_class",
    "space_names",
]
