"""Latency: table format, device specs, published-table import, profiling, prediction, kits.

Profiling tests run the real ONNX Runtime and LiteRT interpreters on small units; timing *accuracy*
targets live in benchmarks/latency_fidelity.py, not here.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgenas import EdgenasError, get_space
from edgenas.latency import DeviceStore, LatencyPredictor, LatencyTable, MissingEntriesError
from edgenas.latency.devices import parse_device
from edgenas.latency.passes import PairedSamples
from edgenas.latency.profile import Profiler
from edgenas.latency.runtimes import ExportItem, get_runtime, runtime_names
from edgenas.latency.table import DeviceModel, Entry
from edgenas.testing.cli import run_cli

TUTORIAL = "mbv3:w1.2:r192:k5e3-k3e3_k5e4-k3e4_k7e6-k7e3-k3e4_k5e4-k5e4-k7e4-k3e3_k3e6-k3e6-k5e6"


# -- table format -------------------------------------------------------------------------------
def _table() -> LatencyTable:
    return LatencyTable(
        device="dev", space="tiny", runtime={"name": "onnxruntime", "version": "x", "threads": 1, "options": {}},
        entries={"a": Entry(1.0, 0.1, 0.9, 10), "b": Entry(2.0, 0.2, 2.1, 10)},
        model=DeviceModel(overhead_ms=0.5, scale=1.1, per_unit_ms=-0.01, fitted_on=5, terms={"macs_m": 0.001}),
        scoped={"r64": {"a": Entry(3.0, 0.1, 3.0, 5)}},
    )


def test_table_round_trip(tmp_path):
    t = _table()
    p = t.save(tmp_path / "t.json")
    u = LatencyTable.load(p)
    assert u.to_json() == t.to_json()
    assert u.predict_ms(["a", "b"], {"macs_m": 10.0}) == pytest.approx(0.5 + 1.1 * 3.0 - 0.02 + 0.01)
    assert u.predict_ms(["a", "b"], {"macs_m": 10.0}, scope="r64") == pytest.approx(0.5 + 1.1 * 5.1 - 0.02 + 0.01)
    assert json.loads(p.read_text())["format"] == "edgenas-latency-table"


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.update(format="something-else"), "not an edgenas latency table"),
        (lambda d: d.update(version=99), "format version 99"),
        (lambda d: d.pop("device"), "'device' missing"),
        (lambda d: d["entries"]["a"].update(p50_ms=-1), "negative or non-finite"),
        (lambda d: d["entries"]["a"].pop("n"), "needs numeric"),
        (lambda d: d["model"].update(kind="gbm"), "device model kind"),
        (lambda d: d.update(key_format="other-v9"), "key format"),
    ],
)
def test_corrupt_or_foreign_table_is_rejected(tmp_path, mutate, needle):
    d = _table().to_json()
    mutate(d)
    p = tmp_path / "t.json"
    p.write_text(json.dumps(d))
    with pytest.raises(EdgenasError, match=needle):
        LatencyTable.load(p)


def test_truncated_table_exits_2_via_cli(tmp_path, capsys):
    store = tmp_path / "store"
    (store / "latency_tables").mkdir(parents=True)
    (store / "latency_tables" / "local-cpu-ort__tiny.json").write_text('{"format": "edgenas-latency-tab')
    code, _, err = run_cli(capsys, "lut", "show", "--device", "local-cpu-ort", "--space", "tiny",
                           "--devices-dir", str(store))
    assert code == 2 and "not valid JSON" in err and len(err.strip().splitlines()) == 1


# -- devices ------------------------------------------------------------------------------------
def test_shipped_devices_and_store_lookup(tmp_path):
    store = DeviceStore(tmp_path)
    names = {d.name for d in store.devices()}
    assert {"local-cpu-ort", "local-cpu-litert", "local-cpu-litert-int8", "local-cpu-ort-t2", "local-cpu-litert-t2",
            "local-cpu-litert-int8-t2", "local-cpu-litert-int8-builtin"} <= names
    ort = store.device("local-cpu-ort")
    assert ort.runtime == "onnxruntime" and ort.local and ort.threads >= 1
    for name in ("local-cpu-ort-t2", "local-cpu-litert-t2", "local-cpu-litert-int8-t2"):
        t2 = store.device(name)  # the multi-thread variants differ from their 1-thread device in threads only
        one = store.device(name.removesuffix("-t2"))
        assert (t2.threads, one.threads) == (2, 1)
        assert (t2.runtime, t2.precision, t2.runtime_options) == (one.runtime, one.precision, one.runtime_options)
    # multi-thread devices are timed alone (a second session's idle thread pool slows them), others paired
    assert Profiler(store.device("local-cpu-ort-t2"), store).paired is False
    assert Profiler(ort, store).paired is True and Profiler(ort, store, paired=False).paired is False
    builtin = store.device("local-cpu-litert-int8-builtin")
    assert builtin.precision == "int8" and builtin.runtime_options.get("delegate") == "none"
    # a user spec shadows the packaged one
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "local-cpu-ort.toml").write_text(
        'name = "local-cpu-ort"\nruntime = "onnxruntime"\nthreads = 2\nlocal = true\n')
    assert store.device("local-cpu-ort").threads == 2
    with pytest.raises(EdgenasError, match="unknown device 'nope'"):
        store.device("nope")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"name": "x", "runtime": "tensorrt"}, "'runtime' must be one of"),
        ({"name": "x", "runtime": "litert", "threads": 0}, "'threads' must be a positive integer"),
        ({"name": "x", "runtime": "litert", "memory": {"ram_bytes": -5}}, "ram_bytes must be a positive"),
        ({"name": "x", "runtime": "litert", "colour": "red"}, "unknown key"),
        ({"runtime": "litert"}, "needs a 'name'"),
        ({"name": "x", "runtime": "litert", "runtime_options": {"delegate": "tpu"}},
         "delegate must be one of xnnpack, cpu, none, gpu, nnapi, hexagon, got 'tpu'"),
        ({"name": "x", "runtime": "litert", "local": True, "runtime_options": {"delegate": "gpu"}},
         "delegate 'gpu' cannot run on this host"),
        ({"name": "x", "runtime": "onnxruntime", "runtime_options": {"delegate": "none"}},
         "delegate is a litert option; runtime 'onnxruntime' has none"),
    ],
)
def test_bad_device_spec(data, needle):
    with pytest.raises(EdgenasError, match=needle):
        parse_device(data, "x.toml")


# -- published tables ---------------------------------------------------------------------------
def _ofa_reference_sum(lut: dict, spec: dict) -> float:
    """OFA's tutorial `predict_network_latency_given_spec`, re-implemented independently on raw keys."""
    def q(kind, i, o, **kw):
        key = f"{kind}-input:{'x'.join(map(str, i))}-output:{'x'.join(map(str, o))}"
        if kind == "expanded_conv":
            key += "-expand:{mid}-kernel:{ks}-stride:{stride}-idskip:{idskip}-se:{se}-hs:{hs}".format(**kw)
        return lut[key]["mean"]

    r = spec["r"]
    f = (r + 1) // 2
    lat = q("Conv", [r, r, 3], [f, f, 24]) + q("expanded_conv", [f, f, 24], [f, f, 24], mid=24, ks=3, stride=1,
                                                  idskip=1, se=0, hs=0)
    cin = 24
    for i in range(20):
        st = i // 4
        if i % 4 + 1 > spec["d"][st]:
            continue
        s, idskip = ((2, 2, 2, 1, 2)[st], 0) if i % 4 == 0 else (1, 1)
        cout = (32, 48, 96, 136, 192)[st]
        of = int((f - 1) / s + 1)
        lat += q("expanded_conv", [f, f, cin], [of, of, cout], mid=round(cin * spec["e"][i]), ks=spec["ks"][i],
                 stride=s, idskip=idskip, se=(0, 1, 0, 1, 1)[st], hs=int(st >= 2))
        f, cin = of, cout
    return (lat + q("Conv_1", [f, f, 192], [f, f, 1152]) + q("AvgPool2D", [f, f, 1152], [1, 1, 1152])
            + q("Conv_2", [1, 1, 1152], [1, 1, 1536]) + q("Logits", [1, 1, 1536], [1000]))


