"""Offline datasets: digits, synthetic, image folders and .npz files; seeded recorded splits; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from edgenas.datasets import adapt_images, load_dataset
from edgenas.errors import EdgenasError


def test_digits_is_bundled_offline_and_split_is_stratified():
    d = load_dataset("digits", seed=0)
    assert d.x.shape == (1797, 1, 8, 8) and d.x.dtype == torch.float32
    assert d.num_classes == 10 and len(d) == 1797
    assert len(d.train_idx) + len(d.val_idx) == 1797
    assert not set(d.train_idx) & set(d.val_idx)
    assert len(d.val_idx) == round(0.2 * 1797)
    per_class_val = np.bincount(d.y[torch.as_tensor(d.val_idx)].numpy(), minlength=10)
    assert per_class_val.min() >= 30  # stratified: ~36 of each class
    xt, _ = d.train()
    assert abs(float(xt.mean())) < 1e-4 and abs(float(xt.std()) - 1) < 0.01  # standardised on train


def test_split_is_seeded_and_recorded():
    a, b, c = load_dataset("digits", seed=3), load_dataset("digits", seed=3), load_dataset("digits", seed=4)
    assert np.array_equal(a.train_idx, b.train_idx) and a.split_record() == b.split_record()
    assert not np.array_equal(a.train_idx, c.train_idx)
    rec = a.split_record()
    assert rec["seed"] == 3 and rec["n_train"] + rec["n_val"] == 1797 and len(rec["split_sha1"]) == 40
    assert rec["split_sha1"] != c.split_record()["split_sha1"]
    assert load_dataset("digits", seed=3, val_fraction=0.5).split_record()["n_val"] == 898


def test_digits_resize_option():
    d = load_dataset("digits:size=16")
    assert d.x.shape == (1797, 1, 16, 16)
    assert load_dataset("digits", size=12).x.shape[-1] == 12


def test_synthetic_is_seeded_and_configurable():
    a = load_dataset("synthetic:n=40,classes=4,channels=2,size=8", seed=1)
    b = load_dataset("synthetic", seed=1, n=40, classes=4, channels=2, size=8)
    assert a.x.shape == (40, 2, 8, 8) and a.num_classes == 4
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, load_dataset("synthetic:n=40,classes=4,channels=2,size=8", seed=2).x)
    assert np.bincount(a.y.numpy()).tolist() == [10, 10, 10, 10]


def test_batch_is_seeded_and_from_the_training_split():
    d = load_dataset("synthetic:n=64,classes=4,size=8")
    x1, _ = d.batch(16, seed=5, shape=(3, 12, 12))
    x2, _ = d.batch(16, seed=5, shape=(3, 12, 12))
    assert x1.shape == (16, 3, 12, 12) and torch.equal(x1, x2)
    assert not torch.equal(d.batch(16, seed=6)[0], d.batch(16, seed=5)[0])
    assert d.batch(1000, seed=0)[0].shape[0] == len(d.train_idx)


def test_adapt_images_repeats_gray_and_resizes():
    x = torch.rand(2, 1, 8, 8)
    y = adapt_images(x, (3, 16, 16))
    assert y.shape == (2, 3, 16, 16)
    assert torch.equal(y[:, 0], y[:, 2])
    assert adapt_images(x, (1, 8, 8)) is x
    with pytest.raises(EdgenasError, match="has 3 channels but the network takes 1"):
        adapt_images(torch.rand(2, 3, 8, 8), (1, 8, 8))


def _write_images(root, classes: dict[str, int], mode: str = "RGB", size: tuple[int, int] = (10, 7)) -> None:
    rng = np.random.default_rng(0)
    for name, n in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / name / f"{i}.png")


def test_image_folder_rgb_and_gray(tmp_path):
    _write_images(tmp_path / "rgb", {"cat": 3, "dog": 4})
    d = load_dataset(tmp_path / "rgb", size=16)
    assert d.x.shape == (7, 3, 16, 16) and d.num_classes == 2 and d.class_names == ["cat", "dog"]
    assert d.y.tolist() == [0, 0, 0, 1, 1, 1, 1]
    _write_images(tmp_path / "gray", {"a": 2, "b": 2}, mode="L")
    g = load_dataset(str(tmp_path / "gray"))
    assert g.x.shape == (4, 1, 32, 32)


@pytest.mark.parametrize("case, message", [
    ("missing", "not found"),
    ("empty", "no class sub-folders"),
    ("empty_class", "class 'b' holds no images"),
    ("one_class", "only one class"),
    ("corrupt", "cannot read image"),
])
def test_image_folder_errors(tmp_path, case, message):
    root = tmp_path / "data"
    if case == "empty":
        root.mkdir()
    elif case == "empty_class":
        _write_images(root, {"a": 2})
        (root / "b").mkdir()
    elif case == "one_class":
        _write_images(root, {"a": 2})
    elif case == "corrupt":
        _write_images(root, {"a": 2, "b": 1})
        (root / "b" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(EdgenasError, match=message):
        load_dataset(str(root) + ("/" if case == "missing" else ""))


def test_npz_layouts_and_label_remapping(tmp_path):
    rng = np.random.default_rng(0)
    nhwc = tmp_path / "nhwc.npz"
    np.savez(nhwc, x=rng.integers(0, 255, (12, 6, 6, 3), dtype=np.uint8), y=np.array([7, 3] * 6))
    d = load_dataset(nhwc)
    assert d.x.shape == (12, 3, 6, 6) and d.num_classes == 2 and d.class_names == ["3", "7"]
    assert set(d.y.tolist()) == {0, 1}
    nchw = tmp_path / "nchw.npz"
    np.savez(nchw, x=rng.random((10, 3, 5, 5)).astype(np.float32), y=np.arange(10) % 2)
    assert load_dataset(nchw, size=8).x.shape == (10, 3, 8, 8)
    nhw = tmp_path / "nhw.npz"
    np.savez(nhw, x=rng.random((10, 5, 5)), y=(np.arange(10) % 2).astype(float))
    assert load_dataset(nhw).x.shape == (10, 1, 5, 5)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((4, 5, 5))}, r"missing array\(s\) \['y'\]"),
    ({"x": np.zeros((4, 5, 5)), "y": np.zeros(3)}, "y must be a vector of 4 labels"),
    ({"x": np.zeros((4, 5)), "y": np.zeros(4)}, "x must be N x H x W"),
    ({"x": np.zeros((4, 5, 5)), "y": np.array([0.5, 1, 0, 1])}, "integer class labels"),
    ({"x": np.full((4, 5, 5), np.nan), "y": np.array([0, 1, 0, 1])}, "NaN or infinite"),
    ({"x": np.zeros((4, 5, 5)), "y": np.zeros(4, dtype=int)}, "single class"),
    ({"x": np.zeros((0, 5, 5)), "y": np.zeros(0, dtype=int)}, "with N > 0"),
    ({"x": np.zeros((1, 5, 5)), "y": np.zeros(1, dtype=int)}, "single class"),
])
def test_malformed_npz_is_a_clear_error(tmp_path, arrays, message):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(EdgenasError, match=message):
        load_dataset(p)


def test_missing_unknown_and_bad_options(tmp_path):
    with pytest.raises(EdgenasError, match="not found"):
        load_dataset(tmp_path / "nope.npz")
    with pytest.raises(EdgenasError, match="unknown dataset 'cifar10'"):
        load_dataset("cifar10")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(EdgenasError, match=r"neither an image folder nor a \.npz"):
        load_dataset(tmp_path / "notes.txt")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(EdgenasError, match="cannot read"):
        load_dataset(tmp_path / "junk.npz")
    with pytest.raises(EdgenasError, match="bad option"):
        load_dataset("digits:colour=1")
    with pytest.raises(EdgenasError, match="key=value"):
        load_dataset("synthetic:n")
    with pytest.raises(EdgenasError, match="classes >= 2"):
        load_dataset("synthetic:classes=1")
    with pytest.raises(EdgenasError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.0)
