"""Where the bundled sample scans live (core: no napari).

The scans are kept once, in the repository's ``sample_scans/`` folder; wheels carry
them as ``napari_medseg/sample_scans`` (see ``pyproject.toml``), editable installs
find them at the repository root.
"""

from __future__ import annotations

from pathlib import Path

from napari_medseg.io.errors import ScanReadError

#: Sample files, by key: the chest CT (NIfTI), its tumour contour, the DICOM series.
SAMPLE_FILES = {
    "chest_ct": "chest_ct.nii.gz",
    "chest_ct_tumour": "chest_ct_tumour.nii.gz",
    "chest_ct_dicom": "chest_ct_dicom",
}


def sample_scans_dir() -> Path:
    """Folder holding the bundled sample scans.

    Raises
    ------
    ScanReadError
        When neither an installed copy nor the repository folder exists.
    """
    package_dir = Path(__file__).resolve().parent
    candidates = (package_dir / "sample_scans", package_dir.parents[1] / "sample_scans")
    for folder in candidates:
        if (folder / SAMPLE_FILES["chest_ct"]).exists():
            return folder
    raise ScanReadError(
        candidates[-1],
        "the bundled sample scans are missing.",
        "Reinstall napari-medseg, or run `python scripts/make_sample_scans.py` in a checkout.",
    )


def sample_path(key: str) -> Path:
    """Path of one sample by key (see :data:`SAMPLE_FILES`)."""
    if key not in SAMPLE_FILES:
        raise KeyError(f"unknown sample {key!r}; choose one of {sorted(SAMPLE_FILES)}")
    return sample_scans_dir() / SAMPLE_FILES[key]
