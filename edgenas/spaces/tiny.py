"""``tiny``: the MobileNetV3 block family scaled down for MCU-class targets and small inputs.

Base plan (w = 1.0): stem 16 (3x3 s2, ReLU), fixed first block 16->8 (3x3 depthwise, expand 1), four
stages of widths 16/24/40/64 with strides 2/2/2/1 (16x total downsampling: 32 px inputs end at 2x2),
activations relu/relu/h_swish/h_swish, no SE (cheap on microcontrollers), 1x1 head conv to 256,
global pool and the classifier. Depth {1,2,3}, kernel {3,5,7}, expand {3,4,6}; width multiplier
{0.5, 0.75, 1.0}; searched resolutions 32..128 step 16, any 16..256 accepted. Peak int8 activation
memory of typical members is tens to hundreds of KB, the budget range of MCUNet-class boards.
"""

from __future__ import annotations

from edgenas.spaces import register_space
from edgenas.spaces.elastic import ElasticLayout, ElasticSpace, ElasticSpec


class TinySpec(ElasticSpec):
    space = "tiny"


@register_space
class TinySpace(ElasticSpace):
    name = "tiny"
    summary = "MCU-class MobileNetV3 block family for small inputs (32-128 px)"
    default_classes = 10
    default_resolution = 64
    spec_type = TinySpec
    layout = ElasticLayout(
        stem=16, first_block=8, widths=(16, 24, 40, 64), strides=(2, 2, 2, 1),
        acts=("relu", "relu", "hswish", "hswish"), se=(False, False, False, False),
        final_expand=256, feature_mix=None, stem_act="relu", head_act="hswish",
    )
    depth_choices = (1, 2, 3)
    width_choices = (0.5, 0.75, 1.0)
    resolution_limits = (16, 256)

    def default_resolutions(self) -> tuple[int, ...]:
        return tuple(range(32, 129, 16))
