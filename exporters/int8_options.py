"""What to do when full-integer int8 misses the agreement check: activation range rules, per-layer
sensitivity, and int16 activations for the layers that need them.

Every option lowers through the same path as the default int8 file (ai-edge-quantizer, int8 weights per
channel, calibrated on the representative set); they differ only in the activation ranges and in which
ops run 16x8 (int16 activations, int8 weights):

* ``minmax``: each activation's global min/max over the representative set (the default).
* ``percentile``: the 0.01th..99.99th percentile of each intermediate activation (outliers clipped, a finer
  step for the rest).
* ``mse``: per activation, the clipping range (the min/max scaled by one factor) with the least expected
  int8 rounding-plus-clipping error over the representative set's histogram.
* ``mixed16``: min/max ranges, with the *k* ops whose quantization moves the logits most
  (:func:`sensitivity`) at int16 activations, *k* the smallest that makes the representative set agree
  >= 98% with float (doubling, then bisection; :func:`mixed16`). ai-edge-quantizer's recipes take per-op
  regexes, so this is a recipe, not a second converter.

ai-edge-quantizer's own range algorithms (``MSE``, ``OCTAV``) clip *weights*; for activations (no
tensor content at quantization time) they fall back to min/max, so the percentile and MSE activation
ranges are computed here from histograms of the float model's tensors and handed to it as its
calibration statistics (QSVs). The model input and output keep min/max: clipping the logits' range
would tie the top classes.

Decisions are made on the representative set (training images): the validation images stay for the
exporter's own check.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgenas.exporters.convert import quiet

RANGES = ("minmax", "percentile", "mse")
"""Activation range rules (see the module docstring)."""
INT8_MODES = ("minmax", "percentile", "mse", "mixed16", "qat")
"""Values of the ``int8`` export option: a range rule, ``mixed16`` (min/max + int16 activations where
the sensitivity says), ``qat`` (quantization-aware fine-tuning, :mod:`edgenas.exporters.qat`, then min/max)."""
PERCENTILE = 99.99
"""Upper percentile of each activation kept by ``percentile`` (and 100 - it, the lower)."""
HISTOGRAM_BINS = 2048
MSE_FACTORS = np.linspace(0.2, 1.0, 81)
"""Candidate clipping factors of the min/max range tried by ``mse``."""
SENSITIVITY_EXAMPLES = 64
"""Representative examples each op's one-op-quantized model runs on (the cost is ops x examples)."""
AGREEMENT = 0.98


def _calibration_data(fp32_model: bytes, representative: np.ndarray) -> tuple[str, str, dict[str, Any]]:
    from ai_edge_litert.interpreter import Interpreter

    sig = Interpreter(model_content=fp32_model).get_signature_list()
    key = next(iter(sig))
    name = sig[key]["inputs"][0]
    rep = np.asarray(representative, dtype=np.float32)
    return key, name, {key: [{name: rep[i:i + 1]} for i in range(len(rep))]}


def _recipe(int16_scopes: Sequence[str] = (), only_scopes: Sequence[str] | None = None,
            all_int16: bool = False) -> Any:
    """int8 weights and activations on every supported op (or only on ``only_scopes``), int16
    activations on the ops whose outputs are named in ``int16_scopes`` (on every op with ``all_int16``:
    ai-edge-quantizer's whole-model 16x8 recipe, int16 graph input and output included)."""
    from ai_edge_quantizer import qtyping, recipe_manager

    op = qtyping.TFLOperationName.ALL_SUPPORTED
    rm = recipe_manager.RecipeManager()
    if only_scopes is None:
        rm.add_static_config(regex=".*", operation_name=op, activation_num_bits=16 if all_int16 else 8,
                             weight_num_bits=8)
    else:
        for s in only_scopes:
            rm.add_static_config(regex=_scope_regex(s), operation_name=op, activation_num_bits=8, weight_num_bits=8)
    for s in int16_scopes:
        rm.add_static_config(regex=_scope_regex(s), operation_name=op, activation_num_bits=16, weight_num_bits=8)
    return rm.get_quantization_recipe()


