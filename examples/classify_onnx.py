#!/usr/bin/env python3
"""Classify one input with an exported ONNX model, using only numpy + onnxruntime (no torch, no edgenas).

    python3 examples/classify_onnx.py EXPORT/trial_0022                  # the folder's sample_input.npy
    python3 examples/classify_onnx.py EXPORT/trial_0022 --input x.npy    # a preprocessed C x H x W array
    python3 examples/classify_onnx.py EXPORT/trial_0022 --raw img.npy    # raw pixels (H x W or H x W x C)

The model card (model_card.json beside the model) says how raw pixels become input: scaled to [0, 1],
resized, normalised per channel with the training split's mean and std.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from preprocess import load_input, top_k  # examples/preprocess.py: numpy only


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", help="an exported model's folder (holds model.onnx and model_card.json)")
    ap.add_argument("--input", help="preprocessed float32 C x H x W .npy (default: the folder's sample)")
    ap.add_argument("--raw", help="raw pixels .npy (H x W or H x W x C, 0..255 or 0..1): preprocessed per the card")
    ap.add_argument("-k", type=int, default=3, help="how many classes to print")
    a = ap.parse_args()
    folder = Path(a.model_dir)
    card = json.loads((folder / "model_card.json").read_text())
    x = load_input(folder, card, a.input, a.raw)  # (C, H, W) float32
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: x[None].astype(np.float32)})[0][0]
    for cls, p in top_k(logits, card, a.k):
        print(f"{cls}\t{p:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
