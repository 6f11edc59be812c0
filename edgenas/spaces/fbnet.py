"""``fbnet``: the FBNet / HW-NAS-Bench space, 22 searchable layers x 9 block choices.

Layout (HW-NAS-Bench ``fbnet_models``): stem 3x3 conv 3->16 + BN + ReLU; stages of [1,4,4,4,4,4,1]
layers with channels [16,24,32,64,112,184,352]; 1x1 head conv + BN + ReLU, global pool, linear.
``cifar100`` layout: 32 px input, stem stride 1, stage strides [1,1,2,2,1,2,1], head 1504, 100 classes.
``imagenet`` layout: 224 px, stem stride 2, strides [1,2,2,2,1,2,1], head 1984, 1000 classes.
Blocks ``k{3,5}_e{1,3,6}`` (and ``_g2``: grouped pointwise convs with a channel shuffle) are
1x1 expand (always present, mid = cin * e) -> kxk depthwise -> 1x1 project, ReLU after the first two,
residual when stride 1 and cin == cout; ``skip`` is identity, or 1x1 conv + BN + ReLU when the stride
or width changes.

Canonical string: ``fbnet:cifar100:k3e6-skip-...`` (22 tokens). HW-NAS-Bench's op-index form
(``7-8-1-...``, 22 codes 0..8) is accepted wherever an arch is (layout from the space option).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgenas.errors import ArchParseError
from edgenas.layers import ConvLayer, GlobalPoolLayer, Layer, LinearLayer, MBConvLayer, spatial_out
from edgenas.spaces import register_space
from edgenas.spaces.base import ArchSpec, SearchSpace, Task, choice_error

if TYPE_CHECKING:
    import optuna

# HW-NAS-Bench PRIMITIVES order: code -> (name, kernel, expand, groups)
BLOCKS: tuple[tuple[str, int, int, int], ...] = (
    ("k3e1", 3, 1, 1), ("k3e1g2", 3, 1, 2), ("k3e3", 3, 3, 1), ("k3e6", 3, 6, 1),
    ("k5e1", 5, 1, 1), ("k5e1g2", 5, 1, 2), ("k5e3", 5, 3, 1), ("k5e6", 5, 6, 1), ("skip", 0, 0, 0),
)
NAMES = tuple(b[0] for b in BLOCKS)
_CODE = {name: i for i, name in enumerate(NAMES)}
STAGE_LAYERS = (1, 4, 4, 4, 4, 4, 1)
STAGE_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
N_LAYERS = sum(STAGE_LAYERS)
LAYOUTS: dict[str, dict[str, Any]] = {
    "cifar100": {"strides": (1, 1, 2, 2, 1, 2, 1), "stem_stride": 1, "head": 1504, "classes": 100, "resolution": 32},
    "imagenet": {"strides": (1, 2, 2, 2, 1, 2, 1), "stem_stride": 2, "head": 1984, "classes": 1000, "resolution": 224},
}


@dataclass(frozen=True)
class FBNetSpec(ArchSpec):
    """Layout name and the 22 block codes (0..8, HW-NAS-Bench order)."""

    space = "fbnet"
    layout: str
    codes: tuple[int, ...]

    def body(self) -> str:
        return f"{self.layout}:" + "-".join(NAMES[c] for c in self.codes)

    @property
    def op_idx_list(self) -> str:
        """HW-NAS-Bench form, e.g. ``7-8-1-...``."""
        return "-".join(map(str, self.codes))

    def to_json(self) -> dict[str, Any]:
        return {"layout": self.layout, "op_idx_list": list(self.codes)}


@register_space
class FBNetSpace(SearchSpace):
    name = "fbnet"
    summary = "FBNet / HW-NAS-Bench space (22 layers x 9 blocks; cifar100 or imagenet layout)"
    default_classes = 100
    default_resolution = 32

    def __init__(self, layout: str = "cifar100") -> None:
        if layout not in LAYOUTS:
            raise ArchParseError(f"fbnet: unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
        self.layout = layout

    def _make(self, layout: str, codes: list[int]) -> FBNetSpec:
        if layout not in LAYOUTS:
            raise ArchParseError(f"fbnet arch: bad token {layout!r}: layout must be one of {', '.join(LAYOUTS)}")
        if len(codes) != N_LAYERS:
            raise ArchParseError(f"fbnet arch: expected {N_LAYERS} layer choices, got {len(codes)}")
        for c in codes:
            if not 0 <= c < len(BLOCKS):
                raise choice_error("fbnet", "block code", c, range(len(BLOCKS)), str(c))
        return FBNetSpec(layout=layout, codes=tuple(codes))

    # -- naming ------------------------------------------------------------------------------
    def parse_body(self, text: str) -> FBNetSpec:
        layout, sep, rest = text.strip().partition(":")
        if not sep:
            raise ArchParseError(f"fbnet arch {text[:60]!r}: expected '<layout>:<22 blocks joined by ->'")
        codes = []
        for tok in rest.split("-"):
            if tok not in _CODE:
                raise ArchParseError(f"fbnet arch: bad token {tok!r}: block must be one of {', '.join(NAMES)}")
            codes.append(_CODE[tok])
        return self._make(layout, codes)

    def parse_alternative(self, text: str) -> FBNetSpec | None:
        toks = text.replace(",", "-").replace(" ", "").strip("[]()").split("-")
        if all(t.isdigit() for t in toks):
            return self._make(self.layout, [int(t) for t in toks])
        return None

    def from_json(self, obj: dict[str, Any]) -> FBNetSpec:
        codes = obj.get("op_idx_list")
        if isinstance(codes, str):
            codes = [int(t) for t in codes.split("-") if t.isdigit()]
        if not isinstance(codes, list) or not all(isinstance(c, int) for c in codes):
            raise ArchParseError("fbnet arch JSON: expected 'op_idx_list' (22 integers 0..8) and optional 'layout'")
        return self._make(str(obj.get("layout", self.layout)), codes)

    # -- sampling ----------------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial) -> FBNetSpec:
        return self._make(self.layout, [
            _CODE[trial.suggest_categorical(f"l{i + 1}", list(NAMES))] for i in range(N_LAYERS)
        ])

    def trial_params(self, spec: ArchSpec) -> dict[str, Any]:
        assert isinstance(spec, FBNetSpec)
        return {f"l{i + 1}": NAMES[c] for i, c in enumerate(spec.codes)}

    def random(self, rng: random.Random) -> FBNetSpec:
        return self._make(self.layout, [rng.randrange(len(BLOCKS)) for _ in range(N_LAYERS)])

    def covering_specs(self) -> list[FBNetSpec]:
        """A layer's input width and size depend only on its position, so the 9 uniform specs cover
        every (position, block) unit."""
        return [self._make(self.layout, [c] * N_LAYERS) for c in range(len(BLOCKS))]

    def size(self) -> int:
        return len(BLOCKS) ** N_LAYERS

    def choices(self) -> dict[str, str]:
        return {"layout": f"{self.layout} (of {', '.join(LAYOUTS)})", "layers": str(N_LAYERS),
                "block": ", ".join(f"{i}={n}" for i, n in enumerate(NAMES))}

    # -- structure ---------------------------------------------------------------------------
    def layers(self, spec: ArchSpec, task: Task | None = None) -> list[Layer]:
        assert isinstance(spec, FBNetSpec)
        lay = LAYOUTS[spec.layout]
        task = task or Task()
        hw = task.resolution or lay["resolution"]
        classes = task.num_classes or lay["classes"]
        out: list[Layer] = [ConvLayer(task.in_channels, hw, 16, k=3, s=lay["stem_stride"])]
        hw = spatial_out(hw, 3, lay["stem_stride"])
        cin, i = 16, 0
        for n, cout, stride in zip(STAGE_LAYERS, STAGE_CHANNELS, lay["strides"]):
            for j in range(n):
                s = stride if j == 0 else 1
                _, k, e, g = BLOCKS[spec.codes[i]]
                i += 1
                if k == 0:  # skip
                    if s != 1 or cin != cout:
                        out.append(ConvLayer(cin, hw, cout, k=1, s=s))
                else:
                    out.append(MBConvLayer(cin, hw, cout, mid=cin * e, k=k, s=s, pg=g,
                                           res=(s == 1 and cin == cout)))
                hw = spatial_out(hw, 1 if k == 0 else k, s)
                cin = cout
        out += [ConvLayer(cin, hw, lay["head"], k=1), GlobalPoolLayer(lay["head"], hw),
                LinearLayer(lay["head"], 1, classes)]
        return out

    def encoding_size(self) -> int:
        return N_LAYERS * len(BLOCKS)

    def encode(self, spec: ArchSpec) -> list[float]:
        assert isinstance(spec, FBNetSpec)
        return [float(c == b) for c in spec.codes for b in range(len(BLOCKS))]
