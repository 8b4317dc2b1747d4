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
* The **maximum 3D diameter** of a mask is the largest distance between two of its
  voxel centres, in mm; the two lie on the convex hull of the centres, so it is
  searched among a few candidate voxels (:func:`hull_candidates`), never all pairs.

Every result is exact (no sampling or approximation): the shortcuts only skip work
that provably cannot change it, so a live report re-measuring one edited label in a
crop gives the same numbers as a full report.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

#: Below this many points the maximum diameter is found by brute force.
_BRUTE_FORCE_POINTS = 1500
#: Rows per block when comparing all pairs of points.
_PAIR_BLOCK = 512
#: Sizes of the direction sets used in turn to rule out points as ends of the farthest
#: pair (covering angles about 28, 20 and 10 degrees).
_DIRECTION_SETS = (32, 64, 256)
#: Projections (directions x points) computed at once when ruling out points.
_PROJECTION_ELEMENTS = 1 << 21
#: Surface distances: margin (mm) around the voxels to look up within which a KD-tree
#: of the nearby target voxels is tried first ...
_LOCAL_MARGIN_MM = 10.0
#: ... unless that box holds more than this share of the target voxels.
_LOCAL_SHARE = 0.5
#: A direction set that keeps more than this share of the points is not refined further.
_PRUNE_ENOUGH = 0.8


def _along(axis: int, index: slice | int) -> tuple:
    """Index expression taking ``index`` along ``axis`` and everything along the others."""
    return (slice(None),) * axis + (index,)


