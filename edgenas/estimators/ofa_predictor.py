"""Once-for-All's ImageNet accuracy predictor for the ``mbv3`` w1.2 space (external weights).

The weights are OFA's ``acc_predictor.pth`` (a state_dict; ``weights=PATH``, default the shared data copy
``ofa/acc_predictor.pth``): an MLP Linear 128->400, ReLU, 400->400, ReLU, 400->400, ReLU, 400->1. Its
128 inputs are one-hot: the kernel size of each of the 20 block slots (5 stages x 4; slots for 3, 5, 7;
zeros beyond a stage's depth), then the expand ratio of each slot (3, 4, 6), then the resolution in 8
slots (index ``(r - 112) // 16``, so r in 112..239). The output is the predicted top-1 accuracy (a
fraction) on OFA's 10k-image ImageNet holdout; OFA's tutorial net at r192 predicts 0.8171.

Only w1.2 specs are scored (the predictor was trained on that supernet); any other width, or a
resolution outside 112..239, raises :class:`EdgenasError` naming the arch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from edgenas.errors import EdgenasError
from edgenas.estimators.base import BatchEstimator, register_estimator
from edgenas.paths import DATA_ENV, shared_file
from edgenas.spaces.elastic import ElasticSpec

if TYPE_CHECKING:
    from edgenas.spaces.base import ArchSpec, SearchSpace, Task

KERNELS = (3, 5, 7)
EXPANDS = (3, 4, 6)
SLOTS_PER_STAGE = 4
N_BLOCKS = 20
R_MIN, R_STEP, R_SLOTS = 112, 16, 8
FEATURES = 2 * 3 * N_BLOCKS + R_SLOTS


def ofa_features(spec: ElasticSpec) -> list[float]:
    """The predictor's 128-D one-hot input for a w1.2 ``mbv3`` spec."""
    if spec.w != 1.2:
        raise EdgenasError(f"ofa-predictor scores w1.2 specs only; {spec} has width {spec.w}")
    if not R_MIN <= spec.r < R_MIN + R_STEP * R_SLOTS:
        raise EdgenasError(f"ofa-predictor covers resolutions {R_MIN}..{R_MIN + R_STEP * R_SLOTS - 1}; "
                           f"{spec} has r{spec.r}")
    ks = [0.0] * (3 * N_BLOCKS)
    ex = [0.0] * (3 * N_BLOCKS)
    for i, blocks in enumerate(spec.stages):
        for j, (k, e) in enumerate(blocks):
            b = i * SLOTS_PER_STAGE + j
            ks[3 * b + KERNELS.index(k)] = 1.0
            ex[3 * b + EXPANDS.index(e)] = 1.0
    r = [0.0] * R_SLOTS
    r[(spec.r - R_MIN) // R_STEP] = 1.0
    return ks + ex + r


def load_predictor(path: str | Path) -> nn.Sequential:
    """The MLP with OFA's weights. The file is read with ``weights_only=True`` (a pickle that would run
    code is refused unread); a missing, empty, text, foreign or mismatching file is one
    :class:`EdgenasError` line naming it."""
    from edgenas.exporters.weights import load_state_dict_into, read_state_dict

    p = Path(path)
    what = "ofa-predictor weights"
    if not p.exists():
        raise EdgenasError(f"{what} {str(p)!r} not found")
    state = read_state_dict(p, what)
    model = nn.Sequential(nn.Linear(FEATURES, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(),
                          nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 1))
    load_state_dict_into(model, state, p, "OFA's 128-400-400-400-1 MLP", what)
    return model.eval()


@register_estimator
class OFAPredictor(BatchEstimator):
    name = "ofa-predictor"
    summary = "Once-for-All's ImageNet accuracy predictor (mbv3 w1.2; weights=PATH)"
    seeded = False

    def __init__(self, space: SearchSpace, task: Task | None = None, seed: int = 0, weights: str | None = None) -> None:
        """``weights``: OFA's acc_predictor.pth (default: the shared data copy)."""
        super().__init__(space, task, seed)
        path = weights or shared_file("ofa", "acc_predictor.pth")
        if path is None:
            raise EdgenasError(f"ofa-predictor needs OFA's acc_predictor.pth: pass --weights PATH "
                               f"(or the option weights=PATH), or set {DATA_ENV} to the shared data folder")
        self.weights = Path(path)
        self.model = load_predictor(self.weights)

    @classmethod
    def unsupported_reason(cls, space: SearchSpace) -> str | None:
        return None if space.name == "mbv3" else "OFA's predictor covers the mbv3 (w1.2) space only"

    def _scores(self, specs: list[ArchSpec]) -> list[float]:
        """One MLP pass per spec: a matrix product's rounding depends on the batch shape, and a spec's
        prediction must not depend on its batch (about 0.1 ms per spec either way)."""
        out = []
        with torch.no_grad():
            for s in specs:
                assert isinstance(s, ElasticSpec)
                out.append(float(self.model(torch.tensor([ofa_features(s)], dtype=torch.float32))[0, 0]))
        return out
