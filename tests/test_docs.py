"""Nothing stale in the README and docs/: every command line they show parses with the real argument
parser, every ``make`` target exists, every script they run exists, every relative link points to an
existing file (and heading), and docs/cli.md names every flag of every command.

Nothing is executed: command lines go through ``build_parser().parse_args`` only, so this runs in seconds.
The checkers are plain functions, and the last tests feed them made-up lines to show that they fail.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgenas.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS, ROOT / "CHANGELOG.md", ROOT / "benchmarks" / "results" / "README.md"]
"""Every page whose links are checked; command lines are checked in README.md and docs/*.md (and in the
other two pages too, where they show any)."""
REQUIRED_DOCS = ("cli", "search", "latency", "export", "cost-model", "spaces", "estimators", "jobs", "plugins",
                 "development")
SHELL_LANGS = {"", "bash", "sh", "shell", "console", "sh-session", "zsh"}
"""Code blocks in these languages hold command lines; ``text`` / ``toml`` / ``python`` blocks do not."""


# -- reading markdown ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    """One logical line of a shell code block (``\\`` continuations joined), and where it starts."""

    page: Path
    number: int
    text: str

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.number}"


def shell_lines(page: Path, text: str | None = None) -> list[Line]:
    """The logical lines of the shell code blocks of a page (a leading ``$ `` prompt removed)."""
    text = page.read_text() if text is None else text
    out: list[Line] = []
    lang: str | None = None
    pending: tuple[int, str] | None = None
    for i, raw in enumerate(text.splitlines(), 1):
        fence = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", raw)
        if fence:
            lang = fence.group(2).lower() if lang is None else None
            pending = None
            continue
        if lang is None or lang not in SHELL_LANGS:
            continue
        line = raw.rstrip()
        if pending is not None:
            start, joined = pending
            line = joined + " " + line.strip()
        else:
            start = i
            line = line.strip()
            line = line[2:] if line.startswith("$ ") else line
        if line.endswith("\\"):
            pending = (start, line[:-1].rstrip())
            continue
        pending = None
        if line:
            out.append(Line(page, start, line))
    return out


def inline_code(text: str) -> list[str]:
    """The inline code spans of a page's prose (outside fenced blocks; a span may wrap onto the next line)."""
    prose = re.sub(r"^\s*(```+|~~~+).*?^\s*\1\s*$", "", text, flags=re.S | re.M)
    return [" ".join(m.split()) for m in re.findall(r"`((?:[^`\n]|\n(?!\s*\n))+)`", prose)]


def words(line: str) -> list[str]:
    """A command line's words, trailing ``# comment`` removed (shell rules: quotes kept together)."""
    return shlex.split(line, comments=True)


# -- checkers: each returns a list of problems (empty: fine) ------------------------------------------
_PARSER: argparse.ArgumentParser | None = None


def parser() -> argparse.ArgumentParser:
    global _PARSER
    if _PARSER is None:
        _PARSER = build_parser()
    return _PARSER


def check_edgenas(line: str) -> str | None:
    """None when ``edgenas ...`` parses with the real parser; else argparse's message."""
    argv = words(line)[1:]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code == 0 and any(a in ("-h", "--help", "--version") for a in argv):
            return None
        return err.getvalue().strip() or f"exit {exc.code}"
    return None


def makefile_targets(makefile: Path = ROOT / "Makefile") -> set[str]:
    targets: set[str] = set()
    for line in makefile.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.%/-]+(?:\s+[A-Za-z0-9_.%/-]+)*)\s*:(?!=)", line)
        if m and not line.startswith("\t"):
            targets.update(t for t in m.group(1).split() if not t.startswith("."))
    return targets


def check_make(line: str, targets: set[str]) -> str | None:
    """None when every target of a ``make ...`` line is a Makefile target."""
    goals = [w for w in words(line)[1:] if not w.startswith("-") and "=" not in w]
    missing = [g for g in goals if g not in targets]
    return f"not a Makefile target: {', '.join(missing)}" if missing else None


SCRIPT = re.compile(r"(?:^|\s)(?:\S*/)?python3?\s+((?:examples|benchmarks)/[\w./-]+\.py)\b")
CD_SCRIPT = re.compile(r"\bcd\s+((?:examples|benchmarks)[\w./-]*)\s*&&\s*(?:\S*/)?python3?\s+([\w./-]+\.py)\b")
REPO_PATH = re.compile(r"(?<![\w./-])((?:examples|benchmarks|devices|tests|docs)/[\w./-]*[\w-])")


