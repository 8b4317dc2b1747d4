"""Build small DICOM series with known geometry and the quirks real folders have.

Built on :func:`napari_medseg.synthetic.dicom_series.write_dicom_series`. Every helper
returns what was written, so tests can compare the reader against ground truth:
the stored array ``(I, J, K)``, its voxel -> RAS+ affine and the HU values.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import geometry_cases
import numpy as np
import pydicom
from nibabel import orientations as nio
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from napari_medseg.synthetic.dicom_series import write_dicom_series

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: SOP classes of the non-image objects :func:`add_non_image_objects` writes.
NON_IMAGE_SOP = {
    "SR": "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "RTSTRUCT": "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
    "SEG": "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "PR": "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
    "KO": "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection
}

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


@dataclass
class WrittenSeries:
    """A series the factory wrote, with its ground truth.

    Attributes
    ----------
    folder : Path
        Where the files are.
    files : list of Path
        Files in slice order (k = 0..K-1 of ``stored``).
    stored : numpy.ndarray
        Stored values, shape ``(I, J, K)``.
    affine : numpy.ndarray
        4x4 voxel -> RAS+ mm matrix of ``stored``.
    slope, intercept : float
        Modality LUT; ``hu = stored * slope + intercept``.
    series_uid : str
        SeriesInstanceUID.
    """

    folder: Path
    files: list[Path]
    stored: np.ndarray
    affine: np.ndarray
    slope: float
    intercept: float
    series_uid: str
    study_uid: str = ""

    @property
    def hu(self) -> np.ndarray:
        """Rescaled values (float64), shape ``(I, J, K)``."""
        return self.stored.astype(np.float64) * self.slope + self.intercept

    @property
    def lps_affine(self) -> np.ndarray:
        return RAS_TO_LPS @ self.affine


# ----------------------------------------------------------------- geometry helpers
def make_affine(
    axcodes: str = "LPS",
    spacing: tuple[float, float, float] = (0.7, 0.8, 2.5),
    origin: tuple[float, float, float] = (12.5, -20.25, 30.0),
    oblique_deg: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """Voxel -> RAS+ affine whose axes run along ``axcodes`` (e.g. "LPS", "PSR").

    ``spacing`` is the voxel size along I, J, K in mm; ``oblique_deg`` rotates the
    whole grid (patient-space Euler angles) to make it oblique. The DICOM tests'
    defaults over :func:`geometry_cases.make_affine`.
    """
    return geometry_cases.make_affine(
        axcodes, spacing, origin, rotation_deg=oblique_deg or (0.0, 0.0, 0.0)
    )


def tilted_affine(tilt_deg: float, spacing=(0.7, 0.8, 2.5), origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Axial LPS-ordered grid whose slice step leans ``tilt_deg`` towards posterior.

    This is what gantry tilt looks like: each slice's ImagePositionPatient moves
    along y by ``step * tan(tilt)`` while the image plane stays axial.
    """
    affine = make_affine("LPS", spacing, origin)
    # LPS: column 2 = (0, 0, dz) in RAS; add an anterior-posterior shift per slice
    affine[1, 2] = -spacing[2] * np.tan(np.radians(tilt_deg))  # RAS y decreases = posterior
    return affine


def phantom(shape: tuple[int, int, int] = (16, 12, 8), seed: int = 0) -> np.ndarray:
    """Stored int16 values (I, J, K) with a different value at every voxel position.

    Each voxel mixes its own indices with a random term so any transposition,
    flip or slice swap changes the values; values are ``7 i + 131 j + 1009 k - 1000``
    plus 0..4, so they fit int16 for shapes up to about 32 x 32 x 24.
    """
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    base = i * 7 + j * 131 + k * 1009 - 1000
    noise = rng.integers(0, 5, size=shape)
    return (base + noise).astype(np.int16)


