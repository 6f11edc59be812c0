"""Plug-ins without editing edgenas: the Registry's entry-point loading (unit tests on throwaway
distributions), and the example plug-in package (examples/plugin) installed for real, offline, into a
temporary folder: the CLI discovers its space, estimator and sampler, describes and searches with them,
and the package's own tests (edgenas.testing's contract suites) pass."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from edgenas.errors import EdgenasError, UnknownNameError
from edgenas.registry import GROUPS, Registry

EDGENAS = [sys.executable, "-m", "edgenas.cli.main"]


# -- the Registry on throwaway distributions -----------------------------------------------------
class FakeDists:
    """Writes modules and ``*.dist-info`` folders (METADATA + entry_points.txt) into a folder on
    sys.path, so ``importlib.metadata`` sees installed distributions with entry points."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.tag = uuid.uuid4().hex[:8]
        self.group = f"edgenas.test-{self.tag}"
        self.modules: list[str] = []
        self.base = ""
        """The module holding the test registry (REG) and its plug-ins' base class (Thing)."""
        monkeypatch.syspath_prepend(str(root))

    def module(self, stem: str, source: str) -> str:
        """Write a module (its name made unique to this test); returns its import name."""
        name = f"{stem}_{self.tag}"
        (self.root / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        self.modules.append(name)
        return name

    def dist(self, name: str, entry_points: dict[str, str], group: str | None = None) -> None:
        info = self.root / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[{group or self.group}]\n{lines}")

    def cleanup(self) -> None:
        for m in self.modules:
            sys.modules.pop(m, None)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "site"
    root.mkdir()
    f = FakeDists(root, monkeypatch)
    yield f
    f.cleanup()


def registry_with_builtin(fake: FakeDists) -> Registry:
    """A registry whose built-in ('alpha') registers on import of its builtins module, as edgenas' own do.
    The plug-ins' base class and the registry live in a module of the fake site (``fake.base``)."""
    fake.base = fake.module("base", '''
        REG = None


        class Thing:
            """Base class of the test registry's plug-ins."""

            name = ""
        ''')
    base = importlib.import_module(fake.base)

    def check_thing(name: str, obj: object) -> None:
        if not (isinstance(obj, type) and issubclass(obj, base.Thing)):
            raise EdgenasError(f"thing plug-in {name!r} must be a Thing subclass, got {obj!r}")

    reg: Registry = Registry("thing", fake.group, check=check_thing)
    base.REG = reg
    reg.builtins = (fake.module("builtin", f"""
        from {fake.base} import REG, Thing

        @REG.register
        class Alpha(Thing):
            name = "alpha"
        """),)
    return reg


PLUGINS = """
    from {base} import Thing

    class Gamma(Thing):
        name = "gamma"

    class FakeAlpha(Thing):
        name = "alpha"

    class NotAThing:
        name = "notathing"
    """


def test_entry_point_plugin_is_registered_with_its_distribution(fake, capsys):
    reg = registry_with_builtin(fake)
    mod = fake.module("plugins", PLUGINS.format(base=fake.base))
    fake.dist("fake-plugin", {"gamma": f"{mod}:Gamma"})
    assert reg.names() == ["alpha", "gamma"]
    gamma = reg.entry("gamma")
    assert gamma.obj.__name__ == "Gamma" and gamma.origin == "fake-plugin" and not gamma.builtin
    assert reg.entry("alpha").builtin
    assert capsys.readouterr().err == ""


def test_broken_plugin_is_reported_once_and_named_when_asked_for(fake, capsys):
    reg = registry_with_builtin(fake)
    mod = fake.module("plugins", PLUGINS.format(base=fake.base))
    broken = fake.module("broken", "raise ImportError('needs the frobnicate package (pip install frobnicate)')\n")
    fake.dist("fake-plugin", {"gamma": f"{mod}:Gamma", "broken": f"{broken}:Broken", "missing": f"{mod}:Nope"})
    assert reg.names() == ["alpha", "gamma"]  # the others still load
    assert reg.names() == ["alpha", "gamma"] and "broken" not in reg and len(reg) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2, err  # once each, however often the registry is asked
    assert any("'broken'" in line and "frobnicate" in line for line in err)
    assert any("'missing'" in line and "AttributeError" in line for line in err)
    with pytest.raises(UnknownNameError) as info:
        reg.get("broken")
    msg = str(info.value)
    assert "thing 'broken' could not be loaded" in msg and "ImportError: needs the frobnicate package" in msg
    assert "fake-plugin" in msg and "\n" not in msg
    assert capsys.readouterr().err == ""  # asking again does not report again


def test_plugin_cannot_replace_a_builtin(fake, capsys):
    reg = registry_with_builtin(fake)
    mod = fake.module("plugins", PLUGINS.format(base=fake.base))
    fake.dist("fake-plugin", {"alpha": f"{mod}:FakeAlpha", "gamma": f"{mod}:Gamma"})
    assert reg.get("alpha").__module__.startswith("builtin_")  # a built-in name does not even load plug-ins
    assert reg.names() == ["alpha", "gamma"]
    assert reg.get("alpha").__module__.startswith("builtin_")  # still edgenas' own
    assert reg.entry("alpha").builtin
    assert "clashes with edgenas' own thing 'alpha'" in reg.failed["alpha"]
    assert "clashes" in capsys.readouterr().err
    with pytest.raises(EdgenasError, match="clashes with edgenas' own thing"):
        reg.add("alpha", __import__(mod).FakeAlpha, origin="someone-else")
    assert reg.get("alpha").__module__.startswith("builtin_")


def test_module_plugin_registering_a_builtin_name_is_refused(fake, capsys):
    """An entry point naming a module whose import runs the decorators cannot replace a built-in either."""
    reg = registry_with_builtin(fake)
    sneaky = fake.module("sneaky", f"""
        from {fake.base} import REG, Thing

        @REG.register
        class Alpha(Thing):
            name = "alpha"

        """)
    fake.dist("sneaky-plugin", {"sneaky": sneaky})
    assert reg.names() == ["alpha"]
    assert reg.get("alpha").__module__.startswith("builtin_")
    assert "clashes" in reg.failed["sneaky"] and "clashes" in capsys.readouterr().err


def test_module_plugin_registers_through_decorators(fake):
    reg = registry_with_builtin(fake)
    mod = fake.module("decorated", f"""
        from {fake.base} import REG, Thing

        @REG.register
        class Delta(Thing):
            name = "delta"
        """)
    fake.dist("decorated-plugin", {"delta": mod})
    assert reg.names() == ["alpha", "delta"]
    assert reg.entry("delta").origin == mod and not reg.entry("delta").builtin


def test_plugin_whose_name_disagrees_with_its_entry_point_is_refused(fake, capsys):
    reg = registry_with_builtin(fake)
    mod = fake.module("plugins", PLUGINS.format(base=fake.base))
    fake.dist("fake-plugin", {"delta": f"{mod}:Gamma"})
    assert reg.names() == ["alpha"] and "gamma" not in reg and "delta" not in reg
    assert "named 'gamma' but its entry point is 'delta'" in reg.failed["delta"]
    with pytest.raises(UnknownNameError, match=r"thing 'delta' could not be loaded: .*make them equal"):
        reg.get("delta")
    assert "delta" in capsys.readouterr().err


def test_plugin_of_the_wrong_kind_is_refused(fake, capsys):
    reg = registry_with_builtin(fake)
    mod = fake.module("plugins", PLUGINS.format(base=fake.base))
    fake.dist("fake-plugin", {"notathing": f"{mod}:NotAThing"})
    assert "notathing" not in reg
    assert "must be a Thing subclass" in reg.failed["notathing"]
    capsys.readouterr()


def test_two_distributions_with_one_name_are_reported(fake, capsys):
    reg = registry_with_builtin(fake)
    mod = fake.module("plugins", PLUGINS.format(base=fake.base))
    other = fake.module("other", PLUGINS.format(base=fake.base))
    fake.dist("first-plugin", {"gamma": f"{mod}:Gamma"})
    fake.dist("second-plugin", {"gamma": f"{other}:Gamma"})
    assert reg.names() == ["alpha", "gamma"]
    kept = reg.entry("gamma").origin
    assert kept in ("first-plugin", "second-plugin")
    dropped = "second-plugin" if kept == "first-plugin" else "first-plugin"
    err = capsys.readouterr().err
    assert "'gamma'" in err and dropped in err and "uninstall one" in err


def test_unknown_names_list_the_choices(fake):
    reg = registry_with_builtin(fake)
    mod = fake.module("plugins", PLUGINS.format(base=fake.base))
    fake.dist("fake-plugin", {"gamma": f"{mod}:Gamma"})
    with pytest.raises(UnknownNameError) as info:
        reg.get("gama")
    assert str(info.value) == "unknown thing 'gama'; choose one of: alpha, gamma"
    for bad in (None, 3, ["gamma"]):
        with pytest.raises(UnknownNameError, match="thing name must be a string"):
            reg.get(bad)  # type: ignore[arg-type]
        assert bad not in reg


def test_real_registries_refuse_to_replace_builtins_and_list_choices():
    from edgenas.estimators import ESTIMATORS, get_estimator
    from edgenas.exporters import EXPORTERS
    from edgenas.latency.features import FEATURES
    from edgenas.latency.runtimes import RUNTIMES
    from edgenas.search.samplers import SAMPLERS
    from edgenas.spaces import SPACES, get_space
    from edgenas.spaces.mbv3 import MBV3Space
    from edgenas.spaces.tiny import TinySpace

    assert {r.group for r in (SPACES, ESTIMATORS, SAMPLERS, RUNTIMES, EXPORTERS, FEATURES)} == set(GROUPS.values())
    impostor = type("Impostor", (TinySpace,), {"name": "tiny"})
    with pytest.raises(EdgenasError, match="clashes with edgenas' own space"):
        SPACES.add("tiny", impostor, origin="someone")
    with pytest.raises(EdgenasError, match="named 'mbv3', registered as 'tiny'"):
        SPACES.add("tiny", MBV3Space, origin="someone")
    assert SPACES.get("tiny") is TinySpace
    with pytest.raises(UnknownNameError, match=r"unknown space 'tinyy'; choose one of: .*mbv3.*tiny"):
        get_space("tinyy")
    with pytest.raises(UnknownNameError, match=r"unknown estimator 'synflo'; choose one of: .*synflow"):
        get_estimator("synflo", get_space("nb201"))
    with pytest.raises(EdgenasError, match="must be a SearchSpace subclass"):
        SPACES.add("notaspace", object, origin="someone")
    assert "notaspace" not in SPACES


# -- the example plug-in package, installed for real ---------------------------------------------
@pytest.fixture(scope="module")
def installed(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """examples/plugin installed offline into a temporary folder (from a copy: the build writes
    build/ and *.egg-info beside the sources); returns the environment of a subprocess that sees it."""
    tmp = tmp_path_factory.mktemp("plugin")
    src = tmp / "src"
    shutil.copytree(repo / "examples" / "plugin", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"))
    site = tmp / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "--target", str(site), str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (info,) = site.glob("edgenas_example_plugin-*.dist-info")
    groups = (info / "entry_points.txt").read_text()
    assert all(f"[{g}]" in groups for g in GROUPS.values())
    env = {**os.environ, "PYTHONPATH": str(site), "EDGENAS_DEVICES_DIR": str(tmp / "home"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    return env


def edgenas(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGENAS, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_cli_lists_the_plugins(installed):
    spaces = edgenas(installed, "spaces")
    assert spaces.returncode == 0, spaces.stderr
    assert "nano: tiny with kernel 3/5" in spaces.stdout and "[plug-in: edgenas-example-plugin]" in spaces.stdout
    assert "kernel: 3, 5" in spaces.stdout and "tiny:" in spaces.stdout  # beside the built-ins
    estimators = edgenas(installed, "estimators")
    assert estimators.returncode == 0 and "zen-score: Zen-NAS-style" in estimators.stdout
    assert "batch_size=8, alpha=0.01" in estimators.stdout
    samplers = edgenas(installed, "samplers")
    assert samplers.returncode == 0 and "qmc: Optuna quasi-Monte Carlo" in samplers.stdout
    assert "qmc_type='sobol'" in samplers.stdout
    for proc in (spaces, estimators, samplers):
        assert "plug-in" not in proc.stderr, proc.stderr  # nothing failed to load


@pytest.mark.slow
def test_describe_with_the_plugin_space(installed):
    proc = edgenas(installed, "describe", "--space", "nano", "--random", "2")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "nano:w" in line]
    assert len(rows) == 2
    # without the package on the path, the name is unknown (one line, exit 2): discovery did it
    bare = {k: v for k, v in installed.items() if k != "PYTHONPATH"}
    proc = edgenas(bare, "describe", "--space", "nano", "--random", "2")
    assert proc.returncode == 2 and "unknown space 'nano'; choose one of" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_search_with_plugin_space_estimator_and_sampler(installed, tmp_path):
    run = tmp_path / "run"
    proc = edgenas(installed, "search", "--space", "nano", "--estimator", "zen-score", "--est-opt", "batch_size=4",
                   "--sampler", "qmc", "--objectives", "accuracy,macs", "--budget", "peak_ram_bytes<=64KiB",
                   "--trials", "6", "--out", str(run), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "accuracy = zen-score" in proc.stdout
    front = json.loads((run / "front.json").read_text())
    assert front and all(r["arch"].startswith("nano:") and r["estimator"] == "zen-score" for r in front)
    assert all(r["peak_ram_bytes_int8"] <= 64 * 1024 for r in front)
    trials = (run / "trials.csv").read_text().strip().splitlines()
    assert len(trials) == 1 + 6  # header + the 6 trials asked for
    assert "qmc" in (run / "config.json").read_text()


@pytest.mark.slow
def test_plugin_package_passes_its_contract_suites(installed, repo):
    """examples/plugin/tests subclass every edgenas.testing contract; run as the plug-in's author would."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", str(repo / "examples" / "plugin" / "tests")],
        env=installed, capture_output=True, text=True, timeout=3000, cwd=repo)
    assert proc.returncode == 0, proc.stdout[-6000:]
    out = proc.stdout
    for cls in ("TestNanoSpace", "TestZenScore", "TestQMCSampler", "TestTorchRuntime", "TestTorchExport",
                "TestDepthwiseMacs"):
        assert f"::{cls}::" in out and f"{cls}::test_" in out, cls
    assert " failed" not in out and " error" not in out.lower().split("short test summary")[-1]
    assert "TestTorchExport::test_artifact_is_written_atomically_and_verified[torch-export-nano] PASSED" in out
    assert "TestTorchRuntime::test_missing_or_corrupt_model_file_is_a_user_error PASSED" in out
