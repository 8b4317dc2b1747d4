"""The Train dock on a real viewer: the user's loop from a corrected layer to a new model
chosen in Segment, and Cancel then Continue."""

from __future__ import annotations

import json
from pathlib import Path

from _helpers import dock
from qtpy.QtCore import Qt
from training_factory import shapes_case, write_parent, write_saved, write_spleen_pairs

from napari_medseg._napari.label_classes import set_label_class

TIMEOUT = 180_000  # ms


def _viewer_with_library(make_napari_viewer, tmp_path, monkeypatch):
    """A shown viewer, with the model library (``MEDSEG_MODELS_DIR``) in ``tmp_path``."""
    library = tmp_path / "library"
    monkeypatch.setenv("MEDSEG_MODELS_DIR", str(library))
    return make_napari_viewer(show=True), library


def _saved_layer_pair(viewer, qtbot, tmp_path) -> Path:
    """Open a scan and labels drawn for it, name the classes as the model does, save
    them with the Save widget: the labels file the Train dock should offer."""
    from training_factory import AFFINE

    from napari_medseg.io.nifti import write_nifti

    folder = tmp_path / "viewer"
    folder.mkdir()
    image, labels = shapes_case(99)
    scan = folder / "patient.nii.gz"
    write_nifti(scan, image, AFFINE)
    drawn_file = tmp_path / "drawn.nii.gz"
    write_nifti(drawn_file, labels, AFFINE, kind="labels")
    viewer.open(str(scan), plugin="napari-medseg")
    (drawn,) = viewer.open(str(drawn_file), plugin="napari-medseg", layer_type="labels")
    for value, name in ((1, "class1"), (2, "class2")):
        set_label_class(drawn, value, name=name)
    save = dock(viewer, "Save labels")
    save.layer_combo.set_layer(drawn)
    target = folder / "patient_fixed.nii.gz"
    save.nifti_edit.setText(str(target))
    with qtbot.waitSignal(save.saved, timeout=TIMEOUT):
        save.save_button.click()
    return target


def test_fine_tune_from_the_viewer_and_segment_with_the_new_model(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, notes
):
    viewer, library = _viewer_with_library(make_napari_viewer, tmp_path, monkeypatch)
    segment = dock(viewer, "Segment")
    train = dock(viewer, "Train")
    assert train.model_combo.findData("phantom-abdomen-3d") >= 0  # trainable defaults
    assert train.model_combo.findData("brain-mask") < 0  # deepbet's own networks: not

    saved = _saved_layer_pair(viewer, qtbot, tmp_path)
    offered = [_pair(train, i).labels for i in range(train.pairs_list.count())]
    assert offered == [str(saved)]  # the layer saved in this viewer
    assert not train.start_button.isEnabled()  # one pair cannot be split

    write_saved(tmp_path / "more", range(5))
    train.add_data(tmp_path / "more")
    assert train.pairs_list.count() == 6 and train.start_button.isEnabled()
    train.pairs_list.item(1).setCheckState(Qt.CheckState.Unchecked)  # unticked: left out of the run
    train.set_model_path(write_parent(tmp_path / "parent"))
    train.epochs_spin.setValue(3)
    train.lr_spin.setValue(0.03)
    train.val_spin.setValue(0.4)
    train.name_edit.setText("tiny-mine")
    with qtbot.waitSignal(train.finished, timeout=TIMEOUT) as blocker:
        train.start_button.click()
        assert train.busy and train.cancel_button.isEnabled()
    outcome = blocker.args[0]
    assert outcome.published, outcome.reason
    assert train.chart.epochs == [0, 1, 2, 3]
    assert train.chart.dice[-1] >= train.chart.parent_dice
    assert "Published tiny-mine" in train.status.text()
    log = json.loads((library / "tiny-mine" / "training.json").read_text())
    used = {Path(row["labels"]).name for row in log["data"]}
    assert len(used) == 5 and Path(_pair(train, 1).labels).name not in used
    assert saved.name in used

    # the Train dock lists the new model too (to fine-tune it again), and so does the
    # Segment widget, at once; it runs it
    assert train.model_combo.findData("tiny-mine") >= 0
    assert segment.model_combo.findData("tiny-mine") >= 0
    segment.set_model("tiny-mine")
    segment.image_combo.set_layer(viewer.layers["patient"])
    with qtbot.waitSignal(segment.segmented, timeout=TIMEOUT) as done:
        segment.run()
    assert done.args[0].metadata["medseg"]["model"]["name"] == "tiny-mine"
    assert any("published tiny-mine" in note for note in notes)


