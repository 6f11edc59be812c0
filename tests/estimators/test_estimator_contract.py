"""The estimator contract (:class:`edgenas.testing.EstimatorContract`) over every registered accuracy
estimator, each with small, fast options."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from edgenas import get_space
from edgenas.errors import EdgenasError, UnknownNameError
from edgenas.estimators import ESTIMATORS, estimator_class, estimator_names, get_estimator
from edgenas.spaces import Task
from edgenas.testing import EstimatorContract
from edgenas.testing.estimators import DEGENERATE

DATA = "synthetic:n=48,classes=4,channels=3,size=8"
TRAIN = {"epochs": 1, "train_samples": 16, "val_samples": 16, "batch_size": 8}
TRAINING = {"train", "halving"}
OWN_SUITE = {"supernet", "prune-finetune"}
"""Estimators with their own contract class below (they need a file made by another command)."""
BUILTINS = [e.name for e in ESTIMATORS.entries() if e.builtin and e.name not in OWN_SUITE]
"""edgenas' own estimators (installed plug-ins run the contract from their own tests)."""
ZERO_COST = {"synflow", "snip", "grad_norm", "fisher", "jacob_cov", "naswot", "params", "macs", "zc-ensemble"}


def contract_options(name: str, files: dict[str, Path]) -> dict[str, Any]:
    """Small, fast options per estimator; every registered estimator must have an entry."""
    space = "nb201" if estimator_class(name).unsupported_reason(get_space("nb201")) is None else "mbv3"
    scores = files[f"scores_{space}"]
    table = {
        "synflow": {},
        "params": {},
        "macs": {},
        "snip": {"dataset": DATA, "batch_size": 8},
        "grad_norm": {"dataset": DATA, "batch_size": 8},
        "fisher": {"dataset": DATA, "batch_size": 8},
        "jacob_cov": {"dataset": DATA, "batch_size": 8},
        "naswot": {"dataset": DATA, "batch_size": 8},
        "zc-ensemble": {"dataset": DATA, "batch_size": 8, "reference": 4},
        "ensemble": {"members": "synflow,params", "reference": 4},
        "filter": {"cheap": "params", "expensive": "synflow", "keep": 0.5, "reference": 4},
        "train": {"dataset": DATA, **TRAIN},
        "halving": {"dataset": DATA, "min_epochs": 1, "max_epochs": 2, "eta": 2,
                    "train_options": {k: v for k, v in TRAIN.items() if k != "epochs"}},
        "surrogate": {"data": str(scores), "n_estimators": 10},
        "tabular": {"path": str(scores)},
        "ofa-predictor": {"weights": str(files["ofa_weights"])},
    }
    return table[name]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A score table covering every spec the suite uses (for tabular and surrogate) and random
    weights with the shape of OFA's predictor (the real file is tested in test_estimators_specific)."""
    d = tmp_path_factory.mktemp("contract")
    out: dict[str, Path] = {}
    for space in (get_space("nb201"), get_space("mbv3")):
        pool = EstimatorContract().specs_for(space) + space.sample(20, seed=3)
        out[f"scores_{space.name}"] = d / f"scores_{space.name}.csv"
        with open(out[f"scores_{space.name}"], "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["arch", "score"])
            w.writeheader()
            w.writerows({"arch": str(s), "score": (i * 7919) % 101 / 10.0} for i, s in enumerate(pool))
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(128, 400), torch.nn.ReLU(), torch.nn.Linear(400, 400), torch.nn.ReLU(),
                              torch.nn.Linear(400, 400), torch.nn.ReLU(), torch.nn.Linear(400, 1))
    out["ofa_weights"] = d / "acc_predictor.pth"
    torch.save(mlp.state_dict(), out["ofa_weights"])
    return out


def test_builtin_estimators_are_registered():
    expected = {"synflow", "naswot", "jacob_cov", "snip", "grad_norm", "fisher", "params", "macs", "zc-ensemble",
                "ensemble", "filter", "train", "halving", "surrogate", "ofa-predictor", "tabular"}
    assert expected <= set(estimator_names())


@pytest.mark.parametrize("name", BUILTINS)
def test_every_estimator_has_contract_options(name, files):
    contract_options(name, files)  # KeyError: add the new estimator to this suite


