"""Read one DICOM file's header (never its pixels) into :class:`FrameRef` records."""

from __future__ import annotations

import io
import logging
import math
import os
import stat
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
from napari_medseg.io.dicom.values import one_line, to_float, to_floats, to_int, to_str
from napari_medseg.io.sniff import DICOM_SUFFIXES, classify_dicom_head, is_dicomdir_name

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
    "ImagesInAcquisition",
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
#: Fewest bytes a frame takes in any encoding (a compressed frame's item header is 8);
#: a file cut short keeps fewer frames, never fewer bytes per frame than this.
_MIN_FRAME_BYTES = 8
_SERIES_UID_TAG = 0x0020000E
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_LOCALIZER_WORDS = {"LOCALIZER", "SCOUT"}

#: First bytes of formats that live beside DICOM files on media and in exports
#: (thumbnails, reports, archives, viewers): such a file is "not DICOM", not damaged.
_FOREIGN_MAGIC = (
    b"\x89PNG",
    b"\xff\xd8\xff",  # JPEG
    b"GIF8",
    b"BM",  # bitmap
    b"II*\x00",  # TIFF
    b"MM\x00*",
    b"%PDF",
    b"PK\x03\x04",  # zip, docx
    b"\x1f\x8b",  # gzip
    b"\x7fELF",
    b"MZ",  # Windows executable
    b"\xd0\xcf\x11\xe0",  # OLE (doc, xls, Thumbs.db)
    b"{\\rtf",
)
#: Bytes that do not occur in text files (controls other than tab, newlines, form feed).
_BINARY_BYTES = bytes([*range(0, 9), 11, *range(14, 27), *range(28, 32), 127])
_NIFTI_MAGIC = (b"n+1\x00", b"ni1\x00", b"n+2\x00", b"ni2\x00")
#: Advice for a file of a series folder that cannot be read.
COPY_AGAIN = "Copy the file again from its source, or remove it from the folder."


def non_regular_kind(mode: int) -> str:
    """What a file system entry that is not a regular file is, for messages.

    Parameters
    ----------
    mode : int
        ``st_mode`` from :func:`os.stat`.
    """
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def looks_foreign(head: bytes) -> bool:
    """Whether the first bytes of a file show another known format, or text.

    Parameters
    ----------
    head : bytes
        The file's first bytes (a few hundred are enough).
    """
    if head.startswith(_FOREIGN_MAGIC):
        return True
    if len(head) >= 348 and head[344:348] in _NIFTI_MAGIC:
        return True
    sample = head[:1024]
    return not any(byte in _BINARY_BYTES for byte in sample)


#: SeriesInstanceUID (0020,000E) as it starts in explicit little endian, implicit little
#: endian and explicit big endian encodings: (tag bytes, length format, length size).
_SERIES_UID_ELEMENTS = (
    (b"\x20\x00\x0e\x00UI", "<H", 2),
    (b"\x00\x20\x00\x0eUI", ">H", 2),
    (b"\x20\x00\x0e\x00", "<L", 4),
)
_UID_CHARS = frozenset(b"0123456789.")


def peek_series_uid(data: bytes) -> str:
    """The SeriesInstanceUID in the raw bytes of a file whose header does not parse.

    A damaged file (cut short, odd encoding) often still holds the element;
    knowing it tells whether the file can be a slice of a given series. The last
    element that holds a well-formed UID wins: the top-level one follows any
    sequence (group 0008) that might reference another series.

    Parameters
    ----------
    data : bytes
        The file's first bytes.

    Returns
    -------
    str
        The UID, or ``""`` when none is found.
    """
    found = ""
    for tag, length_format, size in _SERIES_UID_ELEMENTS:
        start = data.find(tag)
        while start >= 0:
            at = start + len(tag)
            if at + size <= len(data):
                (length,) = struct.unpack(length_format, data[at : at + size])
                value = data[at + size : at + size + length].rstrip(b"\x00 ")
                if 0 < length <= 66 and value and set(value) <= _UID_CHARS and b"." in value:
                    found = value.decode("ascii")
            start = data.find(tag, start + 1)
        if found:
            return found
    return ""


