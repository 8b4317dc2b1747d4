"""Open a NIfTI header without trusting it: every check before a voxel is allocated.

A NIfTI header is 348 (NIfTI-2: 540) bytes that say how many voxels follow, of which
type, where, and where they lie in space. A damaged or hostile header can say anything:
2048^3 voxels in a 1 kB file, a datatype code that does not exist, an all-zero sform.
:func:`open_nifti` reads the header alone (never its extensions) and refuses, with a
typed :class:`~napari_medseg.errors.ScanReadError` naming the file, the problem and the
fix, whatever nibabel would turn into a traceback, a ``MemoryError`` or minutes of
decompression; :func:`check_voxel_data` then checks that the file can hold the voxels
the header declares and that memory can hold what will be read, before reading it;
:func:`resolve_affine` picks a usable voxel -> RAS+ transform.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.batteryrunners import BatteryRunner
from nibabel.filebasedimages import ImageFileError
from nibabel.openers import ImageOpener
from nibabel.spatialimages import HeaderDataError

from napari_medseg.errors import NotAScanError, ScanReadError, TruncatedFileError

_NIFTI_CLASSES = (nib.Nifti1Image, nib.Nifti2Image, nib.Nifti1Pair, nib.Nifti2Pair)

#: Deflate expands at most 1032-fold (a 258-byte match coded in 2 bits), so a gzip file
#: of n bytes never holds more than about 1032 n bytes, whatever its header says.
DEFLATE_MAX_RATIO = 1032

#: Compressed voxel data declared longer than this is counted (streamed, nothing kept)
#: before it is read when the gzip trailer does not confirm its length.
COUNT_ABOVE_BYTES = 64 * 2**20

#: How a damaged header is fixed, in every message that blames the header.
HEADER_FIX = "The header is damaged: export the scan again from its source."
TRUNCATED_FIX = "The file is truncated or damaged: copy or export it again."

_NUMPY_REPR = re.compile(r"\bnp\.\w+\(([^()]*)\)")


def one_line(text: object) -> str:
    """A message of a library on one line, without numpy reprs (``np.float64(0.5)`` -> 0.5)."""
    return " ".join(_NUMPY_REPR.sub(r"\1", str(text)).split())


def format_bytes(count: int | float) -> str:
    """``1536`` -> ``"1.5 KiB"``: three significant digits in binary units."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{int(count)} bytes"


def available_memory_bytes() -> int | None:
    """Bytes of memory a new allocation can still get without swapping, or None if unknown.

    ``psutil.virtual_memory().available`` when psutil is installed, else
    ``MemAvailable`` of ``/proc/meminfo``, else the free pages (``SC_AVPHYS_PAGES``),
    lowered to what a cgroup v2 memory limit (containers, SLURM jobs) still leaves.
    """
    available: int | None = None
    try:
        import psutil

        available = int(psutil.virtual_memory().available)
    except Exception:  # not installed, or no answer on this platform
        try:
            with open("/proc/meminfo") as handle:
                for line in handle:
                    if line.startswith("MemAvailable:"):
                        available = int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            pass
        if available is None:
            try:
                available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (AttributeError, ValueError, OSError):
                pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            left = max(int(limit) - used, 0)
            available = left if available is None else min(available, left)
    except (OSError, ValueError):
        pass
    return available


@dataclass
class OpenedNifti:
    """A checked NIfTI header, ready for an array proxy.

    Attributes
    ----------
    image_class : type
        nibabel image class (``Nifti1Image``, ``Nifti2Pair``...).
    header : nibabel header
        The header, with nibabel's harmless fixes applied (see ``warnings``).
    data_path : pathlib.Path
        The file that holds the voxels: the file itself, or the ``.img`` of a pair.
    shape : tuple of int
        Declared data shape, every size >= 1, nibabel's order ``(I, J, K, ...)``.
    dtype : numpy.dtype
        Stored voxel type.
    offset : int
        Byte where the voxels start in ``data_path`` (decompressed).
    warnings : list of str
        What nibabel fixed in the header (zero voxel sizes, invalid codes...).
    """

    image_class: type
    header: object
    data_path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    warnings: list[str] = field(default_factory=list)

    def describe(self, shape: tuple[int, ...] | None = None) -> str:
        """``"6 x 7 x 5 int16 voxels"``, of ``shape`` (default: the declared one)."""
        dims = " x ".join(str(n) for n in (self.shape if shape is None else shape))
        return f"{dims} {self.dtype.name} voxels"

    def array_proxy(self):
        """nibabel's lazy array on the voxels (nothing read yet)."""
        return self.image_class.ImageArrayProxy(
            str(self.data_path), self.header.copy(), mmap=True, keep_file_open=False
        )


