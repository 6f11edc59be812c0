"""Hostile inputs to the device store, kits, table imports and weights files (issue 19, part 7).

Every bad input must be exit 2 with ONE stderr line naming what is wrong, no traceback, nothing
written anywhere (the store, the folders a ``../..`` name would reach) and nothing already there
changed (a good table survives a bad kit byte for byte). Kits are synthetic ``results.json`` files
built from a space's own unit keys (no profiling, no conversion), so the whole module runs in seconds.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest

from edgenas import EdgenasError
from edgenas.latency import DeviceStore, LatencyTable
from edgenas.latency.devices import DeviceSpec, new_device_spec, parse_device
from edgenas.latency.features import spec_features
from edgenas.latency.kit import is_space_unit_key, table_from_results
from edgenas.latency.native import LogError, parse_benchmark_model, parse_ort_perf_test
from edgenas.latency.validate import CONTEXT_FEATURES
from edgenas.spaces import Task, get_space
from edgenas.testing.cli import assert_one_line_error, run_cli

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "native"
TUTORIAL = "mbv3:w1.2:r192:k5e3-k3e3_k5e4-k3e4_k7e6-k7e3-k3e4_k5e4-k5e4-k7e4-k3e3_k3e6-k3e6-k5e6"


# -- helpers ----------------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder under ``root``."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def results(space: str = "tiny", device: Any = "kitdev", scale: float = 1.0, networks: int = 12,
            runtime: str = "onnxruntime", kit: str = "0123456789ab") -> dict[str, Any]:
    """A runner-format results document: every unit of a few specs of ``space`` and ``networks`` whole
    networks whose times are an affine function of their units' sum (so the device model fits). A fresh
    copy each call (built once per argument set)."""
    data = json.loads(_results_json(space, scale, networks, runtime, kit))
    data["device"] = device
    return data


@functools.cache
def _results_json(space: str, scale: float, networks: int, runtime: str, kit: str) -> str:
    sp = get_space(space)
    specs = sp.sample(networks + 3, 3)
    keys = sorted({u.key for s in specs for u in sp.units(s)})
    ms = {k: scale * (0.05 + 0.01 * (i % 7)) for i, k in enumerate(keys)}
    entries = {k: {"mean_ms": v, "std_ms": 0.001, "p50_ms": v, "n": 20} for k, v in ms.items()}
    nets, units, feats = {}, {}, {}
    for s in specs[3:]:
        us = [u.key for u in sp.units(s)]
        net_ms = 0.2 + 1.1 * sum(ms[k] for k in us)
        nets[str(s)] = {"mean_ms": net_ms, "std_ms": 0.01, "p50_ms": net_ms, "n": 20}
        units[str(s)] = us
        feats[str(s)] = spec_features(list(CONTEXT_FEATURES), sp, s, None)
    return json.dumps({"format": "edgenas-kit-results", "version": 1, "kit": kit, "device": None, "space": space,
                       "runtime": {"name": runtime, "version": "1.0", "threads": 1, "options": {}},
                       "host": {"platform": "test"}, "protocol": {"warmup": 1, "repeats": 20, "max_seconds": 10.0},
                       "entries": entries, "networks": nets, "network_units": units, "network_features": feats})


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store two folders below tmp_path, so that '../../x' still lands inside tmp_path (and is seen)."""
    s = tmp_path / "a" / "b" / "store"
    s.mkdir(parents=True)
    return s


