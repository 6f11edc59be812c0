"""Timing passes that notice background load and re-measure what it touched.

Timing on a shared machine only ever errs upward: another process, a thermal or frequency dip, a
noisy neighbour in a VM. Taking the lowest median of separated passes rejects short bursts, but a
burst longer than a pass (a tiny space's units are timed in seconds) hits every pass of the same
units. So each pass is cut into blocks, and a fixed *sentinel* model is timed between blocks: its
lowest reading over the whole session is the quiet-machine reference, and a block whose bracketing
sentinel readings exceed it by more than ``tolerance`` was measured under load. Load the sentinel
does not feel (memory bandwidth, cache, a burst shorter than a block) shows as disagreement between
passes, so an item is *settled* only when its two lowest clean medians agree within ``agree``. Items
not settled after the regular passes are measured again (up to ``extra_passes`` more times); each
item keeps its lowest clean median, or its lowest median if it never got a clean one.

*Paired* timing (``paired=True``) checks every group of runs rather than every block: ``measure`` times
the item alternately with the sentinel in groups of a few runs (:class:`PairedSamples`), and an item
group counts only if the sentinel groups on both sides of it ran at full speed; a window keeps the
median of its clean groups when it has at least two. The reference is a low percentile (the 1st) of
all sentinel group medians, so one lucky reading does not set it. Some hosts change speed by tens of
percent every few seconds with nothing else running (probably a VM sharing its physical core;
measured here: a sentinel at 12.7 us or at 19-23 us, whole seconds at a time), faster than a block
of items takes and sometimes within one item's window; checking per group keeps the runs made at
full speed. The speed levels do not scale every model alike (a unit slowed 1.3x while the sentinel
slowed 1.6x), so runs are gated on the sentinel, not divided by it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgenas.latency.table import Entry


@dataclass
class PairedSamples:
    """One paired timing window: per-run ms of the item and of the sentinel, run in alternating groups of
    ``group`` runs starting and ending with the sentinel (sentinel groups g and g+1 bracket item group g)."""

    item_ms: list[float]
    ref_ms: list[float]
    group: int = 5

    def groups(self) -> list[tuple[list[float], float, float]]:
        """(item runs, sentinel median before, sentinel median after) per item group; a group without a
        sentinel group on both sides gets ``inf`` for the missing side (never clean)."""
        g = max(1, self.group)
        refs = self.sentinel_medians()
        out = []
        for j, i in enumerate(range(0, len(self.item_ms), g)):
            before = refs[j] if j < len(refs) else float("inf")
            after = refs[j + 1] if j + 1 < len(refs) else float("inf")
            out.append((self.item_ms[i : i + g], before, after))
        return out

    def sentinel_medians(self) -> list[float]:
        """The sentinel's median per group (ms), in the order run."""
        g = max(1, self.group)
        return [Entry.from_samples(self.ref_ms[i : i + g]).p50_ms for i in range(0, len(self.ref_ms), g)]


