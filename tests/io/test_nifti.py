"""NIfTI reading and writing: geometry, scaling, 4D, bad files, safe writes."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from geometry_cases import ORIENTATIONS, orientation_affine

from napari_medseg.io import (
    NotAScanError,
    OverwriteSourceError,
    ScanWriteError,
    TruncatedFileError,
    UnsupportedVolumeError,
    read_scan,
)
from napari_medseg.io.atomic import atomic_output
from napari_medseg.io.nifti import label_dtype, read_nifti, write_nifti

SHAPE = (6, 7, 5)


def _save(path, data, affine, qcode=1, scode=1, slope=None, inter=None):
    image = nib.Nifti1Image(data, affine)
    image.header.set_qform(affine, code=qcode)
    image.header.set_sform(affine, code=scode)
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    nib.save(image, path)
    return path


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_geometry_matches_simpleitk(tmp_path, name):
    affine = orientation_affine(name)
    data = np.random.default_rng(3).integers(-1000, 2000, SHAPE).astype(np.int16)
    path = _save(tmp_path / f"{name}.nii.gz", data, affine)
    volume = read_scan(path)
    np.testing.assert_array_equal(volume.array, data)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-5)
    # independent reader: SimpleITK works in LPS and (K, J, I) arrays
    image = sitk.ReadImage(str(path))
    direction = np.array(image.GetDirection()).reshape(3, 3)
    lps = direction @ np.diag(image.GetSpacing())
    np.testing.assert_allclose(volume.lps_affine[:3, :3], lps, atol=1e-4)
    np.testing.assert_allclose(volume.lps_affine[:3, 3], image.GetOrigin(), atol=1e-4)
    np.testing.assert_array_equal(volume.array.transpose(2, 1, 0), sitk.GetArrayFromImage(image))
    assert volume.orientation == ORIENTATIONS[name][0]


def test_scaling_is_applied(tmp_path):
    data = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    path = _save(tmp_path / "scaled.nii", data, np.eye(4), slope=0.5, inter=-1024)
    volume = read_nifti(path)
    assert volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array, data * 0.5 - 1024)


def test_sform_wins_over_qform_and_codes_are_kept(tmp_path):
    qaff = orientation_affine("axial_RAS")
    saff = orientation_affine("axial_LPS")
    image = nib.Nifti1Image(np.zeros(SHAPE, np.uint8), saff)
    image.header.set_qform(qaff, code=1)
    image.header.set_sform(saff, code=2)
    nib.save(image, tmp_path / "two.nii.gz")
    volume = read_nifti(tmp_path / "two.nii.gz")
    np.testing.assert_allclose(volume.affine, saff, atol=1e-6)
    assert (volume.metadata.qform_code, volume.metadata.sform_code) == (1, 2)
    np.testing.assert_allclose(volume.metadata.extra["qform_affine"], qaff, atol=1e-5)


def test_4d_needs_a_choice(tmp_path):
    data = np.stack([np.full(SHAPE, t, np.int16) for t in range(3)], axis=-1)
    path = _save(tmp_path / "four.nii.gz", data, np.eye(4))
    with pytest.raises(UnsupportedVolumeError, match=r"four\.nii\.gz.*4D with 3 volumes.*--volume"):
        read_scan(path)
    assert np.all(read_scan(path, volume_index=2).array == 2)
    with pytest.raises(UnsupportedVolumeError, match="volume 5 does not exist"):
        read_scan(path, volume_index=5)


def test_4d_with_one_volume_is_3d(tmp_path):
    path = _save(tmp_path / "one.nii.gz", np.ones(SHAPE + (1,), np.int16), np.eye(4))
    assert read_scan(path).shape == SHAPE


def test_not_a_nifti_names_the_file(tmp_path):
    path = tmp_path / "notes.nii"
    path.write_text("this is not an image")
    with pytest.raises(NotAScanError, match=r"notes\.nii"):
        read_scan(path)


def test_truncated_gzip_names_the_file(tmp_path):
    path = _save(tmp_path / "full.nii.gz", np.ones((40, 40, 40), np.int16), np.eye(4))
    raw = path.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(TruncatedFileError, match=r"cut\.nii\.gz.*(truncated|damaged)"):
        read_scan(cut)


def test_truncated_uncompressed_names_the_file(tmp_path):
    path = _save(tmp_path / "full.nii", np.ones((20, 20, 20), np.int16), np.eye(4))
    cut = tmp_path / "short.nii"
    cut.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(TruncatedFileError, match=r"short\.nii"):
        read_scan(cut)


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_labels_round_trip_bit_exact(tmp_path, name):
    affine = orientation_affine(name)
    labels = np.random.default_rng(5).integers(0, 4, SHAPE)
    out = write_nifti(
        tmp_path / "labels.nii.gz", labels, affine, kind="labels", qform_code=1, sform_code=2
    )
    image = nib.load(out)
    assert image.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), labels)
    np.testing.assert_allclose(image.affine, affine, atol=1e-5)
    assert int(image.header["sform_code"]) == 2 and int(image.header["qform_code"]) == 1
    assert image.header.get_intent()[0] == "label"


def test_label_dtype_grows_with_the_labels():
    assert label_dtype(np.array([0, 255])) == np.uint8
    assert label_dtype(np.array([0, 256])) == np.uint16
    assert label_dtype(np.array([70000])) == np.uint32
    with pytest.raises(ValueError, match="non-negative"):
        label_dtype(np.array([-1, 2]))


def test_sheared_affine_is_kept_in_the_sform(tmp_path):
    affine = orientation_affine("axial_LPS")
    affine[:3, 2] = [0.0, -0.6, 2.4]  # gantry tilt shear
    out = write_nifti(tmp_path / "tilt.nii.gz", np.zeros(SHAPE, np.int16), affine)
    np.testing.assert_allclose(nib.load(out).header.get_sform(), affine, atol=1e-5)


def test_never_writes_over_the_source(tmp_path):
    source = _save(tmp_path / "scan.nii.gz", np.ones(SHAPE, np.int16), np.eye(4))
    before = source.read_bytes()
    volume = read_scan(source)
    with pytest.raises(OverwriteSourceError, match="never overwritten"):
        write_nifti(
            source, np.zeros(SHAPE), volume.affine, kind="labels", protect=[volume.metadata.source]
        )
    assert source.read_bytes() == before


def test_failed_write_leaves_target_and_no_temp(tmp_path):
    target = tmp_path / "out.nii.gz"
    target.write_bytes(b"previous result")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as temp:
            with gzip.open(temp, "wb") as handle:
                handle.write(b"half written")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_sheared_grid_gets_no_qform_so_itk_cannot_misplace_it(tmp_path):
    affine = orientation_affine("axial_LPS")
    affine[:3, 2] = [0.0, -0.9, 2.3]  # 21 deg gantry tilt
    out = write_nifti(tmp_path / "tilt.nii.gz", np.zeros(SHAPE, np.int16), affine)
    header = nib.load(out).header
    assert int(header["qform_code"]) == 0 and int(header["sform_code"]) == 1
    with pytest.raises(RuntimeError, match="orthonormal"):
        sitk.ReadImage(str(out))  # refused loudly rather than read with the shear dropped


def test_written_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        out = write_nifti(tmp_path / "new.nii.gz", np.zeros(SHAPE, np.uint8), np.eye(4))
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        out.chmod(0o640)
        write_nifti(out, np.ones(SHAPE, np.uint8), np.eye(4), kind="labels")
        assert stat.S_IMODE(out.stat().st_mode) == 0o640  # a replaced file keeps its mode
    finally:
        os.umask(mask)


def test_a_second_name_of_the_source_is_refused(tmp_path):
    import os

    source = _save(tmp_path / "scan.nii.gz", np.ones(SHAPE, np.int16), np.eye(4))
    alias_dir = tmp_path / "alias"
    alias_dir.mkdir()
    alias = alias_dir / "other-name.nii.gz"
    os.link(source, alias)  # same file on disk, different path
    with pytest.raises(OverwriteSourceError):
        write_nifti(alias, np.zeros(SHAPE), np.eye(4), protect=[source])


def test_files_inside_a_protected_folder_are_refused(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    existing = series / "IM0001.nii"
    existing.write_bytes(b"a slice")
    with pytest.raises(OverwriteSourceError):
        write_nifti(existing, np.zeros(SHAPE), np.eye(4), protect=[series])
    assert existing.read_bytes() == b"a slice"
    new = write_nifti(series / "labels.nii.gz", np.zeros(SHAPE), np.eye(4), protect=[series])
    assert new.exists()  # a new file next to the series is fine


def test_unwritable_target_is_a_typed_error(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(ScanWriteError, match=r"afile/out\.nii\.gz.*cannot"):
        write_nifti(blocker / "out.nii.gz", np.zeros(SHAPE), np.eye(4))
    folder = tmp_path / "folder.nii.gz"
    folder.mkdir()
    with pytest.raises(ScanWriteError, match="folder"):
        write_nifti(folder, np.zeros(SHAPE), np.eye(4))


def test_colour_nifti_is_refused_clearly(tmp_path):
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = tmp_path / "photo.nii.gz"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), path)
    with pytest.raises(UnsupportedVolumeError, match=r"photo\.nii\.gz.*colour"):
        read_scan(path)


def test_nifti_pair_reads_from_either_half(tmp_path):
    data = np.random.default_rng(2).integers(0, 100, SHAPE).astype(np.int16)
    affine = orientation_affine("PSR")
    nib.save(nib.Nifti1Pair(data, affine), tmp_path / "pair.img")
    for name in ("pair.hdr", "pair.img"):
        volume = read_scan(tmp_path / name)
        np.testing.assert_array_equal(volume.array, data)
        np.testing.assert_allclose(volume.affine, affine, atol=1e-5)
