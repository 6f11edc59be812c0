"""Shared fixtures and the test tiers. Tests that need the public reference data skip with a reason when
it is absent.

Tiers: ``make test`` runs everything; ``make test-fast`` (``-m "not slow"``) leaves out every test that
converts models (litert-torch, ai-edge-quantizer, TFLite Micro), starts a server, profiles latency, or
runs a search in subprocesses. :data:`SLOW_PATHS` marks whole modules; single slow tests elsewhere carry
``@pytest.mark.slow`` themselves.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # several pytest workers share the cores: one math thread each (and in every subprocess they start),
    # set before torch is imported, instead of each worker's torch spreading over every core
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")

import pytest
from pgserver import start_for_pytest

from edgenas.paths import DATA_ENV, shared_data_dir

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

SLOW_PATHS = (
    "exporters/",                       # every test converts or trains a model to convert
    "latency/test_latency_int8.py",     # int8 conversions and profiling
    "latency/test_runtime_contract.py",  # litert conversions and timing
    "latency/test_native_kit.py",       # kits of converted models run through the runners
    "search/test_search_postgres.py",   # a PostgreSQL server and worker processes
    "search/test_pgserver.py",          # a PostgreSQL server
)
"""Modules (relative to tests/) whose every test belongs to the slow tier."""

GROUP_SECONDS = {
    "latency/test_latency_int8.py": 240, "trained-models": 230, "search/test_sampler_contract.py": 95,
    "test_plugins.py": 90, "cli/test_cli.py": 85, "postgres": 75, "exporters/test_export.py": 55,
    "latency/test_latency.py": 50, "estimators/test_estimator_contract.py": 50, "search/test_search.py": 50,
    "latency/test_native_kit.py": 40, "latency/test_lut_fit.py": 40, "cli/test_benchmark_cli.py": 35,
    "test_extras.py": 30, "compress/test_deployed_models.py": 35,
}
"""Seconds each long xdist group ran in ``make test`` on a 2-core VM (2026-12-03, cold caches). Groups
are handed to the workers longest first (the longest-processing-time rule), so the workers finish
together instead of one running the last long group alone (that tail was 90 s). Only the order
matters: a stale number costs balance, never correctness; unlisted groups run after these."""


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow-tier marks (:data:`SLOW_PATHS`), and one pytest-xdist group per module unless the module
    names a wider group: a module's tests then run on one worker, so its module- and session-scoped
    fixtures (a search, a trained and exported model, a profiled table) are built once, not once per
    worker its tests were spread over (``make test`` runs ``--dist loadgroup``)."""
    slow = pytest.mark.slow
    for item in items:
        path = Path(str(item.fspath)).resolve()
        rel = path.relative_to(TESTS).as_posix() if path.is_relative_to(TESTS) else path.name
        if any(rel.startswith(p) for p in SLOW_PATHS):
            item.add_marker(slow)
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(rel))
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        first.setdefault(_group(item), i)
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda it: (-GROUP_SECONDS.get(_group(it), 0), first[_group(it)], order[id(it)]))


def _group(item: pytest.Item) -> str:
    return str(item.get_closest_marker("xdist_group").args[0])


def pytest_configure(config: pytest.Config) -> None:
    """Keep the collection order (longest groups first, above) when pytest-xdist hands out groups:
    its default re-sorts them by test count, which put the 6-test, 4-minute int8 group last."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip(f"public reference data not found (../shared/data beside the checkout, or ${DATA_ENV})")
    return d


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def isolated_user_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tests never read or write the real ~/.edgenas: device specs and tables go to a temp folder."""
    d = tmp_path_factory.mktemp("edgenas-home")
    monkeypatch.setenv("EDGENAS_DEVICES_DIR", str(d))
    return d


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL (postgresql+psycopg://edgenas@127.0.0.1:<port>/edgenas) of a throwaway PostgreSQL server for the
    session. Skips with the reason only when no server binaries exist and none can be installed (fails
    instead when $EDGENAS_REQUIRE_POSTGRES is set, as in CI); fails if the binaries exist but the server
    won't start. Give each study its own name."""
    server = start_for_pytest()
    try:
        yield server.url
    finally:
        server.stop()