def _image_class(path: Path) -> type:
    """The nibabel image class ``nib.load`` would use, from the name and first bytes."""
    sniff = None
    for klass in nib.imageclasses.all_image_classes:
        try:
            valid, sniff = klass.path_maybe_image(str(path), sniff)
        except (ImageFileError, OSError, ValueError, EOFError, zlib.error):
            continue
        if valid:
            return klass
    head = b""
    try:
        with open(path, "rb") as handle:
            head = handle.read(352)
    except OSError:
        pass
    _refuse_cut_header(path, head)
    if path.name.lower().endswith(".gz") and head[:2] != b"\x1f\x8b":
        renamed = "Rename it to end in .nii." if head[344:347] == b"n+1" else ""
        raise NotAScanError(
            path,
            "is named .gz but is not gzip-compressed"
            + (" (it is an uncompressed NIfTI file)." if renamed else ", and not a NIfTI file."),
            renamed or "Open a .nii/.nii.gz scan or a DICOM folder.",
        )
    raise NotAScanError(
        path,
        "not a NIfTI file (no NIfTI or Analyze header in it).",
        "Open a .nii/.nii.gz scan or a DICOM folder.",
    )


def _refuse_cut_header(path: Path, head: bytes) -> None:
    """A NIfTI/Analyze header cut short (nibabel then sees no image at all): say so."""
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as handle:
                head = handle.read(540)
        except (OSError, EOFError, zlib.error):
            return
    sizes = {struct.unpack(code + "i", head[:4])[0] for code in "<>"} if len(head) >= 4 else ()
    for size in (348, 540):
        if size in sizes and len(head) < size:
            raise TruncatedFileError(
                path, f"ends inside its header ({len(head)} of {size} bytes).", TRUNCATED_FIX
            )


def _read_header_block(path: Path, header_file: Path, size: int) -> bytes:
    try:
        with ImageOpener(str(header_file), "rb") as handle:
            block = handle.read(size)
    except PermissionError:
        raise ScanReadError(
            header_file,
            "permission denied: this user cannot read the file.",
            "Check its read permissions (chmod u+r).",
        ) from None
    except (OSError, EOFError, zlib.error) as error:
        raise TruncatedFileError(
            path, f"the header cannot be read ({one_line(error)}).", TRUNCATED_FIX
        ) from None
    if len(block) < size:
        raise TruncatedFileError(
            path, f"ends inside its header ({len(block)} of {size} bytes).", TRUNCATED_FIX
        )
    return block


def open_nifti(path: str | os.PathLike) -> OpenedNifti:
    """Read and check the header of a NIfTI file (or pair); read no voxel.

    Parameters
    ----------
    path : path
        ``.nii``, ``.nii.gz``, or either half of a ``.hdr``/``.img`` pair.

    Returns
    -------
    OpenedNifti

    Raises
    ------
    NotAScanError
        No NIfTI header, or a format nibabel reads that is not NIfTI (Analyze, MINC...).
    ScanReadError
        A missing ``.img``/``.hdr`` half, a damaged header (dimension count or sizes,
        unknown datatype code, voxel offset...), every ``HeaderDataError`` of nibabel.
    TruncatedFileError
        The file ends inside its header.
    """
    path = Path(path)
    klass = _image_class(path)
    try:
        file_map = klass.filespec_to_file_map(str(path))
    except ImageFileError as error:
        raise NotAScanError(
            path, f"not a NIfTI file ({one_line(error)}).", "Open a .nii/.nii.gz scan."
        ) from None
    data_path = Path(file_map["image"].filename)
    header_file = Path(file_map["header"].filename) if "header" in file_map else data_path
    for half, other in ((header_file, data_path), (data_path, header_file)):
        if half != path and not half.is_file():
            raise ScanReadError(
                path,
                f"is half of a .hdr/.img pair, and the other half, {half.name}, is missing.",
                f"Copy {half.name} next to {other.name}: the two files belong together.",
            )
    if not issubclass(klass, _NIFTI_CLASSES):
        raise NotAScanError(
            path, f"nibabel reads it as {klass.__name__}, not NIfTI.", "Convert it to NIfTI."
        )
    header_class = klass.header_class
    size = header_class.template_dtype.itemsize
    block = _read_header_block(path, header_file, size)
    # byte order from sizeof_hdr, which a damaged dim[0] cannot fool (nibabel uses dim[0])
    endian = next((code for code in "<>" if struct.unpack(code + "i", block[:4])[0] == size), None)
    header = header_class(block, endianness=endian, check=False)
    dim0 = int(header["dim"][0])
    if not 1 <= dim0 <= 7:
        raise ScanReadError(
            path,
            f"its header says the image has {dim0} dimensions (dim[0]); NIfTI allows 1 to 7.",
            HEADER_FIX,
        )
    code = int(header["datatype"])
    if code not in header_class._data_type_codes.code:
        raise ScanReadError(
            path, f"its header names datatype code {code}, which is no NIfTI data type.", HEADER_FIX
        )
    offset = float(header["vox_offset"])
    if not math.isfinite(offset) or offset < 0:
        raise ScanReadError(
            path, f"its header puts the voxels at byte {offset:g} (vox_offset).", HEADER_FIX
        )
    header, reports = BatteryRunner(header_class._get_checks()).check_fix(header)
    warnings: list[str] = []
    for report in reports:
        if report.problem_level >= 40:
            raise ScanReadError(
                path, f"its header is damaged ({one_line(report.problem_msg)}).", HEADER_FIX
            )
        if report.problem_level >= 30:  # lower levels are notes, not problems
            warnings.append(f"nibabel fixed the header: {one_line(report.message)}.")
    try:
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = np.dtype(header.get_data_dtype())
        offset = int(header.get_data_offset())
        header.get_slope_inter()
    except (HeaderDataError, ValueError, OverflowError) as error:
        raise ScanReadError(
            path, f"its header is damaged ({one_line(error)}).", HEADER_FIX
        ) from None
    if any(n < 1 for n in shape):
        raise ScanReadError(
            path,
            f"its header declares an image of {' x '.join(map(str, shape))} voxels; "
            "every size must be at least 1.",
            HEADER_FIX,
        )
    return OpenedNifti(klass, header, data_path, shape, dtype, offset, warnings)


