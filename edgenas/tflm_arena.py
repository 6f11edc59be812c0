"""Analytic TFLite Micro tensor arena of a deployed int8 model (``arena_bytes_tflm``).

TFLM splits its arena into a *head*, where the memory planner lays out every activation tensor (and
kernel scratch buffer), and a *tail* of persistent allocations. The minimal arena that
``tflite_micro.runtime.Interpreter`` accepts is head + tail (checked by bisection on converted models).

* **Head**: :func:`greedy_plan` is TFLM's ``GreedyMemoryPlanner``: each activation tensor of the
  deployed graph (:mod:`edgenas.deployed`: explicit PADs, non-in-place activations and additions
  included) is a buffer of its byte size rounded up to 16 (``MicroArenaBufferAlignment``), alive from
  the op that writes it (the model input: from the start) to its last reader (the output: to the end);
  buffers are placed largest first, equal sizes in *reverse* tensor order (TFLM lists its online buffers
  from the tail, then bubble-sorts them by size), at the lowest offset that does not overlap a placed
  buffer alive at the same time (the tie order shows on graphs with equal-sized live tensors: channel
  splits, concatenations, NB201 cells). This reproduces TFLM's head byte for byte on converted ``tiny``,
  ``mbv3``, ``fbnet`` and ``proxyless`` models and on the ``model`` space's ShuffleNetV2, ResNet-18,
  MobileNetV2 / V3-small, MnasNet and fixture CNN; NB201's converter schedules cell ops in another order
  (3 of 8 random cells exact, 1 of 8 with ties in tensor order). The reference kernels that ship with
  the ``tflite-micro`` package request no scratch buffers for these ops (optimised kernels such as
  CMSIS-NN add im2col scratch).
* **Tail**: :data:`TAIL_BYTES` — a fixed part, 24 bytes per tensor (``TfLiteEvalTensor``), and per op
  its ``NodeAndRegistration`` (64), builtin options and kernel ``OpData``, plus for conv / depthwise /
  linear the per-channel output multipliers and shifts (2 x 4 bytes per channel, each array 16-aligned).
  The per-op constants are the largest increments measured by growing converted models one op at a
  time (``print_allocations`` of the recording allocator, ``tflite-micro`` 2026 build on x86-64, 8-byte
  pointers: a 32-bit MCU build needs somewhat less, so the estimate stays an upper bound there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgenas.deployed import Deployed

ALIGN = 16
"""``MicroArenaBufferAlignment()``: every planned buffer and persistent kernel buffer is 16-aligned."""

TAIL_BYTES = {
    "fixed": 712,
    "per_tensor": 24,
    "op": {
        # NodeAndRegistration (64) + builtin options + OpData (+ alignment), per channel arrays excluded
        "CONV_2D": 192, "DEPTHWISE_CONV_2D": 176, "FULLY_CONNECTED": 176, "ADD": 144, "MUL": 128,
        "SUB": 144, "HARD_SWISH": 96, "MEAN": 160, "PAD": 128, "RESHAPE": 112, "TRANSPOSE": 64,
        "AVERAGE_POOL_2D": 144, "MAX_POOL_2D": 144, "RELU": 96, "RELU6": 96, "LOGISTIC": 112,
        "CONCATENATION": 144, "SLICE": 64, "QUANTIZE": 96, "PADV2": 128,
    },
    "other_op": 192,
}
"""Persistent (tail) bytes: ``fixed`` (allocator objects, the persistent input / output tensors and
their quantisation, scratch handles), ``per_tensor`` (every tensor, constants included), and per op
kind (``other_op`` for kinds not measured). ``CONCATENATION``, ``SLICE``, ``QUANTIZE`` and ``PADV2``: from
models grown one channel-split / concatenation / padded max-pool unit at a time (increments of 688-784
bytes a unit, estimated 8-16 bytes above)."""


def align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def greedy_plan(buffers: list[tuple[int, int, int]]) -> int:
    """Arena bytes TFLM's ``GreedyMemoryPlanner`` needs for ``buffers`` = (size, first, last) in
    tensor order: largest first (ties: the later tensor first), each at the first gap, in offset order,
    between the placed buffers alive at overlapping times (only those are visited: lifetimes are short)."""
    n = len(buffers)
    by_first = sorted(range(n), key=lambda i: buffers[i][1])
    overlapping: list[list[int]] = [[] for _ in range(n)]
    for pos, i in enumerate(by_first):
        last = buffers[i][2]
        for j in by_first[pos + 1:]:
            if buffers[j][1] > last:
                break
            overlapping[i].append(j)
            overlapping[j].append(i)
    offsets: list[int | None] = [None] * n
    high = 0
    for i in sorted(range(n - 1, -1, -1), key=lambda i: -buffers[i][0]):
        size = buffers[i][0]
        placed = sorted((offsets[j], offsets[j] + buffers[j][0]) for j in overlapping[i] if offsets[j] is not None)
        offset = 0
        for p_off, p_end in placed:
            if p_off - offset >= size:
                break
            offset = max(offset, p_end)
        offsets[i] = offset
        high = max(high, offset + size)
    return high


def head_bytes(d: Deployed) -> int:
    """The planned activation memory of the int8 model (1 byte per element)."""
    n = len(d.ops)
    first = [0] * d.n_act
    last = [0] * d.n_act
    for step, op in enumerate(d.ops, 1):
        first[op.output] = last[op.output] = step
        for t in op.inputs:
            last[t] = step
    last[d.output] = n
    buffers = [(align(e), first[t], last[t]) for t, e in enumerate(d.act_elems)]
    return greedy_plan(buffers)


def tail_bytes(d: Deployed) -> int:
    t = TAIL_BYTES
    ops = t["op"]
    total = t["fixed"] + t["per_tensor"] * d.n_tensors
    for op in d.ops:
        total += ops.get(op.name, t["other_op"])
        if op.channels:
            total += 2 * align(4 * op.channels)
    return total


def arena_bytes(d: Deployed) -> int:
    """Estimated minimal TFLM arena (bytes) of the deployed int8 model ``d``."""
    return head_bytes(d) + tail_bytes(d)
