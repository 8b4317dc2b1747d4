"""Label maps as DICOM Segmentation objects (SEG) that reference their source series.

:func:`write_dicom_seg` stores a label map that lies on a DICOM series' voxel grid
as one BINARY DICOM SEG file (written with highdicom): one segment per label value
present, each frame derived from one source image (or one frame of an enhanced
multi-frame source) and referencing it by SOP Instance UID, in the series' Frame
of Reference. :func:`read_dicom_seg` maps a SEG back onto the source series' grid.

Where each source frame lies in the label map is worked out from the geometry, not
from the array order: every frame's ImagePositionPatient, ImageOrientationPatient
and PixelSpacing are mapped through the inverse of the label map's affine, which
gives the label-map axis along the frame's rows, the one along its columns (each
possibly reversed) and the slice index of the frame. A label map in any voxel
order (flipped, transposed, as a reader or a NIfTI file stored it) therefore
writes the same SEG, and a label map that is not on the series' grid is refused.

Limits and choices
------------------
* Segment numbers are 1..n (the standard wants them consecutive): the label
  values present, in ascending order. The original value of each segment is
  kept in its SegmentDescription (``"napari-medseg label value 7"``) and restored
  by :func:`read_dicom_seg`. A SEG holds at most 65535 segments; label values
  themselves may be any positive integer.
* Segmented property category and type are SNOMED CT "Tissue" (85756007), the
  generic choice also made by 3D Slicer for segments of unknown meaning; the
  segment label carries the class name.
* The SEG is a new series in the source's study. highdicom copies the patient
  and study attributes (name, ID, birth date, sex, study UID/date/ID...) from
  the source images: the standard requires a SEG to belong to the same patient
  and study. Nothing else about the patient is added.
* Frames without any label are omitted; frames of a segment are 1-bit packed.

Core module: imports neither napari, Qt nor torch; highdicom and pydicom are
imported inside the functions so that ``import napari_medseg.io`` stays cheap.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.errors import FileError, ScanReadError, ScanWriteError
from napari_medseg.volume import RAS_TO_LPS, ScanMetadata, Volume

logger = logging.getLogger(__name__)

__all__ = [
    "SEGMENT_VALUE_PREFIX",
    "DicomSegError",
    "DicomSegReadError",
    "FramePlacement",
    "SegGridError",
    "SegSourceError",
    "frame_view",
    "place_frames",
    "read_dicom_seg",
    "write_dicom_seg",
]

#: SegmentDescription text that stores a segment's label value (followed by the value).
SEGMENT_VALUE_PREFIX = "napari-medseg label value "

#: A source pixel must lie closer than this (in voxels) to the label-map voxel it
#: is matched with: the nearest voxel is then unambiguous. It is the tolerance the
#: DICOM reader accepts for slices placed on its uniform grid.
GRID_TOLERANCE_VOXELS = 0.5

#: Most segments one SEG can hold (Segment Number is a 16-bit value).
MAX_SEGMENTS = 65535

#: Type 2 patient/study attributes highdicom copies from the source; a source
#: that lacks one (some exports do) gets it empty in the in-memory copy only.
_TYPE2_SOURCE_ATTRIBUTES = (
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

#: SpecificCharacterSet of a SEG with text outside ASCII: UTF-8, so that any class name
#: (Greek, Cyrillic, Japanese...) is stored as it is instead of as "?".
UTF8_CHARACTER_SET = "ISO_IR 192"

_SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")


class DicomSegError(ScanWriteError):
    """A DICOM SEG cannot be written; the message names the output and the problem."""


class SegGridError(DicomSegError):
    """The label map does not lie on the source series' voxel grid."""


class SegSourceError(DicomSegError):
    """The source files are missing or are not a series a SEG can reference."""


class DicomSegReadError(ScanReadError):
    """A DICOM SEG cannot be read back onto the given source series."""


# ---------------------------------------------------------------- frame placement
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
    error: type[FileError] | None = None,
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
        File named in errors (the SEG being written or read).
    error : FileError subclass
        Raised when the frames and the grid do not match (default :class:`SegGridError`).

    Returns
    -------
    list of FramePlacement
        In the order of ``frames``.

    Raises
    ------
    FileError
        A frame is not on the grid, or two frames share a plane. Planes of the
        grid without a frame (a series read with gaps) are allowed here; see
        :func:`_check_unreferenced`.
    """
    from napari_medseg.labels.maps import describe_grid

    error = error or SegGridError
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


def _check_unreferenced(
    array: np.ndarray, placements: Sequence[FramePlacement], where: str | PathLike
) -> None:
    """Raise :class:`SegGridError` when labels lie on a plane no source frame covers.

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
        raise SegGridError(
            where,
            f"label-map slices {shown} along axis {'IJK'[axis]} hold labels but have no source "
            f"image in the series ({len(placements)} images for {array.shape[axis]} slices); "
            "their labels could not be referenced.",
            "Pass every file of the series, or erase the labels on the slices the series lacks.",
        )


