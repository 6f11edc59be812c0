"""Shared helpers for benchmark scripts: machine/version metadata and result files.

Every benchmark prints a table and writes ``benchmarks/results/<name>.json`` and ``.md`` with the
machine, library versions, seeds and date, so committed results say where they came from.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
PARTIAL_BANNER = "**Partial: the run is still going or was interrupted.**"
"""The line a results file carries while its run is still writing it (or was cut short)."""


def cpu_model() -> str:
    from edgenas.latency.table import host_info

    return str(host_info()["cpu"])


def versions(*packages: str) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in ("edgenas", "torch", "numpy", *packages):
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(
    name: str, title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str],
    params: dict[str, Any], notes: str = "", packages: Sequence[str] = (),
    extra_tables: dict[str, tuple[Sequence[dict[str, Any]], Sequence[str]]] | None = None,
    measured: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Print the table and write ``<name>.json`` / ``<name>.md`` under benchmarks/results.

    ``extra_tables`` maps a heading to (rows, columns): further tables written after the notes (and
    under ``"tables"`` in the JSON). ``measured``: the ``date``/``commit``/``machine``/``versions`` of
    results being re-rendered rather than re-measured (a re-render must not claim today's date and code)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "benchmark": name,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine(),
        "versions": versions(*packages),
        "params": params,
    }
    meta.update({k: v for k, v in (measured or {}).items() if k in ("date", "commit", "machine", "versions")})
    table = markdown_table(rows, columns)
    print(table)
    jpath = RESULTS / f"{name}.json"
    extra_tables = extra_tables or {}
    payload = {**meta, "rows": list(rows), "notes": notes}
    if extra_tables:
        payload["tables"] = {k: list(r) for k, (r, _) in extra_tables.items()}
    jpath.write_text(json.dumps(payload, indent=1) + "\n")
    mpath = RESULTS / f"{name}.md"
    m = meta["machine"]
    body = [
        f"# {title}", "",
        f"Date {meta['date']}, commit {meta['commit']}. Machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB, {m['platform']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "Parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()) + ".", "",
        table, "",
    ]
    if notes:
        body += [notes.strip(), ""]
    for heading, (extra_rows, extra_cols) in extra_tables.items():
        print(f"\n{heading}\n" + markdown_table(extra_rows, extra_cols))
        body += [f"## {heading}", "", markdown_table(extra_rows, extra_cols), ""]
    mpath.write_text("\n".join(body))
    return jpath, mpath
