"""An explanation as files a person reads: ``explain.md`` (the tables), ``explain_importance.png`` and
``explain_effects.png`` (matplotlib), ``explain.html`` (the same figures, interactive, plotly) and
``explain.json`` (everything, for programs). Written atomically; plots need the ``plots`` extra, and
their absence is said in the Markdown, not an error."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from edgenas.explain.analysis import Explanation, ObjectiveExplanation
from edgenas.fileio import atomic_write

TOP = 3
"""Choices whose main effects are drawn and tabled per objective."""


def _v(x: Any, d: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        return f"{x:.{d}g}" if abs(x) >= 1000 or (x != 0 and abs(x) < 1e-3) else f"{x:.{d}f}"
    return str(x)


def as_json(expl: Explanation) -> dict[str, Any]:
    return {
        "space": expl.space, "samples": expl.samples, "seed": expl.seed, "notes": expl.notes,
        "choices": [{"name": c.name, "values": list(c.values), "everywhere": c.everywhere} for c in expl.choices],
        "objectives": [{
            "objective": o.objective.name, "direction": o.objective.direction, "trials": o.trials, "model": o.model,
            "surrogate_cv_r2": o.fit_r2,
            "effects": [{"choice": e.choice, "fanova": e.fanova, "share": e.share,
                         "means": [[v, m] for v, m in e.means.items()]} for e in o.effects]}
            for o in expl.per_objective],
        "tradeoffs": [t.__dict__ for t in expl.tradeoffs],
        "front": expl.front,
    }


def markdown(expl: Explanation, top: int = TOP, plots: list[str] | None = None, problems: list[str] | None = None,
             source: str = "") -> str:
    L = [f"# Why this front: {expl.space}" + (f" ({source})" if source else ""), ""]
    L += ["Importance of each architecture choice for each objective: **fANOVA** (Optuna's evaluator on the "
          "evaluated trials; choices present in every trial) and **share** (first-order share of the objective's "
          f"variance over a uniform sample of {expl.samples} specs of the space, from the objective's model: "
          "the cost model / latency table itself for cheap objectives, the search's GP surrogate for estimated "
          "ones). See docs/explain.md.", ""]
    L += [f"- {n}" for n in expl.notes]
    if expl.notes:
        L.append("")
    for o in expl.per_objective:
        L += _objective_section(o, top)
    L += ["## Trade-offs", ""]
    if not expl.tradeoffs:
        L += ["No choice trades a quality objective against a cost objective here (one objective, or every "
              "choice that helps one also helps or leaves the other).", ""]
    else:
        L += ["A choice trades when the values that raise the quality objective also raise the cost (conflict: "
              "minus the rank correlation of the two main effects, oriented so that +1 means the order of values "
              "best for one is exactly the reverse of the other; strength: conflict x geometric mean of the two "
              "shares).", "",
              "| choice | quality | cost | conflict | strength | best for quality | best for cost |",
              "|---|---|---|---|---|---|---|"]
        for t in expl.tradeoffs[:10]:
            L.append(f"| {t.choice} | {t.quality} | {t.cost} | {t.conflict:.2f} | {t.strength:.3f} | "
                     f"{t.best_for_quality} | {t.best_for_cost} |")
        L.append("")
    if expl.front:
        trading = list(dict.fromkeys(t.choice for t in expl.tradeoffs))[:4]
        names = [f.name for f in expl.objectives]
        L += ["## Along the front", "",
              "The front's members in order of the first cost objective, with the choices that trade most: how "
              "the search moves from cheap to good models.", "",
              "| # | " + " | ".join(names + trading) + " | arch |", "|---" * (len(names) + len(trading) + 2) + "|"]
        for i, r in enumerate(expl.front):
            cells = [_v(r.get(n)) for n in names] + [str(r["choices"].get(c, "-")) for c in trading]
            L.append(f"| {i} | " + " | ".join(cells) + f" | `{r['arch']}` |")
        L.append("")
    if plots:
        L += ["## Figures", ""] + [f"![{p}]({p})" for p in plots if p.endswith(".png")] + \
             [f"Interactive: [{p}]({p})" for p in plots if p.endswith(".html")] + [""]
    for p in problems or []:
        L.append(f"- {p}")
    return "\n".join(L).rstrip() + "\n"


def _objective_section(o: ObjectiveExplanation, top: int) -> list[str]:
    f = o.objective
    fit = f", surrogate cross-validated R^2 {o.fit_r2:.2f}" if o.fit_r2 is not None else ""
    if o.fit_r2 is not None and o.fit_r2 < 0.5:
        fit += " (it predicts less than half of the objective's variance across trials: read its shares as a weak guide"
        fit += ", fANOVA's from the trials themselves first)" if o.primary == "fanova" else ")"
    L = [f"## {f.name} ({f.direction})", "",
         f"{o.trials} trials; main effects from the {'exact cost model' if o.model == 'exact' else 'GP surrogate'}"
         f"{fit}; ranked by {'share (exact model)' if o.primary == 'share' else 'fANOVA (then share)'}.", "",
         "| rank | choice | fANOVA | share | best value | main effect (value: mean) |",
         "|---|---|---|---|---|---|"]
    for i, e in enumerate(o.effects[:max(top * 3, 10)]):
        effect = ", ".join(f"{v}: {_v(m)}" for v, m in e.means.items())
        L.append(f"| {i + 1} | {e.choice} | {_v(e.fanova)} | {e.share:.3f} | {e.best_for(f.maximize)} | {effect} |")
    rest = len(o.effects) - max(top * 3, 10)
    if rest > 0:
        L.append(f"| | ({rest} more in explain.json) | | | | |")
    return [*L, ""]


def _figures_png(expl: Explanation, top: int) -> tuple[bytes, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(expl.per_objective)
    fig, axes = plt.subplots(1, n, figsize=(5.0 * n, 0.3 * min(15, len(expl.choices)) + 1.8), squeeze=False)
    for ax, o in zip(axes[0], expl.per_objective):
        eff = o.effects[:15][::-1]
        ys = range(len(eff))
        ax.barh([y + 0.2 for y in ys], [e.share for e in eff], height=0.4, label="share (model)")
        ax.barh([y - 0.2 for y in ys], [e.fanova or 0.0 for e in eff], height=0.4, label="fANOVA (trials)")
        ax.set_yticks(list(ys), [e.choice for e in eff], fontsize=8)
        ax.set_title(f"{o.objective.name} (ranked by {o.primary})", fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    imp = _png(fig, plt)
    fig, axes = plt.subplots(n, top, figsize=(3.6 * top, 2.8 * n), squeeze=False)
    for row, o in zip(axes, expl.per_objective):
        for ax, e in zip(row, o.effects[:top]):
            ax.plot([str(v) for v in e.means], list(e.means.values()), "o-")
            ax.set_title(f"{e.choice} (share {e.share:.2f})", fontsize=9)
            ax.set_ylabel(o.objective.name, fontsize=8)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    return imp, _png(fig, plt)


def _png(fig: Any, plt: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _figure_html(expl: Explanation, top: int) -> str:
    from plotly.subplots import make_subplots

    n = len(expl.per_objective)
    fig = make_subplots(rows=n, cols=1 + top, subplot_titles=[
        t for o in expl.per_objective for t in [f"{o.objective.name}: importance"] +
        [f"{e.choice}" for e in o.effects[:top]] +
        [""] * (top - min(top, len(o.effects)))])
    for r, o in enumerate(expl.per_objective, start=1):
        eff = o.effects[:15][::-1]
        fig.add_bar(y=[e.choice for e in eff], x=[e.share for e in eff], orientation="h", name="share (model)",
                    row=r, col=1, showlegend=r == 1, marker_color="#1f77b4")
        fig.add_bar(y=[e.choice for e in eff], x=[e.fanova or 0.0 for e in eff], orientation="h",
                    name="fANOVA (trials)", row=r, col=1, showlegend=r == 1, marker_color="#ff7f0e")
        for c, e in enumerate(o.effects[:top], start=2):
            fig.add_scatter(x=[str(v) for v in e.means], y=list(e.means.values()), mode="lines+markers",
                            name=f"{o.objective.name} | {e.choice}", row=r, col=c, showlegend=False)
    fig.update_layout(height=320 * n, width=360 * (1 + top), title=f"edgenas explain: {expl.space}")
    return fig.to_html(include_plotlyjs="cdn", full_html=True)


def write_report(expl: Explanation, out: Path, top: int = TOP, plots: bool = True, source: str = "") -> list[str]:
    """Write the explanation files into ``out``; returns the names written."""
    from edgenas.extras import missing_extra

    out.mkdir(parents=True, exist_ok=True)
    written, figures, problems = [], [], []
    if plots and expl.per_objective:
        try:
            imp, eff = _figures_png(expl, top)
            atomic_write(out / "explain_importance.png", imp)
            atomic_write(out / "explain_effects.png", eff)
            figures += ["explain_importance.png", "explain_effects.png"]
        except ImportError:
            problems.append(f"PNG figures: {missing_extra('matplotlib', 'the figures')}")
        try:
            atomic_write(out / "explain.html", _figure_html(expl, top))
            figures.append("explain.html")
        except ImportError:
            problems.append(f"explain.html: {missing_extra('plotly', 'the interactive figure')}")
    atomic_write(out / "explain.json", json.dumps(as_json(expl), indent=1, default=str))
    atomic_write(out / "explain.md", markdown(expl, top, figures, problems, source))
    written += ["explain.md", "explain.json", *figures]
    return written
