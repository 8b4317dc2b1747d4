"""Voxel grids in the orientations the tests cover, built from axis codes.

An affine here maps voxel indices to RAS+ mm (nibabel's convention).
"""

from __future__ import annotations

import numpy as np

#: RAS+ unit vector of each axis code letter.
AXIS_VECTORS = {
    "R": (1.0, 0.0, 0.0),
    "L": (-1.0, 0.0, 0.0),
    "A": (0.0, 1.0, 0.0),
    "P": (0.0, -1.0, 0.0),
    "S": (0.0, 0.0, 1.0),
    "I": (0.0, 0.0, -1.0),
}

#: name -> (axis codes of I, J, K, rotation in degrees about (x, y, z)).
ORIENTATIONS = {
    "axial_RAS": ("RAS", (0.0, 0.0, 0.0)),
    "axial_LPS": ("LPS", (0.0, 0.0, 0.0)),
    "PSR": ("PSR", (0.0, 0.0, 0.0)),
    "sagittal_PIL": ("PIL", (0.0, 0.0, 0.0)),
    "coronal_LIA": ("LIA", (0.0, 0.0, 0.0)),
    "oblique_LPS": ("LPS", (12.0, -7.0, 20.0)),
}


def rotation_matrix(angles_deg: tuple[float, float, float]) -> np.ndarray:
    """3x3 rotation about x, then y, then z (degrees)."""
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_affine(
    axcodes: str,
    spacing: tuple[float, float, float] = (0.8, 0.9, 2.5),
    origin: tuple[float, float, float] = (-31.5, 17.25, -104.0),
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """4x4 voxel -> RAS+ mm matrix whose I, J, K axes point along ``axcodes``.

    Parameters
    ----------
    axcodes : str
        Three letters from RLAPSI, e.g. ``"LPS"``.
    spacing : tuple of float
        Voxel size along I, J, K in mm.
    origin : tuple of float
        RAS+ position of voxel (0, 0, 0) in mm.
    rotation_deg : tuple of float
        Extra rotation (degrees about x, y, z) for oblique grids.
    """
    columns = np.array([AXIS_VECTORS[c] for c in axcodes]).T
    linear = rotation_matrix(rotation_deg) @ columns @ np.diag(spacing)
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = origin
    return affine


def orientation_affine(name: str, **kwargs) -> np.ndarray:
    """Affine of one of :data:`ORIENTATIONS` by name."""
    axcodes, rotation = ORIENTATIONS[name]
    return make_affine(axcodes, rotation_deg=rotation, **kwargs)


def voxel_of_ras(affine: np.ndarray, ras_mm) -> np.ndarray:
    """Voxel index (rounded to int) of an RAS+ position on the given grid."""
    ijk = np.linalg.solve(affine, np.append(np.asarray(ras_mm, dtype=float), 1.0))[:3]
    return np.round(ijk).astype(int)
