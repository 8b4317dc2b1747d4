"""Write a voxel array as a DICOM CT or MR image series, one file per slice.

Used by the sample-scan script, the benchmarks and the tests. Core module: it
imports neither napari, Qt nor torch.

Geometry follows :class:`napari_medseg.volume.Volume`: the array has shape
``(I, J, K)``, where I runs along a DICOM row (the column index, direction
``ImageOrientationPatient[0:3]``), J along a column (the row index, direction
``ImageOrientationPatient[3:6]``) and K over the slices. The affine maps voxel
indices to RAS+ millimetres (nibabel's convention); DICOM stores LPS+, so
``LPS = diag(-1, -1, 1, 1) @ affine``.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from napari_medseg.io.atomic import atomic_output, refuse_source_overwrite
from napari_medseg.volume import RAS_TO_LPS

__all__ = ["SOP_CLASS_BY_MODALITY", "write_dicom_series"]

#: SOP Class UID written for each supported modality.
SOP_CLASS_BY_MODALITY = {
    "CT": UID("1.2.840.10008.5.1.4.1.1.2"),  # CT Image Storage
    "MR": UID("1.2.840.10008.5.1.4.1.1.4"),  # MR Image Storage
}


_UNCOMPRESSED = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}

#: pip package that provides the encoder of each compressed syntax pydicom can write.
_ENCODER_PACKAGES = {
    pydicom.uid.RLELossless: "pylibjpeg-rle (or none: pydicom encodes RLE natively)",
    pydicom.uid.JPEG2000Lossless: "pylibjpeg-openjpeg",
    pydicom.uid.JPEG2000: "pylibjpeg-openjpeg",
    pydicom.uid.JPEGLSLossless: "pyjpegls",
    pydicom.uid.JPEGLSNearLossless: "pyjpegls",
}


def _fmt_ds(value: float) -> str:
    """Format a float as a DICOM Decimal String (at most 16 characters)."""
    value = float(value)
    if value == 0.0:
        return "0"
    for precision in range(12, 0, -1):
        text = f"{value:.{precision}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"cannot format {value} as a DICOM decimal string")  # pragma: no cover


def _stored_values(
    array: np.ndarray, slope: float, intercept: float
) -> tuple[np.ndarray, np.dtype]:
    """Turn the input array into integer stored values and pick their 16-bit dtype."""
    if slope == 0:
        raise ValueError("rescale_slope must not be 0")
    if np.issubdtype(array.dtype, np.floating):
        stored = np.rint((array.astype(np.float64) - intercept) / slope)
    elif np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        stored = array
    else:
        raise TypeError(f"array must hold integers or floats, got dtype {array.dtype}")
    lo = int(stored.min()) if stored.size else 0
    hi = int(stored.max()) if stored.size else 0
    for dtype in (np.dtype("<i2"), np.dtype("<u2")):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.asarray(stored).astype(dtype, copy=False), dtype
    raise ValueError(
        f"stored values range over [{lo}, {hi}], which fits neither int16 nor uint16; "
        "choose a rescale_slope/rescale_intercept that brings them into 16 bits"
    )


def _check_transfer_syntax(transfer_syntax: str) -> UID:
    uid = UID(str(transfer_syntax))
    if uid in _UNCOMPRESSED:
        return uid
    if not uid.is_compressed or uid not in _ENCODER_PACKAGES:
        raise ValueError(
            f"cannot write transfer syntax {uid} ({uid.name}): supported are "
            + ", ".join(sorted(u.name for u in _UNCOMPRESSED | set(_ENCODER_PACKAGES)))
        )
    from pydicom.pixels import get_encoder

    encoder = get_encoder(uid)
    if not encoder.is_available:
        raise ValueError(
            f"no encoder for {uid.name} is installed; install {_ENCODER_PACKAGES[uid]} "
            f"(missing: {'; '.join(encoder.missing_dependencies)})"
        )
    return uid


def _geometry(affine: np.ndarray) -> dict[str, Any]:
    """Derive IOP, pixel spacing and slice geometry from a voxel -> RAS+ affine."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"affine must be a finite 4x4 matrix, got shape {affine.shape}")
    lps = RAS_TO_LPS @ affine
    col_spacing = float(np.linalg.norm(lps[:3, 0]))  # step along I = between columns
    row_spacing = float(np.linalg.norm(lps[:3, 1]))  # step along J = between rows
    if col_spacing == 0 or row_spacing == 0:
        raise ValueError("affine has a zero-length in-plane axis")
    row_cos = lps[:3, 0] / col_spacing
    col_cos = lps[:3, 1] / row_spacing
    if abs(float(row_cos @ col_cos)) > 1e-4:
        raise ValueError(
            "the affine's first two columns are not perpendicular; DICOM image planes "
            "are rectangular (only the slice axis may be sheared, e.g. gantry tilt)"
        )
    normal = np.cross(row_cos, col_cos)
    step = lps[:3, 2]
    thickness = abs(float(step @ normal))
    if thickness == 0:
        raise ValueError("affine's slice axis lies in the image plane")
    return {
        "lps": lps,
        "iop": [*row_cos.tolist(), *col_cos.tolist()],
        "pixel_spacing": [row_spacing, col_spacing],
        "normal": normal,
        "thickness": thickness,
    }