@pytest.fixture(scope="module")
def good_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding a good imported tiny table of device kitdev, built once (through the same library
    calls as 'lut import-kit'; test_a_good_kit_does_replace_the_table drives the CLI itself)."""
    d = tmp_path_factory.mktemp("good-store")
    table = table_from_results(results(), "good.json")
    DeviceStore(d).save_table(table, new_device_spec("kitdev", "onnxruntime", "lut import-kit"))
    return d


@pytest.fixture
def good(store: Path, good_template: Path) -> Path:
    """The store holding the good table of kitdev/tiny (a copy of the template); returns the table path."""
    shutil.copytree(good_template, store, dirs_exist_ok=True)
    path = store / "latency_tables" / "kitdev__tiny.json"
    table = LatencyTable.load(path)
    assert table.model.fitted_on == 12 and math.isfinite(table.model.overhead_ms)
    return path


# -- 1. path traversal and TOML injection through device names -------------------------------------
INJECTION = 'evil"\nlocal = true\nthreads = 64\n#'


@pytest.mark.parametrize(("kit_device", "flag", "needle"), [
    ("../../TRAVERSED_dev", None, "device name '../../TRAVERSED_dev' is not allowed"),
    ("", None, "device name is empty"),
    (INJECTION, None, "device name 'evil\"\\nlocal = true"),
    ("/ABS_dev", None, "device name '/ABS_dev' is not allowed"),
    ("kitdev", "../../X", "device name '../../X' is not allowed"),
    ("kitdev", "", "device name is empty"),
    ("kitdev", "ABS", "is not allowed"),  # replaced by an absolute path inside tmp_path below
    ("kitdev", INJECTION, "device name 'evil\"\\nlocal = true"),
    ("kitdev", "a__b", "device name 'a__b' is not allowed"),  # '__' separates device and space in table names
    (7, None, "device name must be a string, got int 7"),
])
def test_import_kit_refuses_unsafe_device_names(tmp_path, store, capsys, kit_device, flag, needle):
    res = write_json(tmp_path / "r.json", results(device=kit_device))
    if flag == "ABS":
        flag = str(tmp_path / "abs_dev")
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "lut", "import-kit", str(res), "--devices-dir", str(store),
                           *(["--device", flag] if flag is not None else []))
    assert_one_line_error(code, err, needle)
    assert snapshot(tmp_path) == before
    assert not list(tmp_path.rglob("*.toml")) and not list(tmp_path.rglob("*__tiny.json"))


def test_import_kit_under_a_safe_name_fixes_a_bad_kit_device_name(tmp_path, store, capsys):
    res = write_json(tmp_path / "r.json", results(device="../../TRAVERSED_dev"))
    code, _, err = run_cli(capsys, "lut", "import-kit", str(res), "--device", "board-1", "--devices-dir", str(store))
    assert code == 0, err
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "a/b/store/devices/board-1.toml", "a/b/store/latency_tables/board-1__tiny.json", "r.json"]


def _proxyless_yaml(mean: Any = 1.5, std: Any = 0.1, count: Any = 10) -> str:
    return (f"Conv-input:224x224x3-output:112x112x32:\n  mean: {mean}\n  std: {std}\n  count: {count}\n"
            "expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0:\n"
            "  mean: 2.0\n  std: 0.2\n  count: 10\n"
            "Logits-input:7x7x1280-output:1000:\n  mean: 0.5\n  std: 0.01\n  count: 10\n")


@pytest.mark.parametrize(("device", "needle"), [
    ("../../X", "device name '../../X' is not allowed"),
    ("", "device name is empty"),
    (INJECTION, "is not allowed"),
    ("ABS", "is not allowed"),
])
def test_lut_import_refuses_unsafe_device_names(tmp_path, store, capsys, device, needle):
    yml = tmp_path / "mobile.yaml"
    yml.write_text(_proxyless_yaml())
    device = str(tmp_path / "X") if device == "ABS" else device
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "lut", "import", "--format", "proxyless", "--device", device, str(yml),
                           "--devices-dir", str(store))
    assert_one_line_error(code, err, needle)
    assert snapshot(tmp_path) == before


def test_lut_fit_refuses_an_unsafe_device_name_before_fitting(tmp_path, store, capsys):
    sp = get_space("nb201")
    csv = tmp_path / "m.csv"
    csv.write_text("arch,latency_ms\n" + "".join(f"{s},{1.0 + i / 10}\n" for i, s in enumerate(sp.sample(12, 1))))
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "lut", "fit", "--space", "nb201", "--measurements", str(csv), "--device", "../../X",
                           "--prior-device", "none", "--no-curve", "--folds", "2", "--devices-dir", str(store))
    assert_one_line_error(code, err, "device name '../../X' is not allowed")
    assert snapshot(tmp_path) == before
    code, _, err = run_cli(capsys, "lut", "fit", "--space", "nb201", "--measurements", str(csv), "--device", "b",
                           "--prior-device", "ok,../../x", "--devices-dir", str(store))
    assert_one_line_error(code, err, "prior device name '../../x' is not allowed")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("argv", "needle"), [
    (["profile", "--device", "../../X", "--space", "tiny"], "device name '../../X' is not allowed"),
    (["profile", "kit", "--device", "../../X", "--space", "tiny", "--out", "OUT"], "device name '../../X'"),
    (["profile", "--device", "nowhere/spec.toml", "--space", "tiny"], "device spec file 'nowhere/spec.toml' not found"),
    (["lut", "show", "--device", "../../X", "--space", "tiny"], "device name '../../X' is not allowed"),
    (["lut", "show", "--device", "", "--space", "tiny"], "device name is empty"),
    (["lut", "show", "--device", "local-cpu-ort", "--space", "../../x"], "space name '../../x' is not allowed"),
    (["lut", "predict", "--device", "../x", "--space", "tiny", "--random", "1", "--no-measure"], "device name '../x'"),
    (["lut", "validate", "--device", "/etc/x", "--space", "tiny"], "device name '/etc/x' is not allowed"),
])
def test_device_flags_of_other_commands_refuse_unsafe_names(tmp_path, store, capsys, argv, needle):
    argv = [str(tmp_path / "kit") if a == "OUT" else a for a in argv]
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, *argv, "--devices-dir", str(store))
    assert_one_line_error(code, err, needle)
    assert snapshot(tmp_path) == before


def test_a_spec_file_given_as_device_still_has_its_name_checked(tmp_path, store, capsys):
    spec = tmp_path / "board.toml"
    spec.write_text('name = "../../evil"\nruntime = "litert"\n')
    code, _, err = run_cli(capsys, "profile", "--device", str(spec), "--space", "tiny", "--devices-dir", str(store))
    assert_one_line_error(code, err, "device name '../../evil' is not allowed")
    spec.write_bytes(b"\xff\xfe\x00binary")
    code, _, err = run_cli(capsys, "lut", "show", "--device", str(spec), "--space", "tiny", "--devices-dir", str(store))
    assert_one_line_error(code, err, "is not a text file")


@pytest.mark.parametrize(("call", "needle"), [
    (lambda st, ok: st.device("../../x"), "device name '../../x' is not allowed"),
    (lambda st, ok: st.device("/abs/x"), "device name '/abs/x' is not allowed"),
    (lambda st, ok: st.device(""), "device name is empty"),
    (lambda st, ok: st.device("missing.toml"), "device spec file 'missing.toml' not found"),
    (lambda st, ok: st.write_path(DeviceSpec(name="../x", runtime="litert"), "tiny"), "device name '../x'"),
    (lambda st, ok: st.write_path(ok, "../../x"), "space name '../../x' is not allowed"),
    (lambda st, ok: st.find_table(ok, "/x"), "space name '/x' is not allowed"),
    (lambda st, ok: DeviceSpec(name="ok", runtime="litert", tables={"tiny": "../../x.json"}).table_name("tiny"),
     "table file '../../x.json' is not allowed"),
    (lambda st, ok: st.save_device({"name": "../x", "runtime": "litert"}, "../x"), "device name '../x'"),
    (lambda st, ok: st.save_device('name = "other"\nruntime = "litert"\n', "mine"), "is named 'other'"),
    (lambda st, ok: st.save_device({"name": "ok2", "runtime": "litert", "local": "yes"}, "ok2"), "'local' must be"),
    (lambda st, ok: st.save_device({"name": "local-cpu-ort", "runtime": "litert"}, "local-cpu-ort") and
     st.save_device({"name": "local-cpu-ort", "runtime": "litert"}, "local-cpu-ort"), "already exists"),
    (lambda st, ok: parse_device({"name": "x", "runtime": "litert", "tables": {"tiny": "/etc/passwd"}}, "s.toml"),
     "table file '/etc/passwd' is not allowed"),
    (lambda st, ok: parse_device({"name": "x", "runtime": "litert", "tables": {"../t": "a.json"}}, "s.toml"),
     "space name '../t' is not allowed"),
    (lambda st, ok: parse_device({"name": "x", "runtime": "litert", "memory": 3}, "s.toml"), "[memory] must be"),
])
def test_device_store_checks_names_itself(tmp_path, call, needle):
    st = DeviceStore(tmp_path / "store")
    ok = DeviceSpec(name="ok", runtime="litert")
    with pytest.raises(EdgenasError) as info:
        call(st, ok)
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.rglob("*.toml")) in ([], ["local-cpu-ort.toml"])


def test_device_specs_are_written_with_a_toml_writer(tmp_path):
    """A description holding quotes and newlines stays a description: no key is injected."""
    st = DeviceStore(tmp_path)
    note = 'x"\nlocal = true\nthreads = 64\n["tables"]'
    path = st.save_device(new_device_spec("board", "litert", note), "board")
    spec = st.device("board")
    assert spec.description == note and spec.local is False and spec.threads == 1 and spec.tables == {}
    assert path == tmp_path / "devices" / "board.toml"


# -- 2. kits with bad numbers never replace a good table ----------------------------------------------
NAN, INF = float("nan"), float("inf")


def _first(d: dict) -> str:
    return next(iter(d))


def _set_entry(field: str, value: Any):
    def mutate(r: dict) -> None:
        r["entries"][_first(r["entries"])][field] = value
    return mutate


def _set(key: str, value: Any):
    def mutate(r: dict) -> None:
        r[key] = value
    return mutate


def _rekey(new_key: str):
    def mutate(r: dict) -> None:
        r["entries"][new_key] = r["entries"].pop(_first(r["entries"]))
    return mutate


def _shape_changed(r: dict) -> None:
    k = next(k for k in r["entries"] if k.startswith("mbconv(") and ",s=1," in k)
    c, h = k.split("o=", 1)[1].split(",", 1)[0].split("x")
    r["entries"][k.replace(f"o={c}x{h}", f"o={c}x{int(h) + 1}")] = r["entries"].pop(k)


def _network(field: str, value: Any):
    def mutate(r: dict) -> None:
        r["networks"][_first(r["networks"])][field] = value
    return mutate


def _feature_nan(r: dict) -> None:
    r["network_features"][_first(r["network_features"])]["unit_io_melems"] = NAN


BAD_KITS = [
    ("nan-median", _set_entry("p50_ms", NAN), "p50_ms = nan"),
    ("inf-mean", _set_entry("mean_ms", INF), "mean_ms = inf"),
    ("negative-median", _set_entry("p50_ms", -1.0), "p50_ms = -1.0"),
    ("zero-median", _set_entry("p50_ms", 0), "p50_ms = 0.0"),
    ("absurd-median", _set_entry("p50_ms", 1e9), "above the plausible 60000 ms"),
    ("negative-std", _set_entry("std_ms", -0.5), "std_ms = -0.5"),
    ("nan-std", _set_entry("std_ms", NAN), "std_ms = nan"),
    ("negative-runs", _set_entry("n", -3), "n = -3"),
    ("zero-runs", _set_entry("n", 0), "n = 0"),
    ("fractional-runs", _set_entry("n", 2.5), "n = 2.5"),
    ("text-median", _set_entry("p50_ms", "fast"), "needs a number 'p50_ms'"),
    ("bool-runs", _set_entry("n", True), "needs a number 'n'"),
    ("entry-not-object", lambda r: r["entries"].update({_first(r["entries"]): 3.0}), "must be an object with"),
    ("no-entries", _set("entries", {}), "'entries' is empty"),
    ("entries-list", _set("entries", []), "'entries' must be an object"),
    ("unknown-unit-key", lambda r: r["entries"].update(bogus={"mean_ms": 1, "std_ms": 0, "p50_ms": 1, "n": 5}),
     "entries are not units of space 'tiny', e.g. 'bogus'"),
    ("other-space-key", _rekey("nb201op(i=16x32,o=16x32,op=c1)"), "are not units of space 'tiny'"),
    ("inconsistent-key", _shape_changed, "are not units of space 'tiny'"),
    ("nan-network", _network("p50_ms", NAN), "network 'tiny:"),
    ("absurd-network", _network("p50_ms", 1e12), "above the plausible"),
    ("foreign-network", lambda r: r["networks"].update({"mbv3:x": r["networks"][_first(r["networks"])]}),
     "network 'mbv3:x' is not an arch of space 'tiny'"),
    ("nan-feature", _feature_nan, "network_features of 'tiny:"),
    ("units-not-list", lambda r: r["network_units"].update({_first(r["network_units"]): "a"}), "network_units of"),
    ("runtime-text", _set("runtime", "onnxruntime"), "'runtime' must be an object"),
    ("host-list", _set("host", [1]), "'host' must be an object"),
    ("bad-op-profiles", _set("op_profiles", {"u": [{"type": "Conv", "avg_ms": NAN}]}), "op_profiles of 'u'"),
    ("another-version", _set("version", 2), "format version 2 is not supported"),
    ("another-format", _set("format", "something-else"), "is not an edgenas kit results file"),
    ("no-space", lambda r: r.pop("space"), "lack 'space'"),
    ("unknown-space", _set("space", "nosuchspace"), "unknown space 'nosuchspace'"),
    ("unsafe-space", _set("space", "../../x"), "space name '../../x' is not allowed"),
]


@pytest.mark.parametrize(("mutate", "needle"), [c[1:] for c in BAD_KITS], ids=[c[0] for c in BAD_KITS])
def test_bad_kit_numbers_never_replace_a_good_table(tmp_path, store, good, capsys, mutate, needle):
    bad = results()
    mutate(bad)
    res = write_json(tmp_path / "bad.json", bad)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "lut", "import-kit", str(res), "--devices-dir", str(store))
    assert_one_line_error(code, err, needle)
    assert snapshot(tmp_path) == before  # the good table, its spec, and nothing new


@pytest.mark.parametrize("mutate", [_set_entry("p50_ms", NAN), _set("entries", {}), _set_entry("n", -1)])
def test_a_failed_import_leaves_no_new_device_spec(tmp_path, store, capsys, mutate):
    bad = results()
    mutate(bad)
    res = write_json(tmp_path / "bad.json", bad)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "lut", "import-kit", str(res), "--device", "fresh-board", "--devices-dir",
                           str(store))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before and not (store / "devices").exists()


def test_a_good_kit_does_replace_the_table(tmp_path, store, capsys):
    """The control for the tests above: a good kit imports, and a second one with other good numbers
    rewrites the table."""
    code, out, err = run_cli(capsys, "lut", "import-kit", str(write_json(tmp_path / "good.json", results())),
                             "--devices-dir", str(store))
    assert code == 0, err
    assert "created device spec" in out and "validation on 6 random networks" in out
    good = store / "latency_tables" / "kitdev__tiny.json"
    assert LatencyTable.load(good).model.fitted_on == 12
    old = good.read_bytes()
    code, _, err = run_cli(capsys, "lut", "import-kit", str(write_json(tmp_path / "new.json", results(scale=2.0))),
                           "--devices-dir", str(store))
    assert code == 0, err
    assert good.read_bytes() != old
    assert not [p for p in good.parent.iterdir() if p.name.startswith(".")]  # no temp file left behind


@pytest.mark.parametrize(("text", "needle"), [
    (b"{not json", "is not valid JSON"),
    (b"\xff\xfe\x00\x01", "is not a text file"),
    (b"", "is empty"),
    (b"[1, 2]", "is not an edgenas kit results file"),
    (b'"results"', "is not an edgenas kit results file"),
])
def test_results_file_that_is_not_a_results_object(tmp_path, store, good, capsys, text, needle):
    res = tmp_path / "bad.json"
    res.write_bytes(text)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "lut", "import-kit", str(res), "--devices-dir", str(store))
    assert_one_line_error(code, err, needle)
    assert snapshot(tmp_path) == before


NATIVE_MANIFEST = {
    "format": "edgenas-kit", "version": 1, "kit_id": "0123456789ab", "device": "phone", "space": "tiny",
    "runtime": "litert", "threads": 1, "runtime_options": {}, "runner": "native",
    "native": {"tool": "benchmark_model", "threads": 1, "args": ["--num_threads=1"], "model_prefix": "--graph="},
    "entries": [{"key": "k", "file": "models/a.tflite"}], "networks": [],
}


def _manifest(**change: Any) -> dict[str, Any]:
    m = copy.deepcopy(NATIVE_MANIFEST)
    for k, v in change.items():
        if v is None:
            m.pop(k)
        else:
            m[k] = v
    return m


@pytest.mark.parametrize(("manifest", "needle"), [
    (b"{oops", "kit manifest"),
    (b"\x80\x81binary", "is not a text file"),
    (b"[]", "is not an edgenas kit manifest"),
    (json.dumps(_manifest(format="other")).encode(), "is not an edgenas kit manifest"),
    (json.dumps(_manifest(device="../../x")).encode(), "device name '../../x' is not allowed"),
    (json.dumps(_manifest(space="")).encode(), "space name is empty"),
    (json.dumps(_manifest(entries="models")).encode(), "'entries' must be a list of {key, file} objects"),
    (json.dumps(_manifest(entries=[])).encode(), "it lists no unit models"),
    (json.dumps(_manifest(native=None)).encode(), "'native' settings"),
    (json.dumps(_manifest(version=3)).encode(), "format version 3"),
])
def test_bad_kit_manifests_are_one_line(tmp_path, store, capsys, manifest, needle):
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "manifest.json").write_bytes(manifest)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "lut", "import-kit", str(kit), "--devices-dir", str(store))
    assert_one_line_error(code, err, needle)
    assert snapshot(tmp_path) == before


def test_results_beside_their_manifest_must_time_the_kits_units(tmp_path, store, capsys):
    res = results(networks=0)
    kit = tmp_path / "kit"
    manifest = _manifest(runner="python", native=None, device="kitdev",
                         entries=[{"key": k, "file": f"models/{i}.onnx"} for i, k in enumerate(res["entries"])])
    write_json(kit / "manifest.json", manifest)
    res["entries"]["conv(i=3x32,o=8x16,k=3,s=2,g=1,act=relu,bn=1,bias=0)"] = {"mean_ms": 1, "std_ms": 0,
                                                                               "p50_ms": 1, "n": 5}
    write_json(kit / "results.json", res)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "lut", "import-kit", str(kit), "--devices-dir", str(store))
    assert_one_line_error(code, err, "have 1 unit(s) the kit does not have, e.g. 'conv(i=3x32")
    (kit / "results.json").write_text("{truncated")
    code, _, err = run_cli(capsys, "lut", "import-kit", str(kit / "results.json"), "--devices-dir", str(store))
    assert_one_line_error(code, err, "kit results")
    assert "is not valid JSON" in err
    assert snapshot(tmp_path) == {**before, "kit/results.json": b"{truncated"}


def test_native_logs_with_bad_numbers_import_nothing(tmp_path, store, capsys):
    """A native kit (real unit keys) whose one log has a negative average: exit 2 naming file and line."""
    text = (FIX / "benchmark_model_litert.log").read_text()
    sp = get_space("tiny")
    units = sorted({u.key for u in sp.units(sp.sample(1, 0)[0])})[:3]
    files = {k: f"models/{i:016x}.tflite" for i, k in enumerate(units)}
    kit_id = "0123456789ab"
    manifest = _manifest(kit_id=kit_id, device="rec-phone",
                         native={"tool": "benchmark_model", "threads": 1, "model_prefix": "--graph=",
                                 "args": ["--num_threads=1", "--use_xnnpack=true", "--enable_op_profiling=true"]},
                         entries=[{"key": k, "file": f} for k, f in files.items()])
    kit = tmp_path / "kit"
    write_json(kit / "manifest.json", manifest)
    (kit / "logs").mkdir()
    for f in files.values():
        log = text.replace("models/5f0b6a21c3d94e87.tflite", f).replace("3c9f2b7e41d0", kit_id)
        (kit / "logs" / (Path(f).stem + ".log")).write_text(log)
    code, _, err = run_cli(capsys, "lut", "import-kit", str(kit), "--devices-dir", str(store))
    assert code == 0, err  # the control: these logs import
    table_path = store / "latency_tables" / "rec-phone__tiny.json"
    victim = kit / "logs" / (Path(files[units[1]]).stem + ".log")
    victim.write_text(victim.read_text().replace("avg=188.34", "avg=-188.34").replace("(avg): 188.34",
                                                                                       "(avg): -188.34"))
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "lut", "import-kit", str(kit), "--devices-dir", str(store))
    assert_one_line_error(code, err, f"{victim}:27: the regular runs' average is -0.18834 ms")
    assert "nothing was imported" in err and snapshot(tmp_path) == before and table_path.exists()


# -- space and runtime of an existing device ----------------------------------------------------------
def test_a_kit_of_another_space_keeps_the_existing_table(tmp_path, store, good, capsys):
    old = good.read_bytes()
    mbv3 = write_json(tmp_path / "m.json", results("mbv3", networks=3))
    code, _, err = run_cli(capsys, "lut", "import-kit", str(mbv3), "--device", "kitdev", "--devices-dir", str(store))
    assert code == 0, err
    assert good.read_bytes() == old and (store / "latency_tables" / "kitdev__mbv3.json").exists()


def test_a_kit_never_overwrites_the_table_of_another_space_in_a_shared_file(tmp_path, store, capsys):
    DeviceStore(store).save_device('name = "shared"\nruntime = "onnxruntime"\n[tables]\ntiny = "one.json"\n'
                                   'mbv3 = "one.json"\n', "shared")
    code, _, err = run_cli(capsys, "lut", "import-kit", str(write_json(tmp_path / "m.json", results("mbv3",
                           networks=3))),
                           "--device", "shared", "--devices-dir", str(store))
    assert code == 0, err
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "lut", "import-kit", str(write_json(tmp_path / "t.json", results())), "--device",
                           "shared", "--devices-dir", str(store))
    before["t.json"] = (tmp_path / "t.json").read_bytes()
    assert_one_line_error(code, err,
                          "one.json' holds the table of shared/mbv3; it is not replaced by one for shared/tiny")
    assert snapshot(tmp_path) == before


def test_a_kit_timed_with_another_runtime_is_not_stored_under_a_device(tmp_path, store, capsys):
    before = snapshot(tmp_path)
    res = write_json(tmp_path / "r.json", results(runtime="litert"))
    before["r.json"] = res.read_bytes()
    code, _, err = run_cli(capsys, "lut", "import-kit", str(res), "--device", "local-cpu-ort", "--devices-dir",
                           str(store))
    assert_one_line_error(code, err, "the kit was timed with litert, but device 'local-cpu-ort' runs onnxruntime")
    assert snapshot(tmp_path) == before


# -- profile kit --out -----------------------------------------------------------------------------
@pytest.mark.parametrize(("prepare", "needle"), [
    (lambda d: (d.mkdir(), (d / "notes.txt").write_text("mine")), "exists and is not a kit"),
    (lambda d: d.write_text("a file"), "is a file"),
    (lambda d: (d.mkdir(), (d / "manifest.json").write_text("{}"), (d / "results.json").write_text("{}")),
     "already holds measurements (results.json)"),
])
def test_profile_kit_out_onto_something_else_changes_nothing(tmp_path, store, capsys, prepare, needle):
    out = tmp_path / "out"
    prepare(out)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "profile", "kit", "--device", "local-cpu-ort", "--space", "tiny", "--random", "1",
                           "--networks", "0", "--out", str(out), "--devices-dir", str(store))
    assert_one_line_error(code, err, needle)
    assert snapshot(tmp_path) == before


# -- published tables -----------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "fmt", "needle"), [
    (_proxyless_yaml(mean=".nan"), "proxyless", "mean_ms = nan"),
    (_proxyless_yaml(mean=".inf"), "proxyless", "mean_ms = inf"),
    (_proxyless_yaml(mean=-1.5), "proxyless", "mean_ms = -1.5"),
    (_proxyless_yaml(mean=0), "proxyless", "mean_ms = 0.0"),
    (_proxyless_yaml(mean=1e9), "proxyless", "above the plausible 60000 ms"),
    (_proxyless_yaml(std=-1), "proxyless", "negative or non-finite std -1.0"),
    (_proxyless_yaml(count=-5), "proxyless", "has count -5"),
    (_proxyless_yaml(count=0), "proxyless", "has count 0"),
    (_proxyless_yaml(mean="fast"), "proxyless", "needs numeric 'mean'"),
    ("", "proxyless", "is not a published latency table"),
    ("[1, 2]", "proxyless", "is not a published latency table"),
    ("a: [unclosed", "proxyless", "is not valid YAML"),
    (b"\xff\xfe\x00binary", "proxyless", "is not a text file"),
    ("Conv-input:garbage:\n  mean: 1.0\n", "ofa", "'Conv-input:garbage' is not an ofa layer key"),
])
def test_bad_published_tables_keep_the_old_table(tmp_path, store, capsys, text, fmt, needle):
    good_yaml = tmp_path / "good.yaml"
    good_yaml.write_text(_proxyless_yaml())
    code, _, err = run_cli(capsys, "lut", "import", "--format", "proxyless", "--device", "pix", str(good_yaml),
                           "--devices-dir", str(store))
    assert code == 0, err
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "lut", "import", "--format", fmt, "--device", "pix", str(bad),
                           "--devices-dir", str(store))
    assert_one_line_error(code, err, needle)
    assert snapshot(tmp_path) == before


# -- native logs ------------------------------------------------------------------------------------
LITERT = (FIX / "benchmark_model_litert.log").read_text()
ORT = (FIX / "ort_perf_test_1.x.log").read_text()
_REGULAR = LITERT.index("Operator-wise Profiling Info for Regular Benchmark Runs")


@pytest.mark.parametrize(("parse", "text", "needle"), [
    (parse_benchmark_model, LITERT.replace("avg=188.34", "avg=-188.34").replace("(avg): 188.34", "(avg): -188.34"),
     ":27: the regular runs' average is -0.18834 ms"),
    (parse_benchmark_model, LITERT.replace("avg=188.34", "avg=9e10").replace("(avg): 188.34", "(avg): 9e10"),
     ":27: the regular runs' average is 9e+07 ms, above the plausible"),
    (parse_benchmark_model, LITERT.replace("avg=188.34", "avg=1e999").replace("(avg): 188.34", "(avg): 1e999"),
     ":27: the regular runs' average is inf ms"),
    (parse_benchmark_model, LITERT.replace("std=3\n", "std=-3\n", 2), "the regular runs' std is -0.003 ms"),
    (parse_benchmark_model, LITERT[:_REGULAR] + LITERT[_REGULAR:].replace("0.176", "nan", 1), "[avg ms] is nan ms"),
    (parse_ort_perf_test, ORT.replace("time cost: 0.207834 ms", "time cost: -0.207834 ms"), "the average is -0.207834"),
    (parse_ort_perf_test, ORT.replace("P50 Latency: 0.000204962 s", "P50 Latency: 1e999 s"), "p50 is inf ms"),
    (parse_ort_perf_test, ORT.replace("Min Latency: 0.000198317 s", "Min Latency: -1 s"), "min is -1000.0 ms"),
])
def test_native_log_numbers_are_checked(parse, text, needle):
    with pytest.raises(LogError) as info:
        parse(text, "x.log")
    assert needle in str(info.value) and str(info.value).startswith("x.log:")


# -- hand-edited table files ------------------------------------------------------------------------
@pytest.mark.parametrize(("edit", "needle"), [
    (lambda d: d["model"].update(overhead_ms=NAN), "device model overhead_ms = nan is not finite"),
    (lambda d: d["model"].update(scale=INF), "device model scale = inf is not finite"),
    (lambda d: d["model"].update(terms={"unit_io_melems": NAN}), "device model terms.unit_io_melems = nan"),
    (lambda d: d["model"].update(fitted_on=-2), "fitted_on = -2 is negative"),
    (lambda d: d.update(model=[1]), "'model' must be an object"),
    (lambda d: d["entries"][_first(d["entries"])].update(p50_ms=NAN), "has a negative or non-finite time"),
    (lambda d: d["entries"][_first(d["entries"])].update(n=-4), "n = -4"),
    (lambda d: d.update(batch=0), "batch 0 is not a positive integer"),
    (lambda d: d.update(device="../../x"), "device name '../../x' is not allowed"),
])
def test_hand_edited_tables_are_one_line_naming_the_file(tmp_path, store, good, capsys, edit, needle):
    data = json.loads(good.read_text())
    edit(data)
    good.write_text(json.dumps(data))
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "lut", "show", "--device", "kitdev", "--space", "tiny", "--devices-dir", str(store))
    assert_one_line_error(code, err, f"latency table '{good}': ")
    assert needle in err
    code, _, err = run_cli(capsys, "lut", "predict", "--device", "kitdev", "--space", "tiny", "--random", "2",
                           "--no-measure", "--devices-dir", str(store))
    assert_one_line_error(code, err, needle)
    assert snapshot(tmp_path) == before


def test_unit_keys_of_every_shipped_table_and_space_are_recognised(repo):
    """The key check refuses foreign keys (tests above) but no real one: every shipped table's keys and
    the units of sampled specs of every space, also with non-default options and tasks."""
    for path in sorted((repo / "latency_tables").glob("*.json")):
        t = LatencyTable.load(path)
        assert all(is_space_unit_key(t.space, k) for k in t.entries), path
    for name, opts, task in [("tiny", {}, None), ("tiny", {"widths": [0.5], "resolutions": [32]}, Task(10, 1)),
                             ("mbv3", {}, None), ("proxyless", {}, None), ("fbnet", {}, Task(100)),
                             ("nb201", {}, None)]:
        sp = get_space(name, **opts)
        keys = {u.key for s in sp.sample(30, 2) for u in sp.units(s, task)}
        assert all(is_space_unit_key(name, k) for k in keys), name


# -- 3. --weights files -----------------------------------------------------------------------------
class _Payload:
    """A pickle that creates ``marker`` when unpickled by a plain (unsafe) unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _weights_files(tmp_path: Path) -> dict[str, Path]:
    import torch

    d = tmp_path / "w"
    d.mkdir()
    files = {name: d / f"{name}.pt" for name in ("text", "empty", "list", "tensor", "other-arch", "not-tensors",
                                                 "malicious", "wrapped-list", "folder")}
    files["text"].write_text("these are not weights\n")
    files["empty"].write_bytes(b"")
    torch.save([1, 2, 3], files["list"])
    torch.save(torch.zeros(3), files["tensor"])
    torch.save({"fc.weight": torch.zeros(2, 2)}, files["other-arch"])
    torch.save({"fc.weight": 1.0}, files["not-tensors"])
    files["malicious"].write_bytes(pickle.dumps(_Payload(tmp_path / "PWNED")))
    torch.save({"state_dict": [1]}, files["wrapped-list"])
    files["folder"].mkdir()
    return files


