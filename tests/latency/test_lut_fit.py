"""``edgenas lut fit``: tables fitted from end-to-end measurements (edgenas.latency.fit, cli.lut_fit)."""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from edgenas import EdgenasError, get_space
from edgenas.cli.lut_fit import add_fit_parser, read_measurements
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
from edgenas.testing.cli import run_cli as edgenas_cli

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


@pytest.mark.slow  # several cross-validated fits (3-6 s)
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
    assert table.validation["model"].startswith("prior:truth base")
    assert table.validation["prior_selection"]["chosen"] == "prior:truth"
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
@pytest.mark.slow  # cross-validated fits (4 s)
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
def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    """``edgenas lut fit ARGV...``: (exit code, stdout, stderr)."""
    return edgenas_cli(capsys, "lut", "fit", *argv)


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.mark.slow  # cross-validated fits (4 s)
def test_cli_fit_writes_table_device_and_validation(tmp_path, capsys):
    space = get_space("nb201")
    truth = truth_table(space, seed=7, terms={"nb201_dead_c1": 0.5})
    specs = space.sample(40, 21)
    y = predict_with_table(truth, space, specs)
    csv_path = write_csv(tmp_path / "m.csv", ["arch_str", "ms"], [[s.arch_str, v] for s, v in zip(specs, y)])
    store_dir = tmp_path / "store"
    code, out, err = run_cli(capsys, ["--space", "nb201", "--measurements", str(csv_path), "--device", "pi5",
                                      "--latency-column", "ms", "--folds", "3", "--devices-dir", str(store_dir),
                                      "--prior-device", "none", "--no-curve"])
    assert code == 0, err
    assert "priors: no prior" in out
    assert "cross-validated (3 folds, nested): Spearman" in out and "within ±10%" in out and "MAPE" in out
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
                                      "--devices-dir", str(store_dir), "--no-curve"])
    assert code == 0, err
    assert "priors: 1 candidate table(s) (yours: pi5)" in out and store.device("pi6").runtime == "onnxruntime"
    # pi6 is pi5 at half speed: the rescaled prior (alone or as all of the mix) wins
    chosen = next(ln for ln in out.splitlines() if ln.startswith("chosen: "))
    assert "chosen: prior pi5" in chosen or "(100% pi5 of the base time)" in chosen, chosen
    assert "vs without a prior" in out
    assert store.load_table(store.device("pi6"), "nb201").validation["prior"] == ["pi5"]


