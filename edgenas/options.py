"""Options given as ``KEY=VALUE`` on the command line or as TOML values, checked against the signature
of what takes them (a space's, estimator's or sampler's constructor).

One rule for ``KEY=VALUE`` (:func:`parse_kv`): the value is JSON when the whole of it parses as JSON
(``2``, ``0.5``, ``true``, ``[1, 2]``, ``{"epochs": 1}``), else the text as given. The text is then
converted to what the option's annotation asks for (:func:`coerce_options`): a list option takes a comma
list (``widths=1.0,1.2``), a number option a number, a boolean ``true``/``false``; so
``members=synflow,snip`` becomes a list only where ``members`` is a list option. A value that cannot be
converted (``widths=abc``) is one line naming the option, the value and the type wanted.
"""

from __future__ import annotations

import inspect
import json
import math
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Union

from edgenas.errors import EdgenasError


def parse_kv(items: Iterable[str] | None, what: str) -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{k: v}`` (values JSON when the whole value parses, else text).
    ``what`` names the flag in errors (e.g. ``--space-opt``). A key given twice keeps the last value."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = str(item).partition("=")
        if not sep or not key.strip():
            raise EdgenasError(f"{what} {item!r} must look like key=value")
        out[key.strip()] = parse_value(raw.strip())
    return out


