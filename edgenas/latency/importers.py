"""Importing published latency tables: Once-for-All's per-resolution YAML tables (``mbv3`` space) and
ProxylessNAS's mobile table (``proxyless`` space).

Each published key names a layer by its shapes and options, e.g.
``expanded_conv-input:12x12x136-output:12x12x136-expand:408-kernel:3-stride:1-idskip:1-se:1-hs:1``;
it is mapped onto the edgenas layer descriptor that builds exactly that layer, so the imported table
is keyed like a profiled one and predicts through the same code. Published tables give a mean and a
spread per key, no median: ``p50_ms`` takes the mean.

OFA publishes one table per input resolution, each its own measurement session, and some layers
appear in several of them (the 1x1 head layers everywhere; stage-5 blocks at both 176 and 192 px).
The import keeps each file as a scope (``r192``...) that a spec at that resolution reads first, which
reproduces OFA's own per-resolution sums exactly, and pools the sessions (count-weighted) into the
global entries used for any other resolution.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from edgenas.errors import EdgenasError
from edgenas.latency.table import Entry, LatencyTable, check_measured
from edgenas.layers import ConvLayer, GlobalPoolLayer, Layer, LinearLayer, MBConvLayer
from edgenas.names import check_name
from edgenas.spaces.elastic import make_divisible

_SHAPE = r"(\d+)x(\d+)x(\d+)"
_KEY = re.compile(
    rf"^(?P<kind>[A-Za-z_0-9]+)-input:{_SHAPE}-output:(?:{_SHAPE}|(?P<flat>\d+))(?P<rest>(?:-[a-z]+:\d+)*)$"
)


def parse_key(key: str) -> dict[str, Any]:
    m = _KEY.match(key)
    if not m:
        raise ValueError(key)
    g = m.groups()
    out: dict[str, Any] = {"kind": m.group("kind"), "in": (int(g[1]), int(g[2]), int(g[3]))}
    out["out"] = (int(g[4]), int(g[5]), int(g[6])) if g[4] else (1, 1, int(m.group("flat")))
    for part in filter(None, m.group("rest").split("-")):
        name, _, val = part.partition(":")
        out[name] = int(val)
    return out


def ofa_layer(key: str, style: str) -> list[tuple[Layer, float]]:
    """The edgenas layer(s) a published key times, each with its share of the time (1.0 or 0.0).

    ``style`` is ``"ofa"`` (MobileNetV3: ``expand`` is the mid channel count, h-swish/SE flags) or
    ``"proxyless"`` (MobileNetV2: ``expand`` is the ratio, ReLU6, and ``Logits`` includes the pool)."""
    k = parse_key(key)
    (h, _, cin), (_, _, cout) = k["in"], k["out"]
    kind = k["kind"]
    act_head = "hswish" if style == "ofa" else "relu6"
    if kind == "Conv":
        return [(ConvLayer(cin, h, cout, k=3, s=2, act=act_head), 1.0)]
    if kind == "expanded_conv":
        if ("se" in k and "hs" in k) != (style == "ofa") or not {"expand", "kernel", "stride", "idskip"} <= set(k):
            raise ValueError(key)  # OFA keys carry se/hs flags, ProxylessNAS keys do not
        if style == "ofa":
            mid = k["expand"]
            act = "hswish" if k.get("hs") else "relu"
            se = make_divisible(mid // 4, 8) if k.get("se") else 0
        else:
            mid = cin * k["expand"]
            act, se = "relu6", 0
        return [(MBConvLayer(cin, h, cout, mid=mid, k=k["kernel"], s=k["stride"], act=act, se=se,
                             expand=mid != cin, res=bool(k["idskip"])), 1.0)]
    if kind == "Conv_1":
        return [(ConvLayer(cin, h, cout, k=1, act=act_head), 1.0)]
    if kind == "AvgPool2D":
        return [(GlobalPoolLayer(cin, h), 1.0)]
    if kind == "Conv_2":
        return [(ConvLayer(cin, h, cout, k=1, act="hswish", bn=False), 1.0)]
    if kind == "Logits":
        if h == 1:
            return [(LinearLayer(cin, 1, cout), 1.0)]
        # ProxylessNAS times pooling + classifier together: all of it goes to the classifier unit
        return [(LinearLayer(cin, 1, cout), 1.0), (GlobalPoolLayer(cin, h), 0.0)]
    raise ValueError(key)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    from edgenas.fileio import read_text

    text = read_text(path, "latency table", "YAML")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EdgenasError(f"{str(path)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise EdgenasError(f"{str(path)!r} is not a published latency table (nested too deeply)") from None
    if not isinstance(data, dict) or not data:
        raise EdgenasError(f"{str(path)!r} is not a published latency table (expected a non-empty mapping of "
                           f"layer keys)")
    return data


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(value)
    return float(value)


def _entry(value: Any, key: str, path: Path) -> Entry:
    """One published entry: mean (ms), std or var, count; every number checked (finite, a mean > 0 and
    plausible, a spread >= 0, a count >= 1), so a NaN or negative value is one line naming the key."""
    where = f"{str(path)!r}: entry {key[:100]!r}"
    if not isinstance(value, dict):
        raise EdgenasError(f"{where} needs numeric 'mean' (and count, std or var)")
    try:
        mean = _number(value["mean"])
        count = value.get("count", 1)
        spread = _number(value["std"]) if "std" in value else _number(value.get("var", 0.0))
    except (KeyError, TypeError):
        raise EdgenasError(f"{where} needs numeric 'mean' (and count, std or var)") from None
    if not (isinstance(count, int) and not isinstance(count, bool)) or count < 1:
        raise EdgenasError(f"{where} has count {count!r}; a run count must be a positive integer")
    if not math.isfinite(spread) or spread < 0:
        raise EdgenasError(f"{where} has a negative or non-finite {'std' if 'std' in value else 'var'} {spread!r}")
    std = spread if "std" in value else math.sqrt(spread)
    return check_measured({"mean_ms": mean, "std_ms": std, "p50_ms": mean, "n": count}, where)


def pool(parts: list[Entry]) -> Entry:
    """Combine measurements of one layer from several files (OFA times the 1x1 head layers once per
    resolution table): count-weighted mean, pooled standard deviation, total count."""
    if len(parts) == 1:
        return parts[0]
    n = sum(max(p.n, 1) for p in parts)
    mean = sum(max(p.n, 1) * p.mean_ms for p in parts) / n
    second = sum(max(p.n, 1) * (p.std_ms**2 + p.mean_ms**2) for p in parts) / n
    std = math.sqrt(max(0.0, second - mean**2))
    return Entry(mean_ms=mean, std_ms=std, p50_ms=mean, n=n)


def import_published(paths: list[Path], fmt: str, device: str) -> LatencyTable:
    """One table from OFA per-resolution YAML files (``fmt='ofa'``, a folder is expanded to its
    ``*_lookup_table.yaml``) or a ProxylessNAS YAML (``fmt='proxyless'``)."""
    check_name(device, "device")
    if fmt not in ("ofa", "proxyless"):
        raise EdgenasError(f"unknown table format {fmt!r}; choose ofa or proxyless")
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*_lookup_table.yaml")) or sorted(p.glob("*.yaml"))
            if not found:
                raise EdgenasError(f"folder {str(p)!r} holds no *.yaml latency tables")
            files += found
        else:
            files.append(p)
    parts: dict[str, list[Entry]] = {}
    scoped: dict[str, dict[str, Entry]] = {}
    skipped: list[str] = []
    for f in files:
        data = _read_yaml(f)
        stem = [k for k in data if str(k).startswith("Conv-input:")]
        try:
            scope = f"r{parse_key(str(stem[0]))['in'][0]}" if len(stem) == 1 and fmt == "ofa" else None
        except ValueError:
            raise EdgenasError(f"{str(f)!r}: {str(stem[0])[:100]!r} is not an {fmt} layer key; check --format") \
                from None
        for key, value in data.items():
            try:
                layers = ofa_layer(str(key), fmt)
            except (ValueError, KeyError):
                skipped.append(str(key))
                continue
            e = _entry(value, str(key), f)
            for layer, share in layers:
                entry = Entry(e.mean_ms * share, e.std_ms * share, e.p50_ms * share, e.n)
                parts.setdefault(layer.key, []).append(entry)
                if scope:
                    scoped.setdefault(scope, {})[layer.key] = entry
    entries = {k: pool(v) for k, v in parts.items()}
    if skipped:
        raise EdgenasError(f"{len(skipped)} key(s) are not {fmt} layer keys, e.g. {skipped[0]!r}; "
                           f"check --format")
    space = "mbv3" if fmt == "ofa" else "proxyless"
    return LatencyTable(
        device=device, space=space, runtime={"name": "published", "version": fmt, "threads": None, "options": {}},
        entries=entries, host={"source_files": [f.name for f in files]}, source=f"imported:{fmt}",
        notes="p50_ms = published mean (no median published); scoped = one published table per resolution",
        scoped=scoped if len(scoped) > 1 else {},
    )
