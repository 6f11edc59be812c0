"""Latency: device specs, lookup tables, profiling, prediction and validation.

    from edgenas.latency import DeviceStore, LatencyPredictor
    pred = LatencyPredictor(get_space("tiny"), "local-cpu-ort")
    pred.predict(spec)   # ms; on a local device missing table entries are measured on the spot
"""

from edgenas.latency.devices import DeviceSpec, DeviceStore
from edgenas.latency.predict import LatencyPredictor, MissingEntriesError
from edgenas.latency.table import DeviceModel, Entry, LatencyTable

__all__ = ["DeviceModel", "DeviceSpec", "DeviceStore", "Entry", "LatencyPredictor", "LatencyTable",
           "MissingEntriesError"]
