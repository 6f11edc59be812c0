"""``nano``: edgenas' ``tiny`` space with smaller choices, for the smallest microcontrollers."""

from __future__ import annotations

from edgenas.spaces.tiny import TinySpace, TinySpec


class NanoSpec(TinySpec):
    """A member of ``nano``; its canonical string starts with ``nano:``."""

    space = "nano"


class NanoSpace(TinySpace):
    """The tiny layout (stem 16, stages 16/24/40/64, no SE) with kernel {3, 5}, expand {2, 4}, depth
    {1, 2} and width {0.5, 1.0}: 4 stages of at most 2 blocks, 32-96 px. Only choice sets change, so
    layers, the exact cost model, latency-table units and every exporter work unchanged."""

    name = "nano"
    summary = "tiny with kernel 3/5, expand 2/4, depth 1-2, width 0.5/1.0 (32-96 px)"
    spec_type = NanoSpec
    kernels = (3, 5)
    expands = (2, 4)
    depth_choices = (1, 2)
    width_choices = (0.5, 1.0)

    def default_resolutions(self) -> tuple[int, ...]:
        return tuple(range(32, 97, 16))
