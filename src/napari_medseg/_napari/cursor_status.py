"""The status bar names the image value (HU) and the labels under the cursor, always.

napari's status shows the value of the *selected* layer only: painting on a labels
layer, one sees the label value but not the HU beneath it. Here every status napari
sets (``viewer.status``, a dict whose ``coordinates`` the status bar shows, or a
string when several layers are selected) gets, after napari's own text::

    | chest CT: -35.0 HU | chest labels: liver (6)

the value of every visible image (HU with one decimal for CT, as
:func:`~napari_medseg._napari.image_values.format_hu`; the file's units
otherwise) and the class name of every visible labels layer (from the layer's
classes, :func:`~napari_medseg._napari.label_classes.label_names`) at the cursor,
whichever layer is selected. Each layer's voxel comes through its own world-to-data
transform (``layer.world_to_data``), so a scan stored in any voxel order, or oblique
(shown straightened), names the voxel drawn under the cursor. 3D views are left to
napari (the cursor there is a ray, not a voxel).

How: napari sets ``viewer.status`` from a thread's result in a window (its
``StatusChecker``) or straight from ``cursor.events.position`` in a bare
``ViewerModel``; both emit ``viewer.events.status``. A callback connected first
blocks that event and sets the status again with the text added, so the status bar
and every other listener see one status, and the next napari update cannot
overwrite the addition. Public API only.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np

from napari_medseg._napari.history import unwrapped_viewer
from napari_medseg._napari.image_values import format_hu, hu_note
from napari_medseg._napari.label_classes import label_names
from napari_medseg._napari.layers import MEDSEG_KEY, is_helper_layer

#: Between napari's status and each layer's part.
SEPARATOR = " | "


def voxel_index(layer: Any, world: Any) -> tuple[int, ...] | None:
    """The index of ``layer``'s voxel drawn at a world point, or None outside its grid.

    Parameters
    ----------
    layer : napari.layers.Image or napari.layers.Labels
    world : sequence of float
        napari world coordinates (mm), as ``viewer.cursor.position`` (the layer's
        last ``layer.ndim`` axes are used).

    Returns
    -------
    tuple of int or None
        The nearest voxel centre through the layer's world-to-data transform, in the
        layer's data axes (a multiscale layer: its full-resolution level).
    """
    index = np.rint(np.asarray(layer.world_to_data(np.asarray(world, dtype=float)), dtype=float))
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = np.asarray(data.shape[-len(index) :])
    if not (np.all(index >= 0) and np.all(index < shape)):
        return None
    return tuple(int(i) for i in index)


def voxel_value(layer: Any, world: Any) -> Any | None:
    """The value of ``layer``'s voxel at a world point (:func:`voxel_index`), or None."""
    index = voxel_index(layer, world)
    if index is None:
        return None
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return np.asarray(data[index]).item()


def image_text(layer: Any, value: float) -> str:
    """``"name: value unit"``: HU with one decimal for CT, the file's units otherwise."""
    if not math.isfinite(float(value)):
        return f"{layer.name}: {value}"
    if not hu_note(layer):
        return f"{layer.name}: {format_hu(float(value))} HU"
    units = str(((layer.metadata or {}).get(MEDSEG_KEY) or {}).get("units", "") or "")
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return f"{layer.name}: {text}{' ' + units if units else ''}"


_NAMES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _names(layer: Any) -> dict[int, str]:
    """:func:`label_names` of a labels layer, read again only when its features change."""
    features = getattr(layer, "features", None)
    cached = _NAMES.get(layer)
    if cached is None or cached[0] is not features:
        cached = (features, label_names(layer))
        _NAMES[layer] = cached
    return cached[1]


def labels_text(layer: Any, value: int) -> str:
    """``"name: class (value)"`` (``background`` for 0; ``label_<n>`` without a class)."""
    value = int(value)
    name = _names(layer).get(value)
    if name is None:
        name = label_names(layer, [value])[value]
    return f"{layer.name}: {name}" if value == 0 else f"{layer.name}: {name} ({value})"


def cursor_text(viewer: Any, world: Any | None = None) -> str:
    """What the status adds: every visible image's value and labels' class at ``world``.

    Parameters
    ----------
    viewer : napari.components.ViewerModel
    world : sequence of float, optional
        napari world coordinates (mm); the cursor by default.

    Returns
    -------
    str
        Parts joined by :data:`SEPARATOR`, top layer first ("" when no layer holds
        the point, or in a 3D view).
    """
    import napari.layers

    if viewer.dims.ndisplay != 2:
        return ""
    world = viewer.cursor.position if world is None else world
    parts = []
    for layer in reversed(viewer.layers):
        if not layer.visible or is_helper_layer(layer):
            continue
        if isinstance(layer, napari.layers.Labels):
            value = voxel_value(layer, world)
            if value is not None:
                parts.append(labels_text(layer, value))
        elif isinstance(layer, napari.layers.Image) and not layer.rgb:
            value = voxel_value(layer, world)
            if value is not None:
                parts.append(image_text(layer, value))
    return SEPARATOR.join(parts)


class _CursorStatus:
    """Adds :func:`cursor_text` to each status napari sets on one viewer."""

    def __init__(self, viewer: Any) -> None:
        self._viewer = weakref.ref(viewer)
        self._mine: Any = None  # the last status set here

    def on_status(self, event: Any) -> None:
        viewer = self._viewer()
        status = event.value
        if viewer is None or status is self._mine or status == self._mine:
            return
        if not getattr(viewer, "mouse_over_canvas", True):
            return
        try:
            extra = cursor_text(viewer)
        except (IndexError, ValueError, TypeError):  # a layer changing under the cursor
            return
        if not extra:
            return
        if isinstance(status, dict):
            status = dict(status)
            status["coordinates"] = f"{status.get('coordinates', '')}{SEPARATOR}{extra}"
        else:
            status = f"{status}{SEPARATOR}{extra}"
        event.blocked = True  # the one status everybody sees is the one below
        self._mine = status
        viewer.status = status


_HOOKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def install_cursor_status(viewer: Any) -> None:
    """Make a viewer's status name the HU and the labels under the cursor (idempotent).

    Parameters
    ----------
    viewer : napari.Viewer or napari.components.ViewerModel
        The viewer, or the public-only proxy napari hands a plugin widget.
    """
    viewer = unwrapped_viewer(viewer)
    if viewer in _HOOKS:
        return
    hook = _CursorStatus(viewer)
    _HOOKS[viewer] = hook
    viewer.events.status.connect(hook.on_status, position="first")


__all__ = [
    "SEPARATOR",
    "cursor_text",
    "image_text",
    "install_cursor_status",
    "labels_text",
    "voxel_index",
    "voxel_value",
]
