"""What a search can optimise and bound: objective fields, budgets, and their units.

A field is one number per candidate. Cost fields come from the exact cost model, ``latency_ms`` from a
device's latency table (``latency_ms@<device>`` names one of several devices), ``accuracy`` from the
estimator (``accuracy_int8``: the estimator's score of the candidate's simulated int8 quantization, what
an int8 file would reach: ``train`` and ``supernet`` with ``precision = "int8"``,
:mod:`edgenas.estimators.int8_sim`). All but ``accuracy`` / ``accuracy_int8`` are *cheap*: known before
any training, so budgets on them are checked before the estimator runs. The trust fields
``worst_class_accuracy``, ``noisy_accuracy`` (maximised) and ``calibration_error`` (minimised) come from
the same evaluation as the accuracy (the estimate's metrics, :mod:`edgenas.estimators.trust`): they are
not cheap either. ``peak_ram_bytes`` and
``size_bytes`` mean the deployment precision's variant (``[search] precision``, default int8, what
edge runtimes ship). ``arena_bytes_tflm`` is the TFLite Micro tensor arena the int8 model needs on a
microcontroller (``arena_bytes_tflm<=256KiB``). ``delegate_partitions`` / ``ops_off_delegate`` (the
precision's variant) are how LiteRT's XNNPACK delegate splits the file: ``delegate_partitions<=1``
keeps the whole model on the delegate.

Budgets read ``FIELD<=VALUE`` or ``FIELD>=VALUE`` with optional units: ``latency_ms<=2.5``,
``peak_ram_bytes<=64KiB``, ``macs<=30M``, ``accuracy>=0.9``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgenas.errors import EdgenasError

COST_FIELDS = ("macs", "params", "size_bytes_fp32", "size_bytes_int8", "peak_ram_bytes_fp32", "peak_ram_bytes_int8",
               "arena_bytes_tflm", "delegate_partitions_fp32", "delegate_partitions_int8", "ops_off_delegate_fp32",
               "ops_off_delegate_int8")
ALIASES = ("size_bytes", "peak_ram_bytes", "delegate_partitions", "ops_off_delegate")
PRECISIONS = ("int8", "fp32")
UNITS = {"macs": "", "params": "", "latency_ms": "ms", "accuracy": ""}
ACCURACY_INT8 = "accuracy_int8"
"""The estimator's score of the simulated int8 model (a field whose base is ``accuracy``)."""
TRUST_FIELDS: dict[str, bool] = {"worst_class_accuracy": True, "calibration_error": False, "noisy_accuracy": True}
"""The trust metrics a search can optimise or bound, and whether each is maximised (the names and
directions of :data:`edgenas.estimators.trust.MAXIMISED`, kept here so fields import no torch)."""
ESTIMATED = ("accuracy", *TRUST_FIELDS)
"""Bases of the fields the estimator gives (every other field is cheap)."""
for _f in COST_FIELDS:
    UNITS[_f] = "B" if "bytes" in _f else ""


@dataclass(frozen=True)
class Field:
    """One searchable number. ``name`` is what records, CSV columns and Optuna attributes use."""

    name: str
    base: str
    """``accuracy``, ``latency_ms`` or a cost field name."""
    maximize: bool
    device: str | None = None

    @property
    def cheap(self) -> bool:
        """Known before the estimator runs (costs and table latencies)."""
        return self.base not in ESTIMATED

    @property
    def unit(self) -> str:
        return UNITS.get(self.base, "")

    @property
    def direction(self) -> str:
        return "maximize" if self.maximize else "minimize"


