"""Restrict napari's own painting on a labels layer to voxels whose image value is in a range.

With :class:`RangeRestriction` on, brush strokes, erasing, the fill bucket and
polygons on the layer change only voxels where the image (on the same grid) lies in
``[low, high]`` (HU for CT), the way 3D Slicer's "editable intensity range" works.
The voxels outside the range are left out *before* napari writes and records them,
so the display never shows them painted, the undo history holds only the voxels
that changed, and one undo still reverts the whole stroke.

How: :func:`~napari_medseg._napari.history.filter_painting` wraps the private napari
method every paint operation funnels through (napari 0.8+) on the one layer
instance, and the restriction ANDs its mask with the image's range test in the same
box. It composes with the other paint filter, locked labels
(:mod:`~napari_medseg._napari.label_locks`): a stroke changes only voxels in the
range that belong to no locked label. When a napari version lacks that hook,
:class:`RangeRestriction` refuses to start with a clear error instead of silently
painting everywhere.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from napari_medseg._napari.history import can_filter_painting, filter_painting, paint_hook_name
from napari_medseg._napari.label_edit import LabelEditError
from napari_medseg.labels.editing import in_range


def _checked(low: float, high: float) -> tuple[float, float]:
    if not float(low) <= float(high):
        raise LabelEditError(
            f"the HU range's low bound ({low:g}) is above its high bound ({high:g})"
        )
    return float(low), float(high)


class RangeRestriction:
    """Limit painting on one labels layer to voxels where ``low <= image <= high``.

    Parameters
    ----------
    layer : napari.layers.Labels
        The layer painted on.
    image : numpy.ndarray
        Intensities on the layer's grid (same shape and axis order as ``layer.data``).
    low, high : float
        The editable range, in the image's units (HU for CT), inclusive.
    """

    def __init__(self, layer: Any, image: np.ndarray, low: float, high: float) -> None:
        if not can_filter_painting(layer):
            raise LabelEditError(
                f"layer '{layer.name}': this napari version has no paint hook "
                f"({paint_hook_name()}); painting cannot be limited to an HU range"
            )
        if tuple(image.shape) != tuple(layer.data.shape):
            raise LabelEditError(
                f"layer '{layer.name}': the image has shape {tuple(image.shape)}, "
                f"the labels {tuple(layer.data.shape)}"
            )
        self.image = image
        self.low, self.high = _checked(low, high)
        self._layer = weakref.ref(layer)
        restriction = weakref.ref(self)  # the layer's hook must not keep the restriction alive

        def keep(
            data: np.ndarray, mask: np.ndarray, new_label: int, slice_key: tuple[slice, ...]
        ) -> np.ndarray:
            active = restriction()
            if active is None:
                return mask
            return mask & in_range(np.asarray(active.image[slice_key]), active.low, active.high)

        # replaces an earlier restriction's filter; locked labels stay locked
        self._stop = filter_painting(layer, keep, key="hu-range")

    @property
    def layer(self) -> Any:
        """The restricted layer (None once it is gone)."""
        return self._layer()

    def set_range(self, low: float, high: float) -> None:
        """Change the editable range (inclusive)."""
        self.low, self.high = _checked(low, high)

    def stop(self) -> None:
        """Paint everywhere again (idempotent)."""
        self._stop()
        self._layer = lambda: None


__all__ = ["RangeRestriction"]
