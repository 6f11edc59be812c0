"""BatchNorm recalibration: running statistics re-estimated on a few training batches.

A subnet cut from a supernet inherits running statistics accumulated over every subnet trained
through the same BatchNorm channels, which fit none of them; a network trained for a few dozen steps
still remembers its initial statistics. Both score near chance in eval mode until the statistics are
re-estimated (OFA's ``set_running_statistics``): here, exact averages over the given batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn

from edgenas.errors import EdgenasError

_BN = nn.modules.batchnorm._BatchNorm


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def recalibrate_bn(module: nn.Module, batches: Iterable[Any]) -> int:
    """Replace the running mean and variance of every BatchNorm channel ``module`` uses by their
    averages over ``batches`` (tensors, or tuples whose first item is the input; batches of fewer than
    2 examples are skipped). Returns the number of batches used.

    Works the same on a stand-alone network and on a :class:`~edgenas.supernet.Supernet`, where it
    re-estimates the channels of the active subnet only (the others keep their statistics). Each
    BatchNorm takes the cumulative average of its per-batch statistics (momentum ``None``; the first
    batch overwrites what was there); momentum and train/eval mode are restored afterwards. Inputs are
    moved to the module's device.
    """
    bns = [m for m in module.modules() if isinstance(m, _BN)]
    device = module_device(module)
    was_training = module.training
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = None  # cumulative moving average: an exact mean over the batches seen
        if m.num_batches_tracked is not None:
            m.num_batches_tracked.zero_()
        if m.running_mean is not None:  # a first update of 0 * inf would leave NaN behind
            m.running_mean.nan_to_num_(0.0, 0.0, 0.0)
            m.running_var.nan_to_num_(1.0, 1.0, 1.0)
    used = 0
    try:
        module.train()
        with torch.no_grad():
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                if not isinstance(x, torch.Tensor):
                    raise EdgenasError(f"recalibrate_bn: batches must be tensors or (input, ...) tuples, got "
                                       f"{type(x).__name__}")
                if x.shape[0] < 2:
                    continue
                module(x.to(device, non_blocking=True))
                used += 1
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        module.train(was_training)
    if bns and not used:
        raise EdgenasError("recalibrate_bn: no batch of 2 or more examples given; BatchNorm statistics need them")
    return used


def batches_of(x: torch.Tensor, batch_size: int, max_examples: int | None = None) -> list[torch.Tensor]:
    """``x`` (up to ``max_examples`` of it) split into consecutive batches of ``batch_size``."""
    n = int(x.shape[0]) if max_examples is None else min(int(x.shape[0]), max_examples)
    return [x[i:min(n, i + batch_size)] for i in range(0, n, batch_size)]
