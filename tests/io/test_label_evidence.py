"""Label map or image: the decision of :func:`label_map_evidence` on real files.

The files are the sample CT and its tumour map, the default model's output on the
sample CT (saved through ``save_segmentation`` as ``medseg segment`` does, and
cropped to the body, where its "body" class covers most voxels), the sample DICOM
series, a DICOM SEG and RTSTRUCT of the tumour, a synthetic 117-class organ map, an
MR-like float volume, and label maps written with plain nibabel (no intent, no
sidecar) under names that do or do not say "labels". Each rule of the evidence
order is exercised alone: the file-name rule by a 117-class map that nothing else
marks, the distinct-value limit by the model's 7-class output written without
intent or sidecar under a neutral name.
"""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.io import read_scan
from napari_medseg.io.label_evidence import (
    MAX_VALUES,
    MAX_VALUES_NAMED,
    label_map_evidence,
    names_files_beside,
)
from napari_medseg.io.save import SaveTargets, save_segmentation
from napari_medseg.labels.classes import rgb_from_hex
from napari_medseg.labels.colors import MIN_NEIGHBOUR_DELTA_E, delta_e
from napari_medseg.samples import sample_path
from napari_medseg.volume import ScanMetadata, Volume

N_ORGANS = 117


def _nifti(path, array, affine, *, intent=None):
    """Write with nibabel alone (no napari-medseg writer): intent only when asked."""
    image = nib.Nifti1Image(array, affine)
    if intent is not None:
        image.header.set_intent(intent)
    nib.save(image, path)
    return path


@pytest.fixture(scope="module")
def ct():
    return read_scan(sample_path("chest_ct"))


@pytest.fixture(scope="module")
def model_output(ct, tmp_path_factory):
    """The default model's labels on the sample CT, saved as ``medseg segment`` saves
    them (labels NIfTI with the label intent + sidecar)."""
    from napari_medseg.inference.segmenter import Segmenter
    from napari_medseg.labels.classes import classes_from_label_classes
    from napari_medseg.models.registry import DEFAULT_MODEL

    result = Segmenter(DEFAULT_MODEL, device="cpu").predict(ct)
    folder = tmp_path_factory.mktemp("model")
    path = folder / "chest_ct_model.nii.gz"
    classes = classes_from_label_classes(result.label_classes)
    save_segmentation(
        Volume(result.labels, result.affine, ct.metadata),
        SaveTargets(path),
        classes,
        model=result.provenance(),
        protect=[ct.metadata.source],
    )
    return path, result.labels, classes


def _organ_map() -> tuple[np.ndarray, np.ndarray]:
    """A 117-class organ map: a body (1) covering most of the volume and 116 organs
    (2..117) as small blocks inside it; 1 mm voxels."""
    shape = (60, 56, 40)
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    body = ((i - 29.5) / 33) ** 2 + ((j - 27.5) / 31) ** 2 < 1.0
    array = np.where(body, 1, 0).astype(np.uint8)
    value = 2
    for a in range(8, 52, 6):
        for b in range(8, 48, 6):
            for c in range(2, 38, 12):
                if value <= N_ORGANS:
                    array[a : a + 4, b : b + 4, c : c + 8] = value
                    value += 1
    assert value == N_ORGANS + 1
    return array, np.diag([1.0, 1.0, 1.5, 1.0])


@pytest.fixture(scope="module")
def organs():
    return _organ_map()


# ------------------------------------------------------------------ images
def test_sample_ct_is_an_image_even_beside_label_files(ct, tmp_path):
    decision = label_map_evidence(ct)
    assert decision.kind == "image" and "CT" in decision.reason
    # a CT is never taken for labels, whatever lies beside it
    copy = tmp_path / "scan.nii.gz"
    shutil.copy(sample_path("chest_ct"), copy)
    (tmp_path / "scan.json").write_text(json.dumps({"labels": {"1": "x"}, "colors": {}}))
    (tmp_path / "scan.txt").write_text("1 tumour\n")
    assert label_map_evidence(read_scan(copy)).kind == "image"
    labelled_name = tmp_path / "ct_seg.nii.gz"
    shutil.copy(sample_path("chest_ct"), labelled_name)
    assert label_map_evidence(read_scan(labelled_name)).kind == "image"


