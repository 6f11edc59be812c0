"""``torch-export``: the trained model as a ``torch.export`` program (``.pt2``), verified by reloading it.

The file holds the graph and the weights (no Python code); :func:`torch.export.load` gives it back
anywhere PyTorch runs. The exporter is ``exact``: the reloaded program must match torch to 1e-4 on
every validation example. It is timed in this package's ``torch`` runtime, by edgenas' own procedure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from edgenas.exporters.base import Exporter, ExportJob, Runner

from edgenas_example_plugin.runtime import export_program, load_program


class TorchExportExporter(Exporter):
    name = "torch-export"
    suffix = ".pt2"
    runtime = "torch"
    kind = "exact"
    size_field = "size_bytes_fp32"
    summary = "torch.export program (.pt2: graph + float32 weights), verified by reloading it in PyTorch"
    stem = "model"

    def build(self, job: ExportJob) -> bytes:
        return export_program(job.module, job.input_shape)

    def runner(self, path: Path, job: ExportJob) -> Runner:
        import torch

        module, _ = load_program(path, f"export format {self.name!r}")

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                outs = [module(torch.from_numpy(np.ascontiguousarray(x[i:i + 1], dtype=np.float32))).numpy()
                        for i in range(len(x))]
            return np.concatenate(outs).astype(np.float32)

        return run

    def details(self, path: Path, job: ExportJob) -> dict[str, Any]:
        import torch

        return {"torch": torch.__version__, "input": {"shape": [1, *job.input_shape], "dtype": "float32",
                                                      "layout": "NCHW"}}
