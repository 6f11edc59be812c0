"""``edgenas export`` end to end: a search's front -> verified files + model cards; one arch; the TOML
``[export]`` after a search; failures isolated; one-line input errors; the example scripts with only
numpy + one runtime importable."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from searchkit import BOARD, user_dir, write_board

from edgenas.cli.main import main
from edgenas.spaces import Task, get_space

REPO = Path(__file__).resolve().parents[2]
ARCH = "tiny:w0.5:r32:k3e3_k3e3_k3e3_k3e3"


@pytest.fixture(scope="module")
def run_and_export(tmp_path_factory):
    """A small real search (tiny space, synthetic board, params as the score) and the export of its front, via
    ``edgenas run`` with [search] + [export] tables."""
    import os

    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("EDGENAS_DEVICES_DIR")
    os.environ["EDGENAS_DEVICES_DIR"] = str(home)
    write_board(user_dir(), "tiny", Task(num_classes=10, in_channels=1), resolutions=[32])
    root = tmp_path_factory.mktemp("job")
    cfg = root / "job.toml"
    cfg.write_text(f"""
[space]
name = "tiny"
options = {{ resolutions = [32] }}
[task]
num_classes = 10
in_channels = 1
[device]
name = "{BOARD}"
[estimator]
name = "params"
[search]
objectives = ["accuracy", "latency_ms"]
budgets = ["peak_ram_bytes<=40KiB"]
sampler = "random"
trials = 6
out = "{root / 'run'}"
[export]
formats = ["onnx", "tflite-int8"]
train_epochs = 2
trials = "pareto"
dataset = "digits"
""")
    try:
        rc = main(["run", str(cfg)])
    finally:
        if old is None:
            os.environ.pop("EDGENAS_DEVICES_DIR", None)
        else:
            os.environ["EDGENAS_DEVICES_DIR"] = old
    return rc, root / "run", root / "run" / "export"


def test_run_with_export_table_exports_and_verifies_the_front(run_and_export):
    rc, run, out = run_and_export
    assert rc == 0
    front = json.loads((run / "front.json").read_text())
    summary = json.loads((out / "export.json").read_text())
    assert [m["arch"] for m in summary["models"]] == [r["arch"] for r in front]
    assert all(m["ok"] for m in summary["models"])
    assert summary["command"].startswith(f"edgenas export {run} ")
    for r in front:
        folder = out / f"trial_{r['trial']:04d}"
        card = json.loads((folder / "model_card.json").read_text())
        assert card["arch"] == r["arch"] and card["ok"] and card["trial"] == r["trial"]
        assert card["accuracy"]["estimated"] == r["accuracy"]
        assert card["latency"]["predicted_by_device"][0]["predicted_ms"] == pytest.approx(r["latency_ms"])
        formats = {f["format"] for f in card["files"]}
        assert {"onnx", "tflite-int8", "pytorch-state-dict"} <= formats
        for f in card["files"]:  # every file as recorded: path relative to the card, bytes, sha256
            p = folder / f["path"]
            assert p.is_file() and p.stat().st_size == f["bytes"]
            assert hashlib.sha256(p.read_bytes()).hexdigest() == f["sha256"]
        for key in ("macs", "params", "size_bytes_int8", "peak_ram_bytes_int8"):
            assert card["cost"][key] > 0
        for a in card["artifacts"]:
            assert a["ok"] and a["parity"]["passed"] and a["latency_ms"] > 0 and 0 <= a["accuracy"] <= 1
            assert a["size_estimate"]["bytes"] > 0
        assert card["versions"]["torch"] and card["versions"]["onnxruntime"] and card["versions"]["ai-edge-litert"]
        assert card["training"]["epochs"] == 2 and card["training"]["dataset"]["dataset"] == "digits"
        assert card["preprocessing"]["mean"] and card["class_names"] == [str(i) for i in range(10)]
        assert (folder / "model_card.md").read_text().startswith(f"# Model card: trial_{r['trial']:04d}")
        trust = card["accuracy"]["trust"]  # the trained model's trust metrics and the int8 file's accuracy
        int8 = next(a for a in card["artifacts"] if a["format"] == "tflite-int8")
        assert trust["noise_snr_db"] == 20.0 and trust["examples"] > 0
        assert trust["int8_format"] == "tflite-int8" and trust["int8_accuracy"] == int8["accuracy"]
        assert trust["int8_worst_class_accuracy"] == int8["worst_class_accuracy"] <= int8["accuracy"]
        for key in ("accuracy", "worst_class_accuracy", "calibration_error", "noisy_accuracy"):
            assert 0.0 <= trust[key] <= 1.0, key
        assert trust["worst_class_accuracy"] <= trust["accuracy"]
        assert "worst-class accuracy" in (folder / "model_card.md").read_text()


def test_saved_weights_load_with_weights_only_and_match_the_onnx_file(run_and_export):
    import onnxruntime as ort

    _, _, out = run_and_export
    folder = sorted(out.glob("trial_*"))[0]
    card = json.loads((folder / "model_card.json").read_text())
    space = get_space("tiny", resolutions=[32])
    spec = space.parse(card["arch"])
    model = space.build(spec, Task(num_classes=10, in_channels=1))
    model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    model.eval()
    x = np.load(folder / "sample_input.npy")[None]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x})[0]
    assert np.abs(got - ref).max() <= 1e-4


BLOCKED = ("torch", "edgenas", "onnx", "litert_torch", "ai_edge_quantizer", "tensorflow", "sklearn", "optuna")


def _run_example(script: str, folder: Path, also_blocked: tuple[str, ...]) -> subprocess.CompletedProcess:
    """Run an example with every heavy package (and the other runtime) made unimportable."""
    blocker = (
        "import sys, runpy\n"
        f"for name in {list(BLOCKED + also_blocked)!r}:\n"
        "    sys.modules[name] = None  # importing it raises ImportError\n"
        f"sys.path.insert(0, {str(REPO / 'examples')!r})\n"
        f"sys.argv = [{script!r}, {str(folder)!r}]\n"
        f"runpy.run_path({str(REPO / 'examples' / script)!r}, run_name='__main__')\n"
    )
    return subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("script", "other_runtime", "fmt"), [
    ("classify_onnx.py", ("ai_edge_litert", "tflite_runtime", "tflite_micro"), "onnx"),
    ("classify_tflite.py", ("onnxruntime", "tflite_micro"), "tflite-int8"),
])
def test_examples_classify_the_sample_with_one_runtime_only(run_and_export, script, other_runtime, fmt):
    _, _, out = run_and_export
    folder = sorted(out.glob("trial_*"))[0]
    proc = _run_example(script, folder, other_runtime)
    assert proc.returncode == 0, proc.stderr
    lines = [ln.split("\t") for ln in proc.stdout.strip().splitlines()]
    assert len(lines) == 3 and all(len(ln) == 2 for ln in lines)
    probs = [float(p) for _, p in lines]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    # the example's answer is the artifact's own top-1 on that input
    from edgenas.exporters import get_exporter
    from edgenas.exporters.base import ExportJob

    x = np.load(folder / "sample_input.npy")[None]
    ex = get_exporter(fmt)
    job = ExportJob(None, tuple(x.shape[1:]), x, x, None)
    path = folder / (ex.stem + ex.suffix)
    top = int(ex.runner(path, job)(x).argmax())
    assert lines[0][0] == str(top)


def test_export_one_arch_without_a_run(tmp_path, capsys):
    rc = main(["export", "--space", "tiny", "--arch", ARCH, "--space-opt", "resolutions=32", "--classes", "10",
               "--in-channels", "1", "--formats", "onnx", "--train-epochs", "1", "--out", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err
    cards = list(tmp_path.glob("*/model_card.json"))
    assert len(cards) == 1
    card = json.loads(cards[0].read_text())
    assert card["arch"] == ARCH and card["artifacts"][0]["format"] == "onnx" and card["ok"]
    assert card["command"].startswith("edgenas export") or card["command"] == ""


def test_a_failing_format_is_reported_and_the_others_still_export(tmp_path, monkeypatch, capsys):
    from edgenas.exporters.pipeline import export_report, run_export
    from edgenas.exporters.tflite import TfliteInt8Exporter
    from edgenas.jobs import ExportConfig, SpaceConfig, TaskConfig

    def boom(self, job):
        raise RuntimeError("quantizer exploded")

    monkeypatch.setattr(TfliteInt8Exporter, "build", boom)
    result = run_export(ExportConfig(formats=["onnx", "tflite-int8"], train_epochs=1, out=str(tmp_path),
                                     dataset="digits"),
                        space=SpaceConfig("tiny", {"resolutions": [32]}), arch=ARCH,
                        task=TaskConfig(num_classes=10, in_channels=1), measure_latency=False)
    assert not result.ok
    print(export_report(result))
    summary = json.loads((tmp_path / "export.json").read_text())
    (model,) = summary["models"]
    assert not model["ok"] and "quantizer exploded" in model["failed_formats"]["tflite-int8"]
    folder = Path(model["folder"])
    assert (folder / "model.onnx").is_file() and not (folder / "model_int8.tflite").exists()
    card = json.loads((folder / "model_card.json").read_text())
    assert {a["format"]: a["ok"] for a in card["artifacts"]} == {"onnx": True, "tflite-int8": False}
    assert "quantizer exploded" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["export", "/nonexistent/run"], "run folder '/nonexistent/run' not found"),
    (["export", "--space", "tiny", "--arch", ARCH, "--out", "OUT", "--formats", "onnx,coreml"],
     "unknown format(s) coreml"),
    (["export", "--space", "tiny", "--arch", "tiny:w0.6:r32:k3e3_k3e3_k3e3_k3e3", "--out", "OUT"], "tiny"),
    (["export", "--space", "tiny"], "a space and an arch"),
    (["export", "--space", "tiny", "--arch", ARCH, "--out", "OUT", "--weights", "/nonexistent.pt"],
     "weights '/nonexistent.pt' not found"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_trial_and_unwritable_output_are_one_line_errors(run_and_export, tmp_path, capsys):
    _, run, _ = run_and_export
    assert main(["export", str(run), "--trials", "9999", "--out", str(tmp_path / "o")]) == 2
    assert "trial(s) 9999 not in" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["export", str(run), "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot write to" in err and len(err.strip().splitlines()) == 1


def test_bad_export_table_fails_before_the_search(tmp_path, capsys):
    cfg = tmp_path / "job.toml"
    cfg.write_text('[space]\nname = "tiny"\n[search]\ntrials = 2\n[export]\nformats = ["onnx", "nope"]\n')
    assert main(["run", str(cfg)]) == 2
    assert "unknown format(s) nope" in capsys.readouterr().err
    assert not list(tmp_path.glob("runs"))
