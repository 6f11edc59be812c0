"""``prune-finetune``: accuracy of a pruned model from its inherited weights after a short fine-tune.

For the ``model`` space (:mod:`edgenas.compress`), whose members are built from the source model's own
weights: the member is fine-tuned for ``epochs`` (default 1; 0 scores the inherited weights as they are,
BatchNorm statistics re-estimated) at a small learning rate and scored by top-1 on the validation split,
with the trust metrics of ``train``. It is ``train`` (same data subsets, SGD, schedule, seeds, devices,
``precision=int8``) with fine-tuning defaults and the check that the space inherits weights: training a
``tiny`` spec "from its weights" would silently train from scratch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from edgenas.errors import EdgenasError
from edgenas.estimators.base import register_estimator
from edgenas.estimators.training import LowFidelityTraining
from edgenas.estimators.trust import DEFAULT_METRICS, DEFAULT_SNR_DB

if TYPE_CHECKING:
    from edgenas.datasets import Dataset
    from edgenas.spaces.base import SearchSpace, Task


@register_estimator
class PruneFinetune(LowFidelityTraining):
    name = "prune-finetune"
    summary = "accuracy of a pruned model from its inherited weights after a short fine-tune (the model space)"

    def __init__(
        self, space: SearchSpace, task: Task | None = None, seed: int = 0,
        dataset: str | Dataset | None = None, epochs: int = 1, train_samples: int = 1024,
        val_samples: int = 512, resolution: int | None = None, batch_size: int = 64, lr: float = 0.01,
        momentum: float = 0.9, weight_decay: float = 5e-4, label_smoothing: float = 0.0, nesterov: bool = True,
        torch_device: str = "auto", precision: str = "fp32", metrics: Sequence[str] = DEFAULT_METRICS,
        noise_snr_db: float = DEFAULT_SNR_DB,
    ) -> None:
        """``epochs``: fine-tuning epochs (0: the inherited weights, BatchNorm statistics re-estimated);
        ``lr``: peak learning rate (a fifth of ``train``'s: the weights are already trained); the other
        options are ``train``'s."""
        reason = self.unsupported_reason(space)
        if reason:
            raise EdgenasError(reason)
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
            raise EdgenasError(f"prune-finetune: epochs must be an integer >= 0, got {epochs!r}")
        super().__init__(space, task, seed, dataset, max(1, epochs), train_samples, val_samples, resolution,
                         batch_size, lr, momentum, weight_decay, label_smoothing, nesterov, torch_device, precision,
                         metrics, noise_snr_db)
        self.epochs = epochs

    @classmethod
    def unsupported_reason(cls, space: SearchSpace) -> str | None:
        if getattr(space, "inherits_weights", False):
            return None
        return (f"prune-finetune needs a space whose members inherit weights (--model ...); space {space.name!r} "
                f"builds from scratch: use the 'train' estimator")
