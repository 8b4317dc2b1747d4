"""Real-world folder quirks: order, duplicates, gaps, tilt, localizers, junk files."""

from __future__ import annotations

import os
import shutil
import threading

import numpy as np
import pydicom
import pytest
from dicom_factory import (
    add_duplicate,
    add_localizer,
    add_non_image_objects,
    copy_alone,
    copy_exact,
    make_affine,
    phantom,
    random_file_names,
    remove_slices,
    reorient_like,
    sitk_read,
    traced_peak,
    truncate,
    truncate_bytes,
    write_dicomdir,
    write_non_dicom,
    write_series,
    write_shuffled,
    write_tilted,
)

from napari_medseg.errors import (
    AmbiguousSeriesError,
    Cancelled,
    EmptyFolderError,
    IncompleteSeriesError,
    InconsistentSeriesError,
    NotAScanError,
    ScanReadError,
    SeriesNotFoundError,
    TruncatedFileError,
)
from napari_medseg.io.dicom import (
    index_dicom,
    read_dicom,
    read_dicom_series,
)

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _ipp(path) -> np.ndarray:
    return np.array([float(v) for v in pydicom.dcmread(path).ImagePositionPatient])


# ----------------------------------------------------------------- order
def test_shuffled_instance_numbers_and_names_sorted_by_position(tmp_path):
    written = write_shuffled(tmp_path, phantom((16, 12, 8), seed=2))
    numbers = [pydicom.dcmread(f).InstanceNumber for f in written.files]
    assert numbers != sorted(numbers)  # the quirk is really there
    volume = read_dicom(tmp_path)
    np.testing.assert_array_equal(volume.array, written.hu)
    np.testing.assert_allclose(volume.affine, written.affine, atol=1e-6)
    assert volume.metadata.extra["instance_numbers"] == numbers
    assert volume.metadata.files == [str(f) for f in written.files]


def test_instance_numbers_that_contradict_positions_are_ignored(tmp_path):
    # InstanceNumber runs opposite to position: a reader sorting by it would flip K
    written = write_series(tmp_path, phantom((8, 6, 6)), instance_numbers=[6, 5, 4, 3, 2, 1])
    volume = read_dicom(tmp_path)
    np.testing.assert_array_equal(volume.array, written.hu)


# ----------------------------------------------------------------- duplicates
def test_identical_duplicate_is_dropped_with_warning(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 5)))
    dup = add_duplicate(written, 2, identical=True)
    (series,) = index_dicom(tmp_path)
    assert series.n_slices == 6
    assert any("more than one image" in w for w in series.warnings)
    volume = read_dicom(tmp_path)
    assert volume.shape == (8, 6, 5)
    np.testing.assert_array_equal(volume.array, written.hu)
    assert any("duplicate" in w and str(dup) in w for w in volume.metadata.warnings)


def test_exact_copy_same_sop_uid_is_dropped(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 5)))
    copy_exact(written, 0)
    volume = read_dicom(tmp_path)
    assert volume.shape == (8, 6, 5)
    np.testing.assert_array_equal(volume.array, written.hu)
    assert any("duplicate" in w for w in volume.metadata.warnings)


def test_different_images_at_one_position_raise(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 5)))
    dup = add_duplicate(written, 3, identical=False)
    with pytest.raises(InconsistentSeriesError) as info:
        read_dicom(tmp_path)
    message = str(info.value)
    assert "different pixel values" in message
    assert str(dup) in message or str(written.files[3]) in message