def _scope_regex(tensor: str) -> str:
    """The op whose first output is ``tensor`` (ai-edge-quantizer's scope: output names, ';'-joined)."""
    return f"^{re.escape(tensor)};"


def calibrate(fp32_model: bytes, representative: np.ndarray, ranges: str = "minmax",
              verbose: bool = False, cache: dict[str, Any] | None = None) -> dict[str, Any]:
    """ai-edge-quantizer's calibration statistics (per-tensor min/max) under the range rule ``ranges``.
    ``cache`` (e.g. an export job's) keeps the min/max statistics and the activation histograms for the
    next rule on the same float model."""
    if ranges not in RANGES:
        raise ValueError(f"ranges must be one of {', '.join(RANGES)}, got {ranges!r}")
    from edgenas.exporters.convert import _min_max_qsvs

    cache = {} if cache is None else cache
    key = hashlib.sha256(fp32_model).hexdigest()[:16]
    if f"int8-minmax:{key}" not in cache:
        with quiet(verbose):
            from ai_edge_quantizer import calibrator, recipe_manager

            _, _, data = _calibration_data(fp32_model, representative)
            manager = recipe_manager.RecipeManager()
            manager.load_quantization_recipe(_recipe())
            cache[f"int8-minmax:{key}"] = _min_max_qsvs(calibrator, fp32_model, data, manager)
    qsvs = cache[f"int8-minmax:{key}"]
    if ranges == "minmax":
        return qsvs
    if f"int8-histograms:{key}" not in cache:
        cache[f"int8-histograms:{key}"] = activation_histograms(fp32_model, representative, qsvs)
    return clipped_ranges(qsvs, cache[f"int8-histograms:{key}"], ranges)


