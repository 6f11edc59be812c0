"""``tflm``: the full-integer ``.tflite`` for TensorFlow Lite Micro, with a C source / header pair and the
minimal tensor arena, verified in the real TFLM interpreter (``tflite-micro`` package) against LiteRT.

* The model is the ``tflite-int8`` model of the same job (built once, shared), normally with int8 input
  and output, carrying edgenas' metadata as one JSON entry but not the TFLite Support metadata and its
  labels zip, which no microcontroller reads (:mod:`edgenas.exporters.metadata`).
* :func:`measure_arena` finds the smallest arena TFLM accepts by bisection (to the byte) in a helper
  process: TFLM may crash, not fail, when an arena is far too small, so each probe runs in a forked
  child of that helper. It also reads TFLM's own split of that arena (head: planned activations; tail:
  persistent allocations) from the recording allocator.
* Companions ``<stem>.cc`` / ``<stem>.h``: the model as a 16-byte aligned byte array, its arena size and
  the input / output shape, scale and zero point, ready to compile into a TFLM application.
* Verification: the TFLM outputs on the validation split must have exactly LiteRT's int8 top-1 (the
  same file in both interpreters), and agree with torch as any int8 artifact must (>= 98% top-1).
  Not timeable: TFLM on this host says nothing about an MCU's latency.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgenas.errors import EdgenasError
from edgenas.exporters.base import Exporter, ExportJob, Parity, Runner, compare, register_exporter
from edgenas.exporters.tflite import int8_tflite, litert_runner, with_metadata

MAX_ARENA_BYTES = 1 << 30
"""Bisection gives up above this (no microcontroller has 1 GiB of SRAM)."""


# -- arena measurement (runs in a helper process) ---------------------------------------------------
def _probe(data: bytes, arena: int) -> bool:
    """Whether TFLM allocates ``data`` in an arena of ``arena`` bytes (in a forked child: crash-safe)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        try:
            from tflite_micro import runtime

            runtime.Interpreter.from_bytes(data, arena_size=arena)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _bisect(data: bytes) -> dict[str, Any]:
    lo, hi = 0, 1 << 14
    while not _probe(data, hi):
        lo, hi = hi, hi * 2
        if hi > MAX_ARENA_BYTES:
            return {"error": f"TFLite Micro cannot allocate this model in {MAX_ARENA_BYTES >> 20} MiB "
                             "(an op it does not support, or a model far too large for a microcontroller)"}
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _probe(data, mid):
            hi = mid
        else:
            lo = mid
    return {"arena_bytes": hi}


def _allocations(data: bytes, arena: int) -> dict[str, int]:
    """TFLM's head / tail split at ``arena`` bytes (its recording allocator's log, read from fd 2)."""
    from tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(data, arena_size=arena)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            it.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        log = sink.read().decode(errors="replace")
    out = {}
    for part in ("head", "tail"):
        m = re.search(rf"Arena allocation {part} (\d+) bytes", log)
        if m:
            out[f"{part}_bytes"] = int(m.group(1))
    return out


def _main(paths: list[str]) -> int:  # pragma: no cover - run as a helper process
    for path in paths:
        data = Path(path).read_bytes()
        result = _bisect(data)
        if "arena_bytes" in result:
            result.update(_allocations(data, result["arena_bytes"]))
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    return 0


