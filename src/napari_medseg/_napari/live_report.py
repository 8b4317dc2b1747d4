"""A report that follows the edits of a napari Labels layer (no widgets here).

:class:`LiveReport` watches a labels layer (and a reference labels layer), waits
until edits pause (a single-shot ``QTimer``, 250 ms by default), and measures in a
napari worker, so the viewer never waits for a measurement:

* the first time, and whenever the layers, the settings or a layer's whole data
  change, a full report (:func:`~napari_medseg.measure.incremental.measure_report`);
* after a paint, fill, label-tool change, undo or redo, only the label values the
  edit touched, inside the edited region and their previous bounding boxes
  (:func:`~napari_medseg.measure.incremental.update_report`), with the same numbers.

What an edit touched is read from napari's undo history: a paint event carries the
history item (its atoms hold the changed positions and the values before and
after), and an undo or redo moves an item between the undo and redo queues (napari
then emits only ``set_data``, as for any refresh). Positions are in the layer's
display order ``(S, P, L)``; they are mapped to the source voxel order ``(I, J,
K)`` the report is measured in.

One measurement runs at a time, through a :class:`~napari_medseg._napari.jobs.JobSlot`.
Every change invalidates the slot (a new generation); a result computed for an older
generation is dropped (the newer change has its own run queued, started when the
running one ends), so the report shown is always the one of the data as it is now.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

# scipy.spatial is imported here, in the main thread, before any measuring worker
# starts: a worker importing scipy.spatial.distance (surface distances, diameters) while
# napari's camera imports scipy.spatial in the main thread can fail with "cannot import
# name ... from partially initialized module" (one package imported by two threads)
import scipy.spatial  # noqa: F401
from qtpy.QtCore import QObject, QTimer, Signal

from napari_medseg._napari.history import atom_extent, history_key, moved_history_item
from napari_medseg._napari.jobs import Job, JobSlot
from napari_medseg._napari.label_classes import label_names
from napari_medseg._napari.layer_volume import LayerVolume, layer_volume, same_patient_grid
from napari_medseg.errors import MedsegError
from napari_medseg.geometry import DisplayGeometry
from napari_medseg.labels.maps import GridMismatchError, describe_grid
from napari_medseg.measure.incremental import (
    MeasuredReport,
    ReportSettings,
    VoxelBox,
    measure_report,
    rename_labels,
    update_report,
)

logger = logging.getLogger(__name__)

#: Quiet time after the last edit before measuring, in ms.
DEBOUNCE_MS = 250


# ------------------------------------------------------------------ geometry


def display_box_to_source(geometry: DisplayGeometry, start, stop) -> VoxelBox:
    """A box of display indices ``[start, stop)`` along ``(S, P, L)`` in source order.

    Parameters
    ----------
    geometry : DisplayGeometry
        The layer's display geometry (``LayerVolume.geometry``).
    start, stop : sequence of int
        First and one-past-last display index along each display axis.

    Returns
    -------
    VoxelBox
        The same voxels as a box of source indices ``(I, J, K)``.
    """
    low, high = [0, 0, 0], [0, 0, 0]
    for axis, (display_axis, flip) in enumerate(geometry.transform):
        a, b = int(start[int(display_axis)]), int(stop[int(display_axis)])
        if flip < 0:  # display index x is source index n - 1 - x
            n = int(geometry.source_shape[axis])
            a, b = n - b, n - a
        low[axis], high[axis] = a, b
    return VoxelBox(tuple(low), tuple(high))  # type: ignore[arg-type]


def source_to_display_index(geometry: DisplayGeometry, ijk) -> np.ndarray:
    """A (fractional) source voxel index ``(i, j, k)`` as a display index ``(S, P, L)``."""
    out = np.zeros(3)
    for axis, (display_axis, flip) in enumerate(geometry.transform):
        value = float(ijk[axis])
        if flip < 0:
            value = geometry.source_shape[axis] - 1 - value
        out[int(display_axis)] = value
    return out


def ras_to_layer_world(layer: Any, ras_mm) -> np.ndarray:
    """napari world coordinates of a patient position (RAS+ mm) in a layer's scan.

    Goes through the layer's own data -> world transform, so it stays right when the
    scan is shown de-obliqued or was moved in the viewer.
    """
    found = layer_volume(layer)
    ijk = np.linalg.solve(found.volume.affine, np.append(np.asarray(ras_mm, float), 1.0))[:3]
    return np.asarray(layer.data_to_world(source_to_display_index(found.geometry, ijk)))


# ------------------------------------------------------------------ edits


@dataclass(frozen=True)
class Change:
    """What an edit touched, in source order.

    Attributes
    ----------
    values : frozenset of int
        Label values of the changed voxels before and after the edit.
    box : VoxelBox or None
        A box holding every changed voxel; None when the edit could not be read
        (then the whole report is measured again).
    """

    values: frozenset[int]
    box: VoxelBox | None


#: A change that needs a full report.
UNKNOWN = Change(frozenset(), None)
#: A change of no voxel (e.g. label names only).
NO_VOXELS = Change(frozenset(), VoxelBox((0, 0, 0), (0, 0, 0)))


def history_change(item: Iterable[Any], geometry: DisplayGeometry) -> Change:
    """What one napari undo-history item (a list of atoms) changed, in source order."""
    shape = tuple(geometry.display_shape)
    start, stop, values = [None] * 3, [None] * 3, set()
    for atom in item:
        found = atom_extent(atom, shape)
        if found is None:
            return UNKNOWN
        low, high, touched = found
        if not touched:
            continue
        values |= {int(v) for v in touched}
        start = [a if s is None else min(a, s) for a, s in zip(low, start, strict=True)]
        stop = [b if s is None else max(b, s) for b, s in zip(high, stop, strict=True)]
    if start[0] is None:
        return NO_VOXELS
    return Change(frozenset(values), display_box_to_source(geometry, start, stop))


# ------------------------------------------------------------------ inputs


@dataclass
class ReportInputs:
    """The layers a live report measures, as volumes on the labels' source grid."""

    labels: LayerVolume
    image: LayerVolume | None
    reference: LayerVolume | None
    notes: list[str] = field(default_factory=list)


