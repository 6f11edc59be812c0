"""Latency lookup tables: a versioned, documented JSON format (never pickle).

A table belongs to one device and one space. ``entries`` maps latency-unit keys
(:attr:`edgenas.layers.Layer.key`) to measured statistics in milliseconds. The ``model`` section holds
the fitted per-device correction that turns a sum of entries into a whole-network prediction, and
``validation`` the figures of the last end-to-end check. Example::

    {
      "format": "edgenas-latency-table", "version": 1,
      "device": "local-cpu-ort", "space": "tiny", "key_format": "edgenas-layer-v1",
      "runtime": {"name": "onnxruntime", "version": "1.32.0", "threads": 1, "options": {}},
      "host": {"cpu": "...", "platform": "...", "cores": 2},
      "created": "2026-11-23T13:00:00+00:00", "source": "profiled",
      "entries": {"conv(i=3x64,o=16x32,k=3,s=2,g=1,act=relu,bn=1,bias=0)":
                  {"mean_ms": 0.031, "std_ms": 0.002, "p50_ms": 0.030, "n": 50}},
      "model": {"kind": "affine", "overhead_ms": 0.0, "scale": 1.0, "per_unit_ms": 0.0},
      "validation": {"n": 50, "mape": 3.1, "within_10pct": 0.98, ...}
    }

Prediction: ``latency_ms = overhead_ms + scale * sum(p50_ms of the spec's units) + per_unit_ms * n_units
+ sum(terms[f] * feature_f(spec))`` (named features, :mod:`edgenas.latency.features`).
``load`` checks every field and raises :class:`EdgenasError` naming the problem, so a corrupt or
foreign file is exit 2 with the reason.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgenas.errors import EdgenasError
from edgenas.names import check_name

FORMAT = "edgenas-latency-table"
VERSION = 1
KEY_FORMAT = "edgenas-layer-v1"
MODEL_KINDS = ("affine",)
MAX_MEASURED_MS = 60_000.0
"""Largest plausible median of one timed model (a unit or a whole network) in an imported measurement:
one minute. The kit runner and the native script time each model ``warmup + repeats`` times within a
10 s budget (at least 5 timed runs), and edgenas targets edge networks that run in milliseconds to
seconds; a median above a minute is a unit mistake (seconds or microseconds written as ms) or a corrupt
file, and one such entry would dominate every prediction, so imports refuse it instead of storing it."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_measured(entry: Any, what: str, max_ms: float = MAX_MEASURED_MS) -> Entry:
    """A measured entry (``mean_ms``, ``std_ms``, ``p50_ms``, ``n``) from an import, checked: times are
    finite, ``mean``/``p50`` > 0 and <= ``max_ms``, ``std`` >= 0, ``n`` a positive integer. ``what``
    names the entry in the one-line :class:`EdgenasError` (e.g. ``"kit results 'r.json': entry 'conv(...)'"``)."""
    if not isinstance(entry, dict):
        raise EdgenasError(f"{what} must be an object with mean_ms, std_ms, p50_ms and n")
    values = {}
    for key in ("mean_ms", "std_ms", "p50_ms", "n"):
        v = entry.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise EdgenasError(f"{what} needs a number {key!r}, got {v!r}")
        values[key] = v
    for key in ("mean_ms", "p50_ms", "std_ms"):
        v = float(values[key])
        low_ok = v >= 0 if key == "std_ms" else v > 0
        if not math.isfinite(v) or not low_ok:
            raise EdgenasError(f"{what} has {key} = {v!r}; a measured time must be finite and "
                               f"{'>= 0' if key == 'std_ms' else '> 0'} (re-run the measurement)")
        if v > max_ms:
            raise EdgenasError(f"{what} has {key} = {v!r} ms, above the plausible {max_ms:g} ms per model (a "
                               f"unit mistake or a corrupt file?)")
    n = values["n"]
    if not (_is_int(n) or (isinstance(n, float) and n.is_integer())) or n < 1:
        raise EdgenasError(f"{what} has n = {n!r}; the number of timed runs must be a positive integer")
    return Entry(float(values["mean_ms"]), float(values["std_ms"]), float(values["p50_ms"]), int(n))


