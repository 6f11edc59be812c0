"""OFA import: OFA's own MobileNetV3 supernet (random weights, random BatchNorm statistics, random kernel
transformation matrices) saved, imported into the mbv3 supernet, and compared with OFA's own
``set_active_subnet`` / ``get_active_subnet(preserve_weight=True)`` output for random specs.

Needs the ``ofa`` package (not an edgenas dependency: ``pip install --no-deps ofa``); skipped without it.
OFA's package imports torchvision for its ImageNet data loaders only; where torchvision is absent a
stand-in with the two names that import needs is used while ``ofa`` is imported.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
import torch
from supernetkit import randomise

from edgenas.errors import EdgenasError
from edgenas.spaces.base import Task
from edgenas.supernet.ofa import load_ofa_state_dict, read_ofa_state_dict, supernet_from_ofa

TOL = 1e-5

if importlib.util.find_spec("ofa") is None:
    pytest.skip("the 'ofa' package is not installed (pip install --no-deps ofa); it is only needed for this "
                "equality test", allow_module_level=True)


def _import_ofa() -> types.ModuleType:
    """``ofa.imagenet_classification.elastic_nn.networks``, with a torchvision stand-in if needed."""
    stand_in: dict[str, types.ModuleType] = {}
    if importlib.util.find_spec("torchvision") is not None:  # its compiled ops may not match this torch build
        from edgenas.compress.source import import_torchvision

        import_torchvision()
    else:
        tv = types.ModuleType("torchvision")
        tr = types.ModuleType("torchvision.transforms")
        fn = types.ModuleType("torchvision.transforms.functional")
        tr.RandomResizedCrop = type("RandomResizedCrop", (), {})
        tr.functional = fn
        tv.transforms = tr
        stand_in = {"torchvision": tv, "torchvision.transforms": tr, "torchvision.transforms.functional": fn}
    sys.modules.update(stand_in)
    try:
        import ofa.imagenet_classification.elastic_nn.networks as nets
    finally:
        for name in stand_in:
            sys.modules.pop(name, None)
    return nets


@pytest.fixture(scope="module")
def ofa_nets():
    return _import_ofa()


@pytest.fixture(scope="module")
def ofa_w12(ofa_nets, tmp_path_factory):
    torch.manual_seed(0)
    net = ofa_nets.OFAMobileNetV3(ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4],
                                  width_mult=1.2)
    randomise(net, 1, ("_matrix",))
    path = tmp_path_factory.mktemp("ofa") / "ofa_mbv3_d234_e346_k357_w1.2.pth"
    torch.save({"state_dict": net.state_dict()}, path)  # the released checkpoints' layout
    return net.eval(), path


def test_imported_subnets_equal_ofa_subnets(ofa_w12):
    net, path = ofa_w12
    sn, report = supernet_from_ofa(read_ofa_state_dict(path))
    assert report == {"tensors": len(sn.state_dict()), "new_head": False, "kernel_transform": True, "width": 1.2}
    space = sn.space
    specs = [*space.sample(3, 11), sn.largest(), sn.smallest()]
    specs = [space.make_spec(s.w, 96, s.stages) for s in specs]
    worst = 0.0
    for i, spec in enumerate(specs):
        arch = space.to_json(spec)
        net.set_active_subnet(ks=arch["ks"], e=arch["e"], d=arch["d"])
        ofa_sub = net.get_active_subnet(preserve_weight=True).eval()
        x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            ref = ofa_sub(x)
            ours = sn.extract(spec)(x)
            live = sn(x, spec)
            ofa_live = net(x)
        assert ref.abs().max().item() > 0.05  # not a near-constant output
        worst = max(worst, (ours - ref).abs().max().item(), (live - ref).abs().max().item(),
                    (ofa_live - ref).abs().max().item())
    print(f"OFA import: max |ours - OFA| over {len(specs)} specs = {worst:.2e}")
    assert worst <= TOL


def test_new_head_for_another_class_count(ofa_w12):
    net, _ = ofa_w12
    sn, report = supernet_from_ofa(net.state_dict(), Task(num_classes=10))
    assert report["new_head"] and sn.slots["classifier"][1].weight.shape == (10, 1536)
    assert torch.equal(sn.slots["head"][0].weight, net.final_expand_layer.conv.weight)


def test_wrong_checkpoints_name_the_first_mismatching_tensor(ofa_nets, ofa_w12):
    net, _ = ofa_w12
    w10 = ofa_nets.OFAMobileNetV3(ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4],
                                  width_mult=1.0)
    sn, _ = supernet_from_ofa(net.state_dict())
    with pytest.raises(EdgenasError, match=r"tensor 'first_conv\.conv\.weight' has shape \(16, 3, 3, 3\)"):
        load_ofa_state_dict(sn, w10.state_dict())
    three_deep = ofa_nets.OFAMobileNetV3(ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3],
                                         width_mult=1.2)
    # stage 2 starts at block 4 there: its SE is the first tensor without a place
    with pytest.raises(EdgenasError, match=r"unknown tensor 'blocks\.4\.conv\.depth_conv\.se\.fc\.reduce\.weight'"):
        load_ofa_state_dict(sn, three_deep.state_dict())
    proxyless = ofa_nets.OFAProxylessNASNets(ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    with pytest.raises(EdgenasError, match=r"'first_conv\.conv\.weight' has shape \(32, 3, 3, 3\)"):
        supernet_from_ofa(proxyless.state_dict())
    with pytest.raises(EdgenasError, match=r"'first_conv\.conv\.weight' has shape \(32, 3, 3, 3\)"):
        load_ofa_state_dict(sn, proxyless.state_dict())
    state = net.state_dict()
    state.pop("blocks.20.conv.point_linear.bn.bn.running_var")
    with pytest.raises(EdgenasError, match=r"tensor 'blocks\.20\.conv\.point_linear\.bn\.bn\.running_var' is missing"):
        load_ofa_state_dict(sn, state)
