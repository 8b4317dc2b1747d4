"""Labels of class scores interpolated onto another grid, interpolating only where it matters.

A MONAI bundle such as the Model Zoo's ``spleen_ct_segmentation`` ends its
postprocessing with ``Activationsd(softmax) -> Invertd(nearest_interp=False) ->
AsDiscreted(argmax)``: it interpolates the probabilities of *every* class from the model
grid onto the scan grid (trilinear, the inverse of its ``Spacingd``) and takes the
argmax there. Taking the argmax on the model grid and bringing labels back by nearest
neighbour gives other labels near boundaries; interpolating every class everywhere costs
``K`` float volumes of the scan's size. This module gives the bundle's labels without
either.

Why it works: the trilinear value at a target voxel is a convex combination of the
values at the ``2 x 2 x 2`` model voxels around it (its *cell*). If all of them have the
same argmax ``c`` (``numpy.argmax``'s rule: the first maximum), then so has any convex
combination of them: component ``c`` is ``>=`` every other in each corner, hence in the
sum, and ``>`` every lower-indexed one. Likewise a threshold: when all corners are on
(``>= t``) or all off, so is the interpolated value. So the labels on the model grid
decide every target voxel whose cell agrees, and only the voxels whose cells disagree
(those within one model voxel of a label boundary) need their values interpolated, from
the model grid, one chunk at a time.

Conventions, matching MONAI's ``SpatialResample`` (``Spacingd``'s inverse: torch
``grid_sample`` in ``bilinear`` mode, any ``align_corners``, since MONAI normalises the
voxel-to-voxel matrix with the same convention it samples with) and
``scipy.ndimage.affine_transform(order=1)``:

* target voxel centres are mapped into model voxel indices through the affines;
* ``padding_mode="border"`` (MONAI's default for ``Spacingd``; scipy ``mode="nearest"``):
  coordinates beyond the model grid are clamped to its outermost voxel centres;
* ``padding_mode="zeros"`` (scipy ``mode="grid-constant"``, ``cval=0``): model voxels
  beyond the grid count as zeros, i.e. the grid is padded with one layer of zeros and
  then clamped. A zero score vector has argmax 0 and is neutral in any combination with
  vectors whose argmax is 0, so it joins label 0's cells.

Results equal the brute force (every value interpolated, then argmax or threshold)
except where the decision is a floating-point tie: a target voxel whose two best
interpolated scores (or whose score and the threshold) are equal to rounding error.
Here the cell's common decision is taken, which exact arithmetic gives.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from napari_medseg.io.nifti import label_dtype_for_range
from napari_medseg.resample import grid_transform

#: Padding modes of the resampling that are reproduced (MONAI ``grid_sample`` names).
PADDING_MODES = ("border", "zeros")

#: Target voxels per chunk (coordinates and decisions are held for one chunk at a time).
CHUNK_VOXELS = 1 << 20

#: Scores (voxels x classes) interpolated at a time, each with ~20 float64 temporaries
#: per voxel (about 3 MB at this size).
INTERPOLATED_SCORES = 1 << 15

#: A term of the target -> model index map that moves a coordinate by less than this
#: (in model voxels, over the whole target grid) is dropped, so axis-parallel grids with
#: float noise in their affines take the separable path. It only changes ties.
_NEGLIGIBLE_VOXELS = 1e-9

_CORNERS = tuple(itertools.product((0, 1), repeat=3))


def argmax_of_interpolated(
    scores: np.ndarray,
    model_affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    *,
    padding_mode: str = "border",
    labels: np.ndarray | None = None,
    chunk_voxels: int = CHUNK_VOXELS,
) -> np.ndarray:
    """Argmax over classes of ``scores`` interpolated trilinearly onto another grid.

    Equal to ``argmax(resample(scores))`` with every class resampled (the brute force)
    except at floating-point ties, but only voxels within one model voxel of a label
    boundary of the model grid's argmax are interpolated (see the module notes).

    Parameters
    ----------
    scores : numpy.ndarray
        ``(K, X, Y, Z)`` float class scores on the model grid (probabilities, or
        logits: any values whose argmax is taken), ``K >= 1``.
    model_affine : numpy.ndarray
        4x4 voxel -> RAS mm matrix of the model grid.
    target_shape : tuple of int
        ``(I, J, K)`` voxel counts of the target (scan) grid.
    target_affine : numpy.ndarray
        4x4 voxel -> RAS mm matrix of the target grid; any rotation, shear, scale
        or flip relative to the model grid.
    padding_mode : {"border", "zeros"}
        What lies beyond the model grid (see the module notes).
    labels : numpy.ndarray, optional
        ``(X, Y, Z)`` integer argmax of ``scores`` over axis 0, when already known
        (saves computing it).
    chunk_voxels : int
        Target voxels handled at a time (bounds the temporary memory).

    Returns
    -------
    numpy.ndarray
        ``target_shape`` labels ``0 .. K-1``, uint8 (uint16 above 256 classes).
    """
    scores = _check_scores(scores)
    if labels is None:
        labels = np.argmax(scores, axis=0)
    elif labels.shape != scores.shape[1:]:
        raise ValueError(f"labels {labels.shape} are not on the scores' grid {scores.shape[1:]}")
    dtype = label_dtype_for_range(0, scores.shape[0] - 1)
    return _decide(
        np.asarray(labels).astype(dtype, copy=False),
        scores,
        lambda interpolated: np.argmax(interpolated, axis=0),
        0,  # a zero score vector's argmax
        model_affine,
        target_shape,
        target_affine,
        padding_mode,
        chunk_voxels,
    )


def threshold_of_interpolated(
    scores: np.ndarray,
    threshold: float,
    model_affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    *,
    padding_mode: str = "border",
    chunk_voxels: int = CHUNK_VOXELS,
) -> np.ndarray:
    """``interpolated >= threshold`` per channel, ``scores`` interpolated trilinearly.

    Equal to ``resample(scores) >= threshold`` channel by channel (the brute force)
    except at floating-point ties; only target voxels whose model cell holds voxels on
    both sides of the threshold are interpolated (see the module notes).

    Parameters
    ----------
    scores : numpy.ndarray
        ``(C, X, Y, Z)`` float scores on the model grid (e.g. sigmoid probabilities).
    threshold : float
        A voxel is on when its interpolated score is ``>= threshold`` (MONAI's
        ``AsDiscrete(threshold=...)``).
    model_affine, target_shape, target_affine, padding_mode, chunk_voxels
        As in :func:`argmax_of_interpolated`.

    Returns
    -------
    numpy.ndarray
        bool, shape ``(C, *target_shape)``.
    """
    scores = _check_scores(scores)
    threshold = float(threshold)
    out = np.empty((scores.shape[0], *(int(n) for n in target_shape)), dtype=bool)
    for channel in range(scores.shape[0]):
        values = scores[channel : channel + 1]
        out[channel] = _decide(
            (values[0] >= threshold).astype(np.uint8),
            values,
            lambda interpolated: interpolated[0] >= threshold,
            int(0.0 >= threshold),  # beyond the grid with zeros padding
            model_affine,
            target_shape,
            target_affine,
            padding_mode,
            chunk_voxels,
        )
    return out


def _check_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 4 or scores.shape[0] < 1 or min(scores.shape[1:]) < 1:
        raise ValueError(f"scores must be (K, X, Y, Z) with K >= 1, got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    return scores


def _decide(
    decided: np.ndarray,
    scores: np.ndarray,
    decide: Callable[[np.ndarray], np.ndarray],
    pad_value: int,
    model_affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    padding_mode: str,
    chunk_voxels: int,
) -> np.ndarray:
    """The decision (argmax or threshold) of ``scores`` interpolated onto the target grid.

    ``decided`` is the decision on every model voxel; ``decide`` turns ``(K, m)``
    interpolated scores into ``m`` decisions; ``pad_value`` is the decision of a zero
    score vector (the padding of ``padding_mode="zeros"``).
    """
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    target_shape = tuple(int(n) for n in target_shape)
    if len(target_shape) != 3 or min(target_shape) < 1:
        raise ValueError(f"target_shape must be 3 positive sizes, got {target_shape}")
    pad = 1 if padding_mode == "zeros" else 0
    grid = np.pad(decided, pad, constant_values=pad_value) if pad else decided
    size = grid.shape
    step = tuple(1 if n >= 2 else 0 for n in size)  # offset of a cell's far corner
    codes = _cell_codes(grid, step)
    transform = grid_transform(model_affine, target_affine)
    out = np.empty(target_shape, dtype=decided.dtype)
    slab = max(1, int(chunk_voxels) // max(1, target_shape[0] * target_shape[1]))
    batch = max(1, min(int(chunk_voxels), INTERPOLATED_SCORES // scores.shape[0]))
    for k0 in range(0, target_shape[2], slab):
        k1 = min(target_shape[2], k0 + slab)
        cells, fractions = [], []
        for axis, coordinate in enumerate(_model_coordinates(transform, target_shape, k0, k1)):
            coordinate = np.clip(coordinate + pad, 0, size[axis] - 1)
            cell = np.minimum(np.floor(coordinate), size[axis] - 1 - step[axis]).astype(np.intp)
            cells.append(cell)
            fractions.append(coordinate - cell)
        block_codes = codes[cells[0], cells[1], cells[2]]
        if block_codes.shape != (target_shape[0], target_shape[1], k1 - k0):  # all constant
            block_codes = np.broadcast_to(block_codes, (target_shape[0], target_shape[1], k1 - k0))
        block = out[:, :, k0:k1]
        block[...] = block_codes  # the cell's decision where its corners agree
        mixed = np.flatnonzero(block_codes < 0)  # into the chunk, C order
        for start in range(0, mixed.size, batch):
            where = np.unravel_index(mixed[start : start + batch], block_codes.shape)
            interpolated = _interpolate(
                scores,
                [_at(c, where) for c in cells],
                [_at(f, where) for f in fractions],
                step,
                pad,
            )
            block[where] = decide(interpolated)
    return out


def _at(array: np.ndarray, where: tuple[np.ndarray, ...]) -> np.ndarray:
    """``broadcast_to(array, chunk)[where]``, gathering only along the axes it spans."""
    if array.ndim == 0:
        return np.full(where[0].size, array[()], dtype=array.dtype)
    return array[tuple(w if n > 1 else 0 for w, n in zip(where, array.shape, strict=True))]


def _cell_codes(grid: np.ndarray, step: tuple[int, ...]) -> np.ndarray:
    """Per cell: the decision its 8 corners share, or -1 where they differ.

    A cell ``c`` has corners ``c + {0, step}`` per axis; shape ``max(n - 1, 1)`` per axis
    of ``grid``. Holds one small integer and one boolean volume of that shape at a time.
    """
    count = tuple(max(n - 1, 1) for n in grid.shape)
    base = grid[: count[0], : count[1], : count[2]]
    top = int(grid.max(initial=0))
    dtype = next(t for t in (np.int8, np.int16, np.int32) if top <= np.iinfo(t).max)
    codes = base.astype(dtype)
    for corner in _CORNERS[1:]:
        offset = [d * s for d, s in zip(corner, step, strict=True)]
        if any(offset):
            other = grid[tuple(slice(o, o + n) for o, n in zip(offset, count, strict=True))]
            codes[other != base] = -1
    return codes


def _model_coordinates(transform: np.ndarray, target_shape, k0: int, k1: int) -> list[np.ndarray]:
    """Model voxel coordinates of target voxels ``[:, :, k0:k1]``, one array per model axis.

    Each array broadcasts to the chunk's shape and only spans the target axes that move
    it: 1D along one axis for axis-parallel grids (the usual case), full for oblique ones.
    """
    steps = (
        np.arange(target_shape[0], dtype=float)[:, None, None],
        np.arange(target_shape[1], dtype=float)[None, :, None],
        np.arange(k0, k1, dtype=float)[None, None, :],
    )
    coordinates = []
    for axis in range(3):
        coordinate: np.ndarray | float = float(transform[axis, 3])
        for target_axis in range(3):
            factor = float(transform[axis, target_axis])
            if abs(factor) * max(1, target_shape[target_axis] - 1) > _NEGLIGIBLE_VOXELS:
                coordinate = coordinate + factor * steps[target_axis]
        coordinates.append(np.asarray(coordinate, dtype=float))
    return coordinates


def _interpolate(
    scores: np.ndarray,
    cells: list[np.ndarray],
    fractions: list[np.ndarray],
    step: tuple[int, ...],
    pad: int,
) -> np.ndarray:
    """Trilinear ``(K, m)`` float64 scores at ``m`` points given by cell and fraction.

    ``cells`` index the (possibly zero-padded by ``pad``) grid; padded corners are zeros.
    """
    flat = scores.reshape(scores.shape[0], -1)
    strides = (scores.shape[2] * scores.shape[3], scores.shape[3], 1)
    offsets, weights = [], []  # per axis: (near, far) flat offsets and weights
    for axis in range(3):
        fraction = fractions[axis]
        pair_offsets, pair_weights = [], []
        for d, weight in ((0, 1.0 - fraction), (step[axis], fraction)):
            position = cells[axis] + d - pad
            if pad:
                size = scores.shape[1 + axis]
                weight = weight * ((position >= 0) & (position < size))
                position = np.clip(position, 0, size - 1)
            pair_offsets.append(position * strides[axis])
            pair_weights.append(weight)
        offsets.append(pair_offsets)
        weights.append(pair_weights)
    total = np.zeros((scores.shape[0], cells[0].size), dtype=np.float64)
    for dx, dy, dz in _CORNERS:
        index = offsets[0][dx] + offsets[1][dy] + offsets[2][dz]
        weight = weights[0][dx] * weights[1][dy] * weights[2][dz]
        total += weight * np.take(flat, index, axis=1)
    return total
