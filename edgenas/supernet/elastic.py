"""The weight-sharing supernet: one module holding a space's largest network, running any spec with
its weights cut to size.

Each slot of the space's plan (:mod:`edgenas.supernet.plans`) holds the module of its largest layer,
built by edgenas' own layer descriptors (``Layer.build``). A spec's layer at that slot runs as the
module its own descriptor builds — created once on the ``meta`` device, so it owns no memory — called
with the slot's tensors cut to the layer's shapes (``torch.func.functional_call``). Cutting is
OFA-style:

* channels (expand ratios, width multipliers, SE mid channels): the first c channels;
  :meth:`Supernet.sort_channels` first orders each block's expand channels by importance (L1 norm of
  the projection weights, as OFA does) so that the first c are the ones that matter most;
* kernels: the centre crop of the largest kernel, optionally through OFA's learned kernel
  transformations (a (k*k x k*k) matrix per slot and kernel step, e.g. ``7to5`` then ``5to3``);
* depth: the plan gives a stage of depth d its first d block slots;
* resolution: the input's size (every network is fully convolutional up to its global pool).

Because the subnet runs as exactly the modules ``space.build(spec, task)`` builds, its residuals, SE
blocks and activations are those of the stand-alone network, and :meth:`Supernet.extract` returns
that stand-alone network (edgenas' own classes, no supernet code) with the cut weights: its outputs
equal the supernet's for the spec.

Spaces: ``tiny``, ``mbv3``, ``proxyless`` and ``fbnet`` (its ``_g2`` blocks cut their grouped 1x1
convs from the ungrouped ``k5e6`` weights; a width- or stride-changing ``skip`` has a slot of its own).
``nb201`` has none: its cells choose per edge among parameter-free ops and convs of one size, so there
is no largest layer to cut from, and a supernet there is a different design (one weight set per edge
and op).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from torch.func import functional_call

from edgenas.errors import EdgenasError
from edgenas.layers import Layer, LinearLayer, MBConvLayer
from edgenas.nn_blocks import MBConv, SqueezeExcite
from edgenas.spaces.base import ArchSpec, SearchSpace, Task
from edgenas.supernet.plans import Plan, Step, plan_for

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

_BN = nn.modules.batchnorm._BatchNorm
RUNNER_CACHE = 4096
"""(slot, layer) pairs whose meta module and tensor map are kept (a few per slot and width)."""
REUSE_CACHE = 1024
"""(slot, layer) modules kept by ``extract(reuse=True)`` (each holds one layer's tensors)."""
_LOCAL = threading.local()
"""Per thread, meta-device modules per layer, shared by every supernet of the thread (they hold no
tensors; a supernet sets their train/eval mode and BatchNorm momentum before each call)."""


def _leaves(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Submodules that own parameters or buffers, in definition order (the unit of alignment between a
    slot's module and a smaller layer's module: channel shuffles and activations own nothing)."""
    return [(name, m) for name, m in module.named_modules()
            if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))]


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.out_channels and m.kernel_size[0] > 1


@dataclass
class _Runner:
    """How one layer runs from one slot: its meta module and, per tensor of that module, the slot
    tensor it is cut from."""

    template: nn.Module
    entries: list[tuple[str, str, tuple[int, ...], bool]]
    """(tensor name in the layer's module, name in the slot's module, target shape, depthwise kernel?)"""
    bn_pairs: list[tuple[_BN, _BN]]
    """(layer's BatchNorm, slot's BatchNorm): momentum and eps follow the slot's."""


def _merge(slot: str, layers: list[Layer]) -> Layer:
    """The largest form of a slot: the maximum of every size field over the layers seen there."""
    first = layers[0]
    if any(type(layer) is not type(first) for layer in layers):
        raise RuntimeError(f"supernet slot {slot!r} holds layers of different kinds: {layers}")
    sizes = {}
    for f in ("cin", "cout", "mid", "k", "se", "hw"):
        if hasattr(first, f):
            sizes[f] = max(getattr(layer, f) for layer in layers)
    if isinstance(first, MBConvLayer):
        sizes["pg"] = 1  # grouped 1x1 convs are cut from ungrouped ones
        sizes["res"] = False
    if not isinstance(first, LinearLayer):
        sizes["hw"] = 1  # a conv's weights do not depend on its input size
    return dataclasses.replace(first, **sizes)


class Supernet(nn.Module):
    """Weight-sharing supernet of an elastic space (or ``fbnet``) for one task.

    ``Supernet(space, task)`` holds the largest network of the space instance: the largest width in
    ``space.widths``, the deepest stages, the largest kernel and expand ratio. ``set_active(spec)`` then
    ``forward(x)`` (or ``forward(x, spec)``) runs any spec the space accepts, at the input's resolution;
    :meth:`extract` gives that spec as a stand-alone module. ``kernel_transform`` adds OFA's learned
    kernel transformation matrices (identity at start, so the function is the plain centre crop until
    they are trained or imported).
    """

    def __init__(self, space: SearchSpace, task: Task | None = None, *, kernel_transform: bool = False) -> None:
        super().__init__()
        self.space = space
        self.task = task or Task()
        self.plan: Plan = plan_for(space)
        self.kernel_transform = bool(kernel_transform)
        grouped: dict[str, list[Layer]] = {}
        for spec in self.plan.max_specs():
            for step in self.plan.steps(spec, self.task):
                if step.slot is not None:
                    grouped.setdefault(step.slot, []).append(step.layer)
        self.slot_layers: dict[str, Layer] = {name: _merge(name, layers) for name, layers in grouped.items()}
        self.slots = nn.ModuleDict({name: layer.build() for name, layer in self.slot_layers.items()})
        self.kernel_maps = nn.ParameterDict()
        if self.kernel_transform:
            for name, module in self.slots.items():
                for _, leaf in _leaves(module):
                    if _is_depthwise(leaf):
                        ks = [k for k in self.plan.kernels if k <= leaf.kernel_size[0]]
                        for big, small in zip(ks[:0:-1], ks[-2::-1]):
                            self.kernel_maps[f"{name}_{big}to{small}"] = nn.Parameter(torch.eye(small * small))
        self._runners: OrderedDict[tuple[str, Layer], _Runner] = OrderedDict()
        self._reused: OrderedDict[tuple[str, Layer], nn.Module] = OrderedDict()
        self._reused_on: tuple[torch.device, torch.dtype] | None = None
        self._active: ArchSpec = self.plan.largest()
        self._active_steps: list[Step] = self.plan.steps(self._active, self.task)

    # -- which subnet ----------------------------------------------------------------------------
    def check(self, spec: ArchSpec | str) -> ArchSpec:
        """``spec`` as a member of this supernet's space (strings parsed); anything else is an
        :class:`~edgenas.errors.ArchParseError` saying why."""
        return self.plan.check(spec)

    def set_active(self, spec: ArchSpec | str) -> ArchSpec:
        """Make ``spec`` the subnet ``forward(x)`` runs; returns the parsed spec."""
        parsed = self.check(spec)
        steps = self.plan.steps(parsed, self.task)
        for step in steps:  # fail now, not at the first forward, when the spec does not fit
            if step.slot is not None:
                self._runner(step)
        self._active, self._active_steps = parsed, steps
        return parsed

    @property
    def active(self) -> ArchSpec:
        return self._active

    def largest(self) -> ArchSpec:
        return self.plan.largest()

    def smallest(self) -> ArchSpec:
        return self.plan.smallest()

    def input_shape(self, spec: ArchSpec | None = None) -> tuple[int, int, int]:
        """(C, H, W) input of ``spec`` (default: the active one) for this supernet's task."""
        return self.space.input_shape(spec or self._active, self.task)

    # -- running ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, spec: ArchSpec | str | None = None) -> torch.Tensor:
        if spec is None:
            steps = self._active_steps
        else:
            steps = self.plan.steps(self.check(spec), self.task)
        for step in steps:
            runner = self._runner(step)
            if runner.template.training != self.training:
                runner.template.train(self.training)
            for mine, theirs in runner.bn_pairs:
                mine.momentum, mine.eps = theirs.momentum, theirs.eps
            if step.slot is None:
                x = runner.template(x)
            else:
                x = functional_call(runner.template, self._cut(step.slot, runner), (x,))
        return x

    def _runner(self, step: Step) -> _Runner:
        key = (step.slot or "", _normalise(step.layer))
        hit = self._runners.get(key)
        if hit is not None:
            self._runners.move_to_end(key)
            return hit
        template = _template(key[1])
        template.train(self.training)
        entries: list[tuple[str, str, tuple[int, ...], bool]] = []
        bn_pairs: list[tuple[_BN, _BN]] = []
        if step.slot is not None:
            slot = self.slots[step.slot]
            mine, theirs = _leaves(template), _leaves(slot)
            if [type(m) for _, m in mine] != [type(m) for _, m in theirs]:
                raise RuntimeError(f"supernet slot {step.slot!r} ({type(slot).__name__}) cannot run layer "
                                   f"{step.layer.key}: their modules differ")
            for (mp, m), (tp, t) in zip(mine, theirs):
                src = dict(t.named_parameters(recurse=False)) | dict(t.named_buffers(recurse=False))
                for name, tensor in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]:
                    shape = tuple(tensor.shape)
                    have = tuple(src[name].shape)
                    if len(shape) != len(have) or any(a > b for a, b in zip(shape, have)):
                        raise EdgenasError(
                            f"{self.space.name} supernet: layer {step.layer.key} needs {step.slot}.{tp}.{name} of "
                            f"shape {shape}, this supernet holds {have} (built for widths "
                            f"{getattr(self.space, 'widths', '?')}); build it for the spec's width")
                    entries.append((f"{mp}.{name}" if mp else name, f"{tp}.{name}" if tp else name, shape,
                                    _is_depthwise(t) and name == "weight"))
                if isinstance(m, _BN):
                    bn_pairs.append((m, t))  # type: ignore[arg-type]
        runner = _Runner(template, entries, bn_pairs)
        self._runners[key] = runner
        if len(self._runners) > RUNNER_CACHE:
            self._runners.popitem(last=False)
        return runner

    def _cut(self, slot: str, runner: _Runner) -> dict[str, torch.Tensor]:
        """The slot's tensors cut to ``runner``'s layer (views where possible, so training updates the
        supernet's weights and running statistics)."""
        module = self.slots[slot]
        src = dict(module.named_parameters()) | dict(module.named_buffers())
        out = {}
        for name, sname, shape, depthwise in runner.entries:
            t = src[sname]
            if depthwise and shape[-1] < t.shape[-1]:
                t = self._depthwise_kernel(slot, t[: shape[0]], shape[-1])
            elif tuple(t.shape) != shape:
                t = _crop(t, shape)
            out[name] = t
        return out

    def _depthwise_kernel(self, slot: str, weight: torch.Tensor, k: int) -> torch.Tensor:
        """A (C, 1, k, k) kernel from the (C, 1, K, K) one: the centre crop, through the slot's kernel
        transformation matrices where it has them (OFA: crop 7 -> 5, times ``7to5``; crop -> 3, ``5to3``)."""
        big = weight.shape[-1]
        if not self.kernel_transform:
            start = (big - k) // 2
            return weight[:, :, start:start + k, start:start + k]
        ks = [s for s in self.plan.kernels if k <= s <= big]
        if ks[0] != k or ks[-1] != big:
            raise EdgenasError(f"{self.space.name} supernet: no kernel transformation from {big} to {k} at {slot}")
        out = weight
        for src, dst in zip(ks[:0:-1], ks[-2::-1]):
            start = (src - dst) // 2
            crop = out[:, :, start:start + dst, start:start + dst]
            mat = self.kernel_maps[f"{slot}_{src}to{dst}"]
            out = torch.nn.functional.linear(crop.reshape(-1, dst * dst), mat).reshape(weight.shape[0], 1, dst, dst)
        return out

    # -- subnets ---------------------------------------------------------------------------------
    def subnet_state_dict(self, spec: ArchSpec | str) -> dict[str, torch.Tensor]:
        """The state dict of ``space.build(spec, task)`` holding the cut weights (copies, detached)."""
        parsed = self.check(spec)
        state: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for i, step in enumerate(self.plan.steps(parsed, self.task)):
                if step.slot is None:
                    continue
                for name, t in self._cut(step.slot, self._runner(step)).items():
                    state[f"{i}.{name}"] = t.detach().clone(memory_format=torch.contiguous_format)
        return state

    def extract(self, spec: ArchSpec | str, batches: Iterable[Any] | None = None, *, reuse: bool = False
                ) -> nn.Module:
        """``space.build(spec, task)`` with the weights and BatchNorm statistics cut from the supernet:
        a stand-alone module of edgenas' own classes (exportable as any built network), on the
        supernet's device, in eval mode. With ``batches`` (training inputs at the spec's input shape),
        its BatchNorm statistics are re-estimated on them (:func:`edgenas.supernet.recalibrate_bn`),
        which a subnet needs unless the supernet's statistics were recalibrated for this spec.

        ``reuse``: for loops that score one subnet after another (the ``supernet`` estimator). The
        layer modules of earlier ``reuse=True`` extractions are kept per (slot, layer) and refilled
        with the supernet's current tensors instead of being built again (building modules was a
        quarter of a candidate's time). The network is the same (same classes, same values: its
        outputs equal a fresh extraction's bit for bit), but it shares its modules with later
        ``reuse=True`` extractions: use it before the next one, and do not keep or export it.
        Modules keep the memory format they were given (e.g. ``channels_last``)."""
        parsed = self.check(spec)
        if reuse:
            module = self._extract_reused(parsed)
        else:
            state = self.subnet_state_dict(parsed)
            with torch.device("meta"):
                module = self.space.build(parsed, self.task)
            module.load_state_dict(state, strict=True, assign=True)
        if batches is not None:
            from edgenas.supernet.bn import recalibrate_bn

            recalibrate_bn(module, batches)
        return module.eval()

    @torch.no_grad()
    def _extract_reused(self, spec: ArchSpec) -> nn.Module:
        """``space.build(spec)`` assembled from kept layer modules refilled with the cut tensors."""
        ref = next(iter(self.parameters()))
        on = (ref.device, ref.dtype)
        if self._reused_on != on:  # moved or cast since: modules of the old device are no use
            self._reused.clear()
            self._reused_on = on
        layers: list[nn.Module] = []
        for step in self.plan.steps(spec, self.task):
            key = (step.slot or "", step.layer)
            module = self._reused.get(key)
            if module is None:
                with torch.device("meta"):  # no random initialisation: every tensor is filled below
                    module = step.layer.build()
                module = module.to_empty(device=on[0]).to(on[1])
                self._reused[key] = module
                if len(self._reused) > REUSE_CACHE:
                    self._reused.popitem(last=False)
            else:
                self._reused.move_to_end(key)
            if step.slot is not None:
                mine = dict(module.named_parameters()) | dict(module.named_buffers())
                cut = self._cut(step.slot, self._runner(step))
                if mine.keys() != cut.keys():
                    raise RuntimeError(f"supernet slot {step.slot!r}: layer {step.layer.key} holds tensors "
                                       f"{sorted(mine)}, its cut {sorted(cut)}")
                for name, t in cut.items():
                    mine[name].copy_(t)
            else:
                for t in [*module.parameters(), *module.buffers()]:
                    raise RuntimeError(f"supernet: layer {step.layer.key} has no slot but holds tensors ({t.shape})")
            layers.append(module)
        return nn.Sequential(*layers)

    # -- weights ---------------------------------------------------------------------------------
    def load_weights(self, state: Mapping[str, torch.Tensor], what: str = "supernet state dict") -> None:
        """Load a state dict of this supernet, or one :class:`EdgenasError` line naming the first
        missing, unknown or wrongly shaped tensor (``what`` names the source in that line)."""
        own = self.state_dict()
        head = f"{what} does not fit the {self.space.name} supernet"
        missing = next((k for k in own if k not in state), None)
        if missing is not None:
            raise EdgenasError(f"{head}: tensor {missing!r} is missing")
        unknown = next((k for k in state if k not in own), None)
        if unknown is not None:
            raise EdgenasError(f"{head}: unknown tensor {unknown[:80]!r}")
        for k, v in own.items():
            if tuple(state[k].shape) != tuple(v.shape):
                raise EdgenasError(f"{head}: tensor {k!r} has shape {tuple(state[k].shape)}, the supernet needs "
                                   f"{tuple(v.shape)}")
        self.load_state_dict(state, strict=True)

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Reorder each block's expand channels (and its SE's mid channels) by importance, descending —
        the L1 norm of the weights reading them (projection / SE expand), as OFA's
        ``re_organize_middle_weights`` — so that cutting the first c channels keeps the most important.
        The largest subnet computes the same function before and after."""
        for module in self.slots.values():
            if not isinstance(module, MBConv):
                continue
            convs = [m for m in module.body if isinstance(m, nn.Sequential)]
            se = next((m for m in module.body if isinstance(m, SqueezeExcite)), None)
            if len(convs) != 3:  # no expand conv: the mid channels are the block's input
                continue
            expand, dw, project = convs
            if expand[0].groups != 1 or project[0].groups != 1:
                continue
            idx = project[0].weight.abs().sum(dim=(0, 2, 3)).argsort(descending=True, stable=True)
            _permute(expand[0].weight, 0, idx)
            _permute_bn(expand[1], idx)
            _permute(dw[0].weight, 0, idx)
            _permute_bn(dw[1], idx)
            _permute(project[0].weight, 1, idx)
            if se is not None:
                _permute(se.reduce.weight, 1, idx)
                _permute(se.expand.weight, 0, idx)
                _permute(se.expand.bias, 0, idx)
                mid = se.expand.weight.abs().sum(dim=(0, 2, 3)).argsort(descending=True, stable=True)
                _permute(se.reduce.weight, 0, mid)
                _permute(se.reduce.bias, 0, mid)
                _permute(se.expand.weight, 1, mid)

    def extra_repr(self) -> str:
        return (f"space={self.space.name}, slots={len(self.slots)}, "
                f"kernel_transform={self.kernel_transform}, active={self._active}")


def _template(layer: Layer) -> nn.Module:
    """The module ``layer`` builds, on the meta device (cached)."""
    cache: OrderedDict[Layer, nn.Module] | None = getattr(_LOCAL, "templates", None)
    if cache is None:
        cache = _LOCAL.templates = OrderedDict()
    hit = cache.get(layer)
    if hit is None:
        with torch.device("meta"):
            hit = cache[layer] = layer.build()
        if len(cache) > RUNNER_CACHE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(layer)
    return hit


def _normalise(layer: Layer) -> Layer:
    """The layer with its input size dropped where the module does not depend on it (runner cache key)."""
    return layer if isinstance(layer, LinearLayer) else dataclasses.replace(layer, hw=1)


def _crop(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The leading ``shape`` of ``t`` in every dimension, except the centre of a conv kernel's spatial
    dimensions."""
    index: list[slice] = []
    for d, (have, want) in enumerate(zip(t.shape, shape)):
        if t.dim() == 4 and d >= 2:
            start = (have - want) // 2
            index.append(slice(start, start + want))
        else:
            index.append(slice(0, want))
    return t[tuple(index)]


def _permute(t: torch.Tensor, dim: int, idx: torch.Tensor) -> None:
    t.copy_(t.index_select(dim, idx))


def _permute_bn(bn: nn.Module, idx: torch.Tensor) -> None:
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        _permute(t, 0, idx)
