"""``edgenas.exporters``: turning searched specs into deployable ONNX / TFLite artifacts.

Installed only as ``edgenas.exporters`` (see pyproject's package-dir mapping); there is deliberately no
top-level ``exporters`` module. The exporters themselves arrive with the export milestone.
"""
