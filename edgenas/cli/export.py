"""``edgenas export``: a run's Pareto front (or chosen trials, or one arch) as verified artifacts."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from edgenas.errors import EdgenasError

COMMAND_HELP = "export searched models as verified ONNX / TFLite (fp32, int8) / TFLite Micro files + model cards"


def _formats(text: str) -> list[str]:
    from edgenas.exporters import exporter_names

    names = [f.strip() for f in text.split(",") if f.strip()]
    known = exporter_names()
    bad = [f for f in names if f not in known]
    if bad or not names:
        raise EdgenasError(f"--formats: unknown format(s) {', '.join(bad) or '(none given)'}; choose from "
                           f"{', '.join(known)}")
    # dependencies first (tflm builds on tflite-int8's quantized model), duplicates dropped
    return list(dict.fromkeys(names))


def export_command_line(argv: list[str]) -> str:
    return "edgenas " + " ".join(shlex.quote(a) for a in argv)


def run_export(
    run_dir: str | None, out: str | None, formats: list[str], train_epochs: int, trials: str = "pareto", *,
    space: str | None = None, arch: str | None = None, weights: str | None = None, dataset: str | None = None,
    space_options: dict[str, Any] | None = None, classes: int | None = None, in_channels: int | None = None,
    nhwc: bool = False, float_io: bool = False, opset: int = 21, seed: int = 0, measure_latency: bool = True,
    devices_dir: str | None = None, command: str = "", verbose: bool = False, threads: int = 1,
) -> int:
    """The export job behind the CLI (and ``[export]`` in a TOML job); returns the exit code: 0 when
    every model and format exported and verified, 1 when any failed (the rest are still written)."""
    import torch

    if threads < 1:
        raise EdgenasError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    from edgenas.exporters import ExportOptions
    from edgenas.exporters.pipeline import (
        ExportRequest,
        ExportSettings,
        export_models,
        requests_from_run,
        run_dataset_source,
        summary_json,
    )
    from edgenas.fileio import atomic_write
    from edgenas.latency.runtimes.base import file_stem
    from edgenas.spaces import Task, get_space

    if train_epochs < 1 and not weights:
        raise EdgenasError("--train-epochs must be >= 1 (or pass --weights)")
    if run_dir:
        if space or arch:
            raise EdgenasError("give either RUN_DIR or --space/--arch, not both")
        requests, config = requests_from_run(Path(run_dir), trials, devices_dir)
        dataset = dataset or run_dataset_source(config)
        out_dir = Path(out) if out else Path(run_dir) / "export"
    else:
        if not (space and arch):
            raise EdgenasError("export needs a RUN_DIR, or --space and --arch (with --out)")
        if not out:
            raise EdgenasError("--arch needs --out DIR")
        sp = get_space(space, **(space_options or {}))
        spec = sp.parse(arch)
        task = Task(num_classes=classes, in_channels=in_channels or 3) if (classes or in_channels) else Task()
        if weights and not Path(weights).is_file():
            raise EdgenasError(f"--weights {weights!r} not found")
        requests = [ExportRequest(sp, spec, task, f"{sp.name}-{file_stem(str(spec))[:10]}",
                                  weights=Path(weights) if weights else None)]
        out_dir = Path(out)
        if dataset is None and not weights:
            dataset = "digits" if sp.name == "tiny" else None
            if dataset is None:
                raise EdgenasError("--arch without --weights is trained: pass --dataset (e.g. digits, a folder, "
                                   "an .npz)")
    if weights and run_dir:
        if len(requests) != 1:
            raise EdgenasError(f"--weights fits one model, but {len(requests)} are chosen; pass --trials ID")
        requests[0].weights = Path(weights)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".edgenas-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise EdgenasError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    options = ExportOptions(nhwc=nhwc, int8_io=not float_io, opset=opset, measure_latency=measure_latency,
                            verbose=verbose)
    settings = ExportSettings(formats, train_epochs, seed, options, dataset, command, run_dir)
    print(f"exporting {len(requests)} model(s) as {', '.join(formats)} to {out_dir}", file=sys.stderr, flush=True)
    results = export_models(requests, out_dir, settings)
    atomic_write(out_dir / "export.json", (json.dumps(summary_json(results, settings), indent=1) + "\n").encode())
    print(summary_table(results))
    ok = sum(r.ok for r in results)
    print(f"\n{ok} of {len(results)} model(s) exported and verified; cards: {out_dir}/*/model_card.md"
          + ("" if ok == len(results) else f"; failures are listed in {out_dir / 'export.json'}"))
    return 0 if ok == len(results) else 1


def summary_table(results: list[Any]) -> str:
    """One row per model: each format's bytes, host latency and accuracy, or the first problem."""
    rows = []
    for r in results:
        row: dict[str, str] = {"model": r.request.name, "ok": "yes" if r.ok else "NO"}
        problem = r.error
        for a in r.artifacts:
            if a.ok:
                row[f"{a.format} KiB"] = f"{a.bytes / 1024:.1f}"
                if a.latency_ms is not None:
                    row[f"{a.format} ms"] = f"{a.latency_ms:.4g}"
                if a.accuracy is not None:
                    row[f"{a.format} acc"] = f"{a.accuracy:.4f}"
                if "tflm_arena_bytes" in a.extra:
                    row["arena KiB"] = f"{a.extra['tflm_arena_bytes'] / 1024:.1f}"
            elif problem is None:
                problem = f"{a.format}: {a.error}"
        if problem:
            row["problem"] = problem
        rows.append(row)
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols and k != "problem"]
    if any("problem" in row for row in rows):
        cols.append("problem")
    widths = {c: max(len(c), *(len(row.get(c, "-")) for row in rows)) for c in cols}
    lines = ["  ".join(c.rjust(widths[c]) if c != "problem" else c for c in cols)]
    for row in rows:
        lines.append("  ".join(row.get(c, "-").rjust(widths[c]) if c != "problem" else row.get(c, "")
                               for c in cols).rstrip())
    return "\n".join(lines)


