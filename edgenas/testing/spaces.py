"""The search-space contract suite (:class:`SpaceContract`).

Every space must: be registered under its name; round-trip its canonical string and JSON form; sample
reproducibly (seeded and from an Optuna trial, with ``trial_params`` inverting ``suggest``); build a
module whose exact cost equals the analytic cost model; chain its layers; cover every spec's latency units
with its ``covering_specs``; encode to fixed length;
mutate and cross over within the space; and reject malformed input with an ArchParseError that names
the bad token.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path
from typing import Any, ClassVar

import optuna
import pytest

from edgenas.errors import ArchParseError
from edgenas.spaces import SearchSpace, Task, get_space, parse_arch, space_class, space_names


class SpaceContract:
    """Subclass as ``class TestMySpace(SpaceContract): space_name = "myspace"`` (and ``space_options``)
    to run the contract on one space; override the ``space`` fixture (with ``params``) for several."""

    space_name: ClassVar[str] = ""
    space_options: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def space(self) -> SearchSpace:
        if not self.space_name:
            pytest.fail(f"{type(self).__name__} must set space_name (or override the 'space' fixture)")
        return get_space(self.space_name, **self.space_options)

    def cost_task(self, space: SearchSpace) -> Task | None:
        """The task the exact-cost check builds networks for (None: the space's default)."""
        return None

    def test_registered_under_its_name(self, space: SearchSpace) -> None:
        assert space.name in space_names()
        assert space_class(space.name).name == space.name
        assert isinstance(space, space_class(space.name))
        assert isinstance(space.summary, str) and space.summary
        choices = space.choices()
        assert choices and all(isinstance(k, str) and isinstance(v, str) for k, v in choices.items())

    def test_canonical_string_round_trips(self, space: SearchSpace) -> None:
        for spec in space.sample(50, seed=1):
            text = str(spec)
            assert text.startswith(space.name + ":")
            assert space.parse(text) == spec
            assert parse_arch(text) == spec  # the prefix alone finds the space
            assert space.parse(text.split(":", 1)[1]) == spec  # prefix optional with a known space
            assert hash(space.parse(text)) == hash(spec)
            assert " " not in text and "," not in text  # safe in CSV cells and shell words

    def test_json_round_trips(self, space: SearchSpace) -> None:
        for spec in space.sample(30, seed=2):
            obj = json.loads(json.dumps(space.to_json(spec)))
            assert space.from_json(obj) == spec
            assert space.parse(json.dumps(obj)) == spec

    def test_seeded_sampling_is_reproducible_and_varied(self, space: SearchSpace) -> None:
        a, b = space.sample(20, seed=7), space.sample(20, seed=7)
        assert a == b
        assert len({str(s) for s in a}) > 10
        assert a != space.sample(20, seed=8)

    def test_optuna_define_by_run_sampling(self, space: SearchSpace, tmp_path: Path) -> None:
        from edgenas.search.optuna_compat import journal_storage

        storage = journal_storage(tmp_path / "study.journal")  # the storage edgenas' searches write
        study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
        specs = []

        def objective(trial: optuna.Trial) -> float:
            spec = space.suggest(trial)
            trial.set_user_attr("arch", str(spec))
            specs.append(spec)
            return float(len(str(spec)))

        study.optimize(objective, n_trials=8)
        reloaded = optuna.load_study(study_name=study.study_name,
                                     storage=journal_storage(tmp_path / "study.journal"))
        for trial, spec in zip(reloaded.trials, specs):
            assert trial.user_attrs["arch"] == str(spec)
            # the stored parameters alone reproduce the spec
            assert space.suggest(optuna.trial.FixedTrial(trial.params)) == spec
            assert space.parse(trial.user_attrs["arch"]) == spec
            assert space.trial_params(spec) == trial.params  # trial_params inverts suggest

    def test_trial_params_invert_suggest(self, space: SearchSpace) -> None:
        for spec in space.sample(20, seed=9):
            assert space.suggest(optuna.trial.FixedTrial(space.trial_params(spec))) == spec

    def test_mutation_and_crossover_stay_in_the_space(self, space: SearchSpace) -> None:
        rng = random.Random(10)
        specs = space.sample(10, seed=10)
        for a, b in itertools.pairwise(specs):
            for child in (space.mutate(a, rng, rate=0.3), space.crossover(a, b, rng)):
                assert space.parse(str(child)) == child
                assert isinstance(space.dedup_key(child), str)

    def test_size_is_positive_integer(self, space: SearchSpace) -> None:
        assert isinstance(space.size(), int) and space.size() > 1

    def test_encoding_is_fixed_length_and_distinguishes_specs(self, space: SearchSpace) -> None:
        specs = space.sample(40, seed=3)
        encs = [space.encode(s) for s in specs]
        assert all(len(e) == space.encoding_size() for e in encs)
        assert all(math.isfinite(v) for e in encs for v in e)
        distinct_specs = {str(s) for s in specs}
        assert len({tuple(e) for e in encs}) == len(distinct_specs)

    def test_layers_chain_and_keys(self, space: SearchSpace) -> None:
        task = Task(num_classes=7, in_channels=2)
        for spec in space.sample(5, seed=4):
            layers = space.layers(spec, task)
            assert layers[0].cin == 2
            for prev, nxt in itertools.pairwise(layers):
                c, h, _ = prev.out_shape
                assert (c, h or 1) == (nxt.cin, nxt.hw), (prev.key, nxt.key)
            assert layers[-1].out_shape[0] == 7
            assert all(isinstance(layer.key, str) and layer.key for layer in layers)

    def test_covering_specs_hold_the_units_of_sampled_specs(self, space: SearchSpace) -> None:
        """``covering_specs`` is what ``edgenas profile`` measures and kits time: every unit of every
        spec must be among theirs, or searches would hit missing table entries."""
        task = Task(num_classes=7, in_channels=2)
        covered = {u.key for s in space.covering_specs() for u in space.units(s, task)}
        for spec in space.sample(30, seed=5):
            missing = {u.key for u in space.units(spec, task)} - covered
            assert not missing, (str(spec), sorted(missing)[:3])

    def test_analytic_cost_equals_built_module(self, space: SearchSpace) -> None:
        """MACs (torch FLOP counter / 2), params, int8 bytes and FX-liveness peak RAM all agree exactly."""
        from edgenas.modelcount import count_module

        rng = random.Random(5)
        specs = [space.random(rng) for _ in range(3)]
        task = self.cost_task(space)
        for spec in specs:
            analytic = space.cost(spec, task).as_record()
            assert analytic.pop("arch") == str(spec)
            counted = count_module(space.build(spec, task), space.input_shape(spec, task), str(spec))
            assert counted == analytic, str(spec)

    def test_built_module_runs_forward(self, space: SearchSpace) -> None:
        import torch

        spec = space.sample(1, seed=6)[0]
        task = Task(num_classes=5, in_channels=1)
        model = space.build(spec, task).eval()
        with torch.no_grad():
            y = model(torch.randn(2, *space.input_shape(spec, task)))
        assert y.shape == (2, 5)
        assert torch.isfinite(y).all()

    def test_empty_and_foreign_input_is_rejected(self, space: SearchSpace) -> None:
        for bad in ("", "{not json", "[1, 2]", "{}"):
            with pytest.raises(ArchParseError):
                space.parse(bad)
        other = next(n for n in space_names() if n != space.name)
        foreign = str(get_space(other).sample(1, 0)[0])
        with pytest.raises(ArchParseError, match="pass --space"):
            space.parse(foreign)
