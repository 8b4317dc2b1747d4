"""The one error tree: typed errors for bad input, and :class:`Cancelled`.

Every error names the file (or folder) and the problem, and says what to do, so the
CLI can print it as is and napari can show it as a notification.
"""

from __future__ import annotations

import os
from os import PathLike


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
        message = f"{self.path}: {problem}"
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
            what = f"inside {self.source}, an input folder of this run, whose files are"
        elif self.source.lower().endswith(_SCAN_ENDINGS):
            what = f"the source scan ({self.source}) and it is"
        else:  # a model spec or weights, a names file...
            what = f"an input of this run ({self.source}) and it is"
        super().__init__(
            f"{self.target}: refusing to write here, this is {what} never overwritten. "
            "Choose another file name."
        )


class Cancelled(MedsegError):
    """The user cancelled a job (its ``threading.Event`` was set): a read, an index of a
    DICOM folder, a segmentation. Nothing was returned and nothing was written.

    Raised by :func:`napari_medseg.progress.raise_if_cancelled`."""


__all__ = [
    "AmbiguousSeriesError",
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
