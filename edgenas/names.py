"""Names that become file names: devices, spaces, studies.

A device name becomes ``devices/<name>.toml`` and ``latency_tables/<name>__<space>.json``; a space
name is the second half of that file name and the prefix of every canonical arch string; a study name
is stored in run folders and storages. Each is checked here before any path is built from it, so a
name such as ``../../x``, ``/etc/x``, an empty string or one holding quotes or newlines is refused
with one line instead of writing outside the store or into a TOML file.
"""

from __future__ import annotations

import re

from edgenas.errors import EdgenasError

NAME_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")
"""1-64 characters: letters, digits, ``.``, ``_``, ``-``; starting and ending with a letter or digit."""
RULE = ("1-64 letters, digits, '.', '_' or '-', starting and ending with a letter or digit, "
        "without '..' or '__'")


def check_name(name: object, kind: str) -> str:
    """``name`` if it is a safe name for a ``kind`` (``device``, ``space``, ``study``); else an
    :class:`EdgenasError` saying what is wrong and what is allowed."""
    if not isinstance(name, str):
        raise EdgenasError(f"{kind} name must be a string, got {type(name).__name__} {name!r}")
    if not name:
        raise EdgenasError(f"{kind} name is empty; use {RULE} (e.g. my-board)")
    if NAME_PATTERN.fullmatch(name) is None or ".." in name or "__" in name:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise EdgenasError(f"{kind} name {shown!r} is not allowed; use {RULE} (e.g. my-board)")
    return name


def is_safe_name(name: object) -> bool:
    """True when :func:`check_name` would accept ``name``."""
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None and ".." not in name \
        and "__" not in name
