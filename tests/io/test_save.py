"""``io.save.save_segmentation``: the one save path, on real files.

The labels NIfTI and the probabilities are read back with nibabel, the sidecar as
JSON text, the DICOM SEG with :func:`read_dicom_seg` and its algorithm identification
with pydicom. Refusals (source scans, existing files, bad names) must leave every file
as it was, and a failed write must leave no partial or temporary file behind.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_factory import make_affine, phantom, write_series

from napari_medseg.errors import OverwriteSourceError, ScanWriteError
from napari_medseg.io import read_scan
from napari_medseg.io.dicom_seg import SegGridError, read_dicom_seg
from napari_medseg.io.save import (
    OutputExistsError,
    SaveTargets,
    check_targets,
    save_segmentation,
)
from napari_medseg.volume import Volume

SHAPE = (16, 12, 8)
CLASSES = {0: ("background", "#000000"), 1: ("liver", "#dc6440"), 2: ("tumour", "#00ff10")}
MODEL = {"name": "toy-net", "settings": {"device": "cpu", "overlap": 0.5, "tta": False}}


def _truth(shape=SHAPE) -> np.ndarray:
    truth = np.zeros(shape, dtype=np.uint8)
    truth[2:7, 3:9, 1:4] = 1
    truth[9:13, 1:5, 4:7] = 2
    truth[0, 0, 0] = 1  # a corner: a flipped axis would move it
    return truth


@pytest.fixture
def nifti_scan(tmp_path):
    """A NIfTI scan with sform code 2 and a distinct qform (code 1), read back."""
    affine = make_affine("LPS", spacing=(0.8, 0.9, 2.0), origin=(40.0, 30.0, -60.0))
    qform = affine.copy()
    qform[:3, 3] += (1.0, -2.0, 0.5)
    image = nib.Nifti1Image(phantom(SHAPE), affine)
    image.header.set_sform(affine, code=2)
    image.header.set_qform(qform, code=1)
    path = tmp_path / "ct.nii.gz"
    nib.save(image, path)
    return path, qform


@pytest.fixture
def dicom_scan(tmp_path):
    series = write_series(tmp_path / "series", phantom(SHAPE), make_affine("LPS"))
    return series, read_scan(series.folder)


def _no_temporary_files(folder) -> bool:
    return not [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_nifti_sidecar_and_probabilities_round_trip(tmp_path, nifti_scan):
    path, qform = nifti_scan
    scan = read_scan(path)
    truth = _truth()
    probabilities = np.stack([truth == v for v in range(3)]).astype(np.float32)
    targets = SaveTargets(tmp_path / "out" / "seg.nii.gz", probabilities=tmp_path / "p.nii.gz")

    written = save_segmentation(
        Volume(truth, scan.affine, scan.metadata),
        targets,
        CLASSES,
        model=MODEL,
        source=path,
        protect=[path],
        probabilities=probabilities,
    )

    sidecar = tmp_path / "out" / "seg.json"
    assert written == [targets.labels, sidecar, targets.probabilities]
    saved = nib.load(targets.labels)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), truth)
    assert saved.get_data_dtype() == np.uint8
    sform, sform_code = saved.header.get_sform(coded=True)
    saved_qform, qform_code = saved.header.get_qform(coded=True)
    assert (int(sform_code), int(qform_code)) == (2, 1)  # the scan's codes
    np.testing.assert_allclose(sform, scan.affine, atol=1e-5)
    np.testing.assert_allclose(saved_qform, qform, atol=1e-4)  # its distinct qform too
    assert saved.header.get_intent()[0] == "label"
    assert saved.header["descrip"].item() == b"medseg toy-net"

    # the sidecar, as text: colours as [r, g, b] integers, the model, the scan's name
    assert json.loads(sidecar.read_text()) == {
        "labels": {"0": "background", "1": "liver", "2": "tumour"},
        "colors": {"0": [0, 0, 0], "1": [220, 100, 64], "2": [0, 255, 16]},
        "model": MODEL,
        "source": "ct.nii.gz",
    }
    assert '"1": [\n      220,\n      100,\n      64\n    ]' in sidecar.read_text()

    p = nib.load(targets.probabilities)
    assert p.shape == (*SHAPE, 3) and p.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asarray(p.dataobj).argmax(axis=-1), truth)
    for key in ("qform_code", "sform_code"):
        assert int(p.header[key]) == int(saved.header[key])
    np.testing.assert_allclose(p.header.get_sform(), saved.header.get_sform())


def _algorithm(seg_path) -> list[tuple[str, list | None]]:
    """``(SegmentAlgorithmType, its AlgorithmIdentificationSequence)`` of every segment."""
    seg = pydicom.dcmread(seg_path)
    return [
        (item.SegmentAlgorithmType, item.get("SegmentationAlgorithmIdentificationSequence"))
        for item in seg.SegmentSequence
    ]


def test_dicom_seg_round_trip_records_the_model(tmp_path, dicom_scan):
    series, scan = dicom_scan
    truth = _truth(scan.shape)
    out = tmp_path / "labels.nii.gz"
    seg_path = tmp_path / "labels_seg.dcm"
    written = save_segmentation(
        Volume(truth, scan.affine, scan.metadata),
        SaveTargets(out, dicom_seg=seg_path),
        CLASSES,
        model=MODEL,
        source=series.folder,
        protect=[series.folder],
    )
    assert written == [out, tmp_path / "labels.json", seg_path]
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), truth)
    np.testing.assert_array_equal(read_dicom_seg(seg_path, series.files).array, truth)
    assert json.loads((tmp_path / "labels.json").read_text())["source"] == "series"

    seg = pydicom.dcmread(seg_path)
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["liver", "tumour"]
    for kind, identification in _algorithm(seg_path):
        (algorithm,) = identification
        assert kind == "AUTOMATIC" and algorithm.AlgorithmName == "toy-net"
        # the settings, as the CLI records them
        assert algorithm.AlgorithmParameters == "device=cpu,overlap=0.5,tta=False"

    # corrected by hand: SEMIAUTOMATIC in the SEG, marked in the sidecar
    edited = {**MODEL, "edited_by_hand": True}
    corrected = tmp_path / "corrected.nii.gz"
    save_segmentation(
        Volume(truth, scan.affine, scan.metadata),
        SaveTargets(corrected, dicom_seg=tmp_path / "corrected_seg.dcm"),
        CLASSES,
        model=edited,
    )
    assert {kind for kind, _ in _algorithm(tmp_path / "corrected_seg.dcm")} == {"SEMIAUTOMATIC"}
    assert json.loads((tmp_path / "corrected.json").read_text())["model"] == edited

    # drawn by hand: MANUAL, no algorithm, an empty model in the sidecar
    save_segmentation(
        Volume(truth, scan.affine, scan.metadata),
        SaveTargets(tmp_path / "manual.nii.gz", dicom_seg=tmp_path / "manual_seg.dcm"),
        CLASSES,
    )
    assert _algorithm(tmp_path / "manual_seg.dcm") == [("MANUAL", None)] * 2
    assert json.loads((tmp_path / "manual.json").read_text())["model"] == {}
    assert nib.load(tmp_path / "manual.nii.gz").header["descrip"].item() == b"napari-medseg labels"


def test_a_seg_alone_references_the_given_files(tmp_path, dicom_scan):
    """A label map read from NIfTI (no DICOM files in its metadata) on the series' grid."""
    series, scan = dicom_scan
    truth = _truth(scan.shape)
    seg_path = tmp_path / "seg.dcm"
    written = save_segmentation(
        Volume(truth, scan.affine),
        SaveTargets(dicom_seg=seg_path),
        CLASSES,
        model="toy-net",
        dicom_files=series.files,
    )
    assert written == [seg_path] and sorted(p.name for p in tmp_path.iterdir()) == [
        "seg.dcm",
        "series",
    ]
    np.testing.assert_array_equal(read_dicom_seg(seg_path, scan).array, truth)
    for kind, (algorithm,) in _algorithm(seg_path):  # a name alone: no parameters
        assert kind == "AUTOMATIC" and "AlgorithmParameters" not in algorithm
        assert algorithm.AlgorithmName == "toy-net"


