"""Elastic MobileNetV3 block family shared by ``mbv3`` (Once-for-All) and ``tiny`` (MCU-class).

A member is: a width multiplier, an input resolution, and per stage a depth and per active block a
kernel size and expand ratio. Canonical string (timm-like tokens, stages separated by ``_``)::

    mbv3:w1.2:r192:k5e3-k3e3_k5e4-k3e4_k7e6-k7e3-k3e4_k5e4-k5e4-k7e4-k3e3_k3e6-k3e6-k5e6
"""

from __future__ import annotations

import itertools
import random
import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

from edgenas.errors import ArchParseError
from edgenas.layers import ConvLayer, GlobalPoolLayer, Layer, LinearLayer, MBConvLayer, spatial_out
from edgenas.spaces.base import ArchSpec, SearchSpace, Task, choice_error

if TYPE_CHECKING:
    import optuna

Block = tuple[int, int]  # (kernel, expand ratio)


@lru_cache(maxsize=4096)
def make_divisible(v: float, divisor: int = 8, min_val: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` (TF/OFA rule: never drop below 90%)."""
    min_val = divisor if min_val is None else min_val
    new_v = max(min_val, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def format_width(w: float) -> str:
    return f"{w:.2f}".rstrip("0").rstrip(".") if w != int(w) else f"{w:.1f}"


@dataclass(frozen=True)
class ElasticSpec(ArchSpec):
    """Width multiplier ``w``, resolution ``r`` and per stage the (kernel, expand) of active blocks."""

    w: float
    r: int
    stages: tuple[tuple[Block, ...], ...]

    def body(self) -> str:
        stages = "_".join("-".join(f"k{k}e{e}" for k, e in blocks) for blocks in self.stages)
        return f"w{format_width(self.w)}:r{self.r}:{stages}"

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(b) for b in self.stages)


@dataclass(frozen=True)
class ElasticLayout:
    """Base (w = 1.0) channel plan of an elastic space; widths scale by ``make_divisible(c * w, 8)``."""

    stem: int
    first_block: int
    widths: tuple[int, ...]
    strides: tuple[int, ...]
    acts: tuple[str, ...]
    se: tuple[bool, ...]
    final_expand: int
    feature_mix: int | None
    stem_act: str
    head_act: str
    first_act: str = "relu"


_BLOCK_RE = re.compile(r"k(\d+)e(\d+)")


class ElasticSpace(SearchSpace):
    """Shared implementation; subclasses set the layout and the choice sets."""

    spec_type: ClassVar[type[ElasticSpec]]
    layout: ClassVar[ElasticLayout]
    kernels: ClassVar[tuple[int, ...]] = (3, 5, 7)
    expands: ClassVar[tuple[int, ...]] = (3, 4, 6)
    depth_choices: ClassVar[tuple[int, ...]] = (2, 3, 4)
    width_choices: ClassVar[tuple[float, ...]]
    resolution_limits: ClassVar[tuple[int, int]]  # what describe/build accept
    stage_depths: ClassVar[tuple[tuple[int, ...], ...] | None] = None  # per-stage override of depth_choices
    first_block_kernel: ClassVar[int] = 3

    def __init__(
        self,
        widths: float | tuple[float, ...] | list[float] | None = None,
        resolutions: int | tuple[int, ...] | list[int] | None = None,
        kernels: int | tuple[int, ...] | list[int] | None = None,
        expands: int | tuple[int, ...] | list[int] | None = None,
        depths: int | tuple[int, ...] | list[int] | None = None,
    ) -> None:
        """``widths`` and ``resolutions``: what the search samples (any width choice and any resolution
        in ``resolution_limits`` still parse). ``kernels``, ``expands``, ``depths``: a subset of the
        space's block choices, as OFA's ``ks_list`` / ``expand_ratio_list`` / ``depth_list`` restrict its
        supernet (e.g. ``kernels=[3, 5]`` on a runtime whose 7x7 depthwise kernel is slow); members
        outside them are not members of this space (they do not parse). A stage with one fixed depth keeps
        it. Encodings keep the full choice sets, so they compare across restricted spaces."""
        if isinstance(widths, (int, float)):
            widths = [widths]
        if isinstance(resolutions, int):
            resolutions = [resolutions]
        given = {"widths": widths, "resolutions": resolutions, "kernels": kernels, "expands": expands,
                 "depths": depths}
        for what, value in given.items():
            if isinstance(value, (list, tuple)) and len(value) == 0:
                raise ArchParseError(f"{self.name}: {what} is empty; give at least one value or leave it out "
                                     f"for the default")
        self.widths = tuple(float(w) for w in (widths or self.default_widths()))
        for w in self.widths:
            if w not in self.width_choices:
                raise choice_error(self.name, "width", w, self.width_choices, f"w{w}")
        self.resolutions = tuple(sorted(int(r) for r in (resolutions or self.default_resolutions())))
        lo, hi = self.resolution_limits
        for r in self.resolutions:
            if not lo <= r <= hi:
                raise ArchParseError(f"{self.name}: resolution {r} outside {lo}..{hi}")
        cls = type(self)
        self.kernels = self._subset("kernels", kernels, cls.kernels)
        self.expands = self._subset("expands", expands, cls.expands)
        full = self._full_depths()
        chosen = self._subset("depths", depths, tuple(sorted({d for ds in full for d in ds})))
        self.depths = chosen
        per_stage = []
        for i, ds in enumerate(full, 1):
            kept = tuple(d for d in ds if d in chosen) if len(ds) > 1 else ds
            if not kept:
                raise ArchParseError(f"{self.name}: depths {list(chosen)} leave stage {i} no depth; its "
                                     f"choices are {list(ds)}")
            per_stage.append(kept)
        self._depths = tuple(per_stage)

    def _subset(self, what: str, given: int | tuple[int, ...] | list[int] | None,
                allowed: tuple[int, ...]) -> tuple[int, ...]:
        """``given`` (one value or several) as a sorted tuple checked against ``allowed``."""
        if given is None:
            return tuple(sorted(allowed))
        values = [given] if isinstance(given, int) else list(given)
        for v in values:
            if v not in allowed:
                raise ArchParseError(f"{self.name}: {what} option {v!r} is not one of the space's choices "
                                     f"{', '.join(map(str, allowed))}")
        return tuple(sorted(set(values)))

    # subclasses override
    def default_widths(self) -> tuple[float, ...]:
        return self.width_choices

    def default_resolutions(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def max_depth(self) -> int:
        """The deepest stage of the unrestricted space: the block-slot count per stage of OFA's subnet
        JSON, of the supernet's OFA key map and of encodings."""
        return max(max(d) for d in self._full_depths())

    def depths_per_stage(self) -> tuple[tuple[int, ...], ...]:
        """Per stage, the depths this space samples (its ``depths`` option applied)."""
        return self._depths

    @property
    def n_stages(self) -> int:
        return len(self.layout.widths)

    # -- naming ------------------------------------------------------------------------------
    def make_spec(self, w: float, r: int, stages: Any) -> ElasticSpec:
        """Validate choices and build a spec (raises ArchParseError naming the bad token)."""
        if w not in self.width_choices:
            raise choice_error(self.name, "width", w, self.width_choices, f"w{w}")
        lo, hi = self.resolution_limits
        if not isinstance(r, int) or not lo <= r <= hi:
            raise ArchParseError(f"{self.name} arch: bad token 'r{r}': resolution must be an integer in {lo}..{hi}")
        stages = tuple(tuple((int(k), int(e)) for k, e in blocks) for blocks in stages)
        if len(stages) != self.n_stages:
            raise ArchParseError(f"{self.name} arch: expected {self.n_stages} stages, got {len(stages)}")
        for i, (blocks, depths) in enumerate(zip(stages, self.depths_per_stage()), 1):
            if len(blocks) not in depths:
                raise choice_error(self.name, f"stage {i} depth", len(blocks), depths,
                                   "-".join(f"k{k}e{e}" for k, e in blocks))
            for k, e in blocks:
                if k not in self.kernels:
                    raise choice_error(self.name, f"stage {i} kernel", k, self.kernels, f"k{k}e{e}")
                if e not in self.expands:
                    raise choice_error(self.name, f"stage {i} expand ratio", e, self.expands, f"k{k}e{e}")
        return self.spec_type(w=float(w), r=r, stages=stages)

    def parse_body(self, text: str) -> ElasticSpec:
        parts = text.strip().split(":")
        if len(parts) != 3:
            raise ArchParseError(
                f"{self.name} arch {text[:60]!r}: expected 'w<width>:r<resolution>:<stages>' "
                f"(e.g. {self.example()})"
            )
        wt, rt, st = parts
        try:
            if not wt.startswith("w"):
                raise ValueError
            w = float(wt[1:])
        except ValueError:
            raise ArchParseError(f"{self.name} arch: bad token {wt!r}: expected w<width>, e.g. w1.2") from None
        if not (rt.startswith("r") and rt[1:].isdigit()):
            raise ArchParseError(f"{self.name} arch: bad token {rt!r}: expected r<resolution>, e.g. r224")
        stages = []
        for stage in st.split("_"):
            blocks = []
            for tok in stage.split("-"):
                m = _BLOCK_RE.fullmatch(tok)
                if not m:
                    raise ArchParseError(f"{self.name} arch: bad token {tok!r}: expected k<kernel>e<expand>, e.g. k3e4")
                k, e = int(m.group(1)), int(m.group(2))
                if k not in self.kernels:
                    raise choice_error(self.name, f"stage {len(stages) + 1} kernel", k, self.kernels, tok)
                if e not in self.expands:
                    raise choice_error(self.name, f"stage {len(stages) + 1} expand ratio", e, self.expands, tok)
                blocks.append((k, e))
            stages.append(blocks)
        return self.make_spec(w, int(rt[1:]), stages)

    def from_json(self, obj: dict[str, Any]) -> ElasticSpec:
        """OFA's subnet form ``{"ks": [...], "e": [...], "d": [...], "r": R, "w": W}``.

        ``ks``/``e`` hold ``n_stages * max_depth`` entries; entries beyond a stage's depth are ignored.
        """
        n = self.n_stages * self.max_depth
        missing = [k for k in ("ks", "e", "d") if k not in obj]
        if missing:
            raise ArchParseError(f"{self.name} arch JSON: missing key(s) {missing}; expected ks, e, d, r (and w)")
        ks, es, ds = obj["ks"], obj["e"], obj["d"]
        for key, val, length in (("ks", ks, n), ("e", es, n), ("d", ds, self.n_stages)):
            if not isinstance(val, list) or len(val) != length or not all(isinstance(v, int) for v in val):
                raise ArchParseError(f"{self.name} arch JSON: {key!r} must be a list of {length} integers")
        r = obj.get("r", obj.get("resolution"))
        if r is None:
            raise ArchParseError(f"{self.name} arch JSON: missing key 'r' (input resolution)")
        w = obj.get("w", self.widths[-1])
        unknown = set(obj) - {"ks", "e", "d", "r", "resolution", "w"}
        if unknown:
            raise ArchParseError(f"{self.name} arch JSON: unknown key(s) {sorted(unknown)}")
        stages = []
        for i, (d, depths) in enumerate(zip(ds, self.depths_per_stage())):
            if d not in depths:
                raise choice_error(self.name, f"stage {i + 1} depth", d, depths, f"d[{i}]={d}")
            base = i * self.max_depth
            stages.append([(ks[base + j], es[base + j]) for j in range(d)])
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise ArchParseError(f"{self.name} arch JSON: 'w' must be a number") from None
        return self.make_spec(w, r, stages)

    def to_json(self, spec: ElasticSpec) -> dict[str, Any]:
        ks, es = [], []
        for blocks in spec.stages:
            pad = self.max_depth - len(blocks)
            ks += [k for k, _ in blocks] + [min(self.kernels)] * pad
            es += [e for _, e in blocks] + [min(self.expands)] * pad
        return {"ks": ks, "e": es, "d": list(spec.depths), "r": spec.r, "w": spec.w}

    def example(self) -> str:
        return str(self.sample(1, 0)[0])

    # -- sampling ----------------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial) -> ElasticSpec:
        w = trial.suggest_categorical("w", list(self.widths)) if len(self.widths) > 1 else self.widths[0]
        r = self._suggest_resolution(trial)
        stages = []
        for i, depths in enumerate(self.depths_per_stage()):
            d = depths[0] if len(depths) == 1 else trial.suggest_int(f"s{i + 1}_d", min(depths), max(depths))
            stages.append([
                (trial.suggest_categorical(f"s{i + 1}b{j + 1}_k", list(self.kernels)),
                 trial.suggest_categorical(f"s{i + 1}b{j + 1}_e", list(self.expands)))
                for j in range(d)
            ])
        return self.make_spec(w, r, stages)

    def trial_params(self, spec: ArchSpec) -> dict[str, Any]:
        assert isinstance(spec, ElasticSpec)
        p: dict[str, Any] = {}
        if len(self.widths) > 1:
            p["w"] = spec.w
        if len(self.resolutions) > 1:
            p["r"] = spec.r
        for i, (blocks, depths) in enumerate(zip(spec.stages, self.depths_per_stage())):
            if len(depths) > 1:
                p[f"s{i + 1}_d"] = len(blocks)
            for j, (k, e) in enumerate(blocks):
                p[f"s{i + 1}b{j + 1}_k"] = k
                p[f"s{i + 1}b{j + 1}_e"] = e
        return p

    def _suggest_resolution(self, trial: optuna.Trial) -> int:
        rs = self.resolutions
        if len(rs) == 1:
            return rs[0]
        step = rs[1] - rs[0]
        if all(b - a == step for a, b in itertools.pairwise(rs)):
            return trial.suggest_int("r", rs[0], rs[-1], step=step)
        return trial.suggest_categorical("r", list(rs))

    def random(self, rng: random.Random) -> ElasticSpec:
        w = rng.choice(self.widths)
        r = rng.choice(self.resolutions)
        stages = [
            [(rng.choice(self.kernels), rng.choice(self.expands)) for _ in range(rng.choice(depths))]
            for depths in self.depths_per_stage()
        ]
        return self.make_spec(w, r, stages)

    def covering_specs(self) -> list[ElasticSpec]:
        """Per width and resolution, one max-depth spec per (kernel, expand): every block position
        (first of a stage, or later) meets every choice."""
        return [
            self.make_spec(w, r, [[(k, e)] * max(depths) for depths in self.depths_per_stage()])
            for w in self.widths for r in self.resolutions for k in self.kernels for e in self.expands
        ]

    def size(self) -> int:
        per_block = len(self.kernels) * len(self.expands)
        total = len(self.resolutions) * len(self.widths)
        for depths in self.depths_per_stage():
            total *= sum(per_block**d for d in depths)
        return total

    def choices(self) -> dict[str, str]:
        rs = self.resolutions
        r_desc = f"{rs[0]}..{rs[-1]} step {rs[1] - rs[0]}" if len(rs) > 2 else ", ".join(map(str, rs))
        return {
            "width": ", ".join(format_width(w) for w in self.widths),
            "resolution": f"{r_desc} (any {self.resolution_limits[0]}..{self.resolution_limits[1]} accepted)",
            "stages": str(self.n_stages),
            "depth": ", ".join(map(str, self._depths[0])) if len(set(self._depths)) == 1 else
            " / ".join(",".join(map(str, d)) for d in self._depths) + " (per stage)",
            "kernel": ", ".join(map(str, self.kernels)),
            "expand": ", ".join(map(str, self.expands)),
        }

    # -- structure ---------------------------------------------------------------------------
    def channels(self, w: float) -> ElasticLayout:
        """The layout at width multiplier ``w`` (cached per ``w``)."""
        cache: dict[float, ElasticLayout] = self.__dict__.setdefault("_channel_cache", {})
        if w not in cache:
            cache[w] = self._channels(w)
        return cache[w]

    def _channels(self, w: float) -> ElasticLayout:
        L = self.layout
        md = make_divisible
        return ElasticLayout(
            stem=md(L.stem * w), first_block=md(L.first_block * w),
            widths=tuple(md(c * w) for c in L.widths), strides=L.strides, acts=L.acts, se=L.se,
            final_expand=md(L.final_expand * w),
            feature_mix=md(L.feature_mix * w) if L.feature_mix else None,
            stem_act=L.stem_act, head_act=L.head_act, first_act=L.first_act,
        )

    LAYER_CACHE: ClassVar[int] = 4096
    """Specs whose layer list is kept: a search prices each candidate several times (cost, latency, features)."""

    def layers(self, spec: ArchSpec, task: Task | None = None) -> list[Layer]:
        assert isinstance(spec, ElasticSpec)
        t = self.resolve_task(task)
        cache: OrderedDict[tuple[ElasticSpec, Task], tuple[Layer, ...]] = self.__dict__.setdefault(
            "_layer_cache", OrderedDict())
        key = (spec, t)
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = tuple(self._build_layers(spec, t))
            if len(cache) > self.LAYER_CACHE:
                cache.popitem(last=False)
        return list(hit)

    def _build_layers(self, spec: ElasticSpec, t: Task) -> list[Layer]:
        L = self.channels(spec.w)
        hw = spec.r
        out: list[Layer] = [ConvLayer(t.in_channels, hw, L.stem, k=3, s=2, act=L.stem_act)]
        hw = spatial_out(hw, 3, 2)
        out.append(MBConvLayer(L.stem, hw, L.first_block, mid=L.stem, k=self.first_block_kernel, s=1,
                               act=L.first_act, expand=False, res=L.stem == L.first_block))
        cin = L.first_block
        for blocks, cout, stride, act, se in zip(spec.stages, L.widths, L.strides, L.acts, L.se):
            for j, (k, e) in enumerate(blocks):
                s = stride if j == 0 else 1
                mid = make_divisible(round(cin * e), 8)
                out.append(MBConvLayer(
                    cin, hw, cout, mid=mid, k=k, s=s, act=act,
                    se=make_divisible(mid // 4, 8) if se else 0, res=(s == 1 and cin == cout),
                ))
                hw = spatial_out(hw, k, s)
                cin = cout
        out.append(ConvLayer(cin, hw, L.final_expand, k=1, act=L.head_act))
        out.append(GlobalPoolLayer(L.final_expand, hw))
        cin = L.final_expand
        if L.feature_mix:
            out.append(ConvLayer(cin, 1, L.feature_mix, k=1, act=L.head_act, bn=False))
            cin = L.feature_mix
        out.append(LinearLayer(cin, 1, t.num_classes or self.default_classes))
        return out

    # -- encoding ----------------------------------------------------------------------------
    def _full_depths(self) -> tuple[tuple[int, ...], ...]:
        """Per stage, the depths of the unrestricted space (class-level choices)."""
        cls = type(self)
        return cls.stage_depths or (cls.depth_choices,) * self.n_stages

    def encoding_size(self) -> int:
        cls = type(self)
        per_block = len(cls.kernels) + len(cls.expands)
        return (self.n_stages * self.max_depth * per_block + sum(len(d) for d in self._full_depths())
                + 1 + len(self.width_choices))

    def encode(self, spec: ArchSpec) -> list[float]:
        """Per block slot: one-hot kernel and expand (zeros when inactive); per stage: one-hot depth;
        resolution scaled to [0, 1] over the accepted range; one-hot width."""
        assert isinstance(spec, ElasticSpec)
        kernels, expands = type(self).kernels, type(self).expands  # the full sets (see __init__)
        vec: list[float] = []
        for blocks, depths in zip(spec.stages, self._full_depths()):
            for j in range(self.max_depth):
                if j < len(blocks):
                    k, e = blocks[j]
                    vec += [float(k == c) for c in kernels] + [float(e == c) for c in expands]
                else:
                    vec += [0.0] * (len(kernels) + len(expands))
            vec += [float(len(blocks) == d) for d in depths]
        lo, hi = self.resolution_limits
        vec.append((spec.r - lo) / (hi - lo))
        vec += [float(spec.w == w) for w in self.width_choices]
        return vec
