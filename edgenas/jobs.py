"""Jobs: the one typed entrance to edgenas. A TOML job file, the CLI's flags and Python code all build a
:class:`JobConfig`; :func:`run_job` runs it.

A job file names the stages of a job, one table each; unknown tables or keys, and values of the wrong
type, are errors (a typo must not silently fall back to a default)::

    [space]                 # which space, and its constructor options
    name = "tiny"
    options = { widths = [0.5, 0.75, 1.0] }

    [task]                  # what the networks are built for
    num_classes = 10
    in_channels = 1

    [describe]              # cost a sample of the space (the job when there is no [search])
    random = 12
    seed = 0

    [device]                # latency from device tables (a local device measures missing entries)
    name = "local-cpu-ort"

    [estimator]             # an accuracy estimator (see `edgenas estimators`)
    name = "synflow"

    [search]                # a multi-objective search (see `edgenas search --help`)
    objectives = ["accuracy", "latency_ms"]
    budgets = ["latency_ms<=1.5", "peak_ram_bytes<=64KiB"]
    sampler = "frontier"
    trials = 60

    [export]                # then export the front as verified files + model cards
    formats = ["onnx", "tflite-int8", "tflm"]
    train_epochs = 10

Paths: inputs (``[describe] archs``, ``[device] latency_csv`` / ``devices_dir``, ``[estimator]``
``dataset`` / ``weights`` and the ``path`` / ``data`` options, ``[export] dataset``) are relative to
the job file; outputs (``[describe] csv``, ``[search] out``, ``[export] out``) to the working directory.

Python::

    from edgenas.jobs import JobConfig, run_job
    cfg = JobConfig.from_toml("examples/demo.toml").with_overrides(search={"trials": 20})
    result = run_job(cfg)          # JobResult: .describe / .search / .export
"""

from __future__ import annotations

import dataclasses
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgenas.errors import EdgenasError
from edgenas.names import check_name
from edgenas.options import _describe, _try

if TYPE_CHECKING:
    from edgenas.estimators.base import Estimator
    from edgenas.exporters.pipeline import ExportResult
    from edgenas.search.run import SearchResult
    from edgenas.spaces import ArchSpec, SearchSpace, Task
    from edgenas.supernet.run import SupernetResult


class ConfigError(EdgenasError):
    """A bad value in a job: which table and key, and what is wrong with it.

    The CLI rewrites it to name the flag that set the value (``--trials: must be >= 1, got 0``); a job
    file's error names the file (``config job.toml: [search] trials: must be >= 1, got 0``)."""

    def __init__(self, table: str, key: str | None, problem: str, origin: str | None = None) -> None:
        self.table = table
        self.key = key
        self.problem = problem
        self.origin = origin
        super().__init__(self.text())

    def text(self) -> str:
        where = f"[{self.table}]" + (f" {self.key}" if self.key else "")
        return (f"{self.origin}: " if self.origin else "") + f"{where}: {self.problem}"

    def located(self, origin: str) -> ConfigError:
        return ConfigError(self.table, self.key, self.problem, origin)


def _fail(table: str, key: str | None, problem: str) -> typing.NoReturn:
    raise ConfigError(table, key, problem)


def _positive(table: str, key: str, value: float | None, minimum: float = 1, strict: bool = False) -> None:
    if value is None:
        return
    if (value <= minimum) if strict else (value < minimum):
        _fail(table, key, f"must be {'>' if strict else '>='} {minimum:g}, got {value!r}")


def _is_builtin_dataset(value: str) -> bool:
    from edgenas.datasets import BUILTIN_DATASETS

    return value.partition(":")[0] in BUILTIN_DATASETS


def _device_name(table: str, value: Any) -> str | None:
    """A torch device name, normalised (None stays None); a misspelt one is a ConfigError."""
    if value is None:
        return None
    from edgenas.torchdevice import DEVICE_CHOICES, check_device_name

    try:
        return check_device_name(value)
    except EdgenasError:
        _fail(table, "torch_device", f"must be one of {DEVICE_CHOICES}, got {value!r}")


def resolve_input(value: str | None, base_dir: Path | None) -> str | None:
    """The one path rule: an input path relative to the job file's folder (``base_dir``); absolute paths,
    ``~`` paths and built-in dataset names (``digits``, ``synthetic:n=..``) are kept as they are."""
    if value is None or base_dir is None or not value:
        return value
    if _is_builtin_dataset(value):
        return value
    p = Path(value).expanduser()
    return str(p) if p.is_absolute() else str((base_dir / p).resolve())


