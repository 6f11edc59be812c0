"""Layer descriptors: the unit a network is built from, costed by and keyed in a latency table.

A space turns a spec into a list of :class:`Layer` descriptors. Each descriptor is a small frozen,
hashable value that can

* emit its primitive ops into an :class:`~edgenas.costgraph.OpGraph` (exact analytic cost, no torch),
* build itself as a ``torch.nn.Module`` (the whole network is the ``nn.Sequential`` of its layers, and
  a latency micro-model is a single layer), and
* name itself with a stable :attr:`Layer.key`, the key of latency lookup tables.

Because the network and the micro-models come from the same descriptors, a per-layer latency table and
the analytic cost model can never disagree about what a layer is. Torch is imported only by ``build``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache
from typing import TYPE_CHECKING, ClassVar

from edgenas.costgraph import Cost, OpGraph, conv_out

if TYPE_CHECKING:
    import torch.nn as nn

    from edgenas.deployed import Deployed

ACTIVATIONS = ("relu", "relu6", "hswish", "none")


@dataclass(frozen=True)
class Layer:
    """Base descriptor: input ``cin`` channels at ``hw`` x ``hw`` pixels."""

    kind: ClassVar[str] = "layer"
    cin: int
    hw: int

    # -- identity ----------------------------------------------------------------------------
    @property
    def key(self) -> str:
        """Stable latency-table key, e.g. ``conv(i=3x224,o=24x112,k=3,s=2,g=1,act=hswish)``."""
        return _layer_key(self)

    def _make_key(self) -> str:
        c, h, _ = self.out_shape
        parts = [f"i={self.cin}x{self.hw}", f"o={c}x{h}" if h else f"o={c}"]
        for f in fields(self):
            if f.name in ("cin", "hw") or f.name in self._key_skip:
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool):
                v = int(v)
            elif isinstance(v, tuple):
                v = ".".join(map(str, v))
            parts.append(f"{f.name}={v}")
        return f"{self.kind}({','.join(parts)})"

    _key_skip: ClassVar[tuple[str, ...]] = ("cout",)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the output; H = W = 0 for a flat vector."""
        return layer_cost(self)[1]

    # -- behaviour ---------------------------------------------------------------------------
    def trace(self, g: OpGraph, x: int) -> int:
        """Emit this layer's ops reading tensor ``x``; return the output tensor id."""
        raise NotImplementedError

    def build(self) -> nn.Module:
        """A fresh torch module computing this layer (random init)."""
        raise NotImplementedError

    def cost(self) -> Cost:
        return layer_cost(self)[0]

    def units(self) -> tuple[Layer, ...]:
        """The latency-table units this layer runs as (itself, unless it decomposes: an NB201 cell
        runs as its live edge ops and additions). Units must sum to the layer's latency."""
        return (self,)


@lru_cache(maxsize=1 << 16)
def _layer_key(layer: Layer) -> str:
    """Layers are frozen and hashable: a key is built once per distinct layer (prediction over large
    candidate pools asks for the same units many times)."""
    return layer._make_key()


@lru_cache(maxsize=1 << 16)
def layer_cost(layer: Layer) -> tuple[Cost, tuple[int, int, int]]:
    """Exact cost of one layer and its output shape, cached by descriptor value."""
    g = OpGraph()
    x = g.input((layer.cin, layer.hw, layer.hw))
    out = layer.trace(g, x)
    g.outputs.append(out)
    shape = g.shapes[out]
    out_shape = (shape[0], shape[1], shape[2]) if len(shape) == 3 else (shape[0], 0, 0)
    return g.cost(), out_shape


@lru_cache(maxsize=1 << 16)
def layer_deployed(layer: Layer) -> Deployed:
    """The deployed graph of one layer (input not transposed), cached by descriptor value: networks
    chain these (:func:`edgenas.deployed.chain`)."""
    from edgenas.deployed import lower

    g = OpGraph()
    x = g.input((layer.cin, layer.hw, layer.hw))
    g.outputs.append(layer.trace(g, x))
    return lower(g, nchw_input=False)


def network_graph(layers: tuple[Layer, ...] | list[Layer]) -> OpGraph:
    """The op graph of a whole network: its layers traced one after the other."""
    g = OpGraph()
    first = layers[0]
    x = g.input((first.cin, first.hw, first.hw))
    for layer in layers:
        x = layer.trace(g, x)
    g.outputs.append(x)
    return g