def parse_value(raw: str) -> Any:
    """JSON when the whole text parses as JSON (NaN and infinities are not numbers here), else text."""
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError):
        return raw
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def accepted_options(fn: Callable[..., Any], skip: Iterable[str] = ()) -> dict[str, inspect.Parameter]:
    """The keyword parameters of ``fn`` (a class: its ``__init__``), minus ``skip``."""
    target = fn.__init__ if inspect.isclass(fn) else fn  # type: ignore[misc]
    sig = inspect.signature(target)
    drop = {"self", *skip}
    return {p.name: p for p in sig.parameters.values()
            if p.name not in drop and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def option_types(fn: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations of ``fn``'s parameters (empty where they cannot be resolved)."""
    target = fn.__init__ if inspect.isclass(fn) else fn  # type: ignore[misc]
    try:
        return typing.get_type_hints(target)
    except Exception:  # a name imported only for type checking: resolve the parameters one by one
        pass
    out: dict[str, Any] = {}
    scope = dict(getattr(inspect.unwrap(target), "__globals__", {}))
    for name, p in inspect.signature(target).parameters.items():
        ann = p.annotation
        if isinstance(ann, str):
            try:
                ann = eval(ann, scope)
            except Exception:  # unresolvable: no conversion for this option
                continue
        if ann is not inspect.Parameter.empty:
            out[name] = ann
    return out


def coerce_options(fn: Callable[..., Any], options: dict[str, Any], what: str,
                   skip: Iterable[str] = ()) -> dict[str, Any]:
    """``options`` checked against ``fn``'s keyword parameters: unknown names are an error listing the
    accepted ones; each value is converted to its parameter's annotation (see the module docstring)."""
    accepted = accepted_options(fn, skip)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise EdgenasError(f"{what}: unknown option(s) {', '.join(unknown)}; accepted: "
                           f"{', '.join(accepted) or 'none'}")
    hints = option_types(fn)
    return {k: coerce(v, hints.get(k, Any), f"{what} option {k}") for k, v in options.items()}


def coerce(value: Any, annotation: Any, what: str, strict: bool = False) -> Any:
    """``value`` converted to ``annotation`` (str, int, float, bool, Path, lists/tuples of those,
    unions, Optional); anything else passes unchanged. Raises :class:`EdgenasError` naming ``what``.

    ``strict`` (typed input such as TOML): no conversion from text (``"2"`` is not an integer, ``"a,b"`` is
    not a list, ``2`` is not a string); an integer is still accepted where a number is wanted."""
    ok, out = _try(value, annotation, strict)
    if ok:
        return out
    shown = value if not isinstance(value, str) or len(value) <= 60 else value[:57] + "..."
    raise EdgenasError(f"{what}: {shown!r} is not {_describe(annotation)}")



def _try(value: Any, ann: Any, strict: bool = False) -> tuple[bool, Any]:
    if ann is Any or ann is inspect.Parameter.empty or ann is object:
        return True, value
    origin = typing.get_origin(ann)
    if origin is Union or origin is types.UnionType:
        args = typing.get_args(ann)
        if value is None:
            return (type(None) in args), None
        # exact types first (an int stays an int where int is allowed), then conversions
        for a in args:
            if isinstance(a, type) and a is not type(None) and _exact(value, a):
                return True, value
        for a in args:
            if a is type(None):
                continue
            ok, out = _try(value, a, strict)
            if ok:
                return True, out
        return False, None
    if origin in (list, tuple, typing.Sequence, Iterable) or _is_abc_seq(origin):
        args = typing.get_args(ann)
        item = args[0] if args else Any
        if isinstance(value, str) and not strict:
            value = [v.strip() for v in value.split(",")] if value.strip() else []
        elif not strict and not isinstance(value, (list, tuple, dict)):
            value = [value]  # one value on the command line (``widths=1.0``) is a one-item list
        if not isinstance(value, (list, tuple)):
            return False, None
        out = []
        for v in value:
            ok, c = _try(v, item, strict)
            if not ok:
                return False, None
            out.append(c)
        return True, (tuple(out) if origin is tuple else out)
    if origin is typing.Literal:
        return (value in typing.get_args(ann)), value
    if origin is dict or ann is dict:
        if not isinstance(value, dict):
            return False, None
        args = typing.get_args(ann)
        kt, vt = args if len(args) == 2 else (Any, Any)
        conv = {}
        for k, v in value.items():
            okk, ck = _try(k, kt, strict)
            okv, cv = _try(v, vt, strict)
            if not (okk and okv):
                return False, None
            conv[ck] = cv
        return True, conv
    if ann is type(None):
        return value is None, None
    if ann is bool:
        if isinstance(value, bool):
            return True, value
        if not strict and isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return True, value.lower() in ("true", "yes", "1")
        return False, None
    if ann is int:
        if isinstance(value, bool):
            return False, None
        if isinstance(value, int):
            return True, value
        if isinstance(value, float) and value.is_integer() and not strict:
            return True, int(value)
        if isinstance(value, str) and not strict:
            try:
                return True, int(value.strip())
            except ValueError:
                return False, None
        return False, None
    if ann is float:
        if isinstance(value, bool):
            return False, None
        if isinstance(value, (int, float)):
            return math.isfinite(float(value)), float(value)
        if isinstance(value, str) and not strict:
            try:
                f = float(value.strip())
            except ValueError:
                return False, None
            return math.isfinite(f), f
        return False, None
    if ann is str:
        if isinstance(value, str):
            return True, value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not strict:
            return True, str(value)
        return False, None
    if ann in (Path,) or (isinstance(ann, type) and issubclass(ann, Path)):
        return (True, Path(value)) if isinstance(value, (str, Path)) and str(value) else (False, None)
    if isinstance(ann, type):
        return isinstance(value, ann), value
    return True, value


def _is_abc_seq(origin: Any) -> bool:
    import collections.abc as abc

    return origin in (abc.Sequence, abc.Iterable, abc.Collection, abc.MutableSequence)


def _exact(value: Any, t: type) -> bool:
    if t is bool or isinstance(value, bool):
        return type(value) is t
    if t in (list, tuple, dict):
        return False  # containers: check their items through _try
    return isinstance(value, t) and not isinstance(value, (list, tuple, dict))


def _describe(ann: Any) -> str:
    origin = typing.get_origin(ann)
    if origin is Union or origin is types.UnionType:
        parts = [_describe(a) for a in typing.get_args(ann) if a is not type(None)]
        return " or ".join(dict.fromkeys(parts))
    if origin in (list, tuple) or _is_abc_seq(origin):
        args = typing.get_args(ann)
        return f"a list of {_plural(args[0]) if args else 'values'}"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(ann))
    if origin is dict:
        args = typing.get_args(ann)
        return f"a table of {_plural(args[1])}" if len(args) == 2 and args[1] is not Any else "a table"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", Path: "a path",
             dict: "a table"}
    return names.get(ann, f"a {getattr(ann, '__name__', str(ann))}")


def _plural(ann: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(ann, _describe(ann))

