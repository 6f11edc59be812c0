"""``run_search``: from a job to a finished run folder.

1. Build the job (:class:`~edgenas.search.job.SearchJob`) and check everything that can be checked
   before any work: space, budgets, objectives, sampler and its options, estimator name.
2. Complete each device's latency table (a local device measures what is missing, once; a remote device
   must have it) — afterwards every latency is a table look-up.
3. Check every budget against the cheapest member of the space (impossible or contradictory budgets:
   exit 2 before any trial) and find one candidate that meets them all (a seed for edgenas' samplers).
4. Create the study (or load it to resume): config, tables and meta stored in it; ``trials = N``
   enqueues N trials (resume: fails and replaces the trials of dead workers, tops up the rest).
5. Run the workers: in this process, or ``workers = N`` processes sharing the storage
   (:func:`join_study`, started through :mod:`multiprocessing`, the same entry ``edgenas worker`` uses).
6. Write the run folder, with what the search itself cost (:mod:`edgenas.search.owncost`).
"""

from __future__ import annotations

import multiprocessing
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from edgenas.errors import EdgenasError
from edgenas.fileio import atomic_write, check_can_create
from edgenas.jobs import JobConfig
from edgenas.search import study as st
from edgenas.search.cheapest import check_budgets, first_feasible
from edgenas.search.fields import format_value
from edgenas.search.front import FrontState, front_rows, read_state
from edgenas.search.job import SearchJob
from edgenas.search.outputs import write_run_files
from edgenas.search.owncost import Session, run_cost
from edgenas.search.record import CONFIG_ATTR, TABLES_ATTR, is_abandoned
from edgenas.search.runfolder import CONFIG_FILE, DEFAULT_STUDY, STUDY_FILE, RunFolder, load_study
from edgenas.search.samplers import SearchContext, get_sampler
from edgenas.search.worker import StopRule, run_worker
from edgenas.torchdevice import assign_worker


@dataclass
class SearchResult:
    run_dir: Path
    study: optuna.Study
    job: SearchJob
    state: FrontState
    front: list[dict[str, Any]]
    wall_s: float
    cost: dict[str, Any] = field(default_factory=dict)
    """What the search itself cost, over every trial and process in its storage (run.json ``search_cost``)."""


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def storage_url(job: SearchJob, run_dir: Path) -> str:
    return job.search.storage or str(run_dir.resolve() / STUDY_FILE)


def worker_seed(seed: int, index: int) -> int:
    """Distinct, reproducible sampler seeds per worker (worker 0 keeps the run's seed)."""
    return seed if index == 0 else (seed * 1_000_003 + index) % (2**31 - 1)


def make_sampler(job: SearchJob, seed: int, seeds: list[Any] | None = None) -> optuna.samplers.BaseSampler:
    s = job.search
    ctx = SearchContext(job.space, job.task, job.oracle, job.objectives, job.budgets, seeds or [],
                        job.reference, int(s.workers), job.screen())
    return get_sampler(s.sampler, ctx, seed, **dict(s.sampler_options))


def prepare(job: SearchJob, quiet: bool = False) -> dict[str, Any]:
    """Tables, budget check and a first feasible candidate; returns what the study stores."""
    t0 = time.monotonic()
    job.build_estimator()  # bad options, files or data fail now, before the run folder is written
    tables = job.complete_tables(show_progress=None if not quiet else False)
    job.use_tables(tables)
    seed = job.search.seed
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
    config: JobConfig | dict[str, Any], run_dir: str | Path, resume: bool = False, quiet: bool = False,
    progress: bool = True, devices_dir: str | None = None, command: list[str] | None = None,
) -> SearchResult:
    """Run (or, with ``resume``, continue) the search of ``config`` in ``run_dir``; ``quiet`` also hides
    Optuna's own INFO lines."""
    from edgenas.logs import optuna_quiet

    with optuna_quiet(quiet):
        return _run_search(config, run_dir, resume, quiet, progress, devices_dir, command)


