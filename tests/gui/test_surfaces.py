"""Show 3D in the Segments list on a real viewer: Surface layers of the labels.

The sample CT and its tumour, with a second label beside it, opened through the
manifest; the button pressed with a real mouse click. Checked: one Surface layer per
shown label, named after the layer and the label, in the label's class colour, its
vertices in napari world mm around the label's voxels (as napari shows them) and
enclosing their volume; a rebuild after an edit updates the layers in place and drops
a label that was erased or hidden. Without a viewer: the RAS -> world placement on an
oblique grid lands on the de-obliqued display grid napari shows.
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import dock, open_sample
from geometry_cases import make_affine
from napari.layers import Surface
from qtpy.QtCore import Qt
from test_segment_list import OTHER, TUMOUR, _settled, _with_neighbour

from napari_medseg._napari.label_classes import layer_classes, rgba
from napari_medseg._napari.surfaces import SURFACE_KEY, ras_to_world, surface_layers
from napari_medseg.geometry import display_geometry
from napari_medseg.labels.mesh import mesh_volume_mm3

WAIT_MS = 60_000


@pytest.fixture
def sample(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    _, labels = open_sample(viewer, "chest_ct")
    _with_neighbour(labels)
    widget = dock(viewer, "Segments")
    _settled(qtbot, widget)
    return viewer, labels, widget


def _press_show_3d(qtbot, widget) -> None:
    with qtbot.waitSignal(widget.surfaces_shown, timeout=WAIT_MS):
        qtbot.mouseClick(widget.show_3d_button, Qt.MouseButton.LeftButton)
    assert not widget.building_surfaces


def _voxel_world(labels, value: int) -> np.ndarray:
    """World mm (S, P, L) of the centres of a label's voxels, as napari shows them."""
    index = np.argwhere(np.asarray(labels.data) == value)
    return index * np.asarray(labels.scale) + np.asarray(labels.translate)


def test_show_3d_adds_one_surface_per_label_in_world_mm_and_class_colours(sample, qtbot):
    viewer, labels, widget = sample
    _press_show_3d(qtbot, widget)
    surfaces = surface_layers(viewer, labels)
    assert sorted(surfaces) == [TUMOUR, OTHER]
    assert viewer.dims.ndisplay == 3
    classes = layer_classes(labels)
    voxel_mm3 = float(np.prod(labels.scale))
    for value, surface in surfaces.items():
        assert isinstance(surface, Surface)
        name = classes.get(value, (f"label_{value}", ""))[0]
        assert surface.name == f"{labels.name} 3D: {name}"
        assert surface.metadata[SURFACE_KEY]["value"] == value
        # the colour the labels layer shows the label in
        colour = rgba(classes[value][1]) if value in classes else labels.get_color(value)
        shown = np.asarray(surface.vertex_colors)
        np.testing.assert_allclose(shown, np.tile(colour, (len(shown), 1)), atol=1e-6)
        # in world mm: the surface layer adds no transform of its own, its units are the
        # labels' (napari warns of inconsistent units across layers otherwise)
        assert tuple(map(str, surface.units)) == tuple(map(str, labels.units))
        np.testing.assert_allclose(surface.scale, 1.0)
        np.testing.assert_allclose(surface.translate, 0.0)
        vertices, faces = surface.data[0], surface.data[1]
        centres = _voxel_world(labels, value)
        # the voxels' boundary lies half a voxel beyond their centres; keep_volume may
        # add up to half a voxel more (the tumour has 4 slices of 5 mm), smoothing a little
        step = np.asarray(labels.scale)
        assert np.all(vertices.min(0) >= centres.min(0) - 1.5 * step)
        assert np.all(vertices.max(0) <= centres.max(0) + 1.5 * step)
        np.testing.assert_allclose(vertices.mean(0), centres.mean(0), atol=float(step.max()))
        # (S, P, L) lists a mirror image of RAS: the winding reads negative in these numbers
        enclosed = -mesh_volume_mm3(vertices, faces)
        assert enclosed == pytest.approx(len(centres) * voxel_mm3, rel=0.02)
    assert "3D models of 2 labels" in widget.status.text()


