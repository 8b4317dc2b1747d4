"""Label maps as DICOM RT Structure Sets (RTSTRUCT), and back.

An RT Structure Set is how radiotherapy planning systems exchange contours: each
region of interest (ROI) is a set of closed polygons, one or more per image plane,
in patient coordinates (DICOM LPS, mm), each referencing the image it was drawn on.

:func:`write_rtstruct` stores a label map that lies on a DICOM series' grid: one ROI
per label value present (ROI Number = the label value, ROI Name = the class name,
its display colour), one contour per connected outline on every image plane of the
series that holds the label. Outlines are traced with marching squares at half the
way between a labelled and an unlabelled pixel centre
(:func:`skimage.measure.find_contours`), so every labelled pixel centre lies inside
its outline and every other one outside; holes are contours of their own, inside
the outer contour, to be filled by the even-odd rule as planning systems do.

:func:`read_rtstruct` rasterises the CLOSED_PLANAR contours of each ROI onto the
grid of a scan in the same frame of reference: a voxel belongs to an ROI when its
centre lies inside an odd number of the ROI's contours on its plane (holes and
nested islands handled). Overlapping ROIs (an organ inside the BODY contour) cannot
all be kept in one label map: they are painted from the largest to the smallest, so
the smaller structure shows, and the overlap is reported in the volume's warnings.
POINT and OPEN_PLANAR contours (isocentres, markers) hold no volume and are left out
with a note.

A labels -> RTSTRUCT -> labels round trip gives back the same voxels.

Core module: imports neither napari, Qt nor torch; pydicom and scikit-image are
imported inside the functions.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.errors import ScanReadError, ScanWriteError
from napari_medseg.io.dicom_reference import (
    GRID_TOLERANCE_VOXELS,
    TYPE2_SOURCE_ATTRIBUTES,
    check_unreferenced,
    frame_view,
    lo_text,
    place_frames,
    read_source_datasets,
    source_frames,
)
from napari_medseg.volume import RAS_TO_LPS, ScanMetadata, Volume

logger = logging.getLogger(__name__)

#: SOP Class UID of an RT Structure Set.
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
#: The "Detached Study Management" SOP class that RT objects name their study by.
_STUDY_REFERENCE_CLASS = "1.2.840.10008.3.1.2.3.1"
#: Contour points closer to a straight line than this (pixels) are dropped.
CONTOUR_TOLERANCE_PIXELS = 0.05
#: SpecificCharacterSet for names outside ASCII.
_UTF8 = "ISO_IR 192"


class RTStructError(ScanWriteError):
    """An RT Structure Set cannot be written; the message names the output."""


class RTStructReadError(ScanReadError):
    """An RT Structure Set cannot be read onto the given scan."""


# ---------------------------------------------------------------------------- writing
def _outlines(plane: np.ndarray) -> list[np.ndarray]:
    """Closed outlines of a boolean ``(rows, columns)`` plane, in pixel coordinates.

    Returns
    -------
    list of numpy.ndarray
        One ``(N, 2)`` array of ``(row, column)`` per outline (first point not
        repeated), outer outlines and hole outlines alike.
    """
    from skimage.measure import approximate_polygon, find_contours

    padded = np.pad(plane.astype(np.uint8), 1)  # every outline closes inside the pad
    out = []
    for contour in find_contours(padded, 0.5, fully_connected="low"):
        contour = approximate_polygon(contour, CONTOUR_TOLERANCE_PIXELS) - 1.0
        if len(contour) > 3 and np.allclose(contour[0], contour[-1]):
            out.append(contour[:-1])
    return out


def _lps_points(ref: Any, outline: np.ndarray) -> np.ndarray:
    """Pixel ``(row, column)`` positions of a source frame -> patient LPS mm, ``(N, 3)``."""
    row_cos = np.asarray(ref.iop[:3], dtype=float)  # direction in which columns grow
    col_cos = np.asarray(ref.iop[3:], dtype=float)  # direction in which rows grow
    row_spacing, col_spacing = (float(v) for v in ref.pixel_spacing)
    ipp = np.asarray(ref.ipp, dtype=float)
    return (
        ipp
        + outline[:, 1:2] * col_spacing * row_cos[None, :]
        + outline[:, 0:1] * row_spacing * col_cos[None, :]
    )


def _ds_values(points: np.ndarray) -> list[str]:
    """Coordinates as DS strings (0.1 micrometre, at most 16 characters)."""
    out = []
    for value in points.ravel().tolist():
        text = f"{value:.4f}".rstrip("0").rstrip(".")
        out.append("0" if text in ("-0", "") else text)
    return out


def _sequence(items: Iterable[Any]) -> Any:
    from pydicom.sequence import Sequence as DicomSequence

    return DicomSequence(list(items))


def _image_reference(ref: Any, sop_class: str) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = ref.sop_uid
    if ref.n_frames_in_file > 1:
        item.ReferencedFrameNumber = int(ref.frame) + 1
    return item


def _classes_rgb(color: str) -> list[int] | None:
    from napari_medseg.labels.classes import rgb_from_hex

    try:
        return list(rgb_from_hex(color)) if color else None
    except ValueError:
        return None


def write_rtstruct(
    path: str | PathLike,
    labels: Volume,
    source_files: Sequence[str | PathLike] | None = None,
    classes: Mapping[int, tuple[str, str]] | None = None,
    *,
    protect: Iterable[str | PathLike] = (),
    overwrite: bool = False,
    automatic: bool = False,
    label: str = "napari-medseg",
) -> Path:
    """Write a label map as an RT Structure Set referencing its source DICOM series.

    Parameters
    ----------
    path : path
        Output file (``.dcm``).
    labels : Volume
        Integer label map ``(I, J, K)`` on the grid of the source series (any voxel
        order: each source frame is placed from its own geometry).
    source_files : sequence of path, optional
        The series' files (default ``labels.metadata.files``).
    classes : mapping, optional
        ``{value: (name, "#rrggbb")}``; a value without an entry is named
        ``label_<n>`` and gets no display colour.
    protect : iterable of path
        Files never to write over (the source scans).
    overwrite : bool
        Replace an existing ``path``.
    automatic : bool
        The contours come from a model (ROI Generation Algorithm ``AUTOMATIC``,
        else ``MANUAL``).
    label : str
        Structure Set Label (at most 16 characters are kept).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    RTStructError
        The label map is not on the series' grid, labels lie on planes without a
        source image, no label is present, or ``path`` exists without ``overwrite``.
    OverwriteSourceError
        ``path`` is one of the protected files.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from napari_medseg.io.atomic import atomic_output, refuse_source_overwrite
    from napari_medseg.labels.classes import default_name
    from napari_medseg.labels.maps import as_label_array

    path = Path(path)
    refuse_source_overwrite(path, protect)
    if path.exists() and not overwrite:
        raise RTStructError(path, "already exists.", "Pass --overwrite to replace it.")
    files = [os.fspath(f) for f in (source_files or labels.metadata.files)]
    array = as_label_array(labels.array, labels.metadata.source or "labels")
    frames = source_frames(files, path, RTStructError)
    placements = place_frames(frames, array.shape, labels.affine, where=path, error=RTStructError)
    check_unreferenced(array, placements, path, RTStructError)
    values = [int(v) for v in np.unique(array) if v > 0]
    if not values:
        raise RTStructError(path, "the label map holds no label: there is no structure to save.")
    too_big = [v for v in values if v > 65535]
    if too_big:
        raise RTStructError(
            path, f"label value {too_big[0]} exceeds 65535, the largest ROI Number allowed."
        )
    classes = dict(classes or {})
    datasets = read_source_datasets(files, path, RTStructError)
    first = datasets[0]
    sop_class = str(first.SOPClassUID)
    frame_of_reference = str(first.FrameOfReferenceUID)  # filled in when the source lacks it

    contours: dict[int, list[Dataset]] = {v: [] for v in values}
    referenced = []
    for ref, placed in zip(frames, placements, strict=True):
        plane = frame_view(array, placed)
        referenced.append(_image_reference(ref, sop_class))
        for value in np.unique(plane).tolist():
            if value == 0:
                continue
            for outline in _outlines(plane == value):
                item = Dataset()
                item.ContourImageSequence = _sequence([_image_reference(ref, sop_class)])
                item.ContourGeometricType = "CLOSED_PLANAR"
                item.NumberOfContourPoints = len(outline)
                item.ContourData = _ds_values(_lps_points(ref, outline))
                contours[int(value)].append(item)

    now = dt.datetime.now()
    ds = Dataset()
    for keyword in (*TYPE2_SOURCE_ATTRIBUTES, "StudyInstanceUID", "SpecificCharacterSet"):
        if keyword in first:
            setattr(ds, keyword, first.data_element(keyword).value)
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 9901
    ds.InstanceNumber = 1
    ds.SeriesDescription = lo_text(label)
    ds.Manufacturer = "napari-medseg"
    ds.StructureSetLabel = lo_text(label)[:16] or "napari-medseg"
    ds.StructureSetDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.StructureSetTime = ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.OperatorsName = ""

    series_item = Dataset()
    series_item.SeriesInstanceUID = str(first.SeriesInstanceUID)
    series_item.ContourImageSequence = _sequence(referenced)
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = _STUDY_REFERENCE_CLASS
    study_item.ReferencedSOPInstanceUID = ds.StudyInstanceUID
    study_item.RTReferencedSeriesSequence = _sequence([series_item])
    frame_item = Dataset()
    frame_item.FrameOfReferenceUID = frame_of_reference
    frame_item.RTReferencedStudySequence = _sequence([study_item])
    ds.ReferencedFrameOfReferenceSequence = _sequence([frame_item])

    rois, roi_contours, observations = [], [], []
    names = []
    for number, value in enumerate(values, start=1):
        name, color = classes.get(value, (default_name(value), ""))
        names.append(str(name))
        roi = Dataset()
        roi.ROINumber = value
        roi.ReferencedFrameOfReferenceUID = frame_of_reference
        roi.ROIName = lo_text(name) or default_name(value)
        roi.ROIGenerationAlgorithm = "AUTOMATIC" if automatic else "MANUAL"
        rois.append(roi)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = value
        rgb = _classes_rgb(color)
        if rgb is not None:
            roi_contour.ROIDisplayColor = rgb
        roi_contour.ContourSequence = _sequence(contours[value])
        roi_contours.append(roi_contour)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = value
        observation.RTROIInterpretedType = ""
        observation.ROIInterpreter = ""
        observations.append(observation)
    ds.StructureSetROISequence = _sequence(rois)
    ds.ROIContourSequence = _sequence(roi_contours)
    ds.RTROIObservationsSequence = _sequence(observations)
    if not all(n.isascii() for n in [*names, label]):
        ds.SpecificCharacterSet = _UTF8

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    with atomic_output(path) as temporary:
        ds.save_as(temporary, enforce_file_format=True)
    return path


