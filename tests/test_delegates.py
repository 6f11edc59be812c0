"""Delegate partitions (edgenas/delegates.py): TFLite's partitioning rule on small graphs, and the
prediction from the deployed graph against hand-checked converted models. Predicted = measured on real
conversions: tests/exporters/test_export_sizes.py (every space's trained model, fp32 and int8) and
benchmarks/delegate_partitions.py (30 random specs per image space)."""

from __future__ import annotations

import pytest

from edgenas import get_space
from edgenas.delegates import OFF_DELEGATE, partition, predict
from edgenas.spaces import Task


def chain(n: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    return [((i,), (i + 1,)) for i in range(n)]


def test_a_chain_splits_at_every_unsupported_run():
    ops = chain(7)
    assert partition(ops, [True] * 7) == 1
    assert partition(ops, [True, False, True, True, False, False, True]) == 3
    assert partition(ops, [False, True, False, True, False, True, False]) == 3
    assert partition(ops, [False] * 7) == 0


def test_independent_branches_join_one_subset_as_tflite_does():
    """Ops are placed pass after pass while their inputs are ready: a supported op on a side branch
    joins the subset of the supported ops before the unsupported one, not a new partition."""
    # 0 -> A(sup) -> 1; 1 -> B(unsup) -> 2; 1 -> C(sup) -> 3; (2, 3) -> D(sup) -> 4
    ops = [((0,), (1,)), ((1,), (2,)), ((1,), (3,)), ((2, 3), (4,))]
    assert partition(ops, [True, False, True, True]) == 2  # {A, C}, B, {D}


def test_cycle_is_an_error():
    with pytest.raises(ValueError, match="cycle"):
        partition([((1,), (0,)), ((0,), (1,))], [True, False])


def test_tiny_int8_splits_at_each_hswish_and_fp32_stays_whole():
    """A hand-checked conversion (LiteRT 2.3.0): tiny:w0.5:r32:k3e3-k5e4_k7e6_k3e3_k3e3 for 1-channel
    input is 33 ops; its int8 file has 6 DELEGATE nodes with the 5 HARD_SWISH ops between them."""
    space = get_space("tiny", resolutions=[32], widths=[0.5])
    spec = space.parse("tiny:w0.5:r32:k3e3-k5e4_k7e6_k3e3_k3e3")
    d = space.cost(spec, Task(num_classes=10, in_channels=1)).deployed
    assert predict(d, "xnnpack", "fp32").as_dict() == {"partitions": 1, "ops_off_delegate": 0, "ops_total": 33,
                                                        "off_ops": {}}
    assert predict(d, "xnnpack", "int8").as_dict() == {"partitions": 6, "ops_off_delegate": 5, "ops_total": 33,
                                                        "off_ops": {"HARD_SWISH": 5}}
    with pytest.raises(ValueError, match="no op support list for delegate 'gpu'"):
        predict(d, "gpu", "fp32")
    assert set(OFF_DELEGATE) == {("xnnpack", "fp32"), ("xnnpack", "int8")}
