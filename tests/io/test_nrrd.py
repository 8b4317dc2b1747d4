"""NRRD scans and 3D Slicer segmentations against independent readers and writers:
SimpleITK for the geometry of a NRRD scan, slicerio (3D Slicer's own Python reader and
writer of .seg.nrrd) for the segmentation fields and voxels."""

from __future__ import annotations

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from napari_medseg.errors import OverwriteSourceError
from napari_medseg.io.nrrd import NrrdReadError, NrrdWriteError, read_nrrd, write_seg_nrrd
from napari_medseg.volume import RAS_TO_LPS, ScanMetadata, Volume

CLASSES = {1: ("liver", "#dc6440"), 2: ("spleen", "#3366cc"), 300: ("tumour", "#00ff00")}


def _oblique_affine() -> np.ndarray:
    angle = np.deg2rad(12.0)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.9, 2.5]) @ np.diag([-1, 1, 1])
    affine[:3, 3] = [12.5, -40.0, 77.0]
    return affine


@pytest.fixture
def labels() -> Volume:
    array = np.zeros((30, 24, 12), np.uint16)
    array[3:15, 4:20, 2:9] = 1
    array[16:28, 5:12, 3:11] = 2
    array[8:11, 8:11, 4:6] = 300  # inside the liver block
    return Volume(array, _oblique_affine(), ScanMetadata(source="labels", format="memory"))


def test_a_seg_nrrd_round_trips_and_slicer_reads_its_segments(labels, tmp_path):
    out = write_seg_nrrd(tmp_path / "labels.seg.nrrd", labels, CLASSES)
    back = read_nrrd(out)
    np.testing.assert_array_equal(back.array, labels.array)
    assert back.array.dtype == np.uint16
    np.testing.assert_allclose(back.affine, labels.affine, atol=1e-5)
    assert back.metadata.extra["classes"] == CLASSES
    assert back.metadata.extra["kind"] == "labels"
    # 3D Slicer's reader
    segmentation = slicerio.read_segmentation(str(out))
    np.testing.assert_allclose(segmentation["ijkToLPS"], RAS_TO_LPS @ labels.affine, atol=1e-5)
    found = {s["labelValue"]: s for s in segmentation["segments"]}
    assert sorted(found) == [1, 2, 300]
    for value, (name, color) in CLASSES.items():
        segment = found[value]
        assert segment["name"] == name and segment["layer"] == 0
        rgb = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        np.testing.assert_allclose(segment["color"], rgb, atol=1e-5)
        mask = labels.array == value
        ijk = np.argwhere(mask)
        assert segment["extent"] == [
            v for axis in range(3) for v in (ijk[:, axis].min(), ijk[:, axis].max())
        ]
    np.testing.assert_array_equal(segmentation["voxels"], labels.array)
    # the meaning of each name, as Slicer's terminology (SNOMED CT codes)
    liver = found[1]["terminology"]
    assert liver["category"] == ["SCT", "123037004", "Anatomical Structure"]
    assert liver["type"] == ["SCT", "10200004", "Liver"]
    assert found[300]["terminology"]["category"][1] == "49755003"  # tumour: altered structure


def test_slicer_layers_with_overlaps_merge_smaller_on_top(labels, tmp_path):
    big = np.zeros(labels.shape, np.uint8)
    big[2:29, 2:22, 1:11] = 1  # a "body" around everything
    small = np.zeros(labels.shape, np.uint8)
    small[5:9, 5:9, 3:6] = 1  # same label value, another layer
    segmentation = {
        "voxels": np.stack([big, small]),
        "ijkToLPS": RAS_TO_LPS @ labels.affine,
        "encoding": "gzip",
        "segments": [
            {"id": "Segment_1", "name": "body", "color": [1, 0, 0], "labelValue": 1, "layer": 0},
            {"id": "Segment_2", "name": "lesion", "color": [0, 1, 0], "labelValue": 1, "layer": 1},
        ],
    }
    path = tmp_path / "layers.seg.nrrd"
    slicerio.write_segmentation(str(path), segmentation)
    back = read_nrrd(path)
    values = {name: v for v, (name, _) in back.metadata.extra["classes"].items()}
    assert values["body"] == 1 and values["lesion"] != 1
    assert np.count_nonzero(back.array == values["lesion"]) == np.count_nonzero(small)
    assert np.count_nonzero(back.array == 1) == np.count_nonzero(big) - np.count_nonzero(small)
    text = " ".join(back.metadata.warnings)
    assert "shares label value 1" in text and "'lesion' overlaps 'body'" in text
    np.testing.assert_allclose(back.affine, labels.affine, atol=1e-5)


