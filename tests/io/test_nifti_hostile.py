"""Hostile NIfTI files: damaged or lying headers, short data, unreadable paths.

Every file is written by nibabel and, where the case needs it, has header bytes
overwritten in place (offsets of the NIfTI-1 header); nibabel's own lone ``.hdr`` files
and its 4D example are used as they ship. Each case must end in one typed error that
names the file, the problem and the fix, on one line: never a traceback, a
``MemoryError`` or gigabytes allocated.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.errors import (
    NotAScanError,
    ScanReadError,
    TruncatedFileError,
    UnsupportedVolumeError,
)
from napari_medseg.geometry import display_geometry
from napari_medseg.io import read_scan
from napari_medseg.io.nifti import read_nifti, write_nifti_like
from napari_medseg.io.nifti_header import available_memory_bytes

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
SHAPE = (6, 7, 5)
AFFINE = np.array(
    [[2.0, 0.0, 0.0, -5.0], [0.0, 2.0, 0.0, 7.0], [0.0, 0.0, 3.0, 11.0], [0.0, 0.0, 0.0, 1.0]]
)
#: Voxel sizes alone, as nibabel places a header without transforms (x flipped, centred).
PIXDIM_ONLY = np.array(
    [[-2.0, 0.0, 0.0, 5.0], [0.0, 2.0, 0.0, -6.0], [0.0, 0.0, 3.0, -6.0], [0.0, 0.0, 0.0, 1.0]]
)

# NIfTI-1 header offsets (bytes)
DIM, DATATYPE, PIXDIM, VOX_OFFSET = 40, 70, 76, 108
QFORM_CODE, SFORM_CODE, QUATERN_B, SROW_X = 252, 254, 256, 280


def _data() -> np.ndarray:
    return np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)


def patched(path: Path, patches=None, *, data=None, keep: int | None = None) -> Path:
    """A nibabel-written NIfTI-1 (qform and sform code 1) with header bytes overwritten.

    ``patches`` maps a byte offset to ``(struct format, value or tuple of values)``;
    ``keep`` cuts the (uncompressed) file after that many bytes. A ``.gz`` name is
    gzip-compressed.
    """
    image = nib.Nifti1Image(_data() if data is None else data, AFFINE)
    image.header.set_qform(AFFINE, code=1)
    image.header.set_sform(AFFINE, code=1)
    raw = bytearray(image.to_bytes())
    for offset, (fmt, value) in (patches or {}).items():
        values = value if isinstance(value, tuple) else (value,)
        struct.pack_into("<" + fmt, raw, offset, *values)
    raw = bytes(raw if keep is None else raw[:keep])
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def _one_clear_line(error: BaseException, name: str) -> str:
    """The message, checked: names the file, one line, no numpy repr."""
    message = str(error)
    assert name in message
    assert "\n" not in message and "np." not in message
    return message


# -- geometry: zero or singular transforms -------------------------------------------------
def test_zero_sform_falls_back_to_the_qform(tmp_path):
    path = patched(tmp_path / "scan.nii.gz", {SROW_X: ("12f", (0.0,) * 12)})
    volume = read_scan(path)
    np.testing.assert_allclose(volume.affine, AFFINE, atol=1e-6)
    assert "The sform (code 1) is all zeros: the qform is used instead." in volume.metadata.warnings
    # a file written on this grid does not claim the broken sform
    assert (volume.metadata.qform_code, volume.metadata.sform_code) == (1, 0)
    out = write_nifti_like(
        tmp_path / "labels.nii.gz", np.zeros(SHAPE, np.uint8), volume.affine, volume, kind="labels"
    )
    np.testing.assert_allclose(nib.load(out).affine, AFFINE, atol=1e-5)
    display_geometry(volume.affine, volume.shape)  # shows without error


@pytest.mark.parametrize(
    ("srow", "why"),
    [
        ((0.0,) * 12, "is all zeros"),
        ((2.0, 0, 0, 0, 0, 2.0, 2.0, 0, 0, 3.0, 3.0, 0), "is singular"),  # J and K columns equal
        ((np.nan, 0, 0, 0, 0, 2.0, 0, 0, 0, 0, 3.0, np.inf), "holds non-finite numbers"),
    ],
)
def test_unusable_sform_without_qform_uses_voxel_sizes_with_a_warning(tmp_path, srow, why):
    path = patched(tmp_path / "scan.nii.gz", {QFORM_CODE: ("h", 0), SROW_X: ("12f", srow)})
    volume = read_scan(path)
    np.testing.assert_allclose(volume.affine, PIXDIM_ONLY)
    (warning,) = [w for w in volume.metadata.warnings if "sform" in w]
    assert warning.startswith(f"The sform (code 1) {why}") and "voxel sizes alone" in warning
    assert volume.orientation == "LAS"
    assert volume.metadata.sform_code == 0
    display_geometry(volume.affine, volume.shape)


def test_broken_quaternion_is_skipped(tmp_path):
    # b^2 + c^2 + d^2 > 1: no rotation has this quaternion (nibabel raises ValueError)
    path = patched(tmp_path / "scan.nii", {SFORM_CODE: ("h", 0), QUATERN_B: ("3f", (2.0,) * 3)})
    volume = read_nifti(path)
    np.testing.assert_allclose(volume.affine, PIXDIM_ONLY)
    warnings = volume.metadata.warnings
    assert any(w.startswith("The qform (code 1) cannot be computed") for w in warnings)


def test_no_usable_transform_at_all_is_refused(tmp_path):
    path = patched(
        tmp_path / "scan.nii.gz",
        {
            SFORM_CODE: ("h", 0),
            QUATERN_B: ("3f", (2.0,) * 3),
            PIXDIM + 4: ("3f", (np.nan, 1.0, 1.0)),
        },
    )
    with pytest.raises(ScanReadError, match="has no usable geometry") as caught:
        read_scan(path)
    message = _one_clear_line(caught.value, "scan.nii.gz")
    assert "qform (code 1)" in message and "voxel sizes (pixdim)" in message


def test_zero_voxel_sizes_are_fixed_and_said(tmp_path):
    path = patched(tmp_path / "scan.nii", {SFORM_CODE: ("h", 0), PIXDIM + 4: ("3f", (0.0,) * 3)})
    volume = read_nifti(path)
    warnings = " ".join(volume.metadata.warnings)
    assert "pixdim[1,2,3] should be non-zero; setting 0 dims to 1" in warnings
    np.testing.assert_allclose(np.abs(np.diag(volume.affine)[:3]), 1.0)


# -- damaged headers -----------------------------------------------------------------------
def test_unknown_datatype_code(tmp_path):
    path = patched(tmp_path / "scan.nii.gz", {DATATYPE: ("h", 9999)})
    with pytest.raises(ScanReadError) as caught:
        read_scan(path)
    assert _one_clear_line(caught.value, "scan.nii.gz").endswith(
        "scan.nii.gz: its header names datatype code 9999, which is no NIfTI data type. "
        "The header is damaged: export the scan again from its source."
    )


@pytest.mark.parametrize("dim0", [0, 8, 9, -1])
def test_bogus_number_of_dimensions(tmp_path, dim0):
    path = patched(tmp_path / "scan.nii.gz", {DIM: ("h", dim0)})
    with pytest.raises(ScanReadError, match=rf"has {dim0} dimensions \(dim\[0\]\); NIfTI allows"):
        read_scan(path)


@pytest.mark.parametrize("sizes", [(-16, 7, 5), (6, 7, 0)])
def test_negative_or_zero_sizes(tmp_path, sizes):
    path = patched(tmp_path / "scan.nii.gz", {DIM + 2: ("3h", sizes)})
    with pytest.raises(ScanReadError, match="every size must be at least 1") as caught:
        read_scan(path)
    _one_clear_line(caught.value, "scan.nii.gz")


@pytest.mark.parametrize("offset", [float("nan"), -352.0])
def test_impossible_voxel_offset(tmp_path, offset):
    path = patched(tmp_path / "scan.nii", {VOX_OFFSET: ("f", offset)})
    with pytest.raises(ScanReadError, match="vox_offset") as caught:
        read_scan(path)
    _one_clear_line(caught.value, "scan.nii")


def test_voxel_offset_past_the_end(tmp_path):
    path = patched(tmp_path / "scan.nii", {VOX_OFFSET: ("f", 1048576.0)})
    with pytest.raises(TruncatedFileError) as caught:
        read_scan(path)
    message = _one_clear_line(caught.value, "scan.nii")
    assert "voxels at byte 1048576 (vox_offset), past the end of the file (772 bytes)" in message


def test_cut_inside_the_header(tmp_path):
    path = patched(tmp_path / "scan.nii.gz", keep=200)
    with pytest.raises(TruncatedFileError, match=r"ends inside its header \(200 of 348 bytes\)"):
        read_scan(path)


def test_cut_right_after_the_header(tmp_path):
    path = patched(tmp_path / "scan.nii", keep=352)
    with pytest.raises(TruncatedFileError) as caught:
        read_scan(path)
    assert _one_clear_line(caught.value, "scan.nii").endswith(
        "scan.nii: the header declares 6 x 7 x 5 int16 voxels (420 bytes) from byte 352, but "
        "the file holds only 0 bytes of them (352 bytes in all). The file is truncated or "
        "damaged: copy or export it again."
    )


# -- sizes the file cannot hold: refused before allocating -----------------------------------
_PROBE = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))  # the old 16 GB read fails fast
from napari_medseg.errors import MedsegError
from napari_medseg.io import read_scan
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    read_scan(sys.argv[1])
    outcome = "read"
except MedsegError as error:
    outcome = type(error).__name__ + ": " + str(error)
except BaseException as error:
    outcome = "UNTYPED " + type(error).__name__ + ": " + str(error)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "seconds": seconds, "grew_kb": after - before}))
"""


