"""int8 calibration ranges: the exporter takes the global min/max over the representative set, so no
calibration example is clipped (ai-edge-quantizer's own default, a moving average of per-example ranges,
forgets an early large example)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgenas.exporters.convert import CALIBRATIONS, quantize_int8, tflite_fp32_bytes
from edgenas.exporters.tflite import litert_runner


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                 torch.nn.Linear(4 * 6 * 6, 3)).eval()
    rep = np.random.default_rng(0).standard_normal((64, 1, 8, 8)).astype(np.float32)
    rep[0] *= 8.0  # one example with 8x the usual range, seen first
    with torch.no_grad():
        ref = module(torch.from_numpy(rep)).numpy()
    return module, rep, ref, tflite_fp32_bytes(module, (1, 8, 8)), tmp_path_factory.mktemp("calibration")


def _errors(model_and_data, calibration: str) -> tuple[float, float]:
    """(error on the large example, error on the others), each relative to the logits' overall span."""
    _, rep, ref, fp32, tmp = model_and_data
    path = tmp / f"{calibration}.tflite"
    path.write_bytes(quantize_int8(fp32, rep, calibration=calibration))
    got = litert_runner(path)(rep)
    span = float(ref.max() - ref.min())
    err = np.abs(got - ref).max(axis=1) / span
    return float(err[0]), float(err[1:].max())


def test_global_min_max_covers_every_calibration_example(model_and_data):
    big, rest = _errors(model_and_data, "minmax")
    assert big < 0.03 and rest < 0.03


def test_moving_average_clips_the_example_it_forgot(model_and_data):
    """The contrast that shows the test above can fail: the other rule clips the large example."""
    big, _ = _errors(model_and_data, "moving-average")
    assert big > 0.2


def test_unknown_calibration_is_refused(model_and_data):
    assert "minmax" in CALIBRATIONS
    with pytest.raises(ValueError, match="calibration must be one of"):
        quantize_int8(model_and_data[3], model_and_data[1], calibration="percentile")


@pytest.mark.filterwarnings("ignore:Warning. Enabling `experimental_preserve_all_tensors`:UserWarning")
def test_profiler_calibration_matches_tensor_copying_calibration(model_and_data):
    """The fast path (min/max tracked inside the interpreter) quantizes to the same bytes as the
    tensor-copying path it replaces."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager

    from edgenas.exporters.convert import _min_max_qsvs

    _, rep, _, fp32, _ = model_and_data
    sig = Interpreter(model_content=fp32).get_signature_list()
    key = next(iter(sig))
    data = {key: [{sig[key]["inputs"][0]: rep[i:i + 1]} for i in range(len(rep))]}
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe.static_wi8_ai8())
    fast = _min_max_qsvs(calibrator, fp32, data, manager, mode="profiler")
    slow = _min_max_qsvs(calibrator, fp32, data, manager, mode="copy")
    assert fast.keys() == slow.keys()
    for k in slow:
        assert np.array_equal(np.ravel(fast[k]["min"]), np.ravel(slow[k]["min"]))
        assert np.array_equal(np.ravel(fast[k]["max"]), np.ravel(slow[k]["max"]))

    def quantized(qsvs: dict) -> bytes:
        q = quantizer.Quantizer(bytearray(fp32))
        q.load_quantization_recipe(recipe.static_wi8_ai8())
        return bytes(q.quantize(qsvs, enable_progress_report=False, enable_progress_bar=False).quantized_model)

    assert quantized(fast) == quantized(slow)


def test_failed_agreement_names_the_near_ties():
    """A quantized file that flips classes is reported with torch's margins on the flipped examples, so
    a user can tell near-ties of an undertrained model from a broken conversion."""
    from edgenas.exporters.base import flip_margins

    ref = np.array([[5.0, 0.0, 0.0], [0.0, 4.0, 0.0], [1.0, 0.98, 0.0], [0.0, 2.0, 2.01]], dtype=np.float32)
    got = ref.copy()
    got[2] = [0.9, 1.0, 0.0]  # a near-tie flipped
    got[3] = [0.0, 2.1, 2.0]
    msg = flip_margins(got, ref)
    assert "2 flipped examples" in msg and "median 0.015" in msg
    assert flip_margins(ref, ref) == ""  # nothing flipped: nothing to explain


def test_exact_parity_scales_with_the_logits():
    """Float parity allows 1e-4 per unit of the logits' size: a faithful float32 conversion of a model with
    logits near 100 differs by ~1e-4 (float rounding), a faulty one by a share of the logits."""
    from edgenas.exporters.base import compare

    rng = np.random.default_rng(0)
    small = rng.standard_normal((8, 10)).astype(np.float32)  # |logits| < 1-ish: the 1e-4 floor applies
    assert compare("exact", small + 5e-5, small).passed
    assert not compare("exact", small + 5e-4, small).passed
    large = 100 * small / np.abs(small).max()  # max |logit| = 100: tolerance 1e-2
    p = compare("exact", large + 1.07e-4, large)
    assert p.passed and "0.01" in p.threshold
    off = large.copy()
    off[0, 0] += 0.5  # 0.5% of the logits' scale: a real fault
    assert not compare("exact", off, large).passed
