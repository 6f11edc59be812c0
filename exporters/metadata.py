"""Metadata inside the exported files: what a deployment needs to feed the model and read its output.

Every file says which candidate it is (the canonical arch and its space), how an image becomes its input
(mean, std, layout, resize), what its output classes are called and, for int8 I/O, the scale / zero
point of its input and output, with the edgenas version that wrote it (:func:`facts`):

* ``.onnx``: ONNX ``metadata_props``, one string each under ``edgenas.*`` keys (JSON for structured
  values); ONNX Runtime shows them as ``session.get_modelmeta().custom_metadata_map``.
* ``.tflite`` (fp32, int8): TFLite Support metadata, the format LiteRT's Task Library and Android Studio's
  model binding read: a ``TFLITE_METADATA`` buffer (``ModelMetadata`` -> ``SubGraphMetadata`` -> input
  ``TensorMetadata`` with ``ImageProperties``, a ``NormalizationOptions`` process unit and ``Stats``;
  output ``TensorMetadata`` whose ``TENSOR_AXIS_LABELS`` associated file is ``labels.txt``), and
  ``labels.txt`` packed as the zip archive the metadata populator appends after the flatbuffer. Beside
  it, a model metadata entry ``edgenas`` holds :func:`facts` as one JSON object.
* TFLite Micro ``.tflite``: only the ``edgenas`` JSON entry (labels included): TFLM never reads the
  Support metadata, no Task Library runs on a microcontroller, and every byte of the C array is flash.
  TFLM ignores model metadata other than its offline memory plan, so the arena is unchanged (tested).

The Support metadata is written here through ``flatbuffers`` against the published
``metadata_schema.fbs`` (schema 1.5.0; the fields used are all from 1.0.0, the ``min_parser_version``
recorded) rather than with the ``tflite-support`` package: its last release (0.4.4) requires
``protobuf<4``, which would replace the protobuf 7 that onnx and ai-edge-litert run with here. Its
parser reads these files (checked with its ``MetadataDisplayer``; the tests use it when it imports and
otherwise the ``flatc``-generated reader of the same schema, an implementation independent of this one).

The bytes it adds are in the cost model's size fields: :func:`edgenas.deployed.metadata_bytes_tflite`.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SUPPORT_METADATA_NAME = "TFLITE_METADATA"
"""The model metadata entry the TFLite Support parser reads (``MetadataPopulator.METADATA_FIELD_NAME``)."""
EDGENAS_METADATA_NAME = "edgenas"
"""The model metadata entry holding :func:`facts` as JSON in every ``.tflite``."""
LABELS_FILE = "labels.txt"
METADATA_IDENTIFIER = b"M001"
"""The Support metadata flatbuffer's file identifier."""
MIN_PARSER_VERSION = "1.0.0"
"""The oldest Support metadata parser that reads every field written here (none is newer than 1.0.0)."""
PIXEL_MAX = 255.0
"""Task Library normalises raw 8-bit pixel values: the dataset's [0, 1] mean / std are scaled by this."""


@dataclass(frozen=True)
class ModelInfo:
    """What the export knows about a model beyond its module: identity, preprocessing, class names."""

    arch: str = ""
    """The canonical arch string (the candidate's identity in the search)."""
    space: str = ""
    preprocessing: dict[str, Any] | None = None
    """The dataset's :meth:`~edgenas.datasets.ImageDataset.preprocessing` (mean, std, resize, ...)."""
    labels: tuple[str, ...] = ()
    """Class names in output order (empty: the class indices)."""


def labels_of(info: ModelInfo | None, num_classes: int) -> list[str]:
    """The output's class names, one line each (class indices when none are known)."""
    names = list(info.labels) if info is not None and info.labels else []
    if len(names) != num_classes:
        names = [str(i) for i in range(num_classes)]
    return [" ".join(str(n).split()) or str(i) for i, n in enumerate(names)]


def facts(info: ModelInfo | None, io_spec: dict[str, Any]) -> dict[str, Any]:
    """What every file carries. ``io_spec``: ``input`` and ``output`` with ``shape``, ``dtype``,
    ``layout`` (input) and, for int8 tensors, ``scale`` / ``zero_point``."""
    from edgenas import __version__

    info = info or ModelInfo()
    pre = dict(info.preprocessing) if info.preprocessing else {}
    pre["layout"] = io_spec["input"].get("layout", "NCHW")  # the file's own layout, not the dataset's C, H, W
    return {"version": __version__, "arch": info.arch, "space": info.space, "preprocessing": pre,
            "input": dict(io_spec["input"]), "output": {**io_spec["output"], "meaning": "logits"},
            "labels": labels_of(info, int(io_spec["output"]["shape"][-1]))}


