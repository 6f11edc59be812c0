"""The source model prepared for a task, and its pruned variants analysed without being built.

:class:`BaseModel` is the source adapted to the task (a new classifier head when the class count differs,
the stem's filters summed or repeated when the input channel count does, as timm adapts pretrained
stems), traced (:class:`~edgenas.compress.graph.FxModel`) and grouped
(:class:`~edgenas.compress.prune.ChannelGroups`). :meth:`BaseModel.variant` gives a pruned variant's
exact MACs, parameters, op graph (peak memory, deployed files) and latency units from shapes alone;
:meth:`BaseModel.build` makes the variant for real with Torch-Pruning, which is what the tests compare.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache, partial
from typing import TYPE_CHECKING, Any

import torch
import torch.fx
import torch.nn as nn

from edgenas.compress.graph import ACTIVATION_MODULES, PATH_KEY, Block, FxModel, is_lifted
from edgenas.compress.prune import ChannelGroups
from edgenas.compress.shuffle import fold_channel_shuffles
from edgenas.compress.source import Source, load_source, model_hash
from edgenas.compress.units import GraphUnit, arg_template, entry_cost, is_depthwise, module_entry
from edgenas.costgraph import ALIAS, OpGraph
from edgenas.errors import EdgenasError
from edgenas.modelcount import _kind, fx_opgraph

if TYPE_CHECKING:
    from edgenas.compress.space import ModelSpace, ModelSpec


def _get(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path) if path else model


def _set(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(_get(model, parent), name, new)


def _stem_and_head(fx: FxModel) -> tuple[str, str]:
    convs = [n for n in fx.nodes if n.op == "call_module"
             and isinstance(fx.gm.get_submodule(str(n.target)), (nn.Conv2d, nn.Linear))]
    if not convs or not isinstance(fx.gm.get_submodule(str(convs[0].target)), nn.Conv2d):
        raise EdgenasError("the model has no Conv2d before its first Linear; edgenas compresses convolutional "
                           "image classifiers")
    return str(convs[0].target), str(convs[-1].target)


def _shape(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape[1:]) if isinstance(value, torch.Tensor) else None


@dataclass
class Variant:
    """A pruned variant's analytic description."""

    macs: int
    params: int
    peak: int
    """Peak activation elements (:mod:`edgenas.costgraph` conventions)."""
    op_graph: OpGraph
    make_units: Callable[[], tuple[GraphUnit, ...]] = field(repr=False)

    @cached_property
    def units(self) -> tuple[GraphUnit, ...]:
        """Latency units, cut out on first use: costing a member does not need them."""
        return self.make_units()