# ---------------------------------------------------------------- source series
def _check_files(
    files: Sequence[str], where: str | PathLike, error: type[FileError] = SegSourceError
) -> None:
    """Raise ``error`` unless there are source files and every one of them exists."""
    if not files:
        raise error(
            where,
            "no DICOM source files were given: a DICOM SEG references the DICOM series the "
            "labels were drawn on.",
            "Open the scan from its DICOM files (not a NIfTI) and save again.",
        )
    for file in files:
        if not os.path.isfile(file):
            raise error(
                where,
                f"source file {file} is missing (moved or deleted since the scan was opened).",
                "Put the series back where it was, or open it again from its new place.",
            )


def _source_frames(
    files: Sequence[str], where: str | PathLike, error: type[FileError] = SegSourceError
) -> list[Any]:
    """Frame records of the source files (headers only) in file and frame order,
    checked to be one series."""
    from napari_medseg.io.dicom.header import read_header

    _check_files(files, where, error)
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
            "SEG references either single-frame images of one series or one multi-frame image.",
        )
    series = {str(f.info.get("series_uid", "")) for f in frames}
    if len(series) > 1:
        raise error(
            where,
            f"the source files belong to {len(series)} different series; a SEG references one.",
            "Pass the files of the one series the labels were drawn on.",
        )
    return frames


def _read_datasets(files: Sequence[str], where: str | PathLike) -> list[Any]:
    """Source headers as pydicom datasets (no pixel data), for highdicom."""
    import pydicom

    datasets = []
    for file in files:
        try:
            ds = pydicom.dcmread(os.fspath(file), stop_before_pixels=True)
        except Exception as error:  # pydicom raises many types on bad files
            raise SegSourceError(where, f"source file {file} cannot be read ({error}).") from error
        for keyword in _TYPE2_SOURCE_ATTRIBUTES:
            if keyword not in ds:
                setattr(ds, keyword, "")
        datasets.append(ds)
    return datasets


