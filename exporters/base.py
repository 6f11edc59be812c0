"""The exporter plug-in contract: one base class per artifact format, a registry, and verification.

An :class:`Exporter` turns one trained torch module into one deployable file, then proves it: the file
is loaded in its *target runtime* (ONNX Runtime, the LiteRT interpreter, the TFLite Micro
interpreter), run on the validation batch and compared with torch (``parity``). Every exporter

* builds its file's bytes in :meth:`Exporter.build` from an :class:`ExportJob` (the module, its input
  shape, calibration/validation data, options, and a cache of intermediate results shared by the
  formats of one model, e.g. the float .tflite that the int8 exporter quantizes);
* loads a file for inference with :meth:`Exporter.runner`: a callable from float32 NCHW images
  (N, C, H, W) to float32 logits (N, classes), hiding the file's own layout (NHWC) and quantization
  (int8 input/output);
* is verified by :meth:`Exporter.verify` against torch: ``kind = "exact"`` formats must agree to
  ``max |diff| <= 1e-4 x max(1, max |torch logit|)`` on every validation example, ``"quantized"`` ones
  on top-1 for >= 98% of them.

:meth:`Exporter.export` runs the whole step: build, atomic write, load, verify, accuracy on the
validation labels, latency in the runtime on this host. It never raises for a model that fails to
convert or verify: the :class:`Artifact` carries ``error`` and the caller moves on.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgenas.errors import EdgenasError
from edgenas.exporters.metadata import ModelInfo
from edgenas.fileio import atomic_write
from edgenas.registry import GROUPS, Registry

EXACT_TOLERANCE = 1e-4
"""Largest |output difference| allowed between torch and a float artifact, per unit of the logits' scale
(``max(1, max |torch logit|)``): float32 rounding grows with the values summed, so a well-trained model
with logits near 100 differs by ~1e-4 in a faithful conversion (seen: an fbnet model, 1.07e-4 at max
|logit| 104, top-1 100%), while a real conversion fault moves logits by a share of their size."""


def exact_tolerance(ref: np.ndarray) -> float:
    """The ``max |diff|`` a float artifact may show against torch's outputs ``ref`` (see
    :data:`EXACT_TOLERANCE`)."""
    scale = float(np.max(np.abs(ref))) if np.size(ref) else 0.0
    return EXACT_TOLERANCE * max(1.0, scale)
TOP1_AGREEMENT = 0.98
"""Smallest share of validation examples on which a quantized artifact's top-1 must equal torch's."""

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class ExportOptions:
    """What the user chose about the artifacts (not about the model)."""

    nhwc: bool = False
    """TFLite files take (1, H, W, C) input (what camera pipelines feed) instead of (1, C, H, W)."""
    int8_io: bool = True
    """int8 files take int8 input and give int8 output (scale / zero point in the model card);
    otherwise float32 through QUANTIZE / DEQUANTIZE ops at the boundary."""
    opset: int = 21
    threads: int = 1
    """Threads for the latency measurement of each artifact."""
    runtime_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per runtime (``onnxruntime``, ``litert``): the options the runner times with (a device spec's
    ``[runtime_options]``), so an artifact is timed as its device's table was."""
    measure_latency: bool = True
    verbose: bool = False
    int8: str = "minmax"
    """How the int8 file is made (:mod:`edgenas.exporters.int8_options`): ``minmax`` (the default),
    ``percentile``, ``mse`` (activation ranges), ``mixed16`` (int16 activations on the most sensitive ops),
    ``qat`` (quantization-aware fine-tuning, :mod:`edgenas.exporters.qat`)."""
    int8_sensitivity: bool = False
    """Rank the ops by how far quantizing each alone moves the logits, on the int8 file's card."""
    int8_bias_correction: bool = False
    """Correct each layer's bias for the mean shift its int8 weight rounding causes before quantizing
    (:mod:`edgenas.exporters.bias_correction`), under any ``int8`` mode."""
    qat_epochs: int = 2
    """Fine-tuning epochs of ``int8 = "qat"``."""
    torch_device: str = "cpu"
    """Where ``qat`` fine-tunes (:mod:`edgenas.torchdevice`)."""


