"""Decode the stored pixel values of DICOM frames.

Uncompressed (native) frames are read straight from the file into the output
buffer at the byte offset the index recorded (no header parsing, no copy);
compressed and deflated frames go through pydicom's decoders (pylibjpeg,
openjpeg, libjpeg, RLE).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydicom.uid import UID

from napari_medseg.io.dicom.records import FrameRef
from napari_medseg.io.errors import (
    ScanReadError,
    TruncatedFileError,
    UnsupportedTransferSyntaxError,
    UnsupportedVolumeError,
)

_NATIVE_ORDER = "<" if sys.byteorder == "little" else ">"
_SEQUENCE_DELIMITER_LE = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"

#: pip packages that decode each compressed transfer syntax.
DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg (or pillow)",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg",  # JPEG extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",  # JPEG lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg pylibjpeg-libjpeg (or pyjpegls)",  # JPEG-LS
    "1.2.840.10008.1.2.4.81": "pylibjpeg pylibjpeg-libjpeg (or pyjpegls)",
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.201": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.4.202": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle (pydicom also decodes RLE itself)",
}


def frame_dtype(ref: FrameRef) -> np.dtype:
    """Native-order dtype of a frame's stored values.

    Raises
    ------
    UnsupportedVolumeError
        Colour, 1-bit or odd-sized pixels.
    """
    if ref.samples_per_pixel != 1:
        raise UnsupportedVolumeError(
            ref.path,
            f"holds colour pixels ({ref.photometric}, {ref.samples_per_pixel} samples per "
            "pixel); only greyscale CT/MR/PET images can be read as a scan.",
            "Choose a greyscale series.",
        )
    if ref.bits_allocated not in (8, 16, 32):
        raise UnsupportedVolumeError(
            ref.path,
            f"has {ref.bits_allocated}-bit pixels; only 8, 16 and 32 bits are supported.",
            "Choose another series.",
        )
    kind = "i" if ref.pixel_representation == 1 else "u"
    return np.dtype(f"{_NATIVE_ORDER}{kind}{ref.bits_allocated // 8}")


def stored_range(ref: FrameRef) -> tuple[int, int]:
    """Smallest and largest value the frame's BitsStored / PixelRepresentation allow."""
    bits = max(1, min(ref.bits_stored, ref.bits_allocated))
    if ref.pixel_representation == 1:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def check_decoder(ref: FrameRef) -> None:
    """Raise when the frame's transfer syntax needs a decoder that is missing.

    Raises
    ------
    UnsupportedTransferSyntaxError
        Naming the file, the syntax and the pip package to install.
    """
    ts = UID(ref.transfer_syntax)
    if not ts.is_compressed:
        return
    from pydicom.pixels import get_decoder

    name = ts.name or str(ts)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise UnsupportedTransferSyntaxError(
            ref.path,
            f"pixel data is compressed as {name} ({ts}), which no installed DICOM "
            "decoder supports.",
            "Convert the series to an uncompressed transfer syntax first (e.g. "
            "`gdcmconv --raw in.dcm out.dcm` or `dcmdjpeg`).",
        ) from None
    if not decoder.is_available:
        package = DECODER_PACKAGES.get(str(ts), "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg")
        missing = "; ".join(decoder.missing_dependencies)
        raise UnsupportedTransferSyntaxError(
            ref.path,
            f"pixel data is compressed as {name} ({ts}) and no decoder for it is "
            f"installed ({missing}).",
            f"Install one: pip install {package}",
        )


def _correct_unused_bits(ref: FrameRef, arr: np.ndarray) -> None:
    """Clear (unsigned) or sign-extend (signed) bits above BitsStored, in place."""
    shift = ref.bits_allocated - ref.bits_stored
    if shift > 0:
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)


def read_native_into(ref: FrameRef, dest: np.ndarray, handle: Any) -> None:
    """Read one uncompressed frame from an open file straight into ``dest``.

    Parameters
    ----------
    ref : FrameRef
        Frame with a ``pixel_offset``.
    dest : numpy.ndarray
        C-contiguous ``(rows, columns)`` array of :func:`frame_dtype`.
    handle : binary file
        The frame's file, open for reading.

    Raises
    ------
    TruncatedFileError
        The file ends before the frame does.
    """
    if ref.truncated:
        raise TruncatedFileError(
            ref.path,
            f"is truncated: {ref.truncated}.",
            "Copy the file again from its source, or remove it and read with allow_gaps=True.",
        )
    handle.seek(ref.pixel_offset)
    got = handle.readinto(memoryview(dest).cast("B"))
    if got != dest.nbytes:
        raise TruncatedFileError(
            ref.path,
            f"is truncated: frame {ref.frame + 1} needs {dest.nbytes} bytes of pixel data "
            f"but the file holds {got}.",
            "Copy the file again from its source, or remove it and read with allow_gaps=True.",
        )
    if ref.byteorder != _NATIVE_ORDER and dest.dtype.itemsize > 1:
        dest.byteswap(inplace=True)
    _correct_unused_bits(ref, dest)


def _looks_cut(path: str) -> bool:
    """An encapsulated file normally ends with a sequence delimitation item."""
    try:
        with open(path, "rb") as handle:
            handle.seek(-8, 2)
            return handle.read(8) != _SEQUENCE_DELIMITER_LE
    except OSError:
        return True


def decode_frames(path: str, refs: list[FrameRef]) -> Iterator[tuple[FrameRef, np.ndarray]]:
    """Decode frames of one file through pydicom (compressed or deflated syntaxes).

    Yields
    ------
    (FrameRef, numpy.ndarray)
        Each requested frame with its stored values, shape ``(rows, columns)``.

    Raises
    ------
    UnsupportedTransferSyntaxError, TruncatedFileError, ScanReadError
        Naming the file.
    """
    import pydicom
    from pydicom.pixels import pixel_array

    for ref in refs:
        check_decoder(ref)
    try:
        ds = pydicom.dcmread(path)
    except Exception as error:
        raise TruncatedFileError(
            path,
            f"cannot be read again ({type(error).__name__}: {error}).",
            "Copy the file again from its source.",
        ) from error
    multi = refs[0].n_frames_in_file > 1
    for ref in refs:
        try:
            arr = pixel_array(ds, index=ref.frame if multi else None)
        except (UnsupportedTransferSyntaxError, MemoryError):
            raise
        except Exception as error:
            if UID(ref.transfer_syntax).is_encapsulated and _looks_cut(path):
                raise TruncatedFileError(
                    ref.label,
                    f"compressed pixel data is incomplete ({type(error).__name__}: {error}).",
                    "Copy the file again from its source, or remove it.",
                ) from error
            raise ScanReadError(
                ref.label,
                f"pixel data cannot be decoded ({type(error).__name__}: {error}).",
                "The file may be corrupt; re-export it, or remove it from the folder.",
            ) from error
        if arr.shape != (ref.rows, ref.columns):
            raise ScanReadError(
                ref.label,
                f"decoded to shape {arr.shape}, not Rows x Columns = ({ref.rows}, {ref.columns}).",
                "The file is corrupt; re-export it.",
            )
        yield ref, arr
