"""Per-space checks: exact structures, published numbers, foreign arch forms, bad-token errors."""

from __future__ import annotations

import csv

import pytest

from edgenas import ArchParseError, EdgenasError, Task, get_space, parse_arch
from edgenas.spaces.nb201 import NB201Spec

# OFA's tutorial net (shared/data/README.md): (kernel, expand) per active block at r192, w1.2
OFA_TUTORIAL = "mbv3:w1.2:r192:k5e3-k3e3_k5e4-k3e4_k7e6-k7e3-k3e4_k5e4-k5e4-k7e4-k3e3_k3e6-k3e6-k5e6"
# OFA specialized net flops@595M_top1@80.0_finetune@75 (net.config + run.config image_size 236)
OFA_595M = (
    "mbv3:w1.2:r236:k3e3-k5e4-k3e3_k5e4-k5e4-k3e6-k5e3_k7e6-k5e6-k3e3-k5e4_k3e6-k5e6-k7e6-k3e4_k3e6-k3e6-k5e6-k3e3"
)
# OFA note8_lat@31ms_top1@72.8_finetune@25, w1.0 space, r152 (published 101M MACs, 4.6M params)
OFA_NOTE8_31MS = {
    "ks": [5, 3, 3, 3, 5, 5, 3, 3, 3, 3, 5, 3, 3, 5, 7, 3, 3, 3, 5, 5],
    "e": [3, 3, 3, 3, 4, 3, 3, 3, 4, 4, 4, 4, 4, 3, 4, 3, 6, 3, 3, 3],
    "d": [2, 2, 3, 3, 4], "r": 152, "w": 1.0,
}


# -- mbv3 ---------------------------------------------------------------------------------------
def test_mbv3_reproduces_ofa_published_macs_and_params():
    sp = get_space("mbv3")
    c = sp.cost(sp.parse(OFA_595M))
    assert round(c.macs / 1e6) == 595  # OFA: "595M" MACs
    assert round(c.params / 1e6, 1) == 9.1  # OFA: "9.1M" params
    sp10 = get_space("mbv3", widths=[1.0])
    c = sp10.cost(sp10.from_json(OFA_NOTE8_31MS))
    assert round(c.macs / 1e6) == 101 and round(c.params / 1e6, 1) == 4.6


def test_mbv3_w12_channel_plan_is_ofa():
    sp = get_space("mbv3")
    layers = sp.layers(sp.parse(OFA_TUTORIAL))
    stem, first = layers[0], layers[1]
    assert (stem.cin, stem.hw, stem.cout, stem.k, stem.s, stem.act) == (3, 192, 24, 3, 2, "hswish")
    assert (first.cin, first.cout, first.mid, first.k, first.expand, first.res) == (24, 24, 24, 3, False, True)
    blocks = layers[2:-4]
    assert [b.cout for b in blocks] == [32] * 2 + [48] * 2 + [96] * 3 + [136] * 4 + [192] * 3
    assert [b.s for b in blocks if b.s == 2] == [2, 2, 2, 2]
    assert [bool(b.se) for b in blocks] == [False] * 2 + [True] * 2 + [False] * 3 + [True] * 7
    assert [b.act for b in blocks] == ["relu"] * 4 + ["hswish"] * 10
    assert blocks[4].mid == 48 * 6 and blocks[4].k == 7  # mid = make_divisible(cin * e, 8), cin = 48
    assert blocks[7].mid == 96 * 4 and blocks[7].se == 96  # stage-4 first block: cin 96, e4, SE mid/4
    head = layers[-4:]
    assert (head[0].cout, head[2].cout, head[2].bn, head[3].cout) == (1152, 1536, False, 1000)


def test_mbv3_w10_channel_plan_is_ofa():
    sp = get_space("mbv3", widths=[1.0])
    layers = sp.layers(sp.from_json(OFA_NOTE8_31MS))
    assert layers[0].cout == 16 and layers[1].cout == 16
    assert sorted({b.cout for b in layers[2:-4]}) == [24, 40, 80, 112, 160]
    assert layers[-4].cout == 960 and layers[-2].cout == 1280


