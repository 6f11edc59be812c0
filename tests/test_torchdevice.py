"""Where torch trains (``--torch-device``): names, resolution on this machine, workers spread over GPUs,
and the one training path run with explicit device strings (this machine has no GPU: CPU only)."""

from __future__ import annotations

import pytest
import torch

from edgenas import torchdevice
from edgenas.errors import EdgenasError
from edgenas.estimators.base import get_estimator
from edgenas.estimators.training import train_and_evaluate
from edgenas.jobs import ConfigError, ExportConfig, JobConfig
from edgenas.spaces import Task, get_space
from edgenas.testing.cli import assert_one_line_error, run_cli
from edgenas.torchdevice import assign_worker, check_device_name, resolve_device, to_device

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def no_worker_index():
    yield
    torchdevice._WORKER.clear()


def test_names_are_checked_without_the_hardware():
    for name, norm in [("auto", "auto"), (" CPU ", "cpu"), ("cuda", "cuda"), ("cuda:3", "cuda:3"), ("mps", "mps")]:
        assert check_device_name(name) == norm
    for bad in ["", "gpu", "cuda:", "cuda:-1", "cuda:x", "cuda0", "meta", "cpu:0", 3, None, "cuda:1234"]:
        with pytest.raises(EdgenasError, match="choose one of auto, cpu, cuda, cuda:N, mps"):
            check_device_name(bad)


def test_resolution_on_this_machine():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if HAS_CUDA else torch.device("cpu"))
    assert resolve_device(None) == resolve_device("auto")
    if not HAS_CUDA:
        for name in ("cuda", "cuda:0"):
            with pytest.raises(EdgenasError, match=r"use --torch-device cpu") as e:
                resolve_device(name)
            assert "\n" not in str(e.value)
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        with pytest.raises(EdgenasError, match="no Apple GPU"):
            resolve_device("mps")


def test_workers_spread_over_the_visible_gpus(monkeypatch):
    """Worker i of a search takes GPU i mod count for ``auto`` and ``cuda``; ``cuda:N`` stays N. (Only
    the GPU count is patched: this is the assignment rule, not a GPU run.)"""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert resolve_device("auto") == torch.device("cuda", 0)
    for index, gpu in [(1, 1), (2, 2), (4, 1), (6, 0)]:
        assign_worker(index)
        assert resolve_device("auto") == torch.device("cuda", gpu)
        assert resolve_device("cuda") == torch.device("cuda", gpu)
        assert resolve_device("cuda:2") == torch.device("cuda", 2)
        assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(EdgenasError, match=r"torch sees 3 CUDA GPU\(s\) \(cuda:0..cuda:2\)"):
        resolve_device("cuda:3")


def test_to_device_moves_modules_tensors_and_containers():
    m = torch.nn.Linear(2, 2)
    assert to_device(m, "cpu") is m
    out = to_device({"a": (torch.ones(1), [torch.zeros(2)]), "b": 3}, torch.device("cpu"))
    assert out["b"] == 3 and out["a"][0].device.type == "cpu" and isinstance(out["a"][1], list)
    assert torchdevice.host_tensor(torch.ones(2), "cpu").is_pinned() is False


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("resize", [False, True])
def test_training_with_an_explicit_device_string_is_the_default_path(resize):
    """The device-agnostic loop on ``cpu`` and on ``torch.device('cpu')`` gives bit-identical weights and
    accuracy to the default call, whether the data move once (pre-tensored) or per batch (resized)."""
    sp = get_space("tiny", resolutions=[32], widths=[0.5])
    spec = sp.sample(1, 3)[0]
    task = Task(num_classes=3, in_channels=1)
    transform = (lambda t: torch.nn.functional.interpolate(t, size=(32, 32))) if resize else None
    results = []
    for device in (None, "cpu", torch.device("cpu")):
        torch.manual_seed(0)
        model = sp.build(spec, task)
        kw = {} if device is None else {"device": device}
        res = train_and_evaluate(model, _data(48, 1), _data(24, 2), epochs=1, batch_size=16, lr=0.05, momentum=0.9,
                                 weight_decay=5e-4, label_smoothing=0.0, nesterov=True,
                                 generator=torch.Generator().manual_seed(0), transform=transform, **kw)
        assert next(model.parameters()).device.type == "cpu"
        results.append((res, [p.detach().clone() for p in model.state_dict().values()]))
    (r0, w0), *rest = results
    for r, w in rest:
        assert r == r0 and all(torch.equal(a, b) for a, b in zip(w0, w))