def test_repeated_positions_split_by_echo_number(tmp_path):
    affine = make_affine("LPS")
    uid, study = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    echo1 = write_series(
        tmp_path,
        phantom((8, 6, 4), seed=1),
        affine,
        series_uid=uid,
        study_uid=study,
        modality="MR",
        intercept=0,
        extra={"EchoNumbers": 1, "EchoTime": 5},
        file_names=[f"e1_{k}.dcm" for k in range(4)],
    )
    echo2 = write_series(
        tmp_path,
        phantom((8, 6, 4), seed=2) + 7,
        affine,
        series_uid=uid,
        study_uid=study,
        modality="MR",
        intercept=0,
        extra={"EchoNumbers": 2, "EchoTime": 10},
        file_names=[f"e2_{k}.dcm" for k in range(4)],
        overwrite=True,
    )
    series = index_dicom(tmp_path)
    assert [s.key for s in series] == [uid, uid + "#2"]
    assert [s.split_by for s in series] == ["EchoNumbers=1", "EchoNumbers=2"]
    assert all(not s.warnings for s in series)
    np.testing.assert_array_equal(read_dicom(tmp_path, uid).array, echo1.hu)
    np.testing.assert_array_equal(read_dicom(tmp_path, uid + "#2").array, echo2.hu)
    with pytest.raises(AmbiguousSeriesError):
        read_dicom(tmp_path)


def test_split_parts_ordered_by_number_not_text(tmp_path):
    affine = make_affine("LPS")
    uid, study = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    parts = {}
    for number in (10, 2):
        parts[number] = write_series(
            tmp_path,
            phantom((8, 6, 4), seed=number),
            affine,
            series_uid=uid,
            study_uid=study,
            extra={"AcquisitionNumber": number},
            file_names=[f"a{number}_{k}.dcm" for k in range(4)],
            overwrite=True,
        )
    series = index_dicom(tmp_path)
    assert [s.split_by for s in series] == ["AcquisitionNumber=2", "AcquisitionNumber=10"]
    assert series[0].key == uid
    np.testing.assert_array_equal(read_dicom(tmp_path, uid).array, parts[2].hu)


def test_errors_without_frames_name_a_path_and_a_fix(tmp_path):
    from napari_medseg.io.dicom import pick_series
    from napari_medseg.io.dicom.stack import check_geometry

    with pytest.raises(EmptyFolderError) as info:
        pick_series([], None, tmp_path)
    assert info.value.path == str(tmp_path) and info.value.fix
    write_series(tmp_path, phantom((8, 6, 2)))
    (series,) = index_dicom(tmp_path)
    series.frames = []
    with pytest.raises(InconsistentSeriesError) as info:
        read_dicom_series(series)
    assert info.value.path == series.files[0] and info.value.fix
    with pytest.raises(InconsistentSeriesError) as info:
        check_geometry([], str(tmp_path))
    assert info.value.path == str(tmp_path) and info.value.fix


# ----------------------------------------------------------------- gaps and spacing
def test_gap_raises_naming_the_position(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 8)))
    remove_slices(written, [4])
    (series,) = index_dicom(tmp_path)
    assert any("gap" in w for w in series.warnings)
    with pytest.raises(InconsistentSeriesError) as info:
        read_dicom(tmp_path)
    message = str(info.value)
    assert "gap" in message and "5.000 mm" in message  # 2 x 2.5 mm step
    assert "allow_gaps" in message


def test_gap_allowed_fills_missing_slice_keeping_true_step(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 8)))
    remove_slices(written, [4, 5])
    volume = read_dicom(tmp_path, allow_gaps=True)
    assert volume.shape == (8, 6, 8)  # grid not stretched: same K, same step
    np.testing.assert_allclose(volume.affine, written.affine, atol=1e-6)
    keep = [0, 1, 2, 3, 6, 7]
    np.testing.assert_array_equal(volume.array[:, :, keep], written.hu[:, :, keep])
    assert volume.metadata.extra["missing_slices"] == [4, 5]
    assert np.all(volume.array[:, :, 4] == written.hu[:, :, keep].min())
    assert any("missing slice" in w for w in volume.metadata.warnings)


def test_irregular_spacing_warns(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 6)))
    ds = pydicom.dcmread(written.files[3])
    ipp = [float(v) for v in ds.ImagePositionPatient]
    ipp[2] += 0.4  # slice 3 moved 0.4 mm along z (step 2.5 -> 2.9 / 2.1)
    ds.ImagePositionPatient = ipp
    ds.save_as(written.files[3], enforce_file_format=True)
    volume = read_dicom(tmp_path)
    (warning,) = [w for w in volume.metadata.warnings if "irregular slice spacing" in w]
    assert "up to 0.400 mm" in warning  # the true placement error of slice 3
    np.testing.assert_array_equal(volume.array, written.hu)


