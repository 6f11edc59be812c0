"""One contract suite run over every registered accuracy estimator (Optuna samplers_tests style).

Every estimator must: return one :class:`Estimate` per spec with the canonical string, a float score
and its own cost; be deterministic per seed (and, when seeded, depend on the seed); cache by canonical
string; give the same scores in a batch as one by one (or, for batch-dependent estimators, be
deterministic and treat a batch of one as the single case); and survive degenerate specs.

Inputs are tiny (8-16 px, 4-16 examples) to keep the suite fast; real numbers are in the benchmark.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from edgenas import Task, get_space
from edgenas.errors import EdgenasError, UnknownNameError
from edgenas.estimators import WORST_SCORE, Estimate, estimator_class, estimator_names, get_estimator
from edgenas.spaces import ArchSpec, SearchSpace

DATA = "synthetic:n=48,classes=4,channels=3,size=8"
TRAIN = {"epochs": 1, "train_samples": 16, "val_samples": 16, "batch_size": 8}
TRAINING = {"train", "halving"}
DEGENERATE_NB201 = ["none-none-none-none-none-none", "none-skip-avg-none-skip-none", "c3-none-none-none-none-none"]
ZERO_COST = {"synflow", "snip", "grad_norm", "fisher", "jacob_cov", "naswot", "params", "macs", "zc-ensemble"}


def contract_options(name: str, files: dict[str, Path]) -> dict[str, Any]:
    """Small, fast options per estimator; every registered estimator must have an entry."""
    scores = files[f"scores_{contract_space(name)[0].name}"]
    table = {
        "synflow": {},
        "params": {},
        "macs": {},
        "snip": {"dataset": DATA, "batch_size": 8},
        "grad_norm": {"dataset": DATA, "batch_size": 8},
        "fisher": {"dataset": DATA, "batch_size": 8},
        "jacob_cov": {"dataset": DATA, "batch_size": 8},
        "naswot": {"dataset": DATA, "batch_size": 8},
        "zc-ensemble": {"dataset": DATA, "batch_size": 8, "reference": 4},
        "ensemble": {"members": "synflow,params", "reference": 4},
        "filter": {"cheap": "params", "expensive": "synflow", "keep": 0.5, "reference": 4},
        "train": {"dataset": DATA, **TRAIN},
        "halving": {"dataset": DATA, "min_epochs": 1, "max_epochs": 2, "eta": 2,
                    "train_options": {k: v for k, v in TRAIN.items() if k != "epochs"}},
        "surrogate": {"data": str(scores), "n_estimators": 10},
        "tabular": {"path": str(scores)},
        "ofa-predictor": {"weights": str(files["ofa_weights"])},
    }
    return table[name]


def contract_space(name: str) -> tuple[SearchSpace, Task]:
    if estimator_class(name).unsupported_reason(get_space("nb201")) is None:
        return get_space("nb201"), Task(resolution=8)
    return get_space("mbv3"), Task()


def specs_for(space: SearchSpace) -> list[ArchSpec]:
    specs = space.sample(4, seed=11)
    if space.name == "nb201":
        specs += [space.parse(d) for d in DEGENERATE_NB201]
    return specs


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A score table covering every spec the suite uses (for tabular and surrogate) and random
    weights with the shape of OFA's predictor (the real file is tested in test_estimators_specific)."""
    d = tmp_path_factory.mktemp("contract")
    out: dict[str, Path] = {}
    for space in (get_space("nb201"), get_space("mbv3")):
        pool = specs_for(space) + space.sample(20, seed=3)
        out[f"scores_{space.name}"] = d / f"scores_{space.name}.csv"
        with open(out[f"scores_{space.name}"], "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["arch", "score"])
            w.writeheader()
            w.writerows({"arch": str(s), "score": (i * 7919) % 101 / 10.0} for i, s in enumerate(pool))
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(128, 400), torch.nn.ReLU(), torch.nn.Linear(400, 400), torch.nn.ReLU(),
                              torch.nn.Linear(400, 400), torch.nn.ReLU(), torch.nn.Linear(400, 1))
    out["ofa_weights"] = d / "acc_predictor.pth"
    torch.save(mlp.state_dict(), out["ofa_weights"])
    return out