def _series_uid_of(
    header: FastHeader | None, head: bytes, pixel_element: tuple | None = None
) -> str | None:
    """The SeriesInstanceUID of a file that cannot be read as an image (see
    :attr:`SkippedFile.series_uid`): from its parsed header, where the header
    parsed; else from its raw bytes; ``""`` when its header reaches past
    (0020,000E) without it; None when unknown."""
    if header is not None:
        uid = to_str(header.get("SeriesInstanceUID"))
        if uid:
            return uid
        if pixel_element is not None:
            return ""  # read up to its pixel data, which follows (0020,000E)
        try:  # every element this time, to see how far the header goes
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                full = pydicom.dcmread(io.BytesIO(head), stop_before_pixels=True, force=True)
            tags = [int(tag) for tag in full.keys()]  # keys: no value conversion
        except Exception:  # the part that parsed with the header tags is all there is
            tags = list(header._raw)
        if _well_formed(tags) and any(tag > _SERIES_UID_TAG for tag in tags):
            return ""  # elements are in tag order: this file has no SeriesInstanceUID
    return peek_series_uid(head) or None


def _well_formed(tags: list[int]) -> bool:
    """Whether parsed tags look like a real header, not random bytes read as elements:
    ascending, and every public (even group) tag known to the DICOM dictionary."""
    from pydicom.datadict import dictionary_has_tag

    return all(a < b for a, b in zip(tags, tags[1:], strict=False)) and all(
        (tag >> 16) % 2 or dictionary_has_tag(tag) for tag in tags
    )


