"""Restrict napari's own painting on a labels layer to voxels whose image value is in a range.

With :class:`RangeRestriction` on, brush strokes, erasing, the fill bucket and
polygons on the layer change only voxels where the image (on the same grid) lies in
``[low, high]`` (HU for CT), the way 3D Slicer's "editable intensity range" works.
The voxels outside the range are left out *before* napari writes and records them,
so the display never shows them painted, the undo history holds only the voxels
that changed, and one undo still reverts the whole stroke.

How: every napari paint operation (``paint``, ``fill``, ``paint_polygon``, on numpy,
zarr or dask data) funnels through ``Labels._apply_mask_to_data(data, mask,
new_label, slice_key)``, which writes the masked voxels of a bounding box and saves
the history atom. The restriction wraps that method on the one layer instance (the
class is untouched) and ANDs the mask with the image's range test in the same box.
The hook is private napari API (present in napari 0.5-0.9); when it is missing,
:class:`RangeRestriction` refuses to start with a clear error instead of silently
painting everywhere.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from napari_medseg._napari.label_edit import LabelEditError
from napari_medseg.labels.editing import in_range

#: The Labels method every paint operation calls with (data, mask, new_label, slice_key).
_HOOK = "_apply_mask_to_data"


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
        if not callable(getattr(type(layer), _HOOK, None)):
            raise LabelEditError(
                f"layer '{layer.name}': this napari version has no paint hook "
                f"(Labels.{_HOOK}); painting cannot be limited to an HU range"
            )
        if tuple(image.shape) != tuple(layer.data.shape):
            raise LabelEditError(
                f"layer '{layer.name}': the image has shape {tuple(image.shape)}, "
                f"the labels {tuple(layer.data.shape)}"
            )
        self.image = image
        self.low, self.high = _checked(low, high)
        self._layer = weakref.ref(layer)
        # look the hook up on the class: a second restriction replaces the first
        original = getattr(type(layer), _HOOK).__get__(layer)
        restriction = weakref.ref(self)

        def restricted(data, mask, new_label, slice_key):
            active = restriction()
            if active is not None:
                mask = mask & in_range(np.asarray(active.image[slice_key]), active.low, active.high)
            return original(data, mask, new_label, slice_key)

        self._hook = restricted
        setattr(layer, _HOOK, restricted)

    @property
    def layer(self) -> Any:
        """The restricted layer (None once it is gone)."""
        return self._layer()

    def set_range(self, low: float, high: float) -> None:
        """Change the editable range (inclusive)."""
        self.low, self.high = _checked(low, high)

    def stop(self) -> None:
        """Paint everywhere again (idempotent)."""
        layer = self._layer()
        if layer is not None and vars(layer).get(_HOOK) is self._hook:
            delattr(layer, _HOOK)
        self._layer = lambda: None


__all__ = ["RangeRestriction"]