def test_single_slice(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 1)))
    volume = read_dicom(tmp_path)
    assert volume.shape == (8, 6, 1)
    np.testing.assert_allclose(volume.affine, written.affine, atol=1e-6)  # thickness 2.5
    np.testing.assert_array_equal(volume.array, written.hu)


# ----------------------------------------------------------------- gantry tilt
def test_gantry_tilt_keeps_sheared_affine(tmp_path):
    written = write_tilted(tmp_path, tilt_deg=15.0, stored=phantom((16, 12, 8)))
    volume = read_dicom(tmp_path)
    # every slice origin is exactly the IPP written in its file
    for k, path in enumerate(written.files):
        lps = volume.lps_affine @ np.array([0, 0, k, 1.0])
        np.testing.assert_allclose(lps[:3], _ipp(path), atol=1e-5)
    np.testing.assert_allclose(volume.affine, written.affine, atol=1e-6)
    np.testing.assert_array_equal(volume.array, written.hu)
    assert volume.metadata.extra["gantry_tilt_deg"] == pytest.approx(15.0, abs=1e-3)
    (warning,) = [w for w in volume.metadata.warnings if "gantry tilt" in w]
    assert "15.00 deg" in warning and "GantryDetectorTilt 15" in warning
    (series,) = index_dicom(tmp_path)
    assert any("gantry tilt" in w for w in series.warnings)
    # SimpleITK drops the shear: same in-plane axes, but its K axis is the normal
    _, sitk_lps = sitk_read(tmp_path)
    np.testing.assert_allclose(sitk_lps[:3, :2], volume.lps_affine[:3, :2], atol=1e-5)
    assert not np.allclose(sitk_lps[:3, 2], volume.lps_affine[:3, 2], atol=1e-2)


# ----------------------------------------------------------------- mixed folders
def test_localizer_in_same_series_is_split_and_skipped_by_default(tmp_path):
    written = write_series(tmp_path, phantom((16, 12, 8)))
    add_localizer(tmp_path, series_uid=written.series_uid, study_uid=written.study_uid, n_images=2)
    series = index_dicom(tmp_path)
    assert [s.key for s in series] == [written.series_uid, written.series_uid + "#2"]
    main, loc = series
    assert not main.is_localizer and loc.is_localizer
    assert loc.n_slices == 2 and "localizer" in loc.split_by
    volume = read_dicom(tmp_path)
    np.testing.assert_array_equal(volume.array, written.hu)
    # the UID alone names the non-localizer part
    assert read_dicom(tmp_path, written.series_uid).shape == (16, 12, 8)


def test_localizer_as_own_series_is_ignored_by_default(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 4)))
    loc = add_localizer(tmp_path, study_uid=written.study_uid)
    keys = {s.key for s in index_dicom(tmp_path)}
    assert keys == {written.series_uid, loc.series_uid}
    np.testing.assert_array_equal(read_dicom(tmp_path).array, written.hu)
    assert read_dicom(tmp_path, loc.series_uid).shape == (20, 10, 1)


def test_non_image_objects_are_skipped_and_recorded(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 4)))
    objects = add_non_image_objects(tmp_path, written.study_uid)
    junk = write_non_dicom(tmp_path / "notes.txt")
    series = index_dicom(tmp_path)
    assert [s.key for s in series] == [written.series_uid]
    skipped = {s.path: s for s in series.skipped}
    for kind, path in objects.items():
        assert skipped[str(path)].kind == "non-image", kind
    assert "Segmentation" in skipped[str(objects["SEG"])].reason
    assert skipped[str(junk)].kind == "not-dicom"
    np.testing.assert_array_equal(read_dicom(tmp_path).array, written.hu)


