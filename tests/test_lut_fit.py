"""``edgenas lut fit``: tables fitted from end-to-end measurements (edgenas.latency.fit, cli.lut_fit)."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest

from edgenas import EdgenasError, get_space
from edgenas.cli.lut_fit import add_fit_parser, read_measurements
from edgenas.cli.main import OneLineParser, build_parser, main
from edgenas.latency import DeviceStore, LatencyPredictor, LatencyTable
from edgenas.latency.features import FEATURES, spec_features
from edgenas.latency.fit import (
    NB201_DEAD,
    FitConfig,
    cross_validate,
    fit_latency_table,
    predict_with_table,
    space_unit_layers,
)
from edgenas.latency.table import DeviceModel, Entry

RUNTIME = {"name": "litert", "version": "", "threads": 1, "options": {}}


def truth_table(space, seed: int, terms: dict[str, float] | None = None, overhead_ms: float = 0.7) -> LatencyTable:
    """A ground-truth table for every unit of the space: 1 ms per 10 M MACs + 0.3 us per activation
    element, times a random factor in [0.4, 2.5] per unit (so the analytic proxy is far from exact)."""
    rng = random.Random(seed)
    entries = {}
    for k, u in sorted(space_unit_layers(space).items()):
        c = u.cost()
        v = (c.macs / 1e7 + 3e-4 * c.peak_act_elems + 0.01) * rng.uniform(0.4, 2.5)
        entries[k] = Entry(v, 0.0, v, 1)
    return LatencyTable(device="truth", space=space.name, runtime=RUNTIME, entries=entries,
                        model=DeviceModel(overhead_ms=overhead_ms, terms=terms or {}))


# -- features -------------------------------------------------------------------------------------
def test_nb201_dead_features_count_what_units_prune():
    space = get_space("nb201")
    names = [*NB201_DEAD, "nb201_disconnected"]
    assert all(n in FEATURES for n in names)
    # node 1 = c3(x) never reaches the output (edges 2<-1, 3<-1 are none): one dead c3 per cell
    f = spec_features(names, space, space.parse("c3-none-none-c3-none-none"))
    assert f["nb201_dead_c3"] == 15 and sum(f.values()) == 15
    # node 2 = c3(x) + zero(node1) is dead and sums a zero edge; node 3 = c3(node1 = 0): constant input
    f = spec_features(names, space, space.parse("none-c3-none-none-c3-none"))
    assert f["nb201_dead_zero_c3"] == 15 and f["nb201_const_in_c3"] == 15 and f["nb201_disconnected"] == 1
    # a fully live cell has nothing pruned
    f = spec_features(names, space, space.parse("c3-c1-avg-c3-c1-avg"))
    assert sum(f.values()) == 0
    # features + live units account for every non-skip op and every addition of the cell
    for spec in space.sample(200, 3):
        f = spec_features(names, space, spec)
        n_ops = sum(op in ("c1", "c3", "avg") for op in spec.ops)
        live = sum(u.kind == "nb201op" for u in space.units(spec)) / 15
        dead = sum(v for k, v in f.items() if not k.endswith(("_add", "disconnected"))) / 15
        assert live + dead == n_ops, spec


# -- fitting recovers a synthetic ground truth ----------------------------------------------------
def test_fit_recovers_fbnet_unit_costs():
    space = get_space("fbnet")
    truth = truth_table(space, seed=1)
    specs = space.sample(400, 7)
    y = predict_with_table(truth, space, specs)
    table = fit_latency_table(space, specs, y, "synth", configs=[FitConfig("unit", 1e-10)])
    # Repeated layers of a stage (stride 1, cin == cout: skip is a free identity) are identifiable in
    # absolute terms; at a stage's first layer every choice is a unit, so costs there are only known up
    # to a constant shared with the overhead: check their differences.
    layers = space_unit_layers(space)
    repeated = [k for k, u in layers.items() if getattr(u, "res", False)]
    assert len(repeated) >= 40
    err = [abs(table.entries[k].p50_ms / truth.entries[k].p50_ms - 1) for k in repeated]
    assert np.median(err) < 0.01 and max(err) < 0.05
    firsts: dict[tuple[int, int], list[str]] = {}
    for k, u in layers.items():
        if u.kind in ("mbconv", "conv") and not getattr(u, "res", False) and u.cin != 3 and u.hw > 1:
            firsts.setdefault((u.cin, u.hw), []).append(k)
    for keys in firsts.values():
        if len(keys) < 2:
            continue
        got = np.array([table.entries[k].p50_ms for k in keys])
        want = np.array([truth.entries[k].p50_ms for k in keys])
        np.testing.assert_allclose(got - got.mean(), want - want.mean(), atol=0.02)
    fresh = space.sample(200, 99)
    rel = np.abs(predict_with_table(table, space, fresh) - predict_with_table(truth, space, fresh))
    rel /= predict_with_table(truth, space, fresh)
    assert rel.max() < 0.01


def test_fit_recovers_nb201_shared_costs_and_dead_terms():
    space = get_space("nb201")
    truth = truth_table(space, seed=2, terms={"nb201_dead_c3": 0.4, "nb201_const_in_c1": 0.2})
    specs = space.sample(300, 5)
    y = predict_with_table(truth, space, specs)
    table = fit_latency_table(space, specs, y, "synth", seed=0)  # default grid, chosen by CV
    # per-stage costs are collinear (the same counts in every stage): only their sums are identifiable
    for op in ("c1", "c3", "avg"):
        keys = [k for k in truth.entries if k.startswith("nb201op(") and f"op={op})" in k]
        got = sum(table.entries[k].p50_ms for k in keys)
        want = sum(truth.entries[k].p50_ms for k in keys)
        assert got == pytest.approx(want, rel=0.03), op
    assert table.model.terms.get("nb201_dead_c3", 0) == pytest.approx(0.4, rel=0.05)
    assert table.model.terms.get("nb201_const_in_c1", 0) == pytest.approx(0.2, rel=0.1)
    fresh = space.sample(300, 11)
    rel = np.abs(predict_with_table(table, space, fresh) / predict_with_table(truth, space, fresh) - 1)
    assert np.median(rel) < 0.01 and rel.max() < 0.05


def test_prior_is_rescaled_from_few_measurements():
    """A prior table that is the truth / 3 (another, slower device) plus 8 measurements recovers it."""
    space = get_space("fbnet")
    truth = truth_table(space, seed=3, overhead_ms=2.0)
    prior = truth_table(space, seed=3, overhead_ms=0.0)
    for e in prior.entries.values():
        e.p50_ms = e.mean_ms = e.p50_ms / 3
    specs = space.sample(8, 1)
    y = predict_with_table(truth, space, specs)
    table = fit_latency_table(space, specs, y, "synth", prior=prior)
    without = fit_latency_table(space, specs, y, "synth")
    fresh = space.sample(200, 2)
    want = predict_with_table(truth, space, fresh)
    err_prior = np.abs(predict_with_table(table, space, fresh) / want - 1)
    err_proxy = np.abs(predict_with_table(without, space, fresh) / want - 1)
    assert table.validation["model"].startswith("prior base")
    assert err_prior.max() < 0.01
    assert err_prior.mean() < err_proxy.mean()


def test_robust_to_outliers_and_bad_input():
    space = get_space("fbnet")
    truth = truth_table(space, seed=4)
    specs = space.sample(120, 3)
    y = predict_with_table(truth, space, specs)
    fresh = space.sample(100, 5)
    want = predict_with_table(truth, space, fresh)
    cfg = [FitConfig("kind", 0.03)]
    clean = fit_latency_table(space, specs[4:], y[4:], "synth", configs=cfg)
    y[:4] = [0.01, 0.02, 500.0, 0.03]  # folded nets and a glitch
    table = fit_latency_table(space, specs, y, "synth", configs=cfg)
    err_clean = np.median(np.abs(predict_with_table(clean, space, fresh) / want - 1))
    err = np.median(np.abs(predict_with_table(table, space, fresh) / want - 1))
    assert err < 1.2 * err_clean + 0.005, (err, err_clean)
    with pytest.raises(EdgenasError, match="at least"):
        fit_latency_table(space, specs[:3], y[3:6], "x")
    with pytest.raises(EdgenasError, match="positive"):
        fit_latency_table(space, specs[:6], [1, 2, 3, 0, 5, 6], "x")
    with pytest.raises(EdgenasError, match="latencies"):
        fit_latency_table(space, specs[:6], [1.0] * 5, "x")
    with pytest.raises(EdgenasError, match="space"):
        fit_latency_table(get_space("nb201"), get_space("nb201").sample(6, 0), [1.0] * 6, "x", prior=truth)


def test_cross_validate_is_nested_and_honest():
    space = get_space("fbnet")
    truth = truth_table(space, seed=5)
    specs = space.sample(60, 8)
    y = predict_with_table(truth, space, specs)
    cv = cross_validate(space, specs, y, folds=3)
    assert cv["folds"] == 3 and cv["n"] == 60 and cv["spearman"] > 0.75
    noise = np.random.default_rng(0).permutation(y)  # latencies unrelated to the archs
    assert cross_validate(space, specs, noise, folds=3)["spearman"] < 0.5


# -- the table plugs into the predictor and survives JSON -----------------------------------------
def test_json_round_trip_reproduces_predictions(tmp_path):
    space = get_space("nb201")
    truth = truth_table(space, seed=6, terms={"nb201_dead_c3": 0.3, "nb201_disconnected": -2.0})
    specs = space.sample(80, 2)
    table = fit_latency_table(space, specs, predict_with_table(truth, space, specs), "board-x",
                              configs=[FitConfig("kind", 0.01, (*NB201_DEAD, "nb201_disconnected"))])
    assert table.model.terms  # non-additive part present
    path = table.save(tmp_path / "t.json")
    raw = json.loads(path.read_text())
    assert raw["source"] == "fitted" and raw["model"]["terms"]
    loaded = LatencyTable.load(path)
    store = DeviceStore(tmp_path / "store")
    store.save_device('name = "board-x"\nruntime = "litert"\nlocal = false\n', "board-x")
    fresh = space.sample(50, 13)
    got = LatencyPredictor(space, "board-x", store, table=loaded).predict_many(fresh)
    np.testing.assert_allclose(got, predict_with_table(table, space, fresh), rtol=1e-12)
    # every unit of the space has an entry: any spec predicts, not only the training ones
    assert set(loaded.entries) == set(space_unit_layers(space))


# -- CLI --------------------------------------------------------------------------------------------
def _fit_wired() -> bool:
    """True once edgenas/cli/latency.py registers ``lut fit`` (then the tests go through main())."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        try:
            build_parser().parse_args(["lut", "fit", "--help"])
        except SystemExit as exc:
            return exc.code == 0
    return False


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    """``edgenas lut fit ...`` through main() once wired, else through a parser built with add_fit_parser
    and main()'s error contract."""
    if _fit_wired():
        try:
            code = main(["lut", "fit", *argv])
        except SystemExit as exc:
            code = int(exc.code or 0)
    else:
        from edgenas.cli.latency import add_store_argument, store_from

        parser = OneLineParser(prog="edgenas")
        lsub = parser.add_subparsers(dest="command").add_parser("lut").add_subparsers(dest="lut_command")
        add_fit_parser(lsub, add_store_argument, store_from)
        try:
            args = parser.parse_args(["lut", "fit", *argv])
            code = args.func(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
        except EdgenasError as exc:
            print(f"edgenas lut: error: {exc}", file=__import__("sys").stderr)
            code = 2
    out, err = capsys.readouterr()
    return code, out, err


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_cli_fit_writes_table_device_and_validation(tmp_path, capsys):
    space = get_space("nb201")
    truth = truth_table(space, seed=7, terms={"nb201_dead_c1": 0.5})
    specs = space.sample(40, 21)
    y = predict_with_table(truth, space, specs)
    csv_path = write_csv(tmp_path / "m.csv", ["arch_str", "ms"], [[s.arch_str, v] for s, v in zip(specs, y)])
    store_dir = tmp_path / "store"
    code, out, err = run_cli(capsys, ["--space", "nb201", "--measurements", str(csv_path), "--device", "pi5",
                                      "--latency-column", "ms", "--folds", "3", "--devices-dir", str(store_dir)])
    assert code == 0, err
    assert "cross-validated (3 folds): Spearman" in out and "within ±10%" in out and "MAPE" in out
    store = DeviceStore(store_dir)
    dev = store.device("pi5")
    assert dev.runtime == "litert" and not dev.local
    table = store.load_table(dev, "nb201")
    assert table is not None and table.validation["folds"] == 3 and table.validation["spearman"] > 0.95
    fresh = space.sample(30, 5)
    got = LatencyPredictor(space, "pi5", store).predict_many(fresh)
    rel = np.abs(np.array(got) / predict_with_table(truth, space, fresh) - 1)
    assert np.median(rel) < 0.04 and rel.max() < 0.15

    # a prior from that device's table, for a second board (op-index CSV, FBNet would be the same path)
    csv2 = write_csv(tmp_path / "m2.csv", ["arch", "latency_ms"], [[str(s), 2 * v] for s, v in zip(specs, y)])
    code, out, err = run_cli(capsys, ["--space", "nb201", "--measurements", str(csv2), "--device", "pi6",
                                      "--prior-device", "pi5", "--runtime", "onnxruntime", "--folds", "2",
                                      "--devices-dir", str(store_dir)])
    assert code == 0, err
    assert "prior from pi5" in out and store.device("pi6").runtime == "onnxruntime"


@pytest.mark.parametrize(
    ("header", "rows", "extra", "needle"),
    [
        (["name", "latency_ms"], [["a", 1.0]] * 12, [], "needs a header with an 'arch' column"),
        (["arch", "time"], [["c3-c3-c3-c3-c3-c3", 1.0]] * 12, [], "no latency column 'latency_ms'"),
        (["arch", "latency_ms"], [["c3-c3-c3-c3-c3-c3", 1.0]] * 5 + [["c3-c9", 1.0]], [], "m.csv:7: nb201 arch"),
        (["arch", "latency_ms"], [["c3-c3-c3-c3-c3-c3", 1.0]] * 3, [], "need at least 10 measured networks"),
        (["arch", "latency_ms"], [["c3-c3-c3-c3-c3-c3", 1.0]] * 3 + [["c1-c3-c3-c3-c3-c3", -2]], [],
         "m.csv:5: latency '-2' must be a positive number"),
        (["arch", "latency_ms"], [["c3-c3-c3-c3-c3-c3", "fast"]], [], "m.csv:2: latency 'fast' is not a number"),
        (["arch", "latency_ms"], [["c3-c3-c3-c3-c3-c3", 1.0]] * 12, ["--prior-device", "nosuch"], "unknown device"),
        (["arch", "latency_ms"], [["c3-c3-c3-c3-c3-c3", 1.0]] * 12, ["--folds", "1"], "--folds"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, header, rows, extra, needle):
    path = write_csv(tmp_path / "m.csv", header, rows)
    code, _, err = run_cli(capsys, ["--space", "nb201", "--measurements", str(path), "--device", "b",
                                    "--devices-dir", str(tmp_path / "s"), *extra])
    assert code == 2
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "s" / "latency_tables").exists()


def test_cli_missing_file_and_flags(tmp_path, capsys):
    code, _, err = run_cli(capsys, ["--space", "nb201", "--measurements", str(tmp_path / "none.csv"),
                                    "--device", "b", "--devices-dir", str(tmp_path)])
    assert code == 2 and "not found" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, ["--space", "nb201", "--device", "b"])
    assert code == 2 and "--measurements" in err and err.count("\n") == 1


def test_read_measurements_accepts_op_idx_list(tmp_path):
    space = get_space("fbnet")
    specs = space.sample(3, 0)
    path = write_csv(tmp_path / "f.csv", ["op_idx_list", "raspi4"],
                     [[s.op_idx_list, 10 + i] for i, s in enumerate(specs)])
    got, lat = read_measurements(path, space, "raspi4")
    assert got == specs and lat == [10.0, 11.0, 12.0]


# -- public dev data ------------------------------------------------------------------------------
def _dev_rows(shared_data: Path, name: str) -> list[dict[str, str]]:
    path = shared_data / "latency" / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    return list(csv.DictReader(open(path)))


def test_fbnet_dev_data_few_networks(shared_data):
    rows = _dev_rows(shared_data, "fbnet_cifar100_latency_dev.csv")
    space = get_space("fbnet")
    specs = [space.parse(r["op_idx_list"]) for r in rows]
    y = np.array([float(r["raspi4"]) for r in rows])
    idx = np.random.default_rng(0).permutation(len(rows))
    train, test = idx[:50], idx[50:1050]
    table = fit_latency_table(space, [specs[i] for i in train], y[train], "raspi4")
    from edgenas.latency.validate import latency_metrics

    m = latency_metrics(predict_with_table(table, space, [specs[i] for i in test]).tolist(), y[test].tolist())
    assert m["spearman"] > 0.95 and m["within_10pct"] > 0.9


def test_nb201_dev_data_beats_naive(shared_data):
    rows = _dev_rows(shared_data, "nb201_latency_dev.csv")
    space = get_space("nb201", table=shared_data / "nb201" / "nb201_cifar10.csv")
    idx = np.random.default_rng(1).permutation(len(rows))
    train, test = idx[:100], idx[100:3100]
    specs = [space.parse("#" + rows[i]["index"]) for i in np.concatenate([train, test])]
    y = np.array([float(rows[i]["pixel3"]) for i in np.concatenate([train, test])])
    table = fit_latency_table(space, specs[:100], y[:100], "pixel3")
    from scipy.optimize import nnls
    from scipy.stats import spearmanr

    pred = predict_with_table(table, space, specs[100:])
    X = np.array([space.encode(s) for s in specs])
    naive = X[100:] @ nnls(X[:100], y[:100])[0]
    ours_rho, naive_rho = spearmanr(pred, y[100:]).statistic, spearmanr(naive, y[100:]).statistic
    assert ours_rho > 0.95 and ours_rho > naive_rho + 0.02
    within = lambda p: float((np.abs(p - y[100:]) / y[100:] <= 0.1).mean())  # noqa: E731
    assert within(pred) > within(naive) + 0.1


def test_argparse_namespace_types():
    """add_fit_parser returns the sub-parser with the documented flags and defaults."""
    parser = argparse.ArgumentParser()
    lsub = parser.add_subparsers(dest="cmd")
    p = add_fit_parser(lsub, lambda q: q.add_argument("--devices-dir"), lambda a: DeviceStore(a.devices_dir))
    a = p.parse_args(["--space", "nb201", "--measurements", "m.csv", "--device", "d"])
    assert (a.latency_column, a.folds, a.seed, a.runtime, a.prior_device, a.prior_table) == (
        "latency_ms", 5, 0, "litert", None, None)
    with pytest.raises(SystemExit):
        p.parse_args(["--space", "nb201", "--measurements", "m", "--device", "d", "--prior-device", "x",
                      "--prior-table", "y"])
