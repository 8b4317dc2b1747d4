"""Files beside a DICOM series that could not be read, and whether the series is whole.

Pure bookkeeping on indexed headers (no file access).

A series folder can hold a file that should have been a slice but cannot be read:
empty after an interrupted copy, cut short, random bytes, a header that does not
parse, a transfer syntax UID that is not one. Missing in the MIDDLE of the stack,
such a slice leaves a gap that :func:`~napari_medseg.io.dicom.stack.plan_stack`
sees. Missing at either END, nothing in the remaining slices shows it, and the
volume would silently be one slice short. So an unreadable file is judged:

* It is *beside* a series when it sits in a folder that holds files of the series
  (unreadable files elsewhere cannot be tied to a series; the index lists them), or
  when it is a DICOMDIR's reference refused because it leads outside the
  DICOMDIR's folder (the DICOMDIR lists it with the series' files; it is never read),
  unless its damaged header still shows another SeriesInstanceUID, or none
  though it was read past where the UID would be
  (:attr:`~napari_medseg.io.dicom.records.SkippedFile.series_uid`).
* It *may be an end slice* of that series unless the headers show otherwise:

  1. every file of the series gives ImagesInAcquisition equal to the series'
     number of slice positions: the acquisition is all there, so the file is not
     one of its slices; else
  2. when the series' file names in that folder sort in slice order (their
     natural order, numbers by value, follows the position along the slice
     normal one way or the other, as ``IM00001`` ... ``IM00048`` do), only a file
     whose name sorts before the first or after the last of them may be an end
     slice; one named inside that range would be an inner slice, whose loss
     shows as a gap; else
  3. (names in no order, as in many PACS exports, or a single file) any
     unreadable file beside the series may be an end slice.

Consecutive InstanceNumbers starting at 1 are no such evidence: they show that the
first slice is there, not the last (a series of 48 whose file 48 is lost still
numbers 1 ... 47).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from napari_medseg.errors import IncompleteSeriesError
from napari_medseg.io.dicom.records import SeriesInfo, SkippedFile
from napari_medseg.io.dicom.stack import GAP_TEXT, StackPlan, direction_cosines
from napari_medseg.io.dicom.values import order_key

#: Skipped-file kinds that may be a lost slice (see ``read_header``).
UNREADABLE = "unreadable"
#: A DICOMDIR reference outside its folder (see ``dicomdir_files``): listed, never read.
OUTSIDE = "outside"
#: Files named in one message at most.
_LISTED = 5


def unreadable_beside(series: SeriesInfo, skipped: Iterable[SkippedFile]) -> list[SkippedFile]:
    """The unreadable files in the folders that hold files of ``series``, and the
    references its DICOMDIR lists outside its folder.

    Parameters
    ----------
    series : SeriesInfo
        An indexed series.
    skipped : iterable of SkippedFile
        What the index skipped (``SeriesList.skipped``).

    Returns
    -------
    list of SkippedFile
        Of kind ``"unreadable"``, sorted by path; a file whose damaged header
        names another series is left out.
    """
    folders = {os.path.dirname(f) for f in series.files}
    return sorted(
        (
            s
            for s in skipped
            if (s.kind == UNREADABLE and os.path.dirname(s.path) in folders or s.kind == OUTSIDE)
            and not (s.series_uid is not None and series.uid and s.series_uid != series.uid)
        ),
        key=lambda s: s.path,
    )


def _name_key(path: str) -> tuple:
    return order_key(os.path.basename(path).casefold())


def _acquisition_complete(series: SeriesInfo) -> bool:
    """Whether every file's ImagesInAcquisition equals the number of slice positions."""
    counts = {f.info.get("images_in_acquisition") for f in series.frames}
    if len(counts) != 1 or None in counts or not series.frames:
        return False
    positions = _depths(series)
    if positions is None:
        return False
    n_positions = len(np.unique(np.round(np.fromiter(positions.values(), float), 2)))
    return counts.pop() == n_positions


def _depths(series: SeriesInfo) -> dict[str, float] | None:
    """Position of each file along the slice normal (mm; mean over its frames)."""
    frames = series.frames
    if not frames or any(f.iop is None or f.ipp is None for f in frames):
        return None
    _, _, normal = direction_cosines(frames[0].iop)  # type: ignore[arg-type]
    per_file: dict[str, list[float]] = {}
    for ref in frames:
        per_file.setdefault(ref.path, []).append(float(np.asarray(ref.ipp) @ normal))
    return {path: float(np.mean(values)) for path, values in per_file.items()}


def _in_slice_order(names: list[str], depths: dict[str, float]) -> bool:
    """Whether files sorted by name are sorted by position too (either way)."""
    if len(names) < 2:
        return False  # one file shows no order
    steps = np.diff([depths[n] for n in names])
    return bool(np.all(steps >= 0) or np.all(steps <= 0))


def possible_end_slices(series: SeriesInfo, beside: list[SkippedFile]) -> list[SkippedFile]:
    """The unreadable files beside a series that may be its first or last slice.

    The rules are in the module docstring: ImagesInAcquisition that matches the
    series clears every file; file names in slice order clear the files named
    inside the series' range; otherwise every file beside the series is suspect.
    A series read from one multi-frame file is whole in that file.

    Parameters
    ----------
    series : SeriesInfo
        An indexed series.
    beside : list of SkippedFile
        From :func:`unreadable_beside`.

    Returns
    -------
    list of SkippedFile
        A subset of ``beside``, in its order.
    """
    if not beside or (len(series.files) == 1 and series.is_multiframe):
        return []
    if _acquisition_complete(series):
        return []
    depths = _depths(series)
    suspects = []
    for skipped in beside:
        folder = os.path.dirname(skipped.path)
        names = sorted((f for f in series.files if os.path.dirname(f) == folder), key=_name_key)
        if depths is not None and _in_slice_order(names, depths):
            key = _name_key(skipped.path)
            if _name_key(names[0]) < key < _name_key(names[-1]):
                continue  # an inner slice: its loss leaves a gap the stack plan reports
        suspects.append(skipped)
    return suspects


