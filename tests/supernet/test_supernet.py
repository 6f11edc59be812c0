"""Supernet contract: every elastic space (and fbnet) runs any spec with shared weights, and the extracted
stand-alone subnet computes exactly what the supernet computes for that spec."""

from __future__ import annotations

import re

import pytest
import torch
from supernetkit import randomise

from edgenas.errors import ArchParseError, EdgenasError
from edgenas.spaces import get_space
from edgenas.spaces.base import Task
from edgenas.supernet import Supernet, recalibrate_bn

TOL = 1e-5

# (space, options, task, input resolution for the elastic specs): small inputs keep every test fast
CASES = {
    "tiny": ("tiny", {}, Task(num_classes=10, in_channels=3), 32),
    "proxyless": ("proxyless", {}, Task(num_classes=10, in_channels=3), 96),
    "mbv3": ("mbv3", {"widths": [1.0, 1.2]}, Task(num_classes=10, in_channels=3), 96),
    "fbnet": ("fbnet", {}, Task(num_classes=10, in_channels=3, resolution=16), None),
}


def specs_for(name: str, sn: Supernet, n: int = 3) -> list:
    """``n`` random specs plus the largest and the smallest, at the case's resolution."""
    space = sn.space
    specs = [*space.sample(n, 7), sn.largest(), sn.smallest()]
    r = CASES[name][3]
    if r is not None:
        specs = [space.make_spec(s.w, r, s.stages) for s in specs]
    return specs


@pytest.fixture(scope="module", params=list(CASES))
def case(request) -> tuple[str, Supernet]:
    name, opts, task, _ = CASES[request.param]
    torch.manual_seed(0)
    sn = Supernet(get_space(name, **opts), task)
    randomise(sn, 1)
    return request.param, sn.eval()


