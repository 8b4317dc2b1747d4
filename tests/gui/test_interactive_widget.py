"""The Interactive dock on a real viewer, docked through the manifest.

A phantom holds a bright ball (radius 7.05 mm, 60 HU) in a dark scan (-800 HU), with
noise. Clicks, boxes and scribbles are sent through napari's own mouse callbacks of the
prompt layers, at world millimetres computed here from the ball's RAS+ centre (never
from the dock's own conversion), and the mask must be the analytic ball: the voxels
whose centres lie within the radius, in napari's world. The same holds for the scan
stored in another voxel order and for an oblique scan (shown straightened: the click
names the voxel under the mouse, whose true position is what the mask is measured from).
The ball lies away from the grid's centre, so a click mirrored through an axis would miss
it, and each prompt's RAS+ position is checked too.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from _helpers import dock, grid_positions, ras_to_world, save_nifti
from geometry_cases import make_affine
from napari.utils._proxies import ReadOnlyWrapper
from napari.utils.interactions import (
    mouse_move_callbacks,
    mouse_press_callbacks,
    mouse_release_callbacks,
)
from qtpy.QtCore import Qt

from napari_medseg.geometry import RAS_TO_WORLD
from napari_medseg.interactive.backends import base
from napari_medseg.progress import raise_if_cancelled

WAIT_MS = 20_000
SHAPE_RAS = (36, 32, 14)  # x, y, z voxels of the RAS-stored file
SPACING_RAS = (1.0, 1.2, 2.5)
#: The ball's centre, a voxel of the RAS-stored grid away from the grid's centre (a click
#: mirrored through any axis would miss the ball).
CENTRE_VOXEL = (9, 10, 4)
RADIUS_MM = 7.05  # no voxel centre lies within 1e-3 mm of it (checked below)


def _scan(tmp_path, codes="RAS", rotation=(0.0, 0.0, 0.0)):
    """The phantom stored in voxel order ``codes``; returns (path, affine, centre RAS)."""
    axis_of = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
    order = [axis_of[c] for c in codes]
    shape = tuple(SHAPE_RAS[a] for a in order)
    spacing = tuple(SPACING_RAS[a] for a in order)
    affine = make_affine(codes, spacing=spacing, origin=(0.0, 0.0, 0.0), rotation_deg=rotation)
    centre_index = (np.array(shape) - 1) / 2.0
    affine[:3, 3] = -(affine[:3, :3] @ centre_index)  # grid centre at RAS (0, 0, 0)
    reference = make_affine("RAS", spacing=SPACING_RAS, origin=(0.0, 0.0, 0.0))
    reference[:3, 3] = -(reference[:3, :3] @ ((np.array(SHAPE_RAS) - 1) / 2.0))
    centre = reference[:3, :3] @ np.array(CENTRE_VOXEL, dtype=float) + reference[:3, 3]
    distance = np.linalg.norm(grid_positions(affine, shape) - centre, axis=-1)
    assert np.abs(distance - RADIUS_MM).min() > 1e-3  # (the file's float32 affine)
    # a CT-like scan in HU (negative values: an image, not a label map), with noise
    noise = np.random.default_rng(0).integers(-5, 6, size=shape)
    data = (np.where(distance <= RADIUS_MM, 60, -800) + noise).astype(np.int16)
    name = f"ball_{codes}{'_oblique' if any(rotation) else ''}.nii.gz"
    return save_nifti(tmp_path / name, data, affine), affine, centre


def _ball_in_display(image, centre_ras) -> np.ndarray:
    """The analytic ball on the image layer's display grid (from the file's affine)."""
    from napari_medseg._napari.layer_volume import layer_volume

    source = layer_volume(image)
    affine, shape = source.volume.affine, source.volume.shape
    distance = np.linalg.norm(grid_positions(affine, shape) - centre_ras, axis=-1)
    return np.asarray(source.geometry.to_display(distance <= RADIUS_MM))


def _event(viewer, Event, kind, world):  # noqa: N803 (napari's fixture)
    return ReadOnlyWrapper(
        Event(
            type=kind,
            is_dragging=kind == "mouse_move",
            position=tuple(float(v) for v in world),
            dims_displayed=tuple(viewer.dims.displayed),
            dims_point=list(viewer.dims.point),
            pos=np.zeros(2),
        )
    )


def _click(viewer, layer, world, Event) -> None:  # noqa: N803
    """A click (press, release) at ``world`` mm through the layer's mouse callbacks."""
    viewer.dims.set_point(0, float(world[0]))
    mouse_press_callbacks(layer, _event(viewer, Event, "mouse_press", world))
    mouse_release_callbacks(layer, _event(viewer, Event, "mouse_release", world))


