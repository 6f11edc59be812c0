"""``edgenas lut fit``: a device's latency table from whole networks measured end to end.

    edgenas lut fit --space nb201 --measurements times.csv --device my-board [--prior-device auto|none|D,...]

The CSV has an ``arch`` column (any accepted form: canonical string, NB201 ``arch_str``, FBNet op-index
list; ``arch_str`` / ``op_idx_list`` columns are accepted too) and a latency column in ms
(``latency_ms``, or ``--latency-column``); 10 rows are enough to start. ``--prior-device auto`` (the
default) offers every table the store has for the space as a prior (:mod:`edgenas.latency.priors`),
alone and mixed, and cross-validation on these rows chooses. The table is written to the user devices
dir; the prior chosen, the nested cross-validated accuracy and the CV curve over the rows (how many more
would help) are printed and stored in the table's ``validation``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgenas.archio import read_arch_column
from edgenas.errors import EdgenasError
from edgenas.latency.devices import DeviceStore, new_device_spec, parse_device, runtime_choices
from edgenas.latency.table import LatencyTable
from edgenas.names import check_name
from edgenas.spaces import ArchSpec, SearchSpace, Task


def read_measurements(path: str | Path, space: SearchSpace, latency_column: str = "latency_ms",
                      ) -> tuple[list[ArchSpec], list[float]]:
    """Specs and latencies (ms) of a measurements CSV; every problem names the file (and line)."""
    try:
        rows = read_arch_column(path, space, latency_column, what="measurements", positive=True)
    except EdgenasError as exc:
        if f"no column {latency_column!r}" in str(exc):
            raise EdgenasError(f"{exc}; name the latency column with --latency-column") from None
        raise
    return [r.spec for r in rows], [float(r.value) for r in rows]  # type: ignore[arg-type]


def _priors(args: argparse.Namespace, store: DeviceStore, space: SearchSpace, device: str,
            unit_keys: list[str]) -> tuple[list[LatencyTable], str]:
    """The prior tables for this fit and a one-line description of where they came from."""
    from edgenas.latency import priors as P

    if args.prior_table:
        prior = LatencyTable.load(args.prior_table)
        if prior.space != space.name:
            raise EdgenasError(f"prior table {args.prior_table!r} is for space {prior.space!r}, not {space.name!r}")
        return [prior], f"prior table {args.prior_table}"
    choice = (args.prior_device or "auto").strip()
    if choice == "none":
        return [], "no prior (--prior-device none)"
    candidates = P.prior_candidates(store, space.name, exclude=[device])
    if choice != "auto":
        names = [check_name(c.strip(), "prior device") for c in choice.split(",") if c.strip()]
        by_name = {c.name: c for c in candidates if not c.skipped}
        for name in names:
            if name == device:
                raise EdgenasError(f"--prior-device {name}: the device being fitted cannot be its own prior")
            if name not in by_name:
                if name in store.device_files():
                    raise EdgenasError(f"prior device {name!r} has no latency table for space {space.name!r}; "
                                       f"profile, import or fit one first")
                known = ", ".join(sorted(by_name)) or "none"
                raise EdgenasError(f"unknown device {name!r} as prior: no table for {space.name} (tables: {known})")
        candidates = [by_name[n] for n in names]
    candidates = P.with_coverage(candidates, unit_keys)
    if choice != "auto" and any(c.skipped for c in candidates):
        bad = next(c for c in candidates if c.skipped)
        raise EdgenasError(f"prior {bad.name!r} {bad.skipped}; it does not fit these networks")
    label = "auto over " if choice == "auto" else ""
    return P.usable(candidates), f"{label}{P.describe(candidates)}"


def _selection_lines(sel: dict[str, Any]) -> list[str]:
    """The prior report: which base won, by how much, and what the table averages."""
    def name(base: str) -> str:
        return {"proxy": "no prior (MACs/traffic proxy)", "analytic": "no prior (analytic mix)",
                "mix": "a mix of the priors and analytic parts"}.get(base, base.replace("prior:", "prior "))

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}%"

    lines = []
    chosen = sel["chosen"]
    shares = {k: v for k, v in (sel.get("component_shares") or {}).items() if v >= 0.005}
    parts = " + ".join(f"{v:.0%} {k.replace('prior:', '')}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1]))
    mix_txt = f" ({parts} of the base time)" if shares else ""
    lines.append(f"chosen: {name(chosen)}{mix_txt}; CV error {pct(sel['cv_capped_mre'])}")
    if sel.get("no_prior_cv_capped_mre") is not None and chosen not in ("proxy", "analytic"):
        gain = sel["gain_vs_no_prior"]
        lines.append(f"  vs without a prior: {pct(sel['no_prior_cv_capped_mre'])} "
                     f"({'better by' if gain >= 0 else 'worse by'} {100 * abs(gain):.2f} points)")
    if sel.get("runner_up"):
        lines.append(f"  runner-up: {name(sel['runner_up'])}, CV error "
                     f"{pct(sel['cv_capped_mre'] + sel['gain_vs_runner_up'])}")
    weights = sel.get("ensemble_weights") or {}
    if len(weights) > 1:
        lines.append("  the table averages the candidates the CV cannot tell apart: "
                     + ", ".join(f"{name(b)} {w:.0%}" for b, w in weights.items()))
    return lines


def cmd_lut_fit(args: argparse.Namespace, store_from: Callable[[argparse.Namespace], DeviceStore]) -> int:
    from edgenas.cli.common import space_and_task
    from edgenas.latency.fit import (
        MIN_ROWS,
        cross_validate,
        curve_advice,
        fit_latency_table,
        learning_curve,
        unit_key,
    )

    if args.folds < 2:
        raise EdgenasError(f"--folds must be at least 2, got {args.folds}")
    check_name(args.device, "device")  # before any file is read or a path is built from it
    store = store_from(args)
    space, task = space_and_task(args)
    fit_task: Task | None = None if task == Task() else task
    specs, lat = read_measurements(args.measurements, space, args.latency_column)
    if len(specs) < 2 * MIN_ROWS:
        raise EdgenasError(f"measurements {args.measurements!r}: need at least {2 * MIN_ROWS} measured networks "
                           f"(fit + cross-validation), got {len(specs)}")
    unit_keys = [unit_key(u) for s in specs for u in space.units(s, fit_task)]
    priors, prior_text = _priors(args, store, space, args.device, unit_keys)

    # an unknown device gets a spec, written only with its table once the fit succeeded
    new_spec = None
    if args.device in store.device_files():
        device = store.device(args.device)
    else:
        new_spec = new_device_spec(args.device, args.runtime, "fitted from end-to-end measurements")
        device = parse_device(new_spec, str(store.device_path(args.device)))
    runtime = {"name": device.runtime, "version": "", "threads": device.threads, "options": device.runtime_options}

    t0 = time.time()
    print(f"priors: {prior_text}")
    table = fit_latency_table(space, specs, lat, device.name, priors=priors, seed=args.seed, task=fit_task,
                              folds=args.folds, runtime=runtime)
    sel = (table.validation or {}).get("prior_selection")
    if sel:
        for line in _selection_lines(sel):
            print(line)
    cv = cross_validate(space, specs, lat, priors=priors, folds=args.folds, seed=args.seed, task=fit_task)
    model = table.validation["model"] if table.validation else ""
    curve = [] if args.no_curve else learning_curve(space, specs, lat, priors=priors, folds=args.folds,
                                                    seed=args.seed, task=fit_task)
    points = [*curve, {"rows": cv["rows"], "spearman": cv.get("spearman"), "within_10pct": cv["within_10pct"],
                       "capped_mre": cv["capped_mre"]}]
    advice = curve_advice(points, len(specs))
    table.validation = {
        **cv, "kind": "nested cross-validation", "seed": args.seed, "model": model,
        "calibration_networks": cv["rows"], "prior": [p.device for p in priors] or None,
        **({"prior_selection": sel} if sel else {}),
        "cv_curve": points, "curve_advice": advice,
    }
    path, created = store.save_table(table, new_spec)
    if created is not None:
        print(f"created device spec {created}")
    print(f"fitted {device.name}/{space.name} on {len(specs)} networks ({model}) in {time.time() - t0:.0f}s")
    print(f"cross-validated ({cv['folds']} folds, nested): Spearman {cv.get('spearman', float('nan')):.3f}, "
          f"within ±10% {cv['within_10pct']:.1%}, MAPE {cv['mape_pct']:.2f}%")
    if len(points) > 1:
        print("CV curve (fitted on m rows, scored on the others): " + ", ".join(
            f"{p['rows']} rows {p['spearman']:.3f}" for p in points) + " (Spearman)")
    if advice.get("gain_per_10_rows") is not None:
        n = len(specs)
        if advice["more_rows"] > 0:
            more = f"more than {10 * n}" if advice["more_rows_capped"] else f"about {advice['more_rows']}"
            print(f"more rows: +{advice['gain_per_10_rows']:.3f} Spearman per 10 networks now; predicted "
                  f"{advice['spearman_at_2n']:.3f} at {2 * n} networks; {more} more networks help most (until the "
                  f"gain drops below 0.002 per 10)")
        else:
            print(f"more rows: the curve has flattened (+{advice['gain_per_10_rows']:.4f} Spearman per 10 networks); "
                  f"more measurements will help little")
    print(f"table {path}")
    return 0


def add_fit_parser(lsub: argparse._SubParsersAction, add_store_argument: Callable[[argparse.ArgumentParser], None],
                   store_from: Callable[[argparse.Namespace], DeviceStore]) -> argparse.ArgumentParser:
    """Add ``fit`` to the ``edgenas lut`` sub-commands."""
    from edgenas.cli.common import add_space_arguments

    f = lsub.add_parser("fit", help="fit a device's table from whole networks measured end to end (CSV)")
    add_space_arguments(f)
    f.add_argument("--measurements", required=True, metavar="CSV",
                   help="CSV with an 'arch' (or arch_str / op_idx_list) column and a latency column in ms")
    f.add_argument("--device", required=True, help="device name to store the table under (created if unknown)")
    g = f.add_mutually_exclusive_group()
    g.add_argument("--prior-device", metavar="auto|none|D[,D...]", default="auto",
                   help="prior tables: 'auto' (default): every table the store has for the space (shipped "
                        "HW-NAS-Bench/HELP priors and yours), alone and mixed, chosen by cross-validation; "
                        "'none'; or these devices' tables")
    g.add_argument("--prior-table", metavar="PATH", help="use this table JSON as the only prior")
    f.add_argument("--latency-column", default="latency_ms", metavar="COL",
                   help="latency column in ms (default latency_ms)")
    f.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    f.add_argument("--seed", type=int, default=0, help="seed of the CV folds (default 0)")
    f.add_argument("--no-curve", action="store_true", help="skip the CV curve (how many more rows would help)")
    f.add_argument("--runtime", choices=runtime_choices(), default="litert",
                   help="runtime recorded in a newly created device spec (default litert)")
    add_store_argument(f)

    def run(args: argparse.Namespace) -> int:
        return cmd_lut_fit(args, store_from)

    f.set_defaults(func=run)
    return f

