"""torch.export programs (``--model model.pt2``) lifted back into modules Torch-Pruning can prune.

A program saved with ``torch.export.save`` holds an ATen graph: a convolution is an ``aten.conv2d`` call
reading weight tensors, not an ``nn.Conv2d``, so neither Torch-Pruning (which maps autograd nodes to
modules) nor edgenas's FX analysis can see its layers. :func:`module_from_program` rebuilds them: every
call that reads parameters becomes the torch.nn layer it was exported from (named as in the exported
model, from its parameter names: ``features.0.0``), a parameter-free call becomes the torch.nn layer the
node's ``nn_module_stack`` records (``ReLU6`` at ``features.0.2``) or else the torch function of the same
meaning, in-place ATen ops become their out-of-place forms, and ShuffleNet's reshape-transpose-reshape
channel shuffle (whose sizes the program fixed at export) is rewritten with sizes read from the tensor,
as torchvision writes it, so :mod:`edgenas.compress.shuffle` folds it as usual. Every node carries the
path of the module that made it (``edgenas_path``), which :class:`~edgenas.compress.graph.FxModel` uses
instead of re-tracing, so residual blocks stay removable. An op outside the table below is refused in one
line naming the op and where it is; a reshape to sizes fixed at export (other than a shuffle or a
flatten) cannot survive pruning and is refused the same way.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from edgenas.compress.graph import PATH_KEY
from edgenas.errors import EdgenasError

_ACTIVATIONS: dict[str, tuple[type[nn.Module], Any]] = {
    # ATen name: (the argument-free torch.nn layer, the torch function of the same meaning)
    "relu": (nn.ReLU, torch.relu),
    "hardswish": (nn.Hardswish, F.hardswish),
    "hardsigmoid": (nn.Hardsigmoid, F.hardsigmoid),
    "sigmoid": (nn.Sigmoid, torch.sigmoid),
    "silu": (nn.SiLU, F.silu),
    "tanh": (nn.Tanh, torch.tanh),
}
_BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}
_IDENTITY = {"contiguous", "clone", "alias", "detach", "lift_fresh_copy", "dropout", "feature_dropout",
             "alpha_dropout"}
_ASSERTS = {"_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size", "_assert_async"}
SUPPORTED = ("conv2d/convolution (not transposed), linear, batch_norm, relu, relu6/hardtanh, hardswish, "
             "hardsigmoid, sigmoid, silu, gelu, tanh, add/sub/mul/div, adaptive_avg_pool2d, avg_pool2d, "
             "max_pool2d, mean, flatten, cat, chunk, dropout, channel shuffles")


class _BatchNormTuple:
    """The value of ``_native_batch_norm_legit_no_training`` (a tuple): element 0 is the layer's output."""

    def __init__(self, node: torch.fx.Node) -> None:
        self.node = node


def module_from_program(program: Any, where: str) -> torch.fx.GraphModule:
    """``program`` (a ``torch.export.ExportedProgram`` of a one-input, one-output image classifier) as a
    ``GraphModule`` of torch.nn layers holding the program's weights; ``where`` names it in errors."""
    return _Lifter(program, where).run()


