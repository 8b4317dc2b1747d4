"""The Label tools widget on a real viewer, docked through the manifest.

Each tool run must change exactly the voxels the core function gives when it is run
on the WHOLE label map (so the widget's crops, scopes and settings are checked
against an independent full-volume computation), add one napari history item, be
reverted exactly by one ``layer.undo()`` and re-applied by ``layer.redo()``.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from _helpers import dock, open_sample
from napari.utils._proxies import ReadOnlyWrapper
from napari.utils.interactions import (
    mouse_move_callbacks,
    mouse_press_callbacks,
    mouse_release_callbacks,
)
from scipy import ndimage

from napari_medseg._napari.label_classes import layer_kwargs_for_classes
from napari_medseg.labels import editing

WAIT_MS = 30_000
HU_RANGE = (-100.0, 200.0)
TUMOUR, OTHER = 1, 2


def _run(qtbot, widget, button) -> int:
    """Click a tool button and wait until its change is written; voxels changed."""
    with qtbot.waitSignal(widget.tool_finished, timeout=WAIT_MS) as blocker:
        button.click()
    return blocker.args[1]


def _expected(data, value, new_mask, *, overwrite=True, allowed=None) -> np.ndarray:
    """The label map after making ``value`` equal to ``new_mask`` (full-volume reference)."""
    change = editing.plan_label_change(
        data, value, new_mask, overwrite_other_labels=overwrite, allowed=allowed
    )
    out = data.copy()
    change.apply(out)
    return out


def _prepare_tumour(labels) -> None:
    """Give the sample's tumour a cavity, an island, a spur, and a neighbour label."""
    data = np.asarray(labels.data).copy()
    tumour = data == TUMOUR
    interior = np.argwhere(ndimage.binary_erosion(tumour))
    assert len(interior), "the sample tumour has no interior voxel"
    s, p, col = interior[len(interior) // 2]
    data[s, p, col] = 0  # a one-voxel cavity (a hole in 3D and in its slice)
    box = editing.bounding_box(tumour)
    middle = (box[0].start + box[0].stop) // 2
    data[middle, box[1].stop + 3 : box[1].stop + 5, col : col + 2] = TUMOUR  # 4-voxel island
    data[middle, (box[1].start + box[1].stop) // 2, box[2].stop : box[2].stop + 5] = TUMOUR  # spur
    data[middle - 1 : middle + 2, box[1].start - 3 : box[1].start, col - 2 : col + 3] = OTHER
    # a well from the middle slice up through the top of the tumour: open in 3D, but a
    # hole in the middle slice
    flat = np.argwhere(ndimage.binary_erosion(tumour[middle]))
    far = flat[np.abs(flat - (p, col)).sum(axis=1) > 2]
    assert len(far), "the sample tumour's middle slice has no second interior pixel"
    data[middle:, far[0][0], far[0][1]][data[middle:, far[0][0], far[0][1]] == TUMOUR] = 0
    labels.data = data  # replaces the data: a fresh history


@pytest.fixture
def sample(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    image, labels = open_sample(viewer, "chest_ct")
    _prepare_tumour(labels)
    widget = dock(viewer, "Label tools")
    assert widget.labels_combo.layer() is labels
    assert widget.image_combo.layer() is image
    assert widget.value == TUMOUR
    return viewer, image, labels, widget


def _centre_slice(viewer, labels, value=TUMOUR) -> int:
    index = int(np.round(np.argwhere(np.asarray(labels.data) == value)[:, 0].mean()))
    viewer.dims.set_current_step(0, index)
    return index


def _smoothing(method: str, size_mm: float):
    def configure(widget):
        widget.smooth_method.setCurrentText(method)
        widget.smooth_size.setValue(size_mm)
        return widget.smooth_button

    return configure, lambda m, sp, img: editing.smooth(m, method, size_mm, sp)


def _margin(margin_mm: float):
    def configure(widget):
        widget.margin_mm.setValue(margin_mm)
        return widget.margin_button

    return configure, lambda m, sp, img: editing.change_margin(m, margin_mm, sp)


def _fill_per_slice(widget):
    widget.per_slice_check.setChecked(True)
    return widget.fill_button


def _islands(widget):
    widget.island_ml.setValue(0.05)
    return widget.islands_button


#: tool -> (set the widget up and return the button, the core function on the whole mask)
TOOLS = {
    "fill 3D": (lambda w: w.fill_button, lambda m, sp, img: editing.fill_holes(m)),
    "fill slice by slice": (_fill_per_slice, lambda m, sp, img: editing.fill_holes(m, axis=0)),
    "remove islands": (_islands, lambda m, sp, img: editing.remove_islands(m, 0.05, sp)),
    "keep largest": (
        lambda w: w.largest_button,
        lambda m, sp, img: editing.keep_largest_component(m),
    ),
    "median": _smoothing("median", 6.0),
    "opening": _smoothing("opening", 5.0),
    "closing": _smoothing("closing", 12.0),
    "grow": _margin(3.0),
    "shrink": _margin(-1.5),
    "clip to HU range": (
        lambda w: w.clip_button,
        lambda m, sp, img: m & editing.in_range(img, *HU_RANGE),
    ),
}


@pytest.mark.parametrize("tool", list(TOOLS))
def test_each_tool_changes_what_the_core_gives_and_undoes_in_one_step(sample, qtbot, tool):
    viewer, image, labels, widget = sample
    setup, reference = TOOLS[tool]
    before = np.asarray(labels.data).copy()
    spacing = tuple(labels.scale)
    mask = before == TUMOUR
    expected = _expected(before, TUMOUR, reference(mask, spacing, np.asarray(image.data)))
    assert (expected != before).any(), f"{tool}: the test shape gives the tool nothing to do"
    if tool == "fill slice by slice":  # the open well tells the two modes apart
        assert not np.array_equal(expected, _expected(before, TUMOUR, editing.fill_holes(mask)))
    paints = []
    labels.events.paint.connect(paints.append)
    history = len(labels._undo_history)

    changed = _run(qtbot, widget, setup(widget))

    assert np.array_equal(labels.data, expected)
    assert changed == int((expected != before).sum())
    assert len(paints) == 1 and len(labels._undo_history) == history + 1
    labels.undo()
    assert np.array_equal(labels.data, before)
    labels.redo()
    assert np.array_equal(labels.data, expected)


def test_interpolation_fills_the_slices_between_drawn_slices(sample, qtbot):
    viewer, _, labels, widget = sample
    data = np.asarray(labels.data).copy()
    drawn = np.flatnonzero((data == TUMOUR).any(axis=(1, 2)))
    first, last = drawn[0], drawn[-1]
    assert last - first >= 2
    data[first + 1 : last][data[first + 1 : last] == TUMOUR] = 0  # keep the end slices only
    labels.data = data
    expected = _expected(
        data, TUMOUR, editing.interpolate_slices(data == TUMOUR, 0, tuple(labels.scale))
    )
    assert (expected[first + 1 : last] == TUMOUR).any()

    _run(qtbot, widget, widget.interpolate_button)

    assert np.array_equal(labels.data, expected)
    labels.undo()
    assert np.array_equal(labels.data, data)


def test_interpolation_runs_across_the_view_axis(make_napari_viewer, qtbot):
    """In a coronal view (slider on the P axis), drawn coronal slices are interpolated."""
    viewer = make_napari_viewer()
    data = np.zeros((30, 12, 40), dtype=np.uint8)
    yy, xx = np.mgrid[0:30, 0:40]
    data[:, 1][(yy - 15) ** 2 + (xx - 20) ** 2 <= 16] = 3  # radius 4 voxels
    data[:, 10][(yy - 15) ** 2 + (xx - 20) ** 2 <= 100] = 3  # radius 10
    labels = viewer.add_labels(data, scale=(2.0, 3.0, 2.0), name="drawn")
    labels.selected_label = 3
    widget = dock(viewer, "Label tools")
    viewer.dims.order = (1, 0, 2)  # the slider moves along P (axis 1): coronal slices

    _run(qtbot, widget, widget.interpolate_button)

    mask = labels.data == 3
    assert np.array_equal(mask, editing.interpolate_slices(data == 3, 1, (2.0, 3.0, 2.0)))
    areas = mask.sum(axis=(0, 2))[1:11]
    assert np.all(np.diff(areas) > 0)  # the disc grows from the first to the last drawn slice


def test_this_slice_changes_only_the_current_slice(sample, qtbot):
    viewer, _, labels, widget = sample
    index = _centre_slice(viewer, labels)
    before = np.asarray(labels.data).copy()
    widget.slice_radio.setChecked(True)
    widget.margin_mm.setValue(2.5)
    plane = editing.change_margin(before[index] == TUMOUR, 2.5, tuple(labels.scale)[1:])
    expected = before.copy()
    expected[index : index + 1] = _expected(before[index : index + 1], TUMOUR, plane[None])

    _run(qtbot, widget, widget.margin_button)

    assert np.array_equal(labels.data, expected)
    assert (labels.data[index] != before[index]).any()
    labels.undo()
    assert np.array_equal(labels.data, before)


def test_preserve_or_overwrite_other_labels(sample, qtbot):
    viewer, _, labels, widget = sample
    before = np.asarray(labels.data).copy()
    grown = editing.change_margin(before == TUMOUR, 4.0, tuple(labels.scale))
    assert (grown & (before == OTHER)).any()
    widget.margin_mm.setValue(4.0)

    widget.overwrite_check.setChecked(False)  # napari's own "preserve labels"
    assert labels.preserve_labels
    _run(qtbot, widget, widget.margin_button)
    assert np.array_equal(labels.data, _expected(before, TUMOUR, grown, overwrite=False))
    assert np.array_equal(labels.data == OTHER, before == OTHER)
    labels.undo()

    labels.preserve_labels = False  # the checkbox follows the layer
    assert widget.overwrite_check.isChecked()
    _run(qtbot, widget, widget.margin_button)
    assert np.array_equal(labels.data, _expected(before, TUMOUR, grown, overwrite=True))
    assert (labels.data == OTHER).sum() < (before == OTHER).sum()


def test_split_instances_gives_pieces_new_named_values(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    data = np.zeros((20, 30, 30), dtype=np.uint8)
    data[2:8, 2:10, 2:10] = 1  # 384 voxels
    data[12:15, 20:25, 20:25] = 1  # 75
    data[15:19, 2:6, 20:28] = 1  # 128
    data[10, 15, 15] = 4  # another label
    classes = {1: ("lesion", "#ff0000"), 4: ("cyst", "#0000ff")}
    labels = viewer.add_labels(data.copy(), name="lesions", **layer_kwargs_for_classes(classes))
    widget = dock(viewer, "Label tools")
    widget.label_spin.setValue(1)

    _run(qtbot, widget, widget.split_button)

    instances, count = editing.split_instances(data == 1)
    assert count == 3
    expected = data.copy()
    expected[instances == 2] = 5  # new values start above every used one
    expected[instances == 3] = 6
    assert np.array_equal(labels.data, expected)
    assert (labels.data[2:8, 2:10, 2:10] == 1).all()  # the largest keeps the value
    names = dict(zip(labels.features["index"], labels.features["name"], strict=True))
    assert names[5] == "lesion 2" and names[6] == "lesion 3"
    assert labels.get_color(5)[3] == 1.0 and labels.get_color(6)[3] == 1.0  # visible
    labels.undo()
    assert np.array_equal(labels.data, data)


def test_rename_and_recolour_the_label(sample, qtbot):
    _, _, labels, widget = sample
    other_colour = labels.get_color(OTHER)
    widget.name_edit.setText("GTV")
    widget.name_edit.editingFinished.emit()
    widget.recolour_label("#00ff00")
    names = dict(zip(labels.features["index"], labels.features["name"], strict=True))
    colours = dict(zip(labels.features["index"], labels.features["color"], strict=True))
    assert names[TUMOUR] == "GTV" and colours[TUMOUR] == "#00ff00"
    np.testing.assert_allclose(labels.get_color(TUMOUR), (0.0, 1.0, 0.0, 1.0))
    assert widget.color_button.property("label_color") == "#00ff00"
    # the other label keeps the colour napari showed it in
    assert names[OTHER] == f"label_{OTHER}"
    np.testing.assert_allclose(labels.get_color(OTHER), other_colour, atol=1 / 255)
    widget.label_spin.setValue(OTHER)
    assert labels.selected_label == OTHER
    assert widget.name_edit.text() == f"label_{OTHER}"
    labels.selected_label = TUMOUR  # the spin box follows the layer
    assert widget.value == TUMOUR and widget.name_edit.text() == "GTV"


def _stroke(layer, viewer, points_world, Event) -> None:  # noqa: N803 (napari's fixture)
    """Drag napari's brush on ``layer`` through world points (mm) in the 2D view.

    ``Event`` is napari's ``MouseEvent`` test fixture; the events go through the
    layer's own mouse callbacks, as napari's tests of painting do.
    """
    displayed = tuple(viewer.dims.displayed)
    point = list(viewer.dims.point)
    kinds = ["mouse_press"] + ["mouse_move"] * (len(points_world) - 1) + ["mouse_release"]
    positions = [*points_world, points_world[-1]]
    callbacks = {
        "mouse_press": mouse_press_callbacks,
        "mouse_move": mouse_move_callbacks,
        "mouse_release": mouse_release_callbacks,
    }
    for kind, position in zip(kinds, positions, strict=True):
        event = Event(
            type=kind,
            is_dragging=kind == "mouse_move",
            position=tuple(position),
            dims_displayed=displayed,
            dims_point=point,
        )
        callbacks[kind](layer, ReadOnlyWrapper(event))


def test_brush_paints_only_in_the_hu_range_and_undoes_in_one_step(
    sample, qtbot, artifacts, MouseEvent
):  # noqa: N803
    viewer, image, labels, widget = sample
    index = _centre_slice(viewer, labels)
    before = np.asarray(labels.data).copy()
    # a twin layer painted with the same stroke and no range: what napari alone does
    twin = viewer.add_labels(before.copy(), scale=labels.scale, translate=labels.translate)
    viewer.layers.selection.active = labels
    widget.labels_combo.set_layer(labels)
    widget.hu_low.setValue(HU_RANGE[0])
    widget.hu_high.setValue(HU_RANGE[1])
    widget.hu_check.setChecked(True)
    assert widget.hu_check.isChecked()

    centre = np.argwhere(before[index] == TUMOUR).mean(axis=0)
    start = np.asarray(labels.data_to_world((index, *centre)))
    points = [start + (0, 0, dx) for dx in np.linspace(-12.0, 12.0, 7)]
    for layer in (labels, twin):
        layer.mode = "paint"
        layer.brush_size = 8
        layer.selected_label = TUMOUR
    history = len(labels._undo_history)
    _stroke(labels, viewer, points, MouseEvent)
    _stroke(twin, viewer, points, MouseEvent)

    inside = editing.in_range(np.asarray(image.data), *HU_RANGE)
    free = np.asarray(twin.data)
    assert ((free != before) & ~inside).any(), "the stroke must cross out-of-range voxels"
    assert ((free != before) & inside).any()
    assert np.array_equal(labels.data, np.where(inside, free, before))
    assert len(labels._undo_history) == history + 1
    twin.visible = False
    viewer.scene.camera.center = start
    viewer.scene.camera.zoom = 6
    viewer.screenshot(str(artifacts / "label_tools_hu_brush.png"), canvas_only=False, flash=False)
    labels.undo()
    assert np.array_equal(labels.data, before)

    # the tools honour the range too; switching it off paints everywhere again
    widget.margin_mm.setValue(3.0)
    _run(qtbot, widget, widget.margin_button)
    grown = editing.change_margin(before == TUMOUR, 3.0, tuple(labels.scale))
    assert np.array_equal(labels.data, _expected(before, TUMOUR, grown, allowed=inside))
    labels.undo()
    widget.hu_check.setChecked(False)
    _stroke(labels, viewer, points, MouseEvent)
    assert np.array_equal(labels.data, free)


def test_errors_name_the_layer(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Label tools")
    with qtbot.waitSignal(widget.tool_failed):
        widget.fill_button.click()
    assert any("no labels layer" in note for note in notes)

    labels = viewer.add_labels(np.zeros((4, 10, 10), np.uint8), name="mask")
    viewer.add_image(np.zeros((4, 12, 10), np.float32), name="other scan")
    widget.labels_combo.set_layer(labels)
    widget.hu_check.setChecked(True)
    assert not widget.hu_check.isChecked()
    assert any("'other scan'" in note and "'mask'" in note and "grid" in note for note in notes)

    labels.data[1, 2:5, 2:5] = 1
    widget.slice_radio.setChecked(True)
    viewer.dims.ndisplay = 3
    with qtbot.waitSignal(widget.tool_failed):
        widget.smooth_button.click()
    assert any("'mask'" in note and "2D view" in note for note in notes)

    viewer.dims.ndisplay = 2
    widget.smooth_size.setValue(0.5)
    viewer.dims.set_current_step(0, 1)
    with qtbot.waitSignal(widget.tool_failed):
        widget.smooth_button.click()
    assert any("'mask'" in note and "smaller than the voxels" in note for note in notes)
    assert np.count_nonzero(labels.data) == 9


def test_a_result_computed_from_a_label_that_changed_is_not_written(
    sample, qtbot, monkeypatch, notes
):
    viewer, _, labels, widget = sample
    reached, release = threading.Event(), threading.Event()
    original = editing.change_margin

    def gated(*args, **kwargs):
        reached.set()
        release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(editing, "change_margin", gated)
    widget.margin_mm.setValue(3.0)
    widget.margin_button.click()
    assert reached.wait(10)
    assert not widget.margin_button.isEnabled()  # one run at a time
    index = _centre_slice(viewer, labels)
    labels.paint((index, *np.argwhere(labels.data[index] == TUMOUR)[0]), 0)  # the user edits
    edited = np.asarray(labels.data).copy()
    with qtbot.waitSignal(widget.tool_failed, timeout=WAIT_MS):
        release.set()
    assert np.array_equal(labels.data, edited)
    assert any("changed label 1 while the tool was computing" in note for note in notes)
    qtbot.waitUntil(widget.margin_button.isEnabled)


def test_screenshot_of_the_widget_in_use(sample, qtbot, artifacts):
    viewer, image, labels, widget = sample
    viewer.window.resize(1280, 900)
    _centre_slice(viewer, labels)
    centre = np.argwhere(labels.data > 0).mean(axis=0)
    viewer.scene.camera.center = labels.data_to_world(centre)
    viewer.scene.camera.zoom = 6
    widget.margin_mm.setValue(3.0)
    widget.name_edit.setText("tumour (GTV)")
    widget.name_edit.editingFinished.emit()
    changed = _run(qtbot, widget, widget.margin_button)
    assert changed > 0 and "Ctrl+Z" in widget.status.text()
    viewer.screenshot(str(artifacts / "label_tools.png"), canvas_only=False, flash=False)


def test_closing_the_panel_lifts_the_hu_restriction(sample):
    viewer, image, labels, widget = sample
    index = _centre_slice(viewer, labels)
    outside = np.argwhere(~editing.in_range(np.asarray(image.data[index]), *HU_RANGE))
    target = (index, *outside[len(outside) // 2])
    labels.brush_size = 1
    widget.hu_check.setChecked(True)
    labels.paint(target, 3)
    assert labels.data[target] != 3  # out of range: refused

    viewer.window.remove_dock_widget(widget)  # napari's "close this panel"
    assert not widget.hu_check.isChecked()
    labels.paint(target, 3)
    assert labels.data[target] == 3


def test_a_label_without_a_class_is_painted_visibly(make_napari_viewer, qtbot):
    # a model's output lists its classes; a value the table lacks (a new lesion the
    # user paints) must still be shown, in the colour napari gives it on a plain layer
    from napari_medseg._napari.label_classes import hex_color

    viewer = make_napari_viewer()
    data = np.zeros((10, 20, 20), dtype=np.uint8)
    data[2:5, 2:8, 2:8] = 1
    labels = viewer.add_labels(
        data, name="CT model", **layer_kwargs_for_classes({1: ("liver", "#ff0000")})
    )
    plain = viewer.add_labels(np.zeros_like(data), name="plain")  # napari's own colours
    widget = dock(viewer, "Label tools")
    widget.labels_combo.set_layer(labels)
    widget.label_spin.setValue(7)
    assert labels.selected_label == 7
    labels.paint((7, 12, 12), 7, refresh=True)
    assert (np.asarray(labels.data) == 7).any()
    assert labels.get_color(7)[3] == 1.0  # not transparent
    np.testing.assert_allclose(labels.get_color(7), plain.get_color(7))
    assert widget.color_button.property("label_color") == hex_color(plain.get_color(7), unit=True)
    np.testing.assert_allclose(labels.get_color(1), (1.0, 0.0, 0.0, 1.0))  # the class colour

    # renaming a label of a layer without classes must not hide the other values
    widget.labels_combo.set_layer(plain)
    widget.label_spin.setValue(1)
    plain.paint((5, 5, 5), 1, refresh=True)
    widget.rename_label("GTV")
    plain.paint((5, 15, 15), 3, refresh=True)
    assert plain.get_color(3)[3] == 1.0


def test_a_tool_edit_shows_as_unsaved_without_the_save_widget(sample, qtbot):
    from napari_medseg._napari.edit_state import base_name, is_modified

    viewer, _, labels, widget = sample  # only the Label tools are docked
    assert labels.name == "tumour" and not is_modified(labels)
    assert _run(qtbot, widget, widget.largest_button) > 0
    assert is_modified(labels) and labels.name == "tumour *" and base_name(labels) == "tumour"


def test_splitting_past_255_after_converting_the_layer_to_uint16(make_napari_viewer, qtbot, notes):
    # 300 separate lesions in a uint8 layer (a model's output): the split cannot give
    # them values past 255; napari's "Convert to uint16" makes room, and the widget
    # must then offer label values past 255 too
    from napari.layers._layer_actions import _convert_dtype

    viewer = make_napari_viewer()
    data = np.zeros((6, 40, 60), dtype=np.uint8)
    data[1:5:2, ::4, ::4] = 1  # 2 x 10 x 15 = 300 single-voxel pieces
    labels = viewer.add_labels(data.copy(), name="lesions")
    widget = dock(viewer, "Label tools")
    widget.label_spin.setValue(1)
    assert widget.label_spin.maximum() == 255

    with qtbot.waitSignal(widget.tool_failed, timeout=WAIT_MS) as blocker:
        widget.split_button.click()
    assert "'lesions'" in blocker.args[1] and "Convert to uint16" in blocker.args[1]
    assert any("Convert to uint16" in n for n in notes)
    np.testing.assert_array_equal(labels.data, data)

    viewer.layers.selection.active = labels
    _convert_dtype(viewer.layers, "uint16")  # napari's layer menu action
    assert labels.data.dtype == np.uint16
    assert widget.label_spin.maximum() == 65535
    widget.label_spin.setValue(300)
    assert labels.selected_label == 300 and widget.value == 300
    widget.label_spin.setValue(1)
    assert _run(qtbot, widget, widget.split_button) == 299
    assert sorted(np.unique(labels.data).tolist()) == list(range(0, 301))
    labels.undo()
    np.testing.assert_array_equal(labels.data, data)
