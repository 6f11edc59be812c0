"""Helpers for the search tests: a remote "board" whose latency table is synthetic but complete.

The table is a real edgenas latency table (unit keys from the space's covering specs), saved in the
test's user folder next to a device spec, so searches use the real LatencyPredictor path: only the
numbers are made up (each unit costs MACs / 2e6 ms plus 0.002 ms, so latency tracks MACs but is not
proportional to it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgenas.latency.table import DeviceModel, Entry, LatencyTable
from edgenas.layers import layer_cost
from edgenas.spaces import Task, get_space

BOARD = "test-board"


def unit_ms(unit) -> float:
    return layer_cost(unit)[0].macs / 2e6 + 0.002


def write_board(user_dir: Path, space_name: str, task: Task | None = None, name: str = BOARD,
                **space_opts: object) -> Path:
    space = get_space(space_name, **space_opts)
    entries = {}
    for spec in space.covering_specs():
        for u in space.units(spec, task):
            if u.key not in entries:
                ms = unit_ms(u)
                entries[u.key] = Entry(ms, 0.0, ms, 1)
    table = LatencyTable(device=name, space=space_name, runtime={"name": "litert"}, entries=entries,
                         model=DeviceModel(overhead_ms=0.01, fitted_on=1), source="synthetic (tests)")
    (user_dir / "devices").mkdir(parents=True, exist_ok=True)
    (user_dir / "devices" / f"{name}.toml").write_text(
        f'name = "{name}"\nruntime = "litert"\nthreads = 1\nlocal = false\ndescription = "synthetic test board"\n')
    path = user_dir / "latency_tables" / f"{name}__{space_name}.json"
    table.save(path)
    return path


def user_dir() -> Path:
    return Path(os.environ["EDGENAS_DEVICES_DIR"])


def load_json(path: Path) -> object:
    return json.loads(Path(path).read_text())


def make_job(space: str = "tiny", objectives: tuple[str, ...] = ("accuracy", "latency_ms"),
             budgets: tuple[str, ...] = (), sampler: str = "nsga2", estimator: str = "params",
             seed: int = 0, space_opts: dict | None = None, **search: object):
    """A SearchJob on the synthetic board (written to the test's user folder), tables loaded."""
    from edgenas.search.job import SearchJob

    write_board(user_dir(), space, **(space_opts or {}))
    cfg = {"space": {"name": space, "options": dict(space_opts or {})}, "task": {},
           "devices": [{"name": BOARD}], "estimator": {"name": estimator},
           "search": {"objectives": list(objectives), "budgets": list(budgets), "sampler": sampler,
                      "seed": seed, **search}}
    job = SearchJob(cfg)
    job.use_tables(job.complete_tables(show_progress=False))
    return job


def run_trials(job, n: int, study=None, seed: int | None = None):
    """Run ``n`` trials of ``job`` through the real trial objective; returns the study."""
    import optuna

    from edgenas.search.run import make_sampler
    from edgenas.search.worker import Evaluator

    sampler = make_sampler(job, job.search.get("seed", 0) if seed is None else seed)
    if study is None:
        study = optuna.create_study(directions=job.directions, sampler=sampler)
    else:
        study.sampler = sampler
    evaluate = Evaluator(job, study)
    for _ in range(n):
        trial = study.ask()
        study.tell(trial, evaluate(trial))
    return study
