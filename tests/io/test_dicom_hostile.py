"""Hostile DICOM folders: unreadable slices, named pipes, symlink loops, bad transfer
syntaxes, far-away slices, decoder noise, DICOMDIRs that point outside their folder.

Every case is built from real files (written with pydicom, or pydicom's own test data)
and checked through the library and the ``medseg`` command.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_factory import (
    damage,
    make_affine,
    phantom,
    remove_slices,
    set_attributes,
    set_positions,
    truncate,
    write_dicomdir,
    write_non_dicom,
    write_series,
    write_shuffled,
)
from pydicom.uid import JPEG2000Lossless

from napari_medseg.cli import main
from napari_medseg.errors import (
    EmptyFolderError,
    IncompleteSeriesError,
    InconsistentSeriesError,
    NotAScanError,
    ScanReadError,
    TruncatedFileError,
    UnsupportedTransferSyntaxError,
)
from napari_medseg.io.dicom import index_dicom, read_dicom
from napari_medseg.io.dicom.header import peek_series_uid

BAD_TS = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage: a SOP class, no transfer syntax
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")


def _series(folder, n=6, **kwargs):
    return write_series(folder, phantom((8, 6, n)), **kwargs)


# ----------------------------------------------------------------- 1. unreadable slices
@pytest.mark.parametrize("how", ["empty", "random", "header", "garbage", "bad-ts"])
@pytest.mark.parametrize("end", ["first", "last"])
def test_unreadable_end_slice_is_refused_and_named(tmp_path, how, end):
    written = _series(tmp_path)
    k = 0 if end == "first" else 5
    victim = damage(written.files[k], how)
    (series,) = index_dicom(tmp_path)
    assert series.n_slices == 5
    assert [s.path for s in series.unreadable_ends] == [str(victim)]
    assert any(victim.name in w and "first or last slice" in w for w in series.warnings)
    with pytest.raises(IncompleteSeriesError) as info:
        read_dicom(tmp_path)
    message = str(info.value)
    assert info.value.path == str(tmp_path)
    assert victim.name in message and written.series_uid in message
    assert "first or last slice" in message and "allow_gaps=True" in info.value.fix
    volume = read_dicom(tmp_path, allow_gaps=True)
    kept = [j for j in range(6) if j != k]
    np.testing.assert_array_equal(volume.array, written.hu[..., kept])
    assert any(victim.name in w and "first or last slice" in w for w in volume.metadata.warnings)


@pytest.mark.parametrize(
    "slope, intercept, problem",
    [
        ("NaN", "-1024", "RescaleSlope is 'nan', not a finite number"),
        ("0", "-1024", "RescaleSlope is 0"),
        ("1", "inf", "RescaleIntercept is 'inf', not a finite number"),
    ],
)
def test_a_slice_whose_rescale_cannot_be_applied_is_not_read_as_slope_1(
    tmp_path, slope, intercept, problem
):
    """A RescaleSlope of NaN or 0 was read as 1, giving the slice wrong HU silently."""
    written = _series(tmp_path)
    victim = written.files[2]
    ds = pydicom.dcmread(victim)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.save_as(victim)
    (series,) = index_dicom(tmp_path)
    assert [s.path for s in series.unreadable] == [str(victim)]
    assert problem in series.unreadable[0].reason
    with pytest.raises(IncompleteSeriesError, match=victim.name):
        read_dicom(tmp_path)


@pytest.mark.parametrize("how", ["empty", "random", "header"])
def test_unreadable_inner_slice_is_named_as_unreadable_not_only_a_gap(tmp_path, how):
    written = _series(tmp_path)
    victim = damage(written.files[2], how)
    (series,) = index_dicom(tmp_path)
    assert series.unreadable_ends == [] and [s.path for s in series.unreadable] == [str(victim)]
    assert victim.name in series.warnings[0]  # the cause first, then the gap it leaves
    with pytest.raises(IncompleteSeriesError) as info:
        read_dicom(tmp_path)
    assert victim.name in info.value.problem and "cannot be read" in info.value.problem
    volume = read_dicom(tmp_path, allow_gaps=True)
    assert volume.shape == (8, 6, 6) and volume.metadata.extra["missing_slices"] == [2]
    assert any(victim.name in w and "could not be read" in w for w in volume.metadata.warnings)
    assert any("gap is probably where it would belong" in w for w in volume.metadata.warnings)


def test_unordered_names_leave_no_end_unsuspected(tmp_path):
    written = write_shuffled(tmp_path, phantom((8, 6, 6)))
    stray = damage(tmp_path / "ZQ4K7M2P9X", "random")  # named like the others
    (series,) = index_dicom(tmp_path)
    assert [s.path for s in series.unreadable_ends] == [str(stray)]
    with pytest.raises(IncompleteSeriesError, match=stray.name):
        read_dicom(tmp_path)
    np.testing.assert_array_equal(read_dicom(tmp_path, allow_gaps=True).array, written.hu)


def test_what_proves_a_file_is_not_a_lost_slice(tmp_path):
    # ImagesInAcquisition says the series is complete: the empty file is reported only
    complete = _series(tmp_path / "complete")
    set_attributes(complete.files, ImagesInAcquisition=6)
    empty = damage(tmp_path / "complete" / "IM00007.dcm", "empty")
    volume = read_dicom(tmp_path / "complete")
    np.testing.assert_array_equal(volume.array, complete.hu)
    assert any(empty.name in w for w in volume.metadata.warnings)
    # a damaged header that still names another series
    ours = _series(tmp_path / "mixed")
    other = _series(tmp_path / "elsewhere", n=2)
    stripped = pydicom.dcmread(other.files[0])
    del stripped.PixelData
    stripped.save_as(tmp_path / "mixed" / "IM00099.dcm")
    (series,) = index_dicom(tmp_path / "mixed")
    assert series.unreadable == []
    assert index_dicom(tmp_path / "mixed").skipped[0].series_uid == other.series_uid
    np.testing.assert_array_equal(read_dicom(tmp_path / "mixed").array, ours.hu)
    # files of other formats beside the series are not unreadable slices
    plain = _series(tmp_path / "plain")
    write_non_dicom(tmp_path / "plain" / "README")
    (tmp_path / "plain" / "thumb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    index = index_dicom(tmp_path / "plain")
    assert {s.kind for s in index.skipped} == {"not-dicom"} and index[0].unreadable == []
    np.testing.assert_array_equal(read_dicom(tmp_path / "plain").array, plain.hu)


def test_unreadable_file_in_another_folder_is_listed_not_blamed(tmp_path):
    written = _series(tmp_path / "series")
    (tmp_path / "other").mkdir()
    stray = damage(tmp_path / "other" / "IM00001.dcm", "empty")
    index = index_dicom(tmp_path)
    assert index[0].unreadable == []
    assert [(s.path, s.kind) for s in index.skipped] == [(str(stray), "unreadable")]
    np.testing.assert_array_equal(read_dicom(tmp_path).array, written.hu)


def test_peek_series_uid_reads_a_damaged_header(tmp_path):
    written = _series(tmp_path, n=2)
    head = written.files[0].read_bytes()[:1500]
    assert peek_series_uid(head) == written.series_uid
    assert peek_series_uid(b"\x00" * 100) == ""


def test_dicomdir_missing_end_file_is_refused(tmp_path):
    written = _series(tmp_path / "src", n=4)
    dicomdir = write_dicomdir(written.files, tmp_path / "media")
    folder = tmp_path / "media" / "PT000000" / "ST000000" / "SE000000"
    last = sorted(folder.iterdir())[-1]
    os.unlink(last)
    with pytest.raises(IncompleteSeriesError, match="referenced by the DICOMDIR but missing"):
        read_dicom(dicomdir)
    assert read_dicom(dicomdir, allow_gaps=True).shape[2] == 3


# ----------------------------------------------------------------- the command line
def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_names_unreadable_files_and_its_own_option(tmp_path, capsys):
    written = _series(tmp_path / "scan")
    victim = damage(written.files[-1], "empty")
    code, out, _ = _run(capsys, "info", tmp_path / "scan")
    assert code == 0 and victim.name in out and "1 file could not be read" in out
    assert "--allow-gaps" in out and "allow_gaps=True" not in out
    nifti = tmp_path / "scan.nii.gz"
    for command in (
        ["convert", tmp_path / "scan", nifti],
        ["segment", tmp_path / "scan", "-o", nifti],
    ):
        code, _, err = _run(capsys, *command)
        assert code == 2, err
        assert err.count("\n") == 1 and err.startswith("medseg: error: ")
        assert victim.name in err and "--allow-gaps" in err and "allow_gaps=True" not in err
        assert not nifti.exists()
    code, _, err = _run(capsys, "info", tmp_path / "scan", "--series", written.series_uid)
    assert code == 2 and victim.name in err
    code, _, err = _run(capsys, "convert", tmp_path / "scan", nifti, "--allow-gaps")
    assert code == 0 and nib.load(nifti).shape == (8, 6, 5)
    assert "warning: the volume may be missing the series' first or last slice" in err
    assert victim.name in err


def test_gap_advice_is_python_for_python_and_options_for_the_cli(tmp_path, capsys):
    written = _series(tmp_path / "scan", n=8)
    remove_slices(written, [4])
    with pytest.raises(InconsistentSeriesError) as info:
        read_dicom(tmp_path / "scan")
    assert "allow_gaps=True" in info.value.fix
    code, _, err = _run(capsys, "convert", tmp_path / "scan", tmp_path / "out.nii.gz")
    assert code == 2 and "--allow-gaps" in err and "allow_gaps=True" not in err
    labels = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 6, 8), np.uint8), written.affine), labels)
    code, _, err = _run(
        capsys, "report", labels, "--image", tmp_path / "scan", "-o", tmp_path / "r.csv"
    )
    assert code == 2 and "medseg convert --allow-gaps" in err and "allow_gaps=True" not in err


# ----------------------------------------------------------------- 2. pipes and loops
_NO_HANG = textwrap.dedent(
    """
    import sys
    from napari_medseg.cli import main
    from napari_medseg.errors import NotAScanError
    from napari_medseg.io.dicom import index_dicom, read_dicom
    folder, pipe, out = sys.argv[1:]
    print("series", len(index_dicom(folder)), read_dicom(folder).shape)
    print("info", main(["info", folder]))
    print("convert", main(["convert", folder, out]))
    try:
        index_dicom(pipe)
    except NotAScanError as error:
        print("pipe:", error)
    """
)


@needs_fifo
def test_named_pipes_are_never_opened(tmp_path):
    _series(tmp_path / "scan")
    os.mkfifo(tmp_path / "scan" / "zz_pipe")
    os.mkfifo(tmp_path / "scan" / "IM00007.dcm")  # named like a slice
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _NO_HANG,
            tmp_path / "scan",
            tmp_path / "scan" / "zz_pipe",
            tmp_path / "out.nii.gz",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "series 1 (8, 6, 6)" in run.stdout
    assert "info 0" in run.stdout and "convert 0" in run.stdout
    assert "zz_pipe: is a named pipe (FIFO), not a file or folder" in run.stdout


def test_symlink_loops_are_skipped_or_refused(tmp_path):
    written = _series(tmp_path / "scan")
    (tmp_path / "scan" / "again").symlink_to(tmp_path / "scan")  # a folder inside itself
    (tmp_path / "scan" / "loop.dcm").symlink_to(tmp_path / "scan" / "loop.dcm")
    index = index_dicom(tmp_path / "scan")
    assert len(index) == 1 and index.skipped == []
    np.testing.assert_array_equal(read_dicom(tmp_path / "scan").array, written.hu)
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for call in (index_dicom, read_dicom):
        with pytest.raises(ScanReadError, match="symbolic link that loops"):
            call(tmp_path / "a")


def test_link_to_a_lost_file_counts_as_unreadable(tmp_path):
    _series(tmp_path / "scan")
    (tmp_path / "scan" / "IM00007.dcm").symlink_to(tmp_path / "gone.dcm")
    with pytest.raises(IncompleteSeriesError, match="IM00007.dcm: cannot be opened"):
        read_dicom(tmp_path / "scan")


# ----------------------------------------------------------------- 3. transfer syntax
def test_transfer_syntax_uid_that_is_no_transfer_syntax(tmp_path):
    written = _series(tmp_path / "scan", n=3)
    bad = damage(written.files[2], "bad-ts")
    with pytest.raises(UnsupportedTransferSyntaxError) as info:
        read_dicom(bad)
    assert str(bad) in str(info.value) and BAD_TS in str(info.value)
    assert "CT Image Storage" in str(info.value)
    with pytest.raises(IncompleteSeriesError, match=BAD_TS):
        read_dicom(tmp_path / "scan")
    for path in written.files[:2]:
        damage(path, "bad-ts")
    with pytest.raises(EmptyFolderError, match=BAD_TS):
        read_dicom(tmp_path / "scan")


def test_absurd_frame_count_is_refused_before_making_records(tmp_path):
    written = _series(tmp_path / "scan", n=2)
    set_attributes(written.files[1:], NumberOfFrames=2**31 - 1)
    with pytest.raises(TruncatedFileError, match="declares 2147483647 frames"):
        read_dicom(written.files[1])
    (series,) = index_dicom(tmp_path / "scan")
    assert series.n_slices == 1 and [s.path for s in series.unreadable] == [str(written.files[1])]


# ----------------------------------------------------------------- 4. filler
def _stack(folder, steps_mm):
    """A series whose slices are ``steps_mm`` apart along the normal."""
    written = write_series(
        folder, phantom((8, 6, len(steps_mm) + 1)), make_affine("LPS", (0.7, 0.8, 1.25))
    )
    z0 = float(written.lps_affine[2, 3])
    depths = np.concatenate([[0.0], np.cumsum(steps_mm)]) + z0
    origin = written.lps_affine[:3, 3]
    set_positions(written.files, [(origin[0], origin[1], z) for z in depths])
    return written


def test_far_slice_is_refused_even_with_allow_gaps(tmp_path):
    written = _stack(tmp_path, [1.25, 1.25, 1.25, 201.25])  # 160 slices would be filler
    for allow_gaps in (False, True):
        with pytest.raises(InconsistentSeriesError) as info:
            read_dicom(tmp_path, allow_gaps=allow_gaps)
        message = str(info.value)
        assert info.value.path == str(written.files[4])  # the lone slice
        assert written.series_uid in message and "201.25 mm" in message
        assert "invent 160" in message and "1.25 mm apart" in message
        assert "allow_gaps" not in message and "np." not in message
    (series,) = index_dicom(tmp_path)
    assert any("invent 160" in w for w in series.warnings)


def test_filler_up_to_the_real_slice_count_is_allowed(tmp_path):
    _stack(tmp_path / "ok", [1.25, 1.25, 1.25, 6.25])  # 5 real, 4 filler
    assert read_dicom(tmp_path / "ok", allow_gaps=True).shape == (8, 6, 9)
    _stack(tmp_path / "no", [1.25, 1.25, 1.25, 7.5])  # 5 real, 5 filler
    assert read_dicom(tmp_path / "no", allow_gaps=True).shape == (8, 6, 10)
    _stack(tmp_path / "too", [1.25, 1.25, 1.25, 8.75])  # 5 real, 6 filler
    with pytest.raises(InconsistentSeriesError, match="invent 6"):
        read_dicom(tmp_path / "too", allow_gaps=True)


# ----------------------------------------------------------------- 5. messages
def test_corrupt_jpeg2000_slice_is_one_line_without_decoder_tracebacks(tmp_path, caplog, capsys):
    written = write_series(
        tmp_path / "scan", phantom((32, 32, 4)), transfer_syntax=JPEG2000Lossless
    )
    data = bytearray(written.files[2].read_bytes())
    start = data.find(b"\xff\x4f\xff\x51") + 60  # inside the codestream header
    data[start:-20] = bytes((b * 7 + 3) % 256 for b in data[start:-20])
    written.files[2].write_bytes(bytes(data))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ScanReadError) as info:
        read_dicom(tmp_path / "scan")
    message = str(info.value)
    assert message.startswith(str(written.files[2])) and "\n" not in message
    assert "cannot be decoded" in message and "JPEG 2000" in message
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == [], [r.getMessage()[:80] for r in noisy]
    code, out, err = _run(capsys, "convert", tmp_path / "scan", tmp_path / "out.nii.gz")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err


def test_numbers_in_messages_are_plain(tmp_path):
    written = _series(tmp_path / "spacing", n=3)
    set_attributes(written.files, PixelSpacing=[0, 0.8])
    with pytest.raises(InconsistentSeriesError) as info:
        read_dicom(tmp_path / "spacing")
    assert "PixelSpacing (0, 0.8)" in str(info.value) and "np." not in str(info.value)
    written = _series(tmp_path / "orientation", n=3)
    set_attributes(written.files, ImageOrientationPatient=[1, 0, 0, 1, 0, 0])
    with pytest.raises(InconsistentSeriesError) as info:
        read_dicom(tmp_path / "orientation")
    assert "(1, 0, 0, 1, 0, 0)" in str(info.value) and "np." not in str(info.value)


# ----------------------------------------------------------------- 6. DICOMDIR
@pytest.mark.filterwarnings("ignore:.*VR CS:UserWarning")  # crafted ReferencedFileIDs
def test_dicomdir_references_outside_its_folder_are_refused(tmp_path):
    import copy

    written = _series(tmp_path / "src", n=4)
    secret = _series(tmp_path / "secret", n=2)  # another series, outside the media
    dicomdir = write_dicomdir(written.files, tmp_path / "media")
    series_folder = tmp_path / "media" / "PT000000" / "ST000000" / "SE000000"
    (series_folder / "LINK").symlink_to(secret.files[0])  # out of the tree via a link
    ds = pydicom.dcmread(dicomdir)
    records = ds.DirectoryRecordSequence
    image = next(r for r in records if r.DirectoryRecordType == "IMAGE")
    for file_id in (
        ["..", "secret", secret.files[1].name],
        str(secret.files[1]).replace("/", "\\"),  # absolute
        ["PT000000", "ST000000", "SE000000", "LINK"],
    ):
        extra = copy.deepcopy(image)
        extra.ReferencedFileID = file_id
        records.append(extra)
    ds.save_as(dicomdir)
    index = index_dicom(dicomdir)
    assert [s.key for s in index] == [written.series_uid]
    assert all(f.startswith(str(tmp_path / "media")) for f in index[0].files)
    outside = [s for s in index.skipped if s.kind == "outside"]
    assert len(outside) == 3, index.skipped
    # listed with the series' files, never read: any of them may be one of its slices
    assert sorted(index[0].unreadable, key=str) == sorted(outside, key=str)
    with pytest.raises(IncompleteSeriesError) as info:
        read_dicom(dicomdir)
    assert info.value.path == str(dicomdir)
    assert "outside its folder" in info.value.problem and "media/../secret" in info.value.problem
    assert "Open the folder that holds the DICOMDIR" in info.value.fix
    volume = read_dicom(dicomdir, allow_gaps=True)
    np.testing.assert_array_equal(volume.array, written.hu)
    assert any("outside its folder" in w for w in volume.metadata.warnings)


@pytest.mark.filterwarnings("ignore:.*VR CS:UserWarning")
def test_dicomdir_with_only_outside_references_reads_its_own_folder(tmp_path):
    written = _series(tmp_path / "src", n=3)
    dicomdir = write_dicomdir(written.files, tmp_path / "media")
    ds = pydicom.dcmread(dicomdir)
    for record in ds.DirectoryRecordSequence:
        if record.DirectoryRecordType == "IMAGE":
            record.ReferencedFileID = ["..", "..", "etc", "passwd"]
    ds.save_as(dicomdir)
    shutil.rmtree(tmp_path / "media" / "PT000000")
    with pytest.raises(EmptyFolderError, match="outside its folder refused"):
        index_dicom(dicomdir)


def test_truncated_copy_named_like_the_series_is_not_ignored(tmp_path):
    written = _series(tmp_path)
    extra = tmp_path / "IM00007.dcm"
    shutil.copyfile(written.files[0], extra)
    truncate(extra, keep_fraction=0.2)
    with pytest.raises(IncompleteSeriesError, match="IM00007.dcm"):
        read_dicom(tmp_path)
    with pytest.raises(NotAScanError):
        read_dicom(damage(tmp_path / "IM00008.dcm", "random"))
