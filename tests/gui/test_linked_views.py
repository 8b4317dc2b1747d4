"""Linked axial, coronal and sagittal views on a real viewer.

The scans are written here with nibabel (a bright marker voxel away from the grid's
centre, so a view mirrored through an axis shows it on the wrong side), stored in RAS,
in LPI order and obliquely, and opened through the plugin's reader. Strokes and clicks
go through napari's own mouse callbacks (the layers' paint callbacks, the viewers' drag
callbacks) or through the vispy canvas of an extra view, as a user's mouse does; the
expected voxels come from the files' affines (``_helpers.voxel_world``), never from the
views' own conversions.
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import save_nifti, voxel_world
from geometry_cases import make_affine
from napari.utils._proxies import ReadOnlyWrapper
from napari.utils.interactions import (
    mouse_move_callbacks,
    mouse_press_callbacks,
    mouse_release_callbacks,
)
from qtpy.QtCore import Qt

from napari_medseg._napari.linked_views import (
    DOCK_NAME,
    hide_linked_views,
    linked_views_of,
    show_linked_views,
)
from napari_medseg._napari.views import VIEWS

SHAPE_RAS = (40, 36, 24)
SPACING_RAS = (0.8, 1.0, 2.0)
MARKER_RAS_VOXEL = (8, 26, 17)  # patient right, anterior, superior of the centre
MARKER_HU = 900


def _files(tmp_path, codes="RAS", rotation=(0.0, 0.0, 0.0)):
    """A CT-like scan with a marker voxel and a labels file with a box; returns
    (image path, labels path, affine, marker voxel in the stored order)."""
    axis_of = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
    order = [axis_of[c] for c in codes]
    shape = tuple(SHAPE_RAS[a] for a in order)
    spacing = tuple(SPACING_RAS[a] for a in order)
    affine = make_affine(codes, spacing=spacing, origin=(0.0, 0.0, 0.0), rotation_deg=rotation)
    affine[:3, 3] = -(affine[:3, :3] @ ((np.array(shape) - 1) / 2.0))
    # the marker voxel in the stored order: the same RAS voxel of the RAS-stored grid
    ras_index = np.array(MARKER_RAS_VOXEL)
    stored = []
    for code, axis in zip(codes, order, strict=True):
        index = ras_index[axis]
        stored.append(index if code in "RAS" else SHAPE_RAS[axis] - 1 - index)
    rng = np.random.default_rng(1)
    image = rng.integers(-60, 60, size=shape).astype(np.int16)
    image[tuple(stored)] = MARKER_HU
    labels = np.zeros(shape, dtype=np.uint8)
    labels[tuple(slice(n // 3, 2 * n // 3) for n in shape)] = 1
    tag = codes + ("_oblique" if any(rotation) else "")
    image_path = save_nifti(tmp_path / f"scan_{tag}.nii.gz", image, affine)
    labels_path = save_nifti(tmp_path / f"scan_{tag}_labels.nii.gz", labels, affine)
    return image_path, labels_path, affine, tuple(stored)


def _open(viewer, tmp_path, codes="RAS", rotation=(0.0, 0.0, 0.0)):
    image_path, labels_path, affine, marker = _files(tmp_path, codes, rotation)
    (image,) = viewer.open(image_path, plugin="napari-medseg")
    (labels,) = viewer.open(labels_path, plugin="napari-medseg")
    assert labels._type_string == "labels"
    return image, labels, affine, marker


def _event(model, Event, kind, world, modifiers=()):  # noqa: N803 (napari's fixture)
    event = Event(
        type=kind,
        is_dragging=kind == "mouse_move",
        position=tuple(float(v) for v in world),
        dims_displayed=tuple(model.dims.displayed),
        dims_point=list(model.dims.point),
        pos=np.zeros(2),
        button=1,
    )
    event.modifiers = modifiers  # as napari's own mouse events carry them
    return ReadOnlyWrapper(event)


def _voxel_step(layer) -> np.ndarray:
    """World mm per data step along (S, P, L) of a layer shown straight (no rotation)."""
    return np.abs(np.diag(layer.affine.affine_matrix[:3, :3])) * np.asarray(layer.scale)


@pytest.fixture
def linked(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    image, labels, affine, marker = _open(viewer, tmp_path)
    views = show_linked_views(viewer)
    return viewer, views, image, labels, affine, marker


def test_three_views_of_the_same_layers_in_the_house_convention(linked):
    viewer, views, image, labels, _, _ = linked
    for plane, model in views.models().items():
        slider, _, orientation = VIEWS[plane]
        assert model.dims.order[0] == slider, plane
        assert model.dims.ndisplay == 2, plane
        assert tuple(model.scene.camera.orientation2d) == orientation, plane
        names = [layer.name for layer in model.layers]
        assert names == [image.name, labels.name], (plane, names)  # the crosshair is no layer
        # the same arrays, not copies
        assert views.mirror_of(labels, plane).data is labels.data
        assert views.mirror_of(image, plane).data is image.data
    assert DOCK_NAME in viewer.window.dock_widgets
    assert linked_views_of(viewer) is views


@pytest.mark.parametrize(
    ("codes", "rotation"), [("RAS", (0, 0, 0)), ("LPI", (0, 0, 0)), ("PIL", (12.0, -8.0, 20.0))],
    ids=["RAS", "LPI", "oblique"],
)
def test_a_click_moves_the_other_views_to_the_voxel_within_half_a_voxel(
    make_napari_viewer, tmp_path, codes, rotation, MouseEvent  # noqa: N803
):
    viewer = make_napari_viewer()
    image, labels, affine, marker = _open(viewer, tmp_path, codes, rotation)
    views = show_linked_views(viewer)
    # the marker where napari draws it: its voxel of the layer's array, through the layer
    (shown,) = np.argwhere(np.asarray(image.data) == MARKER_HU)
    world = np.asarray(image.data_to_world(shown), dtype=float)
    if not any(rotation):  # a straight scan is drawn where its file's affine puts it
        np.testing.assert_allclose(world, voxel_world(affine, marker), atol=1e-4)
    step = _voxel_step(image)
    # the axial view at the marker's slice (scrolling: the other views stay)
    before = {p: m.dims.point for p, m in views.models().items()}
    viewer.dims.set_point(0, float(world[0]))
    for plane in ("coronal", "sagittal"):
        assert views.models()[plane].dims.point[VIEWS[plane][0]] == before[plane][VIEWS[plane][0]]
    # a click (no drag) in pan/zoom mode on the marker
    labels.mode = "pan_zoom"
    mouse_press_callbacks(viewer, _event(viewer, MouseEvent, "mouse_press", world))
    mouse_release_callbacks(viewer, _event(viewer, MouseEvent, "mouse_release", world))
    crosshair = views.crosshair()
    assert np.all(np.abs(crosshair - world) <= step / 2 + 1e-6), (crosshair, world, step)
    # every view shows the marker on its slice, and the crosshair through it
    for plane in views.models():
        mirror = views.mirror_of(image, plane)
        assert mirror._slice.image.raw.max() == MARKER_HU, plane
        lines = views.crosshair_segments(plane)  # (2 lines, start/end, 3) world mm
        for start, end in lines:
            moving = np.flatnonzero(end != start)
            fixed = [a for a in range(3) if a not in moving]
            np.testing.assert_allclose(start[fixed], crosshair[fixed])
            np.testing.assert_allclose(end[fixed], crosshair[fixed])
        # what the canvas draws: the lines in its scene, (x, y) = displayed axes reversed
        displayed = list(views.models()[plane].dims.displayed)
        drawn = views._crosshair_lines[plane].visual.pos
        np.testing.assert_allclose(drawn, lines[:, :, displayed[::-1]].reshape(-1, 2), atol=1e-3)


def test_a_click_on_an_extra_views_canvas_moves_the_crosshair_there(linked, qtbot):
    viewer, views, image, *_ = linked
    view = views.views["coronal"]
    view.qt_viewer.resize(400, 300)
    view.model.reset_view()
    qtbot.wait(50)
    canvas = view.qt_viewer.canvas._scene_canvas
    width, height = canvas.size
    pos = (0.45 * width, 0.6 * height)  # on the scan (fitted in the middle)
    canvas.events.mouse_press(pos=pos, button=1, modifiers=())
    canvas.events.mouse_release(pos=pos, button=1, modifiers=())
    clicked = np.asarray(view.model.cursor.position)  # napari's own canvas -> world
    crosshair = views.crosshair()
    step = _voxel_step(image)
    for axis in VIEWS["coronal"][1]:  # S and L: where the click was
        assert abs(crosshair[axis] - clicked[axis]) <= step[axis] / 2 + 1e-6
    # the coronal view's own slice did not move; the axial and sagittal went there
    assert viewer.dims.point[0] == crosshair[0]
    assert views.models()["sagittal"].dims.point[2] == crosshair[2]


def test_painting_does_not_move_the_crosshair(linked, MouseEvent):  # noqa: N803
    viewer, views, image, labels, *_ = linked
    labels.mode = "paint"
    before = views.crosshair()
    target = before + np.array([0.0, 5.0, 5.0])
    mouse_press_callbacks(viewer, _event(viewer, MouseEvent, "mouse_press", target))
    mouse_release_callbacks(viewer, _event(viewer, MouseEvent, "mouse_release", target))
    np.testing.assert_array_equal(views.crosshair(), before)


def test_a_stroke_in_the_coronal_view_paints_the_shared_voxels_with_one_undo(
    linked, qtbot, MouseEvent  # noqa: N803
):
    viewer, views, image, labels, *_ = linked
    coronal = views.views["coronal"]
    mirror = views.mirror_of(labels, "coronal")
    painted_events = []
    labels.events.paint.connect(lambda event: painted_events.append(event.value))
    labels.selected_label = 3
    labels.brush_size = 3
    labels.mode = "paint"
    assert mirror.mode == "paint" and mirror.selected_label == 3 and mirror.brush_size == 3
    coronal.model.layers.selection.active = mirror
    centre = views.crosshair()
    stroke = [centre + np.array([ds, 0.0, dl]) for ds, dl in ((-4, -6), (0, 0), (4, 6))]
    before = np.array(labels.data, copy=True)
    mouse_press_callbacks(mirror, _event(coronal.model, MouseEvent, "mouse_press", stroke[0]))
    for point in stroke[1:]:
        mouse_move_callbacks(mirror, _event(coronal.model, MouseEvent, "mouse_move", point))
    mouse_release_callbacks(mirror, _event(coronal.model, MouseEvent, "mouse_release", stroke[-1]))
    changed = np.argwhere(np.asarray(labels.data) != before)
    assert len(changed) > 3
    assert np.all(np.asarray(labels.data)[tuple(changed.T)] == 3)
    # the stroke lies in the coronal plane: one P (world axis 1), several S and L
    world = np.array([labels.data_to_world(index) for index in changed])
    assert np.ptp(world[:, 1]) < 1e-6 and np.ptp(world[:, 0]) > 0 and np.ptp(world[:, 2]) > 0
    assert abs(world[0, 1] - centre[1]) <= _voxel_step(image)[1] / 2 + 1e-6
    # a voxel painted in the coronal view is that voxel of the axial view's layer data
    for index in changed:
        assert views.mirror_of(labels, "sagittal").data[tuple(index)] == 3
    # one undo history: the stroke is the viewer's layer's newest step, announced there
    assert len(painted_events) == 1 and len(mirror._undo_history) == 0
    assert len(labels._undo_history) >= 1
    # Ctrl+Z in the coronal view undoes it (on the one history)
    coronal.qt_viewer.canvas.native.setFocus()
    qtbot.keyClick(coronal.qt_viewer.canvas.native, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_array_equal(np.asarray(labels.data), before)
    # and redo from the axial view's layer
    labels.redo()
    assert np.all(np.asarray(labels.data)[tuple(changed.T)] == 3)


def test_a_new_array_and_an_undo_reach_every_view(linked):
    viewer, views, image, labels, *_ = linked
    replacement = np.zeros_like(np.asarray(labels.data))
    replacement[2:5, 2:5, 2:5] = 4
    labels.data = replacement
    for plane in ("coronal", "sagittal"):
        assert views.mirror_of(labels, plane).data is labels.data
    labels.opacity = 0.25
    labels.visible = False
    for plane in ("coronal", "sagittal"):
        mirror = views.mirror_of(labels, plane)
        assert mirror.opacity == 0.25 and mirror.visible is False


def test_scrolling_refreshes_no_mirror_while_edits_and_undo_do(linked, qtbot):
    """A slice change of the axial view is not an edit: the other views keep their slices
    (and no refresh feeds itself, which once redrew all three views on every turn of
    the event loop); an edit written in place, a stroke and its undo reach them."""
    viewer, views, image, labels, *_ = linked
    mirrors = [views.mirror_of(labels, plane) for plane in ("coronal", "sagittal")]
    refreshed = {id(mirror): 0 for mirror in mirrors}
    for mirror in mirrors:
        mirror.events.set_data.connect(
            lambda event: refreshed.__setitem__(id(event.source), refreshed[id(event.source)] + 1))
    qtbot.wait(20)
    axis = viewer.dims.order[0]
    for step in (1, 1, -1):
        viewer.dims.set_current_step(axis, viewer.dims.current_step[axis] + step)
        qtbot.wait(20)
    assert set(refreshed.values()) == {0}

    labels.data[2:4, 2:4, 2:4] = 5  # written in place, then refreshed (as a plugin would)
    labels.refresh()
    qtbot.waitUntil(lambda: min(refreshed.values()) >= 1, timeout=2000)
    qtbot.wait(50)
    assert set(refreshed.values()) == {1}  # once, not again and again

    labels.selected_label = 3
    labels.paint(np.array(labels.world_to_data(views.crosshair())), 3)
    qtbot.waitUntil(lambda: min(refreshed.values()) >= 2, timeout=2000)
    labels.undo()
    qtbot.waitUntil(lambda: min(refreshed.values()) >= 3, timeout=2000)
    qtbot.wait(50)
    assert set(refreshed.values()) == {3}


def _scene(viewer):
    return viewer.window._qt_viewer.canvas.view.scene


def test_the_crosshair_is_drawn_over_the_layers(linked, qtbot):
    """Yellow pixels on the axial canvas along the crosshair, none without the views."""
    viewer, views, *_ = linked
    viewer.window._qt_window.show()

    def yellow() -> int:
        shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
        return int(((shot[..., 0] > 180) & (shot[..., 1] > 150) & (shot[..., 2] < 90)).sum())

    qtbot.waitUntil(lambda: yellow() > 100, timeout=5_000)
    hide_linked_views(viewer)
    qtbot.waitUntil(lambda: yellow() == 0, timeout=5_000)


def test_layers_added_and_removed_follow(linked):
    viewer, views, image, labels, *_ = linked
    extra = viewer.add_labels(np.zeros(labels.data.shape, dtype=np.uint8), name="extra",
                              affine=labels.affine, scale=labels.scale,
                              translate=labels.translate)
    for plane in ("coronal", "sagittal"):
        names = [layer.name for layer in views.models()[plane].layers]
        assert names[:3] == [image.name, labels.name, "extra"], names
    viewer.layers.remove(extra)
    for plane in ("coronal", "sagittal"):
        assert "extra" not in [layer.name for layer in views.models()[plane].layers]


def test_hiding_returns_to_the_single_view(linked):
    viewer, views, image, labels, *_ = linked
    hide_linked_views(viewer)
    assert DOCK_NAME not in viewer.window.dock_widgets
    assert views.crosshair_segments("axial") is None
    assert not any(node.__class__.__name__ == "Line" for node in _scene(viewer).children)
    assert linked_views_of(viewer) is None
    # no more mirroring
    labels.opacity = 0.3
    assert views.mirror_of(labels, "coronal") not in viewer.layers


def test_the_views_dock_toggles_linked_views_and_3d(make_napari_viewer, tmp_path, qtbot):
    from napari_medseg._napari.widgets.view_orientation import ViewOrientation

    viewer = make_napari_viewer()
    _open(viewer, tmp_path)
    widget = ViewOrientation(viewer)
    qtbot.addWidget(widget)
    assert not widget.linked_button.isChecked()
    widget.linked_button.click()
    assert linked_views_of(viewer) is not None
    widget.button_3d.click()
    assert viewer.dims.ndisplay == 3
    assert all(view.model.dims.ndisplay == 2 for view in linked_views_of(viewer).views.values())
    widget.button_3d.click()
    widget.linked_button.click()
    assert linked_views_of(viewer) is None and viewer.dims.ndisplay == 2


def _drag_on(qtbot, view, start, end, modifiers=(), steps=4) -> None:
    """Press, move and release the left button on an extra view's vispy canvas (px)."""
    canvas = view.qt_viewer.canvas._scene_canvas
    start, end = np.rint(start).astype(int), np.rint(end).astype(int)
    canvas.events.mouse_move(pos=start, modifiers=modifiers)
    qtbot.wait(30)
    press = last = canvas.events.mouse_press(pos=start, button=1, buttons=[1], modifiers=modifiers)
    for t in np.linspace(0.0, 1.0, steps + 1)[1:]:
        last = canvas.events.mouse_move(
            pos=np.rint(start + t * (end - start)).astype(int), button=1, buttons=[1],
            modifiers=modifiers, press_event=press, last_event=last,
        )
        qtbot.wait(10)
    canvas.events.mouse_release(pos=end, button=1, modifiers=modifiers, press_event=press,
                                last_event=last)
    qtbot.wait(10)


