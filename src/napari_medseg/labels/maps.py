"""Label maps as the measurement code takes them: checked, integer, with their grid.

A label map is a 3D integer array ``(I, J, K)``: 0 is background, every positive
value one structure. Maps stored as floats (ITK pipelines often write float32) are
accepted when every value is a whole number; anything else is refused with an error
that names the file.
"""

from __future__ import annotations

import threading
from os import PathLike

import numpy as np

from napari_medseg.errors import FileError, MedsegError


class LabelMapError(FileError):
    """A file cannot be used as a label map (fractional or negative values, not 3D)."""


class GridMismatchError(MedsegError):
    """Two volumes that must share a voxel grid do not; the message names both files."""


def as_label_array(array: np.ndarray, name: str | PathLike = "labels") -> np.ndarray:
    """Check a label map and return it as an unsigned or signed integer array.

    Parameters
    ----------
    array : numpy.ndarray
        Shape ``(I, J, K)``. Integer or boolean arrays are returned as they are
        (booleans as a uint8 view); float arrays whose values are all whole numbers
        are converted to the smallest unsigned integer type that holds them.
    name : str or PathLike
        File the array came from, used in error messages.

    Returns
    -------
    numpy.ndarray
        Integer array, same shape, values >= 0.

    Raises
    ------
    LabelMapError
        Not 3D, fractional or non-finite values, or negative values.
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise LabelMapError(name, f"a label map is 3D (I, J, K), got shape {array.shape}.")
    if array.dtype == bool:
        return array.view(np.uint8)
    if array.dtype.kind == "f":
        if array.size and not np.isfinite(array).all():
            raise LabelMapError(
                name,
                "holds NaN or infinite values, so it is not a label map.",
                "Use an integer label map (0 = background, 1, 2... = structures).",
            )
        whole = np.rint(array)
        if not np.array_equal(whole, array):
            bad = array[whole != array]
            raise LabelMapError(
                name,
                f"holds non-integer values (e.g. {bad.flat[0]:g}), so it is not a label map "
                "(is it an image or a probability map?).",
                "Pass an integer label map (0 = background, 1, 2... = structures).",
            )
        array = whole
    elif array.dtype.kind not in "iu":
        raise LabelMapError(name, f"holds {array.dtype} values, not integer labels.")
    low, high = (array.min(), array.max()) if array.size else (0, 0)
    if low < 0:
        raise LabelMapError(
            name,
            f"holds negative values (down to {low:g}); labels are 0 (background) or positive.",
        )
    if array.dtype.kind == "f":
        dtype = np.uint8 if high <= 255 else np.uint16 if high <= 65535 else np.uint32
        if high > np.iinfo(np.uint32).max:
            raise LabelMapError(name, f"holds label {high:g}, larger than this reader allows.")
        order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        return array.astype(dtype, order=order)
    return array


def describe_grid(shape: tuple[int, ...], affine: np.ndarray) -> str:
    """One line with a grid's shape, spacing (mm), axis directions and origin (RAS mm)."""
    from napari_medseg.geometry import orientation_code, voxel_spacing

    spacing = " x ".join(f"{s:.4g}" for s in voxel_spacing(affine))
    origin = ", ".join(f"{v:.4g}" for v in np.asarray(affine)[:3, 3])
    return (
        f"{' x '.join(map(str, shape))} voxels, spacing {spacing} mm, "
        f"axes {orientation_code(affine)}, origin ({origin}) mm"
    )


def reorder_onto_grid(
    array: np.ndarray,
    affine: np.ndarray,
    target_shape: tuple[int, ...],
    target_affine: np.ndarray,
    tol_mm: float = 1e-3,
) -> np.ndarray | None:
    """``array`` on the target grid when both grids hold the same voxels in another order.

    Two files of one scan may store its voxels along other axes or in the other
    direction (e.g. a DICOM series and its NIfTI conversion). When the target grid's
    voxel centres are exactly the source's, reordered (axes permuted and/or flipped),
    the array is returned as a view on the target grid: no interpolation, no value
    changes. Otherwise None.

    Parameters
    ----------
    array : numpy.ndarray
        Shape ``(I, J, K)`` on the grid of ``affine``.
    affine, target_affine : numpy.ndarray
        4x4 voxel -> RAS+ mm matrices.
    target_shape : tuple of int
        ``(I, J, K)`` of the target grid.
    tol_mm : float
        Largest allowed displacement of a corner voxel, in mm.

    Returns
    -------
    numpy.ndarray or None
        A view of ``array`` with shape ``target_shape``, or None.
    """
    from napari_medseg.resample import same_grid

    if array.ndim != 3 or len(target_shape) != 3:
        return None
    affine = np.asarray(affine, dtype=np.float64)
    target_affine = np.asarray(target_affine, dtype=np.float64)
    try:
        # target voxel index -> source voxel index
        transform = np.linalg.solve(affine, target_affine)
    except np.linalg.LinAlgError:
        return None
    linear = np.rint(transform[:3, :3])
    if not np.array_equal(np.abs(linear).sum(axis=0), np.ones(3)) or not np.array_equal(
        np.abs(linear).sum(axis=1), np.ones(3)
    ):
        return None  # not a permutation with flips
    order = [int(np.flatnonzero(linear[:, axis])[0]) for axis in range(3)]
    out = array.transpose(order)
    steps = np.eye(4)
    steps[:3, :3] = 0
    for axis, source_axis in enumerate(order):
        if linear[source_axis, axis] < 0:
            out = np.flip(out, axis)
            steps[source_axis, axis] = -1.0
            steps[source_axis, 3] = array.shape[source_axis] - 1
        else:
            steps[source_axis, axis] = 1.0
    if not same_grid(out.shape, affine @ steps, tuple(target_shape), target_affine, tol_mm=tol_mm):
        return None
    return out


