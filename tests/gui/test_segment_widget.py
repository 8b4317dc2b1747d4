"""The Segment widget on a real viewer, docked through the manifest.

Runs are held mid-way at a known point without sleeping: a forward hook on the
network of the widget's cached Segmenter blocks the worker thread on its n-th
network call until the test releases it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import nibabel as nib
import numpy as np
import pytest
from _helpers import dock, open_sample, save_nifti
from model_factory import random_volume, write_unet_model

from napari_medseg._napari.edit_state import is_modified
from napari_medseg._napari.label_classes import hex_color
from napari_medseg.geometry import display_geometry
from napari_medseg.inference.segmenter import Segmenter
from napari_medseg.io.reader import read_scan
from napari_medseg.models.registry import DEFAULT_MODEL, default_specs
from napari_medseg.samples import sample_path

#: Grid of the small scans: larger than the tiny model's 16^3 window.
SHAPE = (40, 36, 32)
AFFINE = np.array(
    [[-0.9, 0.0, 0.0, 30.0], [0.0, -1.1, 0.0, 25.0], [0.0, 0.0, 2.0, -40.0], [0, 0, 0, 1.0]]
)
TIMEOUT = 120_000  # ms, for a run of the default model on a 2-core CPU


class HoldNetwork:
    """Forward hook: the ``at``-th network call waits in its thread until :meth:`release`."""

    def __init__(self, network, at: int = 2) -> None:
        self.at = at
        self.calls = 0
        self.thread: threading.Thread | None = None
        self.reached = threading.Event()
        self._release = threading.Event()
        self.handle = network.register_forward_hook(self)

    def __call__(self, module, inputs, output) -> None:
        self.calls += 1
        if self.calls == self.at:
            self.thread = threading.current_thread()
            self.reached.set()
            self._release.wait(60)

    def release(self) -> None:
        self._release.set()
        self.handle.remove()


def _scan(viewer, tmp_path, name="scan", shape=SHAPE, affine=AFFINE, seed=0):
    """A float scan written with nibabel and opened through the plugin's reader."""
    path = save_nifti(tmp_path / f"{name}.nii.gz", random_volume(shape, seed), affine)
    (layer,) = viewer.open(str(path), plugin="napari-medseg")
    return path, layer


def _tiny(widget, tmp_path, **fields):
    """Choose a tiny real MONAI UNet (16^3 windows) written to ``tmp_path``."""
    spec = write_unet_model(tmp_path / "model", roi_size=(16, 16, 16), **fields)
    widget.set_model_path(spec)
    return spec


def _held_run(widget, qtbot, at: int = 2) -> HoldNetwork:
    """Load the model as Run would (the cache), hold its ``at``-th call, press Run."""
    segmenter = widget.segmenter_cache.get(widget.settings())
    hold = HoldNetwork(segmenter.network, at=at)
    widget.run_button.click()
    qtbot.waitUntil(hold.reached.is_set, timeout=30_000)
    return hold


def _bar_open(bar) -> bool:
    from napari.utils import progress

    return bar in progress._all_instances