def test_mbv3_ofa_json_ignores_entries_beyond_depth():
    sp = get_space("mbv3")
    spec = sp.parse(OFA_TUTORIAL)
    obj = sp.to_json(spec)
    obj["ks"][2] = 7  # stage 1 has depth 2: slot 3 is inactive
    assert sp.from_json(obj) == spec
    assert obj["d"] == [2, 2, 3, 4, 3] and obj["r"] == 192


def test_mbv3_size_is_ofa_count():
    # one resolution, one width: (9^2 + 9^3 + 9^4)^5 = 7371^5, OFA's "> 10^19 subnets"
    assert get_space("mbv3", resolutions=[224]).size() == 7371**5
    assert get_space("mbv3").size() == 7371**5 * 25  # 128..224 step 4
    assert get_space("mbv3", resolution_step=16).size() == 7371**5 * 7


def test_mbv3_accepts_any_resolution_96_to_320():
    sp = get_space("mbv3")
    base = OFA_TUTORIAL.replace("r192", "r{}")
    for r in (96, 130, 260, 320):
        assert sp.parse(base.format(r)).r == r
    for r in (95, 321):
        with pytest.raises(ArchParseError, match=f"r{r}"):
            sp.parse(base.format(r))


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("mbv3:w1.2:r192:k4e3-k3e3_k5e4-k3e4_k7e6-k7e3-k3e4_k5e4-k5e4-k7e4-k3e3_k3e6-k3e6-k5e6", "k4e3"),
        ("mbv3:w1.2:r192:k5e5-k3e3_k5e4-k3e4_k7e6-k7e3-k3e4_k5e4-k5e4-k7e4-k3e3_k3e6-k3e6-k5e6", "k5e5"),
        ("mbv3:w1.2:r192:k5e3_k5e4-k3e4_k7e6-k7e3-k3e4_k5e4-k5e4-k7e4-k3e3_k3e6-k3e6-k5e6", "k5e3"),
        ("mbv3:w1.3:r192:k5e3-k3e3_k5e4-k3e4_k7e6-k7e3-k3e4_k5e4-k5e4-k7e4-k3e3_k3e6-k3e6-k5e6", "w1.3"),
        ("mbv3:w1.2:rX:k5e3-k3e3_k5e4-k3e4_k7e6-k7e3-k3e4_k5e4-k5e4-k7e4-k3e3_k3e6-k3e6-k5e6", "rX"),
        ("mbv3:w1.2:r192:k5e3-k3x3_k5e4-k3e4_k7e6-k7e3-k3e4_k5e4-k5e4-k7e4-k3e3_k3e6-k3e6-k5e6", "k3x3"),
        ("tiny:w0.5:r64:k3e3_k3e3_k3e3_k3e3-k3e3-k3e3-k3e3", "k3e3-k3e3-k3e3-k3e3"),
        ("nb201:c3-c3-max-skip-c3-skip", "max"),
        ("fbnet:cifar100:" + "-".join(["k3e1"] * 21 + ["k7e1"]), "k7e1"),
        ("fbnet:cifar10:" + "-".join(["k3e1"] * 22), "cifar10"),
    ],
)
def test_bad_token_is_named(text, token):
    with pytest.raises(ArchParseError) as info:
        parse_arch(text)
    assert repr(token) in str(info.value) or token in str(info.value)


def test_ofa_json_errors_are_clear():
    sp = get_space("mbv3")
    with pytest.raises(ArchParseError, match="'ks' must be a list of 20"):
        sp.from_json({"ks": [3] * 19, "e": [3] * 20, "d": [2] * 5, "r": 224})
    with pytest.raises(ArchParseError, match="missing key"):
        sp.from_json({"ks": [3] * 20, "e": [3] * 20, "r": 224})
    with pytest.raises(ArchParseError, match="stage 2 depth"):
        sp.from_json({"ks": [3] * 20, "e": [3] * 20, "d": [2, 5, 2, 2, 2], "r": 224})


