"""Contract suites for plug-ins: what every space, estimator, sampler, runtime, exporter and latency
feature must do, as pytest test classes a plug-in package runs from its own tests by subclassing::

    from edgenas.testing import SpaceContract

    class TestMySpace(SpaceContract):
        space_name = "myspace"          # registered through the edgenas.spaces entry point
        space_options = {"widths": [1.0]}

edgenas runs the same suites over its own plug-ins (``tests/*/test_*_contract.py``). Helpers the suites
use are public too: :mod:`edgenas.testing.board` (a synthetic device with a complete latency table, a
search job on it) and :mod:`edgenas.testing.models` (a briefly trained model per image space, exported
once per process per format). Needs pytest (``pip install edgenas[dev]``); nothing in edgenas imports
this package.
"""

from __future__ import annotations

from edgenas.testing.estimators import EstimatorContract
from edgenas.testing.exporters import ExporterContract
from edgenas.testing.features import LatencyFeatureContract
from edgenas.testing.runtimes import RuntimeContract
from edgenas.testing.samplers import SamplerContract
from edgenas.testing.spaces import SpaceContract

__all__ = ["EstimatorContract", "ExporterContract", "LatencyFeatureContract", "RuntimeContract",
           "SamplerContract", "SpaceContract"]
