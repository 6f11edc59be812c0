"""Count the cost of a *built* torch module, independently of the analytic model.

Used to check :meth:`SearchSpace.cost` (tests, ``benchmarks/cost_model.py``) and usable on any
FX-traceable CNN: MACs from ``torch.utils.flop_counter`` (FLOPs / 2, conv + linear), parameters from
``module.parameters()``, and peak activation memory from a liveness pass over the ``torch.fx`` graph
with real tensor shapes, under the conventions documented in :mod:`edgenas.costgraph`; file sizes and the
TFLite Micro arena by lowering that graph (:mod:`edgenas.deployed`) exactly as the analytic model does.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx
import torch.nn as nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.utils.flop_counter import FlopCounterMode

from edgenas.costgraph import ALIAS, INPLACE, NEW, OpGraph, numel
from edgenas.deployed import lower, metadata_bytes_tflite

_NEW_MODULES = (nn.Conv2d, nn.Linear, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d)
_UNARY_MODULES = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.SiLU)
_ALIAS_MODULES = (nn.Identity, nn.Dropout, nn.Flatten)
_BINARY_FUNCS = {operator.add, operator.iadd, torch.add, operator.mul, operator.imul, torch.mul}
_ALIAS_FUNCS = {torch.flatten, torch.reshape, torch.transpose, operator.getitem}
_NEW_FUNCS = {torch.zeros_like}
_GAP_FUNCS = {torch.nn.functional.adaptive_avg_pool2d}
_F = torch.nn.functional
_ACT_FUNCS = {torch.relu: "relu", _F.relu: "relu", _F.relu6: "relu6", _F.hardswish: "hswish",
              _F.hardsigmoid: "hsigmoid", torch.sigmoid: "sigmoid", _F.sigmoid: "sigmoid", _F.silu: "silu"}
"""Functional activations (``torch.relu(x)`` in a model's forward) as their module counterparts."""
_CONCAT_FUNCS = {torch.cat, torch.concat}
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


def trace_graph(model: nn.Module, x: torch.Tensor) -> OpGraph:
    """The module's op graph with each op's kind (for peak memory and the deployed graph), from an
    FX trace."""
    gm = torch.fx.symbolic_trace(model)
    ShapeProp(gm).propagate(x)
    return fx_opgraph(gm, _shape, lambda node: _kind(gm, node))


def fx_opgraph(
    gm: torch.fx.GraphModule, shape_of: Callable[[torch.fx.Node], tuple[int, ...] | None],
    kind_of: Callable[[torch.fx.Node], tuple], replace: dict[torch.fx.Node, torch.fx.Node] | None = None,
    skip: set[torch.fx.Node] | frozenset[torch.fx.Node] = frozenset(), env_out: dict[torch.fx.Node, int] | None = None,
) -> OpGraph:
    """The op graph of an FX graph whose tensor shapes (batch dimension dropped) ``shape_of`` gives and
    whose op kinds ``kind_of`` gives. ``skip``: nodes left out; ``replace``: a node whose value is
    another's (a removed residual block's output is its input); ``env_out`` receives each node's tensor id.
    :func:`trace_graph` reads shapes from
    a shape-propagated trace; :mod:`edgenas.compress` from its analytic shapes of a pruned model."""
    replace = replace or {}
    g = OpGraph()
    env: dict[torch.fx.Node, int] = {} if env_out is None else env_out
    for node in gm.graph.nodes:
        if node in replace:
            env[node] = env[replace[node]]
            continue
        if node in skip:
            continue
        if node.op == "placeholder":
            env[node] = g.input(shape_of(node) or ())
            continue
        if node.op == "output":
            out = node.args[0]
            g.outputs.append(env[out])
            continue
        if node.op == "get_attr":
            continue
        shape = shape_of(node)
        if shape is None:  # non-tensor value (x.shape, sizes)
            continue
        args = node.args
        if node.target is operator.getitem and _is_split(args[0]):
            args = args[0].args[:1]  # a chunk of a split reads the split tensor
        elif node.target in _CONCAT_FUNCS:
            args = tuple(args[0])
        tensor_args = [env[a] for a in args if isinstance(a, torch.fx.Node) and a in env]
        if node.target in _NEW_FUNCS:
            tensor_args = []  # zeros_like reads only the shape: its argument's buffer may already be gone
        env[node] = g.record(_classify(gm, node), tensor_args, shape, kind_of(node))
    return g


_SPLIT_METHODS = {"chunk", "split", "tensor_split"}


def _is_split(node: Any) -> bool:
    """A node producing a tuple of channel slices (``x.chunk(2, dim=1)``, ``torch.split``)."""
    return isinstance(node, torch.fx.Node) and (
        (node.op == "call_method" and node.target in _SPLIT_METHODS)
        or (node.op == "call_function" and node.target in (torch.chunk, torch.split, torch.tensor_split)))


def _split_parts(node: torch.fx.Node) -> int:
    """How many pieces a chunk / split makes (not how many of them are read)."""
    arg = node.args[1] if len(node.args) > 1 else node.kwargs.get("chunks", node.kwargs.get("split_size_or_sections"))
    if node.target in ("chunk", torch.chunk) and isinstance(arg, int):
        return arg
    if isinstance(arg, (list, tuple)):
        return len(arg)
    return max(int(u.args[1]) for u in node.users if u.target is operator.getitem) + 1  # at least this many


def _split_dim(node: torch.fx.Node) -> int:
    dim = node.kwargs.get("dim", node.args[2] if len(node.args) > 2 else 0)
    return int(dim)


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
        if node.target in _BINARY_FUNCS or node.target in _ACT_FUNCS:
            return INPLACE
        if node.target in _ALIAS_FUNCS:
            return ALIAS
        if node.target in _NEW_FUNCS or node.target in _GAP_FUNCS or node.target in _CONCAT_FUNCS:
            return NEW
        raise ValueError(f"modelcount: no memory rule for function {node.target}")
    if node.op == "call_method":
        if node.target in _ALIAS_METHODS:
            return ALIAS
        if node.target in _NEW_METHODS:
            return NEW
        raise ValueError(f"modelcount: no memory rule for method {node.target}")
    raise ValueError(f"modelcount: unexpected node {node.op}")


_ACT_NAMES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hswish", nn.Hardsigmoid: "hsigmoid",
              nn.Sigmoid: "sigmoid", nn.SiLU: "silu"}


