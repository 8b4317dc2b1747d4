"""The Save labels widget on a real viewer, docked through the manifest.

Saved files are checked against independent references: nibabel reads the NIfTI,
the expected voxels are the bundled tumour file plus the voxels painted at known
source positions, and the DICOM SEG is decoded by highdicom alone. Which slice of
the scan a source DICOM image is, is found from its own pixels (pydicom decodes the
image and it is matched with the slices of the NIfTI copy of the same scan), so the
check does not share any geometry code with the writer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from _helpers import dock, open_sample

from napari_medseg._napari.label_classes import set_label_class
from napari_medseg._napari.layers import MEDSEG_KEY, labels_like
from napari_medseg.cli import main as medseg_main
from napari_medseg.geometry import DisplayGeometry
from napari_medseg.io.dicom_seg import read_dicom_seg
from napari_medseg.io.reader import read_scan
from napari_medseg.samples import sample_path

TIMEOUT = 60_000  # ms
#: A block of source voxels (I, J, K slices) painted with label 2 in the tests.
BLOCK = (slice(60, 70), slice(80, 86), slice(20, 23))


def _paint_source_block(layer, block=BLOCK, value: int = 2) -> None:
    """Paint source voxels ``block`` through napari's undoable ``data_setitem``."""
    geometry = DisplayGeometry.from_dict(layer.metadata[MEDSEG_KEY])
    marker = np.zeros(geometry.source_shape, dtype=bool)
    marker[block] = True
    indices = np.nonzero(geometry.to_display(marker))
    layer.data_setitem(indices, value)


def _digest(path: Path) -> str:
    if path.is_dir():
        return "".join(_digest(p) for p in sorted(path.iterdir()))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save(widget, qtbot, button) -> tuple[str, str]:
    with qtbot.waitSignal(widget.saved, timeout=TIMEOUT) as blocker:
        button.click()
    return tuple(blocker.args)


def _refused(widget, qtbot, button) -> str:
    with qtbot.waitSignal(widget.failed, timeout=TIMEOUT) as blocker:
        button.click()
    return blocker.args[0]


def test_nifti_sample_save_reload(make_napari_viewer, qtbot, tmp_path, home):
    viewer = make_napari_viewer()
    _, tumour = open_sample(viewer, "chest_ct")
    widget = dock(viewer, "Save labels")
    assert widget.layer() is tumour
    scan = sample_path("chest_ct")
    # "<scan>_<layer>.nii.gz", in ~/medseg-output (never in the samples' folder); no DICOM
    # SEG nor RTSTRUCT for a NIfTI scan, a Slicer segmentation for any
    output = home / "medseg-output"
    assert widget.nifti_edit.text() == str(output / "chest_ct_tumour.nii.gz")
    assert widget.seg_edit.text() == str(output / "chest_ct_tumour_seg.dcm")
    assert widget.rt_edit.text() == str(output / "chest_ct_tumour_rt.dcm")
    assert widget.nrrd_edit.text() == str(output / "chest_ct_tumour.seg.nrrd")
    assert widget.save_button.isEnabled() and not widget.seg_button.isEnabled()
    assert not widget.rt_button.isEnabled() and widget.nrrd_button.isEnabled()

    set_label_class(tumour, 1, name="lung tumour", color="#ff2010")
    _paint_source_block(tumour)
    expected = np.asarray(nib.load(sample_path("chest_ct_tumour")).dataobj).copy()
    assert expected[BLOCK].max() == 0
    expected[BLOCK] = 2
    out = tmp_path / "edited.nii.gz"
    widget.nifti_edit.setText(str(out))
    assert widget.seg_edit.text() == str(tmp_path / "edited_seg.dcm")  # follows the NIfTI name

    assert _save(widget, qtbot, widget.save_button) == ("nifti", str(out))
    saved = nib.load(out)
    source = nib.load(scan)
    assert saved.shape == source.shape
    np.testing.assert_allclose(saved.affine, source.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), expected)
    reread = read_scan(out)
    np.testing.assert_allclose(reread.affine, read_scan(scan).affine, atol=1e-5)

    # the sidecar `medseg report` reads: the class name given in the layer reaches the report
    sidecar = json.loads((tmp_path / "edited.json").read_text())
    assert sidecar["labels"]["1"] == "lung tumour" and sidecar["colors"]["1"] == [255, 32, 16]
    assert medseg_main(["report", str(out), "-o", str(tmp_path / "report.json")]) == 0
    rows = json.loads((tmp_path / "report.json").read_text())["labels"]
    assert {row["label"]: row["name"] for row in rows} == {1: "lung tumour", 2: "label_2"}
    assert {row["label"]: row["voxels"] for row in rows}[2] == expected[BLOCK].size
    assert not tumour.name.endswith(" *") and widget.status.text() == f"Saved to {out}."


