"""A DICOM SEG or RTSTRUCT finds the series it was drawn on: beside it, in a folder next
to it, or among the series the caller has open; one clear error when it is nowhere.

The SEG and RTSTRUCT are napari-medseg's own, written by ``save_segmentation`` for the
sample's tumour on the sample DICOM series; the expected voxels are the tumour map.
"""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from napari_medseg.errors import TruncatedFileError
from napari_medseg.io import dicom_derived, read_scan
from napari_medseg.io.dicom_derived import (
    DerivedObjectError,
    ReferencedSeriesNotFoundError,
    check_complete,
    derived_kind,
    read_derived_labels,
)
from napari_medseg.io.save import SaveTargets, save_segmentation
from napari_medseg.samples import sample_path
from napari_medseg.volume import Volume

CLASSES = {1: ("tumour", "#ff0000")}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """``(scan, tumour, seg, rtstruct)``: the objects written on the sample series."""
    folder = tmp_path_factory.mktemp("made")
    series = folder / "CT"
    shutil.copytree(sample_path("chest_ct_dicom"), series)
    scan = read_scan(series)
    tumour = read_scan(sample_path("chest_ct_tumour")).array.astype(np.uint8)
    seg, rt = folder / "tumour_seg.dcm", folder / "tumour_rt.dcm"
    save_segmentation(
        Volume(tumour, scan.affine, scan.metadata),
        SaveTargets(dicom_seg=seg, rtstruct=rt),
        CLASSES,
    )
    return scan, tumour, seg, rt


def _study(tmp_path, made, layout: str):
    """Copy the series and the two objects into a study folder laid out as asked."""
    _, _, seg, rt = made
    study = tmp_path / "study"
    shutil.copytree(sample_path("chest_ct_dicom"), study / "CT")
    where = {
        "beside": study / "CT",  # in the series' own folder
        "sibling": study / "SEG",  # in a folder next to the series' folder
        "above": study,  # in the folder above the series' folder
    }[layout]
    where.mkdir(exist_ok=True)
    return shutil.copy(seg, where / seg.name), shutil.copy(rt, where / rt.name), study


@pytest.mark.parametrize("layout", ["beside", "sibling", "above"])
def test_found_beside_next_to_or_above_the_series(made, tmp_path, layout):
    scan, tumour, _, _ = made
    seg, rt, _ = _study(tmp_path, made, layout)
    assert derived_kind(seg) == "SEG" and derived_kind(rt) == "RTSTRUCT"
    for path in (seg, rt):
        volume = read_derived_labels(path)
        assert np.array_equal(volume.array, tumour)
        assert volume.shape == scan.shape and np.allclose(volume.affine, scan.affine)
        assert volume.metadata.extra["classes"] == CLASSES
        assert len(volume.metadata.files) == 48
    assert derived_kind(sample_path("chest_ct_dicom") / "IM00001.dcm") == ""


def test_series_missing_is_one_clear_error(made, tmp_path):
    _, _, seg, rt = made
    alone = tmp_path / "inbox"
    alone.mkdir()
    for source in (seg, rt):
        path = shutil.copy(source, alone / source.name)
        uid = str(read_scan(sample_path("chest_ct_dicom")).metadata.series_uid)
        with pytest.raises(ReferencedSeriesNotFoundError) as info:
            read_derived_labels(path)
        message = str(info.value)
        assert message.startswith(str(path)) and uid in message
        assert "Open that series first" in message and str(alone) in message


def test_an_open_series_is_used_without_searching(made, tmp_path, monkeypatch):
    scan, tumour, seg, rt = made
    alone = tmp_path / "inbox"
    alone.mkdir()
    grid = Volume(np.broadcast_to(np.uint8(0), scan.shape), scan.affine, scan.metadata)
    monkeypatch.setattr(dicom_derived, "find_referenced_series", None)  # must not be called
    for source in (seg, rt):
        path = shutil.copy(source, alone / source.name)
        volume = read_derived_labels(path, open_series={scan.metadata.series_uid: grid})
        assert np.array_equal(volume.array, tumour)


def test_a_huge_parent_folder_is_not_searched(made, tmp_path, monkeypatch):
    seg, _, study = _study(tmp_path, made, "sibling")
    monkeypatch.setattr(dicom_derived, "MAX_SEARCH_FILES", 10)  # the series has 48 files
    with pytest.raises(ReferencedSeriesNotFoundError, match="more than 10 files"):
        read_derived_labels(seg)


def test_a_seg_that_references_no_series(made, tmp_path):
    _, _, seg, _ = made
    ds = pydicom.dcmread(seg)
    del ds.ReferencedSeriesSequence
    bad = tmp_path / "orphan_seg.dcm"
    ds.save_as(bad)
    with pytest.raises(DerivedObjectError, match="references no image series") as info:
        read_derived_labels(bad)
    assert str(info.value).startswith(str(bad))


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_a_file_cut_short_says_so(made, tmp_path, keep):
    """Cut inside the SEG's pixel data or the RTSTRUCT's contours (pydicom reads both
    without complaint): truncated, not "cannot be mapped" or "holds no ROI"."""
    _, _, seg, rt = made
    folder = tmp_path / "CT"
    shutil.copytree(sample_path("chest_ct_dicom"), folder)
    for source in (seg, rt):
        data = source.read_bytes()
        path = folder / f"cut_{source.name}"
        path.write_bytes(data[: int(len(data) * keep)])
        with pytest.raises(TruncatedFileError, match="cut short") as info:
            read_derived_labels(path)
        assert str(info.value).startswith(str(path))


def test_check_complete_on_pydicom_test_files():
    """pydicom's truncated test files are refused; its whole ones (an RTSTRUCT, one
    without a file meta group length) pass."""
    from pydicom.data import get_testdata_file

    for name in ("rtplan_truncated.dcm", "MR_truncated.dcm"):
        with pytest.raises(TruncatedFileError, match="cut short"):
            check_complete(get_testdata_file(name))
    for name in ("rtstruct.dcm", "no_meta_group_length.dcm", "CT_small.dcm"):
        check_complete(get_testdata_file(name))
