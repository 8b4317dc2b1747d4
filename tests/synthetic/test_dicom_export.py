"""write_dicom_series: headers, values, syntaxes, safety."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicom_factory import make_affine, phantom, tilted_affine
from pydicom.uid import UID, JPEG2000Lossless, JPEGLSLossless, RLELossless

from napari_medseg.synthetic.dicom_series import write_dicom_series

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def test_headers_follow_the_affine(tmp_path):
    affine = make_affine("LPS", spacing=(0.6, 0.9, 2.0), oblique_deg=(20.0, -15.0, 30.0))
    stored = phantom((16, 12, 5))
    files = write_dicom_series(stored, affine, tmp_path, series_description="obl")
    lps = RAS_TO_LPS @ affine
    row = lps[:3, 0] / 0.6
    col = lps[:3, 1] / 0.9
    assert [f.name for f in files] == [f"IM{k:05d}.dcm" for k in range(1, 6)]
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)  # a valid Part 10 file: no force needed
        np.testing.assert_allclose(
            [float(v) for v in ds.ImageOrientationPatient], [*row, *col], atol=1e-9
        )
        np.testing.assert_allclose(
            [float(v) for v in ds.ImagePositionPatient], lps[:3, 2] * k + lps[:3, 3], atol=1e-9
        )
        np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [0.9, 0.6])
        assert float(ds.SliceThickness) == pytest.approx(2.0)
        assert (ds.Rows, ds.Columns) == (12, 16)
        np.testing.assert_array_equal(ds.pixel_array, stored[:, :, k].T)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert UID(ds.SOPInstanceUID).is_valid and UID(ds.SeriesInstanceUID).is_valid
        assert ds.InstanceNumber == k + 1
        assert ds.SeriesDescription == "obl"
        assert ds.RescaleType == "HU"


def test_tilt_gives_tilted_positions_but_axial_planes(tmp_path):
    files = write_dicom_series(phantom((8, 6, 4)), tilted_affine(20.0), tmp_path)
    ipp = np.array([[float(v) for v in pydicom.dcmread(f).ImagePositionPatient] for f in files])
    iop = [float(v) for v in pydicom.dcmread(files[0]).ImageOrientationPatient]
    np.testing.assert_allclose(iop, [1, 0, 0, 0, 1, 0], atol=1e-12)
    steps = np.diff(ipp, axis=0)
    np.testing.assert_allclose(steps[:, 2], 2.5)
    np.testing.assert_allclose(steps[:, 1], 2.5 * np.tan(np.radians(20.0)))  # LPS +y
    assert float(pydicom.dcmread(files[0]).SliceThickness) == pytest.approx(2.5)


def test_float_input_and_mr(tmp_path):
    hu = np.linspace(-100.0, 300.0, 8 * 6 * 3).reshape(8, 6, 3)
    files = write_dicom_series(
        hu,
        np.eye(4),
        tmp_path,
        modality="MR",
        rescale_slope=0.5,
        rescale_intercept=-100.0,
        window=(50, 350),
    )
    ds = pydicom.dcmread(files[1])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert float(ds.RescaleSlope) == 0.5 and float(ds.WindowWidth) == 350
    restored = ds.pixel_array.T * 0.5 - 100.0
    np.testing.assert_allclose(restored, hu[:, :, 1], atol=0.25)


def test_mr_identity_lut_not_written(tmp_path):
    files = write_dicom_series(phantom((4, 4, 2)), np.eye(4), tmp_path, modality="MR")
    assert "RescaleSlope" not in pydicom.dcmread(files[0])


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_syntaxes_round_trip(tmp_path, syntax):
    stored = phantom((32, 40, 3)) - 500
    files = write_dicom_series(stored, np.eye(4), tmp_path, transfer_syntax=syntax)
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == syntax
        np.testing.assert_array_equal(ds.pixel_array, stored[:, :, k].T)


def test_jpeg2000_needs_32_pixels(tmp_path):
    with pytest.raises(ValueError, match="32 x 32"):
        write_dicom_series(
            phantom((16, 12, 2)), np.eye(4), tmp_path, transfer_syntax=JPEG2000Lossless
        )


def test_jpeg_ls_needs_pyjpegls(tmp_path):
    from pydicom.pixels import get_encoder

    if get_encoder(JPEGLSLossless).is_available:
        files = write_dicom_series(
            phantom((8, 6, 2)), np.eye(4), tmp_path, transfer_syntax=JPEGLSLossless
        )
        assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == JPEGLSLossless
    else:
        with pytest.raises(ValueError, match="pyjpegls"):
            write_dicom_series(
                phantom((8, 6, 2)), np.eye(4), tmp_path, transfer_syntax=JPEGLSLossless
            )


def test_refuses_non_empty_folder_and_leaves_no_temp_files(tmp_path):
    write_dicom_series(phantom((4, 4, 2)), np.eye(4), tmp_path)
    with pytest.raises(FileExistsError, match="not empty"):
        write_dicom_series(phantom((4, 4, 2)), np.eye(4), tmp_path)
    write_dicom_series(
        phantom((4, 4, 3)), np.eye(4), tmp_path, overwrite=True, file_names=["a", "b", "c"]
    )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["IM00001.dcm", "IM00002.dcm", "a", "b", "c"]


@pytest.mark.parametrize("protect_folder", [True, False])
def test_overwrite_refuses_protected_sources(tmp_path, protect_folder):
    from napari_medseg.errors import OverwriteSourceError

    files = write_dicom_series(phantom((4, 4, 2)), np.eye(4), tmp_path)
    before = [f.read_bytes() for f in files]
    protect = [tmp_path] if protect_folder else [files[1]]
    with pytest.raises(OverwriteSourceError) as info:
        write_dicom_series(
            phantom((4, 4, 2)) + 1, np.eye(4), tmp_path, overwrite=True, protect=protect
        )
    assert str(tmp_path) in str(info.value)
    assert [f.read_bytes() for f in files] == before  # nothing replaced, not even file 0
    # other sources do not get in the way
    write_dicom_series(
        phantom((4, 4, 2)) + 1, np.eye(4), tmp_path, overwrite=True, protect=[tmp_path / "x"]
    )
    assert [f.read_bytes() for f in files] != before


def test_deterministic_uids_and_custom_numbers(tmp_path):
    uid = pydicom.uid.generate_uid()
    a = write_dicom_series(
        phantom((4, 4, 3)), np.eye(4), tmp_path / "a", series_uid=uid, instance_numbers=[7, 3, 5]
    )
    b = write_dicom_series(phantom((4, 4, 3)), np.eye(4), tmp_path / "b", series_uid=uid)
    sop = [pydicom.dcmread(f).SOPInstanceUID for f in a]
    assert sop == [pydicom.dcmread(f).SOPInstanceUID for f in b]
    assert len(set(sop)) == 3
    assert [pydicom.dcmread(f).InstanceNumber for f in a] == [7, 3, 5]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"modality": "PT"}, "modality"),
        ({"file_names": ["a", "a"]}, "unique"),
        ({"file_names": ["../x", "y"]}, "plain name"),
        ({"instance_numbers": [1]}, "one entry per slice"),
        ({"transfer_syntax": "1.2.840.10008.1.2.4.100"}, "cannot write"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_dicom_series(phantom((4, 4, 2)), np.eye(4), tmp_path, **kwargs)


def test_bad_affine_and_values(tmp_path):
    sheared_plane = np.eye(4)
    sheared_plane[0, 1] = 0.5
    with pytest.raises(ValueError, match="perpendicular"):
        write_dicom_series(phantom((4, 4, 2)), sheared_plane, tmp_path)
    with pytest.raises(ValueError, match="16 bits"):
        write_dicom_series(np.full((4, 4, 2), 70000), np.eye(4), tmp_path)
