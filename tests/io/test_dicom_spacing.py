"""Slice spacing: gaps in short series, placement error of irregular spacing, tilt noise."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicom_factory import (
    make_affine,
    phantom,
    remove_slices,
    round_positions,
    set_attributes,
    set_positions,
    write_series,
)

from napari_medseg.errors import InconsistentSeriesError
from napari_medseg.io.dicom import index_dicom, read_dicom


def _ipp(path) -> np.ndarray:
    return np.array([float(v) for v in pydicom.dcmread(path).ImagePositionPatient])


def _assert_files_on_grid(volume, written, kept):
    """Every file that was kept sits exactly where the volume's affine puts its slice."""
    for k in kept:
        lps = volume.lps_affine @ np.array([0, 0, k, 1.0])
        np.testing.assert_allclose(lps[:3], _ipp(written.files[k]), atol=1e-4)


# ----------------------------------------------------------------- gaps in short series
@pytest.mark.parametrize(
    ("n_slices", "removed"),
    [
        (4, [1]),  # 3 files, steps 5.0 / 2.5: median 3.75 hid the gap
        (4, [2]),  # the reviewer's case: slice 1 placed at 3.75 instead of 2.5
        (5, [1, 2]),  # steps 7.5 / 2.5
        (6, [1, 3]),  # steps 5 / 5 / 2.5: most steps are gaps
        (8, [1, 3, 5]),  # steps 5 / 5 / 5 / 2.5 / 2.5: three gaps
        (6, [1, 3, 4]),  # steps 5 / 7.5: only SliceThickness (2.5) explains both
    ],
)
def test_gaps_found_when_most_steps_are_gaps(tmp_path, n_slices, removed):
    written = write_series(tmp_path, phantom((8, 6, n_slices)), make_affine(origin=(0, 0, 0)))
    remove_slices(written, removed)
    (series,) = index_dicom(tmp_path)
    assert any("gap" in w for w in series.warnings)
    assert any("allow_gaps=True" in w for w in series.warnings)
    with pytest.raises(InconsistentSeriesError) as info:
        read_dicom(tmp_path)
    assert "gap" in str(info.value) and "expected step 2.500 mm" in str(info.value)
    assert info.value.path.endswith(".dcm") and "allow_gaps" in info.value.fix

    volume = read_dicom(tmp_path, allow_gaps=True)
    kept = [k for k in range(n_slices) if k not in removed]
    assert volume.shape == (8, 6, n_slices)  # the true grid: same K, same 2.5 mm step
    np.testing.assert_allclose(volume.affine, written.affine, atol=1e-6)
    assert volume.metadata.extra["missing_slices"] == removed
    np.testing.assert_array_equal(volume.array[:, :, kept], written.hu[:, :, kept])
    _assert_files_on_grid(volume, written, kept)
    assert volume.metadata.extra["slice_spacing_mm"] == pytest.approx(2.5)


def test_gap_found_from_spacing_between_slices(tmp_path):
    # steps 5 / 7.5 and no SliceThickness: SpacingBetweenSlices 2.5 explains both
    written = write_series(tmp_path, phantom((8, 6, 6)), make_affine(origin=(0, 0, 0)))
    remove_slices(written, [1, 3, 4])
    kept = [written.files[k] for k in (0, 2, 5)]
    set_attributes(kept, SliceThickness=None, SpacingBetweenSlices="-2.5")  # sign ignored
    volume = read_dicom(tmp_path, allow_gaps=True)
    np.testing.assert_allclose(volume.affine, written.affine, atol=1e-6)
    assert volume.metadata.extra["missing_slices"] == [1, 3, 4]
    assert any("from SpacingBetweenSlices" in w for w in volume.metadata.warnings)


