"""The hostile-input corpus: broken and awkward inputs, and what each entry point must do.

Every case is built by a function of this module from files the test environment has
(``sample_scans/``, pydicom's test files, the default model's spec): nothing is
downloaded. Each case says, per entry point, what the user must see (:class:`Expect`):

* ``error``: exit status 2 with one ``medseg: error: ...`` message matching the given
  patterns (which name the file at fault);
* ``ok``: exit status 0, the output matching the given patterns (the stated warning),
  and the result's numbers right (``harness.check_numbers``: shape, slices read,
  series and layers, finite values and statistics, label volumes against the clean
  scan's);
* ``either``: one of the two, when the issue leaves the choice to the fixer (refuse, or
  go on with a warning); the numbers are checked when it goes on.

Whatever the expectation, every run is also checked for: no traceback, no hang (a
timeout per case), peak memory under the case's bound (1 GB for every tiny file), no
source file changed, no malicious payload run, nothing left in the output folder by an
error, and no raw control character or Python warning in the output
(``harness.judge``). Runs that fail today are listed in :data:`KNOWN`.

The entry points (:data:`ENTRIES`): ``info``, ``convert``, ``segment`` (default model,
or ``--model`` given by the case), ``report`` (the case's file as the label map,
``--image``, ``--reference`` or ``--names``, by its :attr:`Case.role`), ``reader`` (the
npe2 reader function, without a display), ``open`` (napari's ``viewer.open`` under a
display: the GUI subset) and ``probe`` (a Python-level check a command line cannot
make: two concurrent runs, an archive extraction); ``mesh``, ``prompt`` and ``finetune``
run only the cases that name them (``finetune``: the tiny parent model the case writes
into its folder, ``--device cpu``, one epoch of one step, the new model's library in the
output folder).

Build the corpus by hand (``run_case.py`` runs it)::

    python tests/hostile/corpus.py /tmp/corpus          # builds, writes manifest.json
    python tests/hostile/corpus.py --table              # the expectation table
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import sys
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SAMPLES = REPO / "sample_scans"

#: The entry points every case goes through unless it says otherwise.
DEFAULT_ENTRIES = ("info", "convert", "segment", "report", "reader")
#: Every entry point the runner knows (``open`` needs a display; ``probe`` is Python;
#: ``mesh``, ``prompt`` and ``finetune`` run only the cases that name them).
ENTRIES = (*DEFAULT_ENTRIES, "mesh", "prompt", "finetune", "open", "probe")

#: Peak resident memory allowed for a tiny hostile file (MB): the issue's 1 GB.
TINY_RSS_MB = 1024
#: Peak allowed for the cases built on the real sample CT (MB): a normal segmentation.
SCAN_RSS_MB = 3072
#: Seconds a tiny case may take in one entry point before it counts as a hang (the
#: imports are done before the first case; a tiny file takes well under a second).
DEFAULT_TIMEOUT_S = 10.0
#: The same for the cases built on the sample scans.
SCAN_TIMEOUT_S = 40.0
#: Memory bound and timeout of a case built on the sample scans (``case(..., **SCAN)``).
SCAN = {"max_rss_mb": SCAN_RSS_MB, "timeout_s": SCAN_TIMEOUT_S}

#: The file name part every message about a file of the case must contain.
NAME = "{name}"


# -- expectations --------------------------------------------------------------------------
@dataclass(frozen=True)
class Expect:
    """What one entry point must do with one case.

    Attributes
    ----------
    error : tuple of str or None
        Exit 2 (a typed error) is accepted when not None; every pattern (a regular
        expression, case-insensitive; ``{name}`` stands for the case's file name at
        fault) must match the output.
    ok : tuple of str or None
        Exit 0 is accepted when not None; every pattern must match the output (the
        stated warning), and :attr:`numbers` must hold.
    none : bool
        The napari reader may decline the path (``get_reader`` returns None, so napari
        tries other readers and says none could open it).
    numbers : mapping
        Checks of the result when it succeeds (the keys ``harness.check_numbers``
        knows: ``shape``, ``slices``, ``max_slices``, ``series``, ``layers``, ``voxels``,
        ``finite``, ``finite_range``, ``finite_stats``, ``excluded_min``, ``body_ml``,
        ``like`` with ``body_tol``/``organ_tol``, ``one_winner``).
    """

    error: tuple[str, ...] | None = None
    ok: tuple[str, ...] | None = None
    none: bool = False
    numbers: Mapping[str, object] = field(default_factory=dict)

    def __or__(self, other: Expect) -> Expect:
        return Expect(
            error=self.error if self.error is not None else other.error,
            ok=self.ok if self.ok is not None else other.ok,
            none=self.none or other.none,
            numbers={**self.numbers, **other.numbers},
        )

    def describe(self) -> str:
        """One line for the table: ``error /x/ | ok /y/ {numbers}``."""
        parts = []
        if self.error is not None:
            parts.append("error " + " ".join(f"/{p}/" for p in self.error))
        if self.ok is not None:
            ok = "ok " + " ".join(f"/{p}/" for p in self.ok)
            parts.append(ok + (f" {dict(self.numbers)}" if self.numbers else ""))
        if self.none:
            parts.append("declined")
        return " | ".join(parts)


def error(*patterns: str) -> Expect:
    """Exit 2 whose message matches every pattern (default: names the file)."""
    return Expect(error=patterns or (NAME,))


def ok(*patterns: str, **numbers: object) -> Expect:
    """Exit 0, output matching every pattern (the warning), numbers as given."""
    return Expect(ok=patterns, numbers=numbers)


def declined() -> Expect:
    """The napari reader says it cannot read this (``get_reader`` returns None)."""
    return Expect(none=True)


#: Words that say the scan holds non-finite voxels (NaN, inf).
NONFINITE = r"(nan|non-?finite|not finite|infinit|\binf\b)"
#: A warning (CLI ``warning:`` line, napari warning notification) saying so.
NONFINITE_WARNING = r"warning\b.*" + NONFINITE


# -- cases ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Built:
    """What a builder made in its case folder (paths relative to the folder).

    Attributes
    ----------
    input : str
        The file or folder given to the entry points.
    name : str
        The file name the messages must contain (default: the last part of ``input``).
    labels : str
        A label map on the input's grid (``report --image``); default: the sample's.
    extra : dict
        More placeholders for the case's own command lines.
    """

    input: str
    name: str = ""
    labels: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One hostile input and what every entry point must do with it.

    Attributes
    ----------
    name : str
        Its identifier (folder name, test id).
    build : callable
        ``build(folder, sources) -> Built``: makes the files in ``folder``.
    expect : dict
        Entry point -> :class:`Expect`.
    role : str
        How ``report`` uses the file: ``"image"`` (``--image``), ``"labels"``,
        ``"reference"`` (``--reference``) or ``"names"`` (``--names``).
    argv : dict
        Entry point -> command line (templates, see :func:`command_line`) replacing the
        default one.
    isolate : bool
        Run every entry point in its own process (hangs that a signal cannot break,
        memory that must be measured alone).
    timeout_s : float
        Seconds before the run counts as a hang.
    max_rss_mb : int
        Bound on the peak resident memory of the run.
    may_change : tuple of str
        Files of the case folder a run may replace (an output the case names on
        purpose); every other file there is a source and must stay byte-identical.
    doc : str
        What the case is.
    """

    name: str
    build: Callable[[Path, Sources], Built]
    expect: Mapping[str, Expect]
    role: str = "image"
    argv: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    isolate: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_rss_mb: int = TINY_RSS_MB
    may_change: tuple[str, ...] = ()
    doc: str = ""


CASES: dict[str, Case] = {}


def case(
    name: str,
    expect: Mapping[str, Expect],
    gui: bool = False,
    **options: object,
) -> Callable[[Callable[[Path, Sources], Built]], Callable[[Path, Sources], Built]]:
    """Register the decorated builder as the case ``name``.

    ``expect`` maps entry points to expectations; the key ``"*"`` stands for every
    entry point of :data:`DEFAULT_ENTRIES` not named otherwise, ``"open"`` for napari's
    ``viewer.open`` (the GUI subset); ``gui=True`` puts the case in that subset with the
    reader's expectation. The other options are :class:`Case` fields.
    """

    def register(build: Callable[[Path, Sources], Built]) -> Callable[[Path, Sources], Built]:
        expanded = dict(expect)
        if "*" in expanded:
            default = expanded.pop("*")
            for entry in DEFAULT_ENTRIES:
                expanded.setdefault(entry, default)
        if gui and "reader" in expanded:
            expanded.setdefault("open", expanded["reader"])
        doc = (build.__doc__ or "").strip().splitlines()[0] if build.__doc__ else ""
        CASES[name] = Case(name=name, build=build, expect=expanded, doc=doc, **options)
        return build

    return register


# -- what the builders use -----------------------------------------------------------------
@dataclass(frozen=True)
class Sources:
    """The files the corpus is made from, in ``<root>/_sources`` (:func:`make_sources`).

    Attributes
    ----------
    ct : Path
        The sample chest CT (int16 HU, 256 x 200 x 48).
    tumour : Path
        The sample tumour label map on the CT's grid (uint8, 221 voxels of 1).
    dicom : Path
        The sample CT as a JPEG 2000 DICOM series (48 files).
    small_ct : Path
        The sample CT reduced 2 x 2 in-plane (float32 HU, 128 x 100 x 48, uncompressed).
    small_tumour : Path
        The tumour on the grid of ``small_ct``.
    """

    ct: Path
    tumour: Path
    dicom: Path
    small_ct: Path
    small_tumour: Path

    @classmethod
    def at(cls, root: Path) -> Sources:
        """The source files of the ``_sources`` folder ``root``."""
        names = ("chest_ct.nii.gz", "chest_ct_tumour.nii.gz", "chest_ct_dicom", "small_ct.nii")
        return cls(*(root / name for name in names), root / "small_tumour.nii.gz")


def pydicom_file(name: str) -> Path:
    """One of pydicom's test files (installed with pydicom or pydicom-data)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(f"{name} is not among pydicom's test files")
    return Path(path)


def default_model_files() -> tuple[Path, Path]:
    """The default 3D model's spec JSON and weights, as installed with the package."""
    from napari_medseg.models.registry import DEFAULT_MODEL, default_specs

    _, spec_path = default_specs()[DEFAULT_MODEL]
    spec = json.loads(spec_path.read_text())
    return spec_path, spec_path.parent / spec["weights"]


