"""Shared fixtures. Tests that need the public reference data skip with a reason when it is absent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pgserver import start_for_pytest

from edgenas.paths import DATA_ENV, shared_data_dir

REPO = Path(__file__).resolve().parent.parent


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