def test_dicom_sample_is_an_image():
    decision = label_map_evidence(read_scan(sample_path("chest_ct_dicom")))
    assert decision.kind == "image" and "CT" in decision.reason


def test_mr_like_float_volume_is_an_image_even_with_a_label_intent_and_sidecar(tmp_path):
    rng = np.random.default_rng(3)
    i, j, k = np.meshgrid(np.arange(48), np.arange(40), np.arange(20), indexing="ij")
    mr = (400 + 300 * np.sin(i / 7.0) * np.cos(j / 9.0) + rng.normal(0, 20, i.shape)).clip(0)
    path = _nifti(tmp_path / "t1_mask.nii.gz", mr.astype(np.float32), np.eye(4), intent="label")
    (tmp_path / "t1_mask.json").write_text(json.dumps({"labels": {"1": "brain"}, "source": "x"}))
    decision = label_map_evidence(read_scan(path))
    assert decision.kind == "image" and "fractional" in decision.reason
    # the same values rounded to integers: thousands of values, no evidence -> image
    whole = _nifti(tmp_path / "t1.nii.gz", np.rint(mr).astype(np.int16), np.eye(4))
    assert label_map_evidence(read_scan(whole)).kind == "image"


def test_nonfinite_voxels_are_never_labels(tmp_path):
    array = np.zeros((10, 10, 6), np.float32)
    array[2:5, 2:5, 1:3] = 1
    array[0, 0, 0] = np.nan
    path = _nifti(tmp_path / "mask.nii.gz", array, np.eye(4), intent="label")
    decision = label_map_evidence(read_scan(path))
    assert decision.kind == "image" and "NaN" in decision.reason


def test_negative_values_are_never_labels(tmp_path):
    array = np.zeros((10, 10, 6), np.int16)
    array[2:5, 2:5, 1:3] = -3
    path = _nifti(tmp_path / "mask.nii.gz", array, np.eye(4))
    decision = label_map_evidence(read_scan(path))
    assert decision.kind == "image" and "negative" in decision.reason


def test_a_few_grey_values_without_background_are_an_image(tmp_path):
    """A phantom of three grey values (no 0): few whole values alone do not make labels."""
    array = np.full((12, 10, 8), 100, np.int16)
    array[2:6, 2:6, :] = 1000
    array[7:9, 1:3, 4:] = 600
    path = _nifti(tmp_path / "phantom.nii.gz", array, np.eye(4))
    decision = label_map_evidence(read_scan(path))
    assert decision.kind == "image" and "none of its voxels is 0" in decision.reason
    # with 0 among them, they are labels
    array[0] = 0
    assert label_map_evidence(read_scan(_nifti(path, array, np.eye(4)))).kind == "labels"


# ------------------------------------------------------------------ label maps
def test_sample_tumour_map_is_labels():
    decision = label_map_evidence(read_scan(sample_path("chest_ct_tumour")))
    assert decision.kind == "labels"
    assert decision.classes == {}  # nothing beside it names the tumour


def test_model_output_reopens_with_its_sidecar_classes(model_output):
    path, labels, classes = model_output
    volume = read_scan(path)
    assert volume.metadata.extra["intent_code"] == 1002  # read_nifti keeps the intent
    decision = label_map_evidence(volume)
    assert decision.kind == "labels" and "sidecar" in decision.reason
    assert decision.classes == classes
    assert decision.classes_from == str(path.with_name("chest_ct_model.json"))


