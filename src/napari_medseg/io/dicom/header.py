"""Read one DICOM file's header (never its pixels) into :class:`FrameRef` records."""

from __future__ import annotations

import io
import logging
import os
import struct
import warnings
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from napari_medseg.io.dicom.multiframe import enhanced_frames
from napari_medseg.io.dicom.records import FrameRef, SkippedFile, copy_frame
from napari_medseg.io.dicom.values import to_float, to_floats, to_int, to_str
from napari_medseg.io.sniff import classify_dicom_head, is_dicomdir_name

logger = logging.getLogger(__name__)

#: Header attributes read by the index (everything else is skipped unparsed).
HEADER_TAGS = [
    "SpecificCharacterSet",
    "ImageType",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "AcquisitionDateTime",
    "StudyTime",
    "SeriesTime",
    "AcquisitionTime",
    "Modality",
    "Manufacturer",
    "StudyDescription",
    "SeriesDescription",
    "PatientName",
    "PatientID",
    "BodyPartExamined",
    "SliceThickness",
    "SpacingBetweenSlices",
    "RepetitionTime",
    "EchoTime",
    "EchoNumbers",
    "TriggerTime",
    "GantryDetectorTilt",
    "DiffusionBValue",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "AcquisitionNumber",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "FrameOfReferenceUID",
    "TemporalPositionIdentifier",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "PixelSpacing",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "WindowCenter",
    "WindowWidth",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "DimensionIndexSequence",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
]

#: SOP classes (prefixes) that never hold an image series this package reads.
_NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.1.3.10",  # Media Storage Directory (DICOMDIR)
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, key object selection
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.481.",  # RT objects (structures, plans, dose, images)
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, registration, fiducials, segmentation
    "1.2.840.10008.5.1.4.1.1.67",  # real world value mapping
    "1.2.840.10008.5.1.4.1.1.68.",  # surface scan
    "1.2.840.10008.5.1.4.1.1.9.",  # waveforms
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF / CDA / STL
    "1.2.840.10008.5.1.4.1.1.200.",  # acquisition / protocol context
    "1.2.840.10008.5.1.4.34.",  # RT second generation, plans
)

#: The same attributes as tag numbers (what pydicom's ``specific_tags`` is fastest with).
_HEADER_TAG_NUMBERS = [tag_for_keyword(k) for k in HEADER_TAGS]
#: First bytes read into memory to parse a header (re-read from disk when larger).
_HEAD_BYTES = 64 * 1024

_PIXEL_DATA_TAG = 0x7FE00010
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_LOCALIZER_WORDS = {"LOCALIZER", "SCOUT"}


def sop_class_name(uid: str) -> str:
    """Readable name of a SOP Class UID (the UID itself when unknown)."""
    if not uid:
        return "unknown SOP class"
    name = UID(uid).name
    return name or uid


def is_non_image_sop(uid: str) -> bool:
    """Whether a SOP class never holds an image series this package reads."""
    return any(uid == p.rstrip(".") or uid.startswith(p) for p in _NON_IMAGE_SOP_PREFIXES)


_ASCII_VRS = {"AE", "AS", "CS", "DA", "DT", "TM", "UI"}
_BINARY_VRS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FD": "d", "FL": "f"}


class FastHeader:
    """Read-only ``get(keyword)`` over a header parsed with pydicom, converting
    simple values (numbers, codes, UIDs, dates) from the raw bytes directly.

    pydicom's own value conversion dominates the cost of indexing large
    folders; text that depends on the character set (names, descriptions),
    sequences and anything unusual still go through pydicom.
    """

    def __init__(self, ds: Any) -> None:
        self.ds = ds
        self._raw = {int(elem.tag): elem for elem in ds.elements()}

    def __contains__(self, keyword: str) -> bool:
        return tag_for_keyword(keyword) in self._raw

    def get(self, keyword: str, default: Any = None) -> Any:
        tag = tag_for_keyword(keyword)
        elem = self._raw.get(tag)
        if elem is None:
            return default
        if not isinstance(elem, RawDataElement):
            return elem.value
        raw = elem.value
        if raw is None or not elem.length:
            return default
        vr = elem.VR or dictionary_VR(tag)
        try:
            if vr in _ASCII_VRS or vr in ("DS", "IS"):
                parts = [p.strip(" \x00") for p in raw.decode("ascii").split("\\")]
                if vr == "DS":
                    values: list[Any] = [float(p) if p else None for p in parts]
                elif vr == "IS":
                    values = [int(float(p)) if p else None for p in parts]
                else:
                    values = parts
                return values[0] if len(values) == 1 else values
            if vr in _BINARY_VRS:
                code = _BINARY_VRS[vr]
                count = len(raw) // struct.calcsize(code)
                order = "<" if elem.is_little_endian else ">"
                numbers = struct.unpack(
                    f"{order}{count}{code}", raw[: count * struct.calcsize(code)]
                )
                return numbers[0] if count == 1 else list(numbers)
        except (UnicodeDecodeError, ValueError, struct.error):
            pass
        try:
            return self.ds[tag].value
        except Exception:  # malformed value: treat as absent
            return default


