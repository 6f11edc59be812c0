"""Writing and reading the files edgenas owns: one atomic write, one TOML reader and writer.

Every file edgenas writes (tables, device specs, run-folder results, exported models, cards) goes
through :func:`atomic_write`: the bytes go to a unique temporary file in the target's folder, are
fsync'ed, and the temporary file is renamed over the target. A crash, a full disk or a concurrent
writer therefore never leaves a half-written file, and an earlier good file stays until the new one is
complete. TOML is written with ``tomli-w`` (never by string formatting, so a value cannot inject keys).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgenas.errors import EdgenasError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()
"""Mode of written files: what ``open(path, "w")`` would give (mkstemp alone gives 0600)."""


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` atomically (unique temp name + fsync + rename); returns the path.

    The folder is created when missing. ``str`` data is written as UTF-8.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(p.parent)
    return p


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable where the platform allows it (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def ensure_writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """Create ``path`` (and parents) when missing and prove it is writable, before any work starts;
    otherwise one line saying why not."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".edgenas-write-test.", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise EdgenasError(f"cannot write to {what} {str(p)!r}: {exc.strerror or exc}") from None
    return p


def check_can_create(path: str | Path, what: str = "output folder") -> Path:
    """Fail early, writing nothing, when folder ``path`` could not be created or written: its nearest
    existing ancestor must be a writable folder (``ensure_writable_dir`` creates and proves it later)."""
    p = Path(path)
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise EdgenasError(f"cannot write to {what} {str(p)!r}: {str(probe)!r} is a file")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise EdgenasError(f"cannot write to {what} {str(p)!r}: {str(probe)!r} is not writable")
    return p


def read_text(path: str | Path, what: str = "file", kind: str = "text", encoding: str = "utf-8") -> str:
    """A text file's content; a missing, unreadable or binary file is an :class:`EdgenasError` naming it
    (``what`` says what the file is, e.g. ``config``; ``kind`` its format, e.g. ``TOML``)."""
    p = Path(path)
    try:
        return p.read_bytes().decode(encoding)
    except FileNotFoundError:
        raise EdgenasError(f"{what} {str(p)!r} not found") from None
    except IsADirectoryError:
        raise EdgenasError(f"{what} {str(p)!r} is a folder, not a {kind} file") from None
    except PermissionError:
        raise EdgenasError(f"{what} {str(p)!r} cannot be read (permission denied)") from None
    except UnicodeDecodeError:
        raise EdgenasError(f"{what} {str(p)!r} is not a text file ({kind} is UTF-8 text)") from None


def read_toml(path: str | Path, what: str = "file") -> dict[str, Any]:
    """A TOML document as a dict; every problem is one line naming the file (see :func:`read_text`)."""
    text = read_text(path, what, "TOML")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EdgenasError(f"{what} {str(path)!r} is not valid TOML: {exc}") from None


def read_json(path: str | Path, what: str = "file", hint: str = "") -> Any:
    """A JSON document; an empty or malformed file is one line naming it (``hint``: what to do then)."""
    import json

    text = read_text(path, what, "JSON")
    more = f"; {hint}" if hint else ""
    if not text.strip():
        raise EdgenasError(f"{what} {str(path)!r} is empty{more}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EdgenasError(f"{what} {str(path)!r} is not valid JSON ({exc.msg} at line {exc.lineno}){more}") from None
    except RecursionError:
        raise EdgenasError(f"{what} {str(path)!r} is not valid JSON (nested too deeply){more}") from None


def read_torch(path: str | Path, what: str = "file", kind: str = "torch file", fix: str = "") -> Any:
    """The object in a ``torch.save`` file, on the CPU, read with ``weights_only=True`` so a pickle that
    would run code is refused unread. A missing, folder, empty, unreadable, foreign or malicious file is
    one :class:`EdgenasError` line naming ``what`` and the file (``kind``: what it should have been;
    ``fix``: how to make one, appended after a semicolon). Callers check the object's shape."""
    import pickle
    import warnings

    import torch

    p = Path(path)
    tail = f"; {fix}" if fix else ""
    if not p.exists():
        raise EdgenasError(f"{what} {str(p)!r} not found")
    if p.is_dir():
        raise EdgenasError(f"{what} {str(p)!r} is a folder, not a {kind}{tail}")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise EdgenasError(f"{what} {str(p)!r} cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise EdgenasError(f"{what} {str(p)!r} is empty (0 bytes){tail}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing: one line only
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except PermissionError:
        raise EdgenasError(f"{what} {str(p)!r} cannot be read (permission denied)") from None
    except pickle.UnpicklingError as exc:
        with open(p, "rb") as f:
            pickled = f.read(1) == b"\x80"  # a raw pickle stream (torch's own files are zip archives)
        if pickled or "unsupported global" in str(exc).lower():  # pickled classes/functions: how code runs
            raise EdgenasError(f"{what} {str(p)!r} holds objects other than tensors (refused without running them: "
                               f"loading it could execute code){tail}") from None
        raise EdgenasError(f"{what} {str(p)!r} is not a {kind} (unreadable pickle){tail}") from None
    except Exception as exc:  # text, truncated or foreign bytes: torch raises KeyError, EOFError, RuntimeError...
        raise EdgenasError(f"{what} {str(p)!r} is not a {kind} ({exc.__class__.__name__} while reading it)"
                           f"{tail}") from None


def toml_text(data: dict[str, Any], header: str = "") -> str:
    """``data`` as TOML text (``None`` values dropped: TOML has no null), with optional ``# header``
    comment lines first."""
    import tomli_w

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    comment = "".join(f"# {line}\n" for line in header.splitlines()) if header else ""
    return comment + tomli_w.dumps(clean(data))


def write_toml(path: str | Path, data: dict[str, Any], header: str = "") -> Path:
    """Write ``data`` as a TOML file, atomically (see :func:`toml_text`)."""
    return atomic_write(path, toml_text(data, header))
