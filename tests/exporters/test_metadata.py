"""Metadata inside the exported files, read back by readers independent of edgenas' writer.

* every image space's ``.onnx``, fp32 and int8 ``.tflite`` (exportkit's artifacts, shared with the size
  tests: no extra conversion): ONNX ``metadata_props`` through ``onnx.load`` and ONNX Runtime's model
  metadata; the TFLite Support metadata through flatc's reader of the published schema
  (``tests/tflite_metadata_schema_fb.py``, copied from tflite-support) and, where it imports,
  tflite-support's own ``MetadataDisplayer``; the labels zip through ``zipfile``. The files are the
  verified ones (LiteRT / ONNX Runtime loaded them and matched torch);
* the metadata's bytes against the cost model's estimate, exactly for ONNX and within alignment for
  TFLite; re-writing the metadata replaces it.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import tflite_metadata_schema_fb as fb
from exportkit import IMAGE_SPACES, exported, trained

from edgenas.deployed import NOMINAL_LABEL_CHARS, metadata_bytes_tflite
from edgenas.exporters.metadata import (
    EDGENAS_METADATA_NAME,
    LABELS_FILE,
    MIN_PARSER_VERSION,
    PIXEL_MAX,
    SUPPORT_METADATA_NAME,
    ModelInfo,
    fields,
    onnx_metadata_bytes,
    read_onnx_facts,
    read_tflite_entries,
    read_tflite_facts,
    with_onnx_metadata,
    with_tflite_metadata,
)

# the trained models and their conversions are built once per worker process: keep their users on one worker
pytestmark = pytest.mark.xdist_group("trained-models")


def _expected_labels(space: str) -> list[str]:
    return list(trained(space).job.info.labels)


@pytest.mark.parametrize("space", IMAGE_SPACES)
def test_onnx_metadata_props_read_back(space):
    import onnxruntime as ort

    t = trained(space)
    art = exported(space, "onnx")
    assert art.ok, art.error
    got = read_onnx_facts(art.path)
    pre = t.job.info.preprocessing
    assert got["arch"] == str(t.spec) and got["space"] == space and got["version"]
    assert got["preprocessing"]["mean"] == pre["mean"] and got["preprocessing"]["std"] == pre["std"]
    assert got["preprocessing"]["resize"] == pre["resize"] and got["preprocessing"]["layout"] == "NCHW"
    assert got["input"] == {"shape": [1, *t.job.input_shape], "dtype": "float32", "layout": "NCHW"}
    assert got["labels"] == _expected_labels(space) and len(got["labels"]) == t.task.num_classes
    # the runtime's own view of the same props
    meta = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert meta.custom_metadata_map["edgenas.arch"] == str(t.spec)
    assert json.loads(meta.custom_metadata_map["edgenas.labels"]) == _expected_labels(space)


@pytest.mark.parametrize("space", IMAGE_SPACES)
@pytest.mark.parametrize("fmt", ["tflite", "tflite-int8"])
def test_tflite_support_metadata_reads_back(space, fmt):
    t = trained(space)
    art = exported(space, fmt)
    assert art.ok, art.error  # LiteRT loaded the file with its metadata and it matched torch
    data = art.path.read_bytes()
    entries = read_tflite_entries(data)
    buf = entries[SUPPORT_METADATA_NAME]
    assert fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0)
    m = fb.ModelMetadataT.InitFromPackedBuf(bytearray(buf), 0)
    assert m.name.decode() == str(t.spec) and m.minParserVersion.decode() == MIN_PARSER_VERSION
    assert len(m.subgraphMetadata) == 1
    sg = m.subgraphMetadata[0]
    (inp,), (out,) = sg.inputTensorMetadata, sg.outputTensorMetadata
    c, h, w = t.job.input_shape
    assert inp.content.contentPropertiesType == fb.ContentProperties.ImageProperties
    props = inp.content.contentProperties
    assert props.colorSpace == (fb.ColorSpaceType.RGB if c == 3 else fb.ColorSpaceType.GRAYSCALE)
    assert (props.defaultSize.width, props.defaultSize.height) == (w, h)
    (unit,) = inp.processUnits
    assert unit.optionsType == fb.ProcessUnitOptions.NormalizationOptions
    pre = t.job.info.preprocessing
    mean, std = np.float32(pre["mean"]) * PIXEL_MAX, np.float32(pre["std"]) * PIXEL_MAX
    np.testing.assert_allclose(unit.options.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(unit.options.std, std, rtol=1e-6)
    if fmt == "tflite":  # a float input's value range after normalisation, as tflite-support's writer gives it
        np.testing.assert_allclose(inp.stats.min, -mean / std, rtol=1e-5)
        np.testing.assert_allclose(inp.stats.max, (PIXEL_MAX - mean) / std, rtol=1e-5)
    else:
        assert inp.stats is None
        q = art.extra["input"]
        assert f"q = round(x / {q['scale']:.6g}) + {q['zero_point']}" in inp.description.decode()
    assert out.content.contentPropertiesType == fb.ContentProperties.FeatureProperties
    (labels_file,) = out.associatedFiles
    assert labels_file.name.decode() == LABELS_FILE and labels_file.type == fb.AssociatedFileType.TENSOR_AXIS_LABELS
    # the associated file, zipped after the flatbuffer as the metadata populator packs it
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == [LABELS_FILE]
        assert zf.read(LABELS_FILE).decode().splitlines() == _expected_labels(space)
    # edgenas' own entry: the same facts as the ONNX props, and the int8 I/O of the file itself
    facts = read_tflite_facts(data)
    assert facts["arch"] == str(t.spec) and facts["labels"] == _expected_labels(space)
    assert facts["input"] == art.extra["input"] and facts["output"] == {**art.extra["output"], "meaning": "logits"}
    assert set(entries) >= {EDGENAS_METADATA_NAME, SUPPORT_METADATA_NAME}


@pytest.mark.parametrize("fmt", ["tflite", "tflite-int8"])
def test_tflite_support_parser_reads_the_files(fmt):
    """tflite-support's own parser, where it imports (it needs protobuf<4, so not beside this stack)."""
    metadata = pytest.importorskip("tensorflow_lite_support.metadata.python.metadata")
    t = trained("tiny")
    art = exported("tiny", fmt)
    d = metadata.MetadataDisplayer.with_model_file(str(art.path))
    assert d.get_packed_associated_file_list() == [LABELS_FILE]
    assert d.get_associated_file_buffer(LABELS_FILE).decode().splitlines() == _expected_labels("tiny")
    assert json.loads(d.get_metadata_json())["name"] == str(t.spec)


