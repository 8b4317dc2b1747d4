"""Window/level by mouse drag and the cursor status, on a real viewer.

The drags are vispy mouse events sent to the viewer's canvas (the events Qt's mouse
gives napari), so napari's own handlers (the labels brush, the camera) get whatever
the W/L drag lets through: a plain drag in paint mode must paint (the control), a
W/L drag must not. The expected windows come from Slicer's mapping written out here
(gain = value range / smaller view side), not from the code under test.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from _helpers import dock, open_sample, save_nifti, voxel_world
from geometry_cases import make_affine
from qtpy.QtCore import QEvent, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtWidgets import QApplication, QLabel
from vispy.util import keys

from napari_medseg._napari.history import scene_canvas
from napari_medseg._napari.label_classes import set_label_class
from napari_medseg._napari.layer_volume import layer_volume
from napari_medseg._napari.layers import labels_like


def _canvas_drag(qtbot, viewer, start, end, *, modifiers=(), steps=4) -> None:
    """Hover at ``start`` (canvas px), press the left button, move to ``end``, release.

    Positions are whole pixels, as Qt gives them."""
    canvas = scene_canvas(viewer)
    start, end = np.rint(start).astype(int), np.rint(end).astype(int)
    canvas.events.mouse_move(pos=start, modifiers=modifiers)
    qtbot.wait(30)  # napari's move handler is throttled (5 ms)
    press = last = canvas.events.mouse_press(pos=start, button=1, buttons=[1], modifiers=modifiers)
    for t in np.linspace(0.0, 1.0, steps + 1)[1:]:
        last = canvas.events.mouse_move(
            pos=np.rint(start + t * (end - start)).astype(int),
            button=1,
            buttons=[1],
            modifiers=modifiers,
            press_event=press,
            last_event=last,
        )
        qtbot.wait(10)
    canvas.events.mouse_release(
        pos=end, button=1, modifiers=modifiers, press_event=press, last_event=last
    )
    qtbot.wait(10)


def _centre_px(viewer) -> np.ndarray:
    width, height = scene_canvas(viewer).size
    return np.array([width // 2, height // 2])


def _expected_window(image, start, dx, dy, pixels) -> tuple[float, float]:
    """3D Slicer's ProcessAdjustWindowLevel, on Qt's screen axes (y down)."""
    data = np.asarray(image.data)
    gain = (float(data.max()) - float(data.min())) / pixels
    return start[0] - gain * dy, start[1] + gain * dx


def _window(image) -> tuple[float, float]:
    low, high = image.contrast_limits
    return (low + high) / 2.0, high - low


@pytest.fixture
def chest(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    image, labels = open_sample(viewer, "chest_ct")
    widget = dock(viewer, "Window presets")
    viewer.reset_view()
    qtbot.wait(50)
    return viewer, image, labels, widget


def test_wl_mode_drags_the_window_and_paints_nothing(chest, qtbot):
    viewer, image, labels, widget = chest
    widget.apply_preset("abdomen")  # centre 50, width 400
    viewer.layers.selection.active = labels
    labels.mode = "paint"
    labels.brush_size = 10
    labels.selected_label = 1
    before = np.asarray(labels.data).copy()
    centre = _centre_px(viewer)

    # the control: napari's own brush paints on a plain drag
    _canvas_drag(qtbot, viewer, centre, centre + (60, -30))
    painted = np.asarray(labels.data) != before
    assert painted.any(), "the drag did not reach napari's brush: the test proves nothing"
    labels.undo()
    np.testing.assert_array_equal(np.asarray(labels.data), before)

    widget.drag_button.click()
    assert widget.tool.mode and widget.drag_button.isChecked()
    start = _window(image)
    pixels = min(scene_canvas(viewer).size)
    camera = tuple(viewer.scene.camera.center)
    _canvas_drag(qtbot, viewer, centre, centre + (60, -30))  # right and up
    center, width = _window(image)
    expected = _expected_window(image, start, 60.0, -30.0, pixels)
    np.testing.assert_allclose((center, width), expected, rtol=1e-9)
    assert width > start[1] and center > start[0]  # wider, higher level
    np.testing.assert_array_equal(np.asarray(labels.data), before)  # nothing painted
    assert tuple(viewer.scene.camera.center) == camera  # nothing panned
    # the dock shows the dragged window
    assert widget.window_label.text() == f"centre {center:.1f} HU, width {width:.1f} HU"

    # left and down: narrower, lower
    start = _window(image)
    _canvas_drag(qtbot, viewer, centre, centre + (-40, 25))
    np.testing.assert_allclose(
        _window(image), _expected_window(image, start, -40.0, 25.0, pixels), rtol=1e-9
    )
    np.testing.assert_array_equal(np.asarray(labels.data), before)

    # the W key switches the mode off; the button follows
    qtbot.keyClick(scene_canvas(viewer).native, Qt.Key.Key_W)
    assert not widget.tool.mode and not widget.drag_button.isChecked()
    qtbot.keyClick(scene_canvas(viewer).native, Qt.Key.Key_W)
    assert widget.tool.mode and widget.drag_button.isChecked()
    widget.drag_button.click()
    assert not widget.tool.mode


def test_ctrl_drag_sets_the_window_while_painting(chest, qtbot):
    viewer, image, labels, widget = chest
    assert not widget.tool.mode
    viewer.layers.selection.active = labels  # a labels layer in paint mode is selected
    labels.mode = "paint"
    labels.brush_size = 10
    labels.selected_label = 1
    before = np.asarray(labels.data).copy()
    history = len(labels._undo_history)
    start = _window(image)
    centre = _centre_px(viewer)
    pixels = min(scene_canvas(viewer).size)
    ctrl = (keys.CONTROL,)
    _canvas_drag(qtbot, viewer, centre, centre + (80, 40), modifiers=ctrl)
    np.testing.assert_allclose(
        _window(image), _expected_window(image, start, 80.0, 40.0, pixels), rtol=1e-9
    )
    np.testing.assert_array_equal(np.asarray(labels.data), before)
    assert len(labels._undo_history) == history
    assert viewer.layers.selection.active is labels and labels.mode == "paint"

    # in pan/zoom mode with the image selected: no pan either
    viewer.layers.selection.active = image
    camera = tuple(viewer.scene.camera.center)
    start = _window(image)
    _canvas_drag(qtbot, viewer, centre, centre + (-30, -60), modifiers=ctrl)
    assert tuple(viewer.scene.camera.center) == camera
    np.testing.assert_allclose(
        _window(image), _expected_window(image, start, -30.0, -60.0, pixels), rtol=1e-9
    )
    # a plain drag there still pans (napari's camera is not taken)
    _canvas_drag(qtbot, viewer, centre, centre + (-30, -60))
    assert tuple(viewer.scene.camera.center) != camera


def test_the_image_under_the_cursor_is_adjusted_and_the_dock_follows(chest, qtbot):
    viewer, image, labels, widget = chest
    # a second image on top, over the left part of the scan only (columns short of the
    # middle, where the canvas centre is)
    part = np.asarray(image.data)[..., : image.data.shape[-1] // 2 - 10] + 100
    top = viewer.add_image(
        part,
        name="top",
        scale=image.scale,
        translate=image.translate,
        units=image.units,
        contrast_limits=(0, 500),
    )
    viewer.layers.move(viewer.layers.index(labels), len(viewer.layers) - 1)  # labels on top
    widget.layer_combo.set_layer(image)
    viewer.layers.selection.active = labels
    labels.mode = "paint"
    before = (tuple(image.contrast_limits), tuple(top.contrast_limits))
    canvas_centre = _centre_px(viewer)
    ctrl = (keys.CONTROL,)
    # the canvas centre: only the scan is under the cursor
    _canvas_drag(qtbot, viewer, canvas_centre, canvas_centre + (50, 0), modifiers=ctrl)
    world = np.asarray(viewer.cursor.position)
    assert top.world_to_data(world)[-1] > top.data.shape[-1] - 0.5  # (right of "top")
    assert image.world_to_data(world)[-1] < image.data.shape[-1] - 0.5
    assert tuple(top.contrast_limits) == before[1]
    assert tuple(image.contrast_limits) != before[0]
    # over the left half the top image is under the cursor: it is adjusted, and the dock
    # shows it and its new window
    x_left = canvas_centre - (scene_canvas(viewer).size[0] // 8, 0)
    scan_window = tuple(image.contrast_limits)
    _canvas_drag(qtbot, viewer, x_left, x_left + (50, 0), modifiers=ctrl)
    assert 0 <= top.world_to_data(viewer.cursor.position)[-1] < top.data.shape[-1] - 0.5
    assert viewer.layers.selection.active is labels and labels.mode == "paint"
    assert tuple(image.contrast_limits) == scan_window
    assert tuple(top.contrast_limits) != before[1]
    assert widget.layer_combo.layer() is top
    center, width = _window(top)
    assert widget.window_label.text() == f"centre {center:.1f} HU, width {width:.1f} HU"


def test_a_drag_goes_beyond_the_opening_range(chest, qtbot):
    viewer, image, _, widget = chest
    data = np.asarray(image.data)
    widget.apply_preset("brain")  # 0..80 HU: the range napari's slider started with
    widget.drag_button.click()
    centre = _centre_px(viewer)
    _canvas_drag(qtbot, viewer, centre, centre + (scene_canvas(viewer).size[0] / 3, 0))
    low, high = image.contrast_limits
    assert high - low > 80.0
    range_low, range_high = image.contrast_limits_range
    assert range_low <= data.min() and range_high >= data.max()  # all the values reachable
    widget.drag_button.click()


def _scan_with_labels(viewer, tmp_path, codes, rotation):
    """A CT-like scan stored in ``codes`` order (oblique when rotated), a labels layer
    on its grid with 'liver' (6) at one voxel; returns (image, labels, ijk, world, hu)."""
    shape = (14, 12, 9)
    affine = make_affine(codes, spacing=(0.9, 1.1, 2.5), rotation_deg=rotation)
    array = np.random.default_rng(3).integers(-1024, 1500, size=shape).astype(np.int16)
    path = save_nifti(tmp_path / f"scan_{codes}.nii.gz", array, affine)
    (image,) = viewer.open(str(path), plugin="napari-medseg")
    data, kwargs, _ = labels_like(image, name="organs")
    labels = viewer.add_labels(data, **kwargs)
    ijk = (9, 3, 6)  # away from the centre: a mirrored axis would name another voxel
    source = layer_volume(image)
    one = np.zeros(shape, dtype=bool)
    one[ijk] = True
    display_index = tuple(np.argwhere(source.geometry.to_display(one))[0])
    if any(rotation):
        # shown straightened: the voxel drawn at this point is the one named
        world = np.asarray(image.data_to_world(display_index))
    else:
        world = voxel_world(affine, ijk)  # its true position, from the file's affine alone
    labels.data[display_index] = 6
    labels.refresh()
    set_label_class(labels, 6, name="liver")
    hu = float(nib.load(path).get_fdata()[ijk])  # the file's value, read by nibabel
    return image, labels, ijk, world, hu


@pytest.mark.parametrize(
    "codes, rotation", [("LPS", (0.0, 0.0, 0.0)), ("RAS", (8.0, 0.0, 12.0))], ids=["LPS", "oblique"]
)
def test_status_names_hu_and_label_whichever_layer_is_selected(
    make_napari_viewer, tmp_path, codes, rotation
):
    viewer = make_napari_viewer()
    image, labels, _, world, hu = _scan_with_labels(viewer, tmp_path, codes, rotation)
    points = viewer.add_points(np.zeros((0, 3)), name="marks")
    dock(viewer, "Window presets")  # installs the status
    viewer.dims.set_point(0, float(world[0]))
    viewer.mouse_over_canvas = True
    expected = [f"{image.name}: {hu:.1f} HU", "organs: liver (6)"]
    for selected in (image, labels, points):
        viewer.layers.selection.active = selected
        viewer.cursor.position = tuple(float(v) for v in world)
        viewer.update_status_from_cursor()  # napari's own status update
        status = viewer.status
        text = status["coordinates"] if isinstance(status, dict) else status
        for part in expected:
            assert part in text, (selected.name, text)
    # the status bar itself shows it (the window's own rendering of viewer.status)
    shown = [label.text() for label in viewer.window._qt_window.statusBar().findChildren(QLabel)]
    assert any(all(part in text for part in expected) for text in shown), shown
    # several layers selected: napari's status is a string; the parts follow it
    viewer.layers.selection.update({image, labels})
    viewer.update_status_from_cursor()
    assert isinstance(viewer.status, str)
    assert all(part in viewer.status for part in expected), viewer.status
    # the neighbouring voxel holds no label: background, and its own HU
    step = np.zeros(3)
    step[2] = abs(image.scale[2])
    viewer.layers.selection.active = labels
    viewer.cursor.position = tuple(float(v) for v in world + step)
    viewer.update_status_from_cursor()
    assert "organs: background" in viewer.status["coordinates"]


def _qt_mouse(widget, kind, pos, button, buttons, modifiers) -> None:
    local = QPointF(float(pos[0]), float(pos[1]))
    event = QMouseEvent(kind, local, widget.mapToGlobal(local), button, buttons, modifiers)
    QApplication.sendEvent(widget, event)


def test_ctrl_drag_through_qt_mouse_events(chest, qtbot):
    """The same drag as Qt delivers it to vispy's backend (Ctrl as Qt's ControlModifier)."""
    viewer, image, labels, _ = chest
    viewer.layers.selection.active = labels
    labels.mode = "paint"
    labels.brush_size = 10
    before = np.asarray(labels.data).copy()
    native = scene_canvas(viewer).native
    start = _centre_px(viewer)
    pixels = min(scene_canvas(viewer).size)
    window = _window(image)
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    ctrl = Qt.KeyboardModifier.ControlModifier
    _qt_mouse(native, QEvent.Type.MouseMove, start, none, none, ctrl)
    qtbot.wait(30)
    _qt_mouse(native, QEvent.Type.MouseButtonPress, start, left, left, ctrl)
    for step in (20, 40, 60):
        _qt_mouse(native, QEvent.Type.MouseMove, start + (step, step // 2), none, left, ctrl)
        qtbot.wait(10)
    _qt_mouse(native, QEvent.Type.MouseButtonRelease, start + (60, 30), left, none, ctrl)
    qtbot.wait(10)
    np.testing.assert_allclose(
        _window(image), _expected_window(image, window, 60.0, 30.0, pixels), rtol=1e-9
    )
    np.testing.assert_array_equal(np.asarray(labels.data), before)


def test_escape_puts_the_window_back(chest, qtbot):
    viewer, image, labels, _ = chest
    viewer.layers.selection.active = labels
    labels.mode = "paint"
    before = np.asarray(labels.data).copy()
    limits = tuple(image.contrast_limits)
    canvas = scene_canvas(viewer)
    start = _centre_px(viewer)
    ctrl = (keys.CONTROL,)
    canvas.events.mouse_move(pos=start, modifiers=ctrl)
    qtbot.wait(30)
    press = last = canvas.events.mouse_press(pos=start, button=1, buttons=[1], modifiers=ctrl)
    last = canvas.events.mouse_move(
        pos=start + (40, 20), buttons=[1], modifiers=ctrl, press_event=press, last_event=last
    )
    assert tuple(image.contrast_limits) != limits
    canvas.events.key_press(key=keys.ESCAPE, modifiers=ctrl)
    assert tuple(image.contrast_limits) == limits
    # the rest of the drag changes nothing and still reaches no brush
    last = canvas.events.mouse_move(
        pos=start + (80, 40), buttons=[1], modifiers=ctrl, press_event=press, last_event=last
    )
    canvas.events.mouse_release(
        pos=start + (80, 40), button=1, modifiers=ctrl, press_event=press, last_event=last
    )
    qtbot.wait(10)
    assert tuple(image.contrast_limits) == limits
    np.testing.assert_array_equal(np.asarray(labels.data), before)


def test_an_extra_view_adjusts_the_layer_it_shows(chest, qtbot):
    """A layout's extra canvas (a QtViewer of its own model showing a copy of the scan)
    adjusts the viewer's layer through ``source_of``, as linked views need."""
    from napari.components import ViewerModel
    from napari.qt import QtViewer

    from napari_medseg._napari.window_level import window_level_tool

    viewer, image, _, _ = chest
    model = ViewerModel(title="coronal")
    extra = QtViewer(model, show_welcome_screen=False)
    qtbot.addWidget(extra)
    extra.resize(400, 300)
    extra.show()
    copy = model.add_image(image.data, scale=image.scale, translate=image.translate)
    model.reset_view()
    tool = window_level_tool(viewer)
    assert tool.attach(extra, model, source_of=lambda layer: image if layer is copy else None)
    assert not tool.attach(extra, model)  # once per canvas
    qtbot.wait(50)  # (the canvas takes its size)
    copy_limits, window = tuple(copy.contrast_limits), _window(image)
    canvas = scene_canvas(extra)
    pixels = min(canvas.size)
    start = np.array([canvas.size[0] // 2, canvas.size[1] // 2])
    ctrl = (keys.CONTROL,)
    canvas.events.mouse_move(pos=start, modifiers=ctrl)
    qtbot.wait(30)
    press = canvas.events.mouse_press(pos=start, button=1, buttons=[1], modifiers=ctrl)
    move = canvas.events.mouse_move(
        pos=start + (30, -20), buttons=[1], modifiers=ctrl, press_event=press, last_event=press
    )
    canvas.events.mouse_release(
        pos=start + (30, -20), button=1, modifiers=ctrl, press_event=press, last_event=move
    )
    np.testing.assert_allclose(
        _window(image), _expected_window(image, window, 30.0, -20.0, pixels), rtol=1e-9
    )
    assert tuple(copy.contrast_limits) == copy_limits  # the copy follows only if linked