def scripts_in(line: str) -> list[str]:
    """Repository scripts a line runs: ``python3 examples/x.py``, ``cd benchmarks && python x.py``."""
    found = SCRIPT.findall(line)
    found += [f"{d.rstrip('/')}/{s}" for d, s in CD_SCRIPT.findall(line)]
    return found


def check_paths(line: str) -> list[str]:
    """Scripts run and repository paths (examples/, benchmarks/, devices/, tests/, docs/) that do not exist."""
    paths = set(scripts_in(line)) | {p for p in REPO_PATH.findall(line) if not p.endswith("/")}
    return [p for p in sorted(paths) if not (ROOT / p).exists()]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^\s*(```+|~~~+).*?^\s*\1\s*$", "", page.read_text(), flags=re.S | re.M)
    return {slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M)}


LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def check_links(page: Path, text: str | None = None) -> list[str]:
    """Relative links (``[x](path)``, ``![x](img)``, ``[x](path#heading)``) that point nowhere."""
    text = page.read_text() if text is None else text
    prose = re.sub(r"^\s*(```+|~~~+).*?^\s*\1\s*$", "", text, flags=re.S | re.M)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    bad = []
    for target in LINK.findall(prose):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, frag = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            bad.append(f"{target} (no heading #{frag})")
    return bad


# -- the pages -----------------------------------------------------------------------------------------
def all_lines() -> list[Line]:
    return [ln for page in PAGES if page.exists() for ln in shell_lines(page)]


def test_pages_exist():
    missing = [p for p in ["README.md", *(f"docs/{d}.md" for d in REQUIRED_DOCS), "CHANGELOG.md",
                           "benchmarks/results/README.md"] if not (ROOT / p).exists()]
    assert not missing, f"missing pages: {missing}"


def test_the_docs_show_commands():
    """The checks below must have something to check (a page whose code blocks lost their language
    would otherwise pass silently)."""
    lines = all_lines()
    assert sum(ln.text.startswith("edgenas ") for ln in lines) >= 40
    assert any(ln.page.name == "README.md" and ln.text.startswith("edgenas ") for ln in lines)
    assert any(ln.text.startswith("make ") for ln in lines)


def test_every_command_line_parses():
    bad = []
    for ln in all_lines():
        if ln.text.startswith("edgenas "):
            problem = check_edgenas(ln.text)
            if problem:
                bad.append(f"{ln.where()}: {ln.text}\n    -> {problem}")
    assert not bad, "command lines that the parser refuses:\n" + "\n".join(bad)


def test_every_make_target_exists():
    targets = makefile_targets()
    bad = []
    for ln in all_lines():
        if ln.text.startswith("make "):
            problem = check_make(ln.text, targets)
            if problem:
                bad.append(f"{ln.where()}: {ln.text} -> {problem}")
    for page in PAGES:
        if page.exists():
            for code in inline_code(page.read_text()):
                if code.startswith("make "):
                    problem = check_make(code, targets)
                    if problem:
                        bad.append(f"{page.relative_to(ROOT)}: `{code}` -> {problem}")
    assert not bad, "\n".join(bad)


def test_every_script_and_path_exists():
    bad = []
    for ln in all_lines():
        bad += [f"{ln.where()}: {p}" for p in check_paths(ln.text)]
    for page in PAGES:
        if page.exists():
            for code in inline_code(page.read_text()):
                bad += [f"{page.relative_to(ROOT)}: `{code}` -> {p}" for p in scripts_in(code)
                        if not (ROOT / p).exists()]
    assert not bad, "missing scripts or paths:\n" + "\n".join(bad)


