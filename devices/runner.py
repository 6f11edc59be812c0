#!/usr/bin/env python3
"""Standalone on-device latency runner for edgenas kits.

Copy a kit folder (written by ``edgenas profile kit``) to the board and run::

    python3 runner.py KIT_DIR [--out results.json] [--threads N] [--warmup 10] [--repeats 50]

It needs only Python 3.8+, numpy and ONE runtime: ``onnxruntime`` for ``.onnx`` kits, ``ai_edge_litert``
(or, as a fallback, the older ``tflite_runtime``) for ``.tflite`` kits. It never imports torch or
edgenas. It times every model listed in ``KIT_DIR/manifest.json`` and writes a results JSON that
``edgenas lut import-kit results.json`` turns into a latency table.

edgenas itself uses :func:`time_model` from this file to measure on the host, so the host and the
board share one timing procedure: random float32 input set once, ``warmup`` untimed runs, then
``repeats`` individually timed runs (``time.perf_counter``), stopping early after ``max_seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

KIT_FORMAT = "edgenas-kit"
RESULTS_FORMAT = "edgenas-kit-results"
VERSION = 1


def runtime_version(runtime: str) -> str:
    if runtime == "onnxruntime":
        import onnxruntime

        return onnxruntime.__version__
    try:
        import ai_edge_litert

        return "ai_edge_litert " + getattr(ai_edge_litert, "__version__", "unknown")
    except ImportError:
        import tflite_runtime  # type: ignore[import-not-found]

        return "tflite_runtime " + getattr(tflite_runtime, "__version__", "unknown")


_ROUTINE_STDERR = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)
LITERT_DELEGATES = ("xnnpack", "none", "cpu")
"""LiteRT CPU configurations this runner can time (``runtime_options.delegate``, as for native kits):
``xnnpack``, the interpreter's default (XNNPACK takes every op it supports, the rest run on the
built-in kernels); ``none`` (or ``cpu``, the native kits' name for it), the built-in kernels only
(``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``)."""


def delegate_name(options: Optional[Dict[str, Any]]) -> str:
    """The LiteRT delegate runtime options name (default ``xnnpack``, lower case; ``cpu`` is read as
    ``none``), unchecked: a remote device's gpu/nnapi/hexagon is applied by its kit's native tool."""
    delegate = str((options or {}).get("delegate", "xnnpack")).lower()
    return "none" if delegate == "cpu" else delegate


def litert_delegate(options: Optional[Dict[str, Any]]) -> str:
    """:func:`delegate_name`, with a ValueError for one this runner cannot run (GPU/NNAPI/Hexagon need a
    native kit)."""
    delegate = delegate_name(options)
    if delegate not in LITERT_DELEGATES:
        raise ValueError(f"litert delegate must be one of {', '.join(LITERT_DELEGATES)} here, got {delegate!r} "
                         f"(gpu, nnapi and hexagon are timed on the device through a native kit)")
    return delegate


def _litert_interpreter(path: str, threads: int, delegate: str = "xnnpack") -> Any:
    """The interpreter in the CPU configuration ``delegate`` (see :data:`LITERT_DELEGATES`), tensors
    allocated, with its routine C++ notice (the XNNPACK delegate line, once per process) dropped at the
    file-descriptor level; anything else it writes to stderr is passed on."""
    try:
        from ai_edge_litert import interpreter as lite
    except ImportError:
        from tflite_runtime import interpreter as lite  # type: ignore[import-not-found]
    import tempfile

    kwargs: Dict[str, Any] = {}
    if delegate == "none":
        kwargs["experimental_op_resolver_type"] = lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            it = lite.Interpreter(model_path=path, num_threads=threads, **kwargs)
            it.allocate_tensors()  # the delegate (and its notice) may come only now
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            other = [line for line in sink.read().decode(errors="replace").splitlines()
                     if line.strip() and line.strip() not in _ROUTINE_STDERR]
            if other:
                sys.stderr.write("\n".join(other) + "\n")
    return it


def make_runner(path: str, runtime: str, threads: int, options: Optional[Dict[str, Any]] = None
                ) -> Tuple[Callable[[], Any], List[Tuple[int, ...]]]:
    """Load a model; return (a zero-argument function running one inference, its input shapes)."""
    rng = np.random.default_rng(0)
    if runtime == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        level = (options or {}).get("graph_optimization_level", "all")
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feeds = {}
        shapes = []
        for inp in sess.get_inputs():
            shape = tuple(int(d) for d in inp.shape)
            shapes.append(shape)
            feeds[inp.name] = rng.standard_normal(shape).astype(np.float32)
        names = [o.name for o in sess.get_outputs()]
        return (lambda: sess.run(names, feeds)), shapes
    if runtime == "litert":
        it = _litert_interpreter(path, threads, litert_delegate(options))
        shapes = []
        for d in it.get_input_details():
            shape = tuple(int(v) for v in d["shape"])
            shapes.append(shape)
            dtype = d["dtype"]
            if np.issubdtype(dtype, np.integer):
                info = np.iinfo(dtype)
                x = rng.integers(info.min, info.max, size=shape, dtype=dtype)
            else:
                x = rng.standard_normal(shape).astype(dtype)
            it.set_tensor(d["index"], x)
        return it.invoke, shapes
    raise ValueError(f"unknown runtime {runtime!r} (expected onnxruntime or litert)")


def time_callable(run: Callable[[], Any], warmup: int = 10, repeats: int = 50,
                  max_seconds: float = 10.0) -> List[float]:
    """Per-run latencies in ms of ``run()`` (see module docstring for the procedure). Runtimes that bring
    their own loader (plug-ins) time through this, so every runtime shares one procedure."""
    for _ in range(warmup):
        run()
    samples: List[float] = []
    deadline = time.perf_counter() + max_seconds
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        samples.append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() > deadline and len(samples) >= 5:
            break
    return samples


def time_model(path: str, runtime: str, threads: int = 1, warmup: int = 10, repeats: int = 50,
               max_seconds: float = 10.0, options: Optional[Dict[str, Any]] = None) -> List[float]:
    """Per-run latencies in ms of one model file (see module docstring for the procedure)."""
    run, _ = make_runner(path, runtime, threads, options)
    return time_callable(run, warmup, repeats, max_seconds)


def time_callables_paired(run: Callable[[], Any], ref: Callable[[], Any], warmup: int = 10,
                          repeats: int = 50, max_seconds: float = 10.0,
                          group: int = 5) -> Tuple[List[float], List[float]]:
    """Per-run latencies in ms of ``run()`` and of a reference ``ref()``, run in alternating groups of
    ``group`` runs (reference x group, model x group, ...) so that both see the same machine speed.

    On a host whose speed drifts between levels (frequency changes, a VM sharing its physical core: seen
    here at 1.6x for seconds at a time on an idle machine) the reference's median tells at
    which speed each timing window ran, so a caller can keep only windows run at full speed. Groups
    rather than single runs: a reference run right after a large model starts with cold caches, and so
    does a model run right after the reference; each side's median over its group is a warm run. The
    reference gets one group more than the model (a closing one): every model group has a reference group
    on each side. Both lists are whole groups (the model's may exceed ``repeats`` by less than a group)."""
    for _ in range(warmup):
        ref()
        run()
    samples: List[float] = []
    ref_samples: List[float] = []
    deadline = time.perf_counter() + max_seconds
    group = max(1, group)

    def timed_group(fn: Callable[[], Any], out: List[float]) -> None:
        for _ in range(group):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)

    while len(samples) < repeats:
        timed_group(ref, ref_samples)
        timed_group(run, samples)
        if time.perf_counter() > deadline and len(samples) >= 5:
            break
    timed_group(ref, ref_samples)  # a closing reference group, so the last model group is bracketed too
    return samples, ref_samples


def time_model_paired(path: str, ref_path: str, runtime: str, threads: int = 1, warmup: int = 10,
                      repeats: int = 50, max_seconds: float = 10.0, options: Optional[Dict[str, Any]] = None,
                      group: int = 5) -> Tuple[List[float], List[float]]:
    """:func:`time_callables_paired` of a model file and a reference model file in one runtime."""
    run, _ = make_runner(path, runtime, threads, options)
    ref, _ = make_runner(ref_path, runtime, threads, options)
    return time_callables_paired(run, ref, warmup, repeats, max_seconds, group)


def summarize(samples: List[float]) -> Dict[str, Any]:
    xs = sorted(samples)
    n = len(xs)
    mean = sum(xs) / n
    std = (sum((x - mean) ** 2 for x in xs) / (n - 1)) ** 0.5 if n > 1 else 0.0
    p50 = xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])
    return {"mean_ms": mean, "std_ms": std, "p50_ms": p50, "n": n}


