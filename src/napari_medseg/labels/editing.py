"""Label editing: operations on the binary mask of one label, and planning the change.

Every operation takes a boolean mask of ONE label and returns a new boolean mask of
the same shape; none of them modifies its input. Distances and sizes are physical:
``spacing_mm`` gives the voxel size in mm along each array axis, in the same axis
order as the array, so the functions work in any axis order (source ``(I, J, K)`` or
napari's display ``(S, P, L)``) and on anisotropic grids.

Conventions
-----------
* **Euclidean balls.** Margins and smoothing use balls in mm: growing by ``m`` mm adds
  every voxel whose centre lies within ``m`` mm of a voxel centre of the label;
  shrinking removes every voxel within ``m`` mm of a background voxel centre
  (``scipy.ndimage.distance_transform_edt`` with ``sampling=spacing_mm``). Opening and
  closing are shrink-then-grow and grow-then-shrink by the radius (the same as binary
  opening/closing with the ball structuring element, computed in O(N)).
* **Scan edges.** The label is assumed to continue past the edge of the array: a
  label cut by the field of view is not shrunk, opened or smoothed away from that
  edge (edge-replicated padding). Holes touching the array edge are not holes.
* **Crops.** Each operation works on the label's bounding box grown by how far it
  reaches (:func:`margin_reach`, :func:`smoothing_reach`), so its cost follows the
  label's size, not the scan's. Callers holding a big label map do the same with
  :func:`label_bounding_box` and :func:`expand_region`, and hand the crop's mask in:
  the crop must reach that far past the label or end at the scan's edge (a label
  touching the crop's edge is taken to continue past it). Interpolated shapes may
  move out of the drawn shapes' box in-plane: hand :func:`interpolate_slices` whole
  slices.
* **Connectivity** of components is 6, 18 or 26 (3D; see
  :mod:`napari_medseg.labels.components`); a 1-voxel-thick slab gives the in-plane 4- or
  8-connectivity of one slice.

:func:`plan_label_change` turns a new mask into the voxels of a label map that change
(a :class:`LabelChange`), honouring "overwrite other labels" or "preserve them", an
optional editable region (e.g. an HU range, :func:`in_range`) and locked labels: a
locked label neither loses nor gains a voxel (:func:`unlocked`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_medseg.errors import MedsegError
from napari_medseg.labels.components import (
    DEFAULT_CONNECTIVITY,
    Region,
    bounding_box,
    label_components,
)

#: Smoothing methods of :func:`smooth`.
SMOOTHING_METHODS = ("median", "opening", "closing")

#: Tolerance of distance comparisons, mm (so a voxel exactly at the radius counts).
_TOLERANCE_MM = 1e-6

#: Slices per chunk when scanning a big label map for a label's bounding box.
_BOX_CHUNK = 16


# -- regions ---------------------------------------------------------------------------


def label_bounding_box(
    labels: np.ndarray, value: int, within: Region | None = None
) -> Region | None:
    """Bounding box of the voxels of ``value`` in a label map, without a full-size copy.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map (any axis order, ndim >= 1).
    value : int
        Label value.
    within : tuple of slice, optional
        Look only inside this region (e.g. one slice); the box is in full-array indices.

    Returns
    -------
    tuple of slice or None
        None when the label has no voxel there.
    """
    within = _full_region(labels.shape, within)
    first_axis, rest = within[0], within[1:]
    along: list[int] = []
    low = [part.stop for part in rest]
    high = [part.start for part in rest]
    for start in range(first_axis.start, first_axis.stop, _BOX_CHUNK):
        stop = min(start + _BOX_CHUNK, first_axis.stop)
        box = bounding_box(np.asarray(labels[(slice(start, stop), *rest)]) == value)
        if box is None:
            continue
        along += [start + box[0].start, start + box[0].stop]
        for axis, (part, offset) in enumerate(zip(box[1:], rest, strict=True)):
            low[axis] = min(low[axis], offset.start + part.start)
            high[axis] = max(high[axis], offset.start + part.stop)
    if not along:
        return None
    return (
        slice(min(along), max(along)),
        *(slice(lo, hi) for lo, hi in zip(low, high, strict=True)),
    )


def expand_region(
    region: Region, reach: Sequence[int] | int, shape: Sequence[int], within: Region | None = None
) -> Region:
    """Grow a region by ``reach`` voxels per axis, clipped to ``within`` (default: the array)."""
    within = _full_region(shape, within)
    reach = _per_axis(reach, len(shape))
    return tuple(
        slice(max(r.start - n, w.start), min(r.stop + n, w.stop))
        for r, n, w in zip(region, reach, within, strict=True)
    )


def _full_region(shape: Sequence[int], region: Region | None) -> Region:
    """``region`` with every ``None`` bound replaced (the whole array when None)."""
    if region is None:
        return tuple(slice(0, int(n)) for n in shape)
    if len(region) != len(shape):
        raise ValueError(f"region has {len(region)} axes, the array {len(shape)}")
    return tuple(slice(*s.indices(int(n))[:2]) for s, n in zip(region, shape, strict=True))


def _per_axis(value: Sequence[int] | int, ndim: int) -> tuple[int, ...]:
    if np.isscalar(value):
        return (int(value),) * ndim
    values = tuple(int(v) for v in value)  # type: ignore[union-attr]
    if len(values) != ndim:
        raise ValueError(f"expected {ndim} values (one per axis), got {len(values)}")
    return values


def _spacing(spacing_mm: Sequence[float], ndim: int) -> np.ndarray:
    spacing = np.asarray(spacing_mm, dtype=float).ravel()
    if spacing.size != ndim:
        raise ValueError(f"spacing_mm has {spacing.size} values, the mask {ndim} axes")
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"voxel spacing must be positive mm, got {tuple(spacing)}")
    return spacing


def _as_mask(mask: np.ndarray) -> np.ndarray:
    return np.asarray(mask, dtype=bool)


def _on_padded_box(
    mask: np.ndarray, reach: Sequence[int], operation: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Run ``operation`` on the mask's bounding box grown by ``reach`` voxels.

    Where the grown box passes the edge of the array, the crop is padded by
    replicating the edge (the label continues past the scan). The result outside the
    grown box is False.
    """
    out = np.zeros(mask.shape, dtype=bool)
    box = bounding_box(mask)
    if box is None:
        return out
    grown = expand_region(box, reach, mask.shape)
    missing = [
        (n - (b.start - g.start), n - (g.stop - b.stop))
        for b, g, n in zip(box, grown, reach, strict=True)
    ]
    crop = mask[grown]
    padded = np.pad(crop, missing, mode="edge") if any(lo or hi for lo, hi in missing) else crop
    result = operation(padded)
    inner = tuple(slice(lo, result.shape[a] - hi) for a, (lo, hi) in enumerate(missing))
    out[grown] = result[inner]
    return out


