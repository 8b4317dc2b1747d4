"""The simulated user: where it clicks, and the Dice and time it records."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.interactive.backends.base import PromptBackend
from napari_medseg.interactive.session import PromptSession
from napari_medseg.interactive.simulated_user import (
    dice,
    interior_point,
    next_click,
    run_clicks,
)
from napari_medseg.volume import Volume


def _ellipsoid(shape, centre, radii_vox):
    grid = np.indices(shape)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii_vox, strict=True)) < 1


def test_the_interior_point_is_the_centre_and_its_depth_is_in_mm():
    ball = _ellipsoid((40, 40, 20), (20, 21, 10), (8, 8, 4))
    ijk, depth = interior_point(ball, (0.5, 0.5, 1.0))
    assert ijk == (20, 21, 10)
    assert depth == pytest.approx(4.0, abs=0.6)  # 8 voxels of 0.5 mm in-plane, 4 of 1 mm
    # the array's edge counts as outside: a slab touching it is deepest in its middle
    slab = np.zeros((10, 10, 9), dtype=bool)
    slab[:, :, :] = True
    assert interior_point(slab, (1, 1, 1))[0][2] == 4
    with pytest.raises(ValueError):
        interior_point(np.zeros((3, 3, 3), dtype=bool), (1, 1, 1))


def test_next_click_goes_to_the_largest_error_positive_or_negative():
    ball = _ellipsoid((60, 60, 30), (20, 30, 15), (8, 8, 8))
    first = next_click(ball, np.zeros_like(ball), (1, 1, 1))
    assert first.positive and first.ijk == (20, 30, 15) and first.depth_mm == 8.0
    reference = _ellipsoid((60, 60, 30), (20, 30, 15), (10, 10, 8))
    # a leak bigger than what was missed: the next click is negative, inside the leak
    leak = _ellipsoid(reference.shape, (45, 30, 15), (9, 9, 8))
    mask = (reference & ~_ellipsoid(reference.shape, (20, 30, 15), (3, 3, 3))) | leak
    click = next_click(reference, mask, (1, 1, 1))
    assert not click.positive and leak[click.ijk]
    # the missed part bigger than a small leak: positive, inside what was missed
    missed = reference & (np.indices(reference.shape)[0] < 20)
    mask = (reference & ~missed) | _ellipsoid(reference.shape, (45, 30, 15), (2, 2, 2))
    click = next_click(reference, mask, (1, 1, 1))
    assert click.positive and missed[click.ijk]
    assert next_click(reference, reference.copy(), (1, 1, 1)) is None


def test_dice():
    a = np.zeros((4, 4, 4), dtype=bool)
    b = a.copy()
    assert dice(a, b) == 1.0
    a[0, 0, :2] = True
    b[0, 0, 1:3] = True
    assert dice(a, b) == pytest.approx(0.5)


class _GrowsOneStepPerClick(PromptBackend):
    """A backend whose mask is the reference after the second prompt, half of it before."""

    name = "test-steps"

    def __init__(self, reference):
        self.reference = reference

    def segment(self, request):
        crop = tuple(
            slice(o, o + n) for o, n in zip(request.offset, request.image.shape, strict=True)
        )
        truth = self.reference[crop]
        if len(request.prompts) == 1:
            return truth & (np.indices(truth.shape)[0] + request.offset[0] < 20)
        return truth.copy()


def test_run_clicks_records_dice_and_time_after_each_click_and_stops_when_done():
    reference = _ellipsoid((50, 50, 30), (20, 25, 15), (10, 10, 8))
    volume = Volume(np.zeros(reference.shape, np.float32), np.diag([0.8, 0.8, 2.0, 1.0]))
    session = PromptSession(volume, _GrowsOneStepPerClick(reference), margin_mm=100.0)
    run = run_clicks(session, reference, 5)
    assert len(run.clicks) == 2  # the second click made the mask exact: no third
    assert [c.positive for c in run.clicks] == [True, True]
    assert 0.0 < run.dice[0] < 0.8 and run.dice[1] == 1.0
    assert run.dice_after(5) == 1.0 and run.dice_after(1) == run.dice[0]
    assert len(run.seconds) == 2 and all(s >= 0 for s in run.seconds)
    assert len(session.prompts) == 2
    with pytest.raises(ValueError, match="shape"):
        run_clicks(session, reference[:-1], 1)


def test_a_shifted_first_click_lands_off_the_interior_point_and_stays_on_the_scan():
    reference = _ellipsoid((50, 50, 30), (20, 25, 15), (10, 10, 8))
    volume = Volume(np.zeros(reference.shape, np.float32), np.diag([0.8, 0.8, 2.0, 1.0]))
    session = PromptSession(volume, _GrowsOneStepPerClick(reference), margin_mm=100.0)
    centre = next_click(reference, np.zeros_like(reference), (0.8, 0.8, 2.0)).ijk
    run = run_clicks(session, reference, 2, first_shift=(2, -1, 0))
    moved = (centre[0] + 2, centre[1] - 1, centre[2])
    assert run.clicks[0].ijk == moved and run.clicks[0].positive
    # the prompt the session got is that voxel's centre, in world mm
    assert np.allclose(session.prompts[0].world_mm[0], np.multiply(moved, (0.8, 0.8, 2.0)))
    assert next_click(reference, session.mask, (0.8, 0.8, 2.0)) is None  # then as usual
    edge = run_clicks(PromptSession(volume, _GrowsOneStepPerClick(reference)), reference, 1,
                      first_shift=(0, 0, 40))  # fmt: skip
    assert edge.clicks[0].ijk == (*centre[:2], 29) and edge.clicks[0].positive  # off it
