"""The ``model`` space (``--model``): the space contract on a small residual CNN and on torchvision's
MobileNetV2, the exact cost model against the pruned modules Torch-Pruning builds, inherited weights,
block removal and one-line errors."""

from __future__ import annotations

import random
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from edgenas import Task, get_space
from edgenas.errors import ArchParseError, EdgenasError
from edgenas.modelcount import count_module
from edgenas.testing import SpaceContract

pytest.importorskip("torch_pruning", reason="the model space needs the compress extra (torch-pruning)")

SMALL = str(Path(__file__).resolve().parent.parent / "fixtures" / "small_cnn.py") + ":build"
SMALL_OPTS = {"model": SMALL, "resolution": 32}


class TestSmallCNNSpace(SpaceContract):
    space_name = "model"
    space_options = SMALL_OPTS


class TestSmallCNNSpaceOverResolutions(SpaceContract):
    """``resolutions``: the input side is a searched choice too."""

    space_name = "model"
    space_options: ClassVar[dict] = {**SMALL_OPTS, "resolutions": [24, 32, 40]}


class TestMobileNetV2Space(SpaceContract):
    space_name = "model"
    space_options: ClassVar[dict] = {"model": "torchvision:mobilenet_v2", "resolution": 32}

    def cost_task(self, space):
        return Task(num_classes=10)


@pytest.fixture(scope="module")
def small():
    return get_space("model", **SMALL_OPTS)


def test_the_full_spec_is_the_source_model(small) -> None:
    base = small.base()
    full = small.parse(str(small.random(random.Random(0))))
    full = type(full)(full.source, full.r, tuple(c[-1] for c in small._choices()), tuple(True for _ in full.blocks))
    model = small.build(full).eval()
    x = torch.randn(2, *small.input_shape(full))
    with torch.no_grad():
        assert torch.equal(model(x), base.model(x))


def test_pruned_members_keep_the_source_weights_of_their_channels(small) -> None:
    """The stem's group (the stem and the residual stream it feeds) cut to its smallest choice: the stem
    keeps the source's filters of the group's most important channels, in their order."""
    base = small.base()
    i = next(i for i, g in enumerate(base.groups.groups) if base.stem in g.modules)
    group = base.groups.groups[i]
    spec = small.sample(1, seed=3)[0]
    keep = list(spec.keep)
    keep[i] = small._choices()[i][0]
    spec = small._normal(type(spec)(spec.source, spec.r, tuple(keep), spec.blocks))
    got = small.build(spec).get_submodule(base.stem).weight
    kept = sorted(group.order[group.size - keep[i]:])
    assert got.shape[0] == keep[i] < group.size
    assert torch.equal(got, base.model.get_submodule(base.stem).weight[kept])


def test_dropping_blocks_replaces_them_by_the_identity(small) -> None:
    base = small.base()
    assert [b.path for b in base.fx.blocks] == ["stage1.0", "stage1.1", "stage2.0"]
    full = tuple(c[-1] for c in small._choices())
    keep_all = type(small.random(random.Random(0)))(base.hash, 32, full, (True, True, True))
    drop = type(keep_all)(base.hash, 32, full, (True, False, True))
    assert small.cost(drop).macs < small.cost(keep_all).macs
    model = small.build(drop)
    assert isinstance(model.get_submodule("stage1.1"), torch.nn.Identity)
    rec = small.cost(drop).as_record()
    rec.pop("arch")
    assert count_module(model, small.input_shape(drop), str(drop)) == rec


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "resnet18", "mnasnet0_5",
                                  "shufflenet_v2_x0_5"])
def test_cost_model_equals_the_pruned_torchvision_module(name: str) -> None:
    """benchmarks/compress.py checks 20 specs each at 224 px; two at 64 px here."""
    space = get_space("model", model=f"torchvision:{name}", resolution=64)
    task = Task(num_classes=10)
    for spec in space.sample(2, seed=11):
        analytic = space.cost(spec, task).as_record()
        assert analytic.pop("arch") == str(spec)
        assert count_module(space.build(spec, task), space.input_shape(spec, task), str(spec)) == analytic


