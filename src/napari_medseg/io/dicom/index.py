"""Find the image series in a DICOM file, folder or DICOMDIR, reading headers only."""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.errors import (
    EmptyFolderError,
    InconsistentSeriesError,
    NotAScanError,
    ScanReadError,
)
from napari_medseg.geometry import orientation_code
from napari_medseg.io.dicom.completeness import (
    describe_files,
    index_warnings,
    possible_end_slices,
    unreadable_beside,
)
from napari_medseg.io.dicom.dicomdir import dicomdir_files, is_dicomdir
from napari_medseg.io.dicom.header import non_regular_kind, read_header, sop_class_name
from napari_medseg.io.dicom.records import (
    FrameRef,
    SeriesInfo,
    SeriesList,
    SkippedFile,
)
from napari_medseg.io.dicom.stack import (
    DUPLICATE_TOL_MM,
    ORIENTATION_TOL,
    direction_cosines,
    plan_stack,
)
from napari_medseg.io.dicom.values import order_key
from napari_medseg.progress import Progress, raise_if_cancelled
from napari_medseg.volume import RAS_TO_LPS

logger = logging.getLogger(__name__)

#: Attributes tried, in order, to tell apart several images at one slice position.
_SPLIT_KEYS = (
    "EchoNumbers",
    "EffectiveEchoTime",
    "EchoTime",
    "TemporalPositionIndex",
    "TemporalPositionIdentifier",
    "NominalCardiacTriggerDelayTime",
    "TriggerTime",
    "DiffusionBValue",
    "DimensionIndexValues",
    "FrameAcquisitionNumber",
    "AcquisitionNumber",
    "FrameType",
    "ImageType",
)


def _walk(folder: Path) -> list[str]:
    """All regular files under ``folder`` (recursive), hidden ones skipped, sorted.

    Nothing that is not a regular file is opened: named pipes (reading one waits
    for a writer forever), sockets and devices are skipped, and so are symbolic
    links that loop; each is logged at debug level. Symbolic links to regular
    files are followed; a link whose target is gone is kept, so that reading it
    reports it as unreadable. Folders reached through a symbolic link are not
    entered (as :func:`os.walk` does), so a folder linked into itself cannot loop.
    """
    out: list[str] = []

    def unlistable(error: OSError) -> None:
        logger.debug("cannot list %s: %s", error.filename, error.strerror or error)

    for root, dirs, files in os.walk(folder, onerror=unlistable):
        kept = []
        for name in sorted(dirs):
            full = os.path.join(root, name)
            if name.startswith("."):
                continue
            if os.path.islink(full):
                logger.debug("not entering %s: a folder reached through a symbolic link", full)
                continue
            kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            if name.startswith("."):
                continue
            full = os.path.join(root, name)
            try:
                mode = os.stat(full).st_mode
            except OSError as error:
                if error.errno == errno.ELOOP:
                    logger.debug("skipping %s: a symbolic link that loops", full)
                else:  # e.g. a link to a file that is gone: reported as unreadable
                    out.append(full)
                continue
            if stat.S_ISREG(mode):
                out.append(full)
            else:
                logger.debug("skipping %s: %s, not a regular file", full, non_regular_kind(mode))
    return out


def _check_root(root: Path) -> int:
    """``st_mode`` of what the user opened; typed errors for what cannot be opened.

    Raises
    ------
    ScanReadError
        The path does not exist, cannot be examined, or is a symbolic link loop.
    NotAScanError
        It is a named pipe, socket or device (never opened: a pipe would block).
    """
    try:
        mode = os.stat(root).st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ScanReadError(
                root,
                "is a symbolic link that loops (it leads, directly or through other links, "
                "back to itself).",
                "Open the real file or folder it was meant to point to.",
            ) from None
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            raise ScanReadError(root, "no such file or folder.", "Check the path.") from None
        raise ScanReadError(
            root, f"cannot be opened ({error.strerror or error}).", "Check its permissions."
        ) from None
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise NotAScanError(
            root,
            f"is {non_regular_kind(mode)}, not a file or folder; it is not opened.",
            "Open a DICOM file, a folder of them or a DICOMDIR.",
        )
    return mode


