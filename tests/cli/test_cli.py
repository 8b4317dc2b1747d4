"""The ``medseg`` command as a user runs it: a real subprocess on real files."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from geometry_cases import make_affine

from napari_medseg.samples import sample_path
from napari_medseg.synthetic.dicom_series import write_dicom_series

SHAPE = (12, 10, 6)


def medseg(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "napari_medseg.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )


@pytest.fixture
def ct_series(tmp_path):
    affine = make_affine("LPS", spacing=(0.7, 0.7, 2.0), origin=(40.0, 30.0, -60.0))
    stored = np.random.default_rng(0).integers(0, 2500, SHAPE).astype(np.int16)
    hu = stored.astype(np.int32) - 1024  # integer input = stored values; HU via the intercept
    folder = tmp_path / "ct"
    write_dicom_series(
        stored,
        affine,
        folder,
        modality="CT",
        rescale_intercept=-1024.0,
        series_description="Chest 2mm",
    )
    return folder, hu, affine


def test_info_lists_the_series(ct_series):
    folder, _, _ = ct_series
    result = medseg("info", folder, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (series,) = report["series"]
    assert series["n_slices"] == SHAPE[2]
    assert (series["rows"], series["columns"]) == (SHAPE[1], SHAPE[0])
    assert series["modality"] == "CT"
    assert series["orientation"] == "LPS"
    assert series["description"] == "Chest 2mm"
    text = medseg("info", folder)
    assert "Chest 2mm" in text.stdout and f"{SHAPE[2]} slices" in text.stdout


def test_convert_matches_simpleitk(ct_series, tmp_path):
    folder, hu, affine = ct_series
    out = tmp_path / "ct.nii.gz"
    result = medseg("convert", folder, out)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    image = nib.load(out)
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), hu)
    np.testing.assert_allclose(image.affine, affine, atol=1e-4)
    reference = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    np.testing.assert_array_equal(
        np.asanyarray(image.dataobj).transpose(2, 1, 0), sitk.GetArrayFromImage(reference)
    )
    lps_origin = np.diag([-1, -1, 1]) @ image.affine[:3, 3]
    np.testing.assert_allclose(lps_origin, reference.GetOrigin(), atol=1e-4)
    info = json.loads(medseg("info", out, "--json").stdout)
    assert info["shape"] == list(SHAPE) and info["orientation"] == "LPS"


def test_convert_refuses_to_replace_an_existing_file(ct_series, tmp_path):
    folder, _, _ = ct_series
    out = tmp_path / "result.nii.gz"
    out.write_bytes(b"the user's earlier result")
    result = medseg("convert", folder, out)
    assert result.returncode == 2
    assert "already exists" in result.stderr and str(out) in result.stderr
    assert out.read_bytes() == b"the user's earlier result"


def test_convert_never_writes_over_the_source(tmp_path):
    source = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.int16), np.eye(4)), source)
    before = source.read_bytes()
    result = medseg("convert", source, source, "--overwrite")
    assert result.returncode == 2
    assert "never overwritten" in result.stderr
    # without --overwrite too, and --overwrite is not the advice (it would not help)
    result = medseg("convert", source, source)
    assert result.returncode == 2 and "never overwritten" in result.stderr
    assert "--overwrite" not in result.stderr
    assert source.read_bytes() == before


def test_bad_input_names_the_file(tmp_path):
    bogus = tmp_path / "report.txt"
    bogus.write_text("not a scan at all")
    result = medseg("info", bogus)
    assert result.returncode == 2
    assert str(bogus) in result.stderr
    assert "Traceback" not in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = medseg("convert", empty, tmp_path / "x.nii.gz")
    assert result.returncode == 2 and str(empty) in result.stderr


def test_two_series_need_a_choice(ct_series, tmp_path):
    folder, hu, affine = ct_series
    write_dicom_series(
        hu[:, :, :3].astype(float),
        affine,
        folder / "second",
        modality="CT",
        series_description="Second",
    )
    result = medseg("convert", folder, tmp_path / "x.nii.gz")
    assert result.returncode == 2 and "--series" in result.stderr
    listing = json.loads(medseg("info", folder, "--json").stdout)["series"]
    second = next(s for s in listing if s["description"] == "Second")
    out = tmp_path / "second.nii.gz"
    assert medseg("convert", folder, out, "--series", second["key"]).returncode == 0
    assert nib.load(out).shape == (SHAPE[0], SHAPE[1], 3)


def test_gap_is_refused_unless_allowed(ct_series, tmp_path):
    folder, hu, affine = ct_series
    files = sorted(folder.iterdir())
    missing = next(f for f in files if f.read_bytes() and _slice_index(f, affine) == 3)
    missing.unlink()
    out = tmp_path / "gap.nii.gz"
    refused = medseg("convert", folder, out)
    assert refused.returncode == 2 and "gap" in refused.stderr.lower()
    assert not out.exists()
    allowed = medseg("convert", folder, out, "--allow-gaps")
    assert allowed.returncode == 0, allowed.stderr
    assert "warning" in allowed.stderr.lower()
    data = np.asanyarray(nib.load(out).dataobj)
    assert data.shape == SHAPE  # the missing slice keeps its place: nothing is stretched
    np.testing.assert_array_equal(data[:, :, 4], hu[:, :, 4])
    assert np.all(data[:, :, 3] == data.min())


def _slice_index(path, affine) -> int:
    import pydicom

    position = np.asarray(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient)
    ras = np.diag([-1.0, -1.0, 1.0]) @ position
    return int(round(np.linalg.solve(affine[:3, :3], ras - affine[:3, 3])[2]))


def test_convert_keeps_a_qform_that_differs_from_the_sform(tmp_path):
    sform = make_affine("LPS")
    qform = np.diag([2.0, 2.0, 2.0, 1.0])
    image = nib.Nifti1Image(np.zeros(SHAPE, np.int16), sform)
    image.header.set_sform(sform, code=2)
    image.header.set_qform(qform, code=1)
    nib.save(image, tmp_path / "in.nii.gz")
    assert medseg("convert", tmp_path / "in.nii.gz", tmp_path / "out.nii.gz").returncode == 0
    header = nib.load(tmp_path / "out.nii.gz").header
    np.testing.assert_allclose(header.get_qform(), qform, atol=1e-5)
    np.testing.assert_allclose(header.get_sform(), sform, atol=1e-5)
    assert (int(header["qform_code"]), int(header["sform_code"])) == (1, 2)


def test_write_failure_is_one_line_naming_the_file(ct_series, tmp_path):
    folder, _, _ = ct_series
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    result = medseg("convert", folder, blocker / "out.nii.gz")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and str(blocker / "out.nii.gz") in result.stderr


def test_tilted_series_converts_exactly_or_resampled_for_itk(tmp_path):
    affine = make_affine("LPS", spacing=(0.7, 0.7, 2.0), origin=(40.0, 30.0, -60.0))
    tilt = np.radians(12.0)
    affine[:3, 2] = 2.0 * np.array([0.0, np.sin(tilt), np.cos(tilt)])
    write_dicom_series(
        np.full(SHAPE, 1000, np.int16), affine, tmp_path / "tilt", extra={"GantryDetectorTilt": 12}
    )
    exact = medseg("convert", tmp_path / "tilt", tmp_path / "exact.nii.gz")
    assert exact.returncode == 0 and "--resample-tilt" in exact.stderr
    np.testing.assert_allclose(nib.load(tmp_path / "exact.nii.gz").affine, affine, atol=1e-4)
    out = tmp_path / "straight.nii.gz"
    resampled = medseg("convert", tmp_path / "tilt", out, "--resample-tilt")
    assert resampled.returncode == 0, resampled.stderr
    image = sitk.ReadImage(str(out))  # ITK reads it now, with slices along the normal
    np.testing.assert_allclose(np.array(image.GetDirection()).reshape(3, 3), np.eye(3), atol=1e-6)
    np.testing.assert_allclose(image.GetSpacing()[2], 2.0 * np.cos(tilt), atol=1e-4)


def test_demo_without_a_usable_display_runs_headless(tmp_path):
    """A DISPLAY that points at no X server must not crash the demo: it runs headless."""
    import os

    env = {**os.environ, "DISPLAY": ":987"}
    out = tmp_path / "demo"
    result = medseg("demo", "--out", out, env=env)
    assert result.returncode == 0, result.stderr
    assert "running the headless demo" in result.stdout
    assert "same voxels: True" in result.stdout
    converted = out / "chest_ct_from_dicom.nii.gz"
    sample = nib.load(sample_path("chest_ct"))
    np.testing.assert_array_equal(np.asanyarray(nib.load(converted).dataobj), sample.dataobj)
    np.testing.assert_allclose(nib.load(converted).affine, sample.affine, atol=1e-4)
    volume_line = next(line for line in result.stdout.splitlines() if "Tumour contour" in line)
    labels = nib.load(sample_path("chest_ct_tumour"))
    expected_ml = np.count_nonzero(labels.dataobj) * abs(np.linalg.det(labels.affine[:3, :3])) / 1e3
    assert f"{expected_ml:.2f} mL" in volume_line
    _check_demo_segmentation(out, result.stdout)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = medseg("demo", "--headless", "--out", out)  # the earlier output is left alone
    assert again.returncode == 0 and "left as it is" in again.stdout
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _check_demo_segmentation(out, stdout):
    """The demo's label map, DICOM SEG and report: on the scan's grid, and what they claim."""
    import csv

    import highdicom as hd

    from napari_medseg.io.reader import read_scan

    sample = nib.load(sample_path("chest_ct"))
    seg_file = nib.load(out / "chest_ct_segmentation.nii.gz")
    assert seg_file.shape == sample.shape
    np.testing.assert_allclose(seg_file.affine, sample.affine, atol=1e-4)
    labels = np.asanyarray(seg_file.dataobj)
    names = json.loads((out / "chest_ct_segmentation.json").read_text())["labels"]
    # the report equals `medseg report` run by a user on the saved files
    user = out.parent / "user_report.csv"
    ran = medseg(
        "report",
        out / "chest_ct_segmentation.nii.gz",
        "--image",
        sample_path("chest_ct"),
        "--lesions",
        "-o",
        user,
    )
    assert ran.returncode == 0, ran.stderr
    with open(out / "chest_ct_report.csv") as f:
        demo_rows = list(csv.DictReader(f))
    with open(user) as f:
        user_rows = list(csv.DictReader(f))
    assert [r["label"] for r in demo_rows] == [r["label"] for r in user_rows]
    for demo_row, user_row in zip(demo_rows, user_rows, strict=True):
        assert demo_row == user_row
        value = int(demo_row["label"])
        assert demo_row["name"] == names[str(value)]
        assert int(demo_row["voxels"]) == np.count_nonzero(labels == value)
        # the printed table shows the same volume
        line = next(x for x in stdout.splitlines() if x.split()[:1] == [str(value)])
        assert names[str(value)] in line
        assert f"{float(demo_row['volume_ml']):.2f}" in line
    # the DICOM SEG references the DICOM series and holds the labels slice by slice
    dicom = read_scan(sample_path("chest_ct_dicom"))
    seg = hd.seg.segread(out / "chest_ct_segmentation_seg.dcm")
    referenced = {s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence}
    assert referenced == {dicom.metadata.series_uid}
    assert len(seg.SegmentSequence) == len(np.unique(labels[labels > 0]))


@pytest.fixture
def float_ct_with_nan(tmp_path):
    """A float32 CT in HU (air around tissue) with 2 NaN and 1 inf voxels."""
    affine = make_affine("LPS", spacing=(0.8, 0.9, 2.0), origin=(40.0, 30.0, -60.0))
    hu = np.full(SHAPE, -1000.0, np.float32)
    hu[3:9, 3:8, 1:5] = 40.0
    hu[5, 5, 2] = 400.0
    hu[0, 0, 0] = hu[11, 9, 5] = np.nan
    hu[4, 4, 3] = np.inf
    path = tmp_path / "ct_float.nii.gz"
    nib.save(nib.Nifti1Image(hu, affine), path)
    return path, hu


def test_info_prints_the_finite_range_and_the_nan_count(float_ct_with_nan):
    path, hu = float_ct_with_nan
    text = medseg("info", path)
    assert text.returncode == 0, text.stderr
    assert "modality    : CT" in text.stdout
    assert (
        "values      : float32, -1000 .. 400 HU (finite voxels; 3 NaN or infinite)" in text.stdout
    )
    assert f"warning     : 3 of {hu.size} voxels are NaN or infinite (2 NaN, 1 infinite)" in (
        text.stdout
    )
    summary = json.loads(medseg("info", path, "--json").stdout)
    assert summary["value_range"] == [-1000.0, 400.0]
    assert summary["nonfinite_voxels"] == 3
    assert summary["modality"] == "CT"


def test_convert_writes_nan_as_it_is_and_says_so(float_ct_with_nan, tmp_path):
    path, hu = float_ct_with_nan
    out = tmp_path / "copy.nii.gz"
    result = medseg("convert", path, out)
    assert result.returncode == 0, result.stderr
    assert f"3 of {hu.size} voxels are NaN or infinite" in result.stderr
    assert (
        f"warning: {out}: the NaN and infinite voxels (3) are written as they are; "
        "convert never changes values." in result.stderr
    )
    written = np.asarray(nib.load(out).dataobj)
    assert written.dtype == np.float32
    np.testing.assert_array_equal(written, hu)  # NaN where NaN, inf where inf


def test_a_scan_without_a_finite_voxel_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "all_nan.nii.gz"
    nib.save(nib.Nifti1Image(np.full(SHAPE, np.nan, np.float32), np.eye(4)), path)
    for args in (("info", path), ("convert", path, tmp_path / "out.nii.gz")):
        result = medseg(*args)
        assert result.returncode == 2
        assert result.stderr.startswith(
            f"medseg: error: {path}: all {np.prod(SHAPE)} voxels are NaN or infinite"
        )
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.nii.gz").exists()


def test_segment_warns_about_a_nan_block_instead_of_silent_zeros(tmp_path):
    from model_factory import write_threshold_model

    model = write_threshold_model(tmp_path / "model", level=0.0, target_spacing=(1.5, 1.5, 1.5))
    affine = make_affine("LPS", spacing=(0.8, 0.9, 2.0), origin=(40.0, 30.0, -60.0))
    hu = np.full(SHAPE, -1000.0, np.float32)
    hu[3:9, 3:8, 1:5] = 40.0  # labelled (above 0 HU)
    clean = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu, affine), clean)
    hu[0:2, 0:2, 0:2] = np.nan  # in the air
    path = tmp_path / "ct_nan.nii.gz"
    nib.save(nib.Nifti1Image(hu, affine), path)
    outputs = []
    for scan in (clean, path):
        outputs.append(tmp_path / f"seg_{scan.name}")
        result = medseg("segment", scan, "-o", outputs[-1], "--model", model)
        assert result.returncode == 0, result.stderr
    assert (
        f"warning: {path}: the model saw its 8 NaN or infinite voxels as the scan's lowest "
        "finite value (background, which cannot create structure)" in result.stderr
    )
    labels, expected = (np.asarray(nib.load(out).dataobj) for out in reversed(outputs))
    assert expected.any()
    np.testing.assert_array_equal(labels, expected)


def test_convert_checks_its_output_before_reading_and_claims_the_name(
    ct_series, tmp_path, monkeypatch, capsys
):
    """A folder as the output is refused before the series is read; without --overwrite
    the name is claimed when published (a file that appeared meanwhile stays)."""
    from napari_medseg.cli import main
    from napari_medseg.io import atomic

    folder, _, _ = ct_series
    target = tmp_path / "folder.nii.gz"
    target.mkdir()
    result = medseg("convert", tmp_path / "no_such_series", target, "--overwrite")
    assert result.returncode == 2
    assert result.stderr == (
        f"medseg: error: {target}: is a folder. Name a file (inside it, or elsewhere).\n"
    )

    out = tmp_path / "out.nii.gz"
    real_open = atomic._open_temporary
    calls = []

    def another_writer_meanwhile(*args):
        calls.append(args)
        if len(calls) == 2:  # the write, after the check's probe file
            out.write_bytes(b"another writer's scan")
        return real_open(*args)

    monkeypatch.setattr(atomic, "_open_temporary", another_writer_meanwhile)
    assert main(["convert", str(folder), str(out)]) == 2
    assert capsys.readouterr().err == (
        f"medseg: error: {out}: already exists; pass --overwrite to replace it.\n"
    )
    assert len(calls) == 2
    assert out.read_bytes() == b"another writer's scan"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_os_error_that_reaches_the_command_names_the_file_not_its_temporary(
    tmp_path, capsys, monkeypatch
):
    """The last net: one line, the file meant (not the hidden temporary file), the reason."""
    import errno

    from napari_medseg.cli import convert, main

    temporary = tmp_path / ".out.nii.gz.medseg-123-abcdef-0123abcd.tmp.nii.gz"

    def failing(args):
        raise OSError(errno.EACCES, "Permission denied", str(temporary))

    monkeypatch.setattr(convert, "cmd_convert", failing)
    assert main(["convert", "in.nii.gz", "out.nii.gz"]) == 2
    assert capsys.readouterr().err == (
        f"medseg: error: {tmp_path / 'out.nii.gz'}: Permission denied.\n"
    )


def test_info_on_one_dicom_file_describes_its_series(tmp_path):
    """Not one slice with 0 mm spacing: the series the file belongs to, as convert reads it."""
    from napari_medseg.samples import sample_path

    first = sample_path("chest_ct_dicom") / "IM00001.dcm"
    result = medseg("info", first, "--json")
    assert result.returncode == 0
    (series,) = json.loads(result.stdout)["series"]
    assert series["n_slices"] == 48 and series["slice_spacing"] == pytest.approx(5.0)
    text = medseg("info", first).stdout
    assert "is one of the 48 images of this series" in text and "48 slices" in text
