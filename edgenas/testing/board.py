"""A synthetic "board": a remote device whose latency table is made up but complete, for search tests.

The table is a real edgenas latency table (unit keys from the space's covering specs), saved in the
user folder (``$EDGENAS_DEVICES_DIR``) next to a device spec, so searches take the real
:class:`~edgenas.latency.predict.LatencyPredictor` path: only the numbers are made up (each unit costs
MACs / 2e6 ms plus 0.002 ms, so latency tracks MACs but is not proportional to it). Nothing is
measured, so a search over it costs only the estimator's time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgenas.fileio import write_toml
from edgenas.latency.table import DeviceModel, Entry, LatencyTable
from edgenas.layers import Layer, layer_cost
from edgenas.spaces import Task, get_space

BOARD = "test-board"
"""Device name of the synthetic board."""


def unit_ms(unit: Layer) -> float:
    """The board's made-up latency (ms) of one latency-table unit."""
    return layer_cost(unit)[0].macs / 2e6 + 0.002


def write_board(user_dir: Path, space_name: str, task: Task | None = None, name: str = BOARD,
                **space_opts: Any) -> Path:
    """Write the board's device spec and its complete table for ``space_name`` under ``user_dir``;
    returns the table's path."""
    space = get_space(space_name, **space_opts)
    entries = {}
    for spec in space.covering_specs():
        for u in space.units(spec, task):
            if u.key not in entries:
                ms = unit_ms(u)
                entries[u.key] = Entry(ms, 0.0, ms, 1)
    table = LatencyTable(device=name, space=space_name, runtime={"name": "litert"}, entries=entries,
                         model=DeviceModel(overhead_ms=0.01, fitted_on=1), source="synthetic (tests)")
    write_toml(Path(user_dir) / "devices" / f"{name}.toml",
               {"name": name, "runtime": "litert", "threads": 1, "local": False,
                "description": "synthetic test board"})
    path = Path(user_dir) / "latency_tables" / f"{name}__{space_name}.json"
    table.save(path)
    return path


def user_dir() -> Path:
    """The user folder of devices and tables the tests write to (``$EDGENAS_DEVICES_DIR``, which a test
    must point at a temporary folder: the contracts' fixtures do)."""
    value = os.environ.get("EDGENAS_DEVICES_DIR")
    if not value:
        raise RuntimeError("EDGENAS_DEVICES_DIR is not set; point it at a temporary folder (tests must never "
                           "write to ~/.edgenas)")
    return Path(value)


def load_json(path: Path) -> object:
    return json.loads(Path(path).read_text())


def make_job(space: str = "tiny", objectives: tuple[str, ...] = ("accuracy", "latency_ms"),
             budgets: tuple[str, ...] = (), sampler: str = "nsga2", estimator: str = "params",
             seed: int = 0, space_opts: dict[str, Any] | None = None, **search: Any) -> Any:
    """A SearchJob on the synthetic board (written to the user folder), its tables loaded. ``search``:
    further keys of the ``[search]`` table (e.g. ``sampler_options``)."""
    from edgenas.search.job import SearchJob

    write_board(user_dir(), space, **(space_opts or {}))
    cfg = {"space": {"name": space, "options": dict(space_opts or {})}, "task": {},
           "devices": [{"name": BOARD}], "estimator": {"name": estimator},
           "search": {"objectives": list(objectives), "budgets": list(budgets), "sampler": sampler,
                      "seed": seed, **search}}
    job = SearchJob(cfg)
    job.use_tables(job.complete_tables(show_progress=False))
    return job


def run_trials(job: Any, n: int, study: Any = None, seed: int | None = None) -> Any:
    """Run ``n`` trials of ``job`` through the real trial objective (budgets first, duplicates reused);
    returns the Optuna study (a new in-memory one unless ``study`` is given)."""
    import optuna

    from edgenas.search.run import make_sampler
    from edgenas.search.worker import Evaluator

    sampler = make_sampler(job, job.search.seed if seed is None else seed)
    if study is None:
        study = optuna.create_study(directions=job.directions, sampler=sampler)
    else:
        study.sampler = sampler
    evaluate = Evaluator(job, study)
    for _ in range(n):
        trial = study.ask()
        study.tell(trial, evaluate(trial))
    return study
