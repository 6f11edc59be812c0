"""int8 recovery options (edgenas.exporters.int8_options, edgenas.exporters.qat) on the trained `tiny` test
model, each file run in a real LiteRT interpreter: percentile / MSE activation ranges, per-op
sensitivity, int16 activations on chosen ops, quantization-aware fine-tuning, and the option's
validation in the job layer and on the command line."""

from __future__ import annotations

import numpy as np
import pytest

from edgenas.exporters import int8_options as io
from edgenas.exporters.tflite import fp32_tflite
from edgenas.testing.models import trained

pytestmark = pytest.mark.filterwarnings("ignore:Warning. Enabling `experimental_preserve_all_tensors`:UserWarning")


@pytest.fixture(scope="module")
def tiny():
    job = trained("tiny").job
    return job, fp32_tflite(job), io.calibrate(fp32_tflite(job), job.representative)


def _agreement(model: bytes, job) -> float:
    out = io.run_model(model, job.val_x)
    return float(np.mean(out.argmax(1) == job.torch_logits().argmax(1)))


@pytest.mark.parametrize("ranges", ["percentile", "mse"])
def test_clipped_ranges_narrow_intermediate_activations_only(tiny, ranges):
    job, fp32, minmax = tiny
    clipped = io.calibrate(fp32, job.representative, ranges)
    _, _, ends = io._float_tensors(fp32)
    narrower = 0
    for name, q in minmax.items():
        lo, hi = float(np.min(q["min"])), float(np.max(q["max"]))
        c_lo, c_hi = float(np.min(clipped[name]["min"])), float(np.max(clipped[name]["max"]))
        assert lo <= c_lo <= 0 <= c_hi <= hi + 1e-6
        if name in ends:
            assert (c_lo, c_hi) == (lo, hi)  # the input and the logits keep min/max
        narrower += c_hi - c_lo < 0.99 * (hi - lo)
    assert narrower >= 3
    model = io.quantize(fp32, clipped)
    assert model != io.quantize(fp32, minmax)
    assert _agreement(model, job) >= 0.98


def test_mse_range_minimises_the_histogram_error():
    """A long-tailed histogram: the MSE range clips the tail; a flat one keeps (nearly) the whole range."""
    tail = np.zeros(io.HISTOGRAM_BINS)
    tail[:200] = 1000.0
    tail[-1] = 1.0
    a, b = io._mse_range(tail, 0.0, 10.0)
    assert a == 0.0 and b < 7.0  # one example in 200,000 at 10: clipped to 6.5, the least error
    flat = np.ones(io.HISTOGRAM_BINS)
    assert io._mse_range(flat, -1.0, 1.0)[1] > 0.9


def test_sensitivity_scores_every_quantizable_op(tiny):
    job, fp32, qsvs = tiny
    sens = io.sensitivity(fp32, job.representative, qsvs, examples=32)
    ops = io.quantizable_ops(fp32)
    assert len(sens.layers) + len(sens.skipped) == len(ops)
    assert {s.op for s in sens.layers} >= {"CONV_2D", "FULLY_CONNECTED"}
    errors = [s.logit_error for s in sens.layers]
    assert errors == sorted(errors, reverse=True) and all(e > 0 for e in errors)
    assert sens.as_dict(top=3)["layers"][0]["tensor"] == sens.layers[0].tensor