def _nifti_bytes(array: np.ndarray, affine: np.ndarray, **header: object) -> bytes:
    """A single-file NIfTI-1 image as bytes (uncompressed)."""
    import nibabel as nib

    image = nib.Nifti1Image(array, affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    for key, value in header.items():
        image.header[key] = value
    return image.to_bytes()


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``array`` as NIfTI (``.nii`` or ``.nii.gz`` by name) with qform/sform code 1."""
    affine = np.diag([2.0, 2.0, 3.0, 1.0]) if affine is None else affine
    data = _nifti_bytes(array, affine)
    _write(path, data)
    return path


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=1, mtime=0)
    path.write_bytes(data)


def patched_nifti(path: Path, patches: Mapping[int, tuple[str, object]], tail: int = -1) -> Path:
    """A tiny valid NIfTI with header fields overwritten in place.

    Parameters
    ----------
    path : Path
        Where to write (``.nii`` or ``.nii.gz``).
    patches : mapping
        Byte offset in the 348-byte header -> (``struct`` format, value or tuple of values).
    tail : int
        Keep only this many bytes of voxel data (default: all).
    """
    raw = bytearray(_nifti_bytes(tiny_ct(), np.diag([2.0, 2.0, 3.0, 1.0])))
    for offset, (fmt, value) in patches.items():
        values = value if isinstance(value, tuple) else (value,)
        struct.pack_into("<" + fmt, raw, offset, *values)
    if tail >= 0:
        raw = raw[: 352 + tail]
    _write(path, bytes(raw))
    return path


# NIfTI-1 header offsets (bytes)
DIM, DATATYPE, BITPIX, PIXDIM, VOX_OFFSET, SCL_SLOPE = 40, 70, 72, 76, 108, 112
QFORM_CODE, SFORM_CODE, SROW_X = 252, 254, 280


def tiny_ct(shape: tuple[int, int, int] = (16, 16, 8)) -> np.ndarray:
    """A tiny int16 CT: a soft-tissue ellipse (40 HU) with a bright spot, air around."""
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    ci, cj = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    inside = ((i - ci) / (0.4 * shape[0])) ** 2 + ((j - cj) / (0.35 * shape[1])) ** 2 <= 1
    ct = np.where(inside, 40, -1000).astype(np.int16)
    ct[shape[0] // 2, shape[1] // 2, :] = 700
    return ct + (k % 2).astype(np.int16)


def tiny_labels(shape: tuple[int, int, int] = (16, 16, 8)) -> np.ndarray:
    """A label map for :func:`tiny_ct`: 1 inside the ellipse."""
    return (tiny_ct(shape) > -500).astype(np.uint8)


def tiny_pair(folder: Path, name: str = "scan.nii.gz") -> Built:
    """A tiny valid CT and its label map in ``folder``."""
    write_nifti(folder / name, tiny_ct())
    write_nifti(folder / "labels.nii.gz", tiny_labels())
    return Built(name, labels="labels.nii.gz")


def random_bytes(size: int, seed: int) -> bytes:
    """``size`` reproducible random bytes."""
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def small_series(
    folder: Path, sources: Sources, n: int = 12, *, series_number: int = 1, uid: str = ""
) -> list[Path]:
    """A small uncompressed CT series cut from the sample (64 x 64 x ``n``, 2.28 mm pixels).

    Files ``IM0001.dcm``... in slice order (increasing z); returns them in that order.
    """
    import nibabel as nib

    from napari_medseg.synthetic.dicom_series import write_dicom_series

    image = nib.load(sources.small_ct)
    array = np.asarray(image.dataobj)[32:96, 20:84, 10 : 10 + n].astype(np.int16)
    affine = image.affine.copy()
    affine[:3, 3] = image.affine[:3, :3] @ [32, 20, 10] + image.affine[:3, 3]
    names = [f"IM{k + 1:04d}.dcm" for k in range(n)]
    return write_dicom_series(
        array,
        affine,
        folder,
        series_uid=uid or None,
        series_number=series_number,
        series_description=f"hostile series {series_number}",
        file_names=names,
        rescale_intercept=-1024.0,
    )


def small_series_labels(folder: Path, sources: Sources, n: int = 12) -> str:
    """A label map on :func:`small_series`' grid (the body, > -500 HU); its name."""
    import nibabel as nib

    image = nib.load(sources.small_ct)
    array = np.asarray(image.dataobj)[32:96, 20:84, 10 : 10 + n]
    affine = image.affine.copy()
    affine[:3, 3] = image.affine[:3, :3] @ [32, 20, 10] + image.affine[:3, 3]
    write_nifti(folder / "labels.nii.gz", (array > -500).astype(np.uint8), affine)
    return "labels.nii.gz"


def float_ct(sources: Sources) -> tuple[np.ndarray, np.ndarray]:
    """The reduced sample CT as float32 HU and its affine."""
    import nibabel as nib

    image = nib.load(sources.small_ct)
    return np.asarray(image.dataobj, dtype=np.float32).copy(), image.affine


def spoiled_ct(folder: Path, src: Sources, where: tuple, value: float | None) -> Built:
    """The reduced float CT as ``ct.nii`` with ``array[where] = value`` (None: untouched)."""
    array, affine = float_ct(src)
    if value is not None:
        array[where] = value
    write_nifti(folder / "ct.nii", array, affine)
    return Built("ct.nii", labels="../_sources/small_tumour.nii.gz")


def dicom_set(path: Path, **values: object) -> None:
    """Set DICOM attributes of one file (``Keyword=value``; ``None`` deletes)."""
    import pydicom

    dataset = pydicom.dcmread(path)
    with warnings.catch_warnings():  # pydicom warns of invalid values: they are the point
        warnings.simplefilter("ignore")
        for keyword, value in values.items():
            if value is None:
                delattr(dataset, keyword)
            else:
                setattr(dataset, keyword, value)
        dataset.save_as(path)


def make_sources(root: Path) -> Sources:
    """Copy the sample scans into ``root`` and derive the reduced float CT from them."""
    import nibabel as nib

    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(SAMPLES / "chest_ct.nii.gz", root / "chest_ct.nii.gz")
    shutil.copy2(SAMPLES / "chest_ct_tumour.nii.gz", root / "chest_ct_tumour.nii.gz")
    shutil.copytree(SAMPLES / "chest_ct_dicom", root / "chest_ct_dicom")
    sources = Sources.at(root)
    ct = nib.load(sources.ct)
    hu = np.asarray(ct.dataobj, dtype=np.float32)
    small = hu.reshape(128, 2, 100, 2, 48).mean(axis=(1, 3), dtype=np.float32)
    affine = ct.affine.copy()
    affine[:3, :2] *= 2.0
    affine[:3, 3] = ct.affine[:3, :3] @ [0.5, 0.5, 0.0] + ct.affine[:3, 3]
    write_nifti(sources.small_ct, np.round(small).astype(np.float32), affine)
    tumour = np.asarray(nib.load(sources.tumour).dataobj)
    small_tumour = tumour.reshape(128, 2, 100, 2, 48).sum(axis=(1, 3)) >= 2
    write_nifti(sources.small_tumour, small_tumour.astype(np.uint8), affine)
    return sources


def _bytes_case(
    name: str, file: str, content: bytes, doc: str, expect: Mapping[str, Expect], **options
) -> None:
    """Register a case that is one file holding ``content``."""

    def build(folder: Path, src: Sources) -> Built:
        (folder / file).write_bytes(content)
        return Built(file)

    build.__doc__ = doc
    case(name, expect, **options)(build)


# == the cases ===============================================================================
# -- NIfTI files that are not what their name says ----------------------------------------


_bytes_case(
    "nii_empty_gz",
    "scan.nii.gz",
    b"",
    "A 0-byte .nii.gz (an interrupted copy).",
    {"*": error(), "reader": error()},
)
_bytes_case("nii_empty", "scan.nii", b"", "A 0-byte .nii.", {"*": error()})


@case("nii_truncated_gz", {"*": error()}, gui=True)
def _(folder: Path, src: Sources) -> Built:
    """The sample CT's .nii.gz cut in half."""
    data = src.ct.read_bytes()
    (folder / "scan.nii.gz").write_bytes(data[: len(data) // 2])
    return Built("scan.nii.gz")


@case("nii_truncated_data", {"*": error()})
def _(folder: Path, src: Sources) -> Built:
    """A tiny .nii whose voxel data stops half way."""
    patched_nifti(folder / "scan.nii", {}, tail=16 * 16 * 8)
    return Built("scan.nii")


@case("nii_truncated_header", {"*": error()})
def _(folder: Path, src: Sources) -> Built:
    """A .nii of 200 bytes: half a header."""
    data = _nifti_bytes(tiny_ct(), np.eye(4))
    (folder / "scan.nii").write_bytes(data[:200])
    return Built("scan.nii")


_bytes_case(
    "nii_random_gz",
    "scan.nii.gz",
    random_bytes(4096, 1),
    "4 kB of random bytes named .nii.gz.",
    {"*": error()},
)
_bytes_case(
    "nii_random",
    "scan.nii",
    random_bytes(4096, 2),
    "4 kB of random bytes named .nii.",
    {"*": error()},
)
_bytes_case(
    "nii_gzip_of_random",
    "scan.nii.gz",
    gzip.compress(random_bytes(4096, 3)),
    "A valid gzip stream of random bytes named .nii.gz.",
    {"*": error()},
)
# -- NIfTI headers that lie ----------------------------------------------------------------
_GEOMETRY = r"affine|geometry|orientation|singular|voxel size|spacing|direction"


@case(
    "nii_zero_affine",
    {"*": error(NAME, _GEOMETRY) | ok(_GEOMETRY), "report": error(NAME, _GEOMETRY)},
    gui=True,
)
def _(folder: Path, src: Sources) -> Built:
    """sform all zeros (code 1), no qform, zero voxel sizes."""
    patched_nifti(
        folder / "scan.nii.gz",
        {
            QFORM_CODE: ("h", 0),
            SROW_X: ("12f", (0.0,) * 12),
            PIXDIM + 4: ("3f", (0.0, 0.0, 0.0)),
        },
    )
    write_nifti(folder / "labels.nii.gz", tiny_labels())
    return Built("scan.nii.gz", labels="labels.nii.gz")


@case(
    "nii_singular_affine",
    {"*": error(NAME, _GEOMETRY) | ok(_GEOMETRY), "report": error(NAME, _GEOMETRY)},
)
def _(folder: Path, src: Sources) -> Built:
    """sform of rank 2 (the J and K columns equal), code 1; no qform."""
    srow = (2.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 3.0, 3.0, 0.0)
    patched_nifti(folder / "scan.nii.gz", {QFORM_CODE: ("h", 0), SROW_X: ("12f", srow)})
    write_nifti(folder / "labels.nii.gz", tiny_labels())
    return Built("scan.nii.gz", labels="labels.nii.gz")


@case("nii_nan_affine", {"*": error(NAME) | ok(_GEOMETRY), "report": error(NAME)})
def _(folder: Path, src: Sources) -> Built:
    """sform with NaN entries (code 1), no qform."""
    srow = (float("nan"), 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0, float("inf"))
    patched_nifti(folder / "scan.nii.gz", {QFORM_CODE: ("h", 0), SROW_X: ("12f", srow)})
    write_nifti(folder / "labels.nii.gz", tiny_labels())
    return Built("scan.nii.gz", labels="labels.nii.gz")


@case("nii_bogus_datatype", {"*": error(NAME, "datatype|data type|type")})
def _(folder: Path, src: Sources) -> Built:
    """datatype code 9999 (no such NIfTI type)."""
    patched_nifti(folder / "scan.nii.gz", {DATATYPE: ("h", 9999)})
    return Built("scan.nii.gz")


@case("nii_bad_dim0", {"*": error(NAME, "dim")})
def _(folder: Path, src: Sources) -> Built:
    """dim[0] = 9: more dimensions than NIfTI has."""
    patched_nifti(folder / "scan.nii.gz", {DIM: ("h", 9)})
    return Built("scan.nii.gz")


@case("nii_zero_dim0", {"*": error(NAME, "dim")})
def _(folder: Path, src: Sources) -> Built:
    """dim[0] = 0."""
    patched_nifti(folder / "scan.nii.gz", {DIM: ("h", 0)})
    return Built("scan.nii.gz")


@case("nii_negative_dim", {"*": error(NAME)})
def _(folder: Path, src: Sources) -> Built:
    """dim[1] = -16."""
    patched_nifti(folder / "scan.nii.gz", {DIM + 2: ("h", -16)})
    return Built("scan.nii.gz")


@case("nii_empty_volume", {"*": error(NAME)})
def _(folder: Path, src: Sources) -> Built:
    """dim[3] = 0: a volume without a voxel."""
    patched_nifti(folder / "scan.nii.gz", {DIM + 6: ("h", 0)})
    return Built("scan.nii.gz")


@case("nii_vox_offset_past_end", {"*": error(NAME)})
def _(folder: Path, src: Sources) -> Built:
    """vox_offset points 1 MB past the end of the file."""
    patched_nifti(folder / "scan.nii", {VOX_OFFSET: ("f", 1048576.0)})
    return Built("scan.nii")


@case("nii_5d", {"*": error(NAME, "dimension")})
def _(folder: Path, src: Sources) -> Built:
    """A 5D image (control: refused today)."""
    write_nifti(folder / "scan.nii.gz", np.zeros((4, 4, 4, 2, 2), np.int16))
    return Built("scan.nii.gz")


_HUGE = r"declare|size|larger|bytes|short|truncat|damaged|memory"


@case("nii_huge_declared_gz", {"*": error(NAME, _HUGE)}, gui=True, isolate=True)
def _(folder: Path, src: Sources) -> Built:
    """A 1 kB .nii.gz whose header declares 2048^3 int16 voxels (16 GB)."""
    patched_nifti(folder / "scan.nii.gz", {DIM: ("4h", (3, 2048, 2048, 2048))}, tail=256)
    return Built("scan.nii.gz")


@case("nii_huge_declared", {"*": error(NAME, _HUGE)})
def _(folder: Path, src: Sources) -> Built:
    """A .nii of 600 bytes whose header declares 2048^3 int16 voxels."""
    patched_nifti(folder / "scan.nii", {DIM: ("4h", (3, 2048, 2048, 2048))}, tail=256)
    return Built("scan.nii")


@case("nii_huge_4d", {"*": error(NAME)})
def _(folder: Path, src: Sources) -> Built:
    """A tiny .nii.gz declaring 16^3 x 30000 float64 voxels (1 GB) in 4D."""
    patched_nifti(
        folder / "scan.nii.gz",
        {DIM: ("5h", (4, 16, 16, 8, 30000)), DATATYPE: ("2h", (64, 64))},
        tail=256,
    )
    return Built("scan.nii.gz")


# -- non-finite voxels ---------------------------------------------------------------------
#: The same numbers as the clean float CT: body within 1 %, organs over 20 mL within 5 %.
SAME_AS_CLEAN = {"like": "ct_float_clean", "body_tol": 0.01, "organ_tol": 0.05}


def _nonfinite_expect(**numbers: object) -> dict[str, Expect]:
    """Refuse with the count, or go on with a warning and the clean result's numbers.

    ``report --image`` measures inside the labels only, where these scans are finite:
    it must give finite statistics (a warning is not required).
    """
    refuse = error(NAME, NONFINITE)
    return {
        "info": refuse | ok(NONFINITE_WARNING, finite_range=True),
        "convert": refuse | ok(NONFINITE_WARNING),
        "segment": refuse | ok(NONFINITE_WARNING, **SAME_AS_CLEAN, **numbers),
        "report": refuse | ok(finite_stats=True),
        "reader": refuse | ok(NONFINITE_WARNING),
    }


@case(
    "ct_float_clean",
    {
        "info": ok(shape=(128, 100, 48)),
        "convert": ok(shape=(128, 100, 48), finite=True),
        "segment": ok(shape=(128, 100, 48), body_ml=(2500.0, 9000.0)),
        "report": ok(finite_stats=True),
        "reader": ok(layers=1, voxels=128 * 100 * 48),
    },
    **SCAN,
)
def _(folder: Path, src: Sources) -> Built:
    """The reduced sample CT as float32: the baseline the non-finite cases compare with."""
    return spoiled_ct(folder, src, (), None)


@case("ct_float_one_nan", _nonfinite_expect(), gui=True, **SCAN)
def _(folder: Path, src: Sources) -> Built:
    """One NaN voxel in the air in front of the chest."""
    return spoiled_ct(folder, src, np.s_[64, 2, 24], np.nan)


@case("ct_float_nan_block", _nonfinite_expect(), **SCAN)
def _(folder: Path, src: Sources) -> Built:
    """A 6 x 3 x 8 block of NaN in the air in front of the chest."""
    return spoiled_ct(folder, src, np.s_[60:66, 0:3, 20:28], np.nan)


@case("ct_float_inf_block", _nonfinite_expect(), **SCAN)
def _(folder: Path, src: Sources) -> Built:
    """A 6 x 3 x 8 block of +inf in the air in front of the chest."""
    return spoiled_ct(folder, src, np.s_[60:66, 0:3, 20:28], np.inf)


@case("ct_float_neg_inf_voxel", _nonfinite_expect(), **SCAN)
def _(folder: Path, src: Sources) -> Built:
    """One -inf voxel in the air."""
    return spoiled_ct(folder, src, np.s_[3, 3, 3], -np.inf)


@case(
    "ct_float_nan_in_tumour",
    {
        "report": error(NAME, NONFINITE) | ok(finite_stats=True, excluded_min=1),
        "reader": error(NAME, NONFINITE) | ok(NONFINITE_WARNING),
    },
    **SCAN,
)
def _(folder: Path, src: Sources) -> Built:
    """One NaN voxel inside the tumour: its HU statistics must not be NaN silently."""
    import nibabel as nib

    tumour = np.asarray(nib.load(src.small_tumour).dataobj)
    return spoiled_ct(folder, src, tuple(np.argwhere(tumour == 1)[0]), np.nan)


@case(
    "ct_all_nan",
    {
        "*": error(NAME, NONFINITE) | ok(NONFINITE_WARNING),
        "report": error(NAME, NONFINITE) | ok(r"(warning|note)\b.*" + NONFINITE),
    },
)
def _(folder: Path, src: Sources) -> Built:
    """A tiny float32 CT that is NaN everywhere."""
    write_nifti(folder / "scan.nii.gz", np.full((16, 16, 8), np.nan, np.float32))
    write_nifti(folder / "labels.nii.gz", tiny_labels())
    return Built("scan.nii.gz", labels="labels.nii.gz")


_OVERFLOW = r"(nan|non-?finite|not finite|infinit|\binf\b|scl_slope|scale|overflow)"


@case(
    "ct_scl_slope_overflow",
    {
        "*": error(NAME, _OVERFLOW) | ok(r"(warning|note)\b.*" + _OVERFLOW),
    },
)
def _(folder: Path, src: Sources) -> Built:
    """A tiny int16 CT with scl_slope = 1e38: scaled values overflow float32 to inf."""
    patched_nifti(folder / "scan.nii.gz", {SCL_SLOPE: ("f", 1e38)})
    write_nifti(folder / "labels.nii.gz", tiny_labels())
    return Built("scan.nii.gz", labels="labels.nii.gz")


@case(
    "labels_float_nan",
    {
        "info": error(NAME, NONFINITE) | ok(NONFINITE_WARNING),
        "convert": error(NAME, NONFINITE) | ok(NONFINITE_WARNING),
        "report": error(NAME, NONFINITE),
        "reader": error(NAME, NONFINITE) | ok(NONFINITE_WARNING),
        "open": error(NAME, NONFINITE) | ok(NONFINITE_WARNING),
    },
    role="labels",
)
def _(folder: Path, src: Sources) -> Built:
    """A float32 label map (the tiny CT's body) with NaN voxels."""
    labels = tiny_labels().astype(np.float32)
    labels[0, 0, :] = np.nan
    write_nifti(folder / "seg.nii.gz", labels)
    return Built("seg.nii.gz")


# -- DICOM files ---------------------------------------------------------------------------
#: ``info`` of a DICOM file lists its header without decoding the pixels: it may list
#: a file whose pixel data is broken (a warning is welcome, not required).
_LISTED = error() | ok()


_bytes_case("dcm_empty", "IM0001.dcm", b"", "A 0-byte .dcm.", {"*": error()})
_bytes_case(
    "dcm_random",
    "IM0001.dcm",
    random_bytes(4096, 4),
    "4 kB of random bytes named .dcm.",
    {"*": error()},
)
_bytes_case(
    "dcm_preamble_then_garbage",
    "IM0001.dcm",
    b"\0" * 128 + b"DICM" + random_bytes(2048, 5),
    "128 zero bytes, ``DICM``, then random bytes: a header that does not parse.",
    {"*": error()},
)


@case("dcm_truncated_pixels", {"*": error(), "info": _LISTED})
def _(folder: Path, src: Sources) -> Built:
    """pydicom's MR_truncated.dcm: pixel data shorter than Rows x Columns."""
    shutil.copy(pydicom_file("MR_truncated.dcm"), folder / "MR_truncated.dcm")
    return Built("MR_truncated.dcm")


@case("dcm_bad_transfer_syntax", {"*": error(NAME, "transfer syntax")}, gui=True)
def _(folder: Path, src: Sources) -> Built:
    """pydicom's CT_small.dcm with a Transfer Syntax UID that is not a transfer syntax."""
    import pydicom

    dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    dataset.file_meta.TransferSyntaxUID = "1.2.3.4.5.6"
    dataset.save_as(folder / "CT_small.dcm", enforce_file_format=False)
    return Built("CT_small.dcm")


@case("dcm_missing_transfer_syntax", {"*": error()})
def _(folder: Path, src: Sources) -> Built:
    """pydicom's meta_missing_tsyntax.dcm (no Transfer Syntax UID, no image)."""
    shutil.copy(pydicom_file("meta_missing_tsyntax.dcm"), folder / "meta.dcm")
    return Built("meta.dcm")


@case("dcm_corrupt_jpeg2000", {"*": error(), "info": _LISTED})
def _(folder: Path, src: Sources) -> Built:
    """pydicom's JPEG2000.dcm with its codestream header overwritten."""
    data = bytearray(pydicom_file("JPEG2000.dcm").read_bytes())
    start = data.find(b"\xff\x4f\xff\x51")
    data[start + 4 : start + 44] = random_bytes(40, 6)
    (folder / "JPEG2000.dcm").write_bytes(bytes(data))
    return Built("JPEG2000.dcm")


@case("dcm_rtstruct_file", {"*": error(NAME, "image|RT|structure")})
def _(folder: Path, src: Sources) -> Built:
    """pydicom's rtstruct.dcm given as a scan (not an image)."""
    shutil.copy(pydicom_file("rtstruct.dcm"), folder / "rtstruct.dcm")
    return Built("rtstruct.dcm")


@case("dcm_huge_rows", {"*": error(), "info": _LISTED})
def _(folder: Path, src: Sources) -> Built:
    """CT_small.dcm declaring 65535 x 65535 pixels over its 128 x 128 pixel data."""
    import pydicom

    dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    dataset.Rows = 65535
    dataset.Columns = 65535
    dataset.save_as(folder / "CT_small.dcm")
    return Built("CT_small.dcm")


@case("dcm_huge_frames", {"*": error(), "info": _LISTED})
def _(folder: Path, src: Sources) -> Built:
    """CT_small.dcm declaring 2^31 - 1 frames over one frame of pixel data."""
    import pydicom

    dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    dataset.NumberOfFrames = 2**31 - 1
    dataset.save_as(folder / "CT_small.dcm")
    return Built("CT_small.dcm")


def _cut(path: Path, fraction: float) -> bytes:
    data = path.read_bytes()
    return data[: int(len(data) * fraction)]


def _file_case(
    name: str, source: Callable[[], Path], doc: str, expect: Mapping[str, Expect], cut: float = 1
) -> None:
    """Register a case that is a copy of an installed test file (``cut``: the fraction kept)."""

    def build(folder: Path, src: Sources) -> Built:
        path = source()
        (folder / path.name).write_bytes(_cut(path, cut))
        return Built(path.name)

    build.__doc__ = doc
    case(name, expect)(build)


#: Either answer, as long as it is one clear message or a volume (no policy is stated).
_ANY = error(NAME) | ok()

_file_case(
    "dcm_rle_truncated",
    lambda: pydicom_file("MR_small_RLE.dcm"),
    "pydicom's MR_small_RLE.dcm cut at 80 % (RLE segments end early).",
    {"*": error(NAME), "info": _LISTED},
    cut=0.8,
)
_file_case(
    "dcm_deflate_truncated",
    lambda: pydicom_file("image_dfl.dcm"),
    "pydicom's image_dfl.dcm (Deflated Explicit VR) cut at 70 %.",
    {"*": error(NAME)},
    cut=0.7,
)
_file_case(
    "dcm_bad_vr",
    lambda: pydicom_file("badVR.dcm"),
    "pydicom's badVR.dcm (an element with an invalid VR).",
    {"*": _ANY},
)
_file_case(
    "dcm_no_meta_big_endian",
    lambda: pydicom_file("ExplVR_BigEndNoMeta.dcm"),
    "pydicom's ExplVR_BigEndNoMeta.dcm: big endian, no file meta, no preamble.",
    {"*": _ANY},
)


def nibabel_file(name: str) -> Path:
    """One of nibabel's test files (``nibabel/tests/data`` of the installed package)."""
    import nibabel

    path = Path(nibabel.__file__).parent / "tests" / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} is not among nibabel's test files")
    return path


_file_case(
    "nib_nifti2",
    lambda: nibabel_file("example_nifti2.nii.gz"),
    "nibabel's example_nifti2.nii.gz: NIfTI-2.",
    {"*": _ANY},
)
_file_case(
    "nib_cifti_dconn",
    lambda: nibabel_file("row_major.dconn.nii"),
    "nibabel's row_major.dconn.nii: a CIFTI-2 connectivity matrix, not a volume.",
    {"*": error(NAME)},
)
_file_case(
    "nib_nifti1_header_alone",
    lambda: nibabel_file("nifti1.hdr"),
    "nibabel's nifti1.hdr without its .img.",
    {"*": error(NAME), "reader": error(NAME) | declined()},
)
_file_case(
    "nib_analyze_header_alone",
    lambda: nibabel_file("analyze.hdr"),
    "nibabel's analyze.hdr (Analyze 7.5) without its .img.",
    {"*": error(NAME), "reader": error(NAME) | declined()},
)
_file_case(
    "nib_example_4d",
    lambda: nibabel_file("example4d.nii.gz"),
    "nibabel's example4d.nii.gz: a 4D series (needs a volume chosen).",
    {"*": error(NAME, "4D|volume") | ok(), "segment": error(NAME, "4D|volume")},
)


@case("nib_mgz_named_nifti", {"*": error(NAME)})
def _(folder: Path, src: Sources) -> Built:
    """nibabel's test.mgz (FreeSurfer MGH, gzipped) renamed scan.nii.gz."""
    shutil.copy(nibabel_file("test.mgz"), folder / "scan.nii.gz")
    return Built("scan.nii.gz")


@case("nib_dicom_named_nifti", {"*": error(NAME)})
def _(folder: Path, src: Sources) -> Built:
    """nibabel's 0.dcm (a Siemens DICOM) renamed scan.nii."""
    shutil.copy(nibabel_file("0.dcm"), folder / "scan.nii")
    return Built("scan.nii")


# -- DICOM folders -------------------------------------------------------------------------
_SLICE = r"{name}"  # the slice file at fault, by name


def _series_expect(listed: int, volume: int) -> dict[str, Expect]:
    """Refuse naming the bad slice, or read the rest with a warning naming it.

    ``listed``: the slices ``info`` lists (the readable files); ``volume``: the slices of
    the volume read (with the reader's ``allow_gaps``, a missing inner slice is filled).
    """
    either = error(_SLICE) | ok(_SLICE, slices=volume)
    return {
        "info": error(_SLICE) | ok(_SLICE, slices=listed),
        "convert": either,
        "segment": either,
        "report": error(_SLICE) | ok(_SLICE),
        "reader": either,
    }


def _series_case(folder: Path, src: Sources, bad: int, content: bytes | None) -> Built:
    files = small_series(folder / "series", src)
    labels = small_series_labels(folder, src)
    target = files[bad]
    if content is not None:
        target.write_bytes(content)
    return Built("series", name=target.name, labels=labels)


@case("series_end_slice_empty", _series_expect(11, 11), gui=True)
def _(folder: Path, src: Sources) -> Built:
    """12-slice series whose last slice is a 0-byte file (an interrupted copy)."""
    return _series_case(folder, src, -1, b"")


@case("series_first_slice_empty", _series_expect(11, 11))
def _(folder: Path, src: Sources) -> Built:
    """12-slice series whose first slice is a 0-byte file."""
    return _series_case(folder, src, 0, b"")


@case("series_end_slice_random", _series_expect(11, 11))
def _(folder: Path, src: Sources) -> Built:
    """12-slice series whose last slice is random bytes."""
    return _series_case(folder, src, -1, random_bytes(3000, 7))


@case("series_end_slice_bad_header", _series_expect(11, 11))
def _(folder: Path, src: Sources) -> Built:
    """12-slice series whose last slice has the DICM marker and then garbage."""
    return _series_case(folder, src, -1, b"\0" * 128 + b"DICM" + random_bytes(3000, 8))


@case("series_inner_slice_empty", _series_expect(11, 12))
def _(folder: Path, src: Sources) -> Built:
    """12-slice series whose 6th slice is a 0-byte file."""
    return _series_case(folder, src, 5, b"")


@case("series_inner_slice_bad_ts", _series_expect(11, 12))
def _(folder: Path, src: Sources) -> Built:
    """12-slice series; the 6th slice's Transfer Syntax UID is not a transfer syntax."""
    import pydicom

    built = _series_case(folder, src, 5, None)
    path = folder / "series" / built.name
    dataset = pydicom.dcmread(path)
    dataset.file_meta.TransferSyntaxUID = "1.2.3.4.5.6"
    dataset.save_as(path, enforce_file_format=False)
    return built


@case(
    "series_fifo",
    {"*": error(NAME) | ok(slices=12), "report": error(NAME) | ok()},
    isolate=True,
    timeout_s=20.0,
)
def _(folder: Path, src: Sources) -> Built:
    """12-slice series with a named pipe (FIFO) among its files."""
    built = _series_case(folder, src, 0, None)
    os.mkfifo(folder / "series" / "IM0013.dcm")
    return replace(built, name="IM0013.dcm")


@case(
    "series_symlink_loop",
    {"*": error(NAME) | ok(slices=12), "report": error(NAME) | ok()},
)
def _(folder: Path, src: Sources) -> Built:
    """12-slice series with a folder symlink to itself and a pair of looping links."""
    built = _series_case(folder, src, 0, None)
    os.symlink(".", folder / "series" / "again")
    os.symlink("b.dcm", folder / "series" / "a.dcm")
    os.symlink("a.dcm", folder / "series" / "b.dcm")
    return replace(built, name="a.dcm")


@case(
    "series_corrupt_jpeg2000_slice",
    {
        "*": error(r"IM00024") | ok(r"IM00024", slices=47),
        "info": _LISTED | ok(slices=48),
        "report": error("IM00024|grid") | ok("IM00024"),
    },
    **SCAN,
)
def _(folder: Path, src: Sources) -> Built:
    """The sample's JPEG 2000 series with the codestream header of slice 24 overwritten."""
    shutil.copytree(src.dicom, folder / "series")
    path = folder / "series" / "IM00024.dcm"
    data = bytearray(path.read_bytes())
    start = data.find(b"\xff\x4f\xff\x51")
    data[start + 4 : start + 44] = random_bytes(40, 9)
    path.write_bytes(bytes(data))
    return Built("series", name="IM00024.dcm", labels="../_sources/chest_ct_tumour.nii.gz")


_FAR = r"gap|spacing|missing|apart|far|distance|mm"


@case(
    "series_slice_202mm_away",
    {
        "info": ok(),
        "convert": error(NAME, _FAR) | ok(_FAR, max_slices=4),
        "segment": error(NAME, _FAR) | ok(_FAR, max_slices=4),
        "report": error(NAME) | ok(_FAR),
        "reader": error(NAME, _FAR) | ok(_FAR, max_slices=4),
        "open": error(NAME, _FAR) | ok(_FAR, max_slices=4),
    },
)
def _(folder: Path, src: Sources) -> Built:
    """A 4-slice series (5 mm apart) whose last slice lies 202 mm beyond the others."""
    files = small_series(folder / "series", src, n=4)
    import pydicom

    last = pydicom.dcmread(files[-1])
    position = [float(v) for v in last.ImagePositionPatient]
    position[2] += 202.0 - 5.0
    dicom_set(files[-1], ImagePositionPatient=position, SliceLocation=position[2])
    labels = small_series_labels(folder, src, n=4)
    return Built("series", labels=labels)


@case(
    "series_duplicate_slice",
    {
        "*": error(NAME) | ok(slices=12),
        "info": ok(r"IM0006"),
        "report": error(NAME) | ok(),
    },
)
def _(folder: Path, src: Sources) -> Built:
    """12-slice series with one file copied under another name (same SOP instance)."""
    built = _series_case(folder, src, 0, None)
    shutil.copy(folder / "series" / "IM0006.dcm", folder / "series" / "copy of IM0006.dcm")
    return replace(built, name="IM0006")


@case(
    "series_conflicting_duplicate",
    {
        "*": error(r"duplicate|same position|IM0006") | ok(r"duplicate|same position"),
        "report": error(r"duplicate|same position|IM0006|grid") | ok(r"duplicate|same position"),
    },
)
def _(folder: Path, src: Sources) -> Built:
    """12-slice series with a second, different image at slice 6's position."""
    import pydicom
    from pydicom.uid import generate_uid

    built = _series_case(folder, src, 0, None)
    dataset = pydicom.dcmread(folder / "series" / "IM0006.dcm")
    pixels = dataset.pixel_array
    dataset.PixelData = (pixels[::-1] + 7).astype(pixels.dtype).tobytes()
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.save_as(folder / "series" / "IM0006b.dcm")
    return replace(built, name="IM0006")


def _spoiled_series(folder: Path, src: Sources, which: slice, **values: object) -> Built:
    """The small series with DICOM attributes of the files ``which`` set (``dicom_set``)."""
    files = small_series(folder / "series", src)
    for path in files[which]:
        dicom_set(path, **values)
    return Built("series", name=files[which][0].name, labels=small_series_labels(folder, src))


@case(
    "series_rescale_slope_nan",
    {
        "*": error(r"IM0006|series", NONFINITE + "|slope|rescale")
        | ok(r"warning\b.*(" + NONFINITE[1:-1] + "|slope|rescale)"),
    },
)
def _(folder: Path, src: Sources) -> Built:
    """12-slice series whose 6th slice has RescaleSlope 'NaN' (HU would all be NaN)."""
    return _spoiled_series(folder, src, slice(5, 6), RescaleSlope="NaN")


@case(
    "series_zero_pixel_spacing",
    {"*": error(r"series|IM0001", r"spacing"), "info": error(r"spacing") | ok(r"warning.*spacing")},
)
def _(folder: Path, src: Sources) -> Built:
    """12-slice series with PixelSpacing 0\\0 in every file (no voxel size)."""
    return _spoiled_series(folder, src, slice(None), PixelSpacing=[0, 0])


@case(
    "series_zero_orientation",
    {"*": error(r"series|IM0001", r"orientation") | ok(r"warning\b.*orientation")},
)
def _(folder: Path, src: Sources) -> Built:
    """12-slice series with ImageOrientationPatient all zeros in every file."""
    return _spoiled_series(folder, src, slice(None), ImageOrientationPatient=[0] * 6)


@case(
    "series_odd_slice_shape",
    {
        "info": ok(r"2 series|IM0006") | error(r"IM0006|series"),
        "convert": error(r"IM0006|series") | ok(r"IM0006", slices=11),
        "segment": error(r"IM0006|series") | ok(r"IM0006", slices=11),
        "report": error(r"IM0006|series|grid"),
        "reader": error(r"IM0006|series") | ok(r"IM0006|series"),
    },
)
def _(folder: Path, src: Sources) -> Built:
    """12-slice series whose 6th slice is 32 x 32 pixels instead of 64 x 64."""
    import pydicom

    built = _spoiled_series(folder, src, slice(5, 6))
    path = folder / "series" / built.name
    dataset = pydicom.dcmread(path)
    dataset.PixelData = dataset.pixel_array[::2, ::2].copy().tobytes()
    dataset.Rows = dataset.Columns = 32
    dataset.save_as(path)
    return built


@case(
    "series_mixed",
    {
        "info": ok(r"2 series", series=2),
        "convert": error(NAME, "series"),
        "segment": error(NAME, "series"),
        "report": error(NAME, "series"),
        "reader": ok(layers=2),
    },
)
def _(folder: Path, src: Sources) -> Built:
    """Two series (different SeriesInstanceUID) in one folder."""
    small_series(folder / "series", src, series_number=1)
    more = small_series(folder / "other", src, n=6, series_number=2)
    for path in more:
        path.rename(folder / "series" / f"S2_{path.name}")
    (folder / "other").rmdir()
    return Built("series", labels=small_series_labels(folder, src))


@case(
    "dicomdir_outside",
    {
        "*": error(NAME) | ok(r"outside", slices=8),
        "report": error(NAME) | ok(r"outside"),
    },
)
def _(folder: Path, src: Sources) -> Built:
    """A DICOMDIR whose records point outside its folder (``../outside/...``) as well."""
    import pydicom
    from pydicom.fileset import FileSet

    files = small_series(folder / "build", src)
    fileset = FileSet()
    for path in files:
        fileset.add(pydicom.dcmread(path))
    fileset.write(folder / "media")
    shutil.rmtree(folder / "build")
    dicomdir = pydicom.dcmread(folder / "media" / "DICOMDIR")
    outside = folder / "outside"
    outside.mkdir()
    images = [r for r in dicomdir.DirectoryRecordSequence if r.get("ReferencedFileID")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n, record in enumerate(images[:3]):
            target = Path(folder / "media", *record.ReferencedFileID)
            name = f"X{n}"
            shutil.copy(target, outside / name)
            record.ReferencedFileID = ["..", "outside", name]
    with warnings.catch_warnings():  # pydicom: '..' is not a valid CS value (that is the point)
        warnings.simplefilter("ignore")
        images[3].ReferencedFileID = ["..", "..", "..", "..", "..", "..", "etc", "passwd"]
        dicomdir.save_as(folder / "media" / "DICOMDIR")
    return Built("media/DICOMDIR", name="DICOMDIR", labels=small_series_labels(folder, src))


_bytes_case(
    "dicomdir_random",
    "DICOMDIR",
    random_bytes(2048, 10),
    "Random bytes named DICOMDIR.",
    {"*": error()},
)


@case(
    "folder_empty",
    {"*": error(NAME), "reader": declined() | error(NAME), "open": error(NAME) | declined()},
)
def _(folder: Path, src: Sources) -> Built:
    """An empty folder."""
    (folder / "empty").mkdir()
    return Built("empty")


@case("folder_not_dicom", {"*": error(NAME), "reader": declined() | error(NAME)})
def _(folder: Path, src: Sources) -> Built:
    """A folder of text and PNG files."""
    (folder / "stuff").mkdir()
    (folder / "stuff" / "notes.txt").write_text("not a scan\n")
    (folder / "stuff" / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + random_bytes(64, 11))
    return Built("stuff")


@case("folder_non_image_dicom", {"*": error(NAME, "image|no .*series")})
def _(folder: Path, src: Sources) -> Built:
    """A folder with only non-image DICOM: RT structure set, RT plan, SR."""
    (folder / "objects").mkdir()
    for name in ("rtstruct.dcm", "rtplan.dcm", "test-SR.dcm"):
        shutil.copy(pydicom_file(name), folder / "objects" / name)
    return Built("objects")


@case(
    "folder_only_broken_dicom",
    {"*": error(NAME), "reader": error(NAME) | declined()},
)
def _(folder: Path, src: Sources) -> Built:
    """A folder of three .dcm files: 0 bytes, random, a header that does not parse."""
    (folder / "broken").mkdir()
    (folder / "broken" / "a.dcm").write_bytes(b"")
    (folder / "broken" / "b.dcm").write_bytes(random_bytes(999, 12))
    (folder / "broken" / "c.dcm").write_bytes(b"\0" * 128 + b"DICM" + random_bytes(999, 13))
    return Built("broken")


# -- names and paths -----------------------------------------------------------------------
@case("path_missing", {"*": error()})
def _(folder: Path, src: Sources) -> Built:
    """A path that does not exist."""
    return Built("no such scan.nii.gz")


@case("path_symlink_loop", {"*": error(), "reader": error() | declined()})
def _(folder: Path, src: Sources) -> Built:
    """A .nii.gz that is a symlink to itself."""
    os.symlink("scan.nii.gz", folder / "scan.nii.gz")
    return Built("scan.nii.gz")


@case(
    "path_fifo",
    {"*": error(), "reader": error() | declined()},
    gui=True,
)
def _(folder: Path, src: Sources) -> Built:
    """A named pipe (FIFO) called scan.nii.gz: opening it blocks."""
    os.mkfifo(folder / "scan.nii.gz")
    return Built("scan.nii.gz")


@case("path_dev_zero", {"*": error(), "reader": error() | declined()})
def _(folder: Path, src: Sources) -> Built:
    """scan.nii: a symlink to /dev/zero (endless zeros)."""
    os.symlink("/dev/zero", folder / "scan.nii")
    return Built("scan.nii")


_CONTROL_NAME = "evil\x1b[31mred\x07\nline.nii.gz"


@case("name_control_chars_broken", {"*": error("evil")})
def _(folder: Path, src: Sources) -> Built:
    """A truncated .nii.gz whose name holds ESC, BEL and a newline."""
    data = src.ct.read_bytes()
    (folder / _CONTROL_NAME).write_bytes(data[:5000])
    return Built(_CONTROL_NAME, name="evil")


@case(
    "name_control_chars_valid",
    {"*": ok(), "report": ok(), "reader": ok(layers=1)},
)
def _(folder: Path, src: Sources) -> Built:
    """A valid tiny CT whose name holds ESC, BEL and a newline."""
    return tiny_pair(folder, _CONTROL_NAME)


_NON_UTF8 = os.fsdecode(b"scan-\xff\xfe-latin1-\xe9.nii.gz")


@case("name_non_utf8_broken", {"*": error("scan-")})
def _(folder: Path, src: Sources) -> Built:
    """A 0-byte .nii.gz whose name is not UTF-8."""
    (folder / _NON_UTF8).write_bytes(b"")
    return Built(_NON_UTF8, name="scan-")


@case("name_non_utf8_valid", {"*": ok(), "reader": ok(layers=1)})
def _(folder: Path, src: Sources) -> Built:
    """A valid tiny CT whose name is not UTF-8."""
    return tiny_pair(folder, _NON_UTF8)


@case(
    "name_non_utf8_slice",
    _series_expect(11, 11),
)
def _(folder: Path, src: Sources) -> Built:
    """12-slice series whose unreadable last slice has a non-UTF-8 name."""
    built = _series_case(folder, src, -1, b"")
    bad = folder / "series" / built.name
    bad.rename(folder / "series" / os.fsdecode(b"IM\xff0012.dcm"))
    return replace(built, name="IM")


# -- outputs -------------------------------------------------------------------------------
_SOURCE = r"source|input|same file|refus|overwrit|itself"
_OUT = ("convert", "segment")


def _out_case(
    name: str, spelling: str, doc: str, overwrite: bool = False, either: bool = False
) -> None:
    flag = ("--overwrite",) if overwrite else ()
    expect = error(_SOURCE) | ok() if either else error(_SOURCE)

    def build(folder: Path, src: Sources) -> Built:
        built = tiny_pair(folder)
        os.symlink("scan.nii.gz", folder / "link.nii.gz")
        os.link(folder / "scan.nii.gz", folder / "hard.nii.gz")
        (folder / "sub").mkdir()
        return built

    build.__doc__ = doc
    case(
        name,
        {"convert": expect, "segment": expect},
        argv={
            "convert": ("convert", "{input}", spelling, *flag),
            "segment": ("segment", "{input}", "-o", spelling, *flag),
        },
        may_change=(Path(spelling).name,) if either else (),
    )(build)


_out_case("out_is_input", "{case}/scan.nii.gz", "Output = input, same spelling.")
_out_case(
    "out_is_input_overwrite",
    "{case}/scan.nii.gz",
    "Output = input with --overwrite.",
    overwrite=True,
)
_out_case("out_is_input_dotdot", "{case}/sub/../scan.nii.gz", "Output = input via sub/..")
_out_case("out_is_input_dot", "{case}/./scan.nii.gz", "Output = input via ./", overwrite=True)
_out_case(
    "out_is_input_double_slash", "{case}//scan.nii.gz", "Output = input via //", overwrite=True
)
_out_case(
    "out_is_input_symlink",
    "{case}/link.nii.gz",
    "Output is a symlink to the input.",
    overwrite=True,
)
_out_case(
    "out_is_input_hardlink",
    "{case}/hard.nii.gz",
    "Output is a hard link to the input (--overwrite): refused, or replaced by a new file "
    "while the input keeps its bytes.",
    overwrite=True,
    either=True,
)


@case(
    "out_dicom_seg_onto_slice",
    {"segment": error(_SOURCE)},
    argv={
        "segment": (
            "segment",
            "{input}",
            "-o",
            "{out}/labels.nii.gz",
            "--dicom-seg",
            "{case}/series/IM0003.dcm",
            "--overwrite",
        )
    },
)
def _(folder: Path, src: Sources) -> Built:
    """segment a DICOM series with --dicom-seg naming one of its slices, --overwrite."""
    small_series(folder / "series", src)
    return Built("series", name="IM0003.dcm")


@case(
    "out_is_dicom_folder",
    {
        "convert": error("series", _SOURCE + "|folder|nii"),
        "segment": error("series", _SOURCE + "|folder|nii"),
    },
    argv={
        "convert": ("convert", "{input}", "{case}/series/", "--overwrite"),
        "segment": ("segment", "{input}", "-o", "{case}/series/IM0001.dcm", "--overwrite"),
    },
)
def _(folder: Path, src: Sources) -> Built:
    """A DICOM series converted onto its own folder, segmented onto its first slice."""
    small_series(folder / "series", src)
    return Built("series")


@case(
    "out_probabilities_onto_input",
    {"segment": error(_SOURCE)},
    argv={
        "segment": (
            "segment",
            "{input}",
            "-o",
            "{out}/labels.nii.gz",
            "--probabilities",
            "{case}/scan.nii.gz",
            "--overwrite",
        )
    },
)
def _(folder: Path, src: Sources) -> Built:
    """segment with --probabilities naming the input scan, --overwrite."""
    return tiny_pair(folder)


@case(
    "out_sidecar_onto_model_spec",
    {"segment": error(r"spec\.json", _SOURCE)},
    argv={
        "segment": (
            "segment",
            "{input}",
            "--model",
            "{case}/spec.json",
            "-o",
            "{case}/spec.nii.gz",
            "--overwrite",
        )
    },
)
def _(folder: Path, src: Sources) -> Built:
    """-o spec.nii.gz --overwrite: the label sidecar spec.json would replace the model spec."""
    spec_path, weights = default_model_files()
    spec = json.loads(spec_path.read_text())
    spec["weights"] = str(weights)
    spec.pop("weights_sha256", None)
    spec.pop("model_card", None)
    (folder / "spec.json").write_text(json.dumps(spec, indent=2))
    return tiny_pair(folder)


@case(
    "out_missing_folder",
    {"convert": error("missing") | ok(), "segment": error("missing") | ok()},
    argv={
        "convert": ("convert", "{input}", "{out}/missing/deeper/out.nii.gz"),
        "segment": ("segment", "{input}", "-o", "{out}/missing/deeper/out.nii.gz"),
    },
)
def _(folder: Path, src: Sources) -> Built:
    """Output into a folder that does not exist."""
    return tiny_pair(folder)


@case(
    "out_onto_folder",
    {
        "convert": error("out.nii.gz", "folder|directory"),
        "segment": error("out.nii.gz", "folder|directory"),
    },
    argv={
        "convert": ("convert", "{input}", "{case}/out.nii.gz", "--overwrite"),
        "segment": ("segment", "{input}", "-o", "{case}/out.nii.gz", "--overwrite"),
    },
)
def _(folder: Path, src: Sources) -> Built:
    """Output named like a file but an existing folder (with --overwrite)."""
    (folder / "out.nii.gz").mkdir()
    (folder / "out.nii.gz" / "keep.txt").write_text("keep me\n")
    return tiny_pair(folder)


@case(
    "out_readonly_folder",
    {
        "convert": error("out.nii.gz|read-only|permission|denied|writ"),
        "segment": error("out.nii.gz|read-only|permission|denied|writ"),
        "report": error("out.json|read-only|permission|denied|writ"),
    },
    argv={
        "convert": ("convert", "{input}", "{readonly}/out.nii.gz"),
        "segment": ("segment", "{input}", "-o", "{readonly}/out.nii.gz"),
        "report": ("report", "{labels}", "--image", "{input}", "-o", "{readonly}/out.json"),
    },
)
def _(folder: Path, src: Sources) -> Built:
    """Output into a folder that cannot be written (/sys when run as root)."""
    built = tiny_pair(folder)
    readonly = folder / "readonly"
    readonly.mkdir()
    if os.geteuid() == 0:  # root writes anywhere a mode allows nothing: use sysfs
        readonly.rmdir()
        return replace(built, extra={"readonly": "/sys"})
    readonly.chmod(0o555)
    return replace(built, extra={"readonly": str(readonly)})


@case(
    "out_exists",
    {
        "convert": error("old.nii.gz", "exist"),
        "segment": error("old.nii.gz", "exist"),
        "report": error("old.json", "exist"),
    },
    argv={
        "convert": ("convert", "{input}", "{case}/old.nii.gz"),
        "segment": ("segment", "{input}", "-o", "{case}/old.nii.gz"),
        "report": ("report", "{labels}", "-o", "{case}/old.json"),
    },
)
def _(folder: Path, src: Sources) -> Built:
    """Outputs that exist already, without --overwrite (control)."""
    (folder / "old.nii.gz").write_bytes(b"previous result")
    (folder / "old.json").write_text("{}")
    return tiny_pair(folder)


@case("mesh_of_a_ct", {"mesh": error(NAME, "not look like a label map")})
def _(folder: Path, src: Sources) -> Built:
    """A CT given to ``medseg mesh`` as its label map."""
    return tiny_pair(folder)


@case(
    "mesh_out_exists",
    {"mesh": error("1_tissue.stl", "exist")},
    argv={"mesh": ("mesh", "{labels}", "-o", "{case}/meshes")},
)
def _(folder: Path, src: Sources) -> Built:
    """One of the meshes ``medseg mesh`` would write exists already (no --overwrite)."""
    built = tiny_pair(folder)
    (folder / "labels.json").write_text(json.dumps({"labels": {"1": "tissue"}, "colors": {}}))
    (folder / "meshes").mkdir()
    (folder / "meshes" / "1_tissue.stl").write_bytes(b"previous mesh")
    return built


@case(
    "prompt_off_the_scan",
    {"prompt": error(NAME, "off the scan")},
    argv={"prompt": ("prompt", "{input}", "-o", "{case}/mask.nii.gz", "--point", "500,0,0")},
)
def _(folder: Path, src: Sources) -> Built:
    """A ``medseg prompt`` click 500 mm away from a tiny scan."""
    return tiny_pair(folder)


@case(
    "prompt_out_exists",
    {"prompt": error("mask.nii.gz", "exist")},
    argv={"prompt": ("prompt", "{input}", "-o", "{case}/mask.nii.gz", "--point", "15,15,12")},
)
def _(folder: Path, src: Sources) -> Built:
    """The mask ``medseg prompt`` would write exists already (no --overwrite)."""
    built = tiny_pair(folder)
    (folder / "mask.nii.gz").write_bytes(b"previous mask")
    return built


@case("mesh_names_escape", {"mesh": ok(r"meshes/1_etc_passwd\.stl", r"meshes/2_31mred\.stl")})
def _(folder: Path, src: Sources) -> Built:
    """Label names that are paths out of the folder, or escape sequences, in the sidecar."""
    labels = tiny_labels()
    labels[:, :, 6:] *= 2  # a second label
    write_nifti(folder / "labels.nii.gz", labels)
    names = {"1": "../../../etc/passwd", "2": "\x1b[31mred"}  # an ANSI colour escape
    (folder / "labels.json").write_text(json.dumps({"labels": names, "colors": {}}))
    return Built("labels.nii.gz")


@case(
    "out_concurrent_segments",
    {"probe": ok(r"one run wrote", one_winner=True)},
    timeout_s=90.0,
)
def _(folder: Path, src: Sources) -> Built:
    """Two ``medseg segment`` runs to one output, started together, without --overwrite."""
    return tiny_pair(folder)


@case(
    "out_appears_while_writing",
    {"probe": ok(r"refused", kept_winner=True)},
    **SCAN,
)
def _(folder: Path, src: Sources) -> Built:
    """The output appears while ``segment`` writes it (as when a concurrent run wins).

    ``medseg segment`` runs on the reduced float CT with ``--probabilities``; as soon as
    a temporary file shows in the output folder, the probe creates the labels file
    itself. The run must refuse to replace it, publish none of its files and leave no
    temporary file.
    """
    return spoiled_ct(folder, src, (), None)


# -- models --------------------------------------------------------------------------------
_TO_OUT = ("-o", "{out}/l.nii.gz")


def _model_case(name: str, doc: str, spec: object, expect: Expect, **options: object) -> None:
    def build(folder: Path, src: Sources) -> Built:
        text = spec if isinstance(spec, str | bytes) else json.dumps(spec, indent=2)
        path = folder / "model.json"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return replace(tiny_pair(folder), name="model.json")

    build.__doc__ = doc
    case(
        name,
        {"segment": expect},
        argv={
            "segment": (
                "segment",
                "{input}",
                "--model",
                "{case}/model.json",
                "-o",
                "{out}/l.nii.gz",
            )
        },
        **options,
    )(build)


_model_case(
    "model_spec_wrong_types",
    "A model spec whose fields have the wrong types (strings for numbers, a number for labels).",
    {
        "name": 5,
        "spatial_dims": "three",
        "in_channels": [1],
        "labels": 7,
        "network": "UNet",
        "weights": 12,
        "roi_size": "big",
    },
    error("model.json"),
)
_model_case(
    "model_spec_wrong_nested_types",
    "A model spec of the right shape with wrong types inside (labels, roi_size, intensity).",
    {
        "name": "x",
        "spatial_dims": 3,
        "in_channels": 1,
        "labels": [{"value": "one", "name": None}, 3],
        "network": {"kind": "monai", "name": "UNet", "args": [1, 2]},
        "weights": "x.pt",
        "roi_size": [64, "a", None],
        "intensity": {"kind": "scale_range", "a_min": "low"},
        "target_spacing": [0, -1, "x"],
    },
    error("model.json"),
)
_model_case("model_spec_list", "A model spec that is a JSON list.", [1, 2, 3], error("model.json"))
_model_case(
    "model_spec_not_json",
    "Random bytes named model.json.",
    random_bytes(300, 14),
    error("model.json"),
)
_model_case(
    "model_spec_missing_weights",
    "A model spec whose weights file does not exist.",
    {
        "name": "x",
        "spatial_dims": 3,
        "in_channels": 1,
        "labels": [{"value": 0, "name": "background"}, {"value": 1, "name": "a"}],
        "network": {"kind": "monai", "name": "UNet", "args": {}},
        "weights": "nowhere.pt",
        "roi_size": [16, 16, 16],
    },
    error("nowhere.pt|model.json"),
)

#: Where a malicious pickle's payload would write (relative to the corpus root).
MARKER = "PWNED"


class _Payload:
    """Unpickling this runs ``open(<marker>, "w")``: any loader that executes it is caught."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').write('code ran')",))


def _evil_model(folder: Path, zip_format: bool) -> Built:
    """The default model's spec beside ``evil.pt``: a pickle whose payload writes a marker
    file when unpickled (a legacy pickle, or torch.save's zip layout)."""
    import pickle

    spec_path, _ = default_model_files()
    spec = json.loads(spec_path.read_text())
    spec["weights"] = "evil.pt"
    spec.pop("weights_sha256", None)
    spec.pop("model_card", None)
    (folder / "evil.json").write_text(json.dumps(spec, indent=2))
    marker = str((folder.parent / f"{MARKER}-{folder.name}").resolve())
    payload = pickle.dumps({"state_dict": _Payload(marker)}, protocol=2)
    if zip_format:  # torch.save's layout: <name>/data.pkl, <name>/version
        with zipfile.ZipFile(folder / "evil.pt", "w") as archive:
            archive.writestr("evil/data.pkl", payload)
            archive.writestr("evil/version", "3\n")
            archive.writestr("evil/byteorder", "little")
    else:
        (folder / "evil.pt").write_bytes(payload)
    return replace(tiny_pair(folder), name="evil.pt", extra={"marker": marker})


_REFUSED_CODE = r"evil\.pt"
_NO_TORCH_ADVICE = r"^(?![\s\S]*In PyTorch 2\.6)"


#: ``segment --model evil.pt``: the checkpoint of the pickle cases.
_EVIL_MODEL = {"segment": ("segment", "{input}", "--model", "{case}/evil.pt", *_TO_OUT)}
#: A malicious checkpoint: refused as code, without torch's advice to drop weights_only.
_EVIL_REFUSED = {
    "segment": error(_REFUSED_CODE, r"code|refus|not allowed|unsafe", _NO_TORCH_ADVICE)
}


@case("model_pickle_payload", _EVIL_REFUSED, argv=_EVIL_MODEL)
def _(folder: Path, src: Sources) -> Built:
    """A legacy pickle checkpoint whose payload writes a marker file when unpickled."""
    return _evil_model(folder, zip_format=False)


@case("model_pickle_payload_zip", _EVIL_REFUSED, argv=_EVIL_MODEL)
def _(folder: Path, src: Sources) -> Built:
    """A torch.save-style zip checkpoint whose data.pkl writes a marker file."""
    return _evil_model(folder, zip_format=True)


@case("model_weights_garbage", {"segment": error("evil.pt")}, argv=_EVIL_MODEL)
def _(folder: Path, src: Sources) -> Built:
    """A .pt of random bytes with its spec beside it."""
    built = _evil_model(folder, zip_format=False)
    (folder / "evil.pt").write_bytes(random_bytes(5000, 15))
    return built


def _traversal_zip(path: Path, marker_name: str) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("bundle/configs/metadata.json", "{}")
        archive.writestr(f"../../{marker_name}", "escaped")
        archive.writestr(f"/tmp/{marker_name}", "escaped")


@case(
    "model_bundle_zip_traversal",
    {
        "segment": error("bundle.zip"),
        "probe": error(r"unsafe|outside|refus|\.\.", r"bundle\.zip"),
    },
    argv={
        "segment": (
            "segment",
            "{input}",
            "--model",
            "{case}/bundle.zip",
            "--trust-bundle",
            "-o",
            "{out}/l.nii.gz",
        )
    },
    timeout_s=SCAN_TIMEOUT_S,
)
def _(folder: Path, src: Sources) -> Built:
    """A bundle archive with members ``../../PWNED...`` and ``/tmp/PWNED...``."""
    _traversal_zip(folder / "bundle.zip", f"{MARKER}-zip-{os.getpid()}")
    return replace(tiny_pair(folder), name="bundle.zip")


@case(
    "model_bundle_untrusted",
    {"segment": error("bundle", "trust")},
    argv={"segment": ("segment", "{input}", "--model", "{case}/bundle", "-o", "{out}/l.nii.gz")},
)
def _(folder: Path, src: Sources) -> Built:
    """A bundle folder whose config would run code, without --trust-bundle (control)."""
    configs = folder / "bundle" / "configs"
    configs.mkdir(parents=True)
    marker = (folder.parent / f"{MARKER}-{folder.name}").resolve()
    (configs / "metadata.json").write_text("{}")
    (configs / "inference.json").write_text(
        json.dumps({"x": f"$open({str(marker)!r}, 'w').write('code ran')"})
    )
    return replace(tiny_pair(folder), name="bundle")


# -- report inputs -------------------------------------------------------------------------
def _names_case(name: str, doc: str, content: str | bytes) -> None:
    def build(folder: Path, src: Sources) -> Built:
        path = folder / "names.json"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        write_nifti(folder / "labels.nii.gz", tiny_labels())
        return Built("names.json", labels="labels.nii.gz")

    build.__doc__ = doc
    case(name, {"report": error("names.json")}, role="names")(build)


_names_case(
    "names_wrong_types",
    "A names JSON whose values are numbers and lists, keys not label values.",
    json.dumps({"1": 5, "two": ["a"], "3": {"x": 1}}),
)
_names_case("names_list", "A names JSON that is a list.", "[1, 2, 3]")
_names_case("names_random", "Random bytes named names.json.", random_bytes(500, 16))


@case("reference_float_nan", {"report": error(NAME, NONFINITE)}, role="reference")
def _(folder: Path, src: Sources) -> Built:
    """A --reference label map in float32 with NaN voxels."""
    labels = tiny_labels().astype(np.float32)
    labels[0, 0, :] = np.nan
    write_nifti(folder / "reference.nii.gz", labels)
    write_nifti(folder / "labels.nii.gz", tiny_labels())
    return Built("reference.nii.gz", labels="labels.nii.gz")


@case("reference_truncated", {"report": error()}, role="reference")
def _(folder: Path, src: Sources) -> Built:
    """A --reference .nii.gz cut in half."""
    write_nifti(folder / "labels.nii.gz", tiny_labels())
    data = (folder / "labels.nii.gz").read_bytes()
    (folder / "reference.nii.gz").write_bytes(data[: len(data) // 2])
    return Built("reference.nii.gz", labels="labels.nii.gz")


@case(
    "report_out_is_names",
    {"report": error(_SOURCE)},
    argv={
        "report": (
            "report",
            "{labels}",
            "--names",
            "{case}/names.json",
            "-o",
            "{case}/names.json",
            "--overwrite",
        )
    },
)
def _(folder: Path, src: Sources) -> Built:
    """report -o names.json --overwrite where names.json is the --names input."""
    (folder / "names.json").write_text(json.dumps({"1": "body"}))
    return replace(tiny_pair(folder), name="names.json")


@case(
    "report_out_is_sidecar",
    {"report": error(_SOURCE)},
    argv={"report": ("report", "{case}/seg.nii.gz", "-o", "{case}/seg.json", "--overwrite")},
)
def _(folder: Path, src: Sources) -> Built:
    """report -o seg.json --overwrite where seg.json is the labels' sidecar (read as names)."""
    write_nifti(folder / "seg.nii.gz", tiny_labels())
    (folder / "seg.json").write_text(json.dumps({"labels": {"1": {"name": "body"}}}))
    return Built("seg.nii.gz", name="seg.json")


@case(
    "report_out_is_labels",
    {"report": error("labels.nii.gz")},
    argv={
        "report": ("report", "{case}/labels.nii.gz", "-o", "{case}/labels.nii.gz", "--overwrite")
    },
)
def _(folder: Path, src: Sources) -> Built:
    """report -o labels.nii.gz --overwrite: an output name that is the input (and not CSV/JSON)."""
    return tiny_pair(folder)


# -- fine-tuning inputs (medseg finetune) --------------------------------------------------
#: The parent every ``finetune`` case trains (its own copy, in the case folder).
PARENT = "parent/tiny.json"


def finetune_argv(library: str = "{out}/models", *more: str) -> tuple[str, ...]:
    """``medseg finetune`` of the case's parent on ``{input}``, publishing into ``library``:
    on the CPU, one epoch of one step (a run that gets to training takes about a second)."""
    return (
        "finetune", "--model", "{case}/" + PARENT, "--data", "{input}", "-o", library,
        "--device", "cpu", "--epochs", "1", "--steps-per-epoch", "1", *more,
    )  # fmt: skip


def training_pairs(folder: Path, seeds=range(3), **options: object) -> list[Path]:
    """The tiny 3-class parent (``parent/``) and Save-widget pairs in ``folder/data``.

    As the fine-tuning tests make them (``tests/training_factory.py``): ``caseN.nii.gz``
    (24 x 24 x 20 voxels), ``caseN_labels.nii.gz`` and its sidecar naming the scan and a
    model output corrected by hand; the parent is a MONAI UNet of a few thousand
    parameters whose classes (background, class1, class2) the labels use. Returns the
    label maps written.
    """
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from training_factory import write_parent, write_saved

    write_parent(folder / "parent")
    return write_saved(folder / "data", seeds, **options)


def _read_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    image = nib.load(path)
    return np.asarray(image.dataobj), image.affine


@case("finetune_clean", {"finetune": ok(r"epoch 1/1", r"published")}, timeout_s=30.0)
def _(folder: Path, src: Sources) -> Built:
    """Three good saved corrections and the tiny parent: one epoch of one step (control)."""
    training_pairs(folder)
    return Built("data")


@case("finetune_csv_no_labels_column", {"finetune": error(NAME, "'labels' column")})
def _(folder: Path, src: Sources) -> Built:
    """A pairs CSV whose columns are image and mask (no labels column)."""
    written = training_pairs(folder)
    rows = "".join(f"{p.name.replace('_labels', '')},{p.name}\n" for p in written)
    (folder / "data" / "pairs.csv").write_text("image,mask\n" + rows)
    return Built("data/pairs.csv")


@case(
    "finetune_csv_missing_scan",
    {"finetune": error(NAME, r"line 3\b.*nope\.nii\.gz does not exist")},
)
def _(folder: Path, src: Sources) -> Built:
    """A pairs CSV whose second row names a scan that is not there."""
    training_pairs(folder)
    rows = "case0.nii.gz,case0_labels.nii.gz\nnope.nii.gz,case1_labels.nii.gz\n"
    (folder / "data" / "pairs.csv").write_text("image,labels\n" + rows)
    return Built("data/pairs.csv")


@case("finetune_data_missing", {"finetune": error(NAME, "does not exist")})
def _(folder: Path, src: Sources) -> Built:
    """--data names a folder that does not exist (the parent does)."""
    training_pairs(folder, seeds=())
    return Built("data/nowhere")


@case("finetune_labels_shorter", {"finetune": error(NAME, "not on the grid of its scan")})
def _(folder: Path, src: Sources) -> Built:
    """One saved label map two slices shorter than its scan."""
    written = training_pairs(folder)
    labels, affine = _read_labels(written[0])
    write_nifti(written[0], np.ascontiguousarray(labels[:, :, :-2]), affine)
    return Built("data", name=written[0].name)


@case("finetune_labels_shifted", {"finetune": error(NAME, "not on the grid of its scan")})
def _(folder: Path, src: Sources) -> Built:
    """One saved label map of the scan's shape, its origin moved 4 mm (a silent misfit)."""
    written = training_pairs(folder)
    labels, affine = _read_labels(written[1])
    affine = affine.copy()
    affine[0, 3] += 4.0
    write_nifti(written[1], labels, affine)
    return Built("data", name=written[1].name)


@case("finetune_labels_unknown_class", {"finetune": error(NAME, r"label values \[7\]")})
def _(folder: Path, src: Sources) -> Built:
    """One saved label map with a voxel of 7, a class the 3-class parent does not have."""
    written = training_pairs(folder)
    labels, affine = _read_labels(written[2])
    labels = labels.copy()
    labels[0, 0, 0] = 7
    write_nifti(written[2], labels, affine)
    return Built("data", name=written[2].name)


@case(
    "finetune_nothing_usable",
    {
        "finetune": error(
            NAME,
            r"no \(scan, corrected labels\) pair",
            r"case0_labels\.nii\.gz: the model's output, not corrected by hand",
        )
    },
)
def _(folder: Path, src: Sources) -> Built:
    """A data folder of a scan, labels without a sidecar, an uncorrected model output, notes."""
    training_pairs(folder, seeds=[0], model={"name": "tiny", "settings": {}})
    write_nifti(folder / "data" / "case5_labels.nii.gz", tiny_labels())  # no sidecar
    (folder / "data" / "notes.txt").write_text("corrections to do\n")
    return Built("data")


@case(
    "finetune_sidecar_labels_list",
    {"finetune": ok(r"skipped .*case0_labels\.nii\.gz: .*case0_labels\.json is not", "epoch 1")},
    timeout_s=30.0,
)
def _(folder: Path, src: Sources) -> Built:
    """One of three saved sidecars lists its class names instead of mapping values to them."""
    training_pairs(folder)
    sidecar = folder / "data" / "case0_labels.json"
    content = json.loads(sidecar.read_text())
    content["labels"] = ["background", "class1", "class2"]
    sidecar.write_text(json.dumps(content))
    return Built("data", name="case0_labels.json")


@case("finetune_batch_done_bad", {"finetune": error(NAME, r"c0/done\.json", r"c1/done\.json")})
def _(folder: Path, src: Sources) -> Built:
    """A ``medseg batch`` folder whose done.json files give the scan as a number, a string."""
    written = training_pairs(folder, seeds=[0, 1])
    batch = folder / "batch"
    for n, (labels, images) in enumerate(zip(written, (5, "case1.nii.gz"), strict=True)):
        case_folder = batch / f"c{n}"
        case_folder.mkdir(parents=True)
        shutil.copy(labels, case_folder / "labels.nii.gz")
        shutil.copy(labels.with_name(labels.name.replace(".nii.gz", ".json")),
                    case_folder / "labels.json")  # fmt: skip
        (case_folder / "done.json").write_text(json.dumps({"images": images}))
    return Built("batch")


@case(
    "finetune_model_exists",
    {"finetune": error(r"models/mine\b", "exists already")},
    argv={"finetune": finetune_argv("{case}/models", "--name", "mine")},
)
def _(folder: Path, src: Sources) -> Built:
    """--name mine where the model library holds a folder mine/ already (a model of the user's)."""
    training_pairs(folder)
    (folder / "models" / "mine").mkdir(parents=True)
    (folder / "models" / "mine" / "mine.json").write_text('{"name": "mine"}')
    return Built("data", name="mine")


# -- today's known failures ----------------------------------------------------------------
#: ``(case, entry point) -> what happens instead``: the runs that fail today. Each is a
#: ``pytest.mark.xfail(strict=True)`` in ``test_hostile.py``, so the suite goes red when
#: a fix lands and its line is still here: delete the line with the fix.
KNOWN: dict[tuple[str, str], str] = {}


# -- the table -----------------------------------------------------------------------------
def expectation_table() -> list[tuple[str, str, str]]:
    """``(case, entry point, expectation)`` of every case, for the docs and ``--table``."""
    rows = []
    for name, one in CASES.items():
        for entry, expect in one.expect.items():
            known = KNOWN.get((name, entry))
            note = f"  [known failure: {known}]" if known else ""
            rows.append((name, entry, expect.describe() + note))
    return rows


# -- building ------------------------------------------------------------------------------
def command_line(one: Case, entry: str) -> tuple[str, ...]:
    """The command line of ``entry`` for the case (templates: ``{input}``, ``{out}``...).

    The reader's and ``open``'s "command line" is the one path they are given.
    """
    if entry in one.argv:
        return tuple(one.argv[entry])
    if entry in ("reader", "open"):
        return ("{input}",)
    if entry == "info":
        return ("info", "{input}")
    if entry == "convert":
        return ("convert", "{input}", "{out}/converted.nii.gz")
    if entry == "segment":
        return ("segment", "{input}", "-o", "{out}/labels.nii.gz")
    if entry == "report":
        out = ("-o", "{out}/report.json")
        if one.role == "labels":
            return ("report", "{input}", *out)
        if one.role == "reference":
            return ("report", "{labels}", "--reference", "{input}", *out)
        if one.role == "names":
            return ("report", "{labels}", "--names", "{input}", *out)
        return ("report", "{labels}", "--image", "{input}", *out)
    if entry == "mesh":
        return ("mesh", "{input}", "-o", "{out}/meshes")
    if entry == "prompt":
        return ("prompt", "{input}", "-o", "{out}/mask.nii.gz", "--point", "0,0,0")
    if entry == "finetune":
        return finetune_argv()
    if entry == "probe":
        return ()
    raise ValueError(f"unknown entry point {entry!r}")


def build_corpus(root: Path, names: list[str] | None = None) -> dict:
    """Build every case (or those named) under ``root``; write and return the manifest.

    Layout: ``root/_sources`` (the sample files), ``root/<case>/`` (one folder per case).
    The manifest (``root/manifest.json``) holds, per case, its files (input, name,
    labels, extra placeholders), the command line of each entry point, isolation,
    timeout and memory bound: all the runner needs.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sources = make_sources(root / "_sources")
    manifest: dict = {"root": str(root), "cases": {}}
    for name, one in CASES.items():
        if names is not None and name not in names:
            continue
        folder = root / name
        folder.mkdir()
        built = one.build(folder, sources)
        labels = built.labels or "../_sources/chest_ct_tumour.nii.gz"
        manifest["cases"][name] = {
            "input": built.input,
            "name": built.name or Path(built.input).name,
            "labels": labels,
            "extra": dict(built.extra),
            "argv": {entry: list(command_line(one, entry)) for entry in one.expect},
            "isolate": one.isolate,
            "timeout_s": one.timeout_s,
            "max_rss_mb": one.max_rss_mb,
            "may_change": list(one.may_change),
        }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=True))
    return manifest


def _main(argv: list[str]) -> int:
    if argv[:1] == ["--table"]:
        for name, entry, text in expectation_table():
            print(f"{name:34} {entry:8} {text}")
        return 0
    if len(argv) < 1:
        print(__doc__)
        return 2
    names = argv[1:] or None
    manifest = build_corpus(Path(argv[0]), names)
    print(f"built {len(manifest['cases'])} cases in {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


__all__ = [
    "CASES",
    "ENTRIES",
    "Case",
    "Expect",
    "build_corpus",
    "command_line",
    "expectation_table",
]


# -- probes: checks a single command line cannot make ------------------------------------
def _medseg_process(argv: list[str]):
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "napari_medseg.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )


def probe_concurrent_segments(folder: Path, out: Path, places: Mapping[str, str]):
    """Two ``medseg segment`` runs to one output, started together: exactly one may win.

    Prints what each run said; returns ``(0, {"one_winner": bool, ...})``.
    """
    target = out / "labels.nii.gz"
    runs = [_medseg_process(["segment", places["input"], "-o", str(target)]) for _ in range(2)]
    said = [run.communicate(timeout=80)[0].decode("utf-8", "backslashreplace") for run in runs]
    codes = [run.returncode for run in runs]
    for n, (code, text) in enumerate(zip(codes, said, strict=True)):
        print(
            f"run {n + 1}: exit {code}\n{text.strip()}".encode("ascii", "backslashreplace").decode()
        )
    winners = codes.count(0)
    losers = [text for code, text in zip(codes, said, strict=True) if code == 2]
    fair = winners == 1 and len(losers) == 1 and "exist" in losers[0]
    if fair:
        print("one run wrote the labels, the other refused to replace them")
    return 0, {"one_winner": fair, "exit_codes": codes}


def probe_bundle_traversal(folder: Path, out: Path, places: Mapping[str, str]):
    """Fetch the traversal archive as a catalogue bundle (``file://``, right hash).

    The archive must be refused before anything is extracted; returns ``(rc, {})``
    with rc 2 for a typed error, 0 when it was unpacked.
    """
    import hashlib

    from napari_medseg.errors import MedsegError
    from napari_medseg.models.zoo import ZooEntry, fetch_bundle

    archive = folder / "bundle.zip"
    entry = ZooEntry(
        name="evil",
        version="1",
        title="evil",
        description="a bundle archive with path traversal",
        modality="CT",
        url=archive.resolve().as_uri(),
        sha256=hashlib.sha256(archive.read_bytes()).hexdigest(),
    )
    try:
        fetched = fetch_bundle(entry, cache_dir=out / "cache")
    except MedsegError as error:
        print(f"medseg: error: {error}")
        return 2, {}
    print(f"unpacked into {fetched}")
    return 0, {}


def probe_output_appears(folder: Path, out: Path, places: Mapping[str, str]):
    """Create ``segment``'s output while it writes; it must refuse and publish nothing.

    Returns ``(0, {"kept_winner": bool, "caught": bool, ...})``: ``caught`` says the
    probe saw a temporary file before the run ended (else the race was not made).
    """
    import time

    target = out / "labels.nii.gz"
    probabilities = out / "probabilities.nii.gz"
    winner = b"written by the run that won"
    run = _medseg_process(
        ["segment", places["input"], "-o", str(target), "--probabilities", str(probabilities)]
    )
    caught = False
    while run.poll() is None and not caught:
        caught = any(entry.name.startswith(".") for entry in os.scandir(out))
        if caught:
            with open(target, "xb") as handle:  # what a concurrent winner would do
                handle.write(winner)
        else:
            time.sleep(0.001)
    said = run.communicate(timeout=80)[0].decode("utf-8", "backslashreplace")
    print(f"exit {run.returncode}\n{said.strip()}".encode("ascii", "backslashreplace").decode())
    litter = sorted(entry.name for entry in os.scandir(out) if entry.name.startswith("."))
    kept = caught and target.read_bytes() == winner and not probabilities.exists()
    if litter:
        print(f"temporary files left behind: {litter}")
    if kept and run.returncode == 2 and not litter:
        print("the run refused to replace the labels that appeared, and published nothing")
    return 0, {
        "kept_winner": kept and run.returncode == 2 and not litter,
        "caught": caught,
        "exit_codes": [run.returncode],
    }


#: Case name -> probe function ``(folder, out, places) -> (rc, result)``.
PROBES: dict[str, Callable] = {
    "out_concurrent_segments": probe_concurrent_segments,
    "out_appears_while_writing": probe_output_appears,
    "model_bundle_zip_traversal": probe_bundle_traversal,
}
