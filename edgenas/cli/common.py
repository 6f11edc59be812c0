"""What every command shares: the one-line argparse parser, the space / arch / output flags, turning
flags into the typed job's values, and turning the job's errors back into the flags that set them."""

from __future__ import annotations

import argparse
from typing import Any

from edgenas.errors import EdgenasError
from edgenas.jobs import ConfigError, TaskConfig
from edgenas.options import parse_kv
from edgenas.report import format_table, write_csv, write_json
from edgenas.spaces import ArchSpec, SearchSpace, Task, get_space


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and still exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# -- the job's keys and the flags that set them ------------------------------------------------------
FLAGS: dict[tuple[str, str | None], str] = {
    ("space", "name"): "--space", ("space", "options"): "--space-opt",
    ("task", "num_classes"): "--classes", ("task", "in_channels"): "--in-channels",
    ("task", "resolution"): "--resolution",
    ("device", "name"): "--device", ("device", "names"): "--device", ("device", "devices_dir"): "--devices-dir",
    ("device", "latency_csv"): "--latency-csv", ("device", "latency_column"): "--latency-column",
    ("estimator", "name"): "--estimator", ("estimator", "options"): "--est-opt", ("estimator", "keep"): "--keep",
    ("estimator", "seed"): "--est-seed", ("estimator", "dataset"): "--dataset", ("estimator", "weights"): "--weights",
    ("estimator", "torch_device"): "--torch-device",
    ("search", "budgets"): "--budget", ("search", "sampler_options"): "--sampler-opt",
    ("export", "train_epochs"): "--train-epochs", ("export", "float_io"): "--float-io",
    ("supernet", "options"): "--opt",
}
"""(table, key) -> the flag that sets it; other [search] / [export] / [supernet] keys are ``--<key>`` with
dashes."""


def flag_of(table: str, key: str | None) -> str | None:
    if (table, key) in FLAGS:
        return FLAGS[(table, key)]
    if table in ("search", "export", "supernet") and key:
        return "--" + key.replace("_", "-")
    return None


def flag_message(exc: ConfigError) -> str:
    """A job error as the command line sees it: a value from a job file names the file, table and key;
    a value from a flag names the flag (``--trials: must be >= 1, got 0``)."""
    if exc.origin is not None:
        return str(exc)
    flag = flag_of(exc.table, exc.key)
    return f"{flag}: {exc.problem}" if flag else str(exc)


# -- shared flags -----------------------------------------------------------------------------------
def add_space_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--space, --space-opt and the task flags shared by every command that builds specs."""
    p.add_argument("--space", help="search space (see 'edgenas spaces'; required unless --model is given)")
    p.set_defaults(space_required=required)
    p.add_argument("--space-opt", action="append", metavar="KEY=VALUE",
                   help="space constructor option, e.g. widths=1.0,1.2 or resolution_step=16 (repeatable)")
    add_model_arguments(p)
    p.add_argument("--classes", type=int, help="number of output classes (default: the space's)")
    p.add_argument("--in-channels", type=int, help="input channels (default 3)")
    p.add_argument("--resolution", type=int,
                   help="input resolution for spaces whose specs do not fix it (nb201, fbnet)")


def add_model_arguments(p: Any) -> None:
    """``--model`` / ``--model-weights``: the ``model`` space derived from a model the user has."""
    p.add_argument("--model", metavar="SRC",
                   help="compress a model you have: torchvision:NAME, path/file.py:build_fn, model.pt or model.pt2 "
                        "(the 'model' space: --space model --space-opt model=SRC)")
    p.add_argument("--model-weights", metavar="PT", help="a state dict for --model (--space-opt weights=PT)")


def apply_model_flags(args: argparse.Namespace) -> None:
    """Map ``--model SRC [--model-weights PT]`` onto ``--space model --space-opt model=SRC [weights=PT]``."""
    model, weights = getattr(args, "model", None), getattr(args, "model_weights", None)
    if weights and not model:
        raise EdgenasError("--model-weights needs --model")
    if not model:
        if getattr(args, "space_required", False) and not getattr(args, "space", None):
            raise EdgenasError("give the search space: --space NAME (see 'edgenas spaces') or --model SRC")
        return
    if getattr(args, "space", None) not in (None, "model"):
        raise EdgenasError(f"--model makes the search space 'model'; drop --space {args.space}")
    args.space = "model"
    args.space_opt = [*(getattr(args, "space_opt", None) or []), f"model={model}",
                      *([f"weights={weights}"] if weights else [])]


def add_torch_device_argument(p: Any, what: str, default: str | None = None) -> None:
    """``--torch-device`` (one spelling and list of choices for every command that trains); ``what``
    says what runs there."""
    p.add_argument("--torch-device", default=default, metavar="DEV",
                   help=f"where {what} runs: auto (default: a CUDA GPU when torch sees one, else the CPU), cpu, cuda, "
                        f"cuda:N, mps")


def add_arch_arguments(p: argparse.ArgumentParser) -> None:
    """The arch-input group shared by describe, estimate and predict."""
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--arch", action="append", help="one arch in any accepted form (repeatable)")
    g.add_argument("--arch-json", action="append", help="one arch as a JSON object, e.g. OFA's {ks,e,d,r,w}")
    g.add_argument("--archs", metavar="FILE", help="file with one arch per line, or a CSV with an 'arch' column")
    g.add_argument("--random", type=int, metavar="N", help="N uniformly random specs (with --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    out.add_argument("--csv", metavar="OUT", help="write CSV records to OUT")


def space_options(args: argparse.Namespace) -> dict[str, Any]:
    return parse_kv(getattr(args, "space_opt", None), "--space-opt")


def task_of(args: argparse.Namespace) -> TaskConfig:
    try:
        return TaskConfig(num_classes=args.classes, in_channels=args.in_channels,
                          resolution=getattr(args, "resolution", None))
    except ConfigError as exc:
        raise EdgenasError(flag_message(exc)) from None


def space_and_task(args: argparse.Namespace) -> tuple[SearchSpace, Task]:
    space = get_space(args.space, **space_options(args))
    return space, task_of(args).task()


def specs_from_args(args: argparse.Namespace, space: SearchSpace) -> list[ArchSpec]:
    from edgenas.archio import read_archs

    if args.arch:
        return [space.parse(a) for a in args.arch]
    if args.arch_json:
        out = []
        for text in args.arch_json:
            if not text.strip().startswith("{"):
                raise EdgenasError("--arch-json takes a JSON object, e.g. '{\"ks\": [...], \"e\": [...], ...}'")
            out.append(space.parse(text))
        return out
    if args.archs:
        return read_archs(args.archs, space)
    if args.random <= 0:
        raise EdgenasError(f"--random must be positive, got {args.random}")
    return space.sample(args.random, args.seed)


def emit(records: list[dict[str, Any]], columns: list[str], args: argparse.Namespace) -> None:
    """Table on stdout, or JSON (``--json``), or a CSV file (``--csv OUT``) plus a one-line summary."""
    if getattr(args, "json", False):
        write_json(records)
    elif getattr(args, "csv", None):
        write_csv(args.csv, records, columns)
        print(f"wrote {len(records)} records to {args.csv}")
    else:
        print(format_table(records, columns))


def split_list(values: list[str] | None) -> list[str] | None:
    """Repeatable comma-list flags (``--device a,b --device c``) as one list; None when not given."""
    if values is None:
        return None
    return [v.strip() for item in values for v in item.split(",")]