def test_ofa_import_reproduces_tutorial_and_reference(shared_data, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "lut", "import", "--format", "ofa", "--device", "note10-ofa",
                           str(shared_data / "ofa" / "note10"), "--devices-dir", str(tmp_path))
    assert code == 0 and "imported" in out
    sp = get_space("mbv3")
    pred = LatencyPredictor(sp, "note10-ofa", DeviceStore(tmp_path))
    assert round(pred.predict(sp.parse(TUTORIAL)), 2) == 24.73
    luts = {r: yaml.safe_load((shared_data / "ofa" / "note10" / f"{r}_lookup_table.yaml").read_text())
            for r in (160, 176, 192, 208, 224)}
    for spec in get_space("mbv3", resolutions=[160, 176, 192, 208, 224]).sample(60, seed=3):
        ref = _ofa_reference_sum(luts[spec.r], sp.to_json(spec))
        assert pred.predict(spec) == pytest.approx(ref, abs=1e-9), str(spec)
    code, out, _ = run_cli(capsys, "describe", "--space", "mbv3", "--arch", TUTORIAL, "--device", "note10-ofa",
                           "--devices-dir", str(tmp_path), "--json")
    assert code == 0 and round(json.loads(out)[0]["latency_ms"], 2) == 24.73


def test_proxyless_import_sums_published_means(shared_data, tmp_path, capsys):
    path = shared_data / "proxylessnas" / "mobile_trim.yaml"
    code, _, _ = run_cli(capsys, "lut", "import", "--format", "proxyless", "--device", "pixel1-proxyless", str(path),
                         "--devices-dir", str(tmp_path))
    assert code == 0
    lut = yaml.safe_load(path.read_text())
    sp = get_space("proxyless")
    pred = LatencyPredictor(sp, "pixel1-proxyless", DeviceStore(tmp_path))
    spec = sp.parse("proxyless:w1.0:r224:k3e6-k3e3_k5e6_k7e6-k3e3-k3e3-k3e3_k5e3_k7e6-k5e6_k3e6")
    expect = lut["Conv-input:224x224x3-output:112x112x32"]["mean"]
    expect += lut["expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0"]["mean"]
    plan = [("112x112x16", "56x56x24", [(3, 6), (3, 3)], 2), ("56x56x24", "28x28x40", [(5, 6)], 2),
            ("28x28x40", "14x14x80", [(7, 6), (3, 3), (3, 3), (3, 3)], 2), ("14x14x80", "14x14x96", [(5, 3)], 1),
            ("14x14x96", "7x7x192", [(7, 6), (5, 6)], 2), ("7x7x192", "7x7x320", [(3, 6)], 1)]
    for inp, outp, blocks, stride in plan:
        for j, (k, e) in enumerate(blocks):
            i_shape = inp if j == 0 else outp
            s, skip = (stride, 0) if j == 0 else (1, 1)
            key = f"expanded_conv-input:{i_shape}-output:{outp}-expand:{e}-kernel:{k}-stride:{s}-idskip:{skip}"
            expect += lut[key]["mean"]
    expect += lut["Conv_1-input:7x7x320-output:7x7x1280"]["mean"] + lut["Logits-input:7x7x1280-output:1000"]["mean"]
    assert pred.predict(spec) == pytest.approx(expect, rel=1e-12)


