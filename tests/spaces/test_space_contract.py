"""The space contract (:class:`edgenas.testing.SpaceContract`) over every registered search space and
notable option variants."""

from __future__ import annotations

import pytest

from edgenas import Task, get_space, space_names
from edgenas.spaces import SPACES, SearchSpace
from edgenas.testing import SpaceContract

BUILTINS = [e.name for e in SPACES.entries() if e.builtin and e.name != "model"]
"""edgenas' own spaces (installed plug-ins run the contract from their own tests; ``model`` needs a source
model and runs it in tests/compress)."""
VARIANTS = [(name, {}) for name in BUILTINS] + [
    ("mbv3", {"widths": [1.0]}),
    ("mbv3", {"resolution_step": 16}),
    ("fbnet", {"layout": "imagenet"}),
]
IDS = [n + ("-" + "-".join(f"{k}={v}" for k, v in o.items()) if o else "") for n, o in VARIANTS]


def test_every_builtin_space_is_registered():
    assert {"mbv3", "tiny", "nb201", "fbnet", "proxyless"} <= set(space_names())


class TestBuiltinSpaces(SpaceContract):
    @pytest.fixture(params=VARIANTS, ids=IDS)
    def space(self, request: pytest.FixtureRequest) -> SearchSpace:
        name, opts = request.param
        return get_space(name, **opts)

    def cost_task(self, space: SearchSpace) -> Task | None:
        return Task(num_classes=10) if space.name == "mbv3" else None  # a 1000-class head only slows counting
