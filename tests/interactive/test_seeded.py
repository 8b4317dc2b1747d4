"""The weight-free default backend, grow from seeds, on analytic shapes with noise."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_medseg.errors import Cancelled
from napari_medseg.interactive import Prompt
from napari_medseg.interactive.backends import DEFAULT_BACKEND, make_backend
from napari_medseg.interactive.backends.base import PromptRequest
from napari_medseg.interactive.backends.seeded import SeededGrowBackend, factor_ladder
from napari_medseg.interactive.prompts import VoxelPrompt
from napari_medseg.interactive.session import PromptSession
from napari_medseg.interactive.simulated_user import dice, run_clicks
from napari_medseg.volume import Volume

SPACING = (0.8, 0.8, 2.5)  # mm: an anisotropic grid, slices 3x thicker than pixels


def _ellipsoid(shape, centre, radii_mm):
    grid = np.indices(shape).astype(np.float64)
    return (
        sum(
            ((g - c) * s / r) ** 2
            for g, c, s, r in zip(grid, centre, SPACING, radii_mm, strict=True)
        )
        < 1
    )


def _scan(objects, shape=(72, 72, 24), noise=12.0, seed=0):
    """(Volume, image) of ``objects`` = [(mask, value)] on 0 HU, with Gaussian noise."""
    image = np.zeros(shape, np.float32)
    for mask, value in objects:
        image[mask] = value
    image += np.random.default_rng(seed).normal(0, noise, shape).astype(np.float32)
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = (-20.0, 10.0, -40.0)
    return Volume(image, affine), image


def _world(volume, ijk):
    return (volume.affine @ np.r_[np.asarray(ijk, dtype=np.float64), 1.0])[:3]


def _request(image, prompts, previous=None, cancel=None):
    return PromptRequest(
        image=image,
        spacing_mm=SPACING,
        prompts=tuple(prompts),
        previous=previous,
        scan_shape=image.shape,
        cancel=cancel,
    )


def test_grow_is_the_default_and_needs_no_checkpoint():
    assert DEFAULT_BACKEND == "grow"
    assert isinstance(make_backend("grow"), SeededGrowBackend)


def test_simulated_clicks_segment_an_ellipsoid_on_an_anisotropic_grid():
    truth = _ellipsoid((72, 72, 24), (34, 38, 12), (16.0, 11.0, 20.0))
    volume, _ = _scan([(truth, 100.0)])
    session = PromptSession(volume, make_backend("grow"))
    run = run_clicks(session, truth, 3)
    assert run.dice[0] > 0.95  # one click in the middle finds the whole object
    assert run.dice_after(3) > 0.97
    assert max(run.seconds) < 5.0


def test_a_click_on_a_large_object_widens_the_crop_until_it_holds_it():
    truth = _ellipsoid((96, 96, 24), (48, 48, 12), (32.0, 28.0, 25.0))
    volume, _ = _scan([(truth, 80.0)], shape=(96, 96, 24))
    session = PromptSession(volume, make_backend("grow"), margin_mm=6.0)
    update = session.add(Prompt.point(_world(volume, (48, 48, 12))))
    assert update.grew >= 1
    assert dice(update.mask, truth) > 0.95


def test_a_negative_click_removes_a_leak_and_keeps_the_object():
    shape = (72, 72, 24)
    target = _ellipsoid(shape, (24, 36, 12), (12.0, 12.0, 20.0))
    neighbour = _ellipsoid(shape, (48, 36, 12), (12.0, 12.0, 20.0)) & ~target
    _, image = _scan([(target, 100.0), (neighbour, 70.0)])  # a weak edge between them
    leaked = target | neighbour  # what an earlier click gave
    prompts = [
        VoxelPrompt("point", np.array([[24.0, 36.0, 12.0]]), True),
        VoxelPrompt("point", np.array([[50.0, 36.0, 12.0]]), False),
    ]
    mask = make_backend("grow").segment(_request(image, prompts, previous=leaked))
    assert dice(mask, target) > 0.9
    assert (mask & neighbour).sum() < 0.05 * neighbour.sum()


def test_a_box_alone_segments_the_object_inside_it():
    shape = (72, 72, 24)
    target = _ellipsoid(shape, (26, 36, 12), (10.0, 12.0, 20.0))
    other = _ellipsoid(shape, (54, 36, 12), (9.0, 9.0, 15.0))
    volume, _ = _scan([(target, 100.0), (other, 100.0)])
    session = PromptSession(volume, make_backend("grow"))
    # a rectangle drawn on the middle slice around the target
    box = Prompt.box(_world(volume, (12, 20, 12)), _world(volume, (40, 52, 12)))
    mask = session.add(box).mask
    assert dice(mask, target) > 0.9
    assert not (mask & other).any()


def test_a_scribble_and_a_lasso_segment_the_object():
    shape = (72, 72, 24)
    target = _ellipsoid(shape, (36, 36, 12), (14.0, 12.0, 22.0))
    volume, image = _scan([(target, -60.0)])  # darker than its surroundings
    stroke = np.array([[30.0 + t, 36.0, 12.0] for t in range(12)])
    scribble = make_backend("grow").segment(
        _request(image, [VoxelPrompt("scribble", stroke, True)])
    )
    assert dice(scribble, target) > 0.9
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = np.c_[36 + 19 * np.cos(angles), 36 + 16 * np.sin(angles), np.full(24, 12.0)]
    lasso = make_backend("grow").segment(
        _request(image, [VoxelPrompt("lasso", ring, True, slice_axis=2)])
    )
    assert dice(lasso, target) > 0.9


def test_a_refining_click_keeps_the_earlier_result_where_it_does_not_reach():
    shape = (72, 72, 24)
    first = _ellipsoid(shape, (20, 36, 12), (10.0, 10.0, 18.0))
    second = _ellipsoid(shape, (52, 36, 12), (9.0, 9.0, 15.0))
    volume, _ = _scan([(first, 100.0), (second, 100.0)])
    session = PromptSession(volume, make_backend("grow"), margin_mm=40.0)
    before = session.add(Prompt.point(_world(volume, (20, 36, 12)))).mask.copy()
    assert dice(before, first) > 0.9
    after = session.add(Prompt.point(_world(volume, (52, 36, 12)))).mask
    assert dice(after & second, second) > 0.9
    far = np.zeros(shape, dtype=bool)
    far[:36] = True  # the half of the scan the second click's object is not in
    assert np.array_equal(after[far], before[far])
    # a negative click in empty background changes nothing near the objects
    kept = session.add(Prompt.point(_world(volume, (36, 8, 12)), positive=False)).mask
    assert np.array_equal(kept[far], before[far])


def test_cancel_raises_cancelled():
    truth = _ellipsoid((72, 72, 24), (36, 36, 12), (12.0, 12.0, 20.0))
    _, image = _scan([(truth, 100.0)])
    cancel = threading.Event()
    cancel.set()
    prompt = VoxelPrompt("point", np.array([[36.0, 36.0, 12.0]]), True)
    with pytest.raises(Cancelled):
        make_backend("grow").segment(_request(image, [prompt], cancel=cancel))


def test_the_coarse_grid_keeps_the_voxel_budget_and_coarsens_thin_axes_first():
    ladder = factor_ladder((512, 512, 60), (0.7, 0.7, 5.0), 60_000)
    coarse = ladder[0]
    assert np.prod(-(-np.array([512, 512, 60]) // coarse)) <= 60_000
    # pixels are merged before 5 mm slices: the coarse voxels are about isotropic
    size_mm = np.array(coarse) * (0.7, 0.7, 5.0)
    assert coarse[0] > 4 * coarse[2] and size_mm.max() / size_mm.min() < 1.5
    assert ladder[-1] == (1, 1, 1)
    assert all(
        all(f <= c for f, c in zip(finer, coarser, strict=True))
        for coarser, finer in zip(ladder, ladder[1:], strict=False)
    )


def test_a_later_click_on_a_faint_part_adds_it_and_not_the_background():
    # a tumour with a bright part and a faint part beside it (a contrast-enhancing
    # lesion): the first click takes the bright part, a click on the faint part adds it
    shape = (72, 72, 24)
    bright = _ellipsoid(shape, (28, 36, 12), (9.0, 9.0, 18.0))
    faint = _ellipsoid(shape, (44, 36, 12), (10.0, 10.0, 18.0)) & ~bright
    volume, _ = _scan([(bright, 100.0), (faint, 40.0)], noise=10.0)
    session = PromptSession(volume, make_backend("grow"))
    first = session.add(Prompt.point(_world(volume, (28, 36, 12)))).mask
    assert dice(first, bright) > 0.9
    second = session.add(Prompt.point(_world(volume, (48, 36, 12)))).mask
    assert dice(second, bright | faint) > 0.85
    assert (second & ~(bright | faint)).sum() < 0.2 * faint.sum()


def test_a_negative_click_only_takes_away():
    shape = (72, 72, 24)
    target = _ellipsoid(shape, (30, 36, 12), (12.0, 12.0, 20.0))
    volume, _ = _scan([(target, 100.0)])
    session = PromptSession(volume, make_backend("grow"))
    before = session.add(Prompt.point(_world(volume, (30, 36, 12)))).mask.copy()
    after = session.add(Prompt.point(_world(volume, (30, 36 + 13, 12)), positive=False)).mask
    assert not (after & ~before).any()


def test_a_positive_click_only_adds():
    shape = (72, 72, 24)
    bright = _ellipsoid(shape, (30, 36, 12), (12.0, 12.0, 20.0))
    faint = _ellipsoid(shape, (44, 36, 12), (9.0, 9.0, 15.0)) & ~bright
    _, image = _scan([(bright, 100.0), (faint, 45.0)])
    from scipy import ndimage

    before = ndimage.binary_dilation(bright, iterations=2)  # with a rim of background
    prompts = [
        VoxelPrompt("point", np.array([[30.0, 36.0, 12.0]]), True),
        VoxelPrompt("point", np.array([[47.0, 36.0, 12.0]]), True),
    ]
    after = make_backend("grow").segment(_request(image, prompts, previous=before))
    assert not (before & ~after).any()  # the refinement's band keeps the rim
    assert (after & faint).sum() > (before & faint).sum()  # and it adds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_first_click_keeps_the_end_slices_of_a_ball_on_thick_slices(seed):
    """A ball of 12 mm radius on 0.8 x 0.8 x 6 mm voxels (brain MR slices): the first
    click takes its first and last slices too. Smoothing one voxel along every axis,
    the likeness test averaged tissue 6 mm away into each slice's value and the end
    slices no longer looked like the click (Dice 0.96, 0.66, 0.79 for these seeds;
    0.99, 0.88, 0.96 smoothing over the grid's finest step in mm)."""
    spacing = np.array([0.8, 0.8, 6.0])
    shape = (80, 80, 15)
    grid = np.indices(shape).astype(np.float64)
    centre = (np.array(shape) - 1) / 2
    radius_mm = np.sqrt(
        sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing, strict=True))
    )
    truth = radius_mm <= 12.0
    image = np.where(truth, 100.0, 0.0) + np.random.default_rng(seed).normal(0, 20, shape)
    volume = Volume(image.astype(np.float32), np.diag([*spacing, 1.0]))
    session = PromptSession(volume, make_backend("grow"))
    run = run_clicks(session, truth, 1)
    assert run.dice[0] >= 0.85
    for k in np.flatnonzero(truth.any(axis=(0, 1)))[[0, -1]]:  # the end slices too
        assert dice(session.mask[:, :, k], truth[:, :, k]) >= 0.7


