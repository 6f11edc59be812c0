"""``nb201``: the NAS-Bench-201 cell space (15,625 cells) and its exact official TinyNetwork.

Network (xautodl ``cell_infers``): stem 3x3 conv (3->16, no bias) + BN; 5 cells at C=16; ResNet basic
block 16->32 stride 2; 5 cells at 32; basic block 32->64; 5 cells at 64; BN, ReLU, global pool, linear.
Cell ops are ReLU-Conv-BN (``nor_conv_3x3``/``nor_conv_1x1``), 3x3 average pooling
(``count_include_pad=False``), identity and zero.

Canonical string: the six edges (node1<-0, node2<-0, node2<-1, node3<-0, node3<-1, node3<-2) as short
op names, e.g. ``nb201:c3-c3-avg-skip-c3-skip``. The official ``arch_str``
(``|nor_conv_3x3~0|+|...|``) and, when the NB201 table is available, the official index (``#6111``)
are accepted wherever an arch is.
"""

from __future__ import annotations

import csv
import itertools
import math
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgenas.costgraph import OpGraph
from edgenas.errors import ArchParseError, EdgenasError
from edgenas.layers import BNActLayer, ConvLayer, GlobalPoolLayer, Layer, LinearLayer
from edgenas.paths import DATA_ENV, shared_file
from edgenas.spaces import register_space
from edgenas.spaces.base import ArchSpec, SearchSpace, Task

if TYPE_CHECKING:
    import optuna
    import torch.nn as nn

OFFICIAL_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
SHORT_OPS = ("none", "skip", "c1", "c3", "avg")
_TO_SHORT = dict(zip(OFFICIAL_OPS, SHORT_OPS))
_TO_OFFICIAL = dict(zip(SHORT_OPS, OFFICIAL_OPS))
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from) in arch_str order
PATH_SEQUENCES = [seq for n in range(4) for seq in itertools.product(("c1", "c3", "avg"), repeat=n)]
_PATH_INDEX = {seq: i for i, seq in enumerate(PATH_SEQUENCES)}


@dataclass(frozen=True)
class NB201Spec(ArchSpec):
    """The six edge ops (short names) in official ``arch_str`` order."""

    space = "nb201"
    ops: tuple[str, ...]

    def body(self) -> str:
        return "-".join(self.ops)

    @property
    def arch_str(self) -> str:
        """The official NAS-Bench-201 string."""
        o = [_TO_OFFICIAL[x] for x in self.ops]
        return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"

    @property
    def iso_key(self) -> str:
        """Canonical form of the function the cell computes, up to relabelling of weights.

        Skip edges are identities, sums are associative and commutative (flattened, sorted), zero
        edges vanish and an op applied to a zero node is zero (the NB201 convention). Two cells with
        the same key are isomorphic computation graphs; disconnected cells all map to ``"zero"``.
        Coarser than NB201's official string: ``c3-c1-none-none-skip-skip`` and
        ``c1-c3-none-none-skip-skip`` share a key. See :attr:`nb201_unique_str` for the official form.
        """
        nodes: dict[int, tuple[str, ...]] = {0: ("x",)}  # node -> sorted multiset of summands
        for j in (1, 2, 3):
            terms: list[str] = []
            for (to, frm), op in zip(EDGES, self.ops):
                if to != j or op == "none" or not nodes[frm]:
                    continue
                if op == "skip":
                    terms.extend(nodes[frm])
                else:
                    terms.append(f"{op}({'+'.join(nodes[frm])})")
            nodes[j] = tuple(sorted(terms))
        return "+".join(nodes[3]) or "zero"

    @property
    def nb201_unique_str(self) -> str:
        """xautodl's ``CellStructure.to_unique_str(consider_zero=True)``, verbatim semantics: the form
        behind NAS-Bench-201's count of 6,466 unique cells. It keeps zero summands (``#``) in the
        string, so some isomorphic cells get different strings; prefer :attr:`iso_key`."""
        nodes = {0: "0"}
        for j in (1, 2, 3):
            terms = []
            for (to, frm), op in zip(EDGES, self.ops):
                if to != j:
                    continue
                if op == "none" or nodes[frm] == "#":
                    terms.append("#")
                elif op == "skip":
                    terms.append(nodes[frm])
                else:
                    terms.append(f"({nodes[frm]})@{_TO_OFFICIAL[op]}")
            nodes[j] = "+".join(sorted(terms))
        return nodes[3]

    @property
    def is_connected(self) -> bool:
        """False when the cell output does not depend on its input (all paths pass a zero edge)."""
        live = {0: True}
        for j in (1, 2, 3):
            live[j] = any(live[frm] and op != "none" for (to, frm), op in zip(EDGES, self.ops) if to == j)
        return live[3]

    @property
    def live(self) -> NB201Spec:
        """The same cell with every edge that lies on no input-to-output path set to ``none`` (dead
        edges are fed only by zero nodes or feed nothing the output sees). Same function under the
        convention of :attr:`iso_key`; fewer parameters and MACs when edges were dead."""
        fwd = {0}
        for (to, frm), op in zip(EDGES, self.ops):
            if op != "none" and frm in fwd:
                fwd.add(to)
        bwd = {3}
        for (to, frm), op in reversed(list(zip(EDGES, self.ops))):
            if op != "none" and to in bwd:
                bwd.add(frm)
        return NB201Spec(ops=tuple(op if frm in fwd and to in bwd else "none"
                                   for (to, frm), op in zip(EDGES, self.ops)))

    def path_counts(self) -> list[float]:
        """Number of input-to-output paths per sequence of non-identity ops (``skip`` contributes no
        op): BANANAS' path encoding, invariant to dead edges and to relabelling the inner nodes."""
        counts = [0.0] * len(PATH_SEQUENCES)

        def walk(node: int, seq: tuple[str, ...]) -> None:
            if node == 3:
                counts[_PATH_INDEX[seq]] += 1
                return
            for (to, frm), op in zip(EDGES, self.ops):
                if frm == node and op != "none":
                    walk(to, seq if op == "skip" else (*seq, op))

        walk(0, ())
        return counts

    def to_json(self) -> dict[str, Any]:
        return {"arch_str": self.arch_str}


