"""Progress and cancellation of long jobs: plain callables and ``threading.Event``.

Every long core call (reading a DICOM series, indexing a folder, segmenting) takes

* ``progress``: a :data:`Progress` callable, ``progress(done, total)``, called in the
  caller's thread with ``done`` rising from 0 to ``total``;
* ``cancel``: a ``threading.Event``; when it is set the call stops at its next check
  and raises :class:`~napari_medseg.errors.Cancelled`, returning and writing nothing.

The napari widgets turn both into a progress bar and a Cancel button
(:mod:`napari_medseg._napari.jobs`); the CLI prints progress on stderr.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from napari_medseg.errors import Cancelled

#: ``progress(done, total)``: ``done`` units of work of ``total`` are finished.
Progress = Callable[[int, int], None]


def raise_if_cancelled(cancel: threading.Event | None, message: str) -> None:
    """Raise :class:`~napari_medseg.errors.Cancelled` with ``message`` if ``cancel`` is set.

    Parameters
    ----------
    cancel : threading.Event or None
        The job's cancel event (None: the job cannot be cancelled).
    message : str
        What was cancelled, e.g. ``"DICOM read cancelled"``.
    """
    if cancel is not None and cancel.is_set():
        raise Cancelled(message)


__all__ = ["Progress", "raise_if_cancelled"]
