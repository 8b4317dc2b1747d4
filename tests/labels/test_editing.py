"""Label editing core (napari_medseg.labels.editing) against analytic shapes and references.

References used: analytic volumes and radii of balls/discs, brute-force nearest-voxel
distances with a k-d tree (margins), scipy's binary morphology and median filter with
the same ball footprint (smoothing), ``scipy.ndimage.label`` (components), and
hand-built expected label maps (planning).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from napari_medseg.labels import editing


def _centres_mm(shape, spacing) -> np.ndarray:
    """mm position of every voxel centre, shape ``shape + (ndim,)``."""
    grids = np.meshgrid(
        *[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij"
    )
    return np.stack(grids, axis=-1)


def _ball(shape, spacing, centre_mm, radius_mm) -> np.ndarray:
    offsets = _centres_mm(shape, spacing) - np.asarray(centre_mm, dtype=float)
    return np.linalg.norm(offsets, axis=-1) <= radius_mm


def _nearest_mm(points_from: np.ndarray, points_to: np.ndarray) -> np.ndarray:
    """Distance from each point of the first set to the nearest of the second (k-d tree)."""
    return cKDTree(points_to).query(points_from)[0]


# -- holes -------------------------------------------------------------------------------


def test_fill_holes_3d_fills_a_closed_cavity_but_not_an_open_tunnel():
    spacing = (1.0, 1.0, 1.0)
    shape = (31, 31, 31)
    solid = _ball(shape, spacing, (15, 15, 15), 12)
    shell = solid & ~_ball(shape, spacing, (15, 15, 15), 6)
    assert np.array_equal(editing.fill_holes(shell), solid)

    tunnel = shell.copy()
    tunnel[15, 15, :] = False  # a channel through the wall on both sides opens the cavity
    filled = editing.fill_holes(tunnel)
    assert np.array_equal(filled, tunnel)


def test_fill_holes_per_slice_fills_an_open_tube_in_every_slice_across_its_axis():
    shape = (12, 25, 25)
    disc = _ball((1, 25, 25), (1, 1, 1), (0, 12, 12), 9)[0]
    ring = disc & ~_ball((1, 25, 25), (1, 1, 1), (0, 12, 12), 4)[0]
    tube = np.broadcast_to(ring, shape).copy()  # runs through the whole array along axis 0

    assert np.array_equal(editing.fill_holes(tube), tube)  # open at both ends: no 3D hole
    # every slice across axis 0, the first and last (on the array's faces) included
    assert np.array_equal(editing.fill_holes(tube, axis=0), np.broadcast_to(disc, shape))
    # slices along the tube (across axis 1) show two walls, no enclosed background
    assert np.array_equal(editing.fill_holes(tube, axis=1), tube)


# -- components ----------------------------------------------------------------------------


def _blocks(spacing=(2.0, 1.0, 1.0)):
    """Mask with four blocks of 100, 500, 600 and 8 voxels (one touching only by a corner)."""
    mask = np.zeros((30, 40, 40), dtype=bool)
    mask[1:5, 1:6, 1:6] = True  # 100 voxels
    mask[10:15, 10:20, 10:20] = True  # 500
    mask[20:26, 20:30, 25:35] = True  # 600
    mask[26:28, 30:32, 35:37] = True  # 8, meets the 600 block only at a corner
    return mask, spacing


def test_remove_islands_removes_exactly_the_components_below_the_volume():
    mask, spacing = _blocks()
    voxel_ml = np.prod(spacing) / 1000.0  # 0.002 mL
    components, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(components.ravel())[1:]
    assert sorted(sizes) == [100, 500, 608]  # 26-connected: the corner block joins

    threshold = 500 * voxel_ml  # a component of exactly 1.0 mL stays
    expected = np.isin(components, 1 + np.flatnonzero(sizes * voxel_ml >= threshold))
    result = editing.remove_islands(mask, threshold, spacing)
    assert np.array_equal(result, expected)
    assert result.sum() == 1108

    # 6-connected, the 8-voxel corner block is its own island and goes too
    six = editing.remove_islands(mask, 0.1, spacing, connectivity=6)  # 50 voxels
    assert six.sum() == 100 + 500 + 600
    assert not six[26:28, 30:32, 35:37].any()


def test_keep_largest_component():
    mask, _ = _blocks()
    largest = editing.keep_largest_component(mask, connectivity=6)
    expected = np.zeros_like(mask)
    expected[20:26, 20:30, 25:35] = True
    assert np.array_equal(largest, expected)
    assert not editing.keep_largest_component(np.zeros((3, 3, 3), bool)).any()


def test_split_instances_equals_scipy_label_up_to_order_largest_first():
    rng = np.random.default_rng(7)
    mask = ndimage.gaussian_filter(rng.random((40, 50, 45)), 2.0) > 0.53
    instances, count = editing.split_instances(mask)
    reference, ref_count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    assert count == ref_count > 3
    assert instances.dtype == np.int32
    sizes = np.bincount(instances.ravel())[1:]
    assert np.all(np.diff(sizes) <= 0)  # 1 is the largest
    # a bijection between the numberings, component by component
    pairs = {(int(a), int(b)) for a, b in zip(instances[mask], reference[mask], strict=True)}
    assert len(pairs) == count
    assert {a for a, _ in pairs} == set(range(1, count + 1))
    assert not instances[~mask].any()


# -- margins -----------------------------------------------------------------------------------


SPHERE_SPACING = (1.5, 0.8, 0.9)
#: Farthest a point can be from the nearest voxel centre: half the voxel diagonal, mm.
HALF_DIAGONAL = 0.5 * float(np.linalg.norm(SPHERE_SPACING))


@pytest.fixture(scope="module")
def sphere():
    """A ball of radius 20 mm on an anisotropic grid with room to grow."""
    shape = (35, 65, 58)
    centre = np.array(shape) // 2 * np.array(SPHERE_SPACING)
    return _ball(shape, SPHERE_SPACING, centre, 20.0), centre


def test_grow_equals_brute_force_nearest_voxel_distance_and_the_bigger_sphere(sphere):
    mask, centre = sphere
    grown = editing.change_margin(mask, 3.0, SPHERE_SPACING)
    centres = _centres_mm(mask.shape, SPHERE_SPACING)
    distance = _nearest_mm(centres.reshape(-1, 3), centres[mask]).reshape(mask.shape)
    assert np.array_equal(grown, distance <= 3.0 + 1e-6)
    # analytic: between the balls of radius 23 - one voxel diagonal and 23 mm
    assert (grown <= _ball(mask.shape, SPHERE_SPACING, centre, 23.0)).all()
    assert (_ball(mask.shape, SPHERE_SPACING, centre, 23.0 - 2 * HALF_DIAGONAL) <= grown).all()
    volume = grown.sum() * np.prod(SPHERE_SPACING)
    # voxel-centre distances move a surface by whole voxel steps: a few % below
    assert volume == pytest.approx(4 / 3 * np.pi * 23.0**3, rel=0.05)


def test_shrink_equals_brute_force_distance_to_background_and_the_smaller_sphere(sphere):
    mask, centre = sphere
    shrunk = editing.change_margin(mask, -3.0, SPHERE_SPACING)
    centres = _centres_mm(mask.shape, SPHERE_SPACING)
    distance = _nearest_mm(centres[mask], centres[~mask])
    expected = np.zeros_like(mask)
    expected[mask] = distance > 3.0 + 1e-6
    assert np.array_equal(shrunk, expected)
    assert (_ball(mask.shape, SPHERE_SPACING, centre, 17.0) <= shrunk).all()
    assert (shrunk <= _ball(mask.shape, SPHERE_SPACING, centre, 17.0 + 2 * HALF_DIAGONAL)).all()
    volume = shrunk.sum() * np.prod(SPHERE_SPACING)
    assert volume == pytest.approx(4 / 3 * np.pi * 17.0**3, rel=0.05)


def test_grow_then_shrink_of_a_ball_gives_it_back(sphere):
    mask, _ = sphere
    grown = editing.change_margin(mask, 4.0, SPHERE_SPACING)
    back = editing.change_margin(grown, -4.0, SPHERE_SPACING)
    assert np.array_equal(back, mask)  # a ball is closed under closing by a smaller ball


def test_shrink_does_not_erode_from_the_edge_of_the_scan():
    mask = np.zeros((10, 20, 20), dtype=bool)
    mask[0:6, 5:15, 5:15] = True  # cut by the scan at slice 0
    shrunk = editing.change_margin(mask, -1.0, (1.0, 1.0, 1.0))
    expected = np.zeros_like(mask)
    expected[0:5, 6:14, 6:14] = True
    assert np.array_equal(shrunk, expected)


def test_grow_works_on_a_2d_slice_in_plane():
    spacing = (0.5, 0.6)
    disc = _ball((41, 41), spacing, (10.0, 12.0), 2.5)
    grown = editing.change_margin(disc, 4.0, spacing)
    centres = _centres_mm(disc.shape, spacing)
    distance = _nearest_mm(centres.reshape(-1, 2), centres[disc]).reshape(disc.shape)
    assert np.array_equal(grown, distance <= 4.0 + 1e-6)
    assert grown.sum() * 0.5 * 0.6 == pytest.approx(np.pi * 6.5**2, rel=0.05)


# -- smoothing -------------------------------------------------------------------------------------


def _padded_reference(operation, mask, footprint, pad):
    """Run a scipy morphology on a zero-padded copy (no border effects), cropped back."""
    padded = np.pad(mask, pad)
    result = operation(padded, footprint)
    return result[tuple(slice(pad, -pad) for _ in range(mask.ndim))]


def _ball_with_spur():
    spacing = (1.5, 1.0, 1.0)
    mask = _ball((24, 40, 40), spacing, (18, 20, 20), 9.0)
    mask[12, 20, 29:38] = True  # a 1-voxel-thin spur sticking out 9 mm
    return mask, spacing


def test_opening_removes_a_thin_spur_and_equals_scipy_binary_opening():
    mask, spacing = _ball_with_spur()
    opened = editing.smooth(mask, "opening", 4.0, spacing)
    assert not opened[12, 20, 30:38].any()  # spur gone
    assert opened.sum() > 0.9 * (mask.sum() - 9)  # body kept
    footprint = editing.ball_footprint(4.0, spacing)
    reference = _padded_reference(
        lambda m, f: ndimage.binary_opening(m, structure=f), mask, footprint, 8
    )
    assert np.array_equal(opened, reference)


def test_closing_fills_a_gap_narrower_than_the_ball_only():
    spacing = (1.0, 1.0, 1.0)
    mask = np.zeros((20, 30, 40), dtype=bool)
    mask[5:15, 5:25, 5:18] = True
    mask[5:15, 5:25, 20:30] = True  # a 2 mm gap (x = 18, 19)
    closed = editing.smooth(mask, "closing", 4.0, spacing)
    assert closed[6:14, 7:23, 18:20].all()
    wide = mask.copy()
    wide[:, :, 18:24] = False  # a 6 mm gap stays open with a 4 mm ball
    assert not editing.smooth(wide, "closing", 4.0, spacing)[:, :, 19:23].any()
    footprint = editing.ball_footprint(4.0, spacing)
    reference = _padded_reference(
        lambda m, f: ndimage.binary_closing(m, structure=f), mask, footprint, 8
    )
    assert np.array_equal(closed, reference)


def test_median_equals_scipy_median_filter_with_the_ball():
    rng = np.random.default_rng(3)
    mask = ndimage.gaussian_filter(rng.random((20, 36, 30)), 1.5) > 0.5
    mask[0:3] = True  # touching the scan edge: the label continues past it
    spacing = (2.0, 0.7, 0.7)
    smoothed = editing.smooth(mask, "median", 3.0, spacing)
    footprint = editing.ball_footprint(3.0, spacing)
    padded = np.pad(mask, 6, mode="edge")
    reference = ndimage.median_filter(padded.astype(np.uint8), footprint=footprint, mode="constant")
    assert np.array_equal(smoothed, reference[6:-6, 6:-6, 6:-6].astype(bool))
    assert smoothed.sum() != mask.sum()


def test_smoothing_size_is_in_mm_on_an_anisotropic_grid():
    spacing = (2.0, 1.0, 1.0)
    footprint = editing.ball_footprint(6.0, spacing)
    assert footprint.shape == (3, 7, 7)  # 3 mm radius: 1 slice (2 mm), 3 pixels (1 mm)
    # the same 4-voxel-thick plate: 8 mm thick across axis 0, 4 mm thick across axis 1
    across_slices = np.zeros((16, 24, 24), dtype=bool)
    across_slices[6:10, 4:20, 4:20] = True
    across_rows = np.zeros((16, 24, 24), dtype=bool)
    across_rows[2:14, 10:14, 4:20] = True
    assert editing.smooth(across_slices, "opening", 6.0, spacing)[7:9, 8:16, 8:16].all()
    assert not editing.smooth(across_rows, "opening", 6.0, spacing).any()
    assert not editing.smooth(across_slices, "opening", 10.0, spacing).any()


def test_smoothing_rejects_a_ball_smaller_than_a_voxel_and_unknown_methods():
    mask = np.ones((4, 4, 4), dtype=bool)
    with pytest.raises(ValueError, match="smaller than the voxels"):
        editing.smooth(mask, "median", 1.0, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="median"):
        editing.smooth(mask, "gaussian", 3.0, (1.0, 1.0, 1.0))


# -- interpolation ------------------------------------------------------------------------------


def test_interpolation_between_two_discs_gives_discs_of_intermediate_radius():
    spacing = (3.0, 0.7, 0.7)
    shape = (14, 64, 64)
    centre = (32 * 0.7, 32 * 0.7)
    plane = _centres_mm((64, 64), spacing[1:]) - np.array(centre)
    radius = np.linalg.norm(plane, axis=-1)
    mask = np.zeros(shape, dtype=bool)
    first, last, r1, r2 = 2, 12, 5.0, 15.0
    mask[first] = radius <= r1
    mask[last] = radius <= r2

    result = editing.interpolate_slices(mask, axis=0, spacing_mm=spacing)
    assert np.array_equal(result[[first, last]], mask[[first, last]])  # drawn slices exact
    assert not result[:first].any() and not result[last + 1 :].any()
    for k in range(first + 1, last):
        expected = r1 + (r2 - r1) * (k - first) / (last - first)
        inside = result[k]
        # a disc: everything well inside the expected circle, nothing well outside
        assert inside[radius <= expected - 0.75].all()
        assert not inside[radius > expected + 0.75].any()
        area = inside.sum() * 0.7 * 0.7
        assert area == pytest.approx(np.pi * expected**2, rel=0.06)


def test_interpolation_moves_a_shape_between_positions_along_any_axis():
    mask = np.zeros((40, 9, 40), dtype=bool)  # the drawn slices are across axis 1
    mask[5:15, 0, 5:15] = True
    mask[25:35, 8, 25:35] = True
    result = editing.interpolate_slices(mask, axis=1)
    for k in range(9):  # the square slides 2.5 voxels per slice, keeping its shape
        expected = np.zeros((40, 40), dtype=bool)
        start = 5 + 2.5 * k
        if start == int(start):  # whole-voxel positions: exactly the moved square
            expected[int(start) : int(start) + 10, int(start) : int(start) + 10] = True
            assert np.array_equal(result[:, k, :], expected)
        else:
            assert result[:, k, :].sum() == pytest.approx(100, rel=0.25)
            centre = np.argwhere(result[:, k, :]).mean(axis=0)
            assert centre == pytest.approx((start + 4.5, start + 4.5), abs=0.6)


def test_interpolation_with_fewer_than_two_drawn_slices_changes_nothing():
    mask = np.zeros((5, 8, 8), dtype=bool)
    mask[2, 3:5, 3:5] = True
    assert np.array_equal(editing.interpolate_slices(mask, axis=0), mask)


# -- HU range, bounding boxes ------------------------------------------------------------------


def test_in_range_is_inclusive_and_rejects_reversed_bounds():
    image = np.array([-1001.0, -1000.0, 0.0, 100.0, 100.5, np.nan])
    assert editing.in_range(image, -1000, 100).tolist() == [False, True, True, True, False, False]
    with pytest.raises(ValueError, match="above its high bound"):
        editing.in_range(image, 10, -10)


def test_label_bounding_box_matches_the_mask_box_and_respects_within():
    rng = np.random.default_rng(1)
    labels = np.zeros((45, 30, 33), dtype=np.uint8)
    labels[rng.integers(0, 45, 20), rng.integers(0, 30, 20), rng.integers(0, 33, 20)] = 3
    assert editing.label_bounding_box(labels, 3) == editing.bounding_box(labels == 3)
    assert editing.label_bounding_box(labels, 4) is None
    within = (slice(10, 30), slice(5, 25), slice(None))
    sub = editing.bounding_box(labels[within] == 3)
    expected = tuple(
        slice(s.start + w.start, s.stop + w.start)
        for s, w in zip(sub, (slice(10, 30), slice(5, 25), slice(0, 33)), strict=True)
    )
    assert editing.label_bounding_box(labels, 3, within=within) == expected


# -- planning -------------------------------------------------------------------------------------


@pytest.fixture
def two_labels():
    labels = np.zeros((1, 6, 8), dtype=np.uint8)
    labels[0, 1:4, 1:4] = 1
    labels[0, 1:4, 4:7] = 2
    return labels


def test_plan_preserves_other_labels_and_clears_what_the_label_lost(two_labels):
    new_mask = np.zeros_like(two_labels, dtype=bool)
    new_mask[0, 2:5, 2:6] = True  # over label 2, over background, and losing row 1
    change = editing.plan_label_change(two_labels, 1, new_mask, overwrite_other_labels=False)
    result = two_labels.copy()
    change.apply(result)

    expected = two_labels.copy()
    expected[0, 1, 1:4] = 0  # lost
    expected[0, 2:4, 1] = 0  # lost
    expected[0, 4, 2:6] = 1  # background taken
    assert np.array_equal(result, expected)  # label 2 untouched
    assert change.count == int((result != two_labels).sum())


def test_plan_overwrite_takes_other_labels_and_allowed_limits_every_change(two_labels):
    new_mask = np.zeros_like(two_labels, dtype=bool)
    new_mask[0, 2:5, 2:6] = True
    change = editing.plan_label_change(two_labels, 1, new_mask, overwrite_other_labels=True)
    result = two_labels.copy()
    change.apply(result)
    assert (result[0, 2:4, 4:6] == 1).all()  # taken from label 2
    assert (result[0, 1, 4:7] == 2).all()

    allowed = np.ones_like(new_mask)
    allowed[0, :, 3:5] = False
    limited = editing.plan_label_change(
        two_labels, 1, new_mask, overwrite_other_labels=True, allowed=allowed
    )
    changed = np.zeros_like(new_mask)
    changed[limited.indices] = True
    assert not (changed & ~allowed).any()
    assert changed.sum() == (result != two_labels)[allowed].sum()


def test_plan_in_a_region_uses_full_array_indices(two_labels):
    region = (slice(0, 1), slice(3, 6), slice(2, 8))
    new_mask = np.ones((1, 3, 6), dtype=bool)
    change = editing.plan_label_change(
        two_labels, 2, new_mask, overwrite_other_labels=False, region=region
    )
    result = two_labels.copy()
    change.apply(result)
    expected = two_labels.copy()
    expected[0, 4:6, 2:8] = 2  # the background of the region
    expected[0, 3, 7] = 2
    assert np.array_equal(result, expected)
    assert {v for v, _ in change.by_value()} == {2}
    with pytest.raises(ValueError, match="> 0"):
        editing.plan_label_change(
            two_labels, 0, new_mask, overwrite_other_labels=True, region=region
        )


def test_a_locked_label_neither_loses_nor_gains_voxels(two_labels):
    labels = two_labels.copy()
    labels[0, 5, 5] = 3
    new_mask = np.zeros_like(labels, dtype=bool)
    new_mask[0, 2:6, 2:7] = True  # over labels 2 and 3 and background; label 1 loses row 1
    plain = editing.plan_label_change(labels, 1, new_mask, overwrite_other_labels=True)
    unlocked_result = labels.copy()
    plain.apply(unlocked_result)
    assert (unlocked_result[labels == 2] == 1).any() and unlocked_result[0, 5, 5] == 1

    change = editing.plan_label_change(
        labels, 1, new_mask, overwrite_other_labels=True, locked=[2, 3]
    )
    result = labels.copy()
    change.apply(result)
    # the locked labels keep every voxel; everything else is as without locks
    assert np.array_equal(result == 2, labels == 2) and result[0, 5, 5] == 3
    expected = np.where(np.isin(labels, [2, 3]), labels, unlocked_result)
    assert np.array_equal(result, expected)

    with pytest.raises(editing.LockedLabelError, match="label 1 is locked"):
        editing.plan_label_change(labels, 1, new_mask, overwrite_other_labels=True, locked={1})


def test_relabelling_leaves_locked_values_alone(two_labels):
    updated = two_labels.copy()
    updated[two_labels == 1] = 5  # label 1 becomes 5
    updated[0, 0, :] = 2  # background becomes the locked 2
    updated[two_labels == 2] = 0  # the locked 2 erased
    change = editing.plan_relabel(two_labels, updated, locked=(2,))
    result = two_labels.copy()
    change.apply(result)
    assert np.array_equal(result == 2, two_labels == 2)
    assert np.array_equal(result == 5, two_labels == 1)
    assert (result[0, 0] == 0).all()
    assert editing.unlocked(two_labels, 2, ()).all()
    allowed = editing.unlocked(two_labels, 0, [1])
    assert np.array_equal(allowed, two_labels != 1)
    assert not editing.unlocked(two_labels, 1, [1]).any()  # nothing may become label 1
