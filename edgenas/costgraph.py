"""Exact analytic cost of a network from its op list: MACs, parameters and peak activation memory.

A :class:`OpGraph` records the primitive ops of a network (or of one layer) with their tensor shapes.
Layer descriptors emit their ops into it without building any torch module; the same graph type is
filled from the FX trace of a built module in :mod:`edgenas.modelcount`, which is how the analytic
numbers are checked against the real network.

Conventions (they follow MCUNet's peak-SRAM analysis and the conv+linear MAC convention of OFA/thop):

* MACs: conv ``Cout*Hout*Wout*(Cin/groups)*k*k``, linear ``in*out``; pooling, activations, BN,
  additions and biases count zero.
* Parameters: every trainable parameter, BN affine weights included (running stats are buffers).
* Every op also records its *kind* (``("conv", k, stride, pad, groups, bias)``, ``("bn",)``,
  ``("act", name)``, ``("add",)``, ...: :data:`KINDS`), the same vocabulary whether the graph comes from
  layer descriptors or from an FX trace. :mod:`edgenas.deployed` lowers it to the op graph the
  converters produce, which gives the deployed file sizes and the TFLite Micro arena.
* Peak activation memory: tensors live from the op that writes them to their last reader. BN and
  activations run in place, reshapes are views. An element-wise binary op (residual add, SE scale)
  writes into an operand buffer that has no later reader, otherwise into a new buffer. The peak is the
  largest sum of live buffers at any op, the network input included: MCUNet's "input + output of the
  layer, plus tensors kept alive by a residual branch". A buffer nobody reads exists only while the
  op writing it runs; views, in-place and element-wise ops whose result is unused are dead code.
  Bytes = elements x 4 (fp32) or x 1 (int8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Shape = tuple[int, ...]

# How an op's output relates to memory: a new buffer, a view/in-place result of its first input, or
# an element-wise result that may reuse a dying operand's buffer.
NEW, ALIAS, INPLACE = "new", "alias", "inplace"

Kind = tuple
"""What an op computes: ``(name, *attributes)``, see :data:`KINDS`."""
KINDS = {
    "conv": "(k, stride, pad, groups, has_bias) Conv2d, square kernel, symmetric padding",
    "bn": "() BatchNorm2d (folded into a conv it follows)",
    "act": "(name,) relu, relu6, hswish, hsigmoid, sigmoid, silu",
    "linear": "(has_bias,) fully connected",
    "pool": "(avg|max, k, stride, pad) pooling window",
    "gap": "() global average pooling to C x 1 x 1; (\"nchw\",) for x.mean([2, 3]) (reduced in NCHW once deployed)",
    "add": "() element-wise sum",
    "mul": "() element-wise product (broadcasting)",
    "view": "() flatten / reshape / identity: no data movement",
    "copy": "() channel shuffle (a materialised permutation)",
    "zeros": "() a zero tensor (NB201 node without live inputs)",
    "concat": "() torch.cat of the inputs along channels",
    "split": "(index, parts, dim) chunk index of x.chunk(parts, dim) / torch.split (one op per chunk read)",
}


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial output size of a convolution or pooling window (floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1


def numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


@dataclass(frozen=True)
class Cost:
    """Additive cost totals plus the activation peak, in elements (see module docstring)."""

    macs: int = 0
    params: int = 0
    peak_act_elems: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.macs + other.macs,
            self.params + other.params,
            max(self.peak_act_elems, other.peak_act_elems),
        )


class OpGraph:
    """A straight-line list of ops over tensors identified by integers, with their shapes (C, H, W)."""

    def __init__(self) -> None:
        self.shapes: list[Shape] = []
        # (mode, inputs, output)
        self.ops: list[tuple[str, tuple[int, ...], int]] = []
        self.kinds: list[Kind] = []
        self.outputs: list[int] = []
        self.macs = 0
        self.params = 0

    # -- recording ---------------------------------------------------------------------------
    def input(self, shape: Shape) -> int:
        """Declare an input tensor (alive from the start)."""
        self.shapes.append(tuple(shape))
        return len(self.shapes) - 1

    def record(self, mode: str, inputs: Sequence[int], shape: Shape, kind: Kind = ("view",)) -> int:
        """Record one op producing a tensor of ``shape`` from ``inputs``; returns the new tensor id."""
        self.shapes.append(tuple(shape))
        out = len(self.shapes) - 1
        self.ops.append((mode, tuple(inputs), out))
        self.kinds.append(kind)
        return out

    def conv(
        self,
        x: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        *,
        bias: bool = False,
        bn: bool = True,
        padding: int | None = None,
        act: str = "none",
    ) -> int:
        """Conv2d (+ BatchNorm, folded by the exporters, when ``bn``) (+ activation ``act``); BN and
        the activation run in place on the conv's output."""
        cin, h, w = self.shapes[x]
        pad = kernel // 2 if padding is None else padding
        oh, ow = conv_out(h, kernel, stride, pad), conv_out(w, kernel, stride, pad)
        weights = cout * (cin // groups) * kernel * kernel
        self.macs += weights * oh * ow
        self.params += weights + (cout if bias else 0) + (2 * cout if bn else 0)
        y = self.record(NEW, (x,), (cout, oh, ow), ("conv", kernel, stride, pad, groups, bias))
        if bn:
            y = self.record(INPLACE, (y,), (cout, oh, ow), ("bn",))
        return self.act(y, act) if act != "none" else y

    def linear(self, x: int, out_features: int, *, bias: bool = True) -> int:
        in_features = numel(self.shapes[x])
        self.macs += in_features * out_features
        self.params += in_features * out_features + (out_features if bias else 0)
        return self.record(NEW, (x,), (out_features,), ("linear", bias))

    def batchnorm(self, x: int) -> int:
        """A BatchNorm that cannot be folded into a preceding conv (in place when ``x`` dies here)."""
        c = self.shapes[x][0]
        self.params += 2 * c
        return self.record(INPLACE, (x,), self.shapes[x], ("bn",))

    def act(self, x: int, name: str = "relu") -> int:
        """An activation; in place when ``x`` dies here (after a conv it always does; a pre-activation,
        as in ReLU-Conv-BN, may have later readers of ``x``)."""
        return self.record(INPLACE, (x,), self.shapes[x], ("act", name))

    def pool(self, x: int, kernel: int, stride: int, padding: int, mode: str = "avg") -> int:
        c, h, w = self.shapes[x]
        return self.record(
            NEW, (x,), (c, conv_out(h, kernel, stride, padding), conv_out(w, kernel, stride, padding)),
            ("pool", mode, kernel, stride, padding),
        )

    def global_pool(self, x: int) -> int:
        return self.record(NEW, (x,), (self.shapes[x][0], 1, 1), ("gap",))

    def flatten(self, x: int) -> int:
        return self.record(ALIAS, (x,), (numel(self.shapes[x]),), ("view",))

    def add(self, a: int, b: int) -> int:
        return self.record(INPLACE, (a, b), self.shapes[a], ("add",))

    def mul(self, a: int, b: int) -> int:
        """Element-wise product with broadcasting (SE scale); output has the larger operand's shape."""
        big = a if numel(self.shapes[a]) >= numel(self.shapes[b]) else b
        return self.record(INPLACE, (a, b), self.shapes[big], ("mul",))

    def zeros(self, like: int) -> int:
        """A zero tensor shaped like ``like`` (NB201 node whose every input edge is ``none``)."""
        return self.record(NEW, (), self.shapes[like], ("zeros",))

    def copy(self, x: int) -> int:
        """A materialised permutation of ``x`` (channel shuffle)."""
        return self.record(NEW, (x,), self.shapes[x], ("copy",))

    # -- evaluation --------------------------------------------------------------------------
    def peak_act_elems(self) -> int:
        """Largest number of activation elements alive at once (see module docstring)."""
        n_ops = len(self.ops)
        last_use = [-1] * len(self.shapes)
        for t in self.outputs:
            last_use[t] = n_ops
        # Views, BN/activations and element-wise ops whose result nobody reads are dead code and do
        # not keep their inputs alive; ops that write a new buffer (convs, pools) always run.
        used = set(self.outputs)
        for i in range(n_ops - 1, -1, -1):
            mode, inputs, out = self.ops[i]
            if mode != NEW and out not in used:
                continue
            for t in inputs:
                used.add(t)
                last_use[t] = max(last_use[t], i)
        storage = list(range(len(self.shapes)))  # tensor -> storage id (a tensor id)
        members: dict[int, list[int]] = {s: [s] for s in storage}
        born: dict[int, int] = {}
        for i, (mode, inputs, out) in enumerate(self.ops):
            target = None
            if mode == ALIAS:
                target = storage[inputs[0]]
            elif mode == INPLACE:
                out_elems = numel(self.shapes[out])
                for t in inputs:
                    s = storage[t]
                    if numel(self.shapes[s]) == out_elems and max(last_use[m] for m in members[s]) <= i:
                        target = s
                        break
            if target is None:
                born[out] = i
            else:
                storage[out] = target
                members[target].append(out)
        intervals = []
        for s, ms in members.items():
            if storage[s] != s:
                continue
            # a buffer nobody reads (a dead branch) still exists while the op writing it runs
            birth = born.get(s, -1)
            intervals.append((birth, max(birth, *(last_use[m] for m in ms)), numel(self.shapes[s])))
        peak = 0
        for b, _, _ in intervals:
            if b < 0:
                continue
            live = sum(size for b2, d2, size in intervals if b2 <= b <= d2)
            peak = max(peak, live)
        if not any(b >= 0 for b, _, _ in intervals):
            peak = sum(size for _, _, size in intervals)
        return peak

    def cost(self) -> Cost:
        return Cost(self.macs, self.params, self.peak_act_elems())
