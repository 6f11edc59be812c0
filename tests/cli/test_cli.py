"""The ``edgenas`` CLI: spaces, describe, run, and the exit-2 one-line error contract."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgenas.cli.describe import COST_FIELDS
from edgenas.testing.cli import assert_one_line_error, run_cli

FIELDS = ["arch", "macs", "params", "size_bytes_fp32", "size_bytes_int8", "peak_ram_bytes_fp32", "peak_ram_bytes_int8",
          "arena_bytes_tflm", "delegate_partitions_fp32", "delegate_partitions_int8", "ops_off_delegate_fp32",
          "ops_off_delegate_int8"]
TUTORIAL = "mbv3:w1.2:r192:k5e3-k3e3_k5e4-k3e4_k7e6-k7e3-k3e4_k5e4-k5e4-k7e4-k3e3_k3e6-k3e6-k5e6"


def test_field_names_are_the_documented_ones():
    assert COST_FIELDS == FIELDS


def test_spaces_lists_every_space(capsys):
    code, out, _ = run_cli(capsys, "spaces", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == {"mbv3", "tiny", "nb201", "fbnet", "proxyless", "model"}
    assert rows["nb201"]["size"] == 15625
    assert rows["model"]["size"] == 0 and "--model" in rows["model"]["choices"]["source"]  # needs a source model
    code, out, _ = run_cli(capsys, "spaces")
    assert "mbv3" in out and "15,625" in out and "size: depends on the source model" in out


def test_describe_random_json(capsys):
    code, out, _ = run_cli(capsys, "describe", "--space", "tiny", "--random", "5", "--seed", "3", "--json")
    assert code == 0
    recs = json.loads(out)
    assert len(recs) == 5 and all(list(r) == FIELDS for r in recs)
    code, out2, _ = run_cli(capsys, "describe", "--space", "tiny", "--random", "5", "--seed", "3", "--json")
    assert out == out2


def test_describe_arch_json_ofa_form(capsys):
    obj = {"ks": [5, 3, 3, 3, 5, 3, 3, 3, 7, 7, 3, 3, 5, 5, 7, 3, 3, 3, 5, 3],
           "e": [3, 3, 3, 3, 4, 4, 3, 3, 6, 3, 4, 3, 4, 4, 4, 3, 6, 6, 6, 3],
           "d": [2, 2, 3, 4, 3], "r": 192, "w": 1.2}
    code, out, _ = run_cli(capsys, "describe", "--space", "mbv3", "--arch-json", json.dumps(obj), "--json")
    assert code == 0
    assert json.loads(out)[0]["arch"] == TUTORIAL


def test_describe_archs_file_mixed_forms_and_csv_out(capsys, tmp_path):
    f = tmp_path / "archs.txt"
    f.write_text(
        "# comment\n"
        "nb201:c3-c3-avg-skip-c3-skip\n"
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|\n"
        "\n"
        "c1-none-none-none-none-none\n"
    )
    out_csv = tmp_path / "out.csv"
    code, out, _ = run_cli(capsys, "describe", "--space", "nb201", "--archs", str(f), "--csv", str(out_csv))
    assert code == 0 and "wrote 3 records" in out
    rows = list(csv.DictReader(out_csv.open()))
    assert list(rows[0]) == FIELDS
    assert rows[0]["arch"] == rows[1]["arch"] == "nb201:c3-c3-avg-skip-c3-skip"
    assert int(rows[2]["macs"]) < int(rows[0]["macs"])


def test_describe_fbnet_and_ofa_json_lines(capsys, tmp_path):
    f = tmp_path / "fb.txt"
    f.write_text("7-8-1-0-2-3-4-5-6-7-8-0-1-2-3-4-5-6-7-8-0-1\n")
    code, out, _ = run_cli(capsys, "describe", "--space", "fbnet", "--archs", str(f), "--json")
    assert code == 0 and json.loads(out)[0]["arch"].startswith("fbnet:cifar100:k5e6-skip-k3e1g2")
    g = tmp_path / "ofa.txt"
    g.write_text('{"ks": [3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3], "e": [6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6],'
                 ' "d": [4,4,4,4,4], "r": 224, "w": 1.2}\n')
    code, out, _ = run_cli(capsys, "describe", "--space", "mbv3", "--archs", str(g), "--json")
    assert code == 0 and json.loads(out)[0]["arch"].startswith("mbv3:w1.2:r224:k3e6-k3e6-k3e6-k3e6_")


def test_describe_csv_with_arch_column(capsys, tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("arch,latency_ms\nnb201:c3-c3-avg-skip-c3-skip,1.5\nnb201:skip-skip-skip-skip-skip-skip,0.3\n")
    code, out, _ = run_cli(capsys, "describe", "--space", "nb201", "--archs", str(f), "--json")
    assert code == 0 and len(json.loads(out)) == 2


@pytest.mark.slow  # 15,625 cells costed
def test_describe_nb201_cells_from_the_official_table(capsys, shared_data, tmp_path):
    """Every 8th row of the official table (its own columns, arch_str forms) plus the smallest and largest cells
    (all edges none / all 3x3 convs): the README's 0.073-1.53 M parameter range. All 15,625 cells took 28 s."""
    table = tmp_path / "subset.csv"
    with (shared_data / "nb201" / "nb201_cifar10.csv").open() as f:
        rows = list(csv.DictReader(f))
    extremes = {"|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"}
    subset = [r for i, r in enumerate(rows) if i % 8 == 0 or r["arch_str"] in extremes]
    with table.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(subset)
    out_csv = tmp_path / "described.csv"
    code, _out, _ = run_cli(capsys, "describe", "--space", "nb201", "--archs", str(table), "--csv", str(out_csv))
    assert code == 0
    described = list(csv.DictReader(out_csv.open()))
    assert len(described) == len(subset) > 1950
    params = sorted(int(r["params"]) for r in described)
    assert 0.07e6 < params[0] < 0.08e6 and 1.5e6 < params[-1] < 1.6e6  # README: 0.073-1.53 M


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["describe", "--space", "nope", "--random", "1"], "unknown space 'nope'"),
        (["describe", "--space", "mbv3", "--arch", "mbv3:w1.2:r192:k9e3"], "'k9e3'"),
        (["describe", "--space", "nb201", "--arch", "c3-c3-c3"], "expected 6 edge ops"),
        (["describe", "--space", "mbv3", "--arch", TUTORIAL.replace("r192", "r400")], "'r400'"),
        (["describe", "--space", "tiny", "--random", "0"], "--random must be positive"),
        (["describe", "--space", "tiny", "--archs", "/nonexistent/archs.txt"], "not found"),
        (["describe", "--space", "mbv3", "--arch-json", "{\"ks\": 3}"], "missing key"),
        (["describe", "--space", "tiny", "--random", "2", "--csv", "/nonexistent/dir/x.csv"], "does not exist"),
        (["describe", "--space", "mbv3", "--space-opt", "bogus=1", "--random", "1"], "unknown option(s) bogus"),
        (["describe", "--space", "tiny"], "one of the arguments"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, needle, capsys):
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, needle)