def test_import_rejects_wrong_format(shared_data, tmp_path, capsys):
    code, _, err = run_cli(capsys, "lut", "import", "--format", "ofa", "--device", "x",
                           str(shared_data / "proxylessnas" / "mobile_trim.yaml"), "--devices-dir", str(tmp_path))
    assert code == 2 and "check --format" in err


def test_remote_device_without_entries_names_the_fix(tmp_path, capsys):
    store = DeviceStore(tmp_path)
    t = LatencyTable(device="note10-ofa", space="mbv3", runtime={"name": "published"}, entries={})
    t.save(store.write_path(store.device("note10-ofa"), "mbv3"))
    code, _, err = run_cli(capsys, "describe", "--space", "mbv3", "--arch", TUTORIAL, "--device", "note10-ofa",
                           "--devices-dir", str(tmp_path))
    assert code == 2 and "lacks 20 unit(s)" in err and "edgenas profile kit --device note10-ofa" in err
    with pytest.raises(MissingEntriesError):
        LatencyPredictor(get_space("mbv3"), "note10-ofa", store).predict(get_space("mbv3").parse(TUTORIAL))


# -- runtimes (contract over every registered runtime) --------------------------------------------
@pytest.fixture(scope="module")
def small_units():
    sp = get_space("tiny", resolutions=[32], widths=[0.5])
    spec = sp.parse("tiny:w0.5:r32:k3e3_k5e4_k7e6_k3e3")
    return [u for u in sp.units(spec)][:4]


