"""What kind of file is this? Cheap checks on names and first bytes.

Imports neither pydicom nor nibabel, so readers can decide where a path goes
before paying for either.
"""

from __future__ import annotations

import os
import stat
from os import PathLike
from pathlib import Path

from napari_medseg.errors import ScanReadError, TruncatedFileError

#: File names that are DICOM by convention (the content is still checked on read).
DICOM_SUFFIXES = (".dcm", ".ima", ".dicom")
_DICOM_PREAMBLE = 128
_NIFTI1_MAGIC_OFFSET = 344


def read_head(path: str | PathLike, size: int) -> bytes:
    """The first ``size`` bytes of a file (fewer for a short file, none if unreadable)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def is_dicomdir_name(path: str | PathLike) -> bool:
    """Whether the file is named ``DICOMDIR`` (any case, as media copies vary)."""
    return Path(path).name.upper() == "DICOMDIR"


def classify_dicom_head(head: bytes) -> str:
    """Classify the first 132 bytes of a file.

    Returns ``"part10"`` (preamble + ``DICM``), ``"raw"`` (no preamble but starts
    like a little-endian data set, group 0002 or 0008) or ``""`` (not DICOM).
    """
    if len(head) >= _DICOM_PREAMBLE + 4 and head[_DICOM_PREAMBLE : _DICOM_PREAMBLE + 4] == b"DICM":
        return "part10"
    element = int.from_bytes(head[2:4], "little")  # the first element number of the group
    if len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00") and element < 0x0200:
        return "raw"
    return ""


def has_dicom_preamble(path: str | PathLike) -> bool:
    """Whether the file carries the DICOM Part 10 marker (``DICM`` after 128 bytes)."""
    return classify_dicom_head(read_head(path, _DICOM_PREAMBLE + 4)) == "part10"


def looks_like_dicom(path: str | PathLike) -> bool:
    """Whether a file is DICOM by name (DICOMDIR, .dcm/.ima/.dicom) or by its DICM marker."""
    path = Path(path)
    if is_dicomdir_name(path) or path.name.lower().endswith(DICOM_SUFFIXES):
        return True
    return path.is_file() and has_dicom_preamble(path)


def has_nifti_magic(path: str | PathLike) -> bool:
    """Whether the file carries the NIfTI-1 magic (``n+1`` single file, ``ni1`` pair header)."""
    head = read_head(path, 352)
    magic = head[_NIFTI1_MAGIC_OFFSET : _NIFTI1_MAGIC_OFFSET + 3]
    return len(head) >= 348 and magic in (b"n+1", b"ni1")


def check_readable(path: str | PathLike) -> None:
    """Raise a typed error unless ``path`` is a folder or a non-empty file this user can read.

    Says what is really wrong (missing, permission denied, empty, a pipe or device)
    instead of letting a reader call it "not a scan". Reads at most one byte.

    Raises
    ------
    ScanReadError
        Missing, unreachable or unreadable, or not a regular file or folder.
    TruncatedFileError
        An empty (0-byte) file.
    """
    path = Path(path)
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise ScanReadError(path, "no such file or folder.", "Check the path.") from None
    except PermissionError:
        raise ScanReadError(
            path,
            "cannot be reached: permission denied on a folder above it.",
            "Check that this user may open the folders on its path (chmod u+x).",
        ) from None
    except OSError as error:
        raise ScanReadError(
            path, f"cannot be read ({error.strerror or error}).", "Check the disk or share."
        ) from None
    if stat.S_ISDIR(info.st_mode):
        try:
            with os.scandir(path):
                pass
        except PermissionError:
            raise ScanReadError(
                path,
                "permission denied: this user cannot list the folder.",
                "Check its permissions (chmod u+rx).",
            ) from None
        return
    if not stat.S_ISREG(info.st_mode):  # a pipe would block the reader forever
        raise ScanReadError(
            path, "is not a regular file (a pipe, socket or device).", "Open a scan file."
        )
    try:
        with open(path, "rb") as handle:
            first = handle.read(1)
    except PermissionError:
        raise ScanReadError(
            path,
            "permission denied: this user cannot read the file.",
            "Check its read permissions (chmod u+r).",
        ) from None
    except OSError as error:
        raise ScanReadError(
            path, f"cannot be read ({error.strerror or error}).", "Check the disk or share."
        ) from None
    if not first:
        raise TruncatedFileError(
            path, "is empty (0 bytes).", "Nothing was saved in it: copy or export it again."
        )