def _gzip_isize(path: Path) -> int | None:
    """The gzip trailer's ISIZE: the uncompressed length mod 2**32 (of the last member)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(-4, os.SEEK_END)
            return struct.unpack("<I", handle.read(4))[0]
    except (OSError, struct.error):
        return None


def decompressed_length(path: Path, cap: int) -> int:
    """How many bytes a compressed file decompresses to, counting at most ``cap``.

    Streams 1 MiB blocks and keeps none: memory stays flat, and the count stops at the
    end of the data (or where it is damaged), so a short file is found in the time its
    real content takes to decompress, not the time its header promises.
    """
    total = 0
    try:
        with ImageOpener(str(path), "rb") as handle:
            while total < cap:
                block = handle.read(min(1 << 20, cap - total))
                if not block:
                    break
                total += len(block)
    except (OSError, EOFError, zlib.error):
        pass  # damaged at this point: what came before is what the file holds
    return total


def check_voxel_data(
    path: Path,
    opened: OpenedNifti,
    read_shape: tuple[int, ...],
    *,
    scaled: bool,
    output_itemsize: int,
) -> None:
    """Refuse, before reading, voxel data the file cannot hold or memory cannot take.

    Parameters
    ----------
    path : pathlib.Path
        The file the user named (for messages).
    opened : OpenedNifti
        Its checked header.
    read_shape : tuple of int
        The part that will be read (one volume of a 4D file).
    scaled : bool
        Whether ``scl_slope``/``scl_inter`` scaling applies (nibabel computes in float64).
    output_itemsize : int
        Bytes per voxel of the array handed on.

    Raises
    ------
    TruncatedFileError
        The file (its decompressed length, for gzip: from the deflate bound, the gzip
        trailer or a capped streaming count) ends before the declared voxels do.
    ScanReadError
        Reading would need more memory than is available.
    """
    n_bytes = math.prod(opened.shape) * opened.dtype.itemsize
    end = opened.offset + n_bytes
    data_path = opened.data_path
    where = "the file" if data_path == path else data_path.name
    declared = f"the header declares {opened.describe()} ({format_bytes(n_bytes)})"
    size = data_path.stat().st_size
    suffix = data_path.suffix.lower()
    compressed = suffix in (".gz", ".bz2", ".zst")
    if not compressed:
        if opened.offset > size:
            raise TruncatedFileError(
                path,
                f"its header puts the voxels at byte {opened.offset} (vox_offset), past the "
                f"end of {where} ({size} bytes).",
                TRUNCATED_FIX,
            )
        if size < end:
            raise TruncatedFileError(
                path,
                f"{declared} from byte {opened.offset}, but {where} holds only "
                f"{format_bytes(size - opened.offset)} of them ({size} bytes in all).",
                TRUNCATED_FIX,
            )
    elif suffix == ".gz" and end > size * DEFLATE_MAX_RATIO + 1024:
        raise TruncatedFileError(
            path,
            f"{declared}, but {where} is gzip data of {format_bytes(size)}, which cannot "
            f"decompress to more than {format_bytes(size * DEFLATE_MAX_RATIO)}.",
            TRUNCATED_FIX,
        )
    elif end > COUNT_ABOVE_BYTES and (suffix != ".gz" or _gzip_isize(data_path) != end % 2**32):
        # the trailer does not confirm the length (a short file, several gzip members,
        # or another compression): count before allocating for the header's promise
        found = decompressed_length(data_path, end)
        if found < end:
            raise TruncatedFileError(
                path,
                f"{declared} from byte {opened.offset}, but {where} decompresses to "
                f"{format_bytes(found)} in all.",
                TRUNCATED_FIX,
            )
    n_read = math.prod(read_shape)
    need = n_read * output_itemsize
    if scaled or output_itemsize != opened.dtype.itemsize:
        need += n_read * opened.dtype.itemsize  # the raw buffer, besides the result
    if scaled:
        need += n_read * 8  # nibabel scales in float64
    available = available_memory_bytes()
    if available is not None and need > available:
        raise ScanReadError(
            path,
            f"reading {opened.describe(read_shape)} needs about {format_bytes(need)} of "
            f"memory; {format_bytes(available)} is available.",
            "Close other programs, or open it on a machine with more memory.",
        )


def _unusable(matrix: np.ndarray) -> str:
    """Why a 4x4 voxel -> mm matrix cannot place voxels ("" when it can)."""
    matrix = np.asarray(matrix, dtype=float)
    if not np.all(np.isfinite(matrix)):
        return "holds non-finite numbers"
    linear = matrix[:3, :3]
    if not np.any(linear):
        return "is all zeros"
    norms = np.linalg.norm(linear, axis=0)
    if abs(np.linalg.det(linear)) <= 1e-6 * float(np.prod(norms)):
        return "is singular (its voxel axes do not span 3D space)"
    return ""


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass
class ResolvedGeometry:
    """The voxel -> RAS+ mm affine of a NIfTI header and how it was chosen.

    Attributes
    ----------
    affine : numpy.ndarray
        4x4, always finite and invertible.
    qform_code, sform_code : int
        The header's codes, 0 for a transform that could not be used (so a file written
        on this grid does not claim it).
    qform : numpy.ndarray or None
        The qform when both transforms are usable (to keep a distinct one on writing).
    warnings : list of str
    """

    affine: np.ndarray
    qform_code: int
    sform_code: int
    qform: np.ndarray | None
    warnings: list[str]


def resolve_affine(path: Path, header) -> ResolvedGeometry:
    """Choose the voxel -> RAS+ mm transform of a NIfTI header.

    The order of nibabel and ITK: the sform when its code is set, else the qform when
    its code is set, else the voxel sizes alone (pixdim; nibabel's fallback, x flipped).
    A transform that cannot place voxels (all zeros, singular, non-finite, a broken
    quaternion) is skipped with a warning naming it, and the next one is used; when
    the voxel sizes are unusable too the file is refused.

    Raises
    ------
    ScanReadError
        No usable transform at all.
    """
    problems: list[str] = []
    chosen: dict[str, np.ndarray] = {}
    codes = {"sform": int(header["sform_code"]), "qform": int(header["qform_code"])}
    for name in ("sform", "qform"):
        if not codes[name]:
            continue
        try:
            matrix = header.get_sform() if name == "sform" else header.get_qform()
            why = _unusable(matrix)
        except (HeaderDataError, ValueError, np.linalg.LinAlgError) as error:
            why = f"cannot be computed ({one_line(error)})"
        if why:
            problems.append(f"the {name} (code {codes[name]}) {why}")
            codes[name] = 0
        else:
            chosen[name] = np.asarray(matrix, dtype=float)
    warnings: list[str] = []
    if "sform" in chosen or "qform" in chosen:
        name = "sform" if "sform" in chosen else "qform"
        affine = chosen[name]
        if problems:
            warnings.append(_sentence(f"{'; '.join(problems)}: the {name} is used instead."))
    else:
        base = np.asarray(header.get_base_affine(), dtype=float)
        if _unusable(base):
            problems.append("the voxel sizes (pixdim) are not usable numbers")
            raise ScanReadError(
                path,
                f"has no usable geometry: {'; '.join(problems)}.",
                "Export it again from its source, or repair its header (e.g. with fslorient).",
            )
        affine = base
        if problems:
            warnings.append(
                _sentence(
                    f"{'; '.join(problems)}: voxel sizes alone are used (orientation unknown; "
                    "nibabel's default, x flipped)."
                )
            )
        else:
            warnings.append(
                "The file has neither a qform nor an sform: its orientation is unknown; "
                "nibabel's default (voxel sizes only, x flipped) is used."
            )
    qform = None
    if "sform" in chosen and "qform" in chosen:
        if not np.allclose(chosen["qform"], chosen["sform"], atol=1e-5):
            qform = chosen["qform"]
    return ResolvedGeometry(affine, codes["qform"], codes["sform"], qform, warnings)