@pytest.mark.slow  # converts and times micro-models
@pytest.mark.parametrize("name", runtime_names())
def test_runtime_exports_faithful_models_and_times_them(name, small_units, tmp_path):
    import torch

    rt = get_runtime(name, threads=1)
    items = [ExportItem(u.key, u.build().eval(), (u.cin, u.hw, u.hw)) for u in small_units]
    paths = rt.export_many(items, tmp_path)
    assert set(paths) == {u.key for u in small_units}
    for item in items:
        p = paths[item.key]
        assert p.suffix == rt.suffix and p.stat().st_size > 0
        x = np.random.default_rng(0).standard_normal((1, *item.input_shape)).astype(np.float32)
        y = _run_model(name, p, x)
        with torch.no_grad():
            ref = item.module(torch.from_numpy(x)).numpy()
        assert np.allclose(y.reshape(ref.shape), ref, atol=1e-4), item.key
        samples = rt.time(p, warmup=2, repeats=5)
        assert len(samples) == 5 and all(s > 0 for s in samples)


def _run_model(runtime: str, path: Path, x: np.ndarray) -> np.ndarray:
    if runtime == "onnxruntime":
        import onnxruntime as ort

        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    (inp,) = it.get_input_details()
    it.set_tensor(inp["index"], x.reshape(inp["shape"]))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


# -- profiling, lazy prediction, validation -------------------------------------------------------
@pytest.mark.slow  # profiles latency
def test_profile_is_resumable_and_validates(tmp_path, capsys):
    args = ["profile", "--device", "local-cpu-ort", "--space", "tiny", "--space-opt", "widths=[0.5]",
            "--resolutions", "32", "--random", "4", "--validate", "6", "--calibrate", "4", "--repeats", "10",
            "--devices-dir", str(tmp_path), "--jobs", "1"]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0, out
    first = out.split(" measured now")[0].rsplit(" ", 1)[1]  # units of the 4 specs
    path = tmp_path / "latency_tables" / "local-cpu-ort__tiny.json"
    table = LatencyTable.load(path)
    assert table.validation and table.validation["n"] == 6 and table.model.fitted_on == 4
    assert path.with_suffix(".png").stat().st_size > 1000
    n_entries = len(table.entries)
    code, out, _ = run_cli(capsys, *args[:-6], "--validate", "0", "--devices-dir", str(tmp_path), "--jobs", "1")
    assert code == 0 and "0 measured now" in out
    assert len(LatencyTable.load(path).entries) == n_entries
    timing = table.validation["timing"]  # what background load the session saw
    assert timing["blocks"] > 0 and 0 <= timing["loaded_blocks"] <= timing["blocks"]
    code, out, _ = run_cli(capsys, *args[:-6], "--validate", "0", "--remeasure", "--devices-dir", str(tmp_path),
                           "--jobs", "1")
    assert code == 0 and f"{first} measured now" in out


@pytest.mark.slow  # profiles latency
def test_lazy_prediction_measures_missing_units_on_local_device(tmp_path, capsys):
    sp = get_space("tiny", resolutions=[32], widths=[0.5])
    store = DeviceStore(tmp_path)
    pred = LatencyPredictor(sp, "local-cpu-ort", store, show_progress=False)
    spec = sp.sample(1, 5)[0]
    ms = pred.predict(spec)
    assert ms > 0
    saved = LatencyTable.load(store.write_path(store.device("local-cpu-ort"), "tiny"))
    assert {u.key for u in sp.units(spec)} <= set(saved.entries)
    code, out, _ = run_cli(capsys, "lut", "predict", "--device", "local-cpu-ort", "--space", "tiny", "--arch",
                           str(spec),
                           "--devices-dir", str(tmp_path), "--no-measure", "--json")
    assert code == 0 and json.loads(out)[0]["latency_ms"] == pytest.approx(ms)
    other = [arg for s in sp.sample(3, 99) for arg in ("--arch", str(s))]
    code, _, err = run_cli(capsys, "lut", "predict", "--device", "local-cpu-ort", "--space", "tiny",
                           *other, "--devices-dir", str(tmp_path), "--no-measure")
    assert code == 2 and "edgenas profile --device local-cpu-ort --space tiny" in err


