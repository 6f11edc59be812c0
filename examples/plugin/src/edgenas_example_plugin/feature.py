"""``dw_macs_m``: a latency feature for device models (``lut fit`` terms).

Depthwise convolutions do little arithmetic per byte moved, so on many CPUs they run well below the
rate the rest of a network reaches: a device model can price their MACs separately with a term on this
feature."""

from __future__ import annotations

from edgenas.layers import MBConvLayer, spatial_out
from edgenas.spaces import ArchSpec, SearchSpace, Task


def dw_macs_m(space: SearchSpace, spec: ArchSpec, task: Task | None = None) -> float:
    """Million multiply-accumulates in the k x k depthwise convolutions of the spec's MBConv blocks."""
    total = 0
    for layer in space.layers(spec, task):
        if isinstance(layer, MBConvLayer):
            side = spatial_out(layer.hw, layer.k, layer.s)
            total += layer.mid * layer.k * layer.k * side * side
    return total / 1e6
