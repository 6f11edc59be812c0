"""The search's own cost: the meter (CPU with children, RAPL energy from a fake powercap tree: deltas, the
zones it sums, counter wrap, unreadable files; NVML through a stand-in pynvml), the run totals over
sessions and trials, and real tiny searches whose run.json holds them (metered, unmetered, resumed)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from searchkit import BOARD, user_dir, write_board

from edgenas.cli.main import main
from edgenas.search import optuna_compat as compat
from edgenas.search.meter import POWERCAP_ENV, Meter, Spent, cpu_seconds
from edgenas.search.owncost import Session, describe_cost, run_cost, set_trial_cost
from edgenas.search.record import WORKER_ATTR

BIG_UJ = 10**15


def zone(root: Path, folder: str, name: str, energy_uj: int, max_uj: int = BIG_UJ) -> Path:
    """One powercap zone as sysfs lays it out (name, energy_uj, max_energy_range_uj)."""
    d = root / folder
    d.mkdir(parents=True)
    (d / "name").write_text(f"{name}\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def set_uj(d: Path, value: int) -> None:
    tmp = d / "energy_uj.tmp"
    tmp.write_text(f"{value}\n")
    os.replace(tmp, d / "energy_uj")  # a reader sees the old or the new file, never half of one


@pytest.fixture
def no_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` fails: hermetic on GPU machines too


# -- the meter ------------------------------------------------------------------------------------
def test_rapl_sums_packages_and_dram_once(tmp_path, no_nvml):
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 1_000)
    core = zone(tmp_path, "intel-rapl:0:0", "core", 50)
    dram = zone(tmp_path, "intel-rapl:0:2", "dram", 500)
    pkg1 = zone(tmp_path, "intel-rapl:1", "package-1", 0)
    mmio = zone(tmp_path, "intel-rapl-mmio:0", "package-0", 7)  # the same package through MMIO
    psys = zone(tmp_path, "intel-rapl:2", "psys", 0)  # the platform: contains the packages
    (tmp_path / "intel-rapl").mkdir()  # the control type folder sysfs also lists
    meter = Meter(tmp_path)
    assert meter.has_energy
    assert meter.energy_meter.startswith("rapl: package-0, package-1, dram (package-0); nvml: pynvml not installed")
    assert "DRAM" in meter.energy_scope and "every process" in meter.energy_scope
    start = meter.mark()
    set_uj(pkg, 1_000 + 3_000_000)
    set_uj(pkg1, 250_000)
    set_uj(dram, 500 + 500_000)
    for skipped in (core, mmio, psys):  # inside a package, or a second view of one: not added
        set_uj(skipped, 99_000_000)
    spent = meter.since(start)
    assert spent.energy_j == pytest.approx(3.75)
    assert spent.wall_s > 0 and spent.cpu_s >= 0


def test_amd_naming_and_psys_alone(tmp_path, no_nvml):
    amd = zone(tmp_path / "a", "amd-rapl:0", "package-0", 10)
    meter = Meter(tmp_path / "a")
    start = meter.mark()
    set_uj(amd, 2_000_010)
    assert meter.since(start).energy_j == pytest.approx(2.0)
    psys = zone(tmp_path / "p", "intel-rapl:0", "psys", 0)
    meter = Meter(tmp_path / "p")
    assert meter.energy_meter.startswith("rapl: psys") and meter.energy_scope.startswith("the platform")
    start = meter.mark()
    set_uj(psys, 1_500_000)
    assert meter.since(start).energy_j == pytest.approx(1.5)


def test_counter_wrap_is_added_once_per_wrap(tmp_path, no_nvml):
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 900_000, max_uj=1_000_000)
    meter = Meter(tmp_path)
    start = meter.mark()
    set_uj(pkg, 100_000)  # wrapped: 100k to the top, then 100k
    assert meter.since(start).energy_j == pytest.approx(0.2)
    set_uj(pkg, 50_000)  # wrapped again (+950k) ...
    meter.mark()  # ... seen by a read in between (the poller reads every poll_s)
    set_uj(pkg, 40_000)  # and again (+990k)
    assert meter.since(start).energy_j == pytest.approx(0.2 + 0.95 + 0.99)


def test_the_poller_reads_counters_between_marks(tmp_path, no_nvml):
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 900_000, max_uj=1_000_000)
    meter = Meter(tmp_path, poll_s=0.02)
    start = meter.mark()  # starts the poller
    set_uj(pkg, 500_000)  # +600k
    deadline = time.monotonic() + 10
    while meter._counters[0].last_uj != 500_000 and time.monotonic() < deadline:  # the poller's read
        time.sleep(0.01)
    set_uj(pkg, 400_000)  # +900k: two wraps in all, only the poller saw the first
    assert meter.since(start).energy_j == pytest.approx(1.5)
    meter.close()


def test_unreadable_counters_are_no_meter(tmp_path, monkeypatch, no_nvml):
    zone(tmp_path, "intel-rapl:0", "package-0", 0)
    dram = zone(tmp_path, "intel-rapl:0:2", "dram", 0)
    real = Path.read_text

    def denied(self: Path, *args, **kwargs) -> str:
        if self == dram / "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    meter = Meter(tmp_path)  # one zone unreadable: a partial sum would undercount
    assert not meter.has_energy and meter.energy_scope is None
    assert meter.energy_meter.startswith(f"none: rapl: {dram / 'energy_uj'} is not readable by this user")
    assert meter.since(meter.mark()).energy_j is None
    monkeypatch.undo()

    pkg = zone(tmp_path / "late", "intel-rapl:0", "package-0", 0)
    meter = Meter(tmp_path / "late", nvml=False)
    start = meter.mark()
    (pkg / "energy_uj").unlink()  # stops being readable mid-run
    assert meter.since(start).energy_j is None
    assert meter.energy_meter.startswith("none: an energy counter stopped being readable")
    assert meter.describe()["energy_scope"] is None


def test_no_meter_is_said_not_guessed(tmp_path, no_nvml):
    meter = Meter(tmp_path / "absent")
    assert not meter.has_energy
    assert meter.energy_meter == (f"none: rapl: no {tmp_path / 'absent'} (no RAPL powercap on this machine); "
                                  f"nvml: pynvml not installed (pip install nvidia-ml-py)")
    start = meter.mark()
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    spent = meter.since(start)
    assert spent.energy_j is None and spent.cpu_s >= 0.04 and spent.wall_s >= spent.cpu_s * 0.5
    assert spent.as_dict()["energy_j"] is None


def test_cpu_counts_ended_child_processes(tmp_path):
    before = cpu_seconds()
    subprocess.run([sys.executable, "-c", "import time\nt = time.process_time() + 0.3\n"
                    "while time.process_time() < t: pass"], check=True)
    assert cpu_seconds() - before >= 0.3  # the child's CPU (getrusage RUSAGE_CHILDREN), not only ours


def test_nvml_gpus_with_and_without_a_counter(tmp_path, monkeypatch):
    energy_mj = {0: 1_000}

    def total_energy(h: int) -> int:
        if h == 1:
            raise RuntimeError("Not Supported")  # NVMLError_NotSupported: a pre-Volta GPU
        return energy_mj[h]

    fake = SimpleNamespace(nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 2, nvmlDeviceGetHandleByIndex=lambda i: i,
                           nvmlDeviceGetName=lambda h: b"Fake GPU", nvmlDeviceGetTotalEnergyConsumption=total_energy)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    meter = Meter(tmp_path / "absent")
    assert meter.has_energy and meter.energy_scope.startswith("whole GPU board(s) (NVML)")
    assert "nvml: GPU 0 Fake GPU (no counter: GPU 1: Not Supported)" in meter.energy_meter
    start = meter.mark()
    energy_mj[0] += 2_500
    assert meter.since(start).energy_j == pytest.approx(2.5)

    def broken() -> None:
        raise RuntimeError("Driver Not Loaded")

    monkeypatch.setitem(sys.modules, "pynvml", SimpleNamespace(nvmlInit=broken))
    meter = Meter(tmp_path / "absent")
    assert not meter.has_energy and "nvml: NVML did not start: Driver Not Loaded" in meter.energy_meter


# -- run totals ------------------------------------------------------------------------------------
def _trial(study: optuna.Study, host: str, pid: int, spent: Spent | None, fail: bool = False) -> int:
    t = study.ask()
    compat.set_system_attr(study, t, WORKER_ATTR, {"host": host, "pid": pid})
    if spent is not None:
        set_trial_cost(t, spent)
    if fail:
        study.tell(t, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(t, 1.0)
    return t.number


def test_run_totals_sum_trials_and_every_sessions_overhead(tmp_path, no_nvml):
    import socket

    study = optuna.create_study()
    me, child = os.getpid(), 4_000_000  # a child worker pid no real process has
    session = Session("search", Meter(tmp_path / "absent"))
    session.children.append(child)
    ours = [_trial(study, socket.gethostname(), pid, Spent(1.0, 2.0, None)) for pid in (me, child, child)]
    _trial(study, socket.gethostname(), 5, Spent(9.0, 9.0, None))  # another process on this host: not ours
    rec = session.finish(study)
    assert rec["trials"] == ours and rec["trials_cpu_s"] == 3.0 and rec["pids"] == [me, child]
    assert rec["role"] == "search" and rec["energy_j"] is None and rec["energy_meter"].startswith("none: rapl: no")

    # a worker on another machine, its session recorded by hand: 4 CPU-s of which 2.5 in its one trial
    remote = _trial(study, "machine-b", 77, Spent(2.5, 3.0, 6.0))
    study.set_user_attr("edgenas:session:machine-b:77:1", {
        "role": "worker", "host": "machine-b", "pids": [77], "started": rec["started"] + 1.0,
        "ended": rec["ended"] + 100.0, "cpu_s": 4.0, "wall_s": 99.0, "energy_j": 50.0,
        "energy_meter": "rapl: package-0", "energy_scope": "CPU package(s) (RAPL): every process on this machine",
        "trials": [remote], "trials_cpu_s": 2.5})
    cost = run_cost(study)
    assert cost["trials"]["measured"] == 5 and cost["trials"]["cpu_s"] == pytest.approx(3.0 + 9.0 + 2.5)
    assert cost["overhead_cpu_s"] == pytest.approx(rec["cpu_s"] - 3.0 + 1.5)
    assert cost["cpu_s"] == pytest.approx(cost["trials"]["cpu_s"] + cost["overhead_cpu_s"])
    # wall: the union of both sessions and of the trial no session covers (inside the first: adds nothing)
    assert cost["wall_s"] == pytest.approx(rec["ended"] + 100.0 - rec["started"], abs=0.01)
    assert cost["energy_j"] is None  # this machine had no meter: no total is made up from the other's
    assert cost["energy_meter"].count("none: rapl") == 1 and "machine-b: rapl: package-0" in cost["energy_meter"]
    assert not cost["complete"] and cost["not_counted"][0].startswith("1 finished trial(s) ran in processes")
    assert [s["trials"] for s in cost["sessions"]] == [3, 1]
    assert describe_cost(cost).startswith(f"search cost: {cost['cpu_s']:.1f} CPU-s (14.5 in 5 trials + ")
    assert "energy not measured" in describe_cost(cost) and "incomplete: 1 finished trial(s)" in describe_cost(cost)

    _trial(study, socket.gethostname(), 5, None, fail=True)  # interrupted before its cost was recorded
    assert run_cost(study)["not_counted"][1].startswith("1 trial(s) ended before their cost was recorded")


def test_overlapping_metered_sessions_on_one_machine_are_named(no_nvml):
    study = optuna.create_study()
    n = _trial(study, "h", 1, Spent(1.0, 1.0, 2.0))
    m = _trial(study, "h", 2, Spent(1.0, 1.0, 3.0))
    for pid, trial, t0 in ((1, n, 0.0), (2, m, 5.0)):
        study.set_user_attr(f"edgenas:session:h:{pid}:{t0}", {
            "role": "worker", "host": "h", "pids": [pid], "started": t0, "ended": t0 + 10.0, "cpu_s": 2.0,
            "wall_s": 10.0, "energy_j": 20.0, "energy_meter": "rapl: package-0", "energy_scope": "x",
            "trials": [trial], "trials_cpu_s": 1.0})
    cost = run_cost(study)
    assert cost["complete"] and cost["energy_j"] == 40.0 and cost["wall_s"] == 15.0 and cost["cpu_s"] == 4.0
    assert cost["energy_meter"] == "rapl: package-0" and cost["trials"]["energy_j"] == 5.0
    assert cost["not_counted"] == ["sessions 1 and 2 on h overlapped: each metered the whole machine, so "
                                   "energy_j counts their shared time twice"]


# -- real searches ----------------------------------------------------------------------------------
@pytest.fixture
def board() -> str:
    write_board(user_dir(), "tiny")
    return BOARD


def _search(run: Path, trials: int) -> list[str]:
    return ["search", "--space", "tiny", "--device", BOARD, "--estimator", "params", "--sampler", "random",
            "--trials", str(trials), "--out", str(run), "--no-progress", "-q"]


def test_a_metered_search_records_its_cost_per_trial_and_in_total(board, tmp_path, monkeypatch, capsys, no_nvml):
    root = tmp_path / "powercap"
    pkg = zone(root, "intel-rapl:0", "package-0", 0)
    monkeypatch.setenv(POWERCAP_ENV, str(root))
    counter = {"uj": 0}
    stop = threading.Event()

    def burn() -> None:  # the fake package draws 1 W: 10 mJ every 10 ms
        while not stop.wait(0.01):
            counter["uj"] += 10_000
            set_uj(pkg, counter["uj"])

    bumper = threading.Thread(target=burn, daemon=True)
    bumper.start()
    run = tmp_path / "run"
    cpu0, wall0, uj0 = cpu_seconds(), time.perf_counter(), counter["uj"]
    try:
        assert main(_search(run, 6)) == 0
    finally:
        cpu1, wall1, uj1 = cpu_seconds(), time.perf_counter(), counter["uj"]
        stop.set()
        bumper.join()
    cost = json.loads((run / "run.json").read_text())["search_cost"]
    assert cost["complete"] and cost["not_counted"] == [] and cost["trials"]["measured"] == 6
    assert cost["energy_meter"] == "rapl: package-0; nvml: pynvml not installed (pip install nvidia-ml-py)"
    assert cost["energy_scope"] == "CPU package(s) (RAPL): every process on this machine, not only this one"
    [session] = cost["sessions"]
    assert session["role"] == "search" and session["trials"] == 6 and session["pids"] == [os.getpid()]

    study = optuna.load_study(study_name="edgenas", storage=_journal(run))
    per_trial = [t.user_attrs["search_cost"] for t in study.trials]
    assert all(set(c) == {"cpu_s", "wall_s", "energy_j"} for c in per_trial)
    assert cost["trials"]["cpu_s"] == pytest.approx(sum(c["cpu_s"] for c in per_trial), abs=1e-5)
    assert cost["trials"]["wall_s"] == pytest.approx(sum(c["wall_s"] for c in per_trial), abs=1e-5)
    assert cost["trials"]["energy_j"] == pytest.approx(sum(c["energy_j"] for c in per_trial), abs=1e-5)
    assert cost["cpu_s"] == pytest.approx(cost["trials"]["cpu_s"] + cost["overhead_cpu_s"], abs=1e-5)
    # the totals are what this process really spent, no more: the session is inside the main() call
    assert 0 < cost["trials"]["cpu_s"] <= cost["cpu_s"] <= cpu1 - cpu0 + 1e-3
    assert 0 < cost["trials"]["wall_s"] <= cost["wall_s"] <= wall1 - wall0
    assert 0 < cost["trials"]["energy_j"] <= cost["energy_j"] <= (uj1 - uj0) / 1e6
    rows = (run / "trials.csv").read_text().splitlines()
    assert {"cpu_s", "wall_s", "energy_j"} <= set(rows[0].split(","))
    out = capsys.readouterr().out
    assert f"search cost: {cost['cpu_s']:.1f} CPU-s ({cost['trials']['cpu_s']:.1f} in 6 trials + " in out
    assert f"{cost['energy_j']:.1f} J (rapl: package-0;" in out


def _journal(run: Path) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(run / "study.journal")))


def test_an_unmetered_search_says_so_and_a_resume_adds_up(board, tmp_path, monkeypatch, capsys, no_nvml):
    monkeypatch.setenv(POWERCAP_ENV, str(tmp_path / "absent"))
    run = tmp_path / "run"
    assert main(_search(run, 4)) == 0
    first = json.loads((run / "run.json").read_text())["search_cost"]
    assert first["energy_j"] is None and first["trials"]["energy_j"] is None
    assert first["energy_meter"] == (f"none: rapl: no {tmp_path / 'absent'} (no RAPL powercap on this machine); "
                                     f"nvml: pynvml not installed (pip install nvidia-ml-py)")
    assert first["energy_scope"] is None and first["cpu_s"] > 0 and first["complete"]
    assert "energy not measured (none: rapl: no " in capsys.readouterr().out

    assert main(["search", "--resume", str(run), "--trials", "7", "--no-progress", "-q"]) == 0
    cost = json.loads((run / "run.json").read_text())["search_cost"]
    study = optuna.load_study(study_name="edgenas", storage=_journal(run))
    per_trial = [t.user_attrs["search_cost"] for t in study.trials]
    assert len(per_trial) == 7 and all(c["energy_j"] is None for c in per_trial)
    assert [s["trials"] for s in cost["sessions"]] == [4, 3] and cost["complete"]
    assert cost["trials"]["cpu_s"] == pytest.approx(sum(c["cpu_s"] for c in per_trial), abs=1e-5)
    overheads = sum(s["cpu_s"] - s["trials_cpu_s"] for s in cost["sessions"])
    assert cost["overhead_cpu_s"] == pytest.approx(overheads, abs=1e-5)
    assert cost["cpu_s"] > first["cpu_s"] and cost["wall_s"] > first["wall_s"]
    assert cost["wall_s"] == pytest.approx(sum(s["ended"] - s["started"] for s in cost["sessions"]), abs=0.01)

    assert main(["pareto", str(run), "--no-plots"]) == 0  # a rewrite recomputes the same totals
    again = json.loads((run / "run.json").read_text())["search_cost"]
    assert again["cpu_s"] == cost["cpu_s"] and again["sessions"] == cost["sessions"]


# -- edgenas benchmark -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nb201_tables(tmp_path_factory) -> tuple[Path, Path]:
    """Accuracy and latency of every NB201 cell, made up from its ops (the benchmark needs whole tables)."""
    from edgenas.spaces import get_space

    d = tmp_path_factory.mktemp("nb201")
    acc, lat = ["arch_str,acc"], ["arch_str,lat"]
    for i, spec in enumerate(get_space("nb201").all_specs()):
        s = str(spec)
        acc.append(f"{s},{60 + 5 * s.count('conv_3x3') + 3 * s.count('conv_1x1') + (i % 5) * 0.1:.3f}")
        lat.append(f"{s},{1 + 0.9 * s.count('conv_3x3') + 0.3 * s.count('conv_1x1') + (i % 7) * 0.01:.3f}")
    (d / "acc.csv").write_text("\n".join(acc) + "\n")
    (d / "lat.csv").write_text("\n".join(lat) + "\n")
    return d / "acc.csv", d / "lat.csv"


def _benchmark(tables: tuple[Path, Path], out: Path) -> dict:
    out.mkdir()
    assert main(["benchmark", "nb201", "--accuracy-csv", str(tables[0]), "--accuracy-column", "acc",
                 "--latency-csv", str(tables[1]), "--latency-column", "lat", "--evaluations", "4,8",
                 "--methods", "random", "--seeds", "1", "--results", str(out), "--name", "b"]) == 0
    return json.loads((out / "b.json").read_text())


def test_benchmark_results_carry_energy_where_metered(nb201_tables, tmp_path, monkeypatch, no_nvml):
    from edgenas.search import benchmark as bm

    monkeypatch.setenv(POWERCAP_ENV, str(tmp_path / "absent"))  # no meter: said in the machine section, no column
    plain = bm.RunTrace("random", 0, times_s=[0.1, 0.2], cpu_s=[0.1, 0.2], quality=[0.5, 0.6])
    summary = bm.summarise([plain], [2])
    assert "energy_j" not in summary["random"][2] and "energy J" not in bm.markdown_table(summary, [2], "hv_ratio")
    machine = bm.machine()
    assert machine["energy_meter"].startswith("none: rapl: no ") and machine["energy_scope"] is None

    pkg = zone(tmp_path / "powercap", "intel-rapl:0", "package-0", 0)
    monkeypatch.setenv(POWERCAP_ENV, str(tmp_path / "powercap"))
    ticks = iter(range(1, 10**9))
    real_mark = Meter.mark

    def mark(self: Meter):  # the package's counter moves 1.25 J before each reading
        set_uj(pkg, 1_250_000 * next(ticks))
        return real_mark(self)

    monkeypatch.setattr(Meter, "mark", mark)
    metered = _benchmark(nb201_tables, tmp_path / "metered")
    assert metered["machine"]["energy_meter"].startswith("rapl: package-0")
    assert "every process on this machine" in metered["machine"]["energy_scope"]
    energy = metered["traces"][0]["energy_j"]
    assert len(energy) == 8 and all(0 < a < b for a, b in itertools.pairwise(energy))
    assert metered["summary"]["random"]["8"]["energy_j"] == energy[-1]
    md = (tmp_path / "metered" / "b.md").read_text()
    assert "| energy J @ 8 |" in md and f"| {energy[-1]:.1f} |" in md and "rapl: package-0" in md