# -- the tables ------------------------------------------------------------------------------------
@dataclass
class SpaceConfig:
    """``[space]``: a registered search space and its constructor options."""

    TABLE: ClassVar[str] = "space"
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            check_name(self.name, "space")
        except EdgenasError as exc:
            _fail("space", "name", str(exc))

    def build(self) -> SearchSpace:
        from edgenas.spaces import get_space

        return get_space(self.name, **self.options)


@dataclass
class TaskConfig:
    """``[task]``: what the networks are built for (``None``: the space's default)."""

    TABLE: ClassVar[str] = "task"
    num_classes: int | None = None
    in_channels: int | None = None
    resolution: int | None = None

    def __post_init__(self) -> None:
        for key in ("num_classes", "in_channels", "resolution"):
            _positive("task", key, getattr(self, key))

    def task(self) -> Task:
        from edgenas.spaces import Task

        return Task(num_classes=self.num_classes, in_channels=self.in_channels or 3, resolution=self.resolution)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class DescribeConfig:
    """``[describe]``: cost (and latency and score, with [device] / [estimator]) of a sample of the space,
    or of the archs in a file."""

    TABLE: ClassVar[str] = "describe"
    INPUTS: ClassVar[tuple[str, ...]] = ("archs",)
    random: int = 10
    seed: int = 0
    archs: str | None = None
    csv: str | None = None

    def __post_init__(self) -> None:
        _positive("describe", "random", self.random)


@dataclass
class DeviceConfig:
    """``[device]``: where latency comes from — device tables (``name``, or several ``names``), and/or a
    CSV of measured whole-network latencies (``latency_csv`` + ``latency_column``)."""

    TABLE: ClassVar[str] = "device"
    INPUTS: ClassVar[tuple[str, ...]] = ("devices_dir", "latency_csv")
    name: str | None = None
    names: list[str] = field(default_factory=list)
    devices_dir: str | None = None
    latency_csv: str | None = None
    latency_column: str | None = None

    def __post_init__(self) -> None:
        for n in self.device_names():
            try:
                check_name(n, "device")
            except EdgenasError as exc:
                _fail("device", "names" if n in self.names else "name", str(exc))
        if self.latency_csv and not self.latency_column:
            _fail("device", "latency_column", "latency_csv needs latency_column (the column of milliseconds)")
        if self.latency_column and not self.latency_csv:
            _fail("device", "latency_csv", "latency_column needs latency_csv (the file of measured latencies)")
        sources = [s["name"] for s in self.sources()]
        dup = sorted({n for n in sources if sources.count(n) > 1})
        if dup:
            _fail("device", "names", f"device(s) listed twice: {', '.join(dup)}")

    def device_names(self) -> list[str]:
        return [*self.names, *([self.name] if self.name else [])]

    def sources(self) -> list[dict[str, str]]:
        """The latency sources as the search stores them: ``{"name"}`` per device, and ``{"name",
        "csv", "column"}`` for measured latencies (named after the column)."""
        out = [{"name": n} for n in self.device_names()]
        if self.latency_csv and self.latency_column:
            out.append({"name": self.latency_column, "csv": str(self.latency_csv), "column": self.latency_column})
        return out