def _index_dicomdir(
    path: Path, progress: Progress | None, cancel: threading.Event | None
) -> SeriesList:
    """Index the files a DICOMDIR references; walk its folder when none is there.

    Referenced files that are missing are listed in ``SeriesList.skipped`` as
    unreadable (so a lost end slice is caught like an unreadable one), and
    references outside the DICOMDIR's folder tree as ``"outside"`` (never read).
    """
    refs = dicomdir_files(path)
    found, missing = refs.found, refs.missing
    skipped = [
        SkippedFile(f, "is referenced by the DICOMDIR but missing.", "unreadable") for f in missing
    ]
    if refs.outside:
        logger.warning(
            "%s: refusing %d reference(s) of the DICOMDIR outside its folder (e.g. %s)",
            path,
            len(refs.outside),
            refs.outside[0],
        )
        skipped += [
            SkippedFile(
                os.path.join(path.parent, ref),
                "is referenced by the DICOMDIR outside its folder; not read.",
                "outside",
            )
            for ref in refs.outside
        ]
    if found:
        if missing:
            logger.warning(
                "%s: the DICOMDIR references %d file(s), %d of them are missing (e.g. %s)",
                path,
                len(found) + len(missing),
                len(missing),
                missing[0],
            )
        return index_files(found, root=path, progress=progress, cancel=cancel, skipped=skipped)
    logger.warning(
        "%s: none of the %d file(s) the DICOMDIR references exist; searching its folder",
        path,
        len(missing),
    )
    outside = [s for s in skipped if s.kind == "outside"]
    try:
        return index_files(
            _walk(path.parent), root=path, progress=progress, cancel=cancel, skipped=outside
        )
    except EmptyFolderError as error:
        found_text = (
            f"DICOMDIR references {len(missing)} file(s), none found (not even with other "
            "letter case)"
            if missing
            else "DICOMDIR references no image file"
        )
        if refs.outside:
            found_text += (
                f" ({len(refs.outside)} reference(s) outside its folder refused, e.g. "
                f"{refs.outside[0]})"
            )
        raise EmptyFolderError(
            path,
            f"{found_text}, and its folder {error.problem}",
            "The DICOMDIR's image files were moved, renamed or not copied; open the "
            "folder that holds the images instead.",
        ) from error


def _orientation_clusters(frames: list[FrameRef]) -> list[int]:
    """Cluster id per frame: frames whose IOP agree within tolerance share one."""
    reps: list[np.ndarray] = []
    ids: list[int] = []
    for ref in frames:
        if ref.iop is None:
            ids.append(-1)
            continue
        iop = np.asarray(ref.iop)
        for n, rep in enumerate(reps):
            if np.abs(iop - rep).max() <= ORIENTATION_TOL:
                ids.append(n)
                break
        else:
            reps.append(iop)
            ids.append(len(reps) - 1)
    return ids


def _has_geometry(ref: FrameRef) -> bool:
    return ref.iop is not None and ref.ipp is not None and ref.pixel_spacing is not None


def _n_positions(frames: list[FrameRef]) -> int | None:
    """Number of distinct slice positions along the normal (None without geometry)."""
    if not frames or any(f.ipp is None or f.iop is None for f in frames):
        return None
    _, _, normal = direction_cosines(frames[0].iop)  # type: ignore[arg-type]
    depth = np.sort(np.asarray([f.ipp for f in frames], dtype=float) @ normal)
    return 1 + int(np.count_nonzero(np.diff(depth) > DUPLICATE_TOL_MM))


def _split_duplicates(frames: list[FrameRef]) -> list[tuple[str, list[FrameRef]]]:
    """Split a stack whose positions repeat by the first attribute that separates them.

    Returns ``[(label, frames), ...]``; a single ``("", frames)`` when nothing splits.
    """
    n_positions = _n_positions(frames)
    if n_positions is None or n_positions == len(frames):
        return [("", frames)]
    for key in _SPLIT_KEYS:
        values = [f.split_values.get(key) for f in frames]
        distinct = set(values)
        if len(distinct) < 2 or None in distinct:
            continue
        parts: dict[Any, list[FrameRef]] = {}
        for value, ref in zip(values, frames, strict=True):
            parts.setdefault(value, []).append(ref)
        if all(_n_positions(part) == len(part) for part in parts.values()):
            return [(f"{key}={value}", parts[value]) for value in sorted(parts, key=order_key)]
    return [("", frames)]


def _partition(frames: list[FrameRef]) -> list[tuple[str, list[FrameRef]]]:
    """Split one SeriesInstanceUID's frames into volumes: localizer, size, stack,
    orientation, then echoes / time points at repeated positions."""
    clusters = _orientation_clusters(frames)
    groups: dict[tuple, list[FrameRef]] = {}
    for ref, cluster in zip(frames, clusters, strict=True):
        key = (ref.is_localizer, ref.rows, ref.columns, ref.stack_id or "", cluster)
        groups.setdefault(key, []).append(ref)
    keys = list(groups)
    varying = [len({k[i] for k in keys}) > 1 for i in range(5)]
    out: list[tuple[str, list[FrameRef]]] = []
    for key, members in groups.items():
        labels = []
        if varying[0]:
            labels.append("localizer" if key[0] else "not localizer")
        if varying[1] or varying[2]:
            labels.append(f"{key[2]}x{key[1]} pixels")
        if varying[3]:
            labels.append(f"stack {key[3]}")
        if varying[4]:
            labels.append("orientation " + _iop_label(members[0]))
        for sub_label, part in _split_duplicates(members):
            label = ", ".join([*labels, sub_label] if sub_label else labels)
            out.append((label, part))
    return out


