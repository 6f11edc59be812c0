"""The run directory of a search: what a person reads and what a program loads.

``front.csv`` / ``front.json`` (the feasible Pareto front: canonical arch, every objective, every cost,
the estimator record), ``trials.csv`` (every trial), ``pareto.png`` (matplotlib: accuracy against each
cost objective, budgets drawn), ``plots/*.html`` (Optuna's interactive plots), ``config.json`` (the
resolved job) and ``run.json`` (storage, study, versions, seeds, counts, wall time, the search's own cost;
written last, so a run folder with it is complete). Every file is written to a temporary name and renamed,
so an interrupted write never leaves half a file.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import platform
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna

from edgenas.fileio import atomic_write
from edgenas.search.fields import Budget, Field, format_value
from edgenas.search.front import FrontState, front_rows, trial_row

PLOT_FILE = "pareto.png"


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("edgenas", "optuna", "torch", "numpy", "scikit-learn", "onnxruntime", "ai-edge-litert"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def columns_of(rows: Sequence[dict[str, Any]], first: Sequence[str]) -> list[str]:
    cols = list(first)
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()})
    return buf.getvalue()


def write_run_files(
    run_dir: Path, study: optuna.Study, trials: list[optuna.trial.FrozenTrial], state: FrontState,
    run_info: dict[str, Any], plots: bool = True, late_info: Callable[[], dict[str, Any]] | None = None,
) -> list[str]:
    """Write every result file; returns the names written (plots that failed are reported, not fatal).
    ``late_info`` adds fields to run.json computed after every other file is written (the search's own
    cost, which then includes writing them)."""
    objectives = state.objectives
    first = ["trial", "arch", *(f.name for f in objectives), "status"]
    front = front_rows(trials, state)
    all_rows = [trial_row(t, objectives) for t in trials]
    written = []
    atomic_write(run_dir / "front.csv", to_csv(front, columns_of(front, first)))
    atomic_write(run_dir / "front.json", json.dumps(front, indent=1, default=str) + "\n")
    atomic_write(run_dir / "trials.csv", to_csv(all_rows, columns_of(all_rows, [*first, "state"])))
    written += ["front.csv", "front.json", "trials.csv"]
    info = {**run_info, "versions": versions(), "counts": {
        "finished": state.finished, "feasible": state.feasible, "scored": state.evaluated,
        "rejected": state.rejected,
        "front": len(front)}, "hypervolume": state.hypervolume(),
        "hypervolume_reference": dict(zip((f.name for f in objectives), map(float, _natural(state))))}
    if plots:
        problems = []
        try:
            pareto_png(run_dir / PLOT_FILE, all_rows, front, objectives, state.budgets)
            written.append(PLOT_FILE)
        except ModuleNotFoundError as exc:  # the [plots] extra is not installed
            from edgenas.extras import missing_extra

            problems.append(f"{PLOT_FILE}: {missing_extra((exc.name or '').split('.')[0], 'the plot')}")
        except Exception as exc:  # plotting must never lose the results above
            problems.append(f"{PLOT_FILE}: {exc.__class__.__name__}: {exc}")
        names, more = optuna_html(run_dir / "plots", study, objectives, state)
        written += [f"plots/{n}" for n in names]
        problems += more
        for p in problems:
            print(f"edgenas: could not write {p}", file=sys.stderr)
    if late_info is not None:
        info.update(late_info())
    atomic_write(run_dir / "run.json", json.dumps(info, indent=1, default=str) + "\n")
    written.append("run.json")
    return written


def _natural(state: FrontState) -> list[float]:
    ref = state.reference_point()
    return [-v if f.maximize else v for v, f in zip(ref, state.objectives)]


def pareto_png(path: Path, rows: list[dict[str, Any]], front: list[dict[str, Any]], objectives: list[Field],
               budgets: list[Budget]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = next((f for f in objectives if not f.cheap), None)
    cheap = [f for f in objectives if f.cheap]
    # budgets on fields that are not objectives get their own panel, so every budget line is drawn
    bounded = [b.field for b in budgets if b.field.cheap and b.field.name not in {f.name for f in cheap}]
    cheap += list({f.name: f for f in bounded}.values())
    pairs = [(c, acc) for c in cheap] if acc is not None else list(itertools.pairwise(cheap))
    if not pairs:
        pairs = [(objectives[0], objectives[0])]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.2 * len(pairs), 4.2), squeeze=False)
    ok = [r for r in rows if r.get("feasible") and all(_finite(r.get(f.name)) for f in objectives)]
    bad = [r for r in rows if r.get("feasible") is False]
    for ax, (fx, fy) in zip(axes[0], pairs):
        if ok:
            ax.scatter([r[fx.name] for r in ok], [r[fy.name] for r in ok], s=14, c="0.6", label="evaluated")
        if bad and fy.cheap:
            ax.scatter([r[fx.name] for r in bad], [r[fy.name] for r in bad], s=10, marker="x", c="tab:red",
                       alpha=0.4, label="over budget")
        elif bad:
            ax.scatter([r[fx.name] for r in bad], [ax.get_ylim()[0]] * len(bad), s=10, marker="|", c="tab:red",
                       alpha=0.5, label="over budget (not evaluated)")
        fr = sorted(front, key=lambda r: r[fx.name])
        if fr:  # a line only where both axes are objectives (elsewhere the front is a projection)
            is_obj = {f.name for f in objectives}
            style = "o-" if fx.name in is_obj and fy.name in is_obj else "o"
            ax.plot([r[fx.name] for r in fr], [r[fy.name] for r in fr], style, c="tab:blue", ms=5, lw=1,
                    label="Pareto front")
        for b in budgets:
            if b.field.name == fx.name:
                ax.axvline(b.limit, ls="--", c="tab:red", lw=1)
                ax.text(b.limit, ax.get_ylim()[1], f" {b.describe()}", color="tab:red", va="top", fontsize=8,
                        rotation=90)
            if b.field.name == fy.name:
                ax.axhline(b.limit, ls="--", c="tab:red", lw=1)
                ax.text(ax.get_xlim()[0], b.limit, f" {b.describe()}", color="tab:red", va="bottom", fontsize=8)
        ax.set_xlabel(_label(fx))
        ax.set_ylabel(_label(fy))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def _label(f: Field) -> str:
    unit = " (bytes)" if f.unit == "B" else ""
    return f"{f.name}{unit} {'↑' if f.maximize else '↓'}"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and v == v and abs(v) != float("inf")


def optuna_html(folder: Path, study: optuna.Study, objectives: list[Field],
                state: FrontState) -> tuple[list[str], list[str]]:
    """Optuna's own interactive plots (plotly). Returns (written, problems)."""
    try:
        import optuna.visualization as vis

        if not vis.is_available():
            from edgenas.extras import missing_extra

            return [], [f"plots/*.html: {missing_extra('plotly', 'the interactive plots')}"]
    except ImportError:
        return [], ["plots/*.html: optuna.visualization unavailable"]
    folder.mkdir(exist_ok=True)
    names = [f.name for f in objectives]
    acc_i = next((i for i, f in enumerate(objectives) if not f.cheap), 0)
    ref = state.reference_point()
    # Optuna's hypervolume plot takes the reference in the study's own directions
    ref_natural = [-v if f.maximize else v for v, f in zip(ref, objectives)]
    jobs: list[tuple[str, Any]] = []
    if len(objectives) >= 2:
        jobs.append(("pareto_front.html", lambda: vis.plot_pareto_front(study, target_names=names)))
        jobs.append(("hypervolume_history.html",
                     lambda: vis.plot_hypervolume_history(study, reference_point=ref_natural)))
    jobs.append(("optimization_history.html", lambda: vis.plot_optimization_history(
        study, target=(lambda t: t.values[acc_i]) if len(objectives) > 1 else None, target_name=names[acc_i])))
    jobs.append(("param_importances.html", lambda: vis.plot_param_importances(
        study, target=(lambda t: t.values[acc_i]) if len(objectives) > 1 else None, target_name=names[acc_i])))
    written, problems = [], []
    logger = logging.getLogger("optuna")
    for name, make in jobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                level = logger.level
                logger.setLevel(logging.ERROR)
                try:
                    fig = make()
                finally:
                    logger.setLevel(level)
            atomic_write(folder / name, fig.to_html(include_plotlyjs="cdn", full_html=True))
            written.append(name)
        except Exception as exc:  # one plot's failure (e.g. too few trials) must not stop the others
            problems.append(f"plots/{name}: {exc.__class__.__name__}: {str(exc)[:200]}")
    return written, problems


