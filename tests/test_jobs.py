"""The typed job layer (edgenas/jobs.py): one schema per table, one path rule, overrides, the stored form
a search keeps, and run_job as the Python entrance."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from searchkit import BOARD, user_dir, write_board

from edgenas.jobs import (
    ConfigError,
    DeviceConfig,
    EstimatorConfig,
    ExportConfig,
    JobConfig,
    SearchConfig,
    SpaceConfig,
    TaskConfig,
    run_job,
)

REPO = Path(__file__).resolve().parent.parent
FULL = """
[space]
name = "tiny"
options = { resolutions = [32, 48] }
[task]
num_classes = 10
in_channels = 1
[device]
name = "test-board"
latency_csv = "lat.csv"
latency_column = "ms"
[estimator]
name = "train"
seed = 3
dataset = "data/set.npz"
options = { epochs = 1, path = "t.csv" }
[search]
objectives = ["accuracy", "latency_ms@test-board"]
budgets = ["peak_ram_bytes<=64KiB"]
sampler = "frontier"
sampler_options = { init = 4 }
trials = 12
reference = { accuracy = 0.5 }
out = "runs/x"
[export]
formats = ["onnx", "tflm"]
trials = [3, 17]
dataset = "digits"
"""


def test_a_job_file_round_trips_and_resolves_inputs_against_its_folder(tmp_path):
    f = tmp_path / "sub" / "job.toml"
    f.parent.mkdir()
    f.write_text(FULL)
    cfg = JobConfig.from_toml(f)
    folder = f.parent.resolve()
    assert cfg.device is not None and cfg.device.latency_csv == str(folder / "lat.csv")  # inputs: the file's folder
    assert cfg.estimator is not None and cfg.estimator.dataset == str(folder / "data/set.npz")
    assert cfg.estimator.options["path"] == str(folder / "t.csv")
    assert cfg.export is not None and cfg.export.dataset == "digits"  # a built-in name is not a path
    assert cfg.search is not None and cfg.search.out == "runs/x"  # outputs: the working directory
    assert cfg.export.trials == [3, 17]
    again = JobConfig.from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()
    assert JobConfig.from_dict(tomllib_loads(cfg.to_toml())).to_dict() == cfg.to_dict()


def tomllib_loads(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


def test_the_stored_form_rebuilds_the_same_job(tmp_path):
    f = tmp_path / "job.toml"
    f.write_text(FULL)
    cfg = JobConfig.from_toml(f)
    resolved = cfg.resolved()
    assert resolved["devices"] == [{"name": "test-board"}, {"name": "ms", "csv": str(tmp_path.resolve() / "lat.csv"),
                                                             "column": "ms"}]
    assert "out" not in resolved["search"] and "export" not in resolved
    back = JobConfig.from_resolved(resolved)
    assert back.resolved() == resolved


def test_overrides_are_checked_like_the_file_and_none_means_unset():
    cfg = JobConfig(space=SpaceConfig("tiny"))
    new = cfg.with_overrides(search={"trials": "20", "timeout": None}, task={"num_classes": 4})
    assert new.search == SearchConfig(trials=20) and new.task == TaskConfig(num_classes=4)
    assert cfg.search is None  # a copy: the original is unchanged
    with pytest.raises(ConfigError) as err:
        cfg.with_overrides(search={"trials": "zero"})
    assert (err.value.table, err.value.key) == ("search", "trials") and err.value.origin is None
    with pytest.raises(ConfigError, match=r"\[search\] workers: must be >= 1"):
        cfg.with_overrides(search={"workers": 0})
    with pytest.raises(ConfigError, match=r"\[bogus\]: unknown table"):
        cfg.with_overrides(bogus={"x": 1})
    whole = cfg.with_overrides(device=DeviceConfig(names=["a", "b"]))
    assert whole.device is not None and whole.device.device_names() == ["a", "b"]


def test_tables_check_their_values():
    with pytest.raises(ConfigError, match=r"device name '\.\./x' is not allowed"):
        DeviceConfig(name="../x")
    with pytest.raises(ConfigError, match="listed twice"):
        DeviceConfig(name="a", names=["a"])
    with pytest.raises(ConfigError, match="latency_csv needs latency_column"):
        DeviceConfig(latency_csv="x.csv")
    with pytest.raises(ConfigError, match="exports a search's front and needs a"):
        JobConfig(space=SpaceConfig("tiny"), export=ExportConfig())
    assert ExportConfig(trials="3, 17").trials == [3, 17]
    assert ExportConfig(formats=["onnx", "onnx"]).formats == ["onnx"]


def test_estimator_chains():
    chain = EstimatorConfig.chain("synflow>train", {"epochs": 1, "keep": 0.5}, seed=2)
    assert chain == EstimatorConfig("filter", seed=2, options={
        "cheap": "synflow", "expensive": "train", "keep": 0.5, "expensive_options": {"epochs": 1}})
    assert chain.label() == "synflow>train (keep 0.5)"
    assert EstimatorConfig.chain("synflow", {}).options == {}
    with pytest.raises(ConfigError, match="a chain is CHEAP>EXPENSIVE"):
        EstimatorConfig.chain("synflow>", {})
    with pytest.raises(ConfigError, match="applies to an estimator chain"):
        EstimatorConfig.chain("synflow", {}, keep=0.5)


def test_run_job_describes_without_a_search_table():
    cfg = JobConfig.from_dict({"space": {"name": "tiny"}, "describe": {"random": 3, "seed": 1},
                               "estimator": {"name": "params"}})
    result = run_job(cfg)
    assert result.describe is not None and result.search is None and result.ok
    assert len(result.describe.records) == 3 and result.describe.columns[-1] == "score"
    assert all(r["score"] == r["params"] for r in result.describe.records)


def test_run_job_searches_from_python(tmp_path):
    write_board(user_dir(), "tiny")
    cfg = JobConfig(space=SpaceConfig("tiny", {"resolutions": [32]}), device=DeviceConfig(name=BOARD),
                    estimator=EstimatorConfig("params"),
                    search=SearchConfig(trials=5, sampler="random-feasible", budgets=["latency_ms<=0.5"],
                                        out=str(tmp_path / "run")))
    seen = []
    result = run_job(cfg, quiet=True, progress=False, on_search=seen.append)
    assert result.search is not None and seen == [result.search]
    assert result.search.run_dir == tmp_path / "run" and (tmp_path / "run" / "front.json").is_file()
    assert result.search.front and all(r["latency_ms"] <= 0.5 for r in result.search.front)
    stored = JobConfig.from_resolved(result.search.job.config)
    assert dataclasses.replace(stored.search, out=None) == dataclasses.replace(cfg.search, out=None)


def test_the_demo_job_parses():
    cfg = JobConfig.from_toml(REPO / "examples" / "demo.toml")
    assert cfg.search is not None and cfg.export is not None


def test_own_data_example_is_a_supernet_job(repo):
    """examples/own_data.toml (the README's 'search on your own data' job) reads as the supernet flow."""
    cfg = JobConfig.from_toml(repo / "examples" / "own_data.toml")
    assert cfg.kind() == "search" and cfg.supernet is not None and cfg.supernet.epochs == 10
    assert cfg.estimator is not None and cfg.estimator.name == "supernet" and cfg.estimator.weights is None
    assert cfg.export is not None and cfg.export.init == "supernet"
    done = cfg.with_supernet_weights(cfg.supernet.out)
    assert done.estimator.weights == cfg.supernet.out and done.export.init == f"supernet:{cfg.supernet.out}"
    cfg.space.build()


def test_the_trust_example_asks_its_estimator_for_the_trust_metrics():
    """examples/trust.toml (the demo on worst_class_accuracy under a calibration budget): its chain's trained
    member computes both metrics; nothing runs."""
    from edgenas.search.job import SearchJob

    job = SearchJob(JobConfig.from_toml(REPO / "examples" / "trust.toml"))
    assert [f.name for f in job.objectives] == ["worst_class_accuracy", "latency_ms"]
    assert [str(b) for b in job.budgets][-1] == "calibration_error<=0.25"
    assert job.config["estimator"]["options"]["expensive_options"] == {
        "epochs": 2, "metrics": ["worst_class_accuracy", "calibration_error"]}


def test_export_trials_take_a_thinned_front():
    """``pareto:N``: N models spread along the front from most to least accurate, both ends kept."""
    from edgenas.errors import EdgenasError
    from edgenas.exporters.pipeline import spread_along_front
    from edgenas.jobs import parse_trials

    assert parse_trials("pareto:4") == "pareto:4" and parse_trials(" pareto ") == "pareto"
    for bad in ("pareto:0", "pareto:x", "pareto:"):
        with pytest.raises(EdgenasError, match="pareto:N takes a whole number"):
            parse_trials(bad)
    front = [{"trial": t, "accuracy": a} for t, a in enumerate([0.90, 0.99, 0.95, 0.97, 0.93, 0.91, 0.98])]
    picked = spread_along_front(front, 3)
    assert [r["accuracy"] for r in picked] == [0.99, 0.95, 0.90]
    assert [r["accuracy"] for r in spread_along_front(front, 1)] == [0.99]
    assert spread_along_front(front, 7) == front and spread_along_front(front[:2], 4) == front[:2]
