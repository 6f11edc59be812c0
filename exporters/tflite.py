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
        rep = job.representative.transpose(0, 2, 3, 1) if o.nhwc else job.representative
        return quantize_int8(fp32_tflite(job), np.ascontiguousarray(rep), int8_io=o.int8_io, verbose=o.verbose)

    return job.cached(f"tflite-int8:{'nhwc' if o.nhwc else 'nchw'}:{'int8' if o.int8_io else 'float'}-io", make)


def io_details(model: bytes | Path) -> dict[str, Any]:
    """Input/output layout, dtype, shape and (int8) scale / zero point of a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet():
        it = Interpreter(model_path=str(model)) if isinstance(model, Path) else Interpreter(model_content=model)
    out = {}
    for key, d in (("input", it.get_input_details()[0]), ("output", it.get_output_details()[0])):
        scale, zero = d["quantization"]
        out[key] = {"shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
        if np.dtype(d["dtype"]) == np.int8:
            out[key].update({"scale": float(scale), "zero_point": int(zero)})
    return out


def litert_runner(path: Path, threads: int = 1, reference_kernels: bool = False) -> Runner:
    """A LiteRT interpreter as float NCHW -> float logits (layout and int8 I/O handled here).

    ``reference_kernels``: LiteRT's reference op implementations instead of its optimised kernels and
    XNNPACK delegate; they define the int8 arithmetic that TFLite Micro implements, so the two agree
    bit for bit (the optimised kernels round differently by up to a quantization step)."""
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
    if np.dtype(d["dtype"]) != np.int8:
        return x.astype(np.float32)
    scale, zero = d["quantization"]
    return np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)


def dequantize_output(o: dict[str, Any], y: np.ndarray) -> np.ndarray:
    if np.dtype(o["dtype"]) != np.int8:
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