def check_image_grid(
    labels_layer: Any, labels: LayerVolume, image_layer: Any, image: LayerVolume
) -> None:
    """Raise :class:`GridMismatchError` naming both layers unless the image is on the
    labels' voxel grid (the same voxels in another stored order are accepted)."""
    if same_patient_grid(labels, image):
        return
    a, b = labels.volume, image.volume
    raise GridMismatchError(
        f"image layer {image_layer.name!r} is not on the voxel grid of labels layer "
        f"{labels_layer.name!r}: {describe_grid(b.shape, b.affine)} against "
        f"{describe_grid(a.shape, a.affine)}. Choose the scan the labels were drawn on, "
        "or 'none'."
    )


def gather_inputs(
    labels_layer: Any, image_layer: Any = None, reference_layer: Any = None
) -> ReportInputs:
    """Read the chosen layers as volumes (main thread), checking what can be checked.

    Raises
    ------
    LayerGeometryError
        A layer is not a 3D volume placed on a scan.
    GridMismatchError
        The image is not on the labels' grid.
    """
    labels = layer_volume(labels_layer)
    if labels.volume.array.dtype.kind not in "iub":
        raise MedsegError(f"labels layer {labels_layer.name!r} does not hold integer labels.")
    image = layer_volume(image_layer) if image_layer is not None else None
    if image is not None:
        check_image_grid(labels_layer, labels, image_layer, image)
    reference = layer_volume(reference_layer) if reference_layer is not None else None
    notes = [*labels.warnings, *(reference.warnings if reference is not None else [])]
    return ReportInputs(labels, image, reference, notes)


# ------------------------------------------------------------------ worker