def test_unknown_name_and_option_are_user_errors():
    with pytest.raises(UnknownNameError, match="unknown estimator 'nope'; choose one of"):
        get_estimator("nope", get_space("nb201"))
    with pytest.raises(EdgenasError, match="unknown option"):
        get_estimator("synflow", get_space("nb201"), epochs=3)


def test_degenerate_nb201_specs_are_disconnected():
    space = get_space("nb201")
    assert DEGENERATE["nb201"] and not any(space.parse(d).is_connected for d in DEGENERATE["nb201"])


class TestBuiltinEstimators(EstimatorContract):
    min_samples_per_epoch = TRAIN["batch_size"]

    # composites of several proxies (seconds per test): in the slow tier
    @pytest.fixture(params=[pytest.param(n, marks=pytest.mark.slow) if n in ("zc-ensemble", "halving") else n
                            for n in BUILTINS])
    def name(self, request: pytest.FixtureRequest) -> str:
        return request.param

    @pytest.fixture
    def options(self, name: str, files: dict[str, Path]) -> dict[str, Any]:
        return contract_options(name, files)

    def trains(self, name: str) -> bool:
        return name in TRAINING

    def degenerate_is_worst(self, name: str) -> bool:
        return name in ZERO_COST


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint: a tiny w0.5 r32 supernet trained one epoch on DATA by training's own code."""
    from edgenas.supernet import train_supernet

    path = tmp_path_factory.mktemp("supernet") / "sn.pt"
    train_supernet(get_space("tiny", resolutions=[32], widths=[0.5]), Task(num_classes=4, in_channels=3), DATA, 1,
                   seed=0, device="cpu", checkpoint=path, batch_size=8)
    return path


class TestSupernetEstimator(EstimatorContract):
    """``supernet`` on a checkpoint of a briefly trained ``tiny`` supernet (a real one: training's own code)."""

    estimator_name = "supernet"
    space_name = "tiny"
    space_options: ClassVar[dict[str, Any]] = {"resolutions": [32], "widths": [0.5]}
    task = Task(num_classes=4, in_channels=3)

    @pytest.fixture
    def options(self, name: str, checkpoint: Path) -> dict[str, Any]:
        return {"weights": str(checkpoint), "dataset": DATA, "bn_batches": 2, "batch_size": 8, "val_samples": 0,
                "torch_device": "cpu"}


def test_supernet_estimator_refuses_what_it_cannot_run(checkpoint, tmp_path):
    space = get_space("tiny", resolutions=[32], widths=[0.5])
    path = checkpoint
    with pytest.raises(EdgenasError, match="needs weights=PATH"):
        get_estimator("supernet", space, dataset=DATA)
    with pytest.raises(EdgenasError, match="does not support space 'nb201'"):
        get_estimator("supernet", get_space("nb201"), weights=str(path), dataset=DATA)
    with pytest.raises(EdgenasError, match=r"cannot run every spec of the search's space: .*width"):
        get_estimator("supernet", get_space("tiny", resolutions=[32]), weights=str(path), dataset=DATA)
    with pytest.raises(EdgenasError, match="trained for 4 classes and 3 input channel"):
        get_estimator("supernet", space, weights=str(path), dataset="digits")
    with pytest.raises(EdgenasError, match="supernet of space 'tiny', the search's space is 'proxyless'"):
        get_estimator("supernet", get_space("proxyless"), weights=str(path), dataset=DATA)
    chain = get_estimator("filter", space, cheap="supernet", expensive="params", keep=0.5, weights=str(path),
                          dataset=DATA, cheap_options={"val_samples": 0, "torch_device": "cpu"})
    assert chain.cheap.weights == str(path)  # the chain passes weights on to the member that takes them
    assert len(chain.score_many(space.sample(4, 0))) == 4
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(EdgenasError, match=r"junk\.pt"):
        get_estimator("supernet", space, weights=str(tmp_path / "junk.pt"), dataset=DATA)