def make(name: str, files: dict[str, Path], seed: int = 0):
    space, task = contract_space(name)
    return get_estimator(name, space, task, seed=seed, **contract_options(name, files))


@pytest.fixture(params=estimator_names())
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_builtin_estimators_are_registered():
    expected = {"synflow", "naswot", "jacob_cov", "snip", "grad_norm", "fisher", "params", "macs", "zc-ensemble",
                "ensemble", "filter", "train", "halving", "surrogate", "ofa-predictor", "tabular"}
    assert expected <= set(estimator_names())


def test_every_estimator_has_contract_options(name, files):
    contract_options(name, files)  # KeyError: add the new estimator to this suite


def test_unknown_name_and_option_are_user_errors():
    with pytest.raises(UnknownNameError, match="unknown estimator 'nope'; choose one of"):
        get_estimator("nope", get_space("nb201"))
    with pytest.raises(EdgenasError, match="unknown option"):
        get_estimator("synflow", get_space("nb201"), epochs=3)


def test_estimates_are_records_with_their_cost(name, files):
    est = make(name, files)
    specs = specs_for(est.space)
    ests = est.estimate_many(specs)
    assert len(ests) == len(specs)
    for spec, e in zip(specs, ests):
        assert isinstance(e, Estimate)
        assert e.arch == str(spec)
        assert isinstance(e.score, float) and not math.isnan(e.score)
        assert math.isfinite(e.seconds) and e.seconds >= 0
        assert isinstance(e.epochs, int) and isinstance(e.samples, int)
        assert e.as_record() == {"arch": e.arch, "score": e.score, "seconds": e.seconds,
                                 "epochs": e.epochs, "samples": e.samples}
        if name in TRAINING and e.score > WORST_SCORE:
            assert e.epochs >= 1 and e.samples >= e.epochs * 8
        elif name not in TRAINING:
            assert e.epochs == 0 and e.samples == 0
    assert sum(e.seconds for e in ests) > 0
    assert any(e.score > WORST_SCORE for e in ests)
    assert est.seconds_total > 0


def test_deterministic_per_seed(name, files):
    specs = specs_for(contract_space(name)[0])
    a = make(name, files, seed=1).score_many(specs)
    b = make(name, files, seed=1).score_many(specs)
    assert a == b
    if estimator_class(name).seeded and name not in ("params", "macs"):
        c = make(name, files, seed=2).score_many(specs)
        assert a != c, "a seeded estimator's scores should depend on its seed"


def test_cached_by_canonical_string(name, files):
    est = make(name, files)
    spec = specs_for(est.space)[0]
    first = est.estimate(spec)
    n = est.computed
    alias = est.space.parse(json.dumps(est.space.to_json(spec)))  # another spelling of the same spec
    assert alias == spec
    again = est.estimate(alias)
    if est.batch_dependent:
        assert est.computed == n + 1  # not cached at this level, but deterministic
        assert again == first
    else:
        assert est.computed == n, "a cache hit must not recompute"
        assert again is first and est.cached(spec) is first
        est.estimate_many([spec, alias, spec])
        assert est.computed == n


def test_batch_equals_single(name, files):
    est = make(name, files)
    specs = specs_for(est.space)[:4]
    batch = est.score_many(specs)
    if est.batch_dependent:
        assert make(name, files).score_many(specs) == batch
        single = make(name, files)
        assert single.score_many([specs[0]]) == [single.score(specs[0])]
        return
    singles = []
    for s in specs:
        singles.append(make(name, files).score(s))
    assert batch == singles
    assert make(name, files).score_many(specs[::-1]) == batch[::-1]


def test_degenerate_specs_never_crash(name, files):
    space, _ = contract_space(name)
    if space.name != "nb201":
        pytest.skip(f"no degenerate specs in {space.name}")
    est = make(name, files)
    degenerate = [space.parse(d) for d in DEGENERATE_NB201]
    assert not any(s.is_connected for s in degenerate)
    scores = est.score_many(degenerate)
    assert all(isinstance(v, float) and not math.isnan(v) for v in scores)
    if name in ZERO_COST:
        assert scores == [WORST_SCORE] * len(degenerate)
