"""A search job: the typed job (:class:`~edgenas.jobs.JobConfig`) and everything built from it.

The job's resolved form (:meth:`~edgenas.jobs.JobConfig.resolved`: space, task, latency sources,
estimator, search) is written to the run folder and stored in the Optuna study, so a worker on another
machine rebuilds the identical job from the storage URL and study name alone. Latency tables are stored
in the study too (as they were when the search started): every worker predicts with the same table, and
no worker measures anything mid-search.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgenas.errors import EdgenasError
from edgenas.jobs import JobConfig, SearchConfig
from edgenas.search.fields import Budget, Field, parse_budget, resolve_field
from edgenas.search.oracle import CostOracle, LatencySource
from edgenas.spaces import SearchSpace, Task

if TYPE_CHECKING:
    from edgenas.estimators.base import Estimator

DEFAULT_OBJECTIVES = ("accuracy", "latency_ms")


@dataclass
class DeviceConfig:
    """A latency source: a device (its table from the store, or from the study) or a measured CSV."""

    name: str
    csv: str | None = None
    column: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in {"name": self.name, "csv": self.csv, "column": self.column}.items() if v is not None}


class SearchJob:
    """Everything a worker needs, built from a job (a :class:`JobConfig`, or its resolved dict as a run
    stores it). ``devices_dir`` is this machine's device store (not part of the job)."""

    def __init__(self, job: JobConfig | dict[str, Any], devices_dir: str | None = None) -> None:
        self.job = job if isinstance(job, JobConfig) else JobConfig.from_resolved(job)
        if self.job.search is None:
            self.job = self.job.with_overrides(search=SearchConfig())
        self.config: dict[str, Any] = self.job.resolved()
        """The resolved job (JSON): written to ``config.json`` and stored in the study."""
        self.devices_dir = devices_dir
        self.space: SearchSpace = self.job.space.build()
        self.task: Task = self.job.task.task()
        self.devices = [DeviceConfig(**d) for d in self.config["devices"]]
        names = self.device_names
        s = self.search
        objectives = s.objectives or (list(DEFAULT_OBJECTIVES) if names else ["accuracy", "macs"])
        self.objectives: list[Field] = [resolve_field(o, names, s.precision) for o in objectives]
        seen = [f.name for f in self.objectives]
        if len(set(seen)) != len(seen):
            raise EdgenasError(f"objectives name a field twice: {', '.join(seen)}")
        self.budgets: list[Budget] = [parse_budget(b, names, s.precision) for b in s.budgets]
        known = {f.name for f in self.objectives} | {b.field.name for b in self.budgets}
        for key in s.reference:
            f = resolve_field(key, names, s.precision)
            if f.name not in known:
                raise EdgenasError(f"reference {key!r} is neither an objective nor a budgeted field of this search")
        if self.needs_estimator and self.job.estimator is None:
            raise EdgenasError("objective 'accuracy' needs an estimator: pass --estimator (e.g. synflow, train) "
                               "or add an [estimator] table")
        self._score_int8_if_asked()
        self._trust_metrics_if_asked()
        self._check_sampler_models_it()
        self._latency: dict[str, LatencySource] | None = None
        self._oracle: CostOracle | None = None
        self._estimator: Estimator | None = None
        self._built: Estimator | None = None  # constructed, not yet joined to the search

    def _score_int8_if_asked(self) -> None:
        """An ``accuracy_int8`` objective or budget sets the estimator's ``precision = "int8"`` (stored in
        the run's resolved job); ``accuracy`` beside it, an estimator without that option, or one told
        ``precision = "fp32"`` is a one-line error (the estimator gives one score per candidate)."""
        import dataclasses

        from edgenas.search.fields import ACCURACY_INT8

        named = {f.name for f in self.objectives} | {b.field.name for b in self.budgets}
        est = self.job.estimator
        if ACCURACY_INT8 not in named or est is None:
            return
        if "accuracy" in named:
            raise EdgenasError("the search names both accuracy and accuracy_int8, but the estimator gives one score "
                               "per candidate; keep one of them")
        from edgenas.estimators.base import estimator_options

        chain = est.name == "filter"  # CHEAP>EXPENSIVE: the expensive member gives the score
        member = str(est.options.get("expensive", "train")) if chain else est.name
        opts = dict(est.options.get("expensive_options") or {}) if chain else dict(est.options)
        if "precision" not in estimator_options(member):
            raise EdgenasError(f"accuracy_int8 needs an estimator that scores simulated int8 models (train, supernet); "
                               f"{member!r} does not: use --estimator train or supernet, or the objective accuracy")
        if opts.get("precision", "int8") != "int8":
            raise EdgenasError(f"accuracy_int8 scores int8 models, but the estimator's precision option is "
                               f"{opts['precision']!r}; drop that option (or use the objective accuracy)")
        opts["precision"] = "int8"
        options = {**est.options, "expensive_options": opts} if chain else opts
        self.job = self.job.with_overrides(estimator=dataclasses.replace(est, options=options))
        self.config = self.job.resolved()

    def _trust_metrics_if_asked(self) -> None:
        """A trust field named as an objective or budget (``worst_class_accuracy``, ``calibration_error``,
        ``noisy_accuracy``) is added to the estimator's ``metrics`` option (a chain's expensive member's),
        stored in the run's resolved job. An estimator that cannot give it is a one-line error naming the
        estimators that can (those declaring it in ``trust_metrics``)."""
        import dataclasses

        from edgenas.search.fields import TRUST_FIELDS

        fields = [*self.objectives, *(b.field for b in self.budgets)]
        named = list(dict.fromkeys(f.name for f in fields if f.name in TRUST_FIELDS))
        est = self.job.estimator
        if not named or est is None:
            return
        from edgenas.estimators.base import estimator_class, estimator_names, estimator_options

        chain = est.name == "filter"  # CHEAP>EXPENSIVE: the expensive member scores (and measures) a candidate
        member = str(est.options.get("expensive", "train")) if chain else est.name
        opts = dict(est.options.get("expensive_options") or {}) if chain else dict(est.options)
        lacking = [n for n in named if n not in estimator_class(member).trust_metrics]
        if lacking:
            able = [n for n in estimator_names() if set(lacking) <= set(estimator_class(n).trust_metrics)]
            raise EdgenasError(f"{', '.join(lacking)} comes from the estimator's trust metrics, which {member!r} does "
                               f"not give; estimators that do: {', '.join(able) or 'none installed'} (or a chain "
                               f"CHEAP>EXPENSIVE ending in one, e.g. synflow>train)")
        given = opts.get("metrics", estimator_options(member).get("metrics", ()))
        current = [m.strip() for m in (given.split(",") if isinstance(given, str) else given) if m.strip()]
        opts["metrics"] = current + [n for n in named if n not in current]
        options = {**est.options, "expensive_options": opts} if chain else opts
        self.job = self.job.with_overrides(estimator=dataclasses.replace(est, options=options))
        self.config = self.job.resolved()

    def _check_sampler_models_it(self) -> None:
        """The ``frontier`` sampler models one maximised estimated objective (its GP predicts it; every
        other objective must be a cost known before evaluation): two estimated objectives, or a minimised
        one (``calibration_error``), are a one-line error pointing at the samplers that handle them."""
        estimated = [f for f in self.objectives if not f.cheap]
        if self.search.sampler == "frontier" and (len(estimated) > 1 or any(not f.maximize for f in estimated)):
            raise EdgenasError(f"sampler 'frontier' models one maximised estimated objective beside cost objectives; "
                               f"with {', '.join(f.name for f in estimated)} use nsga2, tpe or evolution (or put "
                               f"the others in budgets)")

    # -- views -------------------------------------------------------------------------------
    @property
    def search(self) -> SearchConfig:
        assert self.job.search is not None
        return self.job.search

    @property
    def reference(self) -> dict[str, float]:
        """Hypervolume reference values by field name (as the user gave them, aliases resolved)."""
        s = self.search
        return {resolve_field(k, self.device_names, s.precision).name: float(v) for k, v in s.reference.items()}

    @property
    def needs_estimator(self) -> bool:
        return any(not f.cheap for f in self.objectives) or any(not b.field.cheap for b in self.budgets)

    @property
    def directions(self) -> list[str]:
        return [f.direction for f in self.objectives]

    @property
    def device_names(self) -> list[str]:
        return [d.name for d in self.devices]

    @property
    def estimator_label(self) -> str:
        return self.job.estimator.label() if self.job.estimator is not None else ""

    def check(self) -> None:
        """Everything that can be checked before any work: the sampler and its options, the estimator's
        name (building it may load data or weights: that happens when the first trial needs it)."""
        from edgenas.options import coerce_options
        from edgenas.search.samplers.base import FACTORY_ARGS, sampler_entry

        entry = sampler_entry(self.search.sampler)
        coerce_options(entry.factory, dict(self.search.sampler_options), f"sampler {entry.name!r}",
                       skip=FACTORY_ARGS)
        if self.job.estimator is not None and self.needs_estimator:
            from edgenas.estimators.base import estimator_class

            estimator_class(self.job.estimator.name)

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
    def build_estimator(self) -> None:
        """Construct the estimator now, so that bad options, files or data fail before any output; it
        joins the search (:meth:`_join_search`, which needs the latency tables) when first used."""
        if self._built is None and self._estimator is None and self.needs_estimator:
            assert self.job.estimator is not None
            self._built = self.job.estimator.build(self.space, self.task)

    @property
    def estimator(self) -> Estimator | None:
        if self._estimator is None and self.needs_estimator:
            self.build_estimator()
            est, self._built = self._built, None
            assert est is not None
            self._join_search(est)
            self._estimator = est
        return self._estimator

    def _join_search(self, est: Estimator) -> None:
        """An estimator that takes part in the search (a :class:`SearchParticipant`: composites that
        compare a spec with a reference sample) gets the fair reference — the candidates that meet the
        budgets, not the whole space — and, for a filter, each candidate is compared only with reference
        candidates of similar cost (the cheap objectives, in logs): otherwise a size-biased proxy (synflow
        grows with parameters) would filter out every small candidate, i.e. the fast end of the front."""
        from edgenas.estimators.base import SearchParticipant

        if not isinstance(est, SearchParticipant):
            return
        cheap = [f.name for f in self.objectives if f.cheap]
        n = est.reference_size(stratified=bool(cheap))
        if n <= 0:
            return
        assert self.job.estimator is not None
        pool = self.oracle.sample_feasible(n, random.Random(self.job.estimator.seed))
        oracle = self.oracle
        stratify = (lambda spec: [math.log(max(oracle.record(spec)[f], 1e-12)) for f in cheap]) if cheap else None
        est.use_reference(pool, stratify)

    def screen(self) -> Any:
        """The estimator's cheap pass/fail test for samplers, when it offers one (else None)."""
        from edgenas.estimators.base import SearchParticipant

        est = self.estimator if self.needs_estimator else None
        return est.screen() if isinstance(est, SearchParticipant) else None

    # -- persistence -------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(self.config, indent=1, sort_keys=True)