def fields(info: ModelInfo | None, io_spec: dict[str, Any]) -> dict[str, str]:
    """:func:`facts` as ONNX key / value strings: ``edgenas.<name>``, structured values as JSON."""
    return {f"edgenas.{k}": v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
            for k, v in facts(info, io_spec).items()}


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# -- ONNX ---------------------------------------------------------------------------------------------
def with_onnx_metadata(model: bytes, info: ModelInfo | None, input_shape: Sequence[int]) -> bytes:
    """The ONNX model with :func:`fields` in its ``metadata_props`` (replacing earlier ``edgenas.*``)."""
    import onnx

    m = onnx.load_from_string(model)
    out_dim = [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim]
    io_spec = {"input": {"shape": [1, *map(int, input_shape)], "dtype": "float32", "layout": "NCHW"},
               "output": {"shape": out_dim, "dtype": "float32"}}
    kept = [p for p in m.metadata_props if not p.key.startswith("edgenas.")]
    del m.metadata_props[:]
    m.metadata_props.extend(kept)
    onnx.helper.set_model_props(m, {**{p.key: p.value for p in kept}, **fields(info, io_spec)})
    return m.SerializeToString()


def onnx_metadata_bytes(props: dict[str, str]) -> int:
    """Exact bytes ``metadata_props`` entries add to a serialized ONNX model (protobuf: a tag and a
    length before each entry, key and value)."""

    def field(n: int) -> int:
        return 1 + _varint_len(n) + n

    return sum(field(field(len(k.encode())) + field(len(v.encode()))) for k, v in props.items())


def _varint_len(n: int) -> int:
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


# -- TFLite Support metadata (metadata_schema.fbs) ---------------------------------------------------------
_CONTENT_FEATURE, _CONTENT_IMAGE = 1, 2  # ContentProperties union members
_OPTIONS_NORMALIZATION = 1  # ProcessUnitOptions union member
_COLOR_RGB, _COLOR_GRAYSCALE = 1, 2  # ColorSpaceType
_TENSOR_AXIS_LABELS = 2  # AssociatedFileType