# -- on-device kit --------------------------------------------------------------------------------
@pytest.mark.slow  # times a kit
def test_kit_round_trip_with_runner_that_cannot_import_torch_or_edgenas(tmp_path, capsys):
    kit = tmp_path / "kit"
    code, out, _ = run_cli(capsys, "profile", "kit", "--device", "local-cpu-ort", "--space", "tiny",
                           "--space-opt", "widths=[0.5]", "--resolutions", "32", "--random", "6", "--networks", "10",
                           "--out", str(kit), "--devices-dir", str(tmp_path), "--jobs", "1")
    assert code == 0, out
    manifest = json.loads((kit / "manifest.json").read_text())
    assert manifest["entries"] and len(manifest["networks"]) == 10 and (kit / "runner.py").exists()
    assert all(n["features"]["unit_io_melems"] > 0 for n in manifest["networks"])
    blocker = (
        "import sys, runpy\n"
        "for name in ('torch', 'edgenas'):\n"
        "    sys.modules[name] = None  # any import of them raises ImportError\n"
        f"sys.argv = ['runner.py', {str(kit)!r}, '--repeats', '5', '--warmup', '1', '--quiet']\n"
        f"runpy.run_path({str(kit / 'runner.py')!r}, run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=300, cwd=kit)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((kit / "results.json").read_text())
    assert results["format"] == "edgenas-kit-results" and len(results["networks"]) == 10
    assert results["network_features"] == {n["key"]: n["features"] for n in manifest["networks"]}
    code, out, _ = run_cli(capsys, "lut", "import-kit", str(kit / "results.json"), "--device", "my-board",
                           "--devices-dir", str(tmp_path))
    assert code == 0 and "created device spec" in out
    assert DeviceStore(tmp_path).device("my-board").runtime == "onnxruntime"
    assert (tmp_path / "latency_tables" / "my-board__tiny.json").exists()
    code, out, _ = run_cli(capsys, "lut", "import-kit", str(kit / "results.json"), "--devices-dir", str(tmp_path))
    assert code == 0 and "validation on 5 random networks" in out
    table = LatencyTable.load(tmp_path / "latency_tables" / "local-cpu-ort__tiny.json")
    assert table.source.startswith("kit:") and table.model.fitted_on == 10


def test_runner_refuses_non_kit(tmp_path):
    runner = Path(__file__).resolve().parents[2] / "devices" / "runner.py"
    proc = subprocess.run([sys.executable, str(runner), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "manifest.json not found" in proc.stderr


def _stored_table(store: DeviceStore, device: str, runtime: dict, host: dict | None = None) -> LatencyTable:
    from edgenas.latency.table import host_info

    sp = get_space("tiny", resolutions=[32], widths=[0.5])
    table = LatencyTable(device=device, space="tiny", runtime=runtime,
                         entries={u.key: Entry(99.0, 0.0, 99.0, 1) for u in sp.units(sp.sample(1, 1)[0])},
                         host=host or host_info())
    table.save(store.write_path(store.device(device), "tiny"))
    return table


def test_local_table_from_another_cpu_is_not_trusted(tmp_path, capsys):
    """A local device's table from another CPU is set aside: the profiler starts an empty one (which the
    lazy path then fills by measuring, as in the lazy-prediction test above)."""
    from edgenas.latency.profile import Profiler

    store = DeviceStore(tmp_path)
    _stored_table(store, "local-cpu-ort", {"name": "onnxruntime", "threads": 1}, {"cpu": "Some Other CPU 9000"})
    table, _ = Profiler(store.device("local-cpu-ort"), store, show_progress=False).open_table("tiny")
    assert not table.entries  # nothing of the foreign table is used
    assert "profiling local-cpu-ort/tiny afresh" in capsys.readouterr().err


def test_table_of_another_runtime_configuration_is_not_trusted(tmp_path, capsys):
    """Editing a local device's delegate, threads or precision makes its old table describe another setup:
    set aside. A table written before the delegate option existed matches the default (xnnpack)."""
    from edgenas.latency.profile import Profiler

    store = DeviceStore(tmp_path)
    old = {"name": "litert", "threads": 1, "options": {}, "precision": "fp32"}  # no delegate recorded
    _stored_table(store, "local-cpu-litert", old)
    table, _ = Profiler(store.device("local-cpu-litert"), store, show_progress=False).open_table("tiny")
    assert table.entries and "afresh" not in capsys.readouterr().err
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "local-cpu-litert.toml").write_text(
        'name = "local-cpu-litert"\nruntime = "litert"\nthreads = 1\nlocal = true\n'
        '[runtime_options]\ndelegate = "none"\n')
    cache = tmp_path / "cache" / "local-cpu-litert" / "tiny"
    cache.mkdir(parents=True)
    profiler = Profiler(store.device("local-cpu-litert"), store, show_progress=False)
    table, _ = profiler.open_table("tiny")
    assert not table.entries and table.runtime["delegate"] == "none"
    assert "another runtime configuration (delegate 'xnnpack' -> 'none')" in capsys.readouterr().err
    assert cache.is_dir()  # the same model files serve either delegate: kept
    _stored_table(store, "local-cpu-litert", {**old, "threads": 2})
    profiler.open_table("tiny")
    assert "(threads 2 -> 1, delegate 'xnnpack' -> 'none')" in capsys.readouterr().err


@pytest.mark.slow  # converts a model
def test_litert_delegate_option_sets_the_timed_configuration(tmp_path):
    """``delegate = "none"`` times LiteRT's built-in kernels (no DELEGATE node in the interpreter),
    the default hands the graph to XNNPACK; both through the runner every timing uses."""
    import torch

    from edgenas.devices.runner import make_runner, time_model

    rt = get_runtime("litert", 1, {"delegate": "none"})
    assert rt.describe()["delegate"] == "none" and get_runtime("litert", 1).describe()["delegate"] == "xnnpack"
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 7, padding=3, groups=8), torch.nn.Hardswish()).eval()
    path = rt.export_many([ExportItem("m", module, (8, 16, 16))], tmp_path)["m"]
    ops = {}
    for delegate in ("xnnpack", "none"):
        run, _ = make_runner(str(path), "litert", 1, {"delegate": delegate})
        ops[delegate] = [d["op_name"] for d in run.__self__._get_ops_details()]
    assert ops["xnnpack"].count("DELEGATE") == 1 and "DELEGATE" not in ops["none"]
    assert len(time_model(str(path), "litert", 1, warmup=1, repeats=3, options={"delegate": "none"})) == 3
    with pytest.raises(ValueError, match="delegate must be one of"):
        make_runner(str(path), "litert", 1, {"delegate": "gpu"})


