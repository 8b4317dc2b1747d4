"""Surfaces, surface distances and maximum diameters against scipy and brute force.

The fast paths (surface by shifted views, hull candidates from line ends, pruning by
projections, a local KD-tree) must give exactly what the plain computations give.
"""

from __future__ import annotations

import numpy as np
import pytest
from geometry_cases import make_affine
from metrics_cases import random_blobs
from scipy import ndimage
from scipy.spatial import ConvexHull, cKDTree
from scipy.spatial.distance import pdist

from napari_medseg.measure.surface import (
    _BRUTE_FORCE_POINTS,
    _DIRECTION_SETS,
    _LOCAL_MARGIN_MM,
    _LOCAL_SHARE,
    _directions,
    _nearest,
    hull_candidates,
    mask_diameter_mm,
    max_diameter_mm,
    surface_distances,
    surface_mask,
    voxel_points_mm,
)


def _grids() -> dict[str, np.ndarray]:
    """3x3 voxel -> mm matrices: anisotropic, oblique, and sheared (gantry tilt)."""
    oblique = make_affine("LPS", spacing=(0.7, 0.8, 2.5), rotation_deg=(12.0, -20.0, 33.0))
    sheared = oblique[:3, :3].copy()
    sheared[:, 2] += 0.3 * sheared[:, 1]
    return {
        "anisotropic": np.diag([0.7, 0.7, 1.25]),
        "oblique": oblique[:3, :3],
        "sheared": sheared,
    }


GRIDS = _grids()


def _ellipsoid(shape, radii, centre=None) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    centre = centre if centre is not None else [(n - 1) / 2 for n in shape]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1


def _layouts(mask: np.ndarray) -> list[np.ndarray]:
    """The mask in C order, Fortran order (a napari layer seen in scan order) and as a
    strided, flipped view."""
    padded = np.zeros(tuple(n + 2 for n in mask.shape), dtype=bool, order="F")
    padded[1:-1, 1:-1, 1:-1] = mask[::-1]
    return [mask, np.asfortranarray(mask), padded[1:-1, 1:-1, 1:-1][::-1]]


def _farthest_pair_brute_force(points: np.ndarray) -> float:
    return float(np.sqrt(pdist(points, "sqeuclidean").max())) if len(points) > 1 else 0.0


def test_surface_mask_is_the_border_left_by_scipy_erosion():
    rng = np.random.default_rng(0)
    for trial in range(60):
        shape = tuple(int(n) for n in rng.integers(1, 14, 3))  # sizes 1 and 2 too
        mask = rng.random(shape) < rng.uniform(0.3, 0.97)
        expected = mask & ~ndimage.binary_erosion(mask)
        for layout in _layouts(mask):
            found = surface_mask(layout)
            assert np.array_equal(found, expected), f"trial {trial}"
    ball = _ellipsoid((9, 9, 9), (4, 4, 4))
    assert not surface_mask(ball)[4, 4, 4] and surface_mask(ball)[0, 4, 4]


@pytest.mark.parametrize("seed", range(4))
def test_hull_candidates_hold_every_vertex_of_the_hull(seed):
    rng = np.random.default_rng(seed)
    labels = random_blobs((30, 26, 18), 3, seed=seed, smooth=float(rng.uniform(1.0, 3.0)))
    for value in (1, 2, 3):
        mask = labels == value
        voxels = np.argwhere(mask)
        vertices = {tuple(v) for v in voxels[ConvexHull(voxels.astype(float)).vertices]}
        for layout in _layouts(mask):
            found = hull_candidates(layout)
            candidates = {tuple(v) for v in found}
            assert len(candidates) == len(found)  # no voxel twice
            assert vertices <= candidates <= {tuple(v) for v in voxels}
            assert len(candidates) < np.count_nonzero(surface_mask(mask))


def _shapes():
    """Masks from a few voxels to hundreds of thousands: blobs, elongated and round
    ellipsoids, a flat sheet, a line, a single voxel and scattered voxels."""
    rng = np.random.default_rng(7)
    yield "blobs", random_blobs((40, 34, 22), 2, seed=3, smooth=2.5) == 1
    yield "elongated", _ellipsoid((70, 40, 36), (34, 14, 12), centre=(35.3, 19.6, 17.8))
    yield "round", _ellipsoid((61, 61, 61), (30, 30, 30))
    sheet = np.zeros((50, 40, 5), bool)
    sheet[3:47, 2:38, 2] = True
    yield "sheet", sheet
    line = np.zeros((30, 4, 4), bool)
    line[2:28, 1, 2] = True
    yield "line", line
    single = np.zeros((3, 4, 5), bool)
    single[1, 2, 3] = True
    yield "single", single
    yield "scattered", rng.random((40, 30, 20)) < 0.01


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_mask_diameter_equals_the_farthest_pair_of_all_hull_vertices(grid):
    # independent reference: scipy's hull of every voxel centre, then all pairs of
    # its vertices (the farthest pair of a set lies on its hull)
    linear = GRIDS[grid]
    for name, mask in _shapes():
        points = voxel_points_mm(np.argwhere(mask), linear)
        if len(points) > 4 and np.linalg.matrix_rank(points - points[0]) == 3:
            points = points[ConvexHull(points).vertices]
        expected = _farthest_pair_brute_force(points)
        for layout in _layouts(mask):
            assert mask_diameter_mm(layout, linear) == expected, name
    assert np.isnan(mask_diameter_mm(np.zeros((3, 3, 3), bool), linear))