def check_same_grid(
    shape_a: tuple[int, ...],
    affine_a: np.ndarray,
    name_a: str | PathLike,
    shape_b: tuple[int, ...],
    affine_b: np.ndarray,
    name_b: str | PathLike,
    tol_mm: float = 1e-3,
) -> None:
    """Raise :class:`GridMismatchError` unless both grids match within ``tol_mm``.

    Parameters
    ----------
    shape_a, shape_b : tuple of int
        Voxel counts ``(I, J, K)``.
    affine_a, affine_b : numpy.ndarray
        4x4 voxel -> RAS+ mm matrices.
    name_a, name_b : str or PathLike
        Files the grids belong to (named in the message).
    tol_mm : float
        Largest allowed displacement of a corner voxel, in mm.
    """
    from napari_medseg.resample import same_grid

    if not same_grid(tuple(shape_a), affine_a, tuple(shape_b), affine_b, tol_mm=tol_mm):
        raise GridMismatchError(
            f"{name_a} and {name_b} are not on the same voxel grid: "
            f"{name_a}: {describe_grid(tuple(shape_a), affine_a)}; "
            f"{name_b}: {describe_grid(tuple(shape_b), affine_b)}. "
            "The label map must be saved on the image's grid (e.g. with napari-medseg's writer)."
        )


def voxel_volume_mm3(affine: np.ndarray) -> float:
    """Volume of one voxel, ``|det(affine[:3, :3])|``, in mm^3 (exact for oblique/sheared grids)."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3])))


def present_labels(array: np.ndarray) -> np.ndarray:
    """Sorted positive values of a label map (int64; empty when there is no label).

    Unsigned maps (the usual uint8/uint16) are counted with ``np.bincount``, several
    times faster than ``np.unique`` on a whole CT-sized map.
    """
    array = np.asarray(array)
    top = int(array.max()) if array.size else 0
    if top <= 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype.kind == "u" and top < 1 << 24:
        counts = np.bincount(array.ravel(order="K"), minlength=top + 1)
        values = np.flatnonzero(counts)
    else:
        values = np.unique(array)
    values = values.astype(np.int64)
    return values[values > 0]


def label_voxel_counts(
    array: np.ndarray, *, cancel: threading.Event | None = None, block_voxels: int = 1 << 18
) -> dict[int, int]:
    """Voxels of each positive value of a label map, ``{value: count}`` ascending.

    Integer maps with values in ``[0, 2**24)`` are counted with ``np.bincount`` in
    blocks of ``block_voxels`` (no full-size temporary: a 512x512x300 uint8 map costs
    about as much as reading it a few times); others with ``np.unique``.

    Parameters
    ----------
    array : numpy.ndarray
        Integer label map, any shape and axis order.
    cancel : threading.Event, optional
        Checked between blocks: raises :class:`~napari_medseg.errors.Cancelled`.
    block_voxels : int
        Voxels counted per ``np.bincount`` call.
    """
    from napari_medseg.progress import raise_if_cancelled

    flat = np.asarray(array).ravel(order="K")
    if flat.size == 0:
        return {}
    low, top = int(flat.min()), int(flat.max())
    if top <= 0:
        return {}
    if flat.dtype.kind in "iu" and low >= 0 and top < 1 << 24:
        counts = np.zeros(top + 1, dtype=np.int64)
        for start in range(0, flat.size, block_voxels):
            raise_if_cancelled(cancel, "counting the labels was cancelled")
            counts += np.bincount(flat[start : start + block_voxels], minlength=top + 1)
        values = np.flatnonzero(counts)
        found = counts[values]
    else:
        values, found = np.unique(flat, return_counts=True)
    return {int(v): int(n) for v, n in zip(values, found, strict=True) if v > 0}
