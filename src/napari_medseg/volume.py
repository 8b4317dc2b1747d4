"""The :class:`Volume`: a voxel array that always travels with its geometry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Flip that turns RAS+ coordinates into DICOM LPS+ coordinates (and back).
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class ScanMetadata:
    """What is known about where a volume came from.

    Attributes
    ----------
    source : str
        Path of the file or folder the volume was read from ("" when made in memory).
    format : str
        ``"nifti"``, ``"dicom"`` or ``"memory"``.
    modality : str
        DICOM modality (``"CT"``, ``"MR"``...) or ``""`` when unknown (NIfTI).
    units : str
        Intensity units: ``"HU"`` for CT with the modality LUT applied, else ``""``.
    series_uid, study_uid, frame_of_reference_uid : str
        DICOM identifiers ("" for NIfTI).
    series_description : str
        DICOM SeriesDescription, or the NIfTI ``descrip`` field.
    window : tuple of float or None
        Default display window ``(center, width)`` from the file, in ``units``.
    qform_code, sform_code : int
        NIfTI codes to keep on write (DICOM: both 1, scanner-anatomical).
    files : list of str
        DICOM files the volume was assembled from, in slice order (empty for NIfTI).
    warnings : list of str
        Problems found while reading that did not stop it (gaps, tilt, duplicates,
        non-finite voxels).
    extra : dict
        Format-specific values (e.g. patient identifiers, echo time); never printed
        in reports unless asked.
    nonfinite_voxels : int
        How many voxels are NaN or infinite (float scans only; counted once by
        ``read_scan``, see :mod:`napari_medseg.io.nonfinite`). 0 for volumes made in
        memory, which are not counted.
    """

    source: str = ""
    format: str = "memory"
    modality: str = ""
    units: str = ""
    series_uid: str = ""
    study_uid: str = ""
    frame_of_reference_uid: str = ""
    series_description: str = ""
    window: tuple[float, float] | None = None
    qform_code: int = 1
    sform_code: int = 1
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    nonfinite_voxels: int = 0


@dataclass
class Volume:
    """A 3D scan or label map with its voxel-to-patient geometry.

    Attributes
    ----------
    array : numpy.ndarray
        Voxel values, shape ``(I, J, K)`` in the order the file stores them
        (nibabel's convention; for DICOM, I runs along a row = column index,
        J along a column = row index, K along the slices).
    affine : numpy.ndarray
        4x4 float64 matrix mapping voxel indices ``(i, j, k, 1)`` to RAS+
        patient coordinates in millimetres (nibabel's convention). May hold a
        shear when a CT was acquired with gantry tilt.
    metadata : ScanMetadata
        Provenance and display hints.
    """

    array: np.ndarray
    affine: np.ndarray
    metadata: ScanMetadata = field(default_factory=ScanMetadata)

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")
        if self.array.ndim != 3:
            raise ValueError(f"a Volume is 3D, got an array of shape {self.array.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxel counts along ``(I, J, K)``."""
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        """Voxel step along each array axis, shape (3,), in mm."""
        from napari_medseg.geometry import voxel_spacing

        return voxel_spacing(self.affine)

    @property
    def lps_affine(self) -> np.ndarray:
        """4x4 voxel -> DICOM LPS+ mm matrix (the convention of SimpleITK/ITK)."""
        return RAS_TO_LPS @ self.affine

    @property
    def orientation(self) -> str:
        """Three-letter RAS+ axis code of the voxel axes, e.g. ``"LPS"`` or ``"PSR"``."""
        from napari_medseg.geometry import orientation_code

        return orientation_code(self.affine)
