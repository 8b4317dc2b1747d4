"""RT Structure Sets: labels -> RTSTRUCT -> labels on the sample DICOM series, the file
checked with plain pydicom and plain geometry, and pydicom's own RTSTRUCT test file.

Independent references: where a contour must lie is computed here from each source
file's own ImagePositionPatient / ImageOrientationPatient / PixelSpacing (read with
pydicom), not through the affine the writer uses; areas of polygons by the shoelace
formula.
"""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from napari_medseg.errors import OverwriteSourceError
from napari_medseg.io import read_scan
from napari_medseg.io.rtstruct import (
    RTSTRUCT_SOP_CLASS,
    RTStructError,
    RTStructReadError,
    read_rtstruct,
    write_rtstruct,
)
from napari_medseg.samples import sample_path
from napari_medseg.volume import RAS_TO_LPS, ScanMetadata, Volume

CLASSES = {1: ("tumour", "#ff0000"), 2: ("liver", "#dc6440"), 300: ("Leber ü", "#00ff00")}


@pytest.fixture(scope="module")
def scan():
    return read_scan(sample_path("chest_ct_dicom"))


@pytest.fixture(scope="module")
def labels(scan):
    """The sample's tumour (1), an organ-sized shell with a cavity and an island in the
    cavity (2) and a small block with a value above 255 (300), on the series' grid."""
    tumour = read_scan(sample_path("chest_ct_tumour")).array > 0
    i, j, k = np.meshgrid(*[np.arange(n) for n in scan.shape], indexing="ij")
    spacing = scan.spacing
    r = np.sqrt(
        ((i - 80) * spacing[0] / 40.0) ** 2
        + ((j - 110) * spacing[1] / 30.0) ** 2
        + ((k - 24) * spacing[2] / 25.0) ** 2
    )
    array = np.zeros(scan.shape, np.uint16)
    array[r <= 1.0] = 2
    array[r <= 0.5] = 0  # a cavity: a hole on the middle slices
    array[r <= 0.2] = 2  # an island inside the cavity
    array[tumour] = 1
    array[180:186, 40:44, 10:13] = 300
    return Volume(array, scan.affine.copy(), ScanMetadata(source="labels", format="memory"))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_labels_come_back_voxel_for_voxel(scan, labels, tmp_path):
    out = write_rtstruct(tmp_path / "rt.dcm", labels, scan.metadata.files, CLASSES)
    back = read_rtstruct(out, scan)
    assert back.shape == scan.shape and np.allclose(back.affine, scan.affine)
    for value in (1, 2, 300):
        assert _dice(back.array == value, labels.array == value) >= 0.97
    np.testing.assert_array_equal(back.array, labels.array)
    assert back.metadata.extra["classes"] == CLASSES
    assert back.array.dtype == np.uint16
    assert not back.metadata.warnings


