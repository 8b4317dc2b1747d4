"""Display geometry: stored arrays land on their true patient positions in napari."""

from __future__ import annotations

import numpy as np
import pytest
from geometry_cases import ORIENTATIONS, make_affine, orientation_affine

from napari_medseg.geometry import (
    RAS_TO_WORLD,
    DisplayGeometry,
    display_geometry,
    obliquity_deg,
    orientation_code,
    shear_deg,
    voxel_spacing,
)

SHAPE = (7, 9, 5)


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_orientation_code_is_the_axis_codes(name):
    axcodes, rotation = ORIENTATIONS[name]
    assert orientation_code(orientation_affine(name)) == axcodes


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_every_display_voxel_sits_at_its_patient_position(name):
    affine = orientation_affine(name)
    geometry = display_geometry(affine, SHAPE)
    source = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    shown = geometry.to_display(source)
    assert np.shares_memory(shown, source), "display must be a view, not a copy"
    # every displayed voxel: its world position (scale/translate) vs. the truth
    display_index = np.indices(shown.shape).reshape(3, -1).T
    world_shown = display_index * geometry.scale + geometry.translate
    source_index = np.array(np.unravel_index(shown.reshape(-1), SHAPE)).T
    ras = (affine[:3, :3] @ source_index.T).T + affine[:3, 3]
    world_true = (RAS_TO_WORLD[:3, :3] @ ras.T).T
    if geometry.deobliqued:
        # straightened around the centre: same centre, same spacing, bounded error
        assert np.allclose(world_shown.mean(axis=0), world_true.mean(axis=0), atol=1e-9)
        assert np.allclose(sorted(geometry.scale), sorted(voxel_spacing(affine)))
    else:
        np.testing.assert_allclose(world_shown, world_true, atol=1e-9)
    assert np.all(geometry.scale > 0)


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_display_affine_gives_the_true_position_of_each_shown_voxel(name):
    # oblique grids too: napari shows them straightened, the display affine does not
    affine = orientation_affine(name)
    geometry = display_geometry(affine, SHAPE)
    source = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    shown = geometry.to_display(source)
    display_index = np.indices(shown.shape).reshape(3, -1).T
    source_index = np.array(np.unravel_index(shown.reshape(-1), SHAPE)).T
    true_ras = source_index @ affine[:3, :3].T + affine[:3, 3]
    linear, offset = geometry.display_affine[:3, :3], geometry.display_affine[:3, 3]
    np.testing.assert_allclose(display_index @ linear.T + offset, true_ras, atol=1e-9)


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_display_and_back_is_identity(name):
    geometry = display_geometry(orientation_affine(name), SHAPE)
    source = np.random.default_rng(0).integers(0, 9, SHAPE)
    back = geometry.to_source(geometry.to_display(source))
    assert back.shape == SHAPE
    np.testing.assert_array_equal(back, source)


def test_axial_display_axes_run_superior_posterior_left():
    """World axis 0 = superior, 1 = posterior (screen down), 2 = patient left (screen right)."""
    geometry = display_geometry(make_affine("RAS"), SHAPE)
    # RAS stored: i runs to the right, j anterior, k superior
    assert geometry.display_shape == (5, 9, 7)
    source = np.zeros(SHAPE)
    source[SHAPE[0] - 1, SHAPE[1] - 1, 0] = 1  # most right, most anterior, bottom slice
    shown = geometry.to_display(source)
    assert tuple(np.argwhere(shown)[0]) == (0, 0, 0)  # top-left of the first axial slice


def test_two_voxel_orders_of_one_grid_overlay():
    ras = make_affine("RAS", spacing=(1.0, 1.0, 2.0), origin=(-3.0, -4.0, 0.0))
    # the same grid stored LPS: flip i and j
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:3, 3] = [SHAPE[0] - 1, SHAPE[1] - 1, 0]
    lps = ras @ flip
    assert orientation_code(lps) == "LPS"
    g_ras, g_lps = display_geometry(ras, SHAPE), display_geometry(lps, SHAPE)
    np.testing.assert_allclose(g_ras.translate, g_lps.translate, atol=1e-12)
    np.testing.assert_allclose(g_ras.scale, g_lps.scale)
    data = np.random.default_rng(1).random(SHAPE)
    data_lps = data[::-1, ::-1, :]
    np.testing.assert_array_equal(g_ras.to_display(data), g_lps.to_display(data_lps))


def test_obliquity_and_shear():
    assert obliquity_deg(make_affine("LPS")) < 1e-9
    assert obliquity_deg(make_affine("LPS", rotation_deg=(0, 0, 20))) == pytest.approx(20.0)
    tilted = make_affine("LPS")
    tilt = np.radians(15.0)
    # gantry tilt: slices stack along a direction tilted in the y-z plane
    tilted[:3, 2] = 2.5 * np.array([0.0, np.sin(tilt), np.cos(tilt)])
    assert shear_deg(tilted) == pytest.approx(15.0)
    assert shear_deg(make_affine("PSR", rotation_deg=(10, 20, 30))) < 1e-9
    assert display_geometry(tilted, SHAPE).deobliqued


def test_geometry_survives_metadata_round_trip():
    geometry = display_geometry(orientation_affine("oblique_LPS"), SHAPE)
    again = DisplayGeometry.from_dict(geometry.to_dict())
    np.testing.assert_array_equal(again.source_affine, geometry.source_affine)
    assert again.display_shape == geometry.display_shape
    assert again.matches_grid(geometry.display_shape, geometry.scale, geometry.translate)
    assert not again.matches_grid(geometry.display_shape, geometry.scale, geometry.translate + 1)


def test_to_display_rejects_a_foreign_grid():
    geometry = display_geometry(make_affine("RAS"), SHAPE)
    with pytest.raises(ValueError, match="does not match"):
        geometry.to_display(np.zeros((3, 3, 3)))


def test_remove_shear_puts_each_voxel_where_the_tilted_slice_had_it():
    """A field linear in patient mm is sampled on a tilted grid; after straightening,
    every interior voxel holds the field at its new position (linear interpolation
    is exact for a linear field)."""
    from napari_medseg.geometry import remove_shear

    shape = (40, 36, 12)
    affine = make_affine("LPS", spacing=(0.8, 0.9, 2.0), origin=(30.0, 20.0, -50.0))
    tilt = np.radians(14.0)
    affine[:3, 2] = 2.0 * np.array([0.0, np.sin(tilt), np.cos(tilt)])  # gantry tilt

    def field(index, grid):
        ras = grid[:3, :3] @ index + grid[:3, 3:4]
        return 2.0 * ras[0] - 3.0 * ras[1] + 0.5 * ras[2]

    index = np.indices(shape).reshape(3, -1).astype(float)
    tilted = field(index, affine).reshape(shape)
    straight, new_affine = remove_shear(tilted, affine, order=1, fill=np.nan)
    assert shear_deg(new_affine) < 1e-9
    np.testing.assert_allclose(new_affine[:3, :2], affine[:3, :2])
    np.testing.assert_allclose(new_affine[:3, 3], affine[:3, 3])
    expected = field(index, new_affine).reshape(shape)
    inside = np.isfinite(straight)
    assert inside.mean() > 0.5  # most voxels stay inside the field of view
    np.testing.assert_allclose(straight[inside], expected[inside], atol=1e-6)
    assert not np.allclose(tilted[inside], expected[inside], atol=1.0)  # the shift mattered
