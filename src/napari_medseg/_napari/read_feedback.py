"""What the user sees while napari's reader reads a DICOM folder in the main thread.

napari calls a reader in its main thread and shows nothing until it returns, so
opening a folder of a few hundred DICOM files froze the window for seconds without
a word. :class:`DicomReadFeedback` (the reader wraps a DICOM read in it) announces a
read of :data:`ANNOUNCE_FROM_FILES` files or more with a notification, "Reading 300
DICOM files from <folder> ...", and shows napari's progress bar (the activity
indicator in the status bar; the bar itself in the activity dock): it advances while
the headers are indexed, then while the slices are read. napari's bar processes
pending events when it is made and moved, which is what paints the notification and
the bar before and during the read; the window does not otherwise respond until the
read ends. (The DICOM series browser reads in a worker instead, for large studies.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: Reads of fewer files take well under a second: nothing is announced.
ANNOUNCE_FROM_FILES = 50

#: Steps a phase's bar moves in at most (each step repaints the window).
BAR_STEPS = 50


def count_files(path: str | os.PathLike) -> int:
    """Files a DICOM read of ``path`` may look at (hidden files not counted).

    A folder, or a DICOMDIR (it references files in the folders below it): every file
    below the folder. One DICOM file: the files beside it, where its series is
    gathered from.
    """
    from napari_medseg.io.sniff import is_dicomdir_name

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    only_beside = path.is_file() and not is_dicomdir_name(path)
    total = 0
    for _root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        total += sum(1 for name in files if not name.startswith("."))
        if only_beside:
            break
    return total


class DicomReadFeedback:
    """Announce a DICOM read and show its progress (a context manager).

    Parameters
    ----------
    path : str or PathLike
        The folder, DICOM file or DICOMDIR being opened.

    Attributes
    ----------
    files : int
        :func:`count_files` of ``path``.
    bar : napari.utils.progress or None
        While the read runs, for reads of :data:`ANNOUNCE_FROM_FILES` files or more.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.files = count_files(self.path)
        self.bar: Any = None
        self._phase = ""

    def __enter__(self) -> DicomReadFeedback:
        from napari.utils import progress

        from napari_medseg._napari.notifications import notify_info

        if self.files >= ANNOUNCE_FROM_FILES:
            name = self.path.name or str(self.path)
            self.bar = progress(total=0, desc=f"Reading DICOM {name}")
            notify_info(f"Reading {self.files} DICOM files from {name} ...")
        return self

    def indexing(self, done: int, total: int) -> None:
        """``progress(done, total)`` of the header indexing (files)."""
        self._move("Indexing DICOM headers", done, total)

    def reading(self, done: int, total: int) -> None:
        """``progress(done, total)`` of the pixel reading (slices)."""
        self._move("Reading DICOM slices", done, total)

    def _move(self, phase: str, done: int, total: int) -> None:
        bar = self.bar
        if bar is None:
            return
        if phase != self._phase or bar.total != total:
            self._phase = phase
            bar.set_description(phase)
            bar.n = 0
            bar.total = total
        step = max(1, total // BAR_STEPS)
        if done > bar.n and (done >= total or done - bar.n >= step):
            bar.update(done - bar.n)

    def __exit__(self, *_: Any) -> None:
        bar, self.bar = self.bar, None
        if bar is not None:
            bar.close()


__all__ = ["ANNOUNCE_FROM_FILES", "DicomReadFeedback", "count_files"]
