"""Where torch trains: one device-agnostic path for every training loop (the ``train``/``halving``
estimators, supernet training, export's final training).

A device is named ``auto`` (the default: CUDA when torch sees a GPU, else the CPU), ``cpu``, ``cuda``,
``cuda:N`` or ``mps``. :func:`check_device_name` validates the spelling without importing torch (jobs
check it before any work); :func:`resolve_device` turns a name into a ``torch.device`` and refuses,
in one line, a device this machine lacks. Search workers on a multi-GPU machine take one GPU each:
a worker process calls :func:`assign_worker` with its index, and ``auto``/``cuda`` then resolve to
``cuda:<index mod GPU count>``. :func:`to_device` moves modules and tensors; :func:`host_tensor` pins
host memory only when a GPU will read it (page-locked copies are what make ``non_blocking`` real).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, TypeVar

from edgenas.errors import EdgenasError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"
_NAME_RE = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")
_WORKER: list[int] = []  # this process's search-worker index, when it is one

T = TypeVar("T")


def check_device_name(name: Any, what: str = "--torch-device") -> str:
    """``name`` normalised (stripped, lower case) if it is a device name edgenas accepts, else a
    one-line EdgenasError naming the choices. Does not look at the hardware."""
    text = name.strip().lower() if isinstance(name, str) else None
    if not text or not _NAME_RE.fullmatch(text):
        raise EdgenasError(f"{what} {name!r}: choose one of {DEVICE_CHOICES}")
    return text


def assign_worker(index: int) -> None:
    """Mark this process as search worker ``index`` (0-based): ``auto``/``cuda`` pick its GPU."""
    _WORKER[:] = [int(index)]


def resolve_device(name: str | None = "auto", what: str = "--torch-device") -> torch.device:
    """The ``torch.device`` for a device name (see the module docstring); a GPU this machine lacks is
    an EdgenasError saying what torch sees and to use ``cpu``."""
    import torch

    text = check_device_name("auto" if name is None else name, what)
    cuda_n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    worker = _WORKER[0] if _WORKER else 0
    if text == "auto":
        return torch.device("cuda", worker % cuda_n) if cuda_n else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise EdgenasError(f"{what} mps: this torch ({torch.__version__}) sees no Apple GPU; use "
                               f"--torch-device cpu (or auto)")
        return torch.device("mps")
    if not cuda_n:
        why = "was built without CUDA" if torch.version.cuda is None else "sees no CUDA GPU"
        raise EdgenasError(f"{what} {text}: this torch ({torch.__version__}) {why}; use --torch-device cpu "
                           f"(or auto, which picks a GPU only where one exists)")
    if text == "cuda":
        return torch.device("cuda", worker % cuda_n)
    index = int(text.split(":")[1])
    if index >= cuda_n:
        raise EdgenasError(f"{what} {text}: torch sees {cuda_n} CUDA GPU(s) (cuda:0..cuda:{cuda_n - 1})")
    return torch.device("cuda", index)


def to_device(obj: T, device: torch.device | str, non_blocking: bool = False) -> T:
    """``obj`` (a module, a tensor, or a tuple/list/dict of them) on ``device``; modules move in place."""
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj.to(device)  # type: ignore[return-value]
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)  # type: ignore[return-value]
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device, non_blocking) for o in obj)  # type: ignore[return-value]
    if isinstance(obj, dict):
        return {k: to_device(v, device, non_blocking) for k, v in obj.items()}  # type: ignore[return-value]
    return obj


def host_tensor(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``x`` as the host-side source of per-batch copies to ``device``: page-locked when ``device`` is
    a GPU (asynchronous copies), unchanged on the CPU."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and x.device.type == "cpu" and not x.is_pinned():
        return x.pin_memory()
    return x
