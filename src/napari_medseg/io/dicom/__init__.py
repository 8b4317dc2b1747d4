"""DICOM input: series index, assembly into volumes, decoders.

Public API
----------
index_dicom(path, *, progress=None) -> SeriesList
    Headers only: the image series in a file, folder (recursive) or DICOMDIR.
read_dicom_series(series, *, progress=None, cancel=None, allow_gaps=False) -> Volume
    One indexed series as a volume with its exact patient geometry.
read_dicom(path, series_key=None, *, allow_gaps=False, progress=None, cancel=None) -> Volume
    Index, pick one series, read it.

Modules: :mod:`.header` (one file's header -> frame records), :mod:`.multiframe`
(enhanced per-frame functional groups), :mod:`.index` (grouping and splitting
into series), :mod:`.stack` (slice order, affine, duplicates, tilt, placement),
:mod:`.spacing` (expected slice step and gaps), :mod:`.pixels` (decoding),
:mod:`.assemble` (the volume), :mod:`.metadata` (its ScanMetadata),
:mod:`.dicomdir` (media directories), :mod:`.completeness` (unreadable files
beside a series: which may be its lost end slices).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from napari_medseg.errors import (
    AmbiguousSeriesError,
    Cancelled,
    EmptyFolderError,
    SeriesNotFoundError,
)
from napari_medseg.io.dicom.assemble import read_dicom_series
from napari_medseg.io.dicom.header import read_header
from napari_medseg.io.dicom.index import describe_series, index_dicom, index_files
from napari_medseg.io.dicom.records import FrameRef, SeriesInfo, SeriesList, SkippedFile
from napari_medseg.progress import Progress
from napari_medseg.volume import Volume

__all__ = [
    "FrameRef",
    "Cancelled",
    "SeriesInfo",
    "SeriesList",
    "SkippedFile",
    "index_dicom",
    "pick_series",
    "read_dicom",
    "read_dicom_series",
    "series_of_file",
]


def _candidates(series: list[SeriesInfo]) -> list[SeriesInfo]:
    """Series worth opening by default: placeable, non-localizer images."""
    return [s for s in series if not s.is_localizer and s.has_geometry]


def pick_series(
    series: list[SeriesInfo], series_key: str | None, path: str | os.PathLike = ""
) -> SeriesInfo:
    """Choose one series from an index, as :func:`read_dicom` does.

    Parameters
    ----------
    series : list of SeriesInfo
        From :func:`index_dicom`.
    series_key : str or None
        A :attr:`SeriesInfo.key`, or a SeriesInstanceUID (accepted when it names
        exactly one non-localizer part), or None to take the only image series.
    path : str or PathLike
        For error messages.

    Raises
    ------
    SeriesNotFoundError
        No series has that key or UID.
    AmbiguousSeriesError
        Several candidates and no (or an ambiguous) key; lists the keys.
    EmptyFolderError
        No series at all.
    """
    if not series:
        raise EmptyFolderError(
            path or "(no path)",
            "holds no DICOM image series.",
            "Choose the folder (or DICOMDIR) that holds the image files.",
        )
    if series_key is not None:
        key = series_key.strip()
        for s in series:
            if s.key == key:
                return s
        same_uid = [s for s in series if s.uid == key]
        if len(same_uid) == 1:
            return same_uid[0]
        if same_uid:
            main = _candidates(same_uid)
            if len(main) == 1:
                return main[0]
            raise AmbiguousSeriesError(
                path,
                f"series {key} was split into {len(same_uid)} parts:\n" + describe_series(same_uid),
                "Pass one of these keys with --series (series_key=...).",
            )
        raise SeriesNotFoundError(
            path,
            f"holds no series {key!r}. Series found:\n" + describe_series(series),
            "Pass one of these keys with --series (series_key=...).",
        )
    candidates = _candidates(series)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        if len(series) == 1:
            return series[0]  # a lone localizer or geometry-less series: let reading explain
        raise AmbiguousSeriesError(
            path,
            "holds no volumetric image series, only localizers or images without patient "
            "geometry:\n" + describe_series(series),
            "Pass one of these keys with --series (series_key=...).",
        )
    raise AmbiguousSeriesError(
        path,
        f"holds {len(candidates)} image series:\n" + describe_series(candidates),
        "Choose one: pass its key with --series (series_key=...).",
    )


def read_dicom(
    path: str | os.PathLike,
    series_key: str | None = None,
    *,
    allow_gaps: bool = False,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Volume:
    """Read a DICOM file, folder or DICOMDIR into a volume.

    Parameters
    ----------
    path : str or PathLike
        A folder (searched recursively), a DICOMDIR, or a DICOM file: then the
        series that file belongs to is read (its sibling files in the same
        folder are indexed), unless ``series_key`` is given.
    series_key : str, optional
        Which series: a :attr:`SeriesInfo.key` from :func:`index_dicom` or a
        SeriesInstanceUID. When omitted the folder must hold exactly one image
        series, localizers and geometry-less images not counted.
    allow_gaps, progress, cancel
        As for :func:`read_dicom_series` (``progress`` covers the pixel reading).

    Returns
    -------
    Volume
        See :func:`read_dicom_series`.

    Raises
    ------
    AmbiguousSeriesError, SeriesNotFoundError, EmptyFolderError, ScanReadError
        See :func:`pick_series`, :func:`index_dicom`, :func:`read_dicom_series`.
    """
    target = Path(path)
    if target.is_file() and series_key is None and not _is_dicomdir_path(target):
        chosen = series_of_file(target)
    else:
        chosen = pick_series(index_dicom(path), series_key, path)
    volume = read_dicom_series(chosen, progress=progress, cancel=cancel, allow_gaps=allow_gaps)
    volume.metadata.source = os.fspath(path)
    return volume


def _is_dicomdir_path(path: Path) -> bool:
    from napari_medseg.io.dicom.dicomdir import is_dicomdir

    return is_dicomdir(path)


def series_of_file(path: str | os.PathLike) -> SeriesInfo:
    """The series a single DICOM file belongs to, gathered from the files beside it.

    Raises
    ------
    ScanReadError
        When the file itself is not a readable DICOM image (names the file).
    """
    path = Path(path)
    # the file itself first: a bad or non-image file gets its own precise error,
    # not "the folder holds no image" from the sibling scan (one header, cheap)
    read_header(os.fspath(path), explicit=True)
    folder = path.parent
    siblings = sorted(
        os.path.join(folder, e.name)
        for e in os.scandir(folder)
        if e.is_file() and not e.name.startswith(".")
    )
    series = index_files(siblings, root=path)
    target = os.path.abspath(path)
    for s in series:
        if any(os.path.abspath(f) == target for f in s.files):
            return s
    return index_files([os.fspath(path)], root=path, explicit=True)[0]  # pragma: no cover
