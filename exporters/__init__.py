"""``edgenas.exporters``: turning searched specs into deployable, verified ONNX / TFLite / TFLite Micro
artifacts with a model card.

Installed only as ``edgenas.exporters`` (see pyproject's package-dir mapping); there is deliberately no
top-level ``exporters`` module. One base class per format (:class:`~edgenas.exporters.base.Exporter`),
a registry, and one contract suite over every registered exporter (tests/test_exporter_contract.py).
"""

from __future__ import annotations

from edgenas.exporters.base import (
    Artifact,
    Exporter,
    ExportJob,
    ExportOptions,
    Parity,
    exporter_names,
    get_exporter,
    register_exporter,
)

_LOADED = False


def _load_builtins() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib

    for mod in ("onnx", "tflite", "tflm"):
        try:
            importlib.import_module(f"edgenas.exporters.{mod}")
        except ModuleNotFoundError as exc:  # a format module not written yet
            if exc.name != f"edgenas.exporters.{mod}":
                raise


__all__ = ["Artifact", "ExportJob", "ExportOptions", "Exporter", "Parity", "exporter_names", "get_exporter",
           "register_exporter"]