# -- block-choice subsets (kernels / expands / depths options of the elastic spaces) ------------
def test_elastic_subsets_restrict_sampling_parsing_and_size():
    full = get_space("tiny", widths=[0.5], resolutions=[32])
    sub = get_space("tiny", widths=[0.5], resolutions=[32], kernels=[3, 5], expands=3, depths=[1, 2])
    assert sub.kernels == (3, 5) and sub.expands == (3,)
    assert sub.depths_per_stage() == ((1, 2),) * 4
    for spec in sub.sample(50, seed=1):
        assert all(len(b) <= 2 and all(k in (3, 5) and e == 3 for k, e in b) for b in spec.stages)
        assert str(sub.parse(str(spec))) == str(spec)  # members of the subset parse as before
    assert sub.size() == ((2 + 4) ** 4) < full.size()  # per stage: 2 blocks of 2x1 choices -> 2 + 4
    assert len(sub.covering_specs()) == 2  # one per kernel x expand pair
    with pytest.raises(ArchParseError, match="k7"):
        sub.parse("tiny:w0.5:r32:k7e3_k3e3_k3e3_k3e3")  # in the full space, not in this one
    with pytest.raises(ArchParseError, match="depth"):
        sub.parse("tiny:w0.5:r32:k3e3-k3e3-k3e3_k3e3_k3e3_k3e3")


def test_elastic_subsets_keep_encodings_and_ofa_forms_of_the_full_space():
    full, sub = get_space("mbv3"), get_space("mbv3", kernels=[3], expands=[3, 4], depths=[2, 3])
    spec = sub.sample(1, seed=0)[0]
    assert sub.encoding_size() == full.encoding_size()
    assert sub.encode(spec) == full.encode(full.parse(str(spec)))
    assert sub.to_json(spec) == full.to_json(full.parse(str(spec)))  # 20 slots, as OFA's predictor wants
    assert sub.max_depth == 4


def test_elastic_subsets_keep_single_depth_stages_and_refuse_bad_values():
    sp = get_space("proxyless", depths=[2, 3])
    assert sp.depths_per_stage()[-1] == (1,) and sp.depths_per_stage()[0] == (2, 3)
    with pytest.raises(ArchParseError, match="kernels option 9 is not one of"):
        get_space("mbv3", kernels=[3, 9])
    with pytest.raises(ArchParseError, match="expands is empty"):
        get_space("tiny", expands=[])
    with pytest.raises(ArchParseError, match="depths option 1 is not one of the space's choices 2, 3, 4"):
        get_space("mbv3", depths=[1])