def measure_arenas(models: list[bytes]) -> list[dict[str, int]]:
    """Minimal TFLM arena of each int8 model: ``arena_bytes``, and TFLM's ``head_bytes`` (planned
    activations and scratch) and ``tail_bytes`` (persistent allocations) at that size; one helper
    process for all of them."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, model in enumerate(models):
            p = Path(tmp) / f"m{i}.tflite"
            p.write_bytes(model)
            paths.append(str(p))
        proc = subprocess.run([sys.executable, "-m", "edgenas.exporters.tflm", *paths], capture_output=True,
                              text=True, timeout=600 + 60 * len(models),
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or len(lines) != len(models):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgenasError(f"TFLite Micro arena measurement failed: {tail}")
    out = []
    for line in lines:
        result = json.loads(line)
        if "error" in result:
            raise EdgenasError(result["error"])
        out.append({k: int(v) for k, v in result.items()})
    return out


def measure_arena(model: bytes) -> dict[str, int]:
    """:func:`measure_arenas` of one model."""
    return measure_arenas([model])[0]


# -- inference ----------------------------------------------------------------------------------
def tflm_runner(model: bytes, arena_bytes: int) -> Runner:
    """The TFLM interpreter as float NCHW -> float logits (int8 / float I/O and NHWC handled here)."""
    from tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(model, arena_size=arena_bytes)
    d, o = it.get_input_details(0), it.get_output_details(0)
    in_shape = tuple(int(v) for v in d["shape"])

    def quant(det: dict[str, Any]) -> tuple[float, int]:
        q = det.get("quantization_parameters") or {}
        scales, zeros = q.get("scales"), q.get("zero_points")
        return (float(scales[0]), int(zeros[0])) if scales is not None and len(scales) else (1.0, 0)

    (s_in, z_in), (s_out, z_out) = quant(d), quant(o)

    def run(x: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(len(x)):
            xi = x[i:i + 1]
            if xi.shape != in_shape:
                xi = xi.transpose(0, 2, 3, 1)  # NCHW -> NHWC
            if np.dtype(d["dtype"]) == np.int8:
                xi = np.clip(np.round(xi / s_in + z_in), -128, 127).astype(np.int8)
            else:
                xi = xi.astype(np.float32)
            it.set_input(np.ascontiguousarray(xi), 0)
            it.invoke()
            y = np.array(it.get_output(0))
            outs.append((y.astype(np.float32) - z_out) * s_out if y.dtype in (np.int8, np.int16)
                        else y.astype(np.float32))
        return np.concatenate(outs).reshape(len(x), -1)

    return run


def agrees_within_one_step(out: np.ndarray, ref: np.ndarray, step: float) -> bool:
    """Every logit of ``out`` within one quantization ``step`` of ``ref``'s. The top-1 can then differ
    only where ``ref``'s top-2 margin is two steps or less (each of the two logits moved one step): a
    tie that the rounding decides, not a different computation."""
    return float(np.max(np.abs(out - ref), initial=0.0)) <= step * 1.0001  # the step is a float32 scale


def _ident(stem: str) -> str:
    return re.sub(r"\W", "_", stem)


def c_source(model: bytes, stem: str) -> str:
    """The model as a C++ array (16-byte aligned, what TFLM requires of flatbuffer data)."""
    name = _ident(stem)
    rows = [", ".join(f"0x{b:02x}" for b in model[i:i + 16]) for i in range(0, len(model), 16)]
    body = ",\n  ".join(rows)
    return (f"// Generated by edgenas: the int8 TFLite Micro model {stem}.tflite ({len(model)} bytes).\n"
            f'#include "{stem}.h"\n\n'
            f"alignas(16) const unsigned char g_{name}[] = {{\n  {body}\n}};\n"
            f"const unsigned int g_{name}_len = {len(model)};\n")


def c_header(stem: str, arena: dict[str, int], io: dict[str, Any]) -> str:
    """Declarations, the minimal arena and the I/O quantisation of the model."""
    name = _ident(stem)
    guard = f"EDGENAS_{name.upper()}_H_"
    k = "k" + "".join(p.capitalize() for p in name.split("_"))
    lines = [
        f"// Generated by edgenas: the int8 TFLite Micro model {stem}.tflite.",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <cstddef>",
        "#include <cstdint>",
        "",
        f"extern const unsigned char g_{name}[];",
        f"extern const unsigned int g_{name}_len;",
        "",
        "// Smallest tensor arena the TFLite Micro interpreter accepted (bisection, reference kernels, 64-bit",
        "// host build: a 32-bit MCU needs no more; optimised kernels may add scratch buffers).",
        f"constexpr size_t {k}ArenaBytes = {arena['arena_bytes']};",
    ]
    for key, label in (("input", "Input"), ("output", "Output")):
        d = io[key]
        shape = d["shape"]
        lines.append(f"constexpr int {k}{label}Shape[{len(shape)}] = {{{', '.join(map(str, shape))}}};")
        if "scale" in d:
            lines.append(f"constexpr float {k}{label}Scale = {d['scale']!r}f;")
            lines.append(f"constexpr int {k}{label}ZeroPoint = {d['zero_point']};")
    lines += ["", f"#endif  // {guard}", ""]
    return "\n".join(lines)


@register_exporter
class TflmExporter(Exporter):
    name = "tflm"
    suffix = ".tflite"
    stem = "model_tflm"
    runtime = "tflite-micro"
    kind = "quantized"
    size_field = "size_bytes_int8"
    summary = ("TFLite Micro: the int8 .tflite + C source/header, minimal arena by bisection, verified in the "
               "TFLM interpreter against LiteRT")
    timeable = False
    requires = ("ai_edge_litert", "litert_torch", "ai_edge_quantizer", "tflite_micro")

    def build(self, job: ExportJob) -> bytes:
        return with_metadata(int8_tflite(job), job, micro=True)

    def _arena(self, path: Path, job: ExportJob) -> dict[str, int]:
        """The measured minimal arena of the file at ``path`` (once per job and file content)."""
        data = path.read_bytes()
        key = "tflm-arena:" + hashlib.sha256(data).hexdigest()
        return job.cached(key, lambda: measure_arena(data))

    def runner(self, path: Path, job: ExportJob) -> Runner:
        return tflm_runner(path.read_bytes(), self._arena(path, job)["arena_bytes"])

    def reference(self, job: ExportJob) -> np.ndarray:
        """LiteRT's outputs for the same int8 file (set by :meth:`verify`)."""
        return job.cache["tflm-reference"]

    def verify(self, path: Path, job: ExportJob) -> tuple[Parity, np.ndarray]:
        """TFLM's logits within one output quantization step of LiteRT's int8 reference kernels on every
        validation example, and the same top-1 except where that step decides a tie (TFLM implements
        the reference arithmetic; measured on a demo model, 2 of 400 examples had one logit one step
        apart), plus the int8 rule against torch so that the artifact stands on its own. LiteRT's
        optimised kernels (what ``tflite-int8`` is timed with) round differently and may flip a near-tie:
        their top-1 agreement is reported beside it, not required."""
        from edgenas.exporters.tflite import io_details

        ref = job.cache["tflm-reference"] = litert_runner(path, job.options.threads, reference_kernels=True)(job.val_x)
        out = self.runner(path, job)(job.val_x)
        p = compare(self.kind, out, ref)
        torch_p = compare(self.kind, out, job.int8_reference())
        optimised = compare(self.kind, out, litert_runner(path, job.options.threads)(job.val_x))
        job.cache["tflm-torch-agreement"] = torch_p.top1_agreement
        job.cache["tflm-litert-optimised-agreement"] = optimised.top1_agreement
        step = float(io_details(path)["output"].get("scale", 0.0))  # 0: float output, no step allowed
        p.passed = agrees_within_one_step(out, ref, step) and torch_p.passed
        p.threshold = (f"logits within one output step ({step:.3g}) of LiteRT int8 reference kernels, top-1 identical "
                       f"but for ties within it (and {torch_p.threshold} with torch)")
        return p, out

    def companions(self, path: Path, job: ExportJob) -> dict[str, bytes]:
        from edgenas.exporters.tflite import io_details

        data = path.read_bytes()
        stem = path.stem
        header = c_header(stem, self._arena(path, job), io_details(data))
        return {f"{stem}.h": header.encode(), f"{stem}.cc": c_source(data, stem).encode()}

    def details(self, path: Path, job: ExportJob) -> dict[str, Any]:
        from edgenas.exporters.tflite import io_details

        arena = self._arena(path, job)
        d = io_details(path)
        d["input"]["layout"] = "NHWC" if job.options.nhwc else "NCHW"
        d["tflm_arena_bytes"] = arena["arena_bytes"]
        if "head_bytes" in arena:
            d["tflm_arena_head_bytes"] = arena["head_bytes"]
            d["tflm_arena_tail_bytes"] = arena.get("tail_bytes")
        if "tflm-torch-agreement" in job.cache:
            d["torch_top1_agreement"] = job.cache["tflm-torch-agreement"]
        if "tflm-litert-optimised-agreement" in job.cache:
            d["litert_optimised_top1_agreement"] = job.cache["tflm-litert-optimised-agreement"]
        return d


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main(sys.argv[1:]))


