"""Torch modules behind the layer descriptors (imported lazily: the cost model never needs torch).

The modules are written to be traceable by ``torch.fx`` and exportable to ONNX and LiteRT: no
data-dependent control flow, no in-place ops on tensors that are read again.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def make_act(act: str) -> nn.Module:
    if act == "relu":
        return nn.ReLU()
    if act == "relu6":
        return nn.ReLU6()
    if act == "hswish":
        return nn.Hardswish()
    if act == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {act!r}")


class ConvBNAct(nn.Sequential):
    """Conv2d ('same' padding) -> optional BatchNorm -> activation."""

    def __init__(
        self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, *,
        act: str = "relu", bn: bool = True, bias: bool = False,
    ) -> None:
        mods: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=bias)]
        if bn:
            mods.append(nn.BatchNorm2d(cout))
        if act != "none":
            mods.append(make_act(act))
        super().__init__(*mods)


class BNAct(nn.Sequential):
    def __init__(self, c: int, act: str = "relu") -> None:
        mods: list[nn.Module] = [nn.BatchNorm2d(c)]
        if act != "none":
            mods.append(make_act(act))
        super().__init__(*mods)


class SqueezeExcite(nn.Module):
    """OFA/MobileNetV3 SE: global pool, 1x1 reduce (+bias), ReLU, 1x1 expand (+bias), h-sigmoid."""

    def __init__(self, c: int, mid: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(c, mid, 1, bias=True)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(mid, c, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))
        return x * s


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.groups
        return x.reshape(n, g, c // g, h, w).transpose(1, 2).contiguous().reshape(n, c, h, w)


class MBConv(nn.Module):
    """Inverted-residual block; see :class:`edgenas.layers.MBConvLayer` for the exact structure."""

    def __init__(
        self, cin: int, cout: int, mid: int, k: int, stride: int = 1, *, act: str = "relu",
        se_mid: int = 0, expand: bool = True, pw_groups: int = 1, residual: bool = False,
    ) -> None:
        super().__init__()
        body: list[nn.Module] = []
        if expand:
            body.append(ConvBNAct(cin, mid, 1, 1, pw_groups, act=act))
            if pw_groups > 1:
                body.append(ChannelShuffle(pw_groups))
        body.append(ConvBNAct(mid, mid, k, stride, mid, act=act))
        if se_mid:
            body.append(SqueezeExcite(mid, se_mid))
        body.append(ConvBNAct(mid, cout, 1, 1, pw_groups, act="none"))
        self.body = nn.Sequential(*body)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.residual:
            out = out + x
        return out
