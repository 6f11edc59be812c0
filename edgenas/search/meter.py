"""What a piece of work costs the machine it runs on: CPU seconds, wall seconds and, where the machine
exposes an energy meter, joules. The search measures every trial and every process with it
(:mod:`edgenas.search.owncost`); ``edgenas benchmark`` measures every method's run.

What is counted, and what is not:

* ``cpu_s``: user + system CPU time of this process (all its threads) plus that of its child processes
  that have ended and been waited for (``getrusage(RUSAGE_SELF)`` + ``getrusage(RUSAGE_CHILDREN)``):
  subprocesses an estimator or a latency measurement ran, and worker processes once joined. A child that
  is still running is not counted until it has been waited for. Without the ``resource`` module
  (Windows) it is ``time.process_time()``, this process only.
* ``wall_s``: ``time.perf_counter()`` between two marks.
* ``energy_j``: the change of every energy counter found, summed:

  - Linux powercap RAPL (``/sys/class/powercap``, or ``$EDGENAS_POWERCAP_ROOT``): each top-level zone
    ``<driver>-rapl:N`` (``intel-rapl``, which Linux also uses for AMD Zen's counters, ``amd-rapl``;
    a zone of the same name under ``intel-rapl-mmio`` is the same package and is read once) and each
    ``dram`` subzone (DRAM is outside the package domain); ``core`` / ``uncore`` subzones are inside their
    package and are skipped, and so is ``psys`` (the platform, which contains the packages) unless it is
    the only zone. A counter wraps at its ``max_energy_range_uj``; every counter is read at least every
    ``poll_s`` seconds (a daemon thread), so an interval longer than one wrap period still sums right.
  - NVIDIA GPUs through NVML (``pynvml``, from ``pip install nvidia-ml-py``; optional, imported only
    here): ``nvmlDeviceGetTotalEnergyConsumption`` of every GPU that supports it (mJ, Volta and newer).

  Both meter whole devices: every process on the machine, not only this one (``energy_scope`` says
  so). When no counter can be read (no powercap folder, RAPL files readable by root only, no NVML), or
  when one stops being readable, ``energy_j`` is None and ``energy_meter`` says ``"none: <why>"``: never
  an estimate.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import resource
except ImportError:  # Windows: process_time() of this process only
    resource = None  # type: ignore[assignment]

POWERCAP_ROOT = Path("/sys/class/powercap")
POWERCAP_ENV = "EDGENAS_POWERCAP_ROOT"
"""Read RAPL zones under this folder instead of ``/sys/class/powercap`` (tests point it at a fake tree)."""
POLL_S = 20.0
"""Seconds between two background reads of the energy counters: far below one wrap period (a RAPL
package counter's range, about 262 kJ, lasts over 10 minutes at 300 W)."""

_TOP_ZONE = re.compile(r"^(?P<driver>[a-z-]*rapl[a-z-]*):(?P<n>\d+)$")
_SUB_ZONE = re.compile(r"^(?P<driver>[a-z-]*rapl[a-z-]*):(?P<n>\d+):(?P<m>\d+)$")


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its ended, waited-for children."""
    if resource is None:
        return time.process_time()
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class MeterUnavailable(Exception):
    """An energy source cannot be read; the message says why (it becomes ``energy_meter``)."""


@dataclass
class _Counter:
    """One cumulative energy counter in microjoules, accumulated across wraps and resets."""

    label: str
    read_uj: Callable[[], int]
    wrap_uj: int | None
    """The counter's range: after it, it starts again from 0. None: it does not wrap (NVML)."""

    def __post_init__(self) -> None:
        self.last_uj = self.read_uj()
        self.total_uj = 0

    def update(self) -> None:
        raw = self.read_uj()
        step = raw - self.last_uj
        if step < 0:  # wrapped (RAPL), or reset by a driver reload (NVML: counted from 0 again)
            step = step + self.wrap_uj if self.wrap_uj else raw
        self.total_uj += step
        self.last_uj = raw


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError:
        raise MeterUnavailable(f"{path} is not readable by this user (RAPL counters are root-only since "
                               f"the CVE-2020-8694 fix; 'sudo chmod a+r {path.parent}/energy_uj' allows it)") from None
    except (OSError, ValueError) as exc:
        raise MeterUnavailable(f"cannot read {path}: {exc.__class__.__name__}: {exc}") from None


def rapl_counters(root: Path) -> list[_Counter]:
    """The RAPL zones to sum under ``root`` (see the module docstring for which); raises
    :class:`MeterUnavailable` when there are none or one of them cannot be read (a partial sum would be
    an undercount, so it is no meter rather than a wrong one).

    ``/sys/class/powercap`` lists every zone flat (``intel-rapl:0``, ``intel-rapl:0:0``, ...): that listing
    is what is read."""
    if not root.is_dir():
        raise MeterUnavailable(f"no {root} (no RAPL powercap on this machine)")
    try:
        listing = sorted(root.iterdir(), key=lambda p: ("mmio" in p.name, p.name))
    except OSError as exc:
        raise MeterUnavailable(f"cannot list {root}: {exc}") from None
    tops: dict[str, Path] = {}
    drams: dict[str, Path] = {}
    # intel-rapl before intel-rapl-mmio: the MSR and MMIO interfaces show the same package under one name
    for zone in listing:
        if _TOP_ZONE.match(zone.name):
            tops.setdefault(_zone_name(zone), zone)
        elif (m := _SUB_ZONE.match(zone.name)) and _zone_name(zone).startswith("dram"):
            package = _zone_name(root / f"{m['driver']}:{m['n']}")
            drams.setdefault(f"dram ({package})", zone)
    chosen = {n: z for n, z in tops.items() if n != "psys"} or tops
    if not chosen:
        raise MeterUnavailable(f"no RAPL zone in {root}")
    if list(chosen) == ["psys"]:
        drams = {}  # the platform's energy contains its memory's
    return [_rapl_counter(label, zone) for label, zone in [*chosen.items(), *drams.items()]]


def _zone_name(zone: Path) -> str:
    try:
        return (zone / "name").read_text().strip() or zone.name
    except OSError:
        return zone.name


def _rapl_counter(label: str, zone: Path) -> _Counter:
    energy = zone / "energy_uj"
    wrap = _read_int(zone / "max_energy_range_uj")
    return _Counter(label, lambda: _read_int(energy), wrap if wrap > 0 else None)


def nvml_counters() -> tuple[list[_Counter], str]:
    """NVML's energy counter of every GPU that has one, and what was found (raises
    :class:`MeterUnavailable` when pynvml is missing, NVML does not start, or no GPU has a counter)."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        raise MeterUnavailable("pynvml not installed (pip install nvidia-ml-py)") from None
    try:
        pynvml.nvmlInit()
        count = int(pynvml.nvmlDeviceGetCount())
    except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
        raise MeterUnavailable(f"NVML did not start: {exc}") from None
    out: list[_Counter] = []
    names: list[str] = []
    skipped: list[str] = []
    for i in range(count):
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except Exception as exc:  # NVMLError_NotSupported: pre-Volta GPUs have no energy counter
            skipped.append(f"GPU {i}: {exc}")
            continue

        def read(h: Any = handle, index: int = i) -> int:
            try:
                return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(h)) * 1000  # mJ -> uJ
            except Exception as exc:
                raise MeterUnavailable(f"NVML energy counter of GPU {index}: {exc}") from None

        out.append(_Counter(f"GPU {i}", read, None))
        names.append(f"GPU {i} {name.decode() if isinstance(name, bytes) else name}")
    if not out:
        raise MeterUnavailable("no NVIDIA GPU with an energy counter" + (f" ({'; '.join(skipped)})" if skipped else ""))
    return out, ", ".join(names) + (f" (no counter: {'; '.join(skipped)})" if skipped else "")


@dataclass(frozen=True)
class Mark:
    """The meter's readings at one moment (``wall`` from ``perf_counter``, ``time`` the epoch)."""

    wall: float
    time: float
    cpu_s: float
    energy_uj: int | None


@dataclass(frozen=True)
class Spent:
    """What the work between two marks cost."""

    cpu_s: float
    wall_s: float
    energy_j: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {"cpu_s": round(self.cpu_s, 6), "wall_s": round(self.wall_s, 6),
                "energy_j": None if self.energy_j is None else round(self.energy_j, 6)}


class Meter:
    """CPU, wall and energy of this process (see the module docstring for what is counted).

    ``mark()`` reads everything now; ``since(mark)`` is what was spent after it. One meter per process
    (:func:`process_meter`) serves every measurement in it, overlapping or nested.
    """

    def __init__(self, powercap_root: str | Path | None = None, nvml: bool = True, poll_s: float = POLL_S) -> None:
        root = Path(powercap_root if powercap_root is not None else os.environ.get(POWERCAP_ENV) or POWERCAP_ROOT)
        self._lock = threading.Lock()
        self._counters: list[_Counter] = []
        status: list[str] = []
        scope: list[str] = []
        try:
            rapl = rapl_counters(root)
            self._counters += rapl
            status.append("rapl: " + ", ".join(c.label for c in rapl))
            labels = [c.label for c in rapl]
            scope.append("the platform (RAPL psys)" if labels == ["psys"] else "CPU package(s)" + (
                " and DRAM" if any(lb.startswith("dram") for lb in labels) else "") + " (RAPL)")
        except MeterUnavailable as exc:
            status.append(f"rapl: {exc}")
        if nvml:
            try:
                gpus, found = nvml_counters()
                self._counters += gpus
                status.append(f"nvml: {found}")
                scope.append("whole GPU board(s) (NVML)")
            except MeterUnavailable as exc:
                status.append(f"nvml: {exc}")
        self.failure: str | None = None
        """Why the energy counters stopped being readable (then every energy reading is None)."""
        self._status = "; ".join(status)
        self.energy_scope: str | None = (
            " and ".join(scope) + ": every process on this machine, not only this one" if scope else None)
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.poll_s = poll_s

    @property
    def has_energy(self) -> bool:
        """Energy counters were found and are still readable."""
        return bool(self._counters) and self.failure is None

    @property
    def energy_meter(self) -> str:
        """What is metered (``"rapl: package-0; nvml: ..."``), or ``"none: <why>"``."""
        if self.failure is not None:
            return f"none: {self.failure} (was {self._status})"
        return self._status if self._counters else f"none: {self._status}"

    def describe(self) -> dict[str, Any]:
        """The meter as run.json and benchmark results record it."""
        return {"energy_meter": self.energy_meter, "energy_scope": self.energy_scope if self.has_energy else None}

    def _energy_uj(self) -> int | None:
        """Every counter's total since this meter started, summed (None without a usable counter)."""
        if not self.has_energy:
            return None
        with self._lock:
            try:
                for c in self._counters:
                    c.update()
            except MeterUnavailable as exc:
                self.failure = f"an energy counter stopped being readable: {exc}"
                return None
            return sum(c.total_uj for c in self._counters)

    def mark(self) -> Mark:
        if self.has_energy and self._poller is None:
            self._poller = threading.Thread(target=self._poll, name="edgenas-energy-meter", daemon=True)
            self._poller.start()
        return Mark(time.perf_counter(), time.time(), cpu_seconds(), self._energy_uj())

    def since(self, mark: Mark) -> Spent:
        now = self.mark()
        energy = None
        if mark.energy_uj is not None and now.energy_uj is not None and self.failure is None:
            energy = (now.energy_uj - mark.energy_uj) / 1e6
        return Spent(now.cpu_s - mark.cpu_s, now.wall - mark.wall, energy)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s) and self.has_energy:
            self._energy_uj()

    def close(self) -> None:
        """Stop the background reads (the meter still answers, but wraps are no longer tracked)."""
        self._stop.set()


_PROCESS_METER: tuple[tuple[int, str | None], Meter] | None = None


def process_meter() -> Meter:
    """This process's meter (a new one in a forked child, or when ``$EDGENAS_POWERCAP_ROOT`` changed)."""
    global _PROCESS_METER
    key = (os.getpid(), os.environ.get(POWERCAP_ENV))
    if _PROCESS_METER is None or _PROCESS_METER[0] != key:
        if _PROCESS_METER is not None:
            _PROCESS_METER[1].close()
        _PROCESS_METER = (key, Meter())
    return _PROCESS_METER[1]
