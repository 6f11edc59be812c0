"""``edgenas supernet train | show``, a job's ``[supernet]`` stage, and export from inherited weights
(``--init supernet:PATH``): real training, search and ONNX export on a small ``tiny`` space."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgenas.jobs import JobConfig, run_job
from edgenas.testing.cli import assert_one_line_error, run_cli

DATA = "synthetic:n=96,classes=3,channels=1,size=8"
SPACE = ["--space", "tiny", "--space-opt", "widths=[0.5]", "--space-opt", "resolutions=[32]", "--in-channels", "1"]


def _train(capsys, out: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, "supernet", "train", *SPACE, "--dataset", DATA, "--epochs", "1", "--out", str(out),
                   "--torch-device", "cpu", "--opt", "batch_size=16", "--no-progress", *extra)


def test_train_show_resume_and_never_overwrite(capsys, tmp_path):
    ck = tmp_path / "sn.pt"
    code, _, err = _train(capsys, ck)
    assert code == 0, err
    assert "supernet " + str(ck) + ": trained epochs 1-1" in err
    code, out, _ = run_cli(capsys, "supernet", "show", str(ck))
    assert code == 0 and "supernet of tiny" in out and "3 classes, 1 input channel" in out and "1 of 1 epoch" in out
    code, out, _ = run_cli(capsys, "supernet", "show", str(ck), "--json")
    info = json.loads(out)
    assert info["space_options"] == {"widths": [0.5], "resolutions": [32], "kernels": [3, 5, 7], "expands": [3, 4, 6],
                                      "depths": [1, 2, 3]} and info["epoch"] == 1
    # a checkpoint written before the block-choice options existed resumes (missing options take their defaults)
    old = torch.load(ck, weights_only=True)
    old["space_options"] = {"widths": [0.5], "resolutions": [32]}
    torch.save(old, ck)
    before = ck.read_bytes()
    code, _, err = _train(capsys, ck)  # exists, no --resume: refused, untouched
    assert_one_line_error(code, err, "exists; continue it with --resume")
    code, _, err = _train(capsys, ck, "--resume")  # complete: reused as it is
    assert code == 0 and "already trained, reused" in err
    code, _, err = run_cli(capsys, "supernet", "train", *SPACE, "--dataset", DATA, "--epochs", "2", "--out", str(ck),
                           "--resume", "--no-progress")
    assert_one_line_error(code, err, "cannot resume from")
    assert ck.read_bytes() == before


@pytest.mark.parametrize(("argv", "needle"), [
    (["--space", "nb201"], "space 'nb201' has no weight-sharing supernet"),
    ([*SPACE, "--opt", "lr=-1"], "lr must be positive"),
    ([*SPACE, "--opt", "colour=red"], "unknown option(s) colour"),
    ([*SPACE, "--torch-device", "gpu"], "--torch-device: must be one of auto, cpu, cuda, cuda:N, mps"),
    ([*SPACE, "--epochs", "0"], "--epochs: must be >= 1"),
])
def test_bad_training_input_is_one_line_and_writes_nothing(argv, needle, capsys, tmp_path):
    code, _, err = run_cli(capsys, "supernet", "train", *argv, "--dataset", DATA, "--out", str(tmp_path / "sn.pt"),
                           "--no-progress")
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "sn.pt").exists()


def test_show_refuses_what_is_not_a_checkpoint(capsys, tmp_path):
    (tmp_path / "x.pt").write_text("hello")
    code, _, err = run_cli(capsys, "supernet", "show", str(tmp_path / "x.pt"))
    assert_one_line_error(code, err, "is not a torch file")


JOB = """
[space]
name = "tiny"
options = {{ resolutions = [32], widths = [0.5] }}
[task]
in_channels = 1
[supernet]
out = "{out}/sn.pt"
dataset = "{data}"
epochs = 1
torch_device = "cpu"
options = {{ batch_size = 16 }}
[estimator]
name = "supernet"
dataset = "{data}"
torch_device = "cpu"
[search]
objectives = ["accuracy", "params"]
sampler = "random"
trials = 6
out = "{out}/run"
[export]
formats = ["onnx"]
init = "supernet"
train_epochs = {epochs}
torch_device = "cpu"
"""


@pytest.mark.slow
@pytest.mark.parametrize("epochs", [0, 1])
def test_job_trains_the_supernet_searches_with_it_and_exports_its_weights(epochs, tmp_path):
    """One job: [supernet] trained, the search's supernet estimator reads it, the front exported from the
    inherited weights; the card holds the search's estimate, the inherited and the final accuracy."""
    path = tmp_path / "job.toml"
    path.write_text(JOB.format(out=tmp_path, data=DATA, epochs=epochs))
    result = run_job(JobConfig.from_toml(path), quiet=True, progress=False)
    assert result.supernet is not None and result.supernet.trained_epochs == 1 and result.ok
    assert result.config.estimator is not None and result.config.estimator.weights == str(tmp_path / "sn.pt")
    cards = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "export").glob("*/model_card.json"))]
    assert cards and len(cards) == len(result.search.front)
    for card in cards:
        acc = card["accuracy"]
        assert card["training"]["source"] == "supernet" and card["training"]["supernet"] == str(tmp_path / "sn.pt")
        assert acc["estimator"] == "supernet" and 0 <= acc["estimated"] <= 1 and 0 <= acc["inherited"] <= 1
        assert card["training"]["epochs"] == epochs and card["training"]["torch_device"] == "cpu"
        if epochs == 0:  # exported as inherited: the final accuracy is the inherited one
            assert acc["torch"] == acc["inherited"]
        assert acc["artifacts"]["onnx"] == pytest.approx(acc["torch"], abs=0.02)
        md = (tmp_path / "run" / "export" / card["name"] / "model_card.md").read_text()
        assert "inherited from the supernet" in md
    # run again: the complete checkpoint is reused; the search folder is taken, and that is said first
    with pytest.raises(Exception, match="already holds a search"):
        run_job(JobConfig.from_toml(path), quiet=True, progress=False)


