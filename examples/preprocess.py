"""Input preparation for the example scripts, with numpy only: what the model card's ``preprocessing``
says, reproduced without torch (bilinear resize written out)."""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np


def resize_bilinear(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """(C, H0, W0) -> (C, h, w), half-pixel centres (align_corners=False)."""
    _, h0, w0 = img.shape
    if (h0, w0) == (h, w):
        return img
    ys = np.clip((np.arange(h) + 0.5) * h0 / h - 0.5, 0, h0 - 1)
    xs = np.clip((np.arange(w) + 0.5) * w0 / w - 0.5, 0, w0 - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h0 - 1), np.minimum(x0 + 1, w0 - 1)
    wy, wx = (ys - y0)[None, :, None], (xs - x0)[None, None, :]
    top = img[:, y0][:, :, x0] * (1 - wx) + img[:, y0][:, :, x1] * wx
    bot = img[:, y1][:, :, x0] * (1 - wx) + img[:, y1][:, :, x1] * wx
    return (top * (1 - wy) + bot * wy).astype(np.float32)


def load_input(folder: Path, card: Dict[str, Any], input_path: Optional[str] = None,
               raw_path: Optional[str] = None) -> np.ndarray:
    """The network input (C, H, W) float32: a preprocessed array, raw pixels prepared per the card, or
    the sample the export wrote."""
    c, h, w = card["task"]["input_shape"]
    if raw_path:
        pre = card.get("preprocessing") or {}
        img = np.load(raw_path).astype(np.float32)
        img = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
        img = img / (255.0 if img.max() > 1.0 else 1.0)
        mean = np.array(pre.get("mean") or [0.0] * img.shape[0], dtype=np.float32)[:, None, None]
        std = np.array(pre.get("std") or [1.0] * img.shape[0], dtype=np.float32)[:, None, None]
        img = (img - mean) / std
        if img.shape[0] == 1 and c > 1:
            img = np.repeat(img, c, axis=0)
        return resize_bilinear(img, h, w)
    x = np.load(input_path or Path(folder) / card["sample"]["path"]).astype(np.float32)
    if x.shape != (c, h, w):
        raise SystemExit(f"input has shape {x.shape}, the model takes {(c, h, w)} (C, H, W)")
    return x


def top_k(logits: np.ndarray, card: Dict[str, Any], k: int) -> List[Tuple[str, float]]:
    """[(class name, probability)] of the k most likely classes."""
    z = np.asarray(logits, dtype=np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    names = card.get("class_names") or [str(i) for i in range(len(p))]
    return [(names[i], float(p[i])) for i in np.argsort(-p)[:k]]


if __name__ == "__main__":
    print(json.dumps({"needs": ["numpy"]}))
