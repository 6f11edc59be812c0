"""The faults a hostile tester found in job files, search flags, run folders and export choices (issue 19).

Every case must end the same way: exit code 2, exactly one stderr line naming what is wrong, no
traceback, nothing written, and nothing already there changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from searchkit import BOARD, user_dir, write_board

from edgenas.cli.main import main
from edgenas.testing.cli import assert_one_line_error, run_cli


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a digest of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> str:
    code, _, err = run_cli(capsys, *argv)
    return assert_one_line_error(code, err, needle)


@pytest.fixture
def board() -> str:
    write_board(user_dir(), "tiny")
    return BOARD


# -- job files: values of the wrong type or range ---------------------------------------------------
JOB_HEAD = '[space]\nname = "tiny"\n[device]\nname = "test-board"\n[estimator]\nname = "params"\n'
BAD_JOBS = [
    ("[search]\ntrials = 2\nobjectives = [1, 2]\n", "[search] objectives: must be a list of strings, got [1, 2]"),
    ("[search]\ntrials = 2\nbudgets = 5\n", "[search] budgets: must be a list of strings, got 5"),
    ("[search]\ntrials = 2\nbudgets = [\"macs<=5M\", 3]\n", "[search] budgets: must be a list of strings"),
    ("[search]\ntrials = 2\nreference = \"accuracy\"\n", "[search] reference: must be a table of numbers"),
    ("[search]\ntrials = 2\nreference = { accuracy = \"abc\" }\n", "[search] reference: must be a table of numbers"),
    ("[search]\ntrials = 0\n", "[search] trials: must be >= 1, got 0"),
    ("[search]\ntrials = 2\nworkers = 0\n", "[search] workers: must be >= 1, got 0"),
    ("[search]\ntimeout = -1\n", "[search] timeout: must be > 0, got -1"),
    ("[search]\ntrials = 2\nobjectives = []\n", "[search] objectives: needs at least one field name"),
    ("[search]\ntrials = 2\nobjectives = [\"\"]\n", "[search] objectives: needs at least one field name"),
    ("[search]\ntrials = 2\nstudy = \"../x\"\n", "study name '../x' is not allowed"),
    ("[search]\ntrials = 2\nprecision = \"int4\"\n", "[search] precision: must be one of int8, fp32"),
    ("[task]\nnum_classes = -3\n[search]\ntrials = 2\n", "[task] num_classes: must be >= 1, got -3"),
    ("[task]\nnum_classes = 2.5\n[search]\ntrials = 2\n", "[task] num_classes: must be an integer, got 2.5"),
    ("[search]\ntrials = 2\n[export]\ntrials = \"\"\n", "[export] trials: takes 'pareto', 'pareto:N' or trial numbers"),
    ("[search]\ntrials = 2\n[export]\ntrials = \"3,3\"\n", "[export] trials: lists trial(s) 3 twice"),
    ("[search]\ntrials = 2\n[export]\nformats = []\n", "[export] formats: needs at least one format"),
    ("[search]\ntrials = 2\n[export]\ntrain_epochs = 0\n", "[export] train_epochs: must be >= 1"),
]


@pytest.mark.parametrize(("body", "needle"), BAD_JOBS, ids=[n for _, n in BAD_JOBS])
def test_bad_job_file_values_are_one_line_and_nothing_is_written(body, needle, tmp_path, monkeypatch, capsys, board):
    job = tmp_path / "job.toml"
    job.write_text(JOB_HEAD + body)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    line = one_line_exit_2(capsys, ["run", str(job)], needle)
    assert "job.toml" in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("body", "needle"), [
    ('[space]\nname = "tiny"\n[device]\nnames = [1, 2]\n', "[device] names: must be a list of strings, got [1, 2]"),
    ('[space]\nname = "tiny"\n[device]\nname = 3\n', "[device] name: must be a string, got 3"),
    ('[space]\nname = "tiny"\n[device]\nname = "../../X"\n', "device name '../../X' is not allowed"),
    ('[space]\nname = "tiny"\noptions = { widths = "abc" }\n', "option widths: 'abc' is not"),
    ('[space]\nname = "tiny"\noptions = { resolutions = [] }\n', "resolutions is empty"),
    ('[space]\nname = "../tiny"\n', "space name '../tiny' is not allowed"),
    ('[space]\nname = "tiny"\n[describe]\nrandom = 0\n', "[describe] random: must be >= 1, got 0"),
])
def test_bad_describe_jobs(body, needle, tmp_path, monkeypatch, capsys):
    job = tmp_path / "job.toml"
    job.write_text(body)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    one_line_exit_2(capsys, ["run", str(job)], needle)
    assert snapshot(tmp_path) == before


def test_a_binary_file_as_the_job(tmp_path, capsys):
    job = tmp_path / "job.toml"
    job.write_bytes(bytes(range(256)) * 4)
    one_line_exit_2(capsys, ["run", str(job)], "is not a text file")
    job.write_text("")
    one_line_exit_2(capsys, ["run", str(job)], "[space] name: is required")


# -- search flags --------------------------------------------------------------------------------------
BAD_FLAGS = [
    (["--space-opt", "widths=abc"], "option widths: 'abc' is not"),
    (["--space-opt", "resolutions=[]"], "resolutions is empty"),
    (["--space-opt", "kernels=3,9"], "kernels option 9 is not one of the space's choices 3, 5, 7"),
    (["--reference", "accuracy=abc"], "--reference: must be a table of numbers"),
    (["--reference", "speed=1"], "unknown field 'speed'"),
    (["--workers", "0"], "--workers: must be >= 1, got 0"),
    (["--timeout", "-1"], "--timeout: must be > 0, got -1"),
    (["--objectives", ","], "--objectives: needs at least one field name"),
    (["--classes", "-3"], "--classes: must be >= 1, got -3"),
    (["--study", "../x"], "study name '../x' is not allowed"),
    (["--budget", "macs<=5M", "--budget", "macs>=10M"], "contradict each other"),
    (["--budget", ""], "--budget: has an empty budget"),
    (["--precision", "int4"], "--precision: must be one of int8, fp32"),
    (["--est-opt", "keep=2"], "--est-opt/--keep need --estimator"),
    # estimators that cannot be built: refused before the run folder is written (it once kept a
    # config.json and an empty journal, and the next run was told the folder already held a search)
    (["--estimator", "supernet", "--weights", "missing.pt"], "supernet checkpoint 'missing.pt' not found"),
    (["--estimator", "train", "--est-opt", "epochs=0"], "train: epochs must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize(("extra", "needle"), BAD_FLAGS, ids=[n for _, n in BAD_FLAGS])
def test_bad_search_flags(extra, needle, tmp_path, capsys, board):
    run = tmp_path / "run"
    argv = ["search", "--space", "tiny", "--device", BOARD, "--trials", "3", "--out", str(run), "--no-progress", "-q"]
    if "--est-opt" not in extra:
        argv += ["--estimator", "params"]
    before = snapshot(tmp_path)
    one_line_exit_2(capsys, argv + extra, needle)
    assert not run.exists()
    assert snapshot(tmp_path) == before


def test_bad_device_flag_builds_no_path(tmp_path, capsys):
    one_line_exit_2(capsys, ["search", "--space", "tiny", "--device", "../../X", "--estimator", "params", "--trials",
                             "2", "--out", str(tmp_path / "run")], "device name '../../X' is not allowed")
    assert not (tmp_path / "run").exists()


# -- run folders -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small finished search (params estimator on the synthetic board), copied by each test."""
    home = tmp_path_factory.mktemp("home")
    write_board(home, "tiny")
    run = tmp_path_factory.mktemp("runs") / "run"
    assert main(["search", "--space", "tiny", "--device", BOARD, "--devices-dir", str(home), "--estimator",
                 "params", "--trials", "6", "--sampler", "random", "--out", str(run), "--no-progress", "-q"]) == 0
    return run


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(finished_run, dst)
    return dst


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("run.json", "", "is empty"),
    ("run.json", "{not json", "is not valid JSON"),
    ("run.json", "[1, 2]", "is not a JSON object"),
    ("study.journal", "garbage\n", "it holds no study: empty, or not an Optuna storage"),
    ("study.journal", '{"op_code": 0, "worker_id": "x"', "it holds no study"),
    ("study.journal", "", "it holds no study"),
])
def test_pareto_on_a_damaged_run_folder(name, content, needle, run_copy, capsys):
    (run_copy / name).write_text(content)
    before = snapshot(run_copy)
    one_line_exit_2(capsys, ["pareto", str(run_copy), "--no-plots"], needle)
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("config.json", "", "is empty"),
    ("config.json", "{", "is not valid JSON"),
    ("config.json", '{"x": 1}', "is not an edgenas search job"),
    ("config.json", '{"space": {"name": "tiny"}, "search": {"trials": "x"}}', "[search] trials: must be an integer"),
    ("study.journal", "garbage\n", "it holds no study"),
])
def test_resume_of_a_damaged_run_folder(name, content, needle, run_copy, capsys):
    (run_copy / name).write_text(content)
    before = snapshot(run_copy)
    one_line_exit_2(capsys, ["search", "--resume", str(run_copy), "--trials", "8", "--no-progress"], needle)
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(("content", "needle"), [
    ("", "is empty"), ("{", "is not valid JSON"), ('{"a": 1}', "is not a list of rows"),
])
def test_export_of_a_damaged_front(content, needle, run_copy, capsys):
    (run_copy / "front.json").write_text(content)
    before = snapshot(run_copy)
    one_line_exit_2(capsys, ["export", str(run_copy), "--formats", "onnx"], needle)
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(("trials", "needle"), [
    ("", "--trials: takes 'pareto', 'pareto:N' or trial numbers"),
    ("3,3", "--trials: lists trial(s) 3 twice"),
    ("1,,2", "--trials: takes 'pareto', 'pareto:N' or trial numbers"),
    ("-1", "--trials: trial numbers are >= 0"),
    ("x", "--trials: takes 'pareto', 'pareto:N' or trial numbers"),
])
def test_export_trial_choices(trials, needle, run_copy, capsys):
    before = snapshot(run_copy)
    one_line_exit_2(capsys, ["export", str(run_copy), "--trials", trials, "--formats", "onnx"], needle)
    assert snapshot(run_copy) == before


