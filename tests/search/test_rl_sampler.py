"""The ``rl`` sampler (MnasNet's REINFORCE controller): its reward, its gradient, that it learns, where
its target comes from, and that its policy is a function of the study's finished trials in trial order
(resume, several workers). The contract suite (test_sampler_contract.py) covers the rest."""

from __future__ import annotations

import math
from statistics import mean, median

import numpy as np
import pytest

from edgenas import get_space
from edgenas.errors import EdgenasError
from edgenas.search.fields import resolve_field
from edgenas.search.oracle import CostOracle
from edgenas.search.run import make_sampler
from edgenas.search.samplers import get_sampler
from edgenas.search.samplers.base import Observation, SearchContext
from edgenas.search.samplers.rl import Policy, RLSampler, mnas_reward
from edgenas.testing.board import make_job, run_trials
from edgenas.testing.samplers import archs


def test_reward_is_mnasnets_soft_constraint():
    assert mnas_reward(0.8, 20.0, 30.0) == pytest.approx(0.8 * (20 / 30) ** -0.07)
    assert mnas_reward(0.8, 45.0, 30.0) == pytest.approx(0.8 * 1.5 ** -0.07)
    assert mnas_reward(0.8, 30.0, 30.0) == pytest.approx(0.8)
    # alpha applies below the target, beta above (MnasNet's hard-constraint setting: alpha 0, beta -1)
    assert mnas_reward(0.8, 20.0, 30.0, alpha=0.0, beta=-1.0) == pytest.approx(0.8)
    assert mnas_reward(0.8, 60.0, 30.0, alpha=0.0, beta=-1.0) == pytest.approx(0.4)
    # a faster model scores higher also when the score is negative; no cost or no target: the accuracy
    assert mnas_reward(-2.0, 15.0, 30.0) > mnas_reward(-2.0, 30.0, 30.0) > mnas_reward(-2.0, 45.0, 30.0)
    assert mnas_reward(0.5, None, 30.0) == 0.5 and mnas_reward(0.5, 10.0, None) == 0.5
    assert math.isfinite(mnas_reward(0.5, 0.0, 30.0))


def _numeric_gradient(f, z: np.ndarray, h: float = 1e-6) -> np.ndarray:
    return np.array([(f(z + h * e) - f(z - h * e)) / (2 * h) for e in np.eye(len(z))])


def test_update_follows_the_log_probability_and_entropy_gradients():
    key = ("op", (1, 2, 3, 4))
    z0 = np.array([0.3, -1.0, 0.5, 0.0])

    def log_softmax(z: np.ndarray) -> np.ndarray:
        return z - z.max() - np.log(np.exp(z - z.max()).sum())

    policy = Policy()
    policy.logits[key] = z0.copy()
    policy.update([(key, 2)], advantage=1.0, lr=1e-3)
    assert np.allclose((policy.logits[key] - z0) / 1e-3, _numeric_gradient(lambda z: log_softmax(z)[2], z0), atol=1e-6)

    policy.logits[key] = z0.copy()
    policy.update([(key, 2)], advantage=0.0, lr=1e-3, entropy=1.0)
    entropy = _numeric_gradient(lambda z: -float(np.dot(np.exp(log_softmax(z)), log_softmax(z))), z0)
    assert np.allclose((policy.logits[key] - z0) / 1e-3, entropy, atol=1e-6)


def _plain_context(objectives: tuple[str, ...] = ("accuracy",)) -> SearchContext:
    """nb201 without any device: no latency field."""
    space = get_space("nb201")
    fields = [resolve_field(o, []) for o in objectives]
    return SearchContext(space, None, CostOracle(space, None, {}, [], fields), fields)


