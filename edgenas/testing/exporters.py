"""The exporter contract suite (:class:`ExporterContract`), in the style of Optuna's samplers_tests.

Every exporter must, for a trained model of each space it is tested on (:mod:`edgenas.testing.models`):
declare itself (name, suffix, runtime, parity kind, a file name no other format uses, its optional
packages, importable where the suite runs); write its file
atomically (no temporary file left, sha256 and byte count as recorded); pass its own parity rule in
its target runtime against torch on the validation batch (float: max |diff| <= 1e-4 x max(1, max
|logit|); quantized: top-1 agreement >= 98%); give (N, classes) float32 logits from its runner and
reload to the same outputs; report the artifact's accuracy on the labels; report a failure (not
raise) for a model it cannot convert; and time the file in its runtime when it says it can
(``timeable``), else say nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from edgenas.exporters import EXPORTERS, Exporter, ExportJob, ExportOptions, exporter_names, get_exporter
from edgenas.exporters.base import TOP1_AGREEMENT, exact_tolerance
from edgenas.testing.models import exported, trained


def _torch_logits(space: str) -> np.ndarray:
    """The trained test model's torch outputs on its validation batch (what parity compares against)."""
    import torch

    job = trained(space).job
    with torch.no_grad():
        return job.module.eval()(torch.from_numpy(job.val_x)).numpy()


class Unconvertible:
    """A module with data-dependent control flow: no exporter can trace it to one static graph that
    matches torch (built lazily so that importing this module does not import torch)."""

    def __new__(cls, features: int, classes: int = 10) -> object:
        import torch

        class _Unconvertible(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc = torch.nn.Linear(features, classes)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                y = self.fc(x.flatten(1))
                return y if float(x.sum()) > 0 else -y

        return _Unconvertible()


class ExporterContract:
    """Subclass as ``class TestMyFormat(ExporterContract): exporter_name = "myformat"`` (and
    ``model_spaces`` naming spaces with a test model, default ``("tiny",)``). Override :meth:`formats`
    and :meth:`cases` (``(format, space)`` pairs) to run it over several formats."""

    exporter_name: ClassVar[str] = ""
    model_spaces: ClassVar[tuple[str, ...]] = ("tiny",)
    """Spaces whose trained test model (:data:`edgenas.testing.models.MODELS`) the format is tested on."""
    format_space: ClassVar[str] = "tiny"
    """The space of the per-format checks (unconvertible model, latency)."""

    def formats(self) -> list[str]:
        """The formats the per-format tests run over."""
        if not self.exporter_name:
            pytest.fail(f"{type(self).__name__} must set exporter_name (or override formats())")
        return [self.exporter_name]

    def cases(self) -> list[tuple[str, str]]:
        """The (format, space) pairs the per-model tests run over."""
        return [(f, s) for f in self.formats() for s in self.model_spaces]

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Tests taking ``fmt`` run over :meth:`formats`, tests taking ``case`` over :meth:`cases`."""
        if "fmt" in metafunc.fixturenames:
            metafunc.parametrize("fmt", self.formats())
        if "case" in metafunc.fixturenames:
            cases = self.cases()
            metafunc.parametrize("case", cases, ids=[f"{f}-{s}" for f, s in cases])

    # -- the contract ---------------------------------------------------------------------------
    def test_declares_itself(self, fmt: str) -> None:
        assert fmt in exporter_names()
        ex = get_exporter(fmt)
        assert isinstance(ex, Exporter) and ex.name == fmt and ex.suffix.startswith(".") and ex.runtime
        assert ex.kind in ("exact", "quantized")
        assert isinstance(ex.summary, str) and ex.summary
        assert isinstance(ex.requires, tuple) and all(isinstance(m, str) for m in ex.requires)
        type(ex).check_available()  # its optional packages are importable where the suite runs
        # the classes, not instances: another format's optional packages need not be installed here
        others = {EXPORTERS.get(f).stem + EXPORTERS.get(f).suffix: f for f in exporter_names() if f != fmt}
        assert ex.stem + ex.suffix not in others, f"{fmt} and {others.get(ex.stem + ex.suffix)} write the same file"

    def test_artifact_is_written_atomically_and_verified(self, case: tuple[str, str]) -> None:
        fmt, space = case
        art = exported(space, fmt)
        assert art.ok, art.error
        assert art.path is not None and art.path.is_file() and art.path.suffix == get_exporter(fmt).suffix
        data = art.path.read_bytes()
        assert len(data) == art.bytes and hashlib.sha256(data).hexdigest() == art.sha256
        assert not [p for p in art.path.parent.iterdir() if p.name.endswith(".tmp")]
        p = art.parity
        assert p is not None and p.passed and p.examples == len(trained(space).job.val_x)
        if get_exporter(fmt).kind == "exact":
            assert p.max_abs_diff <= exact_tolerance(_torch_logits(space))
        else:
            assert p.top1_agreement >= TOP1_AGREEMENT

    def test_runner_gives_logits_and_reloads_identically(self, case: tuple[str, str]) -> None:
        fmt, space = case
        art = exported(space, fmt)
        assert art.ok, art.error
        t = trained(space)
        ex = get_exporter(fmt)
        x = t.job.val_x[:8]
        a = ex.runner(art.path, t.job)(x)
        b = ex.runner(art.path, t.job)(x)
        assert a.shape == (8, t.task.num_classes) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
        # the artifact's accuracy is its own (top-1 on the labels), close to torch's for a verified file
        assert art.accuracy is not None and 0.0 <= art.accuracy <= 1.0
        torch_acc = float(np.mean(t.job.torch_logits().argmax(1) == t.job.val_y))
        assert abs(art.accuracy - torch_acc) <= 1.0 - TOP1_AGREEMENT + 1e-9

    def test_a_model_that_cannot_convert_is_reported_not_raised(self, fmt: str, tmp_path: Path) -> None:
        t = trained(self.format_space)
        model = Unconvertible(int(np.prod(t.job.input_shape))).eval()
        job = ExportJob(model, t.job.input_shape, t.job.representative, t.job.val_x, t.job.val_y,
                        ExportOptions(measure_latency=False))
        art = get_exporter(fmt).export(job, tmp_path)
        # a tracing exporter keeps one branch, so the file cannot match torch on every validation image;
        # or it fails to convert. Either way: a failure with a reason, never an exception and never a
        # file claiming success
        if art.ok:
            pytest.fail(f"{fmt} verified a model whose exported graph differs from torch")
        assert art.error
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    def test_latency_is_timed_in_the_runtime(self, fmt: str) -> None:
        t = trained(self.format_space)
        ex = get_exporter(fmt)
        art = exported(self.format_space, fmt)
        assert art.ok, art.error
        timed = ex.latency(art.path, t.job)
        if not ex.timeable:
            assert timed is None  # e.g. TFLite Micro on this host says nothing of an MCU
            return
        assert timed is not None
        ms, how = timed
        assert 0 < ms < 1000
        # the profiler's paired procedure: at least its two windows, each of whole runs
        assert how["windows"] >= 2 and how["runs"] >= 5 and 0 <= how["windows_set_aside"] <= how["windows"]