def _synthetic_networks(n: int, io_coef: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    s, units, io = rng.uniform(2, 8, n), rng.integers(40, 60, n), rng.uniform(0.5, 3.0, n)
    y = (0.3 + 1.2 * s - 0.01 * units + io_coef * io) * (1 + 0.003 * rng.standard_normal(n))
    return s, units, io, y


def test_device_model_adds_a_context_term_only_when_it_predicts_better():
    from edgenas.latency.validate import fit_device_model

    s, n, io, y = _synthetic_networks(20, io_coef=-0.4)
    m = fit_device_model(s, n, y, [{"unit_io_melems": v} for v in io])
    assert set(m.terms) == {"unit_io_melems"} and m.terms["unit_io_melems"] == pytest.approx(-0.4, rel=0.1)
    assert m.scale == pytest.approx(1.2, rel=0.05)
    assert m.apply(s[0], n[0], {"unit_io_melems": io[0]}) == pytest.approx(y[0], rel=0.01)
    # no such effect in the data: the term is left out (or fitted at ~0)
    s, n, io, y = _synthetic_networks(20, io_coef=0.0, seed=1)
    m = fit_device_model(s, n, y, [{"unit_io_melems": v} for v in io])
    assert abs(m.terms.get("unit_io_melems", 0.0)) < 0.02
    # too few networks to judge an extra parameter: plain affine model
    s, n, io, y = _synthetic_networks(8, io_coef=-0.4, seed=2)
    assert fit_device_model(s, n, y, [{"unit_io_melems": v} for v in io]).terms == {}


def test_device_model_never_counts_a_unit_below_zero():
    """Calibration networks timed under load can pull per_unit below what the table's fastest unit
    allows, and small networks then came out at negative latencies: the fit is bounded by
    ``min_unit_ms``; on consistent timings the bound is inactive and the fit unchanged."""
    from edgenas.latency.validate import fit_device_model

    s, n, _, y = _synthetic_networks(12, io_coef=0.0, seed=3)
    free = fit_device_model(s, n, y)
    assert free.per_unit_ms == pytest.approx(-0.01, abs=2e-3)
    same = fit_device_model(s, n, y, min_unit_ms=0.05)  # 0.05 * scale > 0.01: inactive
    assert (same.overhead_ms, same.scale, same.per_unit_ms) == (free.overhead_ms, free.scale, free.per_unit_ms)
    # networks whose measured time falls with their unit count far more than their units allow
    rng = np.random.default_rng(4)
    n = rng.integers(20, 80, 12).astype(float)
    s = 0.012 * n * rng.uniform(0.9, 1.1, 12)  # units of ~0.012 ms, the fastest 0.01 ms
    y = 0.4 + 1.5 * s - 0.025 * n + 0.3
    assert fit_device_model(s, n, y).apply(0.01 * 80, 80) < 0  # unbounded: 80 of the fastest units < 0 ms
    m = fit_device_model(s, n, y, min_unit_ms=0.01)
    assert m.per_unit_ms == pytest.approx(-m.scale * 0.01) and m.overhead_ms >= 0
    assert m.apply(0.01 * 80, 80) == pytest.approx(m.overhead_ms, abs=1e-9)  # the fastest units count zero
    assert all(m.apply(a, b) > 0 for a, b in zip(s, n))


def test_unit_io_feature_counts_unit_boundaries():
    from edgenas.latency.features import spec_features

    space = get_space("tiny")
    spec = space.sample(1, seed=3)[0]
    units = space.units(spec)
    value = spec_features(["unit_io_melems"], space, spec)["unit_io_melems"]
    first, last = units[0], units[-1]
    assert first.cin * first.hw**2 / 1e6 < value  # at least the network input is counted
    assert value == pytest.approx(sum(u.cin * max(u.hw, 1) ** 2 + int(np.prod([max(d, 1) for d in u.out_shape]))
                                      for u in units) / 1e6)
    assert last.out_shape[1] == 0  # the classifier's flat output counts its C elements


class _LoadedMachine:
    """A simulated host: every timing call advances a clock; calls in [start, stop) run 1.5x slower."""

    def __init__(self, loaded: tuple[int, int]) -> None:
        self.clock, self.loaded = 0, loaded

    def factor(self) -> float:
        self.clock += 1
        return 1.5 if self.loaded[0] <= self.clock < self.loaded[1] else 1.0


def test_timed_passes_remeasure_what_background_load_touched():
    from edgenas.latency.passes import timed_passes

    true = {f"u{i}": 0.1 + 0.01 * i for i in range(100)}
    # load spans the first two passes' overlap region (both passes of the same units are hit)
    host = _LoadedMachine(loaded=(40, 190))

    def measure(k):
        v = true[k] * host.factor()
        return Entry(v, 0.0, v, 10)

    final, report = timed_passes(list(true), measure, lambda: 1.0 * host.factor(), rounds=2, block=10)
    assert report.loaded_blocks > 0 and report.remeasured > 0 and not report.unsettled
    assert {k: e.p50_ms for k, e in final.items()} == pytest.approx(true)
    assert "re-measured" in report.summary()
    assert report.warning(report.combine([report]), len(true)) is None  # load was seen and handled
    # a quiet machine: nothing flagged, nothing re-measured
    host = _LoadedMachine(loaded=(0, 0))
    final, report = timed_passes(list(true), measure, lambda: 1.0 * host.factor(), rounds=2, block=10)
    assert report.loaded_blocks == 0 and report.remeasured == 0 and report.summary() == ""
    # load that never ends: items keep their best time and are reported as unsettled
    host = _LoadedMachine(loaded=(30, 10**9))
    final, report = timed_passes(list(true), measure, lambda: 1.0 * host.factor(), rounds=2, block=10,
                                 extra_passes=2)
    assert report.unsettled and "never settled" in report.summary()
    assert "--remeasure" in report.warning(report.combine([report]), len(true))
    assert all(final[k].p50_ms in (pytest.approx(true[k]), pytest.approx(1.5 * true[k])) for k in true)


def test_timed_passes_remeasure_items_whose_passes_disagree():
    from edgenas.latency.passes import timed_passes

    true = {f"u{i}": 1.0 + i for i in range(20)}
    calls: dict[str, int] = {}

    def measure(k):  # u3's first two timings are hit by load the sentinel does not feel; it settles when
        # two timings agree: after its 4th (1.0x, 1.0x)
        calls[k] = calls.get(k, 0) + 1
        v = true[k] * (1.3 if k == "u3" and calls[k] == 1 else 1.0) * (1.2 if k == "u3" and calls[k] == 2 else 1.0)
        return Entry(v, 0.0, v, 10)

    final, report = timed_passes(list(true), measure, lambda: 1.0, rounds=2, block=5)
    assert report.loaded_blocks == 0 and report.remeasured == 1 and calls["u3"] == 4 and not report.unsettled
    assert final["u3"].p50_ms == pytest.approx(true["u3"]) and calls["u0"] == 2


class _LevelMachine:
    """A host whose speed switches between a full-speed and a slow level every few calls (seeded). The
    slow level slows the sentinel 1.6x but each item by its own factor (1.2-1.6x): speed levels do not
    scale every model alike, as measured on a VM host."""

    def __init__(self, seed: int, p_fast: float = 0.5, run: int = 3) -> None:
        self.rng = random.Random(seed)
        self.p_fast, self.run, self.left, self.fast = p_fast, run, 0, True

    def tick(self) -> bool:
        if self.left == 0:
            self.fast, self.left = self.rng.random() < self.p_fast, self.rng.randint(1, self.run)
        self.left -= 1
        return self.fast


def _paired_window(host: _LevelMachine, item_ms: float, slow: float, groups: int, per_group: bool) -> PairedSamples:
    """A simulated paired window of ``groups`` groups of 5 runs (sentinel 1.0 ms at full speed, 1.6 ms slow):
    the host's speed level changes between groups (``per_group``) or only between windows."""
    item, ref = [], []
    fast = host.tick()
    for _ in range(groups):
        ref += [1.0 if fast else 1.6] * 5
        fast = host.tick() if per_group else fast
        item += [item_ms * (1.0 if fast else slow)] * 5
    ref += [1.0 if fast else 1.6] * 5  # the closing sentinel group
    return PairedSamples(item, ref, 5)


def test_paired_timing_keeps_only_full_speed_windows():
    from edgenas.latency.passes import timed_passes

    true = {f"u{i}": 0.1 + 0.01 * i for i in range(60)}
    slow = {k: 1.2 + 0.4 * (i % 5) / 4 for i, k in enumerate(true)}
    host = _LevelMachine(seed=3)

    def measure(k):
        return _paired_window(host, true[k], slow[k], 4, per_group=False)

    final, report = timed_passes(list(true), measure, None, rounds=2, extra_passes=6, paired=True)
    assert report.loaded_blocks > 0
    assert {k: e.p50_ms for k, e in final.items()} == pytest.approx(true)

    # the contrast: sentinel readings only between blocks miss the level changes inside a block
    host = _LevelMachine(seed=3)

    def measure_unpaired(k):
        return Entry.from_samples(measure(k).item_ms)

    final, _ = timed_passes(list(true), measure_unpaired, lambda: 1.0 if host.tick() else 1.6, rounds=2, block=10,
                            extra_passes=6)
    assert any(final[k].p50_ms > 1.1 * true[k] for k in true)


def test_paired_timing_gates_each_group_when_speed_changes_inside_a_window():
    """Level changes within one item's window: only item groups with full-speed sentinel groups on both
    sides count, so the kept median is the full-speed time even though most windows mix speeds."""
    from edgenas.latency.passes import timed_passes

    true = {f"n{i}": 10.0 + i for i in range(30)}
    host = _LevelMachine(seed=5, p_fast=0.6, run=4)
    windows = []

    def measure(k):
        windows.append(_paired_window(host, true[k], 1.3, 10, per_group=True))
        return windows[-1]

    final, report = timed_passes(list(true), measure, None, rounds=2, extra_passes=6, paired=True)
    assert {k: e.p50_ms for k, e in final.items()} == pytest.approx(true)
    assert not report.unsettled
    # the whole-window median would have mixed speeds: a window-level gate could not have kept these
    mixed = [w for w in windows if len(set(w.item_ms)) > 1]
    assert mixed and any(Entry.from_samples(w.item_ms).p50_ms > 1.1 * min(w.item_ms) for w in mixed)


def test_paired_reference_is_a_low_percentile_not_one_lucky_reading():
    from edgenas.latency.passes import PassReport

    r = PassReport(sentinel_ms=[0.5] + [1.0] * 300)
    assert r.reference_ms == 1.0
    assert PassReport(sentinel_ms=[0.9, 1.0, 1.2]).reference_ms == 0.9


def test_paired_timing_knows_a_slow_spell_from_earlier_sentinel_readings():
    """One file timed entirely during a slow spell has nothing faster to compare with; the sentinel's
    readings from earlier files on this host (what export keeps per process) tell the spell apart."""
    from edgenas.latency.passes import timed_passes

    calls = []

    def measure(k):  # the whole session runs slow until the 4th window, then at full speed
        calls.append(k)
        fast = len(calls) > 3
        runs = 5 * 4
        return PairedSamples([0.2 * (1.0 if fast else 1.5)] * runs, [1.0 if fast else 1.6] * (runs + 5), 5)

    alone, rep = timed_passes(["f"], measure, None, rounds=2, extra_passes=6, paired=True)
    assert rep.loaded_blocks == 0 and alone["f"].p50_ms == pytest.approx(0.3)  # slow, and cannot know it
    calls.clear()
    known, rep = timed_passes(["f"], measure, None, rounds=2, extra_passes=6, paired=True,
                              known_sentinel_ms=[1.0] * 40)
    assert rep.loaded_blocks == 3 and known["f"].p50_ms == pytest.approx(0.2)
    assert rep.sentinel_ms[:40] == [1.0] * 40 and not rep.unsettled
