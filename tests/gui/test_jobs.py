"""The one job lifecycle of the widgets (``_napari/jobs.py``), on its own.

What the widget tests do not pin down directly: a result reaches the owner in the
main thread after :meth:`Job.end`; a newer job or an invalidation drops an older
result; a job cancelled before its worker looks raises Cancelled; a destroyed owner
or a closed viewer gets nothing (and the job is cancelled, its ``end`` still runs);
progress is relayed (and thinned) to the main thread; a generator's items arrive.

The worker threads are held with events (no sleeps).
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass, field
from functools import partial

import pytest
from qtpy.QtWidgets import QWidget

from napari_medseg._napari.jobs import Job, JobSlot, ProgressRelay
from napari_medseg.errors import Cancelled
from napari_medseg.progress import raise_if_cancelled

WAIT_MS = 10_000


@dataclass(eq=False)
class RecordingJob(Job):
    """A job that records when :meth:`end` ran, relative to the owner's callbacks."""

    log: list = field(default_factory=list)

    def end(self) -> None:
        self.log.append(("end", self.result, type(self.error).__name__ if self.error else None))


class Owner:
    """A widget with a slot, recording every callback it gets."""

    def __init__(self, qtbot, viewer=None, *, deleted_by_test: bool = False) -> None:
        self.widget = QWidget()
        if not deleted_by_test:
            qtbot.addWidget(self.widget)  # closed at the end of the test
        self.slot = JobSlot(self.widget, viewer)
        self.calls: list = []
        self.main = threading.current_thread()

    def start(self, job, call, *, release=True, **options):
        def on(name, job, *values):
            assert threading.current_thread() is self.main
            self.calls.append((name, job, *values))
            job.log.append(name)
            if release and name in ("returned", "errored"):
                self.slot.release(job)

        names = ["returned", "errored", "progressed", "finished"]
        if inspect.isgeneratorfunction(call):
            names.append("yielded")
        callbacks = {name: partial(on, name) for name in names}
        return self.slot.start(job, call, **{**callbacks, **options})

    def named(self, name: str) -> list:
        return [call for call in self.calls if call[0] == name]

    def got(self, name: str):
        """A ``waitUntil`` condition: a ``name`` callback came."""
        return lambda: bool(self.named(name))


