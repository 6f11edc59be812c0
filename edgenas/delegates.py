"""Delegate partitions: which ops of a deployed TFLite graph a delegate takes, and into how many pieces.

A delegate (XNNPACK on LiteRT's CPU path; GPU, NNAPI, NPU delegates on phones) replaces each connected
run of the ops it supports by one ``DELEGATE`` node; every op it does not support stays on LiteRT's
built-in kernels, and each switch between the two costs a hand-over (and, for GPU/NPU delegates, a copy).
A model the delegate takes whole is one partition and no op off the delegate.

* :func:`measure` reads both numbers from a ``.tflite`` as the LiteRT interpreter delegates it here
  (its ``DELEGATE`` nodes and, from their boundary tensors, the ops each one took);
* :func:`predict` computes them from edgenas' emulated deployed graph (:mod:`edgenas.deployed`), with
  the support lists in :data:`OFF_DELEGATE` and TFLite's own partitioning rule
  (``PartitionGraphIntoIndependentNodeSubsets``: grow a subset of one kind with every op whose inputs
  are ready, then switch kinds), so ``describe`` and the search know them without converting anything.

Where the lists come from: probed here on single-op models converted by litert-torch (and quantized by
the int8 exporter's quantizer), ai-edge-litert 2.3.0, XNNPACK as that wheel delegates it; they are
checked by comparing :func:`predict` with :func:`measure` on every space's trained test model
(tests/exporters/test_export_sizes.py) and on 30 random specs per image space, fp32 and int8
(benchmarks/delegate_partitions.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgenas.deployed import Deployed

OFF_DELEGATE: dict[tuple[str, str], frozenset[str]] = {
    ("xnnpack", "fp32"): frozenset({"PADV2"}),
    ("xnnpack", "int8"): frozenset({"HARD_SWISH", "RELU", "AVERAGE_POOL_2D", "PADV2"}),
}
"""(delegate, precision) -> the deployed-graph ops that delegate leaves on the built-in kernels (ops of
edgenas' graphs only: see the module docstring for where they come from). XNNPACK in ai-edge-litert
2.3.0 takes every op of edgenas' fp32 graphs but ``PADV2`` (the -inf padding of a padded max-pool:
torchvision's ResNet and ShuffleNet stems); in int8 it also leaves ``HARD_SWISH`` (tiny, mbv3), a
standalone ``RELU`` (NB201's ReLU-conv-BN edges where the ReLU cannot be fused into the op before it) and
``AVERAGE_POOL_2D`` (NB201's 3x3 average pooling) on the built-in kernels. It takes ``CONCATENATION``,
``SLICE``, 5-D ``TRANSPOSE`` / ``RESHAPE`` (channel shuffles) and the int8 file's requantising
``QUANTIZE`` in both precisions (measured on exported ShuffleNetV2, ResNet-18, MobileNetV2 / V3-small,
MnasNet and the small fixture CNN of the ``model`` space: tests/compress/test_deployed_models.py)."""


@dataclass
class DelegateReport:
    """How a delegate splits one model."""

    partitions: int
    """``DELEGATE`` nodes: connected runs of ops the delegate takes."""
    ops_off_delegate: int
    """Ops left on the built-in kernels."""
    ops_total: int
    off_ops: dict[str, int] = field(default_factory=dict)
    """Op name -> how many of that op stay off the delegate."""

    def as_dict(self) -> dict[str, Any]:
        return {"partitions": self.partitions, "ops_off_delegate": self.ops_off_delegate,
                "ops_total": self.ops_total, "off_ops": dict(sorted(self.off_ops.items()))}


def partition(ops: Sequence[tuple[Sequence[int], Sequence[int]]], supported: Sequence[bool]) -> int:
    """Number of delegated subsets TFLite forms (its ``PartitionGraphIntoIndependentNodeSubsets``): ops
    are given in execution order as (input tensors, output tensors); starting with the first op's kind,
    a subset takes every op of its kind whose inputs are ready (graph inputs, constants, outputs of
    earlier subsets or of ops already in it), as long as any is; then the next subset is of the other
    kind. Tensors no op writes count as ready (constants, graph inputs). Linear in the graph's size."""
    produced_by: dict[int, int] = {}
    for i, (_, outs) in enumerate(ops):
        for t in outs:
            produced_by[t] = i
    waiting = [0] * len(ops)  # inputs not yet ready
    readers: dict[int, list[int]] = {}
    for i, (ins, _) in enumerate(ops):
        for t in set(ins):
            if t in produced_by:
                waiting[i] += 1
                readers.setdefault(t, []).append(i)
    queues: dict[bool, list[int]] = {True: [], False: []}
    for i in range(len(ops)):
        if waiting[i] == 0:
            queues[bool(supported[i])].append(i)
    kind = bool(supported[0]) if ops else True
    left, delegated, empty_rounds = len(ops), 0, 0
    while left:
        added = 0
        queue = queues[kind]
        while queue:
            i = queue.pop()
            added += 1
            for t in ops[i][1]:
                for j in readers.get(t, ()):
                    waiting[j] -= 1
                    if waiting[j] == 0:
                        queues[bool(supported[j])].append(j)
        left -= added
        if added and kind:
            delegated += 1
        empty_rounds = 0 if added else empty_rounds + 1
        if empty_rounds == 2:  # neither kind can place an op: some input is never ready
            raise ValueError("delegate partitioning: the op graph has a cycle or an op reads a tensor never written")
        kind = not kind
    return delegated


def predict(deployed: Deployed, delegate: str = "xnnpack", precision: str = "fp32") -> DelegateReport:
    """Partitions and off-delegate ops of ``deployed`` under ``delegate`` at ``precision`` (fp32/int8): the
    ops of that precision's file (:meth:`~edgenas.deployed.Deployed.ops_for`)."""
    try:
        off = OFF_DELEGATE[(delegate, precision)]
    except KeyError:
        known = ", ".join(f"{d}/{p}" for d, p in OFF_DELEGATE)
        raise ValueError(f"no op support list for delegate {delegate!r} at {precision}; known: {known}") from None
    graph = deployed.ops_for(precision)
    ops = [(op.inputs, (op.output,)) for op in graph]
    supported = [op.name not in off for op in graph]
    counts: dict[str, int] = {}
    for op, ok in zip(graph, supported):
        if not ok:
            counts[op.name] = counts.get(op.name, 0) + 1
    return DelegateReport(partition(ops, supported) if ops else 0, sum(counts.values()), len(ops), counts)


def measure(path: str | Path) -> DelegateReport:
    """What the LiteRT interpreter's default XNNPACK delegate makes of the ``.tflite`` at ``path``: its
    ``DELEGATE`` nodes, and the ops none of them took (each delegate node's ops are found by walking back
    from its output tensors to its input tensors)."""
    from ai_edge_litert.interpreter import Interpreter

    from edgenas.exporters.convert import quiet

    with quiet():
        it = Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
    nodes = it._get_ops_details()  # private, but the only view of the delegated graph LiteRT offers
    original = [n for n in nodes if n["op_name"] != "DELEGATE"]
    producer = {int(t): i for i, n in enumerate(original) for t in n["outputs"]}
    taken: set[int] = set()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    for d in delegates:
        boundary = {int(t) for t in d["inputs"]}
        stack = [int(t) for t in d["outputs"]]
        while stack:
            t = stack.pop()
            i = producer.get(t)
            if i is None or i in taken or t in boundary:
                continue
            taken.add(i)
            stack.extend(int(x) for x in original[i]["inputs"])
    counts: dict[str, int] = {}
    for i, n in enumerate(original):
        if i not in taken:
            counts[n["op_name"]] = counts.get(n["op_name"], 0) + 1
    return DelegateReport(len(delegates), sum(counts.values()), len(original), counts)
