"""``proxyless``: the ProxylessNAS mobile search space (MobileNetV2 backbone), whose published mobile
latency table (``mobile_trim.yaml``) edgenas imports.

Stem 3x3 s2 conv 3->32 (ReLU6), fixed first block 32->16 (3x3 depthwise, expand 1), six stages of
widths 24/40/80/96/192/320 with strides 2/2/2/1/2/1 and up to 4/4/4/4/4/1 blocks, ReLU6, no SE; 1x1
conv 320->1280, global pool, classifier. Each block is kernel {3,5,7} x expand {3,6}; every block but
the first of a stage may be the zero op (skipped), so a stage keeps 1..4 blocks: a stage whose zero
blocks sit in the middle computes the same network as one with those blocks dropped, and both get
the same canonical string. Resolution 224 (any 96..320 accepted).
"""

from __future__ import annotations

from edgenas.spaces import register_space
from edgenas.spaces.elastic import ElasticLayout, ElasticSpace, ElasticSpec


class ProxylessSpec(ElasticSpec):
    space = "proxyless"


@register_space
class ProxylessSpace(ElasticSpace):
    name = "proxyless"
    summary = "ProxylessNAS mobile space (MobileNetV2 backbone, 6 stages, zero-able blocks)"
    default_classes = 1000
    default_resolution = 224
    spec_type = ProxylessSpec
    layout = ElasticLayout(
        stem=32, first_block=16, widths=(24, 40, 80, 96, 192, 320), strides=(2, 2, 2, 1, 2, 1),
        acts=("relu6",) * 6, se=(False,) * 6, final_expand=1280, feature_mix=None,
        stem_act="relu6", head_act="relu6", first_act="relu6",
    )
    expands = (3, 6)
    depth_choices = (1, 2, 3, 4)
    stage_depths = ((1, 2, 3, 4),) * 5 + ((1,),)
    width_choices = (1.0,)
    resolution_limits = (96, 320)

    def default_resolutions(self) -> tuple[int, ...]:
        return (224,)
