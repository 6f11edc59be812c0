"""Benchmark: compress the model you have (the ``model`` space, ``--model``).

1. **Exactness** — for torchvision's mobilenet_v2, mobilenet_v3_small, resnet18, mnasnet0_5 and
   shufflenet_v2_x0_5 (random weights: nothing is downloaded), the derived space's analytic cost (MACs,
   params, peak RAM, file sizes, TFLite Micro arena, XNNPACK partitions) against the counts of the pruned
   module Torch-Pruning builds (``count_module``), for ``--exact`` random specs each at ``--exact-res``.
2. **Export** — one random spec of each model at ``--export-res`` px, 10 classes, fine-tuned EXPORT_EPOCHS
   epochs on synthetic images, exported as ONNX, TFLite, int8 TFLite and TFLite Micro, each file verified in
   its runtime.
3. **Programs** — each model saved as a ``torch.export`` program (``.pt2``) and given as ``--model
   model.pt2``: the space derived from the lifted program against the one derived from the module, for
   ``--exact`` random specs each at ``--exact-res``: equal cost records, equal member outputs, and the
   lifted member's counts equal to its analytic record.
4. **Digits** — a ``tiny`` w1.0 model trained 20 epochs on digits does not fit ``arena_bytes_tflm <= 64KiB``;
   a ``prune-finetune`` search over its derived space finds members that do, and a from-scratch search of
   the ``tiny`` space with the ``train`` estimator under the same budget gets the same CPU time. The best
   feasible member of each is then trained / fine-tuned with the same final recipe and exported.

    python benchmarks/compress.py [--exact 20] [--exact-res 224] [--export-res 96] [--skip-export]
                                  [--skip-programs] [--skip-digits] [--search-s 600]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import RESULTS, write_results

from edgenas import Task, get_space
from edgenas.modelcount import count_module

MODELS = ("mobilenet_v2", "mobilenet_v3_small", "resnet18", "mnasnet0_5", "shufflenet_v2_x0_5")
ARENA_BUDGET = 64 * 1024
EXPORT_EPOCHS = 10
"""The export part fine-tunes each member (random source weights) this long on seeded synthetic images: an
untrained network's logits are near ties, which no int8 file can keep in order (the 98% top-1 check)."""
PROGRAMS_HEADING = "torch.export programs (--model model.pt2): the lifted program's space against the module's"
SOURCE_TINY = "tiny:w1.0:r64:k5e6-k5e6-k5e6_k5e6-k5e6-k5e6_k5e6-k5e6-k5e6_k5e6-k5e6-k5e6"
"""The 'model you have': the largest-depth tiny w1.0 member with 5x5 kernels and expand 6, at 64 px."""


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def exactness(name: str, n: int, res: int, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    space = get_space("model", model=f"torchvision:{name}", resolution=res)
    load_s = time.perf_counter() - t0
    base = space.base()
    specs = space.sample(n, seed)
    equal, mismatches, t_an, t_built = 0, [], 0.0, 0.0
    macs = []
    for spec in specs:
        t = time.perf_counter()
        analytic = space.cost(spec).as_record()
        analytic.pop("arch")
        t_an += time.perf_counter() - t
        t = time.perf_counter()
        counted = count_module(space.build(spec), space.input_shape(spec), str(spec))
        t_built += time.perf_counter() - t
        if counted == analytic:
            equal += 1
        else:
            mismatches.append({"arch": str(spec), "fields": sorted(k for k in analytic if analytic[k] != counted[k])})
        macs.append(analytic["macs"])
    full = space.cost(type(specs[0])(base.hash, res, tuple(c[-1] for c in space._choices()),
                                     tuple(True for _ in specs[0].blocks))).macs
    return {"model": name, "resolution": res, "groups": len(base.groups.groups),
            "varied_groups": sum(len(c) > 1 for c in space._choices()), "blocks": len(base.fx.blocks),
            "specs": n, "equal": f"{equal}/{n}", "equal_n": equal, "macs_vs_source": f"{min(macs) / full:.2f}-"
            f"{max(macs) / full:.2f}", "load_s": round(load_s, 2), "analytic_ms": round(1000 * t_an / n, 1),
            "build_count_s": round(t_built / n, 2), "mismatches": mismatches[:3]}


def programs(name: str, n: int, res: int, seed: int, tmp: Path) -> dict[str, Any]:
    """The lifted ``.pt2`` program's space against the module's (see the module docstring, part 3)."""
    from edgenas.compress.source import load_source, parse_source

    module_space = get_space("model", model=f"torchvision:{name}", resolution=res)
    path = tmp / f"{name}.pt2"
    t0 = time.perf_counter()
    torch.export.save(torch.export.export(load_source(parse_source(f"torchvision:{name}")).eval(),
                                          (torch.randn(1, 3, res, res),)), path)
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    program_space = get_space("model", model=str(path), resolution=res)
    base = program_space.base()
    lift_s = time.perf_counter() - t0
    x = torch.randn(2, 3, res, res, generator=torch.Generator().manual_seed(seed))
    same_record = same_out = counted_ok = 0
    worst = 0.0
    for spec in module_space.sample(n, seed):
        lifted = program_space.parse(str(spec).replace(spec.source, program_space.source_hash))
        a, b = module_space.cost(spec).as_record(), program_space.cost(lifted).as_record()
        a.pop("arch"), b.pop("arch")
        same_record += a == b
        built, reference = program_space.build(lifted).eval(), module_space.build(spec).eval()
        with torch.no_grad():
            diff = (reference(x) - built(x)).abs().max().item()
        worst = max(worst, diff)
        same_out += diff <= 1e-5
        counted = count_module(built, program_space.input_shape(lifted), str(lifted))
        counted.pop("arch", None)
        counted_ok += counted == b
    return {"model": name, "resolution": res, "groups": len(base.groups.groups), "blocks": len(base.fx.blocks),
            "specs": n, "same_record": f"{same_record}/{n}", "same_output": f"{same_out}/{n}",
            "max_abs_diff": f"{worst:.1e}", "counted_equal": f"{counted_ok}/{n}", "export_s": round(export_s, 1),
            "lift_s": round(lift_s, 1), "all_ok": same_record == same_out == counted_ok == n}


def export_one(name: str, res: int, seed: int, out: Path) -> dict[str, Any]:
    from edgenas.exporters.pipeline import run_export
    from edgenas.jobs import ExportConfig, SpaceConfig, TaskConfig

    opts = {"model": f"torchvision:{name}", "resolution": res}
    space = get_space("model", **opts)
    spec = space.sample(1, seed)[0]
    cfg = ExportConfig(formats=["onnx", "tflite", "tflite-int8", "tflm"], train_epochs=EXPORT_EPOCHS,
                       out=str(out / name), dataset=f"synthetic:n=512,classes=10,channels=3,size={res}", seed=seed)
    t0 = time.perf_counter()
    result = run_export(cfg, space=SpaceConfig("model", opts), arch=str(spec), task=TaskConfig(num_classes=10),
                        measure_latency=False, say=lambda m: None)
    (model,) = result.models
    fmts = {a.format: a for a in model.artifacts}

    def verdict(f: str) -> str:
        a = fmts.get(f)
        if a is None:
            return "missing"
        if not a.ok:
            return f"FAILED: {a.error}"[:80]
        p = a.parity.as_dict() if a.parity is not None else {}
        return (f"ok, max diff {p['max_abs_diff']:.1e}" if p.get("kind") == "exact"
                else f"ok, top-1 agree {p.get('top1_agreement', 0):.3f}")

    card = json.loads((model.folder / "model_card.json").read_text()) \
        if (model.folder / "model_card.json").exists() else {}
    return {"model": name, "arch": str(spec)[:60] + "...", "ok": "yes" if model.ok else "no",
            **{f: verdict(f) for f in fmts},
            "top1": card.get("accuracy", {}).get("torch"),
            "arena_est": space.cost(spec, Task(num_classes=10)).arena_bytes_tflm,
            "arena_tflm": card.get("tflm_arena_bytes"), "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exact", type=int, default=20, help="random specs per model for the exactness check")
    ap.add_argument("--exact-res", type=int, default=224)
    ap.add_argument("--export-res", type=int, default=96)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--skip-exact", action="store_true")
    ap.add_argument("--skip-export", action="store_true")
    ap.add_argument("--skip-programs", action="store_true")
    ap.add_argument("--skip-digits", action="store_true")
    ap.add_argument("--search-s", type=float, default=600.0,
                    help="wall seconds each digits search gets (one process each, same machine; their CPU seconds "
                         "are measured)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--digits-work", type=Path, help="folder of the digits part (its finished steps are reused)")
    ap.add_argument("--merge", action="store_true", help="keep the parts this run skips from the existing results")
    ap.add_argument("--note", default="", help="measurement conditions of the parts this run measures")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows, tables, notes = [], {}, []
    old: dict[str, Any] = {}
    if args.merge and (RESULTS / "compress.json").exists():
        old = json.loads((RESULTS / "compress.json").read_text())
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    measured = [p for p, skip in (("exactness", args.skip_exact), ("export", args.skip_export),
                                  ("programs", args.skip_programs), ("digits", args.skip_digits)) if not skip]
    notes += [f"{p}: measured {stamp}" + (f" ({args.note})" if args.note else "") for p in measured]
    if not args.skip_exact:
        for name in args.models:
            print(f"exactness: {name}", file=sys.stderr, flush=True)
            rows.append(exactness(name, args.exact, args.exact_res, args.seed))
    else:
        rows = old.get("rows", [])
    for heading, kept in old.get("tables", {}).items():
        part = ("export" if heading.startswith("Export") else
                "programs" if heading.startswith(PROGRAMS_HEADING[:12]) else "digits")
        if part not in measured and kept:
            tables[heading] = (kept, list(kept[0].keys()))
    notes += [n for n in old.get("notes", "").splitlines() if n and n.split(":")[0] not in measured]
    if not args.skip_export:
        exp = []
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.models:
                print(f"export: {name}", file=sys.stderr, flush=True)
                exp.append(export_one(name, args.export_res, args.seed, Path(tmp)))
        heading = f"Export and verification (one random spec each, {EXPORT_EPOCHS} epochs on synthetic images)"
        tables[heading] = (
            exp, ["model", "ok", "top1", "onnx", "tflite", "tflite-int8", "tflm", "arena_est", "arena_tflm", "seconds"])
    prog_ok = True
    if not args.skip_programs:
        prog = []
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.models:
                print(f"programs: {name}", file=sys.stderr, flush=True)
                prog.append(programs(name, args.exact, args.exact_res, args.seed, Path(tmp)))
        prog_ok = all(r.pop("all_ok") for r in prog)
        tables[PROGRAMS_HEADING] = (prog, list(prog[0].keys()))
    if not args.skip_digits:
        from compress_digits import digits_comparison

        drows, dnotes = digits_comparison(args.search_s, args.seed, ARENA_BUDGET, SOURCE_TINY, args.digits_work)
        tables["Digits: compress a trained tiny model vs search from scratch, arena_bytes_tflm <= 64 KiB"] = (
            drows, list(drows[0].keys()) if drows else [])
        notes += dnotes
    random.seed(0)
    write_results("compress", "Compress the model you have: exactness, export, digits", rows,
                  ["model", "resolution", "groups", "varied_groups", "blocks", "specs", "equal", "macs_vs_source",
                   "load_s", "analytic_ms", "build_count_s"],
                  {"exact": args.exact, "exact_res": args.exact_res, "export_res": args.export_res, "seed": args.seed,
                   "search_s": args.search_s},
                  "\n".join(notes), packages=("torch-pruning", "torchvision", "ai-edge-litert", "litert-torch",
                                              "tflite-micro", "onnxruntime"), extra_tables=tables)
    return 0 if prog_ok and all(r.get("equal_n") == r.get("specs") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
