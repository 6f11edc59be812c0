"""Samplers: Optuna's (``nsga2``, ``tpe``, ``gp``, ``random``) and edgenas' own spec-level samplers
(``frontier``, ``evolution``, ``random-feasible``, ``rl``), one registry for all (see
:mod:`edgenas.search.samplers.base`); third-party samplers through the ``edgenas.samplers`` entry points."""

from __future__ import annotations

from edgenas.search.samplers.base import (
    SAMPLERS,
    SearchContext,
    SpecSampler,
    get_sampler,
    register_sampler,
    sampler_entry,
    sampler_names,
    sampler_options,
)

__all__ = ["SAMPLERS", "SearchContext", "SpecSampler", "get_sampler", "register_sampler", "sampler_entry",
           "sampler_names", "sampler_options"]
