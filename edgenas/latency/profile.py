"""Profiling: measure latency units (and whole networks) on a device's runtime and fill its table.

Two phases, so that conversion never disturbs timing: export every missing unit as a micro-model
(``jobs`` worker processes; exported files are cached under the work dir), then time them one by one
on an otherwise idle runtime, in separated passes with sentinel checks that re-measure what background
load touched (:mod:`edgenas.latency.passes`). The table is saved atomically every ``save_every_s``
seconds and at the end: an interrupted run keeps what it measured and a rerun measures only what is missing.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from edgenas.costgraph import OpGraph
from edgenas.errors import EdgenasError
from edgenas.latency.devices import DeviceSpec, DeviceStore
from edgenas.latency.passes import PairedSamples, PassReport, timed_passes
from edgenas.latency.runtimes import DeviceRuntime, ExportItem, get_runtime
from edgenas.latency.table import Entry, LatencyTable, host_info
from edgenas.layers import Layer

if TYPE_CHECKING:
    import torch.nn as nn

    from edgenas.spaces import ArchSpec, SearchSpace, Task

PAIRED_GROUP = 5  # runs per group in paired timing: a group median is a warm run (see time_model_paired)


def probe_files(runtime: DeviceRuntime, out_dir: Path) -> tuple[Path, Path]:
    """Model files of the sentinel (a fixed small convolution, conv 32x16 -> 32, k3) and of the trivial
    model that measures the per-invoke cost, exported together (one conversion) into ``out_dir``, where
    an earlier export is reused."""
    from edgenas.layers import BNActLayer, ConvLayer

    sentinel, trivial = ConvLayer(32, 16, cout=32, k=3), BNActLayer(1, 1)
    paths = export_units(runtime, [sentinel, trivial], out_dir, jobs=1)
    return paths[sentinel.key], paths[trivial.key]


def paired_measure(runtime: DeviceRuntime, sentinel_path: Path, warmup: int, repeats: int,
                   max_seconds: float) -> Callable[[Path], PairedSamples]:
    """One paired timing window of a model file: its runs alternating with the sentinel's in groups of
    ``PAIRED_GROUP`` (what :func:`timed_passes` with ``paired=True`` gates on)."""

    def measure(path: Path) -> PairedSamples:
        item, ref = runtime.time_paired(path, sentinel_path, warmup, repeats, max_seconds, group=PAIRED_GROUP)
        return PairedSamples(item, ref, PAIRED_GROUP)

    return measure


def time_file(runtime: DeviceRuntime, path: Path, sentinel_path: Path, *, warmup: int = 10, repeats: int = 50,
              max_seconds: float = 10.0, rounds: int = 2, extra_passes: int = 6, min_seconds: float = 2.0,
              sentinel_history: list[float] | None = None) -> tuple[Entry, PassReport]:
    """Latency of one model file by the profiler's own procedure: ``rounds`` paired windows, more (up to
    ``extra_passes``) until two full-speed windows agree within 3%; the lowest full-speed window's
    entry. So an exported artifact is measured as the table it is compared with was.

    Repeated until ``min_seconds`` have passed, keeping the lowest: a table's entries are timed minutes
    apart, one file's windows within milliseconds, and this host has slow spells (seen here: a 0.044 ms
    ONNX model at 0.088 ms for a second at a time) that slow some models far more than the sentinel, so
    only windows spread over time meet its full speed. ``sentinel_history``: the sentinel's readings
    from earlier calls (updated in place); they tell a spell the sentinel does feel from normal speed."""
    paired = pairs_with_sentinel(runtime.threads)
    if paired:
        measure = paired_measure(runtime, sentinel_path, warmup, repeats, max_seconds)
        item, sentinel = (lambda _k: measure(path)), None
    else:
        item = lambda _k: time_entry(runtime, path, warmup, repeats, max_seconds)  # noqa: E731
        sentinel = lambda: sentinel_ms(runtime, sentinel_path, max_seconds)  # noqa: E731
    history = sentinel_history if sentinel_history is not None else []
    total = PassReport()
    best: Entry | None = None
    t0 = time.perf_counter()
    while best is None or time.perf_counter() - t0 < min_seconds:
        final, report = timed_passes([str(path)], item, sentinel, rounds=rounds, extra_passes=extra_passes,
                                     paired=paired, known_sentinel_ms=history)
        history[:] = report.sentinel_ms
        e = final[str(path)]
        best = e if best is None or e.p50_ms < best.p50_ms else best
        total.blocks += report.blocks
        total.loaded_blocks += report.loaded_blocks
        total.remeasured = max(total.remeasured, report.remeasured)
        total.unsettled = report.unsettled if e is best else total.unsettled
    total.sentinel_ms = list(history)
    return best, total


def time_entry(runtime: DeviceRuntime, path: Path, warmup: int, repeats: int, max_seconds: float) -> Entry:
    """One unpaired timing window of a model file."""
    return Entry.from_samples(runtime.time(path, warmup, repeats, max_seconds))


def sentinel_ms(runtime: DeviceRuntime, sentinel_path: Path, max_seconds: float) -> float:
    """The sentinel's median (3 warm-up, 20 timed runs), timed between blocks in unpaired timing."""
    return Entry.from_samples(runtime.time(sentinel_path, 3, 20, max_seconds)).p50_ms