WEIGHTS_CASES = [
    ("text", "is not a torch state dict file"),
    ("empty", "is empty (0 bytes)"),
    ("list", "is not a state dict (it holds a list)"),
    ("tensor", "is not a state dict (it holds a Tensor)"),
    ("other-arch", "is not a state dict for this architecture"),
    ("not-tensors", "is not a state dict (entry 'fc.weight' is not a named tensor)"),
    ("malicious", "holds objects other than tensors (refused without running them"),
    ("wrapped-list", "is not a state dict (entry 'state_dict' is not a named tensor)"),
    ("folder", "is a folder, not a torch state dict file"),
    ("missing", "not found"),
]


def test_the_malicious_pickle_is_live(tmp_path):
    """The payload used below really runs code under a plain unpickler (so its absence later means
    something)."""
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()


@pytest.mark.parametrize(("name", "needle"), WEIGHTS_CASES)
def test_export_weights_files_are_one_line(tmp_path, name, needle):
    from edgenas.exporters.weights import check_weights, load_weights

    files = _weights_files(tmp_path)
    path = files.get(name, tmp_path / "w" / "missing.pt")
    sp = get_space("tiny")
    spec = sp.parse("tiny:w0.5:r32:k3e3_k3e3_k3e3_k3e3")
    for fn in (load_weights, check_weights):
        with pytest.raises(EdgenasError) as info:
            fn(sp, spec, Task(), path)
        msg = str(info.value)
        assert msg.startswith(f"--weights '{path}'") and needle in msg and "\n" not in msg, msg
    assert not (tmp_path / "PWNED").exists()