def _drag(viewer, layer, points_world, Event) -> None:  # noqa: N803
    """Press at the first point, move through the others, release at the last."""
    viewer.dims.set_point(0, float(points_world[0][0]))
    mouse_press_callbacks(layer, _event(viewer, Event, "mouse_press", points_world[0]))
    for world in points_world[1:]:
        mouse_move_callbacks(layer, _event(viewer, Event, "mouse_move", world))
    mouse_release_callbacks(layer, _event(viewer, Event, "mouse_release", points_world[-1]))


def _open(viewer, path):
    (image,) = viewer.open(path, plugin="napari-medseg")
    return image


def _preview(widget) -> np.ndarray:
    return np.asarray(widget._preview.data).astype(bool)


@pytest.fixture
def ball(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    path, _, centre = _scan(tmp_path)
    image = _open(viewer, path)
    widget = dock(viewer, "Interactive")
    widget.set_backend("threshold")
    return viewer, image, widget, centre


def test_a_click_makes_the_ball_and_accept_is_one_undo_step(ball, qtbot, MouseEvent):  # noqa: N803
    viewer, image, widget, centre = ball
    points = widget.prompt_layers.points
    assert viewer.layers.selection.active is points and points.mode == "add"
    # the prompt layers sit on the scan's grid (napari's scale is the scan's mm)
    np.testing.assert_allclose(points.scale, image.scale)
    expected = _ball_in_display(image, centre)
    with qtbot.waitSignal(widget.updated, timeout=WAIT_MS) as blocker:
        _click(viewer, points, ras_to_world(centre), MouseEvent)
    assert blocker.args[0].prompts == 1
    np.testing.assert_array_equal(_preview(widget), expected)
    np.testing.assert_allclose(widget.prompt_layers.items[0].prompt.world_mm[0], centre, atol=1e-4)
    assert widget.timing.text().startswith("updated in ") and widget.timing.text().endswith(" s")

    # Accept: a new labels layer on the scan's grid, the ball as label 3, one undo step
    widget.value_spin.setValue(3)
    with qtbot.waitSignal(widget.accepted, timeout=WAIT_MS) as accepted:
        widget.accept_button.click()
    target, changed = accepted.args
    assert changed == expected.sum()
    np.testing.assert_array_equal(np.asarray(target.data), np.where(expected, 3, 0))
    assert len(target._undo_history) == 1
    assert viewer.layers.selection.active is target  # Ctrl+Z acts on it
    assert len(points.data) == 0 and not _preview(widget).any()  # ready for the next object
    target.undo()  # what Ctrl+Z does
    assert not np.asarray(target.data).any()

    # the next object is added to what the label holds (accepted into the same layer)
    assert widget.target_combo.layer() is target
    target.data_setitem((np.array([0]), np.array([0]), np.array([0])), 3)
    with qtbot.waitSignal(widget.updated, timeout=WAIT_MS):
        _click(viewer, points, ras_to_world(centre), MouseEvent)
    with qtbot.waitSignal(widget.accepted, timeout=WAIT_MS):
        widget.accept()
    held = np.where(expected, 3, 0)
    held[0, 0, 0] = 3
    np.testing.assert_array_equal(np.asarray(target.data), held)

    # a locked label is not written (the Segments list's locks, as for every edit)
    from napari_medseg._napari.label_locks import set_locked

    target.undo()
    set_locked(target, [3])
    with qtbot.waitSignal(widget.updated, timeout=WAIT_MS):
        _click(viewer, points, ras_to_world(centre), MouseEvent)
    with qtbot.waitSignal(widget.failed, timeout=WAIT_MS) as blocker:
        widget.accept()
    assert "label 3 is locked" in blocker.args[0]
    assert np.asarray(target.data).sum() == 3  # the corner voxel only


def test_negative_click_undo_reset_and_the_n_key(ball, qtbot, MouseEvent):  # noqa: N803
    from app_model.types import KeyBinding

    viewer, image, widget, centre = ball
    points = widget.prompt_layers.points
    expected = _ball_in_display(image, centre)
    with qtbot.waitSignal(widget.updated, timeout=WAIT_MS):
        _click(viewer, points, ras_to_world(centre), MouseEvent)
    # N pressed on napari's canvas (the clicks layer is the active one) makes the next
    # click negative
    assert KeyBinding.from_str("N") in points.keymap
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_N)
    assert not widget.prompt_layers.positive and widget.polarity_button.isChecked()
    inside = centre + np.array([2.0, 0.0, 0.0])
    with qtbot.waitSignal(widget.updated, timeout=WAIT_MS):
        _click(viewer, points, ras_to_world(inside), MouseEvent)
    assert list(points.features["positive"]) == [True, False]
    assert not _preview(widget).any()  # the negative click cut the ball away
    # Undo takes the negative click back, off the points layer too
    with qtbot.waitSignal(widget.updated, timeout=WAIT_MS):
        widget.undo_button.click()
    assert len(points.data) == 1
    np.testing.assert_array_equal(_preview(widget), expected)
    # Reset takes every prompt back
    widget.reset_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert len(points.data) == 0 and not _preview(widget).any()
    assert widget._engine.applied() == ()
    # the polarity button toggles back
    widget.polarity_button.click()
    assert widget.prompt_layers.positive and points.feature_defaults["positive"][0]


