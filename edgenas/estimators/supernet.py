"""``supernet``: the accuracy a candidate has with weights inherited from a trained supernet.

Once-for-All's evaluation: the spec's subnet is cut from the supernet (:meth:`Supernet.extract`: the
same module ``space.build`` makes, holding the shared weights), its BatchNorm statistics are re-estimated
on ``bn_batches`` training batches at the spec's input size (inherited statistics fit no subnet in
particular), and it is scored by top-1 accuracy on ``val_samples`` examples of the validation split.
No training per candidate: a spec costs a forward pass over a few hundred examples, so a search can
afford hundreds of candidates once the supernet is trained (``edgenas supernet train``).

The training subset for BatchNorm and the validation subset are seeded draws shared by every spec, so
a spec's score depends only on (weights, options, seed, spec), in any batch order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from edgenas.datasets import adapt_images
from edgenas.errors import EdgenasError
from edgenas.estimators.base import Estimator, Outcome, register_estimator, spec_seed
from edgenas.estimators.data import data_task, resolve_dataset
from edgenas.estimators.trust import DEFAULT_METRICS, DEFAULT_SNR_DB, TRUST_METRICS, check_metrics, check_snr, evaluate
from edgenas.spaces.base import Task
from edgenas.torchdevice import resolve_device

if TYPE_CHECKING:
    from edgenas.datasets import Dataset
    from edgenas.spaces.base import ArchSpec, SearchSpace

PRERESIZE_BYTES = 128 * 2**20
"""Subsets are kept resized per input shape up to this many float32 bytes in all."""
MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
"""The estimator's ``memory_format`` choices."""