def test_a_negative_click_on_a_mask_with_no_edge_keeps_a_ball_around_the_positive_click():
    """Pure noise, no edge anywhere: the first click grows to the crop's side and the
    session may not widen it further; a negative click 10 mm away then leaves only what
    lies nearer to the positive click, in every direction, in one piece (brain2 of the
    bench: a faint tumour in a brain that looks like it)."""
    shape = (72, 72, 24)
    _, image = _scan([], shape=shape, noise=12.0, seed=3)
    volume = Volume(image, np.diag([*SPACING, 1.0]))
    session = PromptSession(volume, make_backend("grow"), margin_mm=20.0, max_grow=0)
    click = np.array([36, 36, 12])
    first = session.add(Prompt.point(_world(volume, click))).mask.copy()
    negative = click + np.array([0, 10, 0])  # 8 mm away along j
    reach = 10 * SPACING[1]
    grid = np.indices(shape).astype(np.float64)
    distance = np.sqrt(
        sum(((g - c) * s) ** 2 for g, c, s in zip(grid, click, SPACING, strict=True))
    )
    beyond = distance > reach + 2 * SPACING[2]
    assert (first & beyond).sum() > 1000  # it grew far
    after = session.add(Prompt.point(_world(volume, negative), positive=False)).mask
    assert after[tuple(click)]
    assert not (after & ~first).any()
    # what lay beyond the negative click's distance is gone (but for the refinement's
    # band of a few voxels around the cut)
    assert (after & beyond).sum() < 0.05 * (first & beyond).sum()
    assert after.sum() < 0.2 * first.sum()
    from scipy import ndimage

    assert ndimage.label(after)[1] == 1


