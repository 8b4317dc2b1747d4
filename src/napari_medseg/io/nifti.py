"""NIfTI-1/2 reading and writing with the geometry nibabel resolves.

Arrays keep nibabel's axis order ``(I, J, K)``; affines map voxel indices to RAS+ mm.
"""

from __future__ import annotations

import gzip
import logging
import warnings
import zlib
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_medseg.errors import (
    NotAScanError,
    ScanReadError,
    ScanWriteError,
    TruncatedFileError,
    UnsupportedVolumeError,
)
from napari_medseg.geometry import OBLIQUE_TOLERANCE_DEG, shear_deg
from napari_medseg.io.atomic import atomic_output, refuse_source_overwrite
from napari_medseg.io.nifti_header import (
    HEADER_FIX,
    check_voxel_data,
    one_line,
    open_nifti,
    resolve_affine,
)
from napari_medseg.io.nonfinite import finite_range
from napari_medseg.io.sniff import check_readable
from napari_medseg.volume import ScanMetadata, Volume

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: NIfTI pairs: header in ``.hdr``, voxels in ``.img`` (read, never written).
NIFTI_PAIR_SUFFIXES = (".hdr", ".hdr.gz")

#: A CT stored without modality: integer voxels spanning air (-1000) to soft tissue.
_CT_LIKE_MIN_HU = -900
_CT_LIKE_MAX_HU = 100


def is_nifti_path(path: str | PathLike) -> bool:
    """Whether the file name ends in ``.nii`` or ``.nii.gz`` (case-insensitive)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def check_nifti_name(path: str | PathLike) -> None:
    """Raise :class:`ScanWriteError` unless ``path`` ends in ``.nii`` or ``.nii.gz``."""
    if not is_nifti_path(path):
        raise ScanWriteError(path, "a NIfTI file name ends in .nii or .nii.gz.", "Rename it.")


def read_nifti(path: str | PathLike, *, volume_index: int | None = None) -> Volume:
    """Read a NIfTI file into a :class:`~napari_medseg.volume.Volume`.

    The header is checked before any voxel is read (:mod:`napari_medseg.io.nifti_header`):
    a damaged or hostile header (a bogus dimension count or datatype code, more voxels
    than the file or memory can hold, voxels past the end of the file) is refused at
    once, with the problem named, instead of a traceback or gigabytes allocated.

    Parameters
    ----------
    path : path
        ``.nii`` or ``.nii.gz`` file, or either half of a ``.hdr``/``.img`` pair.
    volume_index : int, optional
        For a 4D file with more than one volume, which one to read (0-based). A 4D
        file with a single volume needs none.

    Returns
    -------
    Volume
        ``array`` shape ``(I, J, K)``. Integer data without scaling keeps its
        dtype; data with ``scl_slope``/``scl_inter`` comes back as float32 with the
        scaling applied. ``affine`` maps voxels to RAS+ mm: the sform if its code is
        set, else the qform if its code is set, else voxel sizes only (with a
        warning), as nibabel and ITK choose; a transform that cannot place voxels
        (all zeros, singular, non-finite) is skipped with a warning, and a file with
        no usable one at all is refused (:func:`~napari_medseg.io.nifti_header.resolve_affine`).

    Raises
    ------
    ScanReadError
        Or a subclass (``NotAScanError``, ``TruncatedFileError``,
        ``UnsupportedVolumeError``), naming the file, the problem and what to do.
    """
    path = Path(path)
    check_readable(path)
    if path.is_dir():
        raise NotAScanError(
            path, "is a folder, not a NIfTI file.", "Give the path of the .nii/.nii.gz file."
        )
    opened = open_nifti(path)
    header = opened.header
    data_dtype = opened.dtype
    if data_dtype.fields is not None or data_dtype.kind in "cbUSV":
        raise UnsupportedVolumeError(
            path,
            f"holds {data_dtype} voxels (colour, complex or other non-scalar data).",
            "Only scalar (grey-value) volumes and label maps can be opened.",
        )
    shape = _squeeze_trailing(opened.shape)
    warnings_found: list[str] = list(opened.warnings)
    if len(shape) < 2 or len(shape) > 4:
        raise UnsupportedVolumeError(
            path,
            f"has {len(shape)} dimensions ({' x '.join(map(str, shape))}); only 2D, 3D and "
            "4D NIfTI can be read.",
            "Split it into 3D volumes first (e.g. with fslsplit).",
        )
    if len(shape) == 4:
        if volume_index is None:
            raise UnsupportedVolumeError(
                path,
                f"is 4D with {shape[3]} volumes of {' x '.join(map(str, shape[:3]))} voxels.",
                f"Save one of volumes 0..{shape[3] - 1} as its own file first: "
                f"`medseg convert {path} volume.nii.gz --volume N` (medseg info also takes "
                "--volume N; in Python, read_scan(path, volume_index=N)).",
            )
        if not 0 <= volume_index < shape[3]:
            raise UnsupportedVolumeError(
                path,
                f"has {shape[3]} volumes; volume {volume_index} does not exist.",
                f"Choose 0..{shape[3] - 1}.",
            )
    slope, inter = header.get_slope_inter()
    scaled = slope is not None and (slope, inter) != (1.0, 0.0)
    out_itemsize = 4 if scaled or data_dtype.kind == "f" else data_dtype.itemsize
    one_volume = len(shape) < 4 or len(opened.shape) == 4  # else all volumes are read
    read_shape = shape[:3] if one_volume else shape
    check_voxel_data(path, opened, read_shape, scaled=scaled, output_itemsize=out_itemsize)
    geometry = resolve_affine(path, header)
    warnings_found += geometry.warnings
    try:
        data_proxy = opened.array_proxy()
        if len(shape) == 4 and len(opened.shape) == 4:
            raw = data_proxy[..., volume_index]  # reads one volume only
        elif len(shape) == 4:
            raw = np.asanyarray(data_proxy).reshape(shape)[..., volume_index]
        else:
            raw = np.asanyarray(data_proxy).reshape(shape)
    except PermissionError as error:
        raise ScanReadError(
            path, "permission denied: this user cannot read the file.", "Check its permissions."
        ) from error
    except nib.spatialimages.HeaderDataError as error:
        raise ScanReadError(
            path, f"its header is damaged ({one_line(error)}).", HEADER_FIX
        ) from None
    except MemoryError:
        raise ScanReadError(
            path,
            f"not enough memory to read {opened.describe(shape[:3])}.",
            "Close other programs, or open it on a machine with more memory.",
        ) from None
    except (EOFError, zlib.error, gzip.BadGzipFile, ValueError, OverflowError, OSError) as error:
        raise TruncatedFileError(
            path,
            f"the voxel data is shorter than the header says ({one_line(error)}).",
            "The file is truncated or damaged: copy or export it again.",
        ) from error
    array = np.asarray(raw)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if array.dtype.kind == "f" and array.dtype != data_dtype:
        # scl_slope/scl_inter made nibabel promote to float64; float32 holds HU exactly enough
        with np.errstate(over="ignore"):  # values past float32 become inf, counted on read
            array = array.astype(np.float32)

    descrip = header.get("descrip")
    description = descrip.item().decode("latin-1", "replace").strip("\x00 ") if descrip else ""
    modality, units = guess_modality(finite_range(array))
    window = _calibrated_window(header)
    extra: dict = {}
    if geometry.qform is not None:
        extra["qform_affine"] = geometry.qform.tolist()
    if modality:
        extra["modality_guessed"] = True
    intent = _intent_code(header)
    if intent:  # NIFTI_INTENT_LABEL (1002) / NEURONAME (1003): the file says "label map"
        extra["intent_code"] = intent
    metadata = ScanMetadata(
        source=str(path),
        format="nifti",
        modality=modality,
        units=units,
        series_description=description,
        window=window,
        qform_code=geometry.qform_code,
        sform_code=geometry.sform_code,
        warnings=warnings_found,
        extra=extra,
    )
    return Volume(array=array, affine=geometry.affine, metadata=metadata)


def _intent_code(header) -> int:
    """The header's ``intent_code`` (0 when none, or for an Analyze pair without one)."""
    try:
        return int(header["intent_code"])
    except (KeyError, TypeError, ValueError):
        return 0