@dataclass
class PassReport:
    """What the passes saw: sentinel readings (ms) and how many items needed or still need care."""

    sentinel_ms: list[float] = field(default_factory=list)
    loaded_blocks: int = 0
    blocks: int = 0
    remeasured: int = 0
    unsettled: list[str] = field(default_factory=list)

    @staticmethod
    def combine(reports: list[PassReport]) -> dict[str, int]:
        """Totals over several timing sessions (units, networks): what a table records about its timing."""
        return {"loaded_blocks": sum(r.loaded_blocks for r in reports), "blocks": sum(r.blocks for r in reports),
                "remeasured": sum(r.remeasured for r in reports),
                "unsettled": sum(len(r.unsettled) for r in reports)}

    @staticmethod
    def warning(timing: dict[str, int], items: int) -> str | None:
        """One line for the user when a session's timings cannot be trusted as quiet-machine numbers: more
        than 5% of the ``items`` (and more than 10) never settled. Load that was seen and re-measured
        away is not worth a warning."""
        loaded, blocks, unsettled = timing.get("loaded_blocks", 0), timing.get("blocks", 0), timing.get("unsettled", 0)
        if unsettled > max(10, 0.05 * items):
            return (f"warning: timed under background load ({loaded}/{blocks} blocks loaded, {unsettled} item(s) "
                    f"never settled); for quiet-machine numbers close other work and re-run with --remeasure")
        return None

    @property
    def reference_ms(self) -> float:
        """The sentinel's full-speed time: the 1st percentile of its readings (the minimum below 100)."""
        if not self.sentinel_ms:
            return float("nan")
        xs = sorted(self.sentinel_ms)
        return xs[len(xs) // 100]

    def summary(self) -> str:
        if not self.loaded_blocks and not self.remeasured:
            return ""
        out = (f"background load or a slower machine speed in {self.loaded_blocks}/{self.blocks} timing windows "
               f"(sentinel up to {max(self.sentinel_ms) / self.reference_ms:.2f}x its quiet time); "
               f"{self.remeasured} item(s) "
               f"re-measured until two passes agreed")
        if self.unsettled:
            out += f", {len(self.unsettled)} never settled (kept their lowest median)"
        return out


def timed_passes(
    keys: Sequence[str], measure: Callable[[str], Any], sentinel: Callable[[], float] | None, *,
    rounds: int = 2, block: int = 25, tolerance: float = 0.15, agree: float = 0.03, extra_passes: int = 3,
    on_entry: Callable[[str, Entry], None] | None = None, paired: bool = False,
    known_sentinel_ms: Sequence[float] = (),
) -> tuple[dict[str, Entry], PassReport]:
    """Measure every key in ``rounds`` separated passes (alternating order) with sentinel checks.

    ``measure(key)`` times one item: an :class:`Entry`, or with ``paired`` a :class:`PairedSamples`
    (``sentinel`` is then not called and may be None);
    ``sentinel()`` returns the sentinel's median in ms; ``on_entry(key, best_so_far)`` is called after
    each measurement (for progress and periodic saves). ``known_sentinel_ms``: the same sentinel's
    readings from earlier sessions on this host; they join this session's in setting its full-speed
    time, so a session of a few items that runs entirely during a slow spell (nothing faster to compare
    with) is still recognised as slow and re-measured. ``report.sentinel_ms`` holds both.
    """
    report = PassReport(sentinel_ms=list(known_sentinel_ms))
    best_any: dict[str, Entry] = {}
    clean: dict[str, list[Entry]] = {}
    windows: list[tuple[list[tuple[str, Entry]], float, float]] = []
    paired_windows: list[tuple[str, PairedSamples]] = []

    def record(k: str, e: Entry) -> None:
        if k not in best_any or e.p50_ms < best_any[k].p50_ms:
            best_any[k] = e
        if on_entry:
            on_entry(k, best_any[k])

    def run_pass(order: Sequence[str]) -> None:
        if paired:
            for k in order:
                w = measure(k)
                report.sentinel_ms.extend(w.sentinel_medians())
                paired_windows.append((k, w))
                record(k, Entry.from_samples(w.item_ms))
            return
        assert sentinel is not None, "unpaired timing needs a sentinel"
        before = sentinel()
        report.sentinel_ms.append(before)
        for i in range(0, len(order), block):
            got = []
            for k in order[i : i + block]:
                e = measure(k)
                got.append((k, e))
                record(k, e)
            after = sentinel()
            report.sentinel_ms.append(after)
            windows.append((got, before, after))
            before = after

    def judge() -> None:
        limit = report.reference_ms * (1 + tolerance)
        clean.clear()
        report.loaded_blocks = 0
        for got, before, after in windows:
            if max(before, after) > limit:
                report.loaded_blocks += 1
                continue
            for k, e in got:
                clean.setdefault(k, []).append(e)
        for k, w in paired_windows:
            groups = w.groups()
            kept = [runs for runs, before, after in groups if max(before, after) <= limit]
            if len(kept) < min(2, len(groups)):
                report.loaded_blocks += 1
                continue
            clean.setdefault(k, []).append(Entry.from_samples([x for runs in kept for x in runs]))
        for es in clean.values():
            es.sort(key=lambda e: e.p50_ms)
        report.blocks = len(windows) + len(paired_windows)

    def settled(k: str) -> bool:
        es = clean.get(k, [])
        return len(es) >= 2 and es[1].p50_ms <= es[0].p50_ms * (1 + agree)

    keys = list(dict.fromkeys(keys))
    for r in range(max(1, rounds)):
        run_pass(keys if r % 2 == 0 else keys[::-1])
    judge()
    again: set[str] = set()
    for _ in range(extra_passes):
        todo = [k for k in keys if not settled(k)]
        if not todo:
            break
        again.update(todo)
        run_pass(todo)
        judge()
    report.remeasured = len(again)
    report.unsettled = [k for k in keys if not settled(k)]
    return {k: clean[k][0] if k in clean else best_any[k] for k in keys}, report