def test_bad_arch_line_in_file_names_file_and_line(capsys, tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("nb201:c3-c3-avg-skip-c3-skip\nnb201:c3-c3-avg-skip-c3-oops\n")
    code, _, err = run_cli(capsys, "describe", "--space", "nb201", "--archs", str(f))
    assert code == 2 and f"{f}:2:" in err and "'oops'" in err


@pytest.mark.slow  # console script subprocesses
def test_console_script_subprocess_error_contract():
    """The installed entry point: exit 2, one line on stderr, no traceback."""
    exe = Path(sys.executable).parent / "edgenas"
    proc = subprocess.run([str(exe), "describe", "--space", "fbnet", "--arch", "1-2-3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "expected 22 layer choices" in proc.stderr
    proc = subprocess.run([str(exe), "describe", "--space", "nb201", "--arch", "c3-c3-avg-skip-c3-skip"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "nb201:c3-c3-avg-skip-c3-skip" in proc.stdout


@pytest.mark.slow  # profiles this CPU, trains
def test_demo_config_runs_a_search(capsys, repo, isolated_user_dir, tmp_path):
    """The demo's own config (its supernet trained 1 epoch into the test folder instead of 8 into runs/,
    3 trials at one resolution and one width, which cuts this CPU's latency table to a quarter): the
    supernet trained first, then a real search on this CPU's ORT latency table, with its budgets, every
    candidate scored with the weights it inherits."""
    text = (repo / "examples" / "demo.toml").read_text()
    assert 'out = "runs/demo-supernet.pt"' in text and "\nepochs = 8\n" in text
    job = tmp_path / "demo.toml"
    job.write_text(text.replace('out = "runs/demo-supernet.pt"', f'out = "{tmp_path / "sn.pt"}"')
                   .replace("\nepochs = 8\n", "\nepochs = 1\n"))
    code, out, err = run_cli(capsys, "search", str(job), "--trials", "3",
                             "--space-opt", "resolutions=32", "--space-opt", "widths=0.5",
                             "--out", str(tmp_path / "demo"), "--no-progress")
    assert code == 0, err
    assert (tmp_path / "sn.pt").is_file()
    assert "Pareto front:" in out and "tiny:w" in out and "latency ms" in out and "accuracy = supernet" in out
    assert "TFLM arena" in out.splitlines()[1]  # the budgeted field is a column of the front table
    assert "budget latency_ms <= 0.12 ms" in err
    # the local device's table was measured into the (isolated) user folder, once, before the search
    assert (isolated_user_dir / "latency_tables" / "local-cpu-ort__tiny.json").exists()
    front = json.loads((tmp_path / "demo" / "front.json").read_text())
    assert all(r["feasible"] and r["latency_ms"] <= 0.12 and r["arena_bytes_tflm"] <= 64 * 1024 for r in front)


def test_run_describe_config(capsys, repo, tmp_path):
    cfg = tmp_path / "describe.toml"
    cfg.write_text("[space]\nname = 'tiny'\n[task]\nnum_classes = 10\nin_channels = 1\n"
                   "[describe]\nrandom = 5\nseed = 0\n[estimator]\nname = 'params'\n")
    code, out, _ = run_cli(capsys, "run", str(cfg))
    assert code == 0 and out.count("tiny:w") == 5 and "score" in out


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[space]\nname = 'tiny'\n[serach]\nx = 1\n", "[serach]: unknown table"),
        ("[space]\nnme = 'tiny'\n", "[space] nme: unknown key"),
        ("[task]\nnum_classes = 10\n", "[space] name: is required"),
        ("[space]\nname = 'tiny'\n[task]\nnum_classes = 'ten'\n", "[task] num_classes: must be an integer, got 'ten'"),
        ("[space\n", "not valid TOML"),
    ],
)
def test_run_bad_config(text, needle, capsys, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    code, _, err = run_cli(capsys, "run", str(cfg))
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
