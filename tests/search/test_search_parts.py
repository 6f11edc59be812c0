"""Search building blocks: fields and budgets, Pareto fronts and hypervolume, the exact EHVI, the
cheapest-member check, and the space hooks samplers rely on (trial_params, mutate, crossover)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import optuna
import pytest
from optuna._hypervolume import compute_hypervolume

from edgenas import get_space
from edgenas.errors import EdgenasError
from edgenas.search.acquisition import ehvi
from edgenas.search.cheapest import check_budgets, first_feasible, minimise
from edgenas.search.fields import parse_budget, parse_value, resolve_field
from edgenas.search.oracle import CostOracle
from edgenas.search.pareto import hypervolume, nondominated
from edgenas.spaces import space_names


# -- fields and budgets -------------------------------------------------------------------------
def test_budget_values_read_units():
    lat = resolve_field("latency_ms", ["dev"])
    ram = resolve_field("peak_ram_bytes", ["dev"])
    assert ram.name == "peak_ram_bytes_int8"
    assert resolve_field("peak_ram_bytes", ["dev"], "fp32").name == "peak_ram_bytes_fp32"
    assert parse_value("64KiB", ram) == 65536
    assert parse_value("1.5MiB", ram) == 1.5 * 2**20
    assert parse_value("30M", resolve_field("macs", [])) == 30e6
    assert parse_value("2.5ms", lat) == 2.5
    assert parse_value("90%", resolve_field("accuracy", [])) == pytest.approx(0.9)
    with pytest.raises(EdgenasError, match="in ms but the field is not a latency"):
        parse_value("3ms", ram)
    with pytest.raises(EdgenasError, match="cannot read value"):
        parse_value("lots", ram)


def test_budget_parsing_and_violation():
    b = parse_budget("latency_ms <= 2", ["dev"])
    assert b.upper and b.limit == 2 and b.met(2.0) and not b.met(2.1)
    assert b.violation(3.0) == pytest.approx(0.5) and b.violation(1.0) == pytest.approx(-0.5)
    lo = parse_budget("accuracy>=0.9", ["dev"])
    assert not lo.upper and lo.met(0.95) and lo.violation(0.81) == pytest.approx(0.1)
    assert str(parse_budget("peak_ram_bytes<=64KiB", [])) == "peak_ram_bytes_int8<=65536"
    with pytest.raises(EdgenasError, match="FIELD<=VALUE"):
        parse_budget("latency_ms < 2", ["dev"])
    with pytest.raises(EdgenasError, match="unknown field 'latency'"):
        parse_budget("latency<=2", ["dev"])
    with pytest.raises(EdgenasError, match="needs a device"):
        parse_budget("latency_ms<=2", [])


def test_several_devices_name_their_latency_fields():
    f = resolve_field("latency_ms@b", ["a", "b"])
    assert (f.name, f.device) == ("latency_ms@b", "b")
    assert resolve_field("latency_ms", ["a", "b"]).name == "latency_ms@a"
    assert resolve_field("latency_ms", ["a"]).name == "latency_ms"
    with pytest.raises(EdgenasError, match="not one of the search's devices"):
        resolve_field("latency_ms@c", ["a", "b"])


# -- fronts and hypervolume ---------------------------------------------------------------------
@pytest.mark.parametrize("d", [2, 3, 4])
def test_hypervolume_matches_optuna(d):
    rng = np.random.default_rng(d)
    for _ in range(10):
        P = rng.random((25, d))
        ref = np.full(d, 1.05)
        front = P[nondominated(P)]
        assert hypervolume(P, ref) == pytest.approx(compute_hypervolume(front, ref), rel=1e-9)


def test_nondominated_by_brute_force():
    rng = np.random.default_rng(0)
    P = rng.integers(0, 5, size=(60, 3)).astype(float)
    mask = nondominated(P)
    for i, p in enumerate(P):
        dominated = any(np.all(q <= p) and np.any(q < p) for q in P)
        assert mask[i] == (not dominated)


def test_points_beyond_the_reference_add_nothing():
    assert hypervolume(np.array([[2.0, 0.0]]), np.array([1.0, 1.0])) == 0.0
    assert hypervolume(np.array([[0.5, 0.5], [2.0, 0.0]]), np.array([1.0, 1.0])) == pytest.approx(0.25)


@pytest.mark.parametrize("k", [0, 1, pytest.param(2, marks=pytest.mark.slow)])
def test_ehvi_equals_monte_carlo(k):
    """EHVI in closed form vs the mean hypervolume gain over samples of the uncertain error."""
    rng = np.random.default_rng(10 + k)
    front = rng.random((6, 1 + k))
    ref = np.full(1 + k, 1.2)
    mu, sd = rng.random(4), 0.05 + 0.2 * rng.random(4)
    cost = rng.random((4, k)) * 0.9
    got = ehvi(mu, sd, cost, front, ref)
    base = hypervolume(front, ref)
    for i in range(4):
        e = rng.normal(mu[i], sd[i], 1500)
        gain = np.mean([hypervolume(np.vstack([front, np.r_[x, cost[i]]]), ref) - base for x in e])
        assert got[i] == pytest.approx(gain, abs=6e-3 + 0.08 * gain)


def test_ehvi_ignores_dominated_front_points_and_is_zero_outside_the_box():
    front = np.array([[0.2, 0.5], [0.5, 0.2]])
    noisy = np.vstack([front, [[0.6, 0.6], [0.9, 0.9]]])
    mu, sd, cost = np.array([0.3, 0.1]), np.array([0.1, 0.1]), np.array([[0.3], [1.5]])
    a = ehvi(mu, sd, cost, front, np.array([1.0, 1.0]))
    assert np.allclose(a, ehvi(mu, sd, cost, noisy, np.array([1.0, 1.0])))
    assert a[1] == 0.0 and a[0] > 0


# -- cheapest member and budget checks ----------------------------------------------------------
class MacsLatency:
    """A latency source in ms = MACs / 1e6 (monotone in cost, so the cheapest spec is known)."""

    def __init__(self, space):
        self.space = space

    def predict_many(self, specs, task=None):
        return [self.space.cost(s, task).macs / 1e6 for s in specs]


@pytest.mark.slow  # all 15,625 cells
def test_cheapest_is_exhaustive_on_nb201():
    space = get_space("nb201")
    # as in a search, the oracle computes the deployed fields (arena, file sizes) only where they are used
    oracle = CostOracle(space, None, {"dev": MacsLatency(space)}, objectives=[resolve_field("params", ["dev"])])
    ext = minimise(oracle, lambda r: r["params"])
    assert ext.exhaustive
    brute = min(space.cost(s).params for s in space.all_specs())
    assert ext.value == brute


def test_cheapest_descent_finds_the_smallest_tiny():
    """In ``tiny`` fewer MACs always come from the smallest choices: width 0.5, the lowest resolution,
    depth 1 and k3e3 everywhere; the descent from a random sample must get there."""
    space = get_space("tiny")
    oracle = CostOracle(space, None, {"dev": MacsLatency(space)})
    ext = minimise(oracle, lambda r: r["macs"])
    smallest = space.parse("tiny:w0.5:r32:k3e3_k3e3_k3e3_k3e3")
    assert not ext.exhaustive
    assert ext.value == space.cost(smallest).macs


def test_impossible_budget_names_the_best_reachable_value():
    space = get_space("tiny")
    budgets = [parse_budget("latency_ms<=0.001", ["dev"])]
    oracle = CostOracle(space, None, {"dev": MacsLatency(space)}, budgets)
    with pytest.raises(EdgenasError, match=r"no tiny architecture meets latency_ms <= 0.001 ms on dev; "
                                           r"the fastest found is \d"):
        check_budgets(oracle, budgets)


def test_delegate_partition_budget_keeps_the_model_on_xnnpack():
    """``delegate_partitions<=N`` (the precision's variant) is a cheap budget like any cost field: in
    ``tiny`` int8 every HARD_SWISH leaves XNNPACK (two per block of the last two stages, one in the head),
    so few partitions means short h-swish stages; 6 is the fewest."""
    f = resolve_field("delegate_partitions", [])
    assert f.name == "delegate_partitions_int8" and resolve_field("ops_off_delegate", [], "fp32").name == \
        "ops_off_delegate_fp32"
    space = get_space("tiny")
    budgets = [parse_budget("delegate_partitions<=8", [])]
    oracle = CostOracle(space, None, {}, budgets, objectives=[resolve_field("macs", [])])
    check_budgets(oracle, budgets)
    kept = oracle.sample_feasible(10, random.Random(0))
    assert len(kept) == 10
    for spec in kept:
        rec = oracle.full_record(spec)
        assert rec["delegate_partitions_int8"] <= 8 and rec["delegate_partitions_fp32"] == 1
        assert rec["ops_off_delegate_int8"] == rec["delegate_partitions_int8"] - 1  # one h-swish per cut
    assert max(oracle.full_record(s)["delegate_partitions_int8"] for s in space.sample(20, 0)) > 8
    impossible = [parse_budget("delegate_partitions<=5", [])]
    with pytest.raises(EdgenasError, match="no tiny architecture meets delegate_partitions_int8 <= 5"):
        check_budgets(CostOracle(space, None, {}, impossible), impossible)


def test_jointly_feasible_candidate_is_found():
    space = get_space("tiny")
    budgets = [parse_budget("latency_ms<=0.5", ["dev"]), parse_budget("peak_ram_bytes<=16KiB", ["dev"])]
    oracle = CostOracle(space, None, {"dev": MacsLatency(space)}, budgets)
    spec = first_feasible(oracle, check_budgets(oracle, budgets))
    assert spec is not None and oracle.feasible(oracle.record(spec))
    kept = oracle.sample_feasible(20, random.Random(0))
    assert len(kept) == 20 and all(oracle.feasible(oracle.record(s)) for s in kept)


# -- space hooks --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in space_names() if n != "model"])  # model: tests/compress
def test_trial_params_invert_suggest_and_variation_stays_in_space(name):
    space = get_space(name)
    rng = random.Random(0)
    for spec in space.sample(30, 1):
        assert space.suggest(optuna.trial.FixedTrial(space.trial_params(spec))) == spec
        child = space.mutate(spec, rng, 0.1)
        assert space.parse(str(child)) == child
        assert space.suggest(optuna.trial.FixedTrial(space.trial_params(child))) == child
        mix = space.crossover(spec, child, rng)
        assert space.parse(str(mix)) == mix
        assert len(space.surrogate_features(spec)) == len(space.surrogate_features(child))


def test_mutation_changes_about_rate_of_the_choices():
    space = get_space("fbnet")
    rng = random.Random(3)
    spec = space.sample(1, 0)[0]
    changed = [sum(a != b for a, b in zip(space.trial_params(spec).values(),
                                          space.trial_params(space.mutate(spec, rng, 0.2)).values()))
               for _ in range(300)]
    # 22 choices x 0.2 redraw x 8/9 chance of a new value (+1 forced redraw) ~ 4.7
    assert 3.5 < np.mean(changed) < 6.0


def test_nb201_surrogate_features_identify_dead_edges():
    space = get_space("nb201")
    a = space.parse("nb201:c3-none-none-none-skip-none")  # node1 = c3(x), output = node1
    b = space.parse("nb201:c3-c1-avg-none-skip-none")     # node2 dead (feeds nothing)
    assert a.iso_key == b.iso_key and space.dedup_key(a) == space.dedup_key(b)
    assert space.surrogate_features(a) == space.surrogate_features(b)
    assert b.live == a
    c = space.parse("nb201:c3-none-none-c3-skip-none")
    assert space.surrogate_features(a) != space.surrogate_features(c)


def test_path_counts_match_enumeration():
    space = get_space("nb201")
    for spec in space.sample(50, 2):
        assert sum(spec.path_counts()) == sum(1 for _ in _paths(spec.ops))


def _paths(ops: tuple[str, ...]):  # all input->output paths through non-none edges
    edges = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    for n in (0, 1, 2):
        for route in itertools.combinations((1, 2), n):
            nodes = (0, *route, 3)
            if all(ops[edges.index((b, a))] != "none" for a, b in itertools.pairwise(nodes)):
                yield nodes
