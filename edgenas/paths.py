"""Where edgenas finds data that is not inside the package.

``shared_data_dir()`` locates the public reference measurements (NAS-Bench-201 tables, published
latency tables, ...): ``$EDGENAS_DATA_DIR`` if set, else ``../shared/data`` beside a source checkout.
Nothing in edgenas requires it; features that need it say so and name the variable.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "EDGENAS_DATA_DIR"


def shared_data_dir() -> Path | None:
    env = os.environ.get(DATA_ENV)
    if env:
        p = Path(env).expanduser()
        return p if p.is_dir() else None
    checkout = Path(__file__).resolve().parent.parent
    p = checkout.parent / "shared" / "data"
    return p if p.is_dir() else None


def shared_file(*parts: str) -> Path | None:
    """A file under the shared data dir, or None when the dir or the file is absent."""
    base = shared_data_dir()
    if base is None:
        return None
    p = base.joinpath(*parts)
    return p if p.exists() else None
