"""``edgenas spaces`` and ``edgenas describe``: the spaces' choices and the exact cost of specs."""

from __future__ import annotations

import argparse

from edgenas.cli.common import (
    add_arch_arguments,
    add_output_arguments,
    add_space_arguments,
    emit,
    space_and_task,
    specs_from_args,
)
from edgenas.report import check_writable, write_json
from edgenas.spaces import get_space, space_names
from edgenas.spaces.base import RECORD_FIELDS

COST_FIELDS = list(RECORD_FIELDS)


def cmd_spaces(args: argparse.Namespace) -> int:
    from edgenas.spaces import SPACES

    rows = []
    for name in space_names():
        sp = get_space(name)
        origin = SPACES.entry(name).origin
        rows.append({"name": name, "summary": sp.summary, "size": sp.size(), "choices": sp.choices(),
                     "encoding_size": sp.encoding_size(), "from": origin})
    if args.json:
        write_json(rows)
        return 0
    for r in rows:
        print(f"{r['name']}: {r['summary']}" + (f" [plug-in: {r['from']}]" if r["from"] != "edgenas" else ""))
        print(f"  size: {r['size']:,} ({r['size']:.3g})" if r["size"] else "  size: depends on the source model")
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
    add_output_arguments(p)
    p.set_defaults(func=cmd_describe)