def _float_tensors(fp32_model: bytes) -> tuple[Any, dict[str, int], set[str]]:
    """An fp32 interpreter that keeps every intermediate tensor, its tensor indices by name, and the
    names of the graph's inputs and outputs."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet():
        it = Interpreter(model_content=fp32_model, experimental_preserve_all_tensors=True)
        it.allocate_tensors()
    index = {d["name"]: d["index"] for d in it.get_tensor_details()}
    ends = {d["name"] for d in it.get_input_details() + it.get_output_details()}
    return it, index, ends


def activation_histograms(fp32_model: bytes, representative: np.ndarray,
                          qsvs: dict[str, Any]) -> dict[str, tuple[np.ndarray, float, float]]:
    """Per intermediate activation (not the graph's input or output): a histogram of its values over the
    representative set, :data:`HISTOGRAM_BINS` bins over its global min/max, with that min and max."""
    it, index, ends = _float_tensors(fp32_model)
    d = it.get_input_details()[0]
    names = [n for n in qsvs if n in index and n not in ends and "min" in qsvs[n]]
    bounds = {n: (float(np.min(qsvs[n]["min"])), float(np.max(qsvs[n]["max"]))) for n in names}
    names = [n for n in names if bounds[n][1] > bounds[n][0]]
    hist = {n: np.zeros(HISTOGRAM_BINS, np.float64) for n in names}
    rep = np.asarray(representative, dtype=np.float32)
    for i in range(len(rep)):
        it.set_tensor(d["index"], rep[i:i + 1])
        it.invoke()
        for n in names:
            hist[n] += np.histogram(it.get_tensor(index[n]), HISTOGRAM_BINS, bounds[n])[0]
    return {n: (hist[n], *bounds[n]) for n in names}


def clipped_ranges(qsvs: dict[str, Any], histograms: dict[str, tuple[np.ndarray, float, float]],
                   ranges: str) -> dict[str, Any]:
    """``qsvs`` (global min/max) with each intermediate activation's range clipped by ``ranges``
    (``percentile`` or ``mse``) from its histogram (:func:`activation_histograms`)."""
    out = dict(qsvs)
    for n, (hist, lo, hi) in histograms.items():
        if not hist.any():
            continue
        a, b = (_percentile_range if ranges == "percentile" else _mse_range)(hist, lo, hi)
        q = qsvs[n]
        out[n] = {**q, "min": np.full_like(np.asarray(q["min"]), min(a, 0.0)),
                  "max": np.full_like(np.asarray(q["max"]), max(b, 0.0))}
    return out


def _edges(lo: float, hi: float) -> np.ndarray:
    return np.linspace(lo, hi, HISTOGRAM_BINS + 1)


def _percentile_range(hist: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    cdf = np.cumsum(hist) / hist.sum()
    e = _edges(lo, hi)
    a = e[int(np.searchsorted(cdf, (100 - PERCENTILE) / 100))]
    b = e[min(int(np.searchsorted(cdf, PERCENTILE / 100)) + 1, HISTOGRAM_BINS)]
    return float(a), float(b)


def _mse_range(hist: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """The min/max range scaled by the factor of :data:`MSE_FACTORS` with the least expected squared error
    of int8 asymmetric quantization (rounding + clipping) over the histogram's bin centres."""
    e = _edges(lo, hi)
    x = (e[:-1] + e[1:]) / 2
    p = hist / hist.sum()
    best, best_err = (lo, hi), np.inf
    for f in MSE_FACTORS:
        a, b = min(lo * f, 0.0), max(hi * f, 0.0)
        scale = (b - a) / 255 if b > a else 1.0
        zp = np.round(-128 - a / scale)
        q = (np.clip(np.round(x / scale + zp), -128, 127) - zp) * scale
        err = float(np.sum(p * ((q - x) ** 2 + (scale ** 2 / 12) * ((x > a) & (x < b)))))
        if err < best_err:
            best, best_err = (a, b), err
    return best


def quantize(fp32_model: bytes, qsvs: dict[str, Any], int16_scopes: Sequence[str] = (),
             only_scopes: Sequence[str] | None = None, verbose: bool = False, all_int16: bool = False) -> bytes:
    """The quantized model of ``fp32_model`` from calibration statistics ``qsvs`` (see :func:`_recipe`)."""
    with quiet(verbose):
        from ai_edge_quantizer import quantizer

        q = quantizer.Quantizer(bytearray(fp32_model))
        q.load_quantization_recipe(_recipe(int16_scopes, only_scopes, all_int16))
        return bytes(q.quantize(qsvs, enable_progress_report=False, enable_progress_bar=False).quantized_model)


def quantizable_ops(fp32_model: bytes) -> list[tuple[str, str]]:
    """(op name, first output tensor name) of every op of the float model, in graph order."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet():
        it = Interpreter(model_content=fp32_model)
    names = {d["index"]: d["name"] for d in it.get_tensor_details()}
    return [(op["op_name"], names[op["outputs"][0]]) for op in it._get_ops_details() if len(op["outputs"])]


def run_model(model: bytes, x: np.ndarray) -> np.ndarray:
    """Logits of ``model`` (int8 or float I/O, its own layout) on ``x`` (in the model's input layout)."""
    from ai_edge_litert.interpreter import Interpreter

    from edgenas.exporters.tflite import invoke

    with quiet():
        it = Interpreter(model_content=model)
        it.allocate_tensors()
    d, o = it.get_input_details()[0], it.get_output_details()[0]
    return np.concatenate([invoke(it, d, o, x[i:i + 1]) for i in range(len(x))])


@dataclass
class LayerSensitivity:
    """How far quantizing one op alone (the rest float) moves the logits on representative examples."""

    op: str
    """The LiteRT op (``CONV_2D``, ``HARD_SWISH``, ...)."""
    tensor: str
    """Its output tensor's name in the float .tflite (``t<index>``)."""
    position: int
    """Its index among the float model's ops."""
    logit_error: float
    """RMS of the logit change / RMS of the float logits."""
    top1_agreement: float

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "tensor": self.tensor, "position": self.position,
                "logit_error": round(self.logit_error, 6), "top1_agreement": round(self.top1_agreement, 4)}


@dataclass
class Sensitivity:
    layers: list[LayerSensitivity]
    """Most sensitive first."""
    examples: int
    seconds: float
    skipped: list[str] = field(default_factory=list)
    """Ops ai-edge-quantizer does not quantize alone (no recipe for them, or they failed)."""

    def as_dict(self, top: int | None = None) -> dict[str, Any]:
        return {"examples": self.examples, "seconds": round(self.seconds, 2), "ops_scored": len(self.layers),
                "ops_skipped": len(self.skipped),
                "layers": [s.as_dict() for s in self.layers[:top]]}


def sensitivity(fp32_model: bytes, representative: np.ndarray, qsvs: dict[str, Any] | None = None,
                examples: int = SENSITIVITY_EXAMPLES, verbose: bool = False) -> Sensitivity:
    """Per-op sensitivity: each op quantized to int8 on its own (min/max ranges, the rest float), its
    logits compared with the float model's on the first ``examples`` representative examples; most
    sensitive (largest relative logit error) first."""
    t0 = time.perf_counter()
    qsvs = qsvs if qsvs is not None else calibrate(fp32_model, representative, verbose=verbose)
    x = np.asarray(representative[:examples], dtype=np.float32)
    ref = run_model(fp32_model, x)
    norm = float(np.sqrt(np.mean(ref ** 2))) or 1.0
    layers, skipped = [], []
    for pos, (op, tensor) in enumerate(quantizable_ops(fp32_model)):
        try:
            model = quantize(fp32_model, qsvs, only_scopes=[tensor], verbose=verbose)
        except (ValueError, RuntimeError, KeyError) as exc:
            skipped.append(f"{op} {tensor}: {exc.__class__.__name__}")
            continue
        if model == fp32_model:
            skipped.append(f"{op} {tensor}: not quantized")
            continue
        out = run_model(model, x)
        err = float(np.sqrt(np.mean((out - ref) ** 2))) / norm
        layers.append(LayerSensitivity(op, tensor, pos, err, float(np.mean(out.argmax(1) == ref.argmax(1)))))
    layers.sort(key=lambda s: -s.logit_error)
    return Sensitivity(layers, len(x), time.perf_counter() - t0, skipped)


def _tensor_dtype(model: bytes, name: str) -> np.dtype | None:
    from ai_edge_litert.interpreter import Interpreter

    with quiet():
        details = Interpreter(model_content=model).get_tensor_details()
    return next((np.dtype(d["dtype"]) for d in details if d["name"] == name), None)


INT16_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "MEAN", "AVERAGE_POOL_2D",
             "LOGISTIC", "HARD_SWISH", "RELU", "RELU6", "RESHAPE", "MAX_POOL_2D", "CONCATENATION", "SUB")