def test_subnet_outputs_equal_extracted(case):
    name, sn = case
    outs = []
    for i, spec in enumerate(specs_for(name, sn)):
        x = torch.randn(2, *sn.input_shape(spec), generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            ours = sn(x, spec)
            sn.set_active(spec)
            active = sn(x)
            sub = sn.extract(spec)
            theirs = sub(x)
        assert ours.shape == (2, 10)
        assert (ours - theirs).abs().max().item() <= TOL, spec
        assert torch.equal(ours, active)
        assert not sub.training
        outs.append(ours)
    # the specs compute different functions (the comparison above is not between constants)
    assert (outs[-2] - outs[-1]).abs().max().item() > 1e-3


def test_extracted_module_is_the_built_network(case):
    name, sn = case
    for spec in specs_for(name, sn, 2):
        sub = sn.extract(spec)
        built = sn.space.build(spec, sn.task)
        assert {k: tuple(v.shape) for k, v in sub.state_dict().items()} == \
            {k: tuple(v.shape) for k, v in built.state_dict().items()}
        assert [type(m) for m in sub.modules()] == [type(m) for m in built.modules()]
        # plain modules: torch's and edgenas' building blocks, no supernet code, no meta tensors
        assert all(type(m).__module__.startswith("torch.") or type(m).__module__ == "edgenas.nn_blocks"
                   for m in sub.modules())
        assert all(t.device.type == "cpu" for t in sub.state_dict().values())
        # weights are copies: training the subnet leaves the supernet alone
        before = {k: v.clone() for k, v in sn.state_dict().items()}
        with torch.no_grad():
            for p in sub.parameters():
                p.add_(1.0)
        assert all(torch.equal(before[k], v) for k, v in sn.state_dict().items())


def test_cut_is_ofa_style():
    """Channels are the first c, kernels the centre crop, depth the first d blocks of a stage."""
    space = get_space("tiny")
    torch.manual_seed(0)
    sn = Supernet(space, Task(num_classes=10, in_channels=3))
    spec = space.parse("tiny:w0.5:r32:k3e3_k5e4-k7e6_k3e6_k7e3-k3e3")
    sub = sn.extract(spec)
    slots = sn.slots
    # stem at w0.5: the first 8 of the 16 output channels
    assert torch.equal(sub[0][0].weight, slots["stem"][0].weight[:8])
    # stage 1, block 1: cin 8 (w0.5 first block) -> mid make_divisible(8 * 3) = 24, kernel 3 of 7
    exp, dw, proj = sub[2].body
    assert torch.equal(exp[0].weight, slots["s1b1"].body[0][0].weight[:24, :8])
    assert torch.equal(dw[0].weight, slots["s1b1"].body[1][0].weight[:24, :, 2:5, 2:5])
    assert torch.equal(proj[0].weight, slots["s1b1"].body[2][0].weight[:8, :24])
    assert torch.equal(dw[1].running_var, slots["s1b1"].body[1][1].running_var[:24])
    # stage 2 (depth 2): its blocks are the slots s2b1 and s2b2; stage 3 (depth 1) starts at s3b1
    assert torch.equal(sub[4].body[1][0].weight, slots["s2b2"].body[1][0].weight[:96])
    assert torch.equal(sub[5].body[1][0].weight, slots["s3b1"].body[1][0].weight[:96, :, 2:5, 2:5])
    assert torch.equal(sub[-1][1].weight, slots["classifier"][1].weight[:, :128])


def test_kernel_transform_runs_and_extracts():
    space = get_space("tiny", widths=[0.5])
    torch.manual_seed(0)
    sn = Supernet(space, Task(num_classes=10, in_channels=3), kernel_transform=True)
    assert {"s1b1_7to5", "s1b1_5to3"} <= set(sn.kernel_maps)
    spec = space.parse("tiny:w0.5:r32:k3e3_k5e4-k7e6_k3e6_k7e3-k5e3")
    x = torch.randn(2, 3, 32, 32)
    sn.eval()
    with torch.no_grad():
        identity = sn(x, spec)
        plain = Supernet(space, Task(num_classes=10, in_channels=3))
        plain.load_state_dict({k: v for k, v in sn.state_dict().items() if "kernel_maps" not in k})
        assert (plain.eval()(x, spec) - identity).abs().max().item() <= TOL  # identity maps = centre crop
        randomise(sn, 3)
        ours = sn(x, spec)
        theirs = sn.extract(spec)(x)
    assert (ours - theirs).abs().max().item() <= TOL
    assert (ours - identity).abs().max().item() > 1e-4  # the matrices are used
    # OFA's transform by hand for the k3 block at s1b1: crop 7 -> 5, times 7to5; crop -> 3, times 5to3
    w = sn.slots["s1b1"].body[1][0].weight[:24]
    k5 = w[:, :, 1:6, 1:6].reshape(-1, 25) @ sn.kernel_maps["s1b1_7to5"].T
    k3 = k5.reshape(-1, 1, 5, 5)[:, :, 1:4, 1:4].reshape(-1, 9) @ sn.kernel_maps["s1b1_5to3"].T
    assert torch.allclose(sn.extract(spec)[2].body[1][0].weight, k3.reshape(24, 1, 3, 3))


@pytest.mark.parametrize("name", ["tiny", "mbv3"])
def test_sort_channels_keeps_the_function(name):
    space_name, opts, task, r = CASES[name]
    space = get_space(space_name, **opts)
    torch.manual_seed(0)
    sn = Supernet(space, task)
    randomise(sn, 2)
    sn.eval()
    # full expand ratio at the supernet's width: every expand channel is used, so the order does not matter
    spec = space.sample(1, 3)[0]
    full = space.make_spec(max(space.widths), r, [[(k, max(space.expands)) for k, _ in b] for b in spec.stages])
    small = space.make_spec(max(space.widths), r, [[(k, min(space.expands)) for k, _ in b] for b in spec.stages])
    x = torch.randn(2, *sn.input_shape(full))
    with torch.no_grad():
        before, before_small = sn(x, full), sn(x, small)
        sn.sort_channels()
        after, after_small = sn(x, full), sn(x, small)
    assert (before - after).abs().max().item() <= TOL
    assert (before_small - after_small).abs().max().item() > 1e-4  # smaller subnets now use other channels
    for slot, module in sn.slots.items():
        if re.fullmatch(r"s\d+b\d+", slot):
            importance = module.body[-1][0].weight.abs().sum(dim=(0, 2, 3))
            assert torch.all(importance[:-1] >= importance[1:]), slot
    if name == "mbv3":  # SE blocks: their mid channels sorted too, the function kept (checked above)
        se = sn.slots["s2b1"].body[2]
        importance = se.expand.weight.abs().sum(dim=(0, 2, 3))
        assert torch.all(importance[:-1] >= importance[1:])


def test_recalibrate_bn_sets_batch_statistics():
    space = get_space("tiny")
    torch.manual_seed(0)
    sn = Supernet(space, Task(num_classes=10, in_channels=3))
    randomise(sn, 4)
    sn.eval()
    spec = space.parse("tiny:w0.5:r32:k3e3_k5e4-k7e6_k3e6_k7e3-k5e3")
    g = torch.Generator().manual_seed(5)
    batches = [torch.randn(8, 3, 32, 32, generator=g) * 2 + 1 for _ in range(2)]

    # a stand-alone subnet: each BatchNorm holds the mean over the batches of its batch statistics
    sub = sn.extract(spec)
    momentum = sub[0][1].momentum
    assert recalibrate_bn(sub, batches) == 2
    with torch.no_grad():
        feats = [sub[0][0](b) for b in batches]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    bn = sub[0][1]
    assert torch.allclose(bn.running_mean, mean, atol=1e-5)
    assert torch.allclose(bn.running_var, var, atol=1e-4)
    assert bn.momentum == momentum and not sub.training  # settings restored

    # the supernet: the active subnet's channels get the same statistics, the others keep theirs
    stem_bn = sn.slots["stem"][1]
    untouched = stem_bn.running_mean[8:].clone()
    sn.set_active(spec)
    recalibrate_bn(sn, batches)
    assert not sn.training
    assert torch.equal(stem_bn.running_mean[8:], untouched)
    again = sn.extract(spec).state_dict()
    for k, v in sub.state_dict().items():
        if "running" in k:
            assert torch.allclose(again[k], v, atol=1e-4), k
    x = batches[0][:2]
    with torch.no_grad():
        assert (sn(x) - sub(x)).abs().max().item() <= 1e-4
    # extract(spec, batches) is extract then recalibrate
    direct = sn.extract(spec, batches).state_dict()
    assert all(torch.allclose(direct[k], v, atol=1e-6) for k, v in sub.state_dict().items())
    with pytest.raises(EdgenasError, match="2 or more"):
        recalibrate_bn(sub, [torch.randn(1, 3, 32, 32)])


def test_bad_specs_are_clear_errors():
    tiny = get_space("tiny", widths=[0.5])
    sn = Supernet(tiny, Task(num_classes=10, in_channels=3))
    mbv3 = get_space("mbv3")
    with pytest.raises(ArchParseError, match="mbv3"):
        sn.set_active(str(mbv3.sample(1, 0)[0]))
    with pytest.raises(ArchParseError, match="proxyless"):
        sn(torch.randn(2, 3, 32, 32), get_space("proxyless").sample(1, 0)[0])
    with pytest.raises(ArchParseError):
        sn.set_active("tiny:w0.5:r32:k9e3_k3e3_k3e3_k3e3")
    # a width the supernet was not built for does not fit: one line naming the tensor and the widths
    with pytest.raises(EdgenasError, match=r"widths \(0\.5,\)"):
        sn.set_active("tiny:w1.0:r32:k3e3_k3e3_k3e3_k3e3")
    fb = Supernet(get_space("fbnet"), Task(num_classes=10, resolution=16))
    with pytest.raises(ArchParseError, match="layout"):
        fb.set_active("fbnet:imagenet:" + "-".join(["k3e1"] * 22))
    with pytest.raises(EdgenasError, match="no weight-sharing supernet"):
        Supernet(get_space("nb201"))
    # a state dict of another shape names the first tensor that differs
    other = Supernet(get_space("tiny", widths=[1.0]), Task(num_classes=10, in_channels=3))
    with pytest.raises(EdgenasError, match=r"'slots\.stem\.0\.weight' has shape \(16, 3, 3, 3\)"):
        sn.load_weights(other.state_dict())
    state = sn.state_dict()
    state.pop("slots.head.1.running_var")
    with pytest.raises(EdgenasError, match=r"slots\.head\.1\.running_var' is missing"):
        sn.load_weights(state)


def test_reused_extraction_equals_a_fresh_one(case):
    """``extract(reuse=True)`` refills kept layer modules: same network, same values, same outputs bit for
    bit, whatever was extracted before (specs sharing and not sharing layers), and the supernet untouched
    when the reused network's BatchNorm statistics are re-estimated."""
    name, sn = case
    specs = specs_for(name, sn)
    before = {k: v.clone() for k, v in sn.state_dict().items()}
    for i, spec in enumerate([*specs, *specs[:2]]):  # the last two reuse every module of their first time
        fresh = sn.extract(spec)
        reused = sn.extract(spec, reuse=True)
        assert [type(m) for m in reused.modules()] == [type(m) for m in fresh.modules()]
        a, b = fresh.state_dict(), reused.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), spec
        x = torch.randn(4, *sn.input_shape(spec), generator=torch.Generator().manual_seed(i))
        recalibrate_bn(fresh, [x])
        recalibrate_bn(reused, [x])
        with torch.no_grad():
            assert torch.equal(fresh(x), reused(x)), spec
        assert not reused.training
    assert all(torch.equal(before[k], v) for k, v in sn.state_dict().items())
    # the kept modules are the ones handed out again (nothing rebuilt on the second round)
    kept = dict(sn._reused)
    sn.extract(specs[1], reuse=True)
    assert all(sn._reused[k] is m for k, m in kept.items() if k in sn._reused)


def test_reused_extraction_follows_the_weights():
    """Weights changed after a reused extraction (training, loading) are what the next one holds."""
    space = get_space("tiny", widths=[0.5])
    torch.manual_seed(0)
    sn = Supernet(space, Task(num_classes=10, in_channels=1)).eval()
    spec = space.parse("tiny:w0.5:r32:k3e3_k5e4-k7e6_k3e6_k7e3-k3e3")
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        first = sn.extract(spec, reuse=True)(x)
        for p in sn.parameters():
            p.mul_(1.5)
        second = sn.extract(spec, reuse=True)(x)
        assert not torch.equal(first, second)
        assert torch.equal(second, sn.extract(spec)(x))
