"""DICOM SEG: write a label map on a DICOM series' grid, check it with highdicom, read it back.

Every series is written by :func:`write_dicom_series` (through ``dicom_factory``), so the
ground truth is known independently of our reader and writer: file ``k`` of a series
holds ``stored[:, :, k].T`` and the label map drawn on that series is ``truth`` on the
same ``(I, J, K)`` grid. The SEG is read back with highdicom alone, frame by source
SOP instance, and each frame is compared with ``truth[:, :, k].T`` of the file it
references, so a wrong frame order, flip or transpose in our writer shows up whatever
voxel order our reader chose.
"""

from __future__ import annotations

import json
import subprocess
import sys

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_factory import (
    make_affine,
    phantom,
    remove_slices,
    reorient_like,
    write_enhanced,
    write_series,
    write_tilted,
)

from napari_medseg.errors import OverwriteSourceError
from napari_medseg.io import read_scan
from napari_medseg.io.dicom_seg import (
    DicomSegError,
    DicomSegReadError,
    SegGridError,
    SegSourceError,
    read_dicom_seg,
    write_dicom_seg,
)
from napari_medseg.volume import Volume

SHAPE = (16, 12, 8)
CLASSES = {1: ("liver", "#dc6440"), 300: ("tumour", "#00ff00")}

#: name -> (axis codes of the stored I, J, K; oblique rotation in degrees or None)
ORIENTATIONS = {
    "axial_LPS": ("LPS", None),
    "axial_flipped_LPI": ("LPI", None),  # slices stored head to foot: the reader flips K
    "axial_RAS": ("RAS", None),
    "coronal_LIA": ("LIA", None),
    "sagittal_PIL": ("PIL", None),
    "oblique": ("LPS", (12.0, -7.0, 20.0)),
}


def _truth(shape=SHAPE) -> np.ndarray:
    """Label map on the written grid: two big labels (one > 255), a corner voxel, a stray 7."""
    truth = np.zeros(shape, dtype=np.uint16)
    truth[2:7, 3:9, 1:4] = 1
    truth[9:13, 1:5, 4:7] = 300
    truth[0, 0, 0] = 1  # corner: a flipped axis moves it
    truth[shape[0] - 1, 2, shape[2] - 1] = 7  # a label without a class
    return truth


def _labels_on(volume: Volume, truth: np.ndarray, truth_affine: np.ndarray) -> Volume:
    """``truth`` (on the written grid) in the voxel order the reader gave ``volume``."""
    array, affine = reorient_like(truth, truth_affine, volume.affine)
    np.testing.assert_allclose(affine, volume.affine, atol=1e-4)  # same grid, other order
    return Volume(np.ascontiguousarray(array), volume.affine)


def _segment_values(seg) -> dict[int, int]:
    """Segment number -> label value, from the SegmentDescription text (as stored)."""
    return {
        int(item.SegmentNumber): int(str(item.SegmentDescription).rsplit(" ", 1)[-1])
        for item in seg.SegmentSequence
    }


def _label_frames(seg, sop_uids: list[str]) -> np.ndarray:
    """Label values per source instance, read with highdicom only: ``(n, Rows, Columns)``."""
    numbers = seg.get_pixels_by_source_instance(
        sop_uids, combine_segments=True, assert_missing_frames_are_empty=True
    )
    lut = np.zeros(max(_segment_values(seg)) + 1, dtype=np.int64)
    for number, value in _segment_values(seg).items():
        lut[number] = value
    return lut[numbers]


