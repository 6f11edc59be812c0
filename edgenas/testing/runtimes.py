"""The device-runtime contract suite (:class:`RuntimeContract`), derived from
:class:`~edgenas.latency.runtimes.base.DeviceRuntime`.

Every runtime must: be registered under its name with a file suffix (and its optional packages
declared in ``requires``, importable where the suite runs); describe itself (name, version,
threads, options); honour the threads and options it is built with (kept, reported, and timing works
with them); export :class:`~edgenas.latency.runtimes.base.ExportItem` models to one non-empty file
each, named with its suffix, under the folder asked for (reporting progress); time a file with sane
results (the requested number of runs, each positive and finite; paired timing in whole groups with a
closing reference group); and refuse a missing or corrupt model file with a one-line
:class:`~edgenas.errors.EdgenasError` naming the file.
"""

from __future__ import annotations

import atexit
import json
import math
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import pytest

from edgenas.errors import EdgenasError
from edgenas.latency.runtimes import RUNTIMES, DeviceRuntime, ExportItem, get_runtime, runtime_names

UNITS_ARCH = "tiny:w0.5:r32:k3e3_k5e4_k7e6_k3e3"
"""The small network whose first latency-table units the suite exports (a few KB each)."""

_FILES: dict[str, dict[str, Path]] = {}
_ROOT: list[Path] = []


def small_items(n: int = 3) -> list[ExportItem]:
    """``n`` small models (the first latency-table units of :data:`UNITS_ARCH`), eval mode."""
    from edgenas.spaces import get_space

    sp = get_space("tiny", resolutions=[32], widths=[0.5])
    units = sp.units(sp.parse(UNITS_ARCH))[:n]
    return [ExportItem(u.key, u.build().eval(), (u.cin, u.hw, u.hw)) for u in units]


def exported_files(runtime: DeviceRuntime) -> dict[str, Path]:
    """:func:`small_items` exported by ``runtime`` (once per process per runtime, threads and options),
    into a process-wide temporary folder."""
    key = json.dumps([runtime.name, runtime.threads, runtime.options], sort_keys=True, default=str)
    if key not in _FILES:
        if not _ROOT:
            root = Path(tempfile.mkdtemp(prefix="edgenas-testing-runtimes-"))
            atexit.register(shutil.rmtree, root, True)
            _ROOT.append(root)
        out = _ROOT[0] / f"{runtime.name}-{len(_FILES)}"
        _FILES[key] = runtime.export_many(small_items(), out)
    return _FILES[key]


class RuntimeContract:
    """Subclass as ``class TestMyRuntime(RuntimeContract): runtime_name = "mine"`` (and
    ``runtime_options``: options a device spec would give it, honoured by the option test). Override
    the ``name`` and ``options`` fixtures (with ``params``) to run it over several runtimes."""

    runtime_name: ClassVar[str] = ""
    runtime_options: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def name(self) -> str:
        if not self.runtime_name:
            pytest.fail(f"{type(self).__name__} must set runtime_name (or override the 'name' fixture)")
        return self.runtime_name

    @pytest.fixture
    def options(self, name: str) -> dict[str, Any]:
        return dict(self.runtime_options)

    @pytest.fixture
    def runtime(self, name: str) -> DeviceRuntime:
        return get_runtime(name, threads=1)

    # -- the contract ---------------------------------------------------------------------------
    def test_registered_with_a_suffix(self, name: str) -> None:
        assert name in runtime_names()
        cls = RUNTIMES.get(name)
        assert isinstance(cls, type) and issubclass(cls, DeviceRuntime) and cls.name == name
        assert isinstance(cls.suffix, str) and cls.suffix.startswith(".") and len(cls.suffix) > 1
        # optional packages it needs are declared (a missing one is a one-line error naming the extra)
        assert isinstance(cls.requires, tuple) and all(isinstance(m, str) for m in cls.requires)
        cls.check_available()

    def test_describes_itself(self, runtime: DeviceRuntime, name: str) -> None:
        version = runtime.version()
        assert isinstance(version, str) and version.strip() and "\n" not in version
        d = runtime.describe()
        assert d["name"] == name and d["version"] == version and d["threads"] == 1 and d["options"] == {}
        json.dumps(d)  # stored in latency tables and model cards

    def test_honours_threads_and_options(self, name: str, options: dict[str, Any]) -> None:
        rt = get_runtime(name, threads=2, options=options)
        assert rt.threads == 2 and rt.options == options
        d = rt.describe()
        assert d["threads"] == 2 and d["options"] == options
        files = exported_files(rt)
        samples = rt.time(next(iter(files.values())), warmup=1, repeats=5)
        assert len(samples) == 5 and all(math.isfinite(s) and s > 0 for s in samples)

    def test_exports_items_to_files_with_its_suffix(self, runtime: DeviceRuntime, tmp_path: Path) -> None:
        items = small_items()
        done: list[int] = []
        paths = runtime.export_many(items, tmp_path / "out", progress=done.append)
        assert set(paths) == {it.key for it in items}
        assert sum(done) == len(items)
        assert len({p.resolve() for p in paths.values()}) == len(items)
        for p in paths.values():
            p = Path(p)
            assert p.parent == tmp_path / "out" and p.suffix == runtime.suffix
            assert p.is_file() and p.stat().st_size > 0

    def test_times_a_file_with_sane_results(self, runtime: DeviceRuntime) -> None:
        files = exported_files(runtime)
        path, ref = list(files.values())[:2]
        samples = runtime.time(path, warmup=2, repeats=7)
        assert len(samples) == 7 and all(isinstance(s, float) and math.isfinite(s) and s > 0 for s in samples)
        median = statistics.median(samples)
        assert math.isfinite(median) and 0 < median < 10_000
        runs, ref_runs = runtime.time_paired(path, ref, warmup=1, repeats=6, group=3)
        assert len(runs) >= 6 and len(runs) % 3 == 0  # whole groups
        assert len(ref_runs) == len(runs) + 3  # one closing reference group
        assert all(math.isfinite(s) and s > 0 for s in runs + ref_runs)

    def test_missing_or_corrupt_model_file_is_a_user_error(self, runtime: DeviceRuntime, tmp_path: Path) -> None:
        missing = tmp_path / ("missing" + runtime.suffix)
        corrupt = tmp_path / ("corrupt" + runtime.suffix)
        corrupt.write_bytes(b"this is not a model file\n" * 8)
        for path in (missing, corrupt):
            with pytest.raises(EdgenasError) as info:
                runtime.time(path, warmup=1, repeats=2)
            msg = str(info.value)
            assert msg.strip() and "\n" not in msg.strip(), f"not one line: {msg!r}"
            assert path.name in msg, f"the message should name the file: {msg!r}"