class Gate:
    """``wait()`` in the worker blocks until :meth:`release`; ``reached`` is set first."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self._open = threading.Event()

    def wait(self) -> None:
        self.reached.set()
        assert self._open.wait(WAIT_MS / 1000)

    def release(self) -> None:
        self._open.set()


def _held(gate: Gate, value):
    gate.wait()
    return value


def test_a_result_reaches_the_owner_after_the_job_ended(qtbot):
    owner = Owner(qtbot)
    gate = Gate()
    job = owner.start(RecordingJob(kind="sum"), partial(_held, gate, 6))
    assert owner.slot.busy and owner.slot.job is job
    with qtbot.waitSignal(job.worker.finished, timeout=WAIT_MS):
        gate.release()
    assert owner.named("returned") == [("returned", job, 6)]
    assert job.log == [("end", 6, None), "returned"]  # end() before the owner's callback
    assert job.result == 6 and job.error is None
    assert not owner.slot.busy
    assert owner.named("finished") == []  # the job was released when its result came


def test_a_newer_job_replaces_a_running_one(qtbot):
    owner = Owner(qtbot)
    gate = Gate()
    first = owner.start(RecordingJob(kind="first"), partial(_held, gate, "old"))
    assert gate.reached.wait(WAIT_MS / 1000)
    second = owner.start(RecordingJob(kind="second"), partial(_held, gate, "new"))
    assert first.cancel.is_set() and not second.cancel.is_set()  # the replaced one: asked to stop
    gate.release()
    qtbot.waitUntil(owner.got("returned"), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: len(first.log) > 0, timeout=WAIT_MS)  # its worker ended
    assert owner.calls == [("returned", second, "new")]  # the first result was dropped


def test_an_invalidated_result_is_dropped_and_finished_frees_the_slot(qtbot):
    owner = Owner(qtbot)
    gate = Gate()
    job = owner.start(RecordingJob(kind="measure"), partial(_held, gate, "stale"), release=False)
    assert gate.reached.wait(WAIT_MS / 1000)
    owner.slot.invalidate()  # the inputs changed while it ran
    with qtbot.waitSignal(job.worker.finished, timeout=WAIT_MS):
        gate.release()
    assert owner.named("returned") == []
    assert owner.named("finished") == [("finished", job)]
    assert not job.cancel.is_set()  # invalidated, not cancelled
    assert not owner.slot.busy  # released before `finished` was called
    fresh = owner.start(RecordingJob(kind="again"), partial(_held, gate, "fresh"))
    assert fresh.generation == job.generation + 1
    qtbot.waitUntil(owner.got("returned"), timeout=WAIT_MS)
    assert owner.named("returned") == [("returned", fresh, "fresh")]  # the new generation's


def _cancellable(gate: Gate, cancel: threading.Event):
    gate.wait()
    raise_if_cancelled(cancel, "cancelled before it started")
    return "ran"


def test_a_job_cancelled_before_its_worker_looks_raises_cancelled(qtbot):
    owner = Owner(qtbot)
    assert owner.slot.cancel() is False  # nothing runs
    gate = Gate()
    job = RecordingJob(kind="cancel me")
    owner.start(job, partial(_cancellable, gate, job.cancel))
    assert owner.slot.cancel() is True
    gate.release()
    qtbot.waitUntil(owner.got("errored"), timeout=WAIT_MS)
    ((_, got, error),) = owner.named("errored")
    assert got is job and isinstance(error, Cancelled)
    assert job.log[0] == ("end", None, "Cancelled")
    assert owner.named("returned") == [] and not owner.slot.busy


def test_a_destroyed_owner_gets_nothing_and_its_job_is_cancelled(qtbot):
    owner = Owner(qtbot, deleted_by_test=True)
    gate = Gate()
    job = owner.start(RecordingJob(kind="orphan"), partial(_cancellable, gate, None))
    assert gate.reached.wait(WAIT_MS / 1000)
    with qtbot.waitSignal(owner.widget.destroyed, timeout=WAIT_MS):
        owner.widget.deleteLater()
    assert job.cancel.is_set()  # by `destroyed`, through the slot
    with qtbot.waitSignal(job.worker.finished, timeout=WAIT_MS):
        gate.release()
    assert owner.calls == []
    assert job.log == [("end", None, None)]  # end() runs all the same (quit: no result)


def test_closing_the_viewer_drops_the_result(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    owner = Owner(qtbot, viewer)
    gate = Gate()
    job = owner.start(RecordingJob(kind="closing"), partial(_held, gate, "late"))
    assert gate.reached.wait(WAIT_MS / 1000)
    with qtbot.waitSignal(job.worker.finished, timeout=WAIT_MS):
        viewer.close()
        gate.release()
    assert owner.calls == []
    assert job.cancel.is_set()  # napari quit the worker, or the slot found the viewer closed
    assert owner.slot.abandoned


def _count_to(total: int, progress) -> int:
    for done in range(1, total + 1):
        progress(done, total)
    return total


def test_progress_is_relayed_to_the_main_thread_and_thinned(qtbot):
    owner = Owner(qtbot)
    job = RecordingJob(kind="count")
    owner.start(job, partial(_count_to, 200, job.progress), progress_steps=10)
    qtbot.waitUntil(owner.got("returned"), timeout=WAIT_MS)
    updates = [values for _, _, *values in owner.named("progressed")]
    assert updates == [[done, 200] for done in range(20, 201, 20)]


@pytest.mark.parametrize(("steps", "expected"), [(None, 7), (3, 4), (50, 7)])
def test_the_relay_thins_updates(qtbot, steps, expected):
    relay = ProgressRelay(steps)
    seen = []
    relay.progressed.connect(lambda done, total: seen.append(done))
    for done in range(1, 8):
        relay(done, 7)
    assert len(seen) == expected and seen[-1] == 7


def _series(n: int, cancel: threading.Event):
    for index in range(n):
        if cancel.is_set():
            return
        yield index


def test_a_generator_yields_items_to_the_owner(qtbot):
    owner = Owner(qtbot)
    job = RecordingJob(kind="items")
    owner.start(job, partial(_series, 4, job.cancel), bar_total=4, release=False)
    qtbot.waitUntil(owner.got("finished"), timeout=WAIT_MS)
    assert [values for _, _, *values in owner.named("yielded")] == [[0], [1], [2], [3]]
    assert owner.named("finished") == [("finished", job)] and not owner.slot.busy
