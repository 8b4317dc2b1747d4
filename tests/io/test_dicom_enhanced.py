"""Enhanced (functional-group) multi-frame CT/MR, written from scratch."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_factory import make_affine, phantom, reorient_like, write_enhanced
from pydicom.uid import RLELossless

from napari_medseg.errors import InconsistentSeriesError
from napari_medseg.io.dicom import index_dicom, read_dicom


def test_enhanced_ct_shuffled_frames(tmp_path):
    stored = phantom((16, 12, 8), seed=4)
    affine = make_affine("LPS", spacing=(0.6, 0.9, 3.0), oblique_deg=(10.0, 0.0, -5.0))
    order = list(np.random.default_rng(0).permutation(8))
    path, _ = write_enhanced(tmp_path / "ct.dcm", [stored], affine, frame_order=order)
    (series,) = index_dicom(path)
    assert series.is_multiframe and series.n_slices == 8
    assert series.files == [str(path)]
    volume = read_dicom(path)
    np.testing.assert_array_equal(volume.array, stored.astype(np.int32) - 1024)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-6)
    assert volume.metadata.units == "HU"
    assert volume.metadata.window == (40.0, 400.0)
    assert volume.metadata.extra["frame_numbers"] == [order.index(k) for k in range(8)]


def test_enhanced_per_frame_rescale(tmp_path):
    stored = phantom((8, 6, 5), seed=5)
    slopes = [1.0, 2.0, 1.0, 0.5, 1.0]
    intercepts = [-1024.0, -1000.0, 0.0, 10.0, -3.0]
    path, _ = write_enhanced(
        tmp_path / "mr.dcm",
        [stored],
        make_affine("PSR"),
        modality="MR",
        slopes=slopes,
        intercepts=intercepts,
    )
    volume = read_dicom(path)
    expected = stored.astype(np.float64) * np.array(slopes) + np.array(intercepts)
    values, _ = reorient_like(volume.array, volume.affine, make_affine("PSR"))
    assert volume.array.dtype == np.float32  # slope 0.5 is not a whole number
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    assert volume.metadata.modality == "MR" and volume.metadata.units == ""
    assert volume.metadata.extra["rescale"] == "per slice"


def test_enhanced_temporal_positions_split_into_volumes(tmp_path):
    vols = [phantom((8, 6, 4), seed=s) for s in (1, 2, 3)]
    order = list(np.random.default_rng(1).permutation(12))
    path, _ = write_enhanced(tmp_path / "dyn.dcm", vols, make_affine("LPS"), frame_order=order)
    series = index_dicom(path)
    assert len(series) == 3
    uid = series[0].uid
    assert [s.key for s in series] == [uid, uid + "#2", uid + "#3"]
    assert [s.split_by for s in series] == [f"TemporalPositionIndex={t}" for t in (1, 2, 3)]
    for part, vol in zip(series, vols, strict=True):
        np.testing.assert_array_equal(read_dicom(path, part.key).array, vol.astype(int) - 1024)


def test_enhanced_compressed_matches_uncompressed(tmp_path):
    stored = phantom((16, 12, 6), seed=6)
    affine = make_affine("LIA")
    plain, _ = write_enhanced(tmp_path / "plain.dcm", [stored], affine)
    rle, _ = write_enhanced(tmp_path / "rle.dcm", [stored], affine, transfer_syntax=RLELossless)
    a, b = read_dicom(plain), read_dicom(rle)
    assert index_dicom(rle)[0].transfer_syntaxes == ["RLE Lossless"]
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine)


def test_enhanced_without_plane_position_is_refused(tmp_path):
    import pydicom

    path, _ = write_enhanced(tmp_path / "x.dcm", [phantom((8, 6, 3))], make_affine())
    ds = pydicom.dcmread(path)
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.PlanePositionSequence
    ds.save_as(path, enforce_file_format=True)
    (series,) = index_dicom(path)
    assert not series.has_geometry
    with pytest.raises(InconsistentSeriesError, match="ImagePositionPatient"):
        read_dicom(path)
