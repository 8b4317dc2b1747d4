"""Safe file output: atomic replacement and refusal to write over source scans."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from os import PathLike
from pathlib import Path

from napari_medseg.io.errors import OverwriteSourceError


def refuse_source_overwrite(target: str | PathLike, protect: Iterable[str | PathLike]) -> None:
    """Raise if ``target`` is one of the protected source files.

    Parameters
    ----------
    target : path
        File about to be written.
    protect : iterable of path
        Source scans (files) that must never be replaced; folders in the list protect
        every file directly inside them that already exists (a DICOM series folder).

    Raises
    ------
    OverwriteSourceError
        When ``target`` resolves to a protected file, or to an existing file inside a
        protected folder.
    """
    target_path = Path(target).resolve()
    for source in protect:
        if not source:
            continue
        source_path = Path(source).resolve()
        if target_path == source_path:
            raise OverwriteSourceError(target, source)
        if source_path.is_dir() and target_path.exists() and source_path in target_path.parents:
            raise OverwriteSourceError(target, source)


@contextlib.contextmanager
def atomic_output(target: str | PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it onto ``target`` on success.

    The temporary file lives in the same folder (so the final ``os.replace`` is
    atomic on POSIX and Windows) and keeps ``suffix`` (default: the target's full
    suffix, e.g. ``.nii.gz``) so writers that pick a format from the extension work.
    On any exception the temporary file is removed and ``target`` is untouched.
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
        os.replace(temp_path, target_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp_path.unlink()
        raise
