"""Offline image-classification datasets for data-dependent estimators (no torchvision).

Sources (:func:`load_dataset`):

* ``digits`` — scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes, 1 channel);
  ``digits:size=32`` resizes them (bilinear).
* ``synthetic`` — seeded class-conditional images: each class is a random smooth prototype, each sample
  its prototype plus Gaussian noise. Options ``n`` (samples, 512), ``classes`` (10), ``channels`` (3),
  ``size`` (32), ``noise`` (1.0), e.g. ``synthetic:n=256,classes=4,size=16``.
* a folder with one sub-folder per class (sorted names are the classes), images read with Pillow and
  resized to ``size`` x ``size`` (default 32); grayscale when every image is, else RGB.
* a ``.npz`` file with arrays ``x`` (N,H,W / N,H,W,C / N,C,H,W; uint8 0..255 or float) and ``y``
  (N integer labels; any values, remapped to 0..K-1 in sorted order).

Pixels are scaled to [0, 1] and standardised per channel with the training split's mean and std. The
train/val split is seeded and stratified when every class has two or more samples;
:meth:`Dataset.split_record` records it (seed, fraction, sizes and a SHA-1 of the index lists).

A missing, empty or malformed dataset raises :class:`~edgenas.errors.EdgenasError` with one line
saying what is wrong (the CLI exits 2).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edgenas.errors import EdgenasError

BUILTIN_DATASETS = ("digits", "synthetic")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@dataclass
class Dataset:
    """Images ``x`` (float32, N x C x H x W, standardised), labels ``y`` (int64) and a seeded split."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    seed: int
    val_fraction: float
    class_names: list[str] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    """Per-channel mean subtracted from the [0, 1] pixels (the training split's): deployments need it."""
    std: list[float] = field(default_factory=list)
    _batches: dict[tuple[int, int, int, int, int], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, repr=False)

    @property
    def channels(self) -> int:
        return int(self.x.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.x.shape[2])

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def train(self, shape: tuple[int, int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The training split, adapted to ``shape`` = (C, H, W) when given (see :func:`adapt_images`)."""
        idx = torch.as_tensor(self.train_idx)
        return _maybe_adapt(self.x[idx], shape), self.y[idx]

    def val(self, shape: tuple[int, int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(self.val_idx)
        return _maybe_adapt(self.x[idx], shape), self.y[idx]

    def batch(
        self, size: int, seed: int, shape: tuple[int, int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` training examples chosen by ``seed`` (all of them when the split is smaller),
        adapted to ``shape``; the last few batches are kept (zero-cost proxies reuse one batch)."""
        key = (int(size), int(seed), *(shape or tuple(self.x.shape[1:])))
        if key not in self._batches:
            rng = np.random.default_rng(seed)
            t = torch.as_tensor(np.sort(rng.permutation(self.train_idx)[:size]))
            if len(self._batches) >= 4:
                self._batches.pop(next(iter(self._batches)))
            self._batches[key] = (_maybe_adapt(self.x[t], shape), self.y[t])
        return self._batches[key]

    def preprocessing(self) -> dict[str, Any]:
        """How raw images become network input: what a deployment must reproduce."""
        return {"scale": "raw pixels to [0, 1] (8-bit images: / 255; sklearn digits: / 16)", "mean": self.mean,
                "std": self.std,
                "normalize": "(x - mean) / std per channel", "layout": "C, H, W",
                "resize": "bilinear to the model's input size (antialiased when shrinking)",
                "source_size": [self.channels, self.resolution, int(self.x.shape[3])]}

    def split_record(self) -> dict[str, Any]:
        """What identifies the split: seed, val fraction, sizes and a digest of both index lists."""
        digest = hashlib.sha1(self.train_idx.astype(np.int64).tobytes() + b"|" +
                              self.val_idx.astype(np.int64).tobytes()).hexdigest()
        return {"dataset": self.name, "seed": self.seed, "val_fraction": self.val_fraction,
                "n_train": len(self.train_idx), "n_val": len(self.val_idx), "split_sha1": digest}


def _maybe_adapt(x: torch.Tensor, shape: tuple[int, int, int] | None) -> torch.Tensor:
    return x if shape is None else adapt_images(x, shape)


def adapt_images(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Fit N x C x H x W images to (C', H', W'): one channel is repeated to C'; other channel counts
    must match; the spatial size is changed by bilinear interpolation (antialiased when shrinking)."""
    c, h, w = shape
    if tuple(x.shape[1:]) == (c, h, w):
        return x
    if x.shape[1] != c:
        if x.shape[1] != 1:
            raise EdgenasError(f"dataset has {x.shape[1]} channels but the network takes {c}; "
                               f"pass --in-channels {x.shape[1]}")
        x = x.expand(-1, c, -1, -1)
    if tuple(x.shape[2:]) != (h, w):
        shrink = h < x.shape[2] or w < x.shape[3]
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)
    return x.contiguous()


def _parse_source(source: str) -> tuple[str, dict[str, Any]]:
    """``name:key=value,key=value`` -> (name, options); values parsed as JSON scalars when possible."""
    name, sep, rest = source.partition(":")
    opts: dict[str, Any] = {}
    if sep and rest:
        for item in rest.split(","):
            key, eq, raw = item.partition("=")
            if not eq or not key.strip():
                raise EdgenasError(f"dataset option {item!r} must look like key=value, e.g. digits:size=16")
            try:
                opts[key.strip()] = json.loads(raw)
            except json.JSONDecodeError:
                opts[key.strip()] = raw
    return name, opts


def load_dataset(
    source: str | Path, *, seed: int = 0, val_fraction: float = 0.2, size: int | None = None, **options: Any
) -> Dataset:
    """Load a dataset by built-in name (with optional ``:key=value`` options), folder or ``.npz`` path.

    ``size`` resizes every image to ``size`` x ``size`` (image folders default to 32). ``options`` are
    the ``synthetic`` generator's (``n``, ``classes``, ``channels``, ``size``, ``noise``).
    """
    if not 0.0 < val_fraction < 1.0:
        raise EdgenasError(f"val_fraction must be in (0, 1), got {val_fraction}")
    text = str(source)
    path = Path(text).expanduser()
    name = text.partition(":")[0]
    if name in BUILTIN_DATASETS:  # a folder with a built-in's name must be given as ./digits
        inline = _parse_source(text)[1]
        opts = {**inline, **options}
        if size is not None:
            opts["size"] = size
        try:
            x, y = _digits(**opts) if name == "digits" else _synthetic(seed=seed, **opts)
        except TypeError as exc:
            raise EdgenasError(f"dataset {name!r}: bad option(s) {sorted(opts)}: {exc}") from None
        return _finish(name if not inline else text, x, y, seed, val_fraction, [])
    if not path.exists():
        if path.suffix == ".npz" or "/" in text or text.startswith("."):
            raise EdgenasError(f"dataset {text!r} not found")
        raise EdgenasError(f"unknown dataset {text!r}; use one of {', '.join(BUILTIN_DATASETS)}, "
                           "an image folder (one sub-folder per class) or a .npz file with x and y arrays")
    if options:
        raise EdgenasError(f"dataset {text!r}: options {sorted(options)} apply to built-in datasets only")
    if path.is_dir():
        x, y, names = _image_folder(path, size or 32)
        return _finish(str(path), x, y, seed, val_fraction, names)
    if path.suffix == ".npz":
        x, y, names = _npz(path)
        if size is not None:
            _check_size(size)
            x = adapt_images(x, (x.shape[1], size, size))
        return _finish(str(path), x, y, seed, val_fraction, names)
    raise EdgenasError(f"dataset {text!r} is neither an image folder nor a .npz file")


def _digits(size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size is not None:
        _check_size(size)
        x = adapt_images(x, (1, int(size), int(size)))
    return x, torch.as_tensor(d.target, dtype=torch.int64)


def _check_size(size: Any) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise EdgenasError(f"dataset size must be a positive integer, got {size!r}")


def _synthetic(
    seed: int = 0, n: int = 512, classes: int = 10, channels: int = 3, size: int = 32, noise: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class prototypes are smooth random fields (4x4 noise upsampled); samples add pixel noise."""
    for key, v in (("n", n), ("classes", classes), ("channels", channels), ("size", size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise EdgenasError(f"synthetic dataset: {key} must be a positive integer, got {v!r}")
    if classes < 2 or n < 2 * classes:
        raise EdgenasError(f"synthetic dataset: need classes >= 2 and n >= 2 * classes, got n={n}, classes={classes}")
    g = torch.Generator().manual_seed(int(seed))
    protos = torch.randn(classes, channels, 4, 4, generator=g)
    protos = F.interpolate(protos, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.arange(n) % classes
    y = y[torch.randperm(n, generator=g)]
    x = protos[y] + float(noise) * torch.randn(n, channels, size, size, generator=g)
    x = (x - x.min()) / (x.max() - x.min())
    return x, y


def _image_folder(root: Path, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from PIL import Image, UnidentifiedImageError

    _check_size(size)
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise EdgenasError(f"image folder {str(root)!r} has no class sub-folders (expected one folder per class)")
    files: list[tuple[Path, int]] = []
    for label, d in enumerate(classes):
        imgs = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not imgs:
            raise EdgenasError(f"image folder {str(root)!r}: class {d.name!r} holds no images "
                               f"({', '.join(sorted(IMAGE_SUFFIXES))})")
        files += [(p, label) for p in imgs]
    if len(classes) < 2:
        raise EdgenasError(f"image folder {str(root)!r} has only one class ({classes[0].name!r}); need two or more")
    pics = []
    for p, _ in files:
        try:
            with Image.open(p) as im:
                im.load()
                pics.append(im.copy())
        except (UnidentifiedImageError, OSError) as exc:
            raise EdgenasError(f"cannot read image {str(p)!r}: {exc.__class__.__name__}") from None
    gray = all(im.mode in ("1", "L", "I", "I;16", "F") for im in pics)
    mode = "L" if gray else "RGB"
    arrays = [np.asarray(im.convert(mode).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
              for im in pics]
    x = torch.as_tensor(np.stack(arrays)) / 255.0
    x = x.unsqueeze(1) if gray else x.permute(0, 3, 1, 2)
    y = torch.as_tensor([label for _, label in files], dtype=torch.int64)
    return x.contiguous(), y, [d.name for d in classes]


def _npz(path: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise EdgenasError(f"cannot read {str(path)!r} as .npz: {exc}") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise EdgenasError(f"{str(path)!r}: missing array(s) {missing}; found {sorted(arrays)} (need x and y)")
    x, y = arrays["x"], arrays["y"]
    if x.ndim not in (3, 4) or x.shape[0] == 0:
        raise EdgenasError(f"{str(path)!r}: x must be N x H x W, N x H x W x C or N x C x H x W with N > 0, "
                           f"got shape {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise EdgenasError(f"{str(path)!r}: y must be a vector of {x.shape[0]} labels, got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and
                                                    np.all(np.isfinite(y)) and np.all(y == np.round(y)))):
        raise EdgenasError(f"{str(path)!r}: y must hold integer class labels, got dtype {y.dtype}")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise EdgenasError(f"{str(path)!r}: x must be numeric, got dtype {x.dtype}")
    xf = x.astype(np.float32)
    if not np.all(np.isfinite(xf)):
        raise EdgenasError(f"{str(path)!r}: x holds NaN or infinite values")
    if x.dtype == np.uint8 or (np.issubdtype(x.dtype, np.integer) and xf.max() > 1):
        xf /= 255.0
    if xf.ndim == 3:
        xf = xf[:, None]
    elif xf.shape[-1] in (1, 3, 4) and xf.shape[1] not in (1, 3, 4):
        xf = np.transpose(xf, (0, 3, 1, 2))
    classes, labels = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise EdgenasError(f"{str(path)!r}: y holds a single class; need two or more")
    return (torch.as_tensor(np.ascontiguousarray(xf)), torch.as_tensor(labels.astype(np.int64)),
            [str(c) for c in classes])


def _finish(
    name: str, x: torch.Tensor, y: torch.Tensor, seed: int, val_fraction: float, class_names: list[str]
) -> Dataset:
    n = int(x.shape[0])
    if n < 2:
        raise EdgenasError(f"dataset {name!r} has {n} sample(s); need at least 2 for a train/val split")
    num_classes = int(y.max()) + 1
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    counts = np.bincount(y.numpy(), minlength=num_classes)
    rng = np.random.default_rng(seed)
    if counts.min() >= 2 and n_val >= num_classes and n - n_val >= num_classes:
        from sklearn.model_selection import train_test_split

        train_idx, val_idx = train_test_split(np.arange(n), test_size=n_val, stratify=y.numpy(),
                                              random_state=int(seed) % 2**32)
    else:
        perm = rng.permutation(n)
        val_idx, train_idx = perm[:n_val], perm[n_val:]
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    xt = x[torch.as_tensor(train_idx)]
    mean = xt.mean(dim=(0, 2, 3), keepdim=True)
    std = xt.std(dim=(0, 2, 3), keepdim=True)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    x = ((x - mean) / std).float().contiguous()
    return Dataset(name=name, x=x, y=y.long(), num_classes=num_classes, train_idx=train_idx, val_idx=val_idx,
                   seed=int(seed), val_fraction=float(val_fraction),
                   class_names=class_names or [str(i) for i in range(num_classes)],
                   mean=[float(v) for v in mean.flatten()], std=[float(v) for v in std.flatten()])