def test_several_series_need_a_key(tmp_path):
    study = pydicom.uid.generate_uid()
    b = write_series(
        tmp_path / "b",
        phantom((8, 6, 5), seed=2),
        make_affine("PSR"),
        series_number=3,
        series_description="venous",
        study_uid=study,
    )
    a = write_series(
        tmp_path / "a",
        phantom((8, 6, 4), seed=1),
        series_number=2,
        series_description="arterial",
        study_uid=study,
    )
    with pytest.raises(AmbiguousSeriesError) as info:
        read_dicom(tmp_path)
    message = str(info.value)
    assert a.series_uid in message and b.series_uid in message
    assert "arterial" in message and "--series" in message
    np.testing.assert_array_equal(read_dicom(tmp_path, a.series_uid).array, a.hu)
    assert read_dicom(tmp_path, b.series_uid).shape == (8, 6, 5)
    with pytest.raises(SeriesNotFoundError) as info:
        read_dicom(tmp_path, "1.2.3.4")
    assert "1.2.3.4" in str(info.value) and a.series_uid in str(info.value)
    series = index_dicom(tmp_path)
    assert [s.number for s in series] == [2, 3]


def test_dicomdir(tmp_path):
    written = write_series(tmp_path / "src", phantom((8, 6, 5)))
    add_localizer(tmp_path / "src", study_uid=written.study_uid)
    dicomdir = write_dicomdir(written.files, tmp_path / "media")
    series = index_dicom(dicomdir)
    assert [s.key for s in series] == [written.series_uid]
    assert all(f.startswith(str(tmp_path / "media")) for f in series[0].files)
    volume = read_dicom(dicomdir)
    np.testing.assert_array_equal(volume.array, written.hu)
    np.testing.assert_allclose(volume.affine, written.affine, atol=1e-6)
    # the folder holding the DICOMDIR reads the same; the DICOMDIR itself is skipped
    folder_index = index_dicom(tmp_path / "media")
    assert [s.kind for s in folder_index.skipped] == ["dicomdir"]
    np.testing.assert_array_equal(read_dicom(tmp_path / "media").array, written.hu)


def test_nested_folders_and_hidden_files(tmp_path):
    written = write_series(tmp_path / "patient" / "study" / "series", phantom((8, 6, 4)))
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01junk")
    np.testing.assert_array_equal(read_dicom(tmp_path).array, written.hu)


# ----------------------------------------------------------------- bad input
def test_truncated_header_file_is_skipped_in_folder(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 6)))
    extra = tmp_path / "cut.dcm"
    shutil.copyfile(written.files[0], extra)
    truncate(extra, keep_fraction=0.2)
    series = index_dicom(tmp_path)
    assert [s.kind for s in series.skipped] == ["unreadable"]
    # "cut.dcm" sorts before the series' first file: it may be its lost first slice
    with pytest.raises(IncompleteSeriesError, match="cut.dcm"):
        read_dicom(tmp_path)
    volume = read_dicom(tmp_path, allow_gaps=True)
    np.testing.assert_array_equal(volume.array, written.hu)
    assert any("cut.dcm" in w for w in volume.metadata.warnings)
    with pytest.raises(TruncatedFileError) as info:
        read_dicom(extra)
    assert str(extra) in str(info.value)


def test_truncated_pixel_data_raises_naming_file(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 6)))
    truncate_bytes(written.files[2], 10)
    (series,) = index_dicom(tmp_path)
    assert any("truncated" in w for w in series.warnings)
    with pytest.raises(TruncatedFileError) as info:
        read_dicom_series(series)
    assert str(written.files[2]) in str(info.value)
    assert "needs 96" in str(info.value) or "ends" in str(info.value)


def test_single_explicit_bad_files(tmp_path):
    junk = write_non_dicom(tmp_path / "a.dcm")
    with pytest.raises(NotAScanError) as info:
        index_dicom(junk)
    assert str(junk) in str(info.value)
    sr = add_non_image_objects(tmp_path)["SR"]
    with pytest.raises(NotAScanError, match="Basic Text SR"):
        read_dicom(sr)
    with pytest.raises(ScanReadError, match="no such file"):
        index_dicom(tmp_path / "missing")