def test_model_output_whose_body_covers_most_voxels(model_output, tmp_path):
    """Cropped to the body, the model's "body" class is the most common value, not 0;
    written without intent, sidecar or a telling name: 7 values are labels."""
    _, labels, classes = model_output
    body = np.argwhere(labels == 1)
    low, high = body.min(axis=0), body.max(axis=0) + 1
    crop = labels[tuple(slice(a, b) for a, b in zip(low, high, strict=True))]
    values, counts = np.unique(crop, return_counts=True)
    assert values[np.argmax(counts)] == 1 and counts[0] < counts.max()  # not background
    assert 2 < len(values) <= MAX_VALUES
    path = _nifti(tmp_path / "abdomen_crop.nii.gz", crop, np.eye(4))
    decision = label_map_evidence(read_scan(path))
    assert decision.kind == "labels"
    assert f"{len(values)} distinct whole values" in decision.reason
    # the whole output too, under a neutral name and without sidecar or intent
    whole = _nifti(tmp_path / "output.nii.gz", labels, np.eye(4))
    assert label_map_evidence(read_scan(whole)).kind == "labels"


def test_117_class_map_by_file_name_intent_sidecar_and_names_file(organs, tmp_path):
    array, affine = organs
    values, counts = np.unique(array, return_counts=True)
    assert len(values) == N_ORGANS + 1 and values[np.argmax(counts)] == 1  # the body
    assert MAX_VALUES < len(values) <= MAX_VALUES_NAMED
    # a name that says labels, nothing else
    named = _nifti(tmp_path / "organs_seg.nii.gz", array, affine)
    decision = label_map_evidence(read_scan(named))
    assert decision.kind == "labels" and "'seg' in its file name" in decision.reason
    # no telling name, no evidence: an image
    plain = _nifti(tmp_path / "organs.nii.gz", array, affine)
    decision = label_map_evidence(read_scan(plain))
    assert decision.kind == "image" and f"more than {MAX_VALUES})" in decision.reason
    # the NIfTI intents
    for intent, code in (("label", 1002), ("neuroname", 1003)):
        path = _nifti(tmp_path / f"organs_{intent}.nii.gz", array, affine, intent=intent)
        decision = label_map_evidence(read_scan(path))
        assert decision.kind == "labels" and f"({code})" in decision.reason
    # a names file beside it (no colours): names, and colours apart from the neighbours'
    names = {v: f"organ {v}" for v in range(1, N_ORGANS + 1)}
    (tmp_path / "organs.txt").write_text("".join(f"{v} {n}\n" for v, n in names.items()))
    decision = label_map_evidence(read_scan(plain))
    assert decision.kind == "labels" and "organs.txt" in decision.reason
    assert {v: n for v, (n, _) in decision.classes.items()} == names
    colours = {v: rgb_from_hex(c) for v, (_, c) in decision.classes.items()}
    for value in range(1, N_ORGANS):
        assert delta_e(colours[value], colours[value + 1]) >= MIN_NEIGHBOUR_DELTA_E


def test_117_class_map_saved_with_a_sidecar_keeps_renamed_classes(organs, tmp_path):
    array, affine = organs
    classes = {v: (f"organ {v}", f"#{v:02x}{255 - v:02x}{2 * v:02x}") for v in range(1, 118)}
    classes[5] = ("renamed by hand", "#123456")
    path = tmp_path / "organs.nii.gz"
    save_segmentation(
        Volume(array, affine, ScanMetadata(source="scan.nii.gz")), SaveTargets(path), classes
    )
    decision = label_map_evidence(read_scan(path))
    assert decision.kind == "labels" and "sidecar organs.json" in decision.reason
    assert decision.classes == classes


def test_a_names_file_counts_only_when_it_names_every_value(organs, tmp_path):
    array, affine = organs
    path = _nifti(tmp_path / "organs.nii.gz", array, affine)
    (tmp_path / "organs.txt").write_text("1 body\n2 liver\n")
    assert label_map_evidence(read_scan(path)).kind == "image"