# -- many models at once (arena validation) -----------------------------------------------------
def batch_int8_tflite(modules: list[Any], input_shapes: list[tuple[int, int, int]], calibration: int = 8,
                      seed: int = 0, verbose: bool = False) -> list[bytes]:
    """Full-integer .tflite files (int8 I/O, NCHW input) of several eval-mode modules, converted in one
    litert-torch call as independent branches of one model (conversion time is mostly per call) and
    quantized together on seeded standard-normal calibration inputs, then cut apart per branch. Each
    branch keeps exactly its own operators and tensors: what converting it alone produces."""
    import litert_torch
    import torch
    from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager

    from edgenas.exporters.convert import _min_max_qsvs, compact_tflite, fold_batchnorm, quiet
    from edgenas.latency.runtimes.litert import Branches
    from edgenas.latency.runtimes.tflite_split import split_branches

    rng = np.random.default_rng(seed)
    args = tuple(torch.zeros(1, *s) for s in input_shapes)
    with quiet(verbose), torch.no_grad():
        # BatchNorm folded and min/max ranges from the calibration profiler, as the int8 exporter does: the
        # same file, converted and calibrated several times faster than the quantizer's default
        branches = Branches([fold_batchnorm(m) for m in modules]).eval()
        fp32 = bytes(litert_torch.convert(branches, args).model_content())
        rules = recipe.static_wi8_ai8()
        q = quantizer.Quantizer(bytearray(fp32))
        q.load_quantization_recipe(rules)
        from ai_edge_litert.interpreter import Interpreter

        sig = Interpreter(model_content=fp32).get_signature_list()
        key = next(iter(sig))
        names = sorted(sig[key]["inputs"], key=lambda n: int(n.split("_")[-1]))
        samples = [{n: rng.standard_normal((1, *s)).astype(np.float32) for n, s in zip(names, input_shapes)}
                   for _ in range(calibration)]
        manager = recipe_manager.RecipeManager()
        manager.load_quantization_recipe(rules)
        calib = _min_max_qsvs(calibrator, fp32, {key: samples}, manager)
        model = bytes(q.quantize(calib, enable_progress_report=False, enable_progress_bar=False).quantized_model)
    return [compact_tflite(b) for b in split_branches(compact_tflite(model), len(modules))]