@pytest.mark.parametrize(
    "codes, rotation",
    [("PSR", (0.0, 0.0, 0.0)), ("LPI", (0.0, 0.0, 0.0)), ("RAS", (0.0, 11.0, 0.0))],
    ids=["PSR", "LPI", "oblique"],
)
def test_a_click_lands_on_the_same_anatomy_in_any_voxel_order(
    make_napari_viewer,
    qtbot,
    tmp_path,
    MouseEvent,
    codes,
    rotation,  # noqa: N803
):
    viewer = make_napari_viewer()
    path, affine, centre = _scan(tmp_path, codes, rotation)
    image = _open(viewer, path)
    widget = dock(viewer, "Interactive")
    widget.set_backend("threshold")
    expected = _ball_in_display(image, centre)
    if any(rotation):
        # napari shows an oblique scan straightened: click on the displayed voxel nearest
        # the ball's centre (its true position is what the mask is measured from)
        from napari_medseg._napari.layer_volume import layer_volume

        source = layer_volume(image)
        index = np.linalg.solve(source.volume.affine, np.r_[centre, 1.0])[:3]
        nearest = np.zeros(source.volume.shape, dtype=bool)
        nearest[tuple(np.rint(index).astype(int))] = True
        display_index = np.argwhere(source.geometry.to_display(nearest))[0]
        world = np.asarray(image.data_to_world(display_index))
        clicked_ras = source.volume.affine[:3, :3] @ np.rint(index) + source.volume.affine[:3, 3]
        # (reading napari's world as patient mm would miss by millimetres here)
        assert np.linalg.norm(np.linalg.inv(RAS_TO_WORLD)[:3, :3] @ world - clicked_ras) > 0.5
    else:
        world, clicked_ras = ras_to_world(centre), centre
    with qtbot.waitSignal(widget.updated, timeout=WAIT_MS):
        _click(viewer, widget.prompt_layers.points, world, MouseEvent)
    assert expected.sum() > 100
    np.testing.assert_array_equal(_preview(widget), expected)
    # the prompt is the true RAS position of the voxel clicked
    (item,) = widget.prompt_layers.items
    np.testing.assert_allclose(item.prompt.world_mm[0], clicked_ras, atol=1e-3)