def check_new_search(config: JobConfig | dict[str, Any], run_dir: str | Path, devices_dir: str | None = None,
                     resume: bool = False) -> SearchJob:
    """The checks a search makes before any work (the job, when to stop, a run folder that is free): run
    them before a stage that precedes the search (a supernet's training) so it is not spent in vain."""
    job = SearchJob(config, devices_dir=devices_dir)
    job.check()
    s = job.search
    if s.trials is None and s.timeout is None:
        raise EdgenasError("say when to stop: set trials and/or timeout ([search] trials = N, --trials N)")
    if not resume and RunFolder(Path(run_dir)).holds_search():
        raise EdgenasError(f"{str(run_dir)!r} already holds a search; continue it with --resume, or pass another --out")
    if not resume:
        check_can_create(Path(run_dir), "run folder")
    return job


def _run_search(
    config: JobConfig | dict[str, Any], run_dir: str | Path, resume: bool, quiet: bool, progress: bool,
    devices_dir: str | None, command: list[str] | None,
) -> SearchResult:
    t_start = time.time()
    session = Session("search")
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    job = check_new_search(config, run_dir, devices_dir, resume)
    s = job.search
    name = s.study or DEFAULT_STUDY
    existing = None
    if resume:
        folder.require()
        url = folder.storage_url()
        existing = folder.open_study(url, name) if folder.file(STUDY_FILE).exists() or "://" in url else None
        storage = st.open_storage(url)
    else:
        check_can_create(run_dir, "run folder")  # fail before any work, without writing anything
        url = storage_url(job, run_dir)
        st.check_storage_url(url)
    if existing is not None:
        tables = existing.user_attrs.get(TABLES_ATTR) or {}
        job.use_tables(tables)
        prep = {"tables": tables, **(st.study_meta(existing).get("prepare") or {})}
    else:
        prep = prepare(job, quiet)  # tables, impossible budgets: nothing is written before this passes
    folder.check_writable()
    if not resume:
        storage = st.open_storage(url)
    seeds = [job.space.parse(prep["first_feasible"])] if prep.get("first_feasible") else []
    meta = {"trials": s.trials, "prepare": {k: v for k, v in prep.items() if k != "tables"}}
    atomic_write(run_dir / CONFIG_FILE, job.to_json() + "\n")
    study, created = st.create_or_load(storage, name, job.directions, job.config, prep["tables"], meta,
                                       sampler=make_sampler(job, worker_seed(s.seed, 0), seeds),
                                       metric_names=[f.name for f in job.objectives])
    if s.trials is not None:
        if created:
            st.enqueue(study, s.trials)
        else:
            replaced = st.replace_abandoned(study, bounded=True, assume_dead=url.endswith(".journal"))
            c = st.counts(study)
            missing = s.trials - st.finished_count(study) - c["waiting"] - c["running"]
            if missing > 0:
                st.enqueue(study, missing)
            _say(f"resuming {name!r}: {st.finished_count(study)} trials done, {replaced} abandoned trial(s) "
                 f"replaced, {max(missing, 0) + c['waiting']} to run", quiet)
    info = {"storage": url, "study": name, "run_dir": str(run_dir), "command": command or sys.argv,
            "seed": s.seed, "workers": s.workers, "sampler": s.sampler,
            "objectives": [f.name for f in job.objectives], "budgets": [str(b) for b in job.budgets],
            "dashboard": f"optuna-dashboard {shlex.quote(_dashboard_url(url))}"}
    tracker = _Tracker(job, s.trials, quiet=quiet or not progress)
    tracker.poll(study)
    stop = StopRule(bounded=s.trials is not None, timeout_s=s.timeout)
    try:
        if s.workers == 1:
            run_worker(job, study, stop, on_trial=tracker.add)
        else:
            _run_processes(job, url, name, s.workers, devices_dir, stop, study, tracker, session)
    finally:
        tracker.close()
        state, all_trials = read_state(study, job.objectives, job.budgets, job.reference)
        info["wall_s"] = time.time() - t_start
        cost: dict[str, Any] = {}

        def own_cost() -> dict[str, Any]:  # after the other files: writing them is part of the search's cost
            session.finish(study)
            cost.update(run_cost(study, all_trials))
            return {"search_cost": cost}

        write_run_files(run_dir, study, all_trials, state, info, late_info=own_cost)
    front = front_rows(all_trials, state)
    return SearchResult(run_dir, study, job, state, front, time.time() - t_start, cost)


