"""The search-space plug-in contract: one base class for every space.

A space knows how to name its members (one canonical arch string per candidate, see
:class:`ArchSpec`), how to sample them (from an Optuna trial, define-by-run, or uniformly with a seed),
how many there are, how to lay them out as :mod:`edgenas.layers` descriptors (the unit of latency
tables and of the exact cost model), how to build them as torch modules, and how to encode them as
fixed-length numeric vectors for surrogate models.
"""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache, partial
from typing import TYPE_CHECKING, Any, ClassVar

from edgenas.costgraph import Cost
from edgenas.errors import ArchParseError
from edgenas.layers import Layer, layer_cost, layer_deployed, network_graph

if TYPE_CHECKING:
    import optuna
    import torch.nn as nn

    from edgenas.deployed import Deployed


@dataclass(frozen=True)
class ArchSpec:
    """A frozen, hashable candidate. ``str(spec)`` is its one canonical string: ``<space>:<body>``.

    The canonical string is the cache key of estimators, the prefix of everything stored about the
    candidate, and the ``arch`` user attribute of Optuna trials.
    """

    space: ClassVar[str] = ""

    def body(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        # computed once per spec (specs are frozen; the string is every cache's key)
        text = self.__dict__.get("_canonical")
        if text is None:
            text = f"{self.space}:{self.body()}"
            object.__setattr__(self, "_canonical", text)
        return text

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Task:
    """What the network is built for: input channels, classes, and the input resolution of spaces
    whose specs do not fix it (``nb201``, ``fbnet``). ``None`` means the space's default."""

    num_classes: int | None = None
    in_channels: int = 3
    resolution: int | None = None


RECORD_FIELDS = ("arch", "macs", "params", "size_bytes_fp32", "size_bytes_int8", "peak_ram_bytes_fp32",
                 "peak_ram_bytes_int8", "arena_bytes_tflm", "delegate_partitions_fp32", "delegate_partitions_int8",
                 "ops_off_delegate_fp32", "ops_off_delegate_int8")
"""The fields of a cost record, in output order."""


@dataclass(frozen=True)
class CostReport:
    """Analytic cost of one spec; field names match the CLI's output records.

    MACs, params and peak RAM are exact counts. The deployment fields — ``size_bytes_fp32`` /
    ``size_bytes_int8`` (the exported ``.tflite`` / ``.onnx`` files), ``arena_bytes_tflm`` (the
    minimal TFLite Micro arena of the int8 model), ``delegate_partitions_*`` / ``ops_off_delegate_*``
    (how LiteRT's XNNPACK delegate splits the file: :mod:`edgenas.delegates`) — come from the emulated
    deployed graph (:mod:`edgenas.deployed`), built on first access.
    """

    arch: str
    macs: int
    params: int
    peak_ram_bytes_fp32: int
    peak_ram_bytes_int8: int
    deployed_graph: Callable[[bool], Deployed] = field(repr=False, compare=False)
    """Builds the deployed TFLite graph of the spec (with its ops, or only its counts)."""
    num_classes: int = 0
    in_channels: int = 0
    """Classes and input channels: the metadata inside the exported files grows with them (0: no metadata
    counted)."""

    @cached_property
    def deployed(self) -> Deployed:
        """The deployed TFLite graph (:mod:`edgenas.deployed`)."""
        return self.deployed_graph(True)

    @cached_property
    def _counts(self) -> Deployed:
        return self.__dict__.get("deployed") or self.deployed_graph(False)

    @cached_property
    def size_bytes_fp32(self) -> int:
        """Estimated bytes of the float32 ``.tflite`` / ``.onnx`` (BN folded: 4 bytes per weight and bias),
        with the metadata inside the .tflite (the .onnx's is about half as large)."""
        return self._counts.size_bytes_fp32() + self._metadata_bytes("fp32")

    @cached_property
    def size_bytes_int8(self) -> int:
        """Estimated bytes of the full-integer ``.tflite`` (weights, int32 biases, quantisation tables,
        metadata; the TFLite Micro file carries less metadata)."""
        return self._counts.size_bytes_int8() + self._metadata_bytes("int8")

    def _metadata_bytes(self, precision: str) -> int:
        from edgenas.deployed import metadata_bytes_tflite

        if not self.num_classes:
            return 0
        return metadata_bytes_tflite(precision, self.arch, self.num_classes, self.in_channels)

    @cached_property
    def arena_bytes_tflm(self) -> int:
        """Estimated minimal TFLite Micro tensor arena of the int8 model (:mod:`edgenas.tflm_arena`)."""
        return self.deployed.arena_bytes_tflm()

    @cached_property
    def delegate_partitions_fp32(self) -> int:
        """XNNPACK ``DELEGATE`` nodes LiteRT makes of the fp32 ``.tflite`` (:mod:`edgenas.delegates`)."""
        return self.deployed.delegate("fp32").partitions

    @cached_property
    def delegate_partitions_int8(self) -> int:
        """XNNPACK ``DELEGATE`` nodes LiteRT makes of the full-integer ``.tflite``."""
        return self.deployed.delegate("int8").partitions

    @cached_property
    def ops_off_delegate_fp32(self) -> int:
        """Ops of the fp32 ``.tflite`` XNNPACK leaves on LiteRT's built-in kernels."""
        return self.deployed.delegate("fp32").ops_off_delegate

    @cached_property
    def ops_off_delegate_int8(self) -> int:
        """Ops of the full-integer ``.tflite`` XNNPACK leaves on LiteRT's built-in kernels."""
        return self.deployed.delegate("int8").ops_off_delegate

    def as_record(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in RECORD_FIELDS}


class SearchSpace(ABC):
    """Base class of all spaces; subclasses register with :func:`edgenas.spaces.register_space`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    default_classes: ClassVar[int]
    default_resolution: ClassVar[int]

    # -- naming ------------------------------------------------------------------------------
    @abstractmethod
    def parse_body(self, text: str) -> ArchSpec:
        """Parse the canonical body (without the ``<space>:`` prefix)."""

    @abstractmethod
    def from_json(self, obj: dict[str, Any]) -> ArchSpec:
        """Build a spec from its JSON object form (``spec.to_json()`` round-trips)."""

    def to_json(self, spec: ArchSpec) -> dict[str, Any]:
        """The JSON object form of ``spec`` (``from_json`` inverts it)."""
        return spec.to_json()

    def parse_alternative(self, text: str) -> ArchSpec | None:
        """Hook for space-specific foreign forms (NB201 arch_str, FBNet op indices)."""
        return None

    def parse(self, text: str) -> ArchSpec:
        """Parse any accepted form: canonical string (prefix optional), JSON object, foreign forms."""
        text = text.strip()
        if not text:
            raise ArchParseError(f"empty {self.name} arch string")
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ArchParseError(f"invalid {self.name} arch JSON: {exc.msg} at char {exc.pos}") from None
            if not isinstance(obj, dict):
                raise ArchParseError(f"{self.name} arch JSON must be an object")
            return self.from_json(obj)
        prefix, sep, rest = text.partition(":")
        if sep and prefix == self.name:
            return self.parse_body(rest)
        alt = self.parse_alternative(text)
        if alt is not None:
            return alt
        from edgenas.spaces import space_names

        if sep and prefix in space_names():
            raise ArchParseError(
                f"arch {text[:60]!r} belongs to space {prefix!r}, not {self.name!r}; pass --space {prefix}"
            )
        return self.parse_body(text)

    # -- sampling ----------------------------------------------------------------------------
    @abstractmethod
    def suggest(self, trial: optuna.Trial) -> ArchSpec:
        """Sample a spec define-by-run from an Optuna trial (only active choices are suggested)."""

    @abstractmethod
    def random(self, rng: random.Random) -> ArchSpec:
        """Sample uniformly at random over the searched choices."""

    def sample(self, n: int, seed: int) -> list[ArchSpec]:
        rng = random.Random(seed)
        return [self.random(rng) for _ in range(n)]

    @abstractmethod
    def trial_params(self, spec: ArchSpec) -> dict[str, Any]:
        """The Optuna parameters :meth:`suggest` produces for ``spec`` (its inverse):
        ``space.suggest(optuna.trial.FixedTrial(space.trial_params(spec))) == spec`` for every spec
        inside the searched choices. Used to enqueue known specs and by spec-level samplers."""

    def mutate(self, spec: ArchSpec, rng: random.Random, rate: float = 0.1) -> ArchSpec:
        """A random neighbour: each choice is redrawn with probability ``rate`` (at least one is)."""
        from edgenas.spaces.params import mutate

        return mutate(self, spec, rng, rate)

    def crossover(self, a: ArchSpec, b: ArchSpec, rng: random.Random) -> ArchSpec:
        """Uniform crossover of two specs' choices."""
        from edgenas.spaces.params import crossover

        return crossover(self, a, b, rng)

    def dedup_key(self, spec: ArchSpec) -> str:
        """Specs with the same key compute the same function (a search need not evaluate both).
        Default: the canonical string; ``nb201`` uses its isomorphism key."""
        return str(spec)

    def surrogate_features(self, spec: ArchSpec, task: Task | None = None) -> list[float]:
        """Features for search-time accuracy surrogates: :meth:`encode` plus log MACs and log params.
        Spaces whose specs can hold dead parts (``nb201``) describe what is live instead, so that
        specs computing the same function look the same."""
        import math

        c = self.cost(spec, task)
        return [*self.encode(spec), math.log1p(c.macs), math.log1p(c.params)]

    @abstractmethod
    def size(self) -> int:
        """Number of distinct specs over the searched choices."""

    @abstractmethod
    def choices(self) -> dict[str, str]:
        """Human-readable list of the searched choices (for ``edgenas spaces``)."""

    # -- structure ---------------------------------------------------------------------------
    @abstractmethod
    def layers(self, spec: ArchSpec, task: Task | None = None) -> list[Layer]:
        """The network as a sequence of layer descriptors."""

    def input_shape(self, spec: ArchSpec, task: Task | None = None) -> tuple[int, int, int]:
        """(C, H, W) of the network input."""
        first = self.layers(spec, task)[0]
        return (first.cin, first.hw, first.hw)

    def build(self, spec: ArchSpec, task: Task | None = None) -> nn.Module:
        """The network as a ``torch.nn.Sequential`` of its layers' modules (random init, train mode)."""
        import torch.nn as nn

        return nn.Sequential(*[layer.build() for layer in self.layers(spec, task)])

    @abstractmethod
    def encode(self, spec: ArchSpec) -> list[float]:
        """Fixed-length numeric encoding for surrogate models (length :meth:`encoding_size`)."""

    @abstractmethod
    def encoding_size(self) -> int: ...

    def covering_specs(self) -> list[ArchSpec]:
        """A small set of specs whose layer units include every unit of every searched spec (what
        ``edgenas profile`` measures). Default: a large seeded sample; spaces override it exactly."""
        return self.sample(20000, 0)

    def units(self, spec: ArchSpec, task: Task | None = None) -> list[Layer]:
        """The latency-table units of ``spec``, in execution order."""
        return [u for layer in self.layers(spec, task) for u in _layer_units(layer)]

    # -- cost --------------------------------------------------------------------------------
    def cost(self, spec: ArchSpec, task: Task | None = None) -> CostReport:
        """Analytic cost (no module is built; see :class:`CostReport`)."""
        total = Cost()
        layers = self.layers(spec, task)
        for layer in layers:
            total = total + layer_cost(layer)[0]
        return CostReport(
            arch=str(spec),
            macs=total.macs,
            params=total.params,
            peak_ram_bytes_fp32=4 * total.peak_act_elems,
            peak_ram_bytes_int8=total.peak_act_elems,
            deployed_graph=partial(_deployed, tuple(layers)),
            num_classes=int(getattr(layers[-1], "cout", 0) or self.resolve_task(task).num_classes),
            in_channels=layers[0].cin,
        )

    def resolve_task(self, task: Task | None) -> Task:
        task = task or Task()
        return Task(
            num_classes=task.num_classes or self.default_classes,
            in_channels=task.in_channels,
            resolution=task.resolution or self.default_resolution,
        )


def _deployed(layers: tuple[Layer, ...], with_ops: bool = True) -> Deployed:
    """The network's deployed graph: its layers' cached deployed graphs chained (the whole network
    lowered at once when a layer's boundary needs it; the same result, checked in the tests)."""
    from edgenas.deployed import chain, lower

    first = layers[0]
    d = chain([layer_deployed(layer) for layer in layers], (first.cin, first.hw, first.hw), with_ops=with_ops)
    return d if d is not None else lower(network_graph(layers))


@lru_cache(maxsize=1 << 16)
def _layer_units(layer: Layer) -> tuple[Layer, ...]:
    return layer.units()


def choice_error(space: str, what: str, value: object, allowed: Sequence[object], token: str) -> ArchParseError:
    """A uniform 'bad token' error naming the token, the offending value and the allowed values."""
    allowed_s = ", ".join(str(a) for a in allowed)
    return ArchParseError(f"{space} arch: bad token {token!r}: {what} {value} is not one of {{{allowed_s}}}")
