"""Stand-ins for the native benchmark tools and adb, for the native-kit round trip tests.

``benchmark_model`` and ``onnxruntime_perf_test`` are not installable here, so these stand-ins *really
time* the model they are given (through the Python LiteRT / ONNX Runtime interpreters) and print the
result in the tool's own log format (the format of the recorded fixtures in tests/fixtures/native):
the import then fits and validates the device model on real, consistent timings. The benchmark_model
stand-in reports a fully delegated model (one ``TfLiteXNNPackDelegate`` node, as XNNPACK's full
delegation looks in the per-operator table). ``adb`` maps ``push``/``pull``/``shell`` onto this
machine's file system and ``sh``.

    python native_tools.py benchmark_model --graph=models/x.tflite --num_threads=1 ...
    python native_tools.py onnxruntime_perf_test -e cpu -m times -r 50 -x 1 -I -s models/x.onnx
    python native_tools.py adb [-s SERIAL] shell|push|pull ...
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path


def _field(width: int, v: object) -> str:
    """stats_calculator's InitField: a tab, then right-aligned, fixed with 3 decimals."""
    return "\t" + (f"{v:.3f}" if isinstance(v, float) else str(v)).rjust(width)


def _times(run, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    w, r = [], []
    for n, out in ((warmup, w), (repeats, r)):
        for _ in range(n):
            t0 = time.perf_counter()
            run()
            out.append((time.perf_counter() - t0) * 1e6)
    return w, r


def _stat(xs: list[float]) -> str:
    n = len(xs)
    avg = sum(xs) / n
    std = int((sum(x * x for x in xs) / n - avg * avg) ** 0.5) if n > 1 else 0
    ints = [int(x) for x in xs]
    return f"count={n} first={ints[0]} curr={ints[-1]} min={min(ints)} max={max(ints)} avg={avg:.6g} std={std}"


def benchmark_model(argv: list[str]) -> int:
    opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    graph = opts["graph"]
    threads = int(opts.get("num_threads", 1))
    warmup, repeats = int(opts.get("warmup_runs", 1)), int(opts.get("num_runs", 50))
    P = "INFO: "
    print(P + "STARTING!")
    print(P + "Log parameter values verbosely: [0]")
    print(P + f"Min num runs: [{repeats}]")
    print(P + f"Num threads: [{threads}]")
    print(P + f"Min warmup runs: [{warmup}]")
    print(P + f"Graph: [{graph}]")
    print(P + f"Enable op profiling: [{1 if opts.get('enable_op_profiling') == 'true' else 0}]")
    print(P + f"#threads used for CPU inference: [{threads}]")
    print(P + f"Use xnnpack: [{1 if opts.get('use_xnnpack') == 'true' else 0}]")
    if not Path(graph).exists():
        print(f"ERROR: Could not open '{graph}'.", file=sys.stderr)
        print("ERROR: Failed to mmap model " + graph, file=sys.stderr)
        return 1
    from ai_edge_litert.interpreter import Interpreter

    t0 = time.perf_counter()
    it = Interpreter(model_path=graph, num_threads=threads)
    it.allocate_tensors()
    init_us = int((time.perf_counter() - t0) * 1e6)
    print(P + f"Loaded model {graph}")
    print(P + "Initialized TensorFlow Lite runtime.")
    print(P + "Created TensorFlow Lite XNNPACK delegate for CPU.")
    print(P + "Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.")
    print(P + f"The input model file size (MB): {Path(graph).stat().st_size / 1e6:.6g}")
    print(P + f"Initialized session in {init_us / 1000:.6g}ms.")
    w, r = _times(it.invoke, warmup, repeats)
    for n, xs in ((warmup, w), (repeats, r)):
        print(P + f"Running benchmark for at least {n} iterations and at least 0 seconds but terminate if exceeding "
                  f"10 seconds.")
        print(P + _stat(xs) + "\n")
    avg = sum(r) / len(r)
    print(P + f"Inference timings in us: Init: {init_us}, First inference: {int(w[0]) if w else int(r[0])}, "
              f"Warmup (avg): {sum(w) / max(len(w), 1):.6g}, Inference (avg): {avg:.6g}")
    if opts.get("enable_op_profiling") == "true":
        hdr = (_field(40, "[node type]") + _field(9, "[first]") + _field(9, "[avg ms]") + _field(8, "[%]")
               + _field(8, "[cdf%]") + _field(10, "[mem KB]") + _field(9, "[times called]") + "\t[Name]")
        row = (_field(40, "TfLiteXNNPackDelegate") + _field(9, r[0] / 1000) + _field(9, avg / 1000)
               + _field(7, 100.0) + "%" + _field(7, 100.0) + "%" + _field(10, 0.0) + _field(9, 1) + "\t[output]:0")
        print(P + "Operator-wise Profiling Info for Regular Benchmark Runs:")
        for title in ("Run Order", "Top by Computation Time"):
            print(f"============================== {title} ==============================")
            print(hdr)
            print(row + "\n")
        print("Number of nodes executed: 1")
        print("============================== Summary by node type ==============================")
        print(_field(40, "[Node type]") + _field(9, "[count]") + _field(10, "[avg ms]") + _field(11, "[avg %]")
              + _field(11, "[cdf %]") + _field(10, "[mem KB]") + _field(10, "[times called]"))
        print(_field(40, "TfLiteXNNPackDelegate") + _field(9, 1) + _field(10, avg / 1000) + _field(10, 100.0) + "%"
              + _field(10, 100.0) + "%" + _field(10, 0.0) + _field(9, 1) + "\n")
        print("Timings (microseconds): " + _stat(r))
        print("Memory (bytes): count=0")
        print("1 nodes observed\n")
    return 0


def onnxruntime_perf_test(argv: list[str]) -> int:
    import numpy as np
    import onnxruntime as ort

    model = argv[-1]
    args = dict(zip(argv[:-1], [*argv[1:-1], ""]))
    repeats, threads = int(args.get("-r", 1000)), int(args.get("-x", 0))
    print(f"Setting intra_op_num_threads to {threads}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    t0 = time.perf_counter()
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    created = time.perf_counter() - t0
    feeds = {i.name: np.random.default_rng(0).standard_normal([int(d) for d in i.shape]).astype(np.float32)
             for i in sess.get_inputs()}
    t0 = time.perf_counter()
    sess.run(None, feeds)
    first_ms = int((time.perf_counter() - t0) * 1e3)
    start = time.perf_counter()
    _, r = _times(lambda: sess.run(None, feeds), 0, repeats)
    run_s = time.perf_counter() - start
    s = sorted(x / 1e6 for x in r)
    total = sum(s)
    print(f"Session creation time cost: {created:.6g} s")
    print(f"First inference time cost: {first_ms} ms")
    print(f"Total inference time cost: {total:.6g} s")
    print(f"Total inference requests: {len(s)}")
    print(f"Average inference time cost: {total / len(s) * 1000:.6g} ms")
    print(f"Total inference run time: {run_s:.6g} s")
    print(f"Number of inferences per second: {len(s) / run_s:.6g} ")
    print("Avg CPU usage: 97 %")
    print("Peak working set size: 31383552 bytes")
    print("Avg CPU usage:97\nPeak working set size:31383552")
    print(f"Runs:{len(s)}")
    n = len(s)
    for name, q in (("Min", None), ("Max", None), ("P50", 0.5), ("P90", 0.9), ("P95", 0.95), ("P99", 0.99),
                    ("P999", 0.999)):
        v = s[0] if name == "Min" else s[-1] if name == "Max" else s[int(n * q)]
        print(f"{name} Latency: {v:.6g} s")
    return 0


def adb(argv: list[str]) -> int:
    if argv[:1] == ["-s"]:
        argv = argv[2:]
    cmd, rest = argv[0], argv[1:]
    if cmd == "shell":
        return subprocess.run(["sh", "-c", " ".join(rest)]).returncode
    if cmd in ("push", "pull"):
        src, dst = Path(rest[0]), Path(rest[1])
        target = dst / src.name if dst.is_dir() else dst
        if src.is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True)
        else:
            shutil.copy2(src, target)
        return 0
    print(f"adb stand-in: unsupported command {cmd}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    tool, args = sys.argv[1], sys.argv[2:]
    tools = {"benchmark_model": benchmark_model, "onnxruntime_perf_test": onnxruntime_perf_test, "adb": adb}
    sys.exit(tools[tool](args))
