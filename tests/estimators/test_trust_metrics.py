"""Trust metrics (:mod:`edgenas.estimators.trust`): the formulas on hand-made examples, the noise's SNR,
the train estimator's options, the search job's checks, and a small search on worst_class_accuracy
through the job layer (objectives, budgets, records, front files)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from searchkit import BOARD, user_dir, write_board

from edgenas import get_space
from edgenas.errors import EdgenasError
from edgenas.estimators import get_estimator
from edgenas.estimators.training import top1_accuracy
from edgenas.estimators.trust import (
    TRUST_METRICS,
    add_noise,
    evaluate,
    expected_calibration_error,
    worst_class_accuracy,
)
from edgenas.jobs import DeviceConfig, EstimatorConfig, JobConfig, SearchConfig, SpaceConfig
from edgenas.search.job import SearchJob

DATA = "synthetic:n=64,classes=4,channels=3,size=8"
TRAIN = {"dataset": DATA, "epochs": 1, "train_samples": 24, "val_samples": 24, "batch_size": 8}


# -- the formulas ---------------------------------------------------------------------------------
def test_ece_of_a_hand_made_example():
    """Confidences 0.9 (one right, one wrong), 0.7 (right), 0.55 (right) fall in three of the 15 bins:
    ECE = 2/4 |0.5 - 0.9| + 1/4 |1 - 0.7| + 1/4 |1 - 0.55| = 0.3875."""
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.55, 0.45]])
    y = np.array([0, 1, 1, 0])
    assert expected_calibration_error(probs, y) == pytest.approx(0.3875, abs=1e-12)
    # one bin: |accuracy - mean confidence| = |0.75 - 0.7625|
    assert expected_calibration_error(probs, y, bins=1) == pytest.approx(0.0125, abs=1e-12)
    # calibrated within its bin: 8 of 10 right at confidence 0.8
    calibrated = np.tile([[0.8, 0.2]], (10, 1))
    assert expected_calibration_error(calibrated, np.array([0] * 8 + [1] * 2)) == pytest.approx(0.0, abs=1e-12)


def test_ece_bins_are_closed_on_the_right():
    """Bins are ((m-1)/15, m/15]: a confidence on an edge goes with the bin below it, 1.0 with the last."""
    edge = np.linspace(0.0, 1.0, 16)[8]  # 8/15, as the bins' edges are computed
    conf = np.array([0.5, edge, 0.55, 0.95, 1.0])
    probs = np.column_stack([conf, 1 - conf])  # class 0 predicted (at the 0.5 tie too: argmax takes the first)
    y = np.array([0, 1, 0, 0, 1])  # right, wrong, right, right, wrong
    expected = (2 / 5 * abs(0.5 - (0.5 + edge) / 2)  # bin (7/15, 8/15]: 0.5 and 8/15
                + 1 / 5 * abs(1.0 - 0.55)  # bin (8/15, 9/15]
                + 2 / 5 * abs(0.5 - (0.95 + 1.0) / 2))  # bin (14/15, 1]: 0.95 and 1.0
    assert expected_calibration_error(probs, y) == pytest.approx(expected, abs=1e-12)


def test_worst_class_accuracy_takes_the_worst_class_present():
    pred = np.array([0, 0, 1, 1, 2, 2, 3])
    y = np.array([0, 0, 1, 2, 2, 2, 0])
    # class 0: 2 of 3 right, class 1: 1 of 1, class 2: 2 of 3; class 3 is only predicted: not counted
    assert worst_class_accuracy(pred, y) == pytest.approx(2 / 3)
    assert worst_class_accuracy(y, y) == 1.0
    assert math.isnan(worst_class_accuracy(np.array([]), np.array([])))


def test_noise_has_the_stated_snr_per_example_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 16, 16, generator=g) * torch.linspace(0.2, 3.0, 64).reshape(-1, 1, 1, 1) + 0.5
    noisy = add_noise(x, 20.0, torch.Generator().manual_seed(1))
    signal = x.pow(2).mean(dim=(1, 2, 3))
    noise = (noisy - x).pow(2).mean(dim=(1, 2, 3))
    snr = 10 * torch.log10(signal / noise)
    assert snr.mean().item() == pytest.approx(20.0, abs=0.1)  # 768 values per example: ~0.2 dB each
    assert (snr - 20.0).abs().max().item() < 1.5
    assert torch.equal(noisy, add_noise(x, 20.0, torch.Generator().manual_seed(1)))
    assert not torch.equal(noisy, add_noise(x, 20.0, torch.Generator().manual_seed(2)))
    low = add_noise(x, 0.0, torch.Generator().manual_seed(1)) - x  # 0 dB: noise power = signal power
    assert (low.pow(2).mean(dim=(1, 2, 3)) / signal).mean().item() == pytest.approx(1.0, abs=0.02)
    assert torch.equal(add_noise(torch.zeros(2, 3, 4, 4), 20.0, torch.Generator()), torch.zeros(2, 3, 4, 4))
    cl = x.contiguous(memory_format=torch.channels_last)
    assert add_noise(cl, 20.0, torch.Generator().manual_seed(1)).is_contiguous(memory_format=torch.channels_last)


def test_evaluate_matches_top1_and_the_formulas_on_its_logits():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5)).eval()
    x, y = torch.randn(300, 3, 2, 2), torch.randint(0, 5, (300,))
    acc, found = evaluate(model, x, y, TRUST_METRICS, snr_db=200.0, noise_seed=3, chunk=64)
    assert acc == top1_accuracy(model, x, y)
    with torch.no_grad():
        logits = model(x)
    assert found["worst_class_accuracy"] == worst_class_accuracy(logits.argmax(1).numpy(), y.numpy())
    assert found["calibration_error"] == pytest.approx(
        expected_calibration_error(torch.softmax(logits.double(), 1).numpy(), y.numpy()), abs=1e-9)
    assert found["noisy_accuracy"] == acc  # 200 dB: the noise moves no prediction
    _, loud = evaluate(model, x, y, ["noisy_accuracy"], snr_db=-20.0, noise_seed=3)
    assert set(loud) == {"noisy_accuracy"} and loud["noisy_accuracy"] != acc  # 100x the signal's power


def test_the_search_fields_are_the_trust_metrics():
    """The search's trust fields (kept free of torch in fields.py) name every metric with its direction."""
    from edgenas.estimators.trust import MAXIMISED
    from edgenas.search.fields import TRUST_FIELDS

    assert TRUST_FIELDS == MAXIMISED and tuple(TRUST_FIELDS) == TRUST_METRICS


