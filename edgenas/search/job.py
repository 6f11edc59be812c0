"""A search job: the resolved configuration and everything built from it.

The resolved configuration is one JSON-able dict (``space``, ``task``, ``devices``, ``estimator``,
``search``); it is written to the run directory and stored in the Optuna study, so a worker on another
machine rebuilds the identical job from the storage URL and study name alone. Latency tables are
stored in the study too (as they were when the search started): every worker predicts with the same
table, and no worker measures anything mid-search.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgenas.errors import EdgenasError
from edgenas.search.fields import Budget, Field, parse_budget, resolve_field
from edgenas.search.oracle import CostOracle, LatencySource
from edgenas.spaces import SearchSpace, Task, get_space

DEFAULT_OBJECTIVES = ("accuracy", "latency_ms")
STRATIFIED_REFERENCE = 128
"""Reference candidates a filter estimator compares with inside a search (16 nearest in cost)."""
SEARCH_DEFAULTS: dict[str, Any] = {
    "objectives": list(DEFAULT_OBJECTIVES),
    "budgets": [],
    "sampler": "nsga2",
    "sampler_options": {},
    "seed": 0,
    "trials": None,
    "timeout": None,
    "workers": 1,
    "storage": None,
    "study": None,
    "precision": "int8",
    "reference": {},
}
SEARCH_TYPES: dict[str, type | tuple[type, ...]] = {
    "objectives": list, "budgets": list, "sampler": str, "sampler_options": dict, "seed": int,
    "trials": int, "timeout": (int, float), "workers": int, "storage": str, "study": str,
    "precision": str, "reference": dict, "out": str,
}


def check_search_table(table: dict[str, Any], origin: str = "[search]") -> None:
    for key, value in table.items():
        want = SEARCH_TYPES.get(key)
        if want is None:
            raise EdgenasError(f"{origin}: unknown key {key!r}; known: {', '.join(SEARCH_TYPES)}")
        if value is None:
            continue
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            name = want.__name__ if isinstance(want, type) else " or ".join(t.__name__ for t in want)
            raise EdgenasError(f"{origin}: {key} must be of type {name}")


@dataclass
class DeviceConfig:
    """A latency source: a device (its table from the store, or from the study) or a measured CSV."""

    name: str
    csv: str | None = None
    column: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in {"name": self.name, "csv": self.csv, "column": self.column}.items() if v is not None}


@dataclass
class SearchJob:
    """Everything a worker needs, built from a resolved configuration."""

    config: dict[str, Any]
    space: SearchSpace = field(init=False)
    task: Task = field(init=False)
    devices: list[DeviceConfig] = field(init=False)
    objectives: list[Field] = field(init=False)
    budgets: list[Budget] = field(init=False)
    devices_dir: str | None = None

    def __post_init__(self) -> None:
        cfg = self.config
        sp = cfg["space"]
        self.space = get_space(sp["name"], **sp.get("options", {}))
        self.task = Task(**cfg.get("task", {}))
        self.devices = [DeviceConfig(**d) for d in cfg.get("devices", [])]
        names = [d.name for d in self.devices]
        if len(set(names)) != len(names):
            raise EdgenasError(f"devices listed twice: {', '.join(names)}")
        s = self.search
        precision = s.get("precision", "int8")
        objectives = s.get("objectives") or (list(DEFAULT_OBJECTIVES) if names else ["accuracy", "macs"])
        self.objectives = [resolve_field(o, names, precision) for o in objectives]
        seen = [f.name for f in self.objectives]
        if len(set(seen)) != len(seen):
            raise EdgenasError(f"objectives name a field twice: {', '.join(seen)}")
        if not self.objectives:
            raise EdgenasError("a search needs at least one objective, e.g. accuracy,latency_ms")
        self.budgets = [parse_budget(b, names, precision) for b in s.get("budgets", [])]
        if self.needs_estimator and "estimator" not in cfg:
            raise EdgenasError("objective 'accuracy' needs an estimator: pass --estimator (e.g. synflow, train) "
                               "or add an [estimator] table")
        self._latency: dict[str, LatencySource] | None = None
        self._oracle: CostOracle | None = None
        self._estimator = None

    # -- views -------------------------------------------------------------------------------
    @property
    def search(self) -> dict[str, Any]:
        return self.config.setdefault("search", {})

    @property
    def needs_estimator(self) -> bool:
        return any(not f.cheap for f in self.objectives) or any(not b.field.cheap for b in self.budgets)

    @property
    def directions(self) -> list[str]:
        return [f.direction for f in self.objectives]

    @property
    def device_names(self) -> list[str]:
        return [d.name for d in self.devices]

    # -- latency -----------------------------------------------------------------------------
    def complete_tables(self, show_progress: bool | None = None) -> dict[str, dict[str, Any]]:
        """Make every device table cover the whole space (a local device measures what is missing, a
        remote one must already have it) and return the tables as JSON, by device name."""
        from edgenas.latency import DeviceStore, LatencyPredictor

        store = DeviceStore(self.devices_dir)
        out = {}
        for d in self.devices:
            if d.csv:
                continue
            pred = LatencyPredictor(self.space, d.name, store, show_progress=show_progress)
            pred.ensure(self.space.covering_specs(), self.task)
            if pred.table.model.fitted_on == 0 and pred.lazy:
                from edgenas.latency.workflow import calibrate

                calibrate(pred.profiler(), self.space, pred.table, pred.save_path, pred.auto_calibrate, seed=1000,
                          task=self.task)
            out[d.name] = pred.table.to_json()
        return out

    def use_tables(self, tables: dict[str, dict[str, Any]]) -> None:
        """Predict latency from these tables (as stored in the study), never measuring."""
        from edgenas.latency import DeviceStore, LatencyPredictor
        from edgenas.latency.lookup import MeasuredLatency
        from edgenas.latency.table import LatencyTable

        store = DeviceStore(self.devices_dir)
        sources: dict[str, LatencySource] = {}
        for d in self.devices:
            if d.csv:
                sources[d.name] = MeasuredLatency(self.space, d.csv, d.column or d.name, d.name)
                continue
            if d.name not in tables:
                raise EdgenasError(f"the study holds no latency table for device {d.name!r}")
            table = LatencyTable.from_json(tables[d.name], f"study table {d.name}")
            device = store.device(d.name) if d.name in {x.name for x in store.devices()} else None
            if device is None:
                from edgenas.latency.devices import DeviceSpec

                device = DeviceSpec(name=d.name, runtime=str(table.runtime.get("name", "onnxruntime")))
            sources[d.name] = LatencyPredictor(self.space, device, store, table=table, lazy=False)
        self._latency = sources
        self._oracle = None

    @property
    def oracle(self) -> CostOracle:
        if self._oracle is None:
            if self._latency is None:
                if any(not d.csv for d in self.devices):
                    raise RuntimeError("call use_tables() first")
                self.use_tables({})
            self._oracle = CostOracle(self.space, self.task, self._latency or {}, self.budgets, self.objectives)
        return self._oracle

    # -- estimator ---------------------------------------------------------------------------
    @property
    def estimator(self):  # noqa: ANN201 - Estimator; imported lazily (torch)
        if self._estimator is None and self.needs_estimator:
            from edgenas.estimators.base import estimator_from_config

            est = estimator_from_config(dict(self.config["estimator"]), self.space, self.task)
            self._use_feasible_reference(est)
            self._estimator = est
        return self._estimator

    def _use_feasible_reference(self, est: Any) -> None:
        """Composite estimators compare a spec with a reference sample; in a search the fair reference
        is the candidates that meet the budgets, not the whole space. A filter also compares each
        candidate only with reference candidates of similar cost (the cheap objectives, in logs):
        otherwise a size-biased proxy (synflow grows with parameters) would filter out every small
        candidate, i.e. the fast end of the front."""
        if getattr(est, "pool", None) != "reference" or not hasattr(est, "reference_pool"):
            return
        seed = int(self.config["estimator"].get("seed", 0))
        cheap = [f.name for f in self.objectives if f.cheap]
        n = max(int(est.reference), STRATIFIED_REFERENCE if cheap and hasattr(est, "stratify") else 0)
        est.reference_pool = self.oracle.sample_feasible(n, random.Random(seed))
        if cheap and hasattr(est, "stratify"):
            oracle = self.oracle
            est.stratify = lambda spec: [math.log(max(oracle.record(spec)[f], 1e-12)) for f in cheap]

    # -- persistence -------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(self.config, indent=1, sort_keys=True)


def load_job_config(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise EdgenasError(f"{str(p)!r} not found") from None
    except json.JSONDecodeError as exc:
        raise EdgenasError(f"{str(p)!r} is not valid JSON: {exc.msg}") from None