def test_pareto_on_a_half_written_run_folder(run_copy, tmp_path, capsys):
    """A search that is running or was killed has no run.json: pareto does not rewrite its folder (the
    search writes it when it ends) but can write a snapshot elsewhere, saying it is partial."""
    (run_copy / "run.json").unlink()
    before = snapshot(run_copy)
    one_line_exit_2(capsys, ["pareto", str(run_copy), "--no-plots"], "has not finished")
    assert snapshot(run_copy) == before
    one_line_exit_2(capsys, ["export", str(run_copy), "--formats", "onnx"], "has not finished")
    snap = tmp_path / "snap"
    assert main(["pareto", str(run_copy), "--no-plots", "--out", str(snap)]) == 0
    out = capsys.readouterr().out
    assert "has not finished" in out and (snap / "front.json").is_file()
    assert snapshot(run_copy) == before


def test_pareto_on_a_copied_run_folder_reads_and_writes_the_copy(finished_run, run_copy, capsys):
    original = snapshot(finished_run)
    info = json.loads((run_copy / "run.json").read_text())
    assert Path(info["storage"]).parent == finished_run.resolve()  # recorded where the search ran
    # the copy diverges from the original: one finished trial fewer in its front would show a mix-up
    (run_copy / "front.json").write_text("[]\n")
    assert main(["pareto", str(run_copy), "--no-plots"]) == 0
    capsys.readouterr()
    assert snapshot(finished_run) == original  # the original is neither read for writing nor changed
    rewritten = json.loads((run_copy / "run.json").read_text())
    assert Path(rewritten["storage"]).parent == run_copy.resolve()
    assert json.loads((run_copy / "front.json").read_text())  # rebuilt from the copy's own study
    # a copy whose study differs from the original's is read from the copy
    shutil.copy(run_copy / "study.journal", run_copy / "backup.journal")
    assert main(["search", "--resume", str(run_copy), "--trials", "8", "--no-progress", "-q",
                 "--devices-dir", str(user_dir())]) == 0
    capsys.readouterr()
    assert snapshot(finished_run) == original
    assert json.loads((run_copy / "run.json").read_text())["counts"]["finished"] == 8


# -- arch files --------------------------------------------------------------------------------------
def test_describe_archs_with_a_huge_line(tmp_path, capsys):
    f = tmp_path / "archs.csv"
    f.write_text("arch,x\n\"" + "a" * 200_000 + "\",1\n")
    one_line_exit_2(capsys, ["describe", "--space", "tiny", "--archs", str(f)], "not a readable arch file line")
    f.write_text("tiny:" + "k" * 200_000 + "\n")
    one_line_exit_2(capsys, ["describe", "--space", "tiny", "--archs", str(f)], "archs.csv:1")