def front_table(front: list[dict[str, Any]], objectives: list[Field], extra: Sequence[str] = ()) -> str:
    """The front as an aligned table for the terminal (objectives, then key costs, then the arch)."""
    from edgenas.report import format_table

    cols = ["trial", *(f.name for f in objectives)]
    cols += [c for c in extra if c not in cols]
    cols.append("arch")
    rows = [{**r, "trial": str(r["trial"])} for r in front]
    return format_table(rows, cols)


def front_report(front: list[dict[str, Any]], objectives: Sequence[Field], state: FrontState, estimator: str = "",
                 budgets: Sequence[Budget] = ()) -> str:
    """The front for people: a headline (sizes, counts, hypervolume, the accuracy's source) and a table
    of the objectives, the budgeted fields (what the user asked to hold), key costs and the arch."""
    extra = list(dict.fromkeys([*(b.field.name for b in budgets), "macs", "params", "peak_ram_bytes_int8",
                                "size_bytes_int8"]))
    rejected = f", {state.rejected} rejected by the estimator" if state.rejected else ""
    head = (f"Pareto front: {len(front)} of {state.evaluated} scored candidates ({state.finished} trials, "
            f"{state.feasible} within budgets{rejected}); hypervolume {state.hypervolume():.4g}"
            + (f"; accuracy = {estimator}" if estimator and any(not f.cheap for f in objectives) else ""))
    return head + "\n" + front_table(front, list(objectives), extra)


def describe_budgets(budgets: list[Budget]) -> str:
    return ", ".join(b.describe() for b in budgets) or "none"


def objective_names(objectives: list[Field]) -> str:
    return ", ".join(f"{f.name} {'↑' if f.maximize else '↓'}" for f in objectives)


__all__ = [
    "describe_budgets",
    "format_value",
    "front_report",
    "front_table",
    "objective_names",
    "versions",
    "write_run_files",
]
