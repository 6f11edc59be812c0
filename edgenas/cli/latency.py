"""``edgenas devices``, ``edgenas profile [kit]`` and ``edgenas lut ...``: the latency journey."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from edgenas.cli.common import (
    add_arch_arguments,
    add_space_arguments,
    emit,
    space_and_task,
    specs_from_args,
)
from edgenas.errors import EdgenasError
from edgenas.latency.devices import DeviceStore, new_device_spec, runtime_choices
from edgenas.names import check_name
from edgenas.report import check_writable


def add_store_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices-dir", metavar="DIR",
                   help="user folder with devices/*.toml and latency_tables/*.json, where tables are written "
                        "(default $EDGENAS_DEVICES_DIR or ~/.edgenas)")


def store_from(args: argparse.Namespace) -> DeviceStore:
    return DeviceStore(getattr(args, "devices_dir", None))


def _space_with_resolutions(args: argparse.Namespace):  # noqa: ANN202
    if getattr(args, "resolutions", None):
        args.space_opt = [*(args.space_opt or []), "resolutions=" + json.dumps(list(args.resolutions))]
    return space_and_task(args)


# -- devices ------------------------------------------------------------------------------------
def cmd_devices(args: argparse.Namespace) -> int:
    store = store_from(args)
    rows = []
    for d in store.devices():
        tables = sorted(p.stem.split("__", 1)[1] for dd in store.table_dirs() if dd.is_dir()
                        for p in dd.glob(f"{d.name}__*.json"))
        rows.append({"name": d.name, "runtime": d.runtime, "threads": d.threads, "local": d.local,
                     "tables": ", ".join(dict.fromkeys(tables)) or "-", "description": d.description})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        print(f"{r['name']}: {r['description']}")
        print(f"  runtime {r['runtime']}, {r['threads']} thread(s), {'this host' if r['local'] else 'remote'}; "
              f"tables: {r['tables']}")
    return 0


# -- profile ------------------------------------------------------------------------------------
def cmd_profile(args: argparse.Namespace) -> int:
    from edgenas.latency.workflow import profile_and_validate

    if args.mode == "kit":
        return cmd_profile_kit(args)
    if args.out or args.runner != "python":
        raise EdgenasError("--out and --runner are for 'edgenas profile kit'; plain 'profile' writes the device's "
                           "table")

    store, device, space, task, specs = _profile_inputs(args)
    t0 = time.time()
    rep = profile_and_validate(device, space, store, specs=specs, task=task, n_validate=args.validate,
                               n_calibrate=args.calibrate, seed=args.seed, jobs=args.jobs, warmup=args.warmup,
                               repeats=args.repeats, remeasure=args.remeasure)
    print(f"{device.name}/{space.name}: {rep.total_units} units, {rep.measured_units} measured now "
          f"({rep.seconds_units:.0f}s); table {rep.table_path}")
    if rep.validation:
        print_validation(rep.validation)
    from edgenas.latency.passes import PassReport

    warning = PassReport.warning(rep.timing, rep.measured_units + args.validate + args.calibrate)
    if warning:
        print(warning)
    print(f"total {time.time() - t0:.0f}s")
    return 0


def _profile_inputs(args: argparse.Namespace):  # noqa: ANN202
    """Store, device, space, task and the optional spec subset (--archs / --random) of a profile run."""
    store = store_from(args)
    device = store.device(args.device)
    space, task = _space_with_resolutions(args)
    specs = None
    if args.archs or args.random:
        args.arch = args.arch_json = None
        specs = specs_from_args(args, space)
    return store, device, space, task, specs


def print_validation(v: dict[str, Any]) -> None:
    print(f"validation on {v['n']} random networks (calibrated on {v.get('calibration_networks', 0)}): "
          f"MAPE {v['mape_pct']:.2f}%, RMSE {v['rmse_ms']:.4f} ms, within ±5% {v['within_5pct']:.1%}, "
          f"within ±10% {v['within_10pct']:.1%}, Kendall tau {v.get('kendall_tau', float('nan')):.3f}, "
          f"Spearman {v.get('spearman', float('nan')):.3f}" + (f"; plot {v['plot']}" if v.get("plot") else ""))


def cmd_profile_kit(args: argparse.Namespace) -> int:
    from edgenas.latency.kit import write_kit

    if not args.out:
        raise EdgenasError("'edgenas profile kit' needs --out DIR (the kit folder to create)")
    _, device, space, task, specs = _profile_inputs(args)
    nets = space.sample(args.networks, args.seed) if args.networks else []
    m = write_kit(device, space, Path(args.out), nets, task, specs=specs, jobs=args.jobs, runner=args.runner,
                  warmup=args.warmup, repeats=args.repeats)
    print(f"kit {m['kit_id']}: {len(m['entries'])} unit models and {len(m['networks'])} networks in {args.out}")
    if args.runner == "native":
        tool = m["native"]["tool"]
        print(f"{tool} {' '.join(m['native']['args'])}")
        print(f"on the device: sh native_runner.sh (or from this host: sh {args.out}/native_adb.sh --tool "
              f"/path/to/{tool})  ->  then: edgenas lut import-kit {args.out}")
    else:
        print(f"on the board: python3 runner.py {args.out}  ->  then: edgenas lut import-kit {args.out}/results.json")
    return 0


# -- lut ----------------------------------------------------------------------------------------
def _predictor(args: argparse.Namespace, space: Any):  # noqa: ANN202
    from edgenas.latency.predict import LatencyPredictor

    return LatencyPredictor(space, args.device, store_from(args), lazy=not getattr(args, "no_measure", False))


def cmd_lut_predict(args: argparse.Namespace) -> int:
    if args.csv:
        check_writable(args.csv)
    space, task = space_and_task(args)
    specs = specs_from_args(args, space)
    pred = _predictor(args, space)
    lat = pred.predict_many(specs, task)
    records = [{"arch": str(s), "latency_ms": v} for s, v in zip(specs, lat)]
    emit(records, ["arch", "latency_ms"], args)
    return 0


def cmd_lut_validate(args: argparse.Namespace) -> int:
    from edgenas.latency.profile import Profiler
    from edgenas.latency.workflow import calibrate_and_validate

    store = store_from(args)
    device = store.device(args.device)
    space, task = _space_with_resolutions(args)
    profiler = Profiler(device, store, warmup=args.warmup, repeats=args.repeats, jobs=args.jobs)
    table, path = profiler.open_table(space.name)
    v, _ = calibrate_and_validate(profiler, space, table, path, args.samples, args.calibrate, args.seed, task)
    print_validation(v)
    print(f"figures stored in {path}")
    return 0


def cmd_lut_show(args: argparse.Namespace) -> int:
    store = store_from(args)
    device = store.device(args.device)
    path = store.find_table(device, args.space)
    if path is None:
        raise EdgenasError(f"no table for {device.name}/{args.space}; run 'edgenas profile --device {device.name} "
                           f"--space {args.space}'")
    table = store.load_table(device, args.space)
    assert table is not None
    print(f"{path}\n  device {table.device}, space {table.space}, source {table.source}, created {table.created}")
    print(f"  runtime {table.runtime}\n  {len(table.entries)} entries; device model {table.model.to_json()}")
    if table.validation:
        print_validation(table.validation)
    return 0


def _said_created(created: Path | None) -> None:
    if created is not None:
        print(f"created device spec {created}")


def cmd_lut_import(args: argparse.Namespace) -> int:
    """Import a published table; the device name is checked before anything is read or written, and
    the table (with a new remote-device spec when the device is unknown) is written only once it checks."""
    from edgenas.latency.importers import import_published

    check_name(args.device, "device")
    store = store_from(args)
    table = import_published([Path(p) for p in args.paths], args.format, args.device)
    spec = new_device_spec(args.device, "litert", f"lut import --format {args.format}")
    path, created = store.save_table(table, spec)
    _said_created(created)
    print(f"imported {len(table.entries)} entries ({args.format}) for {table.device}/{table.space} into {path}")
    return 0


def cmd_lut_import_kit(args: argparse.Namespace) -> int:
    """Import a kit's results. Names, numbers, unit keys, the fitted device model and the target file are
    all checked first; an existing good table is replaced only by a table that checks."""
    from edgenas.latency.kit import check_kit_runtime, load_results, table_from_results
    from edgenas.latency.native import profile_summary

    if args.device is not None:
        check_name(args.device, "device")
    store = store_from(args)
    data, origin = load_results(Path(args.results))
    table = table_from_results(data, origin, args.device)
    prof = profile_summary(data)
    runtime = table.runtime.get("name") if table.runtime.get("name") in runtime_choices() else "litert"
    spec = new_device_spec(table.device, runtime, "lut import-kit")
    path, created = store.save_table(table, spec, check=check_kit_runtime(table))
    _said_created(created)
    print(f"imported {len(table.entries)} entries for {table.device}/{table.space} into {path}")
    if (data.get("host") or {}).get("runner") == "native":
        print(f"from {len(data.get('logs') or {})} raw {data['host'].get('tool')} logs "
              f"({table.runtime.get('version')})")
    if prof:
        share = ", ".join(f"{t} {v:.0%}" for t, v in list(prof["network_op_share"].items())[:4])
        gap = prof["unit_outside_ops_ms_median"]
        print(f"per-operator profiles of {prof['profiled_models']} models: network operator time {share or '-'}"
              + (f"; per-invoke time outside the operators (median over units) {gap * 1e3:.1f} us" if gap is not None
                 else ""))
    if table.validation:
        print_validation(table.validation)
    return 0


def add_measure_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, default=2, help="processes exporting micro-models (default 2)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs per model (default 10)")
    p.add_argument("--repeats", type=int, default=50, help="timed runs per model (default 50)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list known devices and their latency tables")
    add_store_argument(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("profile", help="measure a local device's latency table for a space, then validate it "
                                       "('profile kit' writes an on-device kit instead)")
    p.add_argument("mode", nargs="?", choices=["kit"],
                   help="'kit': write micro-models + manifest + the standalone runner for a board (needs --out)")
    p.add_argument("--device", required=True, help="device name (see 'edgenas devices') or a .toml path")
    add_space_arguments(p)
    add_store_argument(p)
    p.add_argument("--resolutions", type=int, nargs="+", help="restrict the space's searched resolutions")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--archs", metavar="FILE", help="profile only the units of these archs")
    g.add_argument("--random", type=int, metavar="N", help="profile only the units of N random specs")
    p.add_argument("--seed", type=int, default=0, help="seed for --random and the validation networks")
    p.add_argument("--validate", type=int, default=50, metavar="N",
                   help="validate on N random networks measured end to end (default 50; 0 skips)")
    p.add_argument("--calibrate", type=int, default=20, metavar="K",
                   help="fit the device model on K other measured networks (default 20)")
    p.add_argument("--remeasure", action="store_true",
                   help="time every unit again even if the table has it (after a run under background load)")
    p.add_argument("--out", help="kit: folder to create")
    p.add_argument("--networks", type=int, default=20,
                   help="kit: whole networks to include for fitting/validating the device model (default 20)")
    p.add_argument("--runner", choices=["python", "native"], default="python",
                   help="kit: 'native' adds a POSIX sh script (and an adb wrapper) timing the models with the "
                        "runtime's own tool: LiteRT benchmark_model / onnxruntime_perf_test (default python)")
    add_measure_arguments(p)
    p.set_defaults(func=cmd_profile, arch=None, arch_json=None)

    lut = sub.add_parser("lut", help="latency tables: predict, validate, import, import-kit, fit, show")
    lsub = lut.add_subparsers(dest="lut_command", metavar="ACTION")
    lsub.required = True
    from edgenas.cli.lut_fit import add_fit_parser

    add_fit_parser(lsub, add_store_argument, store_from)

    q = lsub.add_parser("predict", help="predict whole-network latency of many specs at once")
    q.add_argument("--device", required=True)
    add_space_arguments(q)
    add_arch_arguments(q)
    add_store_argument(q)
    q.add_argument("--no-measure", action="store_true", help="never measure missing entries (even locally)")
    out = q.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", metavar="OUT")
    q.set_defaults(func=cmd_lut_predict)

    v = lsub.add_parser("validate", help="measure N random networks end to end and score the table")
    v.add_argument("--device", required=True)
    add_space_arguments(v)
    add_store_argument(v)
    v.add_argument("--resolutions", type=int, nargs="+")
    v.add_argument("--samples", type=int, default=50, help="validation networks (default 50)")
    v.add_argument("--calibrate", type=int, default=20, help="calibration networks for the device model (default 20)")
    v.add_argument("--seed", type=int, default=0)
    add_measure_arguments(v)
    v.set_defaults(func=cmd_lut_validate)

    s = lsub.add_parser("show", help="summarise a device's table for a space")
    s.add_argument("--device", required=True)
    s.add_argument("--space", required=True)
    add_store_argument(s)
    s.set_defaults(func=cmd_lut_show)

    im = lsub.add_parser("import", help="import a published table: OFA's per-resolution YAML (mbv3) or "
                                        "ProxylessNAS's mobile YAML (proxyless)")
    im.add_argument("paths", nargs="+", help="YAML file(s), or a folder of *_lookup_table.yaml")
    im.add_argument("--format", required=True, choices=["ofa", "proxyless"])
    im.add_argument("--device", required=True, help="device name to store the table under")
    add_store_argument(im)
    im.set_defaults(func=cmd_lut_import)

    ik = lsub.add_parser("import-kit", help="turn a kit's results (runner.py's results.json, or a native kit's "
                                            "raw benchmark_model / onnxruntime_perf_test logs) into a table")
    ik.add_argument("results", help="results.json, or a native kit folder (its manifest.json / logs/)")
    ik.add_argument("--device", help="store under this device name instead of the kit's")
    add_store_argument(ik)
    ik.set_defaults(func=cmd_lut_import_kit)