@dataclass
class EstimatorConfig:
    """``[estimator]``: a registered estimator, its seed, dataset, weights and options. A chain
    ``CHEAP>EXPENSIVE`` is the ``filter`` estimator (see :meth:`chain`)."""

    TABLE: ClassVar[str] = "estimator"
    INPUTS: ClassVar[tuple[str, ...]] = ("dataset", "weights")
    OPTION_INPUTS: ClassVar[tuple[str, ...]] = ("dataset", "weights", "path", "data")
    name: str
    seed: int = 0
    dataset: str | None = None
    weights: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    torch_device: str | None = None
    """Where estimators that train do so (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``); None: their
    own default (``auto``). Estimators that do not train ignore it."""

    def __post_init__(self) -> None:
        if not self.name.strip():
            _fail("estimator", "name", "is empty; e.g. synflow, train, or a chain synflow>train")
        self.torch_device = _device_name("estimator", self.torch_device)
        if self.torch_device is not None and "torch_device" in self.options:
            _fail("estimator", "torch_device", "given both as a key and in options")
        for key in ("dataset", "weights"):
            if getattr(self, key) is not None and key in self.options:
                _fail("estimator", key, "given both as a key and in options")

    @classmethod
    def chain(cls, name: str, options: dict[str, Any] | None = None, keep: float | None = None, **kw: Any
              ) -> EstimatorConfig:
        """``name`` may be a chain ``CHEAP>EXPENSIVE``: the ``filter`` estimator, whose ``options`` go to
        the expensive member (``keep``/``pool``/``reference`` to the filter); ``keep`` is the fraction the
        cheap stage passes on (default 0.25)."""
        options = dict(options or {})
        if ">" not in name:
            if keep is not None:
                _fail("estimator", "keep", "applies to an estimator chain CHEAP>EXPENSIVE")
            return cls(name=name.strip(), options=options, **kw)
        cheap, _, expensive = (x.strip() for x in name.partition(">"))
        if not cheap or not expensive or ">" in expensive:
            _fail("estimator", "name", f"{name!r}: a chain is CHEAP>EXPENSIVE, e.g. synflow>train")
        own = {k: options.pop(k) for k in ("keep", "pool", "reference") if k in options}
        if keep is not None:
            own["keep"] = keep
        own.setdefault("keep", 0.25)
        opts: dict[str, Any] = {"cheap": cheap, "expensive": expensive, **own}
        if options:
            opts["expensive_options"] = options
        return cls(name="filter", options=opts, **kw)

    def label(self) -> str:
        """How the front table names the accuracy's source (``synflow>train (keep 0.25)``)."""
        if self.name == "filter":
            o = self.options
            return f"{o.get('cheap', 'synflow')}>{o.get('expensive', 'train')} (keep {o.get('keep', 0.25)})"
        return self.name

    def build(self, space: SearchSpace, task: Task | None = None) -> Estimator:
        from edgenas.estimators.base import estimator_options, get_estimator

        options = dict(self.options)
        for key in ("dataset", "weights"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        if self.torch_device is not None and "torch_device" in estimator_options(self.name):
            options["torch_device"] = self.torch_device
        return get_estimator(self.name, space, task, seed=self.seed, **options)

    def resolve_paths(self, base_dir: Path | None) -> None:
        self.dataset = resolve_input(self.dataset, base_dir)
        self.weights = resolve_input(self.weights, base_dir)
        for key in self.OPTION_INPUTS:
            if isinstance(self.options.get(key), str):
                self.options[key] = resolve_input(self.options[key], base_dir)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "seed": self.seed}
        for key in ("dataset", "weights", "torch_device"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.options:
            out["options"] = dict(self.options)
        return out


PRECISIONS = ("int8", "fp32")
DEFAULT_SAMPLER = "nsga2"


@dataclass
class SearchConfig:
    """``[search]``: objectives, budgets, sampler, seed, when to stop, workers, storage, run folder.

    ``objectives`` None means the default (``accuracy`` and ``latency_ms`` with a device, else
    ``accuracy`` and ``macs``). ``reference`` gives hypervolume reference values by field name."""

    TABLE: ClassVar[str] = "search"
    objectives: list[str] | None = None
    budgets: list[str] = field(default_factory=list)
    sampler: str = DEFAULT_SAMPLER
    sampler_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    trials: int | None = None
    timeout: float | None = None
    workers: int = 1
    storage: str | None = None
    study: str | None = None
    precision: str = "int8"
    reference: dict[str, float] = field(default_factory=dict)
    out: str | None = None

    def __post_init__(self) -> None:
        if self.objectives is not None:
            self.objectives = [o.strip() for o in self.objectives]
            if not self.objectives or not all(self.objectives):
                _fail("search", "objectives", "needs at least one field name, e.g. accuracy,latency_ms")
            dup = sorted({o for o in self.objectives if self.objectives.count(o) > 1})
            if dup:
                _fail("search", "objectives", f"names {', '.join(dup)} twice")
        self.budgets = [b.strip() for b in self.budgets]
        if not all(self.budgets):
            _fail("search", "budgets", "has an empty budget; write FIELD<=VALUE, e.g. latency_ms<=2.5")
        if not self.sampler.strip():
            _fail("search", "sampler", "is empty; see 'edgenas samplers'")
        _positive("search", "trials", self.trials)
        _positive("search", "timeout", self.timeout, 0, strict=True)
        _positive("search", "workers", self.workers)
        if self.precision not in PRECISIONS:
            _fail("search", "precision", f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.study is not None:
            try:
                check_name(self.study, "study")
            except EdgenasError as exc:
                _fail("search", "study", str(exc))
        if self.storage is not None and not self.storage.strip():
            _fail("search", "storage", "is empty; give an Optuna URL or a .journal path")
        if self.out is not None and not str(self.out).strip():
            _fail("search", "out", "is empty; give a run folder")

    def resolved(self) -> dict[str, Any]:
        """The search table as the run stores it (``out`` is where it runs, not part of the job)."""
        d = dataclasses.asdict(self)
        d.pop("out")
        return d


@dataclass
class ExportConfig:
    """``[export]``: after the search, export its front (or chosen trials) as verified files."""

    TABLE: ClassVar[str] = "export"
    INPUTS: ClassVar[tuple[str, ...]] = ("dataset",)
    formats: list[str] = field(default_factory=lambda: ["onnx", "tflite", "tflite-int8"])
    train_epochs: int = 10
    trials: str | list[int] = "pareto"
    out: str | None = None
    nhwc: bool = False
    float_io: bool = False
    seed: int = 0
    threads: int = 1
    dataset: str | None = None
    opset: int = 21
    torch_device: str = "auto"
    """Where the final training runs (``auto``: a GPU when there is one, else the CPU)."""
    init: str | None = None
    """Where the models' weights start: ``supernet:PATH`` (a supernet checkpoint; ``supernet`` alone in a
    job with a ``[supernet]`` table: that one), then fine-tuned ``train_epochs`` (0: exported as inherited)."""
    int8: str = "minmax"
    """How the int8 files are made: minmax | percentile | mse | mixed16 | qat (docs/export.md)."""
    int8_sensitivity: bool = False
    """Rank the ops by their int8 sensitivity on the int8 file's card."""
    int8_bias_correction: bool = False
    """Correct biases for the int8 weight rounding's mean shift before quantizing (docs/export.md)."""
    qat_epochs: int = 2
    """Fine-tuning epochs of ``int8 = "qat"``."""

    def __post_init__(self) -> None:
        from edgenas.exporters.int8_options import INT8_MODES

        self.torch_device = _device_name("export", self.torch_device) or "auto"
        if self.int8 not in INT8_MODES:
            _fail("export", "int8", f"must be one of {', '.join(INT8_MODES)}, got {self.int8!r}")
        _positive("export", "qat_epochs", self.qat_epochs)
        if self.init is not None:
            self.init = self.init.strip()
            if not (self.init == "supernet" or (self.init.startswith("supernet:") and self.init[9:].strip())):
                _fail("export", "init", f"takes supernet:PATH (a checkpoint of 'edgenas supernet train'), got "
                                        f"{self.init!r}")
        self.formats = list(dict.fromkeys(f.strip() for f in self.formats))
        if not self.formats or not all(self.formats):
            _fail("export", "formats", "needs at least one format, e.g. onnx,tflite-int8")
        self.trials = parse_trials(self.trials)
        _positive("export", "train_epochs", self.train_epochs, 0)
        _positive("export", "threads", self.threads)
        if not 13 <= self.opset <= 23:
            _fail("export", "opset", f"must be an ONNX opset from 13 to 23, got {self.opset}")

    def check_formats(self) -> None:
        """Every format is a registered exporter whose optional packages are installed."""
        from edgenas.exporters import exporter_names

        known = exporter_names()
        bad = [f for f in self.formats if f not in known]
        if bad:
            _fail("export", "formats", f"unknown format(s) {', '.join(bad)}; choose from {', '.join(known)}")
        from edgenas.exporters import EXPORTERS

        for f in self.formats:
            EXPORTERS.get(f).check_available()

    def supernet_path(self) -> str | None:
        """The supernet checkpoint the models inherit from (None: they are trained from scratch)."""
        if self.init is None:
            return None
        if self.init == "supernet":
            raise ConfigError("export", "init", "'supernet' names the job's [supernet] checkpoint, but the job has "
                                                "none; write init = 'supernet:PATH'")
        return self.init.split(":", 1)[1].strip()

    def as_flags(self) -> str:
        """The ``edgenas export`` flags that reproduce this table (recorded on model cards)."""
        trials = self.trials if isinstance(self.trials, str) else ",".join(map(str, self.trials))
        flags = [f"--formats {','.join(self.formats)}", f"--train-epochs {self.train_epochs}", f"--trials {trials}",
                 f"--seed {self.seed}"]
        if self.out:
            flags.append(f"--out {self.out}")
        if self.dataset:
            flags.append(f"--dataset {self.dataset}")
        if self.opset != 21:
            flags.append(f"--opset {self.opset}")
        if self.torch_device != "auto":
            flags.append(f"--torch-device {self.torch_device}")
        if self.init:
            flags.append(f"--init {self.init}")
        if self.int8 != "minmax":
            flags.append(f"--int8 {self.int8}")
        if self.qat_epochs != 2:
            flags.append(f"--qat-epochs {self.qat_epochs}")
        return " ".join(flags + ["--nhwc"] * self.nhwc + ["--float-io"] * self.float_io
                        + ["--int8-sensitivity"] * self.int8_sensitivity
                        + ["--int8-bias-correction"] * self.int8_bias_correction)


def parse_trials(value: str | Sequence[int]) -> str | list[int]:
    """``"pareto"``, ``"pareto:N"`` (N models spread along the front), or trial numbers (``"3,17"`` or
    ``[3, 17]``), each once."""
    if isinstance(value, str):
        text = value.strip()
        if text == "pareto":
            return "pareto"
        if text.startswith("pareto:"):
            n = text.split(":", 1)[1].strip()
            if not n.isdigit() or int(n) < 1:
                _fail("export", "trials", f"pareto:N takes a whole number of models >= 1, got {value!r}")
            return f"pareto:{int(n)}"
        parts = [p.strip() for p in text.split(",")]
        if not text or not all(parts):
            _fail("export", "trials", f"takes 'pareto', 'pareto:N' or trial numbers like 3,17; got {value!r}")
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            _fail("export", "trials", f"takes 'pareto', 'pareto:N' or trial numbers like 3,17; got {value!r}")
    else:
        numbers = list(value)
        if not numbers:
            _fail("export", "trials", "is empty; give 'pareto' or trial numbers like [3, 17]")
    if any(n < 0 for n in numbers):
        _fail("export", "trials", f"trial numbers are >= 0, got {numbers}")
    dup = sorted({n for n in numbers if numbers.count(n) > 1})
    if dup:
        _fail("export", "trials", f"lists trial(s) {', '.join(map(str, dup))} twice; each model is exported once")
    return numbers


SUPERNET_OPTIONS = ("batch_size", "lr", "momentum", "weight_decay", "nesterov", "label_smoothing", "n_random",
                    "distill", "temperature", "train_samples", "smallest_prob")
"""The training hyper-parameters ``[supernet] options`` may set (see :func:`edgenas.supernet.train_supernet`)."""


@dataclass
class SupernetConfig:
    """``[supernet]``: a weight-sharing supernet of the job's space, trained on ``dataset`` for ``epochs``
    into the checkpoint ``out`` before the search (an estimator ``supernet`` without weights uses it).
    With ``resume`` (default) an existing checkpoint of the same settings is continued, or reused when
    complete; otherwise an existing ``out`` is an error (nothing is overwritten)."""

    TABLE: ClassVar[str] = "supernet"
    INPUTS: ClassVar[tuple[str, ...]] = ("dataset", "init")
    out: str
    dataset: str | None = None
    epochs: int = 20
    seed: int = 0
    resume: bool = True
    torch_device: str = "auto"
    kernel_transform: bool = False
    init: str | None = None
    """A supernet checkpoint to start from (e.g. ``edgenas supernet import --format ofa``)."""
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not str(self.out).strip():
            _fail("supernet", "out", "is empty; give the checkpoint file to write, e.g. runs/sn.pt")
        _positive("supernet", "epochs", self.epochs)
        self.torch_device = _device_name("supernet", self.torch_device) or "auto"
        bad = sorted(set(self.options) - set(SUPERNET_OPTIONS))
        if bad:
            _fail("supernet", "options", f"unknown option(s) {', '.join(bad)}; known: {', '.join(SUPERNET_OPTIONS)}")


@dataclass
class ExplainConfig:
    """``[explain]``: after the search, write ``explain.md`` (choice importances, main effects, trade-offs;
    :mod:`edgenas.explain`) into the run folder, before any export."""

    TABLE: ClassVar[str] = "explain"
    INPUTS: ClassVar[tuple[str, ...]] = ()
    samples: int = 64
    top: int = 3
    seed: int = 0
    plots: bool = True

    def __post_init__(self) -> None:
        _positive("explain", "samples", self.samples, minimum=8)
        _positive("explain", "top", self.top)


TABLES: dict[str, type] = {"space": SpaceConfig, "task": TaskConfig, "describe": DescribeConfig,
                           "device": DeviceConfig, "estimator": EstimatorConfig, "supernet": SupernetConfig,
                           "search": SearchConfig, "explain": ExplainConfig, "export": ExportConfig}
"""Job-file table name -> its dataclass (the ``[device]`` table fills :attr:`JobConfig.device`)."""


def table_from_dict(cls: type, body: Any, strict: bool = True) -> Any:
    """Build a table's dataclass from a dict: unknown keys, missing required keys and values of the
    wrong type are :class:`ConfigError`s naming the table and key. ``strict``: typed input (TOML,
    JSON, Python); otherwise text is converted (command-line values)."""
    table = cls.TABLE
    if not isinstance(body, dict):
        _fail(table, None, f"must be a table, got {type(body).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.init]
    values = {}
    for key, value in body.items():
        if key not in names:
            _fail(table, key, f"unknown key; known: {', '.join(names)}")
        ok, out = _try(value, hints[key], strict)
        if not ok:
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            _fail(table, key, f"must be {_describe(hints[key])}, got {shown}")
        values[key] = out
    required = [f.name for f in fields(cls) if f.init and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    for key in required:
        if key not in values:
            _fail(table, key, "is required")
    return cls(**values)


def _table_dict(obj: Any) -> dict[str, Any]:
    """A table's non-default values, as a job file would hold them (None dropped)."""
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if v is None or v == default:
            continue
        out[f.name] = v
    return out


# -- the job -----------------------------------------------------------------------------------------
@dataclass
class JobConfig:
    """A whole job: the space and task, and the stages to run. ``source`` is the job file it came from
    (for messages; relative input paths were resolved against its folder when it was read)."""

    space: SpaceConfig
    task: TaskConfig = field(default_factory=TaskConfig)
    describe: DescribeConfig | None = None
    device: DeviceConfig | None = None
    estimator: EstimatorConfig | None = None
    search: SearchConfig | None = None
    export: ExportConfig | None = None
    supernet: SupernetConfig | None = None
    explain: ExplainConfig | None = None
    source: Path | None = None

    def __post_init__(self) -> None:
        if self.explain is not None and self.search is None:
            _fail("explain", None, "explains a search and needs a [search] table; to explain a finished run use "
                                   "'edgenas explain RUN_DIR'")
        if self.export is not None and self.search is None:
            _fail("export", None, "exports a search's front and needs a [search] table; to export one arch use "
                                  "'edgenas export --space S --arch A --out DIR'")

    # -- reading -------------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path) -> JobConfig:
        """Read a job file; every problem is one line naming the file, the table and the key."""
        from edgenas.fileio import read_toml

        p = Path(path)
        data = read_toml(p, "config")
        return cls.from_dict(data, origin=f"config {p.name}", base_dir=p.parent.resolve(), source=p)

    @classmethod
    def from_dict(cls, data: Any, origin: str | None = None, base_dir: Path | None = None,
                  source: Path | None = None, strict: bool = True) -> JobConfig:
        """A job from a job file's tables (a dict); relative input paths are resolved against ``base_dir``."""
        try:
            if not isinstance(data, dict):
                raise ConfigError("job", None, "must be a table of tables ([space], [search], ...)")
            for name in data:
                if name not in TABLES:
                    raise ConfigError(str(name), None, f"unknown table; known: {', '.join(TABLES)}")
            if "space" not in data:
                raise ConfigError("space", "name", "is required: every job names its search space")
            parts = {name: table_from_dict(TABLES[name], body, strict) for name, body in data.items()}
            job = cls(**parts, source=source)
            job._resolve_inputs(base_dir)
            return job
        except ConfigError as exc:
            raise exc.located(origin) if origin else exc from None

    def _resolve_inputs(self, base_dir: Path | None) -> None:
        if base_dir is None:
            return
        for part in (self.describe, self.device, self.export, self.supernet):
            if part is not None:
                for key in part.INPUTS:
                    setattr(part, key, resolve_input(getattr(part, key), base_dir))
        if self.export is not None and self.export.init and self.export.init.startswith("supernet:"):
            self.export.init = "supernet:" + str(resolve_input(self.export.init[9:].strip(), base_dir))
        if self.estimator is not None:
            self.estimator.resolve_paths(base_dir)

    @classmethod
    def from_resolved(cls, resolved: dict[str, Any], origin: str = "the search's stored job") -> JobConfig:
        """The job a search stored (``config.json``, the study's ``edgenas:config``): see :meth:`resolved`."""
        if not isinstance(resolved, dict) or not isinstance(resolved.get("space"), dict):
            raise EdgenasError(f"{origin} is not an edgenas job (no space)")
        devices = resolved.get("devices") or []
        if not isinstance(devices, list) or not all(isinstance(d, dict) and "name" in d for d in devices):
            raise EdgenasError(f"{origin} has a malformed devices list")
        names = [d["name"] for d in devices if not d.get("csv")]
        csvs = [d for d in devices if d.get("csv")]
        data: dict[str, Any] = {"space": resolved["space"], "task": resolved.get("task") or {}}
        if names or csvs:
            data["device"] = {"names": names}
            if csvs:
                data["device"].update({"latency_csv": csvs[0]["csv"], "latency_column": csvs[0].get("column")})
        if resolved.get("estimator"):
            data["estimator"] = resolved["estimator"]
        data["search"] = {k: v for k, v in (resolved.get("search") or {}).items() if v is not None}
        return cls.from_dict(data, origin=origin)

    # -- writing -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The job as job-file tables (non-default values only); ``from_dict(to_dict())`` round-trips."""
        out: dict[str, Any] = {"space": {"name": self.space.name, **({"options": self.space.options}
                                                                      if self.space.options else {})}}
        for name in ("task", "describe", "device", "estimator", "supernet", "search", "explain", "export"):
            part = getattr(self, name)
            if part is not None:
                d = _table_dict(part)
                if name == "estimator":
                    d["name"] = part.name
                if d or name != "task":
                    out[name] = d
        return out

    def to_toml(self) -> str:
        from edgenas.fileio import toml_text

        return toml_text(self.to_dict())

    def resolved(self) -> dict[str, Any]:
        """What a search stores and every worker rebuilds the job from: space, task, latency sources,
        estimator and search (JSON; no machine-local paths but input files)."""
        out: dict[str, Any] = {"space": {"name": self.space.name, "options": dict(self.space.options)},
                               "task": self.task.as_dict(),
                               "devices": self.device.sources() if self.device else []}
        if self.estimator is not None:
            out["estimator"] = self.estimator.as_dict()
        out["search"] = (self.search or SearchConfig()).resolved()
        return out

    # -- changing ------------------------------------------------------------------------------
    def with_overrides(self, strict: bool = False, **tables: dict[str, Any] | Any) -> JobConfig:
        """A copy with some values replaced, table by table: ``with_overrides(search={"trials": 20},
        space={"options": {...}})``. ``None`` values are ignored (an unset flag), so the CLI passes every
        flag as it is. A table the job lacks is created from the given values. A whole table may be
        given as its dataclass (or ``None`` to drop it, for ``describe``/``export`` only via the dataclass
        API). Values are checked exactly as a job file's; with ``strict=False`` text is converted."""
        parts = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, update in tables.items():
            if name not in TABLES:
                raise ConfigError(name, None, f"unknown table; known: {', '.join(TABLES)}")
            if update is None:
                continue
            if dataclasses.is_dataclass(update):
                parts[name] = update
                continue
            changes = {k: v for k, v in dict(update).items() if v is not None}
            if not changes:
                continue
            current = parts[name]
            base = {f.name: getattr(current, f.name) for f in fields(current)} if current is not None else {}
            merged = {**base, **changes}
            parts[name] = table_from_dict(TABLES[name], merged, strict=strict)
        return JobConfig(**parts)

    def with_supernet_weights(self, path: str | Path) -> JobConfig:
        """The job with its ``supernet`` estimator (alone or a chain's member) reading ``path`` where it
        names no weights of its own, and ``[export] init = "supernet"`` naming it: a job's ``[supernet]``
        is what its search and export inherit from."""
        job = self
        if self.export is not None and self.export.init == "supernet":
            job = dataclasses.replace(self, export=dataclasses.replace(self.export, init=f"supernet:{path}"))
        return job._estimator_with_weights(path)

    def _estimator_with_weights(self, path: str | Path) -> JobConfig:
        est = self.estimator
        if est is None:
            return self
        if est.name == "supernet":
            if est.weights or est.options.get("weights"):
                return self
            return dataclasses.replace(self, estimator=dataclasses.replace(est, weights=str(path)))
        options = dict(est.options)
        changed = False
        for member, key in (("cheap", "cheap_options"), ("expensive", "expensive_options")):
            if options.get(member) == "supernet" and not (options.get(key) or {}).get("weights"):
                options[key] = {**(options.get(key) or {}), "weights": str(path)}
                changed = True
        return dataclasses.replace(self, estimator=dataclasses.replace(est, options=options)) if changed else self

    # -- checks --------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.source.name if self.source is not None else "job"

    def kind(self) -> str:
        """``search`` (then ``export`` when it has one), ``supernet`` (a job that only trains one) or
        ``describe``."""
        if self.search is not None:
            return "search"
        return "supernet" if self.supernet is not None else "describe"


# -- running ----------------------------------------------------------------------------------------
@dataclass
class DescribeResult:
    """The records of a describe job: one per spec, cost fields (+ ``latency_ms``, ``score``)."""

    space: SearchSpace
    task: Task
    specs: list[ArchSpec]
    records: list[dict[str, Any]]
    columns: list[str]


@dataclass
class JobResult:
    """What :func:`run_job` did: the describe records, or the search (and the export of its front)."""

    config: JobConfig
    describe: DescribeResult | None = None
    search: SearchResult | None = None
    export: ExportResult | None = None
    supernet: SupernetResult | None = None
    explain: list[Path] | None = None
    """The files ``[explain]`` wrote."""

    @property
    def ok(self) -> bool:
        """False when an export ran and some model or format failed (the others are still written)."""
        return self.export is None or self.export.ok


def default_run_dir(space: str) -> Path:
    return Path(f"runs/{space}-{time.strftime('%Y%m%d-%H%M%S')}")


def run_job(cfg: JobConfig, *, quiet: bool = False, progress: bool = True, verbose: bool = False,
            command: list[str] | None = None, say: Callable[[str], None] | None = None,
            on_search: Callable[[SearchResult], None] | None = None) -> JobResult:
    """Run a job: a search (then the export of its front when the job has ``[export]``), else a describe.

    Everything the job can check without running (the space and its options, budgets, the sampler and
    its options, the estimator's name, the export formats) is checked before any work starts. Progress
    goes to stderr (``quiet`` silences it); results are returned, not printed. ``on_search`` is called
    with the search's result as soon as it ends (before the export starts).
    """
    supernet = None
    devices_dir = cfg.device.devices_dir if cfg.device else None
    run_dir = Path(cfg.search.out) if cfg.search and cfg.search.out else default_run_dir(cfg.space.name)
    if cfg.supernet is not None:
        from edgenas.supernet.run import run_supernet

        cfg.space.build()  # a bad space or option: one line, before the training
        if cfg.search is not None:
            from edgenas.search.run import check_new_search

            check_new_search(cfg, run_dir, devices_dir)
        supernet = run_supernet(cfg, progress=progress and not quiet, say=say if not quiet else (lambda m: None))
        cfg = cfg.with_supernet_weights(supernet.path)
    if cfg.search is None:
        if cfg.supernet is not None:
            return JobResult(cfg, supernet=supernet)
        return JobResult(cfg, describe=describe(cfg))
    from edgenas.search.run import run_search

    if cfg.export is not None:
        cfg.export.check_formats()
        if cfg.export.train_epochs < 1 and not cfg.export.init:
            raise ConfigError("export", "train_epochs", "must be >= 1: the front's models are trained before "
                                                          "export (0 only with init = 'supernet...')", cfg.name)
        if cfg.export.init == "supernet" and cfg.supernet is None:
            try:
                cfg.export.supernet_path()  # the one-line error, before the search
            except ConfigError as exc:
                raise exc.located(f"config {cfg.name}") from None
    result = run_search(cfg, run_dir, quiet=quiet, progress=progress, devices_dir=devices_dir,
                        command=command or ["edgenas", "run", str(cfg.source or "")])
    out = JobResult(cfg, search=result, supernet=supernet)
    if on_search is not None:
        on_search(result)
    if cfg.explain is not None:
        from edgenas.explain import ExplainJob, explain_run

        e = cfg.explain
        try:
            _, folder, written = explain_run(ExplainJob(str(run_dir), samples=e.samples, seed=e.seed, top=e.top,
                                                        plots=e.plots, devices_dir=devices_dir))
        except EdgenasError as exc:  # e.g. too few trials: the search's results stand, the export still runs
            (say or _stderr)(f"explain skipped: {exc}")
        else:
            out.explain = [folder / w for w in written]
            (say or _stderr)(f"explained the front: {folder / 'explain.md'}")
    if cfg.export is not None:
        from edgenas.exporters.pipeline import run_export

        (say or _stderr)(f"exporting the front of {run_dir}")
        out.export = run_export(cfg.export, run_dir=run_dir, devices_dir=devices_dir, verbose=verbose,
                                command=f"edgenas export {run_dir} {cfg.export.as_flags()}", say=say)
    return out


def _stderr(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)


DESCRIBE_DEFAULT = DescribeConfig()


def describe(cfg: JobConfig) -> DescribeResult:
    """Cost (and latency with ``[device]``, score with ``[estimator]``) of the job's sample or arch file."""
    from edgenas.archio import read_archs
    from edgenas.report import check_writable
    from edgenas.spaces.base import RECORD_FIELDS

    space = cfg.space.build()
    task = cfg.task.task()
    desc = cfg.describe or DESCRIBE_DEFAULT
    if desc.csv:
        check_writable(desc.csv)
    specs = read_archs(desc.archs, space) if desc.archs else space.sample(desc.random, desc.seed)
    records = [space.cost(s, task).as_record() for s in specs]
    columns = list(RECORD_FIELDS)
    dev = cfg.device
    if dev is not None and dev.device_names():
        from edgenas.latency import DeviceStore, LatencyPredictor

        names = dev.device_names()
        for name in names:
            pred = LatencyPredictor(space, name, DeviceStore(dev.devices_dir))
            col = "latency_ms" if len(names) == 1 else f"latency_ms@{name}"
            for rec, ms in zip(records, pred.predict_many(specs, task)):
                rec[col] = ms
            columns.append(col)
    if dev is not None and dev.latency_csv:
        from edgenas.latency.lookup import MeasuredLatency

        src = MeasuredLatency(space, dev.latency_csv, dev.latency_column or "latency_ms")
        for rec, ms in zip(records, src.predict_many(specs, task)):
            rec[src.name] = ms
        columns.append(src.name)
    if cfg.estimator is not None:
        est = cfg.estimator.build(space, task)
        for rec, score in zip(records, est.score_many(specs)):
            rec["score"] = score
        columns.append("score")
    return DescribeResult(space, task, specs, records, columns)


__all__ = ["ConfigError", "DescribeConfig", "DescribeResult", "DeviceConfig", "EstimatorConfig", "ExportConfig",
           "JobConfig", "JobResult", "SearchConfig", "SpaceConfig", "TaskConfig", "describe", "resolve_input",
           "run_job"]