def test_boxes_lassos_and_scribbles_are_prompts(ball, qtbot, MouseEvent):  # noqa: N803
    from test_label_tools import _stroke

    viewer, image, widget, centre = ball
    layers = widget.prompt_layers
    expected = _ball_in_display(image, centre)
    world = ras_to_world(centre)
    # a box drawn with napari's rectangle tool around the ball (threshold: its centre seeds)
    widget.tool_buttons["Box"].click()
    assert viewer.layers.selection.active is layers.shapes
    corners = [world + (0, -8.0, -8.0), world + (0, 0.0, 0.0), world + (0, 8.0, 8.0)]
    with qtbot.waitSignal(widget.updated, timeout=WAIT_MS):
        _drag(viewer, layers.shapes, corners, MouseEvent)
    assert [item.prompt.kind for item in layers.items] == ["box"]
    np.testing.assert_array_equal(_preview(widget), expected)
    box = layers.items[0].prompt.world_mm
    np.testing.assert_allclose(box.mean(axis=0), centre, atol=1.0)  # around the ball, in RAS
    # a scribble stroke (napari's brush) through the ball, then Undo takes it off the layer
    widget.tool_buttons["Scribble"].click()
    scribbles = layers.scribbles
    assert scribbles.mode == "paint" and scribbles.selected_label == 1
    with qtbot.waitSignal(widget.updated, timeout=WAIT_MS):
        _stroke(scribbles, viewer, [world + (0, 0, dx) for dx in (-2.0, 0.0, 2.0)], MouseEvent)
    assert [item.prompt.kind for item in layers.items] == ["box", "scribble"]
    assert np.asarray(scribbles.data).any()
    with qtbot.waitSignal(widget.updated, timeout=WAIT_MS):
        widget.undo()
    assert not np.asarray(scribbles.data).any()
    assert [item.prompt.kind for item in layers.items] == ["box"]


# ---------------------------------------------------------------- slow and broken backends
class GatedBackend(base.PromptBackend):
    """Marks the clicked voxels, after waiting for the test's gate (or a cancel)."""

    name = "gated"
    gate = threading.Event()
    calls = 0

    def segment(self, request):
        type(self).calls += 1
        while not type(self).gate.wait(0.01):
            raise_if_cancelled(request.cancel, "cancelled")
        mask = np.zeros(request.image.shape, dtype=bool)
        for prompt in request.prompts:
            mask[tuple(prompt.voxels().T)] = prompt.positive
        return mask


class UnreadableCheckpointBackend(base.PromptBackend):
    """Needs a checkpoint and cannot read any (as a torch.load of a text file fails)."""

    name = "unreadable"

    def __init__(self, path):
        raise ValueError("invalid load key, 'n'.")


@pytest.fixture
def test_backends(monkeypatch):
    module = __name__
    monkeypatch.setitem(
        base._REGISTRY, "gated", base.BackendEntry("gated", module, "GatedBackend", "Gated (test)")
    )
    monkeypatch.setitem(
        base._REGISTRY,
        "unreadable",
        base.BackendEntry(
            "unreadable", module, "UnreadableCheckpointBackend", "Unreadable (your checkpoint)",
            True,
        ),
    )
    GatedBackend.gate.clear()
    GatedBackend.calls = 0
    yield
    GatedBackend.gate.set()


def test_updates_run_in_a_worker_queue_and_cancel(
    make_napari_viewer,
    qtbot,
    tmp_path,
    MouseEvent,
    test_backends,  # noqa: N803
):
    viewer = make_napari_viewer()
    path, _, centre = _scan(tmp_path)
    _open(viewer, path)
    widget = dock(viewer, "Interactive")
    widget.set_backend("gated")
    points = widget.prompt_layers.points
    world = ras_to_world(centre)
    # the click returns at once while the backend waits: the viewer is not blocked
    _click(viewer, points, world, MouseEvent)
    qtbot.waitUntil(lambda: GatedBackend.calls == 1, timeout=WAIT_MS)
    assert widget.busy and widget.cancel_button.isEnabled()
    # a second click while the first runs waits for it; the latest prompts win
    _click(viewer, points, world + (0, 2.4, 0), MouseEvent)
    assert widget.busy and len(points.data) == 2
    with qtbot.waitSignal(widget.updated, timeout=WAIT_MS) as blocker:
        GatedBackend.gate.set()

    def settled() -> bool:
        applied, given = widget._engine.applied(), widget.prompt_layers.prompts()
        return not widget.busy and [id(p) for p in applied] == [id(p) for p in given]

    qtbot.waitUntil(settled, timeout=WAIT_MS)
    assert blocker.args[0].prompts in (1, 2)
    assert len(widget._engine.applied()) == 2
    assert _preview(widget).sum() == 2

    # Cancel stops a running update and takes its prompt back off the layer
    GatedBackend.gate.clear()
    _click(viewer, points, world + (0, -2.4, 0), MouseEvent)
    qtbot.waitUntil(lambda: widget.busy, timeout=WAIT_MS)
    with qtbot.waitSignal(widget.cancelled, timeout=WAIT_MS):
        widget.cancel_button.click()
    assert not widget.busy
    assert len(points.data) == 2 and len(widget._engine.applied()) == 2
    assert _preview(widget).sum() == 2
    assert "Cancelled" in widget.status.text()


