"""Low-level conversions shared by the exporters and by int8 latency profiling.

* :func:`onnx_bytes` — ``torch.onnx.export`` (TorchScript exporter, which folds BatchNorm into the
  convolutions in eval mode, ~1 s for a small model; the dynamo exporter as fallback), upgraded to
  ``opset`` with ONNX's version converter, weights inside the file, debug strings dropped.
* :func:`tflite_fp32_bytes` — litert-torch (no TensorFlow), NCHW or NHWC input.
* :func:`quantize_int8` — ai-edge-quantizer's full-integer recipe (int8 weights per channel, int8
  activations per tensor, int32 biases) calibrated on a representative set; int8 model input and
  output, or float ones through QUANTIZE / DEQUANTIZE ops at the graph boundary.
* :func:`compact_tflite` — drop what a runtime never reads: litert-torch names every tensor after its
  torch module path (tens of KiB on a small model), and the quantizer leaves the float calibration
  ranges (``min``/``max``) beside the scales.

Every function returns bytes; writing files (atomically) is the caller's job.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ONNX_OPSET = 21
"""Default ONNX opset of exported models (ONNX Runtime >= 1.18 runs it)."""
EXPORT_OPSET = 20
"""The TorchScript exporter's newest opset; the model is converted to ``ONNX_OPSET`` afterwards."""


@contextlib.contextmanager
def quiet(verbose: bool = False) -> Iterator[None]:
    """Capture third-party chatter (litert-torch progress lines, torchao load failures, absl/TF and
    pytree logs, exporter warnings), at the file-descriptor level so C++ logs are caught too; with
    ``verbose`` nothing is hidden."""
    if verbose:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    sink = tempfile.TemporaryFile()
    levels = {}
    try:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            for name in ("absl", "torch", "torch.onnx", "litert_torch", "jax", "ai_edge_quantizer", "onnxscript"):
                lg = logging.getLogger(name)
                levels[name] = lg.level
                lg.setLevel(logging.ERROR)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        sink.close()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


# -- ONNX -----------------------------------------------------------------------------------------
def onnx_bytes(module: Any, input_shape: Sequence[int], opset: int = ONNX_OPSET, verbose: bool = False) -> bytes:
    """An eval-mode module with a static batch-1 float32 input ``x`` (N, C, H, W) and output ``y``."""
    import onnx
    import torch

    module = module.eval()
    x = torch.zeros(1, *input_shape)
    with tempfile.TemporaryDirectory() as tmp, quiet(verbose):
        path = Path(tmp) / "m.onnx"
        try:
            torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                              opset_version=min(opset, EXPORT_OPSET), do_constant_folding=True)
        except Exception:
            torch.onnx.export(module, (x,), str(path), dynamo=True, input_names=["x"], output_names=["y"],
                              opset_version=opset, external_data=False)
        model = onnx.load(str(path))
    if model.opset_import[0].version != opset:
        from onnx import version_converter

        model = version_converter.convert_version(model, opset)
    _strip_onnx(model)
    return model.SerializeToString()


def _strip_onnx(model: Any) -> None:
    """Drop doc strings, node metadata and intermediate value_info (debug data no runtime reads)."""
    g = model.graph
    del g.value_info[:]
    model.doc_string = ""
    g.doc_string = ""
    for node in g.node:
        node.doc_string = ""
        del node.metadata_props[:]


# -- TFLite ---------------------------------------------------------------------------------------
def fold_batchnorm(module: Any) -> Any:
    """An eval-mode copy of ``module`` with every BatchNorm2d that directly follows a Conv2d inside an
    ``nn.Sequential`` folded into the convolution (``torch.nn.utils.fusion.fuse_conv_bn_eval``).

    The .tflite is the same either way (the converter folds them too: same ops, same file size, outputs
    within float rounding), but litert-torch's export and decomposition passes cost time per graph node:
    converting an mbv3 network took 23-25 s folded against 34 s unfolded (49 BatchNorms), measured here.
    The caller's module is not changed."""
    import copy
    from itertools import pairwise

    import torch.nn as nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    out = copy.deepcopy(module).eval()
    for seq in out.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in pairwise(names):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                seq._modules[a], seq._modules[b] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return out


