"""Empirical bias correction of int8 weight rounding (Nagel et al., "Data-Free Quantization Through Weight
Equalization and Bias Correction", ICCV 2019; AIMET's bias correction).

Rounding a layer's weights to int8 shifts the mean of its outputs: ``E[(W_q - W) x] = (W_q - W) E[x]``
per output channel. Subtracting that shift from the layer's float bias before quantization cancels it,
so the int8 file's logits stay centred on the float model's. This is post-training and touches no weight:
the quantizer still rounds the same weights, only the biases it quantizes differ.

Here it is applied to the float ``.tflite`` that every int8 mode quantizes: for each ``CONV_2D``,
``DEPTHWISE_CONV_2D`` and ``FULLY_CONNECTED`` with a float bias, ``W_q`` is the per-output-channel
symmetric int8 rounding ai-edge-quantizer applies (scale = max|w| / 127 per channel) and ``E[x]`` the mean
of the op's input per channel over the representative set, in the float model (the padding's zeros are
not counted: a small approximation at the borders). A bias buffer shared by several ops is split first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgenas.exporters.convert import _pack, _schema, _unpack

OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def input_means(fp32_model: bytes, representative: np.ndarray) -> tuple[dict[int, np.ndarray], list[dict[str, Any]]]:
    """Per tensor index feeding one of :data:`OPS`, its mean per channel (last axis) over the
    representative set; and the interpreter's op list (graph order)."""
    from edgenas.exporters.int8_options import _float_tensors

    it, _, _ = _float_tensors(fp32_model)
    ops = it._get_ops_details()
    wanted = {op["inputs"][0] for op in ops if op["op_name"] in OPS}
    d = it.get_input_details()[0]
    sums: dict[int, np.ndarray] = {}
    rep = np.asarray(representative, dtype=np.float32)
    for i in range(len(rep)):
        it.set_tensor(d["index"], rep[i:i + 1])
        it.invoke()
        for t in wanted:
            a = it.get_tensor(t)
            sums[t] = sums.get(t, 0.0) + a.reshape(-1, a.shape[-1]).mean(0)
    return {t: s / max(len(rep), 1) for t, s in sums.items()}, ops


def rounding_error(w: np.ndarray, channel_axis: int) -> np.ndarray:
    """``W_q - W`` for the per-channel symmetric int8 rounding along ``channel_axis`` (scale = max|w| / 127
    per channel, as ai-edge-quantizer rounds weights)."""
    others = tuple(a for a in range(w.ndim) if a != channel_axis % w.ndim)
    amax = np.abs(w).max(axis=others, keepdims=True)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    return np.round(w / scale) * scale - w


def rounding_shift(op: str, w: np.ndarray, mean_in: np.ndarray) -> np.ndarray | None:
    """The mean output shift per output channel that int8 rounding of ``w`` causes for inputs of mean
    ``mean_in`` (None when the shapes do not match the op's layout, e.g. a depthwise multiplier > 1)."""
    if w.shape[-1] != mean_in.shape[0]:
        return None
    if op == "DEPTHWISE_CONV_2D":  # [1, KH, KW, C]: output channel c reads input channel c
        return (rounding_error(w, -1).sum(axis=(0, 1, 2)) * mean_in).astype(np.float32)
    # CONV_2D [O, KH, KW, I], FULLY_CONNECTED [O, I]
    delta = rounding_error(w, 0).reshape(w.shape[0], -1, w.shape[-1]).sum(axis=1)
    return (delta * mean_in).sum(axis=1).astype(np.float32)


def bias_corrected(fp32_model: bytes, representative: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """``fp32_model`` with every correctable bias corrected (see the module docstring), and a record
    (ops corrected and skipped, the largest correction relative to its bias's scale)."""
    means, ops = input_means(fp32_model, representative)
    S = _schema()
    m = _unpack(S, fp32_model)
    sg = m.subgraphs[0]
    users: dict[int, int] = {}
    for t in sg.tensors:
        users[t.buffer] = users.get(t.buffer, 0) + 1

    def array(ti: int) -> np.ndarray:
        t = sg.tensors[ti]
        data = m.buffers[t.buffer].data
        return np.frombuffer(bytes(bytearray(data if data is not None else b"")), dtype=np.float32).reshape(t.shape)

    corrected, skipped, largest = 0, 0, 0.0
    for op, info in zip(sg.operators, ops):
        name = info["op_name"]
        if name not in OPS:
            continue
        bias_ti = op.inputs[2] if len(op.inputs) > 2 else -1
        bias_t = sg.tensors[bias_ti] if bias_ti >= 0 else None
        if bias_t is None or bias_t.type != S.TensorType.FLOAT32 or m.buffers[bias_t.buffer].data is None \
                or sg.tensors[op.inputs[1]].type != S.TensorType.FLOAT32 or op.inputs[0] not in means:
            skipped += 1
            continue
        shift = rounding_shift(name, array(op.inputs[1]), means[op.inputs[0]])
        if shift is None:
            skipped += 1
            continue
        bias = array(bias_ti) - shift
        largest = max(largest, float(np.max(np.abs(shift)) / (np.max(np.abs(bias)) or 1.0)))
        buf = S.BufferT()
        buf.data = np.frombuffer(bias.astype(np.float32).tobytes(), dtype=np.uint8)
        if users[bias_t.buffer] > 1:  # shared constant: this op gets its own buffer
            users[bias_t.buffer] -= 1
            m.buffers.append(buf)
            bias_t.buffer = len(m.buffers) - 1
        else:
            m.buffers[bias_t.buffer] = buf
        corrected += 1
    return _pack(S, m), {"ops_corrected": corrected, "ops_skipped": skipped,
                         "largest_relative_correction": round(largest, 6)}