def test_export_weights_of_the_architecture_load(tmp_path):
    import torch

    from edgenas.exporters.weights import load_weights

    sp = get_space("tiny")
    spec = sp.parse("tiny:w0.5:r32:k3e3_k3e3_k3e3_k3e3")
    path = tmp_path / "w.pt"
    torch.save({"state_dict": sp.build(spec, Task()).state_dict()}, path)  # a checkpoint wrapping it is fine too
    assert load_weights(sp, spec, Task(), path).record["source"] == "weights file"
    state = sp.build(spec, Task()).state_dict()
    key = next(k for k, v in state.items() if v.ndim == 4)
    state[key] = torch.zeros(1, 1, 1, 1)
    torch.save(state, path)
    with pytest.raises(EdgenasError, match=rf"{key!r} has shape \(1, 1, 1, 1\), the architecture needs"):
        load_weights(sp, spec, Task(), path)


@pytest.mark.parametrize(("name", "needle"), WEIGHTS_CASES)
def test_ofa_predictor_weights_files_are_one_line(tmp_path, capsys, name, needle):
    files = _weights_files(tmp_path)
    path = files.get(name, tmp_path / "w" / "missing.pt")
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "estimate", "--space", "mbv3", "--estimator", "ofa-predictor", "--weights",
                           str(path),
                           "--arch", TUTORIAL)
    assert_one_line_error(code, err, f"ofa-predictor weights '{path}' {needle}" if name != "missing" else "not found")
    assert not (tmp_path / "PWNED").exists() and snapshot(tmp_path) == before