class _Lifter:
    """One pass over the program's graph (``program.module()``), building a new FX graph of torch.nn layers."""

    def __init__(self, program: Any, where: str) -> None:
        self.where = where
        self.src = program.module()
        self.order = {name: i for i, name in enumerate(program.state_dict)}
        self.graph = torch.fx.Graph()
        self.env: dict[torch.fx.Node, Any] = {}
        self.modules: dict[str, nn.Module] = {}
        self.constants: dict[str, torch.Tensor] = {}
        self.inputs = 0

    # -- errors and small helpers -------------------------------------------------------------
    def refuse(self, node: torch.fx.Node, why: str) -> EdgenasError:
        path = _stack(node)[0] or "the top level"
        return EdgenasError(f"--model {self.where}: {node.target} at {path} {why}; edgenas lifts {SUPPORTED}; "
                            f"save the module itself (torch.save(model, 'model.pt')) or give its builder "
                            f"(--model file.py:build_fn)")

    def param(self, node: torch.fx.Node, a: Any) -> torch.Tensor | None:
        if a is None:
            return None
        if not (isinstance(a, torch.fx.Node) and a.op == "get_attr"):
            raise self.refuse(node, "reads weights computed inside the graph")
        return operator.attrgetter(str(a.target))(self.src).detach()

    def value(self, a: Any) -> Any:
        """An argument of the new graph: nodes mapped, constants registered as buffers."""
        def one(n: torch.fx.Node) -> Any:
            if n.op == "get_attr" and n not in self.env:
                name = str(n.target)
                self.constants[name] = operator.attrgetter(name)(self.src).detach().clone()
                self.env[n] = self.graph.get_attr(name)
            v = self.env[n]
            return v.node if isinstance(v, _BatchNormTuple) else v
        return torch.fx.node.map_arg(a, one)

    def emit(self, node: torch.fx.Node, op: str, target: Any, args: tuple, kwargs: dict | None = None) -> torch.fx.Node:
        new = self.graph.create_node(op, target, args, kwargs or {})
        new.meta[PATH_KEY] = str(target) if op == "call_module" else _stack(node)[0]
        return new

    def layer(self, node: torch.fx.Node, name: str, module: nn.Module, x: Any) -> torch.fx.Node:
        """Call ``module`` registered as ``name``, reusing one registered there before when it is the same
        layer (a module called twice, as ResNet's ``relu``)."""
        have = self.modules.get(name)
        if have is None:
            self.modules[name] = module
        elif not _same(have, module):
            raise self.refuse(node, f"would need two different layers named {name}")
        return self.emit(node, "call_module", name, (x,))

    def layer_or_function(self, node: torch.fx.Node, module: nn.Module, fn: Any, args: tuple,
                          kwargs: dict | None = None) -> torch.fx.Node:
        """The stack's innermost module when it is a layer of exactly this kind, else the function."""
        path, cls = _stack(node)
        if path and cls == type(module).__name__ and (path not in self.modules or _same(self.modules[path], module)):
            return self.layer(node, path, module, args[0])
        return self.emit(node, "call_function", fn, args, kwargs)

    # -- the walk -----------------------------------------------------------------------------
    def run(self) -> torch.fx.GraphModule:
        nodes = list(self.src.graph.nodes)
        skip: set[torch.fx.Node] = set()
        for node in nodes:
            if node in skip or node.op == "get_attr":
                continue
            if node.op == "placeholder":
                self.inputs += 1
                if self.inputs > 1:
                    raise EdgenasError(f"--model {self.where}: the program takes more than one input; edgenas "
                                       f"compresses image classifiers of one input tensor")
                self.env[node] = self.graph.placeholder("x")
            elif node.op == "output":
                flat = node.args[0] if isinstance(node.args[0], (tuple, list)) else [node.args[0]]
                outs = [a for a in flat if isinstance(a, torch.fx.Node)]
                if len(outs) != 1:
                    raise EdgenasError(f"--model {self.where}: the program returns {len(outs)} tensors; edgenas "
                                       f"compresses classifiers returning one logits tensor")
                self.graph.output(self.value(outs[0]))
            elif node.op == "call_function":
                skip |= self.call(node)
            elif node.op == "call_module" and str(node.target).startswith("_guards") and not node.users:
                continue  # the program's input-shape guards: edgenas changes the input side on purpose
            else:
                raise self.refuse(node, f"is a {node.op} node")
        if not self.inputs:
            raise EdgenasError(f"--model {self.where}: the program takes no input tensor")
        root: dict[str, Any] = dict(sorted(self.modules.items(), key=self._rank))
        root.update(self.constants)
        gm = torch.fx.GraphModule(root, self.graph, class_name="LiftedProgram")
        gm.graph.eliminate_dead_code()  # sizes only a rewritten shuffle read
        gm.recompile()
        for name, t in self.constants.items():  # buffers, so .to(device) moves them
            owner, _, leaf = name.rpartition(".")
            parent = gm.get_submodule(owner) if owner else gm
            delattr(parent, leaf)
            parent.register_buffer(leaf, t)
        return gm.eval()

    def _rank(self, item: tuple[str, nn.Module]) -> int:
        """Layers in the exported model's parameter order (Torch-Pruning numbers groups in module order),
        parameter-free ones after, in graph order."""
        name, module = item
        return min((self.order[f"{name}.{p}"] for p, _ in module.named_parameters() if f"{name}.{p}" in self.order),
                   default=len(self.order) + list(self.modules).index(name))

    def call(self, node: torch.fx.Node) -> set[torch.fx.Node]:
        """Map one call; returns nodes consumed with it (a channel shuffle's reshapes)."""
        target = node.target
        if target is operator.getitem:
            src, idx = node.args
            v = self.env[src]
            if isinstance(v, _BatchNormTuple):
                if idx != 0:
                    raise self.refuse(node, "uses batch statistics of an exported batch_norm")
                self.env[node] = v.node
            else:
                self.env[node] = self.emit(node, "call_function", operator.getitem, (v, idx))
            return set()
        if not isinstance(target, torch._ops.OpOverload):
            raise self.refuse(node, "is not an ATen op")
        name = target.overloadpacket.__name__
        inplace = name.endswith("_") and not name.startswith("_")
        base = name[:-1] if inplace else name
        args, kw = list(node.args), dict(node.kwargs)
        consumed: set[torch.fx.Node] = set()
        if base in _ASSERTS:
            return set()
        if base in _IDENTITY:
            if base.endswith("dropout") and _stack(node)[1] == "Dropout":
                p = float(args[1] if len(args) > 1 else kw.get("p", 0.5))
                self.env[node] = self.layer(node, _stack(node)[0], nn.Dropout(p), self.value(args[0]))
            else:
                self.env[node] = self.value(args[0])
        elif base in ("conv2d", "convolution"):
            self.env[node] = self.conv(node, args, kw, base)
        elif base == "linear":
            w, b = self.param(node, args[1]), self.param(node, args[2] if len(args) > 2 else kw.get("bias"))
            lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
            _load(lin, w, b)
            self.env[node] = self.layer(node, _layer_name(node, args[1]), lin, self.value(args[0]))
        elif base in ("batch_norm", "_native_batch_norm_legit_no_training"):
            self.env[node] = self.batch_norm(node, args, base)
        elif base in _ACTIVATIONS:
            layer, fn = _ACTIVATIONS[base]
            self.env[node] = self.layer_or_function(node, layer(), fn, (self.value(args[0]),))
        elif base == "hardtanh":
            lo, hi = (float(args[1]) if len(args) > 1 else -1.0), (float(args[2]) if len(args) > 2 else 1.0)
            x = self.value(args[0])
            if (lo, hi) == (0.0, 6.0):
                self.env[node] = self.layer_or_function(node, nn.ReLU6(), F.relu6, (x,))
            else:
                self.env[node] = self.layer_or_function(node, nn.Hardtanh(lo, hi), F.hardtanh, (x, lo, hi))
        elif base == "gelu":
            approx = str(kw.get("approximate", "none"))
            self.env[node] = self.layer_or_function(node, nn.GELU(approx), F.gelu, (self.value(args[0]),),
                                                    {"approximate": approx})
        elif base in _BINARY:
            if float(kw.get("alpha", args[2] if len(args) > 2 else 1)) != 1:
                raise self.refuse(node, "has alpha != 1")
            self.env[node] = self.emit(node, "call_function", _BINARY[base], (self.value(args[0]), self.value(args[1])))
        elif base == "adaptive_avg_pool2d":
            size = tuple(int(s) for s in args[1])
            self.env[node] = self.layer_or_function(node, nn.AdaptiveAvgPool2d(size), F.adaptive_avg_pool2d,
                                                    (self.value(args[0]), size))
        elif base in ("max_pool2d", "avg_pool2d"):
            self.env[node] = self.pool(node, args, kw, base)
        elif base == "mean" and target._overloadname == "dim":
            dims = [int(d) for d in args[1]]
            keep = bool(args[2] if len(args) > 2 else kw.get("keepdim", False))
            self.env[node] = self.emit(node, "call_method", "mean", (self.value(args[0]), dims),
                                       {"keepdim": True} if keep else {})
        elif base == "flatten":
            start, end = (int(args[1]) if len(args) > 1 else 0), (int(args[2]) if len(args) > 2 else -1)
            self.env[node] = self.emit(node, "call_function", torch.flatten, (self.value(args[0]), start, end))
        elif base == "cat":
            dim = int(args[1] if len(args) > 1 else kw.get("dim", 0))
            self.env[node] = self.emit(node, "call_function", torch.cat, (self.value(list(args[0])),), {"dim": dim})
        elif base == "chunk":
            dim = int(args[2] if len(args) > 2 else kw.get("dim", 0))
            self.env[node] = self.emit(node, "call_method", "chunk", (self.value(args[0]), int(args[1])), {"dim": dim})
        elif base in ("view", "reshape", "_unsafe_view"):
            consumed = self.reshape(node)
        elif base == "sym_size":  # a dynamic dimension's size (dropped below if only a rewritten shuffle read it)
            self.env[node] = self.emit(node, "call_method", "size", (self.value(args[0]), int(args[1])))
        else:
            raise self.refuse(node, "has no torch.nn equivalent edgenas can prune")
        if inplace and isinstance(args[0], torch.fx.Node):
            self.env[args[0]] = self.env[node]  # later readers of the mutated tensor see the new value
        return consumed

    # -- layers ---------------------------------------------------------------------------------
    def conv(self, node: torch.fx.Node, args: list, kw: dict, base: str) -> torch.fx.Node:
        names = (["input", "weight", "bias", "stride", "padding", "dilation", "groups"] if base == "conv2d" else
                 ["input", "weight", "bias", "stride", "padding", "dilation", "transposed", "output_padding", "groups"])
        a = {**dict(zip(names, args)), **kw}
        if a.get("transposed"):
            raise self.refuse(node, "is a transposed convolution")
        w, b = self.param(node, a["weight"]), self.param(node, a.get("bias"))
        if w.dim() != 4:
            raise self.refuse(node, f"is a {w.dim() - 2}-D convolution (edgenas prunes 2-D ones)")
        groups = int(a.get("groups", 1))
        padding = a.get("padding", 0)
        padding = padding if isinstance(padding, str) else tuple(int(p) for p in _pair(padding))
        conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), _pair(a.get("stride", 1)), padding,
                         _pair(a.get("dilation", 1)), groups, bias=b is not None)
        _load(conv, w, b)
        return self.layer(node, _layer_name(node, a["weight"]), conv, self.value(a["input"]))

    def batch_norm(self, node: torch.fx.Node, args: list, base: str) -> Any:
        x, w, b, mean, var = args[:5]
        momentum, eps = (args[6], args[7]) if base == "batch_norm" else (args[5], args[6])
        if base == "batch_norm" and args[5]:
            raise self.refuse(node, "was exported in training mode (export the model after model.eval())")
        val = x.meta.get("val") if isinstance(x, torch.fx.Node) else None
        if val is None or val.dim() != 4:
            raise self.refuse(node, "normalises a tensor that is not N x C x H x W (edgenas prunes BatchNorm2d)")
        weight, bias = self.param(node, w), self.param(node, b)
        running_mean, running_var = self.param(node, mean), self.param(node, var)
        channels = int(val.shape[1])
        bn = nn.BatchNorm2d(channels, float(eps), float(momentum) if momentum is not None else None,
                            affine=weight is not None, track_running_stats=running_mean is not None)
        with torch.no_grad():
            if weight is not None:
                bn.weight.copy_(weight)
                bn.bias.copy_(bias if bias is not None else torch.zeros(channels))
            if running_mean is not None:
                bn.running_mean.copy_(running_mean)
                bn.running_var.copy_(running_var)
        new = self.layer(node, _layer_name(node, w if w is not None else mean), bn, self.value(x))
        return new if base == "batch_norm" else _BatchNormTuple(new)

    def pool(self, node: torch.fx.Node, args: list, kw: dict, base: str) -> torch.fx.Node:
        if base == "max_pool2d":
            names = ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode"]
        else:
            names = ["input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"]
        a = {**dict(zip(names, args)), **kw}
        k = _pair(a["kernel_size"])
        s = _pair(a.get("stride") or k)
        p = _pair(a.get("padding", 0))
        if base == "max_pool2d":
            module: nn.Module = nn.MaxPool2d(k, s, p, _pair(a.get("dilation", 1)), ceil_mode=bool(a.get("ceil_mode")))
            fn, extra = F.max_pool2d, {"dilation": _pair(a.get("dilation", 1))}
        else:
            if a.get("divisor_override") is not None:
                raise self.refuse(node, "has a divisor override")
            module = nn.AvgPool2d(k, s, p, bool(a.get("ceil_mode")), bool(a.get("count_include_pad", True)))
            fn, extra = F.avg_pool2d, {"count_include_pad": bool(a.get("count_include_pad", True))}
        return self.layer_or_function(node, module, fn, (self.value(a["input"]), k, s, p),
                                      {**extra, "ceil_mode": bool(a.get("ceil_mode"))})

    def reshape(self, node: torch.fx.Node) -> set[torch.fx.Node]:
        """A channel shuffle (written with sizes read from the tensor) or a flatten; nothing else."""
        x = node.args[0]
        before, after = _shape_of(x), _shape_of(node)
        chain = _shuffle_chain(node)
        if chain is not None and before is not None and len(before) == 4:
            end = chain[-1]
            groups = int(after[1])
            v = self.value(x)
            size = self.emit(node, "call_method", "size", (v,))
            n, c, h, w = (self.emit(node, "call_function", operator.getitem, (size, i)) for i in range(4))
            per = self.emit(node, "call_function", operator.floordiv, (c, groups))
            y = self.emit(node, "call_method", "view", (v, n, groups, per, h, w))
            y = self.emit(node, "call_function", torch.transpose, (y, 1, 2))
            y = self.emit(node, "call_method", "contiguous", (y,))
            self.env[end] = self.emit(node, "call_method", "view", (y, n, c, h, w))
            return set(chain[1:])
        if before is not None and after is not None and len(before) >= 2 and len(after) == 2 \
                and after[0] == before[0] and after[1] == math.prod(before[1:]):
            self.env[node] = self.emit(node, "call_function", torch.flatten, (self.value(x), 1))
            return set()
        raise self.refuse(node, f"reshapes to sizes fixed at export ({list(after) if after else '?'}), which pruning "
                                f"would invalidate")