def test_large_masks_take_the_pruned_and_the_hull_paths():
    """Enough candidates to be pruned by projections (elongated) or to need the hull
    (round); both still give the farthest pair of the voxel surface."""
    linear = GRIDS["oblique"]
    for mask in (
        _ellipsoid((120, 70, 60), (58, 30, 26)),
        _ellipsoid((81, 81, 81), (40, 40, 40)),
    ):
        assert len(hull_candidates(mask)) > _BRUTE_FORCE_POINTS
        surface = voxel_points_mm(np.argwhere(surface_mask(mask)), linear)
        expected = _farthest_pair_brute_force(surface[ConvexHull(surface).vertices])
        assert mask_diameter_mm(mask, linear) == expected


@pytest.mark.parametrize(
    "cloud",
    ["gaussian", "elongated", "sphere_shell", "two_clusters", "duplicates", "plane"],
)
def test_max_diameter_of_point_clouds_equals_all_pairs(cloud):
    rng = np.random.default_rng(1)
    n = 4000  # above the brute-force limit: pruning and, for round sets, the hull run
    if cloud == "gaussian":
        points = rng.normal(size=(n, 3))
    elif cloud == "elongated":
        points = rng.normal(size=(n, 3)) * (40.0, 3.0, 1.0) + 500.0
    elif cloud == "sphere_shell":  # many pairs within rounding of the diameter
        points = rng.normal(size=(n, 3))
        points *= 75.0 / np.linalg.norm(points, axis=1, keepdims=True)
    elif cloud == "two_clusters":
        points = np.concatenate([rng.normal(size=(n // 2, 3)), rng.normal(size=(n // 2, 3)) + 30])
    elif cloud == "duplicates":
        points = np.repeat(rng.integers(0, 6, size=(n // 4, 3)).astype(float), 4, axis=0)
    else:
        points = np.c_[rng.uniform(0, 80, size=(n, 2)), np.full(n, 3.0)]
    assert max_diameter_mm(points) == _farthest_pair_brute_force(points)


def test_direction_sets_cover_the_sphere_within_their_angle():
    """The pruning bound holds only if every direction lies within the covering angle."""
    rng = np.random.default_rng(2)
    probes = rng.normal(size=(200_000, 3))
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    for n in _DIRECTION_SETS:
        vectors, cosine = _directions(n)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
        nearest = (probes @ vectors.T).max(axis=1)
        assert nearest.min() >= cosine
        assert nearest.min() < cosine + 0.02  # the angle is tight, not a loose bound


def _brute_force_distances(source: np.ndarray, target: np.ndarray, linear) -> np.ndarray:
    """Nearest surface-voxel distance (mm) of each source surface voxel, all pairs,
    sorted (the surfaces from scipy's erosion)."""
    points = [
        voxel_points_mm(np.argwhere(m & ~ndimage.binary_erosion(m)), linear)
        for m in (source, target)
    ]
    squared = ((points[0][:, None, :] - points[1][None, :, :]) ** 2).sum(axis=2)
    return np.sort(np.sqrt(squared.min(axis=1)))


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_surface_distances_equal_all_pairs(grid):
    linear = GRIDS[grid]
    rng = np.random.default_rng(3)
    labels = _ellipsoid((36, 30, 24), (14, 11, 8))
    edited = labels.copy()  # a brush stroke: the surfaces differ in one small place
    edited[5:11, 12:17, 10:13] = True
    spread = np.roll(labels, 1, axis=0) | (rng.random(labels.shape) < 0.002)
    for reference in (labels.copy(), edited, spread, np.zeros_like(labels)):
        for a, b in ((labels, reference), (reference, labels)):
            for layout_a, layout_b in zip(_layouts(a), _layouts(b), strict=True):
                found = surface_distances(layout_a, layout_b, linear)
                if not b.any():
                    assert np.all(np.isinf(found.labels_to_reference))
                    continue
                if not a.any():
                    assert found.labels_to_reference.size == 0
                    continue
                expected = _brute_force_distances(a, b, linear)
                got = np.sort(found.labels_to_reference)
                assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
                # a voxel on both surfaces is at exactly 0
                both = surface_mask(a) & surface_mask(b)
                assert np.count_nonzero(got == 0.0) == np.count_nonzero(both)


def test_local_nearest_search_gives_what_the_full_tree_gives():
    """The local KD-tree (sources gathered in a small region) and its fallback for
    sources whose nearest target may lie outside the local box."""
    linear = GRIDS["oblique"]
    shell = surface_mask(_ellipsoid((80, 80, 60), (37, 37, 27)))
    target_indices = np.argwhere(shell)
    target = voxel_points_mm(target_indices, linear)
    tree = cKDTree(target, leafsize=32)
    rng = np.random.default_rng(4)
    cases = {
        # near the shell: every nearest target is inside the local box
        "near": np.array([3, 40, 30]) + rng.integers(-2, 3, size=(50, 3)),
        # at the centre, 27 voxels or more from the shell: the box reaches parts of it
        # through its corners, but the nearest may lie outside, so all are looked up
        # in the full tree
        "far": np.array([40, 40, 30]) + rng.integers(-3, 4, size=(50, 3)),
        # on both sides: the box spans most of the shell, so the full tree is used
        "spread": np.array([[3, 40, 30], [77, 40, 30]]),
    }
    shortest = float(np.linalg.svd(linear, compute_uv=False).min())
    margin = int(np.ceil(_LOCAL_MARGIN_MM / shortest))
    far = cases["far"]
    in_box = np.all(
        (target_indices >= far.min(axis=0) - margin) & (target_indices <= far.max(axis=0) + margin),
        axis=1,
    )
    assert 0 < np.count_nonzero(in_box) < _LOCAL_SHARE * len(target)  # the premise of "far"
    for name, source_indices in cases.items():
        source = voxel_points_mm(source_indices, linear)
        found = _nearest(source_indices, source, target_indices, target, linear)
        assert np.array_equal(found, tree.query(source, k=1)[0]), name