def run_kit(kit_dir: Path, threads: Optional[int], warmup: int, repeats: int, max_seconds: float,
            progress: bool = True) -> Dict[str, Any]:
    manifest = json.loads((kit_dir / "manifest.json").read_text())
    if manifest.get("format") != KIT_FORMAT:
        raise SystemExit(f"{kit_dir}/manifest.json is not an edgenas kit manifest")
    runtime = manifest["runtime"]
    threads = threads or int(manifest.get("threads", 1))
    options = manifest.get("runtime_options") or {}
    results: Dict[str, Any] = {}
    items = manifest["entries"] + manifest.get("networks", [])
    t_start = time.time()
    for i, item in enumerate(items, 1):
        samples = time_model(str(kit_dir / item["file"]), runtime, threads, warmup, repeats, max_seconds, options)
        results[item["key"]] = summarize(samples)
        if progress:
            eta = (time.time() - t_start) / i * (len(items) - i)
            sys.stderr.write(f"\r[{i}/{len(items)}] {item['key'][:60]:60s} eta {eta:5.0f}s")
            sys.stderr.flush()
    if progress:
        sys.stderr.write("\n")
    return {
        "format": RESULTS_FORMAT,
        "version": VERSION,
        "kit": manifest.get("kit_id"),
        "device": manifest.get("device"),
        "space": manifest.get("space"),
        "runtime": {"name": runtime, "version": runtime_version(runtime), "threads": threads, "options": options},
        "host": {"platform": platform.platform(), "machine": platform.machine(), "cores": os.cpu_count(),
                 "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "protocol": {"warmup": warmup, "repeats": repeats, "max_seconds": max_seconds},
        "entries": {e["key"]: results[e["key"]] for e in manifest["entries"]},
        "networks": {n["key"]: results[n["key"]] for n in manifest.get("networks", [])},
        "network_units": {n["key"]: n.get("units", []) for n in manifest.get("networks", [])},
        "network_features": {n["key"]: n.get("features", {}) for n in manifest.get("networks", [])},
    }


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Time the models of an edgenas kit on this device.")
    ap.add_argument("kit", help="kit folder holding manifest.json")
    ap.add_argument("--out", default=None, help="results JSON (default KIT/results.json)")
    ap.add_argument("--threads", type=int, default=None, help="override the kit's thread count")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--max-seconds", type=float, default=10.0, help="time cap per model")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    kit = Path(args.kit)
    if not (kit / "manifest.json").exists():
        print(f"runner: {kit}/manifest.json not found; pass the kit folder", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else kit / "results.json"
    res = run_kit(kit, args.threads, args.warmup, args.repeats, args.max_seconds, progress=not args.quiet)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {len(res['entries'])} unit and {len(res['networks'])} network timings to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
