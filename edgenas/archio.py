"""Reading many architectures at once (``--archs FILE``).

A file holds one arch per line in any form the space accepts (canonical string, NB201 ``arch_str``,
FBNet op-index list, an OFA JSON object on one line), or is a CSV whose header has an ``arch`` column
(``arch_str`` and ``op_idx_list`` are accepted too, as in the public NB201 / HW-NAS-Bench tables).
Blank lines and lines starting with ``#`` are skipped. Errors name the file and line.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from edgenas.errors import ArchParseError, EdgenasError
from edgenas.spaces import ArchSpec, SearchSpace

ARCH_COLUMNS = ("arch", "arch_str", "op_idx_list")


def read_arch_lines(path: str | Path) -> list[tuple[int, str]]:
    """(line number, arch text) pairs from a plain or CSV arch file."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise EdgenasError(f"arch file {str(p)!r} not found") from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as exc:
        raise EdgenasError(f"cannot read arch file {str(p)!r}: {exc.__class__.__name__}") from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
    header = next(csv.reader([first]), []) if first and not first.lstrip().startswith("{") else []
    column = next((c for c in ARCH_COLUMNS if c in [h.strip() for h in header]), None)
    if column is not None:
        reader = csv.DictReader(io.StringIO(text))
        reader.fieldnames = [h.strip() for h in reader.fieldnames or []]
        return [(i + 2, (row.get(column) or "").strip()) for i, row in enumerate(reader)]
    return [(i + 1, ln.strip()) for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")]


def read_archs(path: str | Path, space: SearchSpace) -> list[ArchSpec]:
    """Parse every arch in ``path``; the first bad one raises, naming ``file:line``."""
    specs = []
    for lineno, text in read_arch_lines(path):
        try:
            specs.append(space.parse(text))
        except ArchParseError as exc:
            raise ArchParseError(f"{path}:{lineno}: {exc}") from None
    if not specs:
        raise EdgenasError(f"arch file {str(path)!r} holds no architectures")
    return specs


def read_csv_rows(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a CSV table with stripped column names; a missing or unreadable file is an
    :class:`EdgenasError` naming it."""
    p = Path(path)
    try:
        with open(p, newline="") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            reader.fieldnames = header
            return header, list(reader)
    except FileNotFoundError:
        raise EdgenasError(f"table {str(p)!r} not found") from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as exc:
        raise EdgenasError(f"cannot read table {str(p)!r}: {exc.__class__.__name__}") from None
