"""Native benchmark tools in on-device kits: LiteRT's ``benchmark_model`` and ONNX Runtime's
``onnxruntime_perf_test``, for phones and boards that cannot run Python.

``edgenas profile kit --runner native`` writes, next to the kit's models, ``native_runner.sh`` (POSIX
sh, run on the device: it times every model with the tool and keeps each raw log under ``logs/``),
``native_adb.sh`` (run on the host: pushes the kit and the tool with adb, runs the device script,
pulls the logs back), ``native.conf`` (the tool's arguments, from the device spec's threads and
delegate / execution-provider options) and ``native_models.txt`` (model -> log). ``edgenas lut
import-kit KIT`` then reads the raw logs with :func:`parse_log`.

Parsers follow the tools' own printing code and published logs:

* ``benchmark_model`` (TensorFlow Lite 2.x and LiteRT): the ``INFO:``-prefixed log of
  ``benchmark_model.cc`` / ``benchmark_tflite_model.cc`` (``Graph: [...]``, ``Num threads: [...]``,
  ``count=... first=... curr=... min=... max=... avg=... std=...`` per run phase, ``Inference timings in
  us: ...``) and, with ``--enable_op_profiling=true``, the per-operator tables of the stats calculator
  in both its layouts (``tensorflow/core/util/stats_calculator.cc`` with a ``[start]`` column,
  ``xla/tsl/util/stats_calculator.cc`` without). TF 1.x's ``Average inference timings in us:`` lines
  are rejected as another tool version.
* ``onnxruntime_perf_test`` (``-m times -r N -I -s``): ``performance_runner.cc``'s summary with
  ``Average inference time cost: X ms`` or, in later releases, ``Average inference time cost total: X
  ms``, and the ``-s`` percentiles (``P50 Latency: X s``). The pre-1.0 ``Average time cost:X ms`` /
  ``P50 Latency is X sec`` format is rejected as another tool version.

Every problem (a truncated log, a log of another model or kit, another tool or tool version, a tool
failure) is an :class:`EdgenasError` naming the file and line.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgenas.errors import EdgenasError
from edgenas.latency.devices import DeviceSpec
from edgenas.latency.table import MAX_MEASURED_MS

TOOLS = {"litert": "benchmark_model", "onnxruntime": "onnxruntime_perf_test"}
HEADER = "# edgenas-native-kit"
SCRIPT = "native_runner.sh"
ADB_SCRIPT = "native_adb.sh"
CONF = "native.conf"
MODEL_LIST = "native_models.txt"
LOG_DIR = "logs"
LITERT_DELEGATES = {
    "xnnpack": ["--use_xnnpack=true"],
    "cpu": ["--use_xnnpack=false"],
    "none": ["--use_xnnpack=false"],
    "gpu": ["--use_gpu=true"],
    "nnapi": ["--use_nnapi=true"],
    "hexagon": ["--use_hexagon=true"],
}
ORT_LEVELS = {"disable": "0", "basic": "1", "extended": "2", "all": "99"}
Z90 = 1.2815515655446004  # standard normal 90% quantile: std ~ (P90 - P50) / Z90


# -- the tool's command line --------------------------------------------------------------------
@dataclass(frozen=True)
class NativeSettings:
    """How the device script calls the tool: its name, arguments (all but the model) and the flag
    that carries the model path (``--graph=`` for benchmark_model; ORT takes it last, bare)."""

    tool: str
    threads: int
    args: tuple[str, ...]
    model_prefix: str

    def command(self, model: str) -> list[str]:
        return [self.tool, *self.args, f"{self.model_prefix}{model}"]

    def to_json(self) -> dict[str, Any]:
        return {"tool": self.tool, "threads": self.threads, "args": list(self.args), "model_prefix": self.model_prefix}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NativeSettings:
        return cls(str(data["tool"]), int(data["threads"]), tuple(map(str, data["args"])), str(data["model_prefix"]))


def native_settings(device: DeviceSpec, warmup: int = 10, repeats: int = 50, max_seconds: float = 10.0,
                    profile_ops: bool = True) -> NativeSettings:
    """The tool invocation for ``device``: its threads, LiteRT delegate (``runtime_options.delegate``:
    xnnpack (default), cpu, gpu, nnapi, hexagon) or ORT execution provider and graph optimisation level,
    plus ``runtime_options.native_args`` (extra arguments, verbatim)."""
    opts = device.runtime_options or {}
    extra = opts.get("native_args", [])
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        raise EdgenasError(f"device {device.name!r}: runtime_options.native_args must be a list of strings")
    if device.runtime == "litert":
        delegate = str(opts.get("delegate", "xnnpack")).lower()
        if delegate not in LITERT_DELEGATES:
            raise EdgenasError(f"device {device.name!r}: delegate {delegate!r} is not one of "
                               f"{', '.join(LITERT_DELEGATES)}")
        args = [f"--num_threads={device.threads}", *LITERT_DELEGATES[delegate], f"--warmup_runs={warmup}",
                "--warmup_min_secs=0", f"--num_runs={repeats}", "--min_secs=0", f"--max_secs={max_seconds:g}"]
        if profile_ops:
            args.append("--enable_op_profiling=true")
        return NativeSettings(TOOLS["litert"], device.threads, (*args, *extra), "--graph=")
    if device.runtime == "onnxruntime":
        level = str(opts.get("graph_optimization_level", "all"))
        if level not in ORT_LEVELS:
            raise EdgenasError(f"device {device.name!r}: graph_optimization_level {level!r} is not one of "
                               f"{', '.join(ORT_LEVELS)}")
        ep = str(opts.get("execution_provider", "cpu"))
        args = ["-e", ep, "-m", "times", "-r", str(repeats), "-x", str(device.threads), "-o", ORT_LEVELS[level],
                "-I", "-s"]
        return NativeSettings(TOOLS["onnxruntime"], device.threads, (*args, *extra), "")
    raise EdgenasError(f"device {device.name!r}: no native tool for runtime {device.runtime!r}")


def log_name(model_file: str) -> str:
    """``models/<stem>.tflite`` -> ``logs/<stem>.log``."""
    return f"{LOG_DIR}/{Path(model_file).stem}.log"


def write_native_scripts(out_dir: Path, manifest: dict[str, Any], settings: NativeSettings) -> list[Path]:
    """The device script, the adb wrapper (copied from ``edgenas.devices``), their configuration and
    the model list. Returns the files written."""
    items = [*manifest["entries"], *manifest.get("networks", [])]
    lines = [f"{it['file']} {log_name(it['file'])}" for it in items]
    for it in items:
        if any(c.isspace() for c in it["file"]):
            raise EdgenasError(f"kit model path {it['file']!r} contains whitespace")
    conf = (
        f"# written by 'edgenas profile kit --runner native' for device {manifest['device']}\n"
        f"KIT_ID={shlex.quote(manifest['kit_id'])}\n"
        f"TOOL_NAME={shlex.quote(settings.tool)}\n"
        f"TOOL_ARGS={shlex.quote(' '.join(settings.args))}\n"
        f"MODEL_PREFIX={shlex.quote(settings.model_prefix)}\n"
    )
    written = []
    for name, text in ((CONF, conf), (MODEL_LIST, "\n".join(lines) + "\n")):
        (out_dir / name).write_text(text)
        written.append(out_dir / name)
    for name in (SCRIPT, ADB_SCRIPT):
        src = resources.files("edgenas.devices") / name
        dst = out_dir / name
        dst.write_text(src.read_text())
        dst.chmod(0o755)
        written.append(dst)
    return written


# -- parsed logs ---------------------------------------------------------------------------------
@dataclass
class OpStat:
    """One row of benchmark_model's per-operator ``Run Order`` table (times in ms per run)."""

    node_type: str
    name: str
    first_ms: float
    avg_ms: float
    times_called: int
    delegate_internal: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"type": self.node_type, "name": self.name, "first_ms": self.first_ms, "avg_ms": self.avg_ms,
                "times_called": self.times_called, **({"delegate_internal": True} if self.delegate_internal else {})}