def resume_search(run_dir: str | Path, trials: int | None = None, timeout: float | None = None,
                  workers: int | None = None, quiet: bool = False, progress: bool = True,
                  devices_dir: str | None = None, command: list[str] | None = None) -> SearchResult:
    """Continue the search in ``run_dir`` (its stored job and study), optionally with a new trial
    budget, timeout or worker count."""
    folder = RunFolder(run_dir)
    if not folder.holds_search():
        raise EdgenasError(f"{str(run_dir)!r} holds no search to resume (no {CONFIG_FILE})")
    cfg = JobConfig.from_resolved(folder.config(), str(folder.file(CONFIG_FILE))).with_overrides(
        search={"trials": trials, "timeout": timeout, "workers": workers})
    return run_search(cfg, run_dir, resume=True, quiet=quiet, progress=progress, devices_dir=devices_dir,
                      command=command)


def _dashboard_url(url: str) -> str:
    return url if "://" in url else url.removeprefix("journal:")


# -- reading a finished (or running) search back ------------------------------------------------------
@dataclass
class FrontView:
    """A search read back from its storage: the job, every trial, the front and where it came from."""

    study: optuna.Study
    job: SearchJob
    state: FrontState
    trials: list[optuna.trial.FrozenTrial]
    front: list[dict[str, Any]]
    url: str
    name: str
    folder: RunFolder | None
    info: dict[str, Any]

    @property
    def partial(self) -> bool:
        """Read from a run folder whose search has not written its results (running or interrupted)."""
        return self.folder is not None and not self.folder.finished()


def read_front(run_dir: str | Path | None = None, storage: str | None = None, study: str | None = None,
               devices_dir: str | None = None) -> FrontView:
    """The front of the search in ``run_dir`` (its own study), or of ``study`` in ``storage``."""
    folder = RunFolder(run_dir).require() if run_dir is not None else None
    url = storage or (folder.storage_url() if folder else None)
    if url is None:
        raise EdgenasError("give a run folder or a storage URL and study name")
    name = study or (folder.study_name() if folder else DEFAULT_STUDY)
    s = folder.open_study(url, name) if folder else load_study(url, name)
    job = SearchJob(st.load_config(s), devices_dir=devices_dir)
    state, trials = read_state(s, job.objectives, job.budgets, job.reference)
    info = folder.info() if folder else {}
    return FrontView(s, job, state, trials, front_rows(trials, state), url, name, folder, info)


def rewrite_run_files(view: FrontView, out: str | Path, plots: bool = True) -> None:
    """Write the front files of ``view`` to ``out``. An unfinished run folder is not rewritten in place
    (its search writes them when it ends): write a snapshot elsewhere with ``out``."""
    out = Path(out)
    if view.partial and view.folder is not None and out.resolve() == view.folder.path.resolve():
        raise EdgenasError(f"the search in {str(view.folder.path)!r} has not finished (no run.json: it is running "
                           f"or was interrupted); continue it with 'edgenas search --resume {view.folder.path}', "
                           f"or write a snapshot elsewhere with --out DIR")
    RunFolder(out).check_writable()
    info = {**view.info, "storage": view.url, "study": view.name, "search_cost": run_cost(view.study, view.trials)}
    write_run_files(out, view.study, view.trials, view.state, info, plots=plots)


# -- workers ----------------------------------------------------------------------------------------
@dataclass
class WorkerSpec:
    """One worker joining a search through its storage (``edgenas worker``, or a process of
    ``workers = N``)."""

    storage: str
    study: str = DEFAULT_STUDY
    index: int = 0
    seed: int | None = None
    """Sampler seed (default: derived from the run's seed and ``index``)."""
    timeout_s: float | None = None
    max_trials: int | None = None
    devices_dir: str | None = None
    threads: int | None = None
    """torch threads for training estimators (None: torch's default)."""
    verbose: bool = False
    wait_s: float | None = None
    """Wait up to this long for the study to appear (workers started before the search that creates it)."""
    own_session: bool = True
    """Record this worker's own cost in the study (:mod:`edgenas.search.owncost`); False for the processes
    of ``workers = N``, which the search process that started them measures as its children."""

    def __post_init__(self) -> None:
        from edgenas.names import check_name

        check_name(self.study, "study")
        for key in ("timeout_s", "max_trials", "threads", "wait_s"):
            v = getattr(self, key)
            if v is not None and v <= 0:
                raise EdgenasError(f"worker {key} must be positive, got {v}")
        if self.index < 0:
            raise EdgenasError(f"worker index must be >= 0, got {self.index}")


