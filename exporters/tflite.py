"""``tflite`` (float32, litert-torch) and ``tflite-int8`` (full-integer, ai-edge-quantizer), both with
TFLite Support metadata and the labels file inside (:mod:`edgenas.exporters.metadata`) and verified in the
``ai-edge-litert`` interpreter against torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgenas.exporters.base import Exporter, ExportJob, Runner, register_exporter
from edgenas.exporters.convert import quantize_int8, quiet, tflite_fp32_bytes


def fp32_tflite(job: ExportJob) -> bytes:
    """The float .tflite of the job's module in the job's layout (built once per job)."""
    nhwc = job.options.nhwc
    return job.cached(f"tflite-fp32:{'nhwc' if nhwc else 'nchw'}", lambda: tflite_fp32_bytes(
        job.module, job.input_shape, nhwc=nhwc, verbose=job.options.verbose))


def int8_tflite(job: ExportJob) -> bytes:
    """The full-integer .tflite (built once per job): calibrated on the job's representative set."""
    o = job.options

    def make() -> bytes:
        rep = np.ascontiguousarray(job.representative.transpose(0, 2, 3, 1) if o.nhwc else job.representative)
        if o.int8 == "minmax" and not o.int8_sensitivity and not o.int8_bias_correction:
            return quantize_int8(fp32_tflite(job), rep, int8_io=o.int8_io, verbose=o.verbose)
        from edgenas.exporters.convert import compact_tflite, float_io
        from edgenas.exporters.int8_options import build_int8

        model, job.cache["int8-details"] = build_int8(job, fp32_tflite(job), rep)
        return compact_tflite(model if o.int8_io else float_io(model))

    layout = f"{'nhwc' if o.nhwc else 'nchw'}:{'int8' if o.int8_io else 'float'}-io"
    bc = ":bias-corrected" if o.int8_bias_correction else ""
    return job.cached(f"tflite-int8:{layout}:{o.int8}:{o.qat_epochs if o.int8 == 'qat' else ''}{bc}", make)


def io_details(model: bytes | Path) -> dict[str, Any]:
    """Input/output layout, dtype, shape and (int8) scale / zero point of a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet():
        it = Interpreter(model_path=str(model)) if isinstance(model, Path) else Interpreter(model_content=model)
    out = {}
    for key, d in (("input", it.get_input_details()[0]), ("output", it.get_output_details()[0])):
        scale, zero = d["quantization"]
        out[key] = {"shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
        if np.dtype(d["dtype"]) in (np.int8, np.int16):  # int16: a mixed16 file's output
            out[key].update({"scale": float(scale), "zero_point": int(zero)})
    return out


def litert_runner(path: Path, threads: int = 1, reference_kernels: bool = False) -> Runner:
    """A LiteRT interpreter as float NCHW -> float logits (layout and int8 I/O handled here).

    ``reference_kernels``: LiteRT's reference op implementations instead of its optimised kernels and
    XNNPACK delegate; they define the int8 arithmetic that TFLite Micro implements, so the two agree
    to within one output step, nearly always exactly (the optimised kernels round differently more often)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
    with quiet():  # the interpreter announces its XNNPACK delegate on stderr
        it = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
        it.allocate_tensors()
    d, o = it.get_input_details()[0], it.get_output_details()[0]
    in_shape = tuple(int(v) for v in d["shape"])

    def run(x: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(len(x)):
            xi = x[i:i + 1]
            if xi.shape != in_shape:
                xi = xi.transpose(0, 2, 3, 1)  # NCHW -> NHWC
            outs.append(invoke(it, d, o, xi))
        return np.concatenate(outs)

    return run


def quantize_input(d: dict[str, Any], x: np.ndarray) -> np.ndarray:
    dtype = np.dtype(d["dtype"])
    if dtype not in (np.int8, np.int16):
        return x.astype(np.float32)
    scale, zero = d["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def dequantize_output(o: dict[str, Any], y: np.ndarray) -> np.ndarray:
    """Float logits of an int8 (or, from a ``mixed16`` file, int16) output."""
    if np.dtype(o["dtype"]) not in (np.int8, np.int16):
        return y.astype(np.float32)
    scale, zero = o["quantization"]
    return (y.astype(np.float32) - zero) * scale


def invoke(it: Any, d: dict[str, Any], o: dict[str, Any], x: np.ndarray) -> np.ndarray:
    it.set_tensor(d["index"], quantize_input(d, x))
    it.invoke()
    return dequantize_output(o, it.get_tensor(o["index"]))


def with_metadata(model: bytes, job: ExportJob, micro: bool = False) -> bytes:
    """``model`` with the job's metadata inside (:mod:`edgenas.exporters.metadata`; ``micro``: the TFLite
    Micro file's, the ``edgenas`` entry alone)."""
    from edgenas.exporters.metadata import tflite_io_spec, with_tflite_metadata

    return with_tflite_metadata(model, job.info, tflite_io_spec(model, job.options.nhwc), micro=micro)


class _LiteRT(Exporter):
    suffix = ".tflite"
    runtime = "litert"
    requires = ("ai_edge_litert", "litert_torch")

    def runner(self, path: Path, job: ExportJob) -> Runner:
        return litert_runner(path, job.options.threads)

    def details(self, path: Path, job: ExportJob) -> dict[str, Any]:
        from edgenas.delegates import measure

        d = io_details(path)
        d["input"]["layout"] = "NHWC" if job.options.nhwc else "NCHW"
        d["xnnpack"] = measure(path).as_dict()  # how LiteRT's default delegate splits this file, as loaded here
        return d


@register_exporter
class TfliteExporter(_LiteRT):
    name = "tflite"
    kind = "exact"
    size_field = "size_bytes_fp32"
    stem = "model_fp32"
    summary = "TFLite float32 (litert-torch; NCHW or NHWC input), verified in the LiteRT interpreter"

    def build(self, job: ExportJob) -> bytes:
        return with_metadata(fp32_tflite(job), job)


@register_exporter
class TfliteInt8Exporter(_LiteRT):
    name = "tflite-int8"
    kind = "quantized"
    size_field = "size_bytes_int8"
    stem = "model_int8"
    summary = "TFLite full-integer int8 (ai-edge-quantizer, calibrated on the training split)"
    requires = ("ai_edge_litert", "litert_torch", "ai_edge_quantizer")

    def build(self, job: ExportJob) -> bytes:
        return with_metadata(int8_tflite(job), job)

    def reference(self, job: ExportJob) -> np.ndarray:
        return job.int8_reference()

    def details(self, path: Path, job: ExportJob) -> dict[str, Any]:
        d = super().details(path, job)
        d.update(int8_card_details(job))
        return d


def int8_card_details(job: ExportJob) -> dict[str, Any]:
    """How the int8 file was made (``int8`` option, int16 ops, QAT record) and, when computed, the ops'
    sensitivity ranking (the 10 most sensitive)."""
    out: dict[str, Any] = {}
    if "int8-details" in job.cache:
        out["int8_method"] = job.cache["int8-details"]
    if "int8-sensitivity" in job.cache:
        out["int8_sensitivity"] = job.cache["int8-sensitivity"].as_dict(top=10)
    return out
