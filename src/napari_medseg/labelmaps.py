"""Label maps as the measurement code takes them: checked, integer, with their grid.

A label map is a 3D integer array ``(I, J, K)``: 0 is background, every positive
value one structure. Maps stored as floats (ITK pipelines often write float32) are
accepted when every value is a whole number; anything else is refused with an error
that names the file.
"""

from __future__ import annotations

from os import PathLike

import numpy as np

from napari_medseg.io.errors import FileError, MedsegError


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
    """One line with a grid's shape, spacing (mm) and origin (RAS mm), for error messages."""
    from napari_medseg.geometry import voxel_spacing

    spacing = " x ".join(f"{s:.4g}" for s in voxel_spacing(affine))
    origin = ", ".join(f"{v:.4g}" for v in np.asarray(affine)[:3, 3])
    return f"{' x '.join(map(str, shape))} voxels, spacing {spacing} mm, origin ({origin}) mm"


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
