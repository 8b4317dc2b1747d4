"""Reading and writing scans (core: imports neither napari, Qt nor torch).

Use :func:`read_scan` for any supported input; it dispatches on what the path is.
"""

from __future__ import annotations

from napari_medseg.io.errors import (
    AmbiguousSeriesError,
    EmptyFolderError,
    FileError,
    InconsistentSeriesError,
    MedsegError,
    NotAScanError,
    OverwriteSourceError,
    ReadCancelled,
    ScanReadError,
    ScanWriteError,
    SeriesNotFoundError,
    TruncatedFileError,
    UnsupportedTransferSyntaxError,
    UnsupportedVolumeError,
)
from napari_medseg.io.reader import is_nifti_path, read_scan

__all__ = [
    "AmbiguousSeriesError",
    "EmptyFolderError",
    "FileError",
    "InconsistentSeriesError",
    "MedsegError",
    "NotAScanError",
    "OverwriteSourceError",
    "ReadCancelled",
    "ScanReadError",
    "ScanWriteError",
    "SeriesNotFoundError",
    "TruncatedFileError",
    "UnsupportedTransferSyntaxError",
    "UnsupportedVolumeError",
    "is_nifti_path",
    "read_scan",
]