"""Ops whose int16-activation (16x8) kernels LiteRT has and which ``mixed16`` may raise. An op that
ai-edge-quantizer leaves int8 under an int16 recipe (``HARD_SWISH`` in 0.10) or whose file does not run
is passed over."""


@dataclass
class Mixed16:
    model: bytes
    int16_ops: list[dict[str, Any]]
    """The ops raised to int16 activations, most sensitive first (empty with ``whole_model``)."""
    agreement: float
    """Top-1 agreement of the final file with the float model on the representative set."""
    minmax_agreement: float
    """The same for the all-int8 min/max file it started from."""
    sensitivity: Sensitivity | None
    """None when the min/max file already agreed and no sensitivity was asked for (nothing to raise)."""
    tried: list[dict[str, Any]] = field(default_factory=list)
    """Each number of int16 ops tried, with its representative agreement and relative logit error
    (``"all"``: the whole-model 16x8 file)."""
    candidates: int | None = 0
    """Ops that could be raised (int16-capable in ai-edge-quantizer); None when not looked for."""
    whole_model: bool = False
    """True when no choice of ops reached the agreement and the file is the whole-model 16x8 one
    (int16 activations on every op, int16 graph input and output)."""


def mixed16(fp32_model: bytes, representative: np.ndarray, qsvs: dict[str, Any] | None = None,
            max_ops: int | None = None, agreement: float = AGREEMENT, verbose: bool = False,
            need_sensitivity: bool = True, whole_model: bool = True) -> Mixed16:
    """min/max int8 with the *k* most sensitive ops at int16 activations, *k* the smallest that makes the
    representative set agree with the float model >= ``agreement``: *k* doubled (1, 2, 4, ...) until it
    does or every candidate (at most ``max_ops``) is raised, then bisected between the last two. Each *k*
    costs one quantization and one pass over the set. Candidates: ops of :data:`INT16_OPS` that
    ai-edge-quantizer does give int16 outputs, in sensitivity order.

    When no *k* gets there (an op that stays int8 under a per-op int16 recipe, such as ``HARD_SWISH``,
    can be what loses the agreement), the whole-model 16x8 file is tried: ai-edge-quantizer's recipe with
    int16 activations everywhere quantizes such ops differently. It is kept if it agrees at least as
    well as the best *k* (not tried without ``whole_model``); else the *k* with the best agreement (then
    logit error) of those tried.
    Without ``need_sensitivity``, a min/max file that already agrees is returned before the per-op
    sensitivity is computed (it costs one quantization and one pass per op: 90-150 s on an mbv3 model)."""
    qsvs = qsvs if qsvs is not None else calibrate(fp32_model, representative, verbose=verbose)
    x = np.asarray(representative, dtype=np.float32)
    ref = run_model(fp32_model, x)
    norm = float(np.sqrt(np.mean(ref ** 2))) or 1.0
    tried: dict[int, tuple[float, float, bytes]] = {}
    layers: list[LayerSensitivity] = []  # the int16 candidates, once the sensitivity ranks them

    def score(model: bytes) -> tuple[float, float, bytes]:
        out = run_model(model, x)
        return (float(np.mean(out.argmax(1) == ref.argmax(1))), float(np.sqrt(np.mean((out - ref) ** 2))) / norm,
                model)

    def trial(k: int) -> tuple[float, float, bytes]:
        if k not in tried:
            tried[k] = score(quantize(fp32_model, qsvs, int16_scopes=[s.tensor for s in layers[:k]],
                                      verbose=verbose))
        return tried[k]

    def details(whole: tuple[float, float, bytes] | None = None) -> list[dict[str, Any]]:
        rows: list[tuple[int | str, tuple[float, float, bytes]]] = list(sorted(tried.items()))
        rows += [("all", whole)] if whole is not None else []
        return [{"int16_ops": k, "top1_agreement": round(a, 4), "logit_error": round(e, 6)}
                for k, (a, e, _) in rows]

    if not need_sensitivity and trial(0)[0] >= agreement:
        return Mixed16(tried[0][2], [], tried[0][0], tried[0][0], None, details(), None)
    sens = sensitivity(fp32_model, representative, qsvs, verbose=verbose)
    candidates = [s for s in sens.layers if s.op in INT16_OPS]
    every = quantize(fp32_model, qsvs, int16_scopes=[s.tensor for s in candidates], verbose=verbose)
    layers += [s for s in candidates if _tensor_dtype(every, s.tensor) == np.int16][:max_ops]

    lo, hi = 0, None
    if trial(0)[0] < agreement:
        k = 1
        while k <= len(layers):
            if trial(k)[0] >= agreement:
                hi = k
                break
            lo = k
            k = len(layers) if k < len(layers) < 2 * k else 2 * k
        if hi is not None:
            while hi - lo > 1:  # the smallest passing k, taking agreement to grow with k
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if trial(mid)[0] >= agreement else (mid, hi)
    best = hi if hi is not None else 0 if trial(0)[0] >= agreement else max(
        tried, key=lambda k: (tried[k][0], -tried[k][1]))
    whole = None
    if tried[best][0] < agreement and whole_model:
        whole = score(quantize(fp32_model, qsvs, all_int16=True, verbose=verbose))
        if (whole[0], -whole[1]) >= (tried[best][0], -tried[best][1]):
            return Mixed16(whole[2], [], whole[0], tried[0][0], sens, details(whole), len(layers), whole_model=True)
    return Mixed16(tried[best][2], [s.as_dict() for s in layers[:best]], tried[best][0], tried[0][0], sens,
                   details(whole), len(layers))