@dataclass
class Entry:
    """Statistics of one unit's measured latency in ms (``p50_ms`` is what predictions use)."""

    mean_ms: float
    std_ms: float
    p50_ms: float
    n: int

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> Entry:
        xs = sorted(samples_ms)
        n = len(xs)
        mean = sum(xs) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
        mid = n // 2
        p50 = xs[mid] if n % 2 else 0.5 * (xs[mid - 1] + xs[mid])
        return cls(mean_ms=mean, std_ms=std, p50_ms=p50, n=n)

    def to_json(self) -> dict[str, Any]:
        return {"mean_ms": self.mean_ms, "std_ms": self.std_ms, "p50_ms": self.p50_ms, "n": self.n}


@dataclass
class DeviceModel:
    """Per-device correction from a sum of per-unit entries to a whole network (see module doc)."""

    kind: str = "affine"
    overhead_ms: float = 0.0
    scale: float = 1.0
    per_unit_ms: float = 0.0
    fitted_on: int = 0  # number of measured networks it was fitted on (0 = not fitted)
    # ms per unit of a named spec feature (edgenas.latency.features), for non-additive effects
    terms: dict[str, float] = field(default_factory=dict)

    def apply(self, sum_ms: float, n_units: int, features: dict[str, float] | None = None) -> float:
        extra = sum(c * (features or {})[name] for name, c in self.terms.items()) if self.terms else 0.0
        return self.overhead_ms + self.scale * sum_ms + self.per_unit_ms * n_units + extra

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "terms": dict(self.terms)}


def host_info() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "machine": platform.machine()}


