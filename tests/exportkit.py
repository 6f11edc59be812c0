"""The export tests' helpers live in :mod:`edgenas.testing.models` (one briefly trained model per image
space, exported once per session per format); re-exported here for the tests that import ``exportkit``."""

from __future__ import annotations

from edgenas.testing.models import (
    IMAGE_SPACES,
    MODELS,
    SYNTHETIC,
    TRAIN,
    Trained,
    add_model,
    exported,
    formats,
    trained,
)

__all__ = ["IMAGE_SPACES", "MODELS", "SYNTHETIC", "TRAIN", "Trained", "add_model", "exported", "formats", "trained"]