def tflite_fp32_bytes(module: Any, input_shape: Sequence[int], nhwc: bool = False, verbose: bool = False) -> bytes:
    """Convert with litert-torch; ``input_shape`` is (C, H, W). With ``nhwc`` the model takes
    (1, H, W, C) input (the layout TFLite deployments feed), otherwise (1, C, H, W)."""
    import torch

    with quiet(verbose):
        import litert_torch  # its import logs torchao load failures
    module = fold_batchnorm(module)
    x = torch.zeros(1, *input_shape)
    if nhwc:
        module = litert_torch.to_channel_last_io(module, args=[0]).eval()
        x = x.permute(0, 2, 3, 1).contiguous()
    with quiet(verbose), torch.no_grad():
        edge = litert_torch.convert(module, (x,))
        return compact_tflite(bytes(edge.model_content()))


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _unpack(S: Any, model: bytes) -> Any:
    """The model as a mutable ``ModelT`` with every buffer inline: ai-edge-quantizer stores buffers of
    models with more than 256 KiB of weights after the flatbuffer (``offset``/``size``), which
    ``ModelT.Pack`` would drop."""
    m = S.ModelT.InitFromPackedBuf(bytearray(model), 0)
    for b in m.buffers or []:
        if b.offset and b.offset > 1:
            b.data = np.frombuffer(model, dtype=np.uint8, count=b.size, offset=b.offset)
            b.offset, b.size = 0, 0
    return m


def _pack(S: Any, m: Any) -> bytes:
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def compact_tflite(model: bytes) -> bytes:
    """Short tensor names (``t<index>``; the signature keeps its own names) and no float calibration
    ranges on quantized tensors. Semantics are unchanged: kernels read shapes, types, buffers and
    scales / zero points only."""
    S = _schema()
    m = _unpack(S, model)
    for sg in m.subgraphs:
        for i, t in enumerate(sg.tensors):
            t.name = f"t{i}".encode()
            q = t.quantization
            if q is not None and q.scale is not None and len(q.scale):
                q.min = None
                q.max = None
        sg.name = None
    return _pack(S, m)


def input_layout_shape(input_shape: Sequence[int], nhwc: bool) -> tuple[int, ...]:
    c, h, w = input_shape
    return (1, h, w, c) if nhwc else (1, c, h, w)


CALIBRATIONS = ("minmax", "moving-average")
"""How activation ranges come from the representative set: ``minmax`` the global min/max over all of
it (what TFLite's converter and ONNX Runtime's MinMax calibrator do; the default), ``moving-average``
ai-edge-quantizer's own default, an exponential moving average (factor 0.95) of each example's min/max,
which weights the last ~20 examples and clips activations the other examples reach (a digits model
trained one epoch: max |logit diff| 5.2 against 1.4 with ``minmax``)."""


