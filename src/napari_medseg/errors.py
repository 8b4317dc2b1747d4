"""The one error tree: typed errors for bad input, and :class:`Cancelled`.

Every error names the file (or folder) and the problem, and says what to do, so the
CLI can print it as is and napari can show it as a notification.
"""

from __future__ import annotations

import os
from os import PathLike


def shown_path(path: str | PathLike | bytes) -> str:
    """A path as a message shows it, on one line and printable anywhere.

    Control characters (a newline, an escape sequence in a file name) are written as
    Python escapes (``\\n``, ``\\x1b``), and bytes that are not valid in the file
    system's encoding (kept by Python as lone surrogates) as ``\\xNN``, so an error
    stays one line and printing it never fails.
    """
    text = os.fsdecode(path) if isinstance(path, bytes) else os.fspath(path)
    out = []
    for char in str(text):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append(repr(char)[1:-1])
        else:
            out.append(char)
    return "".join(out)


class MedsegError(Exception):
    """Base class of the errors this package raises on purpose."""


class FileError(MedsegError):
    """A problem with one file or folder: the message names it, the problem and the fix.

    Parameters
    ----------
    path : str or PathLike
        The file or folder at fault.
    problem : str
        What is wrong with it.
    fix : str, optional
        What the user can do about it.
    """

    def __init__(self, path: str | PathLike, problem: str, fix: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        message = f"{shown_path(self.path)}: {problem}"
        if fix:
            message += f" {fix}"
        super().__init__(message)


class ScanReadError(FileError):
    """A scan could not be read."""


class ScanWriteError(FileError):
    """A file could not be written (bad name, wrong dimensionality, labels out of range).

    Not a ``ValueError`` on purpose: npe2/napari treat a ``ValueError`` raised by a
    writer as "no writer found" and drop its message.
    """


class NotAScanError(ScanReadError):
    """The file is neither NIfTI nor a DICOM image."""


class TruncatedFileError(ScanReadError):
    """The file ends before its header or pixel data says it should."""


class UnsupportedTransferSyntaxError(ScanReadError):
    """The DICOM pixel data is compressed with a syntax no installed decoder handles."""


class EmptyFolderError(ScanReadError):
    """A folder holds no readable DICOM image."""


class InconsistentSeriesError(ScanReadError):
    """A DICOM series cannot be assembled into one volume (mixed shapes, missing geometry)."""


class IncompleteSeriesError(InconsistentSeriesError):
    """Files beside a DICOM series could not be read and may be its missing slices."""


class SeriesNotFoundError(ScanReadError):
    """The requested series is not in the folder."""


class AmbiguousSeriesError(ScanReadError):
    """A folder holds several series and the caller did not say which one."""


class UnsupportedVolumeError(ScanReadError):
    """The file is a scan, but not one this package can turn into a 3D volume (e.g. 5D)."""


#: File endings of scans (an input with another ending is named "an input of this run").
_SCAN_ENDINGS = (".nii", ".nii.gz", ".hdr", ".img", ".dcm", ".ima", ".dicom", ".nrrd", ".nhdr")


class OverwriteSourceError(MedsegError):
    """A write would replace an input (a source scan, a model file, a names file...);
    the write is refused."""

    def __init__(self, target: str | PathLike, source: str | PathLike) -> None:
        self.target = str(target)
        self.source = str(source)
        if os.path.isdir(self.source):  # a DICOM series folder, a model bundle...
            what = f"inside {shown_path(self.source)}, an input folder of this run, whose files are"
        elif self.source.lower().endswith(_SCAN_ENDINGS):
            what = f"the source scan ({shown_path(self.source)}) and it is"
        else:  # a model spec or weights, a names file...
            what = f"an input of this run ({shown_path(self.source)}) and it is"
        super().__init__(
            f"{shown_path(self.target)}: refusing to write here, this is {what} never overwritten. "
            "Choose another file name."
        )


class Cancelled(MedsegError):
    """The user cancelled a job (its ``threading.Event`` was set): a read, an index of a
    DICOM folder, a segmentation. Nothing was returned and nothing was written.

    Raised by :func:`napari_medseg.progress.raise_if_cancelled`."""


__all__ = [
    "AmbiguousSeriesError",
    "shown_path",
    "Cancelled",
    "EmptyFolderError",
    "FileError",
    "InconsistentSeriesError",
    "IncompleteSeriesError",
    "MedsegError",
    "NotAScanError",
    "OverwriteSourceError",
    "ScanReadError",
    "ScanWriteError",
    "SeriesNotFoundError",
    "TruncatedFileError",
    "UnsupportedTransferSyntaxError",
    "UnsupportedVolumeError",
]
