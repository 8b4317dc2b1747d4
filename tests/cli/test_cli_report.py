"""``medseg report`` as a user runs it: a real subprocess on NIfTI files and a DICOM folder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from geometry_cases import make_affine
from metrics_cases import perturbed, random_blobs

from napari_medseg.errors import ScanWriteError
from napari_medseg.io.reader import read_scan
from napari_medseg.synthetic.dicom_series import write_dicom_series

SHAPE = (20, 16, 8)
AFFINE = make_affine("LPS", spacing=(0.7, 0.8, 2.0), origin=(40.0, 30.0, -60.0))


def medseg(*args):
    """The command in a child process, exactly as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "napari_medseg.cli", *map(str, args)],
        capture_output=True,
        text=True,
    )


def save_nifti(path, array, affine=AFFINE):
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def case(tmp_path):
    labels = random_blobs(SHAPE, 3, seed=31)
    reference = perturbed(labels, seed=32)
    hu = np.random.default_rng(33).integers(-1000, 1000, SHAPE).astype(np.int16)
    return {
        "labels": labels,
        "reference": reference,
        "hu": hu,
        "labels_path": save_nifti(tmp_path / "seg.nii.gz", labels),
        "reference_path": save_nifti(tmp_path / "ref.nii.gz", reference),
        "image_path": save_nifti(tmp_path / "ct.nii.gz", hu),
    }


