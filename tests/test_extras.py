"""Optional backends are extras: the core works without them, and a feature that needs a missing one says
in one line which extra to install (run in subprocesses with the backend made unimportable)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from searchkit import BOARD, write_board

from edgenas.extras import EXTRAS, MODULE_DIST, MODULE_EXTRA

REPO = Path(__file__).resolve().parent.parent
ARCH = "tiny:w0.5:r32:k3e3_k3e3_k3e3_k3e3"
OPTIONAL = sorted(MODULE_EXTRA)


def pyproject_extras() -> dict[str, list[str]]:
    text = (REPO / "pyproject.toml").read_text()
    import tomllib

    return tomllib.loads(text)["project"]["optional-dependencies"]


def test_extras_table_matches_pyproject():
    declared = pyproject_extras()
    for extra, dists in EXTRAS.items():
        names = {re.split(r"[<>=\[;]", d)[0].strip() for d in declared[extra] if not d.startswith("edgenas[")}
        assert names == {d.split("[")[0] for d in dists}, extra
    for module, extra in MODULE_EXTRA.items():
        assert MODULE_DIST[module].split("[")[0] in {d.split("[")[0] for d in EXTRAS[extra]}
    core = (REPO / "pyproject.toml").read_text().split("[project.optional-dependencies]")[0]
    for dist in {d.split("[")[0] for ds in EXTRAS.values() for d in ds}:
        assert f'"{dist}' not in core, f"{dist} is optional, not a core dependency"
    assert '"torch>=' in core and "torch==" not in core  # a range, never one build


def run_without(blocked: list[str], argv: list[str], cwd: Path, env_dir: Path) -> subprocess.CompletedProcess:
    code = ("import sys\n"
            f"for m in {blocked!r}:\n    sys.modules[m] = None\n"
            "from edgenas.cli.main import main\n"
            f"sys.exit(main({argv!r}))\n")
    env = {"PATH": "/usr/bin:/bin", "EDGENAS_DEVICES_DIR": str(env_dir), "HOME": str(env_dir)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def assert_one_line(r: subprocess.CompletedProcess, *needles: str) -> None:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.slow  # a subprocess importing torch
def test_the_core_runs_without_any_optional_backend(tmp_path):
    r = run_without(OPTIONAL, ["describe", "--space", "tiny", "--random", "2", "--json"], tmp_path, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count('"arch"') == 2


@pytest.mark.slow
@pytest.mark.parametrize(("blocked", "formats", "needles"), [
    (["ai_edge_quantizer"], "onnx,tflite-int8", ["'tflite-int8' needs the optional package ai-edge-quantizer",
                                                 "pip install 'edgenas[tflite]'"]),
    (["litert_torch"], "tflite", ["'tflite' needs the optional package litert-torch", "edgenas[tflite]"]),
    (["tflite_micro"], "tflm", ["'tflm' needs the optional package tflite-micro", "pip install 'edgenas[tflm]'"]),
])
def test_export_names_the_extra_before_any_work(blocked, formats, needles, tmp_path):
    out = tmp_path / "out"
    r = run_without(blocked, ["export", "--space", "tiny", "--arch", ARCH, "--classes", "10", "--in-channels", "1",
                              "--dataset", "digits", "--formats", formats, "--out", str(out)], tmp_path, tmp_path)
    assert_one_line(r, *needles)
    assert not out.exists()


@pytest.mark.slow
def test_postgres_storage_names_the_extra(tmp_path):
    write_board(tmp_path, "tiny")
    r = run_without(["psycopg", "psycopg2"], [
        "search", "--space", "tiny", "--device", BOARD, "--estimator", "params", "--trials", "2",
        "--storage", "postgresql+psycopg://u@127.0.0.1:1/db", "--out", str(tmp_path / "run"), "--no-progress"],
        tmp_path, tmp_path)
    assert_one_line(r, "needs the optional package psycopg", "pip install 'edgenas[postgres]'")


@pytest.mark.slow
def test_litert_device_names_the_extra(tmp_path):
    r = run_without(["ai_edge_litert"], ["profile", "--device", "local-cpu-litert", "--space", "tiny", "--random",
                                         "1"], tmp_path, tmp_path)
    assert_one_line(r, "runtime 'litert' needs the optional package ai-edge-litert", "edgenas[tflite]")


@pytest.mark.slow
def test_a_search_without_plots_still_writes_its_results(tmp_path):
    write_board(tmp_path, "tiny")
    run = tmp_path / "run"
    r = run_without(["matplotlib", "plotly"], [
        "search", "--space", "tiny", "--device", BOARD, "--estimator", "params", "--trials", "3", "--out", str(run),
        "--no-progress", "-q"], tmp_path, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (run / "front.json").is_file() and not (run / "pareto.png").exists()
    assert "pip install 'edgenas[plots]'" in r.stderr
