"""Zero-cost proxies: score an untrained network from one forward/backward pass.

Definitions follow the reference implementations (SamsungLabs/zero-cost-nas
``foresight/pruners/measures/*.py``, as vendored by automl/NASLib, and BayesWatch/nas-without-training
for NASWOT). Each spec's network is built with the space's default (PyTorch) initialisation under the
per-spec seed; "weights" below means the ``weight`` of every ``Conv2d`` and ``Linear``.

``synflow``
    Data-free. BatchNorm layers are replaced by identities (the reference's ``bn=False`` copy), the
    network is cast to float64 and every parameter replaced by its absolute value; one all-ones input
    ``[1, C, H, W]`` goes forward, ``sum(output)`` backward; synflow = ``sum |w * dR/dw|``. The score is
    the natural log of synflow (NASLib stores ``log(synflow)``; the order is the same).
``snip``
    ``sum |w * dL/dw|``, L the cross-entropy of a training batch (BN in training mode, as ``bn=True``).
``grad_norm``
    ``sum over layers of ||dL/dw||_2``.
``fisher``
    Per output channel k of each conv/linear layer with activation a and gradient g = dL/da:
    ``0.5 * mean_batch((sum_spatial a * g)^2)``; as in the reference, each channel's value is counted
    once per weight of that channel (``weight.shape[1:]`` elements) before summing.
``jacob_cov``
    J = d(sum output)/d(input) per example; score ``-sum(log(v + 1e-5) + 1/(v + 1e-5))`` over the
    eigenvalues v of the correlation matrix of the rows of J.
``naswot``
    For every ReLU-family activation (ReLU, ReLU6 and, beyond the ReLU-only reference, Hardswish for the
    h-swish stages of ``mbv3``/``tiny``) the binary code ``input > 0`` of each example; kernel
    ``K = sum over activations of (codes·codesᵀ + (1-codes)·(1-codes)ᵀ)`` (units minus Hamming
    distance); score ``log|det K|``. As in the reference, only activations on a path to the output count
    (it hooks modules visited by the backward pass); an activation applied to an all-zero NB201 node
    has no gradient path here (edgenas omits ``none`` edges instead of multiplying by 0), so it is not
    counted, where the reference counts it. Batch 128 (the paper's) by default; the other
    data-dependent proxies use 64 (NASLib's).
``params`` / ``macs``
    The exact analytic cost (:meth:`SearchSpace.cost`): baselines every proxy should beat.
``zc-ensemble``
    Rank ensemble of ``synflow``, ``jacob_cov`` and ``snip`` (the three-proxy vote of Abdelfattah et
    al., 2021) — see :class:`edgenas.estimators.compose.RankEnsemble`.

Degenerate specs — a network whose output does not depend on its input (NB201 cells with
``is_connected`` False) — score :data:`~edgenas.estimators.base.WORST_SCORE` on every proxy here,
without being built; numerical failures (singular kernels, constant Jacobians, synflow 0) do too.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgenas.datasets import Dataset
from edgenas.errors import EdgenasError
from edgenas.estimators.base import WORST_SCORE, Estimator, Outcome, register_estimator
from edgenas.estimators.compose import RankEnsemble
from edgenas.estimators.data import data_task, resolve_dataset

if TYPE_CHECKING:
    from edgenas.spaces.base import ArchSpec, SearchSpace, Task

WEIGHTED = (nn.Conv2d, nn.Linear)
CODE_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish)
JACOB_EPS = 1e-5


def is_degenerate(spec: ArchSpec) -> bool:
    """True when the spec's output cannot depend on its input (NB201 disconnected cells)."""
    return getattr(spec, "is_connected", True) is False


def _weighted_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, WEIGHTED)]


def _remove_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm module by an identity (in place)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, nn.Identity())
        else:
            _remove_batchnorm(child)
    return model


# -- the measures (plain functions of a built network) ------------------------------------------
def synflow_log(model: nn.Module, input_shape: tuple[int, int, int]) -> float:
    """log(synflow) of ``model`` (modified in place: BN removed, float64, |theta|)."""
    model = _remove_batchnorm(model).double().train()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.zero_grad()
    out = model(torch.ones((1, *input_shape), dtype=torch.float64))
    out.sum().backward()
    with torch.no_grad():
        total = sum(float((m.weight * m.weight.grad).abs().sum())
                    for m in _weighted_layers(model) if m.weight.grad is not None)
    return math.log(total) if total > 0 and math.isfinite(total) else WORST_SCORE


