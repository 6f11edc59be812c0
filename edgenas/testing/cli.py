"""Running the ``edgenas`` command line inside a test, and its error contract: bad input is exit code 2
and one stderr line naming the problem, never a traceback. Plug-in packages use these to check that their
own bad options come out the same way (``edgenas describe --space myspace --space-opt depth=-1``)."""

from __future__ import annotations

import pytest

from edgenas.cli.main import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``edgenas ARGV...`` in this process: (exit code, stdout, stderr). argparse's own exits (usage
    errors, ``--help``) are returned as codes like every other outcome."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, needle: str) -> str:
    """Exit 2, exactly one non-empty stderr line, containing ``needle``, no traceback; the line."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert needle in lines[0], lines[0]
    return lines[0]