def test_a_new_task_gets_a_new_head_and_stem(small) -> None:
    spec = small.sample(1, seed=2)[0]
    model = small.build(spec, Task(num_classes=4, in_channels=1)).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 32, 32)).shape == (3, 4)
    assert small.input_shape(spec, Task(num_classes=4, in_channels=1)) == (1, 32, 32)


def test_arch_strings_are_checked_against_the_source(small) -> None:
    spec = small.sample(1, seed=4)[0]
    text = str(spec)
    with pytest.raises(ArchParseError, match="source model"):
        small.parse(text.replace(spec.source, "0" * 12))
    with pytest.raises(ArchParseError, match="resolution"):
        small.parse(text.replace(":r32:", ":r64:"))
    with pytest.raises(ArchParseError, match="keeps"):
        small.parse(text.replace(":k", ":k3-", 1))


@pytest.mark.parametrize("source, message", [
    ("torchvision:not_a_model", "no such classification builder"),
    ("nowhere/model.py:build", "no file"),
    ("model.onnx", "not a model source"),
    (SMALL.replace(":build", ":missing"), "has no function 'missing'"),
])
def test_bad_sources_are_one_line_errors(source: str, message: str) -> None:
    with pytest.raises(EdgenasError, match=message):
        get_space("model", model=source)


def test_without_a_source_the_space_says_how_to_give_one() -> None:
    space = get_space("model")
    assert space.size() == 0
    with pytest.raises(EdgenasError, match="--model torchvision:NAME"):
        space.sample(1, 0)


def test_a_source_loads_the_same_in_every_process() -> None:
    """Random initialisations are seeded: a search worker and the export build the same member weights."""
    from edgenas.compress.source import load_source, parse_source

    a, b = (load_source(parse_source(SMALL), 10) for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    space = get_space("model", **SMALL_OPTS)
    t = Task(num_classes=3, in_channels=1)
    spec = space.sample(1, 5)[0]
    h1 = list(space.build(spec, t).parameters())
    h2 = list(get_space("model", **SMALL_OPTS).build(spec, t).parameters())  # a new space adapts the head again
    assert len(h1) == len(h2) and all(torch.equal(x, y) for x, y in zip(h1, h2))


def test_saved_modules_and_state_dicts(tmp_path) -> None:
    """``model.pt`` holding a whole module is a source; a state dict is refused with how to pass it."""
    from edgenas.compress.source import load_source, parse_source

    model = load_source(parse_source(SMALL), 10)
    torch.save(model, tmp_path / "whole.pt")
    space = get_space("model", model=str(tmp_path / "whole.pt"), resolution=32)
    assert space.base().params == sum(p.numel() for p in model.parameters())
    torch.save(model.state_dict(), tmp_path / "state.pt")
    with pytest.raises(EdgenasError, match="holds a state dict"):
        get_space("model", model=str(tmp_path / "state.pt"))
    weighted = get_space("model", model=SMALL, weights=str(tmp_path / "state.pt"), resolution=32)
    assert weighted.source_hash != get_space("model", **SMALL_OPTS).source_hash  # trained weights are hashed


def test_cli_maps_model_to_the_model_space(capsys) -> None:
    from edgenas.cli.main import main

    assert main(["describe", "--model", "torchvision:mnasnet0_5", "--space-opt", "resolution=32", "--classes", "10",
                 "--random", "2", "--json"]) == 0
    assert capsys.readouterr().out.count('"arch": "model:') == 2
    assert main(["describe", "--model", "torchvision:no_such_net", "--random", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such classification builder" in err
    assert main(["describe", "--space", "tiny", "--model", SMALL, "--random", "1"]) == 2
    assert "drop --space tiny" in capsys.readouterr().err
