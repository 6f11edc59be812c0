"""Tabular ground truth: look scores up in a CSV (e.g. NAS-Bench-201's accuracies).

The table needs an arch column — ``arch`` (canonical strings), ``arch_str`` (NB201's official form) or
``op_idx_list`` (HW-NAS-Bench's FBNet form); any form the space parses works; for ``nb201`` NAS-Bench-201's
``index`` also works — and a numeric score
column (option ``column``; default ``cifar10_test_200ep`` when present, else ``score``). For the
``nb201`` space ``path`` defaults to the shared data copy of ``nb201/nb201_cifar10.csv``, whose
``cifar10_test_200ep`` is in percent; its other columns are ``cifar10_test_12ep`` and
``cifar10valid_val_12ep``. Rows are keyed by canonical string, so any spelling of an arch finds its
row. A spec missing from the table raises :class:`EdgenasError`; an empty or non-numeric cell scores
:data:`~edgenas.estimators.base.WORST_SCORE`.

``seconds`` is the lookup time: the table's own (training) cost is not known here, so ``epochs`` and
``samples`` are 0.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from edgenas.archio import read_arch_column
from edgenas.errors import EdgenasError
from edgenas.estimators.base import WORST_SCORE, BatchEstimator, register_estimator
from edgenas.paths import DATA_ENV, shared_file

if TYPE_CHECKING:
    from edgenas.spaces.base import ArchSpec, SearchSpace, Task

NB201_DEFAULT_COLUMN = "cifar10_test_200ep"


@cache
def _read_table(space: SearchSpace, path: str, column: str | None) -> tuple[str, dict[str, float]]:
    """(score column, canonical string -> score); ``column`` None picks the NB201 default or ``score``.
    A cell that is not a number scores :data:`WORST_SCORE`."""
    if column is None:
        header = _header(path)
        column = NB201_DEFAULT_COLUMN if NB201_DEFAULT_COLUMN in header else "score"
    rows = read_arch_column(path, space, column, bad="keep")
    return column, {str(r.spec): (WORST_SCORE if r.value is None else r.value) for r in rows}


def _header(path: str) -> list[str]:
    import csv

    try:
        with open(path, newline="") as f:
            return [h.strip() for h in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []  # read_arch_column names the problem


@register_estimator
class Tabular(BatchEstimator):
    name = "tabular"
    summary = "look scores up in a CSV table (NB201 accuracies by default; path=, column=)"
    seeded = False

    def __init__(
        self, space: SearchSpace, task: Task | None = None, seed: int = 0,
        path: str | None = None, column: str | None = None,
    ) -> None:
        """``path``: the CSV (default for nb201: the shared NB201 table); ``column``: the score column
        (default ``cifar10_test_200ep`` when the table has it, else ``score``)."""
        super().__init__(space, task, seed)
        default = shared_file("nb201", "nb201_cifar10.csv") if space.name == "nb201" else None
        if path is None and default is None:
            where = f"set {DATA_ENV} to the shared data folder or " if space.name == "nb201" else ""
            raise EdgenasError(f"tabular needs a table: {where}pass the option path=CSV")
        self.path = Path(path) if path else default
        self.column, self.table = _read_table(space, str(self.path), column)

    def _scores(self, specs: list[ArchSpec]) -> list[float]:
        out = []
        for s in specs:
            key = str(s)
            if key not in self.table:
                raise EdgenasError(f"arch {key} is not in table {str(self.path)!r}")
            out.append(self.table[key])
        return out
