"""Reader/writer edge cases: refusals, typed errors as notifications, grid fallbacks."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from _helpers import ras_to_world, save_nifti
from geometry_cases import make_affine, orientation_affine

from napari_medseg._napari.reader import get_reader
from napari_medseg.errors import OverwriteSourceError, ScanWriteError


def test_get_reader_refuses_what_it_cannot_read(tmp_path):
    (tmp_path / "notes.txt").write_text("not a scan")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert get_reader(str(tmp_path)) is None
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader([str(tmp_path / "a.nii"), str(tmp_path / "b.nii")]) is None
    assert get_reader(str(tmp_path / "scan.nii.gz")) is not None
    assert get_reader([str(tmp_path / "scan.nii")]) is not None


def test_damaged_file_error_is_notified_with_its_message(make_napari_viewer, tmp_path, notes):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"garbage" * 20)
    viewer = make_napari_viewer()
    with pytest.raises(Exception) as info:
        viewer.open(bad, plugin="napari-medseg")
    assert len(viewer.layers) == 0
    messages = [n for n in notes if "broken.nii.gz" in n]
    assert messages, notes
    original = info.value
    while original.__cause__ is not None and not str(original).startswith(str(bad)):
        original = original.__cause__
    assert messages[0] == str(original)


def test_writer_errors_are_not_swallowed(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    flat = viewer.add_labels(np.zeros((8, 9), dtype=np.uint8))
    with pytest.raises(ScanWriteError, match="2D"):
        flat.save(str(tmp_path / "flat.nii.gz"), plugin="napari-medseg")
    assert not (tmp_path / "flat.nii.gz").exists()


def test_never_writes_over_the_source_scan(make_napari_viewer, tmp_path):
    affine = orientation_affine("axial_LPS")
    scan = (np.arange(6 * 7 * 5).reshape(6, 7, 5) - 100).astype(np.int16)
    src = save_nifti(tmp_path / "scan.nii.gz", scan, affine)
    before = src.read_bytes()
    viewer = make_napari_viewer()
    (image,) = viewer.open(src, plugin="napari-medseg")
    viewer._new_labels()
    labels = viewer.layers[-1]
    labels.data[1, 2, 3] = 1
    with pytest.raises(OverwriteSourceError):
        labels.save(str(src), plugin="napari-medseg")
    with pytest.raises(OverwriteSourceError):
        image.save(str(src), plugin="napari-medseg")
    assert src.read_bytes() == before
    # a label map opened from file may be edited and saved back onto itself
    first = tmp_path / "labels.nii.gz"
    labels.save(str(first), plugin="napari-medseg")
    (reopened,) = viewer.open(first, plugin="napari-medseg")
    assert reopened._type_string == "labels"
    reopened.data[0, 0, 0] = 2
    reopened.save(str(first), plugin="napari-medseg")
    saved = np.asarray(nib.load(first).dataobj)
    assert saved.max() == 2 and (saved == 1).sum() == 1


def test_layer_without_source_saves_on_its_own_grid(make_napari_viewer, tmp_path, notes):
    viewer = make_napari_viewer()
    labels = viewer.add_labels(
        np.zeros((4, 5, 6), dtype=np.uint8), scale=(2.0, 0.5, 0.75), translate=(-10.0, 3.0, 7.0)
    )
    labels.data[1, 2, 3] = 5
    out = tmp_path / "free.nii.gz"
    labels.save(str(out), plugin="napari-medseg")
    (message,) = [n for n in notes if "no source scan matches this layer" in n]
    assert message.startswith("free.nii.gz: ")
    assert "not the grid of any scan opened with napari-medseg" in message
    saved = nib.load(out)
    data = np.asarray(saved.dataobj)
    (ijk,) = np.argwhere(data == 5)
    ras = saved.affine[:3, :3] @ ijk + saved.affine[:3, 3]
    world = np.asarray(labels.data_to_world((1, 2, 3)))
    np.testing.assert_allclose(ras_to_world(ras), world, atol=1e-6)


def test_shared_grid_uses_most_recent_scan_and_warns(make_napari_viewer, tmp_path, notes):
    # the same patient grid stored RAS and LPS: identical display grids
    shape = (6, 7, 5)
    ras = make_affine("RAS", spacing=(1.0, 1.5, 2.0), origin=(-2.5, -4.5, -4.0))
    lps = ras.copy()
    lps[:3, 0] *= -1
    lps[:3, 1] *= -1
    lps[:3, 3] = ras[:3, :3] @ (np.array(shape) - 1) * np.array([1, 1, 0]) + ras[:3, 3]
    save_nifti(tmp_path / "ras.nii.gz", np.zeros(shape, np.int16) + 3, ras)
    save_nifti(tmp_path / "lps.nii.gz", np.zeros(shape, np.int16) + 3, lps)
    viewer = make_napari_viewer()
    (a,) = viewer.open(tmp_path / "ras.nii.gz", plugin="napari-medseg")
    (b,) = viewer.open(tmp_path / "lps.nii.gz", plugin="napari-medseg")
    np.testing.assert_allclose(a.translate, b.translate)
    # the labels are made on the *older* scan: the rule is "most recently opened",
    # not "the layer that was active"
    viewer.layers.selection.active = a
    viewer._new_labels()
    labels = viewer.layers[-1]
    labels.data[0, 0, 0] = 1
    out = tmp_path / "shared.nii.gz"
    labels.save(str(out), plugin="napari-medseg")
    assert any("several scans" in n and "(lps.nii.gz), not of ras.nii.gz" in n for n in notes)
    np.testing.assert_allclose(nib.load(out).affine, lps, atol=1e-6)
    saved = np.asarray(nib.load(out).dataobj)
    # display voxel (0, 0, 0) (inferior, anterior, right) is LPS index (0, 0, 0), RAS (5, 6, 0)
    assert [tuple(int(i) for i in p) for p in np.argwhere(saved)] == [(0, 0, 0)]


def test_rgb_image_is_refused_with_the_file_name(make_napari_viewer, tmp_path):
    import napari

    viewer = make_napari_viewer()
    rgb = viewer.add_image(np.zeros((5, 6, 3), np.uint8), rgb=True, name="photo")
    out = tmp_path / "photo.nii.gz"
    # napari drops a writer's ValueError ("no writer"); ours must reach the caller
    with pytest.raises(ScanWriteError, match=r"photo\.nii\.gz: .*RGB"):
        napari.save_layers(str(out), [rgb], plugin="napari-medseg")
    with pytest.raises(ScanWriteError, match=r"photo\.nii\.gz: .*RGB"):
        rgb.save(str(out), plugin="napari-medseg")
    assert not out.exists()


def test_geometry_failures_become_scan_write_errors(tmp_path):
    from napari_medseg._napari.writer import write_image, write_labels

    out = tmp_path / "odd.nii.gz"
    # data with more axes than its transform (what an RGB layer passes without `rgb`)
    with pytest.raises(ScanWriteError, match=r"odd\.nii\.gz: .*3 axes .* has 2"):
        write_image(str(out), np.zeros((5, 6, 3), np.uint8), {"scale": (1.0, 1.0)})
    # a layer affine napari would never make: the geometry cannot be worked out
    with pytest.raises(ScanWriteError, match=r"odd\.nii\.gz: the layer's geometry could not"):
        write_labels(str(out), np.zeros((4, 5, 6), np.uint8), {"affine": np.eye(3)})
    assert not out.exists()


def test_dicom_folder_with_a_lost_end_slice_and_a_pipe_opens_with_a_warning(
    make_napari_viewer, tmp_path, notes
):
    import os

    from dicom_factory import damage, phantom, write_series

    written = write_series(tmp_path / "scan", phantom((8, 6, 6)))
    victim = damage(written.files[-1], "empty")  # an interrupted copy
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "scan" / "zz_pipe")  # opening it would block forever
    viewer = make_napari_viewer()
    (layer,) = viewer.open(tmp_path / "scan", plugin="napari-medseg")
    assert sorted(layer.data.shape) == [5, 6, 8]
    warned = [n for n in notes if victim.name in n and "first or last slice" in n]
    assert warned, notes


def test_dicom_series_with_a_far_slice_is_refused_in_the_viewer(
    make_napari_viewer, tmp_path, notes
):
    from dicom_factory import phantom, set_positions, write_series

    from napari_medseg.errors import InconsistentSeriesError

    written = write_series(tmp_path / "scan", phantom((8, 6, 4)))
    x, y, z = written.lps_affine[:3, 3]
    step = written.lps_affine[2, 2]
    set_positions(written.files, [(x, y, z + k * step) for k in (0, 1, 2, 80)])
    viewer = make_napari_viewer()
    with pytest.raises(InconsistentSeriesError):
        viewer.open(tmp_path / "scan", plugin="napari-medseg")
    assert len(viewer.layers) == 0
    assert any("would invent" in n and written.series_uid in n for n in notes), notes