# -- bytes --------------------------------------------------------------------------------------------
def _bare_tflite() -> bytes:
    """A minimal flatbuffer model (one empty subgraph) with the ``min_runtime_version`` entry every
    converted model has: the metadata's bytes are what it adds."""
    from edgenas.exporters.convert import _pack, _schema

    S = _schema()
    m = S.ModelT()
    m.version = 3
    m.buffers = [S.BufferT(), S.BufferT()]
    m.buffers[1].data = np.frombuffer(b"1.5.0".ljust(16, b"\0"), dtype=np.uint8)
    m.metadata = [S.MetadataT()]
    m.metadata[0].name, m.metadata[0].buffer = b"min_runtime_version", 1
    m.subgraphs = [S.SubGraphT()]
    m.subgraphs[0].tensors, m.subgraphs[0].inputs, m.subgraphs[0].outputs, m.subgraphs[0].operators = [], [], [], []
    return _pack(S, m)


def _io(channels: int, classes: int, int8: bool) -> dict:
    """I/O as :func:`~edgenas.exporters.tflite.io_details` reads it (scales are float32 values)."""

    def q(scale: float, zero: int) -> dict:
        if not int8:
            return {"dtype": "float32"}
        return {"dtype": "int8", "scale": float(np.float32(scale)), "zero_point": zero}

    return {"input": {"shape": [1, channels, 32, 32], "layout": "NCHW", **q(0.0104263, -50)},
            "output": {"shape": [1, classes], **q(0.1217, 17)}}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("channels, dataset", [(1, "digits"), (3, "synthetic:n=32,classes=4,channels=3,size=32")])
def test_tflite_metadata_bytes_match_the_cost_model(precision, channels, dataset):
    from edgenas.datasets import load_dataset

    pre = load_dataset(dataset, seed=0).preprocessing()
    bare = _bare_tflite()
    for arch in ("tiny:w0.5:r32:k3e3", "nb201:" + "c3-" * 40 + "avg"):
        for classes in (4, 10, 100):
            labels = tuple(f"{i:0{NOMINAL_LABEL_CHARS}d}" for i in range(classes))
            info = ModelInfo(arch, arch.split(":")[0], pre, labels)
            added = len(with_tflite_metadata(bare, info, _io(channels, classes, precision == "int8"))) - len(bare)
            estimate = metadata_bytes_tflite(precision, arch, classes, channels)
            assert abs(added - estimate) <= (8 if precision == "fp32" else 32), (arch, classes, added, estimate)


def test_metadata_is_replaced_not_added_twice():
    info = ModelInfo("tiny:w0.5:r32:k3e3", "tiny", {"mean": [0.5], "std": [0.25]}, ("a", "b"))
    once = with_tflite_metadata(_bare_tflite(), info, _io(1, 2, False))
    again = with_tflite_metadata(once, info, _io(1, 2, False))
    # the old entries' buffers stay as empty buffers (indices are kept): 2 empty Buffer tables more
    assert 0 <= len(again) - len(once) <= 64
    assert read_tflite_facts(again) == read_tflite_facts(once)
    with zipfile.ZipFile(io.BytesIO(again)) as zf:
        assert zf.namelist() == [LABELS_FILE]


def test_onnx_metadata_bytes_are_exact():
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    bare = helper.make_model(g).SerializeToString()
    info = ModelInfo("tiny:w0.5:r32:k3e3", "tiny", {"mean": [0.5] * 3, "std": [0.25] * 3}, ("cat", "dog", "émeu"))
    data = with_onnx_metadata(bare, info, (3, 8, 8))
    props = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    assert props == fields(info, {"input": {"shape": [1, 3, 8, 8], "dtype": "float32", "layout": "NCHW"},
                                  "output": {"shape": [1, 3], "dtype": "float32"}})
    assert json.loads(props["edgenas.labels"]) == ["cat", "dog", "émeu"]
    assert len(data) - len(bare) == onnx_metadata_bytes(props)
