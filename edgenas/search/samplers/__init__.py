"""Samplers: Optuna's (``nsga2``, ``tpe``, ``gp``, ``random``) and edgenas' own spec-level samplers
(``frontier``, ``evolution``, ``random-feasible``), one registry for all (see
:mod:`edgenas.search.samplers.base`)."""

from __future__ import annotations

from edgenas.search.samplers.base import (
    ARCH_ATTR,
    RECORD_ATTR,
    SearchContext,
    SpecSampler,
    get_sampler,
    register_sampler,
    sampler_entry,
    sampler_names,
    sampler_options,
)

_LOADED = False


def _load_builtins() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from edgenas.search.samplers import evolution, frontier, stock  # noqa: F401  (registration side effect)


__all__ = ["ARCH_ATTR", "RECORD_ATTR", "SearchContext", "SpecSampler", "get_sampler", "register_sampler",
           "sampler_entry", "sampler_names", "sampler_options"]