# -- tiny ---------------------------------------------------------------------------------------
def test_tiny_fits_mcu_budgets():
    sp = get_space("tiny")
    peaks = [sp.cost(s).peak_ram_bytes_int8 for s in sp.sample(200, seed=0)]
    assert min(peaks) < 64 * 1024 and max(peaks) < 1024 * 1024
    assert sorted(peaks)[len(peaks) // 2] < 512 * 1024


# -- nb201 --------------------------------------------------------------------------------------
def test_nb201_official_arch_str_round_trip():
    s = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    spec = parse_arch(s, "nb201")
    assert str(spec) == "nb201:c3-c3-avg-skip-c3-skip"
    assert spec.arch_str == s


@pytest.mark.parametrize(
    ("arch_str", "msg"),
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "node 2"),
        ("|conv_5x5~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "conv_5x5~0"),
        ("|nor_conv_3x3~1|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "~0"),
    ],
)
def test_nb201_bad_arch_str(arch_str, msg):
    with pytest.raises(ArchParseError, match=msg):
        parse_arch(arch_str, "nb201")


def test_nb201_isomorphism_classes():
    sp = get_space("nb201")
    specs = sp.all_specs()
    assert len(specs) == 15625
    # xautodl's unique string reproduces NAS-Bench-201's published 6,466 unique cells
    assert len({s.nb201_unique_str for s in specs}) == 6466
    # iso_key is a canonical form: never splits an official class, merges some the official string splits
    classes: dict[str, set[str]] = {}
    for s in specs:
        classes.setdefault(s.nb201_unique_str, set()).add(s.iso_key)
    assert all(len(v) == 1 for v in classes.values())
    n_iso = len({s.iso_key for s in specs})
    assert n_iso < 6466
    # independent nodes 1 and 2 can swap; a skip-only path equals the direct edge
    swapped = sp.parse("c1-c3-none-none-skip-skip").iso_key
    assert sp.parse("c3-c1-none-none-skip-skip").iso_key == swapped == "c1(x)+c3(x)"
    assert sp.parse("skip-none-c3-none-none-skip").iso_key == sp.parse("c3-none-none-none-skip-none").iso_key
    assert sp.parse("c3-c3-none-none-skip-skip").iso_key != sp.parse("c3-c1-none-none-skip-skip").iso_key
    # every disconnected cell (output independent of input) is one class
    dead = [s for s in specs if not s.is_connected]
    assert {s.iso_key for s in dead} == {"zero"}
    assert len(dead) == 341


def test_nb201_degenerate_cells_cost_and_build():
    from edgenas.modelcount import count_module

    sp = get_space("nb201")
    for body in ("none-none-none-none-none-none", "skip-skip-skip-skip-skip-skip", "none-c3-none-none-none-c1"):
        spec = sp.parse(body)
        rec = sp.cost(spec).as_record()
        rec.pop("arch")
        assert count_module(sp.build(spec), sp.input_shape(spec), str(spec)) == rec


def test_nb201_resolution_must_allow_two_reductions():
    sp = get_space("nb201")
    with pytest.raises(EdgenasError, match="multiple of 4"):
        sp.layers(sp.sample(1, 0)[0], Task(resolution=30))


def test_nb201_params_match_naslib(shared_data):
    """NASLib's stored params (MB = 1e6 params) for 724 cells agree exactly."""
    sp = get_space("nb201")
    rows = list(csv.DictReader(open(shared_data / "nb201" / "zc_proxies_cifar10.csv")))
    assert len(rows) == 724
    for row in rows:
        assert round(sp.cost(sp.parse(row["arch_str"])).params / 1e6, 6) == float(row["params"]), row["arch_str"]


def test_nb201_macs_match_naslib_flops_up_to_elementwise_ops(shared_data):
    """NASLib's `flops` also counts element-wise work: 3 per output element of each ReLU-Conv-BN edge
    (ReLU, BN scale, BN shift), 9 per output of each 3x3 average pool, and a fixed 160,832 for the
    stem BN, reduction blocks and head. With those terms removed, our conv+linear MACs are exact."""
    sp = get_space("nb201")
    per_edge_outputs = 5 * (16 * 32 * 32 + 32 * 16 * 16 + 64 * 8 * 8)  # one edge in all 15 cells
    for row in csv.DictReader(open(shared_data / "nb201" / "zc_proxies_cifar10.csv")):
        spec = sp.parse(row["arch_str"])
        n_conv = sum(op in ("c1", "c3") for op in spec.ops)
        n_avg = spec.ops.count("avg")
        extra = 160_832 + 3 * per_edge_outputs * n_conv + 9 * per_edge_outputs * n_avg
        assert sp.cost(spec).macs + extra == round(float(row["flops"]) * 1e6), row["arch_str"]


def test_nb201_index_lookup(shared_data):
    sp = get_space("nb201")
    rows = list(csv.DictReader(open(shared_data / "nb201" / "nb201_cifar10.csv")))
    assert len(rows) == 15625
    best = max(rows, key=lambda r: float(r["cifar10_test_200ep"]))
    assert best["index"] == "6111"
    spec = sp.parse("#6111")
    assert spec.arch_str == best["arch_str"] and sp.index_of(spec) == 6111
    assert sp.parse(best["arch_str"]) == spec
    assert {NB201Spec(ops=sp.parse(r["arch_str"]).ops) for r in rows} == set(sp.all_specs())


# -- fbnet --------------------------------------------------------------------------------------
def test_fbnet_op_index_form(shared_data):
    sp = get_space("fbnet")
    rows = list(csv.DictReader(open(shared_data / "latency" / "fbnet_cifar100_latency_dev.csv")))
    for row in rows[:200]:
        spec = sp.parse(row["op_idx_list"])
        assert spec.op_idx_list == row["op_idx_list"]
        assert sp.parse(str(spec)) == spec


def test_fbnet_structure_matches_hw_nas_bench():
    sp = get_space("fbnet")
    spec = sp.parse("-".join(["0"] * 22))  # all k3_e1
    layers = sp.layers(spec)
    assert layers[0].s == 1 and layers[0].cout == 16
    blocks = layers[1:-3]
    assert len(blocks) == 22
    assert all(b.expand and b.mid == b.cin for b in blocks)  # e1 still has the 1x1 expand conv
    assert [b.s for b in blocks].count(2) == 3  # cifar strides [1,1,2,2,1,2,1]
    assert layers[-3].cout == 1504 and layers[-1].cout == 100
    im = get_space("fbnet", layout="imagenet").parse("-".join(["8"] * 22))  # all skip
    il = get_space("fbnet").layers(im)
    assert il[0].hw == 224 and il[0].s == 2 and il[-1].cout == 1000
    # skip is identity unless the stride or width changes: 6 of the 7 stage entries change one
    assert len(il) == 1 + 6 + 3


@pytest.mark.slow  # builds and counts every degenerate cell
def test_nb201_cost_equals_module_on_degenerate_cells():
    """Dead branches, skip-only and zero nodes: the cases where liveness rules matter most."""
    import random

    from edgenas.modelcount import count_module

    sp = get_space("nb201")
    rng = random.Random(11)
    specs = [s for s in sp.all_specs() if "none" in s.ops and "skip" in s.ops]
    for spec in rng.sample(specs, 25):
        rec = sp.cost(spec).as_record()
        rec.pop("arch")
        assert count_module(sp.build(spec), sp.input_shape(spec), str(spec)) == rec, str(spec)


@pytest.mark.slow  # all 15,625 cells
def test_nb201_covering_specs_hold_every_cells_units():
    sp = get_space("nb201")
    for task in (None, Task(num_classes=10, in_channels=1, resolution=16)):
        every = {u.key for s in sp.all_specs() for u in sp.units(s, task)}
        assert {u.key for s in sp.covering_specs() for u in sp.units(s, task)} == every


# -- proxyless ----------------------------------------------------------------------------------
def test_proxyless_layout_matches_its_mobile_latency_table():
    """Every block shape of the ProxylessNAS mobile LUT (72 keys) is a unit of the space and back."""
    sp = get_space("proxyless")
    units = {u.key for s in sp.covering_specs() for u in sp.units(s)}
    blocks = [k for k in units if k.startswith("mbconv(")]
    # first block + 6 stages x (first, later) x 3 kernels x 2 expands, minus the 1-block last stage's "later"
    assert len(blocks) == 1 + (5 * 2 + 1) * 6
    assert sp.size() == (6 + 6**2 + 6**3 + 6**4) ** 5 * 6
    with pytest.raises(ArchParseError, match="stage 6 depth"):
        sp.parse("proxyless:w1.0:r224:k3e3_k3e3_k3e3_k3e3_k3e3_k3e3-k3e3")
