"""``edgenas search`` / ``pareto`` / ``run`` end to end: run folder, budgets before training, exact
trial counts with several workers, resume after a real SIGKILL, and one-line input errors."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from searchkit import BOARD, user_dir, write_board

from edgenas.cli.main import main
from edgenas.search.pareto import nondominated

EDGENAS = [sys.executable, "-m", "edgenas.cli.main"]


@pytest.fixture
def board() -> str:
    write_board(user_dir(), "tiny")
    return BOARD


def search_args(out: Path, *extra: str) -> list[str]:
    return ["search", "--space", "tiny", "--device", BOARD, "--estimator", "synflow", "--out", str(out),
            "--no-progress", "-q", *extra]


def load(run: Path) -> optuna.Study:
    info = json.loads((run / "run.json").read_text())
    return optuna.load_study(study_name=info["study"], storage=_journal(run))


def _journal(run: Path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(run / "study.journal")))


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_search_writes_a_run_folder_with_a_feasible_front(board, tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(search_args(run, "--trials", "24", "--sampler", "nsga2", "--sampler-opt", "population_size=8",
                          "--budget", "latency_ms<=0.3", "--budget", "peak_ram_bytes<=40KiB"))
    assert rc == 0
    out = capsys.readouterr().out
    assert "Pareto front:" in out and f"edgenas pareto {run}" in out
    for name in ("front.csv", "front.json", "trials.csv", "pareto.png", "config.json", "run.json",
                 "study.journal", "plots/pareto_front.html", "plots/hypervolume_history.html"):
        assert (run / name).is_file(), name
    info = json.loads((run / "run.json").read_text())
    assert info["counts"]["finished"] == 24 and info["versions"]["optuna"] and info["seed"] == 0
    assert info["wall_s"] > 0 and info["budgets"] == ["latency_ms<=0.3", "peak_ram_bytes_int8<=40960"]
    trials = rows(run / "trials.csv")
    assert len(trials) == 24
    for t in trials:  # over budget: recorded with costs, never scored
        if t["feasible"] == "False":
            assert t["status"] == "infeasible" and not t.get("estimate_seconds")
            assert float(t["latency_ms"]) > 0.3 or float(t["peak_ram_bytes_int8"]) > 40960
    front = json.loads((run / "front.json").read_text())
    assert front and all(r["feasible"] for r in front)
    assert all(r["latency_ms"] <= 0.3 and r["peak_ram_bytes_int8"] <= 40960 for r in front)
    pts = np.array([[-r["accuracy"], r["latency_ms"]] for r in front])
    assert nondominated(pts).all()
    feas = np.array([[-float(t["accuracy"]), float(t["latency_ms"])] for t in trials
                     if t["feasible"] == "True" and math.isfinite(float(t["accuracy"]))])
    for p in pts:  # nothing feasible dominates a front member
        assert not any(np.all(q <= p) and np.any(q < p) for q in feas)
    assert {r["arch"] for r in front} == {r["arch"] for r in rows(run / "front.csv")}

    assert main(["pareto", str(run), "--no-plots"]) == 0
    again = capsys.readouterr().out
    assert "Pareto front:" in again and all(r["arch"] in again for r in front)


def test_duplicates_reuse_the_first_result():
    from searchkit import make_job, run_trials

    job = make_job(estimator="synflow", space_opts={"widths": 0.5})
    spec = job.space.sample(1, 3)[0]
    study = optuna.create_study(directions=job.directions)
    for _ in range(3):
        study.enqueue_trial(job.space.trial_params(spec))
    run_trials(job, 4, study)
    recs = [t.user_attrs["edgenas"] for t in study.trials]
    assert [r["status"] for r in recs[:3]] == ["evaluated", "duplicate", "duplicate"]
    assert recs[1]["duplicate_of"] == 0 and recs[1]["estimate"] == recs[0]["estimate"]
    assert study.trials[1].values == study.trials[0].values
    assert job.estimator.computed == 2  # the spec once, and the fourth trial's


@pytest.mark.slow  # a 16-trial frontier search
def test_frontier_search_from_a_toml_config(board, tmp_path, capsys):
    cfg = tmp_path / "job.toml"
    cfg.write_text(f"""
