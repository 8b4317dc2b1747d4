"""Ctrl+Z after a Label tool or a Segment replace undoes that edit, whatever layer was selected.

napari's Ctrl+Z acts on the selected (active) layer. The tools edit the layer chosen
in their own combo, so with the scan selected (the usual case: its contrast was just
set) Ctrl+Z used to do nothing to the edit the status line said it would undo.
The keys are pressed on napari's canvas, as a user presses them.
"""

from __future__ import annotations

import numpy as np
from _helpers import dock, open_sample, save_nifti

WAIT_MS = 60_000


def _press_ctrl_z(viewer, qtbot) -> None:
    from qtpy.QtCore import Qt

    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)


def test_ctrl_z_after_a_label_tool_undoes_it_with_the_scan_selected(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    image, labels = open_sample(viewer, "chest_ct")
    tools = dock(viewer, "Label tools")
    assert tools.labels_combo.layer() is labels
    viewer.layers.selection.active = image  # e.g. after setting the scan's contrast
    before = np.asarray(labels.data).copy()
    tools.margin_mm.setValue(2.0)

    with qtbot.waitSignal(tools.tool_finished, timeout=WAIT_MS) as done:
        tools.margin_button.click()
    assert done.args[1] > 0 and "Ctrl+Z undoes it" in tools.status.text()
    assert not np.array_equal(labels.data, before)

    _press_ctrl_z(viewer, qtbot)
    qtbot.waitUntil(lambda: np.array_equal(labels.data, before), timeout=5_000)


def test_ctrl_z_after_a_segment_replace_restores_the_layer(make_napari_viewer, qtbot, tmp_path):
    from model_factory import random_volume, write_unet_model
    from napari.layers import Layer

    from napari_medseg._napari.layers import labels_like

    viewer = make_napari_viewer(show=True)
    affine = np.diag([-0.9, -1.1, 2.0, 1.0])
    path = save_nifti(tmp_path / "scan.nii.gz", random_volume((40, 36, 32), 0), affine)
    (image,) = viewer.open(str(path), plugin="napari-medseg")
    target = viewer.add_layer(Layer.create(*labels_like(image, name="drawn")))
    target.data[10:20, 5:15, 8:30] = 7  # what the user drew
    before = np.asarray(target.data).copy()
    widget = dock(viewer, "Segment")
    widget.set_model_path(write_unet_model(tmp_path / "model", roi_size=(16, 16, 16)))
    widget.output_combo.set_layer(target)
    viewer.layers.selection.active = image

    with qtbot.waitSignal(widget.segmented, timeout=WAIT_MS):
        widget.run_button.click()
    assert "Ctrl+Z restores it" in widget.status.text()
    assert not np.array_equal(target.data, before)

    _press_ctrl_z(viewer, qtbot)
    qtbot.waitUntil(lambda: np.array_equal(target.data, before), timeout=5_000)
