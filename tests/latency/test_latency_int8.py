"""int8 latency tables: a device with ``precision = "int8"`` times full-integer models made by the
int8 exporter's own quantizer, for units and whole networks, and a search can target it.

Real LiteRT conversions, quantizations and interpreter sessions on small ``tiny`` units at 32 px;
fidelity targets live in benchmarks/latency_fidelity.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgenas import EdgenasError, get_space
from edgenas.cli.main import main
from edgenas.latency import DeviceStore, LatencyPredictor, LatencyTable
from edgenas.latency.devices import parse_device
from edgenas.latency.runtimes import ExportItem, get_runtime
from edgenas.latency.runtimes.base import file_stem
from edgenas.latency.runtimes.litert import representative
from edgenas.spaces import Task
from edgenas.testing.cli import run_cli

INT8_DEVICE = "local-cpu-litert-int8"
# the search/profile tests' space: tiny at one width and resolution, 3x3 kernels and expand 3 only (13 units
# instead of 77: each unit and network here is a litert conversion plus a quantization)
SPACE_ARGS = ["--space", "tiny", "--space-opt", "widths=[0.5]", "--space-opt", "kernels=3", "--space-opt", "expands=3",
              "--space-opt", "resolutions=[32]"]


def _interpreter(model: Path | bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model)) if isinstance(model, Path) else Interpreter(model_content=model)
    it.allocate_tensors()
    return it


def _run_int8(model: Path | bytes, x_int8: np.ndarray) -> np.ndarray:
    it = _interpreter(model)
    it.set_tensor(it.get_input_details()[0]["index"], x_int8)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def _quantized_input(model: Path | bytes, x: np.ndarray) -> np.ndarray:
    d = _interpreter(model).get_input_details()[0]
    scale, zero = d["quantization"]
    return np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)


def _dequantized_output(model: Path | bytes, y: np.ndarray) -> np.ndarray:
    o = _interpreter(model).get_output_details()[0]
    scale, zero = o["quantization"]
    return (y.astype(np.float32) - zero) * scale


# -- device specs -------------------------------------------------------------------------------
def test_shipped_int8_device_and_precision_validation(tmp_path):
    store = DeviceStore(tmp_path)
    d = store.device(INT8_DEVICE)
    assert d.local and d.runtime == "litert" and d.precision == "int8"
    assert d.runtime_options == {"precision": "int8"}  # so every runtime built from the spec quantizes
    assert store.device("local-cpu-litert").precision == "fp32"
    assert "precision" not in store.device("local-cpu-litert").runtime_options
    rt = get_runtime(d.runtime, d.threads, d.runtime_options)
    assert rt.describe()["precision"] == "int8" and "ai-edge-quantizer" in rt.version()
    for data, needle in [
        ({"name": "x", "runtime": "litert", "precision": "fp16"}, "'precision' must be one of fp32, int8"),
        ({"name": "x", "runtime": "onnxruntime", "precision": "int8"}, "precision int8 needs runtime litert"),
        ({"name": "x", "runtime": "litert", "runtime_options": {"precision": "int8"}}, "top level"),
    ]:
        with pytest.raises(EdgenasError, match=needle):
            parse_device(data, "x.toml")


# -- int8 units ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_units():
    sp = get_space("tiny", resolutions=[32], widths=[0.5])
    spec = sp.parse("tiny:w0.5:r32:k3e3_k5e4_k7e6_k3e3")
    units = sp.units(spec)
    return [units[1], units[4], units[-1]]  # residual mbconv, hswish mbconv (k7, stride 2), classifier


def test_int8_units_are_the_int8_exporters_models(small_units, tmp_path):
    """A table's int8 unit is what ``tflite-int8`` export makes of that unit alone: same quantizer, same
    calibration data, so the same int8 outputs on the same int8 input (after the batch split)."""
    import torch

    from edgenas.exporters.convert import quantize_int8, tflite_fp32_bytes

    rt = get_runtime("litert", 1, {"precision": "int8"})
    torch.manual_seed(0)  # initial weights (the corr floor below is judged on them)
    items = [ExportItem(u.key, u.build().eval(), (u.cin, u.hw, u.hw)) for u in small_units]
    paths = rt.export_many(items, tmp_path)
    assert set(paths) == {u.key for u in small_units}
    for item in items:
        path = paths[item.key]
        it = _interpreter(path)
        assert it.get_input_details()[0]["dtype"] == np.int8 and it.get_output_details()[0]["dtype"] == np.int8
        exported = quantize_int8(tflite_fp32_bytes(item.module, item.input_shape), representative(item.input_shape))
        x = np.random.default_rng(3).standard_normal((1, *item.input_shape)).astype(np.float32)
        xq = _quantized_input(path, x)
        assert np.array_equal(xq, _quantized_input(exported, x)), item.key
        y = _run_int8(path, xq)
        assert np.array_equal(y, _run_int8(exported, xq)), item.key
        with torch.no_grad():
            ref = item.module(torch.from_numpy(x)).numpy().ravel()
        got = _dequantized_output(path, y).ravel()
        # a faithful int8 model, not just a valid file (the 10-logit classifier has the coarsest match)
        assert np.corrcoef(got, ref)[0, 1] > (0.99 if ref.size > 50 else 0.9), item.key
    samples = rt.time(paths[items[1].key], warmup=2, repeats=5)
    assert len(samples) == 5 and all(s > 0 for s in samples)


def test_int8_unit_with_large_weights_loads(tmp_path):
    """Quantized models with more than 256 KiB of weights keep their buffers outside the flatbuffer;
    the compacted model must still carry them."""
    import torch

    from edgenas.layers import ConvLayer

    unit = ConvLayer(512, 4, cout=640, k=1)  # 327,680 int8 weights
    rt = get_runtime("litert", 1, {"precision": "int8"})
    torch.manual_seed(0)
    module = unit.build().eval()
    path = rt.export_many([ExportItem(unit.key, module, (512, 4, 4))], tmp_path)[unit.key]
    assert path.stat().st_size > 512 * 640
    x = np.random.default_rng(0).standard_normal((1, 512, 4, 4)).astype(np.float32)
    got = _dequantized_output(path, _run_int8(path, _quantized_input(path, x))).ravel()
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy().ravel()
    assert np.corrcoef(got, ref)[0, 1] > 0.99


# -- a search on the int8 device, then its validation -----------------------------------------------
SPACE = get_space("tiny", resolutions=[32], widths=[0.5], kernels=[3], expands=[3])
TASK = Task(num_classes=10, in_channels=1)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A search from a TOML job naming the int8 device (``[device] name = ...``) into an empty user
    folder: it builds the device's table lazily (every unit of the space, then a calibration on whole
    int8 networks). Returns (user folder, run folder)."""
    root = tmp_path_factory.mktemp("int8-search")
    cfg = root / "job.toml"
    cfg.write_text(
        "[space]\nname = 'tiny'\noptions = { resolutions = [32], widths = [0.5], kernels = [3], expands = [3] }\n"
        "[task]\nnum_classes = 10\nin_channels = 1\n"
        f"[device]\nname = '{INT8_DEVICE}'\ndevices_dir = '{root / 'user'}'\n"
        "[estimator]\nname = 'params'\n"
        "[search]\nobjectives = ['params', 'latency_ms']\nsampler = 'random'\ntrials = 4\nseed = 0\n"
    )
    assert main([str(x) for x in ("search", cfg, "--out", root / "run", "--no-progress", "-q")]) == 0
    return root / "user", root / "run"