# ----------------------------------------------------------------- classic series
def write_series(
    folder: str | os.PathLike,
    stored: np.ndarray | None = None,
    affine: np.ndarray | None = None,
    *,
    slope: float = 1.0,
    intercept: float = -1024.0,
    overwrite: bool = False,
    **kwargs,
) -> WrittenSeries:
    """Write a single-frame series; ``kwargs`` go to ``write_dicom_series``."""
    stored = phantom() if stored is None else stored
    affine = make_affine() if affine is None else affine
    series_uid = kwargs.pop("series_uid", None) or generate_uid()
    study_uid = kwargs.pop("study_uid", None) or generate_uid()
    files = write_dicom_series(
        stored,
        affine,
        folder,
        rescale_slope=slope,
        rescale_intercept=intercept,
        series_uid=series_uid,
        study_uid=study_uid,
        overwrite=overwrite,
        **kwargs,
    )
    return WrittenSeries(
        Path(folder), files, stored, affine, slope, intercept, series_uid, study_uid
    )


def random_file_names(n: int, seed: int = 1) -> list[str]:
    """``n`` unique names with no order and no extension, like PACS exports."""
    rng = np.random.default_rng(seed)
    names: set[str] = set()
    while len(names) < n:
        names.add("".join(rng.choice(list("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"), 10)))
    return sorted(names, key=lambda _: rng.random())


def write_shuffled(folder, stored=None, affine=None, seed: int = 3, **kwargs) -> WrittenSeries:
    """Series whose InstanceNumbers are a random permutation and file names random."""
    stored = phantom() if stored is None else stored
    rng = np.random.default_rng(seed)
    n = stored.shape[2]
    numbers = list(rng.permutation(n) + 1)
    return write_series(
        folder,
        stored,
        affine,
        instance_numbers=[int(x) for x in numbers],
        file_names=random_file_names(n, seed),
        **kwargs,
    )


def add_duplicate(series: WrittenSeries, k: int, *, identical: bool = True) -> Path:
    """Copy slice ``k`` under a new SOPInstanceUID (pixels changed unless identical)."""
    ds = pydicom.dcmread(series.files[k])
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = 1000 + k
    if not identical:
        pixels = ds.pixel_array.copy()
        pixels[0, 0] += 1
        ds.PixelData = pixels.tobytes()
    target = series.folder / f"DUP{k:03d}.dcm"
    ds.save_as(target, enforce_file_format=True)
    return target


def copy_exact(series: WrittenSeries, k: int) -> Path:
    """Byte copy of slice ``k`` (same SOPInstanceUID), as when a file is copied twice."""
    target = series.folder / f"COPY{k:03d}.dcm"
    shutil.copyfile(series.files[k], target)
    return target


def remove_slices(series: WrittenSeries, ks: list[int]) -> None:
    """Delete slices (a gap in the positions)."""
    for k in ks:
        os.unlink(series.files[k])


def set_positions(files: list[Path], positions) -> None:
    """Rewrite ImagePositionPatient (LPS+ mm) of each file, e.g. to make spacing irregular."""
    for path, position in zip(files, positions, strict=True):
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [f"{float(v):.6f}" for v in position]
        ds.save_as(path, enforce_file_format=True)


def round_positions(files: list[Path], decimals: int = 3) -> None:
    """Round ImagePositionPatient to ``decimals`` places, as many scanners write it."""
    for path in files:
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [f"{float(v):.{decimals}f}" for v in ds.ImagePositionPatient]
        ds.save_as(path, enforce_file_format=True)


def set_attributes(files: list[Path], **values) -> None:
    """Set (or, with None, delete) attributes by keyword in every file."""
    for path in files:
        ds = pydicom.dcmread(path)
        for keyword, value in values.items():
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        ds.save_as(path, enforce_file_format=True)


def lowercase_tree(folder: str | os.PathLike, keep: tuple[str, ...] = ("DICOMDIR",)) -> None:
    """Rename every file and folder below ``folder`` to lower case (media copied on Linux)."""
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in [*files, *dirs]:
            if name in keep or name.lower() == name:
                continue
            os.rename(os.path.join(root, name), os.path.join(root, name.lower()))


