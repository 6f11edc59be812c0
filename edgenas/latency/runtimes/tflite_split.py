"""Split a multi-branch ``.tflite`` model into one model per branch.

litert-torch spends about a second per conversion whatever the model size, and signatures are
converted one by one, so converting each latency unit alone would take most of the profiling time.
edgenas instead converts K units at once as K independent branches of one module (K inputs, K
outputs) and cuts the flatbuffer into K single-input models here: each keeps exactly the operators
that its output depends on, with their tensors and constant buffers renumbered. The ops are the
converter's own output, so a branch model is what converting that unit alone produces.
"""

from __future__ import annotations

import copy
from typing import Any

import flatbuffers


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def split_branches(model: bytes, n_branches: int) -> list[bytes]:
    """Cut a model whose signature has inputs ``args_0..`` and outputs ``output_0..`` (one per
    branch, in order) into ``n_branches`` standalone models with input ``x`` and output ``y``."""
    S = _schema()
    m = S.ModelT.InitFromPackedBuf(bytearray(model), 0)
    if len(m.subgraphs) != 1:
        raise ValueError(f"expected one subgraph, found {len(m.subgraphs)}")
    sg = m.subgraphs[0]
    sig = m.signatureDefs[0] if m.signatureDefs else None
    inputs = _ordered(sig.inputs, "args_") if sig else list(sg.inputs)
    outputs = _ordered(sig.outputs, "output_") if sig else list(sg.outputs)
    if len(inputs) != n_branches or len(outputs) != n_branches:
        raise ValueError(f"model has {len(inputs)} inputs / {len(outputs)} outputs, expected {n_branches}")
    producer = {t: i for i, op in enumerate(sg.operators) for t in op.outputs if t >= 0}
    return [_extract(S, m, sg, inputs[b], outputs[b], producer) for b in range(n_branches)]


def _ordered(maps: list[Any], prefix: str) -> list[int]:
    named = {}
    for tm in maps:
        name = tm.name.decode() if isinstance(tm.name, bytes) else str(tm.name)
        if not name.startswith(prefix):
            raise ValueError(f"unexpected signature tensor name {name!r}")
        named[int(name[len(prefix):])] = tm.tensorIndex
    return [named[i] for i in sorted(named)]


def _extract(S: Any, m: Any, sg: Any, in_t: int, out_t: int, producer: dict[int, int]) -> bytes:
    needed: set[int] = set()
    stack = [out_t]
    while stack:
        t = stack.pop()
        op_idx = producer.get(t)
        if op_idx is None or op_idx in needed:
            continue
        needed.add(op_idx)
        stack.extend(x for x in sg.operators[op_idx].inputs if x >= 0)
    ops = [sg.operators[i] for i in sorted(needed)]  # original order is topological
    used: list[int] = [in_t]
    for op in ops:
        for t in (*op.inputs, *op.outputs, *(op.intermediates or [])):
            if t >= 0 and t not in used:
                used.append(t)
    if out_t not in used:
        used.append(out_t)
    t_map = {old: new for new, old in enumerate(used)}

    buffers = [S.BufferT()]  # buffer 0 is the empty sentinel
    b_map: dict[int, int] = {0: 0}
    tensors = []
    for old in used:
        t = copy.copy(sg.tensors[old])
        if t.buffer and t.buffer not in b_map:
            b_map[t.buffer] = len(buffers)
            buffers.append(m.buffers[t.buffer])
        t.buffer = b_map.get(t.buffer, 0)
        tensors.append(t)
    new_ops = []
    for op in ops:
        o = copy.copy(op)
        o.inputs = [t_map[x] if x >= 0 else x for x in op.inputs]
        o.outputs = [t_map[x] for x in op.outputs]
        if op.intermediates:
            o.intermediates = [t_map[x] for x in op.intermediates]
        new_ops.append(o)

    nsg = S.SubGraphT()
    nsg.tensors, nsg.operators = tensors, new_ops
    nsg.inputs, nsg.outputs = [t_map[in_t]], [t_map[out_t]]
    nsg.name = sg.name

    sig = S.SignatureDefT()
    sig.signatureKey = "serving_default"
    sig.subgraphIndex = 0
    ti, to = S.TensorMapT(), S.TensorMapT()
    ti.name, ti.tensorIndex = "x", t_map[in_t]
    to.name, to.tensorIndex = "y", t_map[out_t]
    sig.inputs, sig.outputs = [ti], [to]

    nm = S.ModelT()
    nm.version, nm.operatorCodes, nm.description = m.version, m.operatorCodes, m.description
    nm.subgraphs, nm.signatureDefs = [nsg], [sig]
    metadata = []
    for md in m.metadata or []:
        md2 = copy.copy(md)
        if md.buffer not in b_map:
            b_map[md.buffer] = len(buffers)
            buffers.append(m.buffers[md.buffer])
        md2.buffer = b_map[md.buffer]
        metadata.append(md2)
    nm.metadata = metadata or None
    nm.buffers = buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(nm.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