def _digests(paths) -> list[bytes]:
    return [p.read_bytes() for p in paths]


def test_source_scans_are_never_written_over(tmp_path, nifti_scan, dicom_scan):
    path, _ = nifti_scan
    series, scan = dicom_scan
    labels = Volume(_truth(scan.shape), scan.affine, scan.metadata)
    before = _digests([path, *series.files])
    for targets, protect in [
        (SaveTargets(path), [path]),  # the scan itself
        (SaveTargets(dicom_seg=series.files[3]), [series.folder]),  # a file of the series
        (SaveTargets(dicom_seg=series.files[3]), []),  # the SEG's own source images
    ]:
        with pytest.raises(OverwriteSourceError, match="refusing to write here"):
            save_segmentation(labels, targets, CLASSES, protect=protect, overwrite=True)
    with pytest.raises(OverwriteSourceError):
        check_targets(SaveTargets(tmp_path / "x.nii.gz", dicom_seg=path), [path], overwrite=True)
    assert _digests([path, *series.files]) == before
    assert not (tmp_path / "x.nii.gz").exists() and not (tmp_path / "x.json").exists()


def test_existing_files_are_replaced_only_when_allowed(tmp_path, nifti_scan):
    path, _ = nifti_scan
    scan = read_scan(path)
    labels = Volume(_truth(), scan.affine, scan.metadata)
    out = tmp_path / "seg.nii.gz"
    sidecar = tmp_path / "seg.json"
    sidecar.write_text("my own notes")  # only the sidecar exists: nothing is written
    with pytest.raises(OutputExistsError, match="seg.json: exists already") as raised:
        save_segmentation(labels, SaveTargets(out), CLASSES, model=MODEL)
    assert raised.value.what == "label names file"
    assert sidecar.read_text() == "my own notes" and not out.exists()

    # the caller says how to allow it
    message = "{path}: already exists; pass --overwrite to replace the {what}."
    with pytest.raises(OutputExistsError) as raised:
        check_targets(SaveTargets(out), [path], overwrite=False, exists_message=message)
    assert str(raised.value) == f"{sidecar}: already exists; pass --overwrite to replace the " + (
        "label names file."
    )

    assert save_segmentation(labels, SaveTargets(out), CLASSES, model=MODEL, overwrite=True)
    assert json.loads(sidecar.read_text())["model"] == MODEL
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), _truth())