def _sop_uid(path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


@pytest.mark.parametrize("case", list(ORIENTATIONS))
def test_seg_frames_are_the_label_slices_of_their_source_images(tmp_path, case):
    axcodes, oblique = ORIENTATIONS[case]
    affine = make_affine(axcodes, oblique_deg=oblique)
    series = write_series(tmp_path / "series", phantom(SHAPE), affine)
    volume = read_scan(series.folder)
    truth = _truth()
    labels = _labels_on(volume, truth, series.affine)
    out = tmp_path / "seg.dcm"

    assert write_dicom_seg(out, labels, volume.metadata.files, CLASSES) == out

    seg = hd.seg.segread(out)
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in series.files]
    uids = [str(ds.SOPInstanceUID) for ds in sources]
    frames = _label_frames(seg, uids)
    for k in range(SHAPE[2]):  # file k holds stored[:, :, k].T: its labels are truth[:, :, k].T
        np.testing.assert_array_equal(frames[k], truth[:, :, k].T, err_msg=f"slice {k}")

    # every frame is derived from one image of the source series, at its position
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    for item in seg.PerFrameFunctionalGroupsSequence:
        (derivation,) = item.DerivationImageSequence
        (source,) = derivation.SourceImageSequence
        ds = by_uid[str(source.ReferencedSOPInstanceUID)]
        position = item.PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose(
            [float(v) for v in position], [float(v) for v in ds.ImagePositionPatient], atol=1e-4
        )
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == series.series_uid
    assert {str(i.ReferencedSOPInstanceUID) for i in referenced.ReferencedInstanceSequence} <= set(
        uids
    )
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.SeriesInstanceUID != series.series_uid
    # empty frames are omitted: one frame per (slice, segment) that holds the segment
    expected_frames = sum(
        int(np.any(truth[:, :, k] == value)) for k in range(SHAPE[2]) for value in (1, 7, 300)
    )
    assert int(seg.NumberOfFrames) == expected_frames

    # our reader: the same voxels, on the reader's grid, from the Volume or from the files
    for source in (volume, volume.metadata.files):
        back = read_dicom_seg(out, source)
        assert back.shape == labels.shape
        np.testing.assert_allclose(back.affine, volume.affine, atol=1e-6)
        np.testing.assert_array_equal(back.array, labels.array)


def test_segment_descriptions(tmp_path):
    series = write_series(tmp_path / "series", phantom(SHAPE), make_affine("LPS"))
    volume = read_scan(series.folder)
    labels = _labels_on(volume, _truth(), series.affine)
    labels.metadata.files = list(volume.metadata.files)  # the default source files
    out = write_dicom_seg(tmp_path / "seg.dcm", labels, classes=CLASSES)
    seg = hd.seg.segread(out)
    rows = {
        int(item.SegmentNumber): (
            str(item.SegmentLabel),
            int(str(item.SegmentDescription).rsplit(" ", 1)[-1]),
            hd.color.CIELabColor.from_dicom_value(
                tuple(item.RecommendedDisplayCIELabValue)
            ).to_rgb()
            if "RecommendedDisplayCIELabValue" in item
            else None,
            str(item.SegmentAlgorithmType),
        )
        for item in seg.SegmentSequence
    }
    # consecutive segment numbers for the values present, in ascending order
    assert [(n, name, value) for n, (name, value, _, _) in sorted(rows.items())] == [
        (1, "liver", 1),
        (2, "label_7", 7),
        (3, "tumour", 300),
    ]
    assert np.abs(np.subtract(rows[1][2], (0xDC, 0x64, 0x40))).max() <= 1
    assert np.abs(np.subtract(rows[3][2], (0, 255, 0))).max() <= 1
    assert rows[2][2] is None  # no class colour: none recommended
    assert {row[3] for row in rows.values()} == {"MANUAL"}
    item = seg.SegmentSequence[0]  # "liver": SCT Anatomical Structure / Liver
    assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "123037004"
    assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    assert item.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
    unnamed = seg.SegmentSequence[1]  # "label_7": SCT Tissue, the generic choice
    assert unnamed.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "85756007"
    assert "SegmentationAlgorithmIdentificationSequence" not in item
    # the patient and study come from the source, nothing is added
    source = pydicom.dcmread(series.files[0], stop_before_pixels=True)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
        assert str(seg.get(keyword, "")) == str(source.get(keyword, "")), keyword
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    back = read_dicom_seg(out, volume)
    assert back.metadata.extra["classes"][300][0] == "tumour"
    assert back.metadata.extra["classes"][1][1] == "#dc6440"


def test_a_model_is_recorded_as_automatic(tmp_path):
    series = write_series(tmp_path / "series", phantom(SHAPE), make_affine("LPS"))
    volume = read_scan(series.folder)
    labels = _labels_on(volume, _truth(), series.affine)
    model = {"name": "tiny-unet", "version": "3", "settings": {"overlap": 0.25, "tta": False}}
    out = write_dicom_seg(tmp_path / "seg.dcm", labels, volume.metadata.files, algorithm=model)
    for item in hd.seg.segread(out).SegmentSequence:
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        (algorithm,) = item.SegmentationAlgorithmIdentificationSequence
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("tiny-unet", "3")
        assert "overlap=0.25" in algorithm.AlgorithmParameters
        assert algorithm.AlgorithmFamilyCodeSequence[0].CodeValue == "123110"  # DCM AI


