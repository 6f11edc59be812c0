"""The supernet stage of a job (``[supernet]``, ``edgenas supernet train``): train, resume or reuse the
checkpoint a job names, before its search.

An existing checkpoint is never overwritten by another run: with ``resume`` (the job-file default,
``--resume`` on the command line) one of the same settings is continued from its last epoch, or reused
as it is when it has them all; one of other settings is an error naming the difference. Without
``resume`` an existing file is an error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgenas.errors import EdgenasError

if TYPE_CHECKING:
    from edgenas.jobs import JobConfig


@dataclass
class SupernetResult:
    """What the stage did: the checkpoint, the epochs it holds, the ones trained now, their history."""

    path: Path
    epochs: int
    resumed_from: int
    trained_epochs: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> str:
        if not self.trained_epochs:
            return f"supernet {self.path}: {self.epochs} epoch(s) already trained, reused"
        last = self.history[-1] if self.history else {}
        start = f" (resumed after epoch {self.resumed_from})" if self.resumed_from else ""
        return (f"supernet {self.path}: trained epochs {self.resumed_from + 1}-{self.epochs}{start} in "
                f"{self.seconds:.0f} s; last epoch loss largest {last.get('loss_largest', float('nan')):.4f}, "
                f"subnets {last.get('loss_subnets', float('nan')):.4f}")


def supernet_dataset(job: JobConfig) -> str:
    """``[supernet] dataset``, else the estimator's dataset, else digits."""
    sn = job.supernet
    if sn is not None and sn.dataset:
        return sn.dataset
    est = job.estimator
    if est is not None:
        src = est.dataset or est.options.get("dataset")
        if isinstance(src, str) and src:
            return src
    return "digits"


def run_supernet(job: JobConfig, *, progress: bool = True, say: Callable[[str], None] | None = None
                 ) -> SupernetResult:
    """Train (or resume, or reuse) the job's ``[supernet]`` checkpoint; see the module docstring."""
    from edgenas.fileio import check_can_create, ensure_writable_dir
    from edgenas.supernet.train import load_supernet, read_checkpoint, train_supernet

    cfg = job.supernet
    if cfg is None:
        raise EdgenasError("the job has no [supernet] table")
    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    space = job.space.build()
    task = job.task.task()
    path = Path(cfg.out)
    if path.exists() and not path.is_file():
        raise EdgenasError(f"supernet checkpoint {str(path)!r} is a folder; give a file, e.g. {path / 'sn.pt'}")
    check_can_create(path.parent, "supernet checkpoint folder")
    resume = False
    if path.exists():
        if not cfg.resume:
            raise EdgenasError(f"supernet checkpoint {str(path)!r} exists; continue it with --resume (resume = true "
                               f"in [supernet]) or give another --out")
        read_checkpoint(path)  # not a checkpoint: one line, before any work
        resume = True
    init = load_supernet(cfg.init)[0] if cfg.init and not resume else None
    ensure_writable_dir(path.parent, "supernet checkpoint folder")  # proven before the first epoch, not after
    run = train_supernet(space, task, supernet_dataset(job), cfg.epochs, seed=cfg.seed, device=cfg.torch_device,
                         checkpoint=path, resume=resume, init=init, kernel_transform=cfg.kernel_transform,
                         progress=progress, **cfg.options)
    trained = run.history[run.resumed_from:] if resume else run.history
    out = SupernetResult(path, cfg.epochs, run.resumed_from, len(trained), sum(h["seconds"] for h in trained),
                         list(run.history))
    say(out.summary())
    return out


def checkpoint_summary(path: str | Path) -> dict[str, Any]:
    """A checkpoint's metadata (no tensors), for ``edgenas supernet show`` and model cards."""
    from edgenas.supernet.train import read_checkpoint

    ck = read_checkpoint(path)
    keep = ("space", "space_options", "task", "seed", "epoch", "epochs", "hparams", "kernel_transform", "dataset",
            "history", "source")
    return {k: ck[k] for k in keep if k in ck}


IMPORT_FORMATS = ("ofa",)
"""Supernet checkpoints of other projects ``edgenas supernet import`` reads."""


def import_supernet(source: str | Path, out: str | Path, fmt: str = "ofa", num_classes: int | None = None
                    ) -> dict[str, Any]:
    """Another project's supernet weights as an edgenas checkpoint at ``out`` (never overwriting one):
    ``ofa`` reads Once-for-All's MobileNetV3 supernets (``ofa_mbv3_d234_e346_k357_w1.0`` / ``w1.2``) into
    the ``mbv3`` supernet; ``num_classes`` other than the checkpoint's gives a new classifier head.
    Returns the checkpoint's summary."""
    from edgenas.fileio import check_can_create, ensure_writable_dir
    from edgenas.supernet.ofa import read_ofa_state_dict, supernet_from_ofa
    from edgenas.supernet.train import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, save_checkpoint, space_options

    if fmt not in IMPORT_FORMATS:
        raise EdgenasError(f"--format {fmt!r}: choose one of {', '.join(IMPORT_FORMATS)}")
    dest = Path(out)
    if dest.exists():
        raise EdgenasError(f"{str(dest)!r} exists; give another --out (an import never overwrites a file)")
    check_can_create(dest.parent, "checkpoint folder")
    from edgenas.spaces.base import Task

    state = read_ofa_state_dict(source)
    ensure_writable_dir(dest.parent, "checkpoint folder")
    task = Task(num_classes=num_classes, in_channels=3) if num_classes else None
    sn, report = supernet_from_ofa(state, task, what=f"OFA checkpoint {str(source)!r}")
    what = (f"ofa:{source} (w{report['width']}, {report['tensors']} tensors"
            + (", new classifier head" if report["new_head"] else "") + ")")
    ck = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "space": sn.space.name,
          "space_options": space_options(sn.space),
          "task": {"num_classes": sn.task.num_classes, "in_channels": sn.task.in_channels,
                   "resolution": sn.task.resolution},
          "seed": None, "epoch": 0, "epochs": 0, "hparams": {}, "kernel_transform": True, "dataset": None,
          "history": [], "source": what, "new_head": bool(report["new_head"]),
          "state_dict": {k: v.detach().cpu() for k, v in sn.state_dict().items()}}
    save_checkpoint(dest, ck)
    return checkpoint_summary(dest)

