"""Fit the prior tables shipped in latency_tables/ from the public end-to-end measurements.

For each device column of the shared dev data (NB201: raspi4, pixel3, gold_6226; FBNet CIFAR-100:
raspi4, pixel3) this fits a table on ALL its rows with ``edgenas.latency.fit.fit_latency_table``
(no prior: each prior comes from its own device's data only) and writes
``latency_tables/<device>__<space>.json`` with its provenance and licence in ``host`` and ``notes``.
``edgenas lut fit --prior-device auto`` then offers these tables as priors on any install.

    python benchmarks/fit_priors.py            # needs ../shared/data (or $EDGENAS_DATA_DIR)
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgenas.latency.fit import fit_latency_table, predict_with_table
from edgenas.latency.validate import latency_metrics
from edgenas.paths import shared_data_dir
from edgenas.spaces import get_space

OUT = Path(__file__).resolve().parent.parent / "latency_tables"
HWNAS = ("HW-NAS-Bench (Li et al., ICLR 2021) end-to-end measurements, as redistributed by HELP "
         "(Lee et al., NeurIPS 2021; github.com/HayeonLee/HELP, MIT licence)")
HELP = "HELP (Lee et al., NeurIPS 2021; github.com/HayeonLee/HELP, MIT licence) end-to-end measurements"
# (space, data file, column, table device name, machine, source)
PRIORS = [
    ("nb201", "nb201_latency_dev.csv", "raspi4", "raspi4-hwnasbench", "Raspberry Pi 4", HWNAS),
    ("nb201", "nb201_latency_dev.csv", "pixel3", "pixel3-hwnasbench", "Google Pixel 3", HWNAS),
    ("nb201", "nb201_latency_dev.csv", "gold_6226", "gold6226-help", "Intel Xeon Gold 6226", HELP),
    ("fbnet", "fbnet_cifar100_latency_dev.csv", "raspi4", "raspi4-hwnasbench", "Raspberry Pi 4", HWNAS),
    ("fbnet", "fbnet_cifar100_latency_dev.csv", "pixel3", "pixel3-hwnasbench", "Google Pixel 3", HWNAS),
]


def load(space_name: str, path: Path, column: str):  # noqa: ANN201
    rows = list(csv.DictReader(open(path)))
    if space_name == "nb201":  # rows are keyed by NB201 index: map through the NB201 table beside them
        space = get_space("nb201", table=path.parent.parent / "nb201" / "nb201_cifar10.csv")
        specs = [space.parse("#" + r["index"]) for r in rows]
    else:
        space = get_space("fbnet")
        specs = [space.parse(r["op_idx_list"]) for r in rows]
    return space, specs, [float(r[column]) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="shared data folder (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    data = args.data or shared_data_dir()
    if data is None:
        raise SystemExit("public dev data not found (../shared/data or $EDGENAS_DATA_DIR)")
    for space_name, fname, column, name, machine, source in PRIORS:
        path = Path(data) / "latency" / fname
        t0 = time.time()
        space, specs, y = load(space_name, path, column)
        table = fit_latency_table(space, specs, y, name, seed=0)
        pred = predict_with_table(table, space, specs)
        table.runtime = {"name": "published", "version": source.split(" (")[0], "threads": None, "options": {}}
        table.host = {
            "machine": machine, "source": source, "license": "MIT (the measurements' licence; this table is "
            "derived from them)", "data_file": f"latency/{fname}", "data_column": column,
            "data_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "rows": len(y),
            "fitted_by": "benchmarks/fit_priors.py", "layout": "CIFAR-10, 32x32 (NB201)" if space_name == "nb201"
            else "CIFAR-100, 32x32 (HW-NAS-Bench FBNet layout)",
        }
        table.notes = (f"Prior table for 'edgenas lut fit': {machine}, fitted on all {len(y)} {space_name} "
                       f"measurements of column {column!r} of {fname} ({source}). Derived data, MIT licence. "
                       + table.notes)
        table.validation = {**table.validation, "in_sample": latency_metrics(pred.tolist(), y)}
        out = table.save(args.out / f"{name}__{space_name}.json")
        ins = table.validation["in_sample"]
        print(f"{out.name}: {table.validation['model']}; in-sample Spearman {ins['spearman']:.4f}, "
              f"within ±10% {ins['within_10pct']:.1%} ({time.time() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