@dataclass
class ToolRun:
    """What one raw log says: the model it timed and the steady-state statistics (ms)."""

    tool: str
    fmt: str
    model: str | None
    mean_ms: float
    std_ms: float
    p50_ms: float
    n: int
    threads: int | None = None
    kit_id: str | None = None
    ops: list[OpStat] = field(default_factory=list)
    std_estimated: bool = False

    def entry(self) -> dict[str, Any]:
        return {"mean_ms": self.mean_ms, "std_ms": self.std_ms, "p50_ms": self.p50_ms, "n": self.n}


class LogError(EdgenasError):
    """A raw log that cannot be imported: says which file and line, and why."""

    def __init__(self, path: Path | str, line: int, msg: str) -> None:
        super().__init__(f"{path}:{line}: {msg}")
        self.path, self.line, self.msg = str(path), line, msg


_PREFIX = re.compile(r"^(INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG): ")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_COUNT = re.compile(rf"^count=(\d+)(?: first=({_NUM}))? curr=({_NUM})(\(all same\))?"
                    rf"(?: min=({_NUM}) max=({_NUM}) avg=({_NUM}) std=({_NUM}))?\s*$")
_TIMINGS = re.compile(rf"^Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
                      rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})\s*$")
_PARAM = re.compile(r"^(?P<name>[^\[\]]+?): \[(?P<value>.*)\]\s*$")
_RUNNING = re.compile(r"^Running benchmark for at least (\d+) iterations and at least (" + _NUM + r") seconds")
_HEADER_KV = re.compile(r"(\w+)=(\S*)")
_SECTION = re.compile(r"^=+ (.+?) =+\s*$")


