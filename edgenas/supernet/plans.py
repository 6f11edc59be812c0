"""Which weight slot of a supernet runs each layer of a spec, per space family.

A *plan* maps a spec's layer descriptors (``space.layers(spec, task)``, the list ``space.build`` turns
into modules) to named slots: the stem, each block position, the head. Every spec's layer at a slot is
a smaller form of the slot's largest layer (fewer channels, a smaller kernel), which is what lets one
set of weights serve every spec. The plan also names the specs whose layers, merged per slot, give
every slot its largest form, and the largest and smallest specs the sandwich rule trains.

* :class:`ElasticPlan` (``tiny``, ``mbv3``, ``proxyless``): ``stem``, ``first``, ``s<stage>b<block>``
  (1-based; depth d runs the first d blocks of a stage), ``head``, ``mix`` (``mbv3``) and
  ``classifier``.
* :class:`FBNetPlan` (``fbnet``): ``stem``, ``l<i>`` for the MBConv at searchable layer i (every block
  choice but ``skip`` is a smaller form of ``k5e6``; ``_g2`` blocks cut their grouped 1x1 convs from
  the ungrouped ones), ``l<i>_skip`` for the 1x1 conv a ``skip`` becomes where the stride or width
  changes (an identity ``skip`` runs nothing), ``head``, ``classifier``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgenas.errors import ArchParseError

if TYPE_CHECKING:
    from edgenas.layers import Layer
    from edgenas.spaces.base import ArchSpec, SearchSpace, Task
    from edgenas.spaces.elastic import ElasticSpace
    from edgenas.spaces.fbnet import FBNetSpace


@dataclass(frozen=True)
class Step:
    """One layer of a spec and the slot whose weights it runs with (``None``: it has no weights)."""

    slot: str | None
    layer: Layer


class Plan(ABC):
    """The slot map of one space family (see the module docstring)."""

    kernels: tuple[int, ...]
    """Depthwise kernel choices, ascending (kernel transformations map each to the next smaller one)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def check(self, spec: ArchSpec | str) -> ArchSpec:
        """``spec`` as a member of this plan's space: strings are parsed; a spec of another space, or
        one outside the space's choices, is an :class:`ArchParseError` saying so."""
        if isinstance(spec, str):
            return self.space.parse(spec)
        name = getattr(type(spec), "space", None)
        if name != self.space.name:
            raise ArchParseError(f"arch {str(spec)[:60]!r} belongs to space {name!r}; this supernet is for space "
                                 f"{self.space.name!r}")
        parsed = self.space.parse(str(spec))
        if parsed != spec:
            raise ArchParseError(f"arch {str(spec)[:60]!r} is not a canonical member of space {self.space.name!r}")
        return parsed

    @abstractmethod
    def steps(self, spec: ArchSpec, task: Task) -> list[Step]:
        """The spec's layers, in ``space.layers`` order, each with its slot."""

    @abstractmethod
    def max_specs(self) -> list[ArchSpec]:
        """Specs whose layers, merged per slot, hold every slot's largest form."""

    @abstractmethod
    def largest(self) -> ArchSpec:
        """The largest member (sandwich rule's teacher)."""

    @abstractmethod
    def smallest(self) -> ArchSpec:
        """The smallest member the sandwich rule trains."""


def _named(names: list[str | None], layers: list[Layer], spec: ArchSpec) -> list[Step]:
    if len(names) != len(layers):  # a space whose layer list changed shape: the plan must follow it
        raise RuntimeError(f"supernet plan of {spec.space!r} names {len(names)} layers, the space builds "
                           f"{len(layers)} for {spec}")
    return [Step(n, layer) for n, layer in zip(names, layers)]