# ---------------------------------------------------------------- writing
def _algorithm(algorithm: str | Mapping[str, Any] | None) -> Any:
    """highdicom AlgorithmIdentificationSequence for a model (name, version, settings)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if algorithm is None:
        return None
    if isinstance(algorithm, str):
        info: Mapping[str, Any] = {"name": algorithm}
    else:
        info = algorithm
    settings = info.get("settings") if isinstance(info.get("settings"), Mapping) else {}
    parameters = {
        str(k): str(v)
        for k, v in dict(settings).items()
        if isinstance(v, str | int | float | bool) and "," not in str(v)
    }
    if len(",".join(f"{k}={v}" for k, v in parameters.items())) > 10240:  # LT limit
        parameters = {}
    return hd.AlgorithmIdentificationSequence(
        name=_lo_text(info.get("name") or "model") or "model",
        family=codes.DCM.ArtificialIntelligence,
        version=_lo_text(info.get("version") or "unknown") or "unknown",
        source="napari-medseg",
        parameters=parameters or None,
    )


def _hex_rgb(color: str) -> tuple[int, int, int] | None:
    text = str(color).lstrip("#")
    if len(text) != 6:
        return None
    try:
        return tuple(int(text[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    except ValueError:
        return None


def _lo_text(text: Any) -> str:
    """``text`` as a DICOM LO value (a name, a description): at most 64 characters,
    no backslash (it separates values: ``"a\\b"`` would become two labels) nor
    control characters."""
    cleaned = re.sub(r"[\x00-\x1f\x7f]+", " ", str(text)).replace("\\", "/")
    return cleaned.strip()[:64]


def _use_utf8_when_needed(seg: Any) -> None:
    """Store the SEG's text as UTF-8 when a name or description is not ASCII.

    highdicom keeps the source's character set (often ISO_IR 100, Latin-1): pydicom
    would write a class name it cannot encode as "?" with only a Python warning.
    Every text value is held decoded, so the patient and study attributes copied from
    the source are re-encoded correctly too.
    """
    texts = [str(item.get("SegmentLabel", "")) for item in seg.SegmentSequence]
    texts.append(str(seg.get("SeriesDescription", "")))
    for item in seg.SegmentSequence:
        for algorithm in item.get("SegmentationAlgorithmIdentificationSequence", []):
            texts += [str(algorithm.get(k, "")) for k in ("AlgorithmName", "AlgorithmVersion")]
    if not all(text.isascii() for text in texts):
        seg.SpecificCharacterSet = UTF8_CHARACTER_SET


def _segment_descriptions(
    values: np.ndarray,
    classes: Mapping[int, tuple[str, str]],
    algorithm_type: str,
    algorithm: Any,
) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from napari_medseg.labels.classes import default_name

    out = []
    for number, value in enumerate(values.tolist(), start=1):
        name, color = classes.get(int(value), (default_name(int(value)), ""))
        rgb = _hex_rgb(color) if color else None
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=_lo_text(name) or default_name(int(value)),
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=algorithm_type,
            algorithm_identification=algorithm if algorithm_type != "MANUAL" else None,
            display_color=hd.color.CIELabColor.from_rgb(*rgb) if rgb else None,
        )
        description.SegmentDescription = f"{SEGMENT_VALUE_PREFIX}{int(value)}"
        out.append(description)
    return out


def write_dicom_seg(
    path: str | PathLike,
    labels: Volume,
    source_files: Sequence[str | PathLike] | None = None,
    classes: Mapping[int, tuple[str, str]] | None = None,
    *,
    protect: Iterable[str | PathLike] = (),
    overwrite: bool = False,
    algorithm: str | Mapping[str, Any] | None = None,
    algorithm_type: str | None = None,
    series_description: str = "napari-medseg segmentation",
    series_number: int = 1000,
) -> Path:
    """Write a label map as a DICOM SEG that references its DICOM source series.

    Parameters
    ----------
    path : path
        Output file (conventionally ``.dcm``).
    labels : Volume
        Label map: integer values (0 = background), shape ``(I, J, K)`` in any
        voxel order, with its voxel -> RAS+ mm affine. It must lie on the grid of
        the source series (every source frame on one plane of it, pixel for voxel).
    source_files : sequence of path, optional
        The DICOM files of the series the labels were drawn on (single-frame
        images of one series, or one enhanced multi-frame file); default
        ``labels.metadata.files``. For a napari layer: ``metadata["medseg"]["files"]``.
    classes : mapping, optional
        ``{value: (name, "#rrggbb")}``: segment labels and recommended display
        colours (stored as CIELab). Values without an entry are named ``label_<n>``.
    protect : iterable of path
        More files that must never be replaced (the source files always are).
    overwrite : bool
        Replace an existing ``path``.
    algorithm : str or mapping, optional
        The model that made the labels: its name, or ``{"name", "version",
        "settings"}``. Recorded in each segment's AlgorithmIdentificationSequence.
    algorithm_type : {"AUTOMATIC", "SEMIAUTOMATIC", "MANUAL"}, optional
        Default AUTOMATIC when ``algorithm`` is given, else MANUAL.
    series_description : str
        SeriesDescription of the new SEG series.
    series_number : int
        SeriesNumber of the new SEG series.

    Returns
    -------
    pathlib.Path
        The written file (atomically: a reader never sees a partial file).

    Raises
    ------
    SegSourceError
        No source files, a missing file, a file that is not an image, files of
        several series, or several images at one position.
    SegGridError
        The label map is not on the series' grid, or holds labels on a slice the
        series has no image for (a series read with gaps).
    DicomSegError
        Nothing to write (no label), more than 65535 labels, bad label values,
        ``path`` exists and ``overwrite`` is False, or highdicom refused the data.
    OverwriteSourceError
        ``path`` is a source file or in ``protect``.
    """
    from napari_medseg.io.atomic import atomic_output, refuse_source_overwrite
    from napari_medseg.labels.maps import LabelMapError, as_label_array, present_labels

    path = Path(path)
    files = [
        os.fspath(f) for f in (labels.metadata.files if source_files is None else source_files)
    ]
    refuse_source_overwrite(path, [*protect, *files])
    if path.exists() and not overwrite:
        raise DicomSegError(
            path, "exists already.", "Choose another name, or allow replacing the file."
        )
    try:
        array = as_label_array(labels.array, labels.metadata.source or "labels")
    except LabelMapError as error:
        raise DicomSegError(path, f"the label map cannot be stored: {error}") from error
    values = present_labels(array)
    if values.size == 0:
        raise DicomSegError(path, "the label map is empty: there is no segment to write.")
    if values.size > MAX_SEGMENTS:
        raise DicomSegError(
            path,
            f"the label map holds {values.size} different labels; a DICOM SEG holds at most "
            f"{MAX_SEGMENTS} segments.",
        )
    frames = _source_frames(files, path)
    placements = place_frames(frames, labels.shape, labels.affine, where=path)
    _check_unreferenced(array, placements, path)
    first = frames[0]
    planes = np.zeros(
        (len(placements), int(first.rows), int(first.columns)),
        dtype=np.uint8 if values.size <= 255 else np.uint16,
    )
    for plane, placed in zip(planes, placements, strict=True):
        voxels = frame_view(array, placed)
        labelled = voxels != 0
        if labelled.any():  # segment number = rank of the value among the present ones
            plane[labelled] = np.searchsorted(values, voxels[labelled]) + 1
    if algorithm_type is None:
        algorithm_type = "AUTOMATIC" if algorithm is not None else "MANUAL"
    algorithm_type = str(algorithm_type).upper()
    if algorithm_type != "MANUAL" and algorithm is None:
        algorithm = {"name": "napari-medseg label tools"}
    datasets = _read_datasets(files, path)  # the order of the frames (planes)
    seg = _build_seg(
        path, datasets, planes, values, classes or {}, algorithm_type, algorithm, series_number
    )
    seg.SeriesDescription = _lo_text(series_description)
    _use_utf8_when_needed(seg)
    with atomic_output(path, suffix=".dcm") as temporary:
        seg.save_as(temporary, enforce_file_format=True)
    logger.info(
        "wrote DICOM SEG %s: %d segments, %d source frames", path, values.size, len(placements)
    )
    return path


def _build_seg(
    path: Path,
    datasets: list[Any],
    planes: np.ndarray,
    values: np.ndarray,
    classes: Mapping[int, tuple[str, str]],
    algorithm_type: str,
    algorithm: str | Mapping[str, Any] | None,
    series_number: int,
) -> Any:
    """The highdicom Segmentation (frames in source order), errors as DicomSegError."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    from napari_medseg import __version__

    try:
        identification = _algorithm(algorithm) if algorithm_type != "MANUAL" else None
        descriptions = _segment_descriptions(values, classes, algorithm_type, identification)
        with warnings.catch_warnings():
            # a single-component PatientName ("Anonymous") is copied as it is
            warnings.filterwarnings("ignore", message=".*unlikely to represent the intended")
            return hd.seg.Segmentation(
                source_images=datasets,
                pixel_array=planes,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions,
                series_instance_uid=generate_uid(),
                series_number=int(series_number),
                sop_instance_uid=generate_uid(),
                instance_number=1,
                manufacturer="napari-medseg",
                manufacturer_model_name="napari-medseg",
                software_versions=__version__,
                device_serial_number="none",
                content_label="SEGMENTATION",
                content_description="napari-medseg labels",
                omit_empty_frames=True,
            )
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        raise DicomSegError(
            path, f"highdicom could not build the SEG ({type(error).__name__}: {error})."
        ) from error


