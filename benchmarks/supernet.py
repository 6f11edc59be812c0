"""Supernet benchmark (issue 20): does a weight-sharing supernet rank `tiny` candidates like stand-alone
training does, at what cost, and does a search through it find a better front than one that trains?

Per task (``digits``, and a harder ``synthetic:`` setting chosen by a pilot, see below):

1. **Ground truth**: SPECS random ``tiny`` specs (``space.sample(SPECS, seed=0)`` of
   ``tiny`` with resolutions=[32], all three widths) each trained stand-alone with the export recipe
   (``edgenas.exporters.weights.train_final``: whole training split, SGD + Nesterov + cosine, BatchNorm
   re-estimated, EPOCHS epochs) with seeds 0 and 1; scored on the validation split. The seed-0 vs seed-1
   Kendall tau is the ceiling an estimator of the 2-seed mean can reach.
2. **Estimators** on the same specs: ``supernet`` (inherited accuracy from a supernet trained once by
   ``train_supernet`` for SUPERNET_EPOCHS epochs on the same training split), ``synflow``, ``train``
   (2 epochs, its defaults otherwise). Kendall tau with the stand-alone mean, seconds per candidate, and
   the one-time cost (the supernet's training seconds).
3. **End to end**: ``run_search`` (objectives accuracy + macs, sampler SAMPLER) with the ``supernet``
   estimator for SEARCH_TRIALS trials, and with the ``train`` estimator under a timeout equal to the
   supernet's training seconds + the supernet search's wall seconds (same CPU: every job runs on one
   torch thread). Both fronts are retrained stand-alone (same recipe, seeds 0 and 1, mean) and their
   hypervolume compared with the ground truth's front (the front of the SPECS stand-alone-trained specs).

Hypervolume: points (stand-alone mean accuracy, MACs / MACs of the largest spec), accuracy maximised, MACs
minimised; reference point (the lowest stand-alone mean accuracy among the ground-truth specs, 1.0).
``hv_ratio`` = HV(front) / HV(ground-truth front). A second ratio with the reference accuracy at chance
(1 / classes) is reported too.

The harder task: pilot candidates PILOT_SETTINGS (mildest first) are trained on the first PILOT_SPECS
ground-truth specs (seed 0, EPOCHS epochs; these runs are reused as ground truth); the first whose
accuracies spread over >= 10 points (max - min) is the hard task, else the one with the widest spread.

Every expensive result is cached under CACHE (one file per stand-alone training, estimator score,
supernet checkpoint, search), so an interrupted run continues where it stopped. Jobs run in ``--jobs``
processes with one torch thread each.

    .venv/bin/python benchmarks/supernet.py --quick --jobs 2 --tasks digits   # smoke test, 1.5 min
                        # (both tasks: 3.5 min); --quick results go to the cache folder, not results/
    nohup .venv/bin/python benchmarks/supernet.py --jobs 2 > /tmp/supernet.log 2>&1 &
    .venv/bin/python benchmarks/supernet.py --report           # rewrite the results from the cache only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import common  # noqa: E402

NAME = "supernet"
CACHE = HERE / "results" / "supernet_cache"
SEED = 0
SEEDS = (0, 1)
SPACE_OPTIONS: dict[str, Any] = {"resolutions": [32]}
SPECS = 50
EPOCHS = 4
SUPERNET_EPOCHS = 3 * EPOCHS
TRAIN_EST_OPTIONS: dict[str, Any] = {"epochs": 2}
SAMPLER = "frontier"
SEARCH_TRIALS = 200
PILOT_SPECS = 8
PILOT_SETTINGS = ("synthetic:n=1500,noise=1.0", "synthetic:n=1500,noise=2.0", "synthetic:n=1500,size=8,noise=2.0",
                  "synthetic:n=1500,size=8,noise=3.0", "synthetic:n=1500,size=8,noise=4.0")
"""The hard task's candidates, easiest first: tried in order until one spreads over SPREAD_TARGET. The first
two (32-px sources) came out at 99.7-100% for every pilot spec, so 8-px sources (like digits': 8x8 images
upsampled to the 32-px input) with more noise follow."""
SPREAD_TARGET = 0.10
PAIRED_SPECS = 10
HARD = "hard"
COMMITTED_TRAIN: dict[str, Any] = {
    "batch_size": 64, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True, "label_smoothing": 0.0,
    "n_random": 2, "distill": True, "temperature": 1.0, "train_samples": 0, "smallest_prob": 1.0}
"""``train_supernet``'s settings in the first committed run (bd9d721): caches of other settings are tagged."""
COMMITTED_ESTIMATOR: dict[str, Any] = {"bn_batches": 4, "batch_size": 64, "val_samples": 512}
"""The ``supernet`` estimator's scoring settings in the first committed run (``memory_format`` does not change
scores, only their cost)."""


def _effective(given: dict[str, Any], defaults: dict[str, Any], keys: Any) -> dict[str, Any]:
    return {k: given.get(k, defaults.get(k)) for k in keys}


def train_effective(options: dict[str, Any]) -> dict[str, Any]:
    """The supernet training settings a run with ``options`` uses (library defaults for the rest)."""
    from edgenas.supernet.train import TRAIN_DEFAULTS

    return _effective(options, TRAIN_DEFAULTS, sorted(set(TRAIN_DEFAULTS) | set(COMMITTED_TRAIN)))


def estimator_effective(options: dict[str, Any]) -> dict[str, Any]:
    """The ``supernet`` estimator's scoring settings with ``options`` (its defaults for the rest)."""
    import inspect

    from edgenas.estimators.supernet import SupernetAccuracy

    defaults = {k: p.default for k, p in inspect.signature(SupernetAccuracy.__init__).parameters.items()}
    return _effective(options, defaults, sorted(COMMITTED_ESTIMATOR))


def variant_tag(effective: dict[str, Any], committed: dict[str, Any]) -> str:
    """'' for the committed run's settings, else '_key<value>' for each setting that differs."""
    return "".join(f"_{k}{v:g}" if isinstance(v, float) else f"_{k}{v}" for k, v in sorted(effective.items())
                   if committed.get(k) != v)


@dataclass
class Settings:
    tasks: list[str]
    specs: int = SPECS
    epochs: int = EPOCHS
    supernet_epochs: int = SUPERNET_EPOCHS
    search_trials: int = SEARCH_TRIALS
    pilot_specs: int = PILOT_SPECS
    sampler: str = SAMPLER
    cache: Path = CACHE
    quick: bool = False
    e2e: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    supernet_options: dict[str, Any] = field(default_factory=dict)
    """``train_supernet`` options (--supernet-opt)."""
    estimator_options: dict[str, Any] = field(default_factory=dict)
    """``supernet`` estimator options (--estimator-opt)."""
    compare_supernet_options: list[dict[str, Any]] = field(default_factory=list)
    """Other ``train_supernet`` settings whose cached results the report shows too (--compare-supernet-opt)."""
    extra_search_seeds: list[int] = field(default_factory=list)
    """Supernet searches repeated with these search seeds (--extra-search-seeds): the spread of one search."""

    def params(self) -> dict[str, Any]:
        return {"supernet_training": train_effective(self.supernet_options),
                "supernet_estimator": estimator_effective(self.estimator_options),
                "compared_supernet_options": self.compare_supernet_options,
                "extra_search_seeds": self.extra_search_seeds,
                "tasks": self.tasks, "specs": self.specs, "seeds": list(SEEDS), "epochs": self.epochs,
                "supernet_epochs": self.supernet_epochs, "space": "tiny", "space_options": SPACE_OPTIONS,
                "train_estimator": TRAIN_EST_OPTIONS, "sampler": self.sampler, "search_trials": self.search_trials,
                "pilot_settings": list(PILOT_SETTINGS), "pilot_specs": self.pilot_specs, "torch_threads": 1,
                "quick": self.quick}


