"""The search tests' helpers live in :mod:`edgenas.testing.board` (a synthetic board with a complete
latency table, a search job on it); re-exported here for the tests that import ``searchkit``."""

from __future__ import annotations

from edgenas.testing.board import BOARD, load_json, make_job, run_trials, unit_ms, user_dir, write_board

__all__ = ["BOARD", "load_json", "make_job", "run_trials", "unit_ms", "user_dir", "write_board"]