class BaseModel:
    """The source model for one task (see the module docstring)."""

    def __init__(self, model: nn.Module, source: Source, weights: str, resolution: int, importance: str,
                 hash_: str | None = None, importance_data: str = "") -> None:
        self.source, self.weights, self.resolution, self.importance = source, weights, resolution, importance
        self.importance_data = importance_data
        self.model = model.eval()
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            raise EdgenasError(f"--model {source}: no Conv2d layer; edgenas compresses convolutional image classifiers")
        self.fx = FxModel(model, (first.in_channels, resolution, resolution))
        self.stem, self.head = _stem_and_head(self.fx)
        stem = self.model.get_submodule(self.stem)
        head = self.model.get_submodule(self.head)
        self.in_channels = stem.in_channels
        self.num_classes = head.out_features if isinstance(head, nn.Linear) else head.out_channels
        self.input_shape = (self.in_channels, resolution, resolution)
        self.hash = hash_ or model_hash(model, self.fx.code, with_weights=bool(weights) or source.kind == "saved")
        self.pruned_from = fold_channel_shuffles(model, self.input_shape)
        """What Torch-Pruning prunes: the model, with its channel shuffles as layers (edgenas.compress.shuffle)."""
        if self.pruned_from is not model:
            self.fx.blocks = []  # a folded graph calls layers directly: dropping a block would need graph surgery
        self.groups = ChannelGroups(self.pruned_from, torch.zeros(1, *self.input_shape), self.head, importance,
                                    self._taylor_batches() if importance == "taylor" else None)
        self.base_channels = self.fx.base_channels()
        self.params = sum(p.numel() for p in model.parameters())
        self.variant = lru_cache(maxsize=512)(self._variant)

    @classmethod
    def load(cls, source: Source, weights: str, resolution: int, importance: str,
             importance_data: str = "") -> BaseModel:
        return cls(load_source(source, None, weights or None), source, weights, resolution, importance,
                   importance_data=importance_data)

    def _taylor_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """8 batches of 32 training examples of ``importance_data`` (seeded), shaped for the model; labels
        beyond the model's classes are refused (score on the data the model was trained for)."""
        from edgenas.datasets import adapt_images
        from edgenas.estimators.data import resolve_dataset

        ds = resolve_dataset(self.importance_data)
        if ds.num_classes > self.num_classes:
            raise EdgenasError(f"importance_data {self.importance_data!r} has {ds.num_classes} classes; the model "
                               f"has {self.num_classes}")
        idx = torch.as_tensor(ds.train_idx)[torch.randperm(len(ds.train_idx), generator=torch.Generator()
                                                            .manual_seed(0))[:256]]
        x = adapt_images(ds.x[idx], self.input_shape)
        return [(x[i:i + 32], ds.y[idx][i:i + 32]) for i in range(0, len(idx), 32)]

    def adapted(self, num_classes: int, in_channels: int) -> BaseModel:
        """This model with a new head for ``num_classes`` and a stem for ``in_channels`` (same hash); the new
        head's initialisation is seeded, so every process builds the same one."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = self._adapted_module(num_classes, in_channels)
        return BaseModel(model, self.source, self.weights, self.resolution, self.importance, self.hash,
                         self.importance_data)

    def _adapted_module(self, num_classes: int, in_channels: int) -> nn.Module:
        model = copy.deepcopy(self.model)
        head = model.get_submodule(self.head)
        if num_classes != self.num_classes:
            if isinstance(head, nn.Linear):
                new: nn.Module = nn.Linear(head.in_features, num_classes, bias=head.bias is not None)
            else:
                new = nn.Conv2d(head.in_channels, num_classes, head.kernel_size, head.stride, head.padding,
                                head.dilation, head.groups, head.bias is not None)
            _set(model, self.head, new)
        if in_channels != self.in_channels:
            stem = model.get_submodule(self.stem)
            conv = nn.Conv2d(in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding,
                             stem.dilation, stem.groups, stem.bias is not None, stem.padding_mode)
            with torch.no_grad():
                w = stem.weight
                if in_channels == 1:
                    conv.weight.copy_(w.sum(dim=1, keepdim=True))
                else:  # timm's adapt_input_conv: repeat the filters, rescale to keep the response
                    reps = -(-in_channels // w.shape[1])
                    conv.weight.copy_(w.repeat(1, reps, 1, 1)[:, :in_channels] * (w.shape[1] / in_channels))
                if stem.bias is not None:
                    conv.bias.copy_(stem.bias)
            _set(model, self.stem, conv)
        return model

    # -- a variant, analytically ----------------------------------------------------------
    def _variant(self, keep: tuple[int, ...], dropped: tuple[Block, ...], resolution: int | None = None) -> Variant:
        channels = self.groups.out_channels(dict(enumerate(keep)), self.base_channels)
        env = self.fx.shapes(channels, dropped, resolution)
        gm = self.fx.gm
        skip = {n for b in dropped for n in b.nodes}
        replace = {b.output: b.input for b in dropped}
        for b in dropped:
            skip.discard(b.output)

        def kind_of(node: torch.fx.Node) -> tuple:
            kind = _kind(gm, node)
            if kind[0] == "conv" and is_depthwise(gm.get_submodule(str(node.target))):
                kind = (*kind[:4], int(env[node.args[0]].shape[1]), *kind[5:])
            return kind

        ids: dict[torch.fx.Node, int] = {}
        graph = fx_opgraph(gm, lambda n: _shape(env.get(n)), kind_of, replace, skip, env_out=ids)
        kept = [n for n in self.fx.nodes
                if n not in skip and n not in replace and n.op not in ("placeholder", "output")]
        macs, params, seen = 0, 0, set()
        entries: dict[torch.fx.Node, tuple] = {}
        for n in kept:
            if n.op != "call_module":
                continue
            mod = gm.get_submodule(str(n.target))
            x, y = env[n.args[0]], env[n]
            cin = int(x.shape[1] if isinstance(mod, (nn.Conv2d, nn.BatchNorm2d)) else x.shape[-1])
            cout = int(y.shape[1] if isinstance(mod, (nn.Conv2d, nn.BatchNorm2d)) else y.shape[-1])
            entries[n] = module_entry(mod, cin, cout)
            m, p = entry_cost(entries[n], tuple(y.shape[1:]))
            macs += m
            if str(n.target) not in seen:
                seen.add(str(n.target))
                params += p
        return Variant(macs, params, graph.peak_act_elems(), graph,
                       partial(_units, self.fx, self._labels, kept, env, entries, graph, ids, replace))

    # -- a variant, for real -----------------------------------------------------------------
    def build(self, keep: tuple[int, ...], dropped: tuple[Block, ...]) -> nn.Module:
        """The variant as a module: a copy of the source, pruned by Torch-Pruning, dropped blocks replaced
        by ``nn.Identity`` (in a lifted torch.export program, whose graph calls the layers directly, the
        block's output is rewired to its input); the kept channels hold the source's weights."""
        model = copy.deepcopy(self.pruned_from)
        self.groups.prune(model, dict(enumerate(keep)))
        if dropped and is_lifted(model):
            nodes = {n.name: n for n in model.graph.nodes}  # a copy of the graph self.fx analysed: same names
            into = {b.output.name: b.input.name for b in dropped}
            for b in dropped:
                source = b.input.name
                while source in into:  # the block before was dropped too
                    source = into[source]
                nodes[b.output.name].replace_all_uses_with(nodes[source])
            model.graph.eliminate_dead_code()
            model.delete_all_unused_submodules()
            model.recompile()
            return model
        for b in dropped:
            _set(model, b.path, nn.Identity())
        return model

    # -- latency-table coverage -----------------------------------------------------------
    def covering_specs(self, space: ModelSpace) -> list[ModelSpec]:
        """Specs whose units include every unit of every spec: which groups each unit depends on is found
        by changing one group at a time; then specs are added greedily (the best of 32 seeded random
        candidates each time) until every combination of each unit's groups' choices appears."""
        from edgenas.compress.space import ModelSpec

        return _covering(self, space, ModelSpec)

    @cached_property
    def _labels(self) -> dict[torch.fx.Node, str]:
        return _region_labels(self.fx)


def _covering(base: BaseModel, space: ModelSpace, spec_type: type) -> list[Any]:
    choices = space._choices()
    full = tuple(c[-1] for c in choices)
    blocks = tuple(True for _ in range(space._n_blocks()))

    res = space.resolutions[-1]
    ref = [u.key for u in base.variant(full, (), res).units]
    deps: list[set[int]] = [set() for _ in ref]
    for j, c in enumerate(choices):
        if len(c) == 1:
            continue
        probe = list(full)
        probe[j] = c[0]
        for r, key in enumerate(u.key for u in base.variant(tuple(probe), (), res).units):
            if key != ref[r]:
                deps[r].add(j)
    needed = {(r, combo) for r, d in enumerate(deps) for combo in _product(sorted(d), choices)}
    rng = random.Random(0)
    specs = []
    while needed:
        best, best_cov = None, -1
        for _ in range(32):
            cand = tuple(rng.choice(c) for c in choices)
            cov = sum(1 for r, d in enumerate(deps) if (r, tuple(cand[j] for j in sorted(d))) in needed)
            if cov > best_cov:
                best, best_cov = cand, cov
        if best_cov == 0:  # random candidates miss the rest: take one needed combination directly
            r, combo = next(iter(needed))
            best = tuple(combo[sorted(deps[r]).index(j)] if j in deps[r] else full[j] for j in range(len(choices)))
        assert best is not None
        needed -= {(r, tuple(best[j] for j in sorted(d))) for r, d in enumerate(deps)}
        specs.append(best)
    specs = specs or [full]
    # a unit's shapes scale with the input side, its dependence on the groups does not: every resolution
    return [spec_type(base.hash, r, keep, blocks) for r in space.resolutions for keep in specs]


def _product(deps: list[int], choices: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Every combination of the choices of the groups ``deps``."""
    import itertools

    return list(itertools.product(*[choices[j] for j in deps]))


# -- regions -> units --------------------------------------------------------------------------
def _region_labels(fx: FxModel) -> dict[torch.fx.Node, str]:
    """Each node's region: the first module on its path (from the model down) that is not a container
    (``Sequential``, ``ModuleList``, ``ModuleDict``); the model's own functional ops are regions of their own."""
    labels: dict[torch.fx.Node, str] = {}
    for i, n in enumerate(fx.nodes):
        path = str(n.target) if n.op == "call_module" else n.meta.get(PATH_KEY, "")
        if not path:
            labels[n] = f"#{i}"
            continue
        parts = path.split(".")
        label = path
        for k in range(1, len(parts) + 1):
            prefix = ".".join(parts[:k])
            if not isinstance(fx.model.get_submodule(prefix), (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
                label = prefix
                break
        labels[n] = label
    return labels


_FUSING = (nn.BatchNorm2d, *ACTIVATION_MODULES, nn.Dropout)
_VIEWS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "size"}


def _is_fusing(fx: FxModel, n: torch.fx.Node) -> bool:
    return n.op == "call_module" and isinstance(fx.gm.get_submodule(str(n.target)), _FUSING)


def _is_view(fx: FxModel, n: torch.fx.Node) -> bool:
    if n.op == "call_module":
        return isinstance(fx.gm.get_submodule(str(n.target)), (nn.Flatten, nn.Identity, nn.Dropout))
    if n.op == "call_method":
        return str(n.target) in _VIEWS
    return n.op == "call_function" and n.target in (torch.flatten, torch.reshape)


def _units(fx: FxModel, labels: dict[torch.fx.Node, str], kept: list[torch.fx.Node], env: dict, entries: dict,
           graph: OpGraph, ids: dict[torch.fx.Node, int],
           replace: dict[torch.fx.Node, torch.fx.Node]) -> tuple[GraphUnit, ...]:
    regions: list[list[torch.fx.Node]] = []
    for n in kept:
        if regions and labels[regions[-1][-1]] == labels[n]:
            regions[-1].append(n)
        else:
            regions.append([n])

    def source(a: torch.fx.Node) -> torch.fx.Node:
        while a in replace:
            a = replace[a]
        return a

    def ext_inputs(reg: list[torch.fx.Node]) -> set[torch.fx.Node]:
        inside = set(reg)
        return {source(a) for n in reg for a in n.all_input_nodes if source(a) not in inside and a.op != "get_attr"
                and isinstance(env.get(source(a)), torch.Tensor)}

    position = {n: i for i, n in enumerate(kept)}

    def outputs(reg: list[torch.fx.Node]) -> list[torch.fx.Node]:
        inside = set(reg)
        outs = []
        for n in reg:
            readers = set(n.users)
            # a dropped block's output reads as its input: follow the replacement
            for out in replace:
                if source(out) is n:
                    readers.update(out.users)
            if any(r not in inside and (r.op == "output" or r in position) for r in readers):
                outs.append(n)
        return outs

    changed = True
    while changed:
        changed = False
        for i, reg in enumerate(regions):
            prev_ok = i > 0
            next_ok = i + 1 < len(regions)
            x = ext_inputs(reg)
            rule_prev = prev_ok and ((all(_is_fusing(fx, n) or _is_view(fx, n) for n in reg)
                                     and not all(_is_view(fx, n) for n in reg))
                                     or len(x) != 1
                                     or any(len(env[a].shape) != 4 for a in x))
            rule_next = next_ok and (all(_is_view(fx, n) for n in reg) or len(outputs(reg)) != 1)
            if rule_prev:
                regions[i - 1].extend(reg)
                del regions[i]
                changed = True
                break
            if rule_next:
                regions[i + 1][:0] = reg
                del regions[i]
                changed = True
                break
    out_id = {t: i for i, (_, _, t) in enumerate(graph.ops)}
    units = []
    for reg in regions:
        (x,) = ext_inputs(reg)
        (y,) = outputs(reg)
        xs = env[x].shape
        if len(xs) != 4 or xs[2] != xs[3]:
            raise EdgenasError(f"unit {reg[0].name}: input of shape {tuple(xs)}; units need square image inputs")
        local = {x: 0}
        program, modules = [], []
        for n in reg:
            for a in n.all_input_nodes:
                if source(a) is not a and source(a) in local:
                    local[a] = local[source(a)]
            if n.op == "call_module":
                modules.append(entries[n])
                program.append(("mod", len(modules) - 1, arg_template(n.args, local), arg_template(n.kwargs, local)))
            elif n.op == "call_function":
                program.append(("fn", n.target, arg_template(n.args, local), arg_template(n.kwargs, local)))
            elif n.op == "call_method":
                program.append(("method", str(n.target), arg_template(n.args, local), arg_template(n.kwargs, local)))
            else:
                raise EdgenasError(f"unit {reg[0].name}: {n.op} nodes are not supported inside a unit")
            local[n] = len(program)
        if reg[-1] is not y:
            program.append(("fn", _identity, (("$", local[y]),), ()))
        # the region's ops in the analytic graph, inputs renumbered
        tid = {ids[x]: 0}
        ops = []
        for n in reg:
            t = ids.get(n)
            if t is None or t not in out_id or t in tid:
                continue
            mode, inputs, _ = graph.ops[out_id[t]]
            ops.append((mode, tuple(tid[i] for i in inputs), graph.shapes[t], graph.kinds[out_id[t]]))
            tid[t] = len(ops)
        if ids.get(y) is not None and tid.get(ids[y]) != len(ops):
            ops.append((ALIAS, (tid[ids[y]],), graph.shapes[ids[y]], ("view",)))
        macs = sum(entry_cost(entries[n], tuple(env[n].shape[1:]))[0] for n in reg if n in entries)
        params = sum(entry_cost(entries[n], tuple(env[n].shape[1:]))[1]
                     for n in {str(m.target): m for m in reg if m in entries}.values())
        ys = env[y].shape
        units.append(GraphUnit(int(xs[1]), int(xs[2]), int(ys[1]) if len(ys) == 4 else int(ys[-1]),
                               int(ys[2]) if len(ys) == 4 else 0, _summary(graph, ops), tuple(program),
                               tuple(modules), tuple(ops), macs, params))
    return tuple(units)


def _identity(x: Any) -> Any:
    return x


def _summary(graph: OpGraph, ops: list) -> str:
    words = []
    for _mode, _inputs, _shape, kind in ops:
        k0 = kind[0]
        if k0 == "conv":
            k, s, _p, g = kind[1:5]
            words.append(f"c{k}s{s}" + ("dw" if g > 1 else ""))
        elif k0 in ("act",):
            words.append(kind[1])
        elif k0 in ("bn", "view"):
            continue
        elif k0 == "pool":
            words.append(f"{kind[1]}pool{kind[2]}")
        else:
            words.append({"linear": "fc", "copy": "shuffle"}.get(k0, k0))
    text = ".".join(words) or "id"
    return text if len(text) <= 60 else text[:57] + "..."
