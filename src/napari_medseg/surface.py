"""Surfaces of binary masks, surface distances and maximum diameters, in patient mm.

Conventions (the same as MONAI's ``monai.metrics`` with ``use_subvoxels=False``):

* The **surface** of a mask is the set of its voxels that have at least one
  6-connected neighbour outside it (``mask & ~binary_erosion(mask)`` with a cross
  structuring element); voxels on the volume border count as surface.
* **Surface distances** go from each surface voxel centre of one mask to the
  nearest surface voxel centre of the other, in mm. Positions are mapped through the
  grid's full 3x3 voxel -> mm matrix, so oblique and sheared (gantry-tilt) grids give
  true physical distances. (MONAI takes per-axis spacings only; the two agree on any
  grid whose axes are orthogonal, which is every grid except a sheared one.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Below this many points the maximum diameter is found by brute force.
_BRUTE_FORCE_POINTS = 1500
#: Rows per block when comparing all pairs of points.
_PAIR_BLOCK = 512


def surface_mask(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a boolean mask (6-connected erosion; the array border is outside).

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean array ``(I, J, K)``.

    Returns
    -------
    numpy.ndarray
        Boolean array of the same shape.
    """
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask)


def voxel_points_mm(indices: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """Map voxel indices ``(N, 3)`` through a 3x3 voxel -> mm matrix (no translation)."""
    return np.asarray(indices, dtype=np.float64) @ np.asarray(linear, dtype=np.float64).T


@dataclass
class SurfaceDistances:
    """Distances between two surfaces, in mm.

    Attributes
    ----------
    labels_to_reference : numpy.ndarray
        For each surface voxel of the label mask, the distance to the nearest surface
        voxel of the reference mask (shape (N,), float64; all ``inf`` when the
        reference is empty).
    reference_to_labels : numpy.ndarray
        The same the other way round (shape (M,)).
    """

    labels_to_reference: np.ndarray
    reference_to_labels: np.ndarray

    def hausdorff(self, percentile: float | None = None) -> float:
        """Symmetric Hausdorff distance, mm: the larger of the two directed values.

        Each directed value is the maximum (``percentile=None``) or the given
        percentile (numpy's linear interpolation, as ``torch.quantile`` in MONAI) of
        that direction's distances. NaN when both surfaces are empty, ``inf`` when
        exactly one is.
        """
        directed = []
        for d in (self.labels_to_reference, self.reference_to_labels):
            if d.size == 0:
                continue
            if np.isinf(d[0]):  # the other surface is empty: every distance is inf, and
                directed.append(float("inf"))  # numpy's percentile would give inf - inf
                continue
            directed.append(float(d.max() if percentile is None else np.percentile(d, percentile)))
        return max(directed) if directed else float("nan")

    def average_symmetric(self) -> float:
        """Average symmetric surface distance (ASSD), mm: the mean of both sets together.

        ``(sum(d_LR) + sum(d_RL)) / (N + M)``, as MONAI's
        ``compute_average_surface_distance(symmetric=True)``. NaN when both are empty.
        """
        n = self.labels_to_reference.size + self.reference_to_labels.size
        if n == 0:
            return float("nan")
        return float((self.labels_to_reference.sum() + self.reference_to_labels.sum()) / n)

    def surface_dice(self, tolerance_mm: float) -> float:
        """Normalised surface Dice at ``tolerance_mm``: the share of surface voxels of
        both masks within the tolerance of the other surface (``<=``), in [0, 1].

        Counts surface voxels (MONAI's ``compute_surface_dice`` with
        ``use_subvoxels=False``), not surface areas. NaN when both are empty, 0 when
        exactly one is.
        """
        n = self.labels_to_reference.size + self.reference_to_labels.size
        if n == 0:
            return float("nan")
        hits = np.count_nonzero(self.labels_to_reference <= tolerance_mm) + np.count_nonzero(
            self.reference_to_labels <= tolerance_mm
        )
        return float(hits) / n


def surface_distances(
    labels_mask: np.ndarray, reference_mask: np.ndarray, linear: np.ndarray
) -> SurfaceDistances:
    """Surface-to-surface distances between two boolean masks on one grid.

    Parameters
    ----------
    labels_mask, reference_mask : numpy.ndarray
        Boolean arrays ``(I, J, K)`` of the same shape (a crop is fine when it keeps
        one background voxel around both masks, or reaches the volume border).
    linear : numpy.ndarray
        3x3 voxel -> mm matrix of the grid (``affine[:3, :3]``).

    Returns
    -------
    SurfaceDistances
        Exact Euclidean nearest-neighbour distances (KD-tree over surface voxel
        centres), in mm.
    """
    from scipy.spatial import cKDTree

    points = [
        voxel_points_mm(np.argwhere(surface_mask(m)), linear) for m in (labels_mask, reference_mask)
    ]
    out = []
    for source, target in ((points[0], points[1]), (points[1], points[0])):
        if source.shape[0] == 0:
            out.append(np.zeros(0))
        elif target.shape[0] == 0:
            out.append(np.full(source.shape[0], np.inf))
        else:
            out.append(cKDTree(target, leafsize=32).query(source, k=1)[0])
    return SurfaceDistances(out[0], out[1])


def _farthest_pair_distance(points: np.ndarray) -> float:
    """Largest distance between two rows of ``points`` (N, 3), by blocks of all pairs."""
    from scipy.spatial.distance import cdist

    best = 0.0
    for start in range(0, points.shape[0], _PAIR_BLOCK):
        block = points[start : start + _PAIR_BLOCK]
        best = max(best, float(cdist(block, points[start:], "sqeuclidean").max()))
    return float(np.sqrt(best))


def max_diameter_mm(points_mm: np.ndarray) -> float:
    """Largest distance between two points (the maximum 3D diameter), in mm.

    Parameters
    ----------
    points_mm : numpy.ndarray
        Shape (N, 3): positions in mm, e.g. surface voxel centres from
        :func:`voxel_points_mm`.

    Returns
    -------
    float
        Exact on the given points: the farthest pair is searched among the vertices
        of their convex hull (``scipy.spatial.ConvexHull``; all pairs for small or flat
        point sets). 0 for a single point, NaN for none.

    Notes
    -----
    Measured between voxel *centres*, so a line of n voxels along an axis of spacing
    s is ``(n - 1) * s`` long and a single voxel has diameter 0. Mesh-based tools
    (e.g. PyRadiomics' Maximum3DDiameter on a marching-cubes surface) report values
    up to about one voxel larger.
    """
    points = np.asarray(points_mm, dtype=np.float64)
    if points.shape[0] == 0:
        return float("nan")
    if points.shape[0] == 1:
        return 0.0
    if points.shape[0] > _BRUTE_FORCE_POINTS:
        from scipy.spatial import ConvexHull, QhullError

        try:
            points = points[ConvexHull(points).vertices]
        except QhullError:  # flat or collinear: joggle, keeping every extreme point
            points = points[ConvexHull(points, qhull_options="QJ").vertices]
    return _farthest_pair_distance(points)


def mask_diameter_mm(mask: np.ndarray, linear: np.ndarray) -> float:
    """Maximum 3D diameter (mm) of a boolean mask: :func:`max_diameter_mm` of its surface.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean array ``(I, J, K)``, e.g. a structure cropped to its bounding box (the
        farthest pair lies on the convex hull, so the crop border changes nothing).
    linear : numpy.ndarray
        3x3 voxel -> mm matrix (``affine[:3, :3]``).
    """
    return max_diameter_mm(voxel_points_mm(np.argwhere(surface_mask(mask)), linear))
