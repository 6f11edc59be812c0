"""Simulated int8 accuracy (``precision = "int8"`` of the train and supernet estimators, the
``accuracy_int8`` objective): the simulation against a real LiteRT int8 file, the estimators' option,
and the search job's checks."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch

from edgenas import Task, get_space
from edgenas.errors import EdgenasError
from edgenas.estimators import get_estimator
from edgenas.estimators.int8_sim import SimulatedInt8, quantize_weights_
from edgenas.jobs import EstimatorConfig, JobConfig, SearchConfig, SpaceConfig
from edgenas.search.job import SearchJob

DATA = "synthetic:n=96,classes=4,channels=3,size=16,noise=0.3"


def test_weights_land_on_the_per_channel_int8_grid():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3)
    before = conv.weight.detach().clone()
    quantize_weights_(conv)
    w = conv.weight.detach().reshape(5, -1)
    scale = before.reshape(5, -1).abs().amax(1, keepdim=True) / 127
    steps = w / scale
    assert torch.allclose(steps, steps.round(), atol=1e-3)
    assert steps.abs().max() == pytest.approx(127, abs=1e-3)
    assert (w - before.reshape(5, -1)).abs().max() <= scale.max() / 2 + 1e-7
    assert not torch.equal(w, before.reshape(5, -1))


@pytest.mark.slow  # trains the tiny test model and converts it (~30 s)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_simulation_is_closer_to_the_litert_int8_file_than_the_float_model(tmp_path: pathlib.Path):
    """A real int8 .tflite (the exporter's min/max recipe) of the trained tiny test model: the simulated
    logits are nearer the file's than torch's float logits are, and its top-1 matches the file's."""
    from edgenas.exporters.convert import quantize_int8, tflite_fp32_bytes
    from edgenas.exporters.tflite import litert_runner
    from edgenas.testing.models import trained

    job = trained("tiny").job
    path = tmp_path / "m.tflite"
    path.write_bytes(quantize_int8(tflite_fp32_bytes(job.module, job.input_shape), job.representative))
    lite = litert_runner(path)(job.val_x)
    rep = torch.from_numpy(job.representative)
    sim = SimulatedInt8(job.module, [rep[i:i + 64] for i in range(0, len(rep), 64)])
    with torch.no_grad():
        s = sim(torch.from_numpy(job.val_x)).numpy()
        f = job.module(torch.from_numpy(job.val_x)).numpy()
    assert np.abs(s - lite).max() < 0.5 * np.abs(f - lite).max()
    assert np.abs(s - lite).mean() < np.abs(f - lite).mean()
    assert np.mean(s.argmax(1) == lite.argmax(1)) >= 0.99
    with torch.no_grad():  # the caller's model is not changed by the simulation
        assert np.array_equal(job.module(torch.from_numpy(job.val_x)).numpy(), f)


def test_train_estimator_scores_int8_and_refuses_other_precisions():
    space = get_space("tiny", resolutions=[16])
    spec = space.sample(1, seed=0)[0]
    kw = {"dataset": DATA, "epochs": 2, "train_samples": 64, "val_samples": 0, "batch_size": 16}
    est = get_estimator("train", space, precision="int8", **kw)
    a = est.score(spec)
    assert 0.0 <= a <= 1.0
    assert get_estimator("train", space, precision="int8", **kw).score(spec) == a  # seeded: reproducible
    with pytest.raises(EdgenasError, match="precision must be one of fp32, int8, got 'int4'"):
        get_estimator("train", space, precision="int4", **kw)


def test_supernet_estimator_scores_int8_without_touching_the_shared_weights(tmp_path: pathlib.Path):
    from edgenas.supernet import train_supernet

    space = get_space("tiny", resolutions=[16], widths=[0.5])
    path = tmp_path / "sn.pt"
    train_supernet(space, Task(num_classes=4, in_channels=3), DATA, 1, seed=0, device="cpu", checkpoint=path,
                   batch_size=8)
    kw = {"weights": str(path), "dataset": DATA, "bn_batches": 2, "batch_size": 8, "val_samples": 0,
          "torch_device": "cpu"}
    fp32 = get_estimator("supernet", space, **kw)
    int8 = get_estimator("supernet", space, precision="int8", **kw)
    specs = space.sample(3, seed=1)
    before = [fp32.score(s) for s in specs]
    scores = [int8.score(s) for s in specs]
    assert all(0.0 <= x <= 1.0 for x in scores)
    fp32.clear_cache()
    assert [fp32.score(s) for s in specs] == before  # int8 scoring rounded a copy, not the supernet
    with pytest.raises(EdgenasError, match="supernet: precision must be one of"):
        get_estimator("supernet", space, precision="float16", **kw)


def _job(objectives: list[str], estimator: str = "train", **options: object) -> SearchJob:
    return SearchJob(JobConfig(space=SpaceConfig("tiny", {"resolutions": [16]}),
                               search=SearchConfig(objectives=objectives, trials=2),
                               estimator=EstimatorConfig(estimator, options={"dataset": DATA, **options})))


def test_accuracy_int8_objective_sets_the_estimator_precision():
    job = _job(["accuracy_int8", "macs"])
    assert [f.name for f in job.objectives] == ["accuracy_int8", "macs"]
    assert job.objectives[0].maximize and not job.objectives[0].cheap
    assert job.config["estimator"]["options"]["precision"] == "int8"  # stored in the run's resolved job
    assert job.job.estimator is not None and job.job.estimator.build(job.space, job.task).precision == "int8"
    assert _job(["accuracy", "macs"]).config["estimator"]["options"].get("precision") is None
    chain = SearchJob(JobConfig(space=SpaceConfig("tiny", {"resolutions": [16]}),
                                search=SearchConfig(objectives=["accuracy_int8", "macs"], trials=2),
                                estimator=EstimatorConfig.chain("synflow>train", {"dataset": DATA, "epochs": 1})))
    opts = chain.config["estimator"]["options"]  # a chain's score is its expensive member's
    assert opts["expensive_options"] == {"dataset": DATA, "epochs": 1, "precision": "int8"}
    assert chain.job.estimator is not None and chain.job.estimator.build(chain.space, chain.task).expensive.precision \
        == "int8"


@pytest.mark.parametrize(("objectives", "estimator", "options", "message"), [
    (["accuracy", "accuracy_int8"], "train", {}, "names both accuracy and accuracy_int8"),
    (["accuracy_int8", "macs"], "synflow", {}, "accuracy_int8 needs an estimator that scores simulated int8"),
    (["accuracy_int8", "macs"], "synflow>naswot", {}, "'naswot' does not"),
    (["accuracy_int8", "macs"], "train", {"precision": "fp32"}, "precision option is 'fp32'"),
])
def test_accuracy_int8_misuse_is_one_line(objectives, estimator, options, message):
    opts = options if estimator == "train" else {}
    with pytest.raises(EdgenasError, match=message) as err:
        SearchJob(JobConfig(space=SpaceConfig("tiny", {"resolutions": [16]}),
                            search=SearchConfig(objectives=objectives, trials=2),
                            estimator=EstimatorConfig.chain(estimator, opts if estimator != "train"
                                                            else {"dataset": DATA, **opts})))
    assert "\n" not in str(err.value)
