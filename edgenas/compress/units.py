"""Latency units of a pruned model: its blocks, as self-contained layer descriptors.

A unit is one region of the pruned model's graph with one input tensor and one output tensor: a
module that is a child of a ``Sequential`` (or of the model itself), e.g. an inverted-residual block,
a ResNet basic block, a ShuffleNet unit, a stem conv; a region holding only BatchNorm / activations
joins the region before it (they fuse into its conv), one whose input is not an image tensor (the
classifier after pooling) or that only reshapes joins its neighbour. Regions that read or leave more
than one tensor merge with their neighbours until each is single-entry single-exit, so the units run
one after the other and their latencies add up, as every space's units do.

:class:`GraphUnit` holds the region as a small *program* (its modules as constructor arguments with the
pruned channel counts, its torch functions and methods with their constant arguments) from which
``build()`` makes a fresh module with random weights (the latency micro-model, and the end-to-end
networks of the device model's calibration), and the region's ops from the analytic op graph, which
``trace()`` replays for the unit's exact cost. Two regions with the same program are the same unit:
the key names the program by a digest, so a table measures each distinct block once across specs.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.fx
import torch.nn as nn

from edgenas.costgraph import OpGraph
from edgenas.layers import Layer

Program = tuple[tuple[Any, ...], ...]


def _fn_name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', getattr(fn, '__name__', repr(fn)))}"


def arg_template(value: Any, local: dict[torch.fx.Node, int]) -> Any:
    """An argument with its nodes replaced by ``("$", i)`` (the i-th value of the unit), lists tagged
    (so that the program is hashable and ``torch.cat`` still gets a list)."""
    if isinstance(value, torch.fx.Node):
        return ("$", local[value])
    if isinstance(value, list):
        return ("__list__", tuple(arg_template(v, local) for v in value))
    if isinstance(value, tuple):
        return ("__tuple__", tuple(arg_template(v, local) for v in value))
    if isinstance(value, dict):
        return ("__dict__", tuple(sorted((k, arg_template(v, local)) for k, v in value.items())))
    if isinstance(value, slice):
        return ("__slice__", value.start, value.stop, value.step)
    if isinstance(value, (int, float, bool, str, type(None), torch.dtype)):
        return value
    raise ValueError(f"unsupported constant argument {value!r} in the model's graph")


def _fill(template: Any, values: list[Any]) -> Any:
    if isinstance(template, tuple) and template:
        tag = template[0]
        if tag == "$":
            return values[template[1]]
        if tag == "__list__":
            return [_fill(v, values) for v in template[1]]
        if tag == "__tuple__":
            return tuple(_fill(v, values) for v in template[1])
        if tag == "__dict__":
            return {k: _fill(v, values) for k, v in template[1]}
        if tag == "__slice__":
            return slice(*template[1:])
    return template


def is_depthwise(conv: nn.Conv2d) -> bool:
    """One filter per channel: pruning keeps it so (its group count follows its channels)."""
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def module_entry(mod: nn.Module, cin: int, cout: int) -> tuple[Any, ...]:
    """A module as constructor arguments with pruned channel counts (Conv2d, Linear, BatchNorm2d) or,
    for parameter-free modules, as its pickle (their configuration is all they hold)."""
    if isinstance(mod, nn.Conv2d):
        groups = cin if is_depthwise(mod) else mod.groups
        return ("Conv2d", cin, cout, tuple(mod.kernel_size), tuple(mod.stride), mod.padding, tuple(mod.dilation),
                groups, mod.bias is not None, mod.padding_mode)
    if isinstance(mod, nn.Linear):
        return ("Linear", cin, cout, mod.bias is not None)
    if isinstance(mod, nn.BatchNorm2d):
        return ("BatchNorm2d", cout, mod.eps, mod.momentum, mod.affine, mod.track_running_stats)
    return ("free", pickle.dumps(mod, protocol=4))


def make_module(entry: tuple[Any, ...]) -> nn.Module:
    kind = entry[0]
    if kind == "Conv2d":
        _, cin, cout, k, s, p, d, g, bias, mode = entry
        return nn.Conv2d(cin, cout, k, s, p, d, g, bias, mode)
    if kind == "Linear":
        return nn.Linear(entry[1], entry[2], entry[3])
    if kind == "BatchNorm2d":
        return nn.BatchNorm2d(entry[1], entry[2], entry[3], entry[4], entry[5])
    return pickle.loads(entry[1])


def entry_cost(entry: tuple[Any, ...], out_shape: tuple[int, ...]) -> tuple[int, int]:
    """(MACs, parameters) of one call of a module entry producing ``out_shape`` (batch dropped)."""
    kind = entry[0]
    if kind == "Conv2d":
        _, cin, cout, k, _s, _p, _d, g, bias, _m = entry
        weights = cout * (cin // g) * k[0] * k[1]
        spatial = out_shape[1] * out_shape[2] if len(out_shape) == 3 else 1
        return weights * spatial, weights + (cout if bias else 0)
    if kind == "Linear":
        _, cin, cout, bias = entry
        rows = 1
        for d in out_shape[:-1]:
            rows *= d
        return cin * cout * rows, cin * cout + (cout if bias else 0)
    if kind == "BatchNorm2d":
        return 0, 2 * entry[1] if entry[4] else 0
    return 0, 0


def program_digest(program: Program) -> str:
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return tuple(plain(x) for x in v)
        if isinstance(v, bytes):
            return hashlib.sha1(v).hexdigest()
        if callable(v) and not isinstance(v, type):
            return _fn_name(v)
        return v

    return hashlib.sha1(repr(plain(program)).encode()).hexdigest()[:10]


class ProgramModule(nn.Module):
    """Runs a unit's program: ``("mod", i, args, kwargs)`` calls the i-th module, ``("fn", f, args,
    kwargs)`` a function, ``("method", name, args, kwargs)`` a method of its first argument; every
    instruction appends its value; the last one is the output."""

    def __init__(self, program: Program, modules: tuple[tuple[Any, ...], ...]) -> None:
        super().__init__()
        self.program = program
        self.mods = nn.ModuleList([make_module(e) for e in modules])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: list[Any] = [x]
        for op, target, args, kwargs in self.program:
            a, kw = _fill(args, values), _fill(kwargs, values)
            if op == "mod":
                values.append(self.mods[target](*a, **kw))
            elif op == "fn":
                values.append(target(*a, **kw))
            else:
                obj, *rest = a
                values.append(getattr(obj, target)(*rest, **kw))
        return values[-1]


@dataclass(frozen=True)
class GraphUnit(Layer):
    """A region of a pruned model (see the module docstring); input ``cin`` x ``hw`` x ``hw``."""

    kind: ClassVar[str] = "fx"
    cout: int = 0
    hout: int = 0
    summary: str = ""
    """Readable outline of the region (its module kinds), part of the key."""
    program: Program = ()
    modules: tuple[tuple[Any, ...], ...] = ()
    ops: tuple[tuple[str, tuple[int, ...], tuple[int, ...], tuple], ...] = ()
    """The region's ops in the analytic op graph: (mode, input ids (0 = the unit's input, i = the
    output of op i - 1), output shape, kind)."""
    macs: int = 0
    params: int = 0

    def _make_key(self) -> str:
        o = f"{self.cout}x{self.hout}" if self.hout else f"{self.cout}"
        return f"fx(i={self.cin}x{self.hw},o={o},{self.summary},h={program_digest((self.program, self.modules))})"

    def trace(self, g: OpGraph, x: int) -> int:
        ids = [x]
        for mode, inputs, shape, kind in self.ops:
            ids.append(g.record(mode, [ids[i] for i in inputs], shape, kind))
        g.macs += self.macs
        g.params += self.params
        return ids[-1]

    def build(self) -> nn.Module:
        return ProgramModule(self.program, self.modules)

