"""Prior tables for few-shot device fits (``edgenas lut fit --prior-device auto``).

The candidates are every latency table the store has for the space: the user's (``--devices-dir``:
profiled, imported, fitted) and the ones shipped in ``edgenas.latency_tables``: NB201 and FBNet tables
fitted by ``benchmarks/fit_priors.py`` from public end-to-end measurements (HW-NAS-Bench's Raspberry
Pi 4 and Pixel 3, HELP's Xeon Gold 6226; MIT-licensed data, see each table's ``host`` for provenance),
so a fresh install has priors without the shared data folder. A user table shadows a shipped one of
the same device. The target device's own table is never a candidate (it was fitted on some of the same
rows, which would make the cross-validation that chooses among priors optimistic), and a table that
prices less than half of the measured networks' units is set aside (another input size or layout).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edgenas.errors import EdgenasError
from edgenas.latency.devices import DeviceStore
from edgenas.latency.table import LatencyTable

MIN_COVERAGE = 0.5  # a prior must price at least this share of the measured networks' unit occurrences


@dataclass
class PriorCandidate:
    """A table offered as a prior, where it was found, and why it was (not) used."""

    table: LatencyTable
    path: Path
    shipped: bool
    coverage: float = 1.0
    skipped: str = ""

    @property
    def name(self) -> str:
        return self.table.device


def shipped_dir() -> Path:
    return Path(str(resources.files("edgenas.latency_tables")))


def prior_candidates(store: DeviceStore, space: str, exclude: Iterable[str] = ()) -> list[PriorCandidate]:
    """Every table for ``space`` in the store's table folders (user first), one per device, except the
    devices in ``exclude``; unreadable tables are listed with the reason (``skipped``)."""
    excluded = set(exclude)
    shipped = shipped_dir().resolve()
    out: dict[str, PriorCandidate] = {}
    bad: list[PriorCandidate] = []
    for d in store.table_dirs():
        if not d.is_dir():
            continue
        for p in sorted(d.glob(f"*__{space}.json")):
            try:
                t = LatencyTable.load(p)
            except EdgenasError as exc:
                stub = LatencyTable(device=p.stem.split("__", 1)[0], space=space, runtime={})
                bad.append(PriorCandidate(stub, p, False, 0.0, f"unreadable: {exc}"))
                continue
            if t.space != space or t.device in excluded or t.device in out or not t.entries:
                continue
            out[t.device] = PriorCandidate(t, p, p.resolve().parent == shipped)
    return [*out.values(), *bad]


def with_coverage(candidates: Sequence[PriorCandidate], unit_keys: Sequence[str]) -> list[PriorCandidate]:
    """Mark the candidates that price too few of ``unit_keys`` (occurrences in the measured networks)."""
    for c in candidates:
        if c.skipped:
            continue
        have = sum(1 for k in unit_keys if k in c.table.entries)
        c.coverage = have / max(1, len(unit_keys))
        if c.coverage < MIN_COVERAGE:
            c.skipped = f"prices {c.coverage:.0%} of the measured networks' units"
    return list(candidates)


def usable(candidates: Sequence[PriorCandidate]) -> list[LatencyTable]:
    return [c.table for c in candidates if not c.skipped]


def describe(candidates: Sequence[PriorCandidate]) -> str:
    """One line: the candidates by origin, and the ones set aside."""
    used = [c for c in candidates if not c.skipped]
    parts = []
    for label, flag in (("shipped", True), ("yours", False)):
        names = [c.name for c in used if c.shipped == flag]
        if names:
            parts.append(f"{label}: {', '.join(names)}")
    skipped = [f"{c.name} ({c.skipped})" for c in candidates if c.skipped]
    return (f"{len(used)} candidate table(s)" + (f" ({'; '.join(parts)})" if parts else "")
            + (f"; set aside: {', '.join(skipped)}" if skipped else ""))
