"""``edgenas supernet train | import | show``: weight-sharing supernets (see :mod:`edgenas.supernet`).

``train`` maps its flags to a job's ``[supernet]`` table (:class:`~edgenas.jobs.SupernetConfig`) and runs
:func:`edgenas.supernet.run.run_supernet`; ``import`` turns Once-for-All's weights into a checkpoint;
``show`` prints a checkpoint's metadata."""

from __future__ import annotations

import argparse
import json

from edgenas.cli.common import add_space_arguments, add_torch_device_argument, flag_message, space_options
from edgenas.errors import EdgenasError
from edgenas.jobs import ConfigError, JobConfig, SpaceConfig, SupernetConfig, TaskConfig, table_from_dict
from edgenas.options import parse_kv

COMMAND_HELP = ("train a weight-sharing supernet of a space (largest + random subnets, in-place distillation), "
                "or show one")


def supernet_job(args: argparse.Namespace) -> JobConfig:
    """The job the flags describe: the space and task, and the ``[supernet]`` table."""
    try:
        table = table_from_dict(SupernetConfig, {
            "out": args.out, "dataset": args.dataset, "epochs": args.epochs, "seed": args.seed,
            "resume": args.resume, "torch_device": args.torch_device, "kernel_transform": args.kernel_transform,
            "init": args.init, "options": parse_kv(args.opt, "--opt"),
        }, strict=False)
        return JobConfig(space=SpaceConfig(args.space, space_options(args)),
                         task=TaskConfig(num_classes=args.classes, in_channels=args.in_channels,
                                         resolution=args.resolution), supernet=table)
    except ConfigError as exc:
        raise EdgenasError(flag_message(exc)) from None


def cmd_supernet_train(args: argparse.Namespace) -> int:
    from edgenas.logs import quiet_third_party
    from edgenas.supernet.run import run_supernet

    quiet_third_party(args.verbose)
    job = supernet_job(args)
    job.space.build()  # a bad space or option: one line, before any work
    run_supernet(job, progress=not args.no_progress)
    return 0


def cmd_supernet_show(args: argparse.Namespace) -> int:
    from edgenas.supernet.run import checkpoint_summary

    info = checkpoint_summary(args.checkpoint)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    task = info.get("task") or {}
    print(f"supernet of {info['space']} {json.dumps(info.get('space_options') or {})}")
    print(f"task: {task.get('num_classes')} classes, {task.get('in_channels')} input channel(s)")
    print(f"trained: {info.get('epoch', 0)} of {info.get('epochs', 0)} epoch(s), seed {info.get('seed')}, "
          f"kernel transform {'on' if info.get('kernel_transform') else 'off'}")
    if info.get("source"):
        print(f"from: {info['source']}")
    ds = info.get("dataset") or {}
    if ds:
        print(f"dataset: {ds.get('dataset')} ({ds.get('n_train')} training examples, split sha1 "
              f"{str(ds.get('split_sha1'))[:12]})")
    for h in (info.get("history") or [])[-3:]:
        print(f"  epoch {h['epoch']}: loss largest {h['loss_largest']:.4f}, subnets {h['loss_subnets']:.4f}, "
              f"{h['seconds']:.1f} s")
    return 0


def cmd_supernet_import(args: argparse.Namespace) -> int:
    from edgenas.supernet.run import import_supernet

    if args.classes is not None and args.classes < 1:
        raise EdgenasError(f"--classes must be >= 1, got {args.classes}")
    info = import_supernet(args.checkpoint, args.out, args.format, args.classes)
    print(f"wrote {args.out}: supernet of {info['space']} {json.dumps(info['space_options'])}, "
          f"{info['task']['num_classes']} classes, from {info['source']}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("supernet", help=COMMAND_HELP, description=COMMAND_HELP)
    ssub = p.add_subparsers(dest="supernet_command", metavar="SUBCOMMAND", parser_class=type(p))
    ssub.required = True

    t = ssub.add_parser("train", help="train (or --resume) a supernet checkpoint")
    add_space_arguments(t)
    t.add_argument("--dataset", help="digits (default), synthetic[:...], an image folder or a .npz")
    t.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    t.add_argument("--out", required=True, help="the checkpoint file, written after every epoch")
    t.add_argument("--resume", action="store_true",
                   help="continue --out from its last epoch (or reuse it when complete); same settings only")
    t.add_argument("--seed", type=int, default=0, help="seed of initialisation, example order and subnets")
    add_torch_device_argument(t, "the training", "auto")
    t.add_argument("--init", metavar="CKPT", help="start from this supernet checkpoint (e.g. imported from OFA)")
    t.add_argument("--kernel-transform", action="store_true",
                   help="learn OFA's kernel transformation matrices (7->5->3) instead of plain centre crops")
    t.add_argument("--opt", action="append", metavar="KEY=VALUE",
                   help="training option: batch_size, lr, momentum, weight_decay, nesterov, label_smoothing, "
                        "n_random (random subnets per step, default 2), distill, temperature, train_samples, "
                        "smallest_prob (probability a step trains the smallest subnet, default 0; 1: the sandwich "
                        "rule)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("-v", "--verbose", action="store_true", help="show third-party libraries' logs")
    t.set_defaults(func=cmd_supernet_train)

    i = ssub.add_parser("import", help="another project's supernet weights (Once-for-All) as an edgenas checkpoint")
    i.add_argument("checkpoint", help="the file to import, e.g. OFA's ofa_mbv3_d234_e346_k357_w1.2 state dict")
    i.add_argument("--format", default="ofa", help="ofa (default): Once-for-All's MobileNetV3 supernets -> mbv3")
    i.add_argument("--out", required=True, help="the edgenas checkpoint to write (never overwritten)")
    i.add_argument("--classes", type=int,
                   help="your task's classes: a count other than the checkpoint's gets a new classifier head")
    i.set_defaults(func=cmd_supernet_import)

    s = ssub.add_parser("show", help="a supernet checkpoint's space, task, epochs and losses")
    s.add_argument("checkpoint", help="a checkpoint of 'edgenas supernet train'")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_supernet_show)
