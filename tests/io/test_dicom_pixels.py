"""Stored pixel layout quirks: 8-bit pixels in big-endian OW words; pixel padding."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from dicom_factory import phantom, write_series
from pydicom.uid import ImplicitVRLittleEndian

from napari_medseg.io.dicom import read_dicom
from napari_medseg.io.dicom.pixels import read_native_into
from napari_medseg.io.dicom.records import FrameRef


# ----------------------------------------------------------------- 8-bit, big endian, OW
def test_8bit_big_endian_ow_matches_pydicom(tmp_path):
    data = pytest.importorskip("pydicom.data")
    source = data.get_testdata_file("OBXXXX1A_expb.dcm")
    if source is None:
        pytest.skip("OBXXXX1A_expb.dcm not in pydicom-data")
    ds = pydicom.dcmread(source)
    assert ds["PixelData"].VR == "OW" and ds.BitsAllocated == 8
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, 0]
    ds.PixelSpacing = [1, 1]
    ds.Modality = "MR"
    target = tmp_path / "be8.dcm"
    ds.save_as(target)
    reference = pydicom.dcmread(target)
    assert not reference.file_meta.TransferSyntaxUID.is_little_endian
    volume = read_dicom(target)
    np.testing.assert_array_equal(volume.array[:, :, 0].T, reference.pixel_array)


@pytest.mark.parametrize("frame", [0, 1, 2])
def test_word_swapped_frames_of_odd_size(frame):
    # 3 frames of 3 x 3 8-bit pixels (9 bytes: frames 1 and 2 start inside a word)
    pixels = np.arange(27, dtype=np.uint8).reshape(3, 3, 3) * 7
    flat = np.append(pixels.reshape(-1), np.uint8(0))  # padded to an even length
    stored = flat.reshape(-1, 2)[:, ::-1].tobytes()  # 16-bit big-endian words
    prefix = b"HEAD" * 3
    ref = FrameRef(
        path="mem.dcm",
        frame=frame,
        n_frames_in_file=3,
        rows=3,
        columns=3,
        bits_allocated=8,
        bits_stored=8,
        pixel_offset=len(prefix) + frame * 9,
        byteorder=">",
        pixel_vr="OW",
    )
    out = np.empty((3, 3), dtype=np.uint8)
    read_native_into(ref, out, io.BytesIO(prefix + stored))
    np.testing.assert_array_equal(out, pixels[frame])
    ref.pixel_vr = "OB"  # OB is a byte stream: no swapping
    read_native_into(ref, out, io.BytesIO(prefix + pixels.tobytes()))
    np.testing.assert_array_equal(out, pixels[frame])


# ----------------------------------------------------------------- pixel padding
@pytest.mark.parametrize("syntax", [None, ImplicitVRLittleEndian])
def test_pixel_padding_recorded_not_applied(tmp_path, syntax):
    stored = phantom((8, 6, 3))
    stored[:2] = -2000  # padding outside the field of view
    kwargs = {"transfer_syntax": syntax} if syntax else {}
    written = write_series(
        tmp_path, stored, intercept=-1024.0, extra={"PixelPaddingValue": -2000}, **kwargs
    )
    volume = read_dicom(tmp_path)
    np.testing.assert_array_equal(volume.array, written.hu)  # HU untouched
    extra = volume.metadata.extra
    assert extra["pixel_padding_stored"] == (-2000, None)
    assert extra["pixel_padding_value"] == -3024
    assert extra["pixel_padding_range"] == (-3024, -3024)
    low, high = extra["pixel_padding_range"]
    mask = (volume.array >= low) & (volume.array <= high)
    assert mask[:2].all() and not mask[2:].any()


def test_pixel_padding_range_limit(tmp_path):
    stored = phantom((8, 6, 3)) + 2000
    write_series(
        tmp_path,
        stored,
        intercept=-1024.0,
        extra={"PixelPaddingValue": 0, "PixelPaddingRangeLimit": 20},
    )
    extra = read_dicom(tmp_path).metadata.extra
    assert extra["pixel_padding_stored"] == (0, 20)
    assert extra["pixel_padding_range"] == (-1024, -1004)


def test_no_pixel_padding(tmp_path):
    write_series(tmp_path, phantom((8, 6, 2)))
    extra = read_dicom(tmp_path).metadata.extra
    assert extra["pixel_padding_value"] is None and extra["pixel_padding_range"] is None
