"""Nearest-neighbour label resampling between grids, checked against SimpleITK."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from geometry_cases import ORIENTATIONS, make_affine, orientation_affine

from napari_medseg.resample import resample_labels, same_grid
from napari_medseg.volume import RAS_TO_LPS


def _sitk_image(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image (LPS) of an (I, J, K) array on a RAS affine."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    lps = RAS_TO_LPS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    image.SetDirection((lps[:3, :3] / spacing).flatten().tolist())
    return image


def _sitk_resample(labels, affine, target_shape, target_affine) -> np.ndarray:
    source = _sitk_image(labels, affine)
    reference = _sitk_image(np.zeros(target_shape, dtype=labels.dtype), target_affine)
    result = sitk.Resample(source, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(result).transpose(2, 1, 0)


def _blobs(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    grid = np.indices(shape)
    for value in range(1, 5):
        centre = rng.uniform(0.2, 0.8, 3) * np.array(shape)
        radius = rng.uniform(0.15, 0.3) * min(shape)
        inside = ((grid - centre[:, None, None, None]) ** 2).sum(0) < radius**2
        labels[inside] = value
    return labels


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_model_grid_round_trip_matches_simpleitk(orientation):
    """Reorient + rescale (what a model grid is), then back: same labels as SimpleITK."""
    labels = _blobs((23, 19, 11))
    affine = orientation_affine(orientation, spacing=(0.8, 0.9, 2.5), origin=(-10, 20, 5))
    target_affine = np.diag([1.5, 1.5, 1.5, 1.0])
    target_affine[:3, 3] = affine[:3, 3] - 4.0
    target_shape = (16, 17, 20)
    ours = resample_labels(labels, affine, target_shape, target_affine)
    theirs = _sitk_resample(labels, affine, target_shape, target_affine)
    mismatch = np.count_nonzero(ours != theirs)
    # rounding exactly half-way between two voxels may differ; nothing else may
    assert mismatch <= 0.002 * ours.size
    back = resample_labels(ours, target_affine, labels.shape, affine)
    assert np.count_nonzero(back != _sitk_resample(ours, target_affine, labels.shape, affine)) <= (
        0.002 * back.size
    )


def test_identity_returns_same_labels_and_dtype():
    labels = _blobs((12, 13, 14)).astype(np.uint16)
    affine = make_affine("LPS", spacing=(0.7, 0.7, 3.0))
    out = resample_labels(labels, affine, labels.shape, affine)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, labels)
    assert same_grid(labels.shape, affine, out.shape, affine)


def test_oblique_target_matches_simpleitk():
    labels = _blobs((30, 28, 26), seed=3)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    angle = np.radians(17.0)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    target_affine = np.eye(4)
    target_affine[:3, :3] = rotation * 1.3
    target_affine[:3, 3] = [8.0, -3.0, 2.0]
    ours = resample_labels(labels, affine, (20, 20, 18), target_affine)
    theirs = _sitk_resample(labels, affine, (20, 20, 18), target_affine)
    assert np.count_nonzero(ours != theirs) <= 0.002 * ours.size
    assert np.unique(ours).size > 2  # the blobs are really in the target field of view


def test_outside_source_is_filled():
    labels = np.ones((4, 4, 4), dtype=np.uint8)
    affine = np.eye(4)
    target = np.eye(4)
    target[:3, 3] = [2.0, 0.0, 0.0]
    out = resample_labels(labels, affine, (4, 4, 4), target, fill=0)
    assert out[:2].all() and not out[2:].any()


def test_centre_on_the_field_of_view_edge_takes_the_edge_voxel():
    """A model grid whose last centre lies on the source's FOV edge (MONAI's Spacing makes
    these) keeps the edge slice's label; only centres beyond the edge get ``fill``."""
    labels = np.zeros((2, 2, 40), dtype=np.uint8)
    labels[..., -1] = 7
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    target = np.diag([1.0, 1.0, 1.0, 1.0])  # 100 slices of 1 mm; index 98 -> source 39.2
    target_shape = (2, 2, 100)
    out = resample_labels(labels, affine, target_shape, target)
    # source index of target k is k / 2.5: 97.5 / 2.5 = 39.0 ... 98.75 / 2.5 = 39.5 is the edge
    k = np.arange(100)
    expected_seven = (k / 2.5 >= 38.5) & (k / 2.5 <= 39.5)
    assert (out[0, 0] == 7).tolist() == expected_seven.tolist()
    assert out[0, 0, 99] == 0  # 39.6: beyond the edge