@dataclass
class _Line:
    no: int
    raw: str
    text: str  # the line with a log-severity prefix removed
    severity: str


def _lines(text: str) -> list[_Line]:
    out = []
    for i, raw in enumerate(text.splitlines(), 1):
        m = _PREFIX.match(raw)
        out.append(_Line(i, raw, raw[m.end():] if m else raw, m.group(1) if m else ""))
    return out


def _header(lines: list[_Line], path: Path) -> tuple[dict[str, str], int | None, int | None]:
    """The kit script's header fields, its exit code and the footer's line (None without a header)."""
    head: dict[str, str] = {}
    if lines and lines[0].raw.startswith(HEADER + " "):
        head = dict(_HEADER_KV.findall(lines[0].raw[len(HEADER):]))
        if "model" not in head or "kit" not in head:
            raise LogError(path, 1, f"malformed edgenas header {lines[0].raw.strip()!r}")
    for ln in reversed(lines):
        if ln.raw.startswith(HEADER + " exit="):
            try:
                return head, int(ln.raw.split("exit=", 1)[1]), ln.no
            except ValueError:
                raise LogError(path, ln.no, f"malformed exit line {ln.raw.strip()!r}") from None
    return head, None, None


def _fnum(s: str | None) -> float:
    return float(s) if s is not None else math.nan


def _check_ms(value_ms: float, path: Path, line: int, what: str, positive: bool = True) -> float:
    """A time parsed from a log, checked: finite, > 0 (>= 0 when not ``positive``) and at most
    :data:`~edgenas.latency.table.MAX_MEASURED_MS` (a larger one is a corrupt or edited log)."""
    ok = math.isfinite(value_ms) and (value_ms > 0 if positive else value_ms >= 0)
    if not ok:
        raise LogError(path, line, f"{what} is {value_ms!r} ms; a measured time must be finite and "
                                   f"{'> 0' if positive else '>= 0'} (an edited or corrupt log)")
    if value_ms > MAX_MEASURED_MS:
        raise LogError(path, line, f"{what} is {value_ms:g} ms, above the plausible {MAX_MEASURED_MS:g} ms per "
                                   f"model (an edited or corrupt log)")
    return value_ms


def _tool_error(lines: list[_Line]) -> _Line | None:
    return next((ln for ln in lines if ln.severity == "ERROR" or ln.raw.startswith(("FATAL", "Error:"))), None)


