"""Shared by the supernet tests: weights moved far from their initial values, so that a wrong channel, a
stale statistic or an identity kernel transform changes the output."""

from __future__ import annotations

import torch
import torch.nn as nn


def randomise(module: nn.Module, seed: int, transform_names: tuple[str, ...] = ("kernel_maps",)) -> None:
    """Random BatchNorm statistics and affine parameters, and kernel transformation matrices (parameters
    whose name contains one of ``transform_names``: ours are ``kernel_maps.*``, OFA's ``*_matrix``) moved
    away from the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
        for name, p in module.named_parameters():
            if any(t in name for t in transform_names):
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
