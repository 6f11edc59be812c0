"""``edgenas run CONFIG``: run a TOML job (see :mod:`edgenas.config`): a search when it has a [search]
table, else the [describe] job (cost, latency and score of a sample)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgenas.archio import read_archs
from edgenas.cli.describe import COST_FIELDS
from edgenas.config import load_config
from edgenas.report import check_writable, format_table, write_csv
from edgenas.spaces import Task, get_space


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if "search" in cfg:
        from edgenas.cli.search import search_from_config

        return search_from_config(args.config)
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


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a TOML job config (e.g. examples/demo.toml)")
    p.add_argument("config", help="path to the TOML config")
    p.set_defaults(func=cmd_run)