def test_int16_activations_on_chosen_ops(tiny):
    """mixed16 forced past the 98% it already meets (two ops tried): the ops it kept have int16 outputs in
    the file, the rest stay int8, and LiteRT runs it closer to float than all-int8."""
    from ai_edge_litert.interpreter import Interpreter

    job, fp32, qsvs = tiny
    mixed = io.mixed16(fp32, job.representative, qsvs, max_ops=2, agreement=1.01, whole_model=False)
    assert 1 <= len(mixed.int16_ops) <= 2 and not mixed.whole_model
    assert mixed.agreement >= mixed.minmax_agreement
    types = {d["name"]: np.dtype(d["dtype"]) for d in Interpreter(model_content=mixed.model).get_tensor_details()}
    for op in mixed.int16_ops:
        assert types[op["tensor"]] == np.int16
    assert sum(t == np.int8 for t in types.values()) > 5
    assert _agreement(mixed.model, job) >= 0.98
    ref = job.torch_logits()
    err16 = np.abs(io.run_model(mixed.model, job.val_x) - ref).mean()
    err8 = np.abs(io.run_model(io.quantize(fp32, qsvs), job.val_x) - ref).mean()
    assert err16 < err8


def test_mixed16_falls_back_to_int16_activations_everywhere(tiny):
    """When no subset of the candidate ops reaches the agreement (here forced: 101%, two ops at most), the
    whole-model 16x8 file is tried and kept when it agrees at least as well as the best subset: every
    activation int16 (int16 graph input and output), run by LiteRT, and with float I/O added it takes
    and returns float32 and gives the same logits."""
    from ai_edge_litert.interpreter import Interpreter

    from edgenas.exporters.convert import float_io

    job, fp32, qsvs = tiny
    mixed = io.mixed16(fp32, job.representative, qsvs, max_ops=2, agreement=1.01)
    rows = {t["int16_ops"]: t for t in mixed.tried}
    assert "all" in rows and max(k for k in rows if k != "all") <= 2
    best = max((t for k, t in rows.items() if k != "all"), key=lambda t: (t["top1_agreement"], -t["logit_error"]))
    whole = rows["all"]
    assert mixed.whole_model == ((whole["top1_agreement"], -whole["logit_error"])
                                 >= (best["top1_agreement"], -best["logit_error"]))
    model = io.quantize(fp32, qsvs, all_int16=True)
    it = Interpreter(model_content=model)
    assert np.dtype(it.get_input_details()[0]["dtype"]) == np.int16
    assert np.dtype(it.get_output_details()[0]["dtype"]) == np.int16
    ops = it._get_ops_details()
    names = {d["index"]: np.dtype(d["dtype"]) for d in it.get_tensor_details()}
    convs = [op for op in ops if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert convs and all(names[op["outputs"][0]] == np.int16 for op in convs)
    assert _agreement(model, job) >= 0.98
    floated = float_io(model)
    f_it = Interpreter(model_content=floated)
    assert np.dtype(f_it.get_input_details()[0]["dtype"]) == np.float32
    assert np.dtype(f_it.get_output_details()[0]["dtype"]) == np.float32
    step = float(it.get_output_details()[0]["quantization"][0])  # the QUANTIZE op may round a half differently
    np.testing.assert_allclose(io.run_model(floated, job.val_x[:16]), io.run_model(model, job.val_x[:16]),
                               atol=1.01 * step, rtol=0)
    if mixed.whole_model:
        assert mixed.int16_ops == [] and mixed.model == model


def test_mixed16_skips_the_sensitivity_when_min_max_already_agrees(tiny):
    """The tiny model's min/max file meets 98%: mixed16 returns it as it is, without the per-op
    sensitivity (one quantization per op) unless the sensitivity was asked for."""
    job, fp32, qsvs = tiny
    mixed = io.mixed16(fp32, job.representative, qsvs, need_sensitivity=False)
    assert mixed.sensitivity is None and mixed.int16_ops == [] and mixed.candidates is None
    assert mixed.agreement == mixed.minmax_agreement >= 0.98 and [t["int16_ops"] for t in mixed.tried] == [0]
    assert mixed.model == io.quantize(fp32, qsvs)
    asked = io.mixed16(fp32, job.representative, qsvs)
    assert asked.sensitivity is not None and asked.int16_ops == [] and asked.model == mixed.model


def test_qat_exports_a_verified_int8_file(tmp_path):
    """int8 = "qat": one epoch of fake-quant fine-tuning, lowered to a full-int8 file that agrees with the
    fine-tuned model; the card records the fine-tuning and the agreement with the original model."""
    from edgenas.datasets import load_dataset
    from edgenas.exporters import ExportJob, ExportOptions, get_exporter

    t = trained("tiny")
    base = t.job
    ds = load_dataset("digits", seed=0)
    opts = ExportOptions(measure_latency=False, int8="qat", qat_epochs=1)
    job = ExportJob(base.module, base.input_shape, base.representative, base.val_x, base.val_y, opts,
                    cache=dict(base.cache), train_data=ds.train(base.input_shape))
    art = get_exporter("tflite-int8").export(job, tmp_path)
    assert art.ok, art.error
    qat = art.extra["int8_method"]["qat"]
    assert qat["epochs"] == 1 and qat["train_examples"] == len(ds.train(base.input_shape)[0])
    assert not np.array_equal(job.int8_reference(), job.torch_logits())  # the weights moved
    assert 0.9 <= qat["top1_agreement_with_original"] <= 1.0
    assert art.accuracy is not None and art.accuracy > 0.9


def test_qat_without_training_data_is_one_line(tmp_path):
    from edgenas.exporters import ExportJob, ExportOptions, get_exporter

    base = trained("tiny").job
    job = ExportJob(base.module, base.input_shape, base.representative, base.val_x, base.val_y,
                    ExportOptions(measure_latency=False, int8="qat"), cache=dict(base.cache))
    art = get_exporter("tflite-int8").export(job, tmp_path)
    assert not art.ok and "no dataset" in art.error


def test_int8_option_is_validated():
    from edgenas.jobs import ConfigError, ExportConfig

    assert ExportConfig(int8="mixed16", int8_sensitivity=True).as_flags().endswith("--int8-sensitivity")
    assert "--int8 mixed16" in ExportConfig(int8="mixed16").as_flags()
    assert ExportConfig(int8_bias_correction=True).as_flags().endswith("--int8-bias-correction")
    with pytest.raises(ConfigError, match=r"int8.*must be one of minmax, percentile, mse, mixed16, qat"):
        ExportConfig(int8="float16")
    with pytest.raises(ConfigError, match="qat_epochs"):
        ExportConfig(qat_epochs=0)


@pytest.mark.parametrize(("argv", "needle"), [
    (["--int8", "int4"], "--int8: must be one of minmax, percentile, mse, mixed16, qat, got 'int4'"),
    (["--qat-epochs", "0"], "--qat-epochs: must be >= 1, got 0"),
])
def test_bad_int8_flags_exit_2_with_one_line(capsys, tmp_path, argv, needle):
    from edgenas.testing.cli import assert_one_line_error, run_cli

    code, _, err = run_cli(capsys, "export", "--space", "tiny", "--arch", "x", "--out", str(tmp_path / "o"), *argv)
    assert_one_line_error(code, err, needle)


def test_export_job_with_mixed16_and_sensitivity_writes_them_on_the_card(tmp_path):
    """Through the job layer: `[export] int8 = "mixed16"`, `int8_sensitivity = true` reach the exporter and
    the model card (JSON and markdown)."""
    import json
    from pathlib import Path

    from edgenas.exporters.pipeline import run_export
    from edgenas.jobs import ExportConfig, SpaceConfig, TaskConfig

    result = run_export(ExportConfig(formats=["tflite-int8"], train_epochs=1, out=str(tmp_path), dataset="digits",
                                     int8="mixed16", int8_sensitivity=True),
                        space=SpaceConfig("tiny", {"resolutions": [32]}), arch="tiny:w0.5:r32:k3e3_k3e3_k3e3_k3e3",
                        task=TaskConfig(num_classes=10, in_channels=1), measure_latency=False)
    folder = Path(result.models[0].folder)  # a 1-epoch model may still miss the check: the card says why
    card = json.loads((folder / "model_card.json").read_text())
    (art,) = card["artifacts"]
    method = art["int8_method"]
    assert method["method"] == "mixed16" and "int16_ops" in method
    assert method["representative_top1_agreement"] >= method["representative_top1_agreement_minmax"]
    assert art["int8_sensitivity"]["layers"] and art["int8_sensitivity"]["examples"] == io.SENSITIVITY_EXAMPLES
    md = (folder / "model_card.md").read_text()
    assert "made with --int8 mixed16" in md and "int8 sensitivity (tflite-int8" in md


def test_rounding_shift_is_the_mean_output_shift_of_int8_weights():
    """For a dense layer and inputs of mean mu, rounding_shift equals the measured mean of (W_q - W) x; for a
    depthwise kernel the same per channel."""
    from edgenas.exporters.bias_correction import rounding_shift

    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 5)).astype(np.float32)
    x = rng.normal(loc=1.5, size=(4000, 5)).astype(np.float32)
    scale = np.abs(w).max(1, keepdims=True) / 127
    wq = np.round(w / scale) * scale
    measured = ((wq - w) @ x.T).mean(1)
    np.testing.assert_allclose(rounding_shift("FULLY_CONNECTED", w, x.mean(0)), measured, rtol=1e-4, atol=1e-7)
    dw = rng.normal(size=(1, 3, 3, 4)).astype(np.float32)
    s = np.abs(dw).max(axis=(0, 1, 2), keepdims=True) / 127
    mu = np.array([0.5, -1.0, 2.0, 0.0], dtype=np.float32)
    np.testing.assert_allclose(rounding_shift("DEPTHWISE_CONV_2D", dw, mu),
                               ((np.round(dw / s) * s - dw).sum((0, 1, 2)) * mu), rtol=1e-5)
    assert rounding_shift("DEPTHWISE_CONV_2D", np.zeros((1, 3, 3, 8), np.float32), mu) is None  # multiplier 2