def test_building_the_widget_does_not_import_torch():
    code = (
        "import sys\n"
        "from qtpy.QtWidgets import QApplication\n"
        "from napari.components import ViewerModel\n"
        "app = QApplication([])\n"
        "from napari_medseg._napari.widgets.segment import SegmentWidget\n"
        "widget = SegmentWidget(ViewerModel())\n"
        "assert widget.model_combo.count() > 3\n"
        "print('torch' in sys.modules, 'monai' in sys.modules)\n"
    )
    env = {**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_segment_the_sample_with_the_default_model(make_napari_viewer, qtbot, tmp_path, artifacts):
    viewer = make_napari_viewer()
    image, _ = open_sample(viewer, "chest_ct")
    widget = dock(viewer, "Segment")
    assert widget.image_combo.layer() is image
    assert widget.model_combo.currentData() == DEFAULT_MODEL  # the default comes first
    assert widget.output_combo.layer() is None  # "New layer"

    with qtbot.waitSignal(widget.segmented, timeout=TIMEOUT) as blocker:
        widget.run_button.click()
    layer = blocker.args[0]
    assert layer in viewer.layers and layer._type_string == "labels"
    assert layer.data.shape == image.data.shape
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    medseg, image_medseg = layer.metadata["medseg"], image.metadata["medseg"]
    np.testing.assert_allclose(medseg["source_affine"], image_medseg["source_affine"])
    assert medseg["source_shape"] == image_medseg["source_shape"]
    assert medseg["model"]["name"] == DEFAULT_MODEL
    assert medseg["model"]["settings"]["device"] == "cpu"
    assert is_modified(layer) and layer.name.endswith(" *")
    assert not widget.busy and widget.run_button.isEnabled()

    # independent path: the file read by the core, segmented by a fresh Segmenter
    volume = read_scan(sample_path("chest_ct"))
    reference = Segmenter(DEFAULT_MODEL, device="cpu").predict(volume).labels
    assert len(np.unique(reference)) > 2
    shown = display_geometry(volume.affine, volume.shape).to_display(reference)
    np.testing.assert_array_equal(layer.data, shown)

    spec = default_specs()[DEFAULT_MODEL][0]
    assert list(layer.features["index"]) == [c.value for c in spec.labels]
    assert list(layer.features["name"]) == [c.name for c in spec.labels]
    assert list(layer.features["color"]) == [hex_color(c.color) for c in spec.labels]

    # the napari writer puts it back on the scan's grid, with the scan's affine
    out = tmp_path / "seg.nii.gz"
    layer.save(str(out), plugin="napari-medseg")
    saved, scan = nib.load(out), nib.load(sample_path("chest_ct"))
    np.testing.assert_allclose(saved.affine, scan.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), reference)

    viewer.screenshot(str(artifacts / "segment.png"), canvas_only=False, flash=False)

    # a second run reuses the loaded model and gives the same labels
    loaded = widget.segmenter_cache.segmenter
    with qtbot.waitSignal(widget.segmented, timeout=TIMEOUT) as blocker:
        widget.run_button.click()
    assert widget.segmenter_cache.segmenter is loaded
    assert blocker.args[0] is not layer
    np.testing.assert_array_equal(blocker.args[0].data, layer.data)


def test_the_event_loop_runs_while_segmenting(make_napari_viewer, qtbot, tmp_path):
    from qtpy.QtCore import QTimer

    viewer = make_napari_viewer()
    _, image = _scan(viewer, tmp_path)
    widget = dock(viewer, "Segment")
    _tiny(widget, tmp_path)
    ticks: list[int] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(5)
    hold = _held_run(widget, qtbot, at=2)
    try:
        assert hold.thread is not threading.main_thread()
        job = widget._slot.job
        seen = len(ticks)
        # the worker is blocked inside its 2nd network call; the main thread goes on:
        qtbot.waitUntil(lambda: len(ticks) >= seen + 10, timeout=10_000)  # timer events
        qtbot.waitUntil(lambda: job.bar is not None and job.bar.n >= 1, timeout=10_000)
        assert job.bar.total > 2  # progress of the 1st call arrived through the queue
        assert "1/" in widget.status.text()
        assert widget.busy and not widget.run_button.isEnabled()
        assert not widget.cancel_button.isHidden()
        assert hold.reached.is_set() and hold.calls == 2  # still held
        added = viewer.add_image(np.zeros((4, 5, 6), np.float32), name="added meanwhile")
        assert widget.image_combo.findData(added) >= 0
    finally:
        hold.release()
        timer.stop()
    with qtbot.waitSignal(widget.segmented, timeout=30_000) as blocker:
        pass
    assert blocker.args[0].data.shape == image.data.shape
    assert not _bar_open(job.bar) and job.bar is None