def _slice_of_each_file(files: list[Path], ct: np.ndarray) -> dict[str, int]:
    """SOP Instance UID -> the slice k of ``ct`` (I, J, K) whose voxels the image holds."""
    out = {}
    for path in files:
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        (k,) = [k for k in range(ct.shape[2]) if np.array_equal(hu.T, ct[:, :, k])]
        out[str(ds.SOPInstanceUID)] = k
    return out


def test_dicom_sample_nifti_and_seg(make_napari_viewer, qtbot, tmp_path, artifacts, notes, home):
    from napari.layers import Layer

    viewer = make_napari_viewer()
    image, tumour = open_sample(viewer, "chest_ct_dicom")
    folder = sample_path("chest_ct_dicom")
    output = home / "medseg-output"
    widget = dock(viewer, "Save labels")
    # the bundled tumour was read from NIfTI but lies on the DICOM series: SEG offered
    assert widget.layer() is tumour and widget.seg_button.isEnabled()
    assert widget.nifti_edit.text() == str(output / "chest_ct_dicom_tumour.nii.gz")

    lesions = viewer.add_layer(Layer.create(*labels_like(image, name="lesions (draft)")))
    lesions.data = np.asarray(tumour.data).copy()
    _paint_source_block(lesions)
    widget.layer_combo.set_layer(lesions)
    assert widget.nifti_edit.text() == str(output / "chest_ct_dicom_lesions_draft.nii.gz")
    assert widget.seg_edit.text() == str(output / "chest_ct_dicom_lesions_draft_seg.dcm")
    assert widget.seg_button.isEnabled() and widget.status.text() == "Unsaved edits."

    expected = np.asarray(nib.load(sample_path("chest_ct_tumour")).dataobj).copy()
    expected[BLOCK] = 2
    nifti, seg_path = tmp_path / "lesions.nii.gz", tmp_path / "lesions_seg.dcm"
    widget.nifti_edit.setText(str(nifti))
    assert widget.seg_edit.text() == str(seg_path)
    _save(widget, qtbot, widget.save_button)
    dicom = read_scan(folder)
    saved = nib.load(nifti)
    np.testing.assert_allclose(saved.affine, dicom.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), expected)

    assert _save(widget, qtbot, widget.seg_button) == ("seg", str(seg_path))
    seg = hd.seg.segread(seg_path)
    files = sorted(folder.glob("*.dcm"))
    ct = np.asarray(nib.load(sample_path("chest_ct")).dataobj)
    slice_of = _slice_of_each_file(files, ct)
    uids = list(slice_of)
    for item in seg.PerFrameFunctionalGroupsSequence:  # every frame comes from the series
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert str(source.ReferencedSOPInstanceUID) in slice_of
    assert (
        seg.ReferencedSeriesSequence[0].SeriesInstanceUID
        == image.metadata[MEDSEG_KEY]["series_uid"]
    )
    assert seg.FrameOfReferenceUID == pydicom.dcmread(files[0]).FrameOfReferenceUID
    numbers = seg.get_pixels_by_source_instance(
        uids, combine_segments=True, assert_missing_frames_are_empty=True
    )
    value_of = {
        int(s.SegmentNumber): int(str(s.SegmentDescription).rsplit(" ", 1)[-1])
        for s in seg.SegmentSequence
    }
    assert sorted(value_of.values()) == [1, 2]
    lut = np.zeros(max(value_of) + 1, dtype=np.int64)
    for number, value in value_of.items():
        lut[number] = value
    for frame, uid in zip(numbers, uids, strict=True):
        np.testing.assert_array_equal(lut[frame], expected[:, :, slice_of[uid]].T)
    np.testing.assert_array_equal(read_dicom_seg(seg_path, files).array, expected)
    assert not lesions.name.endswith(" *")
    assert widget.status.text() == f"Saved to {seg_path}."

    viewer.window.resize(1280, 760)  # room for the file names in the dock
    centre = np.argwhere(np.asarray(lesions.data) == 1).mean(axis=0)  # show the tumour
    viewer.dims.set_point(0, lesions.data_to_world(centre)[0])
    viewer.screenshot(str(artifacts / "save.png"), canvas_only=False)


def test_the_scan_is_never_written_over(make_napari_viewer, qtbot, tmp_path, notes):
    viewer = make_napari_viewer()
    open_sample(viewer, "chest_ct")
    dicom_image, dicom_tumour = open_sample(viewer, "chest_ct_dicom")
    widget = dock(viewer, "Save labels")
    widget.replace_check.setChecked(True)  # even with replacing allowed
    scans = [sample_path("chest_ct"), sample_path("chest_ct_dicom")]
    before = [_digest(p) for p in scans]

    widget.layer_combo.set_layer(dicom_tumour)
    widget.nifti_edit.setText(str(scans[0]))
    message = _refused(widget, qtbot, widget.save_button)
    assert "refusing to write here, this is the source scan" in message
    assert str(scans[0]) in message
    first_dicom = sorted(scans[1].glob("*.dcm"))[0]
    widget.seg_edit.setText(str(first_dicom))
    message = _refused(widget, qtbot, widget.seg_button)
    assert "refusing to write here" in message and first_dicom.name in message
    assert [_digest(p) for p in scans] == before
    assert any("refusing to write here" in n for n in notes)  # shown to the user
    assert widget.save_button.isEnabled() and not widget.busy