def describe_files(files: list[SkippedFile]) -> str:
    """``"name: reason; name: reason"`` for up to five files, names relative to their
    common folder (the file name alone when they share one)."""
    if not files:
        return ""
    folders = {os.path.dirname(f.path) for f in files}
    base = os.path.commonpath(list(folders)) if len(folders) > 1 else folders.pop()
    shown = [f"{_shown(f, base)}: {f.reason.rstrip('.')}" for f in files[:_LISTED]]
    more = f"; and {len(files) - _LISTED} more" if len(files) > _LISTED else ""
    return "; ".join(shown) + more


def _shown(file: SkippedFile, base: str) -> str:
    """A file relative to ``base``; a refused DICOMDIR reference as the DICOMDIR leads to it."""
    if file.kind == OUTSIDE or not base:
        return file.path
    return os.path.relpath(file.path, base)


def _folder(files: list[SkippedFile]) -> str:
    folders = sorted({os.path.dirname(f.path) for f in files})
    return folders[0] if len(folders) == 1 else os.path.commonpath(folders)


def _count(n: int) -> str:
    return f"{n} file{'s' if n != 1 else ''}"


def _it(files: list) -> str:
    """``"it would"`` or ``"they would"``: the pronoun for these files (with "belong")."""
    return "it would" if len(files) == 1 else "they would"


def index_warnings(series: SeriesInfo) -> list[str]:
    """What the index says about the unreadable files beside a series (to put first).

    Parameters
    ----------
    series : SeriesInfo
        With :attr:`~SeriesInfo.unreadable` and :attr:`~SeriesInfo.unreadable_ends` set.
    """
    ends = series.unreadable_ends
    inner = [s for s in series.unreadable if s not in ends]
    gaps = any(w.startswith(GAP_TEXT) for w in series.warnings)
    out = []
    if ends:
        out.append(
            f"may be missing its first or last slice: {_count(len(ends))} beside its slices "
            f"cannot be read ({describe_files(ends)}); reading needs allow_gaps=True"
        )
    if inner:
        where = f": the gap below is probably where {_it(inner)} belong" if gaps else ""
        out.append(
            f"{_count(len(inner))} beside its slices cannot be read "
            f"({describe_files(inner)}){where}"
        )
    return out


def check_unreadable(series: SeriesInfo, plan: StackPlan, allow_gaps: bool) -> list[str]:
    """Refuse a series that may have lost slices to unreadable files, or say what was left out.

    Parameters
    ----------
    series : SeriesInfo
        The series being read.
    plan : StackPlan
        Its stack plan, made with ``allow_gaps=True`` so its gaps are known.
    allow_gaps : bool
        Read anyway (the caller asked to accept missing slices).

    Returns
    -------
    list of str
        Warnings for the volume: every unreadable file beside the series, by name.

    Raises
    ------
    IncompleteSeriesError
        Without ``allow_gaps``: an unreadable file may be an end slice, or the
        series has a gap and unreadable files lie beside it (the gap is most
        likely where they belong). Names the files and says what to do.
    """
    unreadable = series.unreadable
    if not unreadable:
        return []
    ends = series.unreadable_ends
    n_slices = len(series.frames)
    what = f"series {series.key}" + (f" ({series.description!r})" if series.description else "")
    if not allow_gaps and (ends or plan.gaps):
        listed = ends or unreadable
        if ends:
            problem = (
                f"{what} may be missing its first or last slice: {_count(len(ends))} beside "
                f"its {n_slices} readable slices cannot be read, and nothing in the readable "
                f"ones shows whether they were its end slices: {describe_files(ends)}."
            )
        else:
            problem = (
                f"{what} has lost slices: {_count(len(unreadable))} beside its slices cannot "
                f"be read ({describe_files(unreadable)}), and the series has a gap where "
                f"{_it(unreadable)} belong: {plan.gaps[0]}."
            )
        one = len(listed) == 1
        where = _folder(listed)
        if all(s.kind == OUTSIDE for s in listed):
            where = series.source or where  # the DICOMDIR
            what_to_do = (
                "Open the folder that holds the DICOMDIR instead (its own files are read), or"
            )
        else:
            what_to_do = (
                f"Copy {'the file' if one else 'the files'} again from the source (or delete "
                f"{'it if it is' if one else 'them if they are'} not part of this series), or"
            )
        raise IncompleteSeriesError(
            where,
            problem,
            f"{what_to_do} read with allow_gaps=True to open the {n_slices} readable slices "
            "anyway (missing slices are then reported).",
        )
    out = []
    if ends:
        out.append(
            f"the volume may be missing the series' first or last slice: "
            f"{_count(len(ends))} beside its slices could not be read and "
            f"{'was' if len(ends) == 1 else 'were'} left out "
            f"({describe_files(ends)})"
        )
    inner = [s for s in unreadable if s not in ends]
    if inner:
        where = f"; the gap is probably where {_it(inner)} belong" if plan.gaps else ""
        out.append(
            f"{_count(len(inner))} beside its slices could not be read and "
            f"{'was' if len(inner) == 1 else 'were'} left out ({describe_files(inner)}){where}"
        )
    return out


__all__ = [
    "check_unreadable",
    "describe_files",
    "index_warnings",
    "possible_end_slices",
    "unreadable_beside",
]
