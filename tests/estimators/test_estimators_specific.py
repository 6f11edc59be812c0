"""Estimator-specific checks: proxy definitions against hand computations, reference numbers (skipped
without the shared data), composites, training and successive halving, surrogate, config and CLI."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.stats import spearmanr

from edgenas import Task, get_space
from edgenas.cli.main import main
from edgenas.errors import EdgenasError
from edgenas.estimators import WORST_SCORE, Estimator, get_estimator
from edgenas.estimators.base import Outcome, spec_seed
from edgenas.estimators.compose import percentile
from edgenas.estimators.ofa_predictor import ofa_features
from edgenas.estimators.training import SuccessiveHalving, rung_budgets
from edgenas.estimators.zero_cost import (
    fisher_score,
    grad_norm_score,
    jacob_cov_score,
    naswot_score,
    snip_score,
    synflow_log,
)

DATA = "synthetic:n=48,classes=4,channels=3,size=8"
OFA_TUTORIAL = "mbv3:w1.2:r192:k5e3-k3e3_k5e4-k3e4_k7e6-k7e3-k3e4_k5e4-k5e4-k7e4-k3e3_k3e6-k3e6-k5e6"
PROXIES = ["synflow", "snip", "grad_norm", "fisher", "jacob_cov", "naswot"]


def mlp(seed: int = 0, bias: bool = True) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 5, bias=bias), nn.ReLU(), nn.Linear(5, 3, bias=bias))


# -- proxy definitions vs hand computations ---------------------------------------------------
def test_synflow_of_a_linear_chain_is_depth_times_output():
    """Without biases R = 1ᵀ|W2||W1|1 is homogeneous of degree 1 in each layer, so each layer's
    sum |w * dR/dw| equals R and synflow = 2R (BN and signs must not matter)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 4, bias=False), nn.BatchNorm1d(4), nn.Linear(4, 2, bias=False))
    w1, w2 = net[1].weight.detach().double().abs(), net[3].weight.detach().double().abs()
    r = float((w2 @ w1 @ torch.ones(6, dtype=torch.float64)).sum())
    with torch.no_grad():
        net[2].weight.fill_(-5.0)  # BN is removed: its parameters cannot matter
    assert synflow_log(net, (1, 2, 3)) == pytest.approx(math.log(2 * r), rel=1e-12)


def test_snip_grad_norm_fisher_match_their_definitions():
    x, y = torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0, 1, 2])
    net = mlp()
    net.zero_grad()
    a1 = net[1](net[0](x))
    a1.retain_grad()
    out = net[3](net[2](a1))
    out.retain_grad()
    F.cross_entropy(out, y).backward()
    layers = [net[1], net[3]]
    snip = sum(float((m.weight * m.weight.grad).abs().sum().detach()) for m in layers)
    gn = sum(float(m.weight.grad.norm()) for m in layers)
    fisher = 0.0
    for act, m in ((a1, net[1]), (out, net[3])):
        per_channel = 0.5 * (act.detach() * act.grad).pow(2).mean(0)
        fisher += float(per_channel.sum()) * m.weight.shape[1]
    assert snip_score(mlp(), x, y) == pytest.approx(snip, rel=1e-6)
    assert grad_norm_score(mlp(), x, y) == pytest.approx(gn, rel=1e-6)
    assert fisher_score(mlp(), x, y) == pytest.approx(fisher, rel=1e-6)


def test_naswot_and_jacob_cov_match_their_definitions():
    x = torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    net = mlp()
    codes = (net[1](net[0](x)) > 0).double().detach()
    k = codes @ codes.T + (1 - codes) @ (1 - codes).T
    assert naswot_score(mlp(), x) == pytest.approx(np.linalg.slogdet(k.numpy())[1], rel=1e-9)

    xg = x.clone().requires_grad_(True)
    net(xg).sum().backward()
    corr = np.corrcoef(xg.grad.reshape(8, -1).double().numpy())
    v = np.linalg.eigvalsh(corr)
    expected = -np.sum(np.log(v + 1e-5) + 1 / (v + 1e-5))
    assert jacob_cov_score(mlp(), x) == pytest.approx(expected, rel=1e-9)