[space]
name = "tiny"
options = {{ resolutions = [32, 48] }}
[device]
name = "{BOARD}"
[estimator]
name = "synflow"
[search]
objectives = ["accuracy", "latency_ms"]
budgets = ["peak_ram_bytes<=40KiB"]
sampler = "frontier"
sampler_options = {{ init = 6, batch = 3, pool = 300 }}
trials = 16
out = "{tmp_path / 'run'}"
""")
    assert main(["run", str(cfg)]) == 0
    study = load(tmp_path / "run")
    assert len(study.trials) == 16
    assert all(t.user_attrs["edgenas"]["feasible"] for t in study.trials)  # ours never over budget
    assert len({t.user_attrs["arch"] for t in study.trials}) == 16


@pytest.mark.parametrize("argv, message", [
    (["--budget", "latency_ms<=0.00001", "--trials", "5"],
     "no tiny architecture meets latency_ms <= 1e-05 ms on test-board; the fastest found is"),
    (["--budget", "latency_ms=3", "--trials", "5"], "write FIELD<=VALUE"),
    (["--objectives", "accuracy,speed", "--trials", "5"], "unknown field 'speed'"),
    (["--sampler", "annealing", "--trials", "5"], "unknown sampler 'annealing'"),
    (["--sampler", "nsga2", "--sampler-opt", "popsize=3", "--trials", "5"], "unknown option(s) popsize"),
    ([], "say when to stop"),
])
def test_input_errors_are_one_line_exit_2(board, tmp_path, capsys, argv, message):
    rc = main(search_args(tmp_path / "run", *argv))
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_run_folder_errors(board, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(search_args(run, "--trials", "3", "--sampler", "random")) == 0
    capsys.readouterr()
    assert main(search_args(run, "--trials", "3")) == 2
    assert "already holds a search; continue it with --resume" in capsys.readouterr().err
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert main(search_args(blocked / "run", "--trials", "3")) == 2
    err = capsys.readouterr().err
    assert "cannot write to run folder" in err and "Traceback" not in err
    assert main(["search", "--resume", str(tmp_path / "nothing")]) == 2
    assert "holds no search to resume" in capsys.readouterr().err


@pytest.mark.slow  # search subprocesses
def test_workers_share_an_exact_trial_budget(board, tmp_path):
    run = tmp_path / "run"
    r = subprocess.run([*EDGENAS, *search_args(run, "--trials", "20", "--workers", "2", "--sampler", "random-feasible",
                                               "--budget", "latency_ms<=0.4")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    study = load(run)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 20 and len(states) == 20
    pids = {t.system_attrs["edgenas:worker"]["pid"] for t in study.trials}
    assert len(pids) == 2  # both processes did work
    cost = json.loads((run / "run.json").read_text())["search_cost"]
    [session] = cost["sessions"]  # the worker processes are the search process's children, measured by it
    assert sorted(session["pids"][1:]) == sorted(pids) and session["trials"] == 20
    assert cost["complete"] and cost["trials"]["measured"] == 20
    assert session["cpu_s"] - session["trials_cpu_s"] == pytest.approx(cost["overhead_cpu_s"], abs=1e-5)


@pytest.mark.slow  # search subprocesses
def test_resume_after_sigkill_loses_no_completed_trial(board, tmp_path):
    run = tmp_path / "run"
    # ~0.1 s per trial (synflow on a 96-px tiny net): time to kill it mid-run
    proc = subprocess.Popen([*EDGENAS, *search_args(run, "--trials", "24", "--sampler", "random-feasible",
                                                    "--space-opt", "resolutions=96")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    done_before: dict[int, str] = {}
    while time.time() < deadline:
        time.sleep(0.5)
        if proc.poll() is not None:
            pytest.fail(f"search ended before it could be killed: {proc.stderr.read()}")
        if not (run / "run.json").exists() and (run / "study.journal").exists():
            try:
                study = optuna.load_study(study_name="edgenas", storage=_journal(run))
            except KeyError:
                continue
            done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            if len(done) >= 6:
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    study = optuna.load_study(study_name="edgenas", storage=_journal(run))
    done_before = {t.number: t.user_attrs["arch"] for t in study.trials
                   if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(done_before) >= 6
    assert len(done_before) < 24

    r = subprocess.run([*EDGENAS, "search", "--resume", str(run), "--no-progress"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    study = load(run)
    complete = {t.number: t.user_attrs["arch"] for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(complete) == 24
    for n, arch in done_before.items():  # every trial completed before the kill is kept as it was
        assert complete[n] == arch
    abandoned = [t for t in study.trials if t.system_attrs.get("edgenas:abandoned")]
    assert all(t.state == optuna.trial.TrialState.FAIL for t in abandoned)
    assert len(study.trials) == 24 + len(abandoned)
    assert "resuming 'edgenas'" in r.stderr


def test_several_devices_give_one_latency_objective_each(tmp_path):
    write_board(user_dir(), "tiny", name="board-a")
    write_board(user_dir(), "tiny", name="board-b")
    run = tmp_path / "run"
    assert main(["search", "--space", "tiny", "--device", "board-a,board-b", "--estimator", "params",
                 "--objectives", "accuracy,latency_ms@board-a,latency_ms@board-b", "--budget",
                 "latency_ms@board-b<=0.5", "--trials", "12", "--sampler", "random-feasible", "--out", str(run),
                 "--no-progress", "-q"]) == 0
    front = json.loads((run / "front.json").read_text())
    assert front and all(r["latency_ms@board-b"] <= 0.5 and "latency_ms@board-a" in r for r in front)
    assert json.loads((run / "run.json").read_text())["objectives"] == [
        "accuracy", "latency_ms@board-a", "latency_ms@board-b"]
