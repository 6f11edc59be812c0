"""One registry for every plug-in kind, with discovery of third-party plug-ins through entry points.

edgenas has six plug-in kinds, each with one base class and one :class:`Registry`:

=====================  ==========================  ================================================
kind                   entry-point group           what is registered
=====================  ==========================  ================================================
space                  ``edgenas.spaces``          a :class:`~edgenas.spaces.base.SearchSpace` subclass
estimator              ``edgenas.estimators``      an :class:`~edgenas.estimators.base.Estimator` subclass
sampler                ``edgenas.samplers``        a factory ``f(context, seed, **options)`` returning an
                                                   Optuna sampler (a ``SpecSampler`` subclass is one)
runtime                ``edgenas.runtimes``        a :class:`~edgenas.latency.runtimes.base.DeviceRuntime`
exporter               ``edgenas.exporters``       an :class:`~edgenas.exporters.base.Exporter` subclass
latency feature        ``edgenas.latency_features``  a function ``f(space, spec, task) -> float``
=====================  ==========================  ================================================

Inside edgenas a plug-in registers with the kind's decorator (``@register_space`` ...). A separate
package registers without editing edgenas by declaring an entry point in its ``pyproject.toml``::

    [project.entry-points."edgenas.spaces"]
    myspace = "my_package.spaces:MySpace"      # the object to register, under the entry point's name

(an entry point may also name a module whose import runs the decorators). Entry points are loaded the
first time a registry is asked for its names or for a name it does not hold from edgenas itself. A
plug-in that fails to load is reported once on stderr (and named when asked for) instead of breaking
every command; a plug-in cannot replace a built-in of the same name, and a name that two installed
distributions declare is reported (the first found on ``sys.path`` is kept). A plug-in's own ``name``
attribute, when it has one, must equal its entry point's name. :mod:`edgenas.testing` holds the contract
suite of each kind, for a plug-in package's own tests.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from edgenas.errors import EdgenasError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered plug-in: its name, the object, free-form metadata and where it came from."""

    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)
    origin: str = "edgenas"
    """``edgenas`` for built-ins, else the distribution (or module) that registered it."""

    @property
    def builtin(self) -> bool:
        return self.origin == "edgenas"