def test_ofa_predictor_loads_a_matching_state_dict(tmp_path, capsys):
    import torch

    from edgenas.estimators.ofa_predictor import FEATURES

    mlp = torch.nn.Sequential(torch.nn.Linear(FEATURES, 400), torch.nn.ReLU(), torch.nn.Linear(400, 400),
                              torch.nn.ReLU(), torch.nn.Linear(400, 400), torch.nn.ReLU(), torch.nn.Linear(400, 1))
    torch.save(mlp.state_dict(), tmp_path / "acc.pth")
    code, out, err = run_cli(capsys, "estimate", "--space", "mbv3", "--estimator", "ofa-predictor", "--weights",
                             str(tmp_path / "acc.pth"), "--arch", TUTORIAL, "--json")
    assert code == 0, err
    assert json.loads(out)[0]["arch"] == TUTORIAL


# -- a table that cannot be written leaves no new device spec behind ----------------------------------------
def test_import_whose_table_cannot_be_written_leaves_no_spec(tmp_path, store, capsys):
    (store / "latency_tables").write_text("a file where the table folder should be")
    before = snapshot(tmp_path)
    res = write_json(tmp_path / "r.json", results(networks=0))
    before["r.json"] = res.read_bytes()
    code, _, err = run_cli(capsys, "lut", "import-kit", str(res), "--devices-dir", str(store))
    assert_one_line_error(code, err, "cannot write or read")
    assert snapshot(tmp_path) == before and not (store / "devices" / "kitdev.toml").exists()