def test_the_array_order_of_the_label_map_does_not_matter(tmp_path):
    """The same labels stored RAS, or transposed, give the same SEG frames."""
    series = write_series(tmp_path / "series", phantom(SHAPE), make_affine("LIA"))
    volume = read_scan(series.folder)
    truth = _truth()
    labels = _labels_on(volume, truth, series.affine)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(labels.array, labels.affine))
    permuted = Volume(np.asarray(canonical.dataobj), canonical.affine)
    assert permuted.orientation == "RAS" and permuted.orientation != volume.orientation
    uids = [_sop_uid(f) for f in series.files]
    for name, variant in (("reader.dcm", labels), ("ras.dcm", permuted)):
        out = write_dicom_seg(tmp_path / name, variant, volume.metadata.files, CLASSES)
        frames = _label_frames(hd.seg.segread(out), uids)
        for k in range(SHAPE[2]):
            np.testing.assert_array_equal(frames[k], truth[:, :, k].T)
        # read back onto the grid of the source series (not of the label map written)
        np.testing.assert_array_equal(read_dicom_seg(out, volume).array, labels.array)


def test_gantry_tilt(tmp_path):
    series = write_tilted(tmp_path / "series", tilt_deg=15.0, stored=phantom(SHAPE))
    volume = read_scan(series.folder)
    assert abs(volume.affine[1, 2]) > 0.1  # the reader keeps the shear
    truth = _truth()
    labels = _labels_on(volume, truth, series.affine)
    out = write_dicom_seg(tmp_path / "seg.dcm", labels, volume.metadata.files)
    frames = _label_frames(hd.seg.segread(out), [_sop_uid(f) for f in series.files])
    for k in range(SHAPE[2]):
        np.testing.assert_array_equal(frames[k], truth[:, :, k].T)
    np.testing.assert_array_equal(read_dicom_seg(out, series.files).array, labels.array)


def test_enhanced_multiframe_source(tmp_path):
    """One Enhanced CT file whose frames are stored out of order: frames referenced by number."""
    shape = (16, 12, 6)
    affine = make_affine("LPS")
    path, order = write_enhanced(
        tmp_path / "enhanced.dcm", [phantom(shape)], affine, frame_order=[3, 1, 0, 5, 2, 4]
    )
    volume = read_scan(path)
    truth = _truth(shape)
    labels = _labels_on(volume, truth, affine)
    out = write_dicom_seg(tmp_path / "seg.dcm", labels, volume.metadata.files, CLASSES)
    seg = hd.seg.segread(out)
    uid = _sop_uid(path)
    numbers = seg.get_pixels_by_source_frame(
        uid, list(range(1, len(order) + 1)), combine_segments=True,
        assert_missing_frames_are_empty=True,
    )  # fmt: skip
    lut = np.zeros(max(_segment_values(seg)) + 1, dtype=np.int64)
    for number, value in _segment_values(seg).items():
        lut[number] = value
    for frame, (_, k) in enumerate(order):  # frame f of the file holds slice k
        np.testing.assert_array_equal(lut[numbers[frame]], truth[:, :, k].T)
    for source in (volume, [path]):
        np.testing.assert_array_equal(read_dicom_seg(out, source).array, labels.array)


# ------------------------------------------------------------------ refusals
@pytest.fixture
def axial(tmp_path):
    series = write_series(tmp_path / "series", phantom(SHAPE), make_affine("LPS"))
    volume = read_scan(series.folder)
    return series, volume, _labels_on(volume, _truth(), series.affine)


def _shifted(labels: Volume, voxels) -> Volume:
    affine = labels.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ np.asarray(voxels, dtype=float)
    return Volume(labels.array, affine)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("one slice further", "outside the label map's 0..7"),
        ("half a pixel off", "voxel from the label map's voxel centres"),
        ("other spacing", "voxel from the label map's voxel centres"),
        ("transposed in plane", "do not match the label map's"),
        ("one slice missing", "outside the label map's 0..6"),
    ],
)
def test_labels_off_the_series_grid_are_refused(tmp_path, axial, how, message):
    series, volume, labels = axial
    if how == "one slice further":
        wrong = _shifted(labels, (0, 0, 1))
    elif how == "half a pixel off":
        wrong = _shifted(labels, (0.6, 0, 0))
    elif how == "other spacing":
        wrong = Volume(labels.array, labels.affine @ np.diag([1.05, 1.0, 1.0, 1.0]))
    elif how == "transposed in plane":
        wrong = Volume(np.ascontiguousarray(labels.array.transpose(1, 0, 2)), labels.affine)
    else:
        wrong = Volume(labels.array[:, :, :-1], labels.affine)
    out = tmp_path / "seg.dcm"
    with pytest.raises(SegGridError) as caught:
        write_dicom_seg(out, wrong, volume.metadata.files)
    text = str(caught.value)
    assert text.startswith(str(out)) and "is not on the grid of the DICOM series" in text
    assert message in text and "IM0000" in text  # names the source file that does not fit
    assert not out.exists()