def test_search_targets_int8_device_and_builds_its_table_lazily(searched, capsys):
    user, run = searched
    store = DeviceStore(user)
    path = store.write_path(store.device(INT8_DEVICE), "tiny")
    table = LatencyTable.load(path)
    assert table.runtime["precision"] == "int8" and table.model.fitted_on == 10  # the lazy calibration
    assert {u.key for s in SPACE.covering_specs() for u in SPACE.units(s, TASK)} <= set(table.entries)
    front = json.loads((run / "front.json").read_text())
    assert front and all(r["latency_ms"] > 0 for r in front)
    pred = LatencyPredictor(SPACE, INT8_DEVICE, store, lazy=False)
    for r in front:
        assert r["latency_ms"] == pytest.approx(pred.predict(SPACE.parse(r["arch"]), TASK))
    mtime = path.stat().st_mtime_ns
    code, out, err = run_cli(capsys, "search", *SPACE_ARGS, "--classes", "10", "--in-channels", "1", "--device",
                             INT8_DEVICE, "--devices-dir", str(user), "--estimator", "params", "--objectives",
                             "params,latency_ms", "--trials", "2", "--sampler", "random",
                             "--out", str(run.parent / "b"), "--no-progress", "-q")
    assert code == 0, out + err
    assert path.stat().st_mtime_ns == mtime  # the table covers the space: nothing measured again


def test_profile_int8_device_validates_on_quantized_networks(searched, capsys):
    user, _ = searched
    code, out, err = run_cli(capsys, "profile", "--device", INT8_DEVICE, *SPACE_ARGS, "--random", "2",
                             "--validate", "3", "--calibrate", "5", "--repeats", "10", "--devices-dir", str(user),
                             "--jobs", "1")
    assert code == 0, out + err
    store = DeviceStore(user)
    table = LatencyTable.load(store.write_path(store.device(INT8_DEVICE), "tiny"))
    assert table.validation and table.validation["n"] == 3 and table.model.fitted_on == 5
    cache = user / "cache" / INT8_DEVICE / "tiny"
    for spec in SPACE.sample(3, 0):  # the validation networks, as timed: full-integer .tflite files
        it = _interpreter(cache / "networks" / (file_stem(str(spec)) + ".tflite"))
        assert it.get_input_details()[0]["dtype"] == np.int8 and it.get_output_details()[0]["dtype"] == np.int8


def test_export_card_puts_the_int8_artifacts_latency_beside_the_int8_tables_prediction(searched, capsys):
    """A run on the int8 device: the exported full-integer .tflite is what that device times, so the card
    pairs its prediction with the int8 artifact's latency measured on this host."""
    _, run = searched
    front = json.loads((run / "front.json").read_text())
    trial = front[0]["trial"]
    out = run.parent / "export"
    code, stdout, err = run_cli(capsys, "export", str(run), "--trials", str(trial), "--formats", "tflite-int8",
                                "--train-epochs", "3", "--dataset", "digits", "--out", str(out))
    assert code == 0, stdout + err
    card = json.loads((out / f"trial_{trial:04d}" / "model_card.json").read_text())
    (row,) = card["latency"]["predicted_by_device"]
    assert row["device"] == INT8_DEVICE and row["format"] == "tflite-int8"
    assert row["predicted_ms"] == pytest.approx(front[0]["latency_ms"])
    assert row["measured_ms"] == card["latency"]["measured_on_host"]["tflite-int8"] > 0
    assert row["measured_over_predicted"] == pytest.approx(row["measured_ms"] / row["predicted_ms"], rel=1e-3)