# ---------------------------------------------------------------- reading
def _source_grid(
    files: Sequence[str], where: str | PathLike
) -> tuple[tuple[int, int, int], np.ndarray, list[Any]]:
    """Shape, affine (RAS+) and frames of a series, from its headers (as the reader does)."""
    from napari_medseg.io.dicom.index import index_files
    from napari_medseg.io.dicom.stack import plan_stack

    _check_files(files, where, DicomSegReadError)
    try:
        series = index_files(list(files), root=os.path.dirname(files[0]) or ".")
    except FileError as error:
        raise DicomSegReadError(where, f"the source files cannot be indexed: {error}") from error
    if len(series) != 1:
        raise DicomSegReadError(
            where, f"the source files hold {len(series)} image stacks, not one series."
        )
    try:
        plan = plan_stack(series[0].frames)
    except FileError as error:
        raise DicomSegReadError(where, f"the source series has no regular grid: {error}") from error
    first = series[0].frames[0]
    shape = (int(first.columns), int(first.rows), len(plan.slots))
    return shape, RAS_TO_LPS @ plan.affine_lps, list(series[0].frames)


def _segment_values(seg: Any) -> tuple[dict[int, int], dict[int, tuple[str, str]]]:
    """Segment number -> label value, and ``{value: (name, "#rrggbb")}``."""
    import highdicom as hd

    from napari_medseg.labels.classes import hex_color

    values: dict[int, int] = {}
    classes: dict[int, tuple[str, str]] = {}
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        text = str(item.get("SegmentDescription", "") or "")
        value = number
        if text.startswith(SEGMENT_VALUE_PREFIX):
            try:
                value = int(text[len(SEGMENT_VALUE_PREFIX) :])
            except ValueError:
                value = number
        values[number] = value
        color = ""
        if "RecommendedDisplayCIELabValue" in item:
            lab = hd.color.CIELabColor.from_dicom_value(tuple(item.RecommendedDisplayCIELabValue))
            color = hex_color(lab.to_rgb())
        classes[value] = (str(item.get("SegmentLabel", "") or ""), color)
    return values, classes