@dataclass
class ExportJob:
    """One trained model on its way to every requested format."""

    module: Any
    """The eval-mode torch module, trained."""
    input_shape: tuple[int, int, int]
    """(C, H, W) of one example."""
    representative: np.ndarray
    """Calibration examples for quantization, float32 NCHW (N, C, H, W), from the training split."""
    val_x: np.ndarray
    """Validation examples, float32 NCHW."""
    val_y: np.ndarray | None = None
    """Their labels (None: accuracy is not reported)."""
    options: ExportOptions = field(default_factory=ExportOptions)
    cache: dict[str, Any] = field(default_factory=dict)
    """Intermediate results shared across formats (keyed by what they are, e.g. ``tflite-fp32``)."""
    info: ModelInfo | None = None
    """Arch, space, preprocessing and class names, written into every file (:mod:`.metadata`)."""
    train_data: tuple[Any, Any] | None = None
    """Training images at the model's input size and their labels (torch tensors), for ``int8 = "qat"``."""
    _torch_logits: np.ndarray | None = None

    def torch_logits(self) -> np.ndarray:
        """The reference outputs: torch on the validation batch (computed once)."""
        if self._torch_logits is None:
            import torch

            with torch.no_grad():
                outs = [self.module(torch.from_numpy(self.val_x[i:i + 256])).numpy()
                        for i in range(0, len(self.val_x), 256)]
            self._torch_logits = np.concatenate(outs).astype(np.float32)
        return self._torch_logits

    def int8_reference(self) -> np.ndarray:
        """What an int8 file must agree with: torch's logits, or (``int8 = "qat"``, set when the file is
        built) the fine-tuned model's that the file was made from."""
        ref = self.cache.get("int8-reference")
        return ref if ref is not None else self.torch_logits()

    def val_data(self) -> tuple[Any, Any]:
        """The validation images and labels as torch tensors."""
        import torch

        y = self.val_y if self.val_y is not None else np.zeros(len(self.val_x), np.int64)
        return torch.from_numpy(np.ascontiguousarray(self.val_x)), torch.from_numpy(np.asarray(y, np.int64))

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


@dataclass
class Parity:
    """How an artifact's outputs compare with torch's on the validation batch."""

    kind: str
    """"exact" (float artifact) or "quantized"."""
    examples: int
    max_abs_diff: float
    top1_agreement: float
    passed: bool
    threshold: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "examples": self.examples, "max_abs_diff": self.max_abs_diff,
                "top1_agreement": self.top1_agreement, "passed": self.passed, "threshold": self.threshold}