def parse_benchmark_model(text: str, path: Path | str = "<log>") -> ToolRun:
    """Parse one ``benchmark_model`` log (see module docstring)."""
    path = Path(path)
    lines = _lines(text)
    head, exit_code, footer = _header(lines, path)
    body = [ln for ln in lines if not ln.raw.startswith(HEADER) and not ln.raw.startswith("# ")]
    for ln in body:
        if ln.text.startswith("Average inference timings in us:"):
            raise LogError(path, ln.no, "benchmark_model output of TensorFlow 1.x ('Average inference timings in "
                                        "us: ...'); use a TensorFlow Lite 2.x / LiteRT benchmark_model")
        if "tensorflow/tools/benchmark/benchmark_model.cc" in ln.raw:
            raise LogError(path, ln.no, "a log of TensorFlow's (non-Lite) benchmark_model, not LiteRT's")
        if ln.text.startswith(("Session creation time cost", "Average inference time cost")):
            raise LogError(path, ln.no, "an onnxruntime_perf_test log, but this kit times LiteRT models with "
                                        "benchmark_model")
    if exit_code not in (None, 0):
        err = _tool_error(body)
        where = err.no if err else footer or len(lines)
        raise LogError(path, where, f"benchmark_model failed (exit {exit_code})"
                       + (f": {err.text.strip()}" if err else ""))
    params: dict[str, tuple[str, int]] = {}
    running: list[int] = []
    counts: list[tuple[re.Match[str], int]] = []
    timings: tuple[re.Match[str], int] | None = None
    prefixed = any(ln.severity == "INFO" for ln in body)
    i = 0
    profile_start = None
    while i < len(body):
        ln = body[i]
        t = ln.text
        if t.startswith("Inference timings in us:"):
            m = _TIMINGS.match(t)
            if not m:
                raise LogError(path, ln.no, f"unrecognised 'Inference timings in us' line {t.strip()!r} "
                                            "(another benchmark_model version?)")
            timings = (m, ln.no)
        elif t.startswith("count="):
            m = _COUNT.match(t)
            if not m:
                raise LogError(path, ln.no, f"unrecognised run statistics {t.strip()!r} (another benchmark_model "
                                            "version?)")
            counts.append((m, ln.no))
        elif _RUNNING.match(t):
            running.append(ln.no)
        elif t.startswith("Operator-wise Profiling Info for Regular Benchmark Runs:"):
            profile_start = i
        elif profile_start is None and (pm := _PARAM.match(t)):
            params.setdefault(pm.group("name").strip(), (pm.group("value"), ln.no))
        i += 1
    if not body or (not params and timings is None and not counts):
        raise LogError(path, len(lines) or 1, "not a benchmark_model log (no parameters, no run statistics)")
    graph = params.get("Graph")
    last = lines[-1].no if lines else 1
    if timings is None:
        if len(counts) < 2:
            raise LogError(path, last, "truncated: the log ends before the timed runs finished (no 'Inference "
                                       "timings in us' line)")
        raise LogError(path, last, "truncated: no 'Inference timings in us' line")
    if len(counts) < 2:
        raise LogError(path, timings[1], "expected a warm-up and a regular 'count=...' line before the timings")
    reg, reg_line = counts[1]
    n = int(reg.group(1))
    if n <= 0:
        raise LogError(path, reg_line, "no timed runs (count=0; was --dry_run set?)")
    curr = _fnum(reg.group(3))
    avg_us = _fnum(reg.group(7)) if reg.group(7) else curr
    std_us = _fnum(reg.group(8)) if reg.group(8) else 0.0
    inf_avg = _fnum(timings[0].group(4))
    if not math.isclose(inf_avg, avg_us, rel_tol=1e-3, abs_tol=0.6):
        raise LogError(path, timings[1], f"'Inference (avg): {timings[0].group(4)}' disagrees with the regular "
                                         f"runs' avg={reg.group(7)} (line {reg_line}): a spliced or edited log")
    want_profile = params.get("Enable op profiling", ("0", 0))[0].strip() in ("1", "true") or \
        "--enable_op_profiling=true" in head.get("args", "")
    ops: list[OpStat] = []
    fmt = "benchmark_model (TF Lite 2.x / LiteRT" + (", INFO-prefixed)" if prefixed else ")")
    if want_profile or profile_start is not None:
        if profile_start is None:
            raise LogError(path, last, "truncated: op profiling was requested but the log has no 'Operator-wise "
                                       "Profiling Info for Regular Benchmark Runs' section")
        ops, layout = _parse_profile(body[profile_start + 1:], path, last)
        fmt = fmt[:-1] + f", op profile {layout})"
    if head and footer is None:
        raise LogError(path, last, "truncated: the kit script's closing 'exit=' line is missing (the run was "
                                   "interrupted or the log was cut)")
    threads = None
    for name in ("Num threads", "#threads used for CPU inference"):
        if name in params:
            try:
                threads = int(params[name][0])
                break
            except ValueError:
                raise LogError(path, params[name][1], f"'{name}: [{params[name][0]}]' is not a number") from None
    mean_ms = _check_ms(avg_us / 1000.0, path, reg_line, "the regular runs' average")
    std_ms = _check_ms(std_us / 1000.0, path, reg_line, "the regular runs' std", positive=False)
    return ToolRun("benchmark_model", fmt, graph[0] if graph else None, mean_ms, std_ms, mean_ms, n,
                   threads, head.get("kit"), ops)


