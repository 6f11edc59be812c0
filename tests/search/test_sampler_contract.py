"""The sampler contract (:class:`edgenas.testing.SamplerContract`) over every registered sampler,
Optuna's and edgenas' own, each with settings small enough to leave its random start-up phase within
a short test."""

from __future__ import annotations

from typing import Any

import pytest

from edgenas.search.samplers import SAMPLERS as REGISTRY
from edgenas.search.samplers import sampler_names
from edgenas.testing import SamplerContract

SAMPLERS = [e.name for e in REGISTRY.entries() if e.builtin]
"""edgenas' own and Optuna's samplers as edgenas registers them (plug-ins run the contract from their own tests)."""
FAST = {"nsga2": {"population_size": 8}, "tpe": {"n_startup_trials": 5}, "gp": {"n_startup_trials": 7},
        "frontier": {"init": 5, "batch": 3, "pool": 200}, "evolution": {"population": 8}, "rl": {"warmup": 4}}


def test_every_sampler_is_registered():
    builtins = {"nsga2", "tpe", "gp", "random", "frontier", "evolution", "random-feasible", "rl"}
    assert builtins <= set(sampler_names())


class TestBuiltinSamplers(SamplerContract):
    # GP-based samplers refit a surrogate every trial (seconds per test): in the slow tier
    @pytest.fixture(params=[pytest.param(n, marks=pytest.mark.slow) if n in ("gp", "frontier") else n
                            for n in SAMPLERS])
    def name(self, request: pytest.FixtureRequest) -> str:
        return request.param

    @pytest.fixture
    def options(self, name: str) -> dict[str, Any]:
        return FAST.get(name, {})
