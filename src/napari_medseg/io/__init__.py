"""Reading and writing scans (core: imports neither napari, Qt nor torch).

Use :func:`read_scan` for any supported input; it dispatches on what the path is.
"""

from __future__ import annotations

from napari_medseg.errors import (
    AmbiguousSeriesError,
    Cancelled,
    EmptyFolderError,
    FileError,
    InconsistentSeriesError,
    MedsegError,
    NotAScanError,
    OverwriteSourceError,
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
    "Cancelled",
    "ScanReadError",
    "ScanWriteError",
    "SeriesNotFoundError",
    "TruncatedFileError",
    "UnsupportedTransferSyntaxError",
    "UnsupportedVolumeError",
    "is_nifti_path",
    "read_scan",
]