def test_a_series_read_with_a_gap(tmp_path):
    """Labels on the slice the series lacks cannot be referenced: refused; elsewhere: fine."""
    series = write_series(tmp_path / "series", phantom(SHAPE), make_affine("LPS"))
    remove_slices(series, [3])
    volume = read_scan(series.folder, allow_gaps=True)
    assert volume.shape == SHAPE and len(volume.metadata.files) == SHAPE[2] - 1
    truth = _truth()
    assert truth[:, :, 3].any()
    with pytest.raises(SegGridError, match="slices 3 along axis K hold labels"):
        write_dicom_seg(
            tmp_path / "a.dcm", _labels_on(volume, truth, series.affine), volume.metadata.files
        )
    truth[:, :, 3] = 0
    labels = _labels_on(volume, truth, series.affine)
    out = write_dicom_seg(tmp_path / "b.dcm", labels, volume.metadata.files)
    kept = [k for k in range(SHAPE[2]) if k != 3]
    frames = _label_frames(hd.seg.segread(out), [_sop_uid(series.files[k]) for k in kept])
    for frame, k in zip(frames, kept, strict=True):
        np.testing.assert_array_equal(frame, truth[:, :, k].T)
    np.testing.assert_array_equal(read_dicom_seg(out, volume).array, labels.array)


def test_missing_source_file(tmp_path, axial):
    series, volume, labels = axial
    series.files[3].unlink()
    out = tmp_path / "seg.dcm"
    with pytest.raises(SegSourceError, match="IM00004.dcm is missing"):
        write_dicom_seg(out, labels, volume.metadata.files)
    assert not out.exists()


def test_no_source_files_and_files_of_two_series(tmp_path, axial):
    series, volume, labels = axial
    with pytest.raises(SegSourceError, match="no DICOM source files"):
        write_dicom_seg(tmp_path / "seg.dcm", labels, [])
    other = write_series(tmp_path / "other", phantom(SHAPE), make_affine("LPS"))
    mixed = [*volume.metadata.files[:4], *map(str, other.files[4:])]
    with pytest.raises(SegSourceError, match="2 different series"):
        write_dicom_seg(tmp_path / "seg.dcm", labels, mixed)


def test_a_non_image_source_is_refused(tmp_path, axial):
    series, volume, labels = axial
    first = write_dicom_seg(tmp_path / "first.dcm", labels, volume.metadata.files)
    with pytest.raises(SegSourceError, match="Segmentation"):
        write_dicom_seg(tmp_path / "second.dcm", labels, [str(first)])


def test_never_over_a_source_file_nor_an_existing_file(tmp_path, axial):
    series, volume, labels = axial
    before = series.files[2].read_bytes()
    with pytest.raises(OverwriteSourceError):
        write_dicom_seg(series.files[2], labels, volume.metadata.files, overwrite=True)
    assert series.files[2].read_bytes() == before
    protected = tmp_path / "scan.nii.gz"
    protected.write_bytes(b"scan")
    with pytest.raises(OverwriteSourceError):
        write_dicom_seg(protected, labels, volume.metadata.files, protect=[protected])
    assert protected.read_bytes() == b"scan"

    out = tmp_path / "seg.dcm"
    out.write_bytes(b"mine")
    with pytest.raises(DicomSegError, match="exists already"):
        write_dicom_seg(out, labels, volume.metadata.files)
    assert out.read_bytes() == b"mine"
    write_dicom_seg(out, labels, volume.metadata.files, overwrite=True)
    np.testing.assert_array_equal(read_dicom_seg(out, volume).array, labels.array)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_empty_and_negative_label_maps(tmp_path, axial):
    series, volume, labels = axial
    with pytest.raises(DicomSegError, match="empty"):
        write_dicom_seg(
            tmp_path / "a.dcm", Volume(np.zeros(SHAPE, np.uint8), labels.affine), series.files
        )
    negative = labels.array.astype(np.int16)
    negative[0, 0, 0] = -1
    with pytest.raises(DicomSegError, match="negative"):
        write_dicom_seg(tmp_path / "b.dcm", Volume(negative, labels.affine), series.files)


