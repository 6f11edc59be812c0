"""What the exporters make of a network: the TFLite op graph, the deployed file sizes, the TFLM arena.

:func:`lower` turns an :class:`~edgenas.costgraph.OpGraph` (from layer descriptors or from the FX trace
of a built module: both record the same op kinds) into the graph litert-torch and ai-edge-quantizer
produce for it, as observed on converted models of every space (``edgenas export``):

* the NCHW model input goes through a ``TRANSPOSE`` to NHWC (a ``RESHAPE`` with one channel);
  BatchNorm after a conv is folded into it and every conv / linear gets a bias; ReLU / ReLU6 right
  after a conv, an addition, a pooling or a standalone BN are fused into it when they are the only
  reader of its output; any other activation is an op of its own (``HARD_SWISH``, ``RELU``;
  h-sigmoid is a fused ReLU6 and a ``MUL`` by 1/6);
* a conv whose symmetric torch padding is not TensorFlow's ``SAME`` (stride 2 on an even side) is an
  explicit ``PAD`` then a ``VALID`` conv; so is an average pool, while a max-pool pads with -inf: a
  ``PADV2`` (paddings and the pad value) then a ``VALID`` ``MAX_POOL_2D`` (ResNet's and ShuffleNet's
  stems); depthwise convs are ``DEPTHWISE_CONV_2D``, grouped ones ``CONV_2D``; global pooling is
  ``MEAN`` over the NHWC axes, but ``x.mean([2, 3])`` (a 2-D result, which litert-torch's layout pass
  keeps in NCHW) a ``TRANSPOSE`` back to NCHW and a ``MEAN`` over axes 2, 3 (ShuffleNet, MnasNet);
  linear is ``FULLY_CONNECTED``, a standalone BN ``SUB`` + ``MUL``; a channel shuffle is ``TRANSPOSE,
  RESHAPE, TRANSPOSE, RESHAPE, TRANSPOSE``; views are free;
* ``torch.cat`` is one ``CONCATENATION`` on the NHWC axis (the axis is an option: no constant);
  each chunk read of ``x.chunk`` / ``torch.split`` is a ``SLICE`` of its own (begin and size vectors,
  batch included, in NHWC order: no ``SPLIT``), emitted where the split is, or, when the split tensor is
  a conv's biased output with no activation between, just before the chunk's first reader (the conv's
  output then stays live that long). Not modelled: the converter folds a chunk of a concatenation that
  is exactly one of its inputs (a cat directly re-split), and views that are ops in the file (a flatten of
  a tensor with spatial extent is ``TRANSPOSE`` + ``RESHAPE``, of a conv's 1 x 1 output a ``RESHAPE``);
* int8: weights per output channel (conv, depthwise, linear) with their int32 biases, activations per
  tensor; identical small constants (paddings, permutations, axes, slice vectors) are stored once; a zero
  tensor (an NB201 node without live inputs) is a constant, activations of it fold, ``x + 0`` is ``x``;
  ai-edge-quantizer gives a concatenation's inputs its output's scale, and an input whose producer cannot
  take that scale (a ``SLICE``, ``TRANSPOSE``, pooling or other scale-constrained op, or one with other
  readers) goes through a requantising ``QUANTIZE`` that only the int8 file has
  (:attr:`TflOp.int8_only`), except when the inputs are every chunk of one split (the output's range is
  then the split tensor's). Whether it appears depends on calibration (none when the two ranges happen
  to be equal: in the ShuffleNet units checked 5-8 of 13 were absent); edgenas counts it, an upper
  bound of ~140 bytes and one small op each.

:class:`Deployed` then gives

* the **file sizes** of the fp32 and int8 ``.tflite``: the constant payload plus the flatbuffer's own
  structure, from counts: see :data:`TFLITE_INT8_BYTES` / :data:`TFLITE_FP32_BYTES` (the metadata inside
  the files is added by :class:`~edgenas.spaces.base.CostReport`: :func:`metadata_bytes_tflite`);
* the **TFLite Micro arena**: :mod:`edgenas.tflm_arena` (TFLM's greedy memory planner over the
  activation tensors plus its persistent allocations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from edgenas.costgraph import OpGraph, conv_out, numel

if TYPE_CHECKING:
    from edgenas.delegates import DelegateReport

TFLITE_INT8_BYTES = {"per_const_tensor": 101, "per_act_tensor": 128, "per_quant_channel": 12, "fixed": 717}
"""Bytes of a full-integer ``.tflite`` beyond its constant payload: each constant tensor (its Tensor
table, shape, name, its Buffer entry and alignment), each activation tensor (table, shape, name, its
per-tensor scale / zero point table, and the operator writing it), 12 bytes per quantisation channel
(a float32 scale and an int64 zero point, on every per-channel weight *and* its int32 bias), and the
model's fixed part (signature, operator codes, metadata). Least-squares fit on 14 exported models
(7 ``tiny``, 2 ``fbnet``, 2 ``mbv3``, 2 ``nb201``, 1 ``proxyless``; 39 KB to 7.5 MB): every file within
0.06%; the per-channel 12.01 bytes is the schema's 4 + 8."""
TFLITE_FP32_BYTES = {"per_const_tensor": 82, "per_act_tensor": 121, "fixed": 318}
"""The same for the float32 ``.tflite`` (no quantisation tables; every tensor has its own Buffer
entry). Same 14 models: within 0.06%. The ``.onnx`` carries the same float payload with ~150 bytes per
node and ~30 per initializer, within 0.2% of this estimate on those models."""