@register_estimator
class SupernetAccuracy(Estimator):
    name = "supernet"
    summary = "top-1 of the subnet inheriting a trained supernet's weights (weights=sn.pt), BatchNorm re-estimated"
    needs_data = True
    trust_metrics = TRUST_METRICS

    @classmethod
    def unsupported_reason(cls, space: SearchSpace) -> str | None:
        from edgenas.supernet.plans import plan_for

        try:
            plan_for(space)
        except EdgenasError:
            return "it has no weight-sharing supernet (tiny, mbv3, proxyless and fbnet have)"
        return None

    def __init__(
        self, space: SearchSpace, task: Task | None = None, seed: int = 0, weights: str | None = None,
        dataset: str | Dataset | None = None, bn_batches: int = 8, batch_size: int = 64, val_samples: int = 512,
        torch_device: str = "auto", memory_format: str = "channels_last", precision: str = "fp32",
        metrics: Sequence[str] = DEFAULT_METRICS, noise_snr_db: float = DEFAULT_SNR_DB,
    ) -> None:
        """``weights``: a checkpoint of ``edgenas supernet train`` (or ``supernet import``) for this space;
        ``dataset``: the data it was trained on (default digits); ``bn_batches`` batches of ``batch_size``
        training examples re-estimate BatchNorm statistics (default 512 examples: a score's noise from the
        BatchNorm subset falls as one over the square root of their number; 256, the default before, left
        about one validation image of noise per score on digits, as much as neighbouring specs differ);
        ``val_samples``: validation examples scored
        (0 = the whole split); ``torch_device``: where subnets run; ``memory_format``: the layout of the
        subnet's weights and inputs, ``channels_last`` (default: on CPU about twice as fast, oneDNN's NCHW
        depthwise convolutions being slow at small spatial sizes) or ``contiguous`` (NCHW). Both compute
        the same function; their floating-point sums differ in order (logits within ~1e-4), so a score
        could differ only where two classes' logits tie to that precision. ``precision``: score the subnet
        in float (``fp32``) or its simulated int8 quantization (``int8``, calibrated on the first 256 of
        the BatchNorm examples: :mod:`edgenas.estimators.int8_sim`; the ``accuracy_int8`` objective sets
        it). ``metrics`` / ``noise_snr_db``: the trust metrics each estimate carries, from the same
        validation pass (as ``train``'s options of the same names, :mod:`edgenas.estimators.trust`)."""
        from edgenas.estimators.int8_sim import check_precision

        super().__init__(space, task, seed)
        self.precision = check_precision(precision, self.name)
        self.metrics = check_metrics(metrics, self.name)
        self.noise_snr_db = check_snr(noise_snr_db, self.name)
        self.noise_seed = spec_seed(self.seed, "trust:noise")
        """Seeds the noise of ``noisy_accuracy`` (the same draws for every spec of an input shape)."""
        for key, v, lo in (("bn_batches", bn_batches, 1), ("batch_size", batch_size, 2),
                           ("val_samples", val_samples, 0)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise EdgenasError(f"supernet: {key} must be an integer >= {lo}, got {v!r}")
        if memory_format not in MEMORY_FORMATS:
            raise EdgenasError(f"supernet: memory_format must be one of {', '.join(MEMORY_FORMATS)}, got "
                               f"{memory_format!r}")
        self.memory_format = memory_format
        self._layout = MEMORY_FORMATS[memory_format]
        if not weights:
            raise EdgenasError("supernet: needs weights=PATH, a checkpoint of 'edgenas supernet train' "
                               "(--weights PATH, or weights = \"...\" in [estimator])")
        from edgenas.supernet import load_supernet

        resolve_device(torch_device, "supernet: torch_device")  # a device this machine lacks fails here
        self.torch_device = torch_device
        self.weights = str(weights)
        self.supernet, self.meta = load_supernet(weights, "cpu")
        if self.meta["space"] != space.name:
            raise EdgenasError(f"supernet: {self.weights!r} is a supernet of space {self.meta['space']!r}, the "
                               f"search's space is {space.name!r}")
        self.dataset = resolve_dataset(dataset)
        self.net_task = data_task(space, task, self.dataset)
        sn_task = self.supernet.task
        if (sn_task.num_classes, sn_task.in_channels) != (self.net_task.num_classes, self.net_task.in_channels):
            raise EdgenasError(
                f"supernet: {self.weights!r} was trained for {sn_task.num_classes} classes and "
                f"{sn_task.in_channels} input channel(s); dataset {self.dataset.name!r} needs "
                f"{self.net_task.num_classes} and {self.net_task.in_channels}")
        self._check_covers(space)
        self.bn_batches, self.batch_size, self.val_samples = bn_batches, batch_size, val_samples
        g = torch.Generator().manual_seed(self.seed)
        tr, va = torch.as_tensor(self.dataset.train_idx), torch.as_tensor(self.dataset.val_idx)
        n_bn = min(len(tr), bn_batches * batch_size)
        self._bn_idx = tr[torch.randperm(len(tr), generator=g)[:n_bn]]
        self._val_idx = va[torch.randperm(len(va), generator=g)[: val_samples or len(va)].sort().values]
        self._resized: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._resized_bytes = 0
        self._on: torch.device | None = None

    def _check_covers(self, space: SearchSpace) -> None:
        """Every choice the search can make must exist in the supernet (e.g. its widths): checked on the
        space's covering specs, which together hold every choice."""
        for spec in space.covering_specs():
            try:
                self.supernet.set_active(str(spec))  # builds the spec's cut: fails when it does not fit
            except EdgenasError as exc:
                raise EdgenasError(f"supernet: {self.weights!r} ({self.meta['space']} "
                                   f"{self.meta.get('space_options', {})}) cannot run every spec of the search's "
                                   f"space: {exc}") from None
        self.supernet.set_active(self.supernet.largest())

    def input_shape(self, spec: ArchSpec) -> tuple[int, int, int]:
        return self.space.input_shape(spec, self.net_task)

    def _data(self, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(BatchNorm examples, validation examples) at ``shape``, kept when they fit PRERESIZE_BYTES."""
        if shape in self._resized:
            return self._resized[shape]
        x = self.dataset.x
        pair = (adapt_images(x[self._bn_idx], shape).contiguous(memory_format=self._layout),
                adapt_images(x[self._val_idx], shape).contiguous(memory_format=self._layout))
        nbytes = sum(4 * t.numel() for t in pair)
        if self._resized_bytes + nbytes <= PRERESIZE_BYTES:
            self._resized[shape] = pair
            self._resized_bytes += nbytes
        return pair

    def provides(self) -> tuple[str, ...]:
        return self.metrics

    def _compute(self, spec: ArchSpec) -> Outcome:
        from edgenas.supernet import batches_of, recalibrate_bn

        device = resolve_device(self.torch_device, "supernet: torch_device")
        if self._on != device:
            self.supernet.to(device)
            self._on = device
        x_bn, x_val = self._data(self.input_shape(spec))
        model = self.supernet.extract(str(spec), reuse=True).to(memory_format=self._layout)
        recalibrate_bn(model, batches_of(x_bn, self.batch_size))
        y_val = self.dataset.y[self._val_idx]
        if self.precision == "int8":
            from edgenas.estimators.int8_sim import SimulatedInt8
            from edgenas.estimators.training import INT8_CALIBRATION_SAMPLES

            calib = x_bn[:INT8_CALIBRATION_SAMPLES].to(device)
            model = SimulatedInt8(model, batches_of(calib, self.batch_size))
        accuracy, found = evaluate(model, x_val, y_val, self.metrics, None, self.noise_snr_db, self.noise_seed)
        return Outcome(accuracy, 0, 0, found)

    def describe(self) -> dict[str, Any]:
        """Where the weights came from (for run records and model cards)."""
        return {"weights": self.weights, "space": self.meta["space"], "space_options": self.meta.get("space_options"),
                "epochs": self.meta.get("epoch"), "seed": self.meta.get("seed"), "dataset": self.meta.get("dataset")}
