"""Reading many architectures at once (``--archs FILE``).

A file holds one arch per line in any form the space accepts (canonical string, NB201 ``arch_str``,
FBNet op-index list, an OFA JSON object on one line), or is a CSV whose header has an ``arch`` column
(``arch_str`` and ``op_idx_list`` are accepted too, as in the public NB201 / HW-NAS-Bench tables).
Blank lines and lines starting with ``#`` are skipped. Errors name the file and line.

:func:`read_arch_column` is the one reader of arch-keyed tables (a CSV with an arch column and a value
column): measured latencies, scores, accuracies.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from edgenas.errors import ArchParseError, EdgenasError
from edgenas.spaces import ArchSpec, SearchSpace

ARCH_COLUMNS = ("arch", "arch_str", "op_idx_list")


def _read_text(p: Path, what: str) -> str:
    from edgenas.fileio import read_text

    return read_text(p, what, "CSV or text", "utf-8-sig")


def _csv_rows(text: str, p: Path, what: str) -> list[list[str]]:
    """Every CSV row of ``text``; malformed CSV (e.g. a field over the csv module's 131,072-character
    limit, a NUL byte) is an :class:`EdgenasError` naming the file and line."""
    reader = csv.reader(io.StringIO(text))
    rows = []
    try:
        for row in reader:
            rows.append(row)
    except csv.Error as exc:
        raise EdgenasError(f"{p}:{reader.line_num}: not a readable {what} line ({exc})") from None
    return rows


def read_arch_lines(path: str | Path) -> list[tuple[int, str]]:
    """(line number, arch text) pairs from a plain or CSV arch file."""
    p = Path(path)
    text = _read_text(p, "arch file")
    if "\x00" in text:
        raise EdgenasError(f"arch file {str(p)!r} is not a text file (it holds NUL bytes)")
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
    header = [h.strip() for h in _csv_rows(first, p, "arch file")[0]] if first and not \
        first.lstrip().startswith("{") else []
    column = next((c for c in ARCH_COLUMNS if c in header), None)
    if column is not None:
        return [(line, row.get(column, "").strip()) for line, row in _dict_rows(text, p, "arch file")]
    return [(i + 1, ln.strip()) for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")]


def _dict_rows(text: str, p: Path, what: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, {stripped column: value}) of a CSV table with a header."""
    reader = csv.reader(io.StringIO(text))
    out: list[tuple[int, dict[str, str]]] = []
    try:
        header = [h.strip() for h in next(reader, [])]
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            out.append((reader.line_num, {h: (row[i] if i < len(row) else "") for i, h in enumerate(header)}))
    except csv.Error as exc:
        raise EdgenasError(f"{p}:{reader.line_num}: not a readable {what} line ({exc})") from None
    return out


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


@dataclass(frozen=True)
class ArchRow:
    """One row of an arch-keyed table: its line in the file, the spec and the value of the column
    (None where the cell is empty or not a number and ``bad="keep"``)."""

    line: int
    spec: ArchSpec
    value: float | None


def read_arch_column(path: str | Path, space: SearchSpace, column: str, what: str = "table",
                     bad: str = "error", positive: bool = False) -> list[ArchRow]:
    """The rows of an arch-keyed CSV (an ``arch`` / ``arch_str`` / ``op_idx_list`` column, or an
    ``index`` column for spaces with ``from_index``) with the float value of ``column``.

    ``bad`` says what a cell that is not a finite number does: ``"error"`` (one line naming file and
    line), ``"skip"`` (the row is dropped) or ``"keep"`` (value None). ``positive`` also refuses values
    <= 0. Every problem names the file, and the line where there is one; an empty table is an error.
    """
    p = Path(path)
    text = _read_text(p, what)
    rows = _dict_rows(text, p, what)
    header = list(rows[0][1]) if rows else [h.strip() for h in (_csv_rows(text.split("\n", 1)[0], p, what)
                                                                 or [[]])[0]]
    arch_col = next((c for c in ARCH_COLUMNS if c in header), None)
    by_index = arch_col is None and "index" in header and hasattr(space, "from_index")
    if arch_col is None and not by_index:
        alt = " or index" if hasattr(space, "from_index") else ""
        raise EdgenasError(f"{what} {str(p)!r} has no arch column ({', '.join(ARCH_COLUMNS)}{alt}); "
                           f"columns: {', '.join(header) or 'none'}")
    if column not in header:
        raise EdgenasError(f"{what} {str(p)!r} has no column {column!r}; columns: {', '.join(header)}")
    out: list[ArchRow] = []
    for line, row in rows:
        try:
            spec = space.from_index(int(row["index"])) if by_index else space.parse(row[arch_col] or "")  # type: ignore[attr-defined]
        except (ArchParseError, ValueError) as exc:
            raise ArchParseError(f"{p}:{line}: {exc}") from None
        raw = (row.get(column) or "").strip()
        try:
            value: float | None = float(raw)
            if not math.isfinite(value) or (positive and value <= 0):
                raise ValueError
        except ValueError:
            if bad == "skip":
                continue
            if bad == "keep":
                value = None
            else:
                want = "a positive number" if positive else "a finite number"
                raise EdgenasError(f"{p}:{line}: {column} {raw!r} is not {want}") from None
        out.append(ArchRow(line, spec, value))
    if not out:
        raise EdgenasError(f"{what} {str(p)!r} holds no {'numeric ' if bad == 'skip' else ''}rows"
                           + (f" in column {column!r}" if bad == "skip" else ""))
    return out
