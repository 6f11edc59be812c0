"""Where a model to compress comes from: ``torchvision:NAME``, ``path/file.py:build_fn`` or ``model.pt``.

:func:`load_source` turns the ``--model`` text into a built ``nn.Module`` for a class count (and the
state dict of ``--model-weights`` when given; a torch.export program is lifted back into torch.nn layers
by :mod:`edgenas.compress.program`) and :func:`model_hash` names it: a short digest of the module's
structure (its FX graph and every parameter's shape) and, when the weights are not random, of its
weights. The hash is the first token of every derived spec's canonical string, so a table row, a cached
estimate or an Optuna trial of one source model can never be taken for another's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgenas.errors import EdgenasError
from edgenas.extras import require

if TYPE_CHECKING:
    import torch.nn as nn

SOURCE_FORMS = ("torchvision:NAME (any torchvision classification builder)", "path/to/file.py:build_fn",
                "model.pt (a module saved with torch.save)", "model.pt2 (a torch.export program)")


@dataclass(frozen=True)
class Source:
    """A parsed ``--model`` value."""

    kind: str
    """``torchvision``, ``python`` (a file and a builder function) or ``saved`` (a .pt/.pth file holding a
    module or a torch.export program, or a .pt2 program)."""
    target: str
    """The builder's name, or the file's path."""
    fn: str = ""
    """The builder function of a ``python`` source."""

    def __str__(self) -> str:
        return f"{self.target}:{self.fn}" if self.kind == "python" else (
            f"torchvision:{self.target}" if self.kind == "torchvision" else self.target)


def parse_source(text: str) -> Source:
    """Parse ``--model`` text; one-line errors name the accepted forms."""
    text = str(text).strip()
    forms = "; ".join(SOURCE_FORMS)
    if not text:
        raise EdgenasError(f"--model is empty; give one of: {forms}")
    if text.startswith("torchvision:"):
        name = text.split(":", 1)[1]
        if not name.isidentifier():
            raise EdgenasError(f"--model {text!r}: {name!r} is not a torchvision builder name (e.g. mobilenet_v2)")
        return Source("torchvision", name)
    path, sep, fn = text.rpartition(":")
    if sep and path.endswith(".py"):
        if not fn.isidentifier():
            raise EdgenasError(f"--model {text!r}: {fn!r} is not a function name; use path/to/file.py:build_fn")
        if not Path(path).is_file():
            raise EdgenasError(f"--model {text!r}: no file {path!r}")
        return Source("python", str(Path(path).resolve()), fn)
    if text.endswith((".pt", ".pt2", ".pth")):
        if not Path(text).is_file():
            raise EdgenasError(f"--model {text!r}: no such file")
        return Source("saved", str(Path(text).resolve()))
    raise EdgenasError(f"--model {text!r} is not a model source; give one of: {forms}")


def import_torchvision() -> Any:
    """``import torchvision`` (the ``compress`` extra), tolerating a torchvision whose compiled detection
    ops cannot load next to this torch build (e.g. the package index's CUDA wheel beside torch's CPU
    build: its ``_C`` needs ``libtorch_cuda``). torchvision then fails at import because it registers
    fake kernels for ``torchvision::nms``/``qnms`` without checking that its ops exist; defining those two
    schemas lets it import. Only the model definitions are used here, which are plain ``torch.nn``."""
    try:
        return require("torchvision", "--model torchvision:NAME")
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    import torch

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        try:
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:  # already defined by an earlier attempt
            pass
    _KEEP.append(lib)
    import torchvision

    return torchvision


_KEEP: list[Any] = []  # the op library must outlive the import


def _builder_kwargs(fn: Any, num_classes: int | None) -> dict[str, Any]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return {"num_classes": num_classes} if num_classes and ("num_classes" in params or takes_kwargs) else {}


def _seeded(build: Any) -> Any:
    """Build with torch's RNG seeded (0): a builder's random initialisation is the same in every process,
    so a member built twice (a search worker, the export) inherits the same weights."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def load_source(source: Source, num_classes: int | None = None, weights: str | None = None) -> nn.Module:
    """The source model as an ``nn.Module`` in eval mode, built for ``num_classes`` when its builder takes
    ``num_classes`` (torchvision's do: random weights, seeded, nothing is downloaded); ``weights`` is a
    state dict loaded strictly."""
    import torch
    import torch.nn as nn

    if source.kind == "torchvision":
        tv = import_torchvision()
        names = set(tv.models.list_models(module=tv.models))
        if source.target not in names:
            close = sorted(n for n in names if source.target.split("_")[0] in n)[:6]
            raise EdgenasError(f"--model torchvision:{source.target}: no such classification builder"
                               + (f" (close: {', '.join(close)})" if close
                                  else "; see torchvision.models.list_models()"))
        fn = tv.models.get_model_builder(source.target)
        model = _seeded(lambda: fn(weights=None, **_builder_kwargs(fn, num_classes)))
    elif source.kind == "python":
        spec = importlib.util.spec_from_file_location(f"edgenas_user_model_{abs(hash(source.target))}", source.target)
        if spec is None or spec.loader is None:
            raise EdgenasError(f"--model {source}: cannot import {source.target!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its classes pickle by reference (torch.save of a built member)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's file: any error is theirs, said in one line
            raise EdgenasError(f"--model {source}: importing {Path(source.target).name} failed: "
                               f"{type(exc).__name__}: {exc}") from None
        fn = getattr(module, source.fn, None)
        if not callable(fn):
            raise EdgenasError(f"--model {source}: {Path(source.target).name} has no function {source.fn!r}")
        model = _seeded(lambda: fn(**_builder_kwargs(fn, num_classes)))
    else:
        path = source.target
        export_log = logging.getLogger("torch.export")  # logs a traceback before raising on a bad file
        level = export_log.level
        export_log.setLevel(logging.ERROR)
        try:
            model = torch.export.load(path) if path.endswith(".pt2") else torch.load(
                path, map_location="cpu", weights_only=False)
        except Exception as exc:
            first = str(exc).splitlines()[0][:160] if str(exc) else ""
            raise EdgenasError(f"--model {path}: cannot load it ({type(exc).__name__}: {first}); "
                               f"save the module with torch.save(model, path) or the program with "
                               f"torch.export.save(torch.export.export(model.eval(), (example,)), path)") from None
        finally:
            export_log.setLevel(level)
        if isinstance(model, torch.export.ExportedProgram):
            from edgenas.compress.program import module_from_program

            model = module_from_program(model, path)
        if isinstance(model, dict):
            raise EdgenasError(f"--model {path} holds a state dict, not a module; give the module's builder "
                               f"(--model file.py:build_fn) and the file with --model-weights {path}")
    if not isinstance(model, nn.Module):
        raise EdgenasError(f"--model {source}: the builder returned {type(model).__name__}, not a torch.nn.Module")
    if weights:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise EdgenasError(f"--model-weights {weights}: cannot load a state dict "
                               f"({type(exc).__name__}: {exc})") from None
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise EdgenasError(f"--model-weights {weights} does not fit --model {source}: "
                               f"{first[1].strip() if len(first) > 1 else first[0]}") from None
    return model.eval()


def model_hash(model: nn.Module, graph_code: str, with_weights: bool) -> str:
    """12 hex digits naming the model: its FX graph, parameter/buffer names and shapes, and (for trained
    weights) their bytes."""
    h = hashlib.sha256(graph_code.encode())
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        if with_weights:
            h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:12]
