"""Layer names: a Segment result is named by its model, and the unsaved marker ``" *"``
and napari's ``" [n]"`` never pile up over runs, edits and saves (real viewer, real
Segment and Save widgets, a tiny real MONAI UNet)."""

from __future__ import annotations

import re

import numpy as np
from _helpers import dock, save_nifti
from model_factory import random_volume, write_unet_model
from qtpy.QtWidgets import QApplication

from napari_medseg._napari.layers import MEDSEG_KEY, labels_like
from napari_medseg.geometry import DisplayGeometry

TIMEOUT = 120_000  # ms
SHAPE = (40, 36, 32)
AFFINE = np.diag([0.9, 1.1, 2.0, 1.0])


def _paint(layer, value: int = 1) -> None:
    """One undoable brush-like edit of a source voxel (napari's ``data_setitem``); a
    paint that changes no voxel is no edit, so ``value`` must differ from the voxel's."""
    geometry = DisplayGeometry.from_dict(layer.metadata[MEDSEG_KEY])
    marker = np.zeros(geometry.source_shape, dtype=bool)
    marker[3, 4, 5] = True
    layer.data_setitem(np.nonzero(geometry.to_display(marker)), value)


def _save(save, qtbot, layer, path) -> None:
    save.layer_combo.set_layer(layer)
    save.nifti_edit.setText(str(path))
    with qtbot.waitSignal(save.saved, timeout=TIMEOUT):
        save.save_button.click()


def _names(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers if layer._type_string == "labels"]


def test_segment_results_are_named_by_the_model(make_napari_viewer, qtbot, tmp_path):
    scan = save_nifti(tmp_path / "chest_ct.nii.gz", random_volume(SHAPE, 0), AFFINE)
    viewer = make_napari_viewer()
    viewer.open(str(scan), plugin="napari-medseg")
    segment, save = dock(viewer, "Segment"), dock(viewer, "Save labels")
    segment.set_model_path(write_unet_model(tmp_path / "model", roi_size=(16, 16, 16)))

    def run():
        with qtbot.waitSignal(segment.segmented, timeout=TIMEOUT) as blocker:
            segment.run_button.click()
        return blocker.args[0]

    first = run()
    assert first.name == "tiny labels *"  # not "chest_ct tiny *": the scan is named once
    save.layer_combo.set_layer(first)
    assert save.nifti_edit.text() == str(tmp_path / "chest_ct_tiny_labels.nii.gz")
    second = run()
    assert second.name == "tiny labels [1] *"  # napari's number before the marker
    _save(save, qtbot, first, tmp_path / "first.nii.gz")
    assert first.name == "tiny labels"
    third = run()
    assert third.name == "tiny labels [2] *"
    _save(save, qtbot, second, tmp_path / "second.nii.gz")
    _paint(second, value=7)
    _paint(first, value=7)
    assert sorted(_names(viewer)) == ["tiny labels *", "tiny labels [1] *", "tiny labels [2] *"]


def test_marker_and_numbers_do_not_pile_up(make_napari_viewer, qtbot, tmp_path):
    """Two layers named alike, edited and saved in turns: one marker, one number at most."""
    from napari.layers import Layer

    scan = save_nifti(tmp_path / "ct.nii.gz", random_volume(SHAPE, 0), AFFINE)
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(scan), plugin="napari-medseg")
    save = dock(viewer, "Save labels")
    a = viewer.add_layer(Layer.create(*labels_like(image, name="liver")))
    _paint(a)
    assert a.name == "liver *"
    b = viewer.add_layer(Layer.create(*labels_like(image, name="liver")))
    assert b.name == "liver"  # free while the first is marked
    _paint(b)
    assert b.name == "liver [1] *"  # not "liver * [1]"
    for round_ in range(3):
        _save(save, qtbot, b, tmp_path / f"b{round_}.nii.gz")
        _paint(a, value=10 + round_)  # a value the voxel does not hold yet: an edit
        _save(save, qtbot, a, tmp_path / f"a{round_}.nii.gz")
        _paint(b, value=20 + round_)
        _paint(a, value=30 + round_)
        QApplication.processEvents()
        for name in _names(viewer):
            assert re.fullmatch(r"liver( \[\d+\])?( \*)?", name), name
    assert sorted(_names(viewer)) == ["liver *", "liver [1] *"]