@dataclass
class Artifact:
    """One exported file, or the reason it could not be made."""

    format: str
    path: Path | None = None
    bytes: int = 0
    sha256: str = ""
    runtime: str = ""
    parity: Parity | None = None
    accuracy: float | None = None
    """Top-1 accuracy of the artifact itself on the validation split."""
    latency_ms: float | None = None
    """Median latency of one batch-1 inference in its runtime on this host."""
    seconds: float = 0.0
    """Wall time of the whole step (build, write, verification, latency timing)."""
    build_seconds: float = 0.0
    """Wall time of building the file's bytes alone (conversion, quantization)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Format-specific facts (e.g. the TFLM arena, the int8 input scale / zero point)."""
    companions: list[Path] = field(default_factory=list)
    """Further files that belong to this artifact (e.g. the C source and header of a TFLM model)."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def compare(kind: str, got: np.ndarray, ref: np.ndarray) -> Parity:
    got = np.asarray(got, dtype=np.float32).reshape(ref.shape)
    diff = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    agree = float(np.mean(got.argmax(1) == ref.argmax(1))) if len(ref) else 1.0
    if kind == "exact":
        tol = exact_tolerance(ref)
        return Parity(kind, len(ref), diff, agree, diff <= tol,
                      f"max |diff| <= {tol:.3g} ({EXACT_TOLERANCE:g} x max(1, max |logit|))")
    return Parity(kind, len(ref), diff, agree, agree >= TOP1_AGREEMENT, f"top-1 agreement >= {TOP1_AGREEMENT:.0%}")


def flip_margins(got: np.ndarray, ref: np.ndarray) -> str:
    """Why top-1 agreement failed, in the reference's own terms: torch's top-1 minus top-2 logit margin
    on the examples whose class flipped against its margin on all of them. Quantization error moves
    every logit a little, so it flips near-ties first; an undertrained model has many (seen here: an mbv3
    model at 81% accuracy agreed on 83% in int8 and on 97% with int8 weights alone, the same spec trained
    4 epochs instead of 2 agreed on 100%), and longer training widens them."""
    got = np.asarray(got, dtype=np.float32).reshape(ref.shape)
    if ref.ndim != 2 or ref.shape[1] < 2:
        return ""
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    flipped = got.argmax(1) != ref.argmax(1)
    if not flipped.any():
        return ""
    return (f"; torch's top-1/top-2 logit margin on the {int(flipped.sum())} flipped examples: median "
            f"{float(np.median(margin[flipped])):.3g}, against {float(np.median(margin)):.3g} on all: near-ties, "
            "which a longer-trained model (--train-epochs) has fewer of")


class Exporter(ABC):
    """Base class of every artifact format."""

    name: ClassVar[str]
    """Format name used on the command line (``onnx``, ``tflite``, ``tflite-int8``, ``tflm``)."""
    suffix: ClassVar[str]
    runtime: ClassVar[str]
    """The runtime that verifies the file (and the device runtime that times it, when timeable)."""
    kind: ClassVar[str] = "exact"
    """"exact" or "quantized": which parity rule applies."""
    size_field: ClassVar[str] = "size_bytes_fp32"
    """The cost-model field that estimates this file's size."""
    summary: ClassVar[str] = ""
    stem: ClassVar[str] = "model"
    """File name (without suffix) inside a model's folder; unique per format."""
    requires: ClassVar[tuple[str, ...]] = ()
    """Import names of the optional packages the format needs (their extras: :mod:`edgenas.extras`)."""
    timeable: ClassVar[bool] = True
    """Whether :meth:`latency_ms` can time the file on this host."""

    @classmethod
    def check_available(cls) -> None:
        """One line naming the pip extra when an optional package the format needs is missing."""
        from edgenas.extras import available, missing_extra

        for module in cls.requires:
            if not available(module):
                raise missing_extra(module, f"export format {cls.name!r}")

    @abstractmethod
    def build(self, job: ExportJob) -> bytes:
        """The file's content."""

    @abstractmethod
    def runner(self, path: Path, job: ExportJob) -> Runner:
        """Load ``path`` in the target runtime; float NCHW batch -> float logits."""

    def reference(self, job: ExportJob) -> np.ndarray:
        """What the artifact's outputs are compared with (torch's logits by default)."""
        return job.torch_logits()

    def verify(self, path: Path, job: ExportJob) -> tuple[Parity, np.ndarray]:
        out = self.runner(path, job)(job.val_x)
        return compare(self.kind, out, self.reference(job)), out

    def companions(self, path: Path, job: ExportJob) -> dict[str, bytes]:
        """Further files to write beside ``path`` (name -> content)."""
        return {}

    def details(self, path: Path, job: ExportJob) -> dict[str, Any]:
        """Format-specific facts for the model card."""
        return {}

    def latency(self, path: Path, job: ExportJob) -> tuple[float, dict[str, Any]] | None:
        """Median batch-1 latency (ms) of the file in its runtime on this host and how it was timed, or
        None for a format this host cannot time.

        The profiler's procedure (:func:`edgenas.latency.profile.time_file`): windows of runs alternating
        with a sentinel model, kept only when the sentinel ran at full speed, until two kept windows
        agree; so the measured figure and the table's prediction beside it on the card come from the
        same kind of measurement, also on a host whose speed drifts."""
        if not self.timeable:
            return None
        from edgenas.latency.profile import time_file
        from edgenas.latency.runtimes import get_runtime

        runtime = get_runtime(self.runtime, job.options.threads, job.options.runtime_options.get(self.runtime, {}))
        sentinel, history = _sentinel(runtime)
        entry, report = time_file(runtime, path, sentinel, sentinel_history=history)
        return entry.p50_ms, {"procedure": "paired with a sentinel (edgenas.latency.profile.time_file)",
                              "runs": entry.n, "std_ms": entry.std_ms, "windows": report.blocks,
                              "windows_set_aside": report.loaded_blocks, "settled": not report.unsettled}

    def export(self, job: ExportJob, out_dir: Path, stem: str | None = None) -> Artifact:
        """Build, write (atomically), verify, score and time one artifact; failures are recorded."""
        art = Artifact(self.name, runtime=self.runtime)
        t0 = time.perf_counter()
        path = out_dir / ((stem or self.stem) + self.suffix)
        try:
            data = self.build(job)
            art.build_seconds = time.perf_counter() - t0
            atomic_write(path, data)
            art.path, art.bytes, art.sha256 = path, len(data), hashlib.sha256(data).hexdigest()
            for name, content in self.companions(path, job).items():
                p = out_dir / name
                atomic_write(p, content)
                art.companions.append(p)
            art.parity, out = self.verify(path, job)
            if job.val_y is not None and len(job.val_y):
                from edgenas.estimators.trust import worst_class_accuracy

                art.accuracy = float(np.mean(out.argmax(1) == job.val_y))
                art.extra["worst_class_accuracy"] = worst_class_accuracy(out.argmax(1), job.val_y)
            art.extra.update(self.details(path, job))
            if not art.parity.passed:
                p = art.parity
                art.error = (f"verification failed: {p.threshold} not met (max |diff| {p.max_abs_diff:.3g}, "
                             f"top-1 agreement {p.top1_agreement:.1%} on {p.examples} examples)"
                             + (flip_margins(out, self.reference(job)) if self.kind == "quantized" else ""))
            elif job.options.measure_latency and (timed := self.latency(path, job)) is not None:
                art.latency_ms, art.extra["latency_timing"] = timed
        except Exception as exc:  # a model that fails to convert is reported; the others still export
            last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" (at {Path(last.filename).name}:{last.lineno})" if last else ""
            art.error = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{where}"
        art.seconds = time.perf_counter() - t0
        return art


