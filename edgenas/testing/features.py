"""The latency-feature contract suite (:class:`LatencyFeatureContract`).

A latency feature is a named function ``f(space, spec, task) -> float`` that a device model's ``terms``
price (ms per unit of the feature). Every feature must: be registered under its name; give a finite
float for members of the spaces it is meant for, the same for equal specs (parsed anew) and depending
only on the spec and task; and work inside a saved latency table: a table whose device model has a term
on it loads from JSON (the name, never code) and predicts the affine part plus coefficient x feature.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import pytest

from edgenas.latency.features import FEATURES, spec_features
from edgenas.spaces import Task, get_space
from edgenas.testing.board import BOARD, write_board
from edgenas.testing.isolation import IsolatedUserDir


class LatencyFeatureContract(IsolatedUserDir):
    """Subclass as ``class TestMyFeature(LatencyFeatureContract): feature_name = "mine"`` with
    ``space_names`` (spaces the feature is meant for; default ``("tiny",)``)."""

    feature_name: ClassVar[str] = ""
    space_names: ClassVar[tuple[str, ...]] = ("tiny",)
    space_options: ClassVar[dict[str, dict[str, Any]]] = {}
    """Per space name: its options (keep the space small; the table test writes a complete table)."""

    @pytest.fixture
    def name(self) -> str:
        if not self.feature_name:
            pytest.fail(f"{type(self).__name__} must set feature_name (or override the 'name' fixture)")
        return self.feature_name

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "space_name" in metafunc.fixturenames:
            metafunc.parametrize("space_name", list(self.space_names))

    # -- the contract ---------------------------------------------------------------------------
    def test_registered(self, name: str) -> None:
        assert name in FEATURES and name in FEATURES.names()
        assert callable(FEATURES.get(name))

    def test_finite_and_a_function_of_the_spec(self, name: str, space_name: str) -> None:
        space = get_space(space_name, **self.space_options.get(space_name, {}))
        for task in (None, Task(num_classes=3, in_channels=1)):
            for spec in space.sample(10, seed=21):
                v = spec_features([name], space, spec, task)[name]
                assert isinstance(v, float) and math.isfinite(v), (str(spec), v)
                again = spec_features([name], space, space.parse(str(spec)), task)[name]
                assert again == v

    def test_priced_by_a_saved_table(self, name: str, space_name: str, _edgenas_user_dir: Path) -> None:
        from edgenas.latency.devices import DeviceStore
        from edgenas.latency.predict import LatencyPredictor
        from edgenas.latency.table import LatencyTable

        opts = self.space_options.get(space_name, {})
        space = get_space(space_name, **opts)
        path = write_board(_edgenas_user_dir, space_name, **opts)
        store = DeviceStore(_edgenas_user_dir)
        specs = space.sample(5, seed=22)
        base = LatencyPredictor(space, BOARD, store, show_progress=False).predict_many(specs)
        table = LatencyTable.load(path)
        table.model.terms = {name: 0.25}
        table.save(path)
        reloaded = LatencyTable.load(path)
        assert reloaded.model.terms == {name: 0.25}
        priced = LatencyPredictor(space, BOARD, store, show_progress=False).predict_many(specs)
        for spec, b, p in zip(specs, base, priced):
            feature = spec_features([name], space, spec)[name]
            assert p == pytest.approx(b + 0.25 * feature, rel=1e-9, abs=1e-12), str(spec)
