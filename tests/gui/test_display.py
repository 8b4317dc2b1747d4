"""Radiological display convention and overlay of differently stored files.

A phantom with a bright marker in the patient's right-anterior quadrant (and a
smaller one right-posterior-superior, to tell the axes apart) is written in
RAS, LPS and PSR voxel orders. The axial view must show the marker top-left
(anterior up, patient right on the screen's left), and all three files must
overlay in napari's world (same extent, marker at the same coordinate).
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import grid_positions, ras_to_world, save_nifti
from geometry_cases import make_affine

from napari_medseg._napari.views import set_view

SHAPE_RAS = (40, 36, 10)  # x, y, z voxels of the RAS-stored file
SPACING_RAS = (1.0, 1.2, 3.0)


def _phantom_files(tmp_path):
    """Same patient in three voxel orders; grid centred on the RAS origin."""
    files = {}
    extent = np.array(SHAPE_RAS) * np.array(SPACING_RAS)
    for codes in ("RAS", "LPS", "PSR"):
        # reorder shape/spacing of the RAS grid to this storage order
        axis_of = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
        order = [axis_of[c] for c in codes]
        shape = tuple(SHAPE_RAS[a] for a in order)
        spacing = tuple(SPACING_RAS[a] for a in order)
        affine = make_affine(codes, spacing=spacing, origin=(0.0, 0.0, 0.0))
        # put the grid centre at RAS (0, 0, 0)
        centre = affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
        affine[:3, 3] = -centre
        pos = grid_positions(affine, shape)
        x, y, z = pos[..., 0], pos[..., 1], pos[..., 2]
        data = np.full(shape, 100, dtype=np.int16)
        data[(x > 6) & (x < 16) & (y > 6) & (y < 16)] = 1000  # right-anterior, all slices
        data[(x > 3) & (x < 8) & (y < -8) & (y > -14) & (z > 6)] = 600  # R-P-superior
        files[codes] = (save_nifti(tmp_path / f"phantom_{codes}.nii.gz", data, affine), affine)
    assert np.all(np.abs(extent) > 0)
    return files


@pytest.mark.parametrize("codes", ["RAS", "LPS", "PSR"])
def test_axial_view_is_radiological(make_napari_viewer, tmp_path, codes):
    path, _ = _phantom_files(tmp_path)[codes]
    viewer = make_napari_viewer(show=True)
    (image,) = viewer.open(path, plugin="napari-medseg")
    assert image._type_string == "image"
    set_view(viewer, "axial")
    viewer.dims.point = (0.0, *viewer.dims.point[1:])  # central slice (z = 0)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    bright = np.argwhere(shot[..., 0] > 200)
    assert len(bright) > 20, "the marker is not visible"
    row, col = bright.mean(axis=0)
    height, width = shot.shape[:2]
    assert row < height / 2, "anterior must be at the top"
    assert col < width / 2, "patient right must be on the screen's left"


def test_coronal_and_sagittal_have_superior_up(make_napari_viewer, tmp_path):
    path, _ = _phantom_files(tmp_path)["LPS"]
    viewer = make_napari_viewer(show=True)
    viewer.open(path, plugin="napari-medseg")
    for plane, world_point in (
        ("coronal", (0.0, ras_to_world((0, -11, 0))[1], 0.0)),
        ("sagittal", (0.0, 0.0, ras_to_world((5.5, 0, 0))[2])),
    ):
        set_view(viewer, plane)
        viewer.dims.point = world_point
        shot = viewer.screenshot(canvas_only=True, flash=False)
        # the right-posterior-superior marker (600 -> grey) sits in the upper half
        grey = np.argwhere((shot[..., 0] > 60) & (shot[..., 0] < 200))
        assert len(grey) > 10, plane
        assert grey[:, 0].mean() < shot.shape[0] / 2, f"{plane}: superior must be up"


def test_voxel_orders_overlay(make_napari_viewer, tmp_path):
    files = _phantom_files(tmp_path)
    viewer = make_napari_viewer()
    layers = {
        codes: viewer.open(path, plugin="napari-medseg")[0] for codes, (path, _) in files.items()
    }
    extents = [layer.extent.world for layer in layers.values()]
    for extent in extents[1:]:
        np.testing.assert_allclose(extent, extents[0], atol=1e-6)
    centroids = []
    for layer in layers.values():
        index = np.argwhere(np.asarray(layer.data) == 1000).mean(axis=0)
        centroids.append(np.asarray(layer.data_to_world(index)))
    for centroid in centroids[1:]:
        np.testing.assert_allclose(centroid, centroids[0], atol=1e-6)
    # and that world point is the marker's patient position (R-A quadrant, S/P/L order)
    np.testing.assert_allclose(centroids[0][1:], ras_to_world((11.0, 11.0, 0.0))[1:], atol=1.0)


def test_view_orientation_widget_buttons(make_napari_viewer, tmp_path, qtbot):
    from napari_medseg._napari.widgets.view_orientation import ViewOrientation

    path, _ = _phantom_files(tmp_path)["RAS"]
    viewer = make_napari_viewer()
    viewer.open(path, plugin="napari-medseg")
    widget = ViewOrientation(viewer)
    qtbot.addWidget(widget)
    camera = viewer.scene.camera
    expected = {
        "coronal": ((1, 0, 2), ("up", "right")),
        "sagittal": ((2, 0, 1), ("up", "right")),
        "axial": ((0, 1, 2), ("down", "right")),
    }
    for plane, (order, orientation) in expected.items():
        # start each time from a state the button must change (3D, wrong order and camera)
        viewer.dims.ndisplay = 3
        viewer.dims.order = (1, 2, 0)
        camera.orientation2d = ("down", "left")
        camera.zoom = 0.01
        widget.buttons[plane].click()
        assert viewer.dims.ndisplay == 2, plane
        assert tuple(viewer.dims.order) == order, plane
        assert tuple(camera.orientation2d) == orientation, plane
        assert camera.zoom > 0.1, plane  # the view was fitted again


def test_new_labels_on_a_scan_keep_its_mm_units(make_napari_viewer, notes):
    """Plugin layers carry "mm" units; napari's New labels inherits them (no units toast)."""
    viewer = make_napari_viewer()
    image, tumour = viewer.open_sample("napari-medseg", "chest_ct")
    viewer.layers.selection = {image}
    viewer.layers.selection.active = image
    viewer._new_labels()  # the layer list's "New labels" button, one layer selected
    viewer.layers.selection = {image, tumour}
    viewer._new_labels()  # several layers selected: napari builds it from their extent
    for layer in viewer.layers:
        assert tuple(str(u) for u in layer.units) == ("millimeter",) * 3, layer.name
    assert not any("Inconsistent units" in n for n in notes)
    # the check can fail: a plain layer (pixel units) does raise napari's toast
    viewer.add_labels(np.zeros((4, 5, 6), np.uint8))
    assert any("Inconsistent units" in n for n in notes)
