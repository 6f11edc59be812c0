"""Optional backends and the extras that install them.

``pip install edgenas`` gives the core (spaces, cost model, ONNX export and ONNX Runtime devices,
estimators, the search with journal/SQLite storages). Each optional backend is an extra; code that needs
one calls :func:`require`, which imports it or raises one line naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgenas.errors import EdgenasError

EXTRAS: dict[str, tuple[str, ...]] = {
    "tflite": ("ai-edge-litert", "litert-torch", "ai-edge-quantizer"),
    "tflm": ("tflite-micro",),
    "postgres": ("psycopg[binary]",),
    "plots": ("matplotlib", "plotly"),
    "dashboard": ("optuna-dashboard",),
    "compress": ("torch-pruning", "torchvision"),
}
"""extra -> the distributions it installs (kept equal to pyproject's optional-dependencies by a test)."""

MODULE_DIST: dict[str, str] = {
    "ai_edge_litert": "ai-edge-litert", "litert_torch": "litert-torch", "ai_edge_quantizer": "ai-edge-quantizer",
    "tflite_micro": "tflite-micro", "psycopg": "psycopg", "plotly": "plotly", "matplotlib": "matplotlib",
    "optuna_dashboard": "optuna-dashboard", "torch_pruning": "torch-pruning", "torchvision": "torchvision",
}
"""Top-level import name -> its distribution on the package index."""

MODULE_EXTRA: dict[str, str] = {
    "ai_edge_litert": "tflite",
    "litert_torch": "tflite",
    "ai_edge_quantizer": "tflite",
    "tflite_micro": "tflm",
    "psycopg": "postgres",
    "plotly": "plots",
    "matplotlib": "plots",
    "optuna_dashboard": "dashboard",
    "torch_pruning": "compress",
    "torchvision": "compress",
}
"""Top-level import name -> the extra that provides it."""


class MissingExtraError(EdgenasError):
    """An optional backend is not installed."""


def install_hint(extra: str) -> str:
    return f"pip install 'edgenas[{extra}]'"


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (e.g. ``ai_edge_quantizer``) or raise :class:`MissingExtraError`:
    ``<what> needs the optional package <dist>: pip install 'edgenas[<extra>]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        missing = (getattr(exc, "name", None) or top).split(".")[0]
        if missing != top and missing not in MODULE_EXTRA:
            raise  # the backend is there but broken: keep the real error
        raise missing_extra(top, what) from None


def missing_extra(top_module: str, what: str) -> MissingExtraError:
    extra = MODULE_EXTRA.get(top_module)
    if extra is None:
        return MissingExtraError(f"{what} needs the Python package {top_module!r}; pip install it")
    return MissingExtraError(f"{what} needs the optional package {MODULE_DIST.get(top_module, top_module)}: "
                             f"{install_hint(extra)}")


def available(module: str) -> bool:
    """True when ``module`` can be imported (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
