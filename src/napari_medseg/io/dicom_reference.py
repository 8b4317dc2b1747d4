"""Label maps that reference the DICOM series they were drawn on: where each source
frame lies in a label map, and the source files' headers.

A DICOM SEG (:mod:`napari_medseg.io.dicom_seg`) and an RT Structure Set
(:mod:`napari_medseg.io.rtstruct`) both reference the images of a series frame by
frame. Where each source frame lies in the label map is worked out from the geometry,
not from the array order: every frame's ImagePositionPatient, ImageOrientationPatient
and PixelSpacing are mapped through the inverse of the label map's affine, which gives
the label-map axis along the frame's rows, the one along its columns (each possibly
reversed) and the slice index of the frame. A label map in any voxel order therefore
references the same frames, and a label map that is not on the series' grid is
refused.

Core module: imports neither napari, Qt nor torch; pydicom is imported inside the
functions.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from napari_medseg.errors import FileError
from napari_medseg.volume import RAS_TO_LPS

logger = logging.getLogger(__name__)

#: A source pixel must lie closer than this (in voxels) to the label-map voxel it
#: is matched with: the nearest voxel is then unambiguous. It is the tolerance the
#: DICOM reader accepts for slices placed on its uniform grid.
GRID_TOLERANCE_VOXELS = 0.5

#: Type 2 patient/study attributes copied from the source into a derived object; a source
#: that lacks one (some exports do) gets it empty in the in-memory copy only.
TYPE2_SOURCE_ATTRIBUTES = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


@dataclass(frozen=True)
class FramePlacement:
    """Where one source frame lies in a label map.

    Attributes
    ----------
    path : str
        The source file.
    frame : int
        0-based frame number in the file (0 for single-frame files).
    sop_uid : str
        SOPInstanceUID of the file.
    slice_axis : int
        Label-map axis (0, 1, 2 = I, J, K) across the frame's plane.
    index : int
        Index of the frame's plane along ``slice_axis``.
    row_axis, col_axis : int
        Label-map axis along which the frame's row index (down a column) and
        column index (along a row) advance.
    row_step, col_step : int
        +1 or -1: whether the label-map index grows or shrinks with them.
    deviation : float
        Largest distance (voxels) between a frame pixel centre and the centre of
        the voxel it is matched with.
    """

    path: str
    frame: int
    sop_uid: str
    slice_axis: int
    index: int
    row_axis: int
    col_axis: int
    row_step: int
    col_step: int
    deviation: float


def frame_view(array: np.ndarray, placement: FramePlacement) -> np.ndarray:
    """The label-map voxels of one source frame, as a ``(Rows, Columns)`` view.

    Parameters
    ----------
    array : numpy.ndarray
        Label map, shape ``(I, J, K)``, on the grid the placement was computed for.
    placement : FramePlacement

    Returns
    -------
    numpy.ndarray
        A view (no copy): ``view[r, c]`` is the voxel under pixel ``(r, c)`` of
        the frame. Writing into it writes into ``array``.
    """
    index: list[Any] = [slice(None)] * 3
    index[placement.slice_axis] = placement.index
    plane = array[tuple(index)]  # 2D: the two other axes, in increasing order
    if placement.row_axis > placement.col_axis:
        plane = plane.T
    return plane[:: placement.row_step, :: placement.col_step]


def _frame_placement(
    ref: Any, shape: tuple[int, int, int], inverse: np.ndarray
) -> FramePlacement | str:
    """Place one frame (a ``FrameRef``) on a grid; a text saying why not when it is not."""
    if ref.iop is None or ref.ipp is None or ref.pixel_spacing is None:
        return "has no ImagePositionPatient, ImageOrientationPatient or PixelSpacing"
    flip = RAS_TO_LPS[:3, :3]  # LPS <-> RAS (its own inverse)
    row_cos = np.asarray(ref.iop[:3], dtype=float)  # direction along a row (columns grow)
    col_cos = np.asarray(ref.iop[3:], dtype=float)  # direction down a column (rows grow)
    row_spacing, col_spacing = (float(v) for v in ref.pixel_spacing)
    linear = inverse[:3, :3]
    origin = linear @ (flip @ np.asarray(ref.ipp, dtype=float)) + inverse[:3, 3]
    d_col = linear @ (flip @ row_cos) * col_spacing  # voxel step per column index
    d_row = linear @ (flip @ col_cos) * row_spacing  # voxel step per row index
    col_axis = int(np.argmax(np.abs(d_col)))
    row_axis = int(np.argmax(np.abs(d_row)))
    if col_axis == row_axis:
        return "its image plane is not a plane of the label map's voxel grid"
    slice_axis = 3 - col_axis - row_axis
    col_step = 1 if d_col[col_axis] > 0 else -1
    row_step = 1 if d_row[row_axis] > 0 else -1
    if (int(ref.rows), int(ref.columns)) != (shape[row_axis], shape[col_axis]):
        return (
            f"its {ref.rows} x {ref.columns} pixels (rows x columns) do not match the "
            f"label map's {shape[row_axis]} x {shape[col_axis]} voxels in that plane"
        )
    index = int(np.rint(origin[slice_axis]))
    expected_origin = np.zeros(3)
    expected_origin[col_axis] = 0 if col_step > 0 else shape[col_axis] - 1
    expected_origin[row_axis] = 0 if row_step > 0 else shape[row_axis] - 1
    expected_origin[slice_axis] = index
    unit_col = np.zeros(3)
    unit_col[col_axis] = col_step
    unit_row = np.zeros(3)
    unit_row[row_axis] = row_step
    deviation = 0.0
    for r in (0, int(ref.rows) - 1):  # linear: the corners bound the whole frame
        for c in (0, int(ref.columns) - 1):
            found = origin + r * d_row + c * d_col
            expected = expected_origin + r * unit_row + c * unit_col
            deviation = max(deviation, float(np.abs(found - expected).max()))
    if deviation >= GRID_TOLERANCE_VOXELS:
        return (
            f"its pixels lie up to {deviation:.2f} voxel from the label map's voxel centres "
            "(another position, spacing or orientation)"
        )
    if not 0 <= index < shape[slice_axis]:
        return (
            f"it lies at slice {index} along label-map axis {'IJK'[slice_axis]}, outside the "
            f"label map's 0..{shape[slice_axis] - 1}"
        )
    return FramePlacement(
        path=str(ref.path),
        frame=int(ref.frame),
        sop_uid=str(ref.sop_uid),
        slice_axis=slice_axis,
        index=index,
        row_axis=row_axis,
        col_axis=col_axis,
        row_step=row_step,
        col_step=col_step,
        deviation=deviation,
    )


def place_frames(
    frames: Sequence[Any],
    shape: tuple[int, int, int],
    affine: np.ndarray,
    *,
    where: str | PathLike,
    error: type[FileError],
) -> list[FramePlacement]:
    """Place every source frame on a label-map grid, one frame per plane.

    Parameters
    ----------
    frames : sequence of FrameRef
        Frames of the source series (:func:`napari_medseg.io.dicom.read_header`).
    shape : tuple of int
        Label-map shape ``(I, J, K)``.
    affine : numpy.ndarray
        Label-map voxel -> RAS+ mm matrix.
    where : path
        File named in errors (the object being written or read).
    error : FileError subclass
        Raised when the frames and the grid do not match.

    Returns
    -------
    list of FramePlacement
        In the order of ``frames``.

    Raises
    ------
    FileError
        A frame is not on the grid, or two frames share a plane. Planes of the
        grid without a frame (a series read with gaps) are allowed here; see
        :func:`check_unreferenced`.
    """
    from napari_medseg.labels.maps import describe_grid

    grid = describe_grid(shape, affine)
    try:
        inverse = np.linalg.inv(np.asarray(affine, dtype=float))
    except np.linalg.LinAlgError:
        raise error(where, f"the label map's affine is singular ({grid}).") from None
    placements: list[FramePlacement] = []
    for ref in frames:
        placed = _frame_placement(ref, shape, inverse)
        if isinstance(placed, str):
            raise error(
                where,
                f"the label map ({grid}) is not on the grid of the DICOM series: source "
                f"{ref.label} {placed}.",
                "Save labels made on this DICOM series (or on a NIfTI of the same grid).",
            )
        placements.append(placed)
    axes = {p.slice_axis for p in placements}
    if len(axes) > 1:
        raise error(
            where,
            "the source frames cut the label map along different axes; they are not one stack.",
        )
    (axis,) = axes
    seen: dict[int, FramePlacement] = {}
    for placed in placements:
        other = seen.setdefault(placed.index, placed)
        if other is not placed:
            raise error(
                where,
                f"two source frames lie on label-map slice {placed.index}: {other.path} "
                f"(frame {other.frame + 1}) and {placed.path} (frame {placed.frame + 1}); a "
                "series with several images per position (phases, echoes) cannot be referenced "
                "as one volume.",
                "Open the series with one image per position.",
            )
    worst = max(p.deviation for p in placements)
    if worst > 0.01:
        logger.info("source frames lie up to %.3f voxel from the label grid", worst)
    return placements


def check_unreferenced(
    array: np.ndarray,
    placements: Sequence[FramePlacement],
    where: str | PathLike,
    error: type[FileError],
) -> None:
    """Raise ``error`` when labels lie on a plane no source frame covers.

    A series read with missing slices (``allow_gaps``) has planes without an image;
    labels there cannot be referenced, so they would be lost.
    """
    axis = placements[0].slice_axis
    covered = np.zeros(array.shape[axis], dtype=bool)
    covered[[p.index for p in placements]] = True
    if covered.all():
        return
    other = tuple(a for a in range(3) if a != axis)
    labelled = np.flatnonzero(np.any(array != 0, axis=other) & ~covered)
    if labelled.size:
        shown = ", ".join(str(k) for k in labelled[:8]) + (" ..." if labelled.size > 8 else "")
        raise error(
            where,
            f"label-map slices {shown} along axis {'IJK'[axis]} hold labels but have no source "
            f"image in the series ({len(placements)} images for {array.shape[axis]} slices); "
            "their labels could not be referenced.",
            "Pass every file of the series, or erase the labels on the slices the series lacks.",
        )


def check_source_files(files: Sequence[str], where: str | PathLike, error: type[FileError]) -> None:
    """Raise ``error`` unless there are source files and every one of them exists."""
    if not files:
        raise error(
            where,
            "no DICOM source files were given: the labels are saved referencing the DICOM "
            "series they were drawn on.",
            "Open the scan from its DICOM files (not a NIfTI) and save again.",
        )
    for file in files:
        if not os.path.isfile(file):
            raise error(
                where,
                f"source file {file} is missing (moved or deleted since the scan was opened).",
                "Put the series back where it was, or open it again from its new place.",
            )


def source_frames(files: Sequence[str], where: str | PathLike, error: type[FileError]) -> list[Any]:
    """Frame records of the source files (headers only) in file and frame order,
    checked to be one series."""
    from napari_medseg.io.dicom.header import read_header

    check_source_files(files, where, error)
    frames: list[Any] = []
    for file in files:
        try:
            refs = read_header(os.fspath(file), explicit=True)
        except FileError as problem:
            raise error(where, f"source file {problem}") from problem
        frames.extend(sorted(refs, key=lambda ref: ref.frame))
    multi = [f for f in frames if f.n_frames_in_file > 1]
    if multi and len(files) > 1:
        raise error(
            where,
            f"the source files mix a multi-frame image ({multi[0].path}) with other files; a "
            "reference is to single-frame images of one series or to one multi-frame image.",
        )
    missing = [f for f in frames if not str(f.sop_uid or "").strip()]
    if missing:
        raise error(
            where,
            f"source file {missing[0].path} has no SOP Instance UID (removed by an "
            "anonymiser?): the saved object must reference each source image by it.",
            "Save the labels as NIfTI or .seg.nrrd, or give the images their UIDs back.",
        )
    seen: dict[tuple[str, int], Any] = {}
    for ref in frames:
        other = seen.setdefault((str(ref.sop_uid), int(ref.frame)), ref)
        if other is not ref:
            raise error(
                where,
                f"source files {other.path} and {ref.path} share the SOP Instance UID "
                f"{ref.sop_uid}: the references would not say which image is meant.",
                "Save the labels as NIfTI or .seg.nrrd, or give each image its own UID.",
            )
    series = {str(f.info.get("series_uid", "")) for f in frames}
    if len(series) > 1:
        raise error(
            where,
            f"the source files belong to {len(series)} different series; labels reference one.",
            "Pass the files of the one series the labels were drawn on.",
        )
    return frames


#: Identifiers a derived object copies from its source series, and must not be empty.
SERIES_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")


def read_source_datasets(
    files: Sequence[str], where: str | PathLike, error: type[FileError]
) -> list[Any]:
    """Source headers as pydicom datasets (no pixel data), the patient and study
    attributes of type 2 present (empty when the source lacks them).

    A Study, Series or Frame of Reference UID the source lacks (an anonymiser may
    blank them) is given a new one, the same in every copy, with a logged warning
    naming it: the object written must have them, and its files stay one study."""
    import pydicom
    from pydicom.uid import generate_uid

    datasets = []
    for file in files:
        try:
            ds = pydicom.dcmread(os.fspath(file), stop_before_pixels=True)
        except Exception as problem:  # pydicom raises many types on bad files
            raise error(where, f"source file {file} cannot be read ({problem}).") from problem
        for keyword in TYPE2_SOURCE_ATTRIBUTES:
            if keyword not in ds:
                setattr(ds, keyword, "")
        datasets.append(ds)
    for keyword in SERIES_UIDS:
        if all(str(ds.get(keyword, "") or "").strip() for ds in datasets):
            continue
        new = generate_uid()
        for ds in datasets:
            if not str(ds.get(keyword, "") or "").strip():
                setattr(ds, keyword, new)
        logger.warning(
            "%s: the source series has no %s (anonymised?); the file written uses a new one, %s",
            where,
            keyword,
            new,
        )
    return datasets


def lo_text(text: Any) -> str:
    """``text`` as a DICOM LO value (a name, a description): at most 64 characters,
    no backslash (it separates values: ``"a\\b"`` would become two labels) nor
    control characters."""
    cleaned = re.sub(r"[\x00-\x1f\x7f]+", " ", str(text)).replace("\\", "/")
    return cleaned.strip()[:64]


__all__ = [
    "GRID_TOLERANCE_VOXELS",
    "TYPE2_SOURCE_ATTRIBUTES",
    "FramePlacement",
    "check_source_files",
    "check_unreferenced",
    "frame_view",
    "lo_text",
    "place_frames",
    "read_source_datasets",
    "source_frames",
]