def test_regular_stack_twice_spacing_between_slices_is_only_a_note(tmp_path):
    # every other slice lost: each file is still at its true position, so no refusal
    written = write_series(tmp_path, phantom((8, 6, 5)), make_affine(origin=(0, 0, 0)))
    remove_slices(written, [1, 3])
    set_attributes([written.files[k] for k in (0, 2, 4)], SpacingBetweenSlices="2.5")
    volume = read_dicom(tmp_path)
    assert volume.shape == (8, 6, 3)
    assert volume.lps_affine[2, 2] == pytest.approx(5.0)
    (note,) = [w for w in volume.metadata.warnings if "SpacingBetweenSlices" in w]
    assert "2 x SpacingBetweenSlices" in note and "may be missing" in note


def test_thin_slices_far_apart_are_not_gaps(tmp_path):
    # high-resolution CT: 1 mm slices every 10 mm is a protocol, not missing data
    written = write_series(
        tmp_path,
        phantom((8, 6, 5)),
        make_affine(spacing=(0.7, 0.8, 10.0)),
        extra={"SliceThickness": "1"},
    )
    volume = read_dicom(tmp_path)
    np.testing.assert_allclose(volume.affine, written.affine, atol=1e-6)
    assert volume.metadata.warnings == []


def test_estimate_step_unit_cases():
    from napari_medseg.io.dicom.spacing import estimate_step

    assert estimate_step(np.array([5.0, 2.5])).step == pytest.approx(2.5)
    np.testing.assert_array_equal(estimate_step(np.array([5.0, 2.5])).counts, [2, 1])
    np.testing.assert_array_equal(estimate_step(np.array([5.0, 5.0, 2.5])).counts, [2, 2, 1])
    est = estimate_step(np.array([5.0, 7.5]), slice_thickness=2.5)
    assert est.step == pytest.approx(2.5) and est.source == "SliceThickness"
    np.testing.assert_array_equal(est.counts, [2, 3])
    # a header step that agrees with the measured one changes nothing
    est = estimate_step(np.array([2.5, 2.5, 5.0]), spacing_between_slices=2.5)
    assert est.source == "measured" and list(est.counts) == [1, 1, 2]
    # a regular stack never becomes gaps from SliceThickness alone
    est = estimate_step(np.array([10.0, 10.0]), slice_thickness=1.0)
    assert est.step == pytest.approx(10.0) and est.notes == []
    # SpacingBetweenSlices written as the gap (5 mm slices, 1 mm apart): no gaps
    est = estimate_step(np.array([6.0, 6.0]), spacing_between_slices=1.0, slice_thickness=5.0)
    assert est.step == pytest.approx(6.0) and est.counts.max() == 1
    assert "holds the gap between 5 mm slices" in est.notes[0]
    # one displaced slice (a short step then a long one) is not a stack of gaps
    est = estimate_step(np.array([2.5] * 8 + [1.5, 3.5] + [2.5] * 4))
    assert est.step == pytest.approx(2.5) and est.counts.max() == 1


def test_one_displaced_slice_is_irregular_spacing_not_gaps(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 12)), make_affine(origin=(0, 0, 0)))
    z = [2.5 * k for k in range(12)]
    z[6] -= 1.0  # 0.4 voxel toward slice 5: steps ..., 1.5, 3.5, ...
    set_positions(written.files, [(0.0, 0.0, v) for v in z])
    volume = read_dicom(tmp_path)
    assert volume.shape == (8, 6, 12) and volume.metadata.extra["missing_slices"] == []
    np.testing.assert_allclose(volume.affine, written.affine, atol=1e-6)
    (warning,) = [w for w in volume.metadata.warnings if "irregular slice spacing" in w]
    assert "up to 1.000 mm" in warning and "0.40 voxel" in warning


