"""Label maps as DICOM Segmentation objects (SEG) that reference their source series.

:func:`write_dicom_seg` stores a label map that lies on a DICOM series' voxel grid
as one BINARY DICOM SEG file (written with highdicom): one segment per label value
present, each frame derived from one source image (or one frame of an enhanced
multi-frame source) and referencing it by SOP Instance UID, in the series' Frame
of Reference. :func:`read_dicom_seg` maps a SEG back onto the source series' grid.

Where each source frame lies in the label map is worked out from the geometry, not
from the array order (:mod:`napari_medseg.io.dicom_reference`): a label map in any
voxel order writes the same SEG, and a label map that is not on the series' grid is
refused.

Limits and choices
------------------
* Segment numbers are 1..n (the standard wants them consecutive): the label
  values present, in ascending order. The original value of each segment is
  kept in its SegmentDescription (``"napari-medseg label value 7"``) and restored
  by :func:`read_dicom_seg`. A SEG holds at most 65535 segments; label values
  themselves may be any positive integer.
* Segmented property category and type are the SNOMED CT codes of the class name
  when it names a known structure (liver, right kidney, lung, tumour...; see
  :mod:`napari_medseg.labels.terminology`, laterality as a type modifier), else
  "Tissue" (85756007), the generic choice also made by 3D Slicer for segments of
  unknown meaning; the segment label carries the class name.
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
import warnings
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.errors import FileError, ScanReadError, ScanWriteError
from napari_medseg.io.dicom_reference import (
    check_source_files,
    check_unreferenced,
    frame_view,
    lo_text,
    place_frames,
    read_source_datasets,
    source_frames,
)
from napari_medseg.volume import RAS_TO_LPS, ScanMetadata, Volume

logger = logging.getLogger(__name__)

__all__ = [
    "SEGMENT_VALUE_PREFIX",
    "DicomSegError",
    "DicomSegReadError",
    "SegGridError",
    "SegSourceError",
    "read_dicom_seg",
    "write_dicom_seg",
]

#: SegmentDescription text that stores a segment's label value (followed by the value).
SEGMENT_VALUE_PREFIX = "napari-medseg label value "

#: Most segments one SEG can hold (Segment Number is a 16-bit value).
MAX_SEGMENTS = 65535

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
        name=lo_text(info.get("name") or "model") or "model",
        family=codes.DCM.ArtificialIntelligence,
        version=lo_text(info.get("version") or "unknown") or "unknown",
        source="napari-medseg",
        parameters=parameters or None,
    )


def _rgb(color: str) -> tuple[int, int, int] | None:
    """``"#rrggbb"`` -> RGB, or None for no colour or one that is not ``#rrggbb``."""
    from napari_medseg.labels.classes import rgb_from_hex

    try:
        return rgb_from_hex(color) if color else None
    except ValueError:
        return None


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

    from napari_medseg.labels.classes import default_name
    from napari_medseg.labels.terminology import structure_code

    def sct(pair: tuple[str, str]) -> Any:
        return hd.sr.CodedConcept(pair[0], "SCT", pair[1])

    out = []
    for number, value in enumerate(values.tolist(), start=1):
        name, color = classes.get(int(value), (default_name(int(value)), ""))
        rgb = _rgb(color)
        code = structure_code(name)
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=lo_text(name) or default_name(int(value)),
            segmented_property_category=sct(code.category),
            segmented_property_type=sct(code.type),
            algorithm_type=algorithm_type,
            algorithm_identification=algorithm if algorithm_type != "MANUAL" else None,
            display_color=hd.color.CIELabColor.from_rgb(*rgb) if rgb else None,
        )
        if code.modifier is not None:  # laterality: right or left kidney, lung...
            type_item = description.SegmentedPropertyTypeCodeSequence[0]
            type_item.SegmentedPropertyTypeModifierCodeSequence = [sct(code.modifier)]
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
    frames = source_frames(files, path, SegSourceError)
    placements = place_frames(frames, labels.shape, labels.affine, where=path, error=SegGridError)
    check_unreferenced(array, placements, path, SegGridError)
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
    datasets = read_source_datasets(files, path, SegSourceError)  # the order of the frames (planes)
    seg = _build_seg(
        path, datasets, planes, values, classes or {}, algorithm_type, algorithm, series_number
    )
    seg.SeriesDescription = lo_text(series_description)
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

    check_source_files(files, where, DicomSegReadError)
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
        frames = source_frames(files, path, DicomSegReadError)
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
