"""``edgenas run CONFIG``: run a TOML job (see :mod:`edgenas.config`): a search when it has a [search]
table (followed by the export of its front when it has an [export] table), else the [describe] job
(cost, latency and score of a sample)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgenas.archio import read_archs
from edgenas.cli.describe import COST_FIELDS
from edgenas.config import load_config
from edgenas.errors import EdgenasError
from edgenas.report import check_writable, format_table, write_csv
from edgenas.spaces import Task, get_space


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if "search" in cfg:
        from edgenas.cli.search import search_from_config

        if "export" in cfg:  # fail on a bad [export] table before the search spends minutes
            export_arguments(cfg["export"])
        rc, run_dir = search_from_config(args.config)
        if rc or "export" not in cfg:
            return rc
        from edgenas.cli.export import run_export

        print(f"\nexporting the front of {run_dir}", flush=True)
        return run_export(str(run_dir), command=f"edgenas export {run_dir} " + export_flags(cfg["export"]),
                          **export_arguments(cfg["export"]))
    if "export" in cfg:
        raise EdgenasError(f"config {args.config}: [export] exports a search's front and needs a [search] table; "
                           f"to export one arch use 'edgenas export --space S --arch A --out DIR'")
    space = get_space(cfg["space"]["name"], **cfg["space"].get("options", {}))
    task = Task(**cfg.get("task", {}))
    desc = cfg.get("describe", {"random": 10, "seed": 0})
    if "csv" in desc:
        check_writable(desc["csv"])
    if "archs" in desc:
        specs = read_archs(desc["archs"], space)
    else:
        specs = space.sample(desc.get("random", 10), desc.get("seed", 0))
    records = [space.cost(s, task).as_record() for s in specs]
    columns = list(COST_FIELDS)
    if "device" in cfg:
        from edgenas.latency import DeviceStore, LatencyPredictor

        dev = cfg["device"]
        pred = LatencyPredictor(space, dev["name"], DeviceStore(dev.get("devices_dir")))
        for rec, ms in zip(records, pred.predict_many(specs, task)):
            rec["latency_ms"] = ms
        columns.append("latency_ms")
    if "estimator" in cfg:
        from edgenas.estimators.base import estimator_from_config

        est = estimator_from_config(cfg["estimator"], space, task, base_dir=Path(args.config).parent)
        for rec, score in zip(records, est.score_many(specs)):
            rec["score"] = score
        columns.append("score")
    print(f"space {space.name}: {space.size():.3g} members; task {task}")
    print(format_table(records, columns))
    if "csv" in desc:
        write_csv(desc["csv"], records, columns)
        print(f"wrote {len(records)} records to {desc['csv']}")
    return 0


def export_arguments(table: dict[str, Any]) -> dict[str, Any]:
    """An [export] table as :func:`edgenas.cli.export.run_export` keywords (checked)."""
    from edgenas.cli.export import _formats

    formats = table.get("formats", ["onnx", "tflite", "tflite-int8"])
    return {"out": table.get("out"), "formats": _formats(",".join(formats)),
            "train_epochs": int(table.get("train_epochs", 10)), "trials": str(table.get("trials", "pareto")),
            "nhwc": bool(table.get("nhwc", False)), "float_io": bool(table.get("float_io", False)),
            "seed": int(table.get("seed", 0)), "threads": int(table.get("threads", 1)),
            "dataset": table.get("dataset")}


def export_flags(table: dict[str, Any]) -> str:
    """The ``edgenas export`` flags that reproduce an [export] table."""
    a = export_arguments(table)
    flags = [f"--formats {','.join(a['formats'])}", f"--train-epochs {a['train_epochs']}", f"--trials {a['trials']}",
             f"--seed {a['seed']}"]
    if a["out"]:
        flags.append(f"--out {a['out']}")
    if a["dataset"]:
        flags.append(f"--dataset {a['dataset']}")
    flags += ["--nhwc"] * a["nhwc"] + ["--float-io"] * a["float_io"]
    return " ".join(flags)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a TOML job config (e.g. examples/demo.toml)")
    p.add_argument("config", help="path to the TOML config")
    p.set_defaults(func=cmd_run)
