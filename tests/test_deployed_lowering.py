"""The lowering of concatenations, channel splits, padded max-pools and ``x.mean([2, 3])``
(edgenas/deployed.py) on small traced modules, against the op sequences litert-torch 0.10.0 and
ai-edge-quantizer 0.10.0 wrote for the same modules (hand-checked conversions); whole exported models are
compared in tests/compress/test_deployed_models.py."""

from __future__ import annotations

import torch
import torch.nn as nn

from edgenas.deployed import Deployed, lower
from edgenas.modelcount import trace_graph
from edgenas.tflm_arena import head_bytes


def _lowered(model: nn.Module, shape: tuple[int, int, int] = (3, 8, 8)) -> Deployed:
    return lower(trace_graph(model.eval(), torch.zeros(1, *shape)))


def _names(d: Deployed, precision: str = "int8") -> list[str]:
    return [op.name for op in d.ops_for(precision)]


def _shuffle(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class _Unit(nn.Module):
    """A ShuffleNetV2 unit: shuffle, chunk, one half through a conv, cat."""

    def __init__(self, shuffle: bool = True, relu: bool = False) -> None:
        super().__init__()
        self.a, self.m = nn.Conv2d(3, 12, 1), nn.Conv2d(6, 6, 1)
        self.shuffle, self.relu = shuffle, relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        y = _shuffle(y) if self.shuffle else torch.relu(y) if self.relu else y
        p, q = y.chunk(2, dim=1)
        return torch.cat([p, self.m(q)], 1).mean([2, 3])


def test_a_shufflenet_unit_lowers_as_converted() -> None:
    d = _lowered(_Unit())
    assert _names(d, "fp32") == ["TRANSPOSE", "CONV_2D", "TRANSPOSE", "RESHAPE", "TRANSPOSE", "RESHAPE",
                                 "TRANSPOSE", "SLICE", "SLICE", "CONV_2D", "CONCATENATION", "TRANSPOSE", "MEAN"]
    # int8: the pass-through half (a SLICE, whose scale is its input's) is requantised to the cat's scale
    assert _names(d)[10:12] == ["QUANTIZE", "CONCATENATION"] and d.n_int8_only == 1
    concat = d.ops_for("fp32")[10]
    assert concat.inputs == (d.ops[7].output, d.ops[9].output)  # the fp32 cat reads the slice itself
    # constants: 3 permutations, 2 reshape shapes, 2 slice begins + 1 shared size, conv weights and biases,
    # the MEAN axes; activations: input + 13 op outputs, + the QUANTIZE's in the int8 file only
    assert (d.n_const, d.n_act, d.n_int8_only) == (3 + 2 + 3 + 4 + 1, 1 + 13 + 1, 1)


def test_a_chunk_of_a_biased_conv_output_is_sliced_where_it_is_read() -> None:
    """Conv (with bias) -> chunk: litert-torch emits each SLICE right before the chunk's first reader; after
    an activation (or a shuffle) both SLICEs come right after the split."""
    lazy = _names(_lowered(_Unit(shuffle=False)), "fp32")
    assert lazy == ["TRANSPOSE", "CONV_2D", "SLICE", "CONV_2D", "SLICE", "CONCATENATION", "TRANSPOSE", "MEAN"]
    eager = _names(_lowered(_Unit(shuffle=False, relu=True)), "fp32")
    assert eager == ["TRANSPOSE", "CONV_2D", "SLICE", "SLICE", "CONV_2D", "CONCATENATION", "TRANSPOSE", "MEAN"]


class _Reorder(nn.Module):
    """Three chunks of an activation, concatenated in reverse."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.c = nn.Conv2d(3, 12, 1), nn.Conv2d(12, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, q, r = torch.relu(self.a(x)).chunk(3, dim=1)
        return self.c(torch.cat([r, q, p], 1)).mean([2, 3])


def test_a_cat_of_every_chunk_needs_no_requantisation() -> None:
    d = _lowered(_Reorder())
    assert _names(d).count("SLICE") == 3 and "QUANTIZE" not in _names(d)
    assert d.n_const == 2 + 2 + 3 + 1 + 2 + 1  # 2 perms, conv a, 3 begins + 1 shared size, conv c, axes


class _Stem(nn.Module):
    """ResNet's stem in small: a stride-2 conv, ReLU, a padded 3x3 stride-2 max-pool, then x.mean([2, 3])."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.pool = nn.Conv2d(3, 8, 3, 2, 1), nn.MaxPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.conv(x))).mean([2, 3])


def test_a_padded_max_pool_is_padv2_and_mean_over_hw_goes_back_to_nchw() -> None:
    d = _lowered(_Stem(), (3, 32, 32))
    assert _names(d) == ["TRANSPOSE", "PAD", "CONV_2D", "PADV2", "MAX_POOL_2D", "TRANSPOSE", "MEAN"]
    # the PAD and PADV2 share their paddings; PADV2 adds its pad value; the two permutations differ
    assert d.n_const == 2 + 1 + 2 + 1 + 1
    assert d.delegate("fp32").as_dict()["off_ops"] == {"PADV2": 1}


class _Swap(nn.Module):
    """The two halves of a conv output swapped, then a conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.n, self.c = nn.Conv2d(3, 12, 1), nn.Conv2d(12, 12, 1), nn.Conv2d(12, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, q = self.a(x).chunk(2, dim=1)
        return self.c(nn.functional.adaptive_avg_pool2d(self.n(torch.cat([q, p], 1)), 1)).flatten(1)


def test_tflm_places_equal_buffers_later_tensor_first() -> None:
    """TFLM's greedy planner breaks size ties in reverse tensor order: in a cat of two slices of a conv
    output the conv output's buffer stays apart from the cat's (measured head 36864 bytes; ties in tensor
    order would give 24576)."""
    assert head_bytes(_lowered(_Swap(), (3, 32, 32))) == 36864
