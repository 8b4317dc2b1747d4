"""Apply label edits to a napari Labels layer as ONE undoable step, and find where to edit.

A label tool plans its change with :mod:`napari_medseg.labels.editing` (on a crop of the
layer's data) and writes it here with :func:`apply_label_change`: every changed voxel
goes through ``Labels.data_setitem`` inside ``Labels.block_history()``, so napari
records the whole run as one history item: one ``layer.undo()`` (Ctrl+Z) reverts it,
``layer.redo()`` re-applies it, and ``events.paint`` is emitted once (which is how
:mod:`napari_medseg._napari.edit_state` sees the edit). Only the changed voxels are
stored (their indices and old values), never a copy of the volume.

Layer data is in napari's display axes (S, P, L) with ``layer.scale`` the voxel size
in mm along them, so :func:`layer_spacing` is the spacing the core functions take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_medseg._napari.label_locks import locked_labels
from napari_medseg.errors import MedsegError
from napari_medseg.labels.editing import (
    LabelChange,
    Region,
    plan_label_change,
    plan_relabel,
    refuse_locked,
)


class LabelEditError(MedsegError):
    """A label edit cannot be done on this layer; the message names the layer and why."""


def apply_label_change(layer: Any, change: LabelChange) -> int:
    """Write a planned change into a labels layer as one undo step.

    Parameters
    ----------
    layer : napari.layers.Labels
    change : LabelChange
        Voxel indices in the layer's data axes and their new values.

    Returns
    -------
    int
        Number of voxels changed (0: nothing written, no history item).
    """
    groups = list(change.by_value())
    if not groups:
        return 0
    with layer.block_history():
        for number, (value, indices) in enumerate(groups, start=1):
            # one refresh of the accumulated region, after the last write
            layer.data_setitem(indices, value, refresh=number == len(groups))
    return change.count


def apply_mask_edit(
    layer: Any,
    value: int,
    new_mask: np.ndarray,
    *,
    region: Region | None = None,
    overwrite_other_labels: bool | None = None,
    allowed: np.ndarray | None = None,
) -> int:
    """Make label ``value`` of a layer equal to ``new_mask`` (in ``region``), as one undo step.

    Parameters
    ----------
    layer : napari.layers.Labels
    value : int
        Label value (> 0).
    new_mask : numpy.ndarray
        Boolean, the shape of ``layer.data[region]``.
    region : tuple of slice, optional
        Where ``new_mask`` lies in the layer's data (the whole layer when None).
    overwrite_other_labels : bool, optional
        Default: the layer's own setting (``not layer.preserve_labels``).
    allowed : numpy.ndarray, optional
        Boolean, the shape of ``new_mask``: the only voxels that may change.

    Returns
    -------
    int
        Number of voxels changed.
    """
    if overwrite_other_labels is None:
        overwrite_other_labels = not layer.preserve_labels
    change = plan_label_change(
        layer.data,
        value,
        new_mask,
        overwrite_other_labels=overwrite_other_labels,
        allowed=allowed,
        region=region,
        locked=locked_labels(layer),  # locked labels (the Segments list) stay as they are
    )
    return apply_label_change(layer, change)


def _free_values(layer: Any, count: int) -> np.ndarray:
    """``count`` label values above every value of the layer's data and classes."""
    from napari_medseg._napari.label_classes import layer_classes

    used = max([int(np.max(layer.data)), *layer_classes(layer)], default=0)
    values = np.arange(used + 1, used + 1 + count, dtype=np.int64)
    dtype = np.dtype(layer.data.dtype)
    if dtype.kind in "iu" and count and values[-1] > np.iinfo(dtype).max:
        raise LabelEditError(
            f"layer '{layer.name}' ({dtype}) has no room for {count} more label values "
            f"(the highest is {np.iinfo(dtype).max}); convert it to a wider type first "
            "(right-click the layer: Convert data type > Convert to uint16)"
        )
    return values.astype(dtype)


def apply_instances(layer: Any, value: int, instances: np.ndarray, region: Region) -> int:
    """Give instances 2..n of label ``value`` new label values, as one undo step.

    Instance 1 (the largest, see :func:`napari_medseg.labels.editing.split_instances`) keeps
    ``value``; the others get the next unused values in order. When the layer keeps
    class names (features), the new values are named ``"<name> 2"``, ``"<name> 3"``...
    and coloured with napari's label colours.

    Parameters
    ----------
    layer : napari.layers.Labels
    value : int
        The label that was split.
    instances : numpy.ndarray
        Instance map (0, 1..n) of ``layer.data[region]``.
    region : tuple of slice
        Where ``instances`` lies in the layer's data.

    Returns
    -------
    int
        Number of voxels relabelled.
    """
    from napari.utils.colormaps import label_colormap

    from napari_medseg._napari.label_classes import hex_color, layer_classes, set_label_classes
    from napari_medseg.labels.classes import default_name

    refuse_locked(value, locked_labels(layer))
    count = int(instances.max(initial=0))
    if count < 2:
        return 0
    new_values = _free_values(layer, count - 1)
    updated = np.asarray(layer.data[region]).copy()
    pieces = instances >= 2
    updated[pieces] = new_values[instances[pieces] - 2]
    changed = apply_label_change(layer, plan_relabel(layer.data, updated, region))
    classes = layer_classes(layer)
    if classes:  # else napari's own names and colours apply to the new values
        base = classes.get(int(value), (default_name(int(value)), ""))[0]
        colours = label_colormap().map(np.asarray(new_values, dtype=np.int64))
        set_label_classes(
            layer,
            {
                int(new): (f"{base} {number}", hex_color(colour, unit=True))
                for number, (new, colour) in enumerate(
                    zip(new_values, colours, strict=True), start=2
                )
            },
        )
    return changed


