"""The Report dock widget: the scan is found by geometry (any voxel order), HU values
read alike, and the report's notes reach the user.

Expected numbers come from nibabel arrays (means of voxels picked with numpy).
"""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
from _helpers import dock, open_sample, save_nifti

from napari_medseg.samples import sample_path

WAIT_MS = 30_000


def _ready(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: widget.report is not None and not widget.live.busy, timeout=WAIT_MS)


def _column(widget, title: str) -> list[str]:
    table = widget.table
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    c = headers.index(title)
    return [table.item(r, c).text() for r in range(table.rowCount())]


def test_the_scan_is_found_for_labels_stored_in_another_voxel_order(
    make_napari_viewer, qtbot, tmp_path
):
    """A NIfTI tumour stored R->L, A->P on the DICOM series' grid: the series is its
    image, and the HU statistics are those of the tumour's voxels."""
    image = nib.load(sample_path("chest_ct_tumour"))
    tumour = np.asarray(image.dataobj)
    flip = np.eye(4)
    flip[:2, :2] = -np.eye(2)
    flip[:2, 3] = np.array(tumour.shape[:2]) - 1
    path = save_nifti(
        tmp_path / "tumour_ras.nii.gz",
        np.ascontiguousarray(tumour[::-1, ::-1, :]),
        image.affine @ flip,
    )
    ct = np.asarray(nib.load(sample_path("chest_ct")).dataobj, dtype=np.float64)

    viewer = make_napari_viewer()
    scan, _ = open_sample(viewer, "chest_ct_dicom")
    (labels,) = viewer.open(str(path), plugin="napari-medseg")
    widget = dock(viewer, "Report")
    widget.set_layers(labels)
    assert widget.image_layer is scan
    _ready(qtbot, widget)
    (row,) = [r for r in widget._label_rows if r["label"] == 1]
    assert row["intensity_units"] == "HU"
    np.testing.assert_allclose(row["intensity_mean"], ct[tumour == 1].mean(), rtol=1e-9)
    assert "stores the label map's voxels in another order" in widget.status.text()


def _open(viewer, tmp_path, **files) -> list:
    """Write ``name=(array, affine)`` as ``name.nii.gz`` with nibabel; open each as a layer."""
    layers = []
    for name, (array, affine) in files.items():
        path = save_nifti(tmp_path / f"{name}.nii.gz", array, affine)
        layers += viewer.open(str(path), plugin="napari-medseg")
    return layers


def test_hu_values_have_one_decimal(make_napari_viewer, qtbot, tmp_path):
    """Means of 1.52 and 32.8 HU read 1.5 and 32.8 (not 1.520 beside 32.8)."""
    ct = np.full((20, 20, 6), -1000.0, np.float32)
    ct[2:6, 2:6, 1:4] = 1.52
    ct[10:14, 10:14, 1:4] = 32.8
    ct[15:18, 2:5, 1:3] = 250.0  # soft tissue and bone: a CT range in HU
    labels = np.zeros(ct.shape, np.uint8)
    labels[2:6, 2:6, 1:4] = 1
    labels[10:14, 10:14, 1:4] = 2
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    viewer = make_napari_viewer()
    image, layer = _open(viewer, tmp_path, ct=(ct, affine), ct_labels=(labels, affine))
    widget = dock(viewer, "Report")
    widget.set_layers(layer)
    assert widget.image_layer is image
    _ready(qtbot, widget)
    assert _column(widget, "Mean (HU)") == ["1.5", "32.8"]
    assert _column(widget, "SD (HU)") == ["0.0", "0.0"]
    for text in _column(widget, "Mean (HU)") + _column(widget, "SD (HU)"):
        assert re.fullmatch(r"-?\d+\.\d", text)
    tooltip = widget.table.item(0, 0).toolTip()
    assert "intensity_mean: 1.5\n" in tooltip


def test_report_notes_are_shown(make_napari_viewer, qtbot, tmp_path):
    """A reference that lies elsewhere in space: the report's note says so in the dock."""
    labels = np.zeros((10, 10, 5), np.uint8)
    labels[2:6, 2:6, 1:4] = 1
    here = np.diag([1.0, 1.0, 2.0, 1.0])
    there = here.copy()
    there[:3, 3] = (300.0, 0.0, 0.0)  # 300 mm to the patient's left
    viewer = make_napari_viewer()
    mine, theirs = _open(viewer, tmp_path, mine=(labels, here), theirs=(labels, there))
    widget = dock(viewer, "Report")
    widget.set_layers(mine, image=None, reference=theirs)
    _ready(qtbot, widget)
    assert any("do not overlap in space" in note for note in widget.report.notes)
    for note in widget.report.notes:
        assert note in widget.status.text()
    assert "theirs.nii.gz and mine.nii.gz do not overlap in space" in widget.status.text()


def test_export_never_defaults_into_the_samples_folder(
    make_napari_viewer, qtbot, tmp_path, home, monkeypatch
):
    """The dialog opens on ~/medseg-output for a sample, beside the user's own file later."""
    from qtpy.QtWidgets import QFileDialog

    offered = []

    def dialog(parent, title, path, *args, **kwargs):
        offered.append(path)
        return "", ""  # the user cancels

    monkeypatch.setattr(QFileDialog, "getSaveFileName", dialog)
    viewer = make_napari_viewer()
    _, tumour = open_sample(viewer, "chest_ct")
    widget = dock(viewer, "Report")
    widget.set_layers(tumour)
    _ready(qtbot, widget)
    widget.csv_button.click()
    assert offered == [str(home / "medseg-output" / "tumour_report.csv")]

    save = dock(viewer, "Save labels")
    save.nifti_edit.setText(str(tmp_path / "mine" / "t.nii.gz"))
    with qtbot.waitSignal(save.saved, timeout=WAIT_MS):
        save.save_button.click()
    widget.json_button.click()
    assert offered[-1] == str(tmp_path / "mine" / "tumour_report.json")
