"""Specs as Optuna parameters, and the generic variation operators built on them.

A space samples define-by-run (:meth:`SearchSpace.suggest`); :meth:`SearchSpace.trial_params` is its
inverse: the parameter dict a trial would hold for a spec. With both, a spec can be replayed through a
:class:`ReplayTrial` that keeps some parameters and draws the others afresh, which gives mutation and
crossover for every space without space-specific code (a changed depth draws the blocks it adds).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgenas.spaces.base import ArchSpec, SearchSpace


class ReplayTrial:
    """A stand-in for ``optuna.Trial`` inside ``space.suggest``: a parameter present in ``params``
    (and chosen by ``keep``) is returned as given, any other is drawn uniformly with ``rng``.

    ``distributions`` records every parameter the space asked for, with its choices, so a caller can
    learn a space's parameters by replaying one spec. ``draw(name, choices)`` replaces the uniform draw
    (the ``rl`` sampler's policy draws through it).
    """

    def __init__(self, params: Mapping[str, Any], rng: random.Random, keep: Any = None,
                 draw: Callable[[str, list[Any]], Any] | None = None) -> None:
        self.params = dict(params)
        self.rng = rng
        self.keep = keep or (lambda name: True)
        self.draw = draw or (lambda name, choices: self.rng.choice(choices))
        self.distributions: dict[str, tuple[Any, ...]] = {}
        self.values: dict[str, Any] = {}

    def _pick(self, name: str, choices: Sequence[Any]) -> Any:
        self.distributions[name] = tuple(choices)
        if name in self.params and self.params[name] in choices and self.keep(name):
            value = self.params[name]
        else:
            value = self.draw(name, list(choices))
        self.values[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._pick(name, choices)

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return int(self._pick(name, range(low, high + 1, step)))

    def replayed(self, name: str) -> bool:
        """Whether parameter ``name`` was given in ``params`` (within its choices), not drawn."""
        return name in self.params and self.params[name] in self.distributions.get(name, ())


def mutate(space: SearchSpace, spec: ArchSpec, rng: random.Random, rate: float) -> ArchSpec:
    """Each parameter is redrawn with probability ``rate`` (at least one is, so the result differs
    from ``spec`` unless the redraw picks the same value); parameters the new spec gains are drawn."""
    params = space.trial_params(spec)
    names = list(params)
    forced = rng.choice(names) if names else None
    return space.suggest(ReplayTrial(params, rng, keep=lambda n: n != forced and rng.random() >= rate))  # type: ignore[arg-type]


def crossover(space: SearchSpace, a: ArchSpec, b: ArchSpec, rng: random.Random) -> ArchSpec:
    """Uniform crossover: each parameter comes from ``a`` or ``b`` with equal odds (from whichever
    has it when only one does)."""
    pa, pb = space.trial_params(a), space.trial_params(b)
    mixed = {}
    for name in {**pa, **pb}:
        if name in pa and name in pb:
            mixed[name] = pa[name] if rng.random() < 0.5 else pb[name]
        else:
            mixed[name] = pa.get(name, pb.get(name))
    return space.suggest(ReplayTrial(mixed, rng))  # type: ignore[arg-type]


def param_choices(space: SearchSpace, spec: ArchSpec) -> dict[str, tuple[Any, ...]]:
    """The parameters (and their choices) ``space.suggest`` asks for when it produces ``spec``."""
    trial = ReplayTrial(space.trial_params(spec), random.Random(0))
    space.suggest(trial)  # type: ignore[arg-type]
    return trial.distributions