# ----------------------------------------------------------------- irregular spacing
def test_drifting_steps_misplace_more_than_half_a_voxel_and_raise(tmp_path):
    # 5 steps of 2.0 then 4 of 2.9 mm: no step is 1.5x another, but a uniform grid
    # of 2.4 mm puts slice 5 2 mm from its true position
    z = [0, 2, 4, 6, 8, 10, 12.9, 15.8, 18.7, 21.6]
    written = write_series(
        tmp_path, phantom((8, 6, len(z))), make_affine(spacing=(0.7, 0.8, 2.0), origin=(0, 0, 0))
    )
    set_positions(written.files, [(0.0, 0.0, v) for v in z])
    (series,) = index_dicom(tmp_path)
    assert any("irregular slice spacing" in w for w in series.warnings)
    assert any("allow_gaps=True" in w for w in series.warnings)
    with pytest.raises(InconsistentSeriesError) as info:
        read_dicom(tmp_path)
    assert info.value.path == str(written.files[5])
    assert "2.000 mm" in info.value.problem and "half a voxel" in info.value.problem
    assert info.value.fix

    volume = read_dicom(tmp_path, allow_gaps=True)
    placed = [(volume.lps_affine @ np.array([0, 0, k, 1.0]))[2] for k in range(len(z))]
    true_bound = np.abs(np.array(placed) - z).max()
    assert true_bound == pytest.approx(2.0, abs=1e-3)
    (warning,) = [w for w in volume.metadata.warnings if "irregular slice spacing" in w]
    assert "2.000 mm" in warning and "more than half a voxel" in warning


def test_irregular_spacing_warning_states_the_true_placement_error(tmp_path):
    # steps 4 x 2.0 then 4 x 2.2 mm: each step is within 0.1 mm of the 2.1 mm mean,
    # but slice 4 lands 0.4 mm from its true position
    z = [0, 2, 4, 6, 8, 10.2, 12.4, 14.6, 16.8]
    written = write_series(
        tmp_path, phantom((8, 6, len(z))), make_affine(spacing=(0.7, 0.8, 2.0), origin=(0, 0, 0))
    )
    set_positions(written.files, [(0.0, 0.0, v) for v in z])
    volume = read_dicom(tmp_path)
    (warning,) = [w for w in volume.metadata.warnings if "irregular slice spacing" in w]
    assert "up to 0.400 mm" in warning and str(written.files[4]) in warning
    np.testing.assert_array_equal(volume.array, written.hu)


# ----------------------------------------------------------------- tilt vs rounding
@pytest.mark.parametrize("n_slices", [3, 4])
def test_rounded_positions_on_short_oblique_series_are_not_tilt(tmp_path, n_slices):
    affine = make_affine(spacing=(0.5, 0.5, 0.5), oblique_deg=(17.3, -8.1, 4.2))
    written = write_series(tmp_path, phantom((8, 6, n_slices)), affine, modality="MR", intercept=0)
    round_positions(written.files, decimals=3)  # as GE writes them
    volume = read_dicom(tmp_path)
    assert volume.metadata.extra["gantry_tilt_deg"] == 0.0
    assert not any("gantry tilt" in w for w in volume.metadata.warnings)
    lps = volume.lps_affine
    normal = np.cross(lps[:3, 0], lps[:3, 1])
    normal /= np.linalg.norm(normal)
    # the slice axis is the normal: no shear left from rounding
    np.testing.assert_allclose(np.cross(lps[:3, 2], normal), 0.0, atol=1e-12)
    assert np.linalg.norm(lps[:3, 2]) == pytest.approx(0.5, abs=1e-3)
    np.testing.assert_allclose(volume.affine, written.affine, atol=2e-3)


def test_small_real_tilt_is_still_found(tmp_path):
    from dicom_factory import write_tilted

    written = write_tilted(tmp_path, tilt_deg=1.0, stored=phantom((8, 6, 16)))
    volume = read_dicom(tmp_path)
    assert volume.metadata.extra["gantry_tilt_deg"] == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(volume.affine, written.affine, atol=1e-6)


def test_single_slice_with_negative_spacing_between_slices(tmp_path):
    written = write_series(
        tmp_path, phantom((8, 6, 1)), make_affine(), extra={"SpacingBetweenSlices": "-3.0"}
    )
    volume = read_dicom(tmp_path)
    lps = volume.lps_affine
    normal = np.cross(lps[:3, 0], lps[:3, 1])
    assert lps[:3, 2] @ normal == pytest.approx(3.0 * np.linalg.norm(normal))  # not flipped
    np.testing.assert_allclose(volume.affine[:, [0, 1, 3]], written.affine[:, [0, 1, 3]])
