"""The one device-agnostic path: a torch device chosen by name, and one helper that moves modules and
tensors (and containers of them) to it.

Everything that trains puts its modules and data through :func:`to_device`, so a CUDA or MPS run takes
the same code path as the CPU runs the tests make. Only CPU has been run here (no GPU on our machines).
"""

from __future__ import annotations

from typing import TypeVar

import torch

from edgenas.errors import EdgenasError

T = TypeVar("T")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as a
    :class:`torch.device`; a device this machine does not have is one :class:`EdgenasError` line."""
    if isinstance(name, torch.device):
        dev = name
    else:
        text = str(name).strip().lower()
        if text == "auto":
            return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        try:
            dev = torch.device(text)
        except RuntimeError:
            raise EdgenasError(f"unknown torch device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise EdgenasError(f"torch device {str(dev)!r}: CUDA is not available to this torch "
                               f"({torch.__version__}); use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise EdgenasError(f"torch device {str(dev)!r}: this machine has {torch.cuda.device_count()} CUDA "
                               f"device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise EdgenasError(f"torch device {str(dev)!r}: MPS is not available here; use cpu or auto")
    elif dev.type != "cpu":
        raise EdgenasError(f"torch device {str(dev)!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return dev


def to_device(obj: T, device: torch.device) -> T:
    """``obj`` on ``device``: a module moved in place (and returned), a tensor copied (pinned first and
    copied asynchronously when going from CPU to CUDA), tuples, lists and dicts item by item; anything
    else unchanged."""
    if isinstance(obj, torch.nn.Module):
        return obj.to(device)  # type: ignore[return-value]
    if isinstance(obj, torch.Tensor):
        if obj.device == device:
            return obj  # type: ignore[return-value]
        if device.type == "cuda" and obj.device.type == "cpu":
            return obj.pin_memory().to(device, non_blocking=True)  # type: ignore[return-value]
        return obj.to(device)  # type: ignore[return-value]
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, device) for v in obj)  # type: ignore[return-value]
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}  # type: ignore[return-value]
    return obj