def _probe(path: Path) -> dict:
    """Read ``path`` in a fresh process; its outcome, time and peak memory growth."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["huge.nii.gz", "huge.nii"])
def test_tiny_file_declaring_16_gb_is_refused_at_once(tmp_path, name):
    path = patched(tmp_path / name, {DIM: ("4h", (3, 2048, 2048, 2048))})
    assert path.stat().st_size < 1024
    result = _probe(path)
    assert result["outcome"].startswith("TruncatedFileError: "), result
    assert "2048 x 2048 x 2048 int16 voxels (16 GiB)" in result["outcome"]
    assert result["seconds"] < 0.5, result
    assert result["grew_kb"] < 100 * 1024, result


def test_tiny_gz_declaring_1_gb_in_4d_is_refused(tmp_path):
    path = patched(
        tmp_path / "huge4d.nii.gz", {DIM: ("5h", (4, 16, 16, 8, 30000)), DATATYPE: ("2h", (64, 64))}
    )
    with pytest.raises(TruncatedFileError, match=r"16 x 16 x 8 x 30000 float64 voxels \("):
        read_scan(path, volume_index=0)


def _big_header_gz(path: Path, shape, members: list[bytes]) -> Path:
    """A uint8 NIfTI of ``shape`` whose voxel bytes are ``members``, each its own gzip member."""
    header = nib.Nifti1Image(np.zeros((1, 1, 1), np.uint8), np.eye(4)).header
    header.set_data_shape(shape)
    header["vox_offset"] = 352
    raw = bytearray(nib.Nifti1Image(np.zeros((1, 1, 1), np.uint8), np.eye(4)).to_bytes())
    raw[:348] = header.binaryblock
    head = bytes(raw[:352])
    path.write_bytes(
        gzip.compress(head + members[0], 1) + b"".join(gzip.compress(m, 1) for m in members[1:])
    )
    return path


def test_compressed_data_shorter_than_declared_is_counted_not_allocated(tmp_path):
    # 128 MiB declared; 200 kB of noise keeps the deflate bound above that, so the short
    # stream (70 MiB) is found by counting it
    noise = np.random.default_rng(0).bytes(200_000)
    path = _big_header_gz(tmp_path / "short.nii.gz", (512, 512, 512), [noise + bytes(70 * 2**20)])
    result = _probe(path)
    assert result["outcome"].startswith("TruncatedFileError: "), result
    assert "decompresses to 70.2 MiB in all" in result["outcome"]
    assert result["grew_kb"] < 100 * 1024, result


def test_several_gzip_members_read_whole(tmp_path):
    # the trailer holds the last member's length only: the counted length must agree
    shape = (512, 512, 260)
    first = np.random.default_rng(1).integers(0, 200, 2**20, dtype=np.uint8).tobytes()
    rest = bytes(int(np.prod(shape)) - len(first))
    path = _big_header_gz(tmp_path / "members.nii.gz", shape, [first, rest])
    volume = read_scan(path)
    assert volume.shape == shape
    assert volume.array.reshape(-1, order="F")[: len(first)].tobytes() == first


def test_more_than_memory_can_hold_is_refused_before_reading(tmp_path, monkeypatch):
    import napari_medseg.io.nifti_header as nifti_header

    path = patched(tmp_path / "scan.nii.gz", data=np.zeros((64, 64, 64), np.float32))
    monkeypatch.setattr(nifti_header, "available_memory_bytes", lambda: 2**19)  # 512 KiB free
    with pytest.raises(ScanReadError) as caught:
        read_scan(path)
    assert _one_clear_line(caught.value, "scan.nii.gz").endswith(
        "scan.nii.gz: reading 64 x 64 x 64 float32 voxels needs about 1 MiB of memory; 512 KiB "
        "is available. Close other programs, or open it on a machine with more memory."
    )


def test_available_memory_is_known_here():
    available = available_memory_bytes()
    assert available is not None and 0 < available <= os.sysconf("SC_PHYS_PAGES") * os.sysconf(
        "SC_PAGE_SIZE"
    )


# -- files that cannot be read, and what they are --------------------------------------------
@pytest.mark.parametrize("name", ["scan.nii.gz", "scan.nii"])
def test_empty_file_is_called_empty(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(TruncatedFileError, match=r"is empty \(0 bytes\)") as caught:
        read_scan(tmp_path / name)
    assert "not a NIfTI" not in str(caught.value)


def test_folder_named_like_nifti(tmp_path):
    folder = tmp_path / "scan.nii.gz"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(NotAScanError, match="is a folder, not a NIfTI file, and holds no DICOM"):
        read_scan(folder)
    with pytest.raises(NotAScanError, match="is a folder, not a NIfTI file"):
        read_nifti(folder)


def test_pipe_named_like_nifti_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "scan.nii.gz")
    with pytest.raises(ScanReadError, match="not a regular file"):
        read_scan(tmp_path / "scan.nii.gz")


@pytest.fixture
def as_nobody():
    """Run the body as user nobody (root reads every file): switches back afterwards."""
    if not hasattr(os, "seteuid"):
        pytest.skip("no seteuid on this platform")
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def open_folder():
    """A folder every user can enter (pytest's tmp_path is private to its user)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="medseg-perm-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def unreadable_scan(open_folder):
    path = patched(open_folder / "scan.nii.gz")
    path.chmod(0)
    return path


def test_unreadable_file_says_permission_denied(unreadable_scan, as_nobody):
    with pytest.raises(ScanReadError) as caught:
        read_scan(unreadable_scan)
    assert _one_clear_line(caught.value, "scan.nii.gz").endswith(
        "scan.nii.gz: permission denied: this user cannot read the file. Check its read "
        "permissions (chmod u+r)."
    )


def test_gz_name_on_an_uncompressed_file(tmp_path):
    path = tmp_path / "scan.nii.gz"
    path.write_bytes(patched(tmp_path / "plain.nii").read_bytes())
    with pytest.raises(NotAScanError, match=r"not gzip-compressed .it is an uncompressed NIfTI"):
        read_scan(path)


# -- .hdr/.img pairs -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["nifti1.hdr", "analyze.hdr"])
def test_lone_header_names_the_missing_image(tmp_path, name):
    shutil.copy(NIBABEL_DATA / name, tmp_path / name)  # nibabel ships these without .img
    stem = name.removesuffix(".hdr")
    with pytest.raises(ScanReadError) as caught:
        read_scan(tmp_path / name)
    assert _one_clear_line(caught.value, name).endswith(
        f"{name}: is half of a .hdr/.img pair, and the other half, {stem}.img, is missing. "
        f"Copy {stem}.img next to {name}: the two files belong together."
    )


def test_short_image_half_of_a_pair(tmp_path):
    nib.save(nib.Nifti1Pair(_data(), AFFINE), tmp_path / "pair.img")
    image = tmp_path / "pair.img"
    image.write_bytes(image.read_bytes()[:50])
    for name in ("pair.hdr", "pair.img"):
        with pytest.raises(TruncatedFileError, match="holds only 50 bytes") as caught:
            read_scan(tmp_path / name)
        _one_clear_line(caught.value, name)


# -- 4D where 3D is needed -----------------------------------------------------------------
def test_4d_advice_works_outside_info_and_convert(tmp_path):
    path = tmp_path / "example4d.nii.gz"
    shutil.copy(NIBABEL_DATA / "example4d.nii.gz", path)
    with pytest.raises(UnsupportedVolumeError) as caught:
        read_scan(path)
    message = _one_clear_line(caught.value, "example4d.nii.gz")
    assert "is 4D with 2 volumes of 128 x 96 x 24 voxels" in message
    assert f"`medseg convert {path} volume.nii.gz --volume N`" in caught.value.fix


def test_segment_on_a_4d_file_points_at_convert(tmp_path):
    path = tmp_path / "example4d.nii.gz"
    shutil.copy(NIBABEL_DATA / "example4d.nii.gz", path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_medseg.cli",
            "segment",
            str(path),
            "-o",
            str(tmp_path / "labels.nii.gz"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "medseg convert" in done.stderr and "is 4D with 2 volumes" in done.stderr


# -- ordinary files are read as before -------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "anatomical.nii",
        "functional.nii",
        "standard.nii.gz",
        "example_nifti2.nii.gz",
        "reoriented_anat_moved.nii",
        "resampled_anat_moved.nii",
    ],
)
def test_nibabels_own_files_read_as_nibabel_reads_them(name):
    image = nib.load(NIBABEL_DATA / name)
    index = 0 if len(image.shape) == 4 and image.shape[3] > 1 else None
    volume = read_nifti(NIBABEL_DATA / name, volume_index=index)
    expected = np.asanyarray(image.dataobj)
    expected = (expected[..., 0] if index is not None else expected).reshape(volume.shape)
    np.testing.assert_array_equal(volume.array, expected.astype(volume.array.dtype))
    np.testing.assert_allclose(volume.affine, image.affine)
    assert volume.metadata.warnings == []