def test_bad_targets(tmp_path, nifti_scan):
    path, _ = nifti_scan
    scan = read_scan(path)
    labels = Volume(_truth(), scan.affine, scan.metadata)
    with pytest.raises(ScanWriteError, match="ends in .nii or .nii.gz"):
        save_segmentation(labels, SaveTargets(tmp_path / "labels.png"), CLASSES)
    with pytest.raises(ScanWriteError, match="ends in .nii or .nii.gz"):
        check_targets(
            SaveTargets(tmp_path / "a.nii.gz", probabilities=tmp_path / "p.npy"),
            [],
            overwrite=False,
        )
    with pytest.raises(ValueError, match="name both"):
        SaveTargets(probabilities=tmp_path / "p.nii.gz")
    assert list(tmp_path.iterdir()) == [path]


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path, dicom_scan, monkeypatch):
    series, scan = dicom_scan
    truth = _truth(scan.shape)
    out, seg_path = tmp_path / "old.nii.gz", tmp_path / "old_seg.dcm"
    out.write_bytes(b"the old labels")
    seg_path.write_bytes(b"the old SEG")

    # the SEG cannot be made (labels 5 mm off the series' grid): the old SEG stays
    shifted = scan.affine.copy()
    shifted[2, 3] += 5.0
    with pytest.raises(SegGridError):
        save_segmentation(
            Volume(truth, shifted, scan.metadata),
            SaveTargets(dicom_seg=seg_path),
            CLASSES,
            overwrite=True,
        )
    assert seg_path.read_bytes() == b"the old SEG"

    # the disk fills up half-way through the NIfTI: the old file stays, nothing partial
    def half_written(image, filename):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nib, "save", half_written)
    with pytest.raises(ScanWriteError, match="No space left on device"):
        save_segmentation(
            Volume(truth, scan.affine, scan.metadata), SaveTargets(out), CLASSES, overwrite=True
        )
    assert out.read_bytes() == b"the old labels"
    assert not (tmp_path / "old.json").exists()
    assert _no_temporary_files(tmp_path)


