"""Count the cost of a *built* torch module, independently of the analytic model.

Used to check :meth:`SearchSpace.cost` (tests, ``benchmarks/cost_model.py``) and usable on any
FX-traceable CNN: MACs from ``torch.utils.flop_counter`` (FLOPs / 2, conv + linear), parameters from
``module.parameters()``, and peak activation memory from a liveness pass over the ``torch.fx`` graph
with real tensor shapes, under the conventions documented in :mod:`edgenas.costgraph`.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx
import torch.nn as nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.utils.flop_counter import FlopCounterMode

from edgenas.costgraph import ALIAS, INPLACE, NEW, OpGraph

_NEW_MODULES = (nn.Conv2d, nn.Linear, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d)
_UNARY_MODULES = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.SiLU)
_ALIAS_MODULES = (nn.Identity, nn.Dropout, nn.Flatten)
_BINARY_FUNCS = {operator.add, operator.iadd, torch.add, operator.mul, operator.imul, torch.mul}
_ALIAS_FUNCS = {torch.flatten, torch.reshape}
_NEW_FUNCS = {torch.zeros_like}
_ALIAS_METHODS = {"reshape", "view", "transpose", "permute", "flatten", "squeeze", "unsqueeze"}
_NEW_METHODS = {"contiguous", "mean", "clone"}


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass (conv + linear), via torch's FLOP counter."""
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return int(fc.get_total_flops()) // 2


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _shape(node: torch.fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(meta.shape[1:])  # drop the batch dimension


def trace_graph(model: nn.Module, x: torch.Tensor) -> tuple[OpGraph, int]:
    """The module's op graph (for peak memory) and its int8 weight bytes, from an FX trace."""
    gm = torch.fx.symbolic_trace(model)
    ShapeProp(gm).propagate(x)
    g = OpGraph()
    env: dict[torch.fx.Node, int] = {}
    int8_bytes = 0
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            env[node] = g.input(_shape(node) or ())
            continue
        if node.op == "output":
            out = node.args[0]
            g.outputs.append(env[out])
            continue
        if node.op == "get_attr":
            continue
        shape = _shape(node)
        if shape is None:  # non-tensor value (x.shape, sizes)
            continue
        tensor_args = [env[a] for a in node.args if isinstance(a, torch.fx.Node) and a in env]
        if node.target in _NEW_FUNCS:
            tensor_args = []  # zeros_like reads only the shape: its argument's buffer may already be gone
        mode = _classify(gm, node)
        if node.op == "call_module":
            mod = gm.get_submodule(str(node.target))
            int8_bytes += _int8_bytes(gm, node, mod)
        env[node] = g.record(mode, tensor_args, shape)
    return g, int8_bytes


def _classify(gm: torch.fx.GraphModule, node: torch.fx.Node) -> str:
    if node.op == "call_module":
        mod = gm.get_submodule(str(node.target))
        if isinstance(mod, _NEW_MODULES):
            return NEW
        if isinstance(mod, _UNARY_MODULES):
            return INPLACE
        if isinstance(mod, _ALIAS_MODULES):
            return ALIAS
        raise ValueError(f"modelcount: no memory rule for module {type(mod).__name__}")
    if node.op == "call_function":
        if node.target in _BINARY_FUNCS:
            return INPLACE
        if node.target in _ALIAS_FUNCS:
            return ALIAS
        if node.target in _NEW_FUNCS:
            return NEW
        raise ValueError(f"modelcount: no memory rule for function {node.target}")
    if node.op == "call_method":
        if node.target in _ALIAS_METHODS:
            return ALIAS
        if node.target in _NEW_METHODS:
            return NEW
        raise ValueError(f"modelcount: no memory rule for method {node.target}")
    raise ValueError(f"modelcount: unexpected node {node.op}")


def _int8_bytes(gm: torch.fx.GraphModule, node: torch.fx.Node, mod: nn.Module) -> int:
    """Deployed int8 weight bytes of one module (BN folded into a preceding conv)."""
    if isinstance(mod, (nn.Conv2d, nn.Linear)):
        cout = mod.out_channels if isinstance(mod, nn.Conv2d) else mod.out_features
        users = list(node.users)
        folds_bn = len(users) == 1 and users[0].op == "call_module" and isinstance(
            gm.get_submodule(str(users[0].target)), nn.BatchNorm2d
        )
        return mod.weight.numel() + (4 * cout if (mod.bias is not None or folds_bn) else 0)
    if isinstance(mod, nn.BatchNorm2d):
        src = node.args[0]
        after_conv = (
            isinstance(src, torch.fx.Node) and src.op == "call_module"
            and isinstance(gm.get_submodule(str(src.target)), nn.Conv2d)
        )
        return 0 if after_conv else 2 * mod.num_features
    return 0


def count_module(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, Any]:
    """Cost record of a built module for one (C, H, W) input, same fields as ``CostReport``."""
    model = model.eval()
    x = torch.randn(1, *input_shape)
    g, int8_bytes = trace_graph(model, x)
    params = count_params(model)
    peak = g.peak_act_elems()
    return {
        "macs": count_macs(model, x),
        "params": params,
        "size_bytes_fp32": 4 * params,
        "size_bytes_int8": int8_bytes,
        "peak_ram_bytes_fp32": 4 * peak,
        "peak_ram_bytes_int8": peak,
    }
