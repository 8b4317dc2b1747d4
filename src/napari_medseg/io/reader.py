"""One entry point for every supported input: :func:`read_scan`."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from napari_medseg.errors import EmptyFolderError, NotAScanError, ScanReadError
from napari_medseg.io.nifti import NIFTI_PAIR_SUFFIXES, is_nifti_path, read_nifti
from napari_medseg.io.nonfinite import counts_nonfinite
from napari_medseg.io.nrrd import is_nrrd_path, read_nrrd
from napari_medseg.io.sniff import (
    check_readable,
    has_dicom_preamble,
    has_nifti_magic,
    is_dicomdir_name,
)
from napari_medseg.volume import Volume


@counts_nonfinite  # NaN/inf: counted, warned about, or refused (io/nonfinite.py)
def read_scan(
    path: str | PathLike,
    *,
    series_key: str | None = None,
    volume_index: int | None = None,
    allow_gaps: bool = False,
) -> Volume:
    """Read a NIfTI file, a NRRD file, a DICOM file, a DICOM folder or a DICOMDIR.

    Parameters
    ----------
    path : path
        ``.nii``/``.nii.gz`` file; ``.nrrd``/``.nhdr`` (a 3D Slicer ``.seg.nrrd`` is
        read as a label map, see :func:`napari_medseg.io.nrrd.read_nrrd`); a DICOM file;
        a folder searched recursively for DICOM; or a ``DICOMDIR``.
    series_key : str, optional
        Which DICOM series to read when the folder holds several (a
        ``SeriesInfo.key`` from :func:`napari_medseg.io.dicom.index_dicom` or a
        SeriesInstanceUID).
    volume_index : int, optional
        Which volume of a 4D NIfTI to read.
    allow_gaps : bool
        Read a DICOM series with missing slices, filling them at their true
        positions with a warning, instead of raising.

    Returns
    -------
    Volume
        Voxels in stored order ``(I, J, K)`` with the voxel -> RAS+ mm affine.

    Raises
    ------
    ScanReadError
        Or one of its subclasses, naming the file and what to do.
    """
    path = Path(path)
    check_readable(path)  # missing, permission denied, empty: said as such
    if is_nrrd_path(path) and not path.is_dir():
        return read_nrrd(path)
    if is_volume_file(path):
        return read_nifti(path, volume_index=volume_index)
    from napari_medseg.io.dicom import read_dicom

    if path.is_dir() and is_nifti_path(path.name):
        try:
            return read_dicom(path, series_key=series_key, allow_gaps=allow_gaps)
        except EmptyFolderError as error:
            raise NotAScanError(
                path,
                "is a folder, not a NIfTI file, and holds no DICOM image.",
                "Give the path of the .nii/.nii.gz file itself.",
            ) from error

    if path.is_file() and not is_dicomdir_name(path) and not has_dicom_preamble(path):
        # headerless (raw dataset) DICOM exists; let pydicom judge, but name the file
        try:
            return read_dicom(path, series_key=series_key, allow_gaps=allow_gaps)
        except ScanReadError:
            raise
        except Exception as error:
            raise NotAScanError(
                path,
                f"neither NIfTI (.nii/.nii.gz) nor DICOM ({error}).",
                "Open a NIfTI file, a DICOM file or a folder of DICOM files.",
            ) from error
    return read_dicom(path, series_key=series_key, allow_gaps=allow_gaps)


def is_volume_file(path: str | PathLike) -> bool:
    """Whether ``path`` is a NIfTI or NRRD file (by name or by its magic), or half of a
    NIfTI pair.

    Names decide even before the file exists (so the error names it); everything
    else (folders, DICOM files, DICOMDIR) is for the DICOM reader.
    """
    path = Path(path)
    if path.is_dir():
        return False
    name = path.name.lower()
    if is_nifti_path(name) or name.endswith(NIFTI_PAIR_SUFFIXES) or is_nrrd_path(name):
        return True
    if not path.is_file():
        return False
    if name.endswith(".img") and path.with_suffix(".hdr").exists():
        return True
    return has_nifti_magic(path)