def test_bias_correction_moves_biases_only_and_recentres_the_int8_logits(tiny, tmp_path):
    """Every conv / dense bias is corrected, no weight changes, and the weight-quantized file's mean logit
    shift from float shrinks; through the exporter the option reaches the file and its card."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    from edgenas.exporters import ExportJob, ExportOptions, get_exporter
    from edgenas.exporters.bias_correction import OPS, bias_corrected

    job, fp32, _ = tiny
    fixed, record = bias_corrected(fp32, job.representative)
    before, after = Interpreter(model_content=fp32), Interpreter(model_content=fixed)
    ops = [o for o in before._get_ops_details() if o["op_name"] in OPS]
    assert record["ops_corrected"] + record["ops_skipped"] == len(ops) and record["ops_corrected"] >= len(ops) - 1
    changed = 0
    for o in ops:
        np.testing.assert_array_equal(before.get_tensor(o["inputs"][1]), after.get_tensor(o["inputs"][1]))
        changed += not np.array_equal(before.get_tensor(o["inputs"][2]), after.get_tensor(o["inputs"][2]))
    assert changed == record["ops_corrected"]

    def weight_only(model: bytes) -> bytes:
        q = quantizer.Quantizer(bytearray(model))
        q.load_quantization_recipe(recipe.weight_only_wi8_afp32())
        return bytes(q.quantize().quantized_model)

    ref = io.run_model(fp32, job.representative)
    shift = [np.abs((io.run_model(weight_only(m), job.representative) - ref).mean(0)).mean() for m in (fp32, fixed)]
    assert shift[1] < shift[0]
    opts = ExportOptions(measure_latency=False, int8_bias_correction=True)
    art = get_exporter("tflite-int8").export(ExportJob(job.module, job.input_shape, job.representative, job.val_x,
                                                       job.val_y, opts, cache=dict(job.cache)), tmp_path)
    assert art.ok, art.error
    assert art.extra["int8_method"]["bias_correction"]["ops_corrected"] == record["ops_corrected"]
