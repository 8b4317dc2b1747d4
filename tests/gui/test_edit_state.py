"""Unsaved edits of a labels layer: the " *" marker, the Save widget's status line."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from _helpers import dock, open_sample

from napari_medseg._napari.edit_state import (
    base_name,
    edit_count,
    is_modified,
    mark_saved,
    saved_path,
    track_edits,
)
from napari_medseg._napari.layers import MEDSEG_KEY
from napari_medseg.geometry import DisplayGeometry

TIMEOUT = 60_000  # ms


def _display_indices(layer, block):
    geometry = DisplayGeometry.from_dict(layer.metadata[MEDSEG_KEY])
    marker = np.zeros(geometry.source_shape, dtype=bool)
    marker[block] = True
    return np.nonzero(geometry.to_display(marker))


def _save(widget, qtbot, path) -> None:
    widget.nifti_edit.setText(str(path))
    widget.replace_check.setChecked(True)
    with qtbot.waitSignal(widget.saved, timeout=TIMEOUT):
        widget.save_button.click()


def test_marker_and_status_follow_paint_save_undo_redo(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    _, tumour = open_sample(viewer, "chest_ct")
    widget = dock(viewer, "Save labels")  # tracks the labels layers it is shown
    assert tumour.name == "tumour" and not is_modified(tumour)
    assert widget.status.text() == "No unsaved edits."

    tumour.brush_size = 3
    centre = np.argwhere(np.asarray(tumour.data) == 1).mean(axis=0).round().astype(int)
    tumour.paint(tuple(centre), 2, refresh=True)  # a brush stroke: one undo step
    assert tumour.name == "tumour *" and is_modified(tumour)
    assert widget.status.text() == "Unsaved edits."
    assert widget.layer_combo.currentText() == "tumour *"  # the list shows it too

    out = tmp_path / "tumour.nii.gz"
    _save(widget, qtbot, out)
    assert tumour.name == "tumour" and not is_modified(tumour)
    assert widget.status.text() == f"Saved to {out}." and saved_path(tumour) == str(out)
    assert 2 in np.asarray(nib.load(out).dataobj)

    tumour.undo()
    assert tumour.name == "tumour *"
    assert widget.status.text() == f"Unsaved edits (last saved to {out})."
    _save(widget, qtbot, out)
    assert 2 not in np.asarray(nib.load(out).dataobj)  # the undone stroke is not saved
    tumour.redo()
    assert tumour.name == "tumour *"
    _save(widget, qtbot, out)
    assert tumour.name == "tumour"

    tumour.refresh()  # redrawing is not an edit
    tumour.selected_label = 5
    assert tumour.name == "tumour"
    tumour.data = np.zeros_like(tumour.data)  # replacing the data is
    assert tumour.name == "tumour *" and widget.status.text().startswith("Unsaved edits")


def test_a_grouped_tool_edit_marks_the_layer_once(make_napari_viewer):
    viewer = make_napari_viewer()
    _, tumour = open_sample(viewer, "chest_ct")
    track_edits(tumour)
    track_edits(tumour)  # idempotent: one watcher
    before = edit_count(tumour)
    with tumour.block_history():  # how the label tools write a change
        tumour.data_setitem(_display_indices(tumour, np.s_[0:3, 0:3, 0:2]), 4)
        tumour.data_setitem(_display_indices(tumour, np.s_[5:7, 0:3, 0:2]), 5)
    assert edit_count(tumour) == before + 1 and tumour.name == "tumour *"
    tumour.undo()
    assert edit_count(tumour) == before + 2 and tumour.name == "tumour *"
    assert not np.isin(np.asarray(tumour.data), [4, 5]).any()


def test_edits_made_while_saving_stay_unsaved(make_napari_viewer, qtbot, tmp_path, notes):
    viewer = make_napari_viewer()
    _, tumour = open_sample(viewer, "chest_ct")
    widget = dock(viewer, "Save labels")
    tumour.data_setitem(_display_indices(tumour, np.s_[10:12, 10:12, 5]), 3)
    out = tmp_path / "during.nii.gz"
    widget.nifti_edit.setText(str(out))
    with qtbot.waitSignal(widget.saved, timeout=TIMEOUT):
        widget.save_button.click()  # the data is copied here; the write runs in a worker
        # painted before the worker's result can reach the main thread
        tumour.data_setitem(_display_indices(tumour, np.s_[20:22, 10:12, 5]), 4)
    saved = np.asarray(nib.load(out).dataobj)
    assert (saved == 3).sum() == 4 and not (saved == 4).any()  # the file: the first edit only
    assert tumour.name == "tumour *" and is_modified(tumour)
    assert saved_path(tumour) == str(out)
    assert widget.status.text() == f"Unsaved edits (last saved to {out})."
    assert any("edited while" in n and "during.nii.gz" in n for n in notes)


def test_a_duplicated_layer_has_its_own_state(make_napari_viewer):
    from napari.layers._layer_actions import _duplicate_layer

    viewer = make_napari_viewer()
    _, tumour = open_sample(viewer, "chest_ct")
    viewer.layers.selection = {tumour}
    _duplicate_layer(viewer.layers)
    copy = viewer.layers[-1]
    assert copy is not tumour and copy.metadata[MEDSEG_KEY] is tumour.metadata[MEDSEG_KEY]
    track_edits(tumour)
    track_edits(copy)
    copy.data_setitem(_display_indices(copy, np.s_[0:2, 0:2, 0]), 2)
    assert is_modified(copy) and copy.name.endswith(" *")
    assert not is_modified(tumour) and tumour.name == "tumour"
    assert mark_saved(copy, "x.nii.gz") and not is_modified(copy)
    assert saved_path(tumour) == "" and base_name(copy) == copy.name


def test_mark_saved_with_a_stale_edit_count(make_napari_viewer):
    viewer = make_napari_viewer()
    _, tumour = open_sample(viewer, "chest_ct")
    track_edits(tumour)
    tumour.data_setitem(_display_indices(tumour, np.s_[0:2, 0:2, 0]), 2)
    taken = edit_count(tumour)
    tumour.data_setitem(_display_indices(tumour, np.s_[4:6, 0:2, 0]), 2)
    assert not mark_saved(tumour, "a.nii.gz", edits=taken)  # the newer edit is not in a.nii.gz
    assert is_modified(tumour) and tumour.name == "tumour *" and saved_path(tumour) == "a.nii.gz"
    assert mark_saved(tumour, "b.nii.gz", edits=edit_count(tumour))
    assert not is_modified(tumour) and tumour.name == "tumour"


def test_the_marker_with_the_suffix_napari_adds_to_a_second_layer_of_one_name(
    make_napari_viewer, qtbot, tmp_path
):
    # two runs of Segment give two layers "CT model"; napari keeps names unique, so
    # marking the second one unsaved names it "CT model [1] *" (the number before the
    # marker, not napari's "CT model * [1]")
    from napari.layers import Layer

    from napari_medseg._napari.edit_state import mark_modified
    from napari_medseg._napari.layers import labels_like

    viewer = make_napari_viewer()
    image, _ = open_sample(viewer, "chest_ct")
    first = viewer.add_layer(Layer.create(*labels_like(image, name="CT model")))
    mark_modified(first)
    second = viewer.add_layer(Layer.create(*labels_like(image, name="CT model")))
    mark_modified(second)
    assert (first.name, second.name) == ("CT model *", "CT model [1] *")
    assert base_name(second) == "CT model [1]"

    widget = dock(viewer, "Save labels")
    widget.layer_combo.set_layer(second)
    assert "*" not in widget.nifti_edit.text()
    _save(widget, qtbot, tmp_path / "second.nii.gz")
    assert second.name == "CT model [1]" and not is_modified(second)  # no marker once saved
    second.data_setitem(_display_indices(second, np.s_[0:2, 0:2, 0]), 2)
    assert second.name == "CT model [1] *" and base_name(second) == "CT model [1]"
    assert first.name == "CT model *" and is_modified(first)
