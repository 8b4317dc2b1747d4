"""A DICOM SEG or RT Structure Set file, opened as a label map on its series' grid.

Neither object holds a voxel grid of its own: a SEG's frames and an RTSTRUCT's
contours lie on the images of the series they were drawn on, which they reference by
SeriesInstanceUID (a SEG in its ReferencedSeriesSequence, an RTSTRUCT in
ReferencedFrameOfReferenceSequence > RTReferencedStudySequence >
RTReferencedSeriesSequence). :func:`read_derived_labels` finds that series and reads
the object onto its grid, the grid :func:`napari_medseg.io.read_scan` gives the
series, so the labels overlay the scan voxel for voxel:

1. the ``reference`` the caller already has, or the one of ``open_series`` with the
   referenced UID (the napari reader passes the DICOM series its viewers show: the
   user opened the series first);
2. else the series is looked for by its UID with the DICOM index (headers only) in
   the file's folder, then under the folder above it (at most
   :data:`MAX_SEARCH_FILES` files there: a SEG saved in a home folder does not start
   a search of the whole disk).

When the series is not found: one :class:`ReferencedSeriesNotFoundError` naming the
file, the series UID and where it looked, and saying to open the series first or to
put the files side by side.

Core module: imports neither napari, Qt nor torch; pydicom is imported inside the
functions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from napari_medseg.errors import EmptyFolderError, ScanReadError, TruncatedFileError
from napari_medseg.io.dicom_seg import _SEG_SOP_CLASSES as SEG_SOP_CLASSES
from napari_medseg.io.rtstruct import RTSTRUCT_SOP_CLASS
from napari_medseg.volume import Volume

logger = logging.getLogger(__name__)

#: Most files looked at under the folder above the SEG/RTSTRUCT's own folder.
MAX_SEARCH_FILES = 20_000
#: How each kind is named in messages.
KIND_NAMES = {"SEG": "DICOM SEG", "RTSTRUCT": "DICOM RT Structure Set"}


class ReferencedSeriesNotFoundError(ScanReadError):
    """The image series a SEG or RTSTRUCT was drawn on cannot be found."""


class DerivedObjectError(ScanReadError):
    """A SEG or RTSTRUCT file that names no series to lie on."""


def _header(path: str | PathLike) -> Any:
    import pydicom

    return pydicom.dcmread(os.fspath(path), stop_before_pixels=True, force=True)


def derived_kind(path: str | PathLike) -> str:
    """``"SEG"``, ``"RTSTRUCT"`` or ``""`` (anything else, or a file that cannot be read).

    Only the header is read (by SOP Class UID, else Modality).
    """
    try:
        ds = _header(path)
        sop = str(ds.get("SOPClassUID", "") or "")
        modality = str(ds.get("Modality", "") or "").upper()
    except Exception:  # not DICOM, cut short...: the image reader says what is wrong
        return ""
    if sop in SEG_SOP_CLASSES or (not sop and modality == "SEG"):
        return "SEG"
    if sop == RTSTRUCT_SOP_CLASS or (not sop and modality == "RTSTRUCT"):
        return "RTSTRUCT"
    return ""


def check_complete(path: str | PathLike) -> None:
    """Refuse a DICOM file cut short inside one of its elements.

    pydicom reads such a file without complaint: a SEG cut inside its pixel data
    gives frames that "cannot be mapped" onto the source images, an RTSTRUCT cut
    inside its contours "holds no ROI", or loses a structure silently. Here the
    top-level elements are walked by their stated lengths (headers only, values
    skipped): one that runs past the end of the file means the file is truncated.
    Files this walk cannot follow (no ``DICM`` preamble, a deflated transfer syntax,
    an unreadable header) are left to the readers.

    Raises
    ------
    TruncatedFileError
        An element runs past the end of the file.
    """
    import struct

    from pydicom.filereader import data_element_generator, read_file_meta_info

    size = os.path.getsize(path)
    try:
        syntax = read_file_meta_info(os.fspath(path)).TransferSyntaxUID
        if syntax.is_deflated:
            return
        with open(path, "rb") as handle:
            handle.seek(128)
            if handle.read(4) != b"DICM":
                return
            if handle.read(8) != b"\x02\x00\x00\x00UL\x04\x00":
                return  # no (0002,0000) UL: the file meta group's length is not stated
            (meta_length,) = struct.unpack("<I", handle.read(4))
            handle.seek(132 + 12 + meta_length)
            end = 0
            for element in data_element_generator(
                handle, syntax.is_implicit_VR, syntax.is_little_endian, defer_size=64
            ):
                if element.length != 0xFFFFFFFF:
                    end = max(end, element.value_tell + element.length)
    except Exception:  # unreadable: the SEG/RTSTRUCT reader says what is wrong
        return
    if end > size:
        raise TruncatedFileError(
            path,
            f"it is cut short: an element runs to byte {end}, the file ends at byte {size}.",
            "The file is truncated or damaged: copy or export it again.",
        )


def referenced_series_uids(dataset: Any) -> list[str]:
    """SeriesInstanceUIDs a SEG or RTSTRUCT data set references, in file order."""
    found: list[str] = []
    for item in dataset.get("ReferencedSeriesSequence", []) or []:  # SEG
        found.append(str(item.get("SeriesInstanceUID", "") or ""))
    for frame in dataset.get("ReferencedFrameOfReferenceSequence", []) or []:  # RTSTRUCT
        for study in frame.get("RTReferencedStudySequence", []) or []:
            for series in study.get("RTReferencedSeriesSequence", []) or []:
                found.append(str(series.get("SeriesInstanceUID", "") or ""))
    return [uid for uid in dict.fromkeys(found) if uid]


def references_of(path: str | PathLike) -> list[str]:
    """SeriesInstanceUIDs a SEG or RTSTRUCT file references ([] when it cannot be read)."""
    try:
        return referenced_series_uids(_header(path))
    except Exception:  # unreadable: whoever reads it says what is wrong
        return []


def _count_files(folder: Path, limit: int) -> int:
    """Regular files under ``folder`` (hidden ones and linked folders skipped), counted
    up to ``limit + 1``."""
    count = 0
    for _, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        count += sum(1 for name in files if not name.startswith("."))
        if count > limit:
            break
    return count


def _series_in(folder: Path, uids: list[str]) -> Any | None:
    """The main part of the first series with one of ``uids`` under ``folder``, or None."""
    from napari_medseg.io.dicom import index_dicom

    try:
        series = index_dicom(folder)
    except EmptyFolderError:
        return None
    for uid in uids:
        parts = [s for s in series if s.uid == uid]
        if parts:
            return next((s for s in parts if s.key == uid), parts[0])
    return None


def find_referenced_series(path: str | PathLike, uids: list[str], kind: str = "SEG") -> Any:
    """The series (:class:`~napari_medseg.io.dicom.SeriesInfo`) a SEG/RTSTRUCT lies on.

    Parameters
    ----------
    path : path
        The SEG or RTSTRUCT file.
    uids : list of str
        The SeriesInstanceUIDs it references.
    kind : {"SEG", "RTSTRUCT"}
        For messages.

    Raises
    ------
    ReferencedSeriesNotFoundError
        No series with one of these UIDs in the file's folder nor under its parent
        (see :data:`MAX_SEARCH_FILES`).
    """
    path = Path(path).absolute()
    folder = path.parent
    looked = [f"its folder {folder}"]
    found = _series_in(folder, uids)
    parent = folder.parent
    if found is None and parent != folder:
        if _count_files(parent, MAX_SEARCH_FILES) > MAX_SEARCH_FILES:
            looked.append(f"not under {parent} (more than {MAX_SEARCH_FILES} files there)")
        else:
            looked.append(f"the folders under {parent}")
            found = _series_in(parent, uids)
    if found is None:
        which = uids[0] if len(uids) == 1 else f"{uids[0]} (or {len(uids) - 1} other)"
        raise ReferencedSeriesNotFoundError(
            path,
            f"is a {KIND_NAMES.get(kind, kind)} drawn on image series {which}, which was "
            f"not found ({'; '.join(looked)} looked at).",
            "Open that series first and then this file, or put the file beside the "
            "series' images (or in a folder next to theirs) and open it again.",
        )
    logger.info("%s lies on series %s in %s", path, found.uid, found.source)
    return found


def read_derived_labels(
    path: str | PathLike,
    reference: Volume | None = None,
    *,
    open_series: Mapping[str, Volume] | None = None,
) -> Volume:
    """Read a DICOM SEG or RT Structure Set as a label map on its series' voxel grid.

    Parameters
    ----------
    path : path
        The SEG or RTSTRUCT file.
    reference : Volume, optional
        The series it was drawn on, when the caller has it (its grid, ``metadata.files``
        and Frame of Reference are used; the array may be a zero-size broadcast view).
        Else the series is found beside the file (see the module notes).
    open_series : mapping, optional
        SeriesInstanceUID -> such a reference, for series the caller has open (a
        viewer's DICOM layers); used when the file references one of them.

    Returns
    -------
    Volume
        ``(I, J, K)`` label values on the series' grid (its shape and affine);
        ``metadata.modality`` is ``"SEG"`` or ``"RTSTRUCT"``, ``metadata.source`` the
        file, ``metadata.files`` the series' images and ``metadata.extra["classes"]``
        ``{value: (name, "#rrggbb")}``.

    Raises
    ------
    DerivedObjectError
        Not a SEG or RTSTRUCT, or one that references no image series.
    ReferencedSeriesNotFoundError
        The series is not open and not found beside the file.
    TruncatedFileError
        The file is cut short (:func:`check_complete`).
    DicomSegReadError, RTStructReadError, ScanReadError
        The file, or the series, cannot be read (each names its file).
    """
    from napari_medseg.io.dicom import read_dicom_series
    from napari_medseg.io.dicom_seg import read_dicom_seg
    from napari_medseg.io.rtstruct import read_rtstruct

    path = Path(path)
    kind = derived_kind(path)
    if not kind:
        raise DerivedObjectError(path, "is neither a DICOM SEG nor an RT Structure Set.")
    check_complete(path)
    if reference is None:
        uids = referenced_series_uids(_header(path))
        if not uids:
            raise DerivedObjectError(
                path,
                f"is a {KIND_NAMES[kind]} that references no image series, so the grid "
                "its labels lie on is unknown.",
                "Export it again with its referenced series.",
            )
        known = open_series or {}
        reference = next((known[uid] for uid in uids if uid in known), None)
        if reference is None:
            series = find_referenced_series(path, uids, kind)
            if kind == "SEG":  # its grid from the series' headers alone
                return read_dicom_seg(path, list(series.files))
            reference = read_dicom_series(series, allow_gaps=True)
    if kind == "SEG":
        return read_dicom_seg(path, reference)
    return read_rtstruct(path, reference)


__all__ = [
    "DerivedObjectError",
    "ReferencedSeriesNotFoundError",
    "derived_kind",
    "check_complete",
    "find_referenced_series",
    "read_derived_labels",
    "referenced_series_uids",
]
