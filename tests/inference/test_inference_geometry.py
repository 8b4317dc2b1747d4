"""Labels come back on the source grid, in every voxel order, where the anatomy is.

A TorchScript "threshold" network labels voxels brighter than a level, so the expected
output is known exactly: with no resampling the labels must equal the thresholded scan
voxel for voxel; with resampling to another spacing a bright cube placed at known RAS
millimetres must come back at the same RAS position.
"""

from __future__ import annotations

import numpy as np
import pytest
from geometry_cases import ORIENTATIONS, orientation_affine
from model_factory import write_threshold_model

from napari_medseg.inference.segmenter import Segmenter
from napari_medseg.volume import Volume

SHAPE = (30, 28, 12)
SPACING = (0.8, 0.9, 2.5)
HALF_SIDE_MM = 6.0


def voxel_centres_ras(shape, affine) -> np.ndarray:
    """RAS mm of every voxel centre, shape (*shape, 3)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def cube_scan(name: str) -> tuple[Volume, np.ndarray, np.ndarray]:
    """A scan in orientation ``name`` with a 1000-valued cube (12 mm, RAS-aligned) in it."""
    affine = orientation_affine(name, spacing=SPACING)
    ras = voxel_centres_ras(SHAPE, affine)
    centre = ras[13, 12, 6] + np.array([0.3, -0.2, 0.4])
    # Chebyshev distance to the cube's surface, in mm: < 0 inside
    distance = np.abs(ras - centre).max(axis=-1) - HALF_SIDE_MM
    array = np.where(distance < 0, 1000.0, 0.0).astype(np.float32)
    return Volume(array, affine), distance, centre


@pytest.fixture(scope="module")
def threshold_3d(tmp_path_factory):
    folder = tmp_path_factory.mktemp("threshold")
    return {
        "same": write_threshold_model(
            folder, level=500.0, name="same", roi_size=(8, 8, 8), target_orientation="RAS"
        ),
        "resampled": write_threshold_model(
            folder,
            level=500.0,
            name="resampled",
            roi_size=(8, 8, 8),
            target_orientation="RAS",
            target_spacing=(1.5, 1.5, 1.5),
        ),
        "2d": write_threshold_model(
            folder,
            level=500.0,
            name="flat",
            spatial_dims=2,
            roi_size=(8, 8),
            target_orientation="LPS",
            target_spacing=(1.2, 1.2, 0.0),
        ),
    }


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_labels_exact_on_the_source_grid(threshold_3d, name):
    scan, _, _ = cube_scan(name)
    result = Segmenter(threshold_3d["same"], device="cpu").predict(scan)
    assert result.labels.shape == scan.shape
    assert np.array_equal(result.affine, scan.affine)
    assert np.array_equal(result.labels, (scan.array > 500).astype(np.uint8))


@pytest.mark.parametrize("model", ["resampled", "2d"])
@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_cube_lands_at_the_same_ras_position(threshold_3d, name, model):
    scan, distance, centre = cube_scan(name)
    result = Segmenter(threshold_3d[model], device="cpu").predict(scan)
    assert result.labels.shape == scan.shape
    assert np.array_equal(result.affine, scan.affine)
    assert result.settings["model_grid_shape"] != list(scan.shape)  # it was resampled
    labels = result.labels
    # far inside the cube: labelled; far outside: not (model voxels are 1.2-1.5 mm)
    assert labels[distance < -4.0].all()
    assert not labels[distance > 4.0].any()
    # the labelled region's centroid is the cube's centre, in RAS mm
    ras = voxel_centres_ras(scan.shape, result.affine)
    centroid = ras[labels > 0].mean(axis=0)
    assert np.abs(centroid - centre).max() < 1.0