def _parse_profile(lines: list[_Line], path: Path, last: int) -> tuple[list[OpStat], str]:
    """The ``Run Order`` table(s) of the regular-runs profile: the primary graph's, plus the delegate's
    internal one when present. Each table is checked complete against its ``N nodes observed``."""
    ops: list[OpStat] = []
    layout = ""
    delegate = False
    rows: list[OpStat] | None = None  # rows of the current graph's Run Order table
    summaries = 0
    i = 0
    while i < len(lines):
        ln = lines[i]
        t = ln.text.strip()
        sm = _SECTION.match(t)
        if t.startswith("Delegate internal:"):
            delegate = True
        elif sm and sm.group(1) == "Run Order":
            if i + 1 >= len(lines) or "[node type]" not in lines[i + 1].raw:
                raise LogError(path, lines[i + 1].no if i + 1 < len(lines) else ln.no,
                               "truncated or unknown per-operator table (no '[node type]' header row)")
            cols = [c.strip() for c in lines[i + 1].raw.split("\t") if c.strip()]
            if cols[:1] != ["[node type]"] or not {"[first]", "[avg ms]", "[times called]"} <= set(cols) \
                    or cols[-1] != "[Name]":
                raise LogError(path, lines[i + 1].no, f"unknown per-operator table layout {cols}")
            layout = "with [start] column" if "[start]" in cols else "without [start] column"
            rows = []
            i += 2
            while i < len(lines) and lines[i].raw.strip():
                cells = lines[i].raw.split("\t")[1:]
                if len(cells) < len(cols):
                    raise LogError(path, lines[i].no, f"truncated per-operator row {lines[i].raw.strip()!r}")
                rec = dict(zip(cols[:-1], (c.strip() for c in cells)))
                try:
                    op = OpStat(rec["[node type]"], "\t".join(cells[len(cols) - 1:]).strip(),
                                float(rec["[first]"]), float(rec["[avg ms]"]), int(float(rec["[times called]"])),
                                delegate)
                except (KeyError, ValueError, OverflowError):
                    raise LogError(path, lines[i].no, f"malformed per-operator row {lines[i].raw.strip()!r}") \
                        from None
                _check_ms(op.first_ms, path, lines[i].no, f"operator {op.name!r} [first]", positive=False)
                _check_ms(op.avg_ms, path, lines[i].no, f"operator {op.name!r} [avg ms]", positive=False)
                if op.times_called < 0:
                    raise LogError(path, lines[i].no, f"operator {op.name!r} is called {op.times_called} times")
                rows.append(op)
                i += 1
            if i >= len(lines):
                raise LogError(path, last, "truncated: the log ends inside the per-operator table")
            continue
        elif sm:  # another table (Top by Computation Time, Summary by node type): skip its rows
            i += 1
            while i < len(lines) and lines[i].raw.strip():
                i += 1
            continue
        elif t.endswith("nodes observed"):
            try:
                n = int(t.split()[0])
            except ValueError:
                raise LogError(path, ln.no, f"malformed summary line {t!r}") from None
            if rows is None:
                raise LogError(path, ln.no, "a profile summary without its 'Run Order' table")
            if n != len(rows):
                raise LogError(path, ln.no, f"the per-operator table lists {len(rows)} nodes but the summary says "
                                            f"{n}: a truncated or edited table")
            ops += rows
            rows = None
            summaries += 1
        i += 1
    if rows is not None or not summaries:
        raise LogError(path, last, "truncated: the per-operator profile ends before its 'N nodes observed' summary")
    return ops, layout