def _no_dicom_kind(path: str, head: bytes, size: int, why: str) -> tuple[str, str]:
    """Kind and reason of a file that holds no DICOM data set.

    ``"unreadable"`` when it looks like a damaged member of a DICOM folder: empty
    (an interrupted copy), named ``*.dcm``/``*.ima``/``*.dicom``, or named without
    a type suffix (as PACS exports and media name their DICOM files) and holding
    binary data of no known other format. Else ``"not-dicom"`` (a report, a
    thumbnail, a text file beside the images).
    """
    if size == 0:
        return "unreadable", "is empty (0 bytes), as after an interrupted copy."
    name = os.path.basename(path).lower()
    if name.endswith(DICOM_SUFFIXES):
        return "unreadable", f"is named like a DICOM file but cannot be read as DICOM ({why})."
    suffix = os.path.splitext(name)[1][1:]
    if (not suffix or suffix.isdigit()) and not looks_foreign(head):
        return "unreadable", f"holds binary data that cannot be read as DICOM ({why})."
    return "not-dicom", f"is not a DICOM file ({why})."


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
        "images_in_acquisition": to_int(ds.get("ImagesInAcquisition")),
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

    Kinds of skipped files: ``"unreadable"`` (a file that should hold an image
    but cannot be read: empty, cut short, a header that does not parse, a
    transfer syntax UID that is not one, binary data without a DICOM marker in a
    file named like DICOM), ``"not-dicom"`` (another format, e.g. a text or
    image file beside the series), ``"non-image"``, ``"dicomdir"`` and
    ``"not-file"`` (a named pipe, socket or device: never opened, as reading a
    pipe waits forever).

    Raises
    ------
    napari_medseg.errors.NotAScanError, TruncatedFileError, UnsupportedTransferSyntaxError
        Only when ``explicit`` is True.
    """
    from napari_medseg.errors import (
        NotAScanError,
        TruncatedFileError,
        UnsupportedTransferSyntaxError,
    )

    head_bytes = b""
    header: FastHeader | None = None
    element: tuple[int, int, str] | None = None

    def skip(reason: str, kind: str, fix: str = "", error: type | None = None) -> SkippedFile:
        if explicit:
            if error is None:
                error = TruncatedFileError if kind == "unreadable" else NotAScanError
            raise error(path, reason, fix or "Open a DICOM image file or a folder of them.")
        uid = _series_uid_of(header, head_bytes, element) if kind == "unreadable" else None
        return SkippedFile(path, reason, kind, series_uid=uid)

    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return skip(f"cannot be opened ({error.strerror or error}).", "unreadable")
    if not stat.S_ISREG(mode):  # opening a named pipe would wait for a writer forever
        return skip(f"is {non_regular_kind(mode)}, not a file; not opened.", "not-file")
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
            what, reason = _no_dicom_kind(path, head_bytes, file_size, "no 'DICM' marker")
            return skip(reason, what, COPY_AGAIN if what == "unreadable" else "", NotAScanError)
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
                if kind == "part10":  # the DICM marker is there: a damaged file
                    reason = f"is not a valid DICOM file ({one_line(error)})."
                    return skip(reason, "unreadable", COPY_AGAIN)
                what, reason = _no_dicom_kind(path, head_bytes, file_size, one_line(error))
                return skip(reason, what, COPY_AGAIN if what == "unreadable" else "", NotAScanError)
            except (EOFError, struct.error, OSError) as error:
                if attempt + 1 < len(sources):
                    continue
                return skip(
                    f"DICOM header is truncated or corrupt ({one_line(error)}).",
                    "unreadable",
                    COPY_AGAIN,
                )
            except Exception as error:  # pydicom raises many types on malformed headers
                if attempt + 1 < len(sources):
                    continue
                return skip(
                    f"DICOM header cannot be parsed ({type(error).__name__}: {one_line(error)}).",
                    "unreadable",
                    COPY_AGAIN,
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
        problem = _transfer_syntax_problem(ts)
        if problem:
            return skip(
                problem,
                "unreadable",
                "Its file meta information is damaged: copy the file again from its source, "
                "re-export it, or remove it from the folder.",
                UnsupportedTransferSyntaxError,
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
                    COPY_AGAIN,
                )
            return skip(
                f"has no pixel data ({sop_class_name(sop_class)}), not an image.", "non-image"
            )
        if not has_image_attrs:
            return skip("has pixel data but no Rows/Columns.", "unreadable")
        declared = max(1, to_int(header.get("NumberOfFrames")) or 1)
        if declared > file_size // _MIN_FRAME_BYTES + 1:  # checked before making a record each
            return skip(
                f"declares {declared} frames (NumberOfFrames), more than its {file_size} bytes "
                "can hold: its header is corrupt.",
                "unreadable",
                COPY_AGAIN,
            )
        rescale = _rescale_problem(header)
        if rescale:
            return skip(
                f"{rescale}: its stored values cannot be turned into modality values (HU for CT).",
                "unreadable",
                COPY_AGAIN,
            )
        return _frames_from_header(header, path, sop_class, UID(ts), little, element, file_size)


def _rescale_problem(header: Any) -> str:
    """Why a header's RescaleSlope/RescaleIntercept cannot be applied ("" when they can).

    Absent values mean slope 1 and intercept 0. A present value that is not a finite
    number (``NaN``, ``inf``, text), or a slope of 0 (every voxel the same value), is a
    problem: reading it as 1 or 0 would give the slice wrong values without a word.
    """
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        raw = header.get(keyword)
        if raw is None or str(raw).strip() == "":
            continue
        try:
            value = float(raw[0] if isinstance(raw, list | tuple) else raw)
        except (TypeError, ValueError, IndexError):
            return f"its {keyword} {str(raw).strip()!r} is not a number"
        if not math.isfinite(value):
            return f"its {keyword} is {str(raw).strip()!r}, not a finite number"
        if keyword == "RescaleSlope" and value == 0.0:
            return "its RescaleSlope is 0 (every voxel would have the same value)"
    return ""


def _transfer_syntax_problem(uid: str) -> str:
    """Why a file's Transfer Syntax UID cannot be used, or ``""`` when it can.

    pydicom raises ``ValueError`` from ``UID.is_compressed`` for a UID that is
    not a transfer syntax (a SOP class UID written there, a private or garbled
    UID); such a file's pixel data cannot be interpreted.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about malformed UIDs
        ts = UID(uid)
        if ts.is_transfer_syntax:
            return ""
        name = ts.name if ts.name != str(ts) else ""
    shown = "".join(c if c.isprintable() else "?" for c in str(uid))[:80]
    what = f" ({name})" if name else ""
    return (
        f"declares Transfer Syntax UID {shown}{what}, which is not a DICOM transfer syntax, "
        "so its pixel data cannot be interpreted."
    )


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