@pytest.mark.parametrize(
    ("header", "rows", "extra", "needle"),
    [
        (["name", "latency_ms"], [["a", 1.0]] * 12, [], "has no arch column (arch, arch_str, op_idx_list"),
        (["arch", "time"], [["c3-c3-c3-c3-c3-c3", 1.0]] * 12, [], "has no column 'latency_ms'"),
        (["arch", "latency_ms"], [["c3-c3-c3-c3-c3-c3", 1.0]] * 5 + [["c3-c9", 1.0]], [], "m.csv:7: nb201 arch"),
        (["arch", "latency_ms"], [["c3-c3-c3-c3-c3-c3", 1.0]] * 3, [], "need at least 10 measured networks"),
        (["arch", "latency_ms"], [["c3-c3-c3-c3-c3-c3", 1.0]] * 3 + [["c1-c3-c3-c3-c3-c3", -2]], [],
         "m.csv:5: latency_ms '-2' is not a positive number"),
        (["arch", "latency_ms"], [["c3-c3-c3-c3-c3-c3", "fast"]], [],
         "m.csv:2: latency_ms 'fast' is not a positive number"),
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


def _nb201_split(shared_data: Path, device: str, seed: int, n_train: int, n_test: int = 3000):
    """Seeded train/test split of the shared NB201 latency rows of ``device``: (space, specs, latencies),
    the first ``n_train`` for fitting, the next ``n_test`` for scoring."""
    rows = _dev_rows(shared_data, "nb201_latency_dev.csv")
    space = get_space("nb201", table=shared_data / "nb201" / "nb201_cifar10.csv")
    idx = np.random.default_rng(seed).permutation(len(rows))[:n_train + n_test]
    specs = [space.parse("#" + rows[i]["index"]) for i in idx]
    return space, specs, np.array([float(rows[i][device]) for i in idx])


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


@pytest.mark.slow  # several cross-validated fits (3-6 s)
def test_nb201_dev_data_beats_naive(shared_data):
    space, specs, y = _nb201_split(shared_data, "pixel3", seed=1, n_train=100)
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
    assert (a.latency_column, a.folds, a.seed, a.runtime, a.prior_device, a.prior_table, a.no_curve) == (
        "latency_ms", 5, 0, "litert", "auto", None, False)
    with pytest.raises(SystemExit):
        p.parse_args(["--space", "nb201", "--measurements", "m", "--device", "d", "--prior-device", "x",
                      "--prior-table", "y"])


# -- few-shot: priors, mixes, execution semantics, the CV curve --------------------------------------
def _scaled(table: LatencyTable, device: str, f: float) -> LatencyTable:
    """``table`` for a device ``1/f`` times as fast: entries, overhead and terms times ``f``."""
    entries = {k: Entry(e.p50_ms * f, 0.0, e.p50_ms * f, 1) for k, e in table.entries.items()}
    return LatencyTable(device=device, space=table.space, runtime=RUNTIME, entries=entries,
                        model=DeviceModel(overhead_ms=table.model.overhead_ms * f,
                                          terms={k: v * f for k, v in table.model.terms.items()}))


def test_mix_of_priors_learns_a_device_between_two_others():
    """A device whose unit costs are 0.7 x one board + 0.3 x another (different per-unit shapes): from 15
    rows the mix of the two priors beats either prior alone and no prior."""
    space = get_space("fbnet")
    a = truth_table(space, seed=11)
    b = truth_table(space, seed=12)
    a.device, b.device = "board-a", "board-b"
    target = LatencyTable(device="t", space="fbnet", runtime=RUNTIME, model=DeviceModel(overhead_ms=0.5),
                          entries={k: Entry(v, 0.0, v, 1) for k in a.entries
                                   for v in [0.7 * a.entries[k].p50_ms + 0.3 * b.entries[k].p50_ms]})
    specs = space.sample(15, 3)
    y = predict_with_table(target, space, specs)
    fresh = space.sample(300, 4)
    want = predict_with_table(target, space, fresh)

    def err(t: LatencyTable) -> float:
        return float(np.median(np.abs(predict_with_table(t, space, fresh) / want - 1)))

    auto = fit_latency_table(space, specs, y, "t", priors=[a, b], seed=0)
    only_a = fit_latency_table(space, specs, y, "t", priors=[a], seed=0)
    none = fit_latency_table(space, specs, y, "t", seed=0)
    sel = auto.validation["prior_selection"]
    assert sel["ensemble_weights"].get("mix", 0) > 0.5, sel["ensemble_weights"]
    assert err(auto) < 0.01 and err(auto) < 0.5 * err(only_a) and err(auto) < 0.2 * err(none)


def test_priors_must_come_from_distinct_devices_and_the_space():
    space = get_space("fbnet")
    a = truth_table(space, seed=11)
    specs = space.sample(8, 3)
    y = predict_with_table(a, space, specs)
    with pytest.raises(EdgenasError, match="different devices"):
        fit_latency_table(space, specs, y, "t", priors=[a, a])
    with pytest.raises(EdgenasError, match="space 'fbnet'"):
        fit_latency_table(get_space("nb201"), get_space("nb201").sample(8, 0), [1.0] * 8, "t", priors=[a])


def _dense_truth(space, seed: int) -> tuple[LatencyTable, dict[str, float]]:
    """An eager runtime: every op of a cell runs, dead or not, at the live op's cost (stage mean)."""
    truth = truth_table(space, seed=seed, overhead_ms=2.0)
    layers = space_unit_layers(space)
    terms = {}
    for f in NB201_DEAD:
        op = f.rsplit("_", 1)[1]
        keys = [k for k, u in layers.items() if (u.kind == "add" if op == "add" else getattr(u, "op", None) == op)]
        terms[f] = float(np.mean([truth.entries[k].p50_ms for k in keys]))
    truth.model.terms = terms
    return truth, terms


def test_dense_execution_is_recognised_from_few_rows():
    """On a runtime that prices dead NB201 ops like live ones, the tied ("dense") candidate wins the CV
    and recovers the dead-op costs from 20 rows, where 13 free terms could not be pinned down."""
    space = get_space("nb201")
    truth, terms = _dense_truth(space, seed=21)
    specs = space.sample(20, 5)
    y = predict_with_table(truth, space, specs)
    table = fit_latency_table(space, specs, y, "eager", seed=0)
    assert "dense cells" in table.validation["model"]
    for f in ("nb201_dead_c3", "nb201_const_in_c3"):
        assert table.model.terms[f] == pytest.approx(terms[f], rel=0.15), f
    fresh = space.sample(500, 6)
    rel = np.abs(predict_with_table(table, space, fresh) / predict_with_table(truth, space, fresh) - 1)
    assert np.median(rel) < 0.05
    from scipy.stats import spearmanr

    assert spearmanr(predict_with_table(table, space, fresh), predict_with_table(truth, space, fresh)).statistic > 0.98


def test_ensemble_table_is_one_linear_table(tmp_path):
    """The fitted table may average several CV-indistinguishable candidates: it is still one table whose
    JSON reproduces the same predictions through the ordinary predictor."""
    space = get_space("nb201")
    truth = truth_table(space, seed=8, terms={"nb201_dead_c3": 0.2})
    specs = space.sample(12, 9)
    y = predict_with_table(truth, space, specs) * np.random.default_rng(0).uniform(0.95, 1.05, 12)
    table = fit_latency_table(space, specs, y, "board-y", seed=0)
    assert table.validation["members"] >= 1
    store = DeviceStore(tmp_path / "store")
    store.save_device('name = "board-y"\nruntime = "litert"\nlocal = false\n', "board-y")
    loaded = LatencyTable.load(table.save(tmp_path / "t.json"))
    fresh = space.sample(40, 10)
    got = LatencyPredictor(space, "board-y", store, table=loaded).predict_many(fresh)
    np.testing.assert_allclose(got, predict_with_table(table, space, fresh), rtol=1e-12)


def test_curve_advice_extrapolates_a_learning_curve():
    from edgenas.latency.fit import CURVE_GAIN, curve_advice

    pts = [{"rows": m, "spearman": 1 - (0.02 + 0.6 / m)} for m in (5, 8, 12, 16)]
    adv = curve_advice(pts, 20)
    assert adv["alpha"] == pytest.approx(1.0, abs=0.05) and adv["floor_spearman"] == pytest.approx(0.98, abs=0.005)
    # gain per 10 rows at n: 10 * 0.6 / n^2; it falls below CURVE_GAIN at sqrt(6 / CURVE_GAIN) rows
    assert adv["gain_per_10_rows"] == pytest.approx(6 / 400, rel=0.1)
    assert adv["more_rows"] == pytest.approx((6 / CURVE_GAIN) ** 0.5 - 20, abs=3)
    flat = curve_advice([{"rows": m, "spearman": 0.9} for m in (5, 10, 16)], 20)
    assert flat["more_rows"] == 0
    assert curve_advice(pts[:1], 20) == {"points": 1}


def test_learning_curve_points(tmp_path):
    from edgenas.latency.fit import learning_curve

    space = get_space("fbnet")
    truth = truth_table(space, seed=13)
    specs = space.sample(20, 14)
    y = predict_with_table(truth, space, specs)
    pts = learning_curve(space, specs, y)
    assert [p["rows"] for p in pts] == sorted(p["rows"] for p in pts) and pts[0]["rows"] == 5 and pts[-1]["rows"] < 16
    assert all(-1 <= p["spearman"] <= 1 and 0 <= p["within_10pct"] <= 1 and p["pairs"] >= 15 for p in pts)
    assert pts[-1]["capped_mre"] < pts[0]["capped_mre"]  # more rows, smaller error on this exact data


# -- prior candidates: shipped tables, user tables ------------------------------------------------------
def test_shipped_prior_tables_carry_provenance_and_cover_their_space():
    from edgenas.latency.priors import shipped_dir

    names = sorted(p.name for p in shipped_dir().glob("*.json"))
    assert names == ["gold6226-help__nb201.json", "pixel3-hwnasbench__fbnet.json", "pixel3-hwnasbench__nb201.json",
                     "raspi4-hwnasbench__fbnet.json", "raspi4-hwnasbench__nb201.json"]
    for n in names:
        t = LatencyTable.load(shipped_dir() / n)
        assert "MIT" in t.host["license"] and "MIT" in t.notes and t.host["fitted_by"] == "benchmarks/fit_priors.py"
        assert t.host["data_column"] in ("raspi4", "pixel3", "gold_6226") and t.host["rows"] >= 5000
        assert t.source == "fitted" and t.validation["in_sample"]["spearman"] > 0.95
        space = get_space(t.space)
        assert set(space_unit_layers(space)) <= set(t.entries), n
        assert all(f in FEATURES for f in t.model.terms)


def test_prior_candidates_list_user_and_shipped_tables(tmp_path):
    from edgenas.latency.priors import prior_candidates, with_coverage

    store = DeviceStore(tmp_path / "s")
    shipped = prior_candidates(store, "nb201")
    assert {c.name for c in shipped} == {"raspi4-hwnasbench", "pixel3-hwnasbench", "gold6226-help"}
    assert all(c.shipped and not c.skipped for c in shipped)
    space = get_space("nb201")
    mine = truth_table(space, seed=3)
    mine.device = "my-pi"
    mine.save(tmp_path / "s" / "latency_tables" / "my-pi__nb201.json")
    shadow = _scaled(mine, "pixel3-hwnasbench", 2.0)
    shadow.save(tmp_path / "s" / "latency_tables" / "pixel3-hwnasbench__nb201.json")
    (tmp_path / "s" / "latency_tables" / "broken__nb201.json").write_text("{not json")
    cands = prior_candidates(store, "nb201", exclude=["raspi4-hwnasbench"])
    by = {c.name: c for c in cands}
    assert set(by) == {"my-pi", "pixel3-hwnasbench", "gold6226-help", "broken"}
    assert not by["pixel3-hwnasbench"].shipped and by["gold6226-help"].shipped  # the user's table shadows
    assert by["broken"].skipped.startswith("unreadable")
    # a table that prices few of the measured networks' units (another layout, a partial profile) is set aside
    from edgenas.latency.priors import PriorCandidate

    partial = truth_table(space, seed=4)
    partial.device = "partial"
    partial.entries = {k: partial.entries[k] for k in sorted(partial.entries)[:2]}
    keys = [u.key for spec in space.sample(5, 0) for u in space.units(spec)]
    low, full = with_coverage([PriorCandidate(partial, tmp_path / "p.json", False), by["my-pi"]], keys)
    assert low.coverage < 0.5 and low.skipped.startswith("prices") and full.coverage == 1.0 and not full.skipped


@pytest.mark.slow  # several cross-validated fits (3-6 s)
def test_cli_auto_prior_from_ten_rows_reports_choice_and_curve(tmp_path, capsys):
    """The default (--prior-device auto) with 10 rows: a board that is the shipped Pixel 3 prior at 1.5x
    speed gets that prior, the report says by how much it beat no prior, and the CV curve is printed."""
    from edgenas.latency.priors import shipped_dir

    space = get_space("nb201")
    pixel = LatencyTable.load(shipped_dir() / "pixel3-hwnasbench__nb201.json")
    board = _scaled(pixel, "board", 1 / 1.5)
    specs = space.sample(10, 31)
    y = predict_with_table(board, space, specs)
    path = write_csv(tmp_path / "m.csv", ["arch", "latency_ms"], [[str(s), v] for s, v in zip(specs, y)])
    code, out, err = run_cli(capsys, ["--space", "nb201", "--measurements", str(path), "--device", "board",
                                      "--devices-dir", str(tmp_path / "s"), "--folds", "3"])
    assert code == 0, err
    assert ("priors: auto over 3 candidate table(s) (shipped: gold6226-help, pixel3-hwnasbench, "
            "raspi4-hwnasbench)") in out
    assert "chosen: prior pixel3-hwnasbench" in out and "better by" in out
    assert "CV curve (fitted on m rows, scored on the others): 5 rows" in out and "more rows:" in out
    t = DeviceStore(tmp_path / "s").load_table(DeviceStore(tmp_path / "s").device("board"), "nb201")
    v = t.validation
    assert v["prior_selection"]["chosen"] == "prior:pixel3-hwnasbench" and v["prior_selection"]["gain_vs_no_prior"] > 0
    assert v["spearman"] > 0.95 and len(v["cv_curve"]) >= 2 and "more_rows" in v["curve_advice"]
    fresh = space.sample(200, 32)
    rel = np.abs(predict_with_table(t, space, fresh) / predict_with_table(board, space, fresh) - 1)
    assert np.median(rel) < 0.02


@pytest.mark.slow  # several cross-validated fits (3-6 s)
def test_cli_named_shipped_prior_and_errors(tmp_path, capsys):
    space = get_space("fbnet")
    specs = space.sample(10, 1)
    y = predict_with_table(truth_table(space, seed=2), space, specs)
    path = write_csv(tmp_path / "m.csv", ["arch", "latency_ms"], [[str(s), v] for s, v in zip(specs, y)])
    base = ["--space", "fbnet", "--measurements", str(path), "--devices-dir", str(tmp_path / "s"), "--no-curve"]
    code, out, err = run_cli(capsys, [*base, "--device", "b1", "--prior-device", "raspi4-hwnasbench"])
    assert code == 0, err
    assert "priors: 1 candidate table(s) (shipped: raspi4-hwnasbench)" in out
    code, _, err = run_cli(capsys, [*base, "--device", "b1", "--prior-device", "b1"])
    assert code == 2 and "cannot be its own prior" in err
    code, _, err = run_cli(capsys, [*base, "--device", "b2", "--prior-device", "gold6226-help"])
    assert code == 2 and "unknown device 'gold6226-help' as prior: no table for fbnet" in err


@pytest.mark.slow  # several cross-validated fits (3-6 s)
def test_leave_one_device_out_on_public_data(shared_data):
    """NB201 Xeon Gold 6226 left out: 20 of its rows and the other devices' shipped priors rank its
    other networks with Spearman > 0.95 (benchmarks/latency_fit.py measures all devices)."""
    from scipy.stats import spearmanr

    from edgenas.latency.priors import shipped_dir

    space, specs, y = _nb201_split(shared_data, "gold_6226", seed=0, n_train=20)
    priors = [LatencyTable.load(shipped_dir() / f) for f in ("raspi4-hwnasbench__nb201.json",
                                                             "pixel3-hwnasbench__nb201.json")]
    table = fit_latency_table(space, specs[:20], y[:20], "gold", priors=priors)
    assert spearmanr(predict_with_table(table, space, specs[20:]), y[20:]).statistic > 0.95
