"""DICOMDIR: the files a media directory references, found even when renamed.

Media copied from a CD on a case-sensitive file system often has its file names
lower-cased (``im000001`` for ``IM000001``), or keeps ISO 9660 version suffixes
(``IM000001.;1``); references are matched case-insensitively when the exact
name is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_medseg.errors import ScanReadError
from napari_medseg.io.sniff import is_dicomdir_name


def _dicomdir_references(path: Path) -> list[list[str]]:
    """ReferencedFileID of every directory record of a DICOMDIR (path components)."""
    from pydicom import dcmread

    try:
        records = dcmread(path).get("DirectoryRecordSequence") or []
    except Exception as error:
        raise ScanReadError(
            path,
            f"is a DICOMDIR that cannot be read ({type(error).__name__}: {error}).",
            "Open the folder that holds it instead; its files are found without it.",
        ) from error
    refs = []
    for record in records:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else [str(p) for p in file_id]
        parts = [p.strip() for part in parts for p in part.replace("\\", "/").split("/")]
        if parts and all(p and p not in (".", "..") for p in parts):
            refs.append(parts)
    return refs


def _media_name(name: str) -> str:
    """A file name as CD media write it, folded: no ``;1`` version, no trailing dot, no case."""
    return name.split(";")[0].rstrip(".").casefold()


def _resolve(root: Path, parts: list[str], listings: dict[Path, dict[str, str]]) -> Path | None:
    """``root / parts``, matching each component case-insensitively when needed.

    File systems that are case-sensitive (Linux) do not find ``IM000001`` when the
    media was copied as ``im000001``; ISO 9660 names may also carry ``;1``.
    """
    current = root
    for part in parts:
        direct = current / part
        if direct.exists():
            current = direct
            continue
        if current not in listings:
            try:
                listings[current] = {_media_name(e): e for e in os.listdir(current)}
            except OSError:
                listings[current] = {}
        match = listings[current].get(_media_name(part))
        if match is None:
            return None
        current = current / match
    return current if current.is_file() else None


def dicomdir_files(path: Path) -> tuple[list[str], list[str]]:
    """Files referenced by a DICOMDIR: those found, and those missing.

    References are resolved against the DICOMDIR's folder, case-insensitively
    when the exact name is missing (media copied with renamed files).

    Parameters
    ----------
    path : pathlib.Path
        The DICOMDIR file.

    Returns
    -------
    (list of str, list of str)
        Paths of the referenced files that exist (as spelled on disk), and of
        those that do not (as the DICOMDIR spells them), both sorted.

    Raises
    ------
    ScanReadError
        The DICOMDIR itself cannot be parsed.
    """
    listings: dict[Path, dict[str, str]] = {}
    found: set[str] = set()
    missing: set[str] = set()
    for parts in _dicomdir_references(path):
        resolved = _resolve(path.parent, parts, listings)
        if resolved is None:
            missing.add(os.fspath(path.parent.joinpath(*parts)))
        else:
            found.add(os.fspath(resolved))
    return sorted(found), sorted(missing)


def is_dicomdir(path: Path) -> bool:
    """Whether a file is a DICOMDIR (by its name, or its Media Storage SOP class)."""
    if is_dicomdir_name(path):
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    return b"1.2.840.10008.1.3.10" in head
