"""``zen-score``: a training-free accuracy proxy in the spirit of Zen-NAS (Lin et al., ICCV 2021).

A network that responds strongly to a small change of its input can tell inputs apart: the score is
``log(mean |f(x) - f(x + alpha * eps)| / alpha)`` for the network's feature map ``f`` (everything before
global pooling) at a Gaussian random initialisation, BatchNorm on batch statistics, ``x`` and ``eps``
Gaussian. Zen-NAS adds the BatchNorm variance term; this example leaves it out. A network whose output
does not depend on its input scores ``-inf`` (edgenas' worst score).
"""

from __future__ import annotations

import math

from edgenas.errors import EdgenasError
from edgenas.estimators.base import Estimator, Outcome
from edgenas.layers import GlobalPoolLayer
from edgenas.spaces import ArchSpec, SearchSpace, Task


class ZenScore(Estimator):
    """Zen-NAS-style expressivity at initialisation (per-spec seeded, so batch == single)."""

    name = "zen-score"
    summary = "Zen-NAS-style expressivity: feature response to a small input perturbation at init"

    def __init__(self, space: SearchSpace, task: Task | None = None, seed: int = 0, batch_size: int = 8,
                 alpha: float = 0.01) -> None:
        super().__init__(space, task, seed)
        if batch_size < 1:
            raise EdgenasError(f"estimator 'zen-score': batch_size must be >= 1, got {batch_size}")
        if not 0 < alpha < 1:
            raise EdgenasError(f"estimator 'zen-score': alpha must be in (0, 1), got {alpha}")
        self.batch_size = batch_size
        self.alpha = alpha

    def _compute(self, spec: ArchSpec) -> Outcome:
        import torch

        layers = self.space.layers(spec, self.task)
        cut = next((i for i, layer in enumerate(layers) if isinstance(layer, GlobalPoolLayer)), len(layers))
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(self.spec_seed(spec))
            body = torch.nn.Sequential(*[layer.build() for layer in layers[:cut]]).train()
            for m in body.modules():
                if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                    torch.nn.init.normal_(m.weight)
                    if m.bias is not None:
                        torch.nn.init.zeros_(m.bias)
            x = torch.randn(self.batch_size, *self.space.input_shape(spec, self.task))
            eps = torch.randn_like(x)
            diff = (body(x) - body(x + self.alpha * eps)).abs().mean().item()
        if not math.isfinite(diff):
            return Outcome(float("nan"))  # mapped to the worst score
        return Outcome(math.log(diff / self.alpha) if diff > 0 else float("-inf"))
