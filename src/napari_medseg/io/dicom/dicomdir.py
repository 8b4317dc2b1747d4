"""DICOMDIR: the files a media directory references, found even when renamed.

Media copied from a CD on a case-sensitive file system often has its file names
lower-cased (``im000001`` for ``IM000001``), or keeps ISO 9660 version suffixes
(``IM000001.;1``); references are matched case-insensitively when the exact
name is missing.

Nothing outside the DICOMDIR's folder tree is ever read: a reference with ``..``,
an absolute path or a NUL byte, or one that leads out of the tree through a
symbolic link, is refused and reported (:attr:`DicomdirFiles.outside`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from napari_medseg.errors import ScanReadError
from napari_medseg.io.sniff import is_dicomdir_name


def _dicomdir_references(path: Path) -> tuple[list[list[str]], list[str]]:
    """ReferencedFileID of every directory record of a DICOMDIR.

    Returns
    -------
    (list of list of str, list of str)
        The references as path components below the DICOMDIR's folder, and the
        references refused as they point outside it (``..``, absolute paths, NUL
        bytes), as the DICOMDIR spells them.
    """
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
    outside = []
    for record in records:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else [str(p) for p in file_id]
        spelled = "/".join(parts)
        parts = [p.strip() for part in parts for p in part.replace("\\", "/").split("/")]
        if not any(parts):
            continue
        absolute = parts[0] == "" or parts[0].endswith(":")  # "/etc", "C:"
        parts = [p for p in parts if p not in ("", ".")]
        if parts and not absolute and all(p != ".." and "\x00" not in p for p in parts):
            refs.append(parts)
        else:
            outside.append(spelled)
    return refs, outside


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


@dataclass
class DicomdirFiles:
    """The files a DICOMDIR references.

    Attributes
    ----------
    found : list of str
        Referenced files that exist inside the DICOMDIR's folder tree (paths as
        spelled on disk), sorted.
    missing : list of str
        Referenced files that do not exist (paths as the DICOMDIR spells them), sorted.
    outside : list of str
        References refused because they lead outside the DICOMDIR's folder tree
        (``..``, an absolute path, a symbolic link out of the tree), as spelled
        in the DICOMDIR (or the path they lead to); never read.
    """

    found: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)


def _inside(path: Path, root: str) -> bool:
    """Whether ``path``, all symbolic links followed, lies inside the folder ``root``."""
    real = os.path.realpath(path)  # never raises on loops, unlike Path.resolve()
    return os.path.commonpath([real, root]) == root


def dicomdir_files(path: Path) -> DicomdirFiles:
    """Files referenced by a DICOMDIR: those found, those missing, those refused.

    References are resolved against the DICOMDIR's folder, case-insensitively
    when the exact name is missing (media copied with renamed files). A
    reference that leads outside that folder's tree is refused, so a crafted
    DICOMDIR cannot make the reader open ``../../etc/passwd``.

    Parameters
    ----------
    path : pathlib.Path
        The DICOMDIR file.

    Returns
    -------
    DicomdirFiles

    Raises
    ------
    ScanReadError
        The DICOMDIR itself cannot be parsed.
    """
    listings: dict[Path, dict[str, str]] = {}
    refs, outside = _dicomdir_references(path)
    out = DicomdirFiles(outside=sorted(outside))
    root = os.path.realpath(path.parent)
    found: set[str] = set()
    missing: set[str] = set()
    for parts in refs:
        resolved = _resolve(path.parent, parts, listings)
        if resolved is None:
            missing.add(os.fspath(path.parent.joinpath(*parts)))
        elif not _inside(resolved, root):
            out.outside.append(f"{'/'.join(parts)} (leads to {os.path.realpath(resolved)})")
        else:
            found.add(os.fspath(resolved))
    out.found, out.missing = sorted(found), sorted(missing)
    return out


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