def test_csv_report_on_nifti_files(case, tmp_path):
    out = tmp_path / "report.csv"
    result = medseg(
        "report", case["labels_path"], "--image", case["image_path"],
        "--reference", case["reference_path"], "--tolerance-mm", "2", "-o", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    rows = read_csv(out)
    columns = set(rows[0])
    assert {"label", "name", "voxels", "volume_ml", "dice", "iou", "hd95_mm", "assd_mm"} <= columns
    voxel_ml = abs(np.linalg.det(AFFINE[:3, :3])) / 1000
    for row in rows:
        value = int(row["label"])
        mask = case["labels"] == value
        ref = case["reference"] == value
        assert row["name"] == f"label_{value}"
        assert int(row["voxels"]) == mask.sum()
        assert float(row["volume_ml"]) == pytest.approx(mask.sum() * voxel_ml, rel=1e-5)
        assert float(row["intensity_mean"]) == pytest.approx(case["hu"][mask].mean(), rel=1e-12)
        dice = 2 * np.count_nonzero(mask & ref) / (mask.sum() + ref.sum())
        assert float(row["dice"]) == pytest.approx(dice, rel=1e-12)
        assert float(row["surface_dice_tolerance_mm"]) == 2.0
        assert float(row["hd95_mm"]) >= 0


def test_json_report_with_lesions_and_names(case, tmp_path, run):
    names = tmp_path / "names.json"
    names.write_text('{"1": "liver", "2": "spleen"}')
    out = tmp_path / "report.json"
    result = run(
        "report", case["labels_path"], "--reference", case["reference_path"], "--lesions",
        "--connectivity", "6", "--names", names, "-o", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert [r["name"] for r in document["labels"]] == ["liver", "spleen", "label_3"]
    assert document["provenance"]["settings"]["lesion_connectivity"] == 6
    assert len(document["lesions"]) == sum(r["lesions"] for r in document["labels"])
    assert "reference_lesions" in document


def test_csv_lesions_go_to_a_sibling_file_and_outputs_are_kept(case, tmp_path, run):
    out = tmp_path / "r.csv"
    args = ("report", case["labels_path"], "--lesions", "-o", out)
    assert run(*args).returncode == 0
    lesions = read_csv(tmp_path / "r_lesions.csv")
    assert {r["source"] for r in lesions} == {"labels"}
    before = out.read_text()
    again = run(*args)
    assert again.returncode == 2 and "already exists" in again.stderr and "r.csv" in again.stderr
    assert out.read_text() == before
    assert run(*args, "--overwrite").returncode == 0


@pytest.fixture
def dicom_ct(tmp_path):
    """A CT series whose stored value 0 (-1024 HU) is declared pixel padding."""
    hu = np.random.default_rng(3).integers(-1000, 1000, SHAPE).astype(np.int16)
    hu[:, :3] = -1024  # padding outside the reconstruction circle
    folder = tmp_path / "dicom"
    write_dicom_series(
        (hu + 1024).astype(np.int16),
        AFFINE,
        folder,
        modality="CT",
        rescale_intercept=-1024.0,
        patient_name="DOE^JANE",
        patient_id="PID-98765",
        extra={"PixelPaddingValue": 0},
    )
    return folder, hu


def test_dicom_image_and_patient_identifiers(case, dicom_ct, tmp_path, run):
    folder, hu = dicom_ct
    out = tmp_path / "r.json"
    result = run("report", case["labels_path"], "--image", folder, "-o", out)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "DOE" not in text and "PID-98765" not in text and str(tmp_path) not in text
    document = json.loads(text)
    image_source = document["provenance"]["sources"][1]
    assert image_source["format"] == "dicom" and image_source["series_uid"]
    assert any("padding" in note for note in document["notes"])
    for row in document["labels"]:
        inside = hu[case["labels"] == row["label"]]
        kept = inside[inside != -1024]
        assert row["intensity_units"] == "HU"
        assert row["intensity_excluded_voxels"] == inside.size - kept.size
        assert row["intensity_median"] == pytest.approx(np.median(kept))
        assert row["voxels"] == inside.size
    assert sum(r["intensity_excluded_voxels"] for r in document["labels"]) > 0
    named = tmp_path / "named.json"
    args = ("report", case["labels_path"], "--image", folder, "--include-patient-info")
    assert run(*args, "-o", named).returncode == 0
    patient = json.loads(named.read_text())["provenance"]["patient"]
    assert patient["patient_name"] == "DOE^JANE" and patient["patient_id"] == "PID-98765"


def test_bad_inputs_exit_2_naming_the_file(case, tmp_path, run):
    other_grid = save_nifti(tmp_path / "small.nii.gz", case["hu"][:-2])
    result = run("report", case["labels_path"], "--image", other_grid, "-o", tmp_path / "a.csv")
    assert result.returncode == 2
    assert "small.nii.gz" in result.stderr and "seg.nii.gz" in result.stderr
    assert "18 x 16 x 8" in result.stderr

    result = run("report", tmp_path / "missing.nii.gz", "-o", tmp_path / "b.csv")
    assert result.returncode == 2 and "missing.nii.gz" in result.stderr

    floats = save_nifti(tmp_path / "prob.nii.gz", case["labels"].astype(np.float32) * 0.4)
    result = run("report", floats, "-o", tmp_path / "c.csv")
    assert result.returncode == 2
    assert "prob.nii.gz" in result.stderr and "non-integer" in result.stderr

    result = run("report", case["labels_path"], "-o", tmp_path / "d.txt")
    assert result.returncode == 2 and "d.txt" in result.stderr
    inputs = {"seg.nii.gz", "ref.nii.gz", "ct.nii.gz", "small.nii.gz", "prob.nii.gz"}
    assert {p.name for p in tmp_path.iterdir()} == inputs  # nothing half-written left


def test_help_names_the_lesion_file():
    result = medseg("report", "--help")
    assert result.returncode == 0
    assert "OUT_lesions.csv" in result.stdout and "--include-patient-info" in result.stdout


def test_the_names_file_is_an_input_and_never_overwritten(case, tmp_path, run):
    names = tmp_path / "names.json"
    names.write_text('{"1": "liver"}')
    result = run("report", case["labels_path"], "--names", names, "-o", names, "--overwrite")
    assert result.returncode == 2 and "names.json" in result.stderr
    assert names.read_text() == '{"1": "liver"}'


def test_mixed_integer_label_files_and_infinite_image_values(case, tmp_path, run):
    # int64 labels against a uint64 reference; a float scan with an infinite voxel
    labels = case["labels"].astype(np.int64)
    reference = case["reference"].astype(np.uint64)
    nib.save(nib.Nifti1Image(labels, AFFINE, dtype=np.int64), tmp_path / "seg64.nii.gz")
    nib.save(nib.Nifti1Image(reference, AFFINE, dtype=np.uint64), tmp_path / "ref64.nii.gz")
    hu = case["hu"].astype(np.float32)
    inside = np.full(np.count_nonzero(labels == 1), 5.0, np.float32)
    inside[0] = np.inf
    hu[labels == 1] = inside
    save_nifti(tmp_path / "ct_inf.nii.gz", hu)
    out = tmp_path / "r.json"
    args = ("report", tmp_path / "seg64.nii.gz", "--reference", tmp_path / "ref64.nii.gz")
    result = run(*args, "--image", tmp_path / "ct_inf.nii.gz", "-o", out)
    assert result.returncode == 0, result.stderr
    rows = {r["label"]: r for r in json.loads(out.read_text())["labels"]}
    assert rows[1]["intensity_mean"] == 5.0 and rows[1]["intensity_excluded_voxels"] == 1
    a, b = labels == 1, reference == 1
    assert rows[1]["dice"] == pytest.approx(2 * np.sum(a & b) / (a.sum() + b.sum()))


def test_image_file_storing_the_voxels_in_another_order(case, tmp_path, run):
    # the scan saved with its J axis reversed (as converters often store a DICOM series):
    # the same voxels, so the report measures it without resampling
    flip = np.eye(4)
    flip[1, 1], flip[1, 3] = -1, SHAPE[1] - 1
    flipped = save_nifti(tmp_path / "ct_flipped.nii.gz", case["hu"][:, ::-1].copy(), AFFINE @ flip)
    rows = {}
    for image in (case["image_path"], flipped):
        out = tmp_path / f"{image.name}.json"
        result = run("report", case["labels_path"], "--image", image, "-o", out)
        assert result.returncode == 0, result.stderr
        rows[image.name] = json.loads(out.read_text())["labels"]
    assert rows["ct.nii.gz"] == rows["ct_flipped.nii.gz"]
    assert rows["ct.nii.gz"][0]["intensity_voxels"] > 0


def test_advice_names_only_options_report_has(case, tmp_path, run):
    # a DICOM folder of two series as LABELS: --series belongs to --image, so the advice
    # must not send the user there; a 4D NIfTI: report has no --volume
    folder = tmp_path / "two_series"
    for number, values in ((1, case["labels"]), (2, case["reference"])):
        write_dicom_series(
            values.astype(np.int16), AFFINE, folder / f"s{number}", modality="MR",
            series_number=number,
        )  # fmt: skip
    result = run("report", folder, "-o", tmp_path / "a.csv")
    assert result.returncode == 2 and "2 image series" in result.stderr
    assert "--series" not in result.stderr and "LABELS" in result.stderr
    result = run("report", case["labels_path"], "--reference", folder, "-o", tmp_path / "b.csv")
    assert result.returncode == 2 and "--reference at the folder" in result.stderr
    result = run("report", case["labels_path"], "--image", folder, "-o", tmp_path / "c.csv")
    assert result.returncode == 2 and "--series" in result.stderr  # the image has it
    four = save_nifti(tmp_path / "four.nii.gz", np.zeros((*SHAPE, 2), np.uint8))
    for args in ((four,), (case["labels_path"], "--image", four)):
        result = run("report", *args, "-o", tmp_path / "d.csv")
        assert result.returncode == 2 and "4D" in result.stderr
        assert "--volume" not in result.stderr


def test_maps_that_do_not_overlap_in_space_are_named_so(case, tmp_path, run):
    """A reference 500 mm away: every Dice is 0, and the output says why."""
    far = AFFINE.copy()
    far[:3, 3] += [500.0, 0.0, 0.0]
    labels = save_nifti(tmp_path / "labels.nii.gz", case["labels"])
    reference = save_nifti(tmp_path / "far.nii.gz", case["labels"], far)
    result = run("report", labels, "--reference", reference, "-o", tmp_path / "r.csv")
    assert result.returncode == 0
    rows = read_csv(tmp_path / "r.csv")
    assert rows and all(float(row["dice"]) == 0.0 for row in rows)
    assert "do not overlap in space" in result.stderr
    # the same map overlapping itself on a grid moved by a voxel is not named so
    near = AFFINE.copy()
    near[:3, 3] += AFFINE[:3, 0]
    moved = save_nifti(tmp_path / "near.nii.gz", case["labels"], near)
    result = run("report", labels, "--reference", moved, "-o", tmp_path / "r2.csv")
    assert result.returncode == 0 and "do not overlap" not in result.stderr


def test_outputs_are_checked_before_measuring_and_never_an_input(case, tmp_path, run):
    """The sidecar `medseg segment` wrote (read as the names) is an input too; a folder,
    a link loop or a file on the path are refused before anything is read."""
    sidecar = tmp_path / "seg.json"
    sidecar.write_text('{"labels": {"1": "liver"}}')
    result = run("report", case["labels_path"], "-o", sidecar, "--overwrite")
    assert result.returncode == 2 and "refusing to write here" in result.stderr
    assert sidecar.read_text() == '{"labels": {"1": "liver"}}'

    (tmp_path / "folder.csv").mkdir()
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop.name)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    missing = tmp_path / "missing.nii.gz"  # would fail when read: the output is refused first
    for out, message in [
        (tmp_path / "folder.csv", "is a folder."),
        (loop, "cannot be written: Too many levels of symbolic links."),
        (a_file / "r.csv", "cannot be written: Not a directory."),
    ]:
        result = run("report", missing, "-o", out, "--overwrite")
        assert result.returncode == 2
        assert result.stderr.startswith(f"medseg: error: {out}: {message}"), result.stderr


def test_the_lesion_table_and_the_label_table_are_written_together(case, tmp_path, monkeypatch):
    """The lesion table's name taken by another writer while writing: it is not replaced,
    and the label table is not left alone either (the rerun is not refused)."""
    from napari_medseg.measure import report as report_module
    from napari_medseg.measure.report import build_report, write_report

    report = build_report(read_scan(case["labels_path"]), lesions=True)
    out, lesions = tmp_path / "r.csv", tmp_path / "r_lesions.csv"
    real_rows = report_module.lesion_rows

    def another_writer_meanwhile(*args):
        lesions.write_text("another writer's lesions")
        return real_rows(*args)

    monkeypatch.setattr(report_module, "lesion_rows", another_writer_meanwhile)
    with pytest.raises(ScanWriteError) as raised:
        write_report(report, out)
    assert str(raised.value) == (
        f"{lesions}: already exists. Pass --overwrite (overwrite=True) to replace it."
    )
    assert not out.exists() and lesions.read_text() == "another writer's lesions"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary
    monkeypatch.undo()
    lesions.unlink()
    assert write_report(report, out) == [out, lesions]
    assert read_csv(lesions) and read_csv(out)
