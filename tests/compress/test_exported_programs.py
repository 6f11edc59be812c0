"""``--model model.pt2``: a torch.export program lifted back into torch.nn layers derives the same space as
the module it was exported from — same groups and blocks, the same cost record for every spec, the same
outputs for every built member (pruned, blocks dropped) — and what cannot be lifted is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from edgenas import Task, get_space
from edgenas.compress.source import load_source, parse_source
from edgenas.errors import EdgenasError
from edgenas.modelcount import count_module

pytest.importorskip("torch_pruning", reason="the model space needs the compress extra (torch-pruning)")

SMALL = str(Path(__file__).resolve().parent.parent / "fixtures" / "small_cnn.py") + ":build"


def _save_program(model: nn.Module, path: Path, side: int = 32, dynamic_batch: bool = False) -> str:
    shapes = {"x": {0: torch.export.Dim("batch", min=1, max=64)}} if dynamic_batch else None
    torch.export.save(torch.export.export(model.eval(), (torch.randn(2, 3, side, side),), dynamic_shapes=shapes),
                      path)
    return str(path)


def _same_space(source: str, program: str, resolution: int, specs: int) -> None:
    a = get_space("model", model=source, resolution=resolution)
    b = get_space("model", model=program, resolution=resolution)
    base_a, base_b = a.base(), b.base()
    assert len(base_a.groups.groups) == len(base_b.groups.groups)
    assert [blk.path for blk in base_a.fx.blocks] == [blk.path for blk in base_b.fx.blocks]
    assert base_a.params == base_b.params
    task = Task(num_classes=10)
    x = torch.randn(2, 3, resolution, resolution)
    specs_a = a.sample(specs, seed=3)
    if base_a.fx.blocks:  # one spec with every block dropped: chained rewiring
        first = specs_a[0]
        specs_a.append(a._normal(type(first)(first.source, first.r, first.keep, (False,) * len(base_a.fx.blocks))))
    for spec_a in specs_a:
        spec_b = b.parse(str(spec_a).replace(spec_a.source, b.source_hash))
        rec_a, rec_b = a.cost(spec_a, task).as_record(), b.cost(spec_b, task).as_record()
        rec_a.pop("arch"), rec_b.pop("arch")
        assert rec_a == rec_b, str(spec_a)
        built_a, built_b = a.build(spec_a, task).eval(), b.build(spec_b, task).eval()
        with torch.no_grad():
            assert torch.allclose(built_a(x), built_b(x), atol=1e-6), str(spec_a)
        counted = count_module(built_b, b.input_shape(spec_b, task), str(spec_b))
        counted.pop("arch", None)
        assert counted == rec_b, str(spec_b)


def test_a_program_derives_the_space_of_its_module(tmp_path) -> None:
    """The fixture CNN: residual blocks (one with a projection), SE, concatenation, two linear layers."""
    program = _save_program(load_source(parse_source(SMALL)), tmp_path / "small.pt2")
    _same_space(SMALL, program, 32, specs=4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "shufflenet_v2_x0_5"])
def test_torchvision_programs_derive_the_same_space(tmp_path, name: str) -> None:
    """MobileNetV2 (ReLU6 as hardtanh, residual adds) and ShuffleNetV2 (its shuffle's reshapes were fixed
    at export; lifted with sizes read from the tensor, then folded as torchvision's), exported with a
    dynamic batch dimension (the reshapes read it with ``sym_size``)."""
    program = _save_program(load_source(parse_source(f"torchvision:{name}")), tmp_path / f"{name}.pt2",
                            dynamic_batch=name.startswith("shufflenet"))
    _same_space(f"torchvision:{name}", program, 32, specs=2)


def test_state_dicts_fit_the_lifted_program(tmp_path) -> None:
    """The lifted layers keep the exported model's names, so its state dicts load with --model-weights."""
    model = load_source(parse_source(SMALL))
    program = _save_program(model, tmp_path / "small.pt2")
    trained = {k: v + 0.5 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(trained, tmp_path / "trained.pt")
    lifted = load_source(parse_source(program), weights=str(tmp_path / "trained.pt"))
    assert all(torch.equal(lifted.state_dict()[k], v) for k, v in trained.items())


class _FixedReshape(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).mean(dim=(2, 3))
        return self.fc(y.reshape(2, 2, 4).transpose(1, 2).reshape(2, 8))


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.conv(y)


def test_a_file_that_is_not_a_program_logs_no_traceback(tmp_path) -> None:
    """torch.export.load logs a traceback (torch's own log handler, on stderr) before raising on a bad
    file; edgenas raises its one-line error and lets nothing through that logger."""
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("torch.export")
    logger.addHandler(handler)
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a program")
    try:
        with pytest.raises(EdgenasError, match="cannot load it"):
            load_source(parse_source(str(junk)))
    finally:
        logger.removeHandler(handler)
    assert not records, records[0].getMessage()


def test_what_cannot_be_lifted_is_one_line(tmp_path) -> None:
    small = load_source(parse_source(SMALL))
    train = tmp_path / "train.pt2"
    torch.export.save(torch.export.export(small.train(), (torch.randn(2, 3, 32, 32),)), train)
    with pytest.raises(EdgenasError, match=r"training mode \(export the model after model.eval\(\)\)"):
        load_source(parse_source(str(train)))
    fixed = _save_program(_FixedReshape(), tmp_path / "fixed.pt2")
    with pytest.raises(EdgenasError, match=r"aten\.\w+\.default at the top level reshapes to sizes fixed at export"):
        load_source(parse_source(fixed))
    two = tmp_path / "two.pt2"
    torch.export.save(torch.export.export(_TwoInputs(), (torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8))), two)
    with pytest.raises(EdgenasError, match="more than one input"):
        load_source(parse_source(str(two)))
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a program")
    with pytest.raises(EdgenasError, match=r"cannot load it .*torch.export.save"):
        load_source(parse_source(str(junk)))
