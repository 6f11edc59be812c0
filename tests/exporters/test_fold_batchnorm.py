"""BatchNorm folding before TFLite conversion (a conversion-time saving) must not change the model:
checked with non-trivial BatchNorm statistics, where a wrong epsilon or scale would show."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from edgenas import get_space
from edgenas.exporters.convert import fold_batchnorm, tflite_fp32_bytes
from edgenas.exporters.tflite import litert_runner


def _randomised(space: str, seed: int) -> tuple[nn.Module, tuple[int, int, int]]:
    sp = get_space(space)
    spec = sp.sample(1, seed=seed)[0]
    model = sp.build(spec).eval()
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5, generator=g)
            m.running_var.uniform_(0.3, 3.0, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.3, generator=g)
    return model, sp.input_shape(spec)


def test_folding_keeps_outputs_and_works_on_a_copy():
    model, shape = _randomised("tiny", 1)
    before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded = fold_batchnorm(model)
    after = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert after < before  # something was folded ...
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == before  # ... in a copy
    x = torch.randn(4, *shape)
    with torch.no_grad():
        ref, got = model(x), folded(x)
    assert torch.allclose(ref, got, atol=1e-5, rtol=1e-5)


def test_tflite_of_a_folded_model_matches_the_unfolded_torch_model(tmp_path):
    model, shape = _randomised("tiny", 2)
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite_fp32_bytes(model, shape))
    x = np.random.default_rng(0).standard_normal((8, *shape)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(litert_runner(path)(x) - ref).max() <= 1e-4