def _check_act(act: str) -> None:
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}")


@dataclass(frozen=True)
class ConvLayer(Layer):
    """Conv2d -> [BatchNorm] -> [activation], 'same' padding (k // 2)."""

    kind: ClassVar[str] = "conv"
    cout: int
    k: int = 1
    s: int = 1
    g: int = 1
    act: str = "relu"
    bn: bool = True
    bias: bool = False

    def trace(self, g: OpGraph, x: int) -> int:
        return g.conv(x, self.cout, self.k, self.s, self.g, bias=self.bias, bn=self.bn, act=self.act)

    def build(self) -> nn.Module:
        from edgenas import nn_blocks

        _check_act(self.act)
        return nn_blocks.ConvBNAct(
            self.cin, self.cout, self.k, self.s, self.g, act=self.act, bn=self.bn, bias=self.bias
        )


@dataclass(frozen=True)
class MBConvLayer(Layer):
    """Inverted-residual block (MobileNetV2/V3, OFA, FBNet).

    [1x1 expand -> BN -> act (-> channel shuffle if ``pg`` > 1)] -> kxk depthwise -> BN -> act
    -> [SE: pool, 1x1 reduce+bias, ReLU, 1x1 expand+bias, h-sigmoid, scale] -> 1x1 project -> BN
    (-> + input when ``res``). ``pg`` is the group count of both pointwise convs (FBNet's g2 blocks).
    """

    kind: ClassVar[str] = "mbconv"
    cout: int
    mid: int
    k: int
    s: int = 1
    act: str = "relu"
    se: int = 0
    expand: bool = True
    pg: int = 1
    res: bool = False

    def trace(self, g: OpGraph, x: int) -> int:
        h = x
        if self.expand:
            h = g.conv(h, self.mid, 1, 1, self.pg, act=self.act)
            if self.pg > 1:
                h = g.copy(h)
        h = g.conv(h, self.mid, self.k, self.s, self.mid, act=self.act)
        if self.se:
            s = g.global_pool(h)
            s = g.conv(s, self.se, 1, bias=True, bn=False, act="relu")
            s = g.conv(s, self.mid, 1, bias=True, bn=False, act="hsigmoid")
            h = g.mul(h, s)
        h = g.conv(h, self.cout, 1, 1, self.pg)
        if self.res:
            h = g.add(h, x)
        return h

    def build(self) -> nn.Module:
        from edgenas import nn_blocks

        _check_act(self.act)
        return nn_blocks.MBConv(
            self.cin, self.cout, self.mid, self.k, self.s, act=self.act, se_mid=self.se,
            expand=self.expand, pw_groups=self.pg, residual=self.res,
        )


@dataclass(frozen=True)
class GlobalPoolLayer(Layer):
    """Global average pooling to C x 1 x 1."""

    kind: ClassVar[str] = "gap"

    def trace(self, g: OpGraph, x: int) -> int:
        return g.global_pool(x)

    def build(self) -> nn.Module:
        import torch.nn as nn

        return nn.AdaptiveAvgPool2d(1)


@dataclass(frozen=True)
class LinearLayer(Layer):
    """Flatten -> Linear(+bias): the classifier."""

    kind: ClassVar[str] = "linear"
    cout: int

    def trace(self, g: OpGraph, x: int) -> int:
        return g.linear(g.flatten(x), self.cout)

    def build(self) -> nn.Module:
        import torch.nn as nn

        return nn.Sequential(nn.Flatten(), nn.Linear(self.cin * self.hw * self.hw, self.cout))


@dataclass(frozen=True)
class BNActLayer(Layer):
    """A standalone BatchNorm -> activation (NB201's ``lastact``); the BN cannot be folded."""

    kind: ClassVar[str] = "bnact"
    act: str = "relu"

    def trace(self, g: OpGraph, x: int) -> int:
        y = g.batchnorm(x)
        return g.act(y, self.act) if self.act != "none" else y

    def build(self) -> nn.Module:
        from edgenas import nn_blocks

        _check_act(self.act)
        return nn_blocks.BNAct(self.cin, self.act)


def spatial_out(hw: int, k: int, s: int) -> int:
    """Output side of a 'same'-padded kxk conv with stride s."""
    return conv_out(hw, k, s, k // 2)
