"""``edgenas explain``: on a synthetic NB201 task whose ground truth is known by construction (accuracy
driven by one edge, latency by another, one edge raising both), a real search's explanation ranks the
right choices first and finds the trade-off; the files are written; bad input is one line, exit 2."""

from __future__ import annotations

import csv
import json
import random

import pytest

from edgenas.cli.main import main
from edgenas.explain import ExplainJob, explain_run
from edgenas.explain.analysis import share, spearman, tradeoffs
from edgenas.jobs import JobConfig
from edgenas.search.run import run_search
from edgenas.spaces import get_space
from edgenas.spaces.params import param_choices


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """Every NB201 cell scored by a known rule: accuracy grows with the op index of edge ``a`` (3<-0, which
    reaches the output whatever the other edges are: the search's surrogate describes live cells, so a rule
    on an edge that other edges can cut off would not be a cell's accuracy); latency grows with edge ``b``
    (strongly) and with ``a`` (less): ``a`` is the trade-off. A 40-trial random search through the job
    layer, then the explanation."""
    tmp = tmp_path_factory.mktemp("explain")
    space = get_space("nb201")
    first = space.from_index(0)
    names = list(space.trial_params(first))
    ops = list(param_choices(space, first)[names[0]])
    a, b = "e30", "e20"
    assert {a, b} <= set(names)
    rng = random.Random(0)
    with open(tmp / "acc.csv", "w", newline="") as fa, open(tmp / "lat.csv", "w", newline="") as fl:
        wa, wl = csv.writer(fa), csv.writer(fl)
        wa.writerow(["index", "score"])
        wl.writerow(["index", "board"])
        for i in range(space.size()):
            p = space.trial_params(space.from_index(i))
            ia, ib = ops.index(p[a]), ops.index(p[b])
            wa.writerow([i, 50 + 10 * ia + rng.gauss(0, 0.5)])
            wl.writerow([i, 1 + 2 * ib + 0.8 * ia + rng.gauss(0, 0.05)])
    cfg = JobConfig.from_dict({
        "space": {"name": "nb201"},
        "device": {"latency_csv": str(tmp / "lat.csv"), "latency_column": "board"},
        "estimator": {"name": "tabular", "options": {"path": str(tmp / "acc.csv"), "column": "score"}},
        "search": {"objectives": ["accuracy", "latency_ms"], "sampler": "random", "trials": 40, "seed": 0},
    })
    run = tmp / "run"
    run_search(cfg, run, quiet=True, progress=False)
    expl, out, written = explain_run(ExplainJob(str(run), samples=16, plots=False))
    return {"a": a, "b": b, "run": run, "expl": expl, "out": out, "written": written}


def test_explain_ranks_the_driving_choices_first(synthetic_run):
    expl, a, b = synthetic_run["expl"], synthetic_run["a"], synthetic_run["b"]
    acc, lat = expl.objective("accuracy"), expl.objective("latency_ms")
    assert acc.model == "surrogate" and lat.model == "exact"
    assert acc.ranked("fanova")[0] == a and acc.ranked("share")[0] == a and acc.ranked()[0] == a
    assert (acc.primary, lat.primary) == ("fanova", "share") and lat.ranked()[0] == b
    assert [e.choice for e in acc.effects] == acc.ranked() and [e.choice for e in lat.effects] == lat.ranked()
    assert lat.ranked("fanova")[0] == b and lat.ranked("share")[0] == b
    assert acc.effect(a).best_for(True) == acc.effect(a).best  # the op of highest index
    assert 0.5 < acc.effect(a).share <= 1.0 and lat.effect(a).share < lat.effect(b).share
    assert acc.fit_r2 is not None and acc.fit_r2 > 0.8


def test_explain_finds_the_trade_off_and_walks_the_front(synthetic_run):
    expl, a = synthetic_run["expl"], synthetic_run["a"]
    top = expl.tradeoffs[0]
    assert (top.choice, top.quality, top.cost) == (a, "accuracy", "latency_ms")
    assert top.conflict > 0.9 and top.best_for_quality != top.best_for_cost
    lat = [r["latency_ms"] for r in expl.front]
    assert lat == sorted(lat) and len(expl.front) >= 2
    assert all(a in r["choices"] for r in expl.front)