def write_tilted(folder, tilt_deg: float = 15.0, stored=None, **kwargs) -> WrittenSeries:
    """CT with gantry tilt: sheared affine and the GantryDetectorTilt tag."""
    stored = phantom() if stored is None else stored
    affine = tilted_affine(tilt_deg)
    extra = dict(kwargs.pop("extra", {}) or {})
    extra.setdefault("GantryDetectorTilt", tilt_deg)
    return write_series(folder, stored, affine, extra=extra, **kwargs)


def add_localizer(
    folder,
    *,
    series_uid: str | None = None,
    study_uid: str | None = None,
    n_images: int = 1,
) -> WrittenSeries:
    """Coronal localizer image(s) (ImageType ORIGINAL\\PRIMARY\\LOCALIZER).

    With ``series_uid`` it joins that series (as some scanners do); otherwise it
    is its own series. Written into ``folder`` next to what is there.
    """
    stored = phantom((20, 10, n_images), seed=7)
    affine = make_affine("LIA", spacing=(1.5, 1.5, 1.0), origin=(-15.0, 40.0, 60.0))
    names = [f"LOC{n:03d}_{generate_uid()[-6:]}.dcm" for n in range(n_images)]
    return write_series(
        folder,
        stored,
        affine,
        series_uid=series_uid,
        study_uid=study_uid,
        series_description="localizer",
        extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]},
        file_names=names,
        instance_numbers=[500 + n for n in range(n_images)],
        overwrite=True,
    )


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def add_non_image_objects(folder, study_uid: str | None = None) -> dict[str, Path]:
    """An SR, RTSTRUCT, SEG, presentation state and KO in ``folder``.

    The SEG carries 1-bit pixel data (so only its SOP class marks it as non-image);
    the others have no pixel data.
    """
    folder = Path(folder)
    study_uid = study_uid or generate_uid()
    out: dict[str, Path] = {}
    for modality, sop_class in NON_IMAGE_SOP.items():
        ds = Dataset()
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta = _file_meta(sop_class, ds.SOPInstanceUID)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = generate_uid()
        ds.Modality = modality
        ds.SeriesNumber = 90
        ds.PatientName = "Anonymous"
        ds.PatientID = "ANON"
        if modality == "SEG":
            ds.Rows = 4
            ds.Columns = 4
            ds.NumberOfFrames = 1
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = 1
            ds.BitsStored = 1
            ds.HighBit = 0
            ds.PixelRepresentation = 0
            ds.PixelData = b"\xff\x00"
        path = folder / f"{modality}_{ds.SOPInstanceUID[-8:]}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out[modality] = path
    return out


def write_non_dicom(path) -> Path:
    """A text file that is not DICOM."""
    path = Path(path)
    path.write_text("this is not a DICOM file\n" * 20)
    return path


def truncate(path, keep_fraction: float = 0.6) -> Path:
    """Cut a file short (keeps the first ``keep_fraction`` of its bytes)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path


def truncate_bytes(path, drop: int) -> Path:
    """Drop the last ``drop`` bytes of a file (pixel data ends early)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[:-drop])
    return path