def test_supernet_estimator_layout_keeps_the_scores(checkpoint):
    """The fast path (kept layer modules refilled, ``channels_last``) scores what the plain path scores:
    a fresh extraction in NCHW, BatchNorm re-estimated on the same batches, top-1 on the same images.
    Logits agree to float tolerance, predictions exactly."""
    from edgenas.estimators.training import top1_accuracy
    from edgenas.supernet import batches_of, recalibrate_bn

    space = get_space("tiny", resolutions=[32], widths=[0.5])
    opts = {"weights": str(checkpoint), "dataset": DATA, "bn_batches": 2, "batch_size": 8, "val_samples": 0,
            "torch_device": "cpu"}
    fast = get_estimator("supernet", space, **opts)
    plain = get_estimator("supernet", space, memory_format="contiguous", **opts)
    assert fast.memory_format == "channels_last"
    for spec in [*space.sample(5, 3), space.parse("tiny:w0.5:r32:k3e3_k3e3_k3e3_k3e3")]:
        x_bn, x_val = plain._data(plain.input_shape(spec))
        y_val = plain.dataset.y[plain._val_idx]
        ref = fast.supernet.extract(spec)  # a fresh network, NCHW
        recalibrate_bn(ref, batches_of(x_bn, 8))
        cl = fast.supernet.extract(spec, reuse=True).to(memory_format=torch.channels_last)
        recalibrate_bn(cl, batches_of(x_bn.contiguous(memory_format=torch.channels_last), 8))
        with torch.no_grad():
            a, b = ref(x_val), cl(x_val.contiguous(memory_format=torch.channels_last))
        assert (a - b).abs().max().item() <= 1e-4 * max(1.0, a.abs().max().item()), spec
        assert torch.equal(a.argmax(1), b.argmax(1)), spec
        expected = top1_accuracy(ref, x_val, y_val)
        assert fast.estimate(spec).score == expected == plain.estimate(spec).score, spec
    with pytest.raises(EdgenasError, match="memory_format must be one of channels_last, contiguous"):
        get_estimator("supernet", space, memory_format="nhwc", **opts)


def test_supernet_estimator_recalibrates_on_512_examples_by_default(checkpoint):
    """The default BatchNorm subset: 8 batches of 64 (512 examples; fewer when the split is smaller), a
    seeded draw shared by every spec."""
    from edgenas.datasets import load_dataset

    space = get_space("tiny", resolutions=[32], widths=[0.5])
    ds = load_dataset(DATA, seed=0)
    est = get_estimator("supernet", space, weights=str(checkpoint), dataset=ds, torch_device="cpu")
    assert (est.bn_batches, est.batch_size) == (8, 64)
    assert len(est._bn_idx) == min(len(ds.train_idx), 512)
    assert set(est._bn_idx.tolist()) <= set(torch.as_tensor(ds.train_idx).tolist())


SMALL_CNN = str(Path(__file__).resolve().parent.parent / "fixtures" / "small_cnn.py") + ":build"


class TestPruneFinetuneEstimator(EstimatorContract):
    """``prune-finetune`` on the ``model`` space of a small residual CNN (members inherit its weights)."""

    estimator_name = "prune-finetune"
    space_name = "model"
    space_options: ClassVar[dict[str, Any]] = {"model": SMALL_CNN, "resolution": 8}
    task = Task(num_classes=4, in_channels=3)
    trains_models = True

    @pytest.fixture
    def options(self, name: str) -> dict[str, Any]:
        pytest.importorskip("torch_pruning", reason="the model space needs the compress extra")
        return {"dataset": "synthetic:n=160,classes=4,channels=3,size=8", "epochs": 1, "train_samples": 32,
                "val_samples": 0, "batch_size": 8, "torch_device": "cpu"}


def test_prune_finetune_refuses_spaces_that_build_from_scratch():
    with pytest.raises(EdgenasError, match="use the 'train' estimator"):
        get_estimator("prune-finetune", get_space("tiny"), dataset=DATA)


def test_prune_finetune_with_zero_epochs_scores_the_inherited_weights():
    """epochs=0: no training step (samples 0), the source's weights with BatchNorm re-estimated."""
    pytest.importorskip("torch_pruning", reason="the model space needs the compress extra")
    space = get_space("model", model=SMALL_CNN, resolution=8)
    est = get_estimator("prune-finetune", space, Task(num_classes=4, in_channels=3), dataset=DATA, epochs=0,
                        train_samples=16, val_samples=16, batch_size=8, torch_device="cpu")
    e = est.estimate(space.sample(1, 0)[0])
    assert e.epochs == 0 and e.samples == 0
    assert 0.0 <= e.score <= 1.0