def cached_batch_int8_tflite(space: Any, specs: list[Any], cache_dir: Path | None = None) -> list[bytes]:
    """:func:`batch_int8_tflite` of ``specs`` (random init, seeded calibration), kept in ``cache_dir``
    (default ``$EDGENAS_TEST_CACHE`` or ``~/.cache/edgenas-tests``) under a key of the specs, their
    modules' structure (``repr``) and the converter versions: arena checks (tests, benchmarks/tflm_arena.py)
    rerun on the same machine without reconverting (~10 s per spec)."""
    from importlib.metadata import version

    from edgenas.fileio import atomic_write

    modules = [space.build(s) for s in specs]
    h = hashlib.sha256()
    for part in [*map(str, specs), *map(repr, modules),
                 *(version(p) for p in ("torch", "litert-torch", "ai-edge-quantizer"))]:
        h.update(part.encode())
    root = cache_dir or Path(os.environ.get("EDGENAS_TEST_CACHE", Path.home() / ".cache" / "edgenas-tests"))
    files = [root / "tflm-arena" / f"{h.hexdigest()[:16]}-{i}.tflite" for i in range(len(specs))]
    if all(f.is_file() for f in files):
        return [f.read_bytes() for f in files]
    blobs = batch_int8_tflite(modules, [space.input_shape(s) for s in specs])
    for f, b in zip(files, blobs):
        atomic_write(f, b)
    return blobs
