"""Saving layers napari made in less usual ways: multiscale levels, duplicated layers,
and labels drawn after the user moved the scan in the viewer."""

from __future__ import annotations

import copy

import nibabel as nib
import numpy as np
import pytest
from _helpers import save_nifti
from geometry_cases import make_affine, orientation_affine

from napari_medseg._napari.layers import MEDSEG_KEY, labels_like
from napari_medseg.geometry import DisplayGeometry
from napari_medseg.samples import sample_path

SHAPE = (14, 17, 9)


def _create(layer_data):
    from napari.layers import Layer

    return Layer.create(*layer_data)


def _display_index(geometry: DisplayGeometry, ijk) -> tuple[int, ...]:
    marker = np.zeros(geometry.source_shape, dtype=np.uint8)
    marker[tuple(ijk)] = 1
    return tuple(int(i) for i in np.argwhere(geometry.to_display(marker))[0])


def _voxels(path, value=1) -> list[tuple[int, ...]]:
    data = np.asarray(nib.load(path).dataobj)
    return [tuple(int(i) for i in p) for p in np.argwhere(data == value)]


def test_multiscale_labels_save_the_full_resolution_level(make_napari_viewer, tmp_path, notes):
    viewer = make_napari_viewer()
    image, tumour = viewer.open_sample("napari-medseg", "chest_ct")
    level0 = np.asarray(tumour.data).copy()
    pyramid = viewer.add_labels(
        [level0, level0[::2, ::2, ::2].copy()],
        scale=tumour.scale,
        translate=tumour.translate,
        metadata=copy.deepcopy(tumour.metadata),
        name="tumour pyramid",
    )
    assert pyramid.multiscale
    out = tmp_path / "pyramid.nii.gz"
    assert pyramid.save(str(out), plugin="napari-medseg") == [str(out)]
    expected = nib.load(sample_path("chest_ct_tumour"))
    saved = nib.load(out)
    assert saved.shape == expected.shape
    np.testing.assert_allclose(saved.affine, expected.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), np.asarray(expected.dataobj))
    assert not [n for n in notes if n.startswith("pyramid.nii.gz")]

    # a multiscale image without our metadata, on the scan's grid: matched by grid
    scan = np.asarray(image.data)
    pyramid_image = viewer.add_image(
        [scan, scan[::2, ::2, ::2]], scale=image.scale, translate=image.translate
    )
    out_image = tmp_path / "pyramid_image.nii.gz"
    pyramid_image.save(str(out_image), plugin="napari-medseg")
    source = nib.load(sample_path("chest_ct"))
    assert nib.load(out_image).shape == source.shape
    np.testing.assert_array_equal(np.asarray(nib.load(out_image).dataobj), source.dataobj)


def test_duplicated_layer_metadata_is_never_changed(make_napari_viewer, tmp_path):
    from napari.layers._layer_actions import _duplicate_layer

    from napari_medseg._napari.writer import resolve_geometry

    affine = orientation_affine("PSR")
    src = save_nifti(tmp_path / "psr.nii.gz", np.zeros(SHAPE, np.int16), affine)
    viewer = make_napari_viewer()
    (image,) = viewer.open(src, plugin="napari-medseg")
    labels = viewer.add_layer(_create(labels_like(image)))
    viewer.layers.selection = {labels}
    _duplicate_layer(viewer.layers)
    duplicate = viewer.layers[-1]
    assert duplicate is not labels
    snapshot = copy.deepcopy(labels.metadata)
    image_snapshot = copy.deepcopy(image.metadata)

    # what the writer and labels_like hand out are copies, down to the nested lists
    state = duplicate.as_layer_data_tuple()[1]
    _, medseg, how, _ = resolve_geometry(duplicate.data.shape, state)
    assert how == "metadata"
    medseg["source_affine"][0][0] = 99.0
    medseg["kind"] = "changed"
    made = labels_like(duplicate)[1]["metadata"][MEDSEG_KEY]
    made["translate"][0] = 123.0
    made["source_shape"].append(1)
    duplicate.data[1, 2, 3] = 4
    duplicate.save(str(tmp_path / "duplicate.nii.gz"), plugin="napari-medseg")
    assert labels.metadata == snapshot
    assert duplicate.metadata == snapshot
    assert image.metadata == image_snapshot
    np.testing.assert_allclose(nib.load(tmp_path / "duplicate.nii.gz").affine, affine, atol=1e-5)


