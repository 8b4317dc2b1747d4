"""Real files from pydicom-data: compressed syntaxes, enhanced CT, a DICOMDIR."""

from __future__ import annotations

import os

import numpy as np
import pydicom
import pytest
from dicom_factory import add_functional_groups, copy_alone, sitk_read

from napari_medseg.errors import AmbiguousSeriesError, InconsistentSeriesError
from napari_medseg.io.dicom import index_dicom, read_dicom, read_dicom_series
from napari_medseg.io.dicom.header import read_header
from napari_medseg.io.dicom.pixels import decode_frames

data = pytest.importorskip("pydicom.data")


def _file(name: str) -> str:
    path = data.get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not in pydicom-data")
    return path


EMRI = [
    "emri_small_jpeg_2k_lossless.dcm",
    "emri_small_RLE.dcm",
    "emri_small_jpeg_ls_lossless.dcm",
    "emri_small_big_endian.dcm",
]
MR_SMALL = [
    "MR_small_jp2klossless.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "MR_small_expb.dcm",
    "MR_small_padded.dcm",
]


def test_mr_small_matches_simpleitk(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    path = str(copy_alone(_file("MR_small.dcm"), tmp_path))
    volume = read_dicom(path)
    image = sitk.ReadImage(path)
    ref = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    np.testing.assert_array_equal(volume.array, ref)
    direction = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    np.testing.assert_allclose(volume.lps_affine[:3, :2], direction[:, :2], atol=1e-4)
    np.testing.assert_allclose(volume.lps_affine[:3, 3], image.GetOrigin(), atol=1e-4)


@pytest.mark.parametrize("name", MR_SMALL)
def test_mr_small_syntaxes_decode_like_uncompressed(tmp_path, name):
    reference = read_dicom(copy_alone(_file("MR_small.dcm"), tmp_path / "reference"))
    volume = read_dicom(copy_alone(_file(name), tmp_path / "other"))
    np.testing.assert_array_equal(volume.array, reference.array)
    np.testing.assert_allclose(volume.affine, reference.affine)


@pytest.mark.parametrize("name", EMRI)
def test_emri_small_multiframe_syntaxes(tmp_path, name):
    plain = add_functional_groups(_file("emri_small.dcm"), tmp_path / "plain.dcm")
    other = add_functional_groups(_file(name), tmp_path / "other.dcm")
    reference = read_dicom(plain)
    volume = read_dicom(other)
    assert volume.shape == (64, 64, 10)
    np.testing.assert_array_equal(volume.array, reference.array)
    np.testing.assert_allclose(volume.affine, reference.affine)
    # frames were placed in reverse order: slice k is frame 9 - k
    pixels = pydicom.dcmread(_file("emri_small.dcm")).pixel_array
    np.testing.assert_array_equal(volume.array[:, :, 0], pixels[9].T)
    assert volume.metadata.extra["frame_numbers"] == list(range(9, -1, -1))


def test_emri_small_without_geometry_is_refused():
    (series,) = index_dicom(_file("emri_small.dcm"))
    assert series.is_multiframe and series.n_slices == 10
    assert not series.has_geometry
    with pytest.raises(InconsistentSeriesError, match="ImagePositionPatient"):
        read_dicom_series(series)


@pytest.mark.parametrize(
    "name", ["JPEG-LL.dcm", "JPEGLSNearLossless_16.dcm", "emri_small_jpeg_2k_lossless.dcm"]
)
def test_decoders_match_pydicom(name):
    path = _file(name)
    frames = read_header(path)
    decoded = dict(decode_frames(path, frames))
    reference = pydicom.dcmread(path).pixel_array
    if reference.ndim == 2:
        reference = reference[None]
    for ref, values in decoded.items():
        np.testing.assert_array_equal(values, reference[ref.frame])


@pytest.mark.filterwarnings("ignore:The DICOM readers are highly experimental")
def test_enhanced_ct_supplemental_matches_nibabel():
    from nibabel.nicom import dicomwrappers

    path = _file("eCT_Supplemental.dcm")
    volume = read_dicom(path)
    assert volume.shape == (512, 512, 2)
    assert volume.metadata.modality == "CT"
    assert volume.metadata.units == ""  # RescaleType US: a perfusion map, not HU
    assert volume.metadata.window == (49.0, 102.0)
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.astype(np.int32) - 1024
    # IOP (-1,0,0, 0,1,0): the normal is (0, 0, -1), so frame 2 (z = -149 mm, 149 mm
    # along the normal) comes before frame 1 (z = -159 mm, 159 mm along it)
    np.testing.assert_array_equal(volume.array[:, :, 0], pixels[1].T)
    np.testing.assert_array_equal(volume.array[:, :, 1], pixels[0].T)
    assert volume.metadata.extra["frame_numbers"] == [1, 0]
    # nibabel: LPS affine with voxel order (row, column, slice) and slices ascending
    # along cross(column, row), the opposite of ours -> swap I/J and flip K
    wrapper = dicomwrappers.MultiframeWrapper(ds)  # nibabel picks it for enhanced MR only
    to_nibabel = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 1], [0, 0, 0, 1.0]])
    np.testing.assert_allclose(volume.lps_affine @ to_nibabel, wrapper.affine, atol=1e-4)
    np.testing.assert_array_equal(
        volume.array[:, :, ::-1].transpose(1, 0, 2), wrapper.get_unscaled_data().astype(int) - 1024
    )


