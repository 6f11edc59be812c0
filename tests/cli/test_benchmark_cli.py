"""`edgenas benchmark nb201` end to end on synthetic NB201 tables (offline): records, reports, --resume."""

from __future__ import annotations

import csv
import json
import math

import pytest

from edgenas.cli.main import main
from edgenas.spaces import get_space


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Accuracy and latency for every NB201 cell from a smooth function of its ops (a real trade-off:
    convolutions raise both), keyed by arch string (an ``index`` join needs NAS-Bench-201's own table,
    which a fresh clone does not have)."""
    space = get_space("nb201")
    d = tmp_path_factory.mktemp("nb201tables")
    acc_rows, lat_rows = [], []
    for i, spec in enumerate(space.all_specs()):
        s = str(spec)
        conv3, conv1, skip = s.count("conv_3x3"), s.count("conv_1x1"), s.count("skip")
        acc = 60 + 5 * conv3 + 3 * conv1 + 1.5 * skip - 0.4 * conv3 * conv3 + 0.3 * math.sin(i)
        lat = 1.0 + 0.9 * conv3 + 0.3 * conv1 + 0.05 * skip + 0.01 * (i % 7)
        acc_rows.append({"arch_str": s, "acc": f"{acc:.4f}"})
        lat_rows.append({"arch_str": s, "lat": f"{lat:.4f}"})
    for name, rows in (("acc.csv", acc_rows), ("lat.csv", lat_rows)):
        with open(d / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return d / "acc.csv", d / "lat.csv"


def _bench(tables, out, *extra: str) -> int:
    acc, lat = tables
    return main(["benchmark", "nb201", "--accuracy-csv", str(acc), "--accuracy-column", "acc",
                 "--latency-csv", str(lat), "--latency-column", "lat", "--evaluations", "10,30",
                 "--results", str(out), "--name", "b", *extra])


@pytest.mark.slow  # several whole benchmark runs
def test_benchmark_records_reports_and_resume(tables, tmp_path, capsys):
    out = tmp_path / "res"
    out.mkdir()
    rc = _bench(tables, out, "--methods", "random,evolution", "--seeds", "2", "--json", str(tmp_path / "r.json"))
    assert rc == 0
    recs = json.loads((tmp_path / "r.json").read_text())
    assert len(recs) == 2 * 2 * 2
    assert set(recs[0]) == {"method", "seed", "evaluations", "hv_ratio"}
    by = {(r["method"], r["seed"], r["evaluations"]): r["hv_ratio"] for r in recs}
    for m in ("random", "evolution"):
        for s in (0, 1):
            assert 0.0 <= by[(m, s, 10)] <= by[(m, s, 30)] <= 1.0 + 1e-9
    full = json.loads((out / "b.json").read_text())
    assert full["partial"] is False and full["machine"]["cores"] >= 1
    assert (out / "b.md").read_text().count("| random |") == 1 and (out / "b.png").stat().st_size > 1000
    first = {(t["method"], t["seed"]): t["quality"] for t in full["traces"]}

    # a third seed and another method: the four finished runs are kept, only the new ones run
    capsys.readouterr()
    rc = _bench(tables, out, "--methods", "random,evolution,frontier", "--seeds", "3", "--resume")
    assert rc == 0
    err = capsys.readouterr().err
    assert err.count(": kept from") == 4
    again = json.loads((out / "b.json").read_text())
    got = {(t["method"], t["seed"]): t["quality"] for t in again["traces"]}
    assert len(got) == 9 and all(got[k] == v for k, v in first.items())

    # another protocol cannot be resumed into the same file
    acc, lat = tables
    rc = main(["benchmark", "nb201", "--accuracy-csv", str(acc), "--accuracy-column", "acc", "--latency-csv",
               str(lat), "--latency-column", "lat", "--evaluations", "10,20", "--results", str(out), "--name", "b",
               "--methods", "random", "--seeds", "1", "--resume"])
    assert rc == 2
    assert "--resume" in capsys.readouterr().err