def test_the_file_is_a_structure_set_whose_contours_trace_the_labels(scan, labels, tmp_path):
    out = write_rtstruct(tmp_path / "rt.dcm", labels, scan.metadata.files, CLASSES, automatic=True)
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == RTSTRUCT_SOP_CLASS and ds.Modality == "RTSTRUCT"
    assert ds.file_meta.MediaStorageSOPClassUID == RTSTRUCT_SOP_CLASS
    headers = {}
    for file in scan.metadata.files:
        source = pydicom.dcmread(file, stop_before_pixels=True)
        headers[source.SOPInstanceUID] = source
    first = next(iter(headers.values()))
    assert ds.PatientID == first.PatientID and ds.StudyInstanceUID == first.StudyInstanceUID
    frame_ref = ds.ReferencedFrameOfReferenceSequence[0]
    assert frame_ref.FrameOfReferenceUID == first.FrameOfReferenceUID
    series = frame_ref.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == first.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in series.ContourImageSequence} == set(headers)
    rois = {int(r.ROINumber): r for r in ds.StructureSetROISequence}
    assert {n: r.ROIName for n, r in rois.items()} == {v: n for v, (n, _) in CLASSES.items()}
    assert {r.ROIGenerationAlgorithm for r in rois.values()} == {"AUTOMATIC"}
    array = labels.array
    to_ijk = np.linalg.inv(RAS_TO_LPS @ scan.affine)
    checked = 0
    for roi_contour in ds.ROIContourSequence:
        value = int(roi_contour.ReferencedROINumber)
        assert [int(c) for c in roi_contour.ROIDisplayColor] == [
            int(CLASSES[value][1][i : i + 2], 16) for i in (1, 3, 5)
        ]
        for contour in roi_contour.ContourSequence:
            source = headers[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
            ipp = np.asarray(source.ImagePositionPatient, float)
            row_cos = np.asarray(source.ImageOrientationPatient[:3], float)
            col_cos = np.asarray(source.ImageOrientationPatient[3:], float)
            row_spacing, col_spacing = (float(v) for v in source.PixelSpacing)
            points = np.asarray(contour.ContourData, float).reshape(-1, 3) - ipp
            normal = np.cross(row_cos, col_cos)
            assert np.abs(points @ normal).max() < 1e-3  # on the image's plane
            cols = points @ row_cos / col_spacing
            rows = points @ col_cos / row_spacing
            # the label-map slice of this image (the sample stores rows along J and
            # columns along I of the label map, slices along K)
            slice_k = int(round((to_ijk @ np.append(ipp, 1.0))[2]))
            plane = array[:, :, slice_k].T == value  # (rows, columns) of the image
            # every contour point lies between a labelled and an unlabelled pixel centre
            for r, c in zip(rows, cols, strict=True):
                r0, c0 = int(np.floor(r)), int(np.floor(c))
                around = plane[max(r0, 0) : r0 + 2, max(c0, 0) : c0 + 2]
                assert around.any()
                padded = np.pad(plane, 1)[r0 + 1 : r0 + 3, c0 + 1 : c0 + 3]
                assert not padded.all()
            checked += 1
    assert checked > 20


def test_pydicom_test_file_rasterises_to_its_polygon_areas(tmp_path):
    path = get_testdata_file("rtstruct.dcm")
    ds = pydicom.dcmread(path, force=True)
    frame = ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
    # a 1 mm grid in LPS covering the contours: voxel (i, j, k) at LPS (i-250, j-250, k-250)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS from LPS
    affine[:3, 3] = [250.0, 250.0, -250.0]
    grid = Volume(
        np.zeros((501, 501, 501), np.int16),
        affine,
        ScanMetadata(source="grid", format="memory", frame_of_reference_uid=frame),
    )
    back = read_rtstruct(path, grid)
    assert back.metadata.extra["classes"] == {1: ("patient", "#dca078")}
    assert any("POINT" in note and "Isocenter" in note for note in back.metadata.warnings)
    contours = ds.ROIContourSequence[0].ContourSequence
    assert len(contours) == 3
    for contour in contours:
        points = np.asarray(contour.ContourData, float).reshape(-1, 3)
        x, y = points[:, 0], points[:, 1]
        area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
        perimeter = np.sum(np.hypot(np.diff(np.r_[x, x[:1]]), np.diff(np.r_[y, y[:1]])))
        k = int(round(points[0, 2] + 250))
        voxels = np.count_nonzero(back.array[:, :, k] == 1)
        assert abs(voxels - area) <= perimeter  # pixel-centre sampling of the polygon


def test_errors_name_the_file(scan, labels, tmp_path):
    out = write_rtstruct(tmp_path / "rt.dcm", labels, scan.metadata.files, CLASSES)
    with pytest.raises(RTStructError, match="already exists"):
        write_rtstruct(out, labels, scan.metadata.files, CLASSES)
    source = scan.metadata.files[0]
    with pytest.raises(OverwriteSourceError):
        write_rtstruct(source, labels, scan.metadata.files, protect=scan.metadata.files)
    moved = labels.affine.copy()
    moved[:3, 3] += 0.7 * labels.affine[:3, 0]  # 0.7 voxel along I
    shifted = Volume(labels.array, moved, labels.metadata)
    with pytest.raises(RTStructError, match="not on the grid"):
        write_rtstruct(tmp_path / "off.dcm", shifted, scan.metadata.files)
    empty = Volume(np.zeros_like(labels.array), labels.affine, labels.metadata)
    with pytest.raises(RTStructError, match="no label"):
        write_rtstruct(tmp_path / "empty.dcm", empty, scan.metadata.files)
    # reading: not an RTSTRUCT, another frame of reference, a truncated file
    with pytest.raises(RTStructReadError, match="not an RT Structure Set") as caught:
        read_rtstruct(source, scan)
    assert source in str(caught.value)
    other = Volume(
        scan.array,
        scan.affine,
        ScanMetadata(source="other", format="dicom", frame_of_reference_uid="1.2.3.4"),
    )
    with pytest.raises(RTStructReadError, match="Frame of Reference"):
        read_rtstruct(out, other)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(out.read_bytes()[:700])
    with pytest.raises(RTStructReadError, match="truncated.dcm"):
        read_rtstruct(truncated, scan)


def test_contours_off_the_grid_are_refused(scan, labels, tmp_path):
    out = write_rtstruct(tmp_path / "rt.dcm", labels, scan.metadata.files, CLASSES)
    between = tmp_path / "between.dcm"
    shutil.copy(out, between)
    ds = pydicom.dcmread(between)
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    points = np.asarray(contour.ContourData, float).reshape(-1, 3)
    points[:, 2] += 2.5  # half a slice (5 mm slices)
    contour.ContourData = [f"{v:.4f}" for v in points.ravel()]
    ds.save_as(between)
    with pytest.raises(RTStructReadError, match="between two slices"):
        read_rtstruct(between, scan)
    outside = tmp_path / "outside.dcm"
    ds = pydicom.dcmread(out)
    for roi_contour in ds.ROIContourSequence[:1]:
        for contour in roi_contour.ContourSequence:
            points = np.asarray(contour.ContourData, float).reshape(-1, 3)
            points[:, 0] += 2000.0  # far to the patient's left
            contour.ContourData = [f"{v:.4f}" for v in points.ravel()]
    ds.save_as(outside)
    with pytest.raises(RTStructReadError, match="outside the scan's field of view"):
        read_rtstruct(outside, scan)


def test_overlapping_structures_keep_the_smaller_on_top(scan, labels, tmp_path):
    out = write_rtstruct(tmp_path / "rt.dcm", labels, scan.metadata.files, CLASSES)
    ds = pydicom.dcmread(out)
    # a BODY-like ROI 7 drawn around everything: the same contours as ROI 2, grown
    body = ds.ROIContourSequence[1]
    assert int(body.ReferencedROINumber) == 2
    import copy

    big = copy.deepcopy(body)
    big.ReferencedROINumber = 7
    for contour in big.ContourSequence:
        points = np.asarray(contour.ContourData, float).reshape(-1, 3)
        centre = points.mean(axis=0)
        points[:, :2] = centre[:2] + 1.5 * (points[:, :2] - centre[:2])
        contour.ContourData = [f"{v:.4f}" for v in points.ravel()]
    ds.ROIContourSequence.append(big)
    roi = copy.deepcopy(ds.StructureSetROISequence[1])
    roi.ROINumber, roi.ROIName = 7, "BODY"
    ds.StructureSetROISequence.append(roi)
    ds.save_as(out)
    back = read_rtstruct(out, scan)
    assert np.count_nonzero(back.array == 2) == np.count_nonzero(labels.array == 2)
    assert np.count_nonzero(back.array == 7) > 0
    assert any("'liver' overlaps ROI 'BODY'" in note for note in back.metadata.warnings)
