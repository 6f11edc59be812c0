"""Native benchmark tools in on-device kits (edgenas.latency.native): the tools' log formats, the
device script and adb wrapper, and the import of raw logs.

The fixtures in tests/fixtures/native follow the tools' printing code (LiteRT/TF Lite
benchmark_model.cc, benchmark_tflite_model.cc, stats_calculator.cc in both its layouts; ONNX Runtime
perftest/performance_runner.cc) and published logs; see edgenas/latency/native.py. The round trips run
the real device script with stand-ins for the tools (tests/native_tools.py) that time the models
through the Python interpreters and print the tools' formats.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from edgenas import EdgenasError
from edgenas.latency import DeviceStore, LatencyTable
from edgenas.latency.devices import parse_device
from edgenas.latency.native import (
    LogError,
    native_settings,
    parse_benchmark_model,
    parse_log,
    parse_ort_perf_test,
    profile_summary,
)
from edgenas.testing.cli import run_cli

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "native"
TOOLS = Path(__file__).resolve().parents[1] / "native_tools.py"
KIT = "3c9f2b7e41d0"
TFLITE = "models/5f0b6a21c3d94e87.tflite"
ONNX = "models/5f0b6a21c3d94e87.onnx"


def fixture(name: str) -> str:
    return (FIX / name).read_text()


# -- parsing the tools' formats -----------------------------------------------------------------------
def test_benchmark_model_litert_log_with_delegate_profile():
    run = parse_log(FIX / "benchmark_model_litert.log", "benchmark_model", TFLITE, KIT, 1)
    assert run.n == 50 and run.threads == 1 and run.kit_id == KIT
    assert run.mean_ms == pytest.approx(0.18834) and run.p50_ms == run.mean_ms and run.std_ms == pytest.approx(0.003)
    assert "without [start] column" in run.fmt and "INFO-prefixed" in run.fmt
    primary = [o for o in run.ops if not o.delegate_internal]
    inner = [o for o in run.ops if o.delegate_internal]
    assert [o.node_type for o in primary] == ["TfLiteXNNPackDelegate"] and primary[0].avg_ms == pytest.approx(0.176)
    assert [o.node_type for o in inner] == ["Transpose (ND, X32)", "Clamp (NC, F32)", "Convolution (NHWC, F32) IGEMM",
                                            "Transpose (ND, X32)"]
    assert sum(o.avg_ms for o in inner) == pytest.approx(0.172)


def test_benchmark_model_tf2_cpu_log_with_start_column():
    run = parse_log(FIX / "benchmark_model_tf2_cpu.log", "benchmark_model", TFLITE, KIT, 4)
    assert run.threads == 4 and run.mean_ms == pytest.approx(0.48812) and "with [start] column" in run.fmt
    assert [(o.node_type, o.avg_ms) for o in run.ops] == [("TRANSPOSE", 0.041), ("CONV_2D", 0.402),
                                                          ("TRANSPOSE", 0.039)]
    # the device path (/data/local/tmp/...) matches the kit's model by file name
    assert run.model.startswith("/data/local/tmp/") and run.model.endswith(TFLITE)


@pytest.mark.parametrize(("name", "mean", "p50"), [("ort_perf_test_1.x.log", 0.207834, 0.204962),
                                                   ("ort_perf_test_total.log", 0.203248, 0.201577)])
def test_onnxruntime_perf_test_logs(name, mean, p50):
    run = parse_log(FIX / name, "onnxruntime_perf_test", ONNX, KIT, 1)
    assert run.n == 50 and run.threads == 1 and run.mean_ms == pytest.approx(mean) and run.p50_ms == pytest.approx(p50)
    assert run.std_estimated and 0 < run.std_ms < 0.02
    assert ("total" in run.fmt) == ("total" in name)


def _write(tmp_path: Path, text: str, name: str = "x.log") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _cut_before(text: str, needle: str) -> str:
    return text[: text.index(needle)]


def _line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


LITERT = fixture("benchmark_model_litert.log")
ORT = fixture("ort_perf_test_1.x.log")


@pytest.mark.parametrize(
    ("text", "tool", "needle", "line"),
    [
        # truncated: before the timed runs end, inside the profile, without the script's closing line
        (_cut_before(LITERT, "INFO: Inference timings"), "benchmark_model", "truncated: no 'Inference timings", None),
        (_cut_before(LITERT, "1 nodes observed"), "benchmark_model", "truncated", None),
        (LITERT.rsplit("# edgenas-native-kit exit=0", 1)[0], "benchmark_model", "closing 'exit=' line is missing",
         None),
        (_cut_before(ORT, "P50 Latency"), "onnxruntime_perf_test", "truncated: no the -s statistics", None),
        # another model or kit
        (LITERT.replace("Graph: [models/5f0b6a21c3d94e87.tflite]", "Graph: [models/aaaaaaaaaaaaaaaa.tflite]"),
         "benchmark_model", "the log times models/aaaaaaaaaaaaaaaa.tflite", "Graph: ["),
        (LITERT.replace("model=models/5f0b6a21c3d94e87.tflite", "model=models/bbbb.tflite", 1), "benchmark_model",
         "a log of model models/bbbb.tflite", None),
        (LITERT.replace(f"kit={KIT}", "kit=000000000000", 1), "benchmark_model", "a log of kit 000000000000", None),
        (ORT.replace("model=models/5f0b6a21c3d94e87.onnx", "model=models/cccc.onnx", 1), "onnxruntime_perf_test",
         "a log of model models/cccc.onnx", None),
        # another tool, or another version of the tool
        (fixture("benchmark_model_tf1.log"), "benchmark_model", "TensorFlow 1.x", "Average inference timings"),
        (fixture("ort_perf_test_0.x.log"), "onnxruntime_perf_test", "pre-1.0 release", "Total time cost:"),
        (ORT, "benchmark_model", "a log of onnxruntime_perf_test, but this kit's tool is benchmark_model", None),
        ("\n".join(ln for ln in ORT.splitlines() if not ln.startswith("# ")), "benchmark_model",
         "an onnxruntime_perf_test log", "Session creation time cost"),
        (LITERT.replace("Inference timings in us: Init: 3871, First inference: 412,",
                        "Inference timings in us: Init: 3871, First: 412,"), "benchmark_model",
         "unrecognised 'Inference timings in us' line", "Inference timings in us"),
        (LITERT.replace("count=50 first=203 curr=188", "count=50 frist=203 curr=188"), "benchmark_model",
         "unrecognised run statistics", "frist="),
        # edited: a spliced timing line, a dropped profile row, another thread count
        (LITERT.replace("Inference (avg): 188.34", "Inference (avg): 241.7"), "benchmark_model", "spliced or edited",
         "Inference (avg)"),
        (re.sub(r"^\t\s+Clamp \(NC, F32\)\t.*\n", "", LITERT, count=1, flags=re.M), "benchmark_model",
         "lists 3 nodes but the summary says 4", None),
        (LITERT.replace("Num threads: [1]", "Num threads: [4]"), "benchmark_model", "ran 4 thread(s)", None),
    ],
)
def test_bad_logs_name_file_and_line(tmp_path, text, tool, needle, line):
    path = _write(tmp_path, text)
    model = TFLITE if tool == "benchmark_model" else ONNX
    with pytest.raises(LogError) as ei:
        parse_log(path, tool, model, KIT, 1)
    err = ei.value
    assert needle in err.msg, str(err)
    assert str(err).startswith(f"{path}:{err.line}: ")
    if line is not None:
        assert err.line == _line_of(text, line)


def test_tool_failure_names_the_error_line(tmp_path):
    text = (f"# edgenas-native-kit kit={KIT} model={TFLITE} tool=benchmark_model args=--num_threads=1\n"
            "INFO: STARTING!\nINFO: Num threads: [1]\nINFO: Graph: [models/5f0b6a21c3d94e87.tflite]\n"
            "ERROR: Didn't find op for builtin opcode 'STABLEHLO_COMPOSITE' version '1'.\n"
            "ERROR: Registration failed.\n\n# edgenas-native-kit exit=1\n")
    with pytest.raises(LogError) as ei:
        parse_log(_write(tmp_path, text), "benchmark_model", TFLITE, KIT, 1)
    assert ei.value.line == 5 and "failed (exit 1)" in ei.value.msg and "STABLEHLO_COMPOSITE" in ei.value.msg


def test_headerless_logs():
    """A log written without the kit script: benchmark_model names its graph; ORT cannot be matched."""
    body = "\n".join(ln for ln in LITERT.splitlines() if not ln.startswith("# "))
    run = parse_benchmark_model(body, "raw.log")
    assert run.model == TFLITE and run.kit_id is None and run.n == 50
    ort = parse_ort_perf_test("\n".join(ln for ln in ORT.splitlines() if not ln.startswith("# ")), "raw.log")
    assert ort.model is None and ort.n == 50


def test_native_settings_follow_the_device_spec():
    dev = parse_device({"name": "phone", "runtime": "litert", "threads": 4,
                        "runtime_options": {"delegate": "gpu", "native_args": ["--allow_fp16=true"]}}, "x")
    s = native_settings(dev, warmup=5, repeats=30)
    assert s.tool == "benchmark_model" and s.threads == 4 and s.model_prefix == "--graph="
    assert {"--num_threads=4", "--use_gpu=true", "--warmup_runs=5", "--num_runs=30", "--enable_op_profiling=true",
            "--allow_fp16=true"} <= set(s.args)
    board = parse_device({"name": "b", "runtime": "onnxruntime", "threads": 2,
                          "runtime_options": {"graph_optimization_level": "basic"}}, "x")
    o = native_settings(board, repeats=40)
    assert o.command("models/m.onnx") == ["onnxruntime_perf_test", "-e", "cpu", "-m", "times", "-r", "40", "-x", "2",
                                          "-o", "1", "-I", "-s", "models/m.onnx"]
    with pytest.raises(EdgenasError, match=r"delegate must be one of .*, got 'tpu'"):  # refused with the spec
        parse_device({"name": "c", "runtime": "litert", "runtime_options": {"delegate": "tpu"}}, "x")


# -- round trips: kit -> device script (tool stand-ins) -> raw logs -> import-kit -------------------------
def _stand_in(bin_dir: Path, name: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    p = bin_dir / name
    p.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{TOOLS}" {name} "$@"\n')
    p.chmod(0o755)
    return p


def _device(store_dir: Path, name: str, runtime: str, threads: int, extra: str = "") -> None:
    DeviceStore(store_dir).save_device(f'name = "{name}"\nruntime = "{runtime}"\nthreads = {threads}\nlocal = false\n'
                                       + extra, name)


def _make_kit(capsys, tmp_path: Path, device: str, random: int = 4, networks: int = 10) -> Path:
    kit = tmp_path / "kit"
    code, out, err = run_cli(capsys, "profile", "kit", "--device", device, "--space", "tiny", "--space-opt",
                             "widths=[0.5]", "--resolutions", "32", "--random", str(random),
                             "--networks", str(networks),
                             "--runner", "native", "--repeats", "20", "--warmup", "2", "--out", str(kit),
                             "--devices-dir", str(tmp_path / "store"), "--jobs", "1")
    assert code == 0, err
    assert "native_runner.sh" in out
    return kit


def _run_device_script(kit: Path, tool: Path, cwd: Path | None = None) -> None:
    import subprocess

    env = {**os.environ, "EDGENAS_TOOL": str(tool)}
    proc = subprocess.run(["sh", str(kit / "native_runner.sh"), str(kit)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=cwd or kit)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_native_round_trip_onnxruntime_perf_test(tmp_path, capsys):
    store = tmp_path / "store"
    _device(store, "arm-board", "onnxruntime", 2, '[runtime_options]\ngraph_optimization_level = "all"\n')
    kit = _make_kit(capsys, tmp_path, "arm-board")
    manifest = json.loads((kit / "manifest.json").read_text())
    assert manifest["runner"] == "native" and manifest["native"]["tool"] == "onnxruntime_perf_test"
    assert "-x" in manifest["native"]["args"] and manifest["native"]["args"][manifest["native"]["args"].index("-x")
                                                                          + 1] == "2"
    for f in ("native_runner.sh", "native_adb.sh", "native.conf", "native_models.txt", "runner.py", "README.txt"):
        assert (kit / f).exists(), f
    n_models = len(manifest["entries"]) + len(manifest["networks"])
    assert len((kit / "native_models.txt").read_text().split("\n")) - 1 == n_models

    # before the device ran: a clear error, nothing written
    code, _, err = run_cli(capsys, "lut", "import-kit", str(kit), "--devices-dir", str(store))
    assert code == 2 and "kit models have no log" in err and err.count("\n") == 1

    tool = _stand_in(tmp_path / "bin", "onnxruntime_perf_test")
    _run_device_script(kit, tool)
    logs = sorted((kit / "logs").glob("*.log"))
    assert len(logs) == n_models and not list((kit / "logs").glob("*.part"))
    first = logs[0].read_text().splitlines()
    assert first[0].startswith(f"# edgenas-native-kit kit={manifest['kit_id']} model=models/")
    assert "Setting intra_op_num_threads to 2" in first and first[-1] == "# edgenas-native-kit exit=0"

    code, out, err = run_cli(capsys, "lut", "import-kit", str(kit), "--devices-dir", str(store))
    assert code == 0, err
    assert f"from {n_models} raw onnxruntime_perf_test logs" in out and "validation on 5 random networks" in out
    table_path = store / "latency_tables" / "arm-board__tiny.json"
    table = LatencyTable.load(table_path)
    assert table.source == f"kit:{manifest['kit_id']}" and table.model.fitted_on == 10
    assert "onnxruntime_perf_test" in table.runtime["version"] and len(table.entries) == len(manifest["entries"])
    assert table.validation["within_10pct"] >= 0.0 and table.validation["n"] == 5

    # a bad log: exit 2 naming file and line; the imported table is untouched
    before = table_path.read_bytes()
    victim = logs[3]
    text = victim.read_text()
    victim.write_text(text[: text.index("P50 Latency")])
    code, _, err = run_cli(capsys, "lut", "import-kit", str(kit), "--devices-dir", str(store))
    assert code == 2 and err.count("\n") == 1
    assert f"{victim}:" in err and "truncated" in err and "nothing was imported" in err
    assert table_path.read_bytes() == before

    # a rerun of the device script redoes only that model (its log has no closing line) and the import works
    stamp = {p.name: p.stat().st_mtime_ns for p in logs}
    victim.write_text(text.rsplit("# edgenas-native-kit exit=0", 1)[0])
    _run_device_script(kit, tool)
    changed = [p.name for p in logs if p.stat().st_mtime_ns != stamp[p.name]]
    assert changed == [victim.name]
    code, out, err = run_cli(capsys, "lut", "import-kit", str(kit / "logs"), "--devices-dir", str(store))
    assert code == 0, err


@pytest.mark.slow
def test_native_round_trip_benchmark_model_through_adb(tmp_path, capsys):
    store = tmp_path / "store"
    _device(store, "phone", "litert", 1, '[runtime_options]\ndelegate = "xnnpack"\n')
    kit = _make_kit(capsys, tmp_path, "phone", random=1, networks=0)  # one LiteRT conversion batch (~1 min)
    manifest = json.loads((kit / "manifest.json").read_text())
    assert manifest["native"]["tool"] == "benchmark_model"
    assert {"--num_threads=1", "--use_xnnpack=true", "--enable_op_profiling=true"} <= set(manifest["native"]["args"])
    bin_dir = tmp_path / "bin"
    _stand_in(bin_dir, "adb")
    tool = _stand_in(tmp_path / "host-tools", "benchmark_model")
    device_dir = tmp_path / "device" / "edgenas-kit"
    device_dir.parent.mkdir()
    import subprocess

    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["sh", str(kit / "native_adb.sh"), "--tool", str(tool), "--remote", str(device_dir),
                           "--serial", "emulator-5554"], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (device_dir / "benchmark_model").exists() and (device_dir / "models").is_dir()
    n_models = len(manifest["entries"]) + len(manifest["networks"])
    assert len(list((kit / "logs").glob("*.log"))) == n_models  # pulled back to the host
    code, out, err = run_cli(capsys, "lut", "import-kit", str(kit / "manifest.json"), "--device", "phone-b",
                             "--devices-dir", str(store))
    assert code == 0, err
    assert f"per-operator profiles of {n_models} models" in out and "outside the operators" in out
    table = LatencyTable.load(store / "latency_tables" / "phone-b__tiny.json")
    assert len(table.entries) == n_models and all(e.n == 20 for e in table.entries.values())
    assert "op profile" in table.runtime["version"] and "per-operator profiles parsed" in table.notes
    assert DeviceStore(store).device("phone-b").runtime == "litert"


def test_native_kit_for_a_device_without_native_settings_is_refused(tmp_path, capsys):
    store = tmp_path / "store"
    (store / "devices").mkdir(parents=True)  # written by hand: edgenas would not save this spec
    (store / "devices" / "gpu-phone.toml").write_text(
        'name = "gpu-phone"\nruntime = "litert"\nthreads = 1\nlocal = false\n[runtime_options]\ndelegate = "tpu"\n')
    code, _, err = run_cli(capsys, "profile", "kit", "--device", "gpu-phone", "--space", "tiny", "--runner", "native",
                           "--out", str(tmp_path / "k"), "--devices-dir", str(store))
    assert code == 2 and "got 'tpu'" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "k").exists()


def test_profile_summary_uses_delegate_internal_ops():
    run = parse_benchmark_model(LITERT, "x.log")
    results = {"entries": {"u": {"mean_ms": run.mean_ms}}, "networks": {"n": {"mean_ms": run.mean_ms}},
               "op_profiles": {"u": [o.to_json() for o in run.ops], "n": [o.to_json() for o in run.ops]}}
    s = profile_summary(results)
    assert set(s["network_op_share"]) == {"Transpose (ND, X32)", "Clamp (NC, F32)", "Convolution (NHWC, F32) IGEMM"}
    assert s["unit_outside_ops_ms_median"] == pytest.approx(0.18834 - 0.176)


# -- packaging: the device scripts ship in the wheel ------------------------------------------------------
def test_device_scripts_are_package_data(repo):
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover
        import tomli as tomllib
    patterns = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = patterns["edgenas.devices"]
    for f in (repo / "devices").iterdir():
        if f.is_file() and f.name != "__init__.py" and not f.name.endswith(".pyc"):
            assert any(Path(f.name).match(p) for p in shipped), f"{f.name} is not in edgenas.devices package-data"
    assert shutil.which("sh"), "POSIX sh is needed to run the device script"


def test_import_kit_from_recorded_logs(tmp_path, capsys):
    """A native kit whose logs/ hold the recorded benchmark_model log (one per model, as the device
    script names them) imports into a table; one log of another model makes it exit 2, table untouched."""
    kit_id = "0123456789ab"
    from edgenas import get_space

    sp = get_space("tiny")  # keys must be units (and networks archs) of the kit's space
    units = sorted({u.key for u in sp.units(sp.sample(1, 0)[0])})[:4]
    nets = [str(s) for s in sp.sample(3, 1)]
    files = {k: f"models/{i:016x}.tflite" for i, k in enumerate(units + nets)}
    manifest = {
        "format": "edgenas-kit", "version": 1, "kit_id": kit_id, "device": "rec-phone", "space": "tiny",
        "runtime": "litert", "threads": 1, "runtime_options": {}, "runner": "native",
        "native": {"tool": "benchmark_model", "threads": 1, "args": ["--num_threads=1", "--use_xnnpack=true",
                                                                     "--enable_op_profiling=true"],
                   "model_prefix": "--graph="},
        "entries": [{"key": k, "file": files[k]} for k in units],
        "networks": [{"key": k, "file": files[k], "units": units[:2], "features": {}} for k in nets],
    }
    kit = tmp_path / "kit"
    (kit / "logs").mkdir(parents=True)
    (kit / "manifest.json").write_text(json.dumps(manifest))
    for f in files.values():
        text = LITERT.replace(TFLITE, f).replace(KIT, kit_id)
        (kit / "logs" / (Path(f).stem + ".log")).write_text(text)
    store = tmp_path / "store"
    code, out, err = run_cli(capsys, "lut", "import-kit", str(kit), "--devices-dir", str(store))
    assert code == 0, err
    assert "imported 4 entries for rec-phone/tiny" in out and "from 7 raw benchmark_model logs" in out
    table = LatencyTable.load(store / "latency_tables" / "rec-phone__tiny.json")
    assert table.entries[units[0]].p50_ms == pytest.approx(0.18834) and table.entries[units[0]].n == 50
    assert table.model.fitted_on == 3 and table.model.scale == pytest.approx(0.5, rel=1e-3)
    assert "per-operator profiles parsed" in table.notes and "benchmark_model" in table.runtime["version"]
    assert "per-operator profiles of 7 models" in out and "Convolution (NHWC, F32) IGEMM" in out
    before = (store / "latency_tables" / "rec-phone__tiny.json").read_bytes()
    victim = kit / "logs" / (Path(files[nets[1]]).stem + ".log")
    victim.write_text(LITERT.replace(TFLITE, files[nets[2]]).replace(KIT, kit_id))
    code, _, err = run_cli(capsys, "lut", "import-kit", str(kit), "--devices-dir", str(store))
    assert code == 2 and f"{victim}:1: a log of model {files[nets[2]]}, not {files[nets[1]]}" in err
    assert (store / "latency_tables" / "rec-phone__tiny.json").read_bytes() == before