def test_empty_and_image_less_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyFolderError):
        read_dicom(tmp_path / "empty")
    (tmp_path / "objects").mkdir()
    add_non_image_objects(tmp_path / "objects")
    write_non_dicom(tmp_path / "objects" / "readme.txt")
    with pytest.raises(EmptyFolderError) as info:
        index_dicom(tmp_path / "objects")
    assert "RT Structure Set" in str(info.value)


def test_missing_geometry_is_reported_then_refused(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 4)))
    for path in written.files:
        ds = pydicom.dcmread(path)
        del ds.ImageOrientationPatient
        ds.save_as(path, enforce_file_format=True)
    (series,) = index_dicom(tmp_path)
    assert not series.has_geometry and series.orientation == ""
    with pytest.raises(InconsistentSeriesError, match="ImageOrientationPatient"):
        read_dicom_series(series)


def test_mixed_pixel_spacing_raises(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 4)))
    ds = pydicom.dcmread(written.files[1])
    ds.PixelSpacing = [1.0, 1.0]
    ds.save_as(written.files[1], enforce_file_format=True)
    with pytest.raises(InconsistentSeriesError, match="PixelSpacing") as info:
        read_dicom(tmp_path)
    assert str(written.files[1]) in str(info.value)


def test_slices_off_a_line_raise(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 5)))
    ds = pydicom.dcmread(written.files[2])
    ipp = [float(v) for v in ds.ImagePositionPatient]
    ipp[0] += 3.0  # 3 mm sideways: not a shear, a broken stack
    ds.ImagePositionPatient = ipp
    ds.save_as(written.files[2], enforce_file_format=True)
    with pytest.raises(InconsistentSeriesError, match="off the line"):
        read_dicom(tmp_path)


# ----------------------------------------------------------------- values and dtypes
def test_non_integral_slope_gives_float32(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 4)), slope=0.5, intercept=-1024.25)
    volume = read_dicom(tmp_path)
    assert volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array, written.hu, rtol=1e-6)


def test_unsigned_stored_with_full_range(tmp_path):
    stored = (phantom((8, 6, 4)).astype(np.int32) + 40000).astype(np.uint16)
    write_series(tmp_path, stored, modality="MR", intercept=0.0)
    volume = read_dicom(tmp_path)
    assert volume.array.dtype == np.uint16  # does not fit int16
    np.testing.assert_array_equal(volume.array, stored)


def test_signed_stored_with_intercept_picks_int16_from_actual_range(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 4)), intercept=-1024.0)
    volume = read_dicom(tmp_path)
    # 16 stored bits + intercept could overflow int16, the actual values do not
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, written.hu)


def test_values_beyond_int16_widen_to_int32(tmp_path):
    stored = np.full((8, 6, 4), 32000, dtype=np.int16)
    stored[0, 0, 0] = -3000
    write_series(tmp_path, stored, intercept=2000.0)
    volume = read_dicom(tmp_path)
    assert volume.array.dtype == np.int32  # [-1000, 34000] fits neither int16 nor uint16
    assert volume.array.max() == 34000 and volume.array.min() == -1000


def test_bits_stored_12_rescaled_in_place(tmp_path):
    stored = (phantom((8, 6, 4)) % 4000 + 10).astype(np.uint16)
    written = write_series(
        tmp_path,
        stored,
        intercept=-1024.0,
        extra={"BitsStored": 12, "HighBit": 11, "PixelRepresentation": 0},
    )
    volume = read_dicom(tmp_path)
    assert volume.array.dtype == np.int16  # [0, 4095] - 1024 always fits: no second pass
    np.testing.assert_array_equal(volume.array, written.hu)


def test_rescaled_values_beyond_int16_in_some_slices_give_uint16(tmp_path):
    stored = np.zeros((8, 6, 3), dtype=np.int16)
    stored[:, :, 0] = 100  # 30100: fits the int16 guess, converted on arrival
    stored[:, :, 1] = 20000  # 50000: does not fit int16, settled at the end
    stored[:, :, 2] = 5
    write_series(tmp_path, stored, intercept=30000.0)
    volume = read_dicom(tmp_path)
    assert volume.array.dtype == np.uint16
    np.testing.assert_array_equal(volume.array[0, 0], [30100, 50000, 30005])


