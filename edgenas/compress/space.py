"""``model``: the search space derived from a model the user already has (``--model``).

A member keeps, for every group of coupled channels Torch-Pruning finds in the source model, some of its
channels (by default 25/50/75/100% of them, rounded to multiples of ``divisor``), and may drop residual
blocks (replaced by the identity). Its canonical string names the source model by hash, the input
resolution, the channels each group keeps and the blocks kept::

    model:3fa9c2b1d0e4:r224:k16-8-96-24-...:b1101111

(``b`` only when the model has removable blocks; a group whose every layer sits in a dropped block is
written at full size, so one network has one string). The exact cost model propagates shapes through
the source's FX graph with pruned channel counts (:mod:`edgenas.compress.graph`), without building the
pruned network; :meth:`ModelSpace.build` cuts the source's own weights with Torch-Pruning
(:mod:`edgenas.compress.prune`), so the ``train`` / ``prune-finetune`` estimators and the exporters start
from them. Latency units are the pruned model's blocks (:mod:`edgenas.compress.units`).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

from edgenas.errors import ArchParseError, EdgenasError
from edgenas.spaces import register_space
from edgenas.spaces.base import ArchSpec, CostReport, SearchSpace, Task

if TYPE_CHECKING:
    import optuna
    import torch.nn as nn

    from edgenas.compress.base import BaseModel
    from edgenas.layers import Layer

DEFAULT_KEEP = (0.25, 0.5, 0.75, 1.0)
NO_SOURCE = ("space 'model' needs the model to compress: --model torchvision:NAME, --model path/file.py:build_fn "
             "or --model model.pt / model.pt2 (in a job file: [space] name = \"model\", options.model = ...)")
_BODY_RE = re.compile(r"(?P<hash>[0-9a-f]{12}):r(?P<r>\d+):k(?P<keep>\d+(?:-\d+)*)?(?::b(?P<blocks>[01]+))?")


@dataclass(frozen=True)
class ModelSpec(ArchSpec):
    """Source hash, resolution, channels kept per group (group order) and which blocks stay (1) or go (0)."""

    space = "model"
    source: str
    r: int
    keep: tuple[int, ...]
    blocks: tuple[bool, ...] = ()

    def body(self) -> str:
        text = f"{self.source}:r{self.r}:k{'-'.join(map(str, self.keep))}"
        return text + (":b" + "".join("1" if b else "0" for b in self.blocks) if self.blocks else "")

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "r": self.r, "keep": list(self.keep), "blocks": [int(b) for b in self.blocks]}


def kept_counts(size: int, ratios: Sequence[float], divisor: int) -> tuple[int, ...]:
    """The distinct channel counts a group of ``size`` may keep: each ratio's share rounded to a multiple
    of ``divisor`` (at least ``divisor``, at most ``size``); a group no larger than ``divisor`` stays whole."""
    if size <= divisor:
        return (size,)
    out = {min(size, max(divisor, round(size * r / divisor) * divisor)) for r in ratios}
    return tuple(sorted(out | ({size} if 1.0 in ratios else set())))


@register_space
class ModelSpace(SearchSpace):
    name = "model"
    summary = "channels (per coupled group) and residual blocks of a model you have (--model)"
    default_classes = 1000
    default_resolution = 224

    def __init__(self, model: str = "", weights: str = "", resolution: int = 224, resolutions: Sequence[int] = (),
                 keep: Sequence[float] = DEFAULT_KEEP, divisor: int = 8, blocks: bool = True,
                 importance: str = "magnitude", importance_data: str = "") -> None:
        """``model``: the source (``torchvision:NAME``, ``file.py:build_fn``, ``model.pt``, ``model.pt2``);
        ``weights``: a state dict for it; ``resolution``: input side in pixels; ``resolutions``: input sides to search
        instead (the model is traced at ``resolution``); ``keep``: channel ratios each group may
        keep; ``divisor``: kept channels are multiples of it; ``blocks``: search residual-block removal;
        ``importance``: channel order within a group (``magnitude``: L2 norm over the group's weights;
        ``taylor``: first-order Taylor scores from the loss gradients on 256 training examples of the
        dataset ``importance_data``, e.g. ``digits``)."""
        from edgenas.compress.prune import IMPORTANCES

        keep = tuple(sorted({float(k) for k in keep}))
        if not keep or any(not 0 < k <= 1 for k in keep):
            raise EdgenasError(f"space 'model': keep ratios must be in (0, 1], got {list(keep)}")
        if not isinstance(divisor, int) or divisor < 1:
            raise EdgenasError(f"space 'model': divisor must be a positive integer, got {divisor!r}")
        if not isinstance(resolution, int) or resolution < 8:
            raise EdgenasError(f"space 'model': resolution must be an integer >= 8, got {resolution!r}")
        if importance not in IMPORTANCES:
            raise EdgenasError(f"space 'model': importance must be one of {', '.join(IMPORTANCES)}, got {importance!r}")
        if (importance == "taylor") != bool(importance_data):
            raise EdgenasError("space 'model': importance=taylor needs importance_data=DATASET (the examples whose "
                               "loss gradients score the channels), and importance_data needs importance=taylor")
        self.source_text = str(model)
        self.weights = str(weights) if weights else ""
        self.keep_ratios = keep
        self.divisor = divisor
        self.search_blocks = bool(blocks)
        self.importance = importance
        self.importance_data = str(importance_data)
        self.default_resolution = resolution
        res = tuple(sorted({int(r) for r in resolutions})) or (resolution,)
        if any(r < 8 for r in res):
            raise EdgenasError(f"space 'model': resolutions must be integers >= 8, got {list(resolutions)}")
        self.resolutions = res
        """The searched input sides (one unless ``resolutions`` is given)."""
        self._bases: dict[tuple[int, int], BaseModel] = {}
        self._kept_counts: list[tuple[int, ...]] | None = None
        self._default: BaseModel | None = None
        if self.source_text:
            from edgenas.compress.source import parse_source

            self.source = parse_source(self.source_text)
            self.default_classes = self.base().num_classes

    # -- the source ------------------------------------------------------------------------
    def base(self, task: Task | None = None) -> BaseModel:
        """The source model adapted to ``task`` (class count, input channels), traced and grouped."""
        if not self.source_text:
            raise EdgenasError(NO_SOURCE)
        if self._default is None:
            self._default = _load_base(self.source, self.weights, self.default_resolution, self.importance,
                                       self.importance_data,
                                       _stamp(self.source.target if self.source.kind != "torchvision" else ""),
                                       _stamp(self.weights))
        if task is None:
            return self._default
        key = (task.num_classes or self._default.num_classes, task.in_channels)
        if key == (self._default.num_classes, self._default.in_channels):
            return self._default
        if key not in self._bases:
            self._bases[key] = self._default.adapted(*key)
        return self._bases[key]

    @property
    def source_hash(self) -> str:
        return self.base().hash

    def _choices(self) -> list[tuple[int, ...]]:
        """Per group, the channel counts it may keep (the same for every task: the head is never a group)."""
        if self._kept_counts is None:
            self._kept_counts = [kept_counts(g.size, self.keep_ratios, self.divisor) for g in self.base().groups.groups]
        return self._kept_counts

    def _n_blocks(self) -> int:
        return len(self.base().fx.blocks) if self.search_blocks else 0

    # -- naming ------------------------------------------------------------------------------
    def parse_body(self, text: str) -> ModelSpec:
        m = _BODY_RE.fullmatch(text.strip())
        if m is None:
            raise ArchParseError(f"model arch {text[:60]!r} is not "
                                 f"'<hash>:r<res>:k<kept>-<kept>-...[:b<0/1 per block>]'")
        spec = ModelSpec(m["hash"], int(m["r"]), tuple(int(k) for k in (m["keep"] or "").split("-") if k),
                         tuple(c == "1" for c in (m["blocks"] or "")))
        return self._check(spec)

    def from_json(self, obj: dict[str, Any]) -> ModelSpec:
        try:
            spec = ModelSpec(str(obj["source"]), int(obj["r"]), tuple(int(k) for k in obj["keep"]),
                             tuple(bool(b) for b in obj.get("blocks", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchParseError(f"model arch JSON needs source, r, keep (and blocks): {exc}") from None
        return self._check(spec)

    def _check(self, spec: ModelSpec) -> ModelSpec:
        if not self.source_text:
            return spec  # no source to check against: the syntax is all that can be checked
        if spec.source != self.source_hash:
            raise ArchParseError(f"model arch is of source model {spec.source}, not of --model {self.source_text} "
                                 f"({self.source_hash})")
        if spec.r not in self.resolutions:
            raise ArchParseError(f"model arch has resolution {spec.r}; this space searches "
                                 f"{', '.join(map(str, self.resolutions))} (pass --space-opt resolution={spec.r})")
        choices = self._choices()
        if len(spec.keep) != len(choices):
            raise ArchParseError(f"model arch keeps {len(spec.keep)} channel groups; {self.source_text} has "
                                 f"{len(choices)}")
        for i, (k, allowed) in enumerate(zip(spec.keep, choices)):
            if k not in allowed:
                raise ArchParseError(f"model arch: group {i} ({self.base().groups.groups[i].root}) keeps {k} "
                                     f"channels; allowed {{{', '.join(map(str, allowed))}}}")
        if len(spec.blocks) != self._n_blocks():
            raise ArchParseError(f"model arch has {len(spec.blocks)} block bits; the space searches "
                                 f"{self._n_blocks()} removable blocks")
        if self._normal(spec) != spec:
            raise ArchParseError("model arch names a channel count for a group inside a dropped block; write "
                                 "that group at full size")
        return spec

    def _inactive(self, blocks: tuple[bool, ...]) -> set[int]:
        """Groups every layer of which sits in a dropped block (their choice does not matter)."""
        from edgenas.compress.graph import inside

        base = self.base()
        dropped = [b.path for b, keep in zip(base.fx.blocks, blocks) if not keep]
        if not dropped:
            return set()
        return {i for i, g in enumerate(base.groups.groups)
                if all(any(inside(m, d) for d in dropped) for m in g.modules)}

    def _normal(self, spec: ModelSpec) -> ModelSpec:
        off = self._inactive(spec.blocks)
        if not off:
            return spec
        sizes = [g.size for g in self.base().groups.groups]
        return ModelSpec(spec.source, spec.r, tuple(sizes[i] if i in off else k for i, k in enumerate(spec.keep)),
                         spec.blocks)

    # -- sampling ----------------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial) -> ModelSpec:
        r = int(trial.suggest_categorical("r", list(self.resolutions))) if len(self.resolutions) > 1 \
            else self.resolutions[0]
        blocks = tuple(bool(trial.suggest_categorical(f"block{i}", [1, 0])) for i in range(self._n_blocks()))
        off = self._inactive(blocks)
        keep = []
        for i, (choice, g) in enumerate(zip(self._choices(), self.base().groups.groups)):
            if i in off or len(choice) == 1:
                keep.append(g.size if i in off else choice[0])
            else:
                keep.append(int(trial.suggest_categorical(f"g{i}", list(choice))))
        return ModelSpec(self.source_hash, r, tuple(keep), blocks)

    def trial_params(self, spec: ArchSpec) -> dict[str, Any]:
        assert isinstance(spec, ModelSpec)
        params: dict[str, Any] = {"r": spec.r} if len(self.resolutions) > 1 else {}
        params.update({f"block{i}": int(b) for i, b in enumerate(spec.blocks)})
        off = self._inactive(spec.blocks)
        for i, (choice, k) in enumerate(zip(self._choices(), spec.keep)):
            if i not in off and len(choice) > 1:
                params[f"g{i}"] = k
        return params

    def random(self, rng: random.Random) -> ModelSpec:
        r = rng.choice(self.resolutions) if len(self.resolutions) > 1 else self.resolutions[0]
        blocks = tuple(rng.random() < 0.5 for _ in range(self._n_blocks()))
        keep = tuple(rng.choice(c) for c in self._choices())
        return self._normal(ModelSpec(self.source_hash, r, keep, blocks))

    def size(self) -> int:
        if not self.source_text:
            return 0
        return (math.prod(len(c) for c in self._choices()) * 2 ** self._n_blocks()  # upper bound (dropped groups)
                * len(self.resolutions))

    def choices(self) -> dict[str, str]:
        ratios = "{" + ", ".join(f"{k:g}" for k in self.keep_ratios) + "}"
        if not self.source_text:
            return {"source": "--model torchvision:NAME | file.py:build_fn | model.pt | model.pt2",
                    "groups": f"keep ratio {ratios} of each coupled-channel group (multiples of {self.divisor})",
                    "blocks": "keep or drop each residual block"}
        base = self.base()
        varied = sum(len(c) > 1 for c in self._choices())
        return {"source": f"{self.source_text} ({base.hash}, {base.params:,} params)",
                "resolution": ", ".join(map(str, self.resolutions)),
                "groups": f"{varied} of {len(base.groups.groups)} coupled-channel groups keep {ratios} of their "
                          f"channels (multiples of {self.divisor})",
                "blocks": f"{self._n_blocks()} removable residual blocks" if self.search_blocks else "not searched"}

    # -- structure ---------------------------------------------------------------------------
    def encode(self, spec: ArchSpec) -> list[float]:
        assert isinstance(spec, ModelSpec)
        sizes = [g.size for g in self.base().groups.groups]
        r = [spec.r / self.resolutions[-1]] if len(self.resolutions) > 1 else []
        return r + [k / s for k, s in zip(spec.keep, sizes)] + [float(b) for b in spec.blocks]

    def encoding_size(self) -> int:
        if not self.source_text:
            return 0
        return len(self.base().groups.groups) + self._n_blocks() + (len(self.resolutions) > 1)

    def input_shape(self, spec: ArchSpec, task: Task | None = None) -> tuple[int, int, int]:
        assert isinstance(spec, ModelSpec)
        return (self.base(task).in_channels, spec.r, spec.r)

    def _variant(self, spec: ArchSpec, task: Task | None) -> Any:
        assert isinstance(spec, ModelSpec)
        if spec.source != self.source_hash:
            raise EdgenasError(f"arch {spec} is of source model {spec.source}, not {self.source_text}")
        dropped = tuple(b for b, k in zip(self.base(task).fx.blocks, spec.blocks) if not k) if spec.blocks else ()
        return self.base(task).variant(spec.keep, dropped, spec.r)

    def layers(self, spec: ArchSpec, task: Task | None = None) -> list[Layer]:
        return list(self._variant(spec, task).units)

    def units(self, spec: ArchSpec, task: Task | None = None) -> list[Layer]:
        return self.layers(spec, task)

    def cost(self, spec: ArchSpec, task: Task | None = None) -> CostReport:
        v = self._variant(spec, task)
        return CostReport(arch=str(spec), macs=v.macs, params=v.params, peak_ram_bytes_fp32=4 * v.peak,
                          peak_ram_bytes_int8=v.peak, deployed_graph=partial(_lowered, v.op_graph),
                          num_classes=self.base(task).num_classes, in_channels=self.base(task).in_channels)

    def build(self, spec: ArchSpec, task: Task | None = None) -> nn.Module:
        """The pruned source model with the source's weights for the kept channels (train mode)."""
        assert isinstance(spec, ModelSpec)
        base = self.base(task)
        dropped = tuple(b for b, k in zip(base.fx.blocks, spec.blocks) if not k) if spec.blocks else ()
        return base.build(spec.keep, dropped).train()

    def covering_specs(self) -> list[ArchSpec]:
        return self.base().covering_specs(self)

    inherits_weights = True
    """``build`` starts from the source's weights (what ``prune-finetune`` requires)."""

    @property
    def trained_weights(self) -> bool:
        """Whether the source's weights were trained (a saved module or given weights), not a builder's
        random initialisation: the export fine-tunes trained weights at a tenth of the training rate and
        trains random ones at the full rate."""
        return bool(self.weights) or self.source.kind == "saved"

    def describe_source(self) -> dict[str, Any]:
        """What the model card says about where a member came from."""
        base = self.base()
        weights = self.weights or {"saved": "saved with the module", "python": "the builder's",
                                   "torchvision": "random (torchvision's initialisation; nothing is downloaded)"
                                   }[self.source.kind]
        return {"model": self.source_text, "weights": weights,
                "hash": base.hash, "params": base.params, "groups": [g.root for g in base.groups.groups],
                "blocks": [b.path for b in base.fx.blocks] if self.search_blocks else []}

    def kept_channels(self, spec: ModelSpec) -> dict[str, str]:
        """Per group root: kept / total channels, and the dropped blocks (for cards)."""
        base = self.base()
        out = {g.root: f"{k}/{g.size}" for g, k in zip(base.groups.groups, spec.keep)}
        for b, k in zip(base.fx.blocks, spec.blocks):
            if not k:
                out[b.path] = "dropped"
        return out


def _stamp(path: str) -> tuple[float, int]:
    """A file's modification time and size (a changed file is loaded again)."""
    import os

    if not path:
        return (0.0, 0)
    st = os.stat(path)
    return (st.st_mtime, st.st_size)


@lru_cache(maxsize=8)
def _load_base(source: Any, weights: str, resolution: int, importance: str, data: str,
               *stamps: tuple[float, int]) -> BaseModel:
    """Source models are loaded, traced and grouped once per process (several spaces share them)."""
    from edgenas.compress.base import BaseModel

    return BaseModel.load(source, weights, resolution, importance, data)


def _lowered(graph: Any, with_ops: bool = True) -> Any:
    from edgenas.deployed import lower

    return lower(graph)

