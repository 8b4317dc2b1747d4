"""The cases of a cohort: found in a folder or listed in a CSV manifest, and sharded.

A *case* is one scan to segment: a NIfTI file, or one DICOM series (a folder of DICOM
files may hold several), or, in a manifest, the channel files of a multi-channel model
(``image``, ``image_1``, ``image_2``... or ``image_0000``...). A manifest may also name a
reference label map per case (``reference``), which the cohort table compares with, and
the DICOM series of a folder that holds several (``series``).

Case ids are file-name safe (:func:`~napari_medseg.io.atomic.safe_name`) and unique in a
cohort: each names the case's output folder. A NIfTI file gives its name without the
extension (``liver_003.nii.gz`` -> ``liver_003``); a DICOM series gives its folder's name
relative to the input folder, with its SeriesNumber when the folder holds several.

Sharding (:func:`select_part`) is static and needs no scheduler: the cases sorted by id,
part ``I`` of ``N`` takes every ``N``-th case from the ``I``-th (1-based), so the parts
never overlap and together cover the cohort, on any machine that lists the same cases.
"""

from __future__ import annotations

import csv
import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from napari_medseg.errors import FileError, MedsegError, shown_path
from napari_medseg.io.atomic import safe_name

#: File name endings of NIfTI scans.
NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Manifest columns: the case id, the reference labels, the DICOM series of a folder.
ID_COLUMN, REFERENCE_COLUMN, SERIES_COLUMN = "case_id", "reference", "series"


@dataclass(frozen=True)
class Case:
    """One scan of a cohort.

    Attributes
    ----------
    case_id : str
        Unique, file-name safe: the name of the case's output folder.
    images : tuple of str
        The scan's files or folders, one per model channel (NIfTI file, DICOM folder).
    series_key : str or None
        The DICOM series in ``images[0]`` (a :attr:`SeriesInfo.key
        <napari_medseg.io.dicom.SeriesInfo.key>`) when it holds several, else None.
    files : tuple of str
        Every file read for the case (a DICOM series' files), whose contents identify
        the input in ``done.json``.
    reference : str or None
        A reference label map on the scan's grid (manifest only).
    is_dicom : bool
        The scan is a DICOM series (a DICOM SEG can reference it).
    """

    case_id: str
    images: tuple[str, ...]
    series_key: str | None = None
    files: tuple[str, ...] = field(default=())
    reference: str | None = None
    is_dicom: bool = False

    def input_files(self) -> tuple[str, ...]:
        """The files whose contents identify the input (reference included)."""
        files = self.files or self.images
        return (*files, *((self.reference,) if self.reference else ()))


def _strip_nifti(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES) and not path.name.startswith(".")