def estimated_value(field: Field, accuracy: float, estimate: Mapping[str, Any] | None) -> float:
    """The value of a non-cheap ``field`` for a candidate scored ``accuracy`` whose estimator record is
    ``estimate``: the accuracy itself, or the trust metric of that name in the record. A candidate
    without it (never scored, filtered out, degenerate) gets the field's worst value (-inf when
    maximised, +inf when minimised), so it never counts as good."""
    if field.base == "accuracy":
        return float(accuracy)
    value = (estimate or {}).get(field.name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return -math.inf if field.maximize else math.inf


def known_fields(devices: list[str]) -> list[str]:
    return ["accuracy", ACCURACY_INT8, *TRUST_FIELDS, *(["latency_ms"] if devices else []),
            *(f"latency_ms@{d}" for d in devices),
            *COST_FIELDS, *ALIASES]


def resolve_field(name: str, devices: list[str], precision: str = "int8") -> Field:
    """``name`` -> :class:`Field`; aliases resolve to the precision's variant, ``latency_ms`` to the
    first device."""
    name = name.strip()
    if precision not in PRECISIONS:
        raise EdgenasError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if name == "accuracy":
        return Field("accuracy", "accuracy", maximize=True)
    if name == ACCURACY_INT8:
        return Field(ACCURACY_INT8, "accuracy", maximize=True)
    if name in TRUST_FIELDS:
        return Field(name, name, maximize=TRUST_FIELDS[name])
    if name in ALIASES:
        name = f"{name}_{precision}"
    if name in COST_FIELDS:
        return Field(name, name, maximize=False)
    base, _, dev = name.partition("@")
    if base == "latency_ms":
        if not devices:
            raise EdgenasError(f"field {name!r} needs a device: pass --device (or [device] name in the config)")
        dev = dev or devices[0]
        if dev not in devices:
            raise EdgenasError(f"field {name!r}: device {dev!r} is not one of the search's devices "
                               f"({', '.join(devices)})")
        return Field("latency_ms" if len(devices) == 1 else f"latency_ms@{dev}", "latency_ms", False, dev)
    raise EdgenasError(f"unknown field {name!r}; choose from: {', '.join(known_fields(devices))}")


_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "ki": 1024.0, "mi": 1024.0**2, "gi": 1024.0**3}
_VALUE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgG]i?)?\s*(B|ms|%)?\s*$")


def parse_value(text: str | float | int, field: Field) -> float:
    """``"64KiB"`` -> 65536.0, ``"30M"`` -> 3e7, ``"2.5ms"`` -> 2.5, ``"90%"`` -> 0.9 (accuracy)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    m = _VALUE.match(str(text))
    if not m:
        raise EdgenasError(f"{field.name}: cannot read value {text!r}; write e.g. 2.5, 64KiB, 30M")
    number, prefix, unit = float(m.group(1)), (m.group(2) or "").lower(), m.group(3) or ""
    if unit == "ms" and field.base != "latency_ms":
        raise EdgenasError(f"{field.name}: value {text!r} is in ms but the field is not a latency")
    if unit == "B" and field.unit != "B":
        raise EdgenasError(f"{field.name}: value {text!r} is in bytes but the field is not a size")
    if unit == "%":
        if prefix:
            raise EdgenasError(f"{field.name}: cannot read value {text!r}")
        return number / 100.0
    return number * _SUFFIX[prefix]


@dataclass(frozen=True)
class Budget:
    """A hard limit ``field <= limit`` (or ``>=``). Its Optuna constraint value is the relative
    violation (positive when broken, <= 0 when met), so violations in bytes and in milliseconds are
    comparable when NSGA-II sums them."""

    field: Field
    upper: bool
    limit: float

    def violation(self, value: float) -> float:
        scale = abs(self.limit) or 1.0
        return (value - self.limit) / scale if self.upper else (self.limit - value) / scale

    def met(self, value: float) -> bool:
        return value <= self.limit if self.upper else value >= self.limit

    def __str__(self) -> str:
        """Stable machine form (constraint names, records): ``latency_ms<=2.5``."""
        return f"{self.field.name}{'<=' if self.upper else '>='}{self.limit:g}"

    def describe(self) -> str:
        """For people: ``peak_ram_bytes_int8 <= 64.00KiB``."""
        return f"{self.field.name} {'<=' if self.upper else '>='} {format_value(self.limit, self.field)}"


_BUDGET = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_@.\-]*)\s*(<=|>=)\s*(.+?)\s*$")


def parse_budget(text: str, devices: list[str], precision: str = "int8") -> Budget:
    m = _BUDGET.match(text)
    if not m:
        raise EdgenasError(f"budget {text!r}: write FIELD<=VALUE or FIELD>=VALUE, e.g. latency_ms<=2.5")
    field = resolve_field(m.group(1), devices, precision)
    return Budget(field, m.group(2) == "<=", parse_value(m.group(3), field))


def format_value(value: float, field: Field) -> str:
    """A limit or value as a person reads it (``64KiB``, ``30M``, ``2.5 ms``)."""
    from edgenas.report import human

    if field.unit == "B":
        return human(value, "B")
    if field.base == "latency_ms":
        return f"{value:.4g} ms"
    if field.base in ("macs", "params"):
        return human(value)
    return f"{value:.4g}"


def given_reference(field: Field, budgets: list[Budget], reference: dict[str, float]) -> float | None:
    """The hypervolume reference of ``field`` in minimisation form (negated when maximised) when the
    user gave one (``reference``) or a budget bounds it on the bad side; None otherwise (callers then
    use the worst value they see)."""
    if field.name in reference:
        v = float(reference[field.name])
    else:
        b = next((b for b in budgets if b.field.name == field.name and b.upper != field.maximize), None)
        if b is None:
            return None
        v = b.limit
    return -v if field.maximize else v