def _shuffle_chain(node: torch.fx.Node) -> list[torch.fx.Node] | None:
    """``[view5d, transpose(1, 2), (contiguous/clone,) view4d]`` starting at ``node``, or None."""
    before, after = _shape_of(node.args[0]), _shape_of(node)
    if before is None or after is None or len(before) != 4 or len(after) != 5 or len(node.users) != 1:
        return None
    if after[1] * after[2] != before[1] or tuple(after[3:]) != tuple(before[2:]):
        return None
    chain = [node]
    t = next(iter(node.users))
    if not (_aten(t) == "transpose" and sorted(int(d) for d in t.args[1:3]) == [1, 2] and len(t.users) == 1):
        return None
    chain.append(t)
    end = next(iter(t.users))
    if _aten(end) in ("contiguous", "clone") and len(end.users) == 1:
        chain.append(end)
        end = next(iter(end.users))
    if _aten(end) not in ("view", "reshape", "_unsafe_view") or _shape_of(end) != before:
        return None
    return [*chain, end]


def _aten(node: Any) -> str:
    target = getattr(node, "target", None)
    return target.overloadpacket.__name__ if isinstance(target, torch._ops.OpOverload) else ""


def _shape_of(node: Any) -> tuple[int, ...] | None:
    """The node's shape at export; -1 for a dynamic dimension (a program exported with dynamic shapes)."""
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    if not isinstance(val, torch.Tensor):
        return None
    return tuple(s if isinstance(s, int) else -1 for s in val.shape)


