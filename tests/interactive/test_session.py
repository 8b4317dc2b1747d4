"""The prompt session: world prompts to voxel masks, the growing crop, undo and reset."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.interactive import Prompt, PromptError
from napari_medseg.interactive.backends import BackendError, backend_names, make_backend
from napari_medseg.interactive.session import PromptSession
from napari_medseg.volume import Volume


def _ball_scan(shape=(80, 80, 60), centre=(40, 40, 30), radius_vox=20.0, seed=0):
    grid = np.indices(shape)
    ball = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) < radius_vox**2
    noise = np.random.default_rng(seed).normal(0, 5, shape).astype(np.float32)
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = [-30.0, -30.0, -50.0]
    return Volume(np.where(ball, 100.0, 0.0).astype(np.float32) + noise, affine), ball


def _world(affine, ijk):
    return (affine @ np.r_[ijk, 1.0])[:3]


def test_a_click_segments_the_object_and_the_crop_grows_with_it():
    volume, ball = _ball_scan()
    session = PromptSession(volume, make_backend("threshold"), margin_mm=4.0)
    update = session.add(Prompt.point(_world(volume.affine, (40, 40, 30))))
    assert update.grew >= 1  # a 4 mm margin cannot hold a 16 mm-radius ball at first
    assert (update.mask == ball).mean() > 0.999
    assert update.changed is not None


def test_undo_and_reset_walk_back_the_history():
    volume, ball = _ball_scan()
    session = PromptSession(volume, make_backend("threshold"))
    first = session.add(Prompt.point(_world(volume.affine, (40, 40, 30)))).mask.copy()
    session.add(Prompt.point(_world(volume.affine, (40, 40, 30)), positive=False))
    assert not session.mask.any()  # the negative click cut the object away
    assert np.array_equal(session.undo(), first)
    assert len(session.prompts) == 1
    assert not session.reset().any() and session.prompts == ()
    assert not session.undo().any()  # nothing left to undo is not an error


def test_a_prompt_lands_in_the_same_place_whatever_the_voxel_order():
    volume, ball = _ball_scan(centre=(30, 45, 20))
    where = _world(volume.affine, (30, 45, 20))
    # the same scan stored with its first axis reversed and its axes permuted
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, volume.shape[0] - 1
    permute = np.eye(4)[[2, 0, 1, 3]].T  # new (a, b, c) = old (b, c, a)... as voxel map
    array = np.flip(volume.array, axis=0).transpose(2, 0, 1)
    affine = volume.affine @ flip @ permute
    other = Volume(np.ascontiguousarray(array), affine)
    mask = PromptSession(other, make_backend("threshold")).add(Prompt.point(where)).mask
    expected = PromptSession(volume, make_backend("threshold")).add(Prompt.point(where)).mask
    assert np.array_equal(mask, np.flip(expected, axis=0).transpose(2, 0, 1))


def test_a_prompt_off_the_scan_is_one_clear_error():
    volume, _ = _ball_scan()
    session = PromptSession(volume, make_backend("threshold"))
    with pytest.raises(PromptError, match=r"off the scan .*RAS"):
        session.add(Prompt.point((500.0, 0.0, 0.0)))
    assert session.prompts == ()


def test_bad_prompts_and_methods_are_refused_by_name():
    with pytest.raises(PromptError, match="box prompt has 2"):
        Prompt("box", np.zeros((3, 3)))
    with pytest.raises(PromptError, match="unknown prompt kind"):
        Prompt("circle", np.zeros((1, 3)))
    with pytest.raises(BackendError, match="unknown interactive method 'magic'"):
        make_backend("magic")
    with pytest.raises(BackendError, match="--checkpoint"):
        make_backend("sam2")
    assert next(iter(backend_names())) == "grow"


def test_a_first_click_with_no_edge_anywhere_keeps_its_first_crop():
    """Pure noise: the object reaches past every widened crop, so no edge was found and
    the first click's mask is the part on its first crop (within ``margin_mm``, not all
    of the scan that looks like it: brain2's tumour of the bench took the whole brain);
    a second positive click farther out grows it on."""
    shape = (120, 120, 40)
    image = np.random.default_rng(4).normal(100.0, 5.0, shape).astype(np.float32)
    volume = Volume(image, np.diag([1.0, 1.0, 2.5, 1.0]))
    session = PromptSession(volume, make_backend("grow"), margin_mm=10.0, max_grow=2)
    click = np.array([40, 60, 20])
    update = session.add(Prompt.point(_world(volume.affine, click)))
    margin = np.ceil(10.0 / np.array([1.0, 1.0, 2.5])).astype(int)
    box = tuple(slice(int(c - m), int(c + m) + 1) for c, m in zip(click, margin, strict=True))
    assert update.grew == 2 and update.crop == box
    first = update.mask.copy()
    outside = np.ones(shape, dtype=bool)
    outside[box] = False
    assert not (first & outside).any()
    inner = first[box][1:-1, 1:-1, 1:-1]
    assert first[box].sum() > inner.sum() > 200  # it grew to the crop's sides
    farther = click + np.array([25, 0, 0])  # 25 mm away, beyond the first crop
    grown = session.add(Prompt.point(_world(volume.affine, farther))).mask
    assert grown[tuple(farther)] and not (first & ~grown).any()
    assert (grown & outside).sum() > 2 * first.sum()
