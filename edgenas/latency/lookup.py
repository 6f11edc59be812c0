"""Whole-network latencies looked up from a measured table (CSV), for spaces small enough to measure.

NAS-Bench-201 style benchmarks publish one latency per architecture; such a table needs no device
model. Rows are keyed by canonical arch string; the CSV gives the arch as an ``arch`` / ``arch_str`` /
``op_idx_list`` column or, for ``nb201``, as NAS-Bench-201's ``index``. It answers ``predict_many``
like :class:`~edgenas.latency.predict.LatencyPredictor`; an arch missing from the table is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgenas.archio import read_arch_column
from edgenas.errors import EdgenasError
from edgenas.spaces import ArchSpec, SearchSpace, Task


def read_arch_table(path: str | Path, space: SearchSpace, column: str) -> dict[str, float]:
    """Canonical arch string -> float value of ``column``; rows with an empty or non-numeric value are
    skipped. Errors name the file (and line for a bad arch)."""
    return {str(r.spec): float(r.value) for r in read_arch_column(path, space, column, bad="skip")  # type: ignore[arg-type]
            }


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
