"""Latency prediction: ``latency_ms(spec)`` from a device's table and fitted device model.

On a local device a missing table entry is measured on the spot and cached (lazy profiling), so a
search never stops for it. On any other device a missing entry is an error naming the missing units
and the command that measures them.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgenas.errors import EdgenasError
from edgenas.latency.devices import DeviceSpec, DeviceStore
from edgenas.latency.table import LatencyTable
from edgenas.layers import Layer
from edgenas.spaces import ArchSpec, SearchSpace, Task


class MissingEntriesError(EdgenasError):
    """The table lacks units a spec needs, on a device edgenas cannot measure."""


class LatencyPredictor:
    def __init__(
        self, space: SearchSpace, device: DeviceSpec | str, store: DeviceStore | None = None,
        table: LatencyTable | None = None, lazy: bool = True, show_progress: bool | None = None,
        auto_calibrate: int = 10,
    ) -> None:
        """``auto_calibrate``: on a local device whose table has no fitted device model yet, fit it on
        this many random whole networks (measured end to end) right after the first lazy measurement."""
        self.auto_calibrate = auto_calibrate
        self.store = store or DeviceStore()
        self.device = self.store.device(device) if isinstance(device, str) else device
        self.space = space
        self.lazy = lazy and self.device.local
        self.show_progress = show_progress
        self._profiler = None
        if table is not None:
            self.table = table
        elif self.device.local:  # existing table if measured on this CPU, else a fresh one
            self.table = self.profiler().open_table(space.name)[0]
        else:
            loaded = self.store.load_table(self.device, space.name)
            if loaded is None:
                raise EdgenasError(
                    f"no latency table for device {self.device.name!r} and space {space.name!r}; "
                    f"import one ('edgenas lut import' / 'lut import-kit' / 'lut fit') or profile a local device"
                )
            self.table = loaded
        self.save_path = self.store.write_path(self.device, space.name)

    def profiler(self):  # noqa: ANN201 - lazy import keeps torch out of pure prediction
        if self._profiler is None:
            from edgenas.latency.profile import Profiler

            self._profiler = Profiler(self.device, self.store, show_progress=self.show_progress)
        return self._profiler

    def unit_keys(self, spec: ArchSpec, task: Task | None = None) -> list[str]:
        return [u.key for u in self.space.units(spec, task)]

    def ensure(self, specs: Sequence[ArchSpec], task: Task | None = None,
               units: Sequence[Sequence[Layer]] | None = None) -> None:
        """Make sure every unit of ``specs`` has an entry (measuring on a local device); ``units``:
        the specs' units when the caller has them already."""
        missing = {}
        for us in units if units is not None else (self.space.units(s, task) for s in specs):
            for u in us:
                if u.key not in self.table.entries:
                    missing[u.key] = u
        if not missing:
            return
        if not self.lazy:
            keys = sorted(missing)
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            how = (f"edgenas profile --device {self.device.name} --space {self.space.name}" if self.device.local
                   else f"edgenas profile kit --device {self.device.name} --space {self.space.name} --out KIT_DIR")
            raise MissingEntriesError(
                f"latency table of {self.device.name}/{self.space.name} lacks {len(keys)} unit(s): {shown}; "
                f"measure them with '{how}'"
            )
        self.profiler().measure(missing.values(), self.space.name, self.table, self.save_path)
        if self.table.model.fitted_on == 0 and self.auto_calibrate:
            from edgenas.latency.workflow import calibrate

            calibrate(self.profiler(), self.space, self.table, self.save_path, self.auto_calibrate, seed=1000,
                      task=task)

    def predict(self, spec: ArchSpec, task: Task | None = None) -> float:
        return self.predict_many([spec], task)[0]

    def predict_many(self, specs: Sequence[ArchSpec], task: Task | None = None) -> list[float]:
        """Predicted whole-network latency in ms for each spec."""
        units = [self.space.units(s, task) for s in specs]
        self.ensure(specs, task, units)
        names = list(self.table.model.terms)
        out = []
        for s, us in zip(specs, units):
            feats = None
            if names:
                from edgenas.latency.features import spec_features

                feats = spec_features(names, self.space, s, task)
            out.append(self.table.predict_ms([u.key for u in us], feats, self.scope(s, task)))
        return out

    def scope(self, spec: ArchSpec, task: Task | None = None) -> str | None:
        """The measurement context of ``spec`` in scoped tables: ``r<input resolution>``."""
        if not self.table.scoped:
            return None
        return f"r{self.space.input_shape(spec, task)[1]}"
