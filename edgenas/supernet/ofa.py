"""Once-for-All's MobileNetV3 supernet weights in edgenas' ``mbv3`` supernet.

OFA's released supernets (``ofa_mbv3_d234_e346_k357_w1.0`` and ``_w1.2``: ``OFAMobileNetV3(ks_list=[3,
5,7], expand_ratio_list=[3,4,6], depth_list=[2,3,4], width_mult=W)``) are the ``mbv3`` space exactly:
the same stem, first block, five stages of up to four blocks, head, feature mix and classifier, the
same channel rule, and the same cut (first channels, first d blocks, centre kernels through learned
7to5 / 5to3 kernel transformation matrices). Each OFA tensor has one place in the supernet
(:func:`ofa_key_map`); the import checks every name and shape and says, in one line, which tensor does
not fit. The supernet is built with ``kernel_transform=True`` so OFA's matrices keep working; a
checkpoint without them (OFA trained without kernel transformation) keeps the identity, the plain crop.

A different class count (the user's task, not ImageNet's 1,000) gets a new, randomly initialised
classifier; every other tensor keeps OFA's weights.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgenas.errors import EdgenasError
from edgenas.nn_blocks import SqueezeExcite
from edgenas.spaces.base import Task
from edgenas.spaces.elastic import make_divisible
from edgenas.supernet.elastic import Supernet

OFA_WIDTHS = (1.0, 1.2)
"""Width multipliers of OFA's released MobileNetV3 supernets (both are ``mbv3`` width choices)."""

_BLOCK = re.compile(r"s(\d+)b(\d+)")


def ofa_key_map(sn: Supernet) -> dict[str, str]:
    """For every tensor of an ``mbv3`` supernet, the name of the same tensor in OFA's
    ``OFAMobileNetV3.state_dict()``."""
    if sn.space.name != "mbv3":
        raise EdgenasError(f"OFA MobileNetV3 weights fit the mbv3 supernet, not a {sn.space.name} one")
    depth = sn.space.max_depth  # type: ignore[attr-defined]
    out: dict[str, str] = {}
    for slot, module in sn.slots.items():
        m = _BLOCK.fullmatch(slot)
        if m:
            block = 1 + (int(m.group(1)) - 1) * depth + (int(m.group(2)) - 1)
            parts = _mbconv_parts(module, expand=True)
            base = f"blocks.{block}.conv."
        elif slot == "first":
            parts = _mbconv_parts(module, expand=False)
            base = "blocks.0.conv."
        else:
            parts = {}
            base = {"stem": "first_conv.", "head": "final_expand_layer.", "mix": "feature_mix_layer.",
                    "classifier": "classifier."}[slot]
        for name in module.state_dict():
            out[f"slots.{slot}.{name}"] = base + _ofa_tensor(slot, name, parts)
    for name in sn.kernel_maps:
        slot, maps = name.rsplit("_", 1)
        m = _BLOCK.fullmatch(slot)
        assert m is not None
        block = 1 + (int(m.group(1)) - 1) * depth + (int(m.group(2)) - 1)
        out[f"kernel_maps.{name}"] = f"blocks.{block}.conv.depth_conv.conv.{maps}_matrix"
    return out


def _mbconv_parts(module: nn.Module, expand: bool) -> dict[str, str]:
    """Body index -> OFA's name for an MBConv slot: ``inverted_bottleneck``, ``depth_conv`` (with its
    ``se``), ``point_linear``."""
    names = ["inverted_bottleneck", "depth_conv"] if expand else ["depth_conv"]
    parts: dict[str, str] = {}
    convs = iter([*names, "point_linear"])
    for i, child in enumerate(module.body):  # type: ignore[attr-defined]
        parts[str(i)] = "depth_conv.se" if isinstance(child, SqueezeExcite) else next(convs)
    return parts


def _ofa_tensor(slot: str, name: str, parts: dict[str, str]) -> str:
    """OFA's name of tensor ``name`` of one slot (``parts``: the MBConv body map)."""
    bits = name.split(".")
    if slot == "classifier":  # Sequential(Flatten, Linear)
        return f"linear.{bits[-1]}"
    if slot in ("stem", "head", "mix"):  # ConvBNAct: 0 conv, 1 bn
        return f"{'conv' if bits[0] == '0' else 'bn'}.{bits[-1]}"
    part = parts[bits[1]]  # body.<i>....
    if part == "depth_conv.se":  # body.<i>.reduce|expand.weight|bias
        return f"{part}.fc.{bits[2]}.{bits[3]}"
    layer = "conv" if bits[2] == "0" else "bn"
    # OFA's dynamic layers wrap their conv / BN once more; its fixed first block does not
    inner = f"{layer}.{layer}" if slot != "first" else layer
    return f"{part}.{inner}.{bits[-1]}"


