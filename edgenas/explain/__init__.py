"""``edgenas explain RUN_DIR``: why a finished search's front looks the way it does (see
:mod:`edgenas.explain.analysis` for the method, :mod:`edgenas.explain.report` for the files)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from optuna.trial import TrialState

from edgenas.explain.analysis import Explanation, explain
from edgenas.explain.report import write_report
from edgenas.names import check_name
from edgenas.search.fields import Field
from edgenas.spaces import ArchSpec


@dataclass
class ExplainJob:
    """What ``edgenas explain`` does: read ``run_dir``'s study, explain it, write the files into ``out``
    (default: the run folder)."""

    run_dir: str
    out: str | None = None
    samples: int = 64
    """Uniform specs of the space the main effects average over (each costs one prediction per value of
    every choice)."""
    seed: int = 0
    top: int = 3
    plots: bool = True
    storage: str | None = None
    study: str | None = None
    devices_dir: str | None = None

    def __post_init__(self) -> None:
        from edgenas.errors import EdgenasError

        if self.samples < 8:
            raise EdgenasError(f"samples must be >= 8, got {self.samples}")
        if self.top < 1:
            raise EdgenasError(f"top must be >= 1, got {self.top}")
        if self.study is not None:
            check_name(self.study, "study")


def explain_run(job: ExplainJob) -> tuple[Explanation, Path, list[str]]:
    """Explain the search of ``job.run_dir``; returns the explanation, the folder written and its files."""
    from edgenas.search.front import trial_row
    from edgenas.search.record import TABLES_ATTR
    from edgenas.search.run import read_front
    from edgenas.search.runfolder import RunFolder

    view = read_front(job.run_dir, job.storage, job.study, job.devices_dir)
    out = Path(job.out) if job.out else Path(job.run_dir)
    RunFolder(out).check_writable()
    search = view.job
    search.use_tables(view.study.user_attrs.get(TABLES_ATTR) or {})
    oracle = search.oracle
    space = search.space
    rows: dict[str, dict] = {}
    for t in view.trials:
        if t.state != TrialState.COMPLETE:
            continue
        r = trial_row(t, search.objectives)
        if r.get("arch"):
            rows.setdefault(str(r["arch"]), r)  # a repeated spec (resume, workers): its first evaluation
    specs = [space.parse(a) for a in rows]
    values = {f.name: np.array([_number(r.get(f.name)) for r in rows.values()]) for f in search.objectives}

    def exact(field: Field, batch: list[ArchSpec]) -> list[float]:  # the search's own cost model and tables
        return [rec.get(field.name, np.nan) for rec in oracle.records(batch)]

    expl = explain(space, search.task, search.objectives, specs, values, view.front, exact=exact,
                   samples=job.samples, seed=job.seed)
    written = write_report(expl, out, top=job.top, plots=job.plots, source=str(job.run_dir))
    return expl, out, written


def _number(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


__all__ = ["ExplainJob", "Explanation", "explain", "explain_run", "write_report"]
