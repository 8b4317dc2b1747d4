"""The DICOM browser's jobs: Cancel during a scan, and closing the viewer mid-job.

The worker threads are held at a known point with events (no sleeps): a gate
wrapped around the per-file header read (scan) or the series read (load) blocks
until the test has pressed Cancel or closed the viewer.
"""

from __future__ import annotations

import threading

import numpy as np
from geometry_cases import make_affine

from napari_medseg.synthetic.dicom_series import write_dicom_series

N_FILES = 40


class Gate:
    """Wraps a function: the ``at``-th call waits until :meth:`release` (10 s at most)."""

    def __init__(self, function, at: int = 1) -> None:
        self.function = function
        self.at = at
        self.calls = 0
        self.reached = threading.Event()
        self._release = threading.Event()

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            self.reached.set()
            self._release.wait(10)
        return self.function(*args, **kwargs)

    def release(self) -> None:
        self._release.set()


def _folder(tmp_path, n_slices=N_FILES):
    folder = tmp_path / "many"
    write_dicom_series(
        np.zeros((8, 8, n_slices), np.int16) + 40,
        make_affine("LPS", spacing=(1.0, 1.0, 2.0)),
        folder,
        series_description="many slices",
    )
    return folder


def _gate_headers(monkeypatch, at: int) -> Gate:
    import napari_medseg.io.dicom.index as index_module

    gate = Gate(index_module.read_header, at=at)
    monkeypatch.setattr(index_module, "read_header", gate)
    return gate


def test_cancel_stops_a_scan(make_napari_viewer, qtbot, tmp_path, monkeypatch, notes):
    from napari_medseg._napari.widgets.dicom_browser import DicomBrowser

    folder = _folder(tmp_path)
    gate = _gate_headers(monkeypatch, at=5)
    viewer = make_napari_viewer()
    widget = DicomBrowser(viewer)
    qtbot.addWidget(widget)
    widget.set_folder(folder)
    qtbot.waitUntil(gate.reached.is_set, timeout=10000)
    assert widget.busy and not widget.cancel_button.isHidden()
    with (
        qtbot.assertNotEmitted(widget.indexed),
        qtbot.waitSignal(widget.cancelled, timeout=10000) as blocker,
    ):
        widget.cancel_button.click()
        gate.release()
    assert blocker.args == ["scan"]
    assert gate.calls < N_FILES  # the header loop stopped at the next file
    assert widget.status.text() == "Scan cancelled."
    assert not widget.busy and widget.table.rowCount() == 0
    assert widget.scan_button.isEnabled()
    assert not any("cancelled" in n.lower() for n in notes)  # not reported as an error
    # and the widget is usable again
    monkeypatch.undo()
    with qtbot.waitSignal(widget.indexed, timeout=20000):
        widget.scan()
    assert widget.table.rowCount() == 1


def test_closing_the_viewer_during_a_load(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    import napari_medseg.io.dicom as dicom_module

    folder = _folder(tmp_path, n_slices=6)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "DICOM series browser")
    with qtbot.waitSignal(widget.indexed, timeout=20000):
        widget.set_folder(folder)
    gate = Gate(dicom_module.read_dicom_series)
    monkeypatch.setattr(dicom_module, "read_dicom_series", gate)
    with qtbot.capture_exceptions() as exceptions:
        widget.load_series(widget.series * 3)  # three reads: the first one is held
        job = widget._slot.job
        worker = job.worker
        qtbot.waitUntil(gate.reached.is_set, timeout=10000)
        with qtbot.waitSignal(worker.finished, timeout=10000):
            viewer.close()
            gate.release()
        qtbot.waitUntil(job.cancel.is_set, timeout=5000)
    assert exceptions == []
    assert len(viewer.layers) == 0  # nothing added to the closed viewer
    assert gate.calls == 1  # viewer.close() cancelled the job: no further series read


def test_closing_the_viewer_during_a_scan(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    gate = _gate_headers(monkeypatch, at=3)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "DICOM series browser")
    with qtbot.capture_exceptions() as exceptions:
        widget.set_folder(folder)
        job = widget._slot.job
        qtbot.waitUntil(gate.reached.is_set, timeout=10000)
        with qtbot.waitSignal(job.worker.finished, timeout=10000):
            viewer.close()
            gate.release()
        qtbot.waitUntil(job.cancel.is_set, timeout=5000)
    assert exceptions == []
    assert gate.calls == 3  # viewer.close() cancelled the scan: no further header read


def test_deleting_the_browser_during_a_scan_stops_it(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    folder = _folder(tmp_path)
    gate = _gate_headers(monkeypatch, at=3)
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "DICOM series browser")
    with qtbot.capture_exceptions() as exceptions:
        widget.set_folder(folder)
        job = widget._slot.job
        qtbot.waitUntil(gate.reached.is_set, timeout=10000)
        with qtbot.waitSignal(widget.destroyed, timeout=10000):
            viewer.window.remove_dock_widget(dock)
            widget.deleteLater()
        assert job.cancel.is_set()  # set by the widget's `destroyed`, not by napari
        with qtbot.waitSignal(job.worker.finished, timeout=10000):
            gate.release()
    assert exceptions == []
    assert gate.calls == 3
    assert len(viewer.layers) == 0
