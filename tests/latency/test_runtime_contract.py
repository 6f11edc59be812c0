"""The runtime contract (:class:`edgenas.testing.RuntimeContract`) over every registered device runtime,
each with an option a device spec would give it."""

from __future__ import annotations

from typing import Any

import pytest

from edgenas.latency.runtimes import RUNTIMES, runtime_names
from edgenas.testing import RuntimeContract

BUILTINS = [e.name for e in RUNTIMES.entries() if e.builtin]
"""edgenas' own runtimes (installed plug-ins run the contract from their own tests)."""
OPTIONS = {"onnxruntime": {"graph_optimization_level": "basic"}, "litert": {"precision": "int8"}}
"""Per runtime: options its device specs use (litert int8: full-integer models, quantized on export)."""


def test_builtin_runtimes_are_registered():
    assert {"onnxruntime", "litert"} <= set(runtime_names())


class TestBuiltinRuntimes(RuntimeContract):
    @pytest.fixture(params=BUILTINS)
    def name(self, request: pytest.FixtureRequest) -> str:
        return request.param

    @pytest.fixture
    def options(self, name: str) -> dict[str, Any]:
        return OPTIONS.get(name, {})