def select_edited_layer(viewer: Any, layer: Any) -> None:
    """Make ``layer`` the viewer's selected (active) layer after an edit of it.

    napari's Ctrl+Z undoes an edit of the *selected* layer only; the tools edit the
    layer chosen in their own combo, often while the scan is selected. Selecting the
    edited layer makes Ctrl+Z (and the layer controls) act on what was just changed.

    Parameters
    ----------
    viewer : napari.Viewer
    layer : napari.layers.Layer
        The layer just edited (nothing happens when it is not in the viewer).
    """
    if layer in viewer.layers and viewer.layers.selection.active is not layer:
        viewer.layers.selection.active = layer


def layer_spacing(layer: Any) -> tuple[float, ...]:
    """Voxel size in mm along the layer's data axes (``|layer.scale|``)."""
    return tuple(abs(float(s)) for s in layer.scale)


@dataclass(frozen=True)
class ViewSlice:
    """The slice of a 3D layer the viewer shows (or would show in 2D).

    Attributes
    ----------
    axis : int
        The layer's data axis across the view (the one the slider moves along).
    index : int
        Index of the current slice along ``axis``.
    """

    axis: int
    index: int

    def region(self, shape: tuple[int, ...]) -> Region:
        """Slices selecting this one slice of an array of ``shape`` (keeps its axis)."""
        return tuple(
            slice(self.index, self.index + 1) if a == self.axis else slice(0, n)
            for a, n in enumerate(shape)
        )


def view_slice(viewer: Any, layer: Any, *, current: bool = False) -> ViewSlice:
    """The slice of ``layer`` under the viewer's sliders.

    The axis is the one the 2D view slices along (the first of ``viewer.dims.order``
    for a 3D layer); in the 3D view it is the axis the 2D view would slice.

    Parameters
    ----------
    viewer : napari.Viewer
    layer : napari.layers.Labels
    current : bool
        The caller edits the current slice: the viewer must show 2D and the slice
        must lie inside the layer (else only the axis is needed).

    Raises
    ------
    LabelEditError
        The layer is not 3D or is rotated/sheared against the world axes; with
        ``current``, the view is 3D or the current slice lies outside the layer.
    """
    name = layer.name
    if layer.ndim != 3:
        raise LabelEditError(f"layer '{name}' has {layer.ndim} dimensions; label tools need 3D")
    if current and viewer.dims.ndisplay != 2:
        raise LabelEditError(
            f"layer '{name}': 'this slice' needs the 2D view (the 3D view shows no slice)"
        )
    linear = np.asarray(layer.affine.linear_matrix) @ np.asarray(layer.rotate)
    if not np.allclose(linear, np.diag(np.diag(linear))) or np.any(layer.shear):
        raise LabelEditError(
            f"layer '{name}' is rotated or sheared against the viewer's axes; "
            "its slices are not the viewer's slices"
        )
    axis = list(viewer.dims.order)[-3] - (viewer.dims.ndim - layer.ndim)
    if not 0 <= axis < layer.ndim:
        raise LabelEditError(f"layer '{name}': the sliced axis is not one of the layer's axes")
    index = int(np.round(layer.world_to_data(viewer.dims.point)[axis]))
    if current and not 0 <= index < layer.data.shape[axis]:
        raise LabelEditError(
            f"layer '{name}': the current slice ({index}) is outside the layer "
            f"(0..{layer.data.shape[axis] - 1} along axis {axis})"
        )
    return ViewSlice(axis=axis, index=index)


def image_on_labels_grid(image: Any, labels: Any) -> Any:
    """The image layer's data, checked to lie voxel for voxel on the labels layer's grid.

    Raises
    ------
    LabelEditError
        Naming both layers: multiscale or RGB image, other shape, or other placement
        (scale, translate or affine) in the world.
    """
    where = f"image layer '{image.name}'"
    if getattr(image, "multiscale", False):
        raise LabelEditError(f"{where} is multiscale; open the scan at full resolution")
    if getattr(image, "rgb", False):
        raise LabelEditError(f"{where} is an RGB image, not intensities")
    shape, labels_shape = tuple(image.data.shape), tuple(labels.data.shape)
    if shape != labels_shape:
        raise LabelEditError(
            f"{where} (shape {shape}) is not on the grid of labels layer "
            f"'{labels.name}' (shape {labels_shape})"
        )
    placed = all(
        np.allclose(np.asarray(getattr(image, attr)), np.asarray(getattr(labels, attr)))
        for attr in ("scale", "translate")
    ) and np.allclose(image.affine.affine_matrix, labels.affine.affine_matrix)
    if not placed:
        raise LabelEditError(
            f"{where} and labels layer '{labels.name}' have the same shape but are placed "
            "differently in the world (scale, translate or affine)"
        )
    return image.data


__all__ = [
    "LabelEditError",
    "image_on_labels_grid",
    "ViewSlice",
    "apply_instances",
    "apply_label_change",
    "apply_mask_edit",
    "layer_spacing",
    "select_edited_layer",
    "view_slice",
]