def test_a_save_leaves_all_its_files_or_none(tmp_path, dicom_scan):
    """The SEG fails after the labels and sidecar are written: none of them is left,
    the old files of a save allowed to replace them keep their content, and a rerun
    finds nothing in its way."""
    series, scan = dicom_scan
    truth = _truth(scan.shape)
    shifted = scan.affine.copy()
    shifted[2, 3] += 5.0  # labels 5 mm off the series' grid: no SEG can be made
    off_grid = Volume(truth, shifted, scan.metadata)
    out, seg_path = tmp_path / "seg.nii.gz", tmp_path / "seg_seg.dcm"
    targets = SaveTargets(out, dicom_seg=seg_path)
    with pytest.raises(SegGridError):
        save_segmentation(off_grid, targets, CLASSES, model=MODEL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]

    out.write_bytes(b"the old labels")
    (tmp_path / "seg.json").write_text("the old sidecar")
    with pytest.raises(SegGridError):
        save_segmentation(off_grid, targets, CLASSES, model=MODEL, overwrite=True)
    assert out.read_bytes() == b"the old labels"
    assert (tmp_path / "seg.json").read_text() == "the old sidecar"
    assert _no_temporary_files(tmp_path)

    on_grid = Volume(truth, scan.affine, scan.metadata)
    out.unlink()
    (tmp_path / "seg.json").unlink()
    assert save_segmentation(on_grid, targets, CLASSES, model=MODEL) == [
        out,
        tmp_path / "seg.json",
        seg_path,
    ]
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), truth)


def test_a_name_taken_while_saving_is_not_replaced(tmp_path, nifti_scan, monkeypatch):
    """Without overwrite a name is claimed when published: a file another writer put
    there in the meantime stays, and nothing of this save is left."""
    from napari_medseg.io import sidecar

    path, _ = nifti_scan
    scan = read_scan(path)
    out = tmp_path / "seg.nii.gz"
    real_content = sidecar.sidecar_content

    def another_writer_meanwhile(*args):
        out.write_bytes(b"another writer's labels")  # after the check, before publication
        return real_content(*args)

    monkeypatch.setattr(sidecar, "sidecar_content", another_writer_meanwhile)
    message = "{path}: already exists; pass --overwrite to replace the {what}."
    with pytest.raises(OutputExistsError) as raised:
        save_segmentation(
            Volume(_truth(), scan.affine, scan.metadata),
            SaveTargets(out),
            CLASSES,
            model=MODEL,
            exists_message=message,
        )
    assert str(raised.value) == f"{out}: already exists; pass --overwrite to replace the labels."
    assert out.read_bytes() == b"another writer's labels"
    assert not (tmp_path / "seg.json").exists() and _no_temporary_files(tmp_path)


def test_targets_are_checked_before_any_work(tmp_path, nifti_scan):
    path, _ = nifti_scan
    (tmp_path / "folder.nii.gz").mkdir()
    with pytest.raises(ScanWriteError, match="folder.nii.gz: is a folder"):
        check_targets(SaveTargets(tmp_path / "folder.nii.gz"), [path], overwrite=True)
    loop = tmp_path / "loop.nii.gz"
    loop.symlink_to(loop.name)
    with pytest.raises(ScanWriteError, match="loop.nii.gz: cannot be written: Too many levels"):
        check_targets(SaveTargets(loop), [loop.with_name("x")], overwrite=True)
    with pytest.raises(ScanWriteError, match="named for both the labels and the probabilities"):
        check_targets(
            SaveTargets(tmp_path / "a.nii.gz", probabilities=tmp_path / "a.nii.gz"),
            [],
            overwrite=True,
        )
    with pytest.raises(ScanWriteError, match="named for both the label names file and the DICOM"):
        check_targets(
            SaveTargets(tmp_path / "a.nii.gz", dicom_seg=tmp_path / "a.json"), [], overwrite=True
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ct.nii.gz",
        "folder.nii.gz",
        "loop.nii.gz",
    ]