def support_metadata(info: ModelInfo | None, io_spec: dict[str, Any]) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier ``M001``) for an image classifier: the input image's
    colour space, size, normalisation and value range; the output's labels file. Field slots are the
    schema's declaration order (a union takes two: its type, then its value)."""
    import flatbuffers

    from edgenas import __version__

    info = info or ModelInfo()
    inp, out = io_spec["input"], io_spec["output"]
    nhwc = inp.get("layout") == "NHWC"
    shape = inp["shape"]
    c, h, w = (shape[3], shape[1], shape[2]) if nhwc else (shape[1], shape[2], shape[3])
    pre = info.preprocessing or {}
    mean = [float(v) * PIXEL_MAX for v in pre.get("mean") or []]
    std = [float(v) * PIXEL_MAX for v in pre.get("std") or []]
    b = flatbuffers.Builder(1024)

    def string(s: str) -> int:
        return b.CreateString(s)

    def floats(values: Sequence[float]) -> int:
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependFloat32(float(v))
        return b.EndVector()

    def tables(offsets: Sequence[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    def table(slots: int, refs: dict[int, int], scalars: dict[int, tuple[str, int]] | None = None) -> int:
        """A table with offset fields ``refs`` (slot -> offset) and scalar fields (slot -> (kind, value))."""
        b.StartObject(slots)
        for slot, off in refs.items():
            b.PrependUOffsetTRelativeSlot(slot, off, 0)
        for slot, (kind, value) in (scalars or {}).items():
            {"int8": b.PrependInt8Slot, "uint8": b.PrependUint8Slot, "uint32": b.PrependUint32Slot}[kind](
                slot, value, 0)
        return b.EndObject()

    # input: ImageProperties, normalisation, value range after normalisation (float input only, as the
    # Support library's own image classifier writer does)
    size = table(2, {}, {0: ("uint32", int(w)), 1: ("uint32", int(h))})
    color = _COLOR_RGB if c == 3 else _COLOR_GRAYSCALE if c == 1 else 0
    image = table(2, {1: size}, {0: ("int8", color)})
    in_content = table(3, {1: image}, {0: ("uint8", _CONTENT_IMAGE)})
    in_refs = {0: string("image"), 1: string(_input_description(info, inp)), 3: in_content}
    if mean and std:
        norm = table(2, {0: floats(mean), 1: floats(std)})
        in_refs[4] = tables([table(2, {1: norm}, {0: ("uint8", _OPTIONS_NORMALIZATION)})])
        if inp.get("dtype") == "float32":
            lo = [(0.0 - m) / s for m, s in zip(mean, std)]
            hi = [(PIXEL_MAX - m) / s for m, s in zip(mean, std)]
            in_refs[5] = table(2, {0: floats(hi), 1: floats(lo)})
    in_meta = table(7, in_refs)
    # output: logits per class, named by the labels file
    out_refs = {0: string("logits"), 1: string(_output_description(out)),
                3: table(3, {1: table(0, {})}, {0: ("uint8", _CONTENT_FEATURE)})}
    labels = table(5, {0: string(LABELS_FILE), 1: string("Class names, one per line, in output order.")},
                   {2: ("int8", _TENSOR_AXIS_LABELS)})
    out_refs[6] = tables([labels])
    out_meta = table(7, out_refs)
    subgraph = table(4, {2: tables([in_meta]), 3: tables([out_meta])})
    space = f" of the {info.space} space" if info.space else ""
    root = table(8, {0: string(info.arch or "edgenas model"),
                     1: string(f"Image classifier{space} found and exported by edgenas"),
                     2: string(__version__), 3: tables([subgraph]), 4: string("edgenas"),
                     7: string(MIN_PARSER_VERSION)})
    b.Finish(root, file_identifier=METADATA_IDENTIFIER)
    return bytes(b.Output())


def _input_description(info: ModelInfo, inp: dict[str, Any]) -> str:
    pre = info.preprocessing or {}
    text = (f"{'x'.join(map(str, inp['shape']))} {inp['dtype']} image, {inp.get('layout', 'NCHW')}; "
            f"{pre.get('scale', 'pixels to [0, 1]')}, then (x - mean) / std per channel")
    if "scale" in inp:
        text += f"; int8: q = round(x / {inp['scale']:.6g}) + {inp['zero_point']}"
    return text + "."


def _output_description(out: dict[str, Any]) -> str:
    text = "Logits, one per class (labels file order); the top-1 class is their argmax"
    if "scale" in out:
        text += f"; int8: x = (q - {out['zero_point']}) * {out['scale']:.6g}"
    return text + "."


def append_labels(model: bytes, labels: Sequence[str]) -> bytes:
    """The model with ``labels.txt`` zipped after it, as the metadata populator packs associated files:
    a stored (not deflated) archive whose offsets count from the file's start (``zipfile``'s append
    mode), with a fixed timestamp so that the same model gives the same bytes."""
    buf = io.BytesIO(model)
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(zipfile.ZipInfo(LABELS_FILE, date_time=(1980, 1, 1, 0, 0, 0)), "\n".join(labels) + "\n")
    return buf.getvalue()


def with_tflite_metadata(model: bytes, info: ModelInfo | None, io_spec: dict[str, Any], micro: bool = False) -> bytes:
    """The .tflite with its metadata (see the module docstring); ``micro``: the TFLite Micro file, which
    carries the ``edgenas`` entry only. Earlier entries of the same names are replaced."""
    import numpy as np

    from edgenas.exporters.convert import _pack, _schema, _unpack

    S = _schema()
    m = _unpack(S, model)
    labels = labels_of(info, int(io_spec["output"]["shape"][-1]))
    entries = {EDGENAS_METADATA_NAME: _json(facts(info, io_spec))}
    if not micro:
        entries[SUPPORT_METADATA_NAME] = support_metadata(info, io_spec)
    for e in m.metadata or []:
        if (e.name or b"").decode() in (EDGENAS_METADATA_NAME, SUPPORT_METADATA_NAME):
            m.buffers[e.buffer].data = None  # a replaced entry leaves an empty buffer, not its old bytes
    m.metadata = [e for e in (m.metadata or [])
                  if (e.name or b"").decode() not in (EDGENAS_METADATA_NAME, SUPPORT_METADATA_NAME)]
    for name, data in entries.items():
        buf = S.BufferT()
        buf.data = np.frombuffer(data, dtype=np.uint8)
        m.buffers.append(buf)
        entry = S.MetadataT()
        entry.name = name.encode()
        entry.buffer = len(m.buffers) - 1
        m.metadata.append(entry)
    packed = _pack(S, m)
    return packed if micro else append_labels(packed, labels)


def tflite_io_spec(model: bytes, nhwc: bool) -> dict[str, Any]:
    """:func:`fields`' ``io_spec`` of a .tflite (shape, dtype, int8 scale / zero point; the input's layout)."""
    from edgenas.exporters.tflite import io_details

    spec = io_details(model)
    spec["input"]["layout"] = "NHWC" if nhwc else "NCHW"
    return spec


# -- reading back -------------------------------------------------------------------------------------
def read_onnx_facts(path: Any) -> dict[str, Any]:
    """:func:`facts` from an ONNX file's ``edgenas.*`` metadata_props (weights not loaded)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    out: dict[str, Any] = {}
    for p in m.metadata_props:
        if p.key.startswith("edgenas."):
            key = p.key.removeprefix("edgenas.")
            out[key] = p.value if key in _STRING_FACTS else json.loads(p.value)
    return out


_STRING_FACTS = ("version", "arch", "space")


def read_tflite_entries(model: bytes) -> dict[str, bytes]:
    """The named model metadata buffers of a .tflite (LiteRT's own schema reader)."""
    from edgenas.exporters.convert import _schema

    m = _schema().Model.GetRootAs(model, 0)
    out = {}
    for i in range(m.MetadataLength()):
        e = m.Metadata(i)
        buf = m.Buffers(e.Buffer())
        out[e.Name().decode()] = buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
    return out


def read_tflite_facts(model: bytes) -> dict[str, Any]:
    """:func:`facts` as stored in a .tflite's ``edgenas`` entry."""
    return json.loads(read_tflite_entries(model)[EDGENAS_METADATA_NAME])


def packed_files(model: bytes) -> dict[str, bytes]:
    """The associated files zipped after a .tflite's flatbuffer (empty when there is none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as zf:
            return {n: zf.read(n) for n in zf.namelist()}
    except zipfile.BadZipFile:
        return {}