def test_reading_a_seg_onto_another_series_is_refused(tmp_path, axial):
    series, volume, labels = axial
    out = write_dicom_seg(tmp_path / "seg.dcm", labels, volume.metadata.files)
    other = write_series(tmp_path / "other", phantom(SHAPE), make_affine("LPS"))
    with pytest.raises(DicomSegReadError, match="not in the given source series"):
        read_dicom_seg(out, other.files)
    with pytest.raises(DicomSegReadError, match="not a readable DICOM SEG"):
        read_dicom_seg(series.files[0].with_name("nothing.dcm"), volume)


def test_importing_the_module_loads_neither_highdicom_nor_torch():
    code = (
        "import sys, json; import napari_medseg.io.dicom_seg; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert "napari_medseg" in loaded
    assert not loaded & {"highdicom", "torch", "napari", "qtpy"}


def test_class_names_in_any_script_and_with_backslashes_survive(tmp_path):
    # a Latin-1 source (the usual ISO_IR 100), a patient name with umlauts, and class
    # names Latin-1 cannot hold or that contain DICOM's value separator
    series = write_series(tmp_path / "series", phantom(SHAPE), make_affine("LPS"))
    for file in series.files:
        ds = pydicom.dcmread(file)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = "Müller^Jürgen"
        ds.save_as(file)
    volume = read_scan(series.folder)
    labels = _labels_on(volume, _truth(), series.affine)
    classes = {1: ("肝臓", "#dc6440"), 7: ("Läsion\\links", "#0000ff"), 300: ("Опухоль", "")}
    out = write_dicom_seg(
        tmp_path / "seg.dcm", labels, volume.metadata.files, classes, algorithm="μ-net"
    )
    seg = pydicom.dcmread(out)
    names = {int(s.SegmentNumber): s.SegmentLabel for s in seg.SegmentSequence}
    assert names == {1: "肝臓", 2: "Läsion/links", 3: "Опухоль"}  # one value each, no "?"
    assert str(seg.PatientName) == "Müller^Jürgen"
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "μ-net"
    back = read_dicom_seg(out, volume)
    assert {v: name for v, (name, _) in back.metadata.extra["classes"].items()} == {
        1: "肝臓",
        7: "Läsion/links",
        300: "Опухоль",
    }
    np.testing.assert_array_equal(back.array, labels.array)


def test_anonymised_sources_without_uids(tmp_path, caplog):
    """Blank Study/Series/Frame of Reference UIDs get new ones (said in a warning); blank
    SOP Instance UIDs are refused before anything is written: a SEG referencing '' for
    every image read back painted one label on every slice."""
    series = write_series(tmp_path / "series", phantom(SHAPE), make_affine("LPS"))
    for file in series.files:
        ds = pydicom.dcmread(file)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
            setattr(ds, keyword, "")
        ds.save_as(file)
    volume = read_scan(series.folder)
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:5, 2:5, 1] = 1
    out = tmp_path / "seg.dcm"
    with caplog.at_level("WARNING"):
        write_dicom_seg(out, Volume(labels, volume.affine, volume.metadata), series.files, CLASSES)
    seg = pydicom.dcmread(out)
    assert seg.StudyInstanceUID and seg.FrameOfReferenceUID and seg.SeriesInstanceUID
    assert "has no StudyInstanceUID" in caplog.text and "has no FrameOfReferenceUID" in caplog.text
    np.testing.assert_array_equal(read_dicom_seg(out, volume).array, labels)

    for file in series.files:
        ds = pydicom.dcmread(file)
        ds.SOPInstanceUID = ""
        ds.file_meta.MediaStorageSOPInstanceUID = ""
        ds.save_as(file)
    blank = tmp_path / "blank.dcm"
    with pytest.raises(SegSourceError, match="has no SOP Instance UID") as caught:
        write_dicom_seg(blank, Volume(labels, volume.affine, volume.metadata), series.files)
    assert str(blank) in str(caught.value) and not blank.exists()