class ElasticPlan(Plan):
    """``tiny``, ``mbv3``, ``proxyless``: slots per stage and block position."""

    space: ElasticSpace

    def __init__(self, space: ElasticSpace) -> None:
        super().__init__(space)
        self.kernels = tuple(sorted(space.kernels))

    def steps(self, spec: ArchSpec, task: Task) -> list[Step]:
        layers = self.space.layers(spec, task)
        names: list[str | None] = ["stem", "first"]
        for i, blocks in enumerate(spec.stages):  # type: ignore[attr-defined]
            names += [f"s{i + 1}b{j + 1}" for j in range(len(blocks))]
        names += ["head", None]
        if self.space.layout.feature_mix:
            names.append("mix")
        names.append("classifier")
        return _named(names, layers, spec)

    def _uniform(self, w: float, r: int, k: int, e: int, deepest: bool) -> ArchSpec:
        depths = self.space.depths_per_stage()
        return self.space.make_spec(w, r, [[(k, e)] * (max(d) if deepest else min(d)) for d in depths])

    def max_specs(self) -> list[ArchSpec]:
        s = self.space
        return [self._uniform(w, min(s.resolutions), max(s.kernels), max(s.expands), True) for w in s.widths]

    def largest(self) -> ArchSpec:
        s = self.space
        return self._uniform(max(s.widths), max(s.resolutions), max(s.kernels), max(s.expands), True)

    def smallest(self) -> ArchSpec:
        s = self.space
        return self._uniform(min(s.widths), min(s.resolutions), min(s.kernels), min(s.expands), False)


class FBNetPlan(Plan):
    """``fbnet``: a slot per searchable layer (plus one for a shape-changing ``skip``)."""

    space: FBNetSpace

    def __init__(self, space: FBNetSpace) -> None:
        from edgenas.spaces.fbnet import BLOCKS

        super().__init__(space)
        self.kernels = tuple(sorted({k for _, k, _, _ in BLOCKS if k}))
        # the largest block (k5e6) and the smallest (k3e1); skip is not a smaller form of a block
        blocks = [i for i, b in enumerate(BLOCKS) if b[1]]
        self._largest_code = max(blocks, key=lambda i: (BLOCKS[i][1:3], -BLOCKS[i][3]))
        self._smallest_code = min(blocks, key=lambda i: (BLOCKS[i][1:3], BLOCKS[i][3]))
        self._skip_code = next(i for i, b in enumerate(BLOCKS) if not b[1])

    def check(self, spec: ArchSpec | str) -> ArchSpec:
        parsed = super().check(spec)
        layout = parsed.layout  # type: ignore[attr-defined]
        if layout != self.space.layout:
            raise ArchParseError(f"arch {str(parsed)[:60]!r} has the fbnet {layout!r} layout; this supernet holds the "
                                 f"{self.space.layout!r} layout (build one with fbnet layout={layout})")
        return parsed

    def steps(self, spec: ArchSpec, task: Task) -> list[Step]:
        from edgenas.spaces.fbnet import BLOCKS, LAYOUTS, STAGE_CHANNELS, STAGE_LAYERS

        layers = self.space.layers(spec, task)
        lay = LAYOUTS[spec.layout]  # type: ignore[attr-defined]
        names: list[str | None] = ["stem"]
        cin, i = 16, 0
        for n, cout, stride in zip(STAGE_LAYERS, STAGE_CHANNELS, lay["strides"]):
            for j in range(n):
                s = stride if j == 0 else 1
                k = BLOCKS[spec.codes[i]][1]  # type: ignore[attr-defined]
                i += 1
                if k:
                    names.append(f"l{i}")
                elif s != 1 or cin != cout:
                    names.append(f"l{i}_skip")
                cin = cout
        names += ["head", None, "classifier"]
        return _named(names, layers, spec)

    def _uniform(self, code: int) -> ArchSpec:
        from edgenas.spaces.fbnet import N_LAYERS

        return self.space._make(self.space.layout, [code] * N_LAYERS)

    def max_specs(self) -> list[ArchSpec]:
        return [self._uniform(self._largest_code), self._uniform(self._skip_code)]

    def largest(self) -> ArchSpec:
        return self._uniform(self._largest_code)

    def smallest(self) -> ArchSpec:
        return self._uniform(self._smallest_code)


def plan_for(space: SearchSpace) -> Plan:
    """The plan of ``space``'s family, or an :class:`~edgenas.errors.EdgenasError` naming the families
    that have supernets."""
    from edgenas.errors import EdgenasError
    from edgenas.spaces.elastic import ElasticSpace
    from edgenas.spaces.fbnet import FBNetSpace

    if isinstance(space, ElasticSpace):
        return ElasticPlan(space)
    if isinstance(space, FBNetSpace):
        return FBNetPlan(space)
    raise EdgenasError(f"space {space.name!r} has no weight-sharing supernet; supernets exist for the elastic spaces "
                       f"(tiny, mbv3, proxyless) and fbnet")
