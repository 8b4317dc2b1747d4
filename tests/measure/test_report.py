"""The report object: provenance, rows, CSV/JSON output, names, safety rules."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest
from geometry_cases import make_affine
from metrics_cases import SPACING, perturbed, random_blobs

from napari_medseg.errors import OverwriteSourceError, ScanWriteError
from napari_medseg.io.label_names import LabelNamesError, read_label_names
from napari_medseg.labels.maps import GridMismatchError, LabelMapError
from napari_medseg.measure.report import (
    build_report,
    label_columns,
    label_rows,
    lesion_columns,
    lesion_rows,
    report_to_dict,
    write_report,
)
from napari_medseg.volume import ScanMetadata, Volume

AFFINE = make_affine("LPS", spacing=SPACING, origin=(12.0, -3.0, 40.0))


@pytest.fixture
def volumes():
    rng = np.random.default_rng(2)
    labels = random_blobs((22, 18, 10), 3, seed=5)
    reference = perturbed(labels, seed=6)
    image = rng.integers(-1000, 1500, labels.shape).astype(np.int16)
    image[0] = -2000  # padding on one face
    meta = ScanMetadata(
        source="/data/DOE_JANE/ct",
        format="dicom",
        modality="CT",
        units="HU",
        series_uid="1.2.3.4",
        extra={
            "patient_name": "DOE^JANE",
            "patient_id": "PID-12345",
            "study_date": "20240101",
            "pixel_padding_range": (-2000, -2000),
        },
    )
    return (
        Volume(labels, AFFINE, ScanMetadata(source="/data/DOE_JANE/seg.nii.gz", format="nifti")),
        Volume(image, AFFINE, meta),
        Volume(reference, AFFINE, ScanMetadata(source="/data/ref.nii.gz", format="nifti")),
    )


def test_report_rows_carry_every_measure(volumes):
    labels, image, reference = volumes
    report = build_report(labels, image, reference, lesions=True, names={2: "liver"})
    rows = label_rows(report)
    assert [r["label"] for r in rows] == [1, 2, 3]
    assert rows[1]["name"] == "liver" and rows[0]["name"] == "label_1"
    for row in rows:
        mask = labels.array == row["label"]
        assert row["voxels"] == mask.sum()
        values = image.array[mask]
        kept = values[values != -2000]
        assert row["intensity_excluded_voxels"] == values.size - kept.size
        assert row["intensity_mean"] == pytest.approx(kept.mean(), rel=1e-12)
        tp = np.count_nonzero(mask & (reference.array == row["label"]))
        n_ref = np.count_nonzero(reference.array == row["label"])
        assert row["dice"] == pytest.approx(2 * tp / (mask.sum() + n_ref), rel=1e-12)
        assert row["lesions"] >= 1 and row["ref_lesions"] >= 1
        for key in ("hd95_mm", "assd_mm", "surface_dice", "lesion_f1", "diameter_mm"):
            assert math.isfinite(row[key]), key
    assert any("padding" in note for note in report.notes)
    assert report.provenance.settings["intensity_excluded_range"] == [-2000.0, -2000.0]


def test_no_patient_identifiers_unless_asked(volumes):
    labels, image, reference = volumes
    text = json.dumps(report_to_dict(build_report(labels, image, reference)))
    for secret in ("DOE", "JANE", "PID-12345", "20240101", "/data"):
        assert secret not in text
    assert "1.2.3.4" in text  # the series UID stays, for traceability
    named = report_to_dict(build_report(labels, image, reference, include_patient=True))
    assert named["provenance"]["patient"] == {
        "patient_name": "DOE^JANE",
        "patient_id": "PID-12345",
        "study_date": "20240101",
    }
    assert named["provenance"]["sources"][0]["file"].endswith("/data/DOE_JANE/seg.nii.gz")


def test_provenance(volumes):
    labels, image, _ = volumes
    report = build_report(labels, image, model={"name": "unet3d", "roi": [96, 96, 96]})
    p = report_to_dict(report)["provenance"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", p["created_utc"])
    assert set(p["software"]) == {"napari-medseg", "python", "numpy", "scipy"}
    assert p["model"] == {"name": "unet3d", "roi": [96, 96, 96]}
    assert [s["role"] for s in p["sources"]] == ["labels", "image"]
    assert p["sources"][1]["spacing_mm"] == pytest.approx(list(SPACING))


def test_json_is_strict_and_empty_cases_are_explicit(volumes, tmp_path):
    labels, image, reference = volumes
    ref = reference.array.copy()
    ref[ref == 3] = 0  # label 3 only in the labels: infinite distances, NaN sensitivity
    ref[2:4, 2:4, 2:4] = 4  # label 4 only in the reference
    report = build_report(labels, image, Volume(ref, AFFINE, reference.metadata))
    (out,) = write_report(report, tmp_path / "r.json")
    text = out.read_text()
    document = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict {c}"))
    rows = {r["label"]: r for r in document["labels"]}
    assert rows[3]["empty"] == "reference" and rows[3]["hd95_mm"] is None
    assert rows[3]["sensitivity"] is None and rows[3]["dice"] == 0.0
    assert rows[4]["empty"] == "labels" and rows[4]["voxels"] == 0
    assert rows[4]["intensity_mean"] is None and rows[4]["centroid_x_ras_mm"] is None
    assert "null" in document["conventions"]
    (csv_out,) = write_report(report, tmp_path / "r.csv")
    with open(csv_out, newline="") as handle:
        csv_rows = {int(r["label"]): r for r in csv.DictReader(handle)}
    assert csv_rows[3]["hd95_mm"] == "inf" and csv_rows[3]["sensitivity"] == "nan"
    assert float(csv_rows[1]["dice"]) == rows[1]["dice"]  # exact round trip
    assert list(csv_rows[1]) == list(rows[1])  # the same columns in the same order


def test_csv_with_lesions_writes_a_sibling_file(volumes, tmp_path):
    labels, image, reference = volumes
    report = build_report(labels, image, reference, lesions=True)
    written = write_report(report, tmp_path / "out.csv")
    assert [p.name for p in written] == ["out.csv", "out_lesions.csv"]
    with open(written[1], newline="") as handle:
        lesions = list(csv.DictReader(handle))
    assert {r["source"] for r in lesions} == {"labels", "reference"}
    assert sum(r["source"] == "labels" for r in lesions) == len(report.lesions.lesions)
    assert {"id", "label", "volume_ml", "diameter_mm", "intensity_mean", "matches"} <= set(
        lesions[0]
    )


def test_outputs_are_never_overwritten_unless_asked(volumes, tmp_path):
    labels, image, _ = volumes
    report = build_report(labels, image)
    target = tmp_path / "r.csv"
    target.write_text("keep me")
    with pytest.raises(ScanWriteError, match="already exists"):
        write_report(report, target)
    assert target.read_text() == "keep me"
    write_report(report, target, overwrite=True)
    assert target.read_text().startswith("label,name,voxels,volume_ml")
    source = tmp_path / "seg.csv"  # a source is protected even with overwrite
    source.write_text("source")
    with pytest.raises(OverwriteSourceError):
        write_report(report, source, overwrite=True, protect=[source])
    with pytest.raises(ScanWriteError, match=r"\.csv or \.json"):
        write_report(report, tmp_path / "r.xlsx")


def test_image_on_another_grid_is_refused_naming_both(volumes):
    labels, image, _ = volumes
    shifted = Volume(image.array[:-1], AFFINE, image.metadata)
    with pytest.raises(GridMismatchError) as caught:
        build_report(labels, shifted)
    message = str(caught.value)
    assert "seg.nii.gz" in message and "/data/DOE_JANE/ct" in message
    assert "22 x 18 x 10" in message and "21 x 18 x 10" in message


def test_reference_on_another_grid_is_resampled_with_a_note(volumes):
    labels, _, _ = volumes
    # the same voxels stored in the other order along I: another grid, same positions
    flipped = labels.array[::-1].copy()
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, labels.shape[0] - 1
    reference = Volume(flipped, AFFINE @ flip, ScanMetadata(source="ref.nii.gz"))
    report = build_report(labels, None, reference)
    assert all(o.dice == 1.0 and o.hd_mm == 0.0 for o in report.overlap)
    assert any("resampled" in note for note in report.notes)
    assert report.provenance.sources[-1].resampled


def test_fractional_labels_are_refused(volumes):
    labels, image, _ = volumes
    bad = Volume(labels.array * 0.5, AFFINE, labels.metadata)
    with pytest.raises(LabelMapError, match="seg.nii.gz"):
        build_report(bad, image)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("n.json", '{"1": "liver", "2": "spleen"}', {1: "liver", 2: "spleen"}),
        ("dataset.json", '{"labels": {"bg": 0, "liver": 1}}', {0: "bg", 1: "liver"}),
        ("msd.json", '{"labels": {"0": "bg", "1": "tumour"}}', {0: "bg", 1: "tumour"}),
        ("itk.txt", '# ITK-SNAP\n 1 255 0 0 1 1 1 "Left lung"\n', {1: "Left lung"}),
        ("slicer.ctbl", "# Slicer\n2 kidney 0 255 0 255\n", {2: "kidney"}),
        ("plain.txt", "3 right adrenal gland\n", {3: "right adrenal gland"}),
        ("apostrophe.txt", "4 Couinaud's segment IV\n", {4: "Couinaud's segment IV"}),
    ],
)
def test_label_names_files(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    assert read_label_names(path) == expected


def test_bad_label_names_file_names_the_file(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("liver 1\n")
    with pytest.raises(LabelNamesError, match="names.txt"):
        read_label_names(path)
    with pytest.raises(LabelNamesError, match="no such file"):
        read_label_names(tmp_path / "missing.json")


def test_resampling_note_names_files_not_paths(volumes):
    # the note about a resampled reference goes into the report: no folder may leak
    labels, image, _ = volumes
    flipped = labels.array[::-1].copy()
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, labels.shape[0] - 1
    meta = ScanMetadata(source="/data/DOE_JANE/ref.nii.gz", format="nifti")
    report = build_report(labels, image, Volume(flipped, AFFINE @ flip, meta))
    assert any("ref.nii.gz" in note and "seg.nii.gz" in note for note in report.notes)
    text = json.dumps(report_to_dict(report))
    assert "DOE" not in text and "/data" not in text


@pytest.mark.parametrize("with_reference", [False, True])
def test_empty_label_map_keeps_its_csv_header(volumes, tmp_path, with_reference):
    # a model that found nothing: the CSV still says what its columns are
    labels, image, _ = volumes
    empty = Volume(np.zeros_like(labels.array), AFFINE, labels.metadata)
    reference = empty if with_reference else None
    report = build_report(empty, image, reference, lesions=True)
    assert label_rows(report) == []
    written = write_report(report, tmp_path / "empty.csv")
    for path, columns in zip(written, (label_columns(report), lesion_columns(report)), strict=True):
        with open(path, newline="") as handle:
            assert list(csv.reader(handle)) == [columns]
    assert label_columns(report)[:4] == ["label", "name", "voxels", "volume_ml"]
    assert "intensity_mean" in label_columns(report)
    assert ("dice" in label_columns(report)) == with_reference


def test_stated_columns_are_the_row_keys(volumes):
    labels, image, reference = volumes
    for args in ((labels,), (labels, image), (labels, image, reference)):
        for lesions in (False, True):
            report = build_report(*args, lesions=lesions)
            assert all(list(r) == label_columns(report) for r in label_rows(report))
            assert all(list(r) == lesion_columns(report) for r in lesion_rows(report))


def test_image_storing_the_same_voxels_in_another_order_is_reordered(volumes):
    # e.g. a DICOM series and the label map of its NIfTI conversion: axes swapped and
    # flipped, the same voxel centres; taken exactly, with a note
    labels, image, _ = volumes
    stored = np.flip(image.array.transpose(1, 0, 2), axis=2).copy()
    to_labels = np.zeros((4, 4))  # stored voxel index -> label-map voxel index
    to_labels[0, 1] = to_labels[1, 0] = 1
    to_labels[2, 2], to_labels[2, 3], to_labels[3, 3] = -1, image.shape[2] - 1, 1
    other_order = Volume(stored, AFFINE @ to_labels, image.metadata)
    assert other_order.orientation != image.orientation
    direct = build_report(labels, image)
    report = build_report(labels, other_order)
    assert [s.intensity for s in report.labels] == [s.intensity for s in direct.labels]
    assert any("another order" in note for note in report.notes)
    # half a voxel off is another grid: refused, the message gives both axis codes
    shifted = AFFINE @ to_labels
    shifted[:3, 3] += 0.5 * np.asarray(SPACING)
    with pytest.raises(GridMismatchError, match="axes"):
        build_report(labels, Volume(stored, shifted, image.metadata))


def test_model_settings_with_arrays_and_paths_are_written(volumes, tmp_path):
    labels, image, _ = volumes
    model = {"roi": np.array([96, 96, 96]), "weights": tmp_path / "model.pt", "amp": np.bool_(1)}
    report = build_report(labels, image, model=model)
    (out,) = write_report(report, tmp_path / "r.json")
    written = json.loads(out.read_text())["provenance"]["model"]
    assert written == {"roi": [96, 96, 96], "weights": str(tmp_path / "model.pt"), "amp": True}
