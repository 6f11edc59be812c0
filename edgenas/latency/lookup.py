"""Whole-network latencies looked up from a measured table (CSV), for spaces small enough to measure.

NAS-Bench-201 style benchmarks publish one latency per architecture; such a table needs no device
model. Rows are keyed by canonical arch string; the CSV gives the arch as an ``arch`` / ``arch_str`` /
``op_idx_list`` column or, for ``nb201``, as NAS-Bench-201's ``index``. It answers ``predict_many``
like :class:`~edgenas.latency.predict.LatencyPredictor`; an arch missing from the table is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgenas.archio import ARCH_COLUMNS, read_csv_rows
from edgenas.errors import ArchParseError, EdgenasError
from edgenas.spaces import ArchSpec, SearchSpace, Task


def read_arch_table(path: str | Path, space: SearchSpace, column: str) -> dict[str, float]:
    """Canonical arch string -> float value of ``column``; rows with an empty or non-numeric value are
    skipped. Errors name the file (and line for a bad arch)."""
    p = Path(path)
    header, rows = read_csv_rows(p)
    if column not in header:
        raise EdgenasError(f"table {str(p)!r} has no column {column!r}; columns: {', '.join(header)}")
    arch_col = next((c for c in ARCH_COLUMNS if c in header), None)
    by_index = arch_col is None and "index" in header and hasattr(space, "from_index")
    if arch_col is None and not by_index:
        raise EdgenasError(f"table {str(p)!r} has no arch column ({', '.join(ARCH_COLUMNS)}"
                           f"{' or index' if hasattr(space, 'from_index') else ''}); columns: {', '.join(header)}")
    out: dict[str, float] = {}
    for line, row in enumerate(rows, 2):
        try:
            spec = space.from_index(int(row["index"])) if by_index else space.parse(row[arch_col] or "")  # type: ignore[attr-defined]
        except (ArchParseError, ValueError) as exc:
            raise EdgenasError(f"{p}:{line}: {exc}") from None
        try:
            out[str(spec)] = float(row[column])
        except (TypeError, ValueError):
            continue
    if not out:
        raise EdgenasError(f"table {str(p)!r} holds no numeric values in column {column!r}")
    return out


class MeasuredLatency:
    """Latency (ms) per arch from a CSV column; ``name`` labels it like a device."""

    def __init__(self, space: SearchSpace, path: str | Path, column: str, name: str | None = None) -> None:
        self.space = space
        self.path = Path(path)
        self.column = column
        self.name = name or f"{self.path.stem}:{column}"
        self.table = read_arch_table(self.path, space, column)

    def predict_many(self, specs: Sequence[ArchSpec], task: Task | None = None) -> list[float]:
        out = []
        for s in specs:
            v = self.table.get(str(s))
            if v is None:
                raise EdgenasError(f"arch {s} is not in latency table {str(self.path)!r} (column {self.column!r})")
            out.append(v)
        return out

    def predict(self, spec: ArchSpec, task: Task | None = None) -> float:
        return self.predict_many([spec], task)[0]
