"""Torch modules of the NAS-Bench-201 TinyNetwork (same parameters and function as xautodl's)."""

from __future__ import annotations

import torch
import torch.nn as nn

from edgenas.spaces.nb201 import EDGES


def relu_conv_bn(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))


def edge_module(c: int, op: str) -> nn.Module:
    if op == "skip":
        return nn.Identity()
    if op == "avg":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    return relu_conv_bn(c, c, 3 if op == "c3" else 1)


class SelfAdd(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x


class InferCell(nn.Module):
    """A fixed NB201 cell. ``none`` edges are omitted (they add zeros); a node whose every input is
    ``none`` is a zero tensor, as in the official code."""

    def __init__(self, c: int, ops: tuple[str, ...]) -> None:
        super().__init__()
        self.edges = nn.ModuleDict()
        self.plan: list[list[str]] = [[], [], []]
        for (to, frm), op in zip(EDGES, ops):
            if op == "none":
                continue
            name = f"e{to}{frm}"
            self.edges[name] = edge_module(c, op)
            self.plan[to - 1].append(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for names in self.plan:
            acc = None
            for name in names:
                t = self.edges[name](nodes[int(name[2])])
                acc = t if acc is None else acc + t
            nodes.append(torch.zeros_like(x) if acc is None else acc)
        return nodes[3]


class ResNetBasicBlock(nn.Module):
    """NB201's reduction cell (stride 2)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv_a = relu_conv_bn(cin, cout, 3, 2)
        self.conv_b = relu_conv_bn(cout, cout, 3, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2, 0), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        basic = self.conv_b(self.conv_a(x))
        return self.downsample(x) + basic
