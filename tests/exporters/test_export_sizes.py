"""Exported files agree with the cost model: every image space's trained model, exported as .onnx,
fp32 .tflite and int8 .tflite, is within 10% of ``size_bytes_fp32`` / ``size_bytes_int8``, and LiteRT's
XNNPACK delegate splits each .tflite as ``delegate_partitions_*`` / ``ops_off_delegate_*`` predict.

The artifacts are exportkit's (one conversion per space and format per session, shared with the
exporter contract suite)."""

from __future__ import annotations

import pytest
from exportkit import IMAGE_SPACES, exported, trained

from edgenas.exporters import get_exporter

# the trained models and their conversions are built once per worker process: keep their users on one worker
pytestmark = pytest.mark.xdist_group("trained-models")

FORMATS = ("onnx", "tflite", "tflite-int8")
TOLERANCE = 0.10


@pytest.fixture(scope="module")
def out_root(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("sizes")


@pytest.mark.parametrize("space", IMAGE_SPACES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_file_size_matches_cost_model(space, fmt, out_root):
    t = trained(space)
    art = exported(space, fmt, out_root)
    # the file is written before it is verified: its size is checked here whatever its parity
    assert art.path is not None and art.bytes > 0, art.error
    field = get_exporter(fmt).size_field
    estimate = getattr(t.space.cost(t.spec, t.task), field)
    ratio = art.bytes / estimate
    assert abs(ratio - 1) <= TOLERANCE, f"{t.spec} {fmt}: {art.bytes} B vs {field} {estimate} B ({ratio:.3f})"



@pytest.mark.parametrize("space", IMAGE_SPACES)
@pytest.mark.parametrize("fmt", ["tflite", "tflite-int8"])
def test_delegate_partitions_match_the_cost_model(space, fmt, out_root):
    """The XNNPACK partitions and off-delegate ops LiteRT makes of the exported file (measured when it is
    exported, in its details) are what the cost model predicts from the deployed graph."""
    from edgenas.delegates import predict

    t = trained(space)
    art = exported(space, fmt, out_root)
    assert art.ok, art.error
    deployed = t.space.cost(t.spec, t.task).deployed
    predicted = predict(deployed, "xnnpack", "int8" if fmt == "tflite-int8" else "fp32").as_dict()
    measured = {k: v for k, v in art.extra["xnnpack"].items() if k != "predicted_partitions"}
    assert measured == predicted, f"{t.spec} {fmt}"