def test_an_old_negative_click_far_from_the_mask_does_not_widen_the_crop():
    truth = _ellipsoid((72, 72, 24), (20, 36, 12), (8.0, 8.0, 12.0))
    volume, _ = _scan([(truth, 100.0)])
    session = PromptSession(volume, make_backend("grow"), margin_mm=5.0)
    session.add(Prompt.point(_world(volume, (20, 36, 12))))
    session.add(Prompt.point(_world(volume, (66, 36, 12)), positive=False))  # far away
    update = session.add(Prompt.point(_world(volume, (22, 36, 12))))
    assert update.crop[0].stop < 60  # the crop holds the object, not the old click


def test_the_core_a_negative_click_keeps_is_measured_in_mm():
    """A slab three 6.5 mm slices deep keeps a core (eroded by two voxels along every
    axis it would have none, and a negative click beside it took it all: brain2's
    tumour); a negative click at the tip of a thin tongue is not in what is kept."""
    from napari_medseg.interactive.backends.seeded import _core

    spacing = np.array([0.8, 0.8, 6.5])
    previous = np.zeros((40, 40, 7), dtype=bool)
    previous[5:25, 5:25, 2:5] = True  # the slab: 16 x 16 x 19.5 mm
    previous[24:38, 14, 2:5] = True  # a tongue one voxel wide
    negative = np.zeros_like(previous)
    negative[36, 14, 3] = True
    positive = np.zeros_like(previous)
    positive[15, 15, 3] = True
    core, kept = _core(previous, negative, positive, spacing, core_voxels=2)
    assert core[8:22, 8:22, 2:5].all()  # the end slices too
    assert not (core & ~previous[:]).any() and not core[:, :, [1, 5]].any()
    assert not kept[36, 14, 3] and kept[15, 15, 3]


def test_a_core_that_joins_the_negative_click_to_the_object_is_eroded_in_voxels():
    """Two blocks joined by a neck two thin slices deep: eroded in mm the neck stays and
    the negative click's core piece holds the positive click (so the whole core would
    go); eroded two voxels along every axis, the neck goes and the object keeps its
    core (the phantom of seed 2's liver lost 450 000 voxels that way)."""
    from napari_medseg.interactive.backends.seeded import _core

    spacing = np.array([0.8, 0.8, 2.0])
    previous = np.zeros((60, 30, 12), dtype=bool)
    previous[2:20, 5:25, 2:10] = True  # the object
    previous[40:58, 5:25, 2:10] = True  # a leak
    previous[20:40, 10:20, 5:7] = True  # the neck: two slices
    positive = np.zeros_like(previous)
    positive[10, 15, 6] = True
    negative = np.zeros_like(previous)
    negative[49, 15, 6] = True
    core, kept = _core(previous, negative, positive, spacing, core_voxels=2)
    assert core[10, 15, 6] and core[5:17, 8:22, 4:8].all()
    assert not core[40:, :, :].any() and not kept[49, 15, 6]
