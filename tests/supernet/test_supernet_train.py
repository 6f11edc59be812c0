"""Supernet training: the sandwich rule learns (the largest subnet beats chance on digits), a run resumed
from its checkpoint ends with the weights of an uninterrupted one, and checkpoints round-trip."""

from __future__ import annotations

import pytest
import torch

from edgenas.datasets import load_dataset
from edgenas.errors import EdgenasError
from edgenas.spaces import get_space
from edgenas.supernet import (
    batches_of,
    load_supernet,
    read_checkpoint,
    recalibrate_bn,
    train_supernet,
)

SETTINGS = {"train_samples": 256, "batch_size": 32, "n_random": 1}
"""One short epoch: 8 sandwich steps of 3 subnets at 32 px."""
RESUME = {**SETTINGS, "train_samples": 32, "batch_size": 16}
"""Two sandwich steps an epoch: resuming is about state, not about learning."""


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def space():
    return get_space("tiny", widths=[0.5], resolutions=[32])


@pytest.fixture(scope="module")
def trained(space, digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("sn") / "sn.pt"
    run = train_supernet(space, None, digits, 1, seed=3, device="cpu", checkpoint=path, **SETTINGS)
    return run, path


def test_resumed_run_equals_uninterrupted(space, digits, tmp_path):
    full = train_supernet(space, None, digits, 2, seed=3, device="cpu", **RESUME)
    path = tmp_path / "sn.pt"

    def crash_after_first(epoch: int, record: dict) -> None:
        if epoch == 1:
            raise Crash

    with pytest.raises(Crash):
        train_supernet(space, None, digits, 2, seed=3, device="cpu", checkpoint=path, on_epoch=crash_after_first,
                       **RESUME)
    assert read_checkpoint(path)["epoch"] == 1
    resumed = train_supernet(space, None, digits, 2, seed=3, device="cpu", checkpoint=path, resume=True, **RESUME)
    assert resumed.resumed_from == 1 and len(resumed.history) == 2
    a, b = full.supernet.state_dict(), resumed.supernet.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_checkpoint(path)["epoch"] == 2
    # a finished run resumes to itself without training
    again = train_supernet(space, None, digits, 2, seed=3, device="cpu", checkpoint=path, resume=True, **RESUME)
    assert again.resumed_from == 2 and all(torch.equal(a[k], v) for k, v in again.supernet.state_dict().items())
    # a different setting cannot resume this checkpoint
    with pytest.raises(EdgenasError, match="its seed is 3"):
        train_supernet(space, None, digits, 2, seed=4, device="cpu", checkpoint=path, resume=True, **RESUME)


def test_largest_subnet_beats_chance(digits, trained):
    run, _ = trained
    sn = run.supernet
    xt, _ = digits.train((1, 32, 32))
    xv, yv = digits.val((1, 32, 32))
    sn.set_active(sn.largest())
    recalibrate_bn(sn, batches_of(xt, 64, 256))
    with torch.no_grad():
        acc = float((sn(xv).argmax(1) == yv).float().mean())
        sub = sn.extract(sn.largest())
        assert (sub(xv[:64]) - sn(xv[:64])).abs().max().item() <= 1e-5
    print(f"largest subnet after one short epoch: top-1 {acc:.3f}")
    assert acc > 0.25, acc  # chance is 0.1


def test_checkpoint_round_trip(space, trained, tmp_path):
    _, path = trained
    sn, meta = load_supernet(path, device="cpu")
    assert meta["space"] == "tiny" and meta["space_options"]["widths"] == [0.5] and meta["epoch"] == 1
    assert meta["task"] == {"num_classes": 10, "in_channels": 1, "resolution": None}
    assert meta["seed"] == 3 and meta["hparams"]["n_random"] == 1
    saved = read_checkpoint(path)["state_dict"]
    assert saved.keys() == sn.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in sn.state_dict().items())
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(EdgenasError, match="not a torch file"):
        load_supernet(bad)
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(EdgenasError, match="not an edgenas supernet checkpoint"):
        load_supernet(tmp_path / "other.pt")
    with pytest.raises(EdgenasError, match="not found"):
        train_supernet(space, None, "digits", 1, checkpoint=tmp_path / "missing.pt", resume=True)