def _window(ds: Any) -> tuple[float, float] | None:
    center = to_float(ds.get("WindowCenter"))
    width = to_float(ds.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    return (center, width)


def _series_info(ds: Any, sop_class: str) -> dict[str, Any]:
    """Series-level attributes of one file (shared by all its frames)."""
    acq_dt = to_str(ds.get("AcquisitionDateTime"))
    if not acq_dt:
        acq_dt = (to_str(ds.get("AcquisitionDate")) + to_str(ds.get("AcquisitionTime"))).strip()
    return {
        "series_uid": to_str(ds.get("SeriesInstanceUID")),
        "study_uid": to_str(ds.get("StudyInstanceUID")),
        "frame_of_reference_uid": to_str(ds.get("FrameOfReferenceUID")),
        "series_number": to_int(ds.get("SeriesNumber")),
        "series_description": to_str(ds.get("SeriesDescription")),
        "study_description": to_str(ds.get("StudyDescription")),
        "modality": to_str(ds.get("Modality")).upper(),
        "study_date": to_str(ds.get("StudyDate")),
        "series_date": to_str(ds.get("SeriesDate")),
        "acquisition_datetime": acq_dt,
        "body_part": to_str(ds.get("BodyPartExamined")),
        "patient_id": to_str(ds.get("PatientID")),
        "patient_name": to_str(ds.get("PatientName")),
        "manufacturer": to_str(ds.get("Manufacturer")),
        "sop_class_uid": sop_class,
        "sop_class": sop_class_name(sop_class),
        "rescale_type": to_str(ds.get("RescaleType")),
        "gantry_tilt": to_float(ds.get("GantryDetectorTilt")),
        "echo_time": to_float(ds.get("EchoTime")),
        "repetition_time": to_float(ds.get("RepetitionTime")),
        "pixel_padding_value": to_int(ds.get("PixelPaddingValue")),
        "pixel_padding_range_limit": to_int(ds.get("PixelPaddingRangeLimit")),
    }


def _pixel_element(fp: Any, implicit: bool, little: bool) -> tuple[int, int, str] | None:
    """Parse the element header at the file position where pydicom stopped.

    Returns ``(value offset, value length, VR)`` for a Pixel Data element (VR
    ``""`` for implicit VR), or None when the file ends there or another element
    follows.
    """
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return None
    order = "<" if little else ">"
    group, elem = struct.unpack(order + "HH", head[:4])
    if (group << 16 | elem) != _PIXEL_DATA_TAG:
        return None
    if implicit:
        (length,) = struct.unpack(order + "L", head[4:8])
        return start + 8, length, ""
    vr = head[4:6]
    vr_text = vr.decode("ascii", "replace")
    if vr in (b"OB", b"OW", b"UN", b"OD", b"OF", b"OL", b"OV", b"UT"):
        if len(head) < 12:
            return None
        (length,) = struct.unpack(order + "L", head[8:12])
        return start + 12, length, vr_text
    (length,) = struct.unpack(order + "H", head[6:8])
    return start + 8, length, vr_text


def read_header(path: str, *, explicit: bool = False) -> list[FrameRef] | SkippedFile:
    """Read one file's header into frame records, or say why it holds no image.

    Parameters
    ----------
    path : str
        The file.
    explicit : bool
        The user named this file: problems raise instead of being skipped.

    Returns
    -------
    list of FrameRef or SkippedFile
        One record per image frame; or why the file was skipped (non-DICOM,
        non-image object, unreadable header).

    Raises
    ------
    napari_medseg.errors.NotAScanError, TruncatedFileError
        Only when ``explicit`` is True.
    """
    from napari_medseg.errors import NotAScanError, TruncatedFileError

    def skip(reason: str, kind: str, fix: str = "") -> SkippedFile:
        if explicit:
            error = TruncatedFileError if kind == "unreadable" else NotAScanError
            raise error(path, reason, fix or "Open a DICOM image file or a folder of them.")
        return SkippedFile(path, reason, kind)

    try:
        fp = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as error:
        return skip(f"cannot be opened ({error.strerror or error}).", "unreadable")
    with fp:
        file_size = os.fstat(fp.fileno()).st_size
        # Parse from memory (much faster than pydicom's many small reads); fall back
        # to the file when the header is longer than the first chunk.
        head_bytes = fp.read(_HEAD_BYTES)
        kind = classify_dicom_head(head_bytes[:132])
        if not kind:
            return skip("is not a DICOM file (no 'DICM' marker).", "not-dicom")
        sources = [io.BytesIO(head_bytes)]
        if len(head_bytes) < file_size:
            sources.append(fp)
        for attempt, source in enumerate(sources):
            source.seek(0)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(
                        source,
                        stop_before_pixels=True,
                        specific_tags=_HEADER_TAG_NUMBERS,
                        force=kind == "raw",
                    )
            except InvalidDicomError as error:
                return skip(f"is not a valid DICOM file ({error}).", "not-dicom")
            except (EOFError, struct.error, OSError) as error:
                if attempt + 1 < len(sources):
                    continue
                return skip(
                    f"DICOM header is truncated or corrupt ({error}).",
                    "unreadable",
                    "Copy the file again from its source, or remove it from the folder.",
                )
            except Exception as error:  # pydicom raises many types on malformed headers
                if attempt + 1 < len(sources):
                    continue
                return skip(
                    f"DICOM header cannot be parsed ({type(error).__name__}: {error}).",
                    "unreadable",
                    "Copy the file again from its source, or remove it from the folder.",
                )
            try:
                implicit, little = ds.original_encoding
            except Exception:  # pragma: no cover - pydicom always sets it when reading
                implicit, little = False, True
            element = _pixel_element(source, bool(implicit), bool(little))
            if element is not None or attempt + 1 == len(sources):
                break
            # the chunk ended inside the header: parse again from the file itself
        meta = getattr(ds, "file_meta", None)
        header = FastHeader(ds)
        sop_class = to_str(header.get("SOPClassUID")) or to_str(
            meta.get("MediaStorageSOPClassUID") if meta is not None else None
        )
        if sop_class == _MEDIA_STORAGE_DIRECTORY or is_dicomdir_name(path):
            if explicit:
                raise NotAScanError(path, "is a DICOMDIR.", "Pass it to index_dicom().")
            return SkippedFile(path, "DICOMDIR (index of the media)", "dicomdir")
        if is_non_image_sop(sop_class):
            return skip(f"is a {sop_class_name(sop_class)} object, not an image.", "non-image")
        ts = to_str(meta.get("TransferSyntaxUID")) if meta is not None else ""
        if not ts:
            ts = (
                pydicom.uid.ImplicitVRLittleEndian
                if implicit
                else (pydicom.uid.ExplicitVRLittleEndian if little else "1.2.840.10008.1.2.2")
            )
        if ts == DeflatedExplicitVRLittleEndian:
            element = None  # positions refer to the inflated stream, not the file
        has_image_attrs = "Rows" in header and "Columns" in header
        if element is None and ts != DeflatedExplicitVRLittleEndian:
            body_missing = "SOPClassUID" not in header  # file ends inside the file meta
            if (has_image_attrs and "BitsAllocated" in header) or body_missing:
                return skip(
                    "holds a DICOM header but no pixel data: the file is truncated (or its "
                    "pixel data was stripped).",
                    "unreadable",
                    "Copy the file again from its source, or remove it from the folder.",
                )
            return skip(
                f"has no pixel data ({sop_class_name(sop_class)}), not an image.", "non-image"
            )
        if not has_image_attrs:
            return skip("has pixel data but no Rows/Columns.", "unreadable")
        return _frames_from_header(header, path, sop_class, UID(ts), little, element, file_size)


def _frames_from_header(
    ds: FastHeader,
    path: str,
    sop_class: str,
    ts: UID,
    little: bool,
    element: tuple[int, int, str] | None,
    file_size: int,
) -> list[FrameRef]:
    rows = to_int(ds.get("Rows")) or 0
    columns = to_int(ds.get("Columns")) or 0
    n_frames = max(1, to_int(ds.get("NumberOfFrames")) or 1)
    bits_allocated = to_int(ds.get("BitsAllocated")) or 16
    image_type = tuple(to_str(v).upper() for v in (ds.get("ImageType") or []))
    base = FrameRef(
        path=path,
        n_frames_in_file=n_frames,
        sop_uid=to_str(ds.get("SOPInstanceUID")),
        instance_number=to_int(ds.get("InstanceNumber")),
        iop=to_floats(ds.get("ImageOrientationPatient"), 6),
        ipp=to_floats(ds.get("ImagePositionPatient"), 3),
        pixel_spacing=to_floats(ds.get("PixelSpacing"), 2),  # type: ignore[arg-type]
        slice_thickness=to_float(ds.get("SliceThickness")),
        spacing_between_slices=to_float(ds.get("SpacingBetweenSlices")),
        rows=rows,
        columns=columns,
        bits_allocated=bits_allocated,
        bits_stored=to_int(ds.get("BitsStored")) or bits_allocated,
        pixel_representation=to_int(ds.get("PixelRepresentation")) or 0,
        samples_per_pixel=to_int(ds.get("SamplesPerPixel")) or 1,
        photometric=to_str(ds.get("PhotometricInterpretation")) or "MONOCHROME2",
        slope=to_float(ds.get("RescaleSlope"), 1.0) or 1.0,
        intercept=to_float(ds.get("RescaleIntercept"), 0.0) or 0.0,
        window=_window(ds),
        transfer_syntax=str(ts),
        byteorder="<" if little else ">",
        image_type=image_type,
        is_localizer=bool(_LOCALIZER_WORDS & set(image_type)),
        info=_series_info(ds, sop_class),
    )
    base.split_values = {
        "EchoNumbers": to_str(ds.get("EchoNumbers")),
        "EchoTime": to_float(ds.get("EchoTime")),
        "TemporalPositionIdentifier": to_int(ds.get("TemporalPositionIdentifier")),
        "TriggerTime": to_float(ds.get("TriggerTime")),
        "DiffusionBValue": to_float(ds.get("DiffusionBValue")),
        "AcquisitionNumber": to_int(ds.get("AcquisitionNumber")),
        "ImageType": "\\".join(image_type),
    }

    native = not ts.is_compressed and ts != DeflatedExplicitVRLittleEndian
    if element is not None and native:
        value_offset, value_length, base.pixel_vr = element
        expected = base.frame_bytes * n_frames
        if bits_allocated == 1:
            expected = (rows * columns * n_frames + 7) // 8
        if value_length == 0xFFFFFFFF:
            base.truncated = "pixel data has an undefined length in an uncompressed file"
        elif value_length < expected:
            base.truncated = (
                f"pixel data holds {value_length} bytes, but Rows x Columns x frames x "
                f"bytes per pixel = {rows} x {columns} x {n_frames} x "
                f"{bits_allocated // 8} needs {expected}"
            )
        elif value_offset + expected > file_size:
            base.truncated = (
                f"the file ends {value_offset + expected - file_size} bytes before the end "
                "of its pixel data"
            )
        base.pixel_offset = value_offset

    if "PerFrameFunctionalGroupsSequence" in ds:
        frames = enhanced_frames(ds.ds, base)
    else:
        frames = []
        for index in range(n_frames):
            ref = base if n_frames == 1 else copy_frame(base)
            ref.frame = index
            if n_frames > 1:
                # classic multi-frame: one position for all frames; no per-frame geometry
                ref.ipp = None
            frames.append(ref)
    if base.pixel_offset is not None:
        for ref in frames:
            ref.pixel_offset = base.pixel_offset + ref.frame * base.frame_bytes
    return frames