TFLITE_METADATA_BYTES = {"fixed_fp32": 1434, "fixed_int8": 1566, "per_channel_fp32": 56, "per_channel_int8": 48,
                         "per_arch_char": 2, "per_label": 4, "per_label_char": 2}
"""Bytes edgenas' metadata adds to a ``.tflite`` (:mod:`edgenas.exporters.metadata`: the ``edgenas`` JSON
and ``TFLITE_METADATA`` buffers, their model entries, the labels zip): a fixed part (the dataset's
preprocessing text, descriptions, zip headers; int8 files also describe their I/O scale and zero point),
per input channel (mean and std, in both buffers; float inputs also their value range), per arch
character (in both buffers) and per class label (a JSON string and a line of ``labels.txt``, each
character twice). Measured by building the metadata for 1 and 3 channels, 4-100 labels of 1 and 8
characters and 20-140 character arch strings: within 8 bytes for float files and 32 for int8 ones (the
printed digits of their scales vary; tests/exporters/test_metadata.py)."""
NOMINAL_LABEL_CHARS = 8
"""The cost model does not know a task's class names: it counts this many characters per label."""


def metadata_bytes_tflite(precision: str, arch: str, num_classes: int, channels: int) -> int:
    """Estimated bytes of the metadata inside the ``precision`` (``fp32`` / ``int8``) ``.tflite`` of a
    model (labels of :data:`NOMINAL_LABEL_CHARS` characters); see :data:`TFLITE_METADATA_BYTES`."""
    c = TFLITE_METADATA_BYTES
    return (c[f"fixed_{precision}"] + c[f"per_channel_{precision}"] * channels
            + c["per_arch_char"] * len(arch.encode())
            + (c["per_label"] + c["per_label_char"] * NOMINAL_LABEL_CHARS) * num_classes)


CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
_FUSABLE = {"relu", "relu6"}
_PRODUCERS_THAT_FUSE = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "AVERAGE_POOL_2D", "MUL", "FULLY_CONNECTED"}


@dataclass
class TflOp:
    """One deployed op: its name, the activation tensors it reads and writes, its per-channel count."""

    name: str
    inputs: tuple[int, ...]
    output: int
    channels: int = 0
    """Output channels of a conv / linear (per-channel requantisation data in TFLM)."""
    int8_only: bool = False
    """Only in the int8 file (a requantising ``QUANTIZE``): the fp32 file reads its input instead."""