class Registry(Generic[T]):
    """Named plug-ins of one kind: built-ins (imported lazily), then entry-point plug-ins.

    ``kind`` names the kind in messages (``unknown space 'x'; choose one of: ...``); ``group`` is the
    entry-point group; ``builtins`` are the modules whose import registers edgenas' own plug-ins;
    ``check`` (optional) validates an object before it is registered (e.g. "is a SearchSpace subclass").
    """

    def __init__(self, kind: str, group: str, builtins: Sequence[str] = (),
                 check: Callable[[str, Any], None] | None = None, sort: bool = True) -> None:
        self.kind = kind
        self.group = group
        self.builtins = tuple(builtins)
        self.check = check
        self.sort = sort
        self._entries: dict[str, Entry[T]] = {}
        self._builtins_loaded = False
        self._plugins_loaded = False
        self._loading_builtins = False
        self.failed: dict[str, str] = {}
        """Entry points that failed to load: name -> one-line reason."""

    # -- registering ---------------------------------------------------------------------------
    def register(self, obj: T | None = None, *, name: str | None = None, **meta: Any) -> Any:
        """Register ``obj`` (usable as ``@registry.register`` or ``@registry.register(name=..., ...)``).
        Without ``name``, the object's ``name`` attribute is used. Returns the object unchanged."""

        def add(o: T) -> T:
            self.add(name if name is not None else getattr(o, "name", None), o, **meta)
            return o

        return add(obj) if obj is not None else add

    def add(self, name: Any, obj: T, origin: str | None = None, **meta: Any) -> Entry[T]:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} plug-in needs a non-empty string name, got {name!r} for {obj!r}")
        if origin is None:
            origin = "edgenas" if self._loading_builtins or _module_of(obj).startswith("edgenas.") \
                else _module_of(obj).split(".")[0]
        if self.check is not None:
            self.check(name, obj)
        old = self._entries.get(name)
        if old is not None and old.builtin and origin != "edgenas":
            raise EdgenasError(f"{self.kind} plug-in {name!r} from {origin} clashes with edgenas' own {self.kind} "
                               f"of that name; register it under another name")
        entry = Entry(name, obj, dict(meta), origin)
        self._entries[name] = entry
        return entry

    # -- loading -------------------------------------------------------------------------------
    def _load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        self._loading_builtins = True
        try:
            for module in self.builtins:
                importlib.import_module(module)
        finally:
            self._loading_builtins = False

    def load_plugins(self) -> None:
        """Load every entry point of ``group`` once (built-ins first)."""
        self._load_builtins()
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        eps, duplicates = _entry_points(self.group)
        for name, (kept, dropped) in duplicates.items():
            self._fail(name, f"{_dist_name(dropped)} also provides it ({dropped.value}); kept {kept.value} from "
                             f"{_dist_name(kept)}; uninstall one of them", record=False)
        for ep in eps:
            if ep.name in self._entries and self._entries[ep.name].builtin:
                self._fail(ep.name, f"clashes with edgenas' own {self.kind} {ep.name!r}; not loaded")
                continue
            dist = _dist_name(ep)
            try:
                obj = ep.load()
                if isinstance(obj, types.ModuleType):  # importing it ran its register decorators
                    continue
                own = getattr(obj, "name", None)
                if isinstance(own, str) and own and own != ep.name:
                    raise EdgenasError(f"it is named {own!r} but its entry point is {ep.name!r}; make them equal")
                self.add(ep.name, obj, origin=dist)
            except Exception as exc:  # a broken plug-in must not break every command
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                self._fail(ep.name, f"{ep.value} (from {dist}) failed to load: {exc.__class__.__name__}"
                                    + (f": {msg}" if msg else ""))

    def _fail(self, name: str, reason: str, record: bool = True) -> None:
        """Report a plug-in that is not loaded (once, on stderr); ``record``: remember why, for
        :meth:`entry` to say when the name is asked for."""
        if record:
            self.failed[name] = reason
        print(f"edgenas: {self.kind} plug-in {name!r}: {reason}", file=sys.stderr)

    # -- looking up ----------------------------------------------------------------------------
    def entry(self, name: str) -> Entry[T]:
        """The entry of ``name``; an unknown name is an :class:`UnknownNameError` listing the choices."""
        if not isinstance(name, str):
            raise UnknownNameError(f"{self.kind} name must be a string, got {type(name).__name__} {name!r}")
        self._load_builtins()
        if name not in self._entries:
            self.load_plugins()
        if name not in self._entries:
            if name in self.failed:
                raise UnknownNameError(f"{self.kind} {name!r} could not be loaded: {self.failed[name]}")
            raise UnknownNameError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        """Every registered name: sorted, or in registration order (``sort=False``)."""
        self.load_plugins()
        return sorted(self._entries) if self.sort else list(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self._load_builtins()
        if name not in self._entries:
            self.load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests that register a temporary plug-in clean up with this)."""
        self._entries.pop(name, None)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r})"


def _module_of(obj: Any) -> str:
    return str(getattr(obj, "__module__", "") or "")


def _dist_name(ep: md.EntryPoint) -> str:
    """The distribution that declares ``ep`` (else the top-level module it names)."""
    return getattr(getattr(ep, "dist", None), "name", None) or ep.value.split(":")[0].split(".")[0]


def _entry_points(group: str) -> tuple[list[md.EntryPoint], dict[str, tuple[md.EntryPoint, md.EntryPoint]]]:
    """The group's entry points, one per name (the first found on sys.path), and the names that a second
    *distribution* also declares: name -> (kept, dropped). One distribution seen twice (a path entry and
    site-packages) is not a conflict."""
    eps = md.entry_points()
    selected = eps.select(group=group) if hasattr(eps, "select") else eps.get(group, [])  # type: ignore[attr-defined]
    seen: dict[str, md.EntryPoint] = {}
    duplicates: dict[str, tuple[md.EntryPoint, md.EntryPoint]] = {}
    for ep in selected:
        first = seen.setdefault(ep.name, ep)
        if first is not ep and _dist_name(first) != _dist_name(ep) and ep.name not in duplicates:
            duplicates[ep.name] = (first, ep)
    return list(seen.values()), duplicates


GROUPS = {
    "space": "edgenas.spaces",
    "estimator": "edgenas.estimators",
    "sampler": "edgenas.samplers",
    "runtime": "edgenas.runtimes",
    "exporter": "edgenas.exporters",
    "latency feature": "edgenas.latency_features",
}
"""Entry-point group of each plug-in kind."""
