"""The plumbing of the Segment widget: models, the worker job, the result layer.

- What a model is before it loads comes from
  :func:`napari_medseg.models.describe.describe_model` (JSON only, no torch).
- :class:`SegmenterCache` keeps the last :class:`~napari_medseg.inference.segmenter.Segmenter`,
  so a second run with the same settings does not load the model again.
- :func:`segment_volumes` is the worker body: load (or reuse) the model and predict.
- :class:`SegmentJob` is one run (a :class:`~napari_medseg._napari.jobs.Job`) with its
  progress bar.
- :func:`labels_layer_data` and :func:`replace_labels` turn a
  :class:`~napari_medseg.inference.segmenter.SegmentationResult` (labels on the source voxel
  grid, axes ``(I, J, K)``) into labels in the image layer's display order
  ``(S, P, L)``, with the model's class names and colours in the layer's features
  and the model's name and settings in ``metadata["medseg"]["model"]``.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QObject, Signal

from napari_medseg._napari.history import can_save_history, history_queue_of, save_replacement
from napari_medseg._napari.jobs import Job
from napari_medseg._napari.layer_volume import LayerGeometryError, LayerVolume, same_source_grid
from napari_medseg._napari.layers import MEDSEG_KEY, geometry_from_metadata, labels_like
from napari_medseg.errors import Cancelled
from napari_medseg.inference.settings import SegmentSettings
from napari_medseg.progress import raise_if_cancelled

if TYPE_CHECKING:
    from napari_medseg.geometry import DisplayGeometry
    from napari_medseg.inference.segmenter import SegmentationResult, Segmenter
    from napari_medseg.volume import Volume

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------ segmenting
class SegmenterCache:
    """The last loaded :class:`~napari_medseg.inference.segmenter.Segmenter`, reused while the
    settings stay the same (thread-safe: the worker thread loads, the widget reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self.segmenter: Segmenter | None = None

    def holds(self, settings: SegmentSettings) -> bool:
        """Whether :meth:`get` would reuse the loaded Segmenter (no loading)."""
        key = settings.cache_key()
        with self._lock:
            return self.segmenter is not None and key == self._key

    def get(self, settings: SegmentSettings) -> Segmenter:
        """The cached Segmenter for ``settings``, or a newly loaded one (replacing it).

        Raises
        ------
        ModelLoadError, ModelSpecError, BundleTrustError, DeviceError
            From :class:`~napari_medseg.inference.segmenter.Segmenter`.
        """
        key = settings.cache_key()
        with self._lock:
            if self.segmenter is not None and key == self._key:
                return self.segmenter
            self.segmenter, self._key = None, None  # free the old network first
            segmenter = settings.make_segmenter()
            self.segmenter, self._key = segmenter, key
            return segmenter


#: Phases of a run before its sliding window starts (see :func:`segment_volumes`).
LOADING, PREPARING = "loading", "preparing"


def segment_volumes(
    cache_: SegmenterCache,
    settings: SegmentSettings,
    channels: Sequence[Volume],
    progress: Any,
    cancel: threading.Event,
    phase: Callable[[str], None] | None = None,
) -> SegmentationResult:
    """Worker body: load (or reuse) the model, then segment ``channels``.

    Parameters
    ----------
    cache_, settings, channels
        The model cache, what to load, the scan (one volume per input channel).
    progress : callable
        ``progress(done, total)`` of the network calls; its first call, ``(0,
        total)``, comes once the scan is prepared and the windows start.
    cancel : threading.Event
    phase : callable, optional
        ``phase(name)``, called in the worker thread with :data:`LOADING` before the
        model loads (not when the cache holds it) and :data:`PREPARING` before the
        scan is brought onto the model's grid.

    Raises
    ------
    Cancelled
        ``cancel`` was set (before, while or right after the model loaded, or
        during the sliding window).
    """
    raise_if_cancelled(cancel, "segmentation cancelled before it started")
    if phase is not None and not cache_.holds(settings):
        phase(LOADING)
    segmenter = cache_.get(settings)
    raise_if_cancelled(cancel, "segmentation cancelled after the model loaded")
    if phase is not None:
        phase(PREPARING)
    return segmenter.predict(list(channels), progress=progress, cancel=cancel)


class PhaseRelay(QObject):
    """``phase(name)`` callable from the worker thread; re-emitted as :attr:`changed`.

    Made in the main thread, so slots connected to :attr:`changed` run there (queued,
    in order with the job's progress signals).
    """

    changed = Signal(str)

    def __call__(self, name: str) -> None:
        self.changed.emit(str(name))


@cache
def cancelable_bar_class() -> type:
    """napari's ``cancelable_progress`` whose Cancel button calls ``cancel_callback``.

    napari only calls the callback while iterating; a bar driven by ``update``
    needs it called when the button is pressed.
    """
    from napari.utils import cancelable_progress

    class CancelableBar(cancelable_progress):
        def cancel(self) -> None:
            super().cancel()
            if self.cancel_callback is not None:
                self.cancel_callback()

    return CancelableBar


# ---------------------------------------------------------------------- result layer
def _display_labels(
    result: SegmentationResult, geometry: DisplayGeometry, shape: tuple
) -> np.ndarray:
    # a view, as the reader gives: the layer's data stays in the scan's storage order,
    # so measuring it against the image (also a view of its stored array) walks both
    # arrays in the same memory order (a copy in display order made that 40x slower)
    labels = geometry.to_display(result.labels)
    if labels.shape != tuple(shape):
        raise LayerGeometryError(
            f"the segmentation has shape {labels.shape} in display order but the layer has "
            f"{tuple(shape)}."
        )
    return labels


def _class_kwargs(result: SegmentationResult) -> dict[str, Any]:
    from napari_medseg._napari.label_classes import (
        classes_from_label_classes,
        layer_kwargs_for_classes,
    )

    return layer_kwargs_for_classes(classes_from_label_classes(result.label_classes))


def labels_layer_data(
    result: SegmentationResult, image_layer: Any, source: LayerVolume, name: str | None = None
) -> tuple[np.ndarray, dict[str, Any], str]:
    """A new labels ``LayerData`` for ``result`` on the grid of ``image_layer``.

    Parameters
    ----------
    result : SegmentationResult
        Labels on the source voxel grid, axes ``(I, J, K)``.
    image_layer : napari.layers.Image
        The segmented layer: the labels get its scale, translate (mm) and a copy of
        its ``metadata["medseg"]`` (source affine, shape, files...).
    source : LayerVolume
        ``layer_volume(image_layer)``: its geometry maps source order to display order.
    name : str, optional
        Default ``"<model> labels"`` (e.g. ``"phantom-abdomen-3d labels"``): the file
        names the Save widget makes already start with the scan's name.

    Returns
    -------
    tuple
        ``(labels (S, P, L), kwargs, "labels")``; kwargs hold ``features`` (index,
        name, color) and a colormap from the model's classes, and
        ``metadata["medseg"]["model"]``.
    """
    data, kwargs, kind = labels_like(image_layer, name=name or f"{result.model_name} labels")
    labels = _display_labels(result, source.geometry, data.shape)
    metadata = kwargs["metadata"]
    medseg = metadata.setdefault(MEDSEG_KEY, {"kind": "labels"})
    if geometry_from_metadata(metadata) is None:  # an image placed by hand: keep its grid
        medseg.update(source.geometry.to_dict())
    medseg["model"] = result.provenance()
    kwargs.update(_class_kwargs(result))
    return labels, kwargs, kind


def check_same_grid(
    target: Any, target_volume: LayerVolume, image: Any, source: LayerVolume
) -> None:
    """Raise when labels layer ``target`` is not on the voxel grid of image ``image``.

    Raises
    ------
    LayerGeometryError
        Names both layers and their shapes.
    """
    same = tuple(target.data.shape) == tuple(image.data.shape) and same_source_grid(
        target_volume, source
    )
    if not same:
        raise LayerGeometryError(
            f"labels layer {target.name!r} (shape {tuple(target.data.shape)}) is not on the "
            f"voxel grid of image {image.name!r} (shape {tuple(image.data.shape)}): it cannot "
            "hold this segmentation. Choose 'New layer', or a labels layer made on this scan."
        )


def replace_labels(layer: Any, result: SegmentationResult, source: LayerVolume) -> bool:
    """Put ``result`` into an existing labels layer on the same grid (undoable).

    The layer keeps its name, metadata and geometry; its voxels, features and colormap
    become the model's and ``metadata["medseg"]["model"]`` is updated, except that a
    locked label (:mod:`.label_locks`) keeps its voxels, gains none, and keeps its name
    and colour. The change is
    one item of the layer's undo history (costs a copy of the old and new voxels)
    when the layer's dtype holds the new labels; otherwise its data is replaced.
    Undoing that item also gives the layer back its class names, colours and model
    entry (the voxels are not the model's any more); redoing it gives it the model's.

    Returns
    -------
    bool
        Whether napari's undo can restore the previous voxels.
    """
    from napari_medseg._napari.label_classes import layer_classes, set_label_classes
    from napari_medseg._napari.label_locks import locked_labels
    from napari_medseg.labels.editing import unlocked

    labels = _display_labels(result, source.geometry, layer.data.shape)
    old = np.asarray(layer.data)
    locked = locked_labels(layer)
    kept_classes = {v: c for v, c in layer_classes(layer).items() if v in locked}
    if locked:  # a locked label neither loses nor gains a voxel, a model run included
        labels = np.where(unlocked(old, labels, locked), labels, old)
    undoable = (
        isinstance(layer.data, np.ndarray)
        and np.can_cast(labels.dtype, old.dtype, casting="safe")
        and can_save_history(layer)
    )
    before = _LayerClasses.of(layer)
    atom = None
    if undoable:
        whole = tuple(slice(None) for _ in range(labels.ndim))
        new = labels.astype(old.dtype, copy=False)
        atom = save_replacement(layer, whole, old.copy(), new)
        layer.data[whole] = new
        layer.refresh()
    else:
        layer.data = labels
    for key, value in _class_kwargs(result).items():
        setattr(layer, key, value)
    if kept_classes:  # a locked label keeps its name and colour
        set_label_classes(layer, kept_classes)
    if layer.metadata is None:
        layer.metadata = {}
    layer.metadata.setdefault(MEDSEG_KEY, {})["model"] = result.provenance()
    if atom is not None:
        _ClassesFollowHistory(layer, atom, before, _LayerClasses.of(layer))
    return undoable


_NO_MODEL = object()


@dataclass(frozen=True)
class _LayerClasses:
    """What a labels layer says about its voxels besides the voxels: class names and
    colours (features, colormap) and the model that made them."""

    features: Any
    colormap: Any
    model: Any

    @classmethod
    def of(cls, layer: Any) -> _LayerClasses:
        medseg = (layer.metadata or {}).get(MEDSEG_KEY)
        model = medseg.get("model", _NO_MODEL) if isinstance(medseg, dict) else _NO_MODEL
        return cls(layer.features.copy(), layer.colormap, model)

    def give(self, layer: Any) -> None:
        layer.features = self.features.copy()
        layer.colormap = self.colormap
        medseg = (layer.metadata or {}).get(MEDSEG_KEY)
        if self.model is _NO_MODEL:
            if isinstance(medseg, dict):
                medseg.pop("model", None)
        else:
            if layer.metadata is None:
                layer.metadata = {}
            layer.metadata.setdefault(MEDSEG_KEY, {})["model"] = self.model


#: layer -> the watchers of its replaced segmentations (napari holds bound methods weakly)
_FOLLOWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _ClassesFollowHistory:
    """Give a layer the classes that go with its voxels when the replacement is undone
    (``before``) or redone (``after``); stops once the history item is gone."""

    def __init__(self, layer: Any, atom: tuple, before: _LayerClasses, after: _LayerClasses):
        self.atom = atom
        self.classes = {"undo": after, "redo": before}  # where the item is -> what applies
        self.shown = "undo"
        _FOLLOWERS.setdefault(layer, []).append(self)
        layer.events.set_data.connect(self.on_set_data)  # undo and redo end in a refresh

    def on_set_data(self, event: Any) -> None:
        layer = event.source
        where = history_queue_of(layer, self.atom)
        if not where:  # replaced data, a new edit after an undo, or too old: done
            layer.events.set_data.disconnect(self.on_set_data)
            followers = _FOLLOWERS.get(layer, [])
            if self in followers:
                followers.remove(self)
            return
        if where != self.shown:
            self.shown = where  # first: giving the classes refreshes the layer again
            self.classes[where].give(layer)


# ------------------------------------------------------------------------------ job
@dataclass(eq=False, kw_only=True)
class SegmentJob(Job):
    """One run: a worker job (cancel event, progress, worker) plus what the run needs.

    Attributes
    ----------
    image : napari.layers.Image
        The segmented layer (its first channel).
    source : LayerVolume
        ``layer_volume(image)``: the input on the source grid.
    settings : SegmentSettings
    target : napari.layers.Labels or None
        The labels layer to replace (None: add a new layer).
    bar : napari.utils.progress or None
        The progress bar of napari's activity dock, until :meth:`close_bar`.
    phases : PhaseRelay or None
        Brings :meth:`phase` calls of the worker to the main thread (made there).
    """

    kind: str = "segment"
    image: Any
    source: LayerVolume
    settings: SegmentSettings
    target: Any = None
    bar: Any = None
    phases: PhaseRelay | None = None

    def phase(self, name: str) -> None:
        """``phase(name)`` for :func:`segment_volumes` (thread-safe; nothing without
        :attr:`phases`)."""
        relay = self.phases
        if relay is not None:
            relay(name)

    def close_bar(self) -> None:
        """Close the progress bar (once)."""
        bar, self.bar = self.bar, None
        if bar is not None:
            bar.close()

    def end(self) -> None:
        """The worker is over: the bar goes, even when the result is dropped."""
        self.close_bar()


def is_cancelled(job: SegmentJob, error: BaseException | None = None) -> bool:
    """Whether the run ended because Cancel was pressed (not because it failed)."""
    return job.cancel.is_set() and (error is None or isinstance(error, Cancelled))


def device_choices() -> list[str]:
    """Device names offered: ``auto`` and ``cpu``, plus ``cuda``/``mps`` when torch
    is imported and sees them (torch is not imported here)."""
    choices = ["auto", "cpu"]
    torch = sys.modules.get("torch")
    if torch is None:
        return choices
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        choices += ["cuda"] + ([f"cuda:{i}" for i in range(count)] if count > 1 else [])
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        choices.append("mps")
    return choices


def probe_devices() -> list[str]:
    """:func:`device_choices` after importing torch (a few seconds the first time)."""
    import torch  # noqa: F401

    return device_choices()