def test_a_bad_checkpoint_is_one_clear_error(
    make_napari_viewer,
    qtbot,
    tmp_path,
    MouseEvent,
    notes,
    test_backends,  # noqa: N803
):
    viewer = make_napari_viewer()
    path, _, centre = _scan(tmp_path)
    _open(viewer, path)
    widget = dock(viewer, "Interactive")
    widget.set_backend("unreadable")
    assert widget.checkpoint_row.isVisibleTo(widget)
    points = widget.prompt_layers.points
    # no checkpoint yet: nothing runs, the status says what to do
    _click(viewer, points, ras_to_world(centre), MouseEvent)
    assert not widget.busy and "checkpoint" in widget.status.text()
    # a checkpoint that is not there
    missing = tmp_path / "missing.pt"
    with qtbot.waitSignal(widget.failed, timeout=WAIT_MS) as blocker:
        widget.set_backend("unreadable", str(missing))
    assert str(missing) in blocker.args[0] and "no such file" in blocker.args[0]
    # a file that is no checkpoint
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint")
    with qtbot.waitSignal(widget.failed, timeout=WAIT_MS) as blocker:
        widget.set_backend("unreadable", str(bad))
    assert str(bad) in blocker.args[0] and "could not load" in blocker.args[0]
    assert any(str(bad) in note for note in notes)
    # nnInteractive: its licence is shown before use, and a folder that is not its model
    # folder is named in the error
    folder = tmp_path / "not_a_model"
    folder.mkdir()
    with qtbot.waitSignal(widget.failed, timeout=WAIT_MS) as blocker:
        widget.set_backend("nninteractive", str(folder))
    assert "Non-commercial" in widget.method_info.text()
    assert any("CC-BY-NC-SA" in note and "non-commercial" in note for note in notes)
    assert str(folder) in blocker.args[0] and "plans.json" in blocker.args[0]
    assert len(points.data) == 1  # the prompt stays for a method that works
    with qtbot.waitSignal(widget.updated, timeout=WAIT_MS):
        widget.set_backend("threshold")
    assert _preview(widget).any()


def test_screenshot_of_the_dock_in_use(make_napari_viewer, qtbot, artifacts, MouseEvent):  # noqa: N803
    """The sample chest CT: a click in the lung tumour and a box around it; the preview
    (a new layer's label 1) follows the tumour contour the sample comes with."""
    from _helpers import open_sample

    from napari_medseg._napari.views import set_view

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1229, 691)  # what a 1366x768 screen gives the window
    image, labels = open_sample(viewer, "chest_ct")
    widget = dock(viewer, "Interactive")
    widget.set_backend("threshold")
    tumour = np.asarray(labels.data) == 1
    centre = np.rint(np.argwhere(tumour).mean(axis=0))
    world = np.asarray(image.data_to_world(centre))
    labels.visible = False
    set_view(viewer, "axial")
    viewer.scene.camera.center = tuple(world[1:])
    viewer.scene.camera.zoom *= 2
    layers = widget.prompt_layers
    with qtbot.waitSignal(widget.updated, timeout=WAIT_MS):
        _click(viewer, layers.points, world, MouseEvent)
    widget.tool_buttons["Box"].click()
    corners = [world + (0, -9.0, -9.0), world, world + (0, 9.0, 9.0)]
    with qtbot.waitSignal(widget.updated, timeout=WAIT_MS):
        _drag(viewer, layers.shapes, corners, MouseEvent)
    widget.tool_buttons["Click"].click()
    mask = _preview(widget)
    dice = 2 * (mask & tumour).sum() / (mask.sum() + tumour.sum())
    assert dice > 0.85, dice
    viewer.screenshot(str(artifacts / "interactive.png"), canvas_only=False, flash=False)