_SENTINELS: dict[str, tuple[Path, list[float]]] = {}
_SENTINEL_DIR: list[tempfile.TemporaryDirectory[str]] = []


def _sentinel(runtime: Any) -> tuple[Path, list[float]]:
    """The paired-timing sentinel in ``runtime``'s file format and its readings so far in this process
    (every artifact timed adds to them, so later artifacts are judged against a longer record of the
    host's full speed). Exported once per process (a LiteRT conversion takes seconds) into a temporary
    folder removed at exit."""
    from edgenas.latency.profile import probe_files

    key = json.dumps([runtime.name, runtime.threads, runtime.options], sort_keys=True, default=str)
    if key not in _SENTINELS:
        if not _SENTINEL_DIR:
            _SENTINEL_DIR.append(tempfile.TemporaryDirectory(prefix="edgenas-sentinel-"))
        out = Path(_SENTINEL_DIR[0].name) / hashlib.sha1(key.encode()).hexdigest()[:12]
        _SENTINELS[key] = (probe_files(runtime, out)[0], [])
    return _SENTINELS[key]


# -- registry ---------------------------------------------------------------------------------------
def _check_exporter(name: str, obj: Any) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Exporter)):
        raise EdgenasError(f"exporter plug-in {name!r} must be an Exporter subclass, got {obj!r}")


EXPORTERS: Registry[type[Exporter]] = Registry(
    "export format", GROUPS["exporter"], sort=False, check=_check_exporter,
    builtins=[f"edgenas.exporters.{m}" for m in ("onnx", "tflite", "tflm")])
"""Every export format by name, in dependency order (``tflm`` builds on ``tflite-int8``)."""


def register_exporter(cls: type[Exporter]) -> type[Exporter]:
    return EXPORTERS.register(cls)


def exporter_names() -> list[str]:
    return EXPORTERS.names()


def get_exporter(name: str) -> Exporter:
    return EXPORTERS.get(name)()