def _loss_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.train()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()


def snip_score(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    _loss_backward(model, x, y)
    with torch.no_grad():
        return float(sum(float((m.weight * m.weight.grad).abs().sum())
                         for m in _weighted_layers(model) if m.weight.grad is not None))


def grad_norm_score(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    _loss_backward(model, x, y)
    return float(sum(float(m.weight.grad.norm()) for m in _weighted_layers(model) if m.weight.grad is not None))


def fisher_score(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    layers = _weighted_layers(model)
    fisher: dict[int, torch.Tensor] = {}
    handles = []

    def forward_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if not output.requires_grad:
            return
        act = output.detach()
        key = id(module)

        def grad_hook(grad: torch.Tensor) -> None:
            g_nk = (act * grad).sum(dim=tuple(range(2, act.dim()))) if act.dim() > 2 else act * grad
            del_k = g_nk.pow(2).mean(0).mul(0.5)
            fisher[key] = fisher[key] + del_k if key in fisher else del_k

        output.register_hook(grad_hook)

    for m in layers:
        handles.append(m.register_forward_hook(forward_hook))
    try:
        _loss_backward(model, x, y)
    finally:
        for h in handles:
            h.remove()
    total = 0.0
    for m in layers:
        if id(m) in fisher:
            per_weight = int(np.prod(m.weight.shape[1:]))
            total += float(fisher[id(m)].abs().sum()) * per_weight
    return total


def jacob_cov_score(model: nn.Module, x: torch.Tensor) -> float:
    model.train()
    model.zero_grad()
    x = x.clone().requires_grad_(True)
    out = model(x)
    out.backward(torch.ones_like(out))
    if x.grad is None:
        return WORST_SCORE
    jac = x.grad.detach().reshape(x.shape[0], -1).double().numpy()
    with np.errstate(all="ignore"):
        corr = np.corrcoef(jac)
        if not np.all(np.isfinite(corr)):
            return WORST_SCORE
        v = np.linalg.eigvalsh(corr)
        score = -float(np.sum(np.log(v + JACOB_EPS) + 1.0 / (v + JACOB_EPS)))
    return score if math.isfinite(score) else WORST_SCORE


def naswot_score(model: nn.Module, x: torch.Tensor) -> float:
    n = x.shape[0]
    kernels: dict[int, torch.Tensor] = {}
    visited: set[int] = set()
    handles = []

    def forward_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        with torch.no_grad():
            codes = (inputs[0].detach().reshape(n, -1) > 0).float()
            k = codes @ codes.t()
            r = codes.sum(1)
            units = codes.shape[1]
            # codes·codesᵀ + (1-codes)·(1-codes)ᵀ = 2K + units - r_i - r_j
            km = (2.0 * k + units - r[:, None] - r[None, :]).double()
        key = id(module)
        kernels[key] = kernels[key] + km if key in kernels else km
        if output.requires_grad:
            output.register_hook(lambda grad: visited.add(key))

    for m in model.modules():
        if isinstance(m, CODE_ACTIVATIONS):
            handles.append(m.register_forward_hook(forward_hook))
    model.train()
    try:
        xin = x.clone().requires_grad_(True)
        out = model(xin)
        out.backward(torch.ones_like(out))
    finally:
        for h in handles:
            h.remove()
    live = [kernels[k] for k in kernels if k in visited]
    if not live:
        return WORST_SCORE
    kmat = torch.stack(live).sum(0).numpy()
    sign, logdet = np.linalg.slogdet(kmat)
    return float(logdet) if sign != 0 and math.isfinite(logdet) else WORST_SCORE


# -- estimators --------------------------------------------------------------------------------
class ZeroCostProxy(Estimator):
    """Builds each spec's network under its per-spec seed and applies one measure."""

    def _compute(self, spec: ArchSpec) -> Outcome:
        if is_degenerate(spec):
            return Outcome(WORST_SCORE)
        task = self.net_task()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.spec_seed(spec))
            model = self.space.build(spec, task)
        return Outcome(self.measure(spec, model, self.space.input_shape(spec, task)))

    def net_task(self) -> Task | None:
        return self.task

    def measure(self, spec: ArchSpec, model: nn.Module, input_shape: tuple[int, int, int]) -> float:
        raise NotImplementedError


@register_estimator
class Synflow(ZeroCostProxy):
    name = "synflow"
    summary = "log synaptic flow of |theta| on an all-ones input, float64, BN removed (data-free)"

    def measure(self, spec: ArchSpec, model: nn.Module, input_shape: tuple[int, int, int]) -> float:
        return synflow_log(model, input_shape)


class DataProxy(ZeroCostProxy):
    """A proxy that needs one training batch (chosen by the estimator seed, the same for every spec)."""

    needs_data = True
    default_batch_size: ClassVar[int] = 64

    def __init__(
        self, space: SearchSpace, task: Task | None = None, seed: int = 0,
        dataset: str | Dataset | None = None, batch_size: int | None = None,
    ) -> None:
        """``dataset``: built-in name, folder or .npz (default ``digits``); ``batch_size`` examples per
        score (default 64, naswot 128)."""
        super().__init__(space, task, seed)
        self.dataset = resolve_dataset(dataset)
        self.batch_size = int(batch_size or self.default_batch_size)
        if self.batch_size < 2:
            raise EdgenasError(f"{self.name}: batch_size must be >= 2, got {self.batch_size}")
        self._task = data_task(space, task, self.dataset)

    def net_task(self) -> Task:
        return self._task

    def data(self, input_shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.batch(self.batch_size, self.seed, input_shape)


@register_estimator
class Snip(DataProxy):
    name = "snip"
    summary = "sum |w * dL/dw| over conv/linear weights on one training batch"

    def measure(self, spec: ArchSpec, model: nn.Module, input_shape: tuple[int, int, int]) -> float:
        return snip_score(model, *self.data(input_shape))


@register_estimator
class GradNorm(DataProxy):
    name = "grad_norm"
    summary = "sum over conv/linear layers of ||dL/dw||_2 on one training batch"

    def measure(self, spec: ArchSpec, model: nn.Module, input_shape: tuple[int, int, int]) -> float:
        return grad_norm_score(model, *self.data(input_shape))


@register_estimator
class Fisher(DataProxy):
    name = "fisher"
    summary = "channel Fisher information 0.5*mean((sum a*dL/da)^2), per weight, on one training batch"

    def measure(self, spec: ArchSpec, model: nn.Module, input_shape: tuple[int, int, int]) -> float:
        return fisher_score(model, *self.data(input_shape))


@register_estimator
class JacobCov(DataProxy):
    name = "jacob_cov"
    summary = "-(sum log(v+k) + 1/(v+k)) over eigenvalues of the input-Jacobian correlation"

    def measure(self, spec: ArchSpec, model: nn.Module, input_shape: tuple[int, int, int]) -> float:
        return jacob_cov_score(model, self.data(input_shape)[0])


@register_estimator
class NASWOT(DataProxy):
    name = "naswot"
    summary = "log|det| of the activation-code Hamming kernel (NAS without training)"
    default_batch_size = 128

    def measure(self, spec: ArchSpec, model: nn.Module, input_shape: tuple[int, int, int]) -> float:
        return naswot_score(model, self.data(input_shape)[0])


class CostBaseline(Estimator):
    """An exact analytic cost as a score (no network is built, no seed matters)."""

    seeded = False
    field: ClassVar[str]

    def _compute(self, spec: ArchSpec) -> Outcome:
        if is_degenerate(spec):
            return Outcome(WORST_SCORE)
        return Outcome(float(getattr(self.space.cost(spec, self.task), self.field)))


@register_estimator
class Params(CostBaseline):
    name = "params"
    summary = "number of trainable parameters (baseline)"
    field = "params"


@register_estimator
class MACs(CostBaseline):
    name = "macs"
    summary = "multiply-accumulates of one inference (baseline)"
    field = "macs"


@register_estimator
class ZeroCostEnsemble(RankEnsemble):
    name = "zc-ensemble"
    summary = "rank ensemble of synflow, jacob_cov and snip (Abdelfattah et al. 2021's vote)"

    def __init__(
        self, space: SearchSpace, task: Task | None = None, seed: int = 0,
        members: str | list[str] = "synflow,jacob_cov,snip", pool: str = "reference", reference: int = 32,
        dataset: str | Dataset | None = None, batch_size: int | None = None,
        member_options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """See :class:`RankEnsemble`; only the default member list differs."""
        super().__init__(space, task, seed, members=members, pool=pool, reference=reference, dataset=dataset,
                         batch_size=batch_size, member_options=member_options)
