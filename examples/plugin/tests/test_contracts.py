"""The example plug-ins pass edgenas' contract suites (run with the package installed:
``pip install -e examples/plugin`` then ``python -m pytest examples/plugin/tests``)."""

from __future__ import annotations

import pytest
from edgenas.errors import EdgenasError
from edgenas.latency.runtimes import get_runtime
from edgenas.registry import GROUPS
from edgenas.testing import (
    EstimatorContract,
    ExporterContract,
    LatencyFeatureContract,
    RuntimeContract,
    SamplerContract,
    SpaceContract,
)
from edgenas.testing.models import add_model

add_model("nano", {"resolutions": [32]}, data="digits", epochs=3)  # a trained nano model for the exporter


class TestNanoSpace(SpaceContract):
    space_name = "nano"


class TestNanoSpaceAtOneResolution(SpaceContract):
    space_name = "nano"
    space_options = {"widths": [1.0], "resolutions": [48]}


class TestZenScore(EstimatorContract):
    estimator_name = "zen-score"
    estimator_options = {"batch_size": 4}
    space_name = "nano"


class TestZenScoreOnNB201(EstimatorContract):
    """nb201 holds members whose output does not depend on the input: they must score the worst."""

    estimator_name = "zen-score"
    estimator_options = {"batch_size": 4}
    space_name = "nb201"
    worst_on_degenerate = True


class TestQMCSampler(SamplerContract):
    sampler_name = "qmc"


class TestTorchRuntime(RuntimeContract):
    runtime_name = "torch"
    runtime_options = {"channels_last": True}


class TestTorchExport(ExporterContract):
    exporter_name = "torch-export"
    model_spaces = ("tiny", "nano")


class TestDepthwiseMacs(LatencyFeatureContract):
    feature_name = "dw_macs_m"
    space_names = ("nano", "tiny")


def test_every_plugin_came_through_its_entry_point():
    """Each plug-in is known to edgenas as coming from this distribution (not from edgenas)."""
    from edgenas.estimators import ESTIMATORS
    from edgenas.exporters import EXPORTERS
    from edgenas.latency.features import FEATURES
    from edgenas.latency.runtimes import RUNTIMES
    from edgenas.search.samplers import SAMPLERS
    from edgenas.spaces import SPACES

    registries = {"space": (SPACES, "nano"), "estimator": (ESTIMATORS, "zen-score"), "sampler": (SAMPLERS, "qmc"),
                  "runtime": (RUNTIMES, "torch"), "exporter": (EXPORTERS, "torch-export"),
                  "latency feature": (FEATURES, "dw_macs_m")}
    assert set(registries) == set(GROUPS)
    for kind, (registry, name) in registries.items():
        assert registry.group == GROUPS[kind]
        entry = registry.entry(name)
        assert entry.origin == "edgenas-example-plugin" and not entry.builtin, (kind, entry.origin)


def test_runtime_refuses_unknown_or_mistyped_options():
    with pytest.raises(EdgenasError, match="unknown option 'fast'"):
        get_runtime("torch", options={"fast": True})
    with pytest.raises(EdgenasError, match="must be a bool"):
        get_runtime("torch", options={"channels_last": "yes"})


def test_sampler_and_estimator_refuse_bad_values():
    from edgenas.estimators import get_estimator
    from edgenas.search.samplers import SAMPLERS
    from edgenas.spaces import get_space

    with pytest.raises(EdgenasError, match="alpha must be in"):
        get_estimator("zen-score", get_space("nano"), alpha=2.0)
    with pytest.raises(EdgenasError, match="qmc_type must be one of"):
        SAMPLERS.get("qmc")(None, 0, qmc_type="lattice")