def _pair(v: Any) -> int:
    """A square kernel / stride / padding as one int (the cost model's convention)."""
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ValueError(f"modelcount: non-square window {v}")
        return int(v[0])
    return int(v)


def _kind(gm: torch.fx.GraphModule, node: torch.fx.Node) -> tuple:
    """The op's kind in :data:`edgenas.costgraph.KINDS` vocabulary, read from the module."""
    if node.op == "call_module":
        mod = gm.get_submodule(str(node.target))
        if isinstance(mod, nn.Conv2d):
            return ("conv", _pair(mod.kernel_size), _pair(mod.stride), _pair(mod.padding), mod.groups,
                    mod.bias is not None)
        if isinstance(mod, nn.BatchNorm2d):
            return ("bn",)
        if type(mod) in _ACT_NAMES:
            return ("act", _ACT_NAMES[type(mod)])
        if isinstance(mod, nn.Linear):
            return ("linear", mod.bias is not None)
        if isinstance(mod, nn.AdaptiveAvgPool2d):
            return ("gap",)
        if isinstance(mod, (nn.AvgPool2d, nn.MaxPool2d)):
            return ("pool", "avg" if isinstance(mod, nn.AvgPool2d) else "max", _pair(mod.kernel_size),
                    _pair(mod.stride), _pair(mod.padding))
        return ("view",)
    if node.op == "call_function":
        if node.target in (operator.add, operator.iadd, torch.add):
            return ("add",)
        if node.target in (operator.mul, operator.imul, torch.mul):
            return ("mul",)
        if node.target in _NEW_FUNCS:
            return ("zeros",)
        if node.target in _ACT_FUNCS:
            return ("act", _ACT_FUNCS[node.target])
        if node.target in _GAP_FUNCS:
            size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
            if size not in (1, (1, 1), [1, 1]):
                raise ValueError(f"modelcount: adaptive pooling to {size} (only global pooling is modelled)")
            return ("gap",)
        if node.target in _CONCAT_FUNCS:
            return ("concat",)
        if node.target is operator.getitem and _is_split(node.args[0]):
            chunks = node.args[0]
            return ("split", int(node.args[1]), _split_parts(chunks), int(_split_dim(chunks)))
        return ("view",)
    if node.op == "call_method" and node.target == "contiguous":
        return ("copy",)
    if node.op == "call_method" and node.target in ("mean",):
        keepdim = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
        return ("gap",) if keepdim else ("gap", "nchw")  # x.mean([2, 3]): litert-torch reduces in NCHW
    return ("view",)


def count_module(model: nn.Module, input_shape: tuple[int, int, int], arch: str = "") -> dict[str, Any]:
    """Cost record of a built module for one (C, H, W) input, same fields as ``CostReport``; the file
    sizes include the metadata the exporters write for ``arch`` (none without it)."""
    model = model.eval()
    x = torch.randn(1, *input_shape)
    g = trace_graph(model, x)
    params = count_params(model)
    peak = g.peak_act_elems()
    net = lower(g)
    classes = numel(g.shapes[g.outputs[0]])

    def metadata(precision: str) -> int:
        return metadata_bytes_tflite(precision, arch, classes, input_shape[0]) if arch else 0

    return {
        "macs": count_macs(model, x),
        "params": params,
        "size_bytes_fp32": net.size_bytes_fp32() + metadata("fp32"),
        "size_bytes_int8": net.size_bytes_int8() + metadata("int8"),
        "peak_ram_bytes_fp32": 4 * peak,
        "peak_ram_bytes_int8": peak,
        "arena_bytes_tflm": net.arena_bytes_tflm(),
        **{f"{field}_{p}": getattr(net.delegate(p), attr) for p in ("fp32", "int8")
           for field, attr in (("delegate_partitions", "partitions"), ("ops_off_delegate", "ops_off_delegate"))},
    }