def read_ofa_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in an OFA checkpoint file (a bare state dict or ``{"state_dict": ...}``, as OFA
    saves them), read with ``weights_only=True``; anything else is one :class:`EdgenasError` line."""
    from edgenas.fileio import read_torch

    p = Path(path)
    obj = read_torch(p, "OFA checkpoint", "torch file")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EdgenasError(f"OFA checkpoint {str(p)!r} is not a state dict (name -> tensor)")
    return obj


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix (DataParallel / distributed training) when every name has it."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def load_ofa_state_dict(sn: Supernet, state: dict[str, torch.Tensor], what: str = "OFA state dict"
                        ) -> dict[str, Any]:
    """Copy an ``OFAMobileNetV3`` state dict into the ``mbv3`` supernet ``sn``. Returns what was done:
    ``tensors`` copied, ``new_head`` (the class count differed: the classifier keeps ``sn``'s own
    initialisation), ``kernel_transform`` (OFA's matrices were present). A missing, unknown or
    wrongly shaped tensor is one :class:`EdgenasError` line naming the first one."""
    state = _strip_prefix(dict(state))
    mapping = ofa_key_map(sn)
    ours_of = {theirs: ours for ours, theirs in mapping.items()}
    own = sn.state_dict()
    head_w, head_b = "slots.classifier.1.weight", "slots.classifier.1.bias"
    theirs_w = state.get(mapping[head_w])
    new_head = (theirs_w is not None and theirs_w.dim() == 2 and theirs_w.shape[1] == own[head_w].shape[1]
                and theirs_w.shape[0] != own[head_w].shape[0])
    kind = "is not an OFA MobileNetV3 (d234 e346 k357) state dict"
    out: dict[str, torch.Tensor] = {}
    for key, t in state.items():  # in the checkpoint's order: the first tensor that does not fit is named
        ours = ours_of.get(key)
        if ours is None:
            raise EdgenasError(f"{what} {kind}: unknown tensor {key[:80]!r}")
        if new_head and ours in (head_w, head_b):
            continue
        if tuple(t.shape) != tuple(own[ours].shape):
            raise EdgenasError(f"{what} does not fit the mbv3 supernet (widths {sn.space.widths}, "  # type: ignore[attr-defined]
                               f"{own[head_w].shape[0]} classes): tensor {key!r} has shape {tuple(t.shape)}, the "
                               f"supernet needs {tuple(own[ours].shape)}")
        out[ours] = t.to(own[ours].dtype)
    transforms = sum(k.startswith("kernel_maps.") for k in out)
    for ours, key in mapping.items():
        if ours in out:
            continue
        # kept: a new head, or identity kernel maps (OFA trained without kernel transformation: the plain crop)
        if (new_head and ours in (head_w, head_b)) or ours.startswith("kernel_maps."):
            out[ours] = own[ours]
            continue
        raise EdgenasError(f"{what} {kind}: tensor {key!r} is missing")
    sn.load_state_dict(out, strict=True)
    return {"tensors": len(out), "new_head": bool(new_head), "kernel_transform": transforms > 0}


def ofa_width(state: dict[str, torch.Tensor], what: str = "OFA state dict") -> float:
    """The width multiplier of an OFA MobileNetV3 state dict, from its stem's output channels."""
    state = _strip_prefix(state)
    stem = state.get("first_conv.conv.weight")
    if stem is None or stem.dim() != 4:
        raise EdgenasError(f"{what} is not an OFA MobileNetV3 state dict: tensor 'first_conv.conv.weight' is missing")
    for w in OFA_WIDTHS:
        if stem.shape[0] == make_divisible(16 * w, 8):
            return w
    raise EdgenasError(f"{what} does not fit the mbv3 supernet: tensor 'first_conv.conv.weight' has shape "
                       f"{tuple(stem.shape)}; OFA's MobileNetV3 stems have "
                       f"{' or '.join(str(make_divisible(16 * w, 8)) for w in OFA_WIDTHS)} output channels "
                       f"(w{' / w'.join(map(str, OFA_WIDTHS))})")


def supernet_from_ofa(state: dict[str, torch.Tensor], task: Task | None = None, *, resolution_step: int = 4,
                      what: str = "OFA state dict") -> tuple[Supernet, dict[str, Any]]:
    """An ``mbv3`` supernet holding an OFA MobileNetV3 state dict, for ``task`` (default: OFA's 1,000
    classes, 3 channels; another class count gets a new classifier). Returns the supernet (eval mode)
    and what :func:`load_ofa_state_dict` reports, plus the ``width``."""
    from edgenas.spaces import get_space

    state = _strip_prefix(dict(state))
    w = ofa_width(state, what)
    head = state.get("classifier.linear.weight")
    classes = (task.num_classes if task and task.num_classes else
               int(head.shape[0]) if head is not None and head.dim() == 2 else 1000)
    net_task = Task(num_classes=classes, in_channels=task.in_channels if task else 3)
    space = get_space("mbv3", widths=[w], resolution_step=resolution_step)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the new head's initialisation, when there is one
        sn = Supernet(space, net_task, kernel_transform=True)
    report = load_ofa_state_dict(sn, state, what)
    return sn.eval(), {**report, "width": w}
