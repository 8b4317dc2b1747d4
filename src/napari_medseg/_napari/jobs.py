"""Worker jobs of the dock widgets: cancellable, and safe when the viewer closes.

A widget runs one core call at a time in a napari worker. Each run is a
:class:`Job` (its worker and a ``threading.Event``); the widget's :class:`JobSlot`
holds the running one. *Cancel* sets the event, which the core call checks. When
the widget is destroyed or its viewer closed, the running job is cancelled the
same way and its callbacks no longer touch the widget or the viewer
(:meth:`JobSlot.current`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from napari_medseg._napari.history import viewer_is_open


@dataclass(eq=False)
class Job:
    """One run: its worker, cancel event and the layers it added."""

    kind: str
    cancel: threading.Event = field(default_factory=threading.Event)
    worker: Any = None
    added: list = field(default_factory=list)

    def stop(self) -> None:
        """Ask the job to stop as soon as it can (thread-safe)."""
        self.cancel.set()
        worker = self.worker
        if worker is not None:
            try:
                worker.quit()
            except RuntimeError:  # its Qt object is already gone
                pass


class JobSlot:
    """A widget's running job, reachable without the widget.

    Connect the widget's ``destroyed`` signal to :meth:`abandon` of this plain
    object (never to a method of the widget, whose Qt side is gone by then).
    """

    def __init__(self) -> None:
        self.job: Job | None = None
        self.abandoned = False

    def abandon(self, *_: Any) -> None:
        self.abandoned = True
        if self.job is not None:
            self.job.stop()

    def cancel(self) -> bool:
        """Set the running job's cancel event; False when none runs."""
        if self.job is None:
            return False
        self.job.cancel.set()
        return True

    def current(self, job: Job, widget: Any, viewer: Any) -> bool:
        """Whether a worker callback for ``job`` may update ``widget`` and ``viewer``.

        Not when another job replaced it, nor once the widget was destroyed or
        its viewer closed: then the job is stopped and its results dropped.
        """
        if job is not self.job or self.abandoned:
            job.stop()
            return False
        try:
            widget.objectName()  # raises once the Qt object was deleted
        except RuntimeError:
            self.abandon()
            return False
        if not viewer_is_open(viewer):
            self.abandon()
            return False
        return True


@cache
def worker_classes() -> tuple[type, type]:
    """napari worker classes (function, generator) whose ``quit()`` also sets the job's
    cancel event (``worker.cancel_event``).

    napari registers ``worker.quit`` as the task's cancel callback and calls it
    when the viewer window closes; a plain ``FunctionWorker`` ignores ``quit``
    and a ``GeneratorWorker`` only stops at its next ``yield``.
    """
    from napari.qt.threading import FunctionWorker, GeneratorWorker

    class _CancelOnQuit:
        cancel_event: threading.Event | None = None

        def quit(self) -> None:
            if self.cancel_event is not None:
                self.cancel_event.set()
            super().quit()  # type: ignore[misc]

    class CancelOnQuitFunctionWorker(_CancelOnQuit, FunctionWorker):
        pass

    class CancelOnQuitGeneratorWorker(_CancelOnQuit, GeneratorWorker):
        pass

    return CancelOnQuitFunctionWorker, CancelOnQuitGeneratorWorker


__all__ = ["Job", "JobSlot", "worker_classes"]
