"""Compressed series through the whole reader, and clear errors for missing decoders."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicom_factory import make_affine, phantom, write_series
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from napari_medseg.errors import UnsupportedTransferSyntaxError
from napari_medseg.io.dicom import index_dicom, read_dicom


@pytest.mark.parametrize(
    "syntax",
    [RLELossless, JPEG2000Lossless, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian],
)
def test_series_in_any_syntax_reads_like_uncompressed(tmp_path, syntax):
    stored = phantom((32, 32, 4), seed=3) - 300
    affine = make_affine("PSR", spacing=(0.8, 0.8, 1.5))
    plain = write_series(tmp_path / "plain", stored, affine)
    other = write_series(tmp_path / "other", stored, affine, transfer_syntax=syntax)
    (series,) = index_dicom(tmp_path / "other")
    assert series.transfer_syntaxes == [pydicom.uid.UID(syntax).name]
    a, b = read_dicom(plain.folder), read_dicom(other.folder)
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine)
    assert b.metadata.extra["transfer_syntaxes"] == [pydicom.uid.UID(syntax).name]


def test_syntax_without_any_decoder(tmp_path):
    written = write_series(tmp_path, phantom((8, 6, 3)), transfer_syntax=RLELossless)
    for path in written.files:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 MP@ML
        ds.save_as(path, enforce_file_format=True)
    with pytest.raises(UnsupportedTransferSyntaxError) as info:
        read_dicom(tmp_path)
    message = str(info.value)
    assert "MPEG2" in message and "1.2.840.10008.1.2.4.100" in message
    assert str(written.files[0]) in message or str(tmp_path) in message


def test_missing_decoder_names_the_package(tmp_path, monkeypatch):
    from pydicom.pixels import get_decoder

    written = write_series(tmp_path, phantom((32, 32, 2)), transfer_syntax=JPEG2000Lossless)
    decoder = get_decoder(JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {})
    with pytest.raises(UnsupportedTransferSyntaxError) as info:
        read_dicom(tmp_path)
    message = str(info.value)
    assert "pip install pylibjpeg pylibjpeg-openjpeg" in message
    assert "JPEG 2000" in message
    assert any(str(f) in message for f in written.files)
