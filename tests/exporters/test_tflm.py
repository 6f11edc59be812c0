"""TFLite Micro export and the cost model's ``arena_bytes_tflm``.

* the ``tflm`` artifact of a trained ``tiny`` model (digits): verified in the TFLM interpreter (logits
  within one output step of LiteRT's int8 reference kernels on the validation split), C source / header
  that compile, the reported arena is minimal (one byte less fails in TFLM);
* the analytic arena is within 10% of, and never below, the measured minimal arena for 12 random
  ``tiny`` specs (converted in one litert-torch call as branches, then cut apart) and for the trained
  model; ``arena_bytes_tflm`` works as a budget field and in describe records.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from exportkit import exported, trained

from edgenas import get_space
from edgenas.exporters.tflm import agrees_within_one_step, cached_batch_int8_tflite, measure_arenas
from edgenas.search.fields import parse_budget

# the trained models and their conversions are built once per worker process: keep their users on one worker
pytestmark = pytest.mark.xdist_group("trained-models")

N_SPECS = 8
"""Random specs whose estimate is checked against TFLM here (each litert-torch conversion costs ~4 s);
benchmarks/tflm_arena.py runs the same check on 30 (benchmarks/results/tflm_arena.md)."""
TOLERANCE = 0.10


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory):
    a = exported("tiny", "tflm", tmp_path_factory.mktemp("tflm"))
    assert a.ok, a.error
    return a


def test_tflm_agreement_allows_one_output_step():
    ref = np.array([[0.0, 1.0, 3.0], [2.0, 2.1, 0.0]], dtype=np.float32)
    assert agrees_within_one_step(ref.copy(), ref, 0.1)
    tie = ref.copy()
    tie[1] = [2.1, 2.0, 0.0]  # top-1 flipped on a margin of one step, each logit moved one step
    assert agrees_within_one_step(tie, ref, 0.1)
    assert not agrees_within_one_step(tie, ref, 0.05)  # more than a step apart
    assert not agrees_within_one_step(ref + np.float32(0.1), ref, 0.0)  # float output: no step allowed


def test_tflm_artifact_is_verified_against_litert(art):
    assert art.parity is not None and art.parity.passed
    assert art.parity.top1_agreement >= 0.99 and art.parity.examples == len(trained("tiny").job.val_x)
    assert art.parity.threshold.startswith("logits within one output step")
    assert art.parity.max_abs_diff < 0.5  # the reference int8 arithmetic: equal or within rounding steps
    assert art.extra["torch_top1_agreement"] >= 0.98
    assert 0.9 <= art.extra["litert_optimised_top1_agreement"] <= 1.0  # reported, not required
    assert art.accuracy is not None and art.accuracy > 0.5  # a trained model, not near-constant logits
    assert art.latency_ms is None  # host timing of TFLM is not an MCU latency


def test_reported_arena_is_the_minimal_one(art):
    n = art.extra["tflm_arena_bytes"]
    # probed in a fresh interpreter, as the exporter does (its helper process): _probe forks, and this
    # pytest process has multithreaded libraries (JAX) loaded
    code = ("import sys; from pathlib import Path; from edgenas.exporters.tflm import _probe; "
            "d = Path(sys.argv[1]).read_bytes(); n = int(sys.argv[2]); print(_probe(d, n), _probe(d, n - 1))")
    proc = subprocess.run([sys.executable, "-c", code, str(art.path), str(n)], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.split() == ["True", "False"]
    assert art.extra["tflm_arena_head_bytes"] + art.extra["tflm_arena_tail_bytes"] == n


def test_c_source_and_header(art):
    names = {p.name for p in art.companions}
    assert names == {"model_tflm.cc", "model_tflm.h"}
    header = (art.path.parent / "model_tflm.h").read_text()
    assert f"kModelTflmArenaBytes = {art.extra['tflm_arena_bytes']};" in header
    assert f"kModelTflmInputZeroPoint = {art.extra['input']['zero_point']};" in header
    source = (art.path.parent / "model_tflm.cc").read_text()
    assert "alignas(16) const unsigned char g_model_tflm[]" in source
    assert f"g_model_tflm_len = {art.bytes};" in source
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not installed: C source syntax not checked")
    cc = str(art.path.parent / "model_tflm.cc")
    proc = subprocess.run([gxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Werror", cc], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_tflm_file_carries_edgenas_metadata_only_and_the_same_arena(art):
    """The TFLM file holds edgenas' JSON entry (arch, preprocessing, labels, int8 I/O) but not the TFLite
    Support metadata or its labels zip; TFLM loads it (verified above) in the arena of the bare model."""
    import io
    import zipfile

    from edgenas.exporters.metadata import (
        EDGENAS_METADATA_NAME,
        SUPPORT_METADATA_NAME,
        read_tflite_entries,
        read_tflite_facts,
    )

    t = trained("tiny")
    data = art.path.read_bytes()
    entries = read_tflite_entries(data)
    assert EDGENAS_METADATA_NAME in entries and SUPPORT_METADATA_NAME not in entries
    assert not zipfile.is_zipfile(io.BytesIO(data))
    facts = read_tflite_facts(data)
    assert facts["arch"] == str(t.spec) and facts["labels"] == list(t.job.info.labels)
    assert facts["input"]["scale"] == art.extra["input"]["scale"]
    assert facts["input"]["zero_point"] == art.extra["input"]["zero_point"]
    # the same model before the metadata was added (the int8 exporters' shared conversion)
    bare = next(v for k, v in t.job.cache.items() if k.startswith("tflite-int8:nchw:int8-io"))
    assert len(bare) < len(data)
    assert measure_arenas([bare])[0]["arena_bytes"] == art.extra["tflm_arena_bytes"]


def test_estimate_of_the_trained_model(art):
    t = trained("tiny")
    estimate = t.space.cost(t.spec, t.task).arena_bytes_tflm
    measured = art.extra["tflm_arena_bytes"]
    assert measured <= estimate <= (1 + TOLERANCE) * measured, (str(t.spec), estimate, measured)


@pytest.fixture(scope="module")
def random_specs_measured():
    space = get_space("tiny")
    specs = space.sample(N_SPECS, seed=2024)
    measured = measure_arenas(cached_batch_int8_tflite(space, specs))
    return [(s, space.cost(s).arena_bytes_tflm, m["arena_bytes"]) for s, m in zip(specs, measured)]


def test_arena_estimate_on_random_tiny_specs(random_specs_measured):
    assert len(random_specs_measured) == N_SPECS
    bad = [(str(s), e, m) for s, e, m in random_specs_measured if not m <= e <= (1 + TOLERANCE) * m]
    assert not bad, bad
    # the estimate follows the arena (it varies 10x over these specs), not a constant
    ms = sorted(m for _, _, m in random_specs_measured)
    assert ms[-1] > 3 * ms[0]


def test_arena_budget_and_describe_field(capsys):
    from edgenas.cli.main import main

    b = parse_budget("arena_bytes_tflm<=256KiB", [])
    assert b.field.name == "arena_bytes_tflm" and b.limit == 256 * 1024 and not b.field.maximize
    assert main(["describe", "--space", "tiny", "--random", "2", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert all(r["arena_bytes_tflm"] > r["peak_ram_bytes_int8"] for r in recs)