# -- holes and components --------------------------------------------------------------


def fill_holes(mask: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Fill the holes of a mask: background not connected to the edge of the array.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean mask, any number of axes.
    axis : int, optional
        None: holes in 3D (a cavity inside a closed shell). Else fill each 2D slice
        perpendicular to this axis on its own (a hole in a slice that is open along
        ``axis`` is filled). Background is 6-connected (4-connected within a slice).

    Returns
    -------
    numpy.ndarray
        Boolean mask of the same shape.
    """
    mask = _as_mask(mask)
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    if axis is not None:
        axis = int(axis) % mask.ndim
        # no connection along `axis`: each slice is filled on its own, and the array's
        # faces across `axis` do not count as edges (there is no step onto them)
        structure[(slice(None),) * axis + (0,)] = False
        structure[(slice(None),) * axis + (2,)] = False
    out = mask.copy()
    box = bounding_box(mask)
    if box is not None:
        out[box] = ndimage.binary_fill_holes(mask[box], structure=structure)
    return out


def remove_islands(
    mask: np.ndarray,
    min_volume_ml: float,
    spacing_mm: Sequence[float],
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> np.ndarray:
    """Remove the connected components smaller than a volume.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean 3D mask (a 1-voxel-thick slab works on one slice).
    min_volume_ml : float
        Components of fewer than ``min_volume_ml`` mL (voxels x voxel volume) go;
        components of exactly that volume or more stay.
    spacing_mm : sequence of float
        Voxel size in mm per array axis.
    connectivity : int
        6, 18 or 26.

    Returns
    -------
    numpy.ndarray
        Boolean mask of the same shape.
    """
    mask = _as_mask(mask)
    voxel_ml = float(np.prod(_spacing(spacing_mm, mask.ndim))) / 1000.0
    if min_volume_ml < 0:
        raise ValueError(f"the minimum island volume must be >= 0 mL, got {min_volume_ml}")
    components, count, box = label_components(mask, connectivity)
    out = np.zeros(mask.shape, dtype=bool)
    if box is None:
        return out
    voxels = np.bincount(components.ravel(), minlength=count + 1)
    keep = voxels * voxel_ml >= min_volume_ml
    keep[0] = False
    out[box] = keep[components]
    return out


def keep_largest_component(
    mask: np.ndarray, connectivity: int = DEFAULT_CONNECTIVITY
) -> np.ndarray:
    """Keep only the largest connected component (the first in scan order on a tie)."""
    mask = _as_mask(mask)
    components, count, box = label_components(mask, connectivity)
    out = np.zeros(mask.shape, dtype=bool)
    if box is None:
        return out
    voxels = np.bincount(components.ravel(), minlength=count + 1)
    out[box] = components == 1 + int(np.argmax(voxels[1:]))
    return out


def split_instances(
    mask: np.ndarray, connectivity: int = DEFAULT_CONNECTIVITY
) -> tuple[np.ndarray, int]:
    """Number the connected components of a mask, largest first.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean 3D mask.
    connectivity : int
        6, 18 or 26.

    Returns
    -------
    instances : numpy.ndarray
        int32 array of the mask's shape: 0 outside, 1..n inside; 1 is the largest
        component, equal sizes keep scan order (of ``scipy.ndimage.label``).
    n : int
        Number of components.
    """
    mask = _as_mask(mask)
    out = np.zeros(mask.shape, dtype=np.int32)
    components, count, box = label_components(mask, connectivity)
    if box is None:
        return out, 0
    voxels = np.bincount(components.ravel(), minlength=count + 1)[1:]
    order = np.argsort(-voxels, kind="stable")  # component order[i]-1 becomes i+1
    renumber = np.zeros(count + 1, dtype=np.int32)
    renumber[order + 1] = np.arange(1, count + 1, dtype=np.int32)
    out[box] = renumber[components]
    return out, count


# -- distances: margins and smoothing ----------------------------------------------------


def _reach_voxels(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Voxels per axis within ``radius_mm`` of a voxel centre."""
    return np.floor((radius_mm + _TOLERANCE_MM) / spacing).astype(int)


def margin_reach(margin_mm: float, spacing_mm: Sequence[float]) -> tuple[int, ...]:
    """Voxels per axis that :func:`change_margin` needs around the label's bounding box."""
    spacing = _spacing(spacing_mm, len(spacing_mm))
    if margin_mm <= 0:
        return (1,) * spacing.size
    return tuple(int(n) + 1 for n in _reach_voxels(margin_mm, spacing))


def _grow(mask: np.ndarray, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Voxels within ``radius_mm`` of the mask (on a crop with room to grow)."""
    if not mask.any():
        return mask.copy()
    distance = ndimage.distance_transform_edt(~mask, sampling=spacing)
    return distance <= radius_mm + _TOLERANCE_MM


def _shrink(mask: np.ndarray, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Mask voxels farther than ``radius_mm`` from any background voxel of the crop."""
    if mask.all():  # no background in reach: nothing to shrink from
        return mask.copy()
    distance = ndimage.distance_transform_edt(mask, sampling=spacing)
    return distance > radius_mm + _TOLERANCE_MM


def change_margin(mask: np.ndarray, margin_mm: float, spacing_mm: Sequence[float]) -> np.ndarray:
    """Grow (``margin_mm > 0``) or shrink (``< 0``) a mask by a Euclidean distance.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean mask, any number of axes (a 2D slice works in-plane).
    margin_mm : float
        Distance in mm. Growing adds the voxels whose centre is within ``margin_mm``
        of a label voxel's centre; shrinking removes the label voxels within
        ``|margin_mm|`` of a background voxel's centre.
    spacing_mm : sequence of float
        Voxel size in mm per array axis.

    Returns
    -------
    numpy.ndarray
        Boolean mask of the same shape.
    """
    mask = _as_mask(mask)
    spacing = _spacing(spacing_mm, mask.ndim)
    if margin_mm == 0:
        return mask.copy()
    if margin_mm > 0:
        return _on_padded_box(
            mask, margin_reach(margin_mm, spacing), lambda m: _grow(m, margin_mm, spacing)
        )
    return _on_padded_box(mask, (1,) * mask.ndim, lambda m: _shrink(m, -margin_mm, spacing))


def ball_footprint(size_mm: float, spacing_mm: Sequence[float]) -> np.ndarray:
    """Ellipsoidal structuring element: a ball of diameter ``size_mm`` on the voxel grid.

    Parameters
    ----------
    size_mm : float
        Diameter in mm; an offset ``d`` (voxels) is inside when ``|d * spacing| <=
        size_mm / 2``.
    spacing_mm : sequence of float
        Voxel size in mm per array axis.

    Returns
    -------
    numpy.ndarray
        Boolean array of odd size per axis (1 along axes whose spacing exceeds the
        radius), centred.
    """
    spacing = _spacing(spacing_mm, len(spacing_mm))
    radius = float(size_mm) / 2.0
    half = _reach_voxels(radius, spacing)
    offsets = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    squared = sum((o * s) ** 2 for o, s in zip(offsets, spacing, strict=True))
    return np.sqrt(squared) <= radius + _TOLERANCE_MM


def smoothing_reach(method: str, size_mm: float, spacing_mm: Sequence[float]) -> tuple[int, ...]:
    """Voxels per axis that :func:`smooth` needs around the label's bounding box."""
    _check_method(method)
    half = _reach_voxels(float(size_mm) / 2.0, _spacing(spacing_mm, len(spacing_mm)))
    factor = 1 if method == "median" else 2
    return tuple(int(factor * h) + 1 for h in half)


def _check_method(method: str) -> None:
    if method not in SMOOTHING_METHODS:
        raise ValueError(f"smoothing method must be one of {SMOOTHING_METHODS}, got {method!r}")


def _majority(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Binary median: True where more than half of the footprint is True."""
    from scipy.signal import fftconvolve

    counts = fftconvolve(mask.astype(np.float32), footprint.astype(np.float32), mode="same")
    return counts > footprint.sum() / 2.0  # the footprint is odd-sized: never a tie


def smooth(
    mask: np.ndarray, method: str, size_mm: float, spacing_mm: Sequence[float]
) -> np.ndarray:
    """Smooth a mask with a ball of diameter ``size_mm`` (:func:`ball_footprint`).

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean mask, any number of axes (a 2D slice works in-plane).
    method : {"median", "opening", "closing"}
        ``median``: majority vote over the ball (removes bumps and fills dents
        smaller than the ball). ``opening``: removes parts thinner than the ball
        (spurs, thin bridges). ``closing``: fills gaps and dents narrower than it.
    size_mm : float
        Ball diameter in mm.
    spacing_mm : sequence of float
        Voxel size in mm per array axis.

    Returns
    -------
    numpy.ndarray
        Boolean mask of the same shape.

    Raises
    ------
    ValueError
        Unknown method, or a ball smaller than one voxel along every axis.
    """
    _check_method(method)
    mask = _as_mask(mask)
    spacing = _spacing(spacing_mm, mask.ndim)
    footprint = ball_footprint(size_mm, spacing)
    if footprint.size == 1:
        raise ValueError(
            f"a smoothing size of {size_mm:g} mm is smaller than the voxels "
            f"({', '.join(f'{s:g}' for s in spacing)} mm): choose at least "
            f"{2 * spacing.min():g} mm"
        )
    reach = smoothing_reach(method, size_mm, spacing)
    radius = float(size_mm) / 2.0
    if method == "median":
        return _on_padded_box(mask, reach, lambda m: _majority(m, footprint))
    if method == "opening":
        return _on_padded_box(
            mask, reach, lambda m: _grow(_shrink(m, radius, spacing), radius, spacing)
        )
    return _on_padded_box(
        mask, reach, lambda m: _shrink(_grow(m, radius, spacing), radius, spacing)
    )


# -- interpolation between slices ---------------------------------------------------------


def _signed_distance(plane: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Signed distance (mm) of a 2D mask to its edge: negative inside, positive outside.

    The edge lies half a pixel beyond the outermost pixel centres, so the first pixel
    inside is at -h/2 and the first outside at +h/2 (h: the finest in-plane spacing);
    interpolated contours then move smoothly instead of in whole-pixel steps.
    """
    inside = ndimage.distance_transform_edt(plane, sampling=spacing)
    outside = ndimage.distance_transform_edt(~plane, sampling=spacing)
    half = 0.5 * float(np.min(spacing))
    return np.where(plane, half - inside, outside - half)


def drawn_slices(mask: np.ndarray, axis: int) -> np.ndarray:
    """Indices along ``axis`` of the slices that hold at least one voxel of the mask."""
    mask = _as_mask(mask)
    others = tuple(a for a in range(mask.ndim) if a != axis % mask.ndim)
    return np.flatnonzero(mask.any(axis=others))


def interpolate_slices(
    mask: np.ndarray, axis: int, spacing_mm: Sequence[float] | None = None
) -> np.ndarray:
    """Fill the empty slices between drawn slices by shape-based interpolation.

    Between two consecutive drawn slices, each one's signed distance map (mm, within
    the slice) is moved towards the other by the matching fraction of the shift
    between their centroids, and the two are blended linearly along ``axis``; a
    voxel of an empty slice in between is inside where the blended distance is <= 0.
    This is shape-based interpolation as in 3D Slicer's "Fill between slices" (ITK's
    morphological contour interpolation, which also aligns the shapes): a growing or
    shrinking contour changes size smoothly and a drifting one moves, even when the
    drawn shapes do not overlap. Drawn slices are kept exactly; nothing is added
    before the first or after the last drawn slice.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean 3D mask (any axis order).
    axis : int
        The axis across the drawn slices (the one the user scrolls along).
    spacing_mm : sequence of float, optional
        Voxel size in mm per array axis (the in-plane spacing shapes the distance
        maps); isotropic when None.

    Returns
    -------
    numpy.ndarray
        Boolean mask of the same shape.
    """
    mask = _as_mask(mask)
    axis = int(axis) % mask.ndim
    spacing = _spacing(spacing_mm if spacing_mm is not None else (1.0,) * mask.ndim, mask.ndim)
    out = mask.copy()
    drawn = drawn_slices(mask, axis)
    if drawn.size < 2:
        return out
    moved = np.moveaxis(mask, axis, 0)
    target = np.moveaxis(out, axis, 0)  # a view: writes go to `out`
    in_plane = np.delete(spacing, axis)
    box = bounding_box(moved[drawn[0] : drawn[-1] + 1].any(axis=0))
    assert box is not None
    centroids = [ndimage.center_of_mass(moved[k]) for k in drawn]
    drift = np.abs(np.diff(centroids, axis=0)).max(axis=0)
    # room for the shapes to move, and one background voxel so every slice has an outside
    frame = expand_region(box, np.ceil(drift).astype(int) + 1, moved.shape[1:])
    plane_pad = [(1, 1)] * (mask.ndim - 1)
    inner = tuple(slice(1, f.stop - f.start + 1) for f in frame)

    def distance(k: int) -> np.ndarray:
        return _signed_distance(np.pad(moved[k][frame], plane_pad), in_plane)

    following = distance(drawn[0])
    for i, (first, last) in enumerate(zip(drawn[:-1], drawn[1:], strict=True)):
        previous, following = following, distance(last)
        shift = np.subtract(centroids[i + 1], centroids[i])
        gap = last - first
        for step in range(1, gap):
            t = step / gap
            a = ndimage.shift(previous, t * shift, order=1, mode="nearest")
            b = ndimage.shift(following, (t - 1.0) * shift, order=1, mode="nearest")
            target[(first + step, *frame)] = ((1.0 - t) * a + t * b)[inner] <= 0.0
    return out


# -- HU range -------------------------------------------------------------------------------


def in_range(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Voxels whose value lies in ``[low, high]`` (inclusive; NaN is outside).

    Parameters
    ----------
    image : numpy.ndarray
        Intensities (HU for CT), any shape.
    low, high : float
        Bounds in the image's units.
    """
    if not low <= high:
        raise ValueError(f"the range's low bound ({low:g}) is above its high bound ({high:g})")
    image = np.asarray(image)
    return (image >= low) & (image <= high)


# -- planning a change of a label map ------------------------------------------------------


class LockedLabelError(MedsegError):
    """An edit of a locked label was asked for; the message names the label."""


def unlocked(current: np.ndarray, new: np.ndarray | int, locked: Iterable[int]) -> np.ndarray:
    """Where a voxel may go from ``current`` to ``new`` while labels ``locked`` are locked.

    A locked label neither loses a voxel (its voxels keep their value) nor gains one
    (no voxel takes its value), whatever the edit: a brush stroke, the eraser, a fill,
    a label tool.

    Parameters
    ----------
    current : numpy.ndarray
        Label values now (any shape).
    new : numpy.ndarray or int
        The values wanted (``current``'s shape, or one value for every voxel).
    locked : iterable of int
        The locked label values.

    Returns
    -------
    numpy.ndarray
        Boolean, ``current``'s shape: True where the change is allowed.
    """
    current = np.asarray(current)
    values = np.fromiter((int(v) for v in locked), dtype=np.int64)
    if values.size == 0:
        return np.ones(current.shape, dtype=bool)
    free = ~np.isin(current, values)
    return free & ~np.isin(np.broadcast_to(np.asarray(new), current.shape), values)


def refuse_locked(value: int, locked: Iterable[int]) -> None:
    """Raise :class:`LockedLabelError` when label ``value`` is one of ``locked``."""
    if int(value) in {int(v) for v in locked}:
        raise LockedLabelError(f"label {int(value)} is locked; unlock it to edit it")


@dataclass(frozen=True)
class LabelChange:
    """The voxels of a label map that an edit changes, and their new values.

    Attributes
    ----------
    indices : tuple of numpy.ndarray
        One int64 array per axis of the label map (full-array indices, as numpy's
        advanced indexing and napari's ``Labels.data_setitem`` take them).
    values : numpy.ndarray
        New value of each voxel (the label map's dtype), same length.
    """

    indices: tuple[np.ndarray, ...]
    values: np.ndarray

    @property
    def count(self) -> int:
        """Number of changed voxels."""
        return int(self.values.size)

    def by_value(self) -> Iterator[tuple[int, tuple[np.ndarray, ...]]]:
        """``(new value, indices)`` for each distinct new value."""
        for value in np.unique(self.values):
            chosen = self.values == value
            yield int(value), tuple(index[chosen] for index in self.indices)

    def apply(self, labels: np.ndarray) -> None:
        """Write the change into a label map (in place)."""
        labels[self.indices] = self.values


def plan_relabel(
    labels: np.ndarray,
    new_values: np.ndarray,
    region: Region | None = None,
    *,
    locked: Iterable[int] = (),
) -> LabelChange:
    """The change that turns ``labels[region]`` into ``new_values``.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map.
    new_values : numpy.ndarray
        The wanted values of ``labels[region]`` (same shape).
    region : tuple of slice, optional
        Where ``new_values`` go (the whole map when None).
    locked : iterable of int
        Locked label values: voxels of them, and voxels that would become one of
        them, are left as they are (:func:`unlocked`).
    """
    region = _full_region(labels.shape, region)
    current = np.asarray(labels[region])
    if new_values.shape != current.shape:
        raise ValueError(f"new values have shape {new_values.shape}, the region {current.shape}")
    changed = current != new_values
    locked = tuple(locked)
    if locked:
        changed &= unlocked(current, new_values, locked)
    local = np.nonzero(changed)
    indices = tuple(
        index.astype(np.int64) + part.start for index, part in zip(local, region, strict=True)
    )
    return LabelChange(indices, new_values[changed].astype(labels.dtype, copy=False))


def plan_label_change(
    labels: np.ndarray,
    value: int,
    new_mask: np.ndarray,
    *,
    overwrite_other_labels: bool,
    allowed: np.ndarray | None = None,
    region: Region | None = None,
    locked: Iterable[int] = (),
) -> LabelChange:
    """The voxels that change when label ``value`` becomes ``new_mask``.

    ``value`` is set where ``new_mask`` is True (over the background and the label
    itself; over other labels too when ``overwrite_other_labels``); voxels of
    ``value`` where ``new_mask`` is False become background (0). Voxels where
    ``allowed`` is False never change, nor do voxels of a locked label.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map, any axis order.
    value : int
        Label value (> 0).
    new_mask : numpy.ndarray
        Boolean, the shape of ``labels[region]``: where the label should be.
    overwrite_other_labels : bool
        Whether the label may take voxels of other labels.
    allowed : numpy.ndarray, optional
        Boolean, the shape of ``labels[region]``: the voxels the edit may change.
    region : tuple of slice, optional
        The part of ``labels`` that ``new_mask`` covers (the whole map when None);
        nothing outside it changes.
    locked : iterable of int
        Locked label values: their voxels never change (other labels are kept there
        even when ``overwrite_other_labels``).

    Returns
    -------
    LabelChange

    Raises
    ------
    LockedLabelError
        ``value`` itself is locked.
    """
    value = int(value)
    if value <= 0:
        raise ValueError(f"the label to edit must be > 0, got {value}")
    locked = tuple(locked)
    refuse_locked(value, locked)
    region = _full_region(labels.shape, region)
    current = np.asarray(labels[region])
    new_mask = _as_mask(new_mask)
    if allowed is not None:
        allowed = _as_mask(allowed)
    if new_mask.shape != current.shape or (allowed is not None and allowed.shape != current.shape):
        raise ValueError(f"masks must have the region's shape {current.shape}")
    mine = current == value
    takes = new_mask & ~mine
    if not overwrite_other_labels:
        takes &= current == 0
    gives = mine & ~new_mask
    if allowed is not None:
        takes &= allowed
        gives &= allowed
    updated = current.copy()
    updated[takes] = value
    updated[gives] = 0
    return plan_relabel(labels, updated, region, locked=locked)


__all__ = [
    "SMOOTHING_METHODS",
    "LabelChange",
    "LockedLabelError",
    "Region",
    "ball_footprint",
    "bounding_box",
    "change_margin",
    "drawn_slices",
    "expand_region",
    "fill_holes",
    "in_range",
    "interpolate_slices",
    "keep_largest_component",
    "label_bounding_box",
    "margin_reach",
    "plan_label_change",
    "plan_relabel",
    "refuse_locked",
    "remove_islands",
    "smooth",
    "smoothing_reach",
    "split_instances",
    "unlocked",
]