def test_ctrl_drag_in_an_extra_view_sets_the_window_and_paints_nothing(linked, qtbot):
    from vispy.util import keys

    viewer, views, image, labels, *_ = linked
    view = views.views["sagittal"]
    view.qt_viewer.resize(400, 300)
    qtbot.wait(50)
    labels.mode = "paint"
    before_data = np.asarray(labels.data).copy()
    before_window = tuple(image.contrast_limits)
    centre = np.array(view.qt_viewer.canvas._scene_canvas.size) // 2
    _drag_on(qtbot, view, centre, centre + (60, 0), modifiers=(keys.CONTROL,))
    assert tuple(image.contrast_limits) != before_window  # the viewer's own layer
    assert np.diff(image.contrast_limits)[0] > np.diff(before_window)[0]  # right: wider
    for plane in ("coronal", "sagittal"):
        assert tuple(views.mirror_of(image, plane).contrast_limits) == tuple(image.contrast_limits)
    np.testing.assert_array_equal(np.asarray(labels.data), before_data)


def test_shift_drag_moves_the_crosshair_along(linked, qtbot):
    from vispy.util import keys

    viewer, views, image, *_ = linked
    view = views.views["coronal"]
    view.qt_viewer.resize(400, 300)
    view.model.reset_view()
    qtbot.wait(50)
    width, height = view.qt_viewer.canvas._scene_canvas.size
    start, end = np.array([0.3 * width, 0.3 * height]), np.array([0.7 * width, 0.6 * height])
    _drag_on(qtbot, view, start, end, modifiers=(keys.SHIFT,))
    released = np.asarray(view.model.cursor.position)  # napari's canvas -> world
    crosshair = views.crosshair()
    step = _voxel_step(image)
    for axis in VIEWS["coronal"][1]:
        low, high, _ = view.model.dims.range[axis]  # (past the scan: its edge slice)
        expected = min(max(released[axis], low), high)
        assert abs(crosshair[axis] - expected) <= step[axis] / 2 + 1e-6
