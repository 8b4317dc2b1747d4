"""Non-finite voxels (NaN, +inf, -inf) in float scans: found once, never a silent wrong result.

A float scan can hold voxels that are not numbers: a NaN left by a processing step, a
block of ``inf`` where a tool divided by zero, or a NIfTI ``scl_slope``/``scl_inter``
so large that the scaled values overflow float32. Left alone, one NaN spreads through
interpolation, intensity normalisation and every convolution of a network, so a
segmentation of the whole scan (or of every window near it) silently comes out empty.
The rules, one per stage:

* **Reading.** :func:`napari_medseg.io.reader.read_scan` passes every volume it returns
  through :func:`check_nonfinite` (the :func:`counts_nonfinite` decorator): float
  volumes are scanned once, in blocks of :data:`BLOCK_VOXELS` voxels (no full-size
  temporary). The count goes into ``ScanMetadata.nonfinite_voxels`` and a warning
  naming it into ``ScanMetadata.warnings``; a volume without a single finite voxel is
  refused with :class:`NonFiniteScanError`, naming the file (there is nothing to show,
  measure or segment). The voxels themselves are kept as stored.
* **Values shown and measured.** ``medseg info`` prints the finite value range
  (:func:`finite_range`) and the count; the measurement report leaves them out of
  intensity statistics and counts them (``intensity_excluded_voxels``).
* **Converting and saving.** ``medseg convert`` writes them as they are (a converter
  never changes values) and warns with the count.
* **Segmenting.** The engine replaces them in its own float copy of the input (never in
  the scan) by the scan's lowest finite value (:func:`replace_nonfinite`), and the
  result carries a warning with the count. See :mod:`napari_medseg.models.preprocess`
  for why that value.
* **napari.** A float file with non-finite voxels is never opened as a label map (it
  would turn NaN into 0); it opens as an image, with the read warning as notification.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np

from napari_medseg.errors import ScanReadError
from napari_medseg.volume import Volume

#: Voxels per block of the blocked passes (16 MiB of float32): the only temporaries are
#: a boolean mask of one block.
BLOCK_VOXELS = 1 << 22


class NonFiniteScanError(ScanReadError):
    """Every voxel of a scan is NaN or infinite: nothing to show, measure or segment."""


def _blocks(array: np.ndarray) -> Iterator[np.ndarray]:
    """Views of ``array`` covering it once, of about :data:`BLOCK_VOXELS` voxels each.

    Contiguous arrays (C or Fortran order, as nibabel returns them) are cut in memory
    order; others in slabs along their slowest axis. The views write through.
    """
    if array.size == 0:
        return
    voxels = BLOCK_VOXELS
    if array.flags.c_contiguous or array.flags.f_contiguous:
        flat = array.ravel(order="K")  # a view for contiguous arrays
        for start in range(0, flat.size, voxels):
            yield flat[start : start + voxels]
        return
    axis = int(np.argmax(np.abs(array.strides)))
    per_slab = max(1, array.size // array.shape[axis])
    step = max(1, voxels // per_slab)
    moved = np.moveaxis(array, axis, 0)
    for start in range(0, moved.shape[0], step):
        yield moved[start : start + step]


def _is_float(array: np.ndarray) -> bool:
    return np.asarray(array).dtype.kind in "fc"


def count_nonfinite(array: np.ndarray) -> int:
    """How many voxels are NaN or infinite (0 for integer and boolean arrays).

    Parameters
    ----------
    array : numpy.ndarray
        Any shape; read in blocks, without a full-size temporary.

    Returns
    -------
    int
        Number of voxels that are NaN, +inf or -inf.
    """
    array = np.asarray(array)
    if not _is_float(array):
        return 0
    count = 0
    for block in _blocks(array):
        count += block.size - int(np.count_nonzero(np.isfinite(block)))
    return count


def count_nan(array: np.ndarray) -> int:
    """How many voxels are NaN (the rest of :func:`count_nonfinite` is +/-inf)."""
    array = np.asarray(array)
    if not _is_float(array):
        return 0
    return sum(int(np.count_nonzero(np.isnan(block))) for block in _blocks(array))


def finite_range(array: np.ndarray) -> tuple[float, float] | None:
    """Lowest and highest finite value, or None when there is none.

    Parameters
    ----------
    array : numpy.ndarray
        Any shape and numeric dtype; NaN and +/-inf are left out.

    Returns
    -------
    tuple of float or None
        ``(low, high)`` in the array's units; None for an empty array or one without
        a finite value.
    """
    array = np.asarray(array)
    if array.size == 0:
        return None
    if not _is_float(array):
        return float(array.min()), float(array.max())
    low, high = np.inf, -np.inf
    for block in _blocks(array):
        finite = np.isfinite(block)
        if finite.all():
            low, high = min(low, float(block.min())), max(high, float(block.max()))
        elif finite.any():
            low = min(low, float(np.min(block, where=finite, initial=np.inf)))
            high = max(high, float(np.max(block, where=finite, initial=-np.inf)))
    return (low, high) if low <= high else None


def replace_nonfinite(array: np.ndarray, value: float | None = None) -> int:
    """Replace NaN and +/-inf in ``array``, in place, by ``value``.

    Parameters
    ----------
    array : numpy.ndarray
        A writable float array (any shape), changed in place.
    value : float, optional
        The replacement; by default the array's lowest finite value (0 when it has
        none).

    Returns
    -------
    int
        How many voxels were replaced (0: the array is untouched).
    """
    count = count_nonfinite(array)
    if count == 0:
        return 0
    if value is None:
        value = (finite_range(array) or (0.0, 0.0))[0]
    for block in _blocks(array):
        np.copyto(block, value, where=~np.isfinite(block), casting="unsafe")
    return count


def nonfinite_description(array: np.ndarray, count: int) -> str:
    """``"3 of 2457600 voxels are NaN or infinite (2 NaN, 1 infinite)"``.

    Parameters
    ----------
    array : numpy.ndarray
        The volume (NaN are counted again here, only when ``count`` is not 0).
    count : int
        Its :func:`count_nonfinite`.
    """
    nan = count_nan(array) if count else 0
    kinds = []
    if nan:
        kinds.append(f"{nan} NaN")
    if count - nan:
        kinds.append(f"{count - nan} infinite")
    if count == array.size:
        return f"all {count} voxels are NaN or infinite ({', '.join(kinds)})"
    verb = "is" if count == 1 else "are"
    return f"{count} of {array.size} voxels {verb} NaN or infinite ({', '.join(kinds)})"


def check_nonfinite(volume: Volume) -> Volume:
    """Count the non-finite voxels of a volume just read; warn, or refuse it.

    Sets ``volume.metadata.nonfinite_voxels`` and, when it is not 0, appends a
    warning naming the count to ``volume.metadata.warnings``. A NIfTI whose modality
    was not guessed because of them (the guess reads the value range) is guessed
    again on the finite range, so a CT with a NaN is still called CT.

    Parameters
    ----------
    volume : Volume
        As returned by a reader; its array is not changed.

    Returns
    -------
    Volume
        The same object.

    Raises
    ------
    NonFiniteScanError
        Every voxel is NaN or infinite.
    """
    array = volume.array
    meta = volume.metadata
    count = count_nonfinite(array)
    meta.nonfinite_voxels = count
    if count == 0:
        return volume
    description = nonfinite_description(array, count)
    if count == array.size:
        raise NonFiniteScanError(
            meta.source or "scan",
            f"{description}: there is no image to show, measure or segment.",
            "Check the step that wrote the file (a NIfTI scl_slope/scl_inter too large "
            "for float32 gives infinite values) and write it again.",
        )
    meta.warnings.append(
        f"{description}; they are kept as stored, left out of value ranges and "
        "statistics, and never taken for labels."
    )
    return volume


def counts_nonfinite(read: Callable[..., Volume]) -> Callable[..., Volume]:
    """Decorate a reader so that every volume it returns goes through :func:`check_nonfinite`.

    This is how :func:`napari_medseg.io.reader.read_scan` counts non-finite voxels
    once, whichever format it read.
    """

    @functools.wraps(read)
    def counted(*args, **kwargs) -> Volume:
        return check_nonfinite(read(*args, **kwargs))

    return counted