def _global_min_max(qsv: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    if not qsv:
        return new
    return {**qsv, "min": np.minimum(qsv["min"], new["min"]), "max": np.maximum(qsv["max"], new["max"])}


def finite_pad_ranges(fp32_model: bytes, qsvs: dict[str, Any]) -> dict[str, Any]:
    """``qsvs`` with each ``PADV2`` output given its input's range when its own is not finite.

    litert-torch lowers a padded max-pool (torchvision's ResNet / ShuffleNet stems) to a ``PADV2`` with
    pad value -inf and a ``VALID`` ``MAX_POOL_2D``, so that output's calibrated min is -inf; ai-edge-quantizer
    gives a PADV2's input its output's scale, so it would write an infinite scale for both (XNNPACK refuses
    the file, the reference kernels compute garbage). With the input's range the pad value quantizes to the
    int8 minimum, below every value the pool compares it with: max-pooling is unchanged."""
    from ai_edge_litert import schema_py_generated as S

    m = S.Model.GetRootAs(fp32_model, 0)  # the flat view: no copy of the weights
    padv2: set[int] = set()
    for i in range(m.OperatorCodesLength()):
        c = m.OperatorCodes(i)
        if max(c.BuiltinCode(), c.DeprecatedBuiltinCode()) == S.BuiltinOperator.PADV2:
            padv2.add(i)
    for k in range(m.SubgraphsLength() if padv2 else 0):
        sg = m.Subgraphs(k)
        for j in range(sg.OperatorsLength()):
            op = sg.Operators(j)
            if op.OpcodeIndex() not in padv2:
                continue
            src, out = (sg.Tensors(op.Inputs(0)).Name().decode(), sg.Tensors(op.Outputs(0)).Name().decode())
            q = qsvs.get(out)
            if q is not None and src in qsvs and not (np.all(np.isfinite(q["min"])) and np.all(np.isfinite(q["max"]))):
                qsvs[out] = {**q, "min": qsvs[src]["min"], "max": qsvs[src]["max"]}
    return qsvs


def _min_max_qsvs(calibrator: Any, fp32_model: bytes, data: dict[str, list[dict[str, np.ndarray]]],
                  manager: Any, mode: str = "auto") -> dict[str, Any]:
    """Global per-tensor min/max of every activation over ``data``.

    ai-edge-quantizer's profiler-based mode tracks min/max inside the interpreter (C++) instead of
    copying every intermediate tensor to Python after each example: about 2.5x faster on an mbv3
    network, and the quantized model is byte-identical once its float64 statistics are cast to the
    float32 the tensor-copying mode computes in. ``mode``: ``"profiler"``, ``"copy"`` (tensor copying),
    or ``"auto"``: the profiler, falling back to copying for a quantizer without that mode or a model
    it cannot profile."""
    if mode in ("auto", "profiler"):
        try:
            cal = calibrator.Calibrator(bytearray(fp32_model), num_threads=1, qsv_update_func=_global_min_max,
                                        mode=calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED)
            cal.calibrate(data, manager)
            qsvs = {k: {**v, "min": np.asarray(v["min"], np.float32), "max": np.asarray(v["max"], np.float32)}
                    for k, v in cal.get_model_qsvs().items()}
        except (AttributeError, RuntimeError, ValueError, KeyError):
            if mode == "profiler":
                raise
        else:
            return finite_pad_ranges(fp32_model, qsvs)
    cal = calibrator.Calibrator(bytearray(fp32_model), num_threads=1, qsv_update_func=_global_min_max)
    cal.calibrate(data, manager)
    return finite_pad_ranges(fp32_model, cal.get_model_qsvs())


def quantize_int8(
    fp32_model: bytes, representative: np.ndarray, int8_io: bool = True, verbose: bool = False,
    calibration: str = "minmax",
) -> bytes:
    """Full-integer int8 model from a float .tflite and a representative set (N examples in the
    model's input layout, float32, batch dimension first); ``calibration`` in ``CALIBRATIONS``."""
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {calibration!r}")
    with quiet(verbose):
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager

        sig = Interpreter(model_content=fp32_model).get_signature_list()
        key = next(iter(sig))
        name = sig[key]["inputs"][0]
        rules = recipe.static_wi8_ai8()
        q = quantizer.Quantizer(bytearray(fp32_model))
        q.load_quantization_recipe(rules)
        rep = np.asarray(representative, dtype=np.float32)
        data = {key: [{name: rep[i:i + 1]} for i in range(len(rep))]}
        if calibration == "moving-average":
            qsvs = finite_pad_ranges(fp32_model, q.calibrate(data, num_threads=1))
        else:  # Quantizer.calibrate has no update-rule argument; its Calibrator does
            manager = recipe_manager.RecipeManager()
            manager.load_quantization_recipe(rules)
            qsvs = _min_max_qsvs(calibrator, fp32_model, data, manager)
        result = q.quantize(qsvs, enable_progress_report=False, enable_progress_bar=False)
        model = bytes(result.quantized_model)
    if not int8_io:
        model = float_io(model)
    return compact_tflite(model)


def float_io(model: bytes) -> bytes:
    """Give an integer-I/O model float32 input and output: a QUANTIZE op in front of each int8 (or
    int16, from a 16x8 file) graph input and a DEQUANTIZE op behind each such graph output (what
    TFLite's converter emits for ``inference_input_type=float32`` on an integer model)."""
    S = _schema()
    m = _unpack(S, model)
    sg = m.subgraphs[0]

    def opcode(builtin: int) -> int:
        for i, oc in enumerate(m.operatorCodes):
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin:
                return i
        oc = S.OperatorCodeT()
        oc.builtinCode = builtin
        oc.deprecatedBuiltinCode = min(builtin, 127)
        oc.version = 1
        m.operatorCodes.append(oc)
        return len(m.operatorCodes) - 1

    def float_twin(t_index: int, suffix: str) -> int:
        src = sg.tensors[t_index]
        t = S.TensorT()
        t.shape = list(src.shape)
        t.shapeSignature = list(src.shapeSignature) if src.shapeSignature is not None else None
        t.type = S.TensorType.FLOAT32
        t.name = (src.name or b"") + suffix.encode()
        buf = S.BufferT()
        m.buffers.append(buf)
        t.buffer = len(m.buffers) - 1
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    remap: dict[int, int] = {}

    def boundary(ends: list[int], builtin: int, is_input: bool) -> list[Any]:
        """A conversion op per integer graph input (float -> int) or output (int -> float)."""
        ops = []
        for pos, ti in enumerate(ends):
            if sg.tensors[ti].type not in (S.TensorType.INT8, S.TensorType.INT16):
                continue
            fi = float_twin(ti, "_f")
            op = S.OperatorT()
            op.opcodeIndex = opcode(builtin)
            op.inputs, op.outputs = ([fi], [ti]) if is_input else ([ti], [fi])
            ops.append(op)
            ends[pos] = remap[ti] = fi
        return ops

    new_front = boundary(sg.inputs, S.BuiltinOperator.QUANTIZE, True)
    new_back = boundary(sg.outputs, S.BuiltinOperator.DEQUANTIZE, False)
    sg.operators = new_front + list(sg.operators) + new_back
    for sd in m.signatureDefs or []:
        for tm in list(sd.inputs or []) + list(sd.outputs or []):
            tm.tensorIndex = remap.get(tm.tensorIndex, tm.tensorIndex)
    return _pack(S, m)
