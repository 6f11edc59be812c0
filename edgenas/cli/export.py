"""``edgenas export``: a run's Pareto front (or chosen trials, or one arch) as verified artifacts.

The flags build an :class:`~edgenas.jobs.ExportConfig` and the source (a run folder, or a space and an
arch); :func:`edgenas.exporters.pipeline.run_export` does the work."""

from __future__ import annotations

import argparse
import shlex
import sys

from edgenas.cli.common import add_model_arguments, add_torch_device_argument, flag_message, space_options
from edgenas.errors import EdgenasError
from edgenas.jobs import ConfigError, ExportConfig, SpaceConfig, TaskConfig, table_from_dict

COMMAND_HELP = "export searched models as verified ONNX / TFLite (fp32, int8) / TFLite Micro files + model cards"


def export_config(args: argparse.Namespace) -> ExportConfig:
    """The ``[export]`` table the flags describe (checked as a job file's would be)."""
    return table_from_dict(ExportConfig, {
        "formats": args.formats, "train_epochs": args.train_epochs, "trials": args.trials, "out": args.out,
        "nhwc": args.nhwc, "float_io": args.float_io, "seed": args.seed, "threads": args.threads,
        "dataset": args.dataset, "opset": args.opset, "torch_device": args.torch_device,
        "init": args.init, "int8": args.int8, "int8_sensitivity": args.int8_sensitivity,
        "int8_bias_correction": args.int8_bias_correction,
        "qat_epochs": args.qat_epochs,
    }, strict=False)


def cmd_export(args: argparse.Namespace) -> int:
    from edgenas.exporters.pipeline import export_report, run_export
    from edgenas.logs import quiet_third_party

    quiet_third_party(args.verbose)
    command = "edgenas " + " ".join(shlex.quote(a) for a in ["export", *sys.argv[2:]]) \
        if sys.argv[1:2] == ["export"] else args.command_line
    try:
        cfg = export_config(args)
        space = SpaceConfig(args.space, space_options(args)) if args.space else None
        task = TaskConfig(num_classes=args.classes, in_channels=args.in_channels)
    except ConfigError as exc:
        raise EdgenasError(flag_message(exc)) from None
    if args.space_opt and not args.space:
        raise EdgenasError("--space-opt needs --space")
    result = run_export(cfg, run_dir=args.run_dir, space=space, arch=args.arch, task=task, weights=args.weights,
                        measure_latency=not args.no_latency, devices_dir=args.devices_dir, command=command,
                        verbose=args.verbose)
    print(export_report(result))
    return 0 if result.ok else 1


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help=COMMAND_HELP, description=COMMAND_HELP)
    p.add_argument("run_dir", nargs="?", help="a search run folder (edgenas search --out)")
    p.add_argument("--trials", default="pareto",
                   help="'pareto' (the feasible front, default), 'pareto:N' (N models spread along it, both ends "
                        "kept) or trial numbers 3,17")
    p.add_argument("--formats", default="onnx,tflite,tflite-int8",
                   help="comma list of onnx, tflite, tflite-int8, tflm (default onnx,tflite,tflite-int8)")
    p.add_argument("--train-epochs", type=int, default=10, help="final training epochs on the run's dataset (10)")
    p.add_argument("--out", help="output folder (default RUN_DIR/export)")
    p.add_argument("--space", help="export one arch of this space (with --arch, --out)")
    p.add_argument("--arch", help="the arch string to export")
    p.add_argument("--space-opt", action="append", metavar="KEY=VALUE", help="space option (repeatable)")
    add_model_arguments(p)
    p.add_argument("--weights", help="a state_dict .pt to export instead of training")
    p.add_argument("--dataset", help="dataset to train on and verify with (default: the run's; digits for tiny)")
    p.add_argument("--classes", type=int, help="number of classes (with --arch)")
    p.add_argument("--in-channels", type=int, help="input channels (with --arch)")
    p.add_argument("--nhwc", action="store_true", help="TFLite files take NHWC input (camera layout)")
    p.add_argument("--float-io", action="store_true",
                   help="int8 TFLite files take/give float32 (QUANTIZE/DEQUANTIZE at the boundary)")
    p.add_argument("--int8", default="minmax",
                   help="how int8 files are made: minmax (default), percentile, mse (activation ranges), mixed16 "
                        "(int16 activations on the most sensitive ops), qat (quantization-aware fine-tuning)")
    p.add_argument("--int8-sensitivity", action="store_true",
                   help="rank the ops by how far quantizing each alone moves the logits (on the int8 card)")
    p.add_argument("--int8-bias-correction", action="store_true",
                   help="correct each layer's bias for the mean shift of its int8 weight rounding (any --int8 mode)")
    p.add_argument("--qat-epochs", type=int, default=2, help="fine-tuning epochs of --int8 qat (default 2)")
    p.add_argument("--opset", type=int, default=21, help="ONNX opset (default 21)")
    p.add_argument("--seed", type=int, default=0, help="training / calibration seed")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for training and conversion (default 1: small models gain little from "
                        "more, and a busy machine makes more threads far slower)")
    p.add_argument("--init", metavar="supernet:PATH",
                   help="start from a supernet's weights (edgenas supernet train) and fine-tune --train-epochs "
                        "(0: export the inherited weights as they are)")
    add_torch_device_argument(p, "the final training", "auto")
    p.add_argument("--no-latency", action="store_true", help="do not time the artifacts on this host")
    p.add_argument("--devices-dir", help="user folder of device specs and tables (default ~/.edgenas)")
    p.add_argument("--command-line", default="", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="show third-party logs")
    p.set_defaults(func=cmd_export)
