"""The whole job as a user does it in the window ``medseg demo`` opens.

Segment the sample's lungs with the model the window offers (``lungs-ct``), correct the
result with a label tool,
watch the report follow, save the labels and read the file back: every step through
the widgets the launcher docked, every number checked against the core run
independently on the saved file.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from _helpers import dock

from napari_medseg.io.reader import read_scan
from napari_medseg.measure.report import build_report, label_rows
from napari_medseg.samples import sample_path

LUNGS = 1  # lungs-ct's one class


def _rows_by_label(report) -> dict[int, dict]:
    return {row["label"]: row for row in label_rows(report)}


def test_segment_correct_measure_save(make_napari_viewer, qtbot, tmp_path, artifacts):
    from napari_medseg._napari.launch import docked_widgets, make_viewer

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1600, 1000)
    make_viewer(viewer=viewer)
    docked = {name for name, _ in docked_widgets()}  # (with Segments once it exists)
    assert {"Segment", "Label tools", "Save labels", "Report", "Window presets"} <= docked
    # the launcher's widgets are the ones the manifest gives (not new copies)
    segment, tools = dock(viewer, "Segment"), dock(viewer, "Label tools")
    save, report = dock(viewer, "Save labels"), dock(viewer, "Report")
    presets = dock(viewer, "Window presets")
    # and the linked coronal and sagittal views under the canvas
    from napari_medseg._napari.linked_views import DOCK_NAME

    assert set(viewer.window.dock_widgets) - {f"{name} (napari-medseg)" for name in docked} == {
        DOCK_NAME
    }

    # 1. segment with the model the sample window offers: real anatomy
    assert segment.model_choice.ref == "lungs-ct"
    with qtbot.waitSignal(segment.segmented, timeout=300_000) as blocker:
        segment.run()
    labels = blocker.args[0]
    image = viewer.layers["chest CT"]
    assert labels.data.shape == image.data.shape
    presets.apply_preset("lung")

    # 2. the report measures the new layer (names from the model)
    with qtbot.waitSignal(report.shown, timeout=60_000):
        report.set_layers(labels)
    shown = _rows_by_label(report.report)
    assert shown[LUNGS]["name"] == "lungs"
    assert 2000 < shown[LUNGS]["volume_ml"] < 3500  # two adult lungs, in mL

    # 3. correct: remove the specks under 1 mL outside the lungs, one undo step
    tools.labels_combo.set_layer(labels)
    labels.selected_label = LUNGS
    qtbot.waitUntil(lambda: tools.value == LUNGS, timeout=5_000)
    tools.volume_radio.setChecked(True)
    before = np.array(labels.data, copy=True)
    tools.island_ml.setValue(1.0)
    with qtbot.waitSignal(tools.tool_finished, timeout=60_000):
        tools.remove_islands()
    removed = np.count_nonzero(before == LUNGS) - np.count_nonzero(labels.data == LUNGS)
    assert 0 < removed < 0.01 * np.count_nonzero(before == LUNGS)  # specks, not a lung

    # 4. the report follows the edit (debounced, in a worker)
    expected_voxels = int(np.count_nonzero(labels.data == LUNGS))
    qtbot.waitUntil(
        lambda: _rows_by_label(report.report)[LUNGS]["voxels"] == expected_voxels,
        timeout=60_000,
    )

    # 5. save on the scan's grid; the file reads back with the scan's affine
    out = tmp_path / "chest_ct_segmentation.nii.gz"
    save.layer_combo.set_layer(labels)
    save.nifti_edit.setText(str(out))
    with qtbot.waitSignal(save.saved, timeout=60_000):
        save.save_nifti()
    assert not labels.name.endswith(" *")
    saved = nib.load(out)
    scan = nib.load(sample_path("chest_ct"))
    np.testing.assert_allclose(saved.affine, scan.affine, atol=1e-4)
    saved_labels = read_scan(out)
    # the report on the saved file (as `medseg report` computes it) equals the widget's
    independent = build_report(saved_labels, read_scan(sample_path("chest_ct")))
    widget_rows = _rows_by_label(report.report)
    for value, row in _rows_by_label(independent).items():
        for column in ("voxels", "volume_ml", "intensity_mean", "intensity_median"):
            assert widget_rows[value][column] == row[column], (value, column)

    # what the README shows: the sample segmented, corrected, measured and saved
    segment.parent().raise_()
    viewer.layers.selection.active = labels
    qtbot.waitUntil(lambda: not report.live.busy, timeout=30_000)
    viewer.screenshot(str(artifacts / "workflow.png"), canvas_only=False, flash=False)
