"""Process-local registry of the scan geometries the plugin has shown.

Why: a labels layer made by napari itself (the "new labels" button,
``viewer._new_labels()``, or ``viewer.add_labels(np.zeros_like(image.data),
scale=image.scale, translate=image.translate)``) carries none of our metadata.
In napari 0.9.2 such a layer copies the active image's ``data.shape``, ``scale``
and ``translate`` exactly: there is no half-voxel offset, because napari's
layer extents are voxel-centre based (``_extent_data`` is ``[0, shape - 1]``;
only the *augmented* extent adds +/- 0.5 voxel). When several layers are
selected napari builds the new layer from the world extent of the selection,
whose minimum is again the first voxel *centre*, so the grid is the same
whenever the selected layers share it. The writer can therefore match such a
layer to the scan it was drawn on by its grid (shape, scale, translate) with
:meth:`DisplayGeometry.matches_grid`, and save it on the scan's true voxel grid.

When the user moves the scan in the viewer (its translate changes), napari's
new layer copies the *moved* grid: the writer then matches it against the
plugin layers of the open viewers as they are placed now, and, failing that,
against the registered grids of the same shape and voxel size
(:func:`find_by_shape_and_scale`), see :mod:`.writer`.

The registry holds the ``metadata["medseg"]`` dicts of every layer the plugin
produced in this process (most recent last, at most :data:`MAX_ENTRIES`).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_medseg.geometry import DisplayGeometry

#: Oldest entries are forgotten beyond this many distinct geometries.
MAX_ENTRIES = 256

_lock = threading.Lock()
_entries: list[RegisteredGeometry] = []


@dataclass(frozen=True)
class RegisteredGeometry:
    """A scan geometry shown by the plugin.

    Attributes
    ----------
    geometry : DisplayGeometry
        Source affine/shape and the display grid napari shows it on.
    medseg : dict
        Copy of the layer's ``metadata["medseg"]`` (source path, format,
        qform/sform codes...).
    """

    geometry: DisplayGeometry
    medseg: dict[str, Any]

    @property
    def source(self) -> str:
        """Path of the scan this geometry came from ("" if unknown)."""
        return str(self.medseg.get("source", ""))

    def same_source_grid(self, other: RegisteredGeometry) -> bool:
        """Whether both entries save to the same stored voxel grid (order included)."""
        a, b = self.geometry, other.geometry
        return (
            tuple(a.source_shape) == tuple(b.source_shape)
            and np.allclose(a.source_affine, b.source_affine, atol=1e-6)
            and np.array_equal(a.transform, b.transform)
        )


def _key(medseg: dict[str, Any]) -> tuple:
    affine = np.round(np.asarray(medseg["source_affine"], dtype=float), 6)
    return (
        str(medseg.get("source", "")),
        tuple(int(n) for n in medseg["source_shape"]),
        affine.tobytes(),
    )


def register(medseg: dict[str, Any]) -> RegisteredGeometry:
    """Remember a geometry (a ``metadata["medseg"]`` dict, see :mod:`.layers`).

    Registering the same source and grid again moves it to the most-recent end.
    """
    entry = RegisteredGeometry(DisplayGeometry.from_dict(medseg), copy.deepcopy(medseg))
    key = _key(medseg)
    with _lock:
        _entries[:] = [e for e in _entries if _key(e.medseg) != key]
        _entries.append(entry)
        del _entries[:-MAX_ENTRIES]
    return entry


def find_by_grid(
    shape: Sequence[int], scale: Sequence[float], translate: Sequence[float], tol_mm: float = 1e-3
) -> list[RegisteredGeometry]:
    """Registered geometries whose display grid is this layer grid, most recent first.

    Parameters
    ----------
    shape : sequence of int
        Layer data shape, napari axis order ``(S, P, L)``.
    scale, translate : sequence of float
        Layer scale and translate (mm), same order.
    tol_mm : float
        Tolerance on scale and translate, in mm.
    """
    if len(shape) != 3 or len(scale) != 3 or len(translate) != 3:
        return []
    scale_arr = np.asarray(scale, dtype=float)
    translate_arr = np.asarray(translate, dtype=float)
    with _lock:
        entries = list(_entries)
    return [
        e
        for e in reversed(entries)
        if e.geometry.matches_grid(tuple(shape), scale_arr, translate_arr, tol_mm=tol_mm)
    ]


def recency(medseg: dict[str, Any]) -> int:
    """How recently this geometry was registered: larger is more recent, -1 if never.

    Parameters
    ----------
    medseg : dict
        A ``metadata["medseg"]`` dict (see :mod:`.layers`).
    """
    try:
        key = _key(medseg)
    except (KeyError, TypeError, ValueError):
        return -1
    with _lock:
        for index in range(len(_entries) - 1, -1, -1):
            if _key(_entries[index].medseg) == key:
                return index
    return -1


def find_by_shape_and_scale(
    shape: Sequence[int], scale: Sequence[float], tol_mm: float = 1e-3
) -> list[RegisteredGeometry]:
    """Registered geometries with this display shape and voxel size, at any position.

    Used for a layer on a scan's grid that the user moved in the viewer (napari's
    *New labels* copies the moved image's translate). Most recent first.
    """
    if len(shape) != 3 or len(scale) != 3:
        return []
    scale_arr = np.asarray(scale, dtype=float)
    with _lock:
        entries = list(_entries)
    return [
        e
        for e in reversed(entries)
        if tuple(int(n) for n in shape) == tuple(e.geometry.display_shape)
        and np.allclose(scale_arr, e.geometry.scale, atol=tol_mm)
    ]


def registered_sources(exclude_kind: str | None = None) -> list[str]:
    """Source paths of the registered geometries (for the writer's overwrite guard).

    Parameters
    ----------
    exclude_kind : str, optional
        Leave out entries of this layer kind (e.g. ``"labels"``).
    """
    with _lock:
        return [
            e.source
            for e in _entries
            if e.source and (exclude_kind is None or e.medseg.get("kind") != exclude_kind)
        ]


def clear() -> None:
    """Forget every geometry (tests)."""
    with _lock:
        _entries.clear()
