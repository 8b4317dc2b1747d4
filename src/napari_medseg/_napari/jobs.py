"""One lifecycle for the widgets' long jobs: start, progress, cancel, result, error.

A widget runs core calls in napari workers through its :class:`JobSlot`. Each run is a
:class:`Job`: a ``threading.Event`` to cancel it, a thread-safe ``progress(done,
total)`` to hand to the core call, the worker, and whatever the run needs (subclass
it). The slot starts the worker and brings its results back to the main thread, but
only while they are still wanted: a result (or progress, a yielded item, an error) is
dropped when

* the widget took the result already or let the job go (:meth:`JobSlot.release`),
* a newer job replaced it (:meth:`JobSlot.start` while it runs; the old one is
  stopped: its cancel event set),
* the inputs changed since it started (:meth:`JobSlot.invalidate`: a stale result;
  the job runs to its end),
* the widget was destroyed or its viewer closed (the job is stopped too; napari
  also quits a worker when its viewer window closes, which sets the job's event).

How a widget uses it::

    class WriteWidget(QWidget):
        def __init__(self, napari_viewer):
            super().__init__()
            self._slot = JobSlot(self, napari_viewer)  # watches `destroyed` and the viewer

        def write(self):
            if self._slot.busy:
                return
            job = Job(kind="write")  # or a subclass carrying the layer, the path...
            self._slot.start(
                job,
                partial(write_file, path, data.copy(), progress=job.progress, cancel=job.cancel),
                returned=self._on_written,  # (job, result), in the main thread
                errored=self._on_failed,  # (job, exception); Cancelled when cancelled
                progressed=self._on_progress,  # (job, done, total), optional
            )

        def cancel(self):  # the Cancel button
            self._slot.cancel()  # sets job.cancel: the core call raises Cancelled

        def _on_written(self, job, path):
            self._slot.release(job)  # idle again before telling listeners
            self.status.setText(f"Wrote {path}.")

        def _on_failed(self, job, error):
            self._slot.release(job)
            notify_error(error)

A generator function yields items to ``yielded(job, item)`` (napari's progress bar
can follow the yields: ``bar_total``). ``finished(job)`` is called when the worker
ended while the job still held the slot (no callback released it: a worker napari
quit, or a job whose stale result was dropped), after the slot was released.

What must happen whatever becomes of the widget (close a progress bar, record that a
file was written) goes in an override of :meth:`Job.end`: the slot calls it once, in
the main thread, as soon as the worker returned, failed or ended, before any callback
of the widget, with :attr:`Job.result` and :attr:`Job.error` set.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any, TypeVar

from qtpy.QtCore import QObject, Signal

from napari_medseg._napari.history import viewer_is_open

logger = logging.getLogger(__name__)

#: A callback of the widget: ``callback(job, *values)``.
Callback = Callable[..., Any]


class ProgressRelay(QObject):
    """``progress(done, total)`` callable from any thread; re-emitted as a Qt signal.

    Made in the main thread, so slots connected to :attr:`progressed` run there
    (queued) while the worker thread calls the relay.

    Parameters
    ----------
    steps : int, optional
        Pass on about this many updates per run (every ``total // steps``-th call,
        and the last); None: every call.
    """

    progressed = Signal(int, int)

    def __init__(self, steps: int | None = None) -> None:
        super().__init__()
        self.steps = steps

    def __call__(self, done: int, total: int) -> None:
        done, total = int(done), int(total)
        if self.steps and done != total and done % max(1, total // self.steps):
            return
        self.progressed.emit(done, total)


@dataclass(eq=False, kw_only=True)
class Job:
    """One run of a core call in a worker (subclass it to carry what the run needs).

    Its fields are keyword-only, so a subclass may add positional ones.

    Attributes
    ----------
    kind : str
        What the run does (e.g. ``"scan"``, ``"load"``), for the widget's messages.
    cancel : threading.Event
        Set by Cancel, by :meth:`stop` and when the widget or viewer goes; hand it to
        the core call, which raises :class:`~napari_medseg.errors.Cancelled`.
    worker : napari worker or None
        Set by :meth:`JobSlot.start`.
    generation : int
        The slot's generation when the job started (see :meth:`JobSlot.invalidate`).
    result, error
        What the worker returned or raised (set in the main thread before
        :meth:`end`).
    """

    kind: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    worker: Any = None
    generation: int = 0
    result: Any = None
    error: BaseException | None = None
    _relay: ProgressRelay | None = field(default=None, repr=False)
    _ended: bool = field(default=False, repr=False)

    def progress(self, done: int, total: int) -> None:
        """``progress(done, total)`` for the core call (thread-safe; nothing when the
        job was started without ``progressed``)."""
        relay = self._relay
        if relay is not None:
            relay(done, total)

    def stop(self) -> None:
        """Ask the job to stop as soon as it can (thread-safe)."""
        self.cancel.set()
        worker = self.worker
        if worker is not None:
            try:
                worker.quit()
            except RuntimeError:  # its Qt object is already gone
                pass

    def end(self) -> None:
        """Called once, in the main thread, when the worker returned, failed or ended,
        whether or not the widget still wants the result. Nothing by default."""


J = TypeVar("J", bound=Job)


class JobSlot:
    """The job a widget runs, and the rules for delivering its results.

    Parameters
    ----------
    owner : QObject
        The widget (or object) the callbacks update. Its ``destroyed`` signal is
        connected to :meth:`abandon` of this plain object (never to a method of the
        owner, whose Qt side is gone by then).
    viewer : napari.Viewer, optional
        Results are dropped once it is closed.
    """

    def __init__(self, owner: QObject, viewer: Any = None) -> None:
        self._owner = weakref.ref(owner)
        self._viewer = viewer
        self.job: Job | None = None
        self.generation = 0
        self.abandoned = False
        owner.destroyed.connect(self.abandon)

    @property
    def busy(self) -> bool:
        """Whether a job holds the slot (started and not released)."""
        return self.job is not None

    # ---------------------------------------------------------------- control
    def start(
        self,
        job: J,
        call: Callable[[], Any],
        *,
        returned: Callback | None = None,
        errored: Callback | None = None,
        yielded: Callback | None = None,
        progressed: Callback | None = None,
        finished: Callback | None = None,
        progress_steps: int | None = None,
        bar_total: int | None = None,
    ) -> J:
        """Run ``call()`` in a napari worker as ``job``; it holds the slot until released.

        Parameters
        ----------
        job : Job
        call : callable
            A function or a generator function taking no argument (use
            ``functools.partial``); it runs in the worker thread.
        returned, errored, yielded, progressed, finished : callable, optional
            ``returned(job, result)``, ``errored(job, exception)``, ``yielded(job,
            item)``, ``progressed(job, done, total)`` (from :meth:`Job.progress`),
            ``finished(job)``; each called in the main thread while the result is
            still wanted (see the module docstring). Without ``errored``, an
            exception of the worker is logged.
        progress_steps : int, optional
            Pass on about this many progress updates per run (None: all).
        bar_total : int, optional
            Show napari's progress bar advancing at each yield of a generator.

        Returns
        -------
        Job
            ``job``, its worker set and started.
        """
        from napari.qt.threading import create_worker

        generator = inspect.isgeneratorfunction(call)
        if (yielded is not None or bar_total is not None) and not generator:
            raise TypeError(f"{call!r} is not a generator function: it yields nothing")
        if self.job is not None and self.job is not job:
            self.job.stop()  # replaced: its results are not wanted any more
        job.generation = self.generation
        if progressed is not None:
            job._relay = ProgressRelay(progress_steps)
            job._relay.progressed.connect(partial(self._deliver, job, progressed))
        connect: dict[str, Callable[..., None]] = {
            "returned": partial(self._on_returned, job, returned),
            "errored": partial(self._on_errored, job, errored),
        }
        if yielded is not None:
            connect["yielded"] = partial(self._deliver, job, yielded)
        worker = create_worker(
            call,
            _start_thread=False,
            _worker_class=worker_classes()[1 if generator else 0],
            _connect=connect,
            _progress={"total": bar_total} if bar_total is not None else None,
        )
        worker.cancel_event = job.cancel
        worker.finished.connect(partial(self._on_finished, job, finished))
        job.worker = worker
        self.job = job
        worker.start()
        return job

    def cancel(self) -> bool:
        """Set the running job's cancel event; False when none runs."""
        if self.job is None:
            return False
        self.job.cancel.set()
        return True

    def release(self, job: Job) -> None:
        """The widget is done with ``job`` (took its result, or gave up): the slot is free."""
        if self.job is job:
            self.job = None

    def invalidate(self) -> None:
        """The inputs changed: results of jobs started before now are stale and dropped.

        The running job is not cancelled (it still holds the slot until it ends; see
        ``finished`` in :meth:`start`).
        """
        self.generation += 1

    def abandon(self, *_: Any) -> None:
        """The owner is gone: stop the running job and deliver nothing any more."""
        self.abandoned = True
        if self.job is not None:
            self.job.stop()

    # ---------------------------------------------------------------- checks
    def owner_alive(self) -> bool:
        """Whether the owner still exists and its viewer is open (else :meth:`abandon`)."""
        if self.abandoned:
            return False
        owner = self._owner()
        try:
            alive = owner is not None and owner.objectName() is not None
        except RuntimeError:  # the Qt object was deleted
            alive = False
        if not alive or (self._viewer is not None and not viewer_is_open(self._viewer)):
            self.abandon()
            return False
        return True

    def current(self, job: Job) -> bool:
        """Whether a result of ``job`` may still update the owner (and its viewer)."""
        return job is self.job and job.generation == self.generation and self.owner_alive()

    # ---------------------------------------------------------------- worker signals
    def _end(self, job: Job) -> None:
        if not job._ended:
            job._ended = True
            job.end()

    def _deliver(self, job: Job, callback: Callback, *values: Any) -> None:
        if self.current(job):
            callback(job, *values)

    def _on_returned(self, job: Job, callback: Callback | None, result: Any) -> None:
        job.result = result
        self._end(job)
        if callback is not None:
            self._deliver(job, callback, result)

    def _on_errored(self, job: Job, callback: Callback | None, error: BaseException) -> None:
        job.error = error
        self._end(job)
        if callback is not None:
            self._deliver(job, callback, error)
        else:
            logger.error("%s job failed: %s", job.kind or "worker", error, exc_info=error)

    def _on_finished(self, job: Job, callback: Callback | None) -> None:
        self._end(job)
        if job is not self.job:
            return
        self.release(job)
        if callback is not None and self.owner_alive():
            callback(job)


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


__all__ = ["Job", "JobSlot", "ProgressRelay", "worker_classes"]
