"""The exporter contract (:class:`edgenas.testing.ExporterContract`) over every registered exporter x
every image space it targets, plus the built-in formats' own options."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgenas.exporters import EXPORTERS, ExportOptions, get_exporter
from edgenas.testing import ExporterContract
from edgenas.testing.models import IMAGE_SPACES, formats, trained

# the trained models and their conversions are built once per worker process: keep their users on one worker
pytestmark = pytest.mark.xdist_group("trained-models")

BUILTINS = [e.name for e in EXPORTERS.entries() if e.builtin]
"""edgenas' own formats (installed plug-ins run the contract from their own tests)."""
SUPPORTED = {"tflm": {"tiny"}}
"""Formats that only some spaces target (TFLite Micro: the MCU-class space)."""


def test_registry_has_the_promised_formats():
    assert {"onnx", "tflite", "tflite-int8", "tflm"} <= set(formats())


class TestBuiltinExporters(ExporterContract):
    def formats(self) -> list[str]:
        return BUILTINS

    def cases(self) -> list[tuple[str, str]]:
        return [(f, s) for f in BUILTINS for s in IMAGE_SPACES if s in SUPPORTED.get(f, {s})]


def test_tflite_options_nhwc_input_and_float_io(tmp_path):
    """The deployment options: NHWC input (camera layout) and float I/O around an int8 model."""
    t = trained("tiny")
    job = replace(t.job, options=ExportOptions(nhwc=True, int8_io=False, measure_latency=False), cache={})
    c, h, w = t.job.input_shape
    for fmt, dtype in (("tflite", "float32"), ("tflite-int8", "float32")):
        art = get_exporter(fmt).export(job, tmp_path)
        assert art.ok, art.error
        assert art.extra["input"]["shape"] == [1, h, w, c] and art.extra["input"]["layout"] == "NHWC"
        assert art.extra["input"]["dtype"] == dtype and art.extra["output"]["dtype"] == dtype
