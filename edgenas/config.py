"""TOML job configs (``edgenas run CONFIG``).

A config names the stages of a job, one table each; unknown tables or keys are errors (a typo must not
silently fall back to a default)::

    [space]                 # which space, and its constructor options
    name = "tiny"
    options = { widths = [0.5, 0.75, 1.0] }

    [task]                  # what the networks are built for
    num_classes = 10
    in_channels = 1

    [describe]              # cost a sample of the space
    random = 12
    seed = 0

    [device]                # add predicted latency (a local device measures missing entries)
    name = "local-cpu-ort"

    [estimator]             # add an accuracy score (see `edgenas estimate --help`)
    name = "synflow"

    [search]                # run a multi-objective search instead of [describe] (see `edgenas search --help`)
    objectives = ["accuracy", "latency_ms"]
    budgets = ["latency_ms<=1.5", "peak_ram_bytes<=64KiB"]
    sampler = "frontier"
    trials = 60

    [export]                # then export the front as verified files + model cards (see `edgenas export --help`)
    formats = ["onnx", "tflite-int8", "tflm"]
    train_epochs = 10
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from edgenas.errors import EdgenasError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "space": {"name": str, "options": dict},
    "task": {"num_classes": int, "in_channels": int, "resolution": int},
    "describe": {"random": int, "seed": int, "archs": str, "csv": str},
    "device": {"name": str, "names": list, "devices_dir": str, "latency_csv": str, "latency_column": str},
    # validated by edgenas.estimators.base.estimator_from_config
    "estimator": {"name": str, "seed": int, "dataset": str, "weights": str, "options": dict},
    # validated by edgenas.search.job.check_search_table
    "search": {"objectives": list, "budgets": list, "sampler": str, "sampler_options": dict, "seed": int,
               "trials": int, "timeout": (int, float), "workers": int, "storage": str, "study": str,
               "precision": str, "reference": dict, "out": str},
    # after the search: export its front (see `edgenas export --help`)
    "export": {"formats": list, "train_epochs": int, "trials": str, "out": str, "nhwc": bool, "float_io": bool,
               "seed": int, "threads": int, "dataset": str},
}
REQUIRED = {"space": ("name",)}


def load_config(path: str | Path) -> dict[str, dict[str, Any]]:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise EdgenasError(f"config {str(p)!r} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise EdgenasError(f"config {str(p)!r} is not valid TOML: {exc}") from None
    for section, body in data.items():
        if section not in SCHEMA:
            raise EdgenasError(f"config {p.name}: unknown table [{section}]; known: {', '.join(SCHEMA)}")
        if not isinstance(body, dict):
            raise EdgenasError(f"config {p.name}: [{section}] must be a table")
        for key, value in body.items():
            want = SCHEMA[section].get(key)
            if want is None:
                raise EdgenasError(
                    f"config {p.name}: unknown key {key!r} in [{section}]; known: {', '.join(SCHEMA[section])}"
                )
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                name = want.__name__ if isinstance(want, type) else " or ".join(t.__name__ for t in want)
                raise EdgenasError(f"config {p.name}: [{section}] {key} must be of type {name}")
    for section, keys in REQUIRED.items():
        for key in keys:
            if key not in data.get(section, {}):
                raise EdgenasError(f"config {p.name}: [{section}] needs a {key!r} key")
    # input paths are relative to the config file; outputs ([search] out) to the working directory
    for section, keys in (("describe", ("archs", "csv")), ("device", ("latency_csv", "devices_dir"))):
        rel = data.get(section, {})
        for key in keys:
            if key in rel:
                rel[key] = str((p.parent / rel[key]).resolve()) if not Path(rel[key]).is_absolute() else rel[key]
    return data
