"""``torch``: a device runtime that runs ``torch.export`` programs (``.pt2``) in eager PyTorch on the CPU.

edgenas' own runtimes time files through its on-device runner (ONNX Runtime, LiteRT); this one brings
its own loader (one seeded random input) and times it with the runner's procedure
(``edgenas.devices.runner.time_callable``): ``warmup`` untimed runs, then individually timed runs,
stopping early after ``max_seconds``.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from edgenas.devices.runner import time_callable, time_callables_paired
from edgenas.errors import EdgenasError
from edgenas.fileio import atomic_write
from edgenas.latency.runtimes.base import DeviceRuntime, ExportItem, file_stem

OPTIONS = {"channels_last": bool}
"""What a device spec's ``[runtime_options]`` may set: ``channels_last`` runs in NHWC memory format."""


def export_program(module: Any, input_shape: Sequence[int]) -> bytes:
    """The ``.pt2`` bytes of an eval-mode module exported for a batch-1 float32 input."""
    import torch

    program = torch.export.export(module.eval(), (torch.zeros(1, *input_shape),))
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return buf.getvalue()


def load_program(path: str | Path, what: str = "torch runtime") -> tuple[Any, tuple[int, ...]]:
    """(the program's module, its input shape); a missing or unreadable file is one line."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise EdgenasError(f"{what}: model file {p} does not exist; export it first")
    if not zipfile.is_zipfile(p):
        raise EdgenasError(f"{what}: {p} is not a torch.export program (.pt2 archive); re-export it")
    try:
        program = torch.export.load(str(p))
    except Exception as exc:
        raise EdgenasError(f"{what}: cannot load {p}: {exc.__class__.__name__} (a corrupt or foreign "
                           f".pt2 file?); re-export it") from None
    (x,), _ = program.example_inputs
    return program.module(), tuple(int(d) for d in x.shape)


class TorchRuntime(DeviceRuntime):
    """``torch.export`` programs on the CPU, ``threads`` intra-op threads."""

    name = "torch"
    suffix = ".pt2"

    def __init__(self, threads: int = 1, options: dict[str, Any] | None = None) -> None:
        super().__init__(threads, options)
        if not isinstance(threads, int) or threads < 1:
            raise EdgenasError(f"torch runtime: threads must be a positive integer, got {threads!r}")
        for key, value in self.options.items():
            if key not in OPTIONS:
                raise EdgenasError(f"torch runtime: unknown option {key!r}; accepted: {', '.join(OPTIONS)}")
            if not isinstance(value, OPTIONS[key]):
                raise EdgenasError(f"torch runtime: option {key!r} must be a {OPTIONS[key].__name__}, "
                                   f"got {value!r}")
        self.channels_last = bool(self.options.get("channels_last", False))

    def version(self) -> str:
        import torch

        return f"torch {torch.__version__} (torch.export, eager CPU)"

    def export_many(
        self, items: Sequence[ExportItem], out_dir: Path, progress: Callable[[int], None] | None = None
    ) -> dict[str, Path]:
        paths = {}
        for item in items:
            paths[item.key] = atomic_write(Path(out_dir) / (file_stem(item.key) + self.suffix),
                                           export_program(item.module, item.input_shape))
            if progress:
                progress(1)
        return paths

    def _runner(self, path: Path) -> Callable[[], Any]:
        import numpy as np
        import torch

        module, shape = load_program(path)
        x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        if self.channels_last and x.dim() == 4:
            module = module.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)

        def run() -> Any:
            with torch.inference_mode():
                return module(x)

        return run

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def time(self, path: Path, warmup: int = 10, repeats: int = 50, max_seconds: float = 10.0) -> list[float]:
        run = self._runner(path)
        with self._threads():
            return time_callable(run, warmup, repeats, max_seconds)

    def time_paired(self, path: Path, ref_path: Path, warmup: int = 10, repeats: int = 50,
                    max_seconds: float = 10.0, group: int = 5) -> tuple[list[float], list[float]]:
        """Alternating groups of the reference and the model (edgenas' paired procedure)."""
        run, ref = self._runner(path), self._runner(ref_path)
        with self._threads():
            return time_callables_paired(run, ref, warmup, repeats, max_seconds, group)
