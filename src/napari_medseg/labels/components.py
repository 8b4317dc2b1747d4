"""Connected components of a binary mask: connectivity, structuring elements, labelling.

Connectivity is counted as in 3D imaging: 6 (faces), 18 (faces and edges) or 26
(faces, edges and corners) neighbours of a voxel. A 1-voxel-thick slab gives the
in-plane 4- or 8-connectivity of one slice. The label tools
(:mod:`napari_medseg.labels.editing`) and the lesion table
(:mod:`napari_medseg.measure.lesions`) both number components here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Connectivity (neighbours of a voxel) -> rank of scipy's ``generate_binary_structure``.
CONNECTIVITY_RANK = {6: 1, 18: 2, 26: 3}
#: Connectivity of lesions and of the label tools unless told otherwise.
DEFAULT_CONNECTIVITY = 26

#: A box of array indices, one slice per axis (stop excluded).
Region = tuple[slice, ...]


def structure_for(connectivity: int) -> np.ndarray:
    """3x3x3 boolean structuring element of a 3D connectivity (6, 18 or 26)."""
    if connectivity not in CONNECTIVITY_RANK:
        raise ValueError(f"connectivity must be 6, 18 or 26 in 3D, got {connectivity}")
    return ndimage.generate_binary_structure(3, CONNECTIVITY_RANK[connectivity])


def bounding_box(mask: np.ndarray) -> Region | None:
    """Bounding box of the True voxels of a mask as slices (None when empty)."""
    box: list[slice] = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others) if others else mask)
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def label_components(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int, Region | None]:
    """Connected components inside the mask's bounding box.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean 3D mask.
    connectivity : int
        6, 18 or 26.

    Returns
    -------
    components : numpy.ndarray
        int32 map of the crop ``mask[box]``: 0 outside, 1..count in scan order
        (``scipy.ndimage.label``); an empty array when the mask is empty.
    count : int
        Number of components.
    box : tuple of slice or None
        The crop in the mask's indices (None when the mask is empty).
    """
    box = bounding_box(mask)
    if box is None:
        return np.zeros((0,) * mask.ndim, dtype=np.int32), 0, None
    components, count = ndimage.label(mask[box], structure=structure_for(connectivity))
    return components, int(count), box


__all__ = [
    "CONNECTIVITY_RANK",
    "DEFAULT_CONNECTIVITY",
    "Region",
    "bounding_box",
    "label_components",
    "structure_for",
]