def worker_id_text() -> str:
    w = st.worker_id()
    return f"{w['host']}:{w['pid']}"


def join_study(spec: WorkerSpec) -> int:
    """Run trials of an existing study until its budget is used up (or the worker's own limits);
    returns how many this worker finished."""
    from edgenas.logs import quiet_third_party

    quiet_third_party(spec.verbose)
    assign_worker(spec.index)  # on a multi-GPU machine, estimators that train take GPU index mod count
    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    session = Session("worker") if spec.own_session else None
    study = _wait_for_study(spec) if spec.wait_s else load_study(spec.storage, spec.study)
    job = SearchJob(st.load_config(study), devices_dir=spec.devices_dir)
    job.use_tables(study.user_attrs.get(TABLES_ATTR) or {})
    meta = st.study_meta(study)
    first = (meta.get("prepare") or {}).get("first_feasible")
    seed = spec.seed if spec.seed is not None else worker_seed(job.search.seed, spec.index + 1)
    study.sampler = make_sampler(job, seed, [job.space.parse(first)] if first else [])
    bounded = meta.get("trials") is not None
    try:
        return run_worker(job, study, StopRule(bounded=bounded, timeout_s=spec.timeout_s, max_trials=spec.max_trials))
    finally:
        if session is not None:
            session.finish(study)


def _wait_for_study(spec: WorkerSpec, poll_s: float = 0.5) -> optuna.Study:
    """The study once it exists and its trial budget is enqueued (a worker may start first)."""
    deadline = time.monotonic() + float(spec.wait_s or 0)
    while True:
        try:
            study = load_study(spec.storage, spec.study)
            meta = st.study_meta(study)
            if CONFIG_ATTR in study.user_attrs and (meta.get("trials") is None or study.get_trials(deepcopy=False)):
                return study
        except EdgenasError:
            if time.monotonic() >= deadline:
                raise
        if time.monotonic() >= deadline:
            raise EdgenasError(f"study {spec.study!r} in {spec.storage} did not appear within {spec.wait_s:g} s")
        time.sleep(poll_s)


def _worker_process(spec: WorkerSpec) -> None:
    """A spawned worker process: input errors are one line and exit code 2, as in the CLI."""
    try:
        join_study(spec)
    except EdgenasError as exc:
        print(f"edgenas worker {spec.index}: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _run_processes(job: SearchJob, url: str, name: str, workers: int, devices_dir: str | None, stop: StopRule,
                   study: optuna.Study, tracker: _Tracker, session: Session | None = None) -> None:
    """``workers`` processes on this machine sharing the storage (each runs :func:`join_study`); their pids
    join ``session``, which measures them as its children."""
    seed = job.search.seed
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    procs = []
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # a spawned process inherits the environment at start
    try:
        for i in range(workers):
            timeout = None if stop.timeout_s is None else max(1.0, stop.timeout_s - (time.monotonic() - stop.started))
            spec = WorkerSpec(url, name, i, worker_seed(seed, i), timeout, None, devices_dir, threads,
                              own_session=session is None)
            p = ctx.Process(target=_worker_process, args=(spec,), name=f"edgenas-worker-{i}")
            p.start()
            procs.append(p)
            if session is not None and p.pid is not None:
                session.children.append(p.pid)
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(1.0)
            tracker.poll(study)
        tracker.poll(study)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(timeout=30)
        raise
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if bad:
        raise EdgenasError(f"{len(bad)} worker process(es) failed (exit codes {bad}); the trials they finished "
                           f"are kept: continue with --resume")


class _Tracker:
    """The live progress bar: trials done, feasible share, front size, hypervolume."""

    def __init__(self, job: SearchJob, total: int | None, quiet: bool) -> None:
        self.state = FrontState(job.objectives, job.budgets, job.reference)
        self.seen: set[int] = set()
        self.quiet = quiet
        self.total = total
        self.bar = None
        self.t0 = time.monotonic()
        self.last_line = 0.0
        if not quiet and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="trial", desc="search", dynamic_ncols=True, file=sys.stderr)

    def poll(self, study: optuna.Study) -> None:
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            if t.number not in self.seen and not is_abandoned(t):
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