def _iop_label(ref: FrameRef) -> str:
    if ref.iop is None:
        return "unknown"
    return "(" + ", ".join(f"{v:.3g}" for v in ref.iop) + ")"


def _series_from_frames(key: str, label: str, frames: list[FrameRef], source: str) -> SeriesInfo:
    first = frames[0]
    info = first.info
    files = sorted({f.path for f in frames})
    syntaxes = sorted({_ts_name(f.transfer_syntax) for f in frames})
    series = SeriesInfo(
        key=key,
        uid=info.get("series_uid", ""),
        number=info.get("series_number"),
        description=info.get("series_description", ""),
        modality=info.get("modality", ""),
        n_slices=len(frames),
        rows=first.rows,
        columns=first.columns,
        pixel_spacing=first.pixel_spacing,
        is_localizer=first.is_localizer,
        is_multiframe=any(f.n_frames_in_file > 1 for f in frames),
        transfer_syntaxes=syntaxes,
        files=files,
        study_uid=info.get("study_uid", ""),
        study_description=info.get("study_description", ""),
        study_date=info.get("study_date", ""),
        series_date=info.get("series_date", ""),
        acquisition_datetime=info.get("acquisition_datetime", ""),
        body_part=info.get("body_part", ""),
        patient_id=info.get("patient_id", ""),
        patient_name=info.get("patient_name", ""),
        frame_of_reference_uid=info.get("frame_of_reference_uid", ""),
        sop_class=info.get("sop_class", ""),
        image_type=first.image_type,
        manufacturer=info.get("manufacturer", ""),
        split_by=label,
        has_geometry=all(_has_geometry(f) for f in frames),
        frames=frames,
        source=source,
    )
    for ref in {id(f.info): f.info for f in frames}.values():
        series.warnings.extend(ref.get("header_warnings", []))
    truncated = [f for f in frames if f.truncated]
    if truncated:
        series.warnings.append(
            f"{len({f.path for f in truncated})} truncated file(s), e.g. {truncated[0].path}: "
            f"{truncated[0].truncated}; reading this series will fail"
        )
    if first.samples_per_pixel != 1:
        series.warnings.append(
            f"colour images ({first.photometric}, {first.samples_per_pixel} samples per "
            "pixel) cannot be read as a scan"
        )
    if not series.has_geometry:
        series.warnings.append(
            "no patient geometry (ImageOrientationPatient / ImagePositionPatient / "
            "PixelSpacing missing): cannot be read as a volume"
        )
        return series
    try:
        plan = plan_stack(frames, allow_gaps=True)
    except InconsistentSeriesError as error:
        series.warnings.append(f"cannot be assembled: {error}")
        return series
    series.slice_spacing = plan.slice_spacing
    series.warnings.extend(w for w in plan.warnings if not w.startswith("single slice"))
    if plan.gaps or plan.misplaced:
        what = "gap(s)" if plan.gaps else "irregular spacing"
        series.warnings.append(f"reading needs allow_gaps=True because of the {what} above")
    series.orientation = orientation_code(RAS_TO_LPS @ plan.affine_lps)
    return series


def _ts_name(uid: str) -> str:
    from pydicom.uid import UID

    return UID(uid).name or uid


