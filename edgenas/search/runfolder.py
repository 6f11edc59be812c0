"""A search's run folder, as every reader sees it: ``edgenas pareto``, ``edgenas export``, ``--resume``.

Layout: ``config.json`` (the resolved job, written when the search starts), ``study.journal`` (the
default Optuna storage), ``run.json`` (storage, study, versions, counts: written when the search ends),
``front.csv`` / ``front.json`` / ``trials.csv``, ``pareto.png``, ``plots/*.html``, and ``export/``.

Every read is checked: a missing, empty or garbage file is one line naming it and what to do. The
default journal is always the folder's own ``study.journal``, wherever the folder was when the search
ran, so a copied or moved run folder reads (and rewrites) its own study, never the original's.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgenas.errors import EdgenasError

if TYPE_CHECKING:
    import optuna

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
FRONT_JSON = "front.json"
FRONT_CSV = "front.csv"
TRIALS_CSV = "trials.csv"
STUDY_FILE = "study.journal"
EXPORT_DIR = "export"
DEFAULT_STUDY = "edgenas"


def is_journal_url(url: str) -> bool:
    return url.startswith(("journal:", "journal-fsync:")) or url.endswith((".journal", ".log"))


def journal_path(url: str) -> Path:
    return Path(url.removeprefix("journal-fsync:").removeprefix("journal:"))


class RunFolder:
    """One run folder. Nothing is read until asked for; every problem is an :class:`EdgenasError`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    # -- what it holds ---------------------------------------------------------------------------
    def holds_search(self) -> bool:
        """A search was started here (``config.json`` exists)."""
        return self.file(CONFIG_FILE).is_file()

    def finished(self) -> bool:
        """The search wrote its results (``run.json``); otherwise it runs or was interrupted."""
        return self.file(RUN_FILE).is_file()

    def require(self) -> RunFolder:
        """This folder holds a search, else one line saying what it is instead."""
        if not self.path.exists():
            raise EdgenasError(f"run folder {str(self.path)!r} not found")
        if not self.path.is_dir():
            raise EdgenasError(f"{str(self.path)!r} is a file, not a search run folder")
        if not self.holds_search():
            raise EdgenasError(f"{str(self.path)!r} is not a search run folder (no {CONFIG_FILE}; "
                               f"create one with 'edgenas search --out DIR')")
        return self

    def require_finished(self, action: str) -> RunFolder:
        """A finished search: ``action`` (e.g. ``export``) needs its results."""
        self.require()
        if not self.finished():
            raise EdgenasError(f"the search in {str(self.path)!r} has not finished (no {RUN_FILE}: it is running or "
                               f"was interrupted); continue it with 'edgenas search --resume {self.path}' "
                               f"before you {action}")
        return self

    # -- reading -----------------------------------------------------------------------------------
    def _json(self, name: str, what: str) -> Any:
        from edgenas.fileio import read_json

        p = self.file(name)
        if not p.exists():
            raise EdgenasError(f"{p} not found: is {self.path} a search run folder?")
        return read_json(p, what, "the run folder is damaged (an interrupted copy or write?)")

    def config(self) -> dict[str, Any]:
        """The resolved job the search stored (``config.json``)."""
        data = self._json(CONFIG_FILE, "the run's configuration")
        if not isinstance(data, dict) or not isinstance(data.get("space"), dict):
            raise EdgenasError(f"the run's configuration {self.file(CONFIG_FILE)} is not an edgenas search job")
        return data

    def info(self) -> dict[str, Any]:
        """``run.json`` (empty before the search ends)."""
        if not self.finished():
            return {}
        data = self._json(RUN_FILE, "the run summary")
        if not isinstance(data, dict):
            raise EdgenasError(f"the run summary {self.file(RUN_FILE)} is not a JSON object; rewrite it with "
                               f"'edgenas pareto {self.path}'")
        return data

    def storage_url(self) -> str:
        """Where the study lives: the folder's own ``study.journal`` for the default storage (even when
        ``run.json`` recorded the path of the folder the search ran in), else the recorded URL."""
        recorded = self.info().get("storage") or (self.config().get("search") or {}).get("storage")
        if not recorded:
            return str(self.path.resolve() / STUDY_FILE)
        recorded = str(recorded)
        if is_journal_url(recorded) and journal_path(recorded).name == STUDY_FILE and \
                (self.file(STUDY_FILE).exists() or not journal_path(recorded).exists()):
            return str(self.path.resolve() / STUDY_FILE)
        return recorded

    def study_name(self) -> str:
        name = self.info().get("study") or (self.config().get("search") or {}).get("study")
        return str(name) if name else DEFAULT_STUDY

    def open_study(self, url: str | None = None, name: str | None = None) -> optuna.Study:
        """The run's study (``url`` / ``name`` override the folder's)."""
        url = url or self.storage_url()
        name = name or self.study_name()
        if is_journal_url(url) and not journal_path(url).is_file():
            raise EdgenasError(f"the study file {journal_path(url)} is missing; the run folder is incomplete")
        return load_study(url, name)

    def front(self) -> list[dict[str, Any]]:
        """The feasible Pareto front rows (``front.json``)."""
        rows = self._json(FRONT_JSON, "the run's front")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise EdgenasError(f"the run's front {self.file(FRONT_JSON)} is not a list of rows; rewrite it with "
                               f"'edgenas pareto {self.path}'")
        return rows

    def trial_rows(self) -> dict[int, dict[str, Any]]:
        """Every trial's row (``trials.csv``) by trial number, numbers parsed."""
        path = self.file(TRIALS_CSV)
        try:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        except FileNotFoundError:
            raise EdgenasError(f"{path} not found: is {self.path} a finished search run folder?") from None
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise EdgenasError(f"cannot read {path}: {exc.__class__.__name__}") from None
        out = {}
        for r in rows:
            try:
                out[int(r["trial"])] = {k: _number(v) for k, v in r.items()}
            except (KeyError, TypeError, ValueError):
                continue
        return out

    # -- writing -----------------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Create the folder (when missing) and prove it is writable, before any work."""
        from edgenas.fileio import ensure_writable_dir

        ensure_writable_dir(self.path, "run folder")


def load_study(url: str, name: str) -> optuna.Study:
    """An existing study from a storage URL or journal path; a missing study or an unreadable storage
    is one line."""
    import optuna

    from edgenas.search.study import open_storage

    try:
        storage = open_storage(url)
        names = [s.study_name for s in storage.get_all_studies()]
        if name not in names:
            held = f"it holds {', '.join(map(repr, names))}" if names else \
                "it holds no study: empty, or not an Optuna storage"
            raise EdgenasError(f"no study named {name!r} in {url} ({held})")
        return optuna.load_study(study_name=name, storage=storage)
    except EdgenasError:
        raise
    except Exception as exc:  # a damaged journal: JSON / Optuna log errors
        raise EdgenasError(f"cannot read the study in {url}: it is not an Optuna storage "
                           f"({exc.__class__.__name__})") from None


def _number(v: str | None) -> Any:
    if v is None:
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