@dataclass(eq=False, kw_only=True)
class _Measurement(Job):
    """One measurement: a full report (``inputs``) or an update of ``base``."""

    kind: str = "report"
    settings: ReportSettings
    inputs: ReportInputs | None = None
    base: MeasuredReport | None = None
    values: frozenset[int] = frozenset()
    box: VoxelBox | None = None


def run_job(job: _Measurement) -> MeasuredReport:
    """Worker body: measure fully, or update the base report (and its names)."""
    names = job.settings.names
    if job.inputs is not None:
        i = job.inputs
        return measure_report(
            i.labels.volume,
            i.image.volume if i.image else None,
            i.reference.volume if i.reference else None,
            job.settings,
        )
    state = job.base
    if job.values or job.box is None:
        state = update_report(state, job.values, job.box)
    if dict(state.settings.names or {}) != dict(names or {}):
        state = rename_labels(state, names)
    return state


class LiveReport(QObject):
    """Keeps a report of a labels layer up to date while the layer is edited.

    Signals
    -------
    updated(object)
        A :class:`~napari_medseg.measure.incremental.MeasuredReport` of the data as it is
        now (main thread).
    failed(str)
        Measuring failed; the message names the layer and the problem (it is also
        shown as a napari notification).
    busy_changed(bool)
        A measurement started (True) or no more are pending (False).
    """

    updated = Signal(object)
    failed = Signal(str)
    busy_changed = Signal(bool)

    def __init__(self, delay_ms: int = DEBOUNCE_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.labels_layer: Any = None
        self.image_layer: Any = None
        self.reference_layer: Any = None
        self.settings = ReportSettings()
        self.state: MeasuredReport | None = None
        #: what the user should know about the layers' geometry (e.g. no source scan)
        self.input_notes: list[str] = []
        self._geometry: dict[int, DisplayGeometry] = {}  # id(layer) -> display geometry
        self._history: dict[int, tuple] = {}
        self._slot = JobSlot(self)  # its generation counts the changes
        self._settled = 0  # the generation the state (or an error) belongs to
        self._full = True
        self._values: set[int] = set()
        self._box: VoxelBox | None = None
        self._busy = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self._run)

    # ---------------------------------------------------------------- public
    @property
    def busy(self) -> bool:
        """Whether the report shown lags behind the data (a change not measured yet)."""
        return self._slot.generation != self._settled

    def set_layers(self, labels: Any, image: Any = None, reference: Any = None) -> None:
        """Measure ``labels`` (with an image and a reference, both optional) from now on."""
        self._watch(False)
        self.labels_layer, self.image_layer, self.reference_layer = labels, image, reference
        self.state = None
        self._geometry.clear()
        self._watch(True)
        self.refresh()

    def set_settings(self, settings: ReportSettings) -> None:
        """Measure with other settings (a full report)."""
        self.settings = settings
        self.refresh()

    def refresh(self) -> None:
        """Measure everything again (after the debounce delay)."""
        self._schedule(UNKNOWN)

    def close(self) -> None:
        """Stop watching the layers; pending and running results are dropped."""
        if self._slot.abandoned:
            return
        self._watch(False)
        self._slot.abandon()
        try:
            self._timer.stop()
        except RuntimeError:  # the Qt object is already gone
            pass

    # ---------------------------------------------------------------- events
    def _layers(self) -> list[Any]:
        return [x for x in (self.labels_layer, self.reference_layer) if x is not None]

    def _watch(self, on: bool) -> None:
        for layer in self._layers():
            self._history[id(layer)] = history_key(layer)
            for name, slot in (
                ("paint", self._on_paint),
                ("set_data", self._on_set_data),
                ("data", self._on_data),
            ):
                emitter = getattr(layer.events, name)
                (emitter.connect if on else emitter.disconnect)(slot)
        if self.labels_layer is not None:
            emitter = self.labels_layer.events.features
            (emitter.connect if on else emitter.disconnect)(self._on_features)
        if self.image_layer is not None:
            emitter = self.image_layer.events.data
            (emitter.connect if on else emitter.disconnect)(self._on_data)

    def _change_of(self, layer: Any, item: Any) -> Change:
        geometry = self._geometry.get(id(layer))
        if geometry is None or item is None or getattr(layer, "multiscale", False):
            return UNKNOWN
        try:
            return history_change(item, geometry)
        except (ValueError, TypeError, IndexError) as error:
            logger.debug("unreadable history item of %s: %s", layer.name, error)
            return UNKNOWN

    def _on_paint(self, event: Any) -> None:
        layer = event.source
        self._history[id(layer)] = history_key(layer)
        self._schedule(self._change_of(layer, getattr(event, "value", None)))

    def _on_set_data(self, event: Any) -> None:
        layer = event.source
        before, after = self._history.get(id(layer)), history_key(layer)
        if before is None or before == after:
            return  # a refresh, not an undo or redo
        self._history[id(layer)] = after
        self._schedule(self._change_of(layer, moved_history_item(layer, before, after)))

    def _on_data(self, event: Any) -> None:
        self._history[id(event.source)] = history_key(event.source)
        self.refresh()

    def _on_features(self, event: Any = None) -> None:
        self._schedule(NO_VOXELS)  # names may have changed

    # ---------------------------------------------------------------- runs
    def _schedule(self, change: Change) -> None:
        if self._slot.abandoned or self.labels_layer is None:
            return
        if change.box is None:
            self._full = True
        else:
            self._values |= change.values
            self._box = change.box.union(self._box) if change.values else self._box
        self._slot.invalidate()  # a running measurement's result is stale
        self._set_busy(True)
        self._timer.start()

    def _set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)

    def _make_job(self) -> _Measurement:
        names = dict(label_names(self.labels_layer))
        settings = dataclasses.replace(self.settings, names=names)
        if self._full or self.state is None:
            inputs = gather_inputs(self.labels_layer, self.image_layer, self.reference_layer)
            self.input_notes = list(inputs.notes)
            self._geometry = {id(self.labels_layer): inputs.labels.geometry}
            if inputs.reference is not None:
                self._geometry[id(self.reference_layer)] = inputs.reference.geometry
            return _Measurement(settings=settings, inputs=inputs)
        return _Measurement(
            settings=settings,
            base=self.state,
            values=frozenset(self._values),
            box=self._box if self._values else NO_VOXELS.box,
        )

    def _run(self) -> None:
        from napari_medseg._napari.notifications import notify_error

        if self._slot.abandoned or self.labels_layer is None:
            return
        if self._slot.busy:
            return  # started again when the running one finishes
        try:
            job = self._make_job()
        except MedsegError as error:
            self._settled = self._slot.generation
            self._set_busy(False)
            notify_error(error, context=f"Report of {self.labels_layer.name!r}")
            self.failed.emit(str(error))
            return
        # the slot drops a stale result (a change came while it ran) and keeps the
        # measurement until its worker ends: then _on_finished starts the next one
        self._slot.start(
            job,
            partial(run_job, job),
            returned=self._on_returned,
            errored=self._on_errored,
            finished=self._on_finished,
        )

    def _on_returned(self, job: _Measurement, state: MeasuredReport) -> None:
        self.state = state
        self._settled = job.generation
        self._full, self._values, self._box = False, set(), None
        self.updated.emit(state)

    def _on_errored(self, job: _Measurement, error: BaseException) -> None:
        from napari_medseg._napari.notifications import notify_error

        self._settled = job.generation
        self.state = None  # start again from a full report
        self._full = True
        name = getattr(self.labels_layer, "name", "labels")
        notify_error(error, context=f"Report of {name!r}")
        self.failed.emit(str(error))

    def _on_finished(self, job: _Measurement) -> None:
        if self._slot.generation != self._settled:
            if not self._timer.isActive():
                self._run()  # changes came while it ran
        else:
            self._set_busy(False)


__all__ = [
    "Change",
    "LiveReport",
    "ReportInputs",
    "check_image_grid",
    "display_box_to_source",
    "gather_inputs",
    "history_change",
    "ras_to_layer_world",
    "run_job",
    "source_to_display_index",
]
