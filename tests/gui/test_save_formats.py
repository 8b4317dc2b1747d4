"""The Save labels widget: names that belong to one layer, the default folder of the
samples, DICOM SEG / RTSTRUCT / .seg.nrrd for a NIfTI label map of an open DICOM
series stored in another voxel order, and the widget's wording for a lost race.

The files written are read back with independent readers: nibabel for NIfTI, pynrrd
for the Slicer file, pydicom for the RT Structure Set's references, and the project's
readers only where they are checked against the bundled tumour voxels.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
from _helpers import dock, open_sample, save_nifti
from test_save_widget import _refused, _save

from napari_medseg._napari.layers import labels_like
from napari_medseg.io.dicom_seg import read_dicom_seg
from napari_medseg.io.reader import read_scan
from napari_medseg.io.rtstruct import read_rtstruct
from napari_medseg.samples import sample_path

#: RAS+ -> LPS (DICOM and NRRD's "left-posterior-superior" space).
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tumour() -> tuple[np.ndarray, np.ndarray]:
    """The bundled tumour voxels (I, J, K) and affine, as nibabel reads them."""
    image = nib.load(sample_path("chest_ct_tumour"))
    return np.asarray(image.dataobj), image.affine


def test_names_and_the_replace_tick_belong_to_one_layer(make_napari_viewer, qtbot, tmp_path, home):
    """A name typed (and Replace ticked) for the tumour does not stay for an empty layer."""
    from napari.layers import Layer

    viewer = make_napari_viewer()
    image, tumour = open_sample(viewer, "chest_ct")
    widget = dock(viewer, "Save labels")
    mine = tmp_path / "tumour_mine.nii.gz"
    widget.nifti_edit.setText(str(mine))
    _save(widget, qtbot, widget.save_button)
    widget.replace_check.setChecked(True)
    kept = _digest(mine)

    empty = viewer.add_layer(Layer.create(*labels_like(image, name="empty")))
    widget.layer_combo.set_layer(empty)
    output = home / "medseg-output"
    assert widget.nifti_edit.text() == str(output / "chest_ct_empty.nii.gz")
    assert widget.seg_edit.text() == str(output / "chest_ct_empty_seg.dcm")
    assert widget.nrrd_edit.text() == str(output / "chest_ct_empty.seg.nrrd")
    assert not widget.replace_check.isChecked()
    _save(widget, qtbot, widget.save_button)  # one click: the empty layer's own file
    assert _digest(mine) == kept
    assert not np.asarray(nib.load(output / "chest_ct_empty.nii.gz").dataobj).any()

    widget.layer_combo.set_layer(tumour)  # the tumour's names come back; the tick does not
    assert widget.nifti_edit.text() == str(mine)
    assert widget.seg_edit.text() == str(tmp_path / "tumour_mine_seg.dcm")
    assert not widget.replace_check.isChecked()
    message = _refused(widget, qtbot, widget.save_button)
    assert message == (
        f"{mine}: exists already; it is not replaced. Tick 'Replace existing file' to "
        "replace it, or choose another name."
    )
    assert _digest(mine) == kept


def test_the_samples_folder_is_never_the_default(make_napari_viewer, qtbot, home):
    """Defaults for a bundled sample go to ~/medseg-output (made on the first save)."""
    viewer = make_napari_viewer()
    open_sample(viewer, "chest_ct_dicom")
    widget = dock(viewer, "Save labels")
    output = home / "medseg-output"
    samples = sample_path("chest_ct_dicom").parent
    assert widget.folder_note.text() == (
        f"Default folder: {output} (the scan is a bundled sample; {samples} is not for your files)."
    )
    assert not output.exists()
    before = sorted(p.name for p in samples.iterdir())
    for button in (widget.save_button, widget.nrrd_button):
        kind, path = _save(widget, qtbot, button)
        assert Path(path).parent == output and Path(path).exists()
    assert sorted(p.name for p in samples.iterdir()) == before
    assert not widget.folder_note.isHidden()
    widget.nifti_edit.setText(str(home / "mine.nii.gz"))  # the user's own name: no note
    assert widget.folder_note.isHidden()


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write to any folder"
)
def test_a_scan_in_a_read_only_folder_defaults_to_the_user_folder(
    make_napari_viewer, tmp_path, home
):
    folder = tmp_path / "cd-rom"
    folder.mkdir()
    scan = save_nifti(folder / "ct.nii.gz", np.full((8, 9, 5), -1000, np.int16), np.eye(4))
    folder.chmod(0o555)
    try:
        viewer = make_napari_viewer()
        (image,) = viewer.open(str(scan), plugin="napari-medseg")
        from napari.layers import Layer

        viewer.add_layer(Layer.create(*labels_like(image, name="liver")))
        widget = dock(viewer, "Save labels")
        assert widget.nifti_edit.text() == str(home / "medseg-output" / "ct_liver.nii.gz")
        assert f"{folder} cannot be written" in widget.folder_note.text()
    finally:
        folder.chmod(0o755)


def test_a_nifti_label_map_of_the_series_in_another_voxel_order(
    make_napari_viewer, qtbot, tmp_path, home
):
    """Labels stored R->L, A->P (a usual NIfTI conversion) on the DICOM series' grid:
    DICOM SEG and RTSTRUCT are offered, and all four files hold the tumour."""
    tumour, affine = _tumour()
    flip = np.eye(4)
    flip[:2, :2] = -np.eye(2)
    flip[:2, 3] = np.array(tumour.shape[:2]) - 1
    ras_affine = affine @ flip  # voxel (i, j, k) here is (n-1-i, m-1-j, k) there
    stored = np.ascontiguousarray(tumour[::-1, ::-1, :])
    labels_file = save_nifti(tmp_path / "tumour_ras.nii.gz", stored, ras_affine)

    viewer = make_napari_viewer()
    open_sample(viewer, "chest_ct_dicom")
    viewer.layers.remove(viewer.layers[-1])  # the sample's own tumour layer
    (labels,) = viewer.open(str(labels_file), plugin="napari-medseg")
    assert labels._type_string == "labels"
    widget = dock(viewer, "Save labels")
    widget.layer_combo.set_layer(labels)
    assert widget.seg_button.isEnabled() and widget.rt_button.isEnabled()
    assert widget.nrrd_button.isEnabled()
    folder = sample_path("chest_ct_dicom")
    files = sorted(folder.glob("*.dcm"))
    # default names follow the series, in the user folder
    assert widget.nifti_edit.text() == str(
        home / "medseg-output" / "chest_ct_dicom_tumour_ras.nii.gz"
    )
    assert widget.rt_edit.text() == str(home / "medseg-output" / "chest_ct_dicom_tumour_ras_rt.dcm")

    out = tmp_path / "out"
    widget.nifti_edit.setText(str(out / "t.nii.gz"))
    assert widget.rt_edit.text() == str(out / "t_rt.dcm")
    assert widget.nrrd_edit.text() == str(out / "t.seg.nrrd")
    assert _save(widget, qtbot, widget.seg_button) == ("seg", str(out / "t_seg.dcm"))
    assert _save(widget, qtbot, widget.rt_button) == ("rtstruct", str(out / "t_rt.dcm"))
    assert _save(widget, qtbot, widget.nrrd_button) == ("seg_nrrd", str(out / "t.seg.nrrd"))
    _save(widget, qtbot, widget.save_button)

    # DICOM SEG and RTSTRUCT on the series (its voxel order: the bundled tumour's)
    np.testing.assert_array_equal(read_dicom_seg(out / "t_seg.dcm", files).array, tumour)
    series = read_scan(folder)
    np.testing.assert_array_equal(read_rtstruct(out / "t_rt.dcm", series).array, tumour)
    rt = pydicom.dcmread(out / "t_rt.dcm")
    uids = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    contours = rt.ROIContourSequence[0].ContourSequence
    assert contours and all(
        str(c.ContourImageSequence[0].ReferencedSOPInstanceUID) in uids for c in contours
    )
    # the Slicer file and the NIfTI keep the labels' own voxel order and geometry
    data, header = nrrd.read(str(out / "t.seg.nrrd"))
    np.testing.assert_array_equal(data, stored)
    lps = RAS_TO_LPS @ ras_affine
    np.testing.assert_allclose(header["space directions"], lps[:3, :3].T, atol=1e-5)
    np.testing.assert_allclose(header["space origin"], lps[:3, 3], atol=1e-4)
    saved = nib.load(out / "t.nii.gz")
    np.testing.assert_array_equal(np.asarray(saved.dataobj), stored)
    np.testing.assert_allclose(saved.affine, ras_affine, atol=1e-4)


def test_a_name_taken_while_writing_is_refused_in_the_widgets_words(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """Another program creates the file after the widget's check: the save loses the
    race, says how to replace the file in this widget, and leaves the other file."""
    import napari_medseg.io.nifti as nifti_module

    real_write = nifti_module.write_nifti_like
    target = tmp_path / "race.nii.gz"

    def write_then_lose(*args, **kwargs):
        written = real_write(*args, **kwargs)  # into the save's temporary file
        target.write_bytes(b"the other program's file")
        return written

    monkeypatch.setattr(nifti_module, "write_nifti_like", write_then_lose)
    viewer = make_napari_viewer()
    open_sample(viewer, "chest_ct")
    widget = dock(viewer, "Save labels")
    widget.nifti_edit.setText(str(target))
    message = _refused(widget, qtbot, widget.save_button)
    assert message == (
        f"{target}: exists already; it is not replaced. Tick 'Replace existing file' to "
        "replace it, or choose another name."
    )
    assert target.read_bytes() == b"the other program's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.nii.gz"]  # no sidecar