def _stack(node: torch.fx.Node) -> tuple[str, str]:
    """The innermost module of the node's ``nn_module_stack``: (path, class name)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, cls = list(stack.values())[-1]
    name = cls.__name__ if isinstance(cls, type) else str(cls).rsplit(".", 1)[-1]
    path = str(path)
    return ("", "") if path.startswith("_empty_nn_module_stack") else (path, name)


def _layer_name(node: torch.fx.Node, weight: torch.fx.Node) -> str:
    """A parameterised layer's name: its weight's, less ``.weight`` (``features.0.0``)."""
    target = str(weight.target)
    for suffix in (".weight", ".running_mean"):
        if target.endswith(suffix):
            return target[: -len(suffix)]
    return _stack(node)[0] or target.replace(".", "_")


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[0])) if len(v) == 1 else (int(v[0]), int(v[1]))
    return int(v), int(v)


def _load(module: nn.Module, w: torch.Tensor, b: torch.Tensor | None) -> None:
    with torch.no_grad():
        module.weight.copy_(w)
        if b is not None:
            module.bias.copy_(b)


def _same(a: nn.Module, b: nn.Module) -> bool:
    """Same kind of layer with the same settings and weights (one layer called twice)."""
    if type(a) is not type(b) or a.extra_repr() != b.extra_repr():
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
