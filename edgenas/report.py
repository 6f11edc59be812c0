"""Output of per-spec records: aligned tables for people, JSON and CSV for programs."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from edgenas.errors import EdgenasError


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M' (SI for counts, binary for bytes when ``unit == 'B'``)."""
    base, prefixes = (1024.0, ["", "Ki", "Mi", "Gi"]) if unit == "B" else (1000.0, ["", "K", "M", "G"])
    v = float(n)
    for p in prefixes:
        if abs(v) < base or p == prefixes[-1]:
            return f"{v:.0f}{p}{unit}" if p == "" else f"{v:.2f}{p}{unit}"
        v /= base
    return str(n)


TABLE_FORMAT: dict[str, tuple[str, str]] = {
    # field -> (column title, unit for human())
    "macs": ("MACs", ""),
    "params": ("params", ""),
    "size_bytes_fp32": ("size fp32", "B"),
    "size_bytes_int8": ("size int8", "B"),
    "peak_ram_bytes_fp32": ("peak RAM fp32", "B"),
    "peak_ram_bytes_int8": ("peak RAM int8", "B"),
    "arena_bytes_tflm": ("TFLM arena", "B"),
    "delegate_partitions_fp32": ("XNNPACK parts fp32", ""),
    "delegate_partitions_int8": ("XNNPACK parts int8", ""),
    "ops_off_delegate_fp32": ("off XNNPACK fp32", ""),
    "ops_off_delegate_int8": ("off XNNPACK int8", ""),
    "latency_ms": ("latency ms", "ms"),
    "score": ("score", "score"),
}


def format_table(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Right-aligned numeric columns, the arch string last (it is the longest)."""
    numeric = [c for c in columns if c != "arch"]
    heads = [TABLE_FORMAT.get(c, (c, ""))[0] for c in numeric] + (["arch"] if "arch" in columns else [])
    rows = []
    for r in records:
        cells = []
        for c in numeric:
            v, unit = r.get(c), TABLE_FORMAT.get(c, (c, ""))[1]
            if v is None:
                cells.append("-")
            elif unit in ("ms", "score") or isinstance(v, float):
                cells.append(f"{v:.4g}")
            else:
                cells.append(human(v, unit))
        if "arch" in columns:
            cells.append(str(r.get("arch", "")))
        rows.append(cells)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(heads)]
    lines = []
    for row in [heads, *rows]:
        parts = [cell.rjust(w) for cell, w in zip(row[: len(numeric)], widths)]
        if "arch" in columns:
            parts.append(row[-1])
        lines.append("  ".join(parts))
    return "\n".join(lines)


def check_writable(path: str | Path) -> Path:
    """Fail early (before any work) when an output file cannot be created."""
    p = Path(path)
    if p.is_dir():
        raise EdgenasError(f"output {str(p)!r} is a directory; give a file name")
    if not p.parent.exists():
        raise EdgenasError(f"output folder {str(p.parent)!r} does not exist; create it first")
    return p


def write_csv(path: str | Path, records: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(records)


def write_json(records: Sequence[dict[str, Any]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(list(records), out, indent=1)
    out.write("\n")