def test_freesurfer_lut_in_the_folder(tmp_path, organs):
    """Values named in a ``*LUT.txt`` of the folder (FreeSurfer colour table): labels,
    with the table's names and colours; an MR beside the same table stays an image."""
    array, affine = organs
    fs_values = np.array([0, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 24, 26, 28])
    fs_values = np.concatenate([fs_values, 1000 + np.arange(1, 36), 2000 + np.arange(1, 36)])
    mapped = fs_values[np.minimum(array, len(fs_values) - 1)].astype(np.int16)
    lut = "".join(
        f"{v} Region-{v} {v % 256} {(3 * v) % 256} {(7 * v) % 256} 0\n" for v in fs_values
    )
    (tmp_path / "FreeSurferColorLUT.txt").write_text("#$Id: FreeSurferColorLUT.txt\n" + lut)
    path = _nifti(tmp_path / "aparc.nii.gz", mapped, affine)
    decision = label_map_evidence(read_scan(path))
    assert decision.kind == "labels" and "FreeSurferColorLUT.txt" in decision.reason
    assert decision.classes[1001] == ("Region-1001", "#e9bb5f")  # 1001, 3003, 7007 mod 256
    mr = (np.arange(array.size).reshape(array.shape) % 700).astype(np.int16)
    assert label_map_evidence(read_scan(_nifti(tmp_path / "t1.nii.gz", mr, affine))).kind == (
        "image"
    )


def test_seg_nrrd_with_more_values_than_any_name_rule(tmp_path):
    from napari_medseg.io.nrrd import write_seg_nrrd

    array = np.zeros((30, 30, 4), np.uint16)
    array.reshape(-1)[: 300 * 4] = np.repeat(np.arange(1, 301), 4)
    path = tmp_path / "many.seg.nrrd"
    write_seg_nrrd(path, Volume(array, np.eye(4)), {7: ("seven", "#00ff00")})
    decision = label_map_evidence(read_scan(path))
    assert decision.kind == "labels" and "Slicer" in decision.reason
    assert decision.classes[7] == ("seven", "#00ff00") and len(decision.classes) == 300


def test_dicom_seg_and_rtstruct_of_the_tumour(tmp_path):
    from napari_medseg.io.dicom_derived import read_derived_labels

    series = tmp_path / "CT"
    shutil.copytree(sample_path("chest_ct_dicom"), series)
    scan = read_scan(series)
    tumour = read_scan(sample_path("chest_ct_tumour")).array.astype(np.uint8)
    classes = {1: ("tumour", "#ff0000")}
    seg, rt = tmp_path / "tumour_seg.dcm", tmp_path / "tumour_rt.dcm"
    save_segmentation(
        Volume(tumour, scan.affine, scan.metadata),
        SaveTargets(dicom_seg=seg, rtstruct=rt),
        classes,
    )
    for path, what in ((seg, "SEG"), (rt, "RT Structure Set")):
        volume = read_derived_labels(path)
        decision = label_map_evidence(volume)
        assert decision.kind == "labels" and what in decision.reason
        assert decision.classes == classes
        assert np.array_equal(volume.array, tumour)


# ------------------------------------------------------------------ files beside it
def test_a_bids_sidecar_is_not_ours_and_a_broken_one_is_reported(tmp_path):
    array = np.zeros((8, 8, 4), np.uint8)
    array[2:4, 2:4, 1:3] = 3
    path = _nifti(tmp_path / "sub-01_dseg.nii.gz", array, np.eye(4))
    bids = tmp_path / "sub-01_dseg.json"
    bids.write_text(json.dumps({"Manufacturer": "x", "RepetitionTime": 2.0}))
    decision = label_map_evidence(read_scan(path))
    assert decision.kind == "labels" and decision.classes == {} and decision.warnings == ()
    bids.write_text('{"labels": {"3": "liv')  # cut short
    decision = label_map_evidence(read_scan(path))
    assert decision.kind == "labels"
    assert len(decision.warnings) == 1 and str(bids) in decision.warnings[0]


def test_names_files_beside(tmp_path):
    (tmp_path / "seg.nii.gz").write_bytes(b"")
    for name in ("seg.txt", "seg.ctbl", "other.txt", "MyLUT.txt", "seg.json"):
        (tmp_path / name).write_text("1 a\n")
    found = [p.name for p in names_files_beside(tmp_path / "seg.nii.gz")]
    assert found == ["seg.txt", "seg.ctbl", "seg.json", "MyLUT.txt"]