# ---------------------------------------------------------------------------- reading
@dataclass
class _Roi:
    number: int
    name: str
    color: str = ""
    mask: np.ndarray | None = None
    skipped: dict[str, int] = field(default_factory=dict)


def _read_dataset(path: Path) -> Any:
    import pydicom

    if not path.is_file():
        raise RTStructReadError(path, "no such file.", "Check the path.")
    try:  # some RT exports lack the file preamble: read them as raw datasets
        ds = pydicom.dcmread(os.fspath(path), force=True)
        uid = str(ds.get("SOPClassUID", "") or "")
        modality = str(ds.get("Modality", "") or "")
    except Exception as error:  # pydicom raises many types on malformed files
        raise RTStructReadError(path, f"cannot be read as DICOM ({error}).") from error
    if uid != RTSTRUCT_SOP_CLASS and modality != "RTSTRUCT":
        raise RTStructReadError(
            path,
            f"is not an RT Structure Set (SOP class {uid or 'missing'}, modality "
            f"{modality or 'missing'}).",
        )
    return ds


def _hex(rgb: Any) -> str:
    from napari_medseg.labels.classes import hex_color

    try:
        values = [float(v) for v in rgb]
    except (TypeError, ValueError):
        return ""
    return hex_color(values) if len(values) == 3 else ""


