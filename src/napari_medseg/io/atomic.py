"""Safe file output: atomic replacement and refusal to write over source scans."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from os import PathLike
from pathlib import Path

from napari_medseg.errors import OverwriteSourceError


def _same_file(a: Path, b: Path) -> bool:
    """Whether two existing paths are one file or folder (catches bind mounts, case aliases)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_source_overwrite(target: str | PathLike, protect: Iterable[str | PathLike]) -> None:
    """Raise if ``target`` is one of the protected source files.

    Parameters
    ----------
    target : path
        File about to be written.
    protect : iterable of path
        Source scans (files) that must never be replaced; folders in the list protect
        every existing file below them (a DICOM series folder).

    Raises
    ------
    OverwriteSourceError
        When ``target`` is a protected file, or an existing file inside a protected
        folder. Paths are compared after resolving links and, for existing files, by
        identity on disk, so a second spelling of the same file (a bind mount, a
        case-insensitive volume) is caught too.
    """
    target_path = Path(target).resolve()
    target_exists = target_path.exists()
    for source in protect:
        if not source:
            continue
        source_path = Path(source).resolve()
        if target_path == source_path or (target_exists and _same_file(target_path, source_path)):
            raise OverwriteSourceError(target, source)
        if target_exists and source_path.is_dir():
            for parent in target_path.parents:
                if parent == source_path or _same_file(parent, source_path):
                    raise OverwriteSourceError(target, source)


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and restore (not atomic, but brief)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(target: str | PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it onto ``target`` on success.

    The temporary file lives in the same folder (so the final ``os.replace`` is
    atomic on POSIX and Windows) and keeps ``suffix`` (default: the target's full
    suffix, e.g. ``.nii.gz``) so writers that pick a format from the extension work.
    The result gets the permissions of the file it replaces, or the usual ones for a
    new file (``0o666`` less the umask), not ``mkstemp``'s private ``0o600``. On any
    exception the temporary file is removed and ``target`` is untouched.
    """
    target_path = Path(target)
    if suffix is None:
        suffix = "".join(target_path.suffixes) or ".tmp"
    target_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{target_path.name}.", suffix=suffix, dir=target_path.parent
    )
    os.close(handle)
    temp_path = Path(temp_name)
    try:
        yield temp_path
        if target_path.exists():
            mode = stat.S_IMODE(target_path.stat().st_mode)
        else:
            mode = 0o666 & ~_current_umask()
        os.chmod(temp_path, mode)
        os.replace(temp_path, target_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp_path.unlink()
        raise
