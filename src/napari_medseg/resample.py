"""Bring a label map from one voxel grid onto another, by nearest neighbour in patient mm.

Used to put a model's labels (computed on the model's grid) back onto the scan's grid,
and a reference segmentation stored on another grid onto the scan's grid before it is
compared. Labels are never interpolated: every target voxel takes the label of the
source voxel whose centre is nearest to its own centre (in source voxel index space).
"""

from __future__ import annotations

import numpy as np

#: Relative tolerance under which a grid-to-grid index map counts as a pure
#: permutation/flip with integer scale and offset (the separable fast path).
_AXIS_ALIGNED_TOL = 1e-6

#: Slack, in source voxels, on the field-of-view edge test (float noise in affines).
_EDGE_TOL = 1e-6


def grid_transform(affine: np.ndarray, target_affine: np.ndarray) -> np.ndarray:
    """4x4 map from target voxel indices to source voxel indices.

    Parameters
    ----------
    affine : numpy.ndarray
        4x4 voxel -> RAS mm matrix of the source grid.
    target_affine : numpy.ndarray
        4x4 voxel -> RAS mm matrix of the target grid.
    """
    return np.linalg.inv(np.asarray(affine, dtype=float)) @ np.asarray(target_affine, dtype=float)


def same_grid(
    shape_a: tuple[int, ...],
    affine_a: np.ndarray,
    shape_b: tuple[int, ...],
    affine_b: np.ndarray,
    tol_mm: float = 1e-3,
) -> bool:
    """Whether two grids have the same shape and place every voxel within ``tol_mm``.

    Parameters
    ----------
    shape_a, shape_b : tuple of int
        Voxel counts ``(I, J, K)``.
    affine_a, affine_b : numpy.ndarray
        4x4 voxel -> RAS mm matrices.
    tol_mm : float
        Largest allowed displacement of a corner voxel, in mm.
    """
    if tuple(shape_a) != tuple(shape_b):
        return False
    corners = np.array(
        [
            [i, j, k, 1.0]
            for i in (0, shape_a[0] - 1)
            for j in (0, shape_a[1] - 1)
            for k in (0, shape_a[2] - 1)
        ]
    ).T
    delta = (np.asarray(affine_a, float) - np.asarray(affine_b, float)) @ corners
    return bool(np.abs(delta[:3]).max() <= tol_mm)


def resample_labels(
    labels: np.ndarray,
    affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    fill: int = 0,
) -> np.ndarray:
    """Resample a label map onto another voxel grid by nearest neighbour.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map, shape ``(I, J, K)`` on the source grid.
    affine : numpy.ndarray
        4x4 voxel -> RAS mm matrix of ``labels``.
    target_shape : tuple of int
        Voxel counts ``(I', J', K')`` of the target grid.
    target_affine : numpy.ndarray
        4x4 voxel -> RAS mm matrix of the target grid.
    fill : int
        Label of target voxels whose centre falls outside the source's field of view
        (more than half a voxel beyond its outermost voxel centres).

    Returns
    -------
    numpy.ndarray
        Shape ``target_shape``, dtype of ``labels``.

    Notes
    -----
    When the source and target axes are parallel (the usual case: a model grid made
    by reorienting and rescaling the scan's grid), the index map is separable and the
    result is gathered with one fancy-indexing pass, without computing coordinates per
    voxel. Otherwise (oblique or sheared relative to each other) each target voxel
    centre is mapped through the 4x4 transform. Ties (a centre exactly half-way
    between two source voxels) round half up, towards the higher index.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be 3D (I, J, K), got shape {labels.shape}")
    target_shape = tuple(int(n) for n in target_shape)
    transform = grid_transform(affine, target_affine)
    linear = transform[:3, :3]
    # source axis fed by each target axis, when every column has one non-zero entry
    owner = np.argmax(np.abs(linear), axis=0)
    off_axis = np.abs(linear).sum(axis=0) - np.abs(linear[owner, range(3)])
    scale = np.abs(linear).max()
    if sorted(owner.tolist()) == [0, 1, 2] and np.all(off_axis <= _AXIS_ALIGNED_TOL * scale):
        return _resample_separable(labels, transform, owner, target_shape, fill)
    return _resample_general(labels, transform, target_shape, fill)


def _nearest_index(coordinate: np.ndarray) -> np.ndarray:
    """Round voxel coordinates to the nearest index (half up), tolerant of float noise."""
    return np.floor(coordinate + 0.5 + 1e-6).astype(np.int64)


def _within_field_of_view(coordinate: np.ndarray, size: int) -> np.ndarray:
    """Whether source voxel coordinates lie inside the source's field of view.

    The field of view reaches half a voxel beyond the outermost voxel centres
    (``-0.5 <= c <= size - 0.5``); a centre on that edge takes the edge voxel's
    label, as MONAI's ``border`` padding does when it inverts a resampling.
    """
    return (coordinate >= -0.5 - _EDGE_TOL) & (coordinate <= size - 0.5 + _EDGE_TOL)


def _resample_separable(
    labels: np.ndarray,
    transform: np.ndarray,
    owner: np.ndarray,
    target_shape: tuple[int, int, int],
    fill: int,
) -> np.ndarray:
    """Gather for axis-parallel grids: per target axis, one 1D index map."""
    per_target_axis = []
    valid_axes = []
    for target_axis in range(3):
        source_axis = int(owner[target_axis])
        steps = np.arange(target_shape[target_axis], dtype=float)
        coordinate = transform[source_axis, target_axis] * steps + transform[source_axis, 3]
        index = _nearest_index(coordinate)
        valid = _within_field_of_view(coordinate, labels.shape[source_axis])
        per_target_axis.append(np.clip(index, 0, labels.shape[source_axis] - 1))
        valid_axes.append(valid)
    # order the source axes as the target axes: source axis owner[t] feeds target axis t
    source_view = np.transpose(labels, axes=[int(a) for a in owner])
    out = source_view[np.ix_(*per_target_axis)]
    if not all(v.all() for v in valid_axes):
        inside = np.ix_(*valid_axes)
        mask = np.zeros(target_shape, dtype=bool)
        mask[inside] = True
        out = np.where(mask, out, np.asarray(fill, dtype=labels.dtype))
    return np.ascontiguousarray(out, dtype=labels.dtype)


def _resample_general(
    labels: np.ndarray,
    transform: np.ndarray,
    target_shape: tuple[int, int, int],
    fill: int,
) -> np.ndarray:
    """Map every target voxel centre through the transform, one target slab at a time."""
    out = np.empty(target_shape, dtype=labels.dtype)
    i_idx, j_idx = np.meshgrid(
        np.arange(target_shape[0], dtype=float),
        np.arange(target_shape[1], dtype=float),
        indexing="ij",
    )
    for k in range(target_shape[2]):  # slab by slab keeps memory at one target slice
        coords = (
            transform[:3, 0, None, None] * i_idx
            + transform[:3, 1, None, None] * j_idx
            + transform[:3, 2, None, None] * k
            + transform[:3, 3, None, None]
        )
        index = _nearest_index(coords)
        inside = np.ones(target_shape[:2], dtype=bool)
        for axis in range(3):
            inside &= _within_field_of_view(coords[axis], labels.shape[axis])
            np.clip(index[axis], 0, labels.shape[axis] - 1, out=index[axis])
        values = labels[index[0], index[1], index[2]]
        out[:, :, k] = np.where(inside, values, np.asarray(fill, dtype=labels.dtype))
    return out