def _contour_plane(
    points_ijk: np.ndarray, shape: tuple[int, int, int]
) -> tuple[int, int, tuple[int, int]] | str:
    """The grid plane a contour lies in: ``(axis, index, in-plane axes)``, or why not."""
    spread = points_ijk.max(axis=0) - points_ijk.min(axis=0)
    axis = int(np.argmin(spread))
    if spread[axis] > 0.1:
        return "does not lie in one plane of the scan's voxel grid"
    position = float(points_ijk[:, axis].mean())
    index = int(np.rint(position))
    if abs(position - index) >= GRID_TOLERANCE_VOXELS - 1e-6:
        return f"lies between two slices of the scan (at {position:.2f} along axis {'IJK'[axis]})"
    if not 0 <= index < shape[axis]:
        return f"lies at slice {index} along axis {'IJK'[axis]}, outside the scan"
    return axis, index, tuple(a for a in range(3) if a != axis)  # type: ignore[return-value]


def read_rtstruct(path: str | PathLike, reference: Volume) -> Volume:
    """Read the ROIs of an RT Structure Set as a label map on a scan's voxel grid.

    Parameters
    ----------
    path : path
        The RTSTRUCT file.
    reference : Volume
        The scan the structures were drawn on (usually the CT series the
        RTSTRUCT references), in the same DICOM Frame of Reference.

    Returns
    -------
    Volume
        Label map ``(I, J, K)`` on ``reference``'s grid (same shape and affine),
        uint8 or uint16, each ROI's voxels set to its ROI Number.
        ``metadata.extra["classes"]`` is ``{ROI Number: (ROI Name, "#rrggbb")}``;
        ``metadata.warnings`` say what was left out (point contours, parts outside
        the scan) and which ROIs overlap.

    Raises
    ------
    RTStructReadError
        Not a readable RT Structure Set; another Frame of Reference than the scan;
        a contour that lies between slices or across the grid's planes; an ROI
        that lies entirely outside the scan; no ROI with a closed contour.
    """
    from skimage.draw import polygon

    path = Path(path)
    ds = _read_dataset(path)
    rt_frames = {
        str(item.get("FrameOfReferenceUID", ""))
        for item in ds.get("ReferencedFrameOfReferenceSequence", [])
    }
    rt_frames |= {
        str(item.get("ReferencedFrameOfReferenceUID", ""))
        for item in ds.get("StructureSetROISequence", [])
    }
    rt_frames.discard("")
    scan_frame = reference.metadata.frame_of_reference_uid
    if scan_frame and rt_frames and scan_frame not in rt_frames:
        raise RTStructReadError(
            path,
            f"its structures are in Frame of Reference {sorted(rt_frames)[0]}, the scan "
            f"{reference.metadata.source or ''} in {scan_frame}: they were not drawn on it.",
            "Open the CT or MR series the structure set references.",
        )
    shape = tuple(int(n) for n in reference.shape)
    rois: dict[int, _Roi] = {}
    for item in ds.get("StructureSetROISequence", []):
        number = int(item.get("ROINumber", 0) or 0)
        rois[number] = _Roi(number, str(item.get("ROIName", "") or f"ROI {number}"))
    try:
        inverse = np.linalg.inv(RAS_TO_LPS @ np.asarray(reference.affine, dtype=float))
    except np.linalg.LinAlgError:
        raise RTStructReadError(path, "the scan's affine is singular.") from None
    notes: list[str] = []
    for roi_contour in ds.get("ROIContourSequence", []):
        number = int(roi_contour.get("ReferencedROINumber", 0) or 0)
        roi = rois.setdefault(number, _Roi(number, f"ROI {number}"))
        roi.color = _hex(roi_contour.get("ROIDisplayColor", ()))
        for contour in roi_contour.get("ContourSequence", []):
            kind = str(contour.get("ContourGeometricType", "") or "")
            if kind != "CLOSED_PLANAR":
                roi.skipped[kind or "untyped"] = roi.skipped.get(kind or "untyped", 0) + 1
                continue
            try:
                points = np.asarray([float(v) for v in contour.ContourData], dtype=float)
            except (AttributeError, TypeError, ValueError) as error:
                raise RTStructReadError(
                    path, f"ROI '{roi.name}': a contour has unreadable points ({error})."
                ) from error
            if points.size < 9 or points.size % 3:
                raise RTStructReadError(
                    path, f"ROI '{roi.name}': a closed contour needs at least 3 points (x, y, z)."
                )
            lps = points.reshape(-1, 3)
            ijk = lps @ inverse[:3, :3].T + inverse[:3, 3]
            plane = _contour_plane(ijk, shape)  # type: ignore[arg-type]
            if isinstance(plane, str):
                raise RTStructReadError(
                    path,
                    f"ROI '{roi.name}': a contour at z = {lps[0, 2]:g} mm {plane}.",
                    "Open the series the structure set was drawn on.",
                )
            axis, index, (a, b) = plane
            if roi.mask is None:
                roi.mask = np.zeros(shape, dtype=bool)
            inside = np.zeros((shape[a], shape[b]), dtype=bool)
            rr, cc = polygon(ijk[:, a], ijk[:, b], shape=inside.shape)
            inside[rr, cc] = True
            selector: list[Any] = [slice(None)] * 3
            selector[axis] = index
            roi.mask[tuple(selector)] ^= inside  # even-odd: holes and islands
    painted = [r for r in rois.values() if r.mask is not None and r.mask.any()]
    for roi in rois.values():
        for kind, count in roi.skipped.items():
            notes.append(f"ROI '{roi.name}': {count} {kind} contour(s) hold no volume; left out")
        if roi.mask is not None and not roi.mask.any():
            raise RTStructReadError(
                path,
                f"ROI '{roi.name}' lies outside the scan's field of view.",
                "Open the series the structure set was drawn on.",
            )
    if not painted:
        raise RTStructReadError(path, "holds no ROI with a closed contour: nothing to show.")
    top = max(r.number for r in painted)
    array = np.zeros(shape, dtype=np.uint8 if top <= 255 else np.uint16)
    painted.sort(key=lambda r: -int(r.mask.sum()))  # type: ignore[union-attr]
    for roi in painted:
        overlapped = np.unique(array[roi.mask])
        for other in overlapped[overlapped > 0].tolist():
            shared = int(np.count_nonzero(roi.mask & (array == other)))  # type: ignore[operator]
            notes.append(
                f"ROI '{roi.name}' overlaps ROI '{rois[other].name}' on {shared} voxels; "
                f"the label map shows '{roi.name}' there"
            )
        array[roi.mask] = roi.number
    classes = {r.number: (r.name, r.color or "") for r in sorted(painted, key=lambda r: r.number)}
    meta = ScanMetadata(
        source=str(path),
        format="dicom",
        modality="RTSTRUCT",
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        frame_of_reference_uid=scan_frame or (sorted(rt_frames)[0] if rt_frames else ""),
        series_description=str(ds.get("StructureSetLabel", "") or ""),
        files=list(reference.metadata.files),
        warnings=notes,
        extra={"classes": classes},
    )
    return Volume(array, np.array(reference.affine, dtype=float), meta)


__all__ = [
    "RTSTRUCT_SOP_CLASS",
    "RTStructError",
    "RTStructReadError",
    "read_rtstruct",
    "write_rtstruct",
]
