"""The profiling journey as functions: profile a local device, calibrate and validate its table.

``profile_and_validate`` is what ``edgenas profile`` runs: from nothing to a validated table for this
host in one call.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgenas.latency.devices import DeviceSpec, DeviceStore
from edgenas.latency.features import spec_features
from edgenas.latency.passes import PassReport
from edgenas.latency.profile import Profiler
from edgenas.latency.table import LatencyTable
from edgenas.latency.validate import CONTEXT_FEATURES, fit_device_model, plot_predicted_vs_measured, refit_and_validate
from edgenas.spaces import ArchSpec, SearchSpace, Task


@dataclass
class ProfileReport:
    table_path: Path
    measured_units: int
    total_units: int
    seconds_units: float
    validation: dict[str, Any] | None = None
    seconds_validation: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)  # per validation network
    timing: dict[str, int] = field(default_factory=dict)  # PassReport.combine over the session


def profile_units(
    profiler: Profiler, space: SearchSpace, specs: list[ArchSpec] | None = None, task: Task | None = None,
    remeasure: bool = False,
) -> tuple[LatencyTable, Path, int, int]:
    """Measure every unit the specs need (default: the whole searched grid) that the table lacks;
    ``remeasure``: time them all again (e.g. after a run under background load; exports are reused)."""
    table, path = profiler.open_table(space.name)
    units = {}
    for s in specs if specs is not None else space.covering_specs():
        for u in space.units(s, task):
            units.setdefault(u.key, u)
    if remeasure:
        for k in units:
            table.entries.pop(k, None)
    measured = profiler.measure(units.values(), space.name, table, path)
    return table, path, measured, len(units)


def calibrate(
    profiler: Profiler, space: SearchSpace, table: LatencyTable, path: Path, n_calibrate: int, seed: int = 1000,
    task: Task | None = None,
) -> None:
    """Fit the table's device model on ``n_calibrate`` random networks measured end to end; save."""
    specs = space.sample(n_calibrate, seed)
    profiler.measure({u.key: u for s in specs for u in space.units(s, task)}.values(), space.name, table, path)
    measured = profiler.time_networks(space, specs, task, "calibration")
    keys = [[u.key for u in space.units(s, task)] for s in specs]
    table.model = fit_device_model([table.sum_ms(k) for k in keys], [len(k) for k in keys], measured,
                                   context_features(space, specs, task), table.min_unit_ms())
    table.save(path)


def context_features(space: SearchSpace, specs: list[ArchSpec], task: Task | None = None,
                     also: list[str] | None = None) -> list[dict[str, float]]:
    """The calibration's candidate context features of each spec (see ``CONTEXT_FEATURES``), plus the
    named features ``also`` (e.g. the terms of a model that is validated without refitting)."""
    names = list(dict.fromkeys([*CONTEXT_FEATURES, *(also or [])]))
    return [spec_features(names, space, s, task) for s in specs]


def calibrate_and_validate(
    profiler: Profiler, space: SearchSpace, table: LatencyTable, path: Path, n_validate: int, n_calibrate: int,
    seed: int, task: Task | None = None, plot: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fit the device model on ``n_calibrate`` random networks (seed + 1000) and validate it on
    ``n_validate`` fresh ones (seed); figures and the plot are stored with the table."""
    cal_specs = space.sample(n_calibrate, seed + 1000) if n_calibrate else []
    val_specs = space.sample(n_validate, seed)
    profiler.measure({u.key: u for s in cal_specs + val_specs for u in space.units(s, task)}.values(),
                     space.name, table, path)
    # time both sets interleaved, so slow drift (thermal, background load) hits them alike
    order = [("c", i) for i in range(len(cal_specs))] + [("v", i) for i in range(len(val_specs))]
    order.sort(key=lambda t: (t[1] / max(1, len(cal_specs if t[0] == "c" else val_specs)), t[0]))
    specs = [cal_specs[i] if kind == "c" else val_specs[i] for kind, i in order]
    times = profiler.time_networks(space, specs, task, "networks")
    measured_cal = [t for (kind, _), t in zip(order, times) if kind == "c"]
    measured_val = [t for (kind, _), t in zip(order, times) if kind == "v"]
    keys_cal = [[u.key for u in space.units(s, task)] for s in cal_specs]
    keys_val = [[u.key for u in space.units(s, task)] for s in val_specs]
    metrics, predicted = refit_and_validate(table, keys_cal, measured_cal, keys_val, measured_val,
                                            context_features(space, cal_specs, task),
                                            context_features(space, val_specs, task, list(table.model.terms)))
    png = None
    from edgenas.extras import available, missing_extra

    if plot and not available("matplotlib"):
        print(f"edgenas: no plot: {missing_extra('matplotlib', 'the predicted-vs-measured plot')}", file=sys.stderr)
    elif plot:
        png = plot_predicted_vs_measured(
            predicted, measured_val, path.with_suffix(".png"),
            f"{table.device} / {space.name}: {metrics['within_10pct']:.0%} within ±10%, "
            f"tau {metrics.get('kendall_tau', 0):.3f}, n={len(measured_val)}",
        )
    table.validation = {**metrics, "seed": seed, "calibration_networks": len(cal_specs),
                        "calibration_seed": seed + 1000, "plot": png.name if png else None,
                        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        # background load the timing saw (units timed in this session, and the networks)
                        "timing": PassReport.combine(profiler.reports)}
    table.save(path)
    rows = [{"arch": str(s), "measured_ms": m, "predicted_ms": p}
            for s, m, p in zip(val_specs, measured_val, predicted)]
    return table.validation, rows


def profile_and_validate(
    device: DeviceSpec, space: SearchSpace, store: DeviceStore, *, specs: list[ArchSpec] | None = None,
    task: Task | None = None, n_validate: int = 50, n_calibrate: int = 20, seed: int = 0, jobs: int = 2,
    warmup: int = 10, repeats: int = 50, show_progress: bool | None = None, remeasure: bool = False,
) -> ProfileReport:
    profiler = Profiler(device, store, warmup=warmup, repeats=repeats, jobs=jobs, show_progress=show_progress)
    t0 = time.time()
    table, path, measured, total = profile_units(profiler, space, specs, task, remeasure)
    report = ProfileReport(path, measured, total, time.time() - t0)
    if n_validate > 0:
        t1 = time.time()
        report.validation, report.rows = calibrate_and_validate(
            profiler, space, table, path, n_validate, n_calibrate, seed, task)
        report.seconds_validation = time.time() - t1
    report.timing = PassReport.combine(profiler.reports)
    return report