def test_every_relative_link_resolves():
    bad = [f"{page.relative_to(ROOT)}: {b}" for page in PAGES if page.exists() for b in check_links(page)]
    assert not bad, "broken links:\n" + "\n".join(bad)


def subcommands(p: argparse.ArgumentParser, prefix: str = "edgenas") -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser by its full name (``edgenas lut fit``)."""
    out = {prefix: p}
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(subcommands(sub, f"{prefix} {name}"))
    return out


def test_cli_reference_names_every_command_and_flag():
    """docs/cli.md is the reference of the command line: every command and every flag is in it."""
    text = (ROOT / "docs" / "cli.md").read_text()
    missing = []
    for name, sub in subcommands(parser()).items():
        if name != "edgenas" and f"`{name}" not in text:
            missing.append(name)
        for action in sub._actions:
            if action.help == argparse.SUPPRESS:
                continue
            for opt in action.option_strings:
                documented = re.search(rf"`{re.escape(opt)}(?=[`\s=\[|,])", text)
                if opt.startswith("--") and opt != "--help" and not documented:
                    missing.append(f"{name} {opt}")
    assert not missing, "docs/cli.md does not document: " + ", ".join(missing)


def test_readme_fits_on_a_screen():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= 180, f"README.md has {n} lines; the reference belongs in docs/"


# -- the checkers can fail ---------------------------------------------------------------------------------
def test_a_made_up_flag_is_caught():
    assert check_edgenas("edgenas search --space tiny --trials 3") is None
    problem = check_edgenas("edgenas search --space tiny --no-such-flag 3  # a comment")
    assert problem and "--no-such-flag" in problem
    assert check_edgenas("edgenas no-such-command") is not None
    assert check_edgenas("edgenas lut fit --space nb201 --device x") is not None  # --measurements is required


def test_continuations_comments_and_prompts():
    page = ROOT / "docs" / "fake.md"
    text = ("```bash\n$ edgenas describe --space tiny \\\n    --random 3   # three\nmake demo\n```\n"
            "```text\nedgenas: error: output, not a command\n```\n"
            "```console\n$ edgenas spaces --bogus\n```\n")
    lines = shell_lines(page, text)
    assert [ln.text for ln in lines] == ["edgenas describe --space tiny --random 3   # three", "make demo",
                                         "edgenas spaces --bogus"]
    assert [ln.number for ln in lines] == [2, 4, 10]
    assert check_edgenas(lines[0].text) is None
    assert check_edgenas(lines[2].text) is not None


def test_a_made_up_make_target_script_or_link_is_caught(tmp_path):
    targets = makefile_targets()
    assert {"demo", "test"} <= targets
    assert check_make("make demo", targets) is None
    assert check_make("make test PYTEST_ARGS=-x", targets) is None
    assert check_make("make no-such-target", targets) is not None
    assert check_paths("python3 examples/classify_onnx.py runs/x") == []
    assert check_paths("python3 examples/no_such_script.py") == ["examples/no_such_script.py"]
    assert check_paths("cd benchmarks && python no_such_bench.py") == ["benchmarks/no_such_bench.py"]
    assert inline_code("run `cd benchmarks && python\nsearch.py` or `make demo`.\n") == [
        "cd benchmarks && python search.py", "make demo"]
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# A heading `with code`\n")
    text = "[ok](other.md) [anchor](other.md#a-heading-with-code) [web](https://example.org/x)\n"
    assert check_links(page, text) == []
    assert check_links(page, "[bad](missing.md)") == ["missing.md (no such file)"]
    assert check_links(page, "[bad](other.md#nowhere)") == ["other.md#nowhere (no heading #nowhere)"]
    assert check_links(page, "![img](gone.png)") == ["gone.png (no such file)"]


@pytest.mark.parametrize("heading, anchor", [("Set-up: two commands", "set-up-two-commands"),
                                             ("The `[search]` table", "the-search-table"),
                                             ("Python API", "python-api")])
def test_slug(heading, anchor):
    assert slug(heading) == anchor
