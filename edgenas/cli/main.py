"""``edgenas`` entry point: argparse sub-commands, and the error contract.

Input errors (:class:`~edgenas.errors.EdgenasError`, bad flags) and operating-system errors (an
unwritable output, a full disk) print one line to stderr and exit 2; no traceback. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edgenas import __version__
from edgenas.cli.common import OneLineParser, apply_model_flags, flag_message
from edgenas.errors import EdgenasError
from edgenas.jobs import ConfigError

# Each command module exposes ``add_parsers(sub)``; order here is the order of ``--help``.
COMMAND_MODULES = ("describe", "latency", "estimate", "supernet", "search", "explain", "benchmark", "export", "run")

SUBCOMMAND_KEYS = ("lut_command", "supernet_command")
"""argparse destinations of the commands that have sub-commands (``edgenas lut import``, ...)."""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="edgenas", description="Hardware-aware NAS for edge devices.")
    parser.add_argument("--version", action="version", version=f"edgenas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"edgenas.cli.{name}").add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # name the subcommand's help, not the top level's
        _innermost(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    command = " ".join(x for x in (args.command, *(getattr(args, k, None) for k in SUBCOMMAND_KEYS)) if x)
    try:
        apply_model_flags(args)
        return int(args.func(args) or 0)
    except ConfigError as exc:  # a value from a flag names the flag; from a job file, the file
        print(f"edgenas {command}: error: {flag_message(exc)}", file=sys.stderr)
        return 2
    except EdgenasError as exc:
        print(f"edgenas {command}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgenas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `edgenas describe ... | head`
        return 0
    except OSError as exc:  # an unwritable output, a full disk: one line; what was computed is already saved
        where = f" {exc.filename!r}" if exc.filename else ""
        print(f"edgenas {command}: error: cannot write or read{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command ``args`` came from."""
    for key in ("command", *SUBCOMMAND_KEYS):
        name = getattr(args, key, None)
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not name or not actions or name not in actions[0].choices:
            break
        parser = actions[0].choices[name]
    return parser


def _one_line(text: str) -> str:
    """The error contract is one line: a message that spans several (a library's text) is joined."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
