"""The device-runtime plug-in contract: export torch modules to model files, and time model files.

Timing is delegated to the standalone on-device runner (``edgenas.devices.runner``) so that the host
and a board measure with the same procedure.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch.nn as nn


@dataclass
class ExportItem:
    """One model to export: a key (unit key or arch string), the module and its (C, H, W) input."""

    key: str
    module: nn.Module
    input_shape: tuple[int, ...]


def file_stem(key: str) -> str:
    """A short, filesystem-safe, stable name for a key."""
    return hashlib.sha1(key.encode()).hexdigest()[:16]


class DeviceRuntime(ABC):
    name: ClassVar[str]
    suffix: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    """Import names of the optional packages the runtime needs (their extras: :mod:`edgenas.extras`)."""

    @classmethod
    def check_available(cls) -> None:
        """One line naming the pip extra when an optional package the runtime needs is missing."""
        from edgenas.extras import available, missing_extra

        for module in cls.requires:
            if not available(module):
                raise missing_extra(module, f"runtime {cls.name!r}")

    def __init__(self, threads: int = 1, options: dict[str, Any] | None = None) -> None:
        self.threads = threads
        self.options = options or {}

    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def export_many(
        self, items: Sequence[ExportItem], out_dir: Path,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Path]:
        """Write one model file per item under ``out_dir``; returns key -> path. ``progress(n)`` is
        called with the number of items finished since the last call."""

    def time(self, path: Path, warmup: int = 10, repeats: int = 50, max_seconds: float = 10.0) -> list[float]:
        """Per-run latencies (ms) of a model file on this host; a missing file, or one the runtime cannot
        load or run, is a one-line :class:`EdgenasError` naming it."""
        from edgenas.devices.runner import time_model

        with self._model_errors(path):
            return time_model(str(path), self.name, self.threads, warmup, repeats, max_seconds, self.options)

    def time_paired(self, path: Path, ref_path: Path, warmup: int = 10, repeats: int = 50,
                    max_seconds: float = 10.0, group: int = 5) -> tuple[list[float], list[float]]:
        """Per-run latencies (ms) of a model file and of a reference model run alternately with it
        (see ``time_model_paired`` in the runner): the reference tells the speed each window ran at."""
        from edgenas.devices.runner import time_model_paired

        with self._model_errors(path, ref_path):
            return time_model_paired(str(path), str(ref_path), self.name, self.threads, warmup, repeats,
                                     max_seconds, self.options, group)

    @contextmanager
    def _model_errors(self, *paths: Path) -> Iterator[None]:
        from edgenas.errors import EdgenasError

        for p in paths:
            if not Path(p).is_file():
                raise EdgenasError(f"model file {str(p)!r} not found")
        try:
            yield
        except EdgenasError:
            raise
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # the runtime's own load/run errors (NoSuchFile, InvalidProtobuf, ValueError)
            text = " ".join(str(exc).split())[:200]
            names = " or ".join(repr(Path(p).name) for p in paths)
            raise EdgenasError(f"{self.name} cannot run model file {names} ({Path(paths[0]).parent}): "
                               f"{exc.__class__.__name__}" + (f": {text}" if text else "")) from None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version(), "threads": self.threads, "options": self.options}
