"""Plain records shared by the DICOM index and the assembler (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: ``progress(done, total)``: called as work advances (frames, files).


@dataclass(eq=False, slots=True)
class FrameRef:
    """One 2D image plane: a single-frame file, or one frame of a multi-frame file.

    Everything needed to place the frame in patient space and to decode it
    later without parsing its header again.

    Attributes
    ----------
    path : str
        File holding the frame.
    frame : int
        0-based frame number inside the file (0 for single-frame files).
    n_frames_in_file : int
        NumberOfFrames of the file (1 for single-frame files).
    sop_uid : str
        SOPInstanceUID of the file.
    instance_number : int or None
        InstanceNumber (kept for display only; never used to sort).
    iop : tuple of 6 float or None
        ImageOrientationPatient (LPS+ direction cosines of a row, then of a column).
    ipp : tuple of 3 float or None
        ImagePositionPatient: LPS+ position (mm) of the centre of the first pixel.
    pixel_spacing : tuple of 2 float or None
        PixelSpacing ``(row spacing, column spacing)`` in mm.
    slice_thickness, spacing_between_slices : float or None
        SliceThickness and SpacingBetweenSlices in mm, when present.
    rows, columns : int
        Frame size in pixels.
    bits_allocated, bits_stored, pixel_representation, samples_per_pixel : int
        Pixel format.
    photometric : str
        PhotometricInterpretation.
    slope, intercept : float
        Modality LUT (RescaleSlope / RescaleIntercept, or the frame's
        PixelValueTransformationSequence); 1 and 0 when absent.
    window : tuple of float or None
        First WindowCenter / WindowWidth.
    transfer_syntax : str
        Transfer syntax UID.
    pixel_offset : int or None
        Byte offset of this frame's pixel values in the file, for native
        (uncompressed, not deflated) encodings; None means: decode with pydicom.
    byteorder : str
        ``"<"`` or ``">"`` for native encodings.
    pixel_vr : str
        VR of the Pixel Data element in explicit-VR native files (``"OB"`` or
        ``"OW"``; ``""`` when implicit or encapsulated). 8-bit pixels in an OW
        element of a big-endian file are stored as byte-swapped 16-bit words.
    truncated : str
        Empty, or why the frame's pixel data cannot be complete.
    stack_id : str or None
        Enhanced multi-frame StackID.
    split_values : dict
        Values that may tell apart several images at one position (echo, time...).
    image_type : tuple of str
        ImageType (FrameType for enhanced frames).
    is_localizer : bool
        Whether this is a scout / localizer image.
    info : dict
        Series-level attributes of the file (shared by the frames of one file).
    """

    path: str
    frame: int = 0
    n_frames_in_file: int = 1
    sop_uid: str = ""
    instance_number: int | None = None
    iop: tuple[float, ...] | None = None
    ipp: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    rows: int = 0
    columns: int = 0
    bits_allocated: int = 16
    bits_stored: int = 16
    pixel_representation: int = 0
    samples_per_pixel: int = 1
    photometric: str = "MONOCHROME2"
    slope: float = 1.0
    intercept: float = 0.0
    window: tuple[float, float] | None = None
    transfer_syntax: str = ""
    pixel_offset: int | None = None
    byteorder: str = "<"
    pixel_vr: str = ""
    truncated: str = ""
    stack_id: str | None = None
    split_values: dict[str, Any] = field(default_factory=dict)
    image_type: tuple[str, ...] = ()
    is_localizer: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def frame_bytes(self) -> int:
        """Size of one decoded frame of stored values, in bytes."""
        return self.rows * self.columns * self.samples_per_pixel * self.bits_allocated // 8

    @property
    def label(self) -> str:
        """The file, and the frame number for multi-frame files (for messages)."""
        if self.n_frames_in_file > 1:
            return f"{self.path} (frame {self.frame + 1})"
        return self.path


@dataclass
class SeriesInfo:
    """One image series found by :func:`index_dicom` (one row of a series browser).

    A SeriesInstanceUID that mixes orientations, image sizes, localizers, echoes or
    time points is split into several ``SeriesInfo``; each has a unique :attr:`key`.

    Attributes
    ----------
    key : str
        Unique name: the SeriesInstanceUID, or ``"UID#2"``, ``"UID#3"``... for the
        further parts of a split series. Pass it to :func:`read_dicom`.
    uid : str
        SeriesInstanceUID.
    number : int or None
        SeriesNumber.
    description : str
        SeriesDescription.
    modality : str
        Modality (``"CT"``, ``"MR"``...).
    n_slices : int
        Number of image planes (frames) in the series, duplicates included.
    rows, columns : int
        Image size in pixels (``Rows`` = J, ``Columns`` = I of the volume).
    pixel_spacing : tuple of float or None
        ``(row spacing, column spacing)`` in mm.
    slice_spacing : float or None
        Expected step between adjacent slices along the slice normal (the
        volume grid's step, gaps excluded), in mm.
    orientation : str
        RAS+ axis code of the assembled volume (e.g. ``"LPS"``), ``""`` when the
        series has no patient geometry.
    is_localizer : bool
        Scout / localizer images (ImageType LOCALIZER).
    is_multiframe : bool
        Frames come from (enhanced) multi-frame files.
    transfer_syntaxes : list of str
        Names of the transfer syntaxes used by the files.
    files : list of str
        Files of the series, sorted by path.
    warnings : list of str
        Problems seen in the headers: gaps, duplicates, gantry tilt, irregular
        spacing, truncated files, missing geometry.
    study_uid, study_description, study_date, series_date : str
        Study / series identification (dates as DICOM ``YYYYMMDD``).
    acquisition_datetime : str
        AcquisitionDateTime, or AcquisitionDate + AcquisitionTime.
    body_part : str
        BodyPartExamined.
    patient_id, patient_name : str
        Patient identification (never printed in reports unless asked).
    frame_of_reference_uid : str
        FrameOfReferenceUID.
    sop_class : str
        Name of the SOP class (e.g. ``"CT Image Storage"``).
    image_type : tuple of str
        ImageType of the first frame.
    manufacturer : str
        Manufacturer.
    split_by : str
        Why this part was split off its SeriesInstanceUID (``""`` when not split).
    has_geometry : bool
        Whether every frame has ImageOrientationPatient, ImagePositionPatient and
        PixelSpacing (without them the series cannot be read as a volume).
    source : str
        The path given to :func:`index_dicom`.
    frames : list of FrameRef
        The image planes, in file order (what :func:`read_dicom_series` reads).
    unreadable : list of SkippedFile
        Files in the series' folders that could not be read (kind
        ``"unreadable"``): each may be one of its slices. Reported in the
        warnings; see :mod:`napari_medseg.io.dicom.completeness`.
    unreadable_ends : list of SkippedFile
        Those of :attr:`unreadable` that may be the first or last slice of the
        series, where no gap would show that it is missing: reading refuses
        unless ``allow_gaps``.
    """

    key: str
    uid: str
    number: int | None = None
    description: str = ""
    modality: str = ""
    n_slices: int = 0
    rows: int = 0
    columns: int = 0
    pixel_spacing: tuple[float, float] | None = None
    slice_spacing: float | None = None
    orientation: str = ""
    is_localizer: bool = False
    is_multiframe: bool = False
    transfer_syntaxes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    study_uid: str = ""
    study_description: str = ""
    study_date: str = ""
    series_date: str = ""
    acquisition_datetime: str = ""
    body_part: str = ""
    patient_id: str = ""
    patient_name: str = ""
    frame_of_reference_uid: str = ""
    sop_class: str = ""
    image_type: tuple[str, ...] = ()
    manufacturer: str = ""
    split_by: str = ""
    has_geometry: bool = True
    source: str = ""
    frames: list[FrameRef] = field(default_factory=list, repr=False)
    unreadable: list[SkippedFile] = field(default_factory=list)
    unreadable_ends: list[SkippedFile] = field(default_factory=list)

    def summary(self) -> str:
        """One line for listings and error messages (no patient data)."""
        parts = [self.key]
        if self.number is not None:
            parts.append(f"#{self.number}")
        parts.append(self.modality or "?")
        if self.description:
            parts.append(repr(self.description))
        size = f"{self.columns}x{self.rows}x{self.n_slices}"
        parts.append(size)
        if self.is_localizer:
            parts.append("localizer")
        if self.split_by:
            parts.append(f"[{self.split_by}]")
        return " ".join(parts)


@dataclass(frozen=True)
class SkippedFile:
    """A file :func:`index_dicom` did not turn into an image series, and why.

    Attributes
    ----------
    path : str
        The file.
    reason : str
        E.g. ``"not DICOM"``, ``"no pixel data (Basic Text SR)"``, ``"truncated"``.
    kind : str
        ``"not-dicom"``, ``"non-image"``, ``"unreadable"`` (a file that should
        hold an image and cannot be read: see
        :func:`~napari_medseg.io.dicom.header.read_header`), ``"dicomdir"`` or
        ``"outside"`` (a DICOMDIR reference outside the DICOMDIR's folder, never
        read) or ``"not-file"`` (a named pipe, socket or device, never opened).
    series_uid : str or None
        For an unreadable file, the SeriesInstanceUID its damaged header still
        shows; ``""`` when the header shows it has none (it was read past where
        the UID would be); None when unknown. A file with another (or no) UID is
        no slice of a series.
    """

    path: str
    reason: str
    kind: str
    series_uid: str | None = None


class SeriesList(list):
    """The list of :class:`SeriesInfo` returned by :func:`index_dicom`.

    A plain ``list`` with one more attribute, :attr:`skipped`: the files that
    held no image series (non-DICOM files, structured reports, RT structure
    sets, segmentations, presentation states, DICOMDIRs, unreadable files).
    """

    def __init__(self, items: Any = (), skipped: list[SkippedFile] | None = None) -> None:
        super().__init__(items)
        self.skipped: list[SkippedFile] = list(skipped or [])


def copy_frame(ref: FrameRef) -> FrameRef:
    """Shallow copy of a FrameRef (``info`` stays shared, split values copied)."""
    out = FrameRef(path=ref.path)
    for name in FrameRef.__slots__:  # type: ignore[attr-defined]
        setattr(out, name, getattr(ref, name))
    out.split_values = dict(ref.split_values)
    return out