def cmd_export(args: argparse.Namespace) -> int:
    from edgenas.cli.describe import parse_space_options
    from edgenas.cli.search import _quiet_third_party

    _quiet_third_party(args.verbose)
    return run_export(
        args.run_dir, args.out, _formats(args.formats), args.train_epochs, args.trials, space=args.space,
        arch=args.arch, weights=args.weights, dataset=args.dataset,
        space_options=parse_space_options(args.space_opt) if args.space else None, classes=args.classes,
        in_channels=args.in_channels, nhwc=args.nhwc, float_io=args.float_io, opset=args.opset, seed=args.seed,
        measure_latency=not args.no_latency, devices_dir=args.devices_dir, threads=args.threads,
        command=export_command_line(["export", *sys.argv[2:]]) if sys.argv[1:2] == ["export"] else args.command_line,
        verbose=args.verbose)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help=COMMAND_HELP, description=COMMAND_HELP)
    p.add_argument("run_dir", nargs="?", help="a search run folder (edgenas search --out)")
    p.add_argument("--trials", default="pareto", help="'pareto' (the feasible front, default) or trial numbers 3,17")
    p.add_argument("--formats", default="onnx,tflite,tflite-int8",
                   help="comma list of onnx, tflite, tflite-int8, tflm (default onnx,tflite,tflite-int8)")
    p.add_argument("--train-epochs", type=int, default=10, help="final training epochs on the run's dataset (10)")
    p.add_argument("--out", help="output folder (default RUN_DIR/export)")
    p.add_argument("--space", help="export one arch of this space (with --arch, --out)")
    p.add_argument("--arch", help="the arch string to export")
    p.add_argument("--space-opt", action="append", metavar="KEY=VALUE", help="space option (repeatable)")
    p.add_argument("--weights", help="a state_dict .pt to export instead of training")
    p.add_argument("--dataset", help="dataset to train on and verify with (default: the run's; digits for tiny)")
    p.add_argument("--classes", type=int, help="number of classes (with --arch)")
    p.add_argument("--in-channels", type=int, help="input channels (with --arch)")
    p.add_argument("--nhwc", action="store_true", help="TFLite files take NHWC input (camera layout)")
    p.add_argument("--float-io", action="store_true",
                   help="int8 TFLite files take/give float32 (QUANTIZE/DEQUANTIZE at the boundary)")
    p.add_argument("--opset", type=int, default=21, help="ONNX opset (default 21)")
    p.add_argument("--seed", type=int, default=0, help="training / calibration seed")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for training and conversion (default 1: small models gain little from "
                        "more, and a busy machine makes more threads far slower)")
    p.add_argument("--no-latency", action="store_true", help="do not time the artifacts on this host")
    p.add_argument("--devices-dir", help="user folder of device specs and tables (default ~/.edgenas)")
    p.add_argument("--command-line", default="", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="show third-party logs")
    p.set_defaults(func=cmd_export)