def test_show_3d_again_rebuilds_after_edits_and_leaves_out_hidden_labels(sample, qtbot):
    viewer, labels, widget = sample
    _press_show_3d(qtbot, widget)
    first = surface_layers(viewer, labels)
    tumour_before = first[TUMOUR].data[0].copy()
    # an edit: label 2 grows by a slab of voxels, then the list catches up
    data = np.asarray(labels.data)
    box = np.argwhere(data == OTHER)
    low, high = box.min(0), box.max(0)
    grown = data.copy()
    grown[low[0] : high[0] + 1, low[1] : high[1] + 1, high[2] + 1 : high[2] + 5] = OTHER
    labels.data = grown
    _settled(qtbot, widget)
    _press_show_3d(qtbot, widget)
    second = surface_layers(viewer, labels)
    assert second[TUMOUR] is first[TUMOUR] and second[OTHER] is first[OTHER]  # in place
    np.testing.assert_allclose(second[TUMOUR].data[0], tumour_before)
    assert second[OTHER].data[0][:, 2].max() > _voxel_world(labels, OTHER)[:, 2].max() - 1.0
    assert -mesh_volume_mm3(*second[OTHER].data[:2]) == pytest.approx(
        np.count_nonzero(grown == OTHER) * float(np.prod(labels.scale)), rel=0.02
    )
    # a hidden label: its surface goes; the other stays
    widget.set_shown([OTHER], False)
    _press_show_3d(qtbot, widget)
    third = surface_layers(viewer, labels)
    assert sorted(third) == [TUMOUR]
    assert first[OTHER] not in viewer.layers
    assert len([layer for layer in viewer.layers if SURFACE_KEY in layer.metadata]) == 1


def test_show_3d_without_labels_says_so(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.add_labels(np.zeros((4, 5, 6), dtype=np.uint8), name="empty")
    widget = dock(viewer, "Segments")
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    with qtbot.waitSignal(widget.failed, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(widget.show_3d_button, Qt.MouseButton.LeftButton)
    assert "holds no label" in blocker.args[0]
    assert not [layer for layer in viewer.layers if isinstance(layer, Surface)]


def test_surfaces_of_an_oblique_scan_lie_on_its_deobliqued_display_grid():
    affine = make_affine("LPS", spacing=(0.8, 0.9, 2.5), rotation_deg=(12.0, -7.0, 20.0))
    shape = (30, 20, 10)
    geometry = display_geometry(affine, shape)
    assert geometry.deobliqued
    rng = np.random.default_rng(5)
    index = rng.uniform(0, 9, size=(50, 3))  # display voxel indices (S, P, L order)
    ras = index @ geometry.display_affine[:3, :3].T + geometry.display_affine[:3, 3]
    world = ras_to_world(ras, geometry)
    # where napari draws display voxel `index`: scale * index + translate
    np.testing.assert_allclose(world, index * geometry.scale + geometry.translate, atol=1e-3)


def test_organs_of_a_phantom_in_3d_with_their_class_colours(
    make_napari_viewer, qtbot, tmp_path, artifacts
):
    """The phantom's organs (a LAS-stored, mirroring grid) opened as a user opens a
    segmentation with its sidecar: one surface per organ in its class colour, enclosing
    the organ's volume; a screenshot of the 3D view for the README."""
    import nibabel as nib

    from napari_medseg.io.sidecar import sidecar_content, sidecar_path, write_sidecar
    from napari_medseg.labels.classes import classes_from_label_classes
    from napari_medseg.synthetic.phantom import BODY, PHANTOM_LABELS, make_phantom

    phantom = make_phantom(0, spacing=(1.6, 1.6, 2.0))
    organs = np.asarray(phantom.labels.array).copy()
    organs[organs == BODY] = 0  # the organs alone
    path = tmp_path / "organs.nii.gz"
    nib.save(nib.Nifti1Image(organs, phantom.labels.affine), path)
    classes = classes_from_label_classes(PHANTOM_LABELS)
    write_sidecar(sidecar_path(path), sidecar_content(classes, {}, "phantom.nii.gz"))
    viewer = make_napari_viewer(show=True)
    (labels,) = viewer.open(path, plugin="napari-medseg")
    widget = dock(viewer, "Segments")
    _settled(qtbot, widget)
    _press_show_3d(qtbot, widget)
    surfaces = surface_layers(viewer, labels)
    present = [int(v) for v in np.unique(organs) if v > 0]
    assert sorted(surfaces) == present
    voxel_mm3 = float(np.prod(labels.scale))
    for value, surface in surfaces.items():
        name, colour = classes[value]
        assert surface.name == f"{labels.name} 3D: {name}"
        np.testing.assert_allclose(np.asarray(surface.vertex_colors)[0], rgba(colour), atol=1e-6)
        enclosed = -mesh_volume_mm3(*surface.data[:2])
        assert enclosed == pytest.approx(np.count_nonzero(organs == value) * voxel_mm3, rel=0.02)
    labels.visible = False
    viewer.camera.angles = (0.0, 30.0, 80.0)
    viewer.reset_view()
    qtbot.wait(200)
    viewer.screenshot(str(artifacts / "surfaces.png"), canvas_only=False, flash=False)
