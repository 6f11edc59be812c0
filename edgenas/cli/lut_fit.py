"""``edgenas lut fit``: a device's latency table from whole networks measured end to end.

    edgenas lut fit --space nb201 --measurements times.csv --device my-board [--prior-device pixel3]

The CSV has an ``arch`` column (any accepted form: canonical string, NB201 ``arch_str``, FBNet op-index
list; ``arch_str`` / ``op_idx_list`` columns are accepted too) and a latency column in ms
(``latency_ms``, or ``--latency-column``). The table is written to the user devices dir; its
cross-validated accuracy is printed and stored in the table's ``validation``.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections.abc import Callable
from pathlib import Path

from edgenas.archio import ARCH_COLUMNS, read_arch_lines
from edgenas.errors import ArchParseError, EdgenasError
from edgenas.latency.devices import RUNTIMES, DeviceStore
from edgenas.spaces import ArchSpec, SearchSpace, Task


def read_measurements(path: str | Path, space: SearchSpace, latency_column: str = "latency_ms",
                      ) -> tuple[list[ArchSpec], list[float]]:
    """Specs and latencies (ms) of a measurements CSV; every problem names the file (and line)."""
    p = Path(path)
    lines = read_arch_lines(p)  # raises for a missing / unreadable file
    with open(p, newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        raw_rows = list(reader)
    arch_col = next((c for c in ARCH_COLUMNS if c in header), None)
    if arch_col is None:
        raise EdgenasError(f"measurements {str(p)!r}: needs a header with an 'arch' column (or "
                           f"{' / '.join(ARCH_COLUMNS[1:])}); found {', '.join(header) or 'no header'}")
    if latency_column not in header:
        raise EdgenasError(f"measurements {str(p)!r}: no latency column {latency_column!r} (columns: "
                           f"{', '.join(header)}); name it with --latency-column")
    if len(lines) != len(raw_rows):  # read_arch_lines and DictReader walk the same rows
        raise EdgenasError(f"measurements {str(p)!r}: could not align rows; check quoting")
    specs: list[ArchSpec] = []
    lat: list[float] = []
    for (lineno, text), row in zip(lines, raw_rows):
        row = {(k or "").strip(): v for k, v in row.items()}
        try:
            specs.append(space.parse(text))
        except ArchParseError as exc:
            raise EdgenasError(f"{p}:{lineno}: {exc}") from None
        value = (row.get(latency_column) or "").strip()
        try:
            ms = float(value)
        except ValueError:
            raise EdgenasError(f"{p}:{lineno}: latency {value!r} is not a number (ms)") from None
        if not math.isfinite(ms) or ms <= 0:
            raise EdgenasError(f"{p}:{lineno}: latency {value!r} must be a positive number of ms")
        lat.append(ms)
    return specs, lat


def cmd_lut_fit(args: argparse.Namespace, store_from: Callable[[argparse.Namespace], DeviceStore]) -> int:
    from edgenas.cli.describe import space_and_task
    from edgenas.latency.fit import MIN_ROWS, cross_validate, fit_latency_table
    from edgenas.latency.table import LatencyTable

    if args.folds < 2:
        raise EdgenasError(f"--folds must be at least 2, got {args.folds}")
    store = store_from(args)
    space, task = space_and_task(args)
    fit_task: Task | None = None if task == Task() else task
    specs, lat = read_measurements(args.measurements, space, args.latency_column)
    if len(specs) < 2 * MIN_ROWS:
        raise EdgenasError(f"measurements {args.measurements!r}: need at least {2 * MIN_ROWS} measured networks "
                           f"(fit + cross-validation), got {len(specs)}")
    prior = None
    if args.prior_device:
        pdev = store.device(args.prior_device)
        prior = store.load_table(pdev, space.name)
        if prior is None:
            raise EdgenasError(f"prior device {pdev.name!r} has no latency table for space {space.name!r}; "
                               f"profile, import or fit one first")
    elif args.prior_table:
        prior = LatencyTable.load(args.prior_table)
        if prior.space != space.name:
            raise EdgenasError(f"prior table {args.prior_table!r} is for space {prior.space!r}, not {space.name!r}")

    if args.device not in store.device_files():
        path = store.save_device(
            f'# created by edgenas lut fit\nname = "{args.device}"\n'
            f'description = "fitted from end-to-end measurements"\nruntime = "{args.runtime}"\n'
            f"threads = 1\nlocal = false\n", args.device)
        print(f"created device spec {path}")
    device = store.device(args.device)
    runtime = {"name": device.runtime, "version": "", "threads": device.threads, "options": device.runtime_options}

    t0 = time.time()
    cv = cross_validate(space, specs, lat, prior=prior, folds=args.folds, seed=args.seed, task=fit_task)
    table = fit_latency_table(space, specs, lat, device.name, prior=prior, seed=args.seed, task=fit_task,
                              folds=args.folds, runtime=runtime)
    model = table.validation["model"] if table.validation else ""
    table.validation = {
        **cv, "kind": "nested cross-validation", "seed": args.seed, "model": model,
        "calibration_networks": len(specs) - len(specs) // cv["folds"],
        "prior": prior.device if prior is not None else None,
    }
    path = store.write_path(device, space.name)
    table.save(path)
    print(f"fitted {device.name}/{space.name} on {len(specs)} networks ({model}"
          + (f"; prior from {prior.device}" if prior is not None else "") + f") in {time.time() - t0:.0f}s")
    print(f"cross-validated ({cv['folds']} folds): Spearman {cv.get('spearman', float('nan')):.3f}, "
          f"within ±10% {cv['within_10pct']:.1%}, MAPE {cv['mape_pct']:.2f}%")
    print(f"table {path}")
    return 0


def add_fit_parser(lsub: argparse._SubParsersAction, add_store_argument: Callable[[argparse.ArgumentParser], None],
                   store_from: Callable[[argparse.Namespace], DeviceStore]) -> argparse.ArgumentParser:
    """Add ``fit`` to the ``edgenas lut`` sub-commands."""
    from edgenas.cli.describe import add_space_arguments

    f = lsub.add_parser("fit", help="fit a device's table from whole networks measured end to end (CSV)")
    add_space_arguments(f)
    f.add_argument("--measurements", required=True, metavar="CSV",
                   help="CSV with an 'arch' (or arch_str / op_idx_list) column and a latency column in ms")
    f.add_argument("--device", required=True, help="device name to store the table under (created if unknown)")
    g = f.add_mutually_exclusive_group()
    g.add_argument("--prior-device", metavar="D", help="rescale this device's table for the space (a prior)")
    g.add_argument("--prior-table", metavar="PATH", help="rescale this table JSON (a prior)")
    f.add_argument("--latency-column", default="latency_ms", metavar="COL",
                   help="latency column in ms (default latency_ms)")
    f.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    f.add_argument("--seed", type=int, default=0, help="seed of the CV folds (default 0)")
    f.add_argument("--runtime", choices=RUNTIMES, default="litert",
                   help="runtime recorded in a newly created device spec (default litert)")
    add_store_argument(f)

    def run(args: argparse.Namespace) -> int:
        return cmd_lut_fit(args, store_from)

    f.set_defaults(func=run)
    return f