class HoldLoading:
    """Wraps the widget's model cache: loading a model waits until :meth:`release`
    (the real model still loads; only the moment is held)."""

    def __init__(self, widget, monkeypatch) -> None:
        self.reached = threading.Event()
        self._release = threading.Event()
        cache = widget.segmenter_cache
        self.real_get = real_get = cache.get  # (loads without waiting)

        def held_get(settings):
            if not cache.holds(settings):
                self.reached.set()
                self._release.wait(60)
            return real_get(settings)

        monkeypatch.setattr(cache, "get", held_get)

    def release(self) -> None:
        self._release.set()


def test_the_dock_shows_loading_then_the_windows_with_cancel(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """The run's progress and Cancel are in the Segment dock itself (napari's activity
    dock is closed by default): busy while the model loads, then network calls."""
    viewer = make_napari_viewer(show=True)
    _, image = _scan(viewer, tmp_path)
    widget = dock(viewer, "Segment")
    _tiny(widget, tmp_path)
    bar = widget.progress_bar
    assert bar.isHidden()
    loading = HoldLoading(widget, monkeypatch)
    widget.run_button.click()
    qtbot.waitUntil(loading.reached.is_set, timeout=10_000)
    job = widget._slot.job
    phases: list[str] = []
    job.phases.changed.connect(phases.append)
    # loading: a busy bar (no steps known) and Cancel, in sight in the dock
    qtbot.waitUntil(lambda: "Loading model" in widget.status.text(), timeout=10_000)
    assert bar.isVisible() and bar.maximum() == 0 and "Loading model" in bar.format()
    assert widget.cancel_button.isVisible() and not widget.run_button.isEnabled()

    segmenter = loading.real_get(widget.settings())  # the run will find it loaded
    hold = HoldNetwork(segmenter.network, at=2)
    loading.release()
    try:
        qtbot.waitUntil(hold.reached.is_set, timeout=30_000)
        # the windows: the bar counts network calls
        qtbot.waitUntil(lambda: bar.value() >= 1, timeout=10_000)
        assert bar.maximum() == job.bar.total > 2 and bar.isVisible()
        assert f"{bar.value()}/{bar.maximum()} network calls" in widget.status.text()
        assert phases == ["preparing"]
    finally:
        hold.release()
    with qtbot.waitSignal(widget.segmented, timeout=30_000):
        pass
    assert bar.isHidden() and widget.cancel_button.isHidden()


def test_cancel_in_the_dock_while_the_model_loads(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    viewer = make_napari_viewer(show=True)
    _scan(viewer, tmp_path)
    widget = dock(viewer, "Segment")
    _tiny(widget, tmp_path)
    n_layers = len(viewer.layers)
    loading = HoldLoading(widget, monkeypatch)
    widget.run_button.click()
    qtbot.waitUntil(loading.reached.is_set, timeout=10_000)
    qtbot.waitUntil(lambda: "Loading model" in widget.status.text(), timeout=10_000)
    with (
        qtbot.assertNotEmitted(widget.segmented),
        qtbot.waitSignal(widget.cancelled, timeout=30_000),
    ):
        widget.cancel_button.click()
        assert widget.progress_bar.maximum() == 0 and "Cancelling" in widget.status.text()
        loading.release()
    assert len(viewer.layers) == n_layers
    assert widget.progress_bar.isHidden() and widget.run_button.isEnabled()
    assert "Cancelled" in widget.status.text()


def _cancel_button(viewer, widget, how: str):
    """The widget's Cancel, or the Cancel of the run's bar in napari's activity dock."""
    from napari._qt.widgets.qt_progress_bar import QtLabeledProgressBar

    if how == "widget":
        return widget.cancel_button
    bars = viewer.window._qt_window.findChildren(QtLabeledProgressBar)
    (bar,) = [b for b in bars if b.progress is widget._slot.job.bar]
    assert not bar.cancel_button.isHidden()
    return bar.cancel_button


@pytest.mark.parametrize("how", ["widget", "activity dock"])
def test_cancel_leaves_no_half_made_layer_then_run_again(
    make_napari_viewer, qtbot, tmp_path, notes, how
):
    from napari.layers import Layer

    from napari_medseg._napari.layers import labels_like

    viewer = make_napari_viewer()
    path, image = _scan(viewer, tmp_path)
    target = viewer.add_layer(Layer.create(*labels_like(image, name="drawn")))
    target.data[10:20, 5:15, 8:30] = 7  # what the user made
    before = target.data.copy()
    widget = dock(viewer, "Segment")
    spec = _tiny(widget, tmp_path)
    widget.output_combo.set_layer(target)
    n_layers = len(viewer.layers)

    hold = _held_run(widget, qtbot, at=2)
    job = widget._slot.job
    bar = job.bar
    assert _bar_open(bar)
    with (
        qtbot.assertNotEmitted(widget.segmented),
        qtbot.waitSignal(job.worker.finished, timeout=30_000),
        qtbot.waitSignal(widget.cancelled, timeout=30_000),
    ):
        _cancel_button(viewer, widget, how).click()
        hold.release()
    assert len(viewer.layers) == n_layers
    np.testing.assert_array_equal(target.data, before)
    assert not _bar_open(bar) and job.bar is None
    assert not widget.busy and widget.run_button.isEnabled() and widget.cancel_button.isHidden()
    assert "Cancelled" in widget.status.text()
    assert not any("cancel" in n.lower() for n in notes)  # not reported as an error

    # Run again: the chosen layer is replaced by the model's labels, undoably
    with qtbot.waitSignal(widget.segmented, timeout=30_000) as blocker:
        widget.run_button.click()
    assert blocker.args[0] is target and len(viewer.layers) == n_layers
    volume = read_scan(path)
    reference = Segmenter(str(spec), device="cpu").predict(volume).labels
    shown = display_geometry(volume.affine, volume.shape).to_display(reference)
    assert len(np.unique(shown)) == 3
    np.testing.assert_array_equal(target.data, shown)
    assert list(target.features["name"]) == ["background", "class1", "class2"]
    assert target.metadata["medseg"]["model"]["name"] == "tiny"
    np.testing.assert_allclose(
        target.metadata["medseg"]["source_affine"], image.metadata["medseg"]["source_affine"]
    )
    assert is_modified(target)
    target.undo()
    np.testing.assert_array_equal(target.data, before)


def test_replacing_a_layer_on_another_grid_is_refused(make_napari_viewer, qtbot, tmp_path, notes):
    viewer = make_napari_viewer()
    _, image = _scan(viewer, tmp_path)
    # same array shape, other place: a label map written with nibabel, opened by the plugin
    shifted = AFFINE.copy()
    shifted[:3, 3] += (5.0, 0.0, 0.0)
    labels_file = save_nifti(
        tmp_path / "other_seg.nii.gz",
        np.zeros(SHAPE, np.uint8) + (np.arange(40) > 20)[:, None, None],
        shifted,
    )
    (other,) = viewer.open(str(labels_file), plugin="napari-medseg")
    assert other._type_string == "labels" and other.data.shape == image.data.shape
    small = viewer.add_labels(np.zeros((10, 12, 14), np.uint8), name="small")
    widget = dock(viewer, "Segment")
    _tiny(widget, tmp_path)
    widget.image_combo.set_layer(image)
    for layer in (other, small):
        before = layer.data.copy()
        widget.output_combo.set_layer(layer)
        with qtbot.waitSignal(widget.failed, timeout=5_000) as blocker:
            widget.run_button.click()
        assert not widget.busy
        message = blocker.args[0]
        assert f"labels layer {layer.name!r}" in message and "not on the voxel grid" in message
        assert repr(image.name) in message
        assert any(message in n for n in notes)
        np.testing.assert_array_equal(layer.data, before)
    assert widget.segmenter_cache.segmenter is None  # refused before any model loaded


def test_untrusted_bundle_is_refused_until_trusted(make_napari_viewer, qtbot, tmp_path, notes):
    from bundle_factory import write_ct_phantom, write_spleen_like

    bundle = write_spleen_like(tmp_path / "bundle")
    scan = write_ct_phantom(tmp_path / "ct.nii.gz", shape=(48, 44, 30))
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(scan), plugin="napari-medseg")
    widget = dock(viewer, "Segment")
    widget.set_model_path(bundle)
    assert widget.model_choice.needs_trust
    assert not widget.trust_check.isHidden() and not widget.trust_check.isChecked()

    with qtbot.waitSignal(widget.failed, timeout=5_000) as blocker:
        widget.run_button.click()
    message = blocker.args[0]
    assert str(bundle) in message and "Trust this bundle" in message
    assert any(message in n for n in notes)
    assert not widget.busy and widget.segmenter_cache.segmenter is None
    assert widget.settings().trust_bundle is False

    # trust is given per bundle: choosing another model and coming back clears it
    widget.trust_check.setChecked(True)
    widget.set_model(DEFAULT_MODEL)
    assert widget.trust_check.isHidden()
    widget.set_model_path(bundle)
    assert not widget.trust_check.isChecked()

    widget.trust_check.setChecked(True)
    assert widget.settings().trust_bundle is True
    with qtbot.waitSignal(widget.segmented, timeout=TIMEOUT) as blocker:
        widget.run_button.click()
    layer = blocker.args[0]
    assert layer.data.shape == image.data.shape
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    channel_def = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert list(layer.features["name"]) == [channel_def[k] for k in sorted(channel_def, key=int)]


def test_model_errors_become_notifications(make_napari_viewer, qtbot, tmp_path, notes):
    viewer = make_napari_viewer()
    _, image = _scan(viewer, tmp_path)
    _, elsewhere = _scan(viewer, tmp_path, name="elsewhere", shape=(30, 36, 32), seed=1)
    widget = dock(viewer, "Segment")
    widget.image_combo.set_layer(image)

    # a TorchScript file without its JSON spec: refused before running
    lonely = tmp_path / "lonely.ts"
    lonely.write_bytes(b"not a network")
    widget.set_model_path(lonely)
    assert "lonely.json not found" in widget.model_info.text()
    with qtbot.waitSignal(widget.failed, timeout=5_000):
        widget.run_button.click()
    assert any("lonely.json not found" in n for n in notes)

    # a two-channel model: a second layer combo; a channel on another grid fails in the worker
    _tiny(widget, tmp_path, in_channels=2, channel_names=("T1", "T2"))
    assert len(widget.channel_combos) == 1
    assert widget.channel_form.labelForField(widget.channel_combos[0]).text() == "Channel 2 (T2)"
    widget.channel_combos[0].set_layer(elsewhere)
    n_layers = len(viewer.layers)
    with qtbot.waitSignal(widget.failed, timeout=30_000) as blocker:
        widget.run_button.click()
    assert "grid" in blocker.args[0]
    assert any(blocker.args[0] in n for n in notes)
    assert len(viewer.layers) == n_layers and not widget.busy and widget.run_button.isEnabled()
    # the same model with both channels on one grid runs
    widget.channel_combos[0].set_layer(image)
    with qtbot.waitSignal(widget.segmented, timeout=30_000) as blocker:
        widget.run_button.click()
    assert blocker.args[0].data.shape == image.data.shape


def test_closing_the_viewer_mid_run(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    _scan(viewer, tmp_path)
    widget = dock(viewer, "Segment")
    _tiny(widget, tmp_path)
    inserted = []
    viewer.layers.events.inserted.connect(lambda event: inserted.append(event.value))
    with qtbot.capture_exceptions() as exceptions:
        hold = _held_run(widget, qtbot, at=2)
        job = widget._slot.job
        bar = job.bar
        with qtbot.waitSignal(job.worker.finished, timeout=30_000):
            viewer.close()
            hold.release()
        qtbot.waitUntil(lambda: job.bar is None, timeout=10_000)
    assert exceptions == []
    assert job.cancel.is_set()  # viewer.close() cancelled the run
    assert hold.calls == 2  # it stopped before the next window batch
    assert inserted == []  # nothing added to the closed viewer
    assert not _bar_open(bar)


@pytest.mark.parametrize("name", ["Bundle folder...", "TorchScript file..."])
def test_dialog_entries_keep_the_model_when_cancelled(make_napari_viewer, monkeypatch, name):
    from qtpy.QtWidgets import QFileDialog

    viewer = make_napari_viewer()
    widget = dock(viewer, "Segment")
    asked = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: asked.append(a) or "")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: asked.append(a) or ("", ""))
    index = widget.model_combo.findText(name)
    widget.model_combo.setCurrentIndex(index)
    widget.model_combo.activated.emit(index)
    assert len(asked) == 1
    assert widget.model_combo.currentData() == DEFAULT_MODEL
    assert widget.model_choice.ref == DEFAULT_MODEL


