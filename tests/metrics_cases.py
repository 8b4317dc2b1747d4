"""Label maps with known geometry for the measurement tests (spheres, random blobs)."""

from __future__ import annotations

import math

import numpy as np
from geometry_cases import make_affine
from scipy import ndimage

SPACING = (0.8, 0.9, 2.0)


def sphere_mask(shape, affine, centre_mm, radius_mm):
    """Voxels whose centre lies within ``radius_mm`` of ``centre_mm`` (RAS mm)."""
    i, j, k = np.ogrid[: shape[0], : shape[1], : shape[2]]
    squared = np.zeros(shape)
    for row in range(3):
        a = affine[row]
        squared += (a[0] * i + a[1] * j + a[2] * k + (a[3] - centre_mm[row])) ** 2
    return squared <= radius_mm**2


def grid_around(radius_mm, spacing, margin_mm=3.0, rotation=(0.0, 0.0, 0.0)):
    """Shape and affine of a grid centred on the origin holding a sphere of radius_mm."""
    extent = 2 * (radius_mm + margin_mm) + (20.0 if any(rotation) else 0.0)
    shape = tuple(int(math.ceil(extent / s)) + 1 for s in spacing)
    affine = make_affine("RAS", spacing=spacing, origin=(0.0, 0.0, 0.0), rotation_deg=rotation)
    centre = affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    affine[:3, 3] = -centre
    return shape, affine


def random_blobs(shape, n_labels, seed, smooth=2.0):
    """A multi-label map of smooth random blobs (labels 1..n_labels)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(n_labels + 1, *shape)), (0, *(smooth,) * 3))
    field[0] += 0.12  # background wins where no blob is strong
    return np.argmax(field, axis=0).astype(np.uint8)


def perturbed(labels, seed):
    """A reference differing from ``labels``: dilated, shifted and with one label eroded."""
    rng = np.random.default_rng(seed)
    out = np.roll(labels, shift=tuple(rng.integers(-1, 2, 3)), axis=(0, 1, 2))
    grow = ndimage.grey_dilation(out, size=(2, 2, 1))
    out = np.where(out == 0, grow, out)
    target = int(rng.integers(1, labels.max() + 1))
    eroded = ndimage.binary_erosion(out == target)
    out[(out == target) & ~eroded] = 0
    return out.astype(labels.dtype)
