"""``run_search``: from a resolved job to a finished run directory.

1. Resolve the job; complete each device's latency table (a local device measures what is missing,
   once; a remote device must have it) — afterwards every latency is a table look-up.
2. Check every budget against the cheapest member of the space (impossible budget: exit 2 before any
   trial) and find one candidate that meets them all (a seed for edgenas' samplers).
3. Create the study (or load it with ``--resume``): config, tables and meta stored in it; ``--trials N``
   enqueues N trials (resume: fails and replaces the trials of dead workers, tops up the rest).
4. Run the workers: in this process, or ``--workers N`` processes sharing the storage.
5. Write the run directory and print the front.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from edgenas.errors import EdgenasError
from edgenas.fileio import atomic_write
from edgenas.search import study as st
from edgenas.search.cheapest import check_budgets, first_feasible
from edgenas.search.fields import format_value
from edgenas.search.front import FrontState, front_rows, read_state
from edgenas.search.job import SearchJob
from edgenas.search.outputs import front_table, write_run_files
from edgenas.search.samplers import SearchContext, get_sampler
from edgenas.search.worker import StopRule, run_worker

STUDY_FILE = "study.journal"
DEFAULT_STUDY = "edgenas"


@dataclass
class SearchResult:
    run_dir: Path
    study: optuna.Study
    state: FrontState
    front: list[dict[str, Any]]
    wall_s: float


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def storage_url(job: SearchJob, run_dir: Path) -> str:
    return job.search.get("storage") or str(run_dir.resolve() / STUDY_FILE)


def worker_seed(seed: int, index: int) -> int:
    """Distinct, reproducible sampler seeds per worker (worker 0 keeps the run's seed)."""
    return seed if index == 0 else (seed * 1_000_003 + index) % (2**31 - 1)


def make_sampler(job: SearchJob, seed: int, seeds: list[Any] | None = None) -> optuna.samplers.BaseSampler:
    s = job.search
    est = job.estimator if job.needs_estimator else None
    screen = est.passes if est is not None and hasattr(est, "passes") and getattr(est, "pool", "") == "reference" \
        else None
    ctx = SearchContext(job.space, job.task, job.oracle, job.objectives, job.budgets, seeds or [],
                        dict(s.get("reference") or {}), int(s.get("workers") or 1), screen)
    return get_sampler(s.get("sampler", "nsga2"), ctx, seed, **(s.get("sampler_options") or {}))


def prepare(job: SearchJob, quiet: bool = False) -> dict[str, Any]:
    """Tables, budget check and a first feasible candidate; returns what the study stores."""
    t0 = time.monotonic()
    tables = job.complete_tables(show_progress=None if not quiet else False)
    job.use_tables(tables)
    seed = int(job.search.get("seed", 0))
    extremes = check_budgets(job.oracle, job.budgets, seed)
    for key, ext in extremes.items():
        b = next(b for b in job.budgets if str(b) == key)
        how = "exhaustive" if ext.exhaustive else "coordinate descent"
        _say(f"budget {b.describe()}: the space's best is {format_value(ext.value, b.field)} ({how})", quiet)
    first = first_feasible(job.oracle, extremes, seed) if job.budgets else None
    if job.budgets and first is None:
        _say("warning: no candidate found that meets all budgets together; the search may find none", quiet)
    _say(f"prepared in {time.monotonic() - t0:.1f} s", quiet)
    return {"tables": tables, "first_feasible": str(first) if first is not None else None,
            "extremes": {k: {"value": v.value, "arch": str(v.spec), "exact": v.exhaustive}
                         for k, v in extremes.items()}}


def run_search(
    config: dict[str, Any], run_dir: str | Path, resume: bool = False, quiet: bool = False,
    progress: bool = True, devices_dir: str | None = None, command: list[str] | None = None,
) -> SearchResult:
    t_start = time.time()
    run_dir = Path(run_dir)
    job = SearchJob(config, devices_dir=devices_dir)
    s = job.search
    trials, timeout = s.get("trials"), s.get("timeout")
    if trials is None and timeout is None:
        raise EdgenasError("say when to stop: --trials N and/or --timeout SECONDS")
    if trials is not None and trials < 1:
        raise EdgenasError(f"--trials must be >= 1, got {trials}")
    workers = int(s.get("workers") or 1)
    if workers < 1:
        raise EdgenasError(f"--workers must be >= 1, got {workers}")
    if not resume and (run_dir / "config.json").exists():
        raise EdgenasError(f"{str(run_dir)!r} already holds a search; continue it with --resume, or pass another --out")
    if resume and not (run_dir / "config.json").exists():
        raise EdgenasError(f"{str(run_dir)!r} holds no search to resume (no config.json)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise EdgenasError(f"cannot write to run folder {str(run_dir)!r}: {exc.strerror or exc}") from None

    url = storage_url(job, run_dir)
    storage = st.open_storage(url)
    name = s.get("study") or DEFAULT_STUDY
    existing = None
    if resume:
        existing = optuna.load_study(study_name=name, storage=storage) if name in _study_names(storage) else None
    if existing is not None:
        tables = existing.user_attrs.get(st.TABLES_ATTR) or {}
        job.use_tables(tables)
        prep = {"tables": tables, **(st.study_meta(existing).get("prepare") or {})}
    else:
        prep = prepare(job, quiet)
    seeds = [job.space.parse(prep["first_feasible"])] if prep.get("first_feasible") else []
    meta = {"trials": trials, "prepare": {k: v for k, v in prep.items() if k != "tables"}}
    atomic_write(run_dir / "config.json", json.dumps(job.config, indent=1, sort_keys=True) + "\n")
    study, created = st.create_or_load(storage, name, job.directions, job.config, prep["tables"], meta,
                                       sampler=make_sampler(job, worker_seed(int(s.get("seed", 0)), 0), seeds),
                                       metric_names=[f.name for f in job.objectives])
    if trials is not None:
        if created:
            st.enqueue(study, trials)
        else:
            replaced = st.replace_abandoned(study, bounded=True, assume_dead=url.endswith(".journal"))
            c = st.counts(study)
            missing = trials - st.finished_count(study) - c["waiting"] - c["running"]
            if missing > 0:
                st.enqueue(study, missing)
            _say(f"resuming {name!r}: {st.finished_count(study)} trials done, {replaced} abandoned trial(s) "
                 f"replaced, {max(missing, 0) + c['waiting']} to run", quiet)
    info = {"storage": url, "study": name, "run_dir": str(run_dir), "command": command or sys.argv,
            "seed": s.get("seed", 0), "workers": workers, "sampler": s.get("sampler"),
            "objectives": [f.name for f in job.objectives], "budgets": [str(b) for b in job.budgets],
            "dashboard": f"optuna-dashboard {shlex.quote(_dashboard_url(url))}"}
    tracker = _Tracker(job, trials, quiet=quiet or not progress)
    tracker.load(study)
    stop = StopRule(bounded=trials is not None, timeout_s=timeout)
    try:
        if workers == 1:
            run_worker(job, study, stop, on_trial=tracker.add)
        else:
            _run_processes(job, url, name, workers, devices_dir, stop, study, tracker)
    finally:
        tracker.close()
        state, all_trials = read_state(study, job.objectives, job.budgets, s.get("reference") or {})
        info["wall_s"] = time.time() - t_start
        write_run_files(run_dir, study, all_trials, state, info)
    front = front_rows(all_trials, state)
    return SearchResult(run_dir, study, state, front, time.time() - t_start)


def _study_names(storage: Any) -> list[str]:
    return [x.study_name for x in storage.get_all_studies()]


def _dashboard_url(url: str) -> str:
    return url if "://" in url else url.removeprefix("journal:")


def _run_processes(job: SearchJob, url: str, name: str, workers: int, devices_dir: str | None, stop: StopRule,
                   study: optuna.Study, tracker: _Tracker) -> None:
    """``workers`` processes of ``edgenas worker`` on this machine, sharing the storage."""
    seed = int(job.search.get("seed", 0))
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "EDGENAS_WORKER_THREADS": str(threads)}
    procs = []
    for i in range(workers):
        cmd = [sys.executable, "-m", "edgenas.cli.main", "worker", "--storage", url, "--study", name,
               "--worker-index", str(i), "--seed", str(worker_seed(seed, i)), "--quiet"]
        if stop.timeout_s is not None:
            cmd += ["--timeout", str(max(1.0, stop.timeout_s - (time.monotonic() - stop.started)))]
        if devices_dir:
            cmd += ["--devices-dir", devices_dir]
        procs.append(subprocess.Popen(cmd, env=env))
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(1.0)
            tracker.poll(study)
        tracker.poll(study)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        raise
    bad = [p.returncode for p in procs if p.returncode not in (0, None)]
    if bad:
        raise EdgenasError(f"{len(bad)} worker process(es) failed (exit codes {bad}); the trials they finished "
                           f"are kept: continue with --resume")


class _Tracker:
    """The live progress bar: trials done, feasible share, front size, hypervolume."""

    def __init__(self, job: SearchJob, total: int | None, quiet: bool) -> None:
        self.state = FrontState(job.objectives, job.budgets, job.search.get("reference") or {})
        self.seen: set[int] = set()
        self.quiet = quiet
        self.total = total
        self.bar = None
        self.t0 = time.monotonic()
        self.last_line = 0.0
        if not quiet and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="trial", desc="search", dynamic_ncols=True, file=sys.stderr)

    def load(self, study: optuna.Study) -> None:
        self.poll(study)

    def poll(self, study: optuna.Study) -> None:
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            if t.number not in self.seen and not t.system_attrs.get(st.ABANDONED_ATTR):
                self.add(t)

    def add(self, t: optuna.trial.FrozenTrial) -> None:
        if t.number in self.seen:
            return
        self.seen.add(t.number)
        self.state.add(t)
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(self.summary(), refresh=False)
            self.bar.update(1)
            return
        # not a terminal (CI, a log file): a plain line every 10% of the trials or every 30 s
        n = len(self.seen)
        step = max(1, (self.total or 0) // 10)
        now = time.monotonic()
        if (self.total and (n % step == 0 or n == self.total)) or now - self.last_line >= 30:
            self.last_line = now
            of = f"/{self.total}" if self.total else ""
            print(f"search: {n}{of} trials, {now - self.t0:.0f} s, {self.summary()}", file=sys.stderr, flush=True)

    def summary(self) -> str:
        s = self.state
        share = s.feasible / max(1, s.finished)
        rejected = f" (+{s.rejected} rejected)" if s.rejected else ""
        return (f"feasible {share:.0%}, scored {s.evaluated}{rejected}, front {len(s.front_numbers())}, "
                f"HV {s.hypervolume():.4g}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def print_front(result_front: list[dict[str, Any]], job_objectives: list[Any], state: FrontState,
                estimator: str = "", budgets: Sequence[Any] = ()) -> str:
    """The front table: objectives, the budgeted fields (what the user asked to hold), key costs, arch."""
    extra = list(dict.fromkeys([*(b.field.name for b in budgets), "macs", "params", "peak_ram_bytes_int8",
                                "size_bytes_int8"]))
    rejected = f", {state.rejected} rejected by the estimator" if state.rejected else ""
    head = (f"Pareto front: {len(result_front)} of {state.evaluated} scored candidates ({state.finished} trials, "
            f"{state.feasible} within budgets{rejected}); hypervolume {state.hypervolume():.4g}"
            + (f"; accuracy = {estimator}" if estimator and any(not f.cheap for f in job_objectives) else ""))
    return head + "\n" + front_table(result_front, job_objectives, extra)