# -- the estimator ------------------------------------------------------------------------------
def test_train_metrics_ride_on_the_same_pass_without_changing_the_score():
    space = get_space("tiny", resolutions=[16])
    spec = space.sample(1, seed=4)[0]
    plain = get_estimator("train", space, metrics=[], **TRAIN).estimate(spec)
    full = get_estimator("train", space, metrics=list(TRUST_METRICS), **TRAIN).estimate(spec)
    assert plain.metrics == {} and set(full.metrics) == set(TRUST_METRICS)
    assert full.score == plain.score
    assert get_estimator("train", space, **TRAIN).provides() == ("worst_class_accuracy", "calibration_error")
    record = full.as_record()
    assert [k for k in record if k in TRUST_METRICS] == list(TRUST_METRICS)
    with pytest.raises(EdgenasError, match="option noise_snr_db: nan is not a number"):
        get_estimator("train", space, noise_snr_db=float("nan"), **TRAIN)


# -- the search ---------------------------------------------------------------------------------
def _job(objectives: list[str], estimator: str = "train", budgets: tuple[str, ...] = (), sampler: str = "nsga2",
         **options: object) -> SearchJob:
    opts = {**TRAIN, **options} if estimator in ("train", "synflow>train") else {}
    return SearchJob(JobConfig(space=SpaceConfig("tiny", {"resolutions": [16]}),
                               search=SearchConfig(objectives=objectives, budgets=list(budgets), trials=2,
                                                   sampler=sampler),
                               estimator=EstimatorConfig.chain(estimator, opts)))