def write_dicom_series(
    array: np.ndarray,
    affine: np.ndarray,
    folder: str | os.PathLike,
    *,
    modality: str = "CT",
    series_uid: str | None = None,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_description: str = "",
    series_number: int = 1,
    rescale_slope: float = 1.0,
    rescale_intercept: float = 0.0,
    window: tuple[float, float] | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    patient_name: str = "Anonymous",
    patient_id: str = "ANON",
    instance_numbers: Sequence[int] | None = None,
    file_names: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    protect: Iterable[str | os.PathLike] = (),
) -> list[Path]:
    """Write a 3D array as a DICOM image series, one single-frame file per slice.

    Parameters
    ----------
    array : numpy.ndarray
        Shape ``(I, J, K)``: I = column index (along ``ImageOrientationPatient[0:3]``),
        J = row index (along ``ImageOrientationPatient[3:6]``), K = slice. Each file
        holds ``array[:, :, k].T`` (``Rows = J``, ``Columns = I``). An integer array
        holds stored values (value in HU for CT = ``stored * rescale_slope +
        rescale_intercept``); a float array holds rescaled values (HU) and is
        converted to stored values with the slope and intercept, rounded to the
        nearest integer. Stored values are written as signed 16 bit when they fit,
        else unsigned 16 bit.
    affine : numpy.ndarray
        4x4 voxel -> RAS+ mm matrix (nibabel's convention). Its first two columns
        give ``ImageOrientationPatient`` (normalised, converted to LPS+) and
        ``PixelSpacing = [norm(column 1), norm(column 0)]`` (row spacing, column
        spacing) in mm; ``ImagePositionPatient`` of slice k is the LPS+ position of
        voxel ``(0, 0, k)``. A third column that is not perpendicular to the image
        plane (gantry tilt) therefore yields tilted positions; ``SliceThickness`` is
        the step along the plane normal, in mm.
    folder : str or PathLike
        Output folder; created if missing.
    modality : {"CT", "MR"}
        Writes CT Image Storage or MR Image Storage objects.
    series_uid, study_uid, frame_of_reference_uid : str, optional
        DICOM UIDs; fresh ones are generated when omitted. When ``series_uid`` is
        given, the SOP Instance UIDs are derived from it deterministically.
    series_description : str
        SeriesDescription.
    series_number : int
        SeriesNumber.
    rescale_slope, rescale_intercept : float
        Modality LUT (``RescaleSlope``, ``RescaleIntercept``). Always written for
        CT (with ``RescaleType = HU``); for MR only when not the identity.
    window : tuple of float, optional
        ``(center, width)`` of the default display window, in rescaled units.
    transfer_syntax : str
        Transfer syntax UID. Explicit/Implicit VR Little Endian and Deflated are
        written natively; RLE Lossless, JPEG 2000 (Lossless) and JPEG-LS are
        compressed with ``Dataset.compress`` when an encoder is installed
        (JPEG 2000 needs ``pylibjpeg-openjpeg`` and images of at least 32 x 32
        pixels; JPEG-LS needs ``pyjpegls``).
    patient_name, patient_id : str
        PatientName and PatientID.
    instance_numbers : sequence of int, optional
        InstanceNumber of each slice (length K); default ``1..K``.
    file_names : sequence of str, optional
        File name of each slice inside ``folder`` (length K); default
        ``"IM{k+1:05d}.dcm"``.
    extra : mapping, optional
        More attributes set on every slice, by DICOM keyword (e.g.
        ``{"GantryDetectorTilt": 15.0, "ImageType": [...]}``). Applied last, so it
        can override any default.
    overwrite : bool
        Allow writing into a folder that already holds files (files with the same
        names are replaced). By default a non-empty folder is refused.
    protect : iterable of str or PathLike
        Source files (or folders: every existing file below them) that must never
        be replaced, e.g. the series the array was read from. Checked for every
        file before anything is written, also with ``overwrite=True``.

    Returns
    -------
    list of pathlib.Path
        The files written, in slice order (k = 0 .. K-1).

    Raises
    ------
    FileExistsError
        ``folder`` is not empty and ``overwrite`` is False.
    napari_medseg.errors.OverwriteSourceError
        A file to write is one of ``protect`` (nothing is written).
    ValueError
        Bad shape, affine, modality, value range or unsupported transfer syntax.

    Notes
    -----
    Each file is written to a temporary name in ``folder`` and moved into place
    with :func:`os.replace`, so a reader never sees a half-written file.
    """
    array = np.asarray(array)
    if array.ndim != 3 or min(array.shape) < 1:
        raise ValueError(f"array must be 3D (I, J, K), got shape {array.shape}")
    modality = modality.upper()
    if modality not in SOP_CLASS_BY_MODALITY:
        raise ValueError(f"modality must be one of {sorted(SOP_CLASS_BY_MODALITY)}")
    n_cols, n_rows, n_slices = (int(n) for n in array.shape)
    geom = _geometry(affine)
    ts = _check_transfer_syntax(transfer_syntax)
    if ts in (pydicom.uid.JPEG2000Lossless, pydicom.uid.JPEG2000) and min(n_cols, n_rows) < 32:
        raise ValueError(
            f"JPEG 2000 encoding (openjpeg, 6 wavelet resolutions) needs images of at least "
            f"32 x 32 pixels, got {n_rows} rows x {n_cols} columns"
        )
    stored, dtype = _stored_values(array, float(rescale_slope), float(rescale_intercept))

    if instance_numbers is None:
        instance_numbers = list(range(1, n_slices + 1))
    if file_names is None:
        file_names = [f"IM{k + 1:05d}.dcm" for k in range(n_slices)]
    if len(instance_numbers) != n_slices or len(file_names) != n_slices:
        raise ValueError("instance_numbers and file_names need one entry per slice (K)")
    if len(set(file_names)) != n_slices:
        raise ValueError("file_names must be unique")
    for name in file_names:
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"file name {name!r} must be a plain name without folders")

    folder = Path(folder)
    protect = [p for p in protect if p]
    for name in file_names:
        refuse_source_overwrite(folder / name, protect)
    folder.mkdir(parents=True, exist_ok=True)
    if not overwrite and any(folder.iterdir()):
        raise FileExistsError(
            f"{folder}: folder is not empty; choose an empty folder or pass overwrite=True"
        )

    deterministic = series_uid is not None
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_of_reference_uid = frame_of_reference_uid or generate_uid()
    sop_class = SOP_CLASS_BY_MODALITY[modality]
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    lps = geom["lps"]
    normal = geom["normal"]

    written: list[Path] = []
    for k in range(n_slices):
        position = lps[:3, 2] * k + lps[:3, 3]
        sop_uid = (
            generate_uid(entropy_srcs=[series_uid, "slice", str(k)])
            if deterministic
            else generate_uid()
        )
        ds = pydicom.Dataset()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if ts.is_compressed else ts
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = time
        ds.AccessionNumber = ""
        ds.Modality = modality
        ds.Manufacturer = "napari-medseg"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = ""
        ds.SeriesDescription = series_description
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = int(series_number)
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = int(instance_numbers[k])
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [_fmt_ds(v) for v in position]
        ds.ImageOrientationPatient = [_fmt_ds(v) for v in geom["iop"]]
        ds.SliceThickness = _fmt_ds(geom["thickness"])
        ds.SliceLocation = _fmt_ds(float(position @ normal))
        ds.PixelSpacing = [_fmt_ds(v) for v in geom["pixel_spacing"]]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = n_rows
        ds.Columns = n_cols
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if dtype.kind == "i" else 0
        if modality == "CT":
            ds.KVP = ""
            ds.RescaleIntercept = _fmt_ds(rescale_intercept)
            ds.RescaleSlope = _fmt_ds(rescale_slope)
            ds.RescaleType = "HU"
        else:
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = "NONE"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "3D"
            ds.RepetitionTime = ""
            ds.EchoTime = ""
            ds.EchoTrainLength = ""
            if rescale_slope != 1.0 or rescale_intercept != 0.0:
                ds.RescaleIntercept = _fmt_ds(rescale_intercept)
                ds.RescaleSlope = _fmt_ds(rescale_slope)
                ds.RescaleType = "US"
        if window is not None:
            ds.WindowCenter = _fmt_ds(window[0])
            ds.WindowWidth = _fmt_ds(window[1])
        plane = np.ascontiguousarray(stored[:, :, k].T)  # (Rows, Columns) = (J, I)
        if ts.is_compressed:
            ds.compress(ts, plane, generate_instance_uid=False)
        else:
            ds.PixelData = plane.tobytes()
        for keyword, value in (extra or {}).items():
            setattr(ds, keyword, value)

        target = folder / file_names[k]
        with atomic_output(target, suffix=".tmp") as temp_path:
            ds.save_as(temp_path, enforce_file_format=True)
        written.append(target)
    return written
