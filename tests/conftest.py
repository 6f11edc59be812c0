"""Shared fixtures. Tests that need the public reference data skip with a reason when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

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