@dataclass
class Deployed:
    """The deployed TFLite graph of one network (see module docstring)."""

    act_elems: list[int] = field(default_factory=list)
    """Elements of each activation tensor (tensor 0 is the model input)."""
    ops: list[TflOp] = field(default_factory=list)
    output: int = 0
    n_const: int = 0
    const_bytes_int8: int = 0
    const_bytes_fp32: int = 0
    quant_channels: int = 0
    """Per-channel quantisation entries of constants (weights and biases) in the int8 file."""
    n_int8_only: int = 0
    """Activation tensors only the int8 file has (outputs of :attr:`TflOp.int8_only` ops)."""
    _shared: dict[tuple, tuple[int, int, int]] = field(default_factory=dict)
    _delegate_reports: dict[tuple[str, str], DelegateReport] = field(default_factory=dict, repr=False)
    # boundary facts of a one-layer graph, for :func:`chain`
    open_producer: str | None = None
    """The op writing the output, when a ReLU reading it in the next layer would be fused into it."""
    head_act: tuple[int, int] | None = None
    """(op index, output tensor) of a ReLU / ReLU6 that is the input's only reader."""
    input_live: bool = True
    output_zero: bool = False

    # -- building ---------------------------------------------------------------------------------
    def act(self, elems: int) -> int:
        self.act_elems.append(elems)
        return len(self.act_elems) - 1

    def op(self, name: str, inputs: tuple[int, ...], elems: int, channels: int = 0, int8_only: bool = False) -> int:
        out = self.act(elems)
        self.ops.append(TflOp(name, inputs, out, channels, int8_only))
        if int8_only:
            self.n_int8_only += 1
        return out

    def const(self, elems: int, int8_bytes_per: int = 1, channels: int = 1, key: tuple | None = None) -> None:
        """A constant tensor: ``elems`` values, int8 (or int32: ``int8_bytes_per`` 4), ``channels``
        quantisation entries (0: not quantised); ``key`` names constants stored once per model."""
        if key is not None:
            if key in self._shared:
                return
            self._shared[key] = (elems, int8_bytes_per, channels)
        self.n_const += 1
        self.const_bytes_int8 += elems * int8_bytes_per
        self.const_bytes_fp32 += elems * 4
        self.quant_channels += channels

    # -- results ----------------------------------------------------------------------------------
    @property
    def n_act(self) -> int:
        return len(self.act_elems)

    @property
    def n_tensors(self) -> int:
        """Tensors of the int8 model (what TFLM allocates)."""
        return self.n_act + self.n_const

    def ops_for(self, precision: str) -> list[TflOp]:
        """The ops of the ``precision`` (fp32 / int8) file: the fp32 one lacks the int8-only ops (their
        readers read those ops' inputs)."""
        if precision == "int8" or not self.n_int8_only:
            return self.ops
        alias: dict[int, int] = {}
        out = []
        for op in self.ops:
            if op.int8_only:
                alias[op.output] = alias.get(op.inputs[0], op.inputs[0])
            else:
                out.append(TflOp(op.name, tuple(alias.get(t, t) for t in op.inputs), op.output, op.channels))
        return out

    def size_bytes_int8(self) -> int:
        """Estimated bytes of the full-integer ``.tflite`` (see :data:`TFLITE_INT8_BYTES`)."""
        c = TFLITE_INT8_BYTES
        return (self.const_bytes_int8 + c["per_quant_channel"] * (self.quant_channels + self.n_act)
                + c["per_const_tensor"] * self.n_const + c["per_act_tensor"] * self.n_act + c["fixed"])

    def size_bytes_fp32(self) -> int:
        """Estimated bytes of the float32 ``.tflite`` (and ``.onnx``): see :data:`TFLITE_FP32_BYTES`."""
        c = TFLITE_FP32_BYTES
        return (self.const_bytes_fp32 + c["per_const_tensor"] * self.n_const
                + c["per_act_tensor"] * (self.n_act - self.n_int8_only) + c["fixed"])

    @cached_property
    def _arena(self) -> int:
        from edgenas.tflm_arena import arena_bytes

        return arena_bytes(self)

    def arena_bytes_tflm(self) -> int:
        """Estimated minimal TFLite Micro tensor arena of the int8 model (:mod:`edgenas.tflm_arena`)."""
        return self._arena

    def delegate(self, precision: str, name: str = "xnnpack") -> DelegateReport:
        """How delegate ``name`` splits the ``precision`` (fp32 / int8) file (:mod:`edgenas.delegates`)."""
        key = (name, precision)
        if key not in self._delegate_reports:
            from edgenas.delegates import predict

            self._delegate_reports[key] = predict(self, name, precision)
        return self._delegate_reports[key]


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) of one spatial side."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _to_nhwc(d: Deployed, x: int, shape: tuple[int, ...]) -> int:
    """The NCHW model input to NHWC: a TRANSPOSE, or a RESHAPE when there is one channel."""
    if shape[0] == 1:
        d.const(4, 4, 0, key=("shape4", tuple(shape)))
        return d.op("RESHAPE", (x,), numel(shape))
    d.const(4, 4, 0, key=("perm", "nhwc"))
    return d.op("TRANSPOSE", (x,), numel(shape))


