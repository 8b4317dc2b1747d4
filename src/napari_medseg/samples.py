"""Where the bundled sample scans live (core: no napari).

The scans are kept once, in the repository's ``sample_scans/`` folder (made by
``scripts/make_sample_scans.py``). They are looked for, in order, in:

1. the folder named by the ``MEDSEG_SAMPLE_SCANS`` environment variable;
2. ``napari_medseg/sample_scans`` inside the installed package (wheels carry them
   there, see ``pyproject.toml``);
3. ``sample_scans/`` at the repository root (editable install or source checkout).
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_medseg.errors import ScanReadError

#: Environment variable that points to a folder holding the sample files.
SAMPLE_ENV = "MEDSEG_SAMPLE_SCANS"

#: Sample files, by key: the chest CT (NIfTI), its tumour contour, the DICOM series, and
#: a T1 brain MR (Colin27).
SAMPLE_FILES = {
    "chest_ct": "chest_ct.nii.gz",
    "chest_ct_tumour": "chest_ct_tumour.nii.gz",
    "chest_ct_dicom": "chest_ct_dicom",
    "brain_t1": "brain_t1.nii.gz",
}


def sample_dirs() -> list[Path]:
    """Candidate ``sample_scans`` folders, in the order they are searched."""
    package_dir = Path(__file__).resolve().parent
    candidates = []
    if os.environ.get(SAMPLE_ENV):
        candidates.append(Path(os.environ[SAMPLE_ENV]))
    candidates += [package_dir / "sample_scans", package_dir.parents[1] / "sample_scans"]
    return list(dict.fromkeys(candidates))


def sample_path(key: str) -> Path:
    """Path of one sample by key (see :data:`SAMPLE_FILES`).

    Raises
    ------
    KeyError
        For an unknown key.
    ScanReadError
        When no candidate folder holds the sample; the message lists where it looked.
    """
    if key not in SAMPLE_FILES:
        raise KeyError(f"unknown sample {key!r}; choose one of {sorted(SAMPLE_FILES)}")
    name = SAMPLE_FILES[key]
    for folder in sample_dirs():
        if (folder / name).exists():
            return folder / name
    looked = ", ".join(str(folder) for folder in sample_dirs())
    raise ScanReadError(
        name,
        f"sample scan not found (looked in {looked}).",
        "Reinstall napari-medseg, run `python scripts/make_sample_scans.py` in a source "
        f"checkout, or set {SAMPLE_ENV} to the folder that holds it.",
    )