@dataclass
class LatencyTable:
    device: str
    space: str
    runtime: dict[str, Any]
    entries: dict[str, Entry] = field(default_factory=dict)
    model: DeviceModel = field(default_factory=DeviceModel)
    host: dict[str, Any] = field(default_factory=host_info)
    created: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    source: str = "profiled"
    key_format: str = KEY_FORMAT
    batch: int = 1
    validation: dict[str, Any] | None = None
    notes: str = ""
    # entries measured in a specific context, e.g. {"r192": {...}}: OFA's published tables are one
    # measurement session per input resolution; a spec at that resolution reads its session first
    scoped: dict[str, dict[str, Entry]] = field(default_factory=dict)

    # -- prediction --------------------------------------------------------------------------
    def _lookup(self, key: str, scope: str | None) -> Entry:
        if scope is not None and scope in self.scoped and key in self.scoped[scope]:
            return self.scoped[scope][key]
        return self.entries[key]

    def missing(self, unit_keys: list[str]) -> list[str]:
        return sorted({k for k in unit_keys if k not in self.entries})

    def sum_ms(self, unit_keys: list[str], scope: str | None = None) -> float:
        return sum(self._lookup(k, scope).p50_ms for k in unit_keys)

    def min_unit_ms(self) -> float | None:
        """The fastest unit's median (ms) over every entry, scoped ones included (None: no entries): the
        bound on the device model's per-unit saving (:func:`edgenas.latency.validate.fit_device_model`)."""
        times = [e.p50_ms for e in self.entries.values()]
        times += [e.p50_ms for es in self.scoped.values() for e in es.values()]
        return min(times) if times else None

    def predict_ms(self, unit_keys: list[str], features: dict[str, float] | None = None,
                   scope: str | None = None) -> float:
        """Whole-network latency from its unit keys (all must be present: check :meth:`missing`) and,
        when the device model has ``terms``, the spec's named features."""
        return self.model.apply(self.sum_ms(unit_keys, scope), len(unit_keys), features)

    # -- persistence -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "device": self.device,
            "space": self.space,
            "key_format": self.key_format,
            "batch": self.batch,
            "runtime": self.runtime,
            "host": self.host,
            "created": self.created,
            "source": self.source,
            "notes": self.notes,
            "model": self.model.to_json(),
            "validation": self.validation,
            "entries": {k: self.entries[k].to_json() for k in sorted(self.entries)},
            "scoped": {sc: {k: e.to_json() for k, e in sorted(es.items())} for sc, es in sorted(self.scoped.items())},
        }

    def save(self, path: str | Path) -> Path:
        """Atomic write (temp file + rename): an interrupted save never leaves a corrupt table."""
        from edgenas.fileio import atomic_write

        return atomic_write(path, json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        from edgenas.fileio import read_json

        p = Path(path)
        data = read_json(p, "latency table", "re-create it with 'edgenas profile' or restore it")
        return cls.from_json(data, str(p))

    @classmethod
    def from_json(cls, data: Any, origin: str = "<json>") -> LatencyTable:
        def bad(msg: str) -> EdgenasError:
            return EdgenasError(f"latency table {origin!r}: {msg}")

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise bad(f"not an edgenas latency table (expected \"format\": \"{FORMAT}\")")
        if data.get("version") != VERSION:
            raise bad(f"format version {data.get('version')!r} is not supported (this edgenas reads {VERSION})")
        for key, typ in (("device", str), ("space", str), ("runtime", dict), ("entries", dict)):
            if not isinstance(data.get(key), typ):
                raise bad(f"field {key!r} missing or not a {typ.__name__}")
        for key in ("device", "space"):
            try:
                check_name(data[key], key)
            except EdgenasError as exc:
                raise bad(str(exc)) from None
        if data.get("key_format", KEY_FORMAT) != KEY_FORMAT:
            raise bad(f"key format {data.get('key_format')!r} is not {KEY_FORMAT!r}")
        def read_entries(raw: Any) -> dict[str, Entry]:
            if not isinstance(raw, dict):
                raise bad("entries must be an object of key -> statistics")
            out = {}
            for k, e in raw.items():
                try:
                    entry = Entry(float(e["mean_ms"]), float(e["std_ms"]), float(e["p50_ms"]), int(e["n"]))
                except (KeyError, TypeError, ValueError, OverflowError):
                    raise bad(f"entry {k!r} needs numeric mean_ms, std_ms, p50_ms and n") from None
                if not all(math.isfinite(v) and v >= 0 for v in (entry.mean_ms, entry.std_ms, entry.p50_ms)):
                    raise bad(f"entry {k!r} has a negative or non-finite time; re-measure it or restore the table")
                if entry.n < 0 or isinstance(e["n"], bool) or float(e["n"]) != entry.n:
                    raise bad(f"entry {k!r} has n = {e['n']!r}; the number of timed runs is an integer >= 0")
                out[k] = entry
            return out

        entries = read_entries(data["entries"])
        scoped_raw = data.get("scoped") or {}
        if not isinstance(scoped_raw, dict):
            raise bad("'scoped' must be an object of scope -> entries")
        scoped = {str(sc): read_entries(es) for sc, es in scoped_raw.items()}
        m = data.get("model") or {}
        if not isinstance(m, dict):
            raise bad("'model' must be an object (the fitted device model)")
        if m.get("kind", "affine") not in MODEL_KINDS:
            raise bad(f"device model kind {m.get('kind')!r} is not one of {MODEL_KINDS}")
        try:
            model = DeviceModel(
                kind=m.get("kind", "affine"), overhead_ms=float(m.get("overhead_ms", 0.0)),
                scale=float(m.get("scale", 1.0)), per_unit_ms=float(m.get("per_unit_ms", 0.0)),
                fitted_on=int(m.get("fitted_on", 0)),
                terms={str(k): float(v) for k, v in (m.get("terms") or {}).items()},
            )
        except (TypeError, ValueError, AttributeError, OverflowError):
            raise bad("device model fields must be numbers") from None
        numbers = {"overhead_ms": model.overhead_ms, "scale": model.scale, "per_unit_ms": model.per_unit_ms,
                   **{f"terms.{k}": v for k, v in model.terms.items()}}
        for name, v in numbers.items():
            if not math.isfinite(v):
                raise bad(f"device model {name} = {v!r} is not finite; refit it ('edgenas lut validate' or "
                          f"'lut fit') or restore the table")
        if model.fitted_on < 0:
            raise bad(f"device model fitted_on = {model.fitted_on} is negative")
        batch = data.get("batch", 1)
        if not _is_int(batch) or batch < 1:
            raise bad(f"batch {batch!r} is not a positive integer")
        for key, typ in (("host", dict), ("validation", dict)):
            if data.get(key) is not None and not isinstance(data[key], typ):
                raise bad(f"field {key!r} must be an object")
        return cls(
            device=data["device"], space=data["space"], runtime=data["runtime"], entries=entries, model=model,
            host=data.get("host") or {}, created=str(data.get("created", "")), source=str(data.get("source", "")),
            batch=batch, validation=data.get("validation"), notes=str(data.get("notes", "")),
            scoped=scoped,
        )