_ORT_LINES = {
    "session_s": re.compile(rf"^Session creation time cost: ?({_NUM}) s\s*$"),
    "first_ms": re.compile(rf"^First inference time cost: ?({_NUM}) ms\s*$"),
    "total_s": re.compile(rf"^Total inference time cost: ?({_NUM}) s\s*$"),
    "requests": re.compile(r"^Total inference requests: ?(\d+)\s*$"),
    "avg_ms": re.compile(rf"^Average inference time cost(?: total)?: ?({_NUM}) ms\s*$"),
    "min_s": re.compile(rf"^Min Latency: ({_NUM}) s\s*$"),
    "max_s": re.compile(rf"^Max Latency: ({_NUM}) s\s*$"),
    "p50_s": re.compile(rf"^P50 Latency: ({_NUM}) s\s*$"),
    "p90_s": re.compile(rf"^P90 Latency: ({_NUM}) s\s*$"),
    "p999_s": re.compile(rf"^P999 Latency: ({_NUM}) s\s*$"),
}
_ORT_OLD = re.compile(r"^(Total time cost:|Total iterations:|Average time cost:|P\d+ Latency is )")


def parse_ort_perf_test(text: str, path: Path | str = "<log>") -> ToolRun:
    """Parse one ``onnxruntime_perf_test -m times -r N -I -s`` log (see module docstring)."""
    path = Path(path)
    lines = _lines(text)
    head, exit_code, footer = _header(lines, path)
    body = [ln for ln in lines if not ln.raw.startswith("# ")]
    last = lines[-1].no if lines else 1
    for ln in body:
        if _ORT_OLD.match(ln.text):
            raise LogError(path, ln.no, f"onnxruntime_perf_test output of a pre-1.0 release ({ln.text.strip()!r}); "
                                        "use onnxruntime_perf_test 1.x")
        if ln.text.startswith(("Inference timings in us:", "Graph: [", "Loaded model")):
            raise LogError(path, ln.no, "a benchmark_model log, but this kit times ONNX models with "
                                        "onnxruntime_perf_test")
    if exit_code not in (None, 0):
        err = next((ln for ln in body if "error" in ln.raw.lower() or "fail" in ln.raw.lower()), None)
        raise LogError(path, err.no if err else footer or last,
                       f"onnxruntime_perf_test failed (exit {exit_code})" + (f": {err.raw.strip()}" if err else ""))
    got: dict[str, tuple[float, int]] = {}
    threads = None
    fmt = ""
    for ln in body:
        t = ln.text.strip()
        if t.startswith("Setting intra_op_num_threads to"):
            try:
                threads = int(t.rsplit(" ", 1)[1])
            except ValueError:
                raise LogError(path, ln.no, f"malformed line {t!r}") from None
            continue
        for key, rx in _ORT_LINES.items():
            if key in got:
                continue
            m = rx.match(t)
            if m:
                got[key] = (float(m.group(1)), ln.no)
                if key == "avg_ms":
                    fmt = ("onnxruntime_perf_test 1.x ('Average inference time cost total')" if " total:" in t
                           else "onnxruntime_perf_test 1.x ('Average inference time cost')")
                break
        else:
            if t.startswith(("Average inference time cost", "P50 Latency", "Total inference requests")):
                raise LogError(path, ln.no, f"unrecognised line {t!r} (another onnxruntime_perf_test version?)")
    if not got:
        raise LogError(path, last, "not an onnxruntime_perf_test log (no timing summary)")
    for key, what in (("avg_ms", "'Average inference time cost'"), ("requests", "'Total inference requests'"),
                      ("p50_s", "the -s statistics ('P50 Latency')"), ("p999_s", "the last statistics line "
                                                                               "('P999 Latency')")):
        if key not in got:
            raise LogError(path, last, f"truncated: no {what} line")
    if head and footer is None:
        raise LogError(path, last, "truncated: the kit script's closing 'exit=' line is missing (the run was "
                                   "interrupted or the log was cut)")
    n = int(got["requests"][0])
    if n <= 0:
        raise LogError(path, got["requests"][1], "no timed runs")
    for key, scale in (("avg_ms", 1.0), ("p50_s", 1e3), ("p90_s", 1e3), ("min_s", 1e3), ("max_s", 1e3)):
        if key in got:
            _check_ms(got[key][0] * scale, path, got[key][1], key.split("_")[0].replace("avg", "the average"))
    p50, p90 = got["p50_s"][0] * 1e3, got.get("p90_s", got["p50_s"])[0] * 1e3
    lo, hi = got.get("min_s", (p50 / 1e3, 0))[0] * 1e3, got.get("max_s", (p50 / 1e3, 0))[0] * 1e3
    mean = got["avg_ms"][0]
    if not (lo <= p50 <= p90 <= hi * (1 + 1e-6) + 1e-9):
        raise LogError(path, got["p50_s"][1], "latency statistics are not ordered (min <= P50 <= P90 <= max): an "
                                              "edited or spliced log")
    return ToolRun("onnxruntime_perf_test", fmt, head.get("model"), mean, max(p90 - p50, 0.0) / Z90, p50, n, threads,
                   head.get("kit"), std_estimated=True)