@pytest.mark.parametrize("scan_in_viewer", [True, False], ids=["scan-in-viewer", "scan-removed"])
def test_labels_drawn_after_moving_the_scan_save_on_its_grid(
    make_napari_viewer, tmp_path, notes, scan_in_viewer
):
    """Both label paths agree: the scan's voxel grid and true affine, move not saved."""
    affine = orientation_affine("PSR")
    rng = np.random.default_rng(1)
    src = save_nifti(
        tmp_path / "psr.nii.gz", rng.integers(-1000, 1000, SHAPE).astype(np.int16), affine
    )
    viewer = make_napari_viewer()
    (image,) = viewer.open(src, plugin="napari-medseg")
    geometry = DisplayGeometry.from_dict(image.metadata[MEDSEG_KEY])
    image.translate = np.asarray(image.translate) + (0.0, 10.0, 0.0)  # 10 mm posterior

    plugin_labels = viewer.add_layer(_create(labels_like(image)))  # carries the metadata
    viewer.layers.selection.active = image
    viewer._new_labels()  # napari's button: no metadata, the moved grid
    napari_labels = viewer.layers[-1]
    assert napari_labels.metadata == {}
    np.testing.assert_allclose(napari_labels.translate, image.translate)

    ijk = (3, 5, 7)  # source voxel under the brush, as the moved scan is shown
    world = image.data_to_world(_display_index(geometry, ijk))
    for layer in (plugin_labels, napari_labels):
        index = np.round(np.asarray(layer.world_to_data(world))).astype(int)
        layer.data[tuple(index)] = 1
    if not scan_in_viewer:
        viewer.layers.remove(image)  # matched through the registry (shape and voxel size)

    for layer, name in ((plugin_labels, "plugin.nii.gz"), (napari_labels, "napari.nii.gz")):
        layer.save(str(tmp_path / name), plugin="napari-medseg")
        saved = nib.load(tmp_path / name)
        assert saved.shape == SHAPE
        np.testing.assert_allclose(saved.affine, affine, atol=1e-5)
        assert _voxels(tmp_path / name) == [ijk]
        (note,) = [n for n in notes if n.startswith(name)]
        assert "shifted by (+0, +10, +0) mm (S, P, L) from its scan psr.nii.gz" in note
        assert "not saved" in note
    assert not any("no source scan" in n for n in notes)


def _two_scans_of_one_size(viewer, tmp_path):
    """Open first.nii.gz and second.nii.gz: same shape and spacing, 100 mm apart in S.

    Returns the two image layers and the two affines (voxel -> RAS+ mm).
    """
    spacing = (0.8, 0.9, 2.5)
    first = make_affine("LPS", spacing=spacing, origin=(10.0, 20.0, -30.0))
    second = make_affine("LPS", spacing=spacing, origin=(10.0, 20.0, 70.0))
    save_nifti(tmp_path / "first.nii.gz", np.zeros(SHAPE, np.int16), first)
    save_nifti(tmp_path / "second.nii.gz", np.zeros(SHAPE, np.int16), second)
    (a,) = viewer.open(tmp_path / "first.nii.gz", plugin="napari-medseg")
    (b,) = viewer.open(tmp_path / "second.nii.gz", plugin="napari-medseg")
    return (a, b), (first, second)


def test_moved_grid_shared_by_two_scans_is_not_guessed(make_napari_viewer, tmp_path, notes):
    viewer = make_napari_viewer()
    (a, _), (first, _) = _two_scans_of_one_size(viewer, tmp_path)
    a.translate = np.asarray(a.translate) + (0.0, 0.0, -10.0)
    viewer.layers.selection.active = a
    viewer._new_labels()
    labels = viewer.layers[-1]
    labels.data[0, 0, 0] = 1
    # the moved scan is in the viewer: its layer says which scan it is
    labels.save(str(tmp_path / "on_first.nii.gz"), plugin="napari-medseg")
    np.testing.assert_allclose(nib.load(tmp_path / "on_first.nii.gz").affine, first, atol=1e-5)
    # once it is gone, two scans of that size are candidates: no guess, and say why
    viewer.layers.remove(a)
    labels.save(str(tmp_path / "unknown.nii.gz"), plugin="napari-medseg")
    (note,) = [n for n in notes if n.startswith("unknown.nii.gz") and "no source scan" in n]
    assert "has the size of first.nii.gz, second.nii.gz but lies at none of their" in note
    assert "which scan it belongs to (if any) is not known" in note
    assert nib.load(tmp_path / "unknown.nii.gz").shape == labels.data.shape


def test_moved_grid_needs_the_display_axes(make_napari_viewer, tmp_path, notes):
    """A layer of that size on other axes (another reader's voxel order) is not matched."""
    affine = orientation_affine("axial_LPS")
    src = save_nifti(tmp_path / "lps.nii.gz", np.zeros(SHAPE, np.int16), affine)
    viewer = make_napari_viewer()
    (image,) = viewer.open(src, plugin="napari-medseg")
    foreign = viewer.add_labels(
        np.zeros(image.data.shape, np.uint8),
        scale=image.scale,
        translate=np.asarray(image.translate) + 25.0,
    )
    foreign.data[0, 0, 0] = 1
    out = tmp_path / "foreign.nii.gz"
    foreign.save(str(out), plugin="napari-medseg")
    assert any(n.startswith("foreign.nii.gz: no source scan matches") for n in notes)
    assert nib.load(out).shape == image.data.shape  # its own grid, not lps.nii.gz's


def test_scan_moved_onto_another_does_not_take_its_labels(make_napari_viewer, tmp_path, notes):
    """Labels on B's grid stay B's when the user moved A (opened later) onto B."""
    viewer = make_napari_viewer()
    (a, b), (first, second) = _two_scans_of_one_size(viewer, tmp_path)
    b.translate = a.translate  # the most recent scan, moved onto the first one
    viewer.layers.selection.active = a
    viewer._new_labels()
    labels = viewer.layers[-1]
    labels.data[0, 0, 0] = 1
    labels.save(str(tmp_path / "labels.nii.gz"), plugin="napari-medseg")
    np.testing.assert_allclose(nib.load(tmp_path / "labels.nii.gz").affine, first, atol=1e-5)
    (note,) = [n for n in notes if n.startswith("labels.nii.gz")]
    assert "also lies where second.nii.gz is shown after being moved" in note
