#!/usr/bin/env python3
"""Classify one input with an exported .tflite model (float or int8), using only numpy + ai-edge-litert
(or the older tflite_runtime) — no torch, no TensorFlow, no edgenas.

    python3 examples/classify_tflite.py EXPORT/trial_0022                     # model_int8.tflite, the sample
    python3 examples/classify_tflite.py EXPORT/trial_0022 --model model_fp32.tflite --raw img.npy

int8 models take int8 input: x_q = round(x / scale) + zero_point, and give int8 output:
logits = (y_q - zero_point) * scale (both read from the model; the card lists them too). An NHWC model
(``edgenas export --nhwc``) gets the input transposed here.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from preprocess import load_input, top_k  # examples/preprocess.py: numpy only

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # older boards
    from tflite_runtime.interpreter import Interpreter


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", help="an exported model's folder (holds the .tflite files and model_card.json)")
    ap.add_argument("--model", default="model_int8.tflite", help="file in the folder (default model_int8.tflite)")
    ap.add_argument("--input", help="preprocessed float32 C x H x W .npy (default: the folder's sample)")
    ap.add_argument("--raw", help="raw pixels .npy (H x W or H x W x C, 0..255 or 0..1): preprocessed per the card")
    ap.add_argument("-k", type=int, default=3, help="how many classes to print")
    a = ap.parse_args()
    folder = Path(a.model_dir)
    card = json.loads((folder / "model_card.json").read_text())
    x = load_input(folder, card, a.input, a.raw)[None]  # (1, C, H, W) float32
    it = Interpreter(model_path=str(folder / a.model))
    it.allocate_tensors()
    d, o = it.get_input_details()[0], it.get_output_details()[0]
    if tuple(d["shape"]) != x.shape:
        x = x.transpose(0, 2, 3, 1)  # the model takes NHWC
    if d["dtype"] == np.int8:
        scale, zero = d["quantization"]
        x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    it.set_tensor(d["index"], x.astype(d["dtype"]))
    it.invoke()
    y = it.get_tensor(o["index"])[0]
    if o["dtype"] == np.int8:
        scale, zero = o["quantization"]
        y = (y.astype(np.float32) - zero) * scale
    for cls, p in top_k(y, card, a.k):
        print(f"{cls}\t{p:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