def test_export_init_errors_are_one_line(capsys, tmp_path):
    arch = ["--space", "tiny", "--space-opt", "widths=[0.5]", "--arch", "tiny:w0.5:r32:k3e3_k3e3_k3e3_k3e3",
            "--dataset", DATA, "--in-channels", "1"]
    for extra, needle in [
        (["--init", "weights:x.pt"], "--init: takes supernet:PATH"),
        (["--init", f"supernet:{tmp_path / 'none.pt'}"], "not found"),
        (["--init", f"supernet:{tmp_path / 'none.pt'}", "--weights", str(tmp_path / "w.pt")], "not both"),
    ]:
        code, _, err = run_cli(capsys, "export", *arch, "--out", str(tmp_path / "x"), *extra)
        assert_one_line_error(code, err, needle)
        assert not (tmp_path / "x").exists()
    cfg = tmp_path / "j2.toml"
    cfg.write_text(f"[space]\nname = 'tiny'\n[estimator]\nname = 'params'\n[search]\ntrials = 2\nout = '{tmp_path}/r'\n"
                   "[export]\ninit = 'supernet'\n")
    code, _, err = run_cli(capsys, "run", str(cfg))
    assert_one_line_error(code, err, "j2.toml: [export] init: 'supernet' names the job's [supernet] checkpoint")
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def ofa_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OFA MobileNetV3 w1.2 state dict (OFA's tensor names, seeded random values), as OFA saves it
    (``{"state_dict": ...}``). Equality with OFA's own code is tests/supernet/test_supernet_ofa.py's."""
    import torch

    from edgenas.spaces import Task, get_space
    from edgenas.supernet import Supernet
    from edgenas.supernet.ofa import ofa_key_map

    torch.manual_seed(0)
    sn = Supernet(get_space("mbv3", widths=[1.2]), Task(num_classes=1000, in_channels=3), kernel_transform=True)
    names = ofa_key_map(sn)
    path = tmp_path_factory.mktemp("ofa") / "ofa_mbv3_d234_e346_k357_w1.2"
    torch.save({"state_dict": {names[k]: v for k, v in sn.state_dict().items()}}, path)
    return path


@pytest.mark.slow
def test_import_ofa_then_export_a_subnet_from_its_weights(ofa_file, capsys, tmp_path):
    """OFA weights -> an edgenas checkpoint (10 classes: a new head) -> a real-size mbv3 subnet exported
    from them (BatchNorm re-estimated, no fine-tuning) as a verified ONNX file."""
    ck = tmp_path / "ofa.pt"
    code, out, err = run_cli(capsys, "supernet", "import", str(ofa_file), "--out", str(ck), "--classes", "10")
    assert code == 0, err
    assert "supernet of mbv3" in out and "10 classes" in out and "new classifier head" in out
    info = json.loads(run_cli(capsys, "supernet", "show", str(ck), "--json")[1])
    assert info["space_options"]["widths"] == [1.2] and info["task"]["num_classes"] == 10 and info["kernel_transform"]
    code, _, err = run_cli(capsys, "supernet", "import", str(ofa_file), "--out", str(ck))
    assert_one_line_error(code, err, "exists; give another --out")
    arch = "mbv3:w1.2:r128:k3e3-k5e4_k7e6-k3e3_k5e4-k5e4-k3e6_k7e3-k3e4_k5e6-k3e3-k7e4-k3e3"
    code, out, err = run_cli(capsys, "export", "--space", "mbv3", "--space-opt", "widths=[1.2]", "--arch", arch,
                             "--init", f"supernet:{ck}", "--train-epochs", "0", "--formats", "onnx", "--classes", "10",
                             "--dataset", "synthetic:n=64,classes=10,channels=3,size=32", "--out", str(tmp_path / "x"),
                             "--no-latency", "--torch-device", "cpu")
    assert code == 0, err
    (card_path,) = (tmp_path / "x").glob("*/model_card.json")
    card = json.loads(card_path.read_text())
    assert card["ok"] and card["training"]["source"] == "supernet" and card["training"]["epochs"] == 0
    assert card["accuracy"]["torch"] == card["accuracy"]["inherited"]


def test_import_names_the_first_tensor_that_does_not_fit(ofa_file, capsys, tmp_path):
    import torch

    state = torch.load(ofa_file, weights_only=True)["state_dict"]
    name = next(k for k in state if k.startswith("blocks.5."))
    state[name] = torch.zeros(3, 3)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    code, _, err = run_cli(capsys, "supernet", "import", str(bad), "--out", str(tmp_path / "sn.pt"))
    assert_one_line_error(code, err, repr(name))
    assert not (tmp_path / "sn.pt").exists()
    code, _, err = run_cli(capsys, "supernet", "import", str(bad), "--format", "nni", "--out", str(tmp_path / "s.pt"))
    assert_one_line_error(code, err, "--format 'nni': choose one of ofa")
