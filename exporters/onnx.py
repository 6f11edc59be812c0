"""``onnx``: a static-shape ONNX model (weights inside, BatchNorm folded, edgenas' metadata in its
``metadata_props``), checked by ``onnx.checker`` and verified in ONNX Runtime against torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgenas.exporters.base import Exporter, ExportJob, Runner, register_exporter
from edgenas.exporters.convert import onnx_bytes
from edgenas.exporters.metadata import with_onnx_metadata


@register_exporter
class OnnxExporter(Exporter):
    name = "onnx"
    suffix = ".onnx"
    runtime = "onnxruntime"
    kind = "exact"
    size_field = "size_bytes_fp32"
    summary = "ONNX (static input, current opset, weights inside), verified in ONNX Runtime"

    def build(self, job: ExportJob) -> bytes:
        import onnx

        data = onnx_bytes(job.module, job.input_shape, opset=job.options.opset, verbose=job.options.verbose)
        data = with_onnx_metadata(data, job.info, job.input_shape)
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
        return data

    def runner(self, path: Path, job: ExportJob) -> Runner:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = job.options.threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name

        def run(x: np.ndarray) -> np.ndarray:
            return np.concatenate([sess.run(None, {name: x[i:i + 1].astype(np.float32)})[0]
                                   for i in range(len(x))])

        return run

    def details(self, path: Path, job: ExportJob) -> dict:
        import onnx

        m = onnx.load(str(path), load_external_data=False)
        return {"opset": int(m.opset_import[0].version), "input": {"name": m.graph.input[0].name,
                "shape": [1, *job.input_shape], "dtype": "float32", "layout": "NCHW"}}
