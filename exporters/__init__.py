"""``edgenas.exporters``: turning searched specs into deployable, verified ONNX / TFLite / TFLite Micro
artifacts with a model card.

Installed only as ``edgenas.exporters`` (see pyproject's package-dir mapping); there is deliberately no
top-level ``exporters`` module. One base class per format (:class:`~edgenas.exporters.base.Exporter`),
a registry (third-party formats through the ``edgenas.exporters`` entry points), and one contract suite
over every registered exporter (:mod:`edgenas.testing`).
"""

from __future__ import annotations

from edgenas.exporters.base import (
    EXPORTERS,
    Artifact,
    Exporter,
    ExportJob,
    ExportOptions,
    Parity,
    exporter_names,
    get_exporter,
    register_exporter,
)

__all__ = ["EXPORTERS", "Artifact", "ExportJob", "ExportOptions", "Exporter", "Parity", "exporter_names",
           "get_exporter", "register_exporter"]