_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}
"""An NCHW axis (batch included) -> the NHWC axis of the converted tensor."""
_CONSTRAINED = frozenset({"AVERAGE_POOL_2D", "MAX_POOL_2D", "PAD", "PADV2", "RESHAPE", "SLICE", "TRANSPOSE",
                          "CONCATENATION", "LOGISTIC", "QUANTIZE"})
"""Deployed ops whose int8 output scale ai-edge-quantizer ties to another tensor's (same as input, same as
output or fixed): a CONCATENATION cannot give such an op's output its own scale."""


def _slice_nhwc(in_shape: tuple[int, ...], out_shape: tuple[int, ...], index: int, parts: int,
                dim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """SLICE's begin and size vectors (batch included, NHWC order for a C x H x W tensor) of chunk
    ``index`` of ``parts`` along NCHW axis ``dim``: chunks before the last are equal, the last ends at the
    tensor's end."""
    n = in_shape[dim - 1]
    chunk = out_shape[dim - 1]
    offset = n - chunk if index == parts - 1 else index * chunk
    begin = [0] * (len(in_shape) + 1)
    size = [1, *out_shape]
    if len(in_shape) == 3:
        axis = _NHWC_AXIS[dim]
        size = [1, out_shape[1], out_shape[2], out_shape[0]]
    else:
        axis = dim
    begin[axis] = offset
    return tuple(begin), tuple(size)


def _requantised(d: Deployed, src: int, t: int, readers: dict[int, list[int]], g: OpGraph) -> bool:
    """Whether the int8 file puts a requantising ``QUANTIZE`` between deployed tensor ``src`` (graph
    tensor ``t``) and the CONCATENATION reading it. ai-edge-quantizer gives a concatenation's inputs its
    output's scale; the op producing an input takes that scale itself when it is free to (not in
    :data:`_CONSTRAINED`) and the concatenation is its only reader, otherwise a QUANTIZE converts. (Were
    the two scales equal by chance, e.g. a slice's input range equal to the concatenation's, there would be
    none: calibration data decides that; edgenas counts the QUANTIZE.)"""
    producer = next((op.name for op in reversed(d.ops) if op.output == src), "")
    if not producer or producer in _CONSTRAINED:
        return True
    todo, direct = [t], 0
    while todo:
        for j in readers.get(todo.pop(), []):
            if g.kinds[j][0] == "view":
                todo.append(g.ops[j][2])
            else:
                direct += 1
    return direct > 1


def _reassembles(g: OpGraph, inputs: tuple[int, ...], producer: dict[int, int]) -> bool:
    """Whether a concatenation's inputs are every chunk of one split tensor (in any order): its output
    then has exactly that tensor's range, which its slices already have, so no input is requantised."""
    kinds = [g.kinds[producer[t]] if t in producer else ("",) for t in inputs]
    if not all(k[0] == "split" for k in kinds):
        return False
    sources = {g.ops[producer[t]][1][0] for t in inputs}
    return len(sources) == 1 and sorted(k[1] for k in kinds) == list(range(kinds[0][2]))


def lower(g: OpGraph, nchw_input: bool = True) -> Deployed:
    """The deployed TFLite graph of ``g`` (see the module docstring for the rules)."""
    n_ops = len(g.ops)
    # dead-code elimination: converters drop what the output does not depend on
    needed = [False] * n_ops
    live = set(g.outputs)
    producer = {out: i for i, (_, _, out) in enumerate(g.ops)}
    for i in range(n_ops - 1, -1, -1):
        _, inputs, out = g.ops[i]
        if out in live:
            needed[i] = True
            live.update(inputs)
    readers: dict[int, list[int]] = {}
    for i, (_, inputs, _) in enumerate(g.ops):
        if needed[i]:
            for t in set(inputs):
                readers.setdefault(t, []).append(i)

    d = Deployed()
    where: dict[int, int] = {}  # graph tensor -> deployed activation tensor
    zero: set[int] = set()  # graph tensors that are constant zeros
    cse: dict[tuple, int] = {}
    fused: set[int] = set()  # graph ops absorbed into their producer

    inputs_of_graph = {t for t in range(len(g.shapes)) if t not in producer}
    d.input_live = all(t in live for t in inputs_of_graph)
    for t, shape in enumerate(g.shapes):
        if t not in producer and t in live:
            x = d.act(numel(shape))
            if nchw_input and len(shape) == 3:
                x = _to_nhwc(d, x, shape)
            where[t] = x

    pending: dict[int, Callable[[], int]] = {}  # graph tensors whose op is emitted before its first reader

    def source(t: int) -> int:
        if t in pending:
            where[t] = pending.pop(t)()
        return where[t]

    def sole_reader(t: int) -> int | None:
        rs = readers.get(t, [])
        return rs[0] if len(rs) == 1 else None

    def act_readers(t: int) -> list[int]:
        """The readers of ``t`` (through views, which are free) when they are all the same activation,
        else ``t``'s sole reader or nothing: the converter merges identical ops on one tensor, so they
        are one reader (NB201 edges each start with a ReLU of their node, a skip edge is a view)."""
        rs: list[int] = []
        todo = list(readers.get(t, []))
        while todo:
            j = todo.pop()
            if g.kinds[j][0] == "view" and g.shapes[g.ops[j][2]] == g.shapes[t]:
                todo.extend(readers.get(g.ops[j][2], []))
            else:
                rs.append(j)
        if rs and all(g.kinds[j][0] == "act" and g.kinds[j][1] == g.kinds[rs[0]][1] for j in rs):
            return sorted(rs)
        direct = readers.get(t, [])
        return direct if len(direct) == 1 else []

    def fuse_act(i: int, out: int, name: str) -> None:
        """Absorb a ReLU/ReLU6 that is the only reader of op ``i``'s result (after a folded BN)."""
        t = out
        j = sole_reader(t)
        if j is not None and g.kinds[j][0] == "bn" and name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            fused.add(j)
            where[g.ops[j][2]] = where[t]
            t = g.ops[j][2]
            j = sole_reader(t)
        if j is None and t in g.outputs:
            d.open_producer = name
        acts = act_readers(t)
        j = acts[0] if acts else j
        if j is None or g.kinds[j][0] != "act" or name not in _PRODUCERS_THAT_FUSE:
            return
        if g.kinds[j][1] in _FUSABLE:
            for r in acts:  # identical ReLUs of one tensor are one op, fused into its producer
                fused.add(r)
                where[g.ops[r][2]] = where[t]
        elif g.kinds[j][1] == "hsigmoid" and name in CONV_OPS:  # +3 in the bias, fused ReLU6, then / 6
            fused.add(j)
            d.const(1, 1, 1, key=("scalar", "1/6"))
            where[g.ops[j][2]] = d.op("MUL", (where[t],), numel(g.shapes[t]))

    for i, ((_, inputs, out), kind) in enumerate(zip(g.ops, g.kinds)):
        if not needed[i] or i in fused:
            continue
        k0 = kind[0]
        shape = g.shapes[out]
        elems = numel(shape)
        if k0 == "view":
            if inputs[0] in zero:
                zero.add(out)
            else:
                where[out] = source(inputs[0])
            continue
        if k0 == "zeros":
            zero.add(out)
            continue
        if k0 in ("act", "bn", "pool") and inputs[0] in zero:
            zero.add(out)  # folded constant
            continue
        if k0 == "add":
            live_in = [t for t in inputs if t not in zero]
            if not live_in:
                zero.add(out)
            elif len(live_in) == 1 and len(inputs) == 2 and inputs[0] != inputs[1]:
                where[out] = source(live_in[0])  # x + 0
            else:
                a, b = inputs
                where[out] = d.op("ADD", (source(a), source(b)), elems)
                fuse_act(i, out, "ADD")
            continue
        if k0 == "mul":
            if any(t in zero for t in inputs):
                zero.add(out)
                continue
            a, b = inputs
            where[out] = d.op("MUL", (source(a), source(b)), elems)
            fuse_act(i, out, "MUL")
            continue
        if k0 == "concat":  # CONCATENATION on the NHWC axis (no constant: the axis is an option)
            ins = []
            whole = _reassembles(g, inputs, producer)
            for t in inputs:
                if t in zero:
                    d.const(numel(g.shapes[t]), key=("zeros", g.shapes[t]))
                    continue
                src = source(t)
                if not whole and _requantised(d, src, t, readers, g):  # int8: the input gets the output's scale
                    src = d.op("QUANTIZE", (src,), numel(g.shapes[t]), int8_only=True)
                ins.append(src)
            where[out] = d.op("CONCATENATION", tuple(ins), elems)
            continue
        x = inputs[0]
        if x in zero:  # an op reading a zero tensor reads it from a constant (stored once per shape)
            d.const(numel(g.shapes[x]), key=("zeros", g.shapes[x]))
            xin: tuple[int, ...] = ()
        else:
            xin = (source(x),)
        if k0 == "conv":
            k, s, p, groups, _ = kind[1:]
            cin, h, w = g.shapes[x]
            cout = shape[0]
            if p and (_same_pads(h, k, s) != (p, p) or _same_pads(w, k, s) != (p, p)
                      or conv_out(h, k, s, p) != -(-h // s)):
                d.const(8, 4, 0, key=("pad", p))
                xin = (d.op("PAD", xin, cin * (h + 2 * p) * (w + 2 * p)),)
            name = "DEPTHWISE_CONV_2D" if groups == cin and groups > 1 and cout == cin else "CONV_2D"
            d.const(cout * (cin // groups) * k * k, 1, cout)
            d.const(cout, 4, cout)
            where[out] = d.op(name, xin, elems, cout)
            fuse_act(i, out, name)
        elif k0 == "linear":
            cin = numel(g.shapes[x])
            d.const(shape[0] * cin, 1, shape[0])
            d.const(shape[0], 4, shape[0])
            where[out] = d.op("FULLY_CONNECTED", xin, elems, shape[0])
            fuse_act(i, out, "FULLY_CONNECTED")
        elif k0 == "bn":  # not after a conv: ((x - mean) * 1/sqrt(var + eps)) * gamma + beta, each a
            # per-channel constant: the converter folds neither multiplication into the other (seen on
            # trained NB201 models; a fresh BN's gamma 1 and beta 0 drop out, a trained one's do not)
            c = shape[0]
            for _ in range(4):
                d.const(c, 1, 1)
            y = d.op("SUB", xin, elems)
            y = d.op("MUL", (y,), elems)
            y = d.op("MUL", (y,), elems)
            where[out] = d.op("ADD", (y,), elems)
            fuse_act(i, out, "ADD")
        elif k0 == "act":
            name = kind[1]
            key = ("act", name, xin)
            if key in cse:
                where[out] = cse[key]
                continue
            if name == "hsigmoid":  # relu6(x + 3) / 6: ADD of 3 then a fused ReLU6, then MUL by 1/6
                d.const(1, 1, 1, key=("scalar", "3"))
                y = d.op("ADD", xin, elems)
                d.const(1, 1, 1, key=("scalar", "1/6"))
                y = d.op("MUL", (y,), elems)
            else:
                op_name = {"relu": "RELU", "relu6": "RELU6", "hswish": "HARD_SWISH", "sigmoid": "LOGISTIC",
                           "silu": "LOGISTIC"}[name]
                y = d.op(op_name, xin, elems)
                if name in _FUSABLE and x in inputs_of_graph and act_readers(x):
                    d.head_act = (len(d.ops) - 1, y)
                if name == "silu":
                    y = d.op("MUL", (y, *xin), elems)
            cse[key] = where[out] = y
        elif k0 == "pool":
            key = ("pool", kind, xin)  # identical poolings of one tensor are one op (NB201's avg edges)
            if key in cse:
                where[out] = cse[key]
                continue
            mode, k, s, p = kind[1:]
            c, h, w = g.shapes[x]
            if p and (_same_pads(h, k, s) != (p, p) or _same_pads(w, k, s) != (p, p)):
                d.const(8, 4, 0, key=("pad", p))
                if mode == "max":  # padded with -inf: PADV2 and its pad value
                    d.const(1, 1, 1, key=("scalar", "-inf"))
                xin = (d.op("PAD" if mode == "avg" else "PADV2", xin, c * (h + 2 * p) * (w + 2 * p)),)
            name = "AVERAGE_POOL_2D" if mode == "avg" else "MAX_POOL_2D"
            cse[key] = where[out] = d.op(name, xin, elems)
            fuse_act(i, out, name)
        elif k0 == "gap":
            if kind[1:] == ("nchw",):  # x.mean([2, 3]): back to NCHW, then MEAN over axes 2, 3
                d.const(4, 4, 0, key=("perm", "nchw"))
                xin = (d.op("TRANSPOSE", xin, numel(g.shapes[x])),)
                d.const(2, 4, 0, key=("axes", "nchw-hw"))
            else:
                d.const(2, 4, 0, key=("axes", "hw"))
            where[out] = d.op("MEAN", xin, elems)
        elif k0 == "copy":  # channel shuffle: NHWC->NCHW, 5-D reshape, transpose, reshape, back
            d.const(4, 4, 0, key=("perm", "nchw"))
            d.const(4, 4, 0, key=("perm", "nhwc"))
            d.const(5, 4, 0, key=("perm5",))
            d.const(5, 4, 0, key=("shape5", shape))
            d.const(4, 4, 0, key=("shape4", shape))
            y = xin
            for name in ("TRANSPOSE", "RESHAPE", "TRANSPOSE", "RESHAPE", "TRANSPOSE"):
                y = (d.op(name, y, elems),)
            where[out] = y[0]
        elif k0 == "split":  # one chunk of x.chunk / torch.split: a SLICE (begin, size) of the NHWC tensor
            key = ("split", kind, xin)
            if key in cse:
                where[out] = cse[key]
                continue
            index, parts, dim = kind[1:]
            begin, size = _slice_nhwc(g.shapes[x], shape, index, parts, dim)
            d.const(len(begin), 4, 0, key=("i32", begin))
            d.const(len(size), 4, 0, key=("i32", size))
            j = producer.get(x)
            biased = j is not None and (g.kinds[j][0] == "linear" or (g.kinds[j][:1] == ("conv",) and g.kinds[j][5])
                                        or (g.kinds[j][0] == "bn" and j in fused))
            if not biased:
                cse[key] = where[out] = d.op("SLICE", xin, elems)
                continue

            # a chunk of a conv's biased output (no activation between): litert-torch emits each SLICE just
            # before the chunk's first reader, the conv's output stays live until then
            def emit(xin: tuple[int, ...] = xin, elems: int = elems, key: tuple = key) -> int:
                if key not in cse:
                    cse[key] = d.op("SLICE", xin, elems)
                return cse[key]

            pending[out] = emit
        else:
            raise ValueError(f"deployed: no lowering for op kind {kind!r}")
    if g.outputs:
        t = g.outputs[0]
        if t in zero:  # a constant network: its output is a constant read by nothing
            d.output_zero = True
            d.const(numel(g.shapes[t]), key=("zeros", g.shapes[t]))
            d.output = d.act(numel(g.shapes[t]))
        else:
            d.output = source(t)
    return d


def chain(fragments: list[Deployed], input_shape: tuple[int, int, int], nchw_input: bool = True,
          with_ops: bool = True) -> Deployed | None:
    """The deployed graph of a chain of layers from their one-layer graphs (``lower`` of each layer,
    ``nchw_input=False``): tensors and ops concatenated, shared constants stored once, and a ReLU that
    opens a layer fused into the op closing the previous one, as :func:`lower` does on the whole
    network. None when a layer ignores its input or outputs a constant (then only the whole network
    tells what the converter drops). Without ``with_ops`` only the counts (file sizes) are right."""
    d = Deployed()
    x = d.act(numel(input_shape))
    if nchw_input:
        x = _to_nhwc(d, x, input_shape)
    open_producer: str | None = None
    for f in fragments:
        if f.output_zero or not f.input_live:
            return None
        skip = -1
        fuse = f.head_act is not None and open_producer in _PRODUCERS_THAT_FUSE
        if not with_ops:
            d.act_elems.extend(f.act_elems[1:])
            if fuse:
                d.act_elems.pop()
        else:
            remap = {0: x}
            if fuse:
                skip, fused_t = f.head_act
                remap[fused_t] = x
            for t in range(1, f.n_act):
                if t not in remap:
                    remap[t] = d.act(f.act_elems[t])
            for k, op in enumerate(f.ops):
                if k != skip:
                    d.ops.append(TflOp(op.name, tuple(remap[i] for i in op.inputs), remap[op.output], op.channels,
                                       op.int8_only))
        d.n_int8_only += f.n_int8_only
        shared_bytes8 = sum(e * b for e, b, _ in f._shared.values())
        d.n_const += f.n_const - len(f._shared)
        d.const_bytes_int8 += f.const_bytes_int8 - shared_bytes8
        d.const_bytes_fp32 += f.const_bytes_fp32 - 4 * sum(e for e, _, _ in f._shared.values())
        d.quant_channels += f.quant_channels - sum(c for _, _, c in f._shared.values())
        for key, (e, b, c) in f._shared.items():
            d.const(e, b, c, key=key)
        x = remap[f.output] if with_ops else x
        open_producer = f.open_producer
    d.output = x
    return d