@pytest.mark.parametrize("space", ["left-posterior-superior", "right-anterior-superior"])
def test_a_nrrd_scan_has_simpleitks_geometry(space, tmp_path):
    affine = _oblique_affine()
    to_space = RAS_TO_LPS if space.startswith("left") else np.eye(4)
    in_space = to_space @ affine
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 2000, size=(20, 16, 9)).astype(np.int16)
    path = tmp_path / "scan.nrrd"
    header = {
        "space": space,
        "space directions": in_space[:3, :3].T,
        "space origin": in_space[:3, 3],
        "kinds": ["domain"] * 3,
    }
    nrrd.write(str(path), data, header, index_order="F")
    volume = read_nrrd(path)
    np.testing.assert_array_equal(volume.array, data)
    image = sitk.ReadImage(str(path))  # ITK: LPS origin, direction, spacing
    direction = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    itk_lps = np.eye(4)
    itk_lps[:3, :3] = direction
    itk_lps[:3, 3] = image.GetOrigin()
    np.testing.assert_allclose(RAS_TO_LPS @ volume.affine, itk_lps, atol=1e-5)
    assert "kind" not in volume.metadata.extra


def test_a_nrrd_without_space_is_read_with_a_warning(tmp_path):
    path = tmp_path / "plain.nrrd"
    nrrd.write(str(path), np.ones((4, 5, 6), np.uint8), {"spacings": [0.5, 0.6, 2.0]})
    volume = read_nrrd(path)
    np.testing.assert_allclose(np.diag(volume.affine)[:3], [0.5, 0.6, 2.0])
    assert any("no patient space" in w for w in volume.metadata.warnings)


def test_bad_nrrd_files_give_one_error_naming_the_file(labels, tmp_path):
    good = write_seg_nrrd(tmp_path / "good.seg.nrrd", labels, CLASSES)
    truncated = tmp_path / "truncated.seg.nrrd"
    truncated.write_bytes(good.read_bytes()[:-40])
    empty = tmp_path / "empty.nrrd"
    empty.write_bytes(b"")
    flat = tmp_path / "flat.nrrd"
    nrrd.write(str(flat), np.zeros((5, 5), np.uint8))
    odd_space = tmp_path / "odd.nrrd"
    nrrd.write(
        str(odd_space),
        np.zeros((2, 2, 2), np.uint8),
        {"space": "left-anterior-superior", "space directions": np.eye(3), "kinds": ["domain"] * 3},
    )
    for path, problem in [
        (truncated, "cannot be read as NRRD"),
        (empty, "cannot be read as NRRD"),
        (flat, "2D array"),
        (odd_space, "left-anterior-superior"),
        (tmp_path / "missing.nrrd", "no such file"),
    ]:
        with pytest.raises(NrrdReadError, match=problem) as caught:
            read_nrrd(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(NrrdWriteError, match="already exists"):
        write_seg_nrrd(good, labels, CLASSES)
    with pytest.raises(NrrdWriteError, match="seg.nrrd"):
        write_seg_nrrd(tmp_path / "labels.nii.gz", labels)
    with pytest.raises(OverwriteSourceError):
        write_seg_nrrd(good, labels, overwrite=True, protect=[good])


def test_read_scan_and_medseg_read_nrrd(labels, tmp_path, capsys):
    from napari_medseg.cli import main
    from napari_medseg.io import read_scan

    out = write_seg_nrrd(tmp_path / "labels.seg.nrrd", labels, CLASSES)
    volume = read_scan(out)
    np.testing.assert_array_equal(volume.array, labels.array)
    assert volume.metadata.extra["classes"] == CLASSES
    assert main(["info", str(out)]) == 0
    assert "30 x 24 x 12 voxels" in capsys.readouterr().out
    converted = tmp_path / "labels.nii.gz"
    assert main(["convert", str(out), str(converted)]) == 0
    np.testing.assert_allclose(read_scan(converted).affine, labels.affine, atol=1e-5)
