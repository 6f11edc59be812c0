"""The wheel: exporters/devices/latency_tables install only under edgenas, with their data files;
edgenas.testing (the plug-in contract suites) is installed too."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib


def test_pyproject_lists_every_package(repo):
    cfg = tomllib.loads((repo / "pyproject.toml").read_text())
    listed = set(cfg["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(p.parent.relative_to(repo).parts)
        for p in (repo / "edgenas").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    mapped = set(cfg["tool"]["setuptools"]["package-dir"])
    assert on_disk | mapped == listed
    assert cfg["project"]["scripts"]["edgenas"] == "edgenas.cli.main:main"
    # a torch range, not one build: pip must keep a user's own (CUDA or CPU) torch
    (torch,) = [d.replace(" ", "") for d in cfg["project"]["dependencies"] if re.match(r"torch\b", d)]
    assert re.fullmatch(r"torch>=[\d.]+,<\d+", torch), torch
    assert "edgenas.testing" in listed  # the contract suites plug-in packages run


@pytest.fixture(scope="module")
def wheel(repo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(repo)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("edgenas-*.whl")
    return whl


def test_wheel_layout(wheel, repo):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "exporters" not in tops and "devices" not in tops and "latency_tables" not in tops
    assert "edgenas/exporters/__init__.py" in names
    assert "edgenas/devices/__init__.py" in names
    assert "edgenas/latency_tables/__init__.py" in names
    for module in (repo / "edgenas" / "testing").glob("*.py"):
        assert f"edgenas/testing/{module.name}" in names
    assert "examples" not in tops and "edgenas_example_plugin" not in tops  # the example plug-in is its own package
    for toml in (repo / "devices").glob("*.toml"):
        assert f"edgenas/devices/{toml.name}" in names
    for table in (repo / "latency_tables").glob("*.json"):
        assert f"edgenas/latency_tables/{table.name}" in names


def test_installed_package_has_no_top_level_exporters(tmp_path):
    """Outside the checkout, `import exporters` must fail and `edgenas.exporters` must work."""
    code = (
        "import importlib.util, edgenas.exporters, edgenas.devices, edgenas.latency_tables, edgenas.testing\n"
        "assert importlib.util.find_spec('exporters') is None\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
