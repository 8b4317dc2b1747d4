"""DICOM series in every orientation and voxel order, checked against SimpleITK
and against the ground truth they were written from."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_factory import make_affine, phantom, reorient_like, sitk_read, write_series

from napari_medseg.io.dicom import index_dicom, read_dicom

sitk = pytest.importorskip("SimpleITK")

CASES = {
    # name: (axcodes written, oblique rotation)
    "axial-LPS": ("LPS", None),
    "axial-RAS": ("RAS", None),
    "axial-LPI-reversed-slices": ("LPI", None),
    "sagittal-PSR": ("PSR", None),
    "coronal-LIA": ("LIA", None),
    "coronal-RSP": ("RSP", None),
    "oblique-LPS": ("LPS", (18.0, -11.0, 25.0)),
    "oblique-PSR": ("PSR", (-7.0, 14.0, 5.0)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_orientation_matches_simpleitk_and_truth(tmp_path, name):
    axcodes, oblique = CASES[name]
    affine = make_affine(axcodes, spacing=(0.7, 0.9, 2.5), oblique_deg=oblique)
    written = write_series(tmp_path, phantom((16, 12, 8), seed=1), affine, intercept=-1024)

    volume = read_dicom(tmp_path)

    # HU values and geometry against SimpleITK (arrays (K,J,I) LPS -> (I,J,K))
    ref_values, ref_lps = sitk_read(tmp_path)
    assert volume.array.shape == ref_values.shape == (16, 12, 8)
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, ref_values)
    np.testing.assert_allclose(volume.lps_affine, ref_lps, atol=1e-4)

    # against the truth it was written from, whatever slice direction was written
    values, aff = reorient_like(volume.array, volume.affine, written.affine)
    np.testing.assert_array_equal(values, written.hu)
    np.testing.assert_allclose(aff, written.affine, atol=1e-4)

    # slices always come out ascending along the slice normal
    lps = volume.lps_affine
    normal = np.cross(lps[:3, 0], lps[:3, 1])
    assert lps[:3, 2] @ normal > 0
    assert volume.metadata.warnings == []


@pytest.mark.parametrize(
    ("axcodes", "expected"),
    [("LPS", "LPS"), ("RAS", "RAS"), ("LPI", "LPS"), ("PSR", "PSL"), ("LIA", "LIP")],
)
def test_index_reports_orientation_code(tmp_path, axcodes, expected):
    write_series(tmp_path, phantom((8, 6, 4)), make_affine(axcodes))
    (series,) = index_dicom(tmp_path)
    assert series.orientation == expected
    assert read_dicom(tmp_path).orientation == expected


def test_series_info_fields(tmp_path):
    affine = make_affine("LPS", spacing=(0.7, 0.9, 2.5))
    written = write_series(
        tmp_path,
        phantom((16, 12, 8)),
        affine,
        series_description="abdomen",
        series_number=4,
        extra={"BodyPartExamined": "ABDOMEN", "StudyDescription": "CT chest"},
    )
    (series,) = index_dicom(tmp_path)
    assert series.key == series.uid == written.series_uid
    assert series.number == 4
    assert series.description == "abdomen"
    assert series.modality == "CT"
    assert (series.n_slices, series.rows, series.columns) == (8, 12, 16)
    assert series.pixel_spacing == pytest.approx((0.9, 0.7))
    assert series.slice_spacing == pytest.approx(2.5)
    assert series.body_part == "ABDOMEN"
    assert series.study_description == "CT chest"
    assert series.study_uid == written.study_uid
    assert series.transfer_syntaxes == ["Explicit VR Little Endian"]
    assert series.files == sorted(str(f) for f in written.files)
    assert not series.is_localizer and not series.is_multiframe
    assert series.warnings == []


def test_metadata(tmp_path):
    written = write_series(
        tmp_path,
        phantom((8, 6, 5)),
        make_affine("LPS"),
        window=(40, 400),
        series_description="venous",
        patient_id="P123",
    )
    volume = read_dicom(tmp_path)
    meta = volume.metadata
    assert meta.format == "dicom"
    assert meta.modality == "CT" and meta.units == "HU"
    assert meta.series_uid == written.series_uid
    assert meta.study_uid == written.study_uid
    assert meta.frame_of_reference_uid
    assert meta.series_description == "venous"
    assert meta.window == (40.0, 400.0)
    assert meta.qform_code == meta.sform_code == 1
    assert meta.files == [str(f) for f in written.files]  # slice order
    assert meta.extra["patient_id"] == "P123"
    assert meta.extra["instance_numbers"] == [1, 2, 3, 4, 5]
    assert meta.source == str(tmp_path)


def test_mr_units_and_dtype(tmp_path):
    stored = (phantom((8, 6, 4)) + 1000).astype(np.uint16)
    write_series(tmp_path, stored, make_affine("PSR"), modality="MR", intercept=0.0)
    volume = read_dicom(tmp_path)
    assert volume.metadata.modality == "MR"
    assert volume.metadata.units == ""
    assert volume.array.dtype == np.int16
    values, _ = reorient_like(volume.array, volume.affine, make_affine("PSR"))
    np.testing.assert_array_equal(values, stored)
