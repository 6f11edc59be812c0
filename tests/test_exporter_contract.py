"""One contract suite over every registered exporter x every image space (Optuna samplers_tests style).

Every exporter must, for a trained model of each space it supports: write its file atomically (no
temporary file left, sha256 and byte count as recorded), pass its own parity rule in its target
runtime against torch on the validation batch (float: max |diff| <= 1e-4; quantized: top-1 agreement
>= 98%), give (N, classes) float logits from its runner, reload to the same outputs, report the
artifact's accuracy on the labels, and report a failure (not raise) for a model it cannot convert.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from exportkit import IMAGE_SPACES, exported, formats, trained

from edgenas.exporters import Exporter, ExportJob, ExportOptions, get_exporter
from edgenas.exporters.base import EXACT_TOLERANCE, TOP1_AGREEMENT

SUPPORTED = {"tflm": {"tiny"}}
"""Formats that only some spaces target (TFLite Micro: the MCU-class space)."""

CASES = [(f, s) for f in formats() for s in IMAGE_SPACES if s in SUPPORTED.get(f, {s})]


@pytest.fixture(scope="session")
def out_root(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("exports")


def test_registry_has_the_promised_formats():
    assert {"onnx", "tflite", "tflite-int8"} <= set(formats())
    for f in formats():
        ex = get_exporter(f)
        assert isinstance(ex, Exporter) and ex.name == f and ex.suffix and ex.runtime
        assert ex.kind in ("exact", "quantized")
    stems = [get_exporter(f).stem + get_exporter(f).suffix for f in formats()]
    assert len(set(stems)) == len(stems), "two formats would write the same file name"


@pytest.mark.parametrize(("fmt", "space"), CASES)
def test_artifact_is_written_atomically_and_verified(fmt, space, out_root):
    art = exported(space, fmt, out_root)
    assert art.ok, art.error
    assert art.path is not None and art.path.is_file()
    data = art.path.read_bytes()
    assert len(data) == art.bytes and hashlib.sha256(data).hexdigest() == art.sha256
    assert not [p for p in art.path.parent.iterdir() if p.name.endswith(".tmp")]
    p = art.parity
    assert p is not None and p.passed and p.examples == len(trained(space).job.val_x)
    if get_exporter(fmt).kind == "exact":
        assert p.max_abs_diff <= EXACT_TOLERANCE
    else:
        assert p.top1_agreement >= TOP1_AGREEMENT


@pytest.mark.parametrize(("fmt", "space"), CASES)
def test_runner_gives_logits_and_reloads_identically(fmt, space, out_root):
    art = exported(space, fmt, out_root)
    assert art.ok, art.error
    t = trained(space)
    ex = get_exporter(fmt)
    x = t.job.val_x[:8]
    a = ex.runner(art.path, t.job)(x)
    b = ex.runner(art.path, t.job)(x)
    assert a.shape == (8, t.task.num_classes) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    # the artifact's accuracy is its own (top-1 on the labels), close to torch's for a verified file
    assert art.accuracy is not None and 0.0 <= art.accuracy <= 1.0
    torch_acc = float(np.mean(t.job.torch_logits().argmax(1) == t.job.val_y))
    assert abs(art.accuracy - torch_acc) <= 1.0 - TOP1_AGREEMENT + 1e-9


class _Unconvertible(torch.nn.Module):
    """Data-dependent control flow: no exporter can trace it to one static graph that matches torch."""

    def __init__(self, features: int, classes: int = 10) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x.flatten(1))
        return y if float(x.sum()) > 0 else -y


@pytest.mark.parametrize("fmt", formats())
def test_a_model_that_cannot_convert_is_reported_not_raised(fmt, tmp_path):
    t = trained("tiny")
    model = _Unconvertible(int(np.prod(t.job.input_shape))).eval()
    job = ExportJob(model, t.job.input_shape, t.job.representative, t.job.val_x, t.job.val_y,
                    ExportOptions(measure_latency=False))
    art = get_exporter(fmt).export(job, tmp_path)
    # tracing keeps one branch (exporters trace with zeros: the negated one), so the file cannot match
    # torch on validation images of positive sum; or it fails to convert. Either way: a failure with a
    # reason, never an exception and never a file claiming success
    if art.ok:
        pytest.fail(f"{fmt} verified a model whose exported graph differs from torch")
    assert art.error
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_latency_is_timed_in_the_runtime(out_root):
    t = trained("tiny")
    for fmt in ("onnx", "tflite-int8"):
        art = exported("tiny", fmt, out_root)
        timed = get_exporter(fmt).latency(art.path, t.job)
        assert timed is not None
        ms, how = timed
        assert 0 < ms < 1000
        # the profiler's paired procedure: at least its two windows, each of whole runs
        assert how["windows"] >= 2 and how["runs"] >= 5 and 0 <= how["windows_set_aside"] <= how["windows"]
    assert get_exporter("tflm").latency(art.path, t.job) is None  # TFLM on this host says nothing of an MCU


def test_tflite_options_nhwc_input_and_float_io(tmp_path):
    """The deployment options: NHWC input (camera layout) and float I/O around an int8 model."""
    from dataclasses import replace

    t = trained("tiny")
    job = replace(t.job, options=ExportOptions(nhwc=True, int8_io=False, measure_latency=False), cache={})
    c, h, w = t.job.input_shape
    for fmt, dtype in (("tflite", "float32"), ("tflite-int8", "float32")):
        art = get_exporter(fmt).export(job, tmp_path)
        assert art.ok, art.error
        assert art.extra["input"]["shape"] == [1, h, w, c] and art.extra["input"]["layout"] == "NHWC"
        assert art.extra["input"]["dtype"] == dtype and art.extra["output"]["dtype"] == dtype
