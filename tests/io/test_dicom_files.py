"""Files that change between indexing and reading, renamed DICOMDIR media, and the
memory a compressed multi-frame read takes."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from dicom_factory import (
    add_duplicate,
    lowercase_tree,
    make_affine,
    phantom,
    traced_peak,
    write_dicomdir,
    write_enhanced,
    write_series,
)
from pydicom.uid import RLELossless

from napari_medseg.errors import EmptyFolderError, ScanReadError
from napari_medseg.io.dicom import index_dicom, read_dicom, read_dicom_series


# ----------------------------------------------------------------- files gone after indexing
@pytest.mark.parametrize("syntax", [None, RLELossless])
def test_file_deleted_after_indexing_names_it_and_says_scan_again(tmp_path, syntax):
    kwargs = {"transfer_syntax": syntax} if syntax else {}
    written = write_series(tmp_path, phantom((8, 6, 5)), **kwargs)
    (series,) = index_dicom(tmp_path)
    os.unlink(written.files[2])
    with pytest.raises(ScanReadError) as info:
        read_dicom_series(series)
    assert not isinstance(info.value, OSError)
    assert info.value.path.startswith(str(written.files[2]))
    assert "scan" in info.value.fix and "moved or deleted" in info.value.fix
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_duplicate_deleted_after_indexing(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 4)))
    duplicate = add_duplicate(written, 1)
    (series,) = index_dicom(tmp_path)
    os.unlink(duplicate)
    with pytest.raises(ScanReadError) as info:
        read_dicom_series(series)
    assert info.value.path == str(duplicate) and "scan" in info.value.fix


def test_file_made_unreadable_after_indexing(tmp_path, monkeypatch):
    import napari_medseg.io.dicom.assemble as assemble

    written = write_series(tmp_path, phantom((8, 6, 4)))
    (series,) = index_dicom(tmp_path)
    locked = str(written.files[1])

    def fake_open(path, *args, **kwargs):  # chmod 000 does not stop root: fake it
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return open(path, *args, **kwargs)

    monkeypatch.setattr(assemble, "open", fake_open, raising=False)
    with pytest.raises(ScanReadError) as info:
        read_dicom_series(series)
    assert info.value.path == locked and "permissions" in info.value.fix
    assert "Permission denied" in info.value.problem


# ----------------------------------------------------------------- DICOMDIR media renamed
def test_dicomdir_with_lowercased_files(tmp_path):
    written = write_series(tmp_path / "src", phantom((8, 6, 4)))
    dicomdir = write_dicomdir(written.files, tmp_path / "media")
    lowercase_tree(tmp_path / "media")
    assert not (tmp_path / "media" / "PT000000").exists()  # the quirk is there
    (series,) = index_dicom(dicomdir)
    assert series.n_slices == 4
    assert all(os.path.exists(f) for f in series.files)
    volume = read_dicom(dicomdir)
    np.testing.assert_array_equal(volume.array, written.hu)


def test_dicomdir_whose_files_moved_falls_back_to_its_folder(tmp_path):
    written = write_series(tmp_path / "src", phantom((8, 6, 4)))
    dicomdir = write_dicomdir(written.files, tmp_path / "media")
    shutil.move(tmp_path / "media" / "PT000000", tmp_path / "media" / "images")
    volume = read_dicom(dicomdir)
    np.testing.assert_array_equal(volume.array, written.hu)


def test_dicomdir_with_some_files_missing_lists_them_as_skipped(tmp_path):
    written = write_series(tmp_path / "src", phantom((8, 6, 4)))
    dicomdir = write_dicomdir(written.files, tmp_path / "media")
    image_folder = tmp_path / "media" / "PT000000" / "ST000000" / "SE000000"
    gone = sorted(image_folder.iterdir())[0]
    os.unlink(gone)
    series = index_dicom(dicomdir)
    assert series[0].n_slices == 3
    assert [s.path for s in series.skipped] == [str(gone)]


def test_dicomdir_whose_files_are_gone_says_so(tmp_path):
    written = write_series(tmp_path / "src", phantom((8, 6, 4)))
    dicomdir = write_dicomdir(written.files, tmp_path / "media")
    shutil.rmtree(tmp_path / "media" / "PT000000")
    with pytest.raises(EmptyFolderError) as info:
        index_dicom(dicomdir)
    assert info.value.path == str(dicomdir)
    assert "DICOMDIR references 4 file(s), none found" in info.value.problem
    assert info.value.fix


# ----------------------------------------------------------------- memory
def test_compressed_multiframe_peak_memory_at_most_twice_the_result(tmp_path, monkeypatch):

    import napari_medseg.io.dicom.assemble as assemble

    monkeypatch.setattr(assemble, "_worker_count", lambda: 8)  # a workstation's pool
    rng = np.random.default_rng(0)
    volume = rng.integers(-1000, 2000, size=(64, 64, 96)).astype(np.int16)
    path, _ = write_enhanced(
        tmp_path / "rle.dcm", [volume], make_affine("LPS"), transfer_syntax=RLELossless
    )
    assert os.path.getsize(path) > volume.nbytes // 2  # noise compresses badly
    (series,) = index_dicom(path)
    result, peak = traced_peak(lambda: read_dicom_series(series))
    np.testing.assert_array_equal(result.array, volume.astype(np.int32) - 1024)
    assert peak <= 2 * result.array.nbytes


def test_a_data_set_without_preamble_is_recognised_as_dicom(tmp_path):
    """Some exports write the data set alone (no 128-byte preamble, no DICM): it starts
    with a little-endian tag of group 0008, e.g. (0008,0005)."""
    from pydicom.dataset import Dataset

    from napari_medseg.io.sniff import classify_dicom_head

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.Modality = "CT"
    path = tmp_path / "raw.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert path.read_bytes()[:4] == b"\x08\x00\x05\x00"
    assert classify_dicom_head(path.read_bytes()[:256]) == "raw"
    assert classify_dicom_head(b"\x08\x00\x00\x7f" + bytes(60)) == ""  # element 0x7f00