def test_two_series_interleaved_in_one_folder(tmp_path):
    study = pydicom.uid.generate_uid()
    a = write_series(
        tmp_path,
        phantom((8, 6, 4), seed=1),
        study_uid=study,
        series_number=1,
        file_names=random_file_names(4, seed=1),
    )
    b = write_series(
        tmp_path,
        phantom((8, 6, 6), seed=2),
        make_affine("LIA"),
        study_uid=study,
        series_number=2,
        file_names=random_file_names(6, seed=2),
        overwrite=True,
    )
    series = index_dicom(tmp_path)
    assert [s.key for s in series] == [a.series_uid, b.series_uid]
    assert [s.n_slices for s in series] == [4, 6]
    np.testing.assert_array_equal(read_dicom(tmp_path, a.series_uid).array, a.hu)
    volume = read_dicom(tmp_path, b.series_uid)
    values, _ = reorient_like(volume.array, volume.affine, b.affine)
    np.testing.assert_array_equal(values, b.hu)


def test_bits_stored_12_ignores_unused_high_bits(tmp_path):
    stored = (phantom((8, 6, 4)) % 3000 - 1500).astype(np.int16)  # fits 12-bit signed
    written = write_series(tmp_path, stored, intercept=0.0)
    for path in written.files:
        ds = pydicom.dcmread(path)
        raw = np.frombuffer(ds.PixelData, dtype="<u2")
        ds.PixelData = ((raw & 0x0FFF) | 0x6000).astype("<u2").tobytes()  # junk in bits 13-15
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.save_as(path, enforce_file_format=True)
    volume = read_dicom(tmp_path)
    np.testing.assert_array_equal(volume.array, stored)
    assert stored.min() < 0
    # pydicom agrees
    np.testing.assert_array_equal(pydicom.dcmread(written.files[0]).pixel_array, stored[:, :, 0].T)


def test_implicit_and_big_endian_native(tmp_path):
    from pydicom.uid import ImplicitVRLittleEndian

    written = write_series(
        tmp_path / "impl", phantom((8, 6, 4)), transfer_syntax=ImplicitVRLittleEndian
    )
    np.testing.assert_array_equal(read_dicom(tmp_path / "impl").array, written.hu)
    big = copy_alone(pydicom.data.get_testdata_file("MR_small_bigendian.dcm"), tmp_path / "be")
    little = copy_alone(pydicom.data.get_testdata_file("MR_small.dcm"), tmp_path / "le")
    np.testing.assert_array_equal(read_dicom(big).array, read_dicom(little).array)


# ----------------------------------------------------------------- progress and cancel
def test_progress_reaches_total(tmp_path):
    write_series(tmp_path, phantom((8, 6, 7)))
    calls = []
    read_dicom(tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 7) and calls[-1] == (7, 7)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    index_calls = []
    index_dicom(tmp_path, progress=lambda d, t: index_calls.append((d, t)))
    assert index_calls[-1] == (7, 7)


def test_cancel_raises(tmp_path):
    write_series(tmp_path, phantom((8, 6, 40)))
    (series,) = index_dicom(tmp_path)
    event = threading.Event()

    def progress(done, total):
        if done:
            event.set()

    with pytest.raises(Cancelled):
        read_dicom_series(series, progress=progress, cancel=event)
    event.set()
    with pytest.raises(Cancelled):
        read_dicom_series(series, cancel=event)


def test_peak_memory_at_most_twice_the_result(tmp_path):
    stored = np.tile(phantom((32, 32, 1)), (2, 2, 48))  # 64 x 64 x 48 int16
    write_series(tmp_path, stored, intercept=-1024.0)
    (series,) = index_dicom(tmp_path)
    volume, peak = traced_peak(lambda: read_dicom_series(series))
    assert volume.array.nbytes == 64 * 64 * 48 * 2
    assert peak <= 2 * volume.array.nbytes
    assert not volume.array.flags.owndata  # transposed view of the one block
    assert os.path.exists(series.files[0])