def test_device_is_checked_before_any_work(space, digits, tmp_path):
    """Training takes edgenas' one device path (edgenas.torchdevice): a device this machine lacks is one
    line, and nothing is written."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(EdgenasError, match="cuda:0"):
        train_supernet(space, None, digits, 1, device="cuda:0", checkpoint=tmp_path / "sn.pt", **RESUME)
    assert not (tmp_path / "sn.pt").exists()
    with pytest.raises(EdgenasError, match="tpu"):
        load_supernet(tmp_path / "missing.pt", device="tpu")


def test_smallest_prob_decides_how_often_the_smallest_is_trained(space):
    """At 1 (the sandwich rule, the default before 2026-12-08) every step trains the smallest and no coin
    is drawn (the subnets of runs before the option); at 0 (the default) never (a random subnet takes its
    place, same count); in between, about that fraction of steps."""
    import random

    from edgenas.supernet.train import TRAIN_DEFAULTS, _step_subnets

    assert TRAIN_DEFAULTS["smallest_prob"] == 0.0
    smallest = space.parse("tiny:w0.5:r32:k3e3_k3e3_k3e3_k3e3")
    a, b = random.Random(5), random.Random(5)
    for _ in range(20):
        assert _step_subnets(a, space, smallest, 2, 1.0) == [smallest] + [space.random(b) for _ in range(2)]
    for p, lo, hi in ((0.0, 0, 0), (0.5, 150, 250)):
        rng = random.Random(1)
        steps = [_step_subnets(rng, space, smallest, 2, p) for _ in range(400)]
        assert all(len(s) == 3 for s in steps)
        with_smallest = sum(s[0] == smallest for s in steps)
        assert lo <= with_smallest <= hi, (p, with_smallest)
        assert len({str(x) for s in steps for x in s}) > 300  # random subnets fill the other places


def test_smallest_prob_is_validated_and_recorded(space, digits, tmp_path):
    for bad in (1.5, -0.1, True, "half"):
        with pytest.raises(EdgenasError, match="smallest_prob must be a number in"):
            train_supernet(space, None, digits, 1, device="cpu", smallest_prob=bad, **RESUME)
    path = tmp_path / "sn.pt"
    run = train_supernet(space, None, digits, 1, seed=2, device="cpu", checkpoint=path, smallest_prob=0, **RESUME)
    assert read_checkpoint(path)["hparams"]["smallest_prob"] == 0.0
    default = train_supernet(space, None, digits, 1, seed=2, device="cpu", **RESUME)
    assert all(torch.equal(v, default.supernet.state_dict()[k]) for k, v in run.supernet.state_dict().items())
    sandwich = train_supernet(space, None, digits, 1, seed=2, device="cpu", smallest_prob=1, **RESUME)
    # a different training: the smallest on every step, so different weights
    assert any(not torch.equal(v, sandwich.supernet.state_dict()[k]) for k, v in run.supernet.state_dict().items())
    with pytest.raises(EdgenasError, match="its hparams"):
        train_supernet(space, None, digits, 1, seed=2, device="cpu", checkpoint=path, resume=True, smallest_prob=1,
                       **RESUME)


def test_checkpoint_of_older_versions_resumes(space, digits, tmp_path):
    """Checkpoints written before an option existed (no key in their hparams) resume as runs of what they were
    trained with: before smallest_prob, the sandwich rule (1), not today's default (0)."""
    from edgenas.supernet.train import save_checkpoint

    path = tmp_path / "sn.pt"

    def crash(epoch: int, record: dict) -> None:
        raise Crash

    with pytest.raises(Crash):
        train_supernet(space, None, digits, 2, seed=3, device="cpu", checkpoint=path, on_epoch=crash,
                       smallest_prob=1, **RESUME)
    ck = read_checkpoint(path)
    del ck["hparams"]["smallest_prob"]
    save_checkpoint(path, ck)
    with pytest.raises(EdgenasError, match="its hparams"):  # today's default is not what it was trained with
        train_supernet(space, None, digits, 2, seed=3, device="cpu", checkpoint=path, resume=True, **RESUME)
    resumed = train_supernet(space, None, digits, 2, seed=3, device="cpu", checkpoint=path, resume=True,
                             smallest_prob=1, **RESUME)
    assert resumed.resumed_from == 1