@pytest.mark.slow  # two fits (about 6 s)
def test_lut_fit_writes_the_new_device_spec_only_with_its_table(tmp_path, store, capsys):
    sp = get_space("nb201")
    csv = tmp_path / "m.csv"
    csv.write_text("arch,latency_ms\n" + "".join(f"{s},{1.0 + (i % 5) / 10}\n" for i, s in enumerate(sp.sample(12, 1))))
    (store / "latency_tables").write_text("a file where the table folder should be")
    before = snapshot(tmp_path)
    code, out, err = run_cli(capsys, "lut", "fit", "--space", "nb201", "--measurements", str(csv), "--device", "board",
                             "--prior-device", "none", "--no-curve", "--folds", "2", "--devices-dir", str(store))
    assert_one_line_error(code, err, "cannot write or read")
    assert "created device spec" not in out and snapshot(tmp_path) == before
    (store / "latency_tables").unlink()
    code, out, err = run_cli(capsys, "lut", "fit", "--space", "nb201", "--measurements", str(csv), "--device", "board",
                             "--prior-device", "none", "--no-curve", "--folds", "2", "--devices-dir", str(store))
    assert code == 0, err
    assert f"created device spec {store / 'devices' / 'board.toml'}" in out
    assert DeviceStore(store).load_table(DeviceStore(store).device("board"), "nb201").device == "board"