def test_the_controller_learns_a_toy_objective():
    """Accuracy = the share of 3x3-conv edges: the policy moves its mass there."""
    sampler = RLSampler(_plain_context(), seed=0)
    assert sampler.cost_field is None  # no latency, no cheap objective: the reward is the accuracy
    done, accs = [], []
    for number in range(300):
        spec = sampler.draw()
        acc = sum(op == "c3" for op in spec.ops) / 6
        accs.append(acc)
        done.append(Observation(number, str(spec), spec, True, [acc]))
        sampler.learn(done)
    assert mean(accs[:50]) < 0.3 and mean(accs[-50:]) > 0.7
    assert all(sampler.policy.probability(f"e{to}{frm}", "c3") > 0.6 for to, frm in ((1, 0), (2, 1), (3, 2)))


def test_a_search_raises_its_reward():
    """Through the real trial objective: with ``params`` as the accuracy the controller moves to
    bigger networks within the latency budget."""
    job = make_job(objectives=("accuracy",), estimator="params", sampler="rl", budgets=("latency_ms<=3",))
    study = run_trials(job, 60)
    params = [t.values[0] for t in study.get_trials()]
    assert mean(params[-15:]) > 1.3 * mean(params[:15])


def test_target_is_the_option_else_the_budget_else_the_reference_else_the_median():
    job = make_job(sampler="rl", budgets=("latency_ms<=0.5",))
    specs = job.space.sample(5, seed=1)
    done = [Observation(i, str(s), s, True, [0.5, 0.0]) for i, s in enumerate(specs)]

    def target(budgets: list, reference: dict, **options: object) -> float | None:
        ctx = SearchContext(job.space, job.task, job.oracle, job.objectives, budgets, reference=reference)
        sampler = RLSampler(ctx, 0, warmup=3, **options)  # type: ignore[arg-type]
        assert sampler.cost_field == "latency_ms"
        sampler.learn(done)
        return sampler.target

    assert target(job.budgets, {"latency_ms": 0.7}, target=0.9) == 0.9
    assert target(job.budgets, {"latency_ms": 0.7}) == 0.5
    assert target([], {"latency_ms": 0.7}) == 0.7
    assert target([], {}) == pytest.approx(median(job.oracle.record(s)["latency_ms"] for s in specs[:3]))

    assert RLSampler(_plain_context(("accuracy", "macs", "params")), 0).cost_field == "macs"
    ctx = SearchContext(job.space, job.task, job.oracle, job.objectives, job.budgets)
    with pytest.raises(EdgenasError, match="cost_field 'latency' is not a cheap field"):
        get_sampler("rl", ctx, 0, cost_field="latency")


def test_policy_is_rebuilt_from_the_study_in_trial_order():
    """A resumed sampler, and one that saw a trial finish late (another worker's), hold the same
    policy as the sampler that ran the study."""
    job = make_job(sampler="rl", sampler_options={"warmup": 4}, budgets=("latency_ms<=0.5",))
    study = run_trials(job, 20)
    live = study.sampler
    done, _ = live.history.read(study)
    live.learn(done)
    resumed = make_sampler(job, 5)
    resumed.learn(done)
    late = make_sampler(job, 0)
    late.learn(done[:9] + done[10:])
    late.learn(done)
    assert late.rebuilds == 1 and live.rebuilds == resumed.rebuilds == 0
    assert live.applied == resumed.applied == late.applied == list(range(20))
    for other in (resumed, late):
        assert other.policy.logits.keys() == live.policy.logits.keys()
        assert all(np.array_equal(other.policy.logits[k], v) for k, v in live.policy.logits.items())
        assert (other.baseline, other.target) == (live.baseline, live.target)


def test_a_seed_repeats_a_run_and_another_seed_does_not():
    def run(seed: int) -> list[str]:
        return archs(run_trials(make_job(sampler="rl", seed=seed, sampler_options={"warmup": 4}), 12))

    first = run(3)
    assert run(3) == first and run(4) != first


def test_bad_options_are_user_errors():
    ctx = _plain_context()
    for bad in ({"lr": 0}, {"decay": 1.0}, {"warmup": 0}, {"entropy": -1}, {"target": -2}):
        with pytest.raises(EdgenasError, match="sampler 'rl'"):
            get_sampler("rl", ctx, 0, **bad)