def test_options_reach_the_segmenter(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    _scan(viewer, tmp_path)
    widget = dock(viewer, "Segment")
    _tiny(widget, tmp_path, overlap=0.25, sw_batch_size=2)
    assert (widget.overlap_spin.value(), widget.batch_spin.value()) == (0.25, 2)  # the model's
    with qtbot.waitSignal(widget.segmented, timeout=30_000) as blocker:
        widget.run_button.click()
    first = widget.segmenter_cache.segmenter
    settings = blocker.args[0].metadata["medseg"]["model"]["settings"]
    assert (settings["overlap"], settings["sw_batch_size"], settings["tta"]) == (0.25, 2, False)

    widget.overlap_spin.setValue(0.5)
    widget.batch_spin.setValue(3)
    widget.tta_check.setChecked(True)
    widget.device_combo.setCurrentText("cpu")
    with qtbot.waitSignal(widget.segmented, timeout=30_000) as blocker:
        widget.run_button.click()
    assert widget.segmenter_cache.segmenter is not first  # other settings: loaded again
    settings = blocker.args[0].metadata["medseg"]["model"]["settings"]
    assert (settings["overlap"], settings["sw_batch_size"], settings["tta"]) == (0.5, 3, True)
    assert settings["device"] == "cpu" and settings["amp"] is False  # float32 on this CPU
    assert settings["precision"] == "float32"
    # the status line says which precision ran, and why
    assert f"float32 ({settings['precision_reason']})" in widget.status.text()
    assert len(settings["tta_flips"]) == 4  # identity + a flip along each axis


def test_undoing_a_replacement_gives_the_layer_back_its_classes(
    make_napari_viewer, qtbot, tmp_path
):
    # the user's contour, with its own class name, replaced by a model run and undone:
    # the voxels AND the names, colours and model entry must be the user's again
    from napari.layers import Layer

    from napari_medseg._napari.label_classes import layer_classes, layer_kwargs_for_classes
    from napari_medseg._napari.layers import labels_like

    viewer = make_napari_viewer()
    _, image = _scan(viewer, tmp_path)
    data, kwargs, kind = labels_like(image, name="drawn")
    kwargs.update(layer_kwargs_for_classes({7: ("tumour", "#00ff00")}))
    target = viewer.add_layer(Layer.create(data, kwargs, kind))
    target.data[10:20, 5:15, 8:30] = 7
    before = target.data.copy()
    mine = layer_classes(target)
    widget = dock(viewer, "Segment")
    _tiny(widget, tmp_path)
    widget.output_combo.set_layer(target)
    with qtbot.waitSignal(widget.segmented, timeout=30_000):
        widget.run_button.click()
    model_classes = layer_classes(target)
    assert model_classes != mine and target.metadata["medseg"]["model"]["name"] == "tiny"

    target.undo()
    np.testing.assert_array_equal(target.data, before)
    assert layer_classes(target) == mine
    np.testing.assert_allclose(target.get_color(7), (0.0, 1.0, 0.0, 1.0))
    assert "model" not in target.metadata["medseg"]  # hand-drawn: no model made these

    target.redo()
    assert layer_classes(target) == model_classes
    assert target.metadata["medseg"]["model"]["name"] == "tiny"
    target.undo()
    assert layer_classes(target) == mine
    target.data_setitem((np.array([0]), np.array([0]), np.array([0])), 7)  # a new edit
    target.refresh()
    assert layer_classes(target) == mine and "model" not in target.metadata["medseg"]


def test_a_replacement_undo_cannot_restore_is_said_so(make_napari_viewer, qtbot, tmp_path, notes):
    # an int8 layer cannot take the model's uint8 labels as a napari history item: the
    # data is replaced, and the user must be told that undo will not bring it back
    from napari.layers import Layer

    from napari_medseg._napari.layers import labels_like

    viewer = make_napari_viewer()
    _, image = _scan(viewer, tmp_path)
    target = viewer.add_layer(Layer.create(*labels_like(image, name="int8", dtype=np.int8)))
    target.data[10:20, 5:15, 8:30] = 3
    widget = dock(viewer, "Segment")
    _tiny(widget, tmp_path)
    widget.output_combo.set_layer(target)
    with qtbot.waitSignal(widget.segmented, timeout=30_000) as blocker:
        widget.run_button.click()
    assert blocker.args[0] is target and not (np.asarray(target.data) == 3).any()
    assert "added" not in widget.status.text()
    assert "cannot be restored" in widget.status.text()
    assert any("'int8'" in n and "undo cannot restore" in n for n in notes)


def test_model_licence_is_shown_and_non_commercial_weights_flagged(
    make_napari_viewer, qtbot, tmp_path, notes
):
    viewer = make_napari_viewer()
    _, image = _scan(viewer, tmp_path)
    widget = dock(viewer, "Segment")
    widget.image_combo.set_layer(image)
    combo = widget.model_combo
    combo.setCurrentIndex(next(i for i in range(combo.count()) if combo.itemData(i) == "lungs-ct"))
    text = widget.model_info.text()
    assert "Licence: MIT." in text and "Use: Research lung masks" in text
    assert "NOT for commercial use" not in text

    _tiny(widget, tmp_path, license="CC-BY-NC-4.0", intended_use="testing only")
    assert "Licence: CC-BY-NC-4.0 - NOT for commercial use. Use: testing only" in (
        widget.model_info.text()
    )
    with qtbot.waitSignal(widget.segmented, timeout=TIMEOUT) as blocker:
        widget.run_button.click()
    assert any("does not allow commercial use" in n for n in notes)
    settings = blocker.args[0].metadata["medseg"]["model"]["settings"]
    assert settings["license"] == "CC-BY-NC-4.0"


def test_a_replacement_keeps_locked_labels(make_napari_viewer, qtbot, tmp_path):
    # the user's checked contour, locked, survives a model run into the same layer:
    # its voxels stay, no voxel joins it, its name and colour stay
    from napari.layers import Layer

    from napari_medseg._napari.label_classes import layer_classes, layer_kwargs_for_classes
    from napari_medseg._napari.label_locks import set_locked
    from napari_medseg._napari.layers import labels_like

    viewer = make_napari_viewer()
    _, image = _scan(viewer, tmp_path)
    data, kwargs, kind = labels_like(image, name="checked")
    kwargs.update(layer_kwargs_for_classes({2: ("tumour (checked)", "#00ff00")}))
    target = viewer.add_layer(Layer.create(data, kwargs, kind))
    target.data[10:20, 5:15, 8:30] = 2
    before = np.array(target.data, copy=True)
    set_locked(target, [2])
    widget = dock(viewer, "Segment")
    _tiny(widget, tmp_path)  # its classes: background, class1, class2
    widget.output_combo.set_layer(target)
    with qtbot.waitSignal(widget.segmented, timeout=30_000):
        widget.run_button.click()
    after = np.asarray(target.data)
    np.testing.assert_array_equal(after == 2, before == 2)  # not one voxel more or less
    assert (after == 1).any()  # the model's other class did land
    assert layer_classes(target)[2] == ("tumour (checked)", "#00ff00")