def parse_log(path: Path, expect_tool: str, expect_model: str, expect_kit: str | None = None,
              expect_threads: int | None = None) -> ToolRun:
    """Read and check one raw log of the kit: the right tool, model, kit and thread count."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        raise EdgenasError(f"{path}: log not found") from None
    if not text.strip():
        raise LogError(path, 1, "empty log (the tool never ran or its output was lost)")
    lines = text.splitlines()
    head = dict(_HEADER_KV.findall(lines[0][len(HEADER):])) if lines[0].startswith(HEADER + " ") else {}
    if head.get("tool") and head["tool"] != expect_tool:
        raise LogError(path, 1, f"a log of {head['tool']}, but this kit's tool is {expect_tool}")
    run = parse_benchmark_model(text, path) if expect_tool == TOOLS["litert"] else parse_ort_perf_test(text, path)
    if run.kit_id is not None and expect_kit is not None and run.kit_id != expect_kit:
        raise LogError(path, 1, f"a log of kit {run.kit_id}, not of this kit ({expect_kit})")
    if head and head.get("model") != expect_model:
        raise LogError(path, 1, f"a log of model {head.get('model')}, not {expect_model}")
    if run.model is None:
        if expect_tool == TOOLS["onnxruntime"]:
            raise LogError(path, 1, "no edgenas header: onnxruntime_perf_test does not print the model it timed, "
                                    "so this log cannot be matched to a kit model (run native_runner.sh)")
    elif Path(run.model).name != Path(expect_model).name:
        no = next((i for i, ln in enumerate(lines, 1) if "Graph: [" in ln), 1)
        raise LogError(path, no, f"the log times {run.model}, not this kit's {expect_model}")
    if expect_threads is not None and run.threads is not None and run.threads != expect_threads:
        no = next((i for i, ln in enumerate(lines, 1) if "threads" in ln.lower()), 1)
        raise LogError(path, no, f"the log ran {run.threads} thread(s), the kit's device spec says {expect_threads}")
    return run


def results_from_logs(kit_dir: Path, manifest: dict[str, Any], log_dir: Path | None = None) -> dict[str, Any]:
    """The kit results (the runner's ``results.json`` format, plus per-operator profiles) from the raw
    logs of every model. Parses every log first and raises for the first bad one, naming how many more
    are bad, so one import reports all problems and writes nothing."""
    from edgenas.latency.kit import RESULTS_FORMAT

    native = manifest.get("native")
    if not isinstance(native, dict):
        raise EdgenasError(f"{kit_dir / 'manifest.json'}: not a native kit (written without --runner native)")
    settings = NativeSettings.from_json(native)
    log_dir = Path(log_dir) if log_dir is not None else Path(kit_dir) / LOG_DIR
    items = [("entries", it) for it in manifest["entries"]] + [("networks", it) for it in manifest.get("networks", [])]
    runs: dict[str, ToolRun] = {}
    errors: list[EdgenasError] = []
    missing: list[str] = []
    for _, it in items:
        path = log_dir / Path(log_name(it["file"])).name
        if not path.exists():
            missing.append(str(path))
            continue
        try:
            runs[it["key"]] = parse_log(path, settings.tool, it["file"], manifest.get("kit_id"), settings.threads)
        except EdgenasError as exc:
            errors.append(exc)
    if errors:
        more = f" (and {len(errors) - 1} more bad log(s))" if len(errors) > 1 else ""
        raise EdgenasError(f"{errors[0]}{more}; nothing was imported")
    if missing:
        raise EdgenasError(f"{len(missing)} of {len(items)} kit models have no log, e.g. {missing[0]}; run "
                           f"{SCRIPT} on the device again (it skips models already timed); nothing was imported")
    fmts = sorted({r.fmt for r in runs.values()})
    keys = {k: [it["key"] for s, it in items if s == k] for k in ("entries", "networks")}
    return {
        "format": RESULTS_FORMAT, "version": 1, "kit": manifest.get("kit_id"), "device": manifest.get("device"),
        "space": manifest.get("space"),
        "runtime": {"name": manifest.get("runtime"), "version": "; ".join(fmts), "threads": settings.threads,
                    "options": manifest.get("runtime_options") or {}},
        "host": {"runner": "native", "tool": settings.tool, "args": list(settings.args)},
        "protocol": {"tool": settings.tool, "args": list(settings.args),
                     "statistic": "benchmark_model: mean of the regular runs (it prints no median)"
                     if settings.tool == TOOLS["litert"] else "onnxruntime_perf_test: P50 of the -r runs; std "
                     "estimated as (P90 - P50) / 1.2816"},
        "entries": {k: runs[k].entry() for k in keys["entries"]},
        "networks": {k: runs[k].entry() for k in keys["networks"]},
        "network_units": {n["key"]: n.get("units", []) for n in manifest.get("networks", [])},
        "network_features": {n["key"]: n.get("features", {}) for n in manifest.get("networks", [])},
        "op_profiles": {k: [o.to_json() for o in r.ops] for k, r in runs.items() if r.ops},
        "logs": {it["key"]: f"{LOG_DIR}/{Path(log_name(it['file'])).name}" for _, it in items},
    }


def profile_summary(results: dict[str, Any]) -> dict[str, Any] | None:
    """From the per-operator profiles: the share of the networks' operator time by node type (a
    delegate's internal operators when it reports them, else the graph's nodes), and the per-invoke
    time outside the graph's nodes (whole-model mean minus their sum), median over the unit models."""
    profiles = results.get("op_profiles") or {}
    if not profiles:
        return None

    def node_ms(op: dict[str, Any]) -> float:
        return op["avg_ms"] * op.get("times_called", 1)

    by_type: dict[str, float] = {}
    for k in results.get("networks", {}):
        ops = profiles.get(k, [])
        inner = [o for o in ops if o.get("delegate_internal")]
        for op in inner or ops:
            by_type[op["type"]] = by_type.get(op["type"], 0.0) + node_ms(op)
    gaps = sorted(results["entries"][k]["mean_ms"] - sum(node_ms(o) for o in ops if not o.get("delegate_internal"))
                  for k, ops in profiles.items() if k in results["entries"])
    total = sum(by_type.values())
    return {
        "network_op_share": {t: v / total for t, v in sorted(by_type.items(), key=lambda kv: -kv[1])} if total else {},
        "unit_outside_ops_ms_median": gaps[len(gaps) // 2] if gaps else None,
        "profiled_models": len(profiles),
    }