def pairs_with_sentinel(threads: int) -> bool:
    """Whether a runtime with ``threads`` threads is timed in paired windows (the item alternating with
    the sentinel) or alone, with the sentinel timed between blocks. Paired timing keeps two sessions
    alive, and a multi-thread runtime's idle thread pool slows the other: with 2 threads on this 2-core
    host, ONNX Runtime ran a ``tiny`` network at 0.22 ms alone and 0.51 ms alternating with a sentinel,
    an ``mbv3`` one at 5.4 ms and 8.3 ms (spinning pool threads). Multi-thread devices are therefore
    timed alone, as they run when deployed."""
    return threads <= 1


@dataclass(frozen=True)
class NetworkUnit(Layer):
    """A whole network as one picklable descriptor (its layers in sequence), for end-to-end timing."""

    kind: ClassVar[str] = "net"
    layers: tuple[Layer, ...] = ()

    def trace(self, g: OpGraph, x: int) -> int:
        for layer in self.layers:
            x = layer.trace(g, x)
        return x

    def build(self) -> nn.Module:
        import torch.nn as nn

        return nn.Sequential(*[layer.build() for layer in self.layers])


def network_unit(space: SearchSpace, spec: ArchSpec, task: Task | None = None) -> NetworkUnit:
    layers = tuple(space.layers(spec, task))
    return NetworkUnit(layers[0].cin, layers[0].hw, layers)


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, or when forced)."""

    def __init__(self, total: int, label: str, enabled: bool | None = None) -> None:
        self.total, self.label, self.done, self.closed = total, label, 0, False
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.t0 = time.time()

    def __call__(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled or self.closed:  # re-measurements after the bar completed are not shown
            return
        el = time.time() - self.t0
        eta = el / self.done * (self.total - self.done) if self.done else 0.0
        width = 30
        filled = int(width * self.done / max(1, self.total))
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                         f"{el:5.0f}s eta {eta:5.0f}s")
        if self.done >= self.total:
            sys.stderr.write("\n")
            self.closed = True
        sys.stderr.flush()


def _export_worker(args: tuple[str, int, dict, list[tuple[str, Layer]], str]) -> dict[str, str]:
    runtime_name, threads, options, pairs, out_dir = args
    import torch

    torch.set_num_threads(1)
    rt = get_runtime(runtime_name, threads, options)
    items = [ExportItem(key, layer.build().eval(), (layer.cin, layer.hw, layer.hw)) for key, layer in pairs]
    return {k: str(v) for k, v in rt.export_many(items, Path(out_dir)).items()}


def export_units(
    runtime: DeviceRuntime, units: Sequence[Layer], out_dir: Path, jobs: int = 2, progress: Progress | None = None,
) -> dict[str, Path]:
    """Export micro-models for ``units`` (keys -> files), reusing files already in ``out_dir``."""
    from edgenas.latency.runtimes.base import file_stem

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    todo: list[tuple[str, Layer]] = []
    for u in units:
        p = out_dir / (file_stem(u.key) + runtime.suffix)
        if p.exists() and p.stat().st_size > 0:
            paths[u.key] = p
        else:
            todo.append((u.key, u))
    if progress and paths:
        progress(len(paths))
    if not todo:
        return paths
    chunk = 32
    chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
    if jobs <= 1 or len(chunks) == 1:
        for c in chunks:
            paths.update({k: Path(v) for k, v in _export_worker(
                (runtime.name, runtime.threads, runtime.options, c, str(out_dir))).items()})
            if progress:
                progress(len(c))
        return paths
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = [pool.submit(_export_worker, (runtime.name, runtime.threads, runtime.options, c, str(out_dir)))
                   for c in chunks]
        for c, f in zip(chunks, futures):
            paths.update({k: Path(v) for k, v in f.result().items()})
            if progress:
                progress(len(c))
    return paths


def same_host(table: LatencyTable) -> bool:
    """Whether a table's recorded CPU is this host's (tables without host info are trusted)."""
    cpu = table.host.get("cpu")
    return cpu is None or cpu == host_info()["cpu"]


_DEFAULTS = {"delegate": "xnnpack", "precision": "fp32"}
"""Runtime options a table may not record (written before the option existed), at their defaults."""


def runtime_config_change(table: LatencyTable, runtime: DeviceRuntime) -> dict[str, tuple[object, object]]:
    """What differs between the runtime configuration a table was measured with and ``runtime``'s, as
    {key: (then, now)} over the runtime name, threads and the options that change timings (the LiteRT
    delegate, the precision); empty when nothing does. Options a table does not record are taken at
    their defaults, so tables written before an option existed still match a device that leaves it
    at its default."""
    now = runtime.describe()
    then = table.runtime or {}
    diffs: dict[str, tuple[object, object]] = {}
    for key in ("name", "threads"):
        if key in then and then[key] != now.get(key):
            diffs[key] = (then[key], now.get(key))
    for key in ("delegate", "precision"):
        if key in now and then.get(key, _DEFAULTS[key]) != now[key]:
            diffs[key] = (then.get(key, _DEFAULTS[key]), now[key])
    return diffs


class Profiler:
    """Measures units of one local device and keeps its table up to date."""

    def __init__(
        self, device: DeviceSpec, store: DeviceStore, *, warmup: int = 10, repeats: int = 50,
        max_seconds: float = 5.0, jobs: int = 2, save_every_s: float = 20.0, show_progress: bool | None = None,
        rounds: int = 2, network_rounds: int = 3, paired: bool | None = None, extra_passes: int = 6,
    ) -> None:
        """``rounds``: separate passes over all items; each item keeps its pass with the lowest median.
        Background load only ever adds time, so this rejects a contention burst that one back-to-back
        series of runs cannot. Whole networks (``network_rounds``) get one more pass by default: they are
        the ground truth the device model is fitted and judged on, and a burst in one of them moves the
        validation figures directly.

        ``paired``: every timing window runs the item alternately with the sentinel and is kept only if
        the sentinel ran at full speed (see :mod:`edgenas.latency.passes`); otherwise a sentinel is timed
        between blocks of items. Default (None): paired for 1-thread devices, blocks for multi-thread
        ones (:func:`pairs_with_sentinel`). ``extra_passes``: how many more passes an item gets until two
        of its full-speed timings agree."""
        self.rounds = max(1, rounds)
        self.paired = pairs_with_sentinel(device.threads) if paired is None else paired
        self.extra_passes = max(0, extra_passes)
        self.network_rounds = max(1, network_rounds)
        if not device.local:
            raise EdgenasError(
                f"device {device.name!r} is not this host (local = false); build an on-device kit with "
                f"'edgenas profile kit --device {device.name} --space SPACE --out DIR' and import its results"
            )
        self.device, self.store = device, store
        self.runtime = get_runtime(device.runtime, device.threads, device.runtime_options)
        self.warmup, self.repeats, self.max_seconds = warmup, repeats, max_seconds
        self.jobs, self.save_every_s, self.show_progress = jobs, save_every_s, show_progress
        self.reports: list[PassReport] = []  # one per timing session, for callers that report load

    def work_dir(self, space: str) -> Path:
        return self.store.user_dir / "cache" / self.device.name / space

    def new_table(self, space: str) -> LatencyTable:
        return LatencyTable(device=self.device.name, space=space, runtime=self.runtime.describe(), host=host_info())

    def open_table(self, space: str) -> tuple[LatencyTable, Path]:
        """The device's table for ``space`` (existing one, or a new empty one) and where to save it.

        A local device's table measured on another CPU (a copied home folder, a different CI machine), or
        in another runtime configuration (the device spec's threads, delegate or precision edited since),
        describes that setup, not this one: it is set aside and profiling starts afresh."""
        existing = self.store.find_table(self.device, space)
        table = self.store.load_table(self.device, space) if existing else None
        path = self.store.write_path(self.device, space)
        if table is not None and not same_host(table):
            sys.stderr.write(f"edgenas: {existing} was measured on {table.host.get('cpu')!r}, this host is "
                             f"{host_info()['cpu']!r}: profiling {self.device.name}/{space} afresh\n")
            table = None
        change = runtime_config_change(table, self.runtime) if table is not None else {}
        if change:
            what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in change.items())
            sys.stderr.write(f"edgenas: {existing} was measured with another runtime configuration ({what}): "
                             f"profiling {self.device.name}/{space} afresh\n")
            table = None
            if "precision" in change or "name" in change:  # the cached model files are of the old kind
                shutil.rmtree(self.work_dir(space), ignore_errors=True)
        if table is None:
            table = self.new_table(space)
        return table, path

    def measure(self, units: Iterable[Layer], space: str, table: LatencyTable, save_to: Path) -> int:
        """Measure every unit missing from ``table``; returns how many were measured."""
        todo: dict[str, Layer] = {}
        for u in units:
            if u.key not in table.entries and u.key not in todo:
                todo[u.key] = u
        if not todo:
            return 0
        units_l = list(todo.values())
        if table.model.fitted_on == 0:
            # until whole networks calibrate it, count the runtime's per-invoke cost once per network
            # instead of once per unit: measured on a trivial model
            o = self.invoke_overhead_ms(space)
            table.model.overhead_ms, table.model.per_unit_ms = o, -o
        paths = export_units(self.runtime, units_l, self.work_dir(space) / "units", self.jobs,
                             Progress(len(units_l), "export ", self.show_progress))
        bar = Progress(len(units_l) * self.rounds, "measure", self.show_progress)
        last_save = time.time()

        def on_entry(key: str, entry: Entry) -> None:
            nonlocal last_save
            table.entries[key] = entry  # provisional best: an interrupted run keeps it
            bar()
            if time.time() - last_save > self.save_every_s:
                table.save(save_to)
                last_save = time.time()

        final, report = self._passes(space, list(todo), paths, self.rounds, 25, on_entry)
        table.entries.update(final)
        self._note(report, "units")
        table.runtime = self.runtime.describe()
        table.save(save_to)
        return len(units_l)

    def _time(self, path: Path) -> Entry:
        return time_entry(self.runtime, path, self.warmup, self.repeats, self.max_seconds)

    def _passes(self, space: str, keys: list[str], files: dict[str, Path], rounds: int, block: int,
                on_entry: Callable[[str, Entry], None] | None) -> tuple[dict[str, Entry], PassReport]:
        """Time ``keys`` (model files ``files``) in separated passes, paired with the sentinel or not."""
        if not self.paired:
            return timed_passes(keys, lambda k: self._time(files[k]), self._sentinel(space), rounds=rounds,
                                block=block, extra_passes=self.extra_passes, on_entry=on_entry)
        measure = paired_measure(self.runtime, self._probes(space)[0], self.warmup, self.repeats, self.max_seconds)
        return timed_passes(keys, lambda k: measure(files[k]), None, rounds=rounds, extra_passes=self.extra_passes,
                            on_entry=on_entry, paired=True)

    def _probes(self, space: str) -> tuple[Path, Path]:
        """The sentinel and trivial-model files (:func:`probe_files`), cached in the work dir."""
        return probe_files(self.runtime, self.work_dir(space) / "units")

    def _sentinel(self, space: str) -> Callable[[], float]:
        """The sentinel model timed between blocks (see :mod:`edgenas.latency.passes`)."""
        path = self._probes(space)[0]
        return lambda: sentinel_ms(self.runtime, path, self.max_seconds)

    def _note(self, report: PassReport, what: str) -> None:
        self.reports.append(report)
        if report.summary() and self.show_progress is not False:
            sys.stderr.write(f"{what}: {report.summary()}\n")

    def invoke_overhead_ms(self, space: str) -> float:
        """Median time of one inference of a trivial model (a ReLU on 1 element): the runtime's fixed
        per-invoke cost, which every isolated unit measurement includes once."""
        path = self._probes(space)[1]
        return Entry.from_samples(self.runtime.time(path, self.warmup, max(self.repeats, 100),
                                                    self.max_seconds)).p50_ms

    def time_networks(self, space: SearchSpace, specs: Sequence[ArchSpec], task: Task | None = None,
                      label: str = "networks") -> list[float]:
        """End-to-end p50 latency (ms) of whole networks in the device's runtime."""
        nets = [network_unit(space, s, task) for s in specs]
        keys = [str(s) for s in specs]
        out_dir = self.work_dir(space.name) / "networks"
        from edgenas.latency.runtimes.base import file_stem

        todo = [(k, n) for k, n in zip(keys, nets) if not (out_dir / (file_stem(k) + self.runtime.suffix)).exists()]
        bar = Progress(len(nets), f"export {label}", self.show_progress)
        bar(len(nets) - len(todo))
        if todo:
            # networks are exported under their arch string key, not the layer key
            export_items = _keyed(todo)
            export_units(self.runtime, export_items, out_dir, self.jobs, bar)
        bar = Progress(len(nets) * self.network_rounds, f"time {label}", self.show_progress)
        files = {k: out_dir / (file_stem(k) + self.runtime.suffix) for k in keys}
        final, report = self._passes(space.name, keys, files, self.network_rounds, 5, lambda k, e: bar())
        self._note(report, label)
        return [final[k].p50_ms for k in keys]


@dataclass(frozen=True)
class _KeyedNetwork(NetworkUnit):
    """A network unit whose key is its arch string (so cached files are found by arch)."""

    arch: str = ""

    @property
    def key(self) -> str:
        return self.arch


def _keyed(pairs: list[tuple[str, NetworkUnit]]) -> list[Layer]:
    return [_KeyedNetwork(n.cin, n.hw, n.layers, k) for k, n in pairs]
