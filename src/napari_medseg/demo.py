"""The main job on the bundled sample, headless (the napari version is in ``_napari``).

Reads the sample chest CT from its NIfTI file and from its JPEG 2000 DICOM series,
checks that both give the same voxels on the same patient grid, converts the DICOM
series to NIfTI, and measures the tumour contour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_medseg.io.nifti import write_nifti_like
from napari_medseg.io.reader import read_scan
from napari_medseg.samples import sample_path


def run_headless_demo(out_dir: Path, echo=print) -> dict:
    """Run the headless demo and report what it did.

    Parameters
    ----------
    out_dir : pathlib.Path
        Folder for the outputs (created if missing; existing files are not replaced).
    echo : callable
        Receives each line of the report (``print`` by default).

    Returns
    -------
    dict
        ``max_affine_difference_mm``, ``voxels_identical``, ``tumour_volume_ml``,
        ``tumour_mean_hu`` and ``outputs`` (list of written paths).
    """
    nifti_path = sample_path("chest_ct")
    dicom_path = sample_path("chest_ct_dicom")
    echo(f"Reading the sample CT from NIfTI: {nifti_path}")
    from_nifti = read_scan(nifti_path)
    echo(f"Reading the sample CT from DICOM: {dicom_path}")
    from_dicom = read_scan(dicom_path)
    for name, volume in (("NIfTI", from_nifti), ("DICOM", from_dicom)):
        spacing = " x ".join(f"{s:.3f}" for s in volume.spacing)
        echo(
            f"  {name}: {' x '.join(map(str, volume.shape))} voxels, {spacing} mm, "
            f"orientation {volume.orientation}, {volume.array.dtype}, "
            f"{volume.array.min()} .. {volume.array.max()} {volume.metadata.units}"
        )
        for warning in volume.metadata.warnings:
            echo(f"  {name} warning: {warning}")
    affine_difference = float(np.abs(from_nifti.affine - from_dicom.affine).max())
    identical = from_nifti.shape == from_dicom.shape and bool(
        np.array_equal(from_nifti.array, from_dicom.array)
    )
    echo(f"  same voxels: {identical}; largest affine difference: {affine_difference:.2e} mm")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    converted = out_dir / "chest_ct_from_dicom.nii.gz"
    outputs = []
    if converted.exists():
        echo(f"  {converted} exists; left as it is")
    else:
        write_nifti_like(
            converted,
            from_dicom.array,
            from_dicom.affine,
            from_dicom,
            description=from_dicom.metadata.series_description,
        )
        outputs.append(str(converted))
        echo(f"Converted the DICOM series to {converted}")

    tumour = read_scan(sample_path("chest_ct_tumour"))
    mask = tumour.array > 0
    voxel_ml = abs(float(np.linalg.det(tumour.affine[:3, :3]))) / 1000.0
    volume_ml = float(mask.sum()) * voxel_ml
    mean_hu = float(from_nifti.array[mask].mean()) if mask.any() else float("nan")
    echo(f"Tumour contour: {int(mask.sum())} voxels, {volume_ml:.2f} mL, mean {mean_hu:.1f} HU")
    return {
        "max_affine_difference_mm": affine_difference,
        "voxels_identical": identical,
        "tumour_volume_ml": volume_ml,
        "tumour_mean_hu": mean_hu,
        "outputs": outputs,
    }


def open_in_napari(path: str | Path | None) -> None:
    """Open napari with ``path`` (default: the sample) and the plugin's widgets; blocks."""
    from napari_medseg._napari.launch import launch_viewer

    launch_viewer(path)