def surface_mask(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a boolean mask (6-connected erosion; the array border is outside).

    The same as ``mask & ~scipy.ndimage.binary_erosion(mask)`` (the default cross
    structuring element, border value 0), by shifted views: a voxel is inside when it
    and its two neighbours along every axis are in the mask.

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
    interior = mask.copy(order="K")
    for axis in range(mask.ndim):
        interior[_along(axis, 0)] = False
        interior[_along(axis, -1)] = False
        inner = interior[_along(axis, slice(1, -1))]
        inner &= mask[_along(axis, slice(None, -2))]
        inner &= mask[_along(axis, slice(2, None))]
    return mask != interior


def voxel_points_mm(indices: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """Map voxel indices ``(N, 3)`` through a 3x3 voxel -> mm matrix (no translation).

    Column by column rather than a matrix product: each point's coordinates are then
    computed the same way whatever the other points (a reproducible rounding), and
    no BLAS threads are started, which stall when other processes hold the cores.
    Returns float64 ``(N, 3)``.
    """
    indices = np.asarray(indices, dtype=np.float64)
    linear = np.asarray(linear, dtype=np.float64)
    points = indices[:, 0:1] * linear[:, 0]
    points += indices[:, 1:2] * linear[:, 1]
    points += indices[:, 2:3] * linear[:, 2]
    return points


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


def memory_axes(array: np.ndarray) -> tuple[int, ...]:
    """The axes of ``array`` from the largest stride to the smallest.

    ``array.transpose(memory_axes(array))`` walks its memory in C order, so boolean
    indexing or ``flatnonzero`` read it in one sweep (a napari layer seen in scan
    order is Fortran-ordered).
    """
    return tuple(int(a) for a in np.argsort(np.abs(array.strides), kind="stable")[::-1])


def _voxel_indices(mask: np.ndarray) -> np.ndarray:
    """Indices (N, ndim), int64, of the True voxels of ``mask`` in its memory order
    (``np.argwhere`` is several times slower on a 3D array, above all an F-ordered one).
    """
    axes = memory_axes(mask)
    view = mask.transpose(axes)
    found = np.unravel_index(np.flatnonzero(view), view.shape)
    indices = np.empty((found[0].size, mask.ndim), dtype=np.int64)
    for column, axis in enumerate(axes):
        indices[:, axis] = found[column]
    return indices


def _nearest(
    source_indices: np.ndarray,
    source_points: np.ndarray,
    target_indices: np.ndarray,
    target_points: np.ndarray,
    linear: np.ndarray,
) -> np.ndarray:
    """Distance (mm) from each source point to the nearest target point (KD-tree).

    When the source points gather in a small region (as after an edit), the tree
    holds only the target points in their box grown by :data:`_LOCAL_MARGIN_MM`. A
    target voxel outside that box differs by more than the margin (``m`` voxels)
    along some axis from every source voxel, so lies at least ``s * (m + 1)`` mm
    away (``s``: the grid's smallest singular value); a distance found within that
    bound is the nearest overall. The others are looked up among all target points.
    """
    from scipy.spatial import cKDTree

    shortest = float(np.linalg.svd(np.asarray(linear, dtype=np.float64), compute_uv=False).min())
    margin = int(np.ceil(_LOCAL_MARGIN_MM / shortest))
    low = source_indices.min(axis=0) - margin
    high = source_indices.max(axis=0) + margin
    local = np.all((target_indices >= low) & (target_indices <= high), axis=1)
    count = int(np.count_nonzero(local))
    if count == 0 or count > _LOCAL_SHARE * target_points.shape[0]:
        return cKDTree(target_points, leafsize=32).query(source_points, k=1)[0]
    found = cKDTree(target_points[local], leafsize=32).query(source_points, k=1)[0]
    unsure = found > shortest * (margin + 1) * (1.0 - 1e-9)
    if unsure.any():
        tree = cKDTree(target_points, leafsize=32)
        found[unsure] = tree.query(source_points[unsure], k=1)[0]
    return found


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
        centres), in mm, each array in the memory order of its mask. A voxel on
        both surfaces is at distance 0 without a look-up (often most of them, when a
        segmentation is compared with the one it was edited from).
    """

    surfaces = [surface_mask(m) for m in (labels_mask, reference_mask)]
    indices = [_voxel_indices(m) for m in surfaces]
    points = [voxel_points_mm(i, linear) for i in indices]
    out = []
    for source, target in ((0, 1), (1, 0)):
        if points[source].shape[0] == 0:
            out.append(np.zeros(0))
        elif points[target].shape[0] == 0:
            out.append(np.full(points[source].shape[0], np.inf))
        else:
            away = ~surfaces[target][tuple(indices[source].T)]
            found = np.zeros(points[source].shape[0])
            if away.any():
                found[away] = _nearest(
                    indices[source][away],
                    points[source][away],
                    indices[target],
                    points[target],
                    linear,
                )
            out.append(found)
    return SurfaceDistances(out[0], out[1])


def _farthest_pair_distance(points: np.ndarray) -> float:
    """Largest distance between two rows of ``points`` (N, 3), by blocks of all pairs."""
    from scipy.spatial.distance import cdist

    best = 0.0
    for start in range(0, points.shape[0], _PAIR_BLOCK):
        block = points[start : start + _PAIR_BLOCK]
        best = max(best, float(cdist(block, points[start:], "sqeuclidean").max()))
    return float(np.sqrt(best))


@functools.cache
def _directions(n: int) -> tuple[np.ndarray, float]:
    """``n`` unit vectors spread over the sphere (a Fibonacci lattice) and the cosine of
    their covering angle, lowered by a relative 1e-9 for rounding.

    Every unit vector lies within the covering angle of one of them. The covering
    angle is the largest angular radius of the circles through the vertices of the
    spherical Delaunay triangles (the facets of the vectors' convex hull): each facet
    plane's unit normal is the circle's centre.
    """
    from scipy.spatial import ConvexHull

    step = np.arange(n) + 0.5
    z = 1.0 - 2.0 * step / n
    radius = np.sqrt(1.0 - z * z)
    angle = np.pi * (1.0 + np.sqrt(5.0)) * step
    vectors = np.stack([radius * np.cos(angle), radius * np.sin(angle), z], axis=1)
    hull = ConvexHull(vectors)
    normals = hull.equations[:, :3] / np.linalg.norm(hull.equations[:, :3], axis=1, keepdims=True)
    cosine = float(np.einsum("fd,fd->f", normals, vectors[hull.simplices[:, 0]]).min())
    vectors.setflags(write=False)
    return vectors, cosine * (1.0 - 1e-9)


def _project(vectors: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Projections (directions, points) of points given as coordinate rows (3, N).

    Written out rather than a matrix product: small, and no BLAS threads, which stall
    when other processes hold the cores.
    """
    return vectors[:, :1] * coords[0] + vectors[:, 1:2] * coords[1] + vectors[:, 2:3] * coords[2]


def _drop_near_points(points: np.ndarray, n_directions: int) -> np.ndarray:
    """The points (N, 3) that can still be an end of the farthest pair.

    For each direction ``u`` of a set covering the sphere within angle ``a``, the
    two points with the lowest and the highest projection give a pair; the longest
    of these pairs is a lower bound ``D`` of the diameter. The farthest point ``q``
    from a point ``p`` lies within ``a`` of some ``u`` seen from ``p``, so
    ``|p - q| <= (u.p - min u.x) / cos(a)``; a point whose bound, the largest over
    all ``u``, is below ``D`` is no end of the farthest pair and is dropped. Exact:
    a small slack covers rounding, so only points that surely cannot win go.
    """
    vectors, cosine = _directions(n_directions)
    count = points.shape[0]
    coords = np.ascontiguousarray((points - points.mean(axis=0)).T)
    step = max(1, _PROJECTION_ELEMENTS // n_directions)
    blocks = [slice(start, start + step) for start in range(0, count, step)]
    rows = np.arange(n_directions)
    low = np.full(n_directions, np.inf)
    high = np.full(n_directions, -np.inf)
    at_low = np.zeros(n_directions, np.int64)
    at_high = np.zeros(n_directions, np.int64)
    projected = None
    for block in blocks:  # (directions, points): reductions along contiguous rows
        projected = _project(vectors, coords[:, block])
        for pick, best, at, better in (
            (projected.argmin(axis=1), low, at_low, np.less),
            (projected.argmax(axis=1), high, at_high, np.greater),
        ):
            value = projected[rows, pick]
            found = better(value, best)
            best[found], at[found] = value[found], pick[found] + block.start
    pairs = coords[:, at_high] - coords[:, at_low]
    lower = float(np.sqrt(np.einsum("dn,dn->n", pairs, pairs)).max())
    needed = cosine * (lower - 1e-9 * (lower + float(np.abs(coords).max())))
    keep = np.empty(count, dtype=bool)
    for block in blocks:
        if len(blocks) > 1:  # else the one block's projections are still there
            projected = _project(vectors, coords[:, block])
        projected -= low[:, None]
        keep[block] = projected.max(axis=0) >= needed
    return points[keep]


def max_diameter_mm(points_mm: np.ndarray) -> float:
    """Largest distance between two points (the maximum 3D diameter), in mm.

    Parameters
    ----------
    points_mm : numpy.ndarray
        Shape (N, 3): positions in mm, e.g. voxel centres from :func:`voxel_points_mm`.

    Returns
    -------
    float
        Exact on the given points: all pairs are compared among the points that can
        be an end of the farthest pair. Points that surely cannot are dropped first
        by projecting onto directions covering the sphere (which leaves a few
        hundred points of an elongated shape); if many remain (a round shape), only
        the vertices of their convex hull (``scipy.spatial.ConvexHull``) are kept.
        0 for a single point, NaN for none.

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
    todo = list(_DIRECTION_SETS)
    while todo and points.shape[0] > _BRUTE_FORCE_POINTS:
        before = points.shape[0]
        points = _drop_near_points(points, todo.pop(0))
        if points.shape[0] > _PRUNE_ENOUGH * before:
            break  # round: the hull's vertices are fewer
    if points.shape[0] > _BRUTE_FORCE_POINTS:
        from scipy.spatial import ConvexHull, QhullError

        try:
            points = points[ConvexHull(points).vertices]
        except QhullError:  # flat or collinear: joggle, keeping every extreme point
            points = points[ConvexHull(points, qhull_options="QJ").vertices]
        if todo and points.shape[0] > _BRUTE_FORCE_POINTS:
            points = _drop_near_points(points, todo[-1])
    return _farthest_pair_distance(points)


def _line_ends(mask: np.ndarray, axis: int) -> np.ndarray:
    """Indices (N, 3) of the first and the last voxel of the mask on each line along
    ``axis`` that holds any: ``axis`` 0 of an F-contiguous mask or 2 of a C-contiguous
    one (the lines are then rows of a 2D view)."""
    others = [a for a in range(3) if a != axis]
    length = mask.shape[axis]
    if axis == 0:  # (J*K, I), row j + J * k
        lines, order = mask.reshape((length, -1), order="F").T, "F"
    else:  # (I*J, K), row i * J + j
        lines, order = mask.reshape((-1, length)), "C"
    first = lines.argmax(axis=1)
    where = np.flatnonzero(lines[np.arange(lines.shape[0]), first])
    first = first[where]
    last = length - 1 - lines[where, ::-1].argmax(axis=1)
    two = last != first
    rest = np.unravel_index(where, [mask.shape[a] for a in others], order=order)
    points = np.empty((where.size + np.count_nonzero(two), 3), dtype=np.int64)
    points[:, axis] = np.concatenate([first, last[two]])
    for column, index in zip(others, rest, strict=True):
        points[:, column] = np.concatenate([index, index[two]])
    return points


def _keep_line_ends(points: np.ndarray, axis: int, shape: tuple[int, ...]) -> np.ndarray:
    """The points (N, 3) that are the first or the last of the points on their line
    along ``axis``."""
    others = [a for a in range(3) if a != axis]
    line = points[:, others[0]] * shape[others[1]] + points[:, others[1]]
    position = points[:, axis]
    lowest = np.full(shape[others[0]] * shape[others[1]], shape[axis], dtype=np.int64)
    highest = np.full(lowest.size, -1, dtype=np.int64)
    np.minimum.at(lowest, line, position)
    np.maximum.at(highest, line, position)
    return points[(position == lowest[line]) | (position == highest[line])]


def hull_candidates(mask: np.ndarray) -> np.ndarray:
    """Voxels of a mask among which lie all vertices of the convex hull of its voxel
    centres: those first or last on their line along each of the three axes.

    A voxel between two others of the mask on a line is a convex combination of
    them, so no hull vertex: not in index space, nor in mm after any linear map
    (anisotropic, oblique or sheared grids alike). The line ends along the memory
    axis are found in one pass over the mask; those along the other two axes among
    these points. The farthest pair of the mask lies among the result.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean array ``(I, J, K)``.

    Returns
    -------
    numpy.ndarray
        Voxel indices, shape (N, 3), int64; empty for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"expected a 3D mask, got shape {mask.shape}")
    if mask.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    if not (mask.flags.c_contiguous or mask.flags.f_contiguous):
        mask = np.ascontiguousarray(mask)
    memory_axis = 2 if mask.flags.c_contiguous else 0
    points = _line_ends(mask, memory_axis)
    for axis in range(3):
        if axis != memory_axis:
            points = _keep_line_ends(points, axis, mask.shape)
    return points


def mask_diameter_mm(mask: np.ndarray, linear: np.ndarray) -> float:
    """Maximum 3D diameter (mm) of a boolean mask: the largest distance between two
    of its voxel centres (:func:`max_diameter_mm` of its :func:`hull_candidates`).

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean array ``(I, J, K)``, e.g. a structure cropped to its bounding box (the
        farthest pair lies on the convex hull, so the crop border changes nothing).
    linear : numpy.ndarray
        3x3 voxel -> mm matrix (``affine[:3, :3]``).
    """
    return max_diameter_mm(voxel_points_mm(hull_candidates(mask), linear))