def _squeeze_trailing(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Drop singleton dimensions after the third (a 4D file with one volume is 3D)."""
    shape = list(shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape.pop()
    return tuple(shape)


def guess_modality(value_range: tuple[float, float] | None) -> tuple[str, str]:
    """NIfTI carries no modality: values spanning air to tissue in HU are CT-like.

    Parameters
    ----------
    value_range : (float, float) or None
        Lowest and highest finite voxel value (None: no finite voxel).

    Returns
    -------
    (str, str)
        ``("CT", "HU")`` or ``("", "")``.
    """
    if value_range is None:
        return "", ""
    low, high = value_range
    if low <= _CT_LIKE_MIN_HU and high >= _CT_LIKE_MAX_HU and low >= -3100:
        return "CT", "HU"
    return "", ""


def _calibrated_window(header) -> tuple[float, float] | None:
    cal_min, cal_max = float(header["cal_min"]), float(header["cal_max"])
    if cal_max > cal_min:
        return ((cal_min + cal_max) / 2.0, cal_max - cal_min)
    return None


def label_dtype(labels: np.ndarray) -> np.dtype:
    """Smallest unsigned dtype that holds every label value (uint8, uint16 or uint32)."""
    if labels.size == 0:
        return np.dtype(np.uint8)
    return label_dtype_for_range(int(labels.min()), int(labels.max()))


def label_dtype_for_range(low: int, high: int) -> np.dtype:
    """Smallest unsigned dtype for label values in ``[low, high]`` (uint8, uint16, uint32)."""
    if low < 0:
        raise ValueError(f"label maps hold non-negative integers, found {low}")
    for dtype in (np.uint8, np.uint16, np.uint32):
        if high <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"label value {high} does not fit in uint32")


def write_nifti(
    path: str | PathLike,
    array: np.ndarray,
    affine: np.ndarray,
    *,
    kind: str = "image",
    qform_code: int = 1,
    sform_code: int = 1,
    qform_affine: np.ndarray | None = None,
    description: str = "",
    protect: Iterable[str | PathLike] = (),
) -> Path:
    """Write a 3D array as NIfTI-1 on the given voxel grid, atomically.

    Parameters
    ----------
    path : path
        Output file ending in ``.nii`` or ``.nii.gz``.
    array : numpy.ndarray
        Shape ``(I, J, K)`` in the stored (source) voxel order.
    affine : numpy.ndarray
        4x4 voxel -> RAS+ mm matrix, written as the sform (and the qform unless
        ``qform_affine`` is given).
    kind : {"image", "labels"}
        ``"labels"`` stores the smallest unsigned integer type that holds the
        labels (uint8, then uint16); ``"image"`` keeps the array's dtype.
    qform_code, sform_code : int
        NIfTI codes to store (1 = scanner anatomical, 2 = aligned...). Keep the
        source's codes to round-trip a file exactly.
    qform_affine : numpy.ndarray, optional
        A qform that differs from the sform in the source file.
    description : str
        Written to the header's ``descrip`` field (at most 79 characters).
    protect : iterable of path
        Source scans that must never be overwritten.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ScanWriteError
        For a name without a NIfTI suffix, a non-3D array or unstorable labels.
    OverwriteSourceError
        When ``path`` is one of ``protect``.
    """
    path = Path(path)
    check_nifti_name(path)
    refuse_source_overwrite(path, protect)
    if array.ndim != 3:
        raise ScanWriteError(path, f"only 3D arrays are written as scans, got {array.shape}.")
    highest_label = 0
    if kind == "labels":
        data = np.asarray(array)
        if data.size:
            highest_label = int(data.max())
        try:
            dtype = label_dtype_for_range(int(data.min()) if data.size else 0, highest_label)
        except ValueError as error:
            raise ScanWriteError(path, f"cannot store these labels: {error}.") from error
        data = data.astype(dtype, copy=False)
    elif kind == "image":
        data = np.asarray(array)
        if data.dtype == np.float64:
            data = data.astype(np.float32)
        elif data.dtype == np.bool_:
            data = data.astype(np.uint8)
    else:
        raise ValueError(f"kind must be 'image' or 'labels', got {kind!r}")
    affine = np.asarray(affine, dtype=float)
    image = nib.Nifti1Image(data, affine)
    header = image.header
    header.set_xyzt_units("mm", "sec")
    header.set_sform(affine, code=int(sform_code))
    if qform_affine is None and shear_deg(affine) > OBLIQUE_TOLERANCE_DEG:
        # A sheared grid (gantry tilt) cannot be a qform: nibabel would strip the shear
        # and ITK-based tools, which fall back to the qform, would misplace slices by
        # centimetres. With qform_code 0 they refuse the file instead; sform readers
        # (nibabel, FSL, this package) get the exact geometry.
        logger.warning(
            "%s: sheared (gantry-tilt) grid kept exactly in the sform; qform_code set to 0. "
            "Use `medseg convert --resample-tilt` for ITK-based tools.",
            path,
        )
        qform_code = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel's note about stripping a shear
        header.set_qform(affine if qform_affine is None else qform_affine, code=int(qform_code))
    if kind == "labels":
        header["cal_min"], header["cal_max"] = 0, highest_label
        header.set_intent("label")
    if description:
        header["descrip"] = description[:79].encode("latin-1", "replace")
    try:
        with atomic_output(path) as temp_path:
            nib.save(image, temp_path)
    except OSError as error:
        raise ScanWriteError(
            path,
            f"cannot write the file ({error.strerror or error}).",
            "Check that the folder exists, is writable and has free space, and that the "
            "name is not a folder.",
        ) from error
    logger.info("wrote %s %s %s", kind, data.shape, path)
    return path


def write_nifti_like(
    path: str | PathLike,
    array: np.ndarray,
    affine: np.ndarray,
    source,
    *,
    kind: str = "image",
    description: str = "",
    protect: Iterable[str | PathLike] | None = None,
) -> Path:
    """Write ``array`` as NIfTI the way ``source`` was stored, never over ``source``.

    :func:`write_nifti` with the source's qform/sform codes, its distinct qform (when
    its NIfTI file had one) and its files protected.

    Parameters
    ----------
    path : path
        Output ``.nii``/``.nii.gz``.
    array : numpy.ndarray
        Shape ``(I, J, K)``.
    affine : numpy.ndarray
        4x4 voxel -> RAS+ mm matrix of ``array`` (the source's, or a resampled one).
    source : Volume
        The scan the data comes from: its metadata gives the codes and the files.
    kind, description
        As :func:`write_nifti`.
    protect : iterable of path, optional
        Files never to overwrite (default: ``source``'s own files).
    """
    meta = source.metadata
    qform_affine = meta.extra.get("qform_affine")
    return write_nifti(
        path,
        array,
        affine,
        kind=kind,
        qform_code=meta.qform_code,
        sform_code=meta.sform_code,
        qform_affine=None if qform_affine is None else np.asarray(qform_affine),
        description=description,
        protect=[meta.source, *meta.files] if protect is None else protect,
    )