def find_cases(folder: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[Case]:
    """Every NIfTI file and every DICOM series under ``folder`` (recursive), as cases.

    Parameters
    ----------
    folder : path
        The cohort folder.
    exclude : path, optional
        A folder whose files are not cases: the output folder, when it lies inside
        ``folder`` (a rerun must not segment the label maps it wrote).

    Returns
    -------
    list of Case
        Sorted by case id.

    Raises
    ------
    FileError
        The folder holds no scan.
    """
    from napari_medseg.io.dicom import index_dicom

    root = Path(folder)
    skipped = Path(exclude).resolve() if exclude is not None else None

    def wanted(path: Path) -> bool:
        return skipped is None or not path.resolve().is_relative_to(skipped)

    niftis = sorted(
        path for path in root.rglob("*") if path.is_file() and _is_nifti(path) and wanted(path)
    )
    cases = [
        Case(
            case_id=_strip_nifti(str(path.relative_to(root)).replace(os.sep, "_")),
            images=(str(path),),
            files=(str(path),),
        )
        for path in niftis
    ]
    dicom_cases = []
    try:
        series_list = index_dicom(root)
    except MedsegError:  # no DICOM here
        series_list = []
    by_folder: dict[str, list] = {}
    for series in series_list:
        if series.is_localizer or not wanted(Path(series.files[0])):
            continue
        common = Path(os.path.commonpath(series.files))
        folder_of = common if common.is_dir() else common.parent
        by_folder.setdefault(str(folder_of), []).append(series)
    for folder_of, members in sorted(by_folder.items()):
        relative = os.path.relpath(folder_of, root)
        stem = root.name if relative == "." else relative.replace(os.sep, "_")
        for series in members:
            name = stem if len(members) == 1 else f"{stem}_series{series.number or 0}"
            dicom_cases.append(
                Case(
                    case_id=name,
                    images=(folder_of,),
                    series_key=series.key if len(members) > 1 else None,
                    files=tuple(series.files),
                    is_dicom=True,
                )
            )
    cases = _unique_ids([*cases, *dicom_cases])
    if not cases:
        raise FileError(
            root,
            "holds no NIfTI file and no DICOM image series.",
            "Point medseg batch at the folder of the cohort's scans, or at a CSV manifest.",
        )
    return sorted(cases, key=lambda case: case.case_id)


def _unique_ids(cases: Iterable[Case]) -> list[Case]:
    """Safe ids, made unique with ``-2``, ``-3``... in the order given."""
    seen: dict[str, int] = {}
    out = []
    for case in cases:
        base = safe_name(case.case_id, "case")
        count = seen.get(base, 0) + 1
        seen[base] = count
        case_id = base if count == 1 else f"{base}-{count}"
        out.append(
            Case(case_id, case.images, case.series_key, case.files, case.reference, case.is_dicom)
        )
    return out


def _image_columns(header: Sequence[str]) -> list[str]:
    """The manifest's image columns in channel order: ``image`` then ``image_1``...,
    or ``image_0000``, ``image_0001``... (nnU-Net's channel suffixes)."""
    columns = [name for name in header if name == "image" or name.startswith("image_")]

    def order(name: str) -> int:
        suffix = name[len("image_") :] if name != "image" else ""
        return -1 if suffix == "" else int(suffix) if suffix.isdigit() else 10**6

    return sorted(columns, key=order)


def read_manifest(path: str | os.PathLike) -> list[Case]:
    """The cases listed in a CSV manifest.

    Columns: ``case_id`` (optional: the first image's name), ``image`` or ``image_0000``,
    ``image_0001``... (one per model channel), optional ``reference`` and ``series`` (the
    series key or SeriesInstanceUID, for a DICOM folder holding several, as ``medseg info``
    lists them). Relative paths are taken from the manifest's folder.

    Raises
    ------
    FileError
        No image column, a row without an image, a file that does not exist, or a
        repeated case id (each message names the manifest and the row).
    """
    manifest = Path(path)
    base = manifest.parent
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
            header = list(rows[0].keys()) if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise FileError(manifest, f"cannot be read as a CSV manifest ({error}).") from error
    columns = _image_columns(header)
    if not rows or not columns:
        raise FileError(
            manifest,
            "has no rows with an 'image' column.",
            "Give columns case_id, image (or image_0000, image_0001... for "
            "several channels) and optionally reference.",
        )
    cases, ids = [], set()
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        images = []
        for column in columns:
            value = (row.get(column) or "").strip()
            if value:
                images.append(str((base / value) if not os.path.isabs(value) else Path(value)))
        if not images:
            raise FileError(manifest, f"line {number}: no image path.")
        reference = (row.get(REFERENCE_COLUMN) or "").strip() or None
        if reference and not os.path.isabs(reference):
            reference = str(base / reference)
        for item in (*images, *((reference,) if reference else ())):
            if not os.path.exists(item):
                raise FileError(manifest, f"line {number}: {shown_path(item)} does not exist.")
        case_id = (row.get(ID_COLUMN) or "").strip() or _strip_nifti(Path(images[0]).name)
        safe = safe_name(case_id, "case")
        if safe in ids:
            raise FileError(
                manifest,
                f"line {number}: case id {case_id!r} is used twice.",
                "Give every case its own id.",
            )
        ids.add(safe)
        is_dicom = os.path.isdir(images[0]) or not Path(images[0]).name.lower().endswith(
            (*NIFTI_SUFFIXES, ".nrrd", ".nhdr")
        )
        cases.append(
            Case(
                case_id=safe,
                images=tuple(images),
                series_key=(row.get(SERIES_COLUMN) or "").strip() or None,
                reference=reference,
                files=tuple(_files_under(images)),
                is_dicom=is_dicom,
            )
        )
    return sorted(cases, key=lambda case: case.case_id)


def _files_under(paths: Iterable[str]) -> list[str]:
    files = []
    for item in paths:
        if os.path.isdir(item):
            files += sorted(
                str(p) for p in Path(item).rglob("*") if p.is_file() and not p.name.startswith(".")
            )
        else:
            files.append(item)
    return files


def load_cases(inputs: str | os.PathLike, outdir: str | os.PathLike | None = None) -> list[Case]:
    """The cases of ``inputs``: a folder (:func:`find_cases`, leaving out ``outdir``) or
    a ``.csv`` manifest (:func:`read_manifest`)."""
    path = Path(inputs)
    if not path.exists():
        raise FileError(path, "does not exist.")
    if path.is_dir():
        return find_cases(path, exclude=outdir)
    if path.suffix.lower() == ".csv":
        return read_manifest(path)
    raise FileError(
        path,
        "is neither a folder nor a .csv manifest.",
        "Give the cohort's folder, or a CSV with columns case_id, image, reference.",
    )


def parse_part(text: str) -> tuple[int, int]:
    """``"I/N"`` (1 <= I <= N) -> ``(I, N)``; raises MedsegError otherwise."""
    try:
        index, count = (int(value) for value in text.split("/"))
    except ValueError:
        index = count = 0
    if not 1 <= index <= count:
        raise MedsegError(f"--part must be I/N with 1 <= I <= N (e.g. 2/8), got {text!r}")
    return index, count


def select_part(cases: Sequence[Case], index: int, count: int) -> list[Case]:
    """Part ``index`` (1-based) of ``count``: the cases sorted by id, every ``count``-th
    from the ``index``-th. Parts are disjoint and together hold every case."""
    ordered = sorted(cases, key=lambda case: case.case_id)
    return ordered[index - 1 :: count]


def sha256_of_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's contents, hex; ``""`` for what is not a regular file (a named
    pipe would block the reader forever; reading the case says what is wrong with it)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return ""
    except OSError:
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def hash_files(paths: Iterable[str | os.PathLike]) -> str:
    """SHA-256 over the files' contents (and their order), hex."""
    digest = hashlib.sha256()
    for item in paths:
        digest.update(bytes.fromhex(sha256_of_file(item)))
    return digest.hexdigest()


def input_hashes(case: Case) -> list[dict[str, str]]:
    """``[{"path", "sha256"}]`` of every file the case reads (reference included)."""
    return [{"path": str(item), "sha256": sha256_of_file(item)} for item in case.input_files()]


__all__ = [
    "Case",
    "find_cases",
    "hash_files",
    "input_hashes",
    "load_cases",
    "parse_part",
    "read_manifest",
    "select_part",
    "sha256_of_file",
]
