"""Decode the stored pixel values of DICOM frames.

Uncompressed (native) frames are read straight from the file into the output
buffer at the byte offset the index recorded (no header parsing, no copy);
compressed and deflated frames go through pydicom's decoders (pylibjpeg,
openjpeg, libjpeg, RLE).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from napari_medseg.errors import (
    ScanReadError,
    TruncatedFileError,
    UnsupportedTransferSyntaxError,
    UnsupportedVolumeError,
)
from napari_medseg.io.dicom.records import FrameRef
from napari_medseg.io.dicom.values import one_line

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


#: Loggers through which pydicom and its decoder plugins report a frame they could not
#: decode, each with a full traceback (``LOGGER.exception``), before raising.
_DECODER_LOGGERS = (
    "pydicom",
    "pydicom.pixels.decoders.base",
    "pydicom.pixels.utils",
    "pylibjpeg.utils",
    "openjpeg.utils",
    "libjpeg.utils",
)


class _DecodingThreads(logging.Filter):
    """Drops the decoder libraries' records logged in a thread that decodes for us.

    A failed frame becomes one typed error naming the file (:func:`_decode_error`,
    with the libraries' messages in it); their tracebacks, logged at ERROR level
    before the exception reaches us, would print 30 lines above it. Other
    threads' records pass untouched.
    """

    def __init__(self) -> None:
        super().__init__()
        self.depth: dict[int, int] = {}
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread not in self.depth


_QUIET = _DecodingThreads()


@contextmanager
def quiet_decoders() -> Iterator[None]:
    """Silence pydicom's and pylibjpeg's decoder logging in this thread, for a while."""
    ident = threading.get_ident()
    with _QUIET.lock:
        for name in _DECODER_LOGGERS:
            named = logging.getLogger(name)
            if _QUIET not in named.filters:
                named.addFilter(_QUIET)
        _QUIET.depth[ident] = _QUIET.depth.get(ident, 0) + 1
    try:
        yield
    finally:
        with _QUIET.lock:
            _QUIET.depth[ident] -= 1
            if not _QUIET.depth[ident]:
                del _QUIET.depth[ident]


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
    if is_word_swapped(ref):
        _read_word_swapped(ref, dest, handle)
    else:
        handle.seek(ref.pixel_offset)
        _check_read(ref, handle.readinto(memoryview(dest).cast("B")), dest.nbytes)
    if ref.byteorder != _NATIVE_ORDER and dest.dtype.itemsize > 1:
        dest.byteswap(inplace=True)
    _correct_unused_bits(ref, dest)


def is_word_swapped(ref: FrameRef) -> bool:
    """Whether the frame's 8-bit pixels sit in big-endian 16-bit words (VR OW).

    In Explicit VR Big Endian, an OW Pixel Data element holds 16-bit words, so
    each pair of 8-bit pixels is stored swapped (PS3.5 8.1.1, pydicom's
    ``OBXXXX1A_expb.dcm``); with VR OB the bytes are in pixel order.
    """
    return ref.bits_allocated == 8 and ref.byteorder == ">" and ref.pixel_vr == "OW"


def _check_read(ref: FrameRef, got: int, needed: int) -> None:
    if got < needed:
        raise TruncatedFileError(
            ref.path,
            f"is truncated: frame {ref.frame + 1} needs {needed} bytes of pixel data "
            f"but the file holds {got}.",
            "Copy the file again from its source, or remove it and read with allow_gaps=True.",
        )


def _read_word_swapped(ref: FrameRef, dest: np.ndarray, handle: Any) -> None:
    """Read 8-bit pixels stored in big-endian 16-bit words, swapping each pair back."""
    size = dest.nbytes
    lead = (ref.frame * ref.frame_bytes) % 2  # frame starts in the middle of a word
    if lead == 0 and size % 2 == 0:
        handle.seek(ref.pixel_offset)
        _check_read(ref, handle.readinto(memoryview(dest).cast("B")), size)
        dest.reshape(-1).view(np.uint16).byteswap(inplace=True)
        return
    span = (lead + size + 1) // 2 * 2  # whole words covering the frame
    words = bytearray(span)
    handle.seek(ref.pixel_offset - lead)
    got = handle.readinto(words)
    _check_read(ref, got - lead, size)
    pairs = np.frombuffer(words, dtype=np.uint8).reshape(-1, 2)[:, ::-1].reshape(-1)
    dest.reshape(-1).view(np.uint8)[...] = pairs[lead : lead + size]


def _looks_cut(path: str) -> bool:
    """An encapsulated file normally ends with a sequence delimitation item."""
    try:
        with open(path, "rb") as handle:
            handle.seek(-8, 2)
            return handle.read(8) != _SEQUENCE_DELIMITER_LE
    except OSError:
        return True


def file_gone_error(path: str, error: OSError) -> ScanReadError:
    """The error for a file that was indexed but cannot be opened or read any more.

    Parameters
    ----------
    path : str
        The file (or a frame label naming it).
    error : OSError
        What the operating system said.
    """
    reason = error.strerror or str(error) or type(error).__name__
    if isinstance(error, PermissionError):
        fix = (
            "Its permissions changed since the folder was scanned; restore read access, or "
            "scan the folder again and read the series again."
        )
    else:
        fix = (
            "The file was moved or deleted since the folder was scanned; scan the folder "
            "again (index_dicom) and read the series again."
        )
    return ScanReadError(path, f"cannot be read any more ({reason}).", fix)


def _decode_error(ref: FrameRef, path: str, error: Exception) -> ScanReadError:
    """Turn a decoder's exception into a typed one-line error naming the file.

    Only an operating-system error (with an errno) means the file went away; an
    ``OSError`` from an image library (Pillow's "broken data stream") is a
    corrupt stream.
    """
    if isinstance(error, OSError) and error.errno is not None:
        return file_gone_error(ref.label, error)
    name = UID(ref.transfer_syntax).name
    if UID(ref.transfer_syntax).is_encapsulated and _looks_cut(path):
        return TruncatedFileError(
            ref.label,
            f"compressed pixel data ({name}) is incomplete: {one_line(error)}.",
            "Copy the file again from its source, or remove it.",
        )
    return ScanReadError(
        ref.label,
        f"pixel data ({name}) cannot be decoded: {one_line(error)}.",
        "The file may be corrupt; copy it again from its source, re-export it, or remove "
        "it from the folder.",
    )


def _frames_from_dataset(path: str, refs: list[FrameRef]) -> Generator[np.ndarray, None, None]:
    """Decode through a fully parsed data set (deflated files: the stream is zipped)."""
    import pydicom
    from pydicom.pixels import pixel_array

    try:
        ds = pydicom.dcmread(path)
    except OSError as error:
        raise file_gone_error(path, error) from error
    except Exception as error:
        raise TruncatedFileError(
            path,
            f"cannot be read again ({type(error).__name__}: {one_line(error)}).",
            "Copy the file again from its source.",
        ) from error
    multi = refs[0].n_frames_in_file > 1
    for ref in refs:
        yield pixel_array(ds, index=ref.frame if multi else None)


def _frames_from_file(path: str, refs: list[FrameRef]) -> Generator[np.ndarray, None, None]:
    """Decode frame by frame from the file: only one frame's data is in memory at a time."""
    from pydicom.pixels import iter_pixels

    yield from iter_pixels(path, indices=[ref.frame for ref in refs])


def decode_frames(path: str, refs: list[FrameRef]) -> Iterator[tuple[FrameRef, np.ndarray]]:
    """Decode frames of one file through pydicom (compressed or deflated syntaxes).

    Frames are decoded one at a time straight from the file
    (:func:`pydicom.pixels.iter_pixels`), so memory holds one compressed and one
    decoded frame, not the whole file; only deflated files, whose stream must be
    inflated as a whole, are parsed completely.

    Parameters
    ----------
    path : str
        The file.
    refs : list of FrameRef
        Frames of that file, in the order to decode them (ascending ``frame``
        is fastest).

    Yields
    ------
    (FrameRef, numpy.ndarray)
        Each requested frame with its stored values, shape ``(rows, columns)``.

    Raises
    ------
    UnsupportedTransferSyntaxError, TruncatedFileError, ScanReadError
        Naming the file; a file that vanished or became unreadable since it was
        indexed gives a :class:`ScanReadError` that says to scan again.
    """
    for ref in refs:
        check_decoder(ref)
    if not refs:
        return
    if refs[0].transfer_syntax == DeflatedExplicitVRLittleEndian:
        frames = _frames_from_dataset(path, refs)
    else:
        frames = _frames_from_file(path, refs)
    try:
        yield from _checked(path, refs, frames)
    finally:
        frames.close()  # closes the file when the caller stops early


def _checked(
    path: str, refs: list[FrameRef], frames: Generator[np.ndarray, None, None]
) -> Iterator[tuple[FrameRef, np.ndarray]]:
    """Pair decoded frames with their records, turning failures into typed errors."""
    for ref in refs:
        try:
            with quiet_decoders():
                arr = next(frames)
        except (ScanReadError, MemoryError):
            raise
        except StopIteration:
            raise ScanReadError(
                ref.label,
                "holds fewer frames than its header says.",
                "The file is corrupt; re-export it.",
            ) from None
        except Exception as error:
            raise _decode_error(ref, path, error) from error
        if arr.shape != (ref.rows, ref.columns):
            raise ScanReadError(
                ref.label,
                f"decoded to shape {arr.shape}, not Rows x Columns = ({ref.rows}, {ref.columns}).",
                "The file is corrupt; re-export it.",
            )
        yield ref, arr
