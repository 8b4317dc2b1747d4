"""Helpers shared by the GUI tests (file makers and napari coordinate conversions)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from napari_medseg.geometry import RAS_TO_WORLD


def save_nifti(
    path: Path,
    array: np.ndarray,
    affine: np.ndarray,
    *,
    qform_code: int = 1,
    sform_code: int = 1,
) -> Path:
    """Write ``array`` with ``affine`` (and these codes) with nibabel only."""
    image = nib.Nifti1Image(array, affine)
    image.header.set_qform(affine, code=qform_code)
    image.header.set_sform(affine, code=sform_code)
    nib.save(image, path)
    return path


def grid_positions(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """RAS+ mm of every voxel centre, shape ``shape + (3,)``."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def ras_to_world(ras) -> np.ndarray:
    """RAS+ mm -> napari world (S, P, L) mm."""
    return (RAS_TO_WORLD @ np.append(np.asarray(ras, dtype=float), 1.0))[:3]


def voxel_world(affine: np.ndarray, ijk) -> np.ndarray:
    """napari world position (mm) of a source voxel of a grid with this affine."""
    return ras_to_world(affine[:3, :3] @ np.asarray(ijk, dtype=float) + affine[:3, 3])


PLUGIN = "napari-medseg"


def dock(viewer, display_name: str):
    """Dock one of the plugin's widgets through the manifest; return the widget itself."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, display_name)
    return widget


def open_sample(viewer, key: str = "chest_ct"):
    """Open a bundled sample through the manifest; return ``(image_layer, labels_layer)``."""
    layers = viewer.open_sample(PLUGIN, key)
    image = next(layer for layer in layers if layer._type_string == "image")
    labels = next(layer for layer in layers if layer._type_string == "labels")
    return image, labels