def read_dicom_seg(path: str | PathLike, source: Volume | Sequence[str | PathLike]) -> Volume:
    """Read a DICOM SEG as a label map on the voxel grid of its source series.

    Parameters
    ----------
    path : path
        The SEG file.
    source : Volume or sequence of path
        The source series: a Volume read from it (its grid and
        ``metadata.files`` are used), or its files (the grid is worked out from
        their headers exactly as :func:`napari_medseg.io.read_scan` does).

    Returns
    -------
    Volume
        ``array`` ``(I, J, K)`` on the source grid (same shape and affine as the
        series read by :func:`~napari_medseg.io.read_scan`, or as ``source``),
        holding the label values stored by :func:`write_dicom_seg` (other SEGs:
        the segment numbers). ``metadata.source`` is the SEG file,
        ``metadata.files`` the source files, ``metadata.extra["classes"]``
        ``{value: (segment label, "#rrggbb")}`` and
        ``metadata.extra["segment_values"]`` ``{segment number: value}``.

    Raises
    ------
    DicomSegReadError
        Not a readable SEG, a SEG of another series, overlapping segments, or
        frames that are not derived pixel for pixel from the source frames.
        Also: missing source files, or a ``source`` grid its files do not lie on.
    """
    import highdicom as hd

    from napari_medseg.io.nifti import label_dtype_for_range

    path = Path(path)
    try:
        seg = hd.seg.segread(path)
    except Exception as error:  # pydicom/highdicom raise many types on bad files
        raise DicomSegReadError(path, f"is not a readable DICOM SEG ({error}).") from error
    if str(seg.SOPClassUID) not in _SEG_SOP_CLASSES:
        raise DicomSegReadError(path, f"is not a DICOM Segmentation (SOP class {seg.SOPClassUID}).")
    if isinstance(source, Volume):
        files = [os.fspath(f) for f in source.metadata.files]
        shape, affine = source.shape, source.affine
        frames = _source_frames(files, path, DicomSegReadError)
    else:
        files = [os.fspath(f) for f in source]
        shape, affine, frames = _source_grid(files, path)
    placements = place_frames(frames, shape, affine, where=path, error=DicomSegReadError)
    source_uids = {p.sop_uid for p in placements}
    referenced = {str(uid) for _, _, uid in seg.get_source_image_uids()}
    foreign = referenced - source_uids
    if foreign:
        raise DicomSegReadError(
            path,
            f"references {len(foreign)} image(s) that are not in the given source series "
            f"(e.g. {sorted(foreign)[0]}); it was made on another series.",
            "Pass the series the SEG was made on.",
        )
    values, classes = _segment_values(seg)
    lut = np.zeros(max(values) + 1, dtype=np.int64)
    for number, value in values.items():
        lut[number] = value
    try:
        if frames[0].n_frames_in_file > 1:  # one enhanced multi-frame image
            pixels = seg.get_pixels_by_source_frame(
                placements[0].sop_uid,
                [p.frame + 1 for p in placements],
                combine_segments=True,
                assert_missing_frames_are_empty=True,
            )
        else:
            pixels = seg.get_pixels_by_source_instance(
                [p.sop_uid for p in placements],
                combine_segments=True,
                assert_missing_frames_are_empty=True,
            )
    except (RuntimeError, ValueError, KeyError, AttributeError) as error:
        raise DicomSegReadError(
            path, f"its frames cannot be mapped onto the source frames ({error})."
        ) from error
    top = int(lut.max(initial=0))
    out = np.zeros(shape, dtype=label_dtype_for_range(0, top))
    for plane, placed in zip(pixels, placements, strict=True):
        frame_view(out, placed)[...] = lut[plane]
    metadata = ScanMetadata(
        source=str(path),
        format="dicom",
        modality="SEG",
        series_uid=str(seg.SeriesInstanceUID),
        study_uid=str(seg.StudyInstanceUID),
        frame_of_reference_uid=str(seg.get("FrameOfReferenceUID", "")),
        series_description=str(seg.get("SeriesDescription", "")),
        files=files,
        extra={"classes": classes, "segment_values": values},
    )
    return Volume(out, np.array(affine, dtype=float), metadata)