@dataclass(frozen=True)
class NB201CellLayer(Layer):
    """One NB201 cell at C channels (C -> C, stride 1); ``ops`` as in :class:`NB201Spec`."""

    kind = "nb201cell"
    ops: tuple[str, ...]

    def trace(self, g: OpGraph, x: int) -> int:
        nodes = [x]
        for j in (1, 2, 3):
            acc = None
            for (to, frm), op in zip(EDGES, self.ops):
                if to != j or op == "none":
                    continue
                src = nodes[frm]
                if op == "skip":
                    t = src
                elif op == "avg":
                    t = g.pool(src, 3, 1, 1)
                else:
                    t = g.conv(g.act(src), self.cin, 3 if op == "c3" else 1)
                acc = t if acc is None else g.add(acc, t)
            nodes.append(g.zeros(x) if acc is None else acc)
        return nodes[3]

    def build(self) -> nn.Module:
        from edgenas.spaces.nb201_nn import InferCell

        return InferCell(self.cin, self.ops)

    def units(self) -> tuple[Layer, ...]:
        """Live edge ops plus one addition per extra summand of each live node. Edges from nodes that
        do not depend on the input (constants) or into nodes that do not reach the output are dead:
        exporters fold or drop them, so they cost no time on a device."""
        live_in = {0: True}
        for j in (1, 2, 3):
            live_in[j] = any(live_in[f] and op != "none" for (t, f), op in zip(EDGES, self.ops) if t == j)
        reaches_out = {3: True}
        for j in (2, 1, 0):
            reaches_out[j] = any(reaches_out[t] and op != "none" for (t, f), op in zip(EDGES, self.ops) if f == j)
        out: list[Layer] = []
        for j in (1, 2, 3):
            if not reaches_out[j]:
                continue
            terms = [op for (t, f), op in zip(EDGES, self.ops) if t == j and op != "none" and live_in[f]]
            out += [NB201EdgeLayer(self.cin, self.hw, op) for op in terms if op != "skip"]
            out += [AddLayer(self.cin, self.hw)] * max(0, len(terms) - 1)
        return tuple(out)


@dataclass(frozen=True)
class NB201EdgeLayer(Layer):
    """One NB201 edge op at C channels: ``c1``/``c3`` (ReLU-Conv-BN) or ``avg`` (3x3 average pool)."""

    kind = "nb201op"
    op: str

    def trace(self, g: OpGraph, x: int) -> int:
        if self.op == "avg":
            return g.pool(x, 3, 1, 1)
        return g.conv(g.act(x), self.cin, 3 if self.op == "c3" else 1)

    def build(self) -> nn.Module:
        from edgenas.spaces.nb201_nn import edge_module

        return edge_module(self.cin, self.op)