def check_int8(mode: str) -> str:
    """``mode`` if it is one of :data:`INT8_MODES`, else a one-line ValueError naming them."""
    if mode not in INT8_MODES:
        raise ValueError(f"int8 must be one of {', '.join(INT8_MODES)}, got {mode!r}")
    return mode


def build_int8(job: Any, fp32_model: bytes, representative: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """The int8 .tflite of ``job`` under its ``int8`` option (int8 I/O; the caller applies float I/O)
    and what was decided (for the model card). ``representative`` is in the file's input layout. With
    ``qat``, the fine-tuned model's fake-quant logits become the job's int8 reference
    (``job.cache["int8-reference"]``): the file is checked against the model it was made from."""
    mode = check_int8(job.options.int8)
    verbose = job.options.verbose
    details: dict[str, Any] = {"method": mode}
    if mode == "qat":
        from edgenas.exporters.convert import tflite_fp32_bytes
        from edgenas.exporters.qat import qat_finetune

        if job.train_data is None:
            raise ValueError("int8 = 'qat' fine-tunes on the training split, but this export has no dataset; give one "
                             "(--dataset)")
        res = qat_finetune(job.module, job.train_data, job.val_data(), job.representative, job.options.qat_epochs,
                           torch_device=job.options.torch_device)
        import torch

        job.cache["int8-reference"] = res.reference
        with torch.no_grad():
            fine_float = np.concatenate([res.module(torch.from_numpy(job.val_x[i:i + 256])).numpy()
                                         for i in range(0, len(job.val_x), 256)])
        top1 = res.reference.argmax(1)
        details["qat"] = {**res.record,
                          "top1_agreement_with_original": round(float(np.mean(top1 == job.torch_logits().argmax(1))),
                                                                4),
                          "fine_tuned_float_top1_agreement": round(float(np.mean(fine_float.argmax(1) == top1)), 4)}
        fp32_model = tflite_fp32_bytes(res.module, job.input_shape, nhwc=job.options.nhwc, verbose=verbose)
    if job.options.int8_bias_correction:
        from edgenas.exporters.bias_correction import bias_corrected

        fp32_model, details["bias_correction"] = bias_corrected(fp32_model, representative)
    ranges = mode if mode in RANGES else "minmax"
    qsvs = calibrate(fp32_model, representative, ranges, verbose=verbose, cache=job.cache)
    if mode == "mixed16":
        mixed = mixed16(fp32_model, representative, qsvs, verbose=verbose,
                        need_sensitivity=job.options.int8_sensitivity)
        if mixed.sensitivity is not None:
            job.cache["int8-sensitivity"] = mixed.sensitivity
        details["int16_ops"] = mixed.int16_ops
        details["int16_activations"] = "all" if mixed.whole_model else "selected" if mixed.int16_ops else "none"
        details["representative_top1_agreement"] = round(mixed.agreement, 4)
        details["representative_top1_agreement_minmax"] = round(mixed.minmax_agreement, 4)
        details["int16_candidates"] = mixed.candidates
        details["tried"] = mixed.tried
        return mixed.model, details
    if job.options.int8_sensitivity:
        job.cache["int8-sensitivity"] = sensitivity(fp32_model, representative, qsvs, verbose=verbose)
    return quantize(fp32_model, qsvs, verbose=verbose), details