def test_estimators_take_the_device_and_refuse_a_missing_one():
    sp = get_space("tiny", resolutions=[32], widths=[0.5])
    specs = sp.sample(2, 0)
    kw = {"dataset": "synthetic:n=64,classes=3,channels=1,size=16", "epochs": 1, "train_samples": 32,
          "val_samples": 16}
    a = get_estimator("train", sp, None, seed=0, **kw).estimate_many(specs)
    b = get_estimator("train", sp, None, seed=0, torch_device="cpu", **kw).estimate_many(specs)
    assert [e.score for e in a] == [e.score for e in b]
    halving = get_estimator("halving", sp, None, seed=0, dataset=kw["dataset"], min_epochs=1, max_epochs=1,
                            torch_device="cpu", train_options={"train_samples": 32, "val_samples": 16})
    assert halving.driver.estimator(1).torch_device == "cpu"
    chain = JobConfig.from_dict({"space": {"name": "tiny"}, "estimator": {
        "name": "filter", "torch_device": "CPU", "dataset": "digits",
        "options": {"cheap": "synflow", "expensive": "train"}}}).estimator
    assert chain is not None and chain.torch_device == "cpu"
    est = chain.build(sp)
    assert est.expensive.torch_device == "cpu"  # passed on to the member that trains
    if not HAS_CUDA:
        with pytest.raises(EdgenasError, match=r"train: torch_device cuda: this torch .* use --torch-device cpu"):
            get_estimator("train", sp, None, seed=0, torch_device="cuda", **kw)


def test_job_tables_check_the_name():
    assert ExportConfig().torch_device == "auto" and "--torch-device" not in ExportConfig().as_flags()
    assert "--torch-device cpu" in ExportConfig(torch_device="cpu").as_flags()
    for table, body in [("export", {"torch_device": "gpu"}), ("estimator", {"name": "train", "torch_device": 0}),
                        ("estimator", {"name": "train", "torch_device": "cpu", "options": {"torch_device": "cpu"}})]:
        with pytest.raises(ConfigError, match=rf"\[{table}\] torch_device"):
            JobConfig.from_dict({"space": {"name": "tiny"}, table: body})


def test_cli_errors_are_one_line(capsys, tmp_path):
    base = ["--space", "tiny", "--random", "1"]
    code, _, err = run_cli(capsys, "estimate", *base, "--estimator", "train", "--torch-device", "gpu")
    assert_one_line_error(code, err, "--torch-device 'gpu': choose one of auto, cpu, cuda, cuda:N, mps")
    code, _, err = run_cli(capsys, "estimate", *base, "--estimator", "synflow", "--torch-device", "cpu")
    assert_one_line_error(code, err, "estimator 'synflow' takes no --torch-device")
    code, _, err = run_cli(capsys, "export", "--space", "tiny", "--arch", "tiny:w0.5:r32:k3e3_k3e3_k3e3_k3e3",
                           "--out", str(tmp_path / "x"), "--torch-device", "tpu")
    assert_one_line_error(code, err, "--torch-device: must be one of auto, cpu, cuda, cuda:N, mps, got 'tpu'")
    assert not (tmp_path / "x").exists()
    code, _, err = run_cli(capsys, "search", "--space", "tiny", "--torch-device", "cpu", "--trials", "1",
                           "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "--torch-device needs --estimator")
    if not HAS_CUDA:
        code, _, err = run_cli(capsys, "export", "--space", "tiny", "--arch", "tiny:w0.5:r32:k3e3_k3e3_k3e3_k3e3",
                               "--out", str(tmp_path / "y"), "--torch-device", "cuda:1")
        assert_one_line_error(code, err, "--torch-device cuda:1: this torch")
        assert not (tmp_path / "y").exists()
