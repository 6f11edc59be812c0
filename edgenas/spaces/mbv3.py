"""``mbv3``: the Once-for-All MobileNetV3 elastic space (width 1.0 and 1.2), exactly as OFA builds it.

w1.2: stem 24 (3x3 s2, h-swish), fixed first block 24->24 (3x3 depthwise, expand 1, ReLU, identity
skip), five stages of widths 32/48/96/136/192 with strides 2/2/2/1/2, activations
relu/relu/h_swish/h_swish/h_swish and SE off/on/off/on/on, then 1x1 final expand to 1152, global pool,
1x1 feature mix to 1536 (no BN) and the classifier. Depth {2,3,4}, kernel {3,5,7}, expand {3,4,6} per
block; mid channels ``make_divisible(round(cin * e), 8)``, SE mid ``make_divisible(mid // 4, 8)``.
w1.0 uses the same rule on OFA's base widths 16/16/24/40/80/112/160/960/1280.
"""

from __future__ import annotations

from edgenas.errors import ArchParseError
from edgenas.spaces import register_space
from edgenas.spaces.elastic import ElasticLayout, ElasticSpace, ElasticSpec


class MBV3Spec(ElasticSpec):
    space = "mbv3"


@register_space
class MBV3Space(ElasticSpace):
    name = "mbv3"
    summary = "Once-for-All MobileNetV3 elastic space (ImageNet-scale, w1.0/w1.2)"
    default_classes = 1000
    default_resolution = 224
    spec_type = MBV3Spec
    layout = ElasticLayout(
        stem=16, first_block=16, widths=(24, 40, 80, 112, 160), strides=(2, 2, 2, 1, 2),
        acts=("relu", "relu", "hswish", "hswish", "hswish"), se=(False, True, False, True, True),
        final_expand=960, feature_mix=1280, stem_act="hswish", head_act="hswish",
    )
    depth_choices = (2, 3, 4)
    width_choices = (1.0, 1.2)
    resolution_limits = (96, 320)

    def __init__(
        self,
        widths: tuple[float, ...] | list[float] | None = None,
        resolutions: tuple[int, ...] | list[int] | None = None,
        resolution_step: int = 4,
        kernels: int | tuple[int, ...] | list[int] | None = None,
        expands: int | tuple[int, ...] | list[int] | None = None,
        depths: int | tuple[int, ...] | list[int] | None = None,
    ) -> None:
        """``widths`` default (1.2,) — OFA's published supernet and its accuracy predictor;
        ``resolution_step`` 4 (OFA's grid) or 16 (coarse) over 128..224 unless ``resolutions`` is given;
        ``kernels`` / ``expands`` / ``depths``: subsets of the block choices (see ``ElasticSpace``)."""
        if not 1 <= resolution_step <= 96:
            raise ArchParseError(f"mbv3: resolution_step must be 1..96 (4 is OFA's grid), got {resolution_step!r}")
        self.resolution_step = resolution_step
        super().__init__(widths, resolutions, kernels, expands, depths)

    def default_widths(self) -> tuple[float, ...]:
        return (1.2,)

    def default_resolutions(self) -> tuple[int, ...]:
        return tuple(range(128, 225, self.resolution_step))