# -- workers (one torch thread each) ---------------------------------------------------------------
def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _space() -> Any:
    from edgenas import get_space

    return get_space("tiny", **SPACE_OPTIONS)


def _dataset(source: str) -> Any:
    from edgenas.estimators.data import resolve_dataset

    return resolve_dataset(source)


def _task(source: str) -> Any:
    from edgenas.spaces.base import Task

    ds = _dataset(source)
    return Task(num_classes=ds.num_classes, in_channels=ds.channels)


def _h(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _slug(source: str) -> str:
    return source.replace(":", "_").replace(",", "_").replace("=", "")


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def work_standalone(source: str, arch: str, seed: int, epochs: int, out: str) -> dict[str, Any]:
    from edgenas.exporters.weights import train_final

    space = _space()
    t0 = time.perf_counter()
    m = train_final(space, space.parse(arch), _task(source), _dataset(source), epochs=epochs, seed=seed,
                    torch_device="cpu")
    res = {"arch": arch, "seed": seed, "epochs": epochs, "dataset": source, "accuracy": m.accuracy,
           "seconds": round(time.perf_counter() - t0, 3)}
    _write_json(Path(out), res)
    return res


def work_supernet(source: str, epochs: int, ckpt: str, out: str, train_samples: int = 0,
                  options: dict[str, Any] | None = None) -> dict[str, Any]:
    from edgenas.supernet import train_supernet

    p = Path(ckpt)
    c0 = time.process_time()
    run = train_supernet(_space(), _task(source), _dataset(source), epochs, seed=SEED, device="cpu",
                         checkpoint=p, resume=p.exists(), progress=False, train_samples=train_samples,
                         **(options or {}))
    res = {"dataset": source, "epochs": epochs, "checkpoint": ckpt, "seconds": round(run.seconds, 3),
           "cpu_s": round(time.process_time() - c0, 3), "options": options or {},
           "resumed_from": run.resumed_from, "history": run.history}
    _write_json(Path(out), res)
    return res


_ESTIMATORS: dict[tuple[str, str, str], Any] = {}


def work_estimate(source: str, name: str, arch: str, weights: str | None, out: str,
                  est_options: dict[str, Any] | None = None) -> dict[str, Any]:
    from edgenas.estimators import get_estimator

    key = (source, name, weights or "", json.dumps(est_options or {}, sort_keys=True))
    t0 = time.perf_counter()
    if key not in _ESTIMATORS:
        space = _space()
        opts: dict[str, Any] = {}
        if name == "train":
            opts = {"dataset": _dataset(source), "torch_device": "cpu", **TRAIN_EST_OPTIONS}
        elif name == "supernet":
            opts = {"dataset": _dataset(source), "torch_device": "cpu", "weights": weights, **(est_options or {})}
        _ESTIMATORS[key] = get_estimator(name, space, _task(source), seed=SEED, **opts)
    setup = time.perf_counter() - t0
    est = _ESTIMATORS[key]
    e = est.estimate(est.space.parse(arch))
    res = {"arch": arch, "estimator": name, "dataset": source, "score": e.score, "seconds": e.seconds,
           "setup_seconds": round(setup, 3)}
    _write_json(Path(out), res)
    return res


def work_paired_cost(source: str, weights: str, archs: list[str], out: str,
                     est_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Seconds per candidate of ``supernet`` and 2-epoch ``train`` measured alternately on the same specs
    in one process (fresh estimators: nothing cached), so both see the same machine load."""
    from edgenas.estimators import get_estimator

    space, ds, task = _space(), _dataset(source), _task(source)
    sn = get_estimator("supernet", space, task, seed=SEED, dataset=ds, torch_device="cpu", weights=weights,
                       **(est_options or {}))
    tr = get_estimator("train", space, task, seed=SEED, dataset=ds, torch_device="cpu", **TRAIN_EST_OPTIONS)
    sn.estimate(space.parse(archs[-1]))  # warm-up: the supernet's data resized once (kept for every spec)
    tr.estimate(space.parse(archs[-1]))
    rows = []
    for a in archs[:-1]:
        spec = space.parse(a)
        rows.append({"arch": a, "supernet_s": sn.estimate(spec).seconds, "train_s": tr.estimate(spec).seconds})
    res = {"dataset": source, "rows": rows}
    _write_json(Path(out), res)
    return res


def work_search(source: str, kind: str, run_dir: str, trials: int | None, timeout: float | None,
                weights: str | None, sampler: str, out: str, est_options: dict[str, Any] | None = None,
                search_seed: int = SEED) -> dict[str, Any]:
    from edgenas.jobs import JobConfig
    from edgenas.search.run import run_search

    ds = _dataset(source)
    est: dict[str, Any] = {"name": kind, "seed": SEED, "dataset": source, "torch_device": "cpu"}
    if kind == "supernet":
        est["weights"] = weights
        if est_options:
            est["options"] = dict(est_options)
    else:
        est["options"] = dict(TRAIN_EST_OPTIONS)
    search: dict[str, Any] = {"objectives": ["accuracy", "macs"], "sampler": sampler, "seed": search_seed}
    if trials:
        search["trials"] = trials
    if timeout:
        search["timeout"] = float(timeout)
    cfg = JobConfig.from_dict({"space": {"name": "tiny", "options": SPACE_OPTIONS},
                               "task": {"num_classes": ds.num_classes, "in_channels": ds.channels},
                               "estimator": est, "search": search})
    rd = Path(run_dir)
    if rd.exists():  # an interrupted search: start it again (a timed search cannot be resumed fairly)
        shutil.rmtree(rd)
    rd.parent.mkdir(parents=True, exist_ok=True)
    c0, t0 = time.process_time(), time.perf_counter()
    res = run_search(cfg, rd, quiet=True, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    from edgenas.search.front import trial_row

    rows = list(res.front or [])
    trials_done = [t for t in res.study.get_trials(deepcopy=False) if t.values is not None]
    est_seconds = [float(r["estimate_seconds"]) for r in (trial_row(t, res.state.objectives) for t in trials_done)
                   if r.get("estimate_seconds") is not None]
    out_d = {"dataset": source, "estimator": kind, "sampler": sampler, "seed": search_seed, "trials": trials,
             "timeout": timeout,
             "finished_trials": len(trials_done), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
             "estimate_seconds_total": round(sum(est_seconds), 3),
             "front": [{"arch": r["arch"], "accuracy": r.get("accuracy"), "macs": r.get("macs"),
                        "estimate_seconds": r.get("estimate_seconds")} for r in rows]}
    _write_json(Path(out), out_d)
    return out_d


# -- the plan ------------------------------------------------------------------------------------
@dataclass
class Job:
    key: str
    fn: Any
    args: tuple
    out: Path
    what: str


class Plan:
    """Which jobs exist given what is cached; recomputed after every finished job."""

    def __init__(self, st: Settings) -> None:
        self.st = st
        self.space = _space()
        self.specs = [str(s) for s in self.space.sample(st.specs, seed=SEED)]
        self.ttag = variant_tag(train_effective(st.supernet_options), COMMITTED_TRAIN)
        self.etag = variant_tag(estimator_effective(st.estimator_options), COMMITTED_ESTIMATOR)

    # paths
    def task_dir(self, source: str) -> Path:
        return self.st.cache / _slug(source)

    def standalone_path(self, source: str, arch: str, seed: int) -> Path:
        return self.task_dir(source) / f"standalone_e{self.st.epochs}" / f"s{seed}" / f"{_h(arch)}.json"

    # Caches of the supernet's results carry the variant's tags (none: the committed run's settings), so
    # the committed run's stay readable next to a new variant's. The train search does not depend on the
    # supernet's settings: one for all (its timeout came from the first variant run in a cache).
    def supernet_ckpt(self, source: str, ttag: str | None = None) -> Path:
        return self.task_dir(source) / f"supernet_e{self.st.supernet_epochs}{self._t(ttag)}.pt"

    def supernet_done(self, source: str, ttag: str | None = None) -> Path:
        return self.task_dir(source) / f"supernet_e{self.st.supernet_epochs}{self._t(ttag)}.json"

    def estimate_path(self, source: str, name: str, arch: str, tags: tuple[str, str] | None = None) -> Path:
        sub = f"supernet_e{self.st.supernet_epochs}{self._tags(tags)}" if name == "supernet" else name
        return self.task_dir(source) / "estimates" / sub / f"{_h(arch)}.json"

    def paired_cost_path(self, source: str, tags: tuple[str, str] | None = None) -> Path:
        return self.task_dir(source) / f"paired_cost_sn{self.st.supernet_epochs}{self._tags(tags)}.json"

    def search_tag(self, kind: str = "train", tags: tuple[str, str] | None = None) -> str:
        base = f"{self.st.sampler}_t{self.st.search_trials}_sn{self.st.supernet_epochs}"
        return base + (self._tags(tags) if kind == "supernet" else "")

    def search_path(self, source: str, kind: str, tags: tuple[str, str] | None = None, seed: int = SEED) -> Path:
        s = f"_seed{seed}" if seed != SEED else ""
        return self.task_dir(source) / "search" / f"{self.search_tag(kind, tags)}_{kind}{s}.json"

    def search_dir(self, source: str, kind: str, seed: int = SEED) -> Path:
        s = f"_seed{seed}" if seed != SEED else ""
        return self.task_dir(source) / "search" / f"{self.search_tag(kind)}_{kind}{s}"

    def _t(self, ttag: str | None) -> str:
        return self.ttag if ttag is None else ttag

    def _tags(self, tags: tuple[str, str] | None) -> str:
        return self.ttag + self.etag if tags is None else tags[0] + tags[1]

    @property
    def variant(self) -> bool:
        """Whether these settings differ from the committed run's (whose results are then shown too)."""
        return bool(self.ttag or self.etag)

    def others(self) -> list[tuple[tuple[str, str], str]]:
        """Supernet variants reported next to this run's: the committed run's settings (when these differ),
        and each --compare-supernet-opt variant (scored with this run's estimator settings)."""
        out: list[tuple[tuple[str, str], str]] = []
        if self.variant:
            out.append((("", ""), OLD_LABEL))
        for opts in self.st.compare_supernet_options:
            ttag = variant_tag(train_effective(opts), COMMITTED_TRAIN)
            if (ttag, self.etag) != (self.ttag, self.etag) and (ttag, self.etag) not in [t for t, _ in out]:
                out.append(((ttag, self.etag), ", ".join(f"{k}={v}" for k, v in sorted(opts.items()))))
        return out

    # reading
    def standalone(self, source: str, arch: str, seed: int) -> dict[str, Any] | None:
        return _read_json(self.standalone_path(source, arch, seed))

    def hard_source(self) -> str | None:
        """The pilot's choice: the first setting (in PILOT_SETTINGS order) whose pilot runs spread over
        SPREAD_TARGET; None while the pilot of the next setting to try is running; the widest spread when
        none does."""
        spreads = self.pilot()
        for setting in PILOT_SETTINGS:
            if spreads[setting] is None:
                return None
            if spreads[setting]["spread"] >= SPREAD_TARGET:
                return setting
        return max(PILOT_SETTINGS, key=lambda s: spreads[s]["spread"])

    def pilot_next(self) -> str | None:
        """The setting whose pilot runs are needed next (None when the choice is made)."""
        spreads = self.pilot()
        for setting in PILOT_SETTINGS:
            if spreads[setting] is None:
                return setting
            if spreads[setting]["spread"] >= SPREAD_TARGET:
                return None
        return None

    def pilot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for setting in PILOT_SETTINGS:
            accs = [self.standalone(setting, a, SEEDS[0]) for a in self.specs[: self.st.pilot_specs]]
            if any(a is None for a in accs):
                out[setting] = None
                continue
            v = [a["accuracy"] for a in accs if a]
            out[setting] = {"n": len(v), "min": min(v), "max": max(v), "spread": max(v) - min(v),
                            "mean": sum(v) / len(v)}
        return out

    def sources(self) -> list[tuple[str, str | None]]:
        """(task label, dataset source or None while the pilot runs)."""
        out = []
        for t in self.st.tasks:
            out.append((t, self.hard_source() if t == HARD else t))
        return out

    # jobs
    def jobs(self) -> list[Job]:
        jobs: list[Job] = []
        for label, source in self.sources():
            if label == HARD and source is None:
                setting = self.pilot_next()
                if setting is not None:
                    for arch in self.specs[: self.st.pilot_specs]:
                        self._standalone_job(jobs, setting, arch, SEEDS[0], f"pilot {setting}")
                continue
            assert source is not None
            jobs += self.task_jobs(label, source)
        return jobs

    def _standalone_job(self, jobs: list[Job], source: str, arch: str, seed: int, what: str) -> None:
        p = self.standalone_path(source, arch, seed)
        if not p.exists():
            jobs.append(Job(f"sa|{source}|{arch}|{seed}", work_standalone, (source, arch, seed, self.st.epochs, str(p)),
                            p, f"{what}: stand-alone {arch} seed {seed}"))

    def task_jobs(self, label: str, source: str) -> list[Job]:
        jobs: list[Job] = []
        sn_done = self.supernet_done(source)
        if not sn_done.exists():  # longest single job first
            jobs.append(Job(f"sn|{source}", work_supernet,
                            (source, self.st.supernet_epochs, str(self.supernet_ckpt(source)), str(sn_done),
                             256 if self.st.quick else 0, dict(self.st.supernet_options)),
                            sn_done, f"{label}: supernet training ({self.st.supernet_epochs} epochs)"))
        sn = _read_json(sn_done)
        # the supernet search as soon as the supernet exists: the train search's timeout depends on it
        if self.st.e2e and sn is not None:
            p = self.search_path(source, "supernet")
            if not p.exists():
                jobs.append(Job(f"search|{source}|supernet", work_search,
                                (source, "supernet", str(self.search_dir(source, "supernet")),
                                 self.st.search_trials, None, str(self.supernet_ckpt(source)), self.st.sampler, str(p),
                                 dict(self.st.estimator_options)),
                                p, f"{label}: search with the supernet estimator"))
            else:
                q = self.search_path(source, "train")
                s_sn = _read_json(p)
                if not q.exists():
                    timeout = float(sn["seconds"]) + float(s_sn["wall_s"])
                    jobs.append(Job(f"search|{source}|train", work_search,
                                    (source, "train", str(self.search_dir(source, "train")), None, timeout, None,
                                     self.st.sampler, str(q)),
                                    q, f"{label}: search with the train estimator, timeout {timeout:.0f} s"))
        if sn is not None:
            p = self.paired_cost_path(source)
            if not p.exists():
                jobs.append(Job(f"cost|{source}", work_paired_cost,
                                (source, str(self.supernet_ckpt(source)), self.specs[:PAIRED_SPECS + 1], str(p),
                                 dict(self.st.estimator_options)), p,
                                f"{label}: paired cost of supernet vs train on {PAIRED_SPECS} specs"))
        for name in ("synflow", "supernet", "train"):
            if name == "supernet" and sn is None:
                continue
            for arch in self.specs:
                p = self.estimate_path(source, name, arch)
                if not p.exists():
                    w = str(self.supernet_ckpt(source)) if name == "supernet" else None
                    jobs.append(Job(f"est|{source}|{name}|{arch}", work_estimate,
                                    (source, name, arch, w, str(p), dict(self.st.estimator_options)), p,
                                    f"{label}: {name} estimate of {arch}"))
        for seed in SEEDS:
            for arch in self.specs:
                self._standalone_job(jobs, source, arch, seed, label)
        if self.st.e2e and sn is not None:
            for seed in self.st.extra_search_seeds:
                p = self.search_path(source, "supernet", seed=seed)
                if not p.exists():
                    jobs.append(Job(f"search|{source}|supernet|{seed}", work_search,
                                    (source, "supernet", str(self.search_dir(source, "supernet", seed)),
                                     self.st.search_trials, None, str(self.supernet_ckpt(source)), self.st.sampler,
                                     str(p), dict(self.st.estimator_options), seed),
                                    p, f"{label}: search with the supernet estimator, search seed {seed}"))
        for kind, seed in (("supernet", SEED), ("train", SEED), *(("supernet", x) for x in self.st.extra_search_seeds)):
            res = _read_json(self.search_path(source, kind, seed=seed))
            if res is None:
                continue
            for row in res["front"]:
                for seed in SEEDS:
                    self._standalone_job(jobs, source, row["arch"], seed, f"{label} {kind}-search front")
        return jobs


def run_jobs(plan: Plan, n_jobs: int, report_every: float) -> None:
    import multiprocessing as mp

    running: dict[Future, Job] = {}
    failed: set[str] = set()
    done = 0
    last_report = time.monotonic()
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker) as pool:
        try:
            while True:
                keys = {j.key for j in running.values()}
                pending = [j for j in plan.jobs() if j.key not in keys and j.key not in failed]
                while pending and len(running) < n_jobs:
                    j = pending.pop(0)
                    log(f"start {j.what}")
                    running[pool.submit(j.fn, *j.args)] = j
                if not running:
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for f in finished:
                    j = running.pop(f)
                    try:
                        res = f.result()
                        brief = {k: res[k] for k in ("accuracy", "score", "seconds", "wall_s", "finished_trials")
                                 if k in res}
                        log(f"done  {j.what}: {brief}")
                    except Exception as exc:  # keep the others going; the job is retried on the next run
                        log(f"FAILED {j.what}: {exc.__class__.__name__}: {exc}")
                        _write_json(j.out.with_suffix(".failed"), {"error": f"{exc.__class__.__name__}: {exc}"})
                        failed.add(j.key)
                    done += 1
                if time.monotonic() - last_report > report_every:
                    report(plan, quiet=True)
                    last_report = time.monotonic()
            if failed:
                log(f"{len(failed)} job(s) failed (see above); run again to retry them")
        except KeyboardInterrupt:
            log("interrupted: finished jobs are cached; run again to continue")
            pool.shutdown(wait=False, cancel_futures=True)
            raise


# -- the report ---------------------------------------------------------------------------------
def kendall(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    if len(a) < 3:
        return float("nan")
    return float(kendalltau(a, b).statistic)


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _r(v: Any, nd: int = 4) -> Any:
    return round(v, nd) if isinstance(v, float) and math.isfinite(v) else v


def task_report(plan: Plan, label: str, source: str) -> dict[str, Any]:
    from edgenas.search.pareto import hypervolume
    from edgenas.supernet.plans import plan_for

    space = plan.space
    task = _task(source)
    out: dict[str, Any] = {"task": label, "dataset": source}
    per_seed = {s: {a: plan.standalone(source, a, s) for a in plan.specs} for s in SEEDS}
    both = [a for a in plan.specs if all(per_seed[s][a] for s in SEEDS)]
    out["specs_planned"] = len(plan.specs)
    out["specs_done"] = len(both)
    out["trainings_done"] = sum(1 for s in SEEDS for a in plan.specs if per_seed[s][a])
    mean = {a: sum(per_seed[s][a]["accuracy"] for s in SEEDS) / len(SEEDS) for a in both}
    secs = [per_seed[s][a]["seconds"] for s in SEEDS for a in plan.specs if per_seed[s][a]]
    out["standalone_seconds_mean"] = _r(sum(secs) / len(secs), 2) if secs else None
    if both:
        v = list(mean.values())
        out["standalone_mean_min"], out["standalone_mean_max"] = _r(min(v)), _r(max(v))
        out["spread_points"] = _r(100 * (max(v) - min(v)), 2)
    out["ceiling_tau"] = _r(kendall([per_seed[0][a]["accuracy"] for a in both],
                                    [per_seed[1][a]["accuracy"] for a in both]))
    out["ceiling_spearman"] = _r(spearman([per_seed[0][a]["accuracy"] for a in both],
                                          [per_seed[1][a]["accuracy"] for a in both]))
    sn = _read_json(plan.supernet_done(source))
    out["supernet_seconds"] = sn["seconds"] if sn else None
    if sn:
        out["supernet_history"] = sn["history"]
    # other supernet variants shown next to this run's: (tags, label, supernet training record)
    others = [(tags, what, _read_json(plan.supernet_done(source, tags[0]))) for tags, what in plan.others()]
    out["supernet_variants"] = [{"variant": what, "supernet_seconds": (rec or {}).get("seconds"),
                                 "supernet_cpu_s": (rec or {}).get("cpu_s")} for _, what, rec in others]
    one_time_of = {tags: (rec or {}).get("seconds") for tags, _, rec in others}
    label_of = {tags: what for tags, what, _ in others}
    est_rows = []
    for name, tags in (("supernet", None), ("synflow", None), ("train", None),
                       *(("supernet", t) for t, _, _ in others)):
        res = {a: _read_json(plan.estimate_path(source, name, a, tags)) for a in plan.specs}
        have = [a for a in both if res[a] is not None]
        costs = sorted(r["seconds"] for r in res.values() if r)
        if tags is not None and not have:
            continue
        shown = {"train": "train (2 epochs)"}.get(name, name) + (f" ({label_of[tags]})" if tags is not None else "")
        row = {"task": label, "estimator": shown,
               "n": len(have), "kendall_tau": _r(kendall([res[a]["score"] for a in have], [mean[a] for a in have])),
               "spearman": _r(spearman([res[a]["score"] for a in have], [mean[a] for a in have])),
               "s_per_candidate": _r(sum(costs) / len(costs), 4) if costs else None,
               "s_per_candidate_median": _r(costs[len(costs) // 2], 4) if costs else None,
               "one_time_s": ((one_time_of[tags] if tags is not None else (sn or {}).get("seconds"))
                              if name == "supernet" else 0.0)}
        if isinstance(row["kendall_tau"], float) and isinstance(out["ceiling_tau"], float) and out["ceiling_tau"] > 0:
            row["tau_over_ceiling"] = _r(row["kendall_tau"] / out["ceiling_tau"], 3)
        est_rows.append(row)
    out["estimators"] = est_rows
    pc = _read_json(plan.paired_cost_path(source))
    if pc and pc["rows"]:
        import statistics

        a = [r["supernet_s"] for r in pc["rows"]]
        b = [r["train_s"] for r in pc["rows"]]
        out["paired_cost"] = {"n": len(a), "supernet_median_s": _r(statistics.median(a), 4),
                              "train_median_s": _r(statistics.median(b), 4),
                              "supernet_mean_s": _r(statistics.fmean(a), 4), "train_mean_s": _r(statistics.fmean(b), 4),
                              "ratio_of_medians": _r(statistics.median(b) / statistics.median(a), 2),
                              "rows": pc["rows"]}
    # hypervolume
    largest = plan_for(space).largest()
    macs_max = float(space.cost(largest, task).macs)
    macs = {}

    def m(arch: str) -> float:
        if arch not in macs:
            macs[arch] = float(space.cost(space.parse(arch), task).macs) / macs_max
        return macs[arch]

    if both:
        acc_ref = min(mean.values())
        chance = 1.0 / task.num_classes

        def hv(points: list[tuple[float, float]], ref_acc: float) -> float:
            return hypervolume([[-a, c] for a, c in points], [-ref_acc, 1.0])

        gt_pts = [(mean[a], m(a)) for a in both]
        hv_gt, hv_gt_c = hv(gt_pts, acc_ref), hv(gt_pts, chance)
        out["hv_reference"] = {"accuracy": _r(acc_ref), "macs": macs_max, "macs_normalised": 1.0}
        out["hv_ground_truth"] = _r(hv_gt, 5)
        out["hv_ground_truth_chance_ref"] = _r(hv_gt_c, 5)
        gt_front_mask = [not any((b[0] >= p[0] and b[1] <= p[1]) and b != p for b in gt_pts) for p in gt_pts]
        out["ground_truth_front"] = [{"arch": a, "accuracy": _r(mean[a]), "macs": int(m(a) * macs_max)}
                                     for a, keep in zip(both, gt_front_mask) if keep]
        e2e = []
        runs = [("supernet", None, SEED), ("train", None, SEED), *(("supernet", t, SEED) for t, _, _ in others),
                *(("supernet", None, x) for x in plan.st.extra_search_seeds)]
        for kind, tags, seed in runs:
            res = _read_json(plan.search_path(source, kind, tags, seed))
            if res is None:
                continue
            one_time = ((one_time_of[tags] if tags is not None else (sn or {}).get("seconds"))
                        if kind == "supernet" else 0.0)
            fr = [r["arch"] for r in res["front"]]
            got = {a: [plan.standalone(source, a, s) for s in SEEDS] for a in fr}
            ready = [a for a in fr if all(got[a])]
            pts = [(sum(x["accuracy"] for x in got[a]) / len(SEEDS), m(a)) for a in ready]
            est_pts = [(float(r["accuracy"]), m(r["arch"])) for r in res["front"]]
            what = f" ({label_of[tags]})" if tags is not None else (f" (search seed {seed})" if seed != SEED else "")
            row = {"task": label, "search": f"{kind} estimator{what}",
                   "trials": res["finished_trials"], "search_s": res["wall_s"], "cpu_s": res.get("cpu_s"),
                   "one_time_s": one_time,
                   "timeout_s": res.get("timeout"), "front_size": len(fr), "retrained": len(ready),
                   "hv_retrained": _r(hv(pts, acc_ref), 5) if ready else None,
                   "hv_ratio": _r(hv(pts, acc_ref) / hv_gt, 4) if ready and hv_gt > 0 else None,
                   "hv_ratio_chance_ref": _r(hv(pts, chance) / hv_gt_c, 4) if ready and hv_gt_c > 0 else None,
                   "hv_estimated_front": _r(hv(est_pts, acc_ref), 5)}
            row["total_s"] = _r(float(row["search_s"]) + float(row["one_time_s"] or 0.0), 1)
            row["front"] = [{"arch": a, "estimated": _r(float(r["accuracy"])),
                             "standalone_mean": _r(p[0]) if a in ready else None, "macs": int(m(a) * macs_max)}
                            for a, r in zip(fr, res["front"]) for p in [dict(zip(ready, pts)).get(a, (None,))]]
            e2e.append(row)
        out["end_to_end"] = e2e
    return out


def targets(t: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    est = {r["estimator"]: r for r in t.get("estimators", [])}
    sn, syn, tr = est.get("supernet", {}), est.get("synflow", {}), est.get("train (2 epochs)", {})
    ceil = t.get("ceiling_tau")

    def ok(cond: Any) -> str:
        return "n/a" if cond is None else ("met" if cond else "missed")

    def num(x: Any) -> float | None:
        return x if isinstance(x, (int, float)) and math.isfinite(x) else None

    tau = num(sn.get("kendall_tau"))
    if tau is not None and num(ceil):
        rows.append({"task": t["task"], "target": "supernet tau >= 0.8 x ceiling",
                     "value": f"{tau:.3f} vs {0.8 * ceil:.3f} (ceiling {ceil:.3f})", "status": ok(tau >= 0.8 * ceil),
                     "margin": _r(tau - 0.8 * ceil, 3)})
    for other, label in ((syn, "synflow"), (tr, "2-epoch training")):
        o = num(other.get("kendall_tau"))
        if tau is not None and o is not None:
            rows.append({"task": t["task"], "target": f"supernet tau > {label}'s", "value": f"{tau:.3f} vs {o:.3f}",
                         "status": ok(tau > o), "margin": _r(tau - o, 3)})
    c_sn, c_tr = num(sn.get("s_per_candidate")), num(tr.get("s_per_candidate"))
    if c_sn is not None and c_tr:
        rows.append({"task": t["task"], "target": "supernet cost <= 1/20 of 2-epoch training's",
                     "value": f"{c_sn:.3f} s vs {c_tr / 20:.3f} s (1/{c_tr / c_sn:.0f})",
                     "status": ok(c_sn <= c_tr / 20),
                     "margin": _r(c_tr / 20 - c_sn, 3)})
    pc = t.get("paired_cost")
    if pc:
        rows.append({"task": t["task"], "target": "same, paired (alternating, same specs, medians)",
                     "value": f"{pc['supernet_median_s']:.3f} s vs {pc['train_median_s'] / 20:.3f} s "
                              f"(1/{pc['ratio_of_medians']:.0f})",
                     "status": ok(pc["supernet_median_s"] <= pc["train_median_s"] / 20),
                     "margin": _r(pc["train_median_s"] / 20 - pc["supernet_median_s"], 3)})
    e2e = {r["search"]: r for r in t.get("end_to_end", [])}
    a, b = e2e.get("supernet estimator"), e2e.get("train estimator")
    if a and b and num(a.get("hv_ratio")) is not None and num(b.get("hv_ratio")) is not None:
        rows.append({"task": t["task"], "target": "supernet search's front >= train search's (HV)",
                     "value": f"{a['hv_ratio']:.3f} vs {b['hv_ratio']:.3f}",
                     "status": ok(a["hv_ratio"] >= b["hv_ratio"]), "margin": _r(a["hv_ratio"] - b["hv_ratio"], 3)})
    ratios = [num(r.get("hv_ratio")) for r in (a, b) if r]
    ratios = [x for x in ratios if x is not None]
    if ratios:
        best = max(ratios)
        rows.append({"task": t["task"], "target": "a front within 0.9 of the ground truth's HV",
                     "value": f"best {best:.3f}", "status": ok(best >= 0.9), "margin": _r(best - 0.9, 3)})
    return rows


def report(plan: Plan, quiet: bool = False, notes_extra: str = "") -> dict[str, Any]:
    st = plan.st
    tasks = []
    pilot = plan.pilot() if HARD in st.tasks else {}
    for label, source in plan.sources():
        if source is None:
            continue
        tasks.append(task_report(plan, label, source))
    est_rows = [r for t in tasks for r in t["estimators"]]
    summary = []
    for t in tasks:
        summary.append({"task": t["task"], "dataset": t["dataset"],
                        "specs (2 seeds)": f"{t['specs_done']}/{t['specs_planned']}",
                        "accuracy range": f"{t.get('standalone_mean_min', '')}-{t.get('standalone_mean_max', '')}",
                        "ceiling tau": t["ceiling_tau"], "s / stand-alone training": t["standalone_seconds_mean"],
                        "supernet training s": t["supernet_seconds"]})
    e2e_rows = [{k: v for k, v in r.items() if k != "front"} for t in tasks for r in t.get("end_to_end", [])]
    cost_rows = [{"task": t["task"], **{k: v for k, v in t["paired_cost"].items() if k != "rows"}}
                 for t in tasks if t.get("paired_cost")]
    target_rows = [r for t in tasks for r in targets(t)]
    # completeness
    jobs_left = plan.jobs()
    partial = bool(jobs_left) or any(t["specs_done"] < t["specs_planned"] for t in tasks) or \
        len(tasks) < len(st.tasks)
    status = (f"Not done yet: {len(jobs_left)} job(s) of the current plan; "
              + "; ".join(f"{t['task']}: {t['trainings_done']}/{2 * t['specs_planned']} ground-truth trainings, "
                          f"{sum(r['n'] for r in t['estimators'])}/{3 * t['specs_planned']} estimates, "
                          f"{len(t.get('end_to_end', []))}/2 searches" for t in tasks)
              + (" (the hard task's pilot is still running)" if len(tasks) < len(st.tasks) else "")) if partial else ""
    pilot_rows = [{"setting": k, **({kk: _r(vv) for kk, vv in v.items()} if v else {"n": "not run"}),
                   "chosen": "yes" if k == plan.hard_source() else ""} for k, v in pilot.items()]
    notes = "\n\n".join(x for x in (status, NOTES.strip().replace("SPECS", str(st.specs)),
                                      FINDINGS.strip(), notes_extra.strip()) if x)
    extra = {"Estimators: Kendall tau with the stand-alone mean, cost": (est_rows, [
        "task", "estimator", "n", "kendall_tau", "tau_over_ceiling", "spearman", "s_per_candidate",
        "s_per_candidate_median", "one_time_s"]),
        "End to end: searches, fronts retrained stand-alone": (e2e_rows, [
            "task", "search", "trials", "one_time_s", "search_s", "cpu_s", "total_s", "timeout_s", "front_size",
            "retrained", "hv_retrained", "hv_ratio", "hv_ratio_chance_ref", "hv_estimated_front"]),
        "Cost per candidate, paired: supernet and train alternately on the same specs, one process": (cost_rows, [
            "task", "n", "supernet_median_s", "train_median_s", "supernet_mean_s", "train_mean_s",
            "ratio_of_medians"]),
        "Targets": (target_rows, ["task", "target", "value", "status", "margin"])}
    if pilot_rows:
        extra["Pilot: choosing the hard task"] = (pilot_rows, ["setting", "n", "min", "max", "spread", "mean",
                                                                "chosen"])
    if quiet:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            common.write_results(NAME, "Supernet: ranking, cost and end-to-end search (issue 20)", summary,
                                 ["task", "dataset", "specs (2 seeds)", "accuracy range", "ceiling tau",
                                  "s / stand-alone training", "supernet training s"],
                                 {**st.params(), "partial": partial}, notes=notes, extra_tables=extra,
                                 packages=("optuna", "scipy"))
    else:
        common.write_results(NAME, "Supernet: ranking, cost and end-to-end search (issue 20)", summary,
                             ["task", "dataset", "specs (2 seeds)", "accuracy range", "ceiling tau",
                              "s / stand-alone training", "supernet training s"],
                             {**st.params(), "partial": partial}, notes=notes, extra_tables=extra,
                             packages=("optuna", "scipy"))
    # the JSON also carries every per-task detail (fronts, histories, pilot)
    jpath = common.RESULTS / f"{NAME}.json"
    data = json.loads(jpath.read_text())
    data["tasks"] = tasks
    data["pilot"] = pilot
    data["partial"] = partial
    jpath.write_text(json.dumps(data, indent=1) + "\n")
    if partial:
        mpath = common.RESULTS / f"{NAME}.md"
        md = mpath.read_text()
        mpath.write_text(md.replace("\n\n", f"\n\n{common.PARTIAL_BANNER}\n\n", 1))
    return {"tasks": tasks, "partial": partial}


OLD_LABEL = "committed run's settings (2026-12-03)"
"""How rows of the first committed run's supernet settings are labelled next to a variant's."""

NOTES = """
What is measured, per task: SPECS random `tiny` specs (resolutions=[32], widths 0.5/0.75/1.0; seeded
sample, seed 0) trained stand-alone with the export recipe (`train_final`: whole training split, SGD with
Nesterov momentum, per-step cosine, BatchNorm re-estimated) for a fixed number of epochs with seeds 0 and 1;
accuracy on the dataset's validation split (split seed 0). Ceiling = Kendall tau of seed 0 vs seed 1.
Estimators are scored against the 2-seed mean. Every job ran on one torch thread, two jobs at a time on the
2 cores, so costs are single-thread seconds on a machine whose other core is busy. Hypervolume: accuracy
(stand-alone mean of 2 seeds) maximised, MACs / MACs of the largest spec minimised, reference point
(lowest ground-truth mean accuracy, 1.0); `hv_ratio` = HV(retrained front) / HV(ground-truth front);
`hv_ratio_chance_ref` uses accuracy 1/classes as the reference instead. A search front may beat the
ground-truth front (it is the front of 50 random specs, not of the space). `hv_estimated_front` is the
front's HV with the accuracies the search's own estimator gave (not comparable across estimators).
"""

FINDINGS = """
Findings of the 2026-12-07 re-runs (23:22-00:15 UTC, code of commits df1acc2..1eecc0c, which do not change
what this benchmark runs; the tables below are these runs'). The Dec 3 cache no longer existed on this
machine, so everything was measured again on today's code with the same settings and the same 50 seeded
specs: ground truth (200 trainings), estimators, supernets, searches (`python benchmarks/supernet.py --jobs 2
--extra-search-seeds 1,2`, then the same with `--supernet-opt smallest_prob=0`). The ground truth itself came
out different from Dec 3's: seed-to-seed ceiling 0.273 (digits, was 0.128) and 0.433 (hard, was 0.348). Why
the stand-alone accuracies moved is not established (the from-scratch `train_final` path did not change; the
builds and data pipeline around it did in many commits).

The main rows are the supernet trained with `smallest_prob=0` (a random subnet in the smallest's place),
the default since this run; the rows labelled `smallest_prob=1` are the sandwich rule, the default before.

Ranking (Kendall tau with the stand-alone mean; 90% paired-bootstrap intervals over the 50 specs in
benchmarks/results/supernet_ranking_ci.md). `smallest_prob=0`: 0.340 (digits) and 0.526 (hard); 2-epoch
training 0.386 on both; synflow -0.097 and -0.093; the sandwich rule 0.127 and 0.254. Against training:
digits -0.046 (-0.217 .. +0.124; the supernet at least as good in 33% of resamples: not distinguishable),
hard +0.140 (+0.012 .. +0.272; 96%: above). Against the sandwich rule: +0.213 and +0.271 (96% and 99.5% of
resamples). Targets: above synflow (both), above 2-epoch training on the hard task, not on digits (by 0.046,
inside the noise of 50 specs); >= 0.8 x the ceiling on both (0.340 vs 0.219, 0.526 vs 0.347). The sandwich
rule met neither of the last two. On Dec 3's code the same comparison gave 0.252 vs 0.188 (digits) and 0.413
vs 0.467 (hard): `smallest_prob=0` ranked better in three of the four runs, which is why it became the
default (the mechanism, not a tuned value: a subnet trained on every step is rated for that alone).

Cost: 0.14 s (digits) and 0.14 s (hard) a candidate within the run against 3.2-3.3 s for 2-epoch training
(1/23 and 1/25); paired (alternating, same process, 10 specs, medians): 0.187 s vs 3.56 s on digits, 1/19
(9 ms a candidate over the 1/20 target; the sandwich rule's paired run: 1/19.9), 0.156 s vs 3.50 s on the
hard task, 1/22 (met). Supernet training: 175 s and 141 s (`smallest_prob=0`; random subnets are larger
than the smallest) against 154 s and 136 s.

End to end (200 supernet trials per search, search seeds 0, 1, 2; the train search gets the sandwich
supernet's training plus search time, 192 s and 187 s, for 67 and 111 trials, so the `smallest_prob=0`
searches had 18% (digits) and 2-9% (hard) more time in all). `smallest_prob=0`, fronts retrained
stand-alone: digits 1.013, 0.762, 0.862 of the ground truth's hypervolume against the train search's 0.774
(above it on 2 of 3 seeds, mean 0.879); hard 1.002, 0.995, 1.073 against 0.790 (above on every seed; within
0.9 of the ground truth on every seed). The sandwich rule: digits 0.441, 0.738, 0.899; hard 0.832, 0.994,
0.989; its digits seed-0 front was 2 small w0.5 nets rated 98.1% and 98.6% that reach 95.8% and 96.1%
stand-alone. Targets ("front >= the train search's", "within 0.9 of the ground truth", seed 0): met on both
tasks with `smallest_prob=0`; search seed 1 on digits falls short of both (0.762).

Earlier runs (code of 2026-12-03; their tables were replaced by this run's, they are in git history at
commit ef89950's benchmarks/results/supernet.md):

Findings of the re-run (2026-12-03 19:01-19:19 UTC, commits b244854..1a93404; written from the tables of that run).

What changed since the first run (kept below). (1) Cost, scores unchanged: the `supernet` estimator runs
subnets and inputs in `channels_last` (oneDNN's NCHW depthwise convolutions are very slow on the small
maps of the last stages: a 7x7 stride-2 depthwise conv on 4x4 maps took 33 ms in NCHW, 0.5 ms in NHWC) and
refills kept layer modules instead of building each subnet (`Supernet.extract(reuse=True)`). Profiled on
digits with the first run's checkpoint: 0.51 s a candidate before (63% convolutions, 11-25% building
modules), 0.21 s after; on all 50 specs of both tasks every score is identical to the first run's cached
score (100 of 100). (2) BatchNorm re-estimated on 512 examples (8 x 64) instead of 256: re-drawing the
BatchNorm subset (estimator seeds 0, 1, 2) moved a spec's score by a standard deviation of 0.0030 (digits)
and 0.0044 (hard) with 256 examples, about one validation image; 0.0019 / 0.0031 with 512, 0.0015 / 0.0024
with 1,024. (3) `train_supernet(smallest_prob=...)`: how often a step trains the smallest subnet (1, the
default: the sandwich rule). The supernet checkpoints are the first run's (same training); the train
estimator's scores and searches and the ground truth are the first run's too (cached).

Why the smallest spec was over-rated (experiments on the cached ground truth, one process, one thread).
Two causes. Noise: with 256 BatchNorm examples the smallest spec's digits score is 98.6% with the seed-0
subset the first run used, 97.8% with seeds 1 and 2 (6-7 random specs above it); the first run's tau 0.135
was the lowest of the three seeds (0.135, 0.207, 0.230). Training frequency: stand-alone, the smallest spec
ranks 37th (digits) and 40th (hard) of 51; the sandwich-trained supernet rates it 1st-18th (256 examples,
three subsets per task; 1st-8th in five of the six) or 4th-9th (512), and a supernet trained with
`smallest_prob=0` (same seed and epochs, a random subnet in its place) rates it last of 51 on both tasks
(92.2-93.0% and 82.7-84.0%, below every random spec), with the random
specs' ranking unchanged beyond noise (tau, mean of three BatchNorm subsets: digits 0.19 vs 0.25, hard 0.41
vs 0.40 at 256 examples). How often a spec is trained sets its inherited accuracy; neither 1 nor 0 rates
the smallest where it belongs, so the sandwich rule stays the default. The over-rating extends to the
smallest's neighbourhood: the searches below concentrate on w0.5/w0.75 nets of 3x3, expand-3/4 blocks, which
the default supernet rates 5-17 points above their stand-alone accuracy on the hard task.

Ranking (this run, estimator seed 0): tau 0.188 on digits (first run 0.135) and 0.467 on the hard task
(0.415); 2-epoch training 0.213 and 0.488: missed by 0.025 and 0.020. With `smallest_prob=0` (same 512
examples): 0.252 on digits (above training) and 0.413 on the hard task (below): no better default on both.

Cost: 0.22 s (digits) and 0.24 s (hard) a candidate on average within the run, 1/22 and 1/53 of 2-epoch
training's cost in the table above — but those training costs are the first run's, measured under load.
The fair measure is the paired one (same process, alternating, same specs): medians 0.246 s vs 5.96 s
(1/24) and 0.311 s vs 6.34 s (1/20.4): the 1/20 target met on both, on the hard task by 0.006 s only.

End to end (one search per setting, `frontier`, seed 0, 200 trials). digits: the front is 3 specs now
(not the smallest alone), retrained 0.746 of the ground truth's hypervolume (first run 0.488); the train
search's 0.952: missed by 0.206. The supernet rates its w0.5 3x3 nets 98.3-98.9%, stand-alone they reach
96.2-97.6%; the train search's front holds w0.5-w1.0 7x7 nets. hard: 5 specs, 0.842 (first run, same
supernet, 256 examples: 0.979); the train search's 0.903: missed by 0.061. `smallest_prob=0`: digits 0.784
(8 specs; its supernet took 329 s to train, random subnets being larger than the smallest, so its 411 s
exceed the train search's 316 s), hard 0.959 (13 specs, 311 s in all against the train search's 753 s):
met on the hard task only. The same supernet gave 0.979 and 0.842 on the hard task with BatchNorm
statistics of 256 and 512 examples, although the 512-example scores rank the 50 specs better (tau 0.467 vs
0.415): with one search per setting, these end-to-end numbers do not rank the settings. Measured spread
(the default settings' search repeated with search seeds 1 and 2, `--extra-search-seeds 1,2`, same
supernet and estimator): hard 0.842, 0.996, 1.018 (mean 0.952, above the one train search's 0.903; the
target as stated, seed 0's search, is missed); digits 0.746, 0.861, 0.633 (mean 0.747, below 0.952 on
every seed). The train search was not repeated (about 5 and 12 minutes each).

Load and time. The train searches are the first run's (timeouts 308 s and 749 s from the first run's
supernet training under load plus its search); this run's supernet searches took 65 s and 64 s, totals
303 s and 607 s, inside those budgets. The other engineer's timing jobs used the other core throughout;
every job here ran alone on one thread (`--jobs 1`). Stand-alone 4-epoch trainings took 3.3-11.5 s (about
11 s in the first run).

Not done: a setting that rates the smallest and its neighbourhood where stand-alone training puts them
(e.g. a `smallest_prob` between 0 and 1, or sampling random subnets per choice fairly; any value chosen
on these two tasks would be tuned to them); repeated train searches; more
BatchNorm examples (1,024: hard-task tau 0.48 averaged over three subsets, about 0.35 s a candidate,
outside the 1/20 budget).

First run (commit bd9d721, 2026-12-03 16:16-17:26 UTC), kept for reference: its supernet numbers are the rows
labelled "committed run's settings" (BatchNorm on 256 examples, the code before the speed-ups).

Settings, chosen before any supernet result and not changed after: 4 stand-alone epochs (measured first:
about 11 s a training on an idle core, so 2 x 50 trainings per task fit the session with room for the
searches; the export default is 10), supernet 3 x 4 = 12 epochs (a sandwich step trains 4 subnets), the
estimators' defaults (`supernet`: bn_batches 4, val_samples 512; `train`: 2 epochs, 1,024 examples),
`frontier`, 200 supernet-search trials.

The hard task: `synthetic:n=1500,size=8,noise=2.0`. The pilot ladder (8 specs, seed 0, 4 epochs) first tried
32-px sources at noise 1 and 2: every spec scored 99.7-100% (no ranking to measure). 8-px sources (as
digits' 8x8 images, upsampled to the 32-px input) at noise 2 spread over 13.7 points on the pilot specs and
21.5 points (69.3-90.8%) over all 50: chosen by the rule, nothing after it was tried.

Ranking. digits is nearly degenerate for this space: all 50 specs reach 95.7-98.6% (about 10 of the 359
validation images between best and worst), seed 0 and seed 1 agree at tau 0.13, and no estimator can rank
much better than noise. On the hard task the ceiling is 0.35. On both, the supernet ranks far better than
synflow (which is negative on both) but below 2-epoch training: tau 0.135 vs 0.213 (digits), 0.415 vs 0.488
(hard). Both exceed the seed-to-seed "ceiling" on the hard task: the 2-seed mean they are scored against is
less noisy than one seed, so that ceiling understates what is reachable, and the 0.8 x ceiling target is
weak.

Cost. The supernet scores a candidate in 0.24-0.89 s (one thread; BatchNorm re-estimated on 256 examples,
300-359 validation images, plus cutting the subnet out), 2-epoch training in 4.5-12.8 s: 1/14 to 1/17, the
supernet's seconds are 1.2-1.4x what the 1/20 target allows (measured within the main run and paired on an
idle machine). Re-estimating BatchNorm is about 40% of a candidate's time (profiled); fewer bn_batches would
cut it, not tried (it would be tuning the estimator to the target).

End to end. hard: the supernet search's front (7 specs; 200 trials in 206 s after 543 s of supernet
training) retrained stand-alone reaches 0.979 of the ground-truth front's hypervolume, the train search's
(208 trials in 753 s; `frontier` drifted to the cheapest w0.5 nets, 1.4-4 s a 2-epoch training) 0.903: both
targets met. digits: the supernet search's front is one spec, the space's smallest
(`tiny:w0.5:r32:k3e3_k3e3_k3e3_k3e3`): the sandwich rule trains it on every step, and the supernet rates it
98.6%, above every random subnet's 95.0-98.3%, so it dominates the estimated front; stand-alone it scores
96.9%, and one point holds 0.488 of the ground truth's hypervolume against the train search's 0.952 (8
specs, 73 trials in 316 s). Target missed by 0.46. Not tried: anything that corrects the smallest subnet's
advantage (a library change: e.g. scoring it apart, or sampling it less often in training).

Load. Processes of other sessions (an `edgenas run` job and others) shared the two cores for much of
16:25-17:15, at times a whole core: the jobs here then got 40-50% of a core each. Costs and the wall-clock-
matched searches carry that noise; CPU seconds of the searches: digits supernet search 50 of 70 wall s,
train search 209 of 316; hard 122 of 206 and 551 of 753 (the supernet training's CPU time was not recorded).
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=f"digits,{HARD}", help=f"comma list of digits, {HARD} (the pilot's choice) "
                                                              "or any dataset source")
    ap.add_argument("--specs", type=int, default=SPECS)
    ap.add_argument("--epochs", type=int, default=EPOCHS, help="stand-alone training epochs")
    ap.add_argument("--supernet-epochs", type=int, default=None, help="default: 3 x --epochs")
    ap.add_argument("--search-trials", type=int, default=SEARCH_TRIALS)
    ap.add_argument("--sampler", default=SAMPLER)
    ap.add_argument("--jobs", type=int, default=1, help="parallel processes (one torch thread each)")
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end searches")
    ap.add_argument("--quick", action="store_true", help="smoke test: 4 specs, 1 epoch, tiny searches (~1 min); "
                                                         "results in the cache folder, not benchmarks/results")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--report", action="store_true", help="only rewrite the results from the cache")
    ap.add_argument("--report-every", type=float, default=300.0, help="rewrite the results every N seconds")
    ap.add_argument("--supernet-opt", action="append", metavar="KEY=VALUE",
                    help="train_supernet option (e.g. smallest_prob=0); results cached apart from the committed run's")
    ap.add_argument("--estimator-opt", action="append", metavar="KEY=VALUE",
                    help="supernet estimator option (e.g. bn_batches=2); results cached apart likewise")
    ap.add_argument("--compare-supernet-opt", action="append", metavar="KEY=VALUE[,KEY=VALUE]",
                    help="also report the cached results of a supernet trained with these options (one variant per "
                         "flag; run it first with --supernet-opt)")
    ap.add_argument("--extra-search-seeds", default="", metavar="N[,N]",
                    help="repeat the supernet search with these search seeds (its spread; 200 candidates each)")
    a = ap.parse_args()
    from edgenas.options import parse_kv
    st = Settings(tasks=[t.strip() for t in a.tasks.split(",") if t.strip()], specs=a.specs, epochs=a.epochs,
                  supernet_epochs=a.supernet_epochs or 3 * a.epochs, search_trials=a.search_trials, sampler=a.sampler,
                  cache=a.cache or CACHE, e2e=not a.no_e2e, supernet_options=parse_kv(a.supernet_opt, "--supernet-opt"),
                  estimator_options=parse_kv(a.estimator_opt, "--estimator-opt"),
                  compare_supernet_options=[parse_kv(v.split(","), "--compare-supernet-opt")
                                            for v in a.compare_supernet_opt or []],
                  extra_search_seeds=[int(x) for x in a.extra_search_seeds.split(",") if x.strip()])
    if a.quick:
        st.specs, st.epochs, st.supernet_epochs, st.search_trials, st.pilot_specs = 4, 1, 1, 6, 3
        st.quick = True
        st.cache = (a.cache or CACHE) / "quick"
        common.RESULTS = st.cache
    st.pilot_specs = min(st.pilot_specs, st.specs)
    plan = Plan(st)
    if not a.report:
        log(f"{len(plan.jobs())} job(s) to run now (more follow: the hard task's after its pilot, fronts after "
            f"searches); cache {st.cache}")
        t0 = time.perf_counter()
        run_jobs(plan, max(1, a.jobs), a.report_every)
        log(f"all jobs done in {time.perf_counter() - t0:.0f} s")
    report(plan)


if __name__ == "__main__":
    main()