def test_trust_fields_add_their_metric_to_the_estimator():
    job = _job(["accuracy", "worst_class_accuracy", "macs"], budgets=("noisy_accuracy>=0.2",))
    fields = {f.name: f for f in job.objectives}
    assert fields["worst_class_accuracy"].maximize and not fields["worst_class_accuracy"].cheap
    assert job.budgets[0].field.maximize and not job.budgets[0].field.cheap
    assert job.config["estimator"]["options"]["metrics"] == ["worst_class_accuracy", "calibration_error",
                                                             "noisy_accuracy"]
    assert job.job.estimator is not None
    assert job.job.estimator.build(job.space, job.task).provides() == TRUST_METRICS
    chain = _job(["calibration_error", "macs"], "synflow>train", metrics=[])
    assert not chain.objectives[0].maximize
    assert chain.config["estimator"]["options"]["expensive_options"]["metrics"] == ["calibration_error"]
    again = SearchJob(job.config)  # a stored job (resume, a worker elsewhere) resolves to itself
    assert again.config["estimator"] == job.config["estimator"]


@pytest.mark.parametrize(("objectives", "estimator", "budgets", "sampler", "message"), [
    (["worst_class_accuracy", "macs"], "synflow", (), "nsga2",
     "worst_class_accuracy comes from the estimator's trust metrics, which 'synflow' does not give; "
     "estimators that do: halving, prune-finetune, supernet, train"),
    (["accuracy", "macs"], "synflow>naswot", ("calibration_error<=0.1",), "nsga2", "'naswot' does not give"),
    (["accuracy", "worst_class_accuracy", "macs"], "train", (), "frontier",
     "sampler 'frontier' models one maximised estimated objective"),
    (["calibration_error", "macs"], "train", (), "frontier", "with calibration_error use nsga2"),
])
def test_trust_misuse_is_one_line(objectives, estimator, budgets, sampler, message):
    with pytest.raises(EdgenasError, match=message) as err:
        _job(objectives, estimator, budgets, sampler)
    assert "\n" not in str(err.value)


def test_a_search_on_worst_class_accuracy_records_and_bounds_it(tmp_path):
    """A real search through the job layer (train on synthetic data, the synthetic board's latency) on
    accuracy and worst_class_accuracy: the objective values are the estimate's score and metric, the
    calibration budget holds on the front, and the run folder's files carry every trust metric."""
    from edgenas.jobs import run_job
    from edgenas.search.record import TrialRecord

    write_board(user_dir(), "tiny", resolutions=[16])
    cfg = JobConfig(space=SpaceConfig("tiny", {"resolutions": [16]}), device=DeviceConfig(name=BOARD),
                    estimator=EstimatorConfig("train", options=dict(TRAIN)),
                    search=SearchConfig(objectives=["accuracy", "worst_class_accuracy", "latency_ms"],
                                        budgets=["calibration_error<=0.5"], sampler="random-feasible", trials=5,
                                        out=str(tmp_path / "run")))
    result = run_job(cfg, quiet=True, progress=False)
    assert result.search is not None
    study = result.search.study
    scored = 0
    for t in study.get_trials():
        rec = TrialRecord.from_trial(t)
        assert rec is not None and rec.estimate is not None
        scored += 1
        assert t.values[:2] == [rec.accuracy, rec.estimate["worst_class_accuracy"]]  # two objectives, one training
        assert set(TRUST_METRICS[:2]) <= set(rec.estimate)
        cal = rec.estimate["calibration_error"]
        assert t.constraints == {"calibration_error<=0.5": pytest.approx((cal - 0.5) / 0.5)}
    assert scored == 5
    front = result.search.front
    assert front and all(r["calibration_error"] <= 0.5 for r in front)
    with open(tmp_path / "run" / "front.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"worst_class_accuracy", "calibration_error", "latency_ms"} <= set(rows[0])
    assert [float(r["worst_class_accuracy"]) for r in rows] == [r["worst_class_accuracy"] for r in front]
    with open(tmp_path / "run" / "trials.csv") as f:
        assert all(r["calibration_error"] for r in csv.DictReader(f))
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["estimator"]["options"]["metrics"] == ["worst_class_accuracy", "calibration_error"]
