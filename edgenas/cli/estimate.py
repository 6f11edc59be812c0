"""``edgenas estimate`` (score specs with an accuracy estimator) and ``edgenas estimators`` (list them)."""

from __future__ import annotations

import argparse
import inspect
import json
import sys

from edgenas.cli.common import (
    add_arch_arguments,
    add_output_arguments,
    add_space_arguments,
    add_torch_device_argument,
    emit,
    space_and_task,
    specs_from_args,
)
from edgenas.errors import EdgenasError
from edgenas.estimators import (
    ESTIMATORS,
    RECORD_FIELDS,
    estimator_class,
    estimator_names,
    estimator_options,
    get_estimator,
)
from edgenas.options import parse_kv
from edgenas.report import check_writable, write_json
from edgenas.torchdevice import check_device_name


def cmd_estimate(args: argparse.Namespace) -> int:
    if args.csv:
        check_writable(args.csv)
    space, task = space_and_task(args)
    options = parse_kv(args.est_opt, "--est-opt")
    if args.torch_device is not None:
        args.torch_device = check_device_name(args.torch_device)
    for key in ("weights", "dataset", "torch_device"):
        value = getattr(args, key)
        flag = "--" + key.replace("_", "-")
        if value is not None:
            if key in options:
                raise EdgenasError(f"{flag} given twice (also as --est-opt {key}=...)")
            if key not in estimator_options(args.estimator):
                raise EdgenasError(f"estimator {args.estimator!r} takes no {flag}")
            options[key] = value
    specs = specs_from_args(args, space)
    est = get_estimator(args.estimator, space, task, seed=args.est_seed, **options)
    dataset = getattr(est, "dataset", None)
    if hasattr(dataset, "split_record"):  # a Dataset: its split next to the results (stderr: stdout stays data)
        print("dataset split: " + json.dumps(dataset.split_record()), file=sys.stderr)
    records = [e.as_record() for e in est.estimate_many(specs)]
    if args.json:
        write_json(records)
    else:
        metrics = [k for k in est.provides() if any(k in r for r in records)]  # trust metrics: columns of their own
        emit(records, [*RECORD_FIELDS, *metrics], args)
    return 0


def cmd_estimators(args: argparse.Namespace) -> int:
    rows = []
    for name in estimator_names():
        cls = estimator_class(name)
        opts = {k: (None if v is inspect.Parameter.empty else v) for k, v in estimator_options(name).items()}
        rows.append({"name": name, "summary": cls.summary, "needs_data": cls.needs_data, "options": opts,
                     "from": ESTIMATORS.entry(name).origin})
    if args.json:
        write_json(rows)
        return 0
    for r in rows:
        print(f"{r['name']}: {r['summary']}" + (f" [plug-in: {r['from']}]" if r["from"] != "edgenas" else ""))
        if r["options"]:
            print("  options: " + ", ".join(f"{k}={v!r}" for k, v in r["options"].items()))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimators", help="list the accuracy estimators and their options")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_estimators)

    p = sub.add_parser("estimate", help="score specs with an accuracy estimator (score, seconds, epochs, samples)")
    add_space_arguments(p)
    p.add_argument("--estimator", required=True, help=f"estimator name ({', '.join(estimator_names())})")
    p.add_argument("--weights", metavar="PATH", help="weights file of an external predictor (ofa-predictor)")
    p.add_argument("--dataset", metavar="D",
                   help="digits (default), synthetic[:n=..,classes=..,channels=..,size=..], an image folder "
                        "(one sub-folder per class) or a .npz with x and y")
    add_torch_device_argument(p, "an estimator that trains")
    p.add_argument("--est-opt", action="append", metavar="KEY=VALUE",
                   help="estimator option, e.g. epochs=2 or members=synflow,snip "
                        "(repeatable; see 'edgenas estimators')")
    p.add_argument("--est-seed", type=int, default=0, help="estimator seed (default 0)")
    add_arch_arguments(p)
    add_output_arguments(p)
    p.set_defaults(func=cmd_estimate)