def test_an_existing_file_is_replaced_only_when_ticked(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    _, tumour = open_sample(viewer, "chest_ct_dicom")
    widget = dock(viewer, "Save labels")
    nifti, seg_path = tmp_path / "mine.nii.gz", tmp_path / "mine_seg.dcm"
    nifti.write_bytes(b"my own file")
    seg_path.write_bytes(b"my own SEG")
    widget.nifti_edit.setText(str(nifti))
    assert widget.seg_edit.text() == str(seg_path)
    for button in (widget.save_button, widget.seg_button):
        message = _refused(widget, qtbot, button)
        assert "exists already" in message and "Replace existing file" in message
    assert nifti.read_bytes() == b"my own file" and seg_path.read_bytes() == b"my own SEG"

    widget.replace_check.setChecked(True)
    _save(widget, qtbot, widget.save_button)
    _save(widget, qtbot, widget.seg_button)
    expected = np.asarray(nib.load(sample_path("chest_ct_tumour")).dataobj)
    np.testing.assert_array_equal(np.asarray(nib.load(nifti).dataobj), expected)
    seg_volume = read_dicom_seg(seg_path, read_scan(sample_path("chest_ct_dicom")))
    np.testing.assert_array_equal(seg_volume.array, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mine.json",
        "mine.nii.gz",
        "mine_seg.dcm",
    ]


def test_bad_names_and_layers_off_a_dicom_scan(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    _, tumour = open_sample(viewer, "chest_ct")
    widget = dock(viewer, "Save labels")
    widget.nifti_edit.setText(str(tmp_path / "labels.png"))
    assert "ends in .nii or .nii.gz" in _refused(widget, qtbot, widget.save_button)
    widget.nifti_edit.setText("")
    assert "Choose a file name" in _refused(widget, qtbot, widget.save_button)
    widget.seg_edit.setText(str(tmp_path / "x.dcm"))
    widget.save_seg()  # the button is disabled; the method refuses too
    assert not (tmp_path / "x.dcm").exists()
    assert list(tmp_path.iterdir()) == []


def test_labels_napari_made_on_the_dicom_scan(make_napari_viewer, qtbot, tmp_path, home):
    """napari's New labels layer has no metadata: matched to the DICOM scan by its grid."""
    viewer = make_napari_viewer()
    image, _ = open_sample(viewer, "chest_ct_dicom")
    widget = dock(viewer, "Save labels")
    viewer.layers.selection.active = image
    viewer._new_labels()
    drawn = viewer.layers[-1]
    assert drawn.metadata == {}
    widget.layer_combo.set_layer(drawn)
    folder = sample_path("chest_ct_dicom")
    assert drawn.name == "chest CT (DICOM) - Labels"
    assert widget.nifti_edit.text() == str(
        home / "medseg-output" / "chest_ct_dicom_chest_CT_DICOM-Labels.nii.gz"
    )
    assert widget.seg_button.isEnabled()
    geometry = DisplayGeometry.from_dict(image.metadata[MEDSEG_KEY])
    marker = np.zeros(geometry.source_shape, dtype=bool)
    marker[BLOCK] = True
    drawn.data_setitem(np.nonzero(geometry.to_display(marker)), 3)
    widget.seg_edit.setText(str(tmp_path / "drawn_seg.dcm"))
    _save(widget, qtbot, widget.seg_button)
    expected = np.zeros(geometry.source_shape, dtype=np.uint8)
    expected[BLOCK] = 3
    files = sorted(folder.glob("*.dcm"))
    np.testing.assert_array_equal(read_dicom_seg(tmp_path / "drawn_seg.dcm", files).array, expected)


def test_default_names(tmp_path):
    from napari_medseg._napari.widgets.save import default_nifti_path, seg_path_for

    series = tmp_path / "CT head"
    series.mkdir()
    (series / "IM1.dcm").write_bytes(b"")
    assert default_nifti_path(str(series), "dicom", "tumour") == tmp_path / "CT_head_tumour.nii.gz"
    assert (
        default_nifti_path(str(series / "IM1.dcm"), "dicom", "a/b")
        == tmp_path / "CT_head_a_b.nii.gz"
    )
    scan = tmp_path / "ct.nii.gz"
    assert default_nifti_path(str(scan), "nifti", "liver *?") == tmp_path / "ct_liver.nii.gz"
    assert (
        default_nifti_path(str(tmp_path / "mr.nii"), "nifti", "..") == tmp_path / "mr_labels.nii.gz"
    )
    assert default_nifti_path("", "", "x") is None
    assert seg_path_for(str(tmp_path / "ct_liver.nii.gz")) == str(tmp_path / "ct_liver_seg.dcm")


def test_the_default_names_follow_a_renamed_layer(make_napari_viewer, qtbot, tmp_path, home):
    viewer = make_napari_viewer()
    _, tumour = open_sample(viewer, "chest_ct")
    widget = dock(viewer, "Save labels")
    assert Path(widget.nifti_edit.text()).name.endswith("_tumour.nii.gz")
    tumour.name = "GTV"  # renamed in the layer list
    nifti = Path(widget.nifti_edit.text())
    assert nifti.parent == home / "medseg-output" and nifti.name.endswith("_GTV.nii.gz")
    assert widget.seg_edit.text().endswith("_GTV_seg.dcm")
    assert widget.rt_edit.text().endswith("_GTV_rt.dcm")
    assert widget.nrrd_edit.text().endswith("_GTV.seg.nrrd")
    widget.nifti_edit.setText(str(tmp_path / "mine.nii.gz"))  # a name the user typed stays
    tumour.name = "CTV"
    assert widget.nifti_edit.text() == str(tmp_path / "mine.nii.gz")


def test_a_model_output_edited_by_hand_is_saved_as_semiautomatic(
    make_napari_viewer, qtbot, tmp_path
):
    """Untouched model labels are AUTOMATIC; after a brush stroke, SEMIAUTOMATIC."""
    viewer = make_napari_viewer(show=True)
    open_sample(viewer, "chest_ct_dicom")
    segment, widget = dock(viewer, "Segment"), dock(viewer, "Save labels")
    with qtbot.waitSignal(segment.segmented, timeout=180_000) as blocker:
        segment.run()
    labels = blocker.args[0]
    widget.layer_combo.set_layer(labels)

    def save_both(stem: str):
        widget.nifti_edit.setText(str(tmp_path / f"{stem}.nii.gz"))
        widget.seg_edit.setText(str(tmp_path / f"{stem}_seg.dcm"))
        _save(widget, qtbot, widget.save_button)
        _save(widget, qtbot, widget.seg_button)
        seg = hd.seg.segread(tmp_path / f"{stem}_seg.dcm")
        types = {s.SegmentAlgorithmType for s in seg.SegmentSequence}
        model = json.loads((tmp_path / f"{stem}.json").read_text())["model"]
        return types, model

    types, model = save_both("as_segmented")
    assert types == {"AUTOMATIC"} and "edited_by_hand" not in model
    _paint_source_block(labels, value=6)
    types, model = save_both("corrected")
    assert types == {"SEMIAUTOMATIC"} and model["edited_by_hand"] is True
    assert model["name"] == labels.metadata[MEDSEG_KEY]["model"]["name"]
    # the layer's own provenance is not changed by saving
    assert "edited_by_hand" not in labels.metadata[MEDSEG_KEY]["model"]


def test_a_save_outliving_its_widget_still_marks_the_layer_saved(
    make_napari_viewer, qtbot, tmp_path, notes, monkeypatch
):
    """The widget is destroyed while its worker writes: the file is complete, the layer
    is marked saved and the user told, and nothing touches the dead widget."""
    import threading

    from qtpy.QtCore import QCoreApplication, QEvent

    import napari_medseg.io.save as save_module
    from napari_medseg._napari.edit_state import is_modified, saved_path

    started, gate = threading.Event(), threading.Event()
    real_save = save_module.save_segmentation

    def held_save(*args, **kwargs):  # the real save, once the widget is gone
        started.set()
        assert gate.wait(30)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(save_module, "save_segmentation", held_save)
    viewer = make_napari_viewer()
    _, tumour = open_sample(viewer, "chest_ct")
    widget = dock(viewer, "Save labels")
    _paint_source_block(tumour)
    assert is_modified(tumour)
    nifti = tmp_path / "held.nii.gz"
    widget.nifti_edit.setText(str(nifti))
    widget.save_button.click()
    qtbot.waitUntil(started.is_set, timeout=TIMEOUT)
    viewer.window.remove_dock_widget(widget)
    widget.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)  # delete it now
    qtbot.waitUntil(lambda: widget._slot.abandoned, timeout=TIMEOUT)
    gate.set()
    qtbot.waitUntil(lambda: saved_path(tumour) == str(nifti), timeout=TIMEOUT)
    assert not is_modified(tumour)
    assert any(f"to {nifti}" in note for note in notes)
    written = np.asarray(nib.load(nifti).dataobj)
    assert (written[BLOCK] == 2).all()