def test_naswot_counts_only_activations_on_a_path_to_the_output():
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = mlp()
            self.dead = nn.Sequential(nn.Flatten(), nn.Linear(4, 7), nn.ReLU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.dead(x)  # computed, never used
            return self.body(x)

    x = torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    two = TwoHeads()
    assert naswot_score(two, x) == pytest.approx(naswot_score(two.body, x), rel=1e-12)


def test_degenerate_inputs_give_the_worst_score():
    def flat() -> nn.Sequential:
        net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        with torch.no_grad():
            net[1].weight.zero_()
        return net

    assert synflow_log(flat(), (1, 2, 2)) == WORST_SCORE  # no flow at all
    assert jacob_cov_score(flat(), torch.randn(4, 1, 2, 2)) == WORST_SCORE  # constant Jacobian rows
    same = torch.ones(4, 1, 2, 2)
    assert naswot_score(mlp(), same) == WORST_SCORE  # identical codes: singular kernel


# -- every proxy on every space, any input size ----------------------------------------------
@pytest.mark.parametrize("space_name, opts, task", [
    ("nb201", {}, Task(resolution=12)),
    ("tiny", {"resolutions": [24]}, Task(num_classes=12, in_channels=1)),
    ("fbnet", {}, Task(resolution=16)),
    ("mbv3", {"resolutions": [96]}, Task(num_classes=10)),
])
def test_every_proxy_works_on_every_space_and_input_size(space_name, opts, task):
    space = get_space(space_name, **opts)
    spec = space.sample(1, seed=4)[0]
    for name in PROXIES:
        extra = {} if name == "synflow" else {"dataset": DATA, "batch_size": 4}
        if space_name == "tiny" and name != "synflow":
            extra["dataset"] = "digits"
        score = get_estimator(name, space, task, **extra).score(spec)
        assert math.isfinite(score), (name, space_name)


def test_disconnected_cells_score_worst_but_partly_dead_cells_do_not():
    space = get_space("nb201")
    dead_node = space.parse("none-c3-c3-none-skip-c3")  # node 1 is zero; node 2 still reaches the output
    assert dead_node.is_connected
    for name in PROXIES:
        extra = {} if name == "synflow" else {"dataset": DATA, "batch_size": 8}
        est = get_estimator(name, space, Task(resolution=8), **extra)
        assert est.score(space.parse("none-none-none-none-none-none")) == WORST_SCORE
        assert math.isfinite(est.score(dead_node)), name


@pytest.mark.slow  # synflow on many NB201 cells
def test_synflow_matches_naslib_on_nb201(shared_data):
    space = get_space("nb201")
    with open(shared_data / "nb201" / "zc_proxies_cifar10.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:60]
    ours = get_estimator("synflow", space).score_many([space.parse(r["arch_str"]) for r in rows])
    rho = spearmanr(ours, [float(r["synflow"]) for r in rows]).statistic
    assert rho >= 0.98


def test_params_and_macs_baselines_are_the_exact_cost():
    space = get_space("tiny")
    spec = space.sample(1, seed=0)[0]
    cost = space.cost(spec)
    assert get_estimator("params", space).score(spec) == cost.params
    assert get_estimator("macs", space).score(spec) == cost.macs


# -- external predictor and tables -----------------------------------------------------------
def test_ofa_predictor_reproduces_the_tutorial_number(shared_data):
    space = get_space("mbv3")
    est = get_estimator("ofa-predictor", space, weights=str(shared_data / "ofa" / "acc_predictor.pth"))
    assert round(est.score(space.parse(OFA_TUTORIAL)), 4) == 0.8171


def test_ofa_features_layout():
    space = get_space("mbv3")
    spec = space.parse(OFA_TUTORIAL)
    f = ofa_features(spec)
    assert len(f) == 128 and sum(f) == 2 * sum(spec.depths) + 1
    assert f[0:3] == [0, 1, 0] and f[60:63] == [1, 0, 0]  # block 1: k5, e3
    assert f[9:12] == [0, 0, 0]  # stage 1 has 2 blocks: slots 3 and 4 empty
    assert f[120 + (192 - 112) // 16] == 1
    with pytest.raises(EdgenasError, match=r"w1\.2 specs only"):
        ofa_features(get_space("mbv3", widths=[1.0]).sample(1, 0)[0])
    with pytest.raises(EdgenasError, match=r"resolutions 112\.\.239"):
        ofa_features(get_space("mbv3", resolutions=[240]).sample(1, 0)[0])


def test_ofa_predictor_input_errors(tmp_path):
    with pytest.raises(EdgenasError, match="does not support space 'nb201'"):
        get_estimator("ofa-predictor", get_space("nb201"), weights="x.pth")
    with pytest.raises(EdgenasError, match="not found"):
        get_estimator("ofa-predictor", get_space("mbv3"), weights=str(tmp_path / "none.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"0.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(EdgenasError, match="is not a state dict for this architecture"):
        get_estimator("ofa-predictor", get_space("mbv3"), weights=str(bad))


def test_tabular_nb201_lookup(shared_data):
    space = get_space("nb201")
    est = get_estimator("tabular", space)
    assert est.column == "cifar10_test_200ep"
    assert est.score(space.from_index(6111)) == pytest.approx(94.3733)
    twelve = get_estimator("tabular", space, column="cifar10_test_12ep")
    assert twelve.score(space.from_index(1)) == pytest.approx(88.22)


def test_tabular_any_csv_and_errors(tmp_path):
    space = get_space("tiny")
    specs = space.sample(3, seed=0)
    p = tmp_path / "t.csv"
    p.write_text("arch,acc,score\n" + "".join(f"{s},{i / 10},{i}\n" for i, s in enumerate(specs[:2])))
    est = get_estimator("tabular", space, path=str(p), column="acc")
    assert est.score_many(specs[:2]) == [0.0, 0.1]
    with pytest.raises(EdgenasError, match="is not in table"):
        est.score(specs[2])
    with pytest.raises(EdgenasError, match="no column 'top1'"):
        get_estimator("tabular", space, path=str(p), column="top1")
    with pytest.raises(EdgenasError, match="pass the option path=CSV"):
        get_estimator("tabular", space)


# -- composites ------------------------------------------------------------------------------
def test_percentile_is_a_mid_rank_cdf():
    ref = np.array([1.0, 2.0, 2.0, 3.0])
    assert percentile(ref, 0.5) == 0.0 and percentile(ref, 4.0) == 1.0
    assert percentile(ref, 2.0) == 0.5 and percentile(ref, 1.0) == 0.125


@pytest.mark.slow  # several proxies over reference samples
def test_ensemble_reference_and_batch_pools():
    space = get_space("nb201")
    specs = space.sample(6, seed=1)
    ref = get_estimator("ensemble", space, members="synflow,params", reference=16)
    syn = get_estimator("synflow", space)
    par = get_estimator("params", space)
    ref_specs = space.sample(16, 0)
    rs, rp = np.sort(syn.score_many(ref_specs)), np.sort(par.score_many(ref_specs))
    for s, e in zip(specs, ref.estimate_many(specs)):
        if not s.is_connected:
            assert e.score == WORST_SCORE
            continue
        assert e.score == pytest.approx((percentile(rs, syn.score(s)) + percentile(rp, par.score(s))) / 2)
        assert e.seconds == pytest.approx(ref.members[0].cached(s).seconds + ref.members[1].cached(s).seconds)
    batch = get_estimator("ensemble", space, members="synflow,params", pool="batch")
    scores = batch.score_many(specs)
    finite = [v for v, s in zip(scores, specs) if s.is_connected]
    assert max(finite) <= 1.0 and min(finite) > 0
    assert all(v == WORST_SCORE for v, s in zip(scores, specs) if not s.is_connected)
    assert batch.batch_dependent and batch.score_many(specs[:1]) == [1.0]
    dead = space.parse("none-none-none-none-none-none")
    assert ref.score(dead) == WORST_SCORE
    with pytest.raises(EdgenasError, match="pool must be one of"):
        get_estimator("ensemble", space, pool="all")
    with pytest.raises(EdgenasError, match="unknown estimator 'synflo'"):
        get_estimator("ensemble", space, members="synflo,params")


def test_filter_keeps_the_top_fraction_of_a_batch_and_reports_cost():
    space = get_space("nb201")
    specs = space.sample(8, seed=2)
    f = get_estimator("filter", space, cheap="params", expensive="synflow", keep=0.25, pool="batch")
    ests = f.estimate_many(specs)
    params = [space.cost(s).params for s in specs]
    top = sorted(range(8), key=lambda i: (-params[i], str(specs[i])))[:2]
    syn = get_estimator("synflow", space)
    for i, e in enumerate(ests):
        if i in top:
            assert e.score == syn.score(specs[i])
            assert e.seconds > f.cheap.cached(specs[i]).seconds
        else:
            assert e.score == WORST_SCORE and e.seconds == f.cheap.cached(specs[i]).seconds
    assert f.expensive.computed == 2


def test_filter_reference_threshold():
    space = get_space("nb201")
    f = get_estimator("filter", space, cheap="params", expensive="macs", keep=0.5, reference=20)
    thr = f.threshold()
    ref = [space.cost(s).params for s in space.sample(20, 0)]
    assert thr == pytest.approx(float(np.quantile(ref, 0.5)))
    for s, e in zip(space.sample(10, 5), f.estimate_many(space.sample(10, 5))):
        passed = space.cost(s).params >= thr
        assert (e.score == space.cost(s).macs) if passed else (e.score == WORST_SCORE)
    with pytest.raises(EdgenasError, match="keep must be in"):
        get_estimator("filter", space, keep=0)


# -- training and successive halving ---------------------------------------------------------
def test_training_learns_and_reports_its_work():
    space = get_space("tiny", resolutions=[16])
    est = get_estimator("train", space, dataset="synthetic:n=160,classes=4,channels=3,size=16,noise=0.3",
                        epochs=3, train_samples=96, val_samples=0, batch_size=16, lr=0.05)
    spec = space.sample(1, seed=0)[0]
    e = est.estimate(spec)
    assert e.score >= 0.6  # 4 classes: chance is 0.25
    assert e.epochs == 3 and e.samples == 3 * 96
    smooth = get_estimator("train", space, dataset="synthetic:n=160,classes=4,channels=3,size=16,noise=0.3",
                           epochs=3, train_samples=96, val_samples=0, batch_size=16, label_smoothing=0.1)
    assert 0.0 <= smooth.score(spec) <= 1.0


def test_training_at_a_lower_resolution_and_divergence():
    space = get_space("tiny", resolutions=[64])
    spec = space.sample(1, seed=1)[0]
    low = get_estimator("train", space, dataset=DATA, epochs=1, train_samples=16, val_samples=8, batch_size=8,
                        resolution=16)
    assert low.input_shape(spec) == (3, 16, 16)
    assert 0.0 <= low.score(spec) <= 1.0
    wild = get_estimator("train", space, dataset=DATA, epochs=2, train_samples=16, val_samples=8, batch_size=8,
                         lr=1e30)
    assert wild.score(spec) == WORST_SCORE
    with pytest.raises(EdgenasError, match="epochs must be an integer >= 1"):
        get_estimator("train", space, epochs=0)


def test_rung_budgets():
    assert rung_budgets(1, 9, 3) == [1, 3, 9]
    assert rung_budgets(1, 8, 2) == [1, 2, 4, 8]
    assert rung_budgets(2, 5, 3) == [2]
    with pytest.raises(EdgenasError):
        rung_budgets(3, 2, 3)
    with pytest.raises(EdgenasError):
        rung_budgets(1, 9, 1)


def test_successive_halving_promotes_the_best_fraction():
    space = get_space("nb201")
    specs = space.sample(9, seed=7)
    quality = {str(s): i / 10 for i, s in enumerate(specs)}
    calls: list[tuple[int, int]] = []

    class ByBudget(Estimator):
        name = "by-budget"

        def __init__(self, epochs: int) -> None:
            super().__init__(space)
            self.epochs = epochs

        def _compute(self, spec):
            calls.append((self.epochs, 1))
            # noisy at low budget: the worst spec looks best at 1 epoch
            bonus = 0.95 if (self.epochs == 1 and quality[str(spec)] == 0.0) else 0.0
            return Outcome(quality[str(spec)] + bonus, epochs=self.epochs, samples=100 * self.epochs)

    sh = SuccessiveHalving(ByBudget, min_epochs=1, max_epochs=9, eta=3)
    res = sh.run(specs)
    assert [r.epochs for r in res.rungs] == [1, 3, 9]
    assert [len(r.estimates) for r in res.rungs] == [9, 3, 1]
    assert res.rungs[0].promoted == [str(specs[0]), str(specs[8]), str(specs[7])]
    assert res.best.arch == str(specs[8]) and res.best.score == pytest.approx(2 + 0.8)
    by_arch = {e.arch: e for e in res.estimates}
    assert by_arch[str(specs[8])].epochs == 1 + 3 + 9 and by_arch[str(specs[8])].samples == 1300
    assert by_arch[str(specs[1])].score == pytest.approx(0.1) and by_arch[str(specs[1])].epochs == 1
    assert len(calls) == 13
    assert res.samples == sum(e.samples for e in res.estimates)


def test_halving_estimator_runs_the_driver():
    space = get_space("tiny", resolutions=[16])
    est = get_estimator("halving", space, dataset=DATA, min_epochs=1, max_epochs=2, eta=2,
                        train_options={"train_samples": 16, "val_samples": 8, "batch_size": 8})
    ests = est.estimate_many(space.sample(4, seed=0))
    assert [len(r.estimates) for r in est.last_result.rungs] == [4, 2]
    assert sorted(e.epochs for e in ests) == [1, 1, 3, 3]
    with pytest.raises(EdgenasError, match="not 'train' options"):
        get_estimator("halving", space, train_options={"epoch": 2})


# -- surrogate -------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["forest", "gbm"])
def test_surrogate_learns_a_cost_and_reports_uncertainty(model):
    space = get_space("nb201")
    train, test = space.sample(120, seed=0), space.sample(40, seed=1)
    target = get_estimator("params", space)
    sur = get_estimator("surrogate", space, model=model, n_estimators=60)
    with pytest.raises(EdgenasError, match="not fitted"):
        sur.score(test[0])
    sur.update(target.estimate_many([*train, space.parse("none-none-none-none-none-none")]))
    assert sur.n_fit == sum(s.is_connected for s in train) < 121  # the -inf of disconnected cells is left out
    mean, std = sur.predict(test)
    assert spearmanr(mean, target.score_many(test)).statistic > 0.8
    assert np.all(std >= 0) and std.max() > 0
    assert sur.score_many(test) == [float(v) for v in mean]


def test_surrogate_from_a_csv(tmp_path):
    space = get_space("nb201")
    p = tmp_path / "scores.csv"
    specs = space.sample(10, seed=3)
    p.write_text("arch,score\n" + "".join(f"{s},{i}\n" for i, s in enumerate(specs)))
    sur = get_estimator("surrogate", space, data=str(p), n_estimators=5)
    assert sur.fitted and sur.n_fit == 10
    with pytest.raises(EdgenasError, match="has no column 'acc'"):
        get_estimator("surrogate", space, data=str(p), column="acc")


# -- seeds, config ---------------------------------------------------------------------------
def test_spec_seed_is_stable_and_distinct():
    assert spec_seed(0, "nb201:c3-c3-c3-c3-c3-c3") == spec_seed(0, "nb201:c3-c3-c3-c3-c3-c3")
    assert spec_seed(0, "a") != spec_seed(1, "a") and spec_seed(0, "a") != spec_seed(0, "b")
    assert 0 <= spec_seed(123, "x") < 2**31


def test_estimator_table(tmp_path):
    from edgenas.jobs import ConfigError, EstimatorConfig, JobConfig

    space = get_space("nb201")
    est = EstimatorConfig("snip", seed=3, dataset=DATA, options={"batch_size": 4}).build(space, Task(resolution=8))
    assert est.name == "snip" and est.seed == 3 and est.batch_size == 4
    p = tmp_path / "t.csv"
    spec = space.sample(1, 0)[0]
    p.write_text(f"arch,score\n{spec},1.5\n")

    def table(est: dict):
        return JobConfig.from_dict({"space": {"name": "nb201"}, "estimator": est}, base_dir=tmp_path).estimator

    assert table({"name": "tabular", "options": {"path": "t.csv"}}).build(space).score(spec) == 1.5
    digits = table({"name": "snip", "dataset": "digits"}).build(space)
    assert digits.dataset.name == "digits"  # a built-in name is not a path
    with pytest.raises(ConfigError, match=r"\[estimator\] optoins: unknown key"):
        table({"name": "synflow", "optoins": {}})
    with pytest.raises(ConfigError, match=r"\[estimator\] name: is required"):
        table({"seed": 1})
    with pytest.raises(ConfigError, match=r"\[estimator\] seed: must be an integer, got '1'"):
        table({"name": "synflow", "seed": "1"})


# -- CLI -------------------------------------------------------------------------------------
def test_cli_estimate_csv_and_json(tmp_path, capsys):
    out = tmp_path / "est.csv"
    assert main(["estimate", "--space", "nb201", "--estimator", "synflow", "--random", "3", "--seed", "1",
                 "--csv", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["arch", "score", "seconds", "epochs", "samples"]
    assert [r["arch"] for r in rows] == [str(s) for s in get_space("nb201").sample(3, 1)]
    capsys.readouterr()
    assert main(["estimate", "--space", "nb201", "--estimator", "snip", "--dataset", DATA, "--est-opt",
                 "batch_size=4", "--resolution", "8", "--arch", "none-none-none-none-none-none",
                 "--arch", "c3-c3-c3-c3-c3-c3", "--json"]) == 0
    captured = capsys.readouterr()
    recs = json.loads(captured.out)
    assert recs[0]["score"] == -math.inf and math.isfinite(recs[1]["score"])
    split = json.loads(captured.err.split("dataset split: ", 1)[1])
    assert split["seed"] == 0 and split["n_train"] + split["n_val"] == 48 and len(split["split_sha1"]) == 40
    assert main(["estimate", "--space", "nb201", "--estimator", "filter", "--est-opt", "cheap=params",
                 "--est-opt", "expensive=synflow", "--est-opt", 'expensive_options={}', "--est-opt", "keep=0.5",
                 "--est-opt", "pool=batch", "--random", "4"]) == 0
    table = capsys.readouterr().out
    assert table.count("-inf") == 2


def test_cli_estimators_lists_every_estimator(capsys):
    assert main(["estimators", "--json"]) == 0
    names = {r["name"] for r in json.loads(capsys.readouterr().out)}
    assert {"synflow", "train", "ofa-predictor", "tabular", "surrogate"} <= names


@pytest.mark.parametrize("argv, message", [
    (["--estimator", "nope", "--random", "1"], "unknown estimator 'nope'"),
    (["--estimator", "synflow", "--weights", "w.pth", "--random", "1"], "takes no --weights"),
    (["--estimator", "snip", "--dataset", "missing.npz", "--random", "1"], "dataset 'missing.npz' not found"),
    (["--estimator", "snip", "--est-opt", "epochs=1", "--random", "1"], "unknown option(s) epochs"),
    (["--estimator", "ofa-predictor", "--weights", "w.pth", "--random", "1"], "does not support space 'nb201'"),
    (["--estimator", "synflow", "--est-opt", "oops", "--random", "1"], "must look like key=value"),
    (["--estimator", "synflow", "--random", "1", "--csv", "/no/such/dir/x.csv"], "does not exist"),
])
def test_cli_estimate_errors_are_one_line_exit_2(argv, message, capsys):
    assert main(["estimate", "--space", "nb201", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