@dataclass(frozen=True)
class AddLayer(Layer):
    """Element-wise sum of two C x H x W tensors (micro-model: ``x + x``)."""

    kind = "add"

    def trace(self, g: OpGraph, x: int) -> int:
        return g.add(x, x)

    def build(self) -> nn.Module:
        from edgenas.spaces.nb201_nn import SelfAdd

        return SelfAdd()


@dataclass(frozen=True)
class NB201ResBlockLayer(Layer):
    """NB201's reduction block: ReLU-Conv3x3(s2)-BN, ReLU-Conv3x3-BN, shortcut AvgPool2x2 + Conv1x1."""

    kind = "nb201res"
    cout: int

    def trace(self, g: OpGraph, x: int) -> int:
        a = g.conv(g.act(x), self.cout, 3, 2)
        b = g.conv(g.act(a), self.cout, 3, 1)
        r = g.conv(g.pool(x, 2, 2, 0), self.cout, 1, bn=False)
        return g.add(r, b)

    def build(self) -> nn.Module:
        from edgenas.spaces.nb201_nn import ResNetBasicBlock

        return ResNetBasicBlock(self.cin, self.cout)


@cache
def _index_table(path: str) -> tuple[dict[tuple[str, ...], int], dict[int, tuple[str, ...]]]:
    by_ops: dict[tuple[str, ...], int] = {}
    by_index: dict[int, tuple[str, ...]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            ops = _ops_from_arch_str(row["arch_str"])
            idx = int(row["index"] if "index" in row else row["nb201_index"])
            by_ops[ops] = idx
            by_index[idx] = ops
    return by_ops, by_index


def _ops_from_arch_str(text: str) -> tuple[str, ...]:
    nodes = text.strip().strip("|").split("|+|")
    if len(nodes) != 3:
        raise ArchParseError(f"nb201 arch_str {text[:80]!r}: expected 3 nodes separated by '|+|'")
    ops: list[str] = []
    for j, node in enumerate(nodes, 1):
        edges = node.split("|")
        if len(edges) != j:
            raise ArchParseError(f"nb201 arch_str: node {j} must have {j} input edge(s), got {node!r}")
        for i, edge in enumerate(edges):
            op, _, src = edge.partition("~")
            if op not in _TO_SHORT:
                raise ArchParseError(
                    f"nb201 arch_str: bad token {edge!r}: op must be one of {', '.join(OFFICIAL_OPS)}"
                )
            if src != str(i):
                raise ArchParseError(f"nb201 arch_str: bad token {edge!r}: expected input node ~{i}")
            ops.append(_TO_SHORT[op])
    return tuple(ops)


@register_space
class NB201Space(SearchSpace):
    name = "nb201"
    summary = "NAS-Bench-201 cell space (CIFAR TinyNetwork, 15,625 cells)"
    default_classes = 10
    default_resolution = 32

    def __init__(self, table: str | Path | None = None, stem_channels: int = 16, cells_per_stage: int = 5) -> None:
        """``table``: NB201 CSV with ``index``/``arch_str`` columns for index lookups (defaults to the
        shared data copy when present)."""
        self.table = Path(table) if table else shared_file("nb201", "nb201_cifar10.csv")
        self.stem_channels = stem_channels
        self.cells_per_stage = cells_per_stage

    # -- naming ------------------------------------------------------------------------------
    def parse_body(self, text: str) -> NB201Spec:
        toks = text.strip().split("-")
        if len(toks) != 6:
            raise ArchParseError(
                f"nb201 arch {text[:60]!r}: expected 6 edge ops joined by '-', e.g. c3-c3-avg-skip-c3-skip"
            )
        for tok in toks:
            if tok not in SHORT_OPS:
                raise ArchParseError(f"nb201 arch: bad token {tok!r}: op must be one of {', '.join(SHORT_OPS)}")
        return NB201Spec(ops=tuple(toks))

    def parse_alternative(self, text: str) -> NB201Spec | None:
        if text.startswith("|"):
            return NB201Spec(ops=_ops_from_arch_str(text))
        if text.startswith("#") or text.isdigit():
            return self.from_index(int(text.lstrip("#")) if text.lstrip("#").isdigit() else -1)
        return None

    def from_json(self, obj: dict[str, Any]) -> NB201Spec:
        if "arch_str" in obj:
            return NB201Spec(ops=_ops_from_arch_str(str(obj["arch_str"])))
        if "ops" in obj and isinstance(obj["ops"], list):
            return self.parse_body("-".join(map(str, obj["ops"])))
        if "index" in obj:
            return self.from_index(int(obj["index"]))
        raise ArchParseError("nb201 arch JSON: expected key 'arch_str', 'ops' or 'index'")

    def _tables(self) -> tuple[dict[tuple[str, ...], int], dict[int, tuple[str, ...]]]:
        if self.table is None or not self.table.exists():
            raise EdgenasError(
                f"NB201 index lookups need nb201_cifar10.csv; pass its path as the space option 'table' "
                f"or set {DATA_ENV} to the shared data folder"
            )
        return _index_table(str(self.table))

    def from_index(self, index: int) -> NB201Spec:
        by_index = self._tables()[1]
        if index not in by_index:
            raise ArchParseError(f"nb201: index {index} is not in 0..15624")
        return NB201Spec(ops=by_index[index])

    def index_of(self, spec: NB201Spec) -> int:
        """The official NAS-Bench-201 index of ``spec``."""
        return self._tables()[0][spec.ops]

    # -- sampling ----------------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial) -> NB201Spec:
        return NB201Spec(ops=tuple(trial.suggest_categorical(f"e{to}{frm}", list(SHORT_OPS)) for to, frm in EDGES))

    def trial_params(self, spec: ArchSpec) -> dict[str, Any]:
        assert isinstance(spec, NB201Spec)
        return {f"e{to}{frm}": op for (to, frm), op in zip(EDGES, spec.ops)}

    def random(self, rng: random.Random) -> NB201Spec:
        return NB201Spec(ops=tuple(rng.choice(SHORT_OPS) for _ in EDGES))

    def all_specs(self) -> list[NB201Spec]:
        """Every cell, in base-5 order over the six edges (not the official index order)."""
        import itertools

        return [NB201Spec(ops=ops) for ops in itertools.product(SHORT_OPS, repeat=6)]

    def covering_specs(self) -> list[NB201Spec]:
        """The three uniform cells of the ops that have units (c3, c1, avg): each puts its op on every
        edge and gives every node its most summands (so every addition), which covers the units of all
        15,625 cells (checked exhaustively in the tests) in 3 specs instead of 15,625."""
        return [NB201Spec(ops=(op,) * len(EDGES)) for op in ("c3", "c1", "avg")]

    def size(self) -> int:
        return len(SHORT_OPS) ** len(EDGES)

    def choices(self) -> dict[str, str]:
        return {"edges": "6 (node1<-0, node2<-0, node2<-1, node3<-0, node3<-1, node3<-2)",
                "op": ", ".join(f"{s} ({o})" for s, o in zip(SHORT_OPS, OFFICIAL_OPS))}

    # -- structure ---------------------------------------------------------------------------
    def layers(self, spec: ArchSpec, task: Task | None = None) -> list[Layer]:
        assert isinstance(spec, NB201Spec)
        t = self.resolve_task(task)
        hw = t.resolution or self.default_resolution
        if hw % 4 or hw < 8:
            raise EdgenasError(f"nb201: resolution {hw} must be a multiple of 4 and >= 8 (two stride-2 blocks)")
        c = self.stem_channels
        out: list[Layer] = [ConvLayer(t.in_channels, hw, c, k=3, act="none")]
        for stage in range(3):
            if stage:
                out.append(NB201ResBlockLayer(c, hw, 2 * c))
                c, hw = 2 * c, hw // 2
            out += [NB201CellLayer(c, hw, spec.ops)] * self.cells_per_stage
        out += [BNActLayer(c, hw), GlobalPoolLayer(c, hw), LinearLayer(c, 1, t.num_classes or self.default_classes)]
        return out

    def encoding_size(self) -> int:
        return len(EDGES) * len(SHORT_OPS)

    def dedup_key(self, spec: ArchSpec) -> str:
        assert isinstance(spec, NB201Spec)
        return spec.iso_key

    def surrogate_features(self, spec: ArchSpec, task: Task | None = None) -> list[float]:
        """One-hot of the live cell (:attr:`NB201Spec.live`), its path counts, and log MACs / params of
        the live cell: cells that compute the same function get (nearly) the same features."""
        assert isinstance(spec, NB201Spec)
        live = spec.live
        c = self.cost(live, task)
        return [*self.encode(live), *live.path_counts(), math.log1p(c.macs), math.log1p(c.params)]

    def encode(self, spec: ArchSpec) -> list[float]:
        assert isinstance(spec, NB201Spec)
        return [float(op == s) for op in spec.ops for s in SHORT_OPS]
