"""Locked labels of a napari Labels layer: no brush, eraser, fill, polygon or label tool
changes them.

A locked label neither loses nor gains a voxel
(:func:`napari_medseg.labels.editing.unlocked`): painting another label over it, erasing
it or filling it leaves its voxels as they are, and painting with it paints nothing.
The Label tools refuse to edit it and keep its voxels when they grow another label
over it (:func:`~napari_medseg._napari.label_edit.apply_mask_edit` passes
:func:`locked_labels` to :func:`~napari_medseg.labels.editing.plan_label_change`).

The locks are kept per layer object here (not in ``layer.metadata``, which napari's
*Duplicate layer* shares with the copy), and napari's own painting is filtered through
:func:`~napari_medseg._napari.history.filter_painting` (key ``"locks"``), which composes
with the HU-range brush of the Label tools. Locks are not saved with the labels.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_medseg._napari.history import can_filter_painting, filter_painting, paint_hook_name
from napari_medseg.labels.editing import LockedLabelError, unlocked

#: The key of the locks' paint filter (see :func:`filter_painting`).
FILTER_KEY = "locks"


@dataclass
class _Locks:
    values: set[int] = field(default_factory=set)
    stop: Callable[[], None] | None = None


#: layer -> its locks (dropped with the layer)
_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def locked_labels(layer: Any) -> frozenset[int]:
    """The locked label values of a labels layer (empty when none is)."""
    locks = _LOCKS.get(layer)
    return frozenset(locks.values) if locks is not None else frozenset()


def set_locked(layer: Any, values: Iterable[int], locked: bool = True) -> None:
    """Lock (or unlock) label values of a labels layer.

    Parameters
    ----------
    layer : napari.layers.Labels
    values : iterable of int
        Label values (> 0; the background cannot be locked).
    locked : bool
        Lock them (True) or unlock them (False).

    Raises
    ------
    LockedLabelError
        Locking on a napari without the paint hook the filter needs.
    """
    values = {int(v) for v in values}
    if any(v <= 0 for v in values):
        raise ValueError("the background (0) cannot be locked")
    locks = _LOCKS.get(layer)
    if locks is None:
        if not locked or not values:
            return
        if not can_filter_painting(layer):
            raise LockedLabelError(
                f"layer '{layer.name}': this napari version has no paint hook "
                f"({paint_hook_name()}); labels cannot be locked against the brush"
            )
        locks = _LOCKS[layer] = _Locks()
    if locked:
        locks.values |= values
    else:
        locks.values -= values
    if locks.values and locks.stop is None:
        locks.stop = filter_painting(layer, _keep_unlocked(locks), key=FILTER_KEY)
    elif not locks.values:
        if locks.stop is not None:
            locks.stop()
        del _LOCKS[layer]


def unlock_all(layer: Any) -> None:
    """Unlock every label of a layer (painting is filtered by locks no more)."""
    set_locked(layer, locked_labels(layer), locked=False)


def _keep_unlocked(locks: _Locks) -> Callable[..., np.ndarray]:
    # the filter holds the locks, never the layer (the layer holds the filter)
    def keep(
        data: np.ndarray, mask: np.ndarray, new_label: int, slice_key: tuple[slice, ...]
    ) -> np.ndarray:
        if not locks.values:
            return mask
        return mask & unlocked(data, new_label, locks.values)

    return keep


__all__ = ["FILTER_KEY", "locked_labels", "set_locked", "unlock_all"]