def test_explain_writes_its_files(synthetic_run):
    out, a = synthetic_run["out"], synthetic_run["a"]
    assert set(synthetic_run["written"]) == {"explain.md", "explain.json"}
    md = (out / "explain.md").read_text()
    assert "## accuracy (maximize)" in md and "## Trade-offs" in md and f"| {a} |" in md
    data = json.loads((out / "explain.json").read_text())
    assert data["objectives"][0]["effects"][0]["choice"] == a
    assert data["tradeoffs"][0]["choice"] == a


def test_explain_cli_prints_the_summary_and_writes_figures(synthetic_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("plotly")
    out = tmp_path / "x"
    assert main(["explain", str(synthetic_run["run"]), "--out", str(out), "--samples", "16"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"accuracy (by fanova): {synthetic_run['a']}") and "trade-off:" in printed
    assert f"latency_ms (by share): {synthetic_run['b']}" in printed
    for name in ("explain.md", "explain.json", "explain_importance.png", "explain_effects.png", "explain.html"):
        assert (out / name).stat().st_size > 0
    assert "![explain_importance.png](explain_importance.png)" in (out / "explain.md").read_text()


def test_explain_bad_input_is_one_line(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err
    assert main(["explain", str(tmp_path), "--samples", "2"]) == 2
    assert "samples must be >= 8" in capsys.readouterr().err


def test_explain_pieces():
    assert share({0: 1.0, 1: 3.0}, 4.0) == pytest.approx(0.25)  # var of the means 1.0 / total 4.0
    assert share({0: 1.0}, 4.0) == 0.0 and share({0: 1.0, 1: 2.0}, 0.0) == 0.0
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0) and spearman([1, 1, 1], [1, 2, 3]) == 0.0
    assert tradeoffs([]) == []


def test_explain_table_in_job_files():
    """``[explain]`` needs ``[search]``, checks its values like every table, and round-trips."""
    from edgenas.jobs import ConfigError

    with pytest.raises(ConfigError, match=r"\[explain\].*needs a \[search\] table"):
        JobConfig.from_dict({"space": {"name": "nb201"}, "explain": {}})
    with pytest.raises(ConfigError, match=r"\[explain\] samples: must be >= 8"):
        JobConfig.from_dict({"space": {"name": "nb201"}, "search": {}, "explain": {"samples": 4}})
    cfg = JobConfig.from_dict({"space": {"name": "nb201"}, "search": {"trials": 12}, "explain": {"top": 2}})
    assert cfg.explain is not None and cfg.explain.top == 2
    assert JobConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict() and cfg.to_dict()["explain"] == {"top": 2}


def test_a_job_with_explain_writes_it_after_the_search(synthetic_run, tmp_path):
    """``run_job`` explains the front after the search; a search too short to explain keeps its results
    and says why the explanation was skipped."""
    from edgenas.jobs import run_job

    folder = synthetic_run["run"].parent
    base = {"space": {"name": "nb201"},
            "device": {"latency_csv": str(folder / "lat.csv"), "latency_column": "board"},
            "estimator": {"name": "tabular", "options": {"path": str(folder / "acc.csv"), "column": "score"}},
            "explain": {"samples": 8, "plots": False}}
    said: list[str] = []
    cfg = JobConfig.from_dict({**base, "search": {"sampler": "random", "trials": 16, "out": str(tmp_path / "a")}})
    result = run_job(cfg, quiet=True, progress=False, say=said.append)
    assert result.explain == [tmp_path / "a" / "explain.md", tmp_path / "a" / "explain.json"]
    assert said[-1].startswith("explained the front")
    cfg = JobConfig.from_dict({**base, "search": {"sampler": "random", "trials": 4, "out": str(tmp_path / "b")}})
    result = run_job(cfg, quiet=True, progress=False, say=said.append)
    assert result.explain is None and result.search is not None and (tmp_path / "b" / "front.json").is_file()
    assert said[-1].startswith("explain skipped: explain needs at least 10 evaluated trials")