def damage(path: str | os.PathLike, how: str) -> Path:
    """Make one file of a series unreadable, as real folders have them.

    ``how``: ``"empty"`` (0 bytes, an interrupted copy), ``"random"`` (random
    bytes), ``"header"`` (the header cut short, so it does not parse), ``"garbage"``
    (the DICOM marker followed by random bytes),
    ``"bad-ts"`` (a Transfer Syntax UID that is no transfer syntax: CT Image
    Storage's UID).
    """
    path = Path(path)
    if how == "empty":
        path.write_bytes(b"")
    elif how == "random":
        path.write_bytes(np.random.default_rng(7).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif how == "header":
        data = path.read_bytes()
        path.write_bytes(data[:300])  # inside the file meta / first elements
    elif how == "garbage":  # the DICM marker, then random bytes read as random elements
        noise = np.random.default_rng(8).integers(0, 256, 3000, dtype=np.uint8).tobytes()
        path.write_bytes(b"\0" * 128 + b"DICM" + noise)
    elif how == "bad-ts":
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
        ds.save_as(path, implicit_vr=False, little_endian=True, force_encoding=True)
    else:
        raise ValueError(how)
    return path


def copy_alone(path: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """A copy of one file in a folder of its own; returns the copy.

    pydicom's test-file folder also holds damaged files (one is a header cut
    after ImageType) that could be a lost slice of any series there, so a
    series read from that folder is refused as possibly incomplete.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(path, folder / Path(path).name))


def write_dicomdir(source_files: list[Path], output: str | os.PathLike) -> Path:
    """Copy files into a DICOM File-set with a DICOMDIR (pydicom FileSet); return it."""
    from pydicom.fileset import FileSet

    fileset = FileSet()
    for file in source_files:
        fileset.add(pydicom.dcmread(file))
    fileset.write(output)
    return Path(output) / "DICOMDIR"


# ----------------------------------------------------------------- enhanced multi-frame
def write_enhanced(
    path: str | os.PathLike,
    volumes: list[np.ndarray],
    affine: np.ndarray,
    *,
    modality: str = "CT",
    slopes: list[float] | None = None,
    intercepts: list[float] | None = None,
    frame_order: list[int] | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    series_uid: str | None = None,
    window: tuple[float, float] | None = (40.0, 400.0),
) -> tuple[Path, list[tuple[int, int]]]:
    """Write an Enhanced CT/MR multi-frame file from scratch.

    Parameters
    ----------
    volumes : list of numpy.ndarray
        One ``(I, J, K)`` int16 stored-value array per temporal position.
    affine : numpy.ndarray
        4x4 voxel -> RAS+ mm of every volume.
    slopes, intercepts : list of float, optional
        Per-slice modality LUT (length K): written per frame in
        PixelValueTransformationSequence. When omitted, a shared 1 / -1024 (CT).
    frame_order : list of int, optional
        Permutation of the ``T * K`` frames (frame f holds slice ``f % K`` of
        volume ``f // K`` before permuting), to test that order is not trusted.

    Returns
    -------
    (Path, list of (t, k))
        The file, and which (temporal position, slice) each written frame holds.
    """
    path = Path(path)
    n_t = len(volumes)
    n_i, n_j, n_k = volumes[0].shape
    lps = RAS_TO_LPS @ affine
    col_spacing = float(np.linalg.norm(lps[:3, 0]))
    row_spacing = float(np.linalg.norm(lps[:3, 1]))
    iop = [*(lps[:3, 0] / col_spacing), *(lps[:3, 1] / row_spacing)]
    normal = np.cross(iop[:3], iop[3:])
    thickness = abs(float(lps[:3, 2] @ normal))
    sop_class = ENHANCED_CT if modality == "CT" else ENHANCED_MR
    frames = [(t, k) for t in range(n_t) for k in range(n_k)]
    if frame_order is not None:
        frames = [frames[i] for i in frame_order]

    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = _file_meta(sop_class, ds.SOPInstanceUID)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.Modality = modality
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.SeriesNumber = 7
    ds.InstanceNumber = 1
    ds.SeriesDescription = "enhanced"
    ds.PatientName = "Anonymous"
    ds.PatientID = "ANON"
    ds.StudyDate = "20240101"
    ds.Rows = n_j
    ds.Columns = n_i
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1

    dim_org = generate_uid()
    dims = Sequence()
    for keyword in ("StackID", "InStackPositionNumber", "TemporalPositionIndex"):
        item = Dataset()
        item.DimensionOrganizationUID = dim_org
        item.DimensionIndexPointer = pydicom.datadict.tag_for_keyword(keyword)
        item.FunctionalGroupPointer = pydicom.datadict.tag_for_keyword("FrameContentSequence")
        dims.append(item)
    ds.DimensionIndexSequence = dims

    shared = Dataset()
    orient = Dataset()
    orient.ImageOrientationPatient = [float(f"{v:.10f}") for v in iop]
    shared.PlaneOrientationSequence = Sequence([orient])
    measures = Dataset()
    measures.PixelSpacing = [row_spacing, col_spacing]
    measures.SliceThickness = thickness
    shared.PixelMeasuresSequence = Sequence([measures])
    if slopes is None and intercepts is None:
        pvt = Dataset()
        pvt.RescaleSlope = 1
        pvt.RescaleIntercept = -1024 if modality == "CT" else 0
        pvt.RescaleType = "HU" if modality == "CT" else "US"
        shared.PixelValueTransformationSequence = Sequence([pvt])
    if window is not None:
        voi = Dataset()
        voi.WindowCenter = window[0]
        voi.WindowWidth = window[1]
        shared.FrameVOILUTSequence = Sequence([voi])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])

    per_frame = Sequence()
    for t, k in frames:
        item = Dataset()
        content = Dataset()
        content.StackID = "1"
        content.InStackPositionNumber = k + 1
        content.TemporalPositionIndex = t + 1
        content.DimensionIndexValues = [1, k + 1, t + 1]
        item.FrameContentSequence = Sequence([content])
        pos = Dataset()
        pos.ImagePositionPatient = [float(f"{v:.10f}") for v in lps[:3, 2] * k + lps[:3, 3]]
        item.PlanePositionSequence = Sequence([pos])
        if slopes is not None or intercepts is not None:
            pvt = Dataset()
            pvt.RescaleSlope = (slopes or [1.0] * n_k)[k]
            pvt.RescaleIntercept = (intercepts or [0.0] * n_k)[k]
            pvt.RescaleType = "HU" if modality == "CT" else "US"
            item.PixelValueTransformationSequence = Sequence([pvt])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame

    pixels = np.stack([volumes[t][:, :, k].T for t, k in frames]).astype("<i2")
    if pydicom.uid.UID(transfer_syntax).is_compressed:
        ds.compress(transfer_syntax, pixels, generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path, frames


# ----------------------------------------------------------------- reference readers
def sitk_read(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a series with SimpleITK's ImageSeriesReader (GDCM file sorting).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Values transposed to ``(I, J, K)`` (float64) and the 4x4 voxel -> LPS+ matrix
        (direction x spacing, origin).
    """
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(os.fspath(folder)))
    image = reader.Execute()
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0).astype(np.float64)
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    return array, lps


def reorient_like(
    array: np.ndarray, affine: np.ndarray, target_affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Flip/transpose ``array`` (and its affine) onto the voxel order of ``target_affine``.

    Used to compare a volume with ground truth stored in another voxel order: the
    reader sorts slices along the normal, so e.g. an "LPI" series comes back "LPS".
    """
    transform = nio.ornt_transform(nio.io_orientation(affine), nio.io_orientation(target_affine))
    out = nio.apply_orientation(array, transform)
    new_affine = affine @ nio.inv_ornt_aff(transform, array.shape)
    return out, new_affine


def add_functional_groups(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    spacing: tuple[float, float, float] = (0.9, 0.8, 1.2),
    origin: tuple[float, float, float] = (-30.0, -25.0, 40.0),
    frame_positions: list[int] | None = None,
) -> Path:
    """Give a multi-frame file without geometry (e.g. pydicom-data's ``emri_small``)
    axial per-frame functional groups, keeping its pixel data and transfer syntax.

    Frame f is placed at slice ``frame_positions[f]`` (default: reversed order, so a
    reader that trusts frame order gets it wrong). Returns the new file.
    """
    ds = pydicom.dcmread(source)
    n = int(ds.NumberOfFrames)
    positions = frame_positions if frame_positions is not None else list(range(n))[::-1]
    shared = Dataset()
    orient = Dataset()
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PlaneOrientationSequence = Sequence([orient])
    measures = Dataset()
    measures.PixelSpacing = [spacing[1], spacing[0]]
    measures.SliceThickness = spacing[2]
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = Sequence()
    for f in range(n):
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [origin[0], origin[1], origin[2] + spacing[2] * positions[f]]
        item.PlanePositionSequence = Sequence([pos])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.save_as(target, enforce_file_format=True)
    return Path(target)


def traced_peak(call):
    """Run ``call()`` under tracemalloc; return its result and the peak traced bytes."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak
