"""A mixin for contract suites whose tests write devices or tables: every test gets its own user folder
(``$EDGENAS_DEVICES_DIR``), so a suite never writes to ``~/.edgenas``."""

from __future__ import annotations

from pathlib import Path

import pytest


class IsolatedUserDir:
    """Adds the autouse fixture ``_edgenas_user_dir`` (the temporary user folder, also usable by name)."""

    @pytest.fixture(autouse=True)
    def _edgenas_user_dir(self, tmp_path_factory: pytest.TempPathFactory,
                          monkeypatch: pytest.MonkeyPatch) -> Path:
        d = tmp_path_factory.mktemp("edgenas-home")
        monkeypatch.setenv("EDGENAS_DEVICES_DIR", str(d))
        return d