def index_dicom(
    path: str | os.PathLike,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> SeriesList:
    """Find the image series in a DICOM file, a folder (recursive) or a DICOMDIR.

    Only headers are read (pixel data is skipped), so indexing is fast.

    Parameters
    ----------
    path : str or PathLike
        A DICOM file (only that file is indexed), a folder (searched
        recursively; hidden files and non-DICOM files are skipped silently), or a
        ``DICOMDIR`` (the files it references).
    progress : callable, optional
        ``progress(done, total)`` called after each file.
    cancel : threading.Event, optional
        Checked before each file; when set, indexing stops and raises
        :class:`~napari_medseg.errors.Cancelled`.

    Returns
    -------
    SeriesList
        A ``list`` of :class:`SeriesInfo`, sorted by study (date, UID), series number
        and UID, the parts of a split series together (main part first);
        ``.skipped`` lists the files that held no image series (non-image objects
        such as SR, RTSTRUCT, SEG or presentation states; non-DICOM files;
        unreadable files), with the reason. Unreadable files in a series' folders
        are also on the series (:attr:`SeriesInfo.unreadable`, and
        :attr:`SeriesInfo.unreadable_ends` for those that may be its end slices,
        see :mod:`~napari_medseg.io.dicom.completeness`) and in its warnings.
        Named pipes, sockets, devices and looping links are skipped unopened.

    Raises
    ------
    ScanReadError
        ``path`` does not exist, or is a symbolic link that loops.
    NotAScanError, TruncatedFileError
        ``path`` is a single file that is not a readable DICOM image, or a named
        pipe, socket or device.
    EmptyFolderError
        A folder or DICOMDIR holds no DICOM image.
    Cancelled
        ``cancel`` was set.
    """
    root = Path(path)
    if stat.S_ISDIR(_check_root(root)):
        return index_files(_walk(root), root=root, progress=progress, cancel=cancel)
    if is_dicomdir(root):
        return _index_dicomdir(root, progress, cancel)
    return index_files(
        [os.fspath(root)], root=root, explicit=True, progress=progress, cancel=cancel
    )


def index_files(
    files: list[str],
    *,
    root: str | os.PathLike,
    explicit: bool = False,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    skipped: list[SkippedFile] | None = None,
) -> SeriesList:
    """Index a given list of files (see :func:`index_dicom`).

    Parameters
    ----------
    files : list of str
        Files to look at.
    root : str or PathLike
        What the user opened (for messages and ``SeriesInfo.source``).
    explicit : bool
        ``files`` is the one file the user named: problems raise.
    progress : callable, optional
        ``progress(done, total)`` after each file.
    cancel : threading.Event, optional
        Checked before each file (see :func:`index_dicom`).
    skipped : list of SkippedFile, optional
        Files already known to be skipped (e.g. a DICOMDIR's missing references).
    """
    root = Path(root)
    frames: list[FrameRef] = []
    skipped = list(skipped or [])
    total = len(files)
    for done, file in enumerate(files, start=1):
        raise_if_cancelled(
            cancel, f"{root}: DICOM scan cancelled after {done - 1} of {total} files."
        )
        result = read_header(file, explicit=explicit)
        if isinstance(result, SkippedFile):
            logger.debug("skipping %s: %s", result.path, result.reason)
            skipped.append(result)
        else:
            frames.extend(result)
        if progress is not None:
            progress(done, total)

    if explicit and not frames:
        reason = skipped[0].reason if skipped else "holds no image."
        raise NotAScanError(root, reason, "Open a DICOM image file or a folder of them.")
    if not frames:
        counts = Counter(s.kind for s in skipped)
        details = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        non_image = sorted(
            {
                s.reason.split(" object")[0].replace("is a ", "")
                for s in skipped
                if s.kind == "non-image"
            }
        )
        problem = f"holds no DICOM image ({len(files)} file(s) looked at"
        problem += f": {details})." if details else ")."
        if non_image:
            problem += " Non-image objects found: " + "; ".join(non_image[:5]) + "."
        unreadable = [s for s in skipped if s.kind == "unreadable"]
        if unreadable:
            problem += f" Unreadable: {describe_files(unreadable)}."
        raise EmptyFolderError(root, problem, "Choose the folder that holds the image files.")

    by_uid: dict[str, list[FrameRef]] = {}
    for ref in frames:
        uid = ref.info.get("series_uid") or f"no-series-uid:{os.path.dirname(ref.path)}"
        by_uid.setdefault(uid, []).append(ref)

    groups: list[tuple[tuple, list[SeriesInfo]]] = []
    for uid, members in by_uid.items():
        series: list[SeriesInfo] = []
        parts = _partition(members)
        parts.sort(
            key=lambda p: (
                p[1][0].is_localizer,
                not all(_has_geometry(f) for f in p[1]),
                -len(p[1]),
                order_key(p[0]),
            )
        )
        for n, (label, part) in enumerate(parts):
            key = uid if n == 0 else f"{uid}#{n + 1}"
            info = _series_from_frames(key, label, part, os.fspath(root))
            info.unreadable = unreadable_beside(info, skipped)
            info.unreadable_ends = possible_end_slices(info, info.unreadable)
            info.warnings[:0] = index_warnings(info)  # the cause before the gap it leaves
            series.append(info)
        head = series[0]
        number = head.number if head.number is not None else 1 << 30
        groups.append(((head.study_date, head.study_uid, number, uid), series))
    groups.sort(key=lambda g: g[0])
    return SeriesList([s for _, parts in groups for s in parts], skipped)


def describe_series(series: Iterable[SeriesInfo]) -> str:
    """Multi-line listing of series keys and descriptions (for error messages)."""
    return "\n".join("  " + s.summary() for s in series)


__all__ = ["describe_series", "index_dicom", "index_files", "sop_class_name"]