def test_cancel_keeps_the_run_and_continue_finishes_it(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer, library = _viewer_with_library(make_napari_viewer, tmp_path, monkeypatch)
    train = dock(viewer, "Train")
    write_saved(tmp_path / "data", range(4))
    train.add_data(tmp_path / "data")
    train.set_model_path(write_parent(tmp_path / "parent"))
    train.epochs_spin.setValue(4)
    train.lr_spin.setValue(0.03)
    train.val_spin.setValue(0.5)
    train.name_edit.setText("tiny-later")

    train.chart.add = _cancel_after_first(train, train.chart.add)
    with qtbot.waitSignal(train.finished, timeout=TIMEOUT) as blocker:
        train.start()
    first = blocker.args[0]
    assert first.cancelled and not first.published
    assert "cancelled after epoch 1" in train.status.text().lower()
    assert train.start_button.isEnabled() and not train.cancel_button.isEnabled()
    assert not (library / "tiny-later").exists()

    train.resume_check.setChecked(True)
    with qtbot.waitSignal(train.finished, timeout=TIMEOUT) as blocker:
        train.start()
    resumed = blocker.args[0]
    assert resumed.name == "tiny-later" and not resumed.cancelled
    assert [r["epoch"] for r in resumed.history] == [0, 1, 2, 3, 4]
    assert train.chart.epochs == [2, 3, 4]  # the continued epochs


def test_a_held_out_folder_checks_the_new_model_and_every_ticked_pair_trains(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, notes
):
    viewer, _ = _viewer_with_library(make_napari_viewer, tmp_path, monkeypatch)
    train = dock(viewer, "Train")
    write_saved(tmp_path / "train", range(2))
    held = write_saved(tmp_path / "held", range(10, 13))
    train.add_data(tmp_path / "train")
    train.pairs_list.item(1).setCheckState(Qt.CheckState.Unchecked)
    assert not train.start_button.isEnabled()  # one ticked pair cannot be split

    (tmp_path / "empty").mkdir()
    train.set_val_data(tmp_path / "empty")  # nothing usable: refused, by name
    assert train.val_data == "" and any("empty" in note for note in notes)
    train.set_val_data(tmp_path / "held")
    assert train.val_data == str(tmp_path / "held")
    assert "3 pairs" in train.val_data_label.text()
    assert train.start_button.isEnabled() and not train.val_spin.isEnabled()

    train.set_model_path(write_parent(tmp_path / "parent"))
    train.epochs_spin.setValue(1)
    train.name_edit.setText("tiny-held")
    with qtbot.waitSignal(train.finished, timeout=TIMEOUT) as blocker:
        train.start_button.click()
    outcome = blocker.args[0]
    rows = json.loads((Path(outcome.run_dir) / "log.json").read_text())["data"]
    by_split = {split: {Path(r["labels"]).name for r in rows if r["split"] == split}
                for split in ("train", "validation")}  # fmt: skip
    assert by_split["train"] == {"case0_labels.nii.gz"}
    assert by_split["validation"] == {p.name for p in held}
    assert outcome.history and outcome.history[0]["epoch"] == 0

    train.set_val_data("")  # back to a share of the ticked pairs
    assert train.val_data == "" and train.val_spin.isEnabled()
    assert not train.start_button.isEnabled()


def test_a_bundle_folder_trains_once_trusted(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """A MONAI bundle from outside the library: its configs run code, so the dock asks
    for trust first (as Segment does), then fine-tunes it through its own transforms."""
    from bundle_factory import write_spleen_like

    viewer, _ = _viewer_with_library(make_napari_viewer, tmp_path, monkeypatch)
    train = dock(viewer, "Train")
    assert train.trust_check.isHidden()  # a default model runs no bundle code
    parent = write_spleen_like(tmp_path / "bundles", fit_steps=0, roi=(32, 32, 32))
    write_spleen_pairs(tmp_path / "data", [0, 1, 2])
    train.add_data(tmp_path / "data")
    train.set_model_path(parent)
    assert train.model_ref == str(parent) and not train.trust_check.isHidden()
    train.epochs_spin.setValue(1)
    train.val_spin.setValue(0.34)
    with qtbot.waitSignal(train.failed, timeout=TIMEOUT) as refused:
        train.start_button.click()
    assert "Trust this bundle" in refused.args[0] and not train.busy

    train.trust_check.setChecked(True)
    with qtbot.waitSignal(train.finished, timeout=TIMEOUT) as blocker:
        train.start_button.click()
    outcome = blocker.args[0]
    log = json.loads((Path(outcome.run_dir) / "log.json").read_text())
    assert [r["epoch"] for r in outcome.history] == [0, 1]
    assert log["parent"]["reference"] == str(parent)
    train.set_model("phantom-abdomen-3d")  # trust is given per bundle
    assert train.trust_check.isHidden() and not train.trust_check.isChecked()


def _pair(train, row: int):
    """The training pair a row of the dock's list stands for."""
    return train.pairs_list.item(row).data(Qt.ItemDataRole.UserRole)


def _cancel_after_first(train, add):
    """Wrap the chart's ``add`` so that the dock's Cancel is pressed once epoch 1 shows."""

    def wrapped(epoch, mean_dice, loss):
        add(epoch, mean_dice, loss)
        if epoch == 1:
            train.cancel_button.click()

    return wrapped