DICOMDIR_ROOT = "dicomdirtests"


def _dicomdir() -> str:
    path = _file("DICOMDIR")
    assert os.path.basename(os.path.dirname(path)) == DICOMDIR_ROOT
    return path


def test_dicomdir_tests_index():
    series = index_dicom(_dicomdir())
    by_desc = {}
    for s in series:
        by_desc.setdefault(s.description, []).append(s)
    assert len(series) == 24
    (ct_gap,) = by_desc["Routine Brain"]
    assert any("gap" in w for w in ct_gap.warnings)
    (ct,) = by_desc["SmartScore - Gated 0.5 sec"]
    assert ct.n_slices == 5 and ct.slice_spacing == pytest.approx(2.5)
    assert ct.orientation == "LPS" and not ct.warnings
    scouts = by_desc["Scout"]
    assert len(scouts) == 2 and all(s.is_localizer for s in scouts)
    assert scouts[1].key == scouts[0].key + "#2"
    pilots = [s for s in by_desc["T/S/C RF FAST PILOT"] if s.uid.endswith(".136")]
    assert {s.orientation for s in pilots} == {"PIR", "LIP", "LPS"}
    cr = [s for s in series if s.modality == "CR"]
    assert len(cr) == 3 and not any(s.has_geometry for s in cr)
    with pytest.raises(AmbiguousSeriesError):
        read_dicom(_dicomdir())


def test_dicomdir_ct_matches_simpleitk():
    series = index_dicom(_dicomdir())
    (ct,) = [s for s in series if s.description == "SmartScore - Gated 0.5 sec"]
    volume = read_dicom(_dicomdir(), ct.key)
    ref_values, ref_lps = sitk_read(os.path.dirname(ct.files[0]))
    np.testing.assert_array_equal(volume.array, ref_values)
    np.testing.assert_allclose(volume.lps_affine, ref_lps, atol=1e-4)
    assert volume.metadata.units == "HU"


def test_dicomdir_ct_with_gap():
    series = index_dicom(_dicomdir())
    (ct,) = [s for s in series if s.description == "Routine Brain"]
    # 4 slices at -99.48, 103.02, 104.27, 105.52 mm with a 1.25 mm step: filling the
    # 202.5 mm gap would invent 161 slices for 4 real ones, refused even with allow_gaps
    for allow_gaps in (False, True):
        with pytest.raises(InconsistentSeriesError) as info:
            read_dicom_series(ct, allow_gaps=allow_gaps)
        message = str(info.value)
        assert "Routine Brain" in message and ct.key in message
        assert "202.5 mm" in message and "invent 161" in message
        assert "allow_gaps" not in message and "np." not in message
        assert info.value.path.endswith("17106")  # the lone slice
