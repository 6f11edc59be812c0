"""``edgenas spaces`` and ``edgenas describe``: the spaces' choices and the exact cost of specs."""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgenas.archio import read_archs
from edgenas.errors import EdgenasError
from edgenas.report import check_writable, format_table, write_csv, write_json
from edgenas.spaces import ArchSpec, SearchSpace, Task, get_space, space_names
from edgenas.spaces.base import RECORD_FIELDS

COST_FIELDS = list(RECORD_FIELDS)


def parse_space_options(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs; values are JSON when they parse as JSON, comma lists become lists."""
    opts: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise EdgenasError(f"space option {item!r} must look like key=value, e.g. widths=1.0,1.2")
        vals = [_scalar(v) for v in raw.split(",")] if "," in raw else _scalar(raw)
        opts[key.strip()] = vals
    return opts


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def add_space_arguments(p: argparse.ArgumentParser) -> None:
    """--space, --space-opt and the task flags shared by every command that builds specs."""
    p.add_argument("--space", required=True, help=f"search space ({', '.join(space_names())})")
    p.add_argument("--space-opt", action="append", metavar="KEY=VALUE",
                   help="space constructor option, e.g. widths=1.0,1.2 or resolution_step=16 (repeatable)")
    p.add_argument("--classes", type=int, help="number of output classes (default: the space's)")
    p.add_argument("--in-channels", type=int, default=3, help="input channels (default 3)")
    p.add_argument("--resolution", type=int,
                   help="input resolution for spaces whose specs do not fix it (nb201, fbnet)")


def add_arch_arguments(p: argparse.ArgumentParser) -> None:
    """The arch-input group shared by describe, estimate and predict."""
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--arch", action="append", help="one arch in any accepted form (repeatable)")
    g.add_argument("--arch-json", action="append", help="one arch as a JSON object, e.g. OFA's {ks,e,d,r,w}")
    g.add_argument("--archs", metavar="FILE", help="file with one arch per line, or a CSV with an 'arch' column")
    g.add_argument("--random", type=int, metavar="N", help="N uniformly random specs (with --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")


def space_and_task(args: argparse.Namespace) -> tuple[SearchSpace, Task]:
    space = get_space(args.space, **parse_space_options(args.space_opt))
    for flag in ("classes", "in_channels", "resolution"):
        v = getattr(args, flag)
        if v is not None and v <= 0:
            raise EdgenasError(f"--{flag.replace('_', '-')} must be positive, got {v}")
    return space, Task(num_classes=args.classes, in_channels=args.in_channels, resolution=args.resolution)


def specs_from_args(args: argparse.Namespace, space: SearchSpace) -> list[ArchSpec]:
    if args.arch:
        return [space.parse(a) for a in args.arch]
    if args.arch_json:
        out = []
        for text in args.arch_json:
            if not text.strip().startswith("{"):
                raise EdgenasError("--arch-json takes a JSON object, e.g. '{\"ks\": [...], \"e\": [...], ...}'")
            out.append(space.parse(text))
        return out
    if args.archs:
        return read_archs(args.archs, space)
    if args.random <= 0:
        raise EdgenasError(f"--random must be positive, got {args.random}")
    return space.sample(args.random, args.seed)


def emit(records: list[dict[str, Any]], columns: list[str], args: argparse.Namespace) -> None:
    """Table on stdout, or JSON (``--json``), or a CSV file (``--csv OUT``) plus a one-line summary."""
    if getattr(args, "json", False):
        write_json(records)
    elif getattr(args, "csv", None):
        write_csv(args.csv, records, columns)
        print(f"wrote {len(records)} records to {args.csv}")
    else:
        print(format_table(records, columns))


def cmd_spaces(args: argparse.Namespace) -> int:
    rows = []
    for name in space_names():
        sp = get_space(name)
        rows.append({"name": name, "summary": sp.summary, "size": sp.size(), "choices": sp.choices(),
                     "encoding_size": sp.encoding_size()})
    if args.json:
        write_json(rows)
        return 0
    for r in rows:
        print(f"{r['name']}: {r['summary']}")
        print(f"  size: {r['size']:,} ({r['size']:.3g})")
        for k, v in r["choices"].items():
            print(f"  {k}: {v}")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    if args.csv:
        check_writable(args.csv)
    space, task = space_and_task(args)
    specs = specs_from_args(args, space)
    records = [space.cost(s, task).as_record() for s in specs]
    columns = COST_FIELDS
    if args.device:
        from edgenas.latency import DeviceStore, LatencyPredictor

        pred = LatencyPredictor(space, args.device, DeviceStore(args.devices_dir), lazy=not args.no_measure)
        for rec, ms in zip(records, pred.predict_many(specs, task)):
            rec["latency_ms"] = ms
        columns = [*COST_FIELDS, "latency_ms"]
    emit(records, columns, args)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spaces", help="list the search spaces, their choices and sizes")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("describe", help="canonical string and cost (MACs, params, file sizes, peak RAM, TFLM arena)")
    add_space_arguments(p)
    add_arch_arguments(p)
    p.add_argument("--device", help="add the predicted latency on this device (see 'edgenas devices')")
    p.add_argument("--devices-dir", metavar="DIR", help="user folder of device specs and latency tables")
    p.add_argument("--no-measure", action="store_true",
                   help="with a local --device: fail on missing table entries instead of measuring them")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    out.add_argument("--csv", metavar="OUT", help="write CSV records to OUT")
    p.set_defaults(func=cmd_describe)


