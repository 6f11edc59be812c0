"""Coupled channel groups of a source model (Torch-Pruning's dependency graph) and pruning by them.

What edgenas uses of Torch-Pruning (``torch-pruning``, the maintained library for structural pruning of
arbitrary PyTorch graphs): ``DependencyGraph`` to find which layers' channels are coupled (a residual
stream's convolutions, a depthwise conv and its neighbours, concatenations and splits), its group
importance (``GroupMagnitudeImportance``: L2 norm over every weight a channel touches, summed over the
group, or ``GroupTaylorImportance`` from gradients on training data) to order each group's channels, and
``Group.prune`` to cut the chosen channels out of a copy of the model, weights kept. The search space,
its canonical strings and the exact cost model are edgenas's: each group's importance order is fixed
once, so keeping ``k`` channels of a group always removes the same channels, and how many channels that
removes from every layer follows from Torch-Pruning's index mapping of the group (counted here without
pruning anything, see :meth:`ChannelGroups.out_channels`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edgenas.compress.shuffle import ChannelShuffle, set_opaque, shuffle_pruner
from edgenas.errors import EdgenasError
from edgenas.extras import require

IMPORTANCES = ("magnitude", "taylor")


@dataclass(frozen=True)
class ChannelGroup:
    """One group of coupled channels, pruned together."""

    root: str
    """Path of the layer whose output channels root the group (Torch-Pruning's root)."""
    size: int
    """Channels in the group (the root's output channels)."""
    order: tuple[int, ...]
    """The root's channel indices, least important first: keeping k removes ``order[:size - k]``."""
    outputs: tuple[tuple[str, np.ndarray], ...]
    """(Conv2d/Linear path, the rank in ``order`` of the root channel behind each of its output channels
    in the group, sorted): keeping k removes the entries below ``size - k``."""
    modules: frozenset[str]
    """Paths of every layer the group touches (to tell whether a removed block holds all of it)."""


def _tp():  # noqa: ANN202 - the module
    return require("torch_pruning", "deriving a search space from --model")


def _dependency_graph(model: nn.Module, example: torch.Tensor) -> Any:
    """Torch-Pruning's dependency graph of ``model``, channel shuffles as opaque layers."""
    set_opaque(model, True)
    try:
        return _tp().DependencyGraph().build_dependency(
            model, example_inputs=example, verbose=False, customized_pruners={ChannelShuffle: shuffle_pruner()})
    finally:
        set_opaque(model, False)


def _paths(model: nn.Module) -> dict[nn.Module, str]:
    return {m: name for name, m in model.named_modules()}


class ChannelGroups:
    """Every prunable group of ``model`` (its classifier ``head`` left whole)."""

    def __init__(self, model: nn.Module, example: torch.Tensor, head: str, importance: str = "magnitude",
                 taylor_batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        if importance not in IMPORTANCES:
            raise EdgenasError(f"importance {importance!r} is not one of {', '.join(IMPORTANCES)}")
        self.example = example
        self.head = head
        model = copy.deepcopy(model)
        names = _paths(model)
        tp = _tp()
        dg = _dependency_graph(model, example)
        if importance == "taylor":
            if taylor_batches is None:
                raise EdgenasError("importance=taylor needs training data (gradients of the loss); use magnitude "
                                   "without a dataset")
            model.zero_grad()
            for x, y in taylor_batches:
                nn.functional.cross_entropy(model(x), y).backward()
            scorer = tp.importance.GroupTaylorImportance()
        else:
            scorer = tp.importance.GroupMagnitudeImportance(p=2)
        head_module = dict(model.named_modules())[head]
        groups: list[ChannelGroup] = []
        for group in dg.get_all_groups(ignored_layers=[head_module], root_module_types=(nn.Conv2d, nn.Linear)):
            root_dep, root_idxs = group[0]
            root = names[root_dep.target.module]
            size = len(root_idxs)
            if size < 2:
                continue
            mods = [item.dep.target.module for item in group]
            if any(isinstance(m, ChannelShuffle) or (isinstance(m, nn.Conv2d) and 1 < m.groups != m.out_channels)
                   for m in mods):
                continue  # channels reaching a shuffle (edgenas.compress.shuffle) or a grouped, not depthwise,
                # conv (its group count would have to change) stay whole
            with torch.no_grad():
                scores = scorer(group)
            if scores is None:  # nothing to score (e.g. only unwrapped parameters)
                continue
            order = [int(i) for i in torch.argsort(scores.float().cpu(), stable=True)]
            rank = np.empty(size, dtype=np.int64)
            rank[np.asarray([int(root_idxs[i]) for i in order])] = np.arange(size)
            outputs: list[tuple[str, np.ndarray]] = []
            touched: set[str] = set()
            for item in group:
                mod = item.dep.target.module
                if not isinstance(mod, nn.Module) or mod not in names:  # Torch-Pruning's own op nodes
                    continue
                touched.add(names[mod])
                if dg.is_out_channel_pruning_fn(item.dep.handler) and isinstance(mod, (nn.Conv2d, nn.Linear)):
                    ranks = np.sort(rank[np.asarray(item.root_idxs, dtype=np.int64)])
                    outputs.append((names[mod], ranks))
            groups.append(ChannelGroup(root, size, tuple(int(root_idxs[i]) for i in order), tuple(outputs),
                                       frozenset(touched)))
        self.groups = groups

    def out_channels(self, kept: dict[int, int], base: dict[str, int]) -> dict[str, int]:
        """Output channels of every Conv2d/Linear when group ``i`` keeps ``kept[i]`` channels (groups
        not named keep all): the base count less, for each group, its entries ranked below the cut."""
        out = dict(base)
        for i, k in kept.items():
            g = self.groups[i]
            cut = g.size - k
            if cut <= 0:
                continue
            for path, ranks in g.outputs:
                out[path] -= int(np.searchsorted(ranks, cut, side="left"))
        return out

    def prune(self, model: nn.Module, kept: dict[int, int]) -> nn.Module:
        """``model`` (a copy of the source) with group ``i`` cut to its ``kept[i]`` most important channels,
        in place; weights of the kept channels are the source's."""
        todo = {i: k for i, k in kept.items() if k < self.groups[i].size}
        if not todo:
            return model
        dg = _dependency_graph(model, self.example)
        modules = dict(model.named_modules())
        for i, k in sorted(todo.items()):
            g = self.groups[i]
            root = modules[g.root]
            fn: Callable = dg.get_pruner_of_module(root).prune_out_channels
            group = dg.get_pruning_group(root, fn, list(g.order[: g.size - k]))
            group.prune(record_history=False)
        return model
