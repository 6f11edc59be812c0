"""Channel shuffles as a layer Torch-Pruning can see.

torchvision's ShuffleNet shuffles channels with reshapes (``view`` to N x g x C/g x H x W, ``transpose``,
``contiguous``, ``view`` back). Torch-Pruning cannot map channel indices through those reshapes (its
index mapping divides by zero there; its issue #45: "Torch-Pruning cannot prune torchvision's ShuffleNet
directly ... pass the modules holding the shuffle as ignored layers and handle them by hand").
:func:`fold_channel_shuffles` rewrites each such pattern in the model's FX graph into one
:class:`ChannelShuffle` layer (same function, same weights) and :class:`ShufflePruner` tells Torch-Pruning
what it is: a layer with C channels in and out whose channels cannot be pruned (a pruned shuffle would
interleave other channels). Groups of coupled channels that reach a shuffle therefore stay whole; the
others (the stem, the units' inner convolutions, the last conv) are pruned exactly as elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.fx
import torch.nn as nn
from torch.fx.passes.shape_prop import ShapeProp


class _Shuffle(torch.autograd.Function):
    """The shuffle as one autograd node (Torch-Pruning traces the autograd graph; inside a customized
    layer it must see one node, not the reshapes)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, groups: int) -> torch.Tensor:
        ctx.groups = groups
        return shuffle(x, groups)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return shuffle(grad, grad.shape[1] // ctx.groups), None


def shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle of ``channels`` channels in ``groups`` groups."""

    def __init__(self, groups: int, channels: int) -> None:
        super().__init__()
        self.groups, self.channels = groups, channels
        self.opaque = False
        """True while Torch-Pruning traces the model (one autograd node)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.opaque:
            return _Shuffle.apply(x, self.groups)
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}, channels={self.channels}"


def set_opaque(model: nn.Module, opaque: bool) -> None:
    for m in model.modules():
        if isinstance(m, ChannelShuffle):
            m.opaque = opaque


def shuffle_pruner() -> Any:
    """Torch-Pruning's customized pruner for :class:`ChannelShuffle` (built lazily: torch-pruning is an
    extra)."""
    from torch_pruning.pruner.function import BasePruningFunc

    class ShufflePruner(BasePruningFunc):
        def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
            raise RuntimeError("edgenas keeps the channels around a channel shuffle whole")

        prune_in_channels = prune_out_channels

        def get_out_channels(self, layer: nn.Module) -> int:
            return layer.channels

        def get_in_channels(self, layer: nn.Module) -> int:
            return layer.channels

    return ShufflePruner()


def _is(node: Any, names: set[str], funcs: set[Any] = frozenset()) -> bool:  # type: ignore[assignment]
    return isinstance(node, torch.fx.Node) and (
        (node.op == "call_method" and node.target in names) or (node.op == "call_function" and node.target in funcs))


def fold_channel_shuffles(model: nn.Module, input_shape: tuple[int, int, int]) -> nn.Module:
    """``model`` with each reshape-transpose-reshape channel shuffle as a :class:`ChannelShuffle` layer
    (a ``GraphModule`` keeping the model's layers and their names), or ``model`` itself when it has none."""
    gm = torch.fx.symbolic_trace(model)
    ShapeProp(gm).propagate(torch.zeros(1, *input_shape))
    found = 0
    for node in list(gm.graph.nodes):
        if not _is(node, {"view", "reshape"}, {torch.reshape}):
            continue
        meta, src = node.meta.get("tensor_meta"), node.args[0]
        if meta is None or len(meta.shape) != 5 or not isinstance(src, torch.fx.Node):
            continue
        before = src.meta.get("tensor_meta")
        users = list(node.users)
        if before is None or len(before.shape) != 4 or len(users) != 1:
            continue
        t = users[0]
        if not (_is(t, {"transpose"}, {torch.transpose}) and tuple(t.args[1:3]) in ((1, 2), (2, 1))
                and len(t.users) == 1):
            continue
        c = next(iter(t.users))
        if _is(c, {"contiguous"}) and len(c.users) == 1:
            end = next(iter(c.users))
        else:
            end = c
        end_meta = end.meta.get("tensor_meta")
        if not (_is(end, {"view", "reshape"}, {torch.reshape}) and end_meta is not None
                and tuple(end_meta.shape) == tuple(before.shape)):
            continue
        groups, channels = int(meta.shape[1]), int(before.shape[1])
        name = f"channel_shuffle_{found}"
        gm.add_submodule(name, ChannelShuffle(groups, channels))
        with gm.graph.inserting_after(end):
            new = gm.graph.call_module(name, (src,))
        end.replace_all_uses_with(new)
        new.meta["tensor_meta"] = end_meta
        found += 1
    if not found:
        return model
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm

