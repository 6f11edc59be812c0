"""The source model's FX graph: which module each op belongs to, which residual blocks can be removed,
and the analytic shapes and op graph of any pruned variant, without building it.

The graph is traced once (``torch.fx``, torch's own modules as leaves) with each node tagged by the
path of the module whose ``forward`` created it. A *removable block* is a sub-module whose ops read one
tensor ``x`` from outside and hand one tensor ``y`` back, with ``y = x + f(x)`` (optionally followed by
activations, as ResNet's ``relu(x + f(x))``) and ``y`` shaped like ``x``: replacing the block by the
identity keeps every shape downstream. The outermost such blocks are the removal choices.

:meth:`FxModel.shapes` propagates shapes through the graph for a pruned variant on PyTorch's ``meta``
device: torch's own functions run as they are (concatenation, chunks, channel shuffles, reshapes), and
each Conv2d / Linear / BatchNorm returns a tensor with its *pruned* channel count, given as a mapping
from module path to output channels. :meth:`FxModel.op_graph` turns those shapes into the
:class:`~edgenas.costgraph.OpGraph` that gives peak memory and, lowered, the deployed files
(:func:`edgenas.modelcount.fx_opgraph`, the same conversion that counts a built module).
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
import torch.nn as nn
from torch.fx.passes.shape_prop import ShapeProp

from edgenas.errors import EdgenasError

PATH_KEY = "edgenas_path"
"""Node meta key: the path of the module whose forward produced the node."""

_ADDS = {operator.add, operator.iadd, torch.add}
ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.SiLU, nn.GELU, nn.Identity)
_ACT_FUNCS = {torch.relu, torch.nn.functional.relu, torch.nn.functional.relu6, torch.nn.functional.hardswish,
              torch.nn.functional.silu}
_PRUNABLE = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)


class _PathTracer(torch.fx.Tracer):
    """FX tracer that tags each node with the path of the module whose forward created it."""

    def __init__(self) -> None:
        super().__init__()
        self._paths = [""]

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        self._paths.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self._paths.pop()

    def create_node(self, *args: Any, **kwargs: Any) -> torch.fx.Node:
        node = super().create_node(*args, **kwargs)
        node.meta[PATH_KEY] = self._paths[-1]
        return node


def is_lifted(model: nn.Module) -> bool:
    """Whether ``model`` is (a copy of) a lifted torch.export program, whose graph carries module paths."""
    return isinstance(model, torch.fx.GraphModule) and any(PATH_KEY in n.meta for n in model.graph.nodes)


def inside(path: str, block: str) -> bool:
    """Whether module path ``path`` is ``block`` or one of its sub-modules."""
    return path == block or path.startswith(block + ".")


@dataclass(frozen=True)
class Block:
    """A residual block that can be replaced by the identity."""

    path: str
    """The module's qualified name (``features.3``)."""
    input: torch.fx.Node
    output: torch.fx.Node
    nodes: frozenset[torch.fx.Node]


class FxModel:
    """A traced source model at one input shape (C, H, W)."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, int, int]) -> None:
        self.model = model
        self.input_shape = input_shape
        try:  # a lifted torch.export program's graph already carries the paths (edgenas.compress.program)
            graph = copy.deepcopy(model.graph) if is_lifted(model) else _PathTracer().trace(model)
        except Exception as exc:  # torch.fx refuses data-dependent control flow
            raise EdgenasError(f"the model cannot be traced by torch.fx ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:160]}); edgenas derives a search space from its FX graph, "
                               f"so control flow must not depend on tensor values") from None
        self.gm = torch.fx.GraphModule(model, graph)
        for node in self.gm.graph.nodes:
            if node.op == "call_module":
                mod = self.gm.get_submodule(str(node.target))
                if any(True for _ in mod.parameters(recurse=False)) and not isinstance(mod, _PRUNABLE):
                    raise EdgenasError(f"module {node.target} ({type(mod).__name__}) holds parameters edgenas cannot "
                                       f"prune; supported: Conv2d, Linear, BatchNorm2d and parameter-free modules")
        with torch.no_grad():
            ShapeProp(self.gm).propagate(torch.zeros(1, *input_shape))
        self.nodes = list(self.gm.graph.nodes)
        self.blocks = self._removable_blocks()

    @property
    def code(self) -> str:
        """The traced graph's Python code (part of the model hash)."""
        return self.gm.code

    # -- residual blocks ----------------------------------------------------------------------
    def _removable_blocks(self) -> list[Block]:
        paths = sorted({str(n.target) for n in self.nodes if n.op == "call_module"}
                       | {n.meta.get(PATH_KEY, "") for n in self.nodes})
        prefixes = sorted({".".join(p.split(".")[:i]) for p in paths if p for i in range(1, p.count(".") + 2)})
        found: list[Block] = []
        for path in prefixes:
            if any(inside(path, b.path) for b in found):
                continue  # the outermost block is the choice
            block = self._block(path)
            if block is not None:
                found.append(block)
        return found

    def _block(self, path: str) -> Block | None:
        members = [n for n in self.nodes if n.op not in ("placeholder", "output")
                   and inside(str(n.target) if n.op == "call_module" else n.meta.get(PATH_KEY, ""), path)]
        if not members:
            return None
        member_set = set(members)
        ext_in = {a for n in members for a in n.all_input_nodes if a not in member_set and a.op != "get_attr"}
        outs = [n for n in members if any(u not in member_set for u in n.users)]
        if len(ext_in) != 1 or len(outs) != 1:
            return None
        (x,), y = tuple(ext_in), outs[0]
        if _meta_shape(x) is None or _meta_shape(x) != _meta_shape(y):
            return None
        node = y  # y = act(...act(x + f(x)))
        while (node.op == "call_module" and isinstance(self.gm.get_submodule(str(node.target)), ACTIVATION_MODULES)) \
                or (node.op == "call_function" and node.target in _ACT_FUNCS):
            node = node.args[0]
        if not (node.op == "call_function" and node.target in _ADDS and x in node.args[:2]):
            return None
        return Block(path, x, y, frozenset(members))

    # -- analytic shapes ---------------------------------------------------------------------
    def shapes(self, channels: dict[str, int], removed: tuple[Block, ...] = (),
               resolution: int | None = None) -> dict[torch.fx.Node, Any]:
        """Value of every node for a pruned variant, as ``meta`` tensors (and the Python values of
        size/index nodes): ``channels`` maps a Conv2d/Linear path to its kept output channels (absent:
        unchanged); ``removed`` blocks pass their input through; ``resolution``: the input side (default:
        the traced one)."""
        skip = {n for b in removed for n in b.nodes}
        out_of = {b.output: b.input for b in removed}
        env: dict[torch.fx.Node, Any] = {}

        def load(a: Any) -> Any:
            return torch.fx.node.map_arg(a, lambda n: env[n])

        for node in self.nodes:
            if node in out_of:
                env[node] = env[out_of[node]]
                continue
            if node in skip:
                continue
            if node.op == "placeholder":
                c, h, w = self.input_shape
                env[node] = torch.empty(1, c, resolution or h, resolution or w, device="meta")
            elif node.op == "get_attr":
                env[node] = _fetch(self.gm, str(node.target)).to("meta")
            elif node.op == "call_module":
                env[node] = self._module_value(str(node.target), load(node.args), load(node.kwargs), channels)
            elif node.op == "call_function":
                env[node] = node.target(*load(node.args), **load(node.kwargs))
            elif node.op == "call_method":
                obj, *rest = load(node.args)
                env[node] = getattr(obj, str(node.target))(*rest, **load(node.kwargs))
        return env

    def _module_value(self, target: str, args: tuple, kwargs: dict, channels: dict[str, int]) -> Any:
        mod = self.gm.get_submodule(target)
        x = args[0]
        if isinstance(mod, nn.Conv2d):
            c = channels.get(target, mod.out_channels)
            h, w = (_conv_side(x.shape[i], mod.kernel_size[i - 2], mod.stride[i - 2], mod.padding[i - 2],
                               mod.dilation[i - 2]) for i in (2, 3))
            return torch.empty(x.shape[0], c, h, w, device="meta")
        if isinstance(mod, nn.Linear):
            return torch.empty(*x.shape[:-1], channels.get(target, mod.out_features), device="meta")
        if isinstance(mod, (nn.BatchNorm2d, nn.Dropout, *ACTIVATION_MODULES)):
            return x  # shape-preserving (running activations on meta tensors is slow through their decompositions)
        return mod(*args, **kwargs)

    def base_channels(self) -> dict[str, int]:
        """Output channels of every Conv2d / Linear in the source model."""
        out: dict[str, int] = {}
        for name, mod in self.model.named_modules():
            if isinstance(mod, nn.Conv2d):
                out[name] = mod.out_channels
            elif isinstance(mod, nn.Linear):
                out[name] = mod.out_features
        return out


def _conv_side(size: int, k: int, s: int, p: int | str, d: int) -> int:
    if isinstance(p, str):
        return size if p == "same" else (size - d * (k - 1) - 1) // s + 1
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _meta_shape(node: torch.fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _fetch(gm: nn.Module, target: str) -> torch.Tensor:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
