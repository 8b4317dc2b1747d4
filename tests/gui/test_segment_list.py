"""The Segments dock widget on a real viewer, docked through the manifest.

Rows are checked against ``np.unique`` of the layer's data and the features table;
what napari renders for a label against the layer's colormap (the alpha of that
value); locks against real brush strokes through napari's mouse callbacks (and a twin
layer painted with the same stroke and no lock: what napari alone does) and Label
tool runs; names files against an independent parse (``shlex`` on ITK-SNAP lines,
``json``). Waits are on Qt signals and conditions, never fixed sleeps.
"""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest
from _helpers import dock, open_sample
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QColorDialog, QFileDialog, QLineEdit, QMessageBox
from test_label_tools import _stroke

from napari_medseg._napari.label_classes import label_names, set_label_class
from napari_medseg._napari.label_locks import locked_labels
from napari_medseg._napari.widgets import segment_list
from napari_medseg.labels import editing

WAIT_MS = 30_000
TUMOUR, OTHER = 1, 2
SHOW, OPACITY, LOCK = segment_list.SHOW, segment_list.OPACITY, segment_list.LOCK
NAME, VOXELS, VOLUME = segment_list.NAME, segment_list.VOXELS, segment_list.VOLUME


# ------------------------------------------------------------------ helpers


def _present(data) -> list[int]:
    return [int(v) for v in np.unique(np.asarray(data)) if v > 0]


def _settled(qtbot, widget, condition=None) -> None:
    """Wait until the list shows the layer as it is now (and ``condition``)."""
    qtbot.waitUntil(
        lambda: (
            not widget.busy
            and widget.values() == _present(widget.labels_combo.layer().data)
            and (condition is None or condition())
        ),
        timeout=WAIT_MS,
    )


def _cell(widget, value: int, column: int) -> str:
    return widget.table.item(widget.row_of(value), column).text()


def _alpha(layer, value: int) -> float:
    """The alpha napari renders label ``value`` with (the layer's colormap)."""
    return float(layer.colormap.map(np.array([value]))[0][3])


def _click(qtbot, widget, value: int, column: int = segment_list.VALUE) -> None:
    """A real mouse click on a cell of the row of ``value``."""
    table = widget.table
    item = table.item(widget.row_of(value), column)
    table.scrollToItem(item)
    rect = table.visualItemRect(item)
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def _with_neighbour(labels) -> np.ndarray:
    """Give the sample's tumour a neighbour, label 2, on the tumour's middle slices."""
    data = np.asarray(labels.data).copy()
    box = editing.bounding_box(data == TUMOUR)
    middle = (box[0].start + box[0].stop) // 2
    rows = slice(box[1].start, box[1].stop)
    data[middle - 1 : middle + 2, rows, box[2].stop : box[2].stop + 6] = OTHER
    labels.data = data  # a fresh history
    return data


@pytest.fixture
def sample(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    image, labels = open_sample(viewer, "chest_ct")
    _with_neighbour(labels)
    widget = dock(viewer, "Segments")
    assert widget.labels_combo.layer() is labels
    _settled(qtbot, widget)
    return viewer, image, labels, widget


# ------------------------------------------------------------------ tests


def test_rows_are_the_drawn_labels_with_names_counts_and_volumes(sample):
    _, _, labels, widget = sample
    data = np.asarray(labels.data)
    assert widget.values() == _present(data) == [TUMOUR, OTHER]
    assert widget.table.rowCount() == 2
    names = dict(zip(labels.features["index"], labels.features["name"], strict=True))
    voxel_ml = float(np.prod(labels.scale)) / 1000.0
    for value in (TUMOUR, OTHER):
        count = int(np.count_nonzero(data == value))
        assert _cell(widget, value, NAME) == names.get(value, f"label_{value}")
        assert _cell(widget, value, VOXELS) == str(count)
        assert float(_cell(widget, value, VOLUME)) == pytest.approx(count * voxel_ml, rel=5e-3)
    assert _cell(widget, TUMOUR, NAME) == "tumour"
    assert _cell(widget, OTHER, NAME) == "label_2"  # the features do not list it
    assert "2 labels in 'tumour'" in widget.summary.text()


def test_rows_follow_painting_erasing_new_data_undo_and_renames_elsewhere(sample, qtbot):
    viewer, _, labels, widget = sample
    data = np.asarray(labels.data)
    free = np.argwhere(data == 0)
    where = tuple(int(v) for v in free[len(free) // 2])
    labels.brush_size = 3
    labels.paint(where, 5)  # a new value: a row appears
    _settled(qtbot, widget, lambda: 5 in widget.values())
    assert _cell(widget, 5, VOXELS) == str(int(np.count_nonzero(labels.data == 5)))

    labels.paint(where, 0)  # erased entirely: the row goes
    _settled(qtbot, widget, lambda: 5 not in widget.values())
    labels.undo()  # the erase undone: back again
    _settled(qtbot, widget, lambda: 5 in widget.values())

    # a Segment run replacing the data (one undo step, as segment_job does it)
    from napari_medseg._napari.history import save_replacement

    whole = tuple(slice(0, n) for n in labels.data.shape)
    new = np.zeros_like(np.asarray(labels.data))
    new[10:12, 20:30, 20:30] = 7
    save_replacement(labels, whole, np.asarray(labels.data).copy(), new.copy())
    labels.data[whole] = new
    labels.refresh()
    _settled(qtbot, widget, lambda: widget.values() == [7])
    labels.undo()
    _settled(qtbot, widget, lambda: widget.values() == [TUMOUR, OTHER, 5])

    labels.data = np.asarray(labels.data).astype(np.uint16) * 3  # new data (3, 6, 15)
    _settled(qtbot, widget, lambda: widget.values() == [3, 6, 15])

    set_label_class(labels, 6, name="renamed elsewhere")  # as the Label tools rename
    _settled(qtbot, widget, lambda: _cell(widget, 6, NAME) == "renamed elsewhere")


def test_a_ct_sized_map_is_counted_in_a_worker(make_napari_viewer, qtbot, monkeypatch):
    import threading

    from napari_medseg.labels import maps

    threads = []
    count = maps.label_voxel_counts

    def recorded(*args, **kwargs):
        threads.append(threading.current_thread())
        return count(*args, **kwargs)

    monkeypatch.setattr(maps, "label_voxel_counts", recorded)
    viewer = make_napari_viewer()
    data = np.zeros((300, 512, 512), dtype=np.uint8)  # 512x512x300 voxels
    data[100:200, 100:300, 100:300] = 1
    data[250:260] = 3
    labels = viewer.add_labels(data, name="big")
    widget = dock(viewer, "Segments")
    qtbot.waitUntil(lambda: widget.values() == [1, 3], timeout=WAIT_MS)
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert _cell(widget, 1, VOXELS) == str(100 * 200 * 200)
    assert _cell(widget, 3, VOXELS) == str(10 * 512 * 512)
    labels.paint((5, 5, 5), 4)
    qtbot.waitUntil(lambda: widget.values() == [1, 3, 4], timeout=WAIT_MS)


def test_renaming_in_the_list_renames_the_class_for_report_and_save(sample, qtbot, tmp_path):
    viewer, _, labels, widget = sample
    report = dock(viewer, "Report")
    save = dock(viewer, "Save labels")
    table = widget.table
    item = table.item(widget.row_of(TUMOUR), NAME)
    table.setCurrentItem(item)
    table.editItem(item)  # as a double-click or F2 does
    editor = table.indexWidget(table.indexFromItem(item))
    assert isinstance(editor, QLineEdit)
    editor.selectAll()
    qtbot.keyClicks(editor, "GTV left lung")
    qtbot.keyClick(editor, Qt.Key.Key_Return)  # the delegate commits in a queued call

    qtbot.waitUntil(lambda: label_names(labels)[TUMOUR] == "GTV left lung", timeout=WAIT_MS)
    assert labels.name.endswith(" *")  # names are saved with the labels: unsaved
    _settled(qtbot, widget, lambda: _cell(widget, TUMOUR, NAME) == "GTV left lung")

    qtbot.waitUntil(
        lambda: (
            report.report is not None
            and not report.live.busy
            and any(s.name == "GTV left lung" for s in report.report.labels)
        ),
        timeout=WAIT_MS,
    )
    out = tmp_path / "renamed.nii.gz"
    save.nifti_edit.setText(str(out))
    with qtbot.waitSignal(save.saved, timeout=60_000):
        save.save_button.click()
    sidecar = json.loads((tmp_path / "renamed.json").read_text())
    assert sidecar["labels"]["1"] == "GTV left lung"

    # an empty name is refused; the row shows the name the class has
    table.item(widget.row_of(TUMOUR), NAME).setText("   ")
    assert label_names(labels)[TUMOUR] == "GTV left lung"
    assert _cell(widget, TUMOUR, NAME) == "GTV left lung"


def test_clicking_the_swatch_recolours_the_label(sample, qtbot, monkeypatch):
    _, _, labels, widget = sample
    asked = []

    def pick(current, parent, title):
        asked.append(current.name())
        return QColor("#00ff00")

    monkeypatch.setattr(QColorDialog, "getColor", staticmethod(pick))
    _click(qtbot, widget, OTHER, segment_list.SWATCH)
    assert asked  # the dialog opened on the label's colour
    np.testing.assert_allclose(labels.get_color(OTHER), (0.0, 1.0, 0.0, 1.0))
    colours = dict(zip(labels.features["index"], labels.features["color"], strict=True))
    assert colours[OTHER] == "#00ff00"
    _settled(qtbot, widget)
    swatch = widget.table.item(widget.row_of(OTHER), segment_list.SWATCH)
    assert swatch.data(Qt.ItemDataRole.DecorationRole).name() == "#00ff00"


def test_show_hide_and_opacity_change_what_napari_renders(sample, qtbot, artifacts):
    viewer, _, labels, widget = sample
    table = widget.table
    assert _alpha(labels, TUMOUR) == _alpha(labels, OTHER) == 1.0

    table.item(widget.row_of(OTHER), SHOW).setCheckState(Qt.CheckState.Unchecked)
    assert _alpha(labels, OTHER) == 0.0 and _alpha(labels, TUMOUR) == 1.0
    table.item(widget.row_of(OTHER), SHOW).setCheckState(Qt.CheckState.Checked)
    assert _alpha(labels, OTHER) == 1.0

    _settled(qtbot, widget)
    table.cellWidget(widget.row_of(TUMOUR), OPACITY).setValue(0.4)
    assert _alpha(labels, TUMOUR) == pytest.approx(0.4)
    widget.hide_all()
    assert _alpha(labels, TUMOUR) == _alpha(labels, OTHER) == 0.0
    _settled(qtbot, widget, lambda: table.item(0, SHOW).checkState() == Qt.CheckState.Unchecked)
    assert table.cellWidget(widget.row_of(TUMOUR), OPACITY).value() == pytest.approx(0.4)

    # a rename elsewhere rebuilds the colormap: hidden labels stay hidden
    set_label_class(labels, OTHER, name="vessel", color="#0000ff")
    assert _alpha(labels, OTHER) == 0.0

    widget.show_all()  # each label back at its own opacity
    assert _alpha(labels, TUMOUR) == pytest.approx(0.4) and _alpha(labels, OTHER) == 1.0
    np.testing.assert_allclose(labels.get_color(OTHER), (0.0, 0.0, 1.0, 1.0))

    labels.selected_label = OTHER
    widget.only_selected_button.click()
    assert _alpha(labels, OTHER) == 1.0 and _alpha(labels, TUMOUR) == 0.0
    _settled(qtbot, widget)
    assert [table.item(r, SHOW).checkState() for r in range(2)] == [
        Qt.CheckState.Unchecked,
        Qt.CheckState.Checked,
    ]
    viewer.dims.set_current_step(0, int(np.argwhere(labels.data == OTHER)[:, 0].mean()))
    viewer.screenshot(str(artifacts / "segment_list.png"), canvas_only=False, flash=False)


def test_a_plain_napari_layer_can_be_hidden_label_by_label(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    data = np.zeros((6, 20, 20), dtype=np.uint8)
    data[1:3, 2:6, 2:6] = 4
    data[3:5, 10:14, 10:14] = 9
    labels = viewer.add_labels(data, name="drawn")  # napari's own colours, no features
    colours = {v: labels.get_color(v) for v in (4, 9)}
    widget = dock(viewer, "Segments")
    _settled(qtbot, widget)
    assert widget.values() == [4, 9] and _cell(widget, 9, NAME) == "label_9"
    widget.set_shown([4], False)
    assert _alpha(labels, 4) == 0.0
    np.testing.assert_allclose(labels.get_color(9), colours[9])  # the other keeps its colour
    widget.set_shown([4], True)
    np.testing.assert_allclose(labels.get_color(4), colours[4])


def test_clicking_a_row_and_up_down_keys_choose_the_brush_label(sample, qtbot):
    _, _, labels, widget = sample
    labels.selected_label = TUMOUR
    _click(qtbot, widget, OTHER)
    assert labels.selected_label == OTHER
    _click(qtbot, widget, TUMOUR)
    assert labels.selected_label == TUMOUR

    widget.table.setFocus()
    qtbot.keyClick(widget.table, Qt.Key.Key_Down)
    assert labels.selected_label == OTHER
    qtbot.keyClick(widget.table, Qt.Key.Key_Up)
    assert labels.selected_label == TUMOUR

    labels.selected_label = OTHER  # the list follows the layer
    assert widget.table.currentRow() == widget.row_of(OTHER)
    labels.selected_label = 12  # not drawn: no row is current
    assert widget.table.currentRow() == -1


def test_a_locked_label_survives_brush_eraser_tools_and_composes_with_the_hu_range(
    sample, qtbot, notes, MouseEvent
):  # noqa: N803
    viewer, image, labels, widget = sample
    before = np.asarray(labels.data).copy()
    index = int(np.argwhere(before == OTHER)[:, 0].mean())
    viewer.dims.set_current_step(0, index)
    viewer.layers.selection.active = labels
    twin = viewer.add_labels(before.copy(), scale=labels.scale, translate=labels.translate)
    viewer.layers.selection.active = labels
    assert widget.labels_combo.layer() is labels

    widget.table.item(widget.row_of(OTHER), LOCK).setCheckState(Qt.CheckState.Checked)
    assert locked_labels(labels) == {OTHER}
    assert "locked" in widget.status.text()

    # a stroke of the tumour label right across the locked label
    other = np.argwhere(before[index] == OTHER).mean(axis=0)
    start = np.asarray(labels.data_to_world((index, *other)))
    points = [start + (0, 0, dx) for dx in np.linspace(-15.0, 15.0, 9)]
    for layer in (labels, twin):
        layer.mode = "paint"
        layer.brush_size = 6
        layer.selected_label = TUMOUR
        layer.preserve_labels = False
    _stroke(labels, viewer, points, MouseEvent)
    _stroke(twin, viewer, points, MouseEvent)
    free = np.asarray(twin.data).copy()
    assert ((free != before) & (before == OTHER)).any(), "the stroke must cross label 2"
    assert np.array_equal(labels.data, np.where(before == OTHER, before, free))
    labels.undo()
    twin.undo()

    # the eraser, and painting WITH the locked label, change none of it
    for layer in (labels, twin):
        layer.mode = "erase"
    _stroke(labels, viewer, points, MouseEvent)
    _stroke(twin, viewer, points, MouseEvent)
    erased = np.asarray(twin.data).copy()
    assert ((erased != before) & (before == OTHER)).any()
    assert np.array_equal(labels.data, np.where(before == OTHER, before, erased))
    labels.undo()
    labels.mode = "paint"
    labels.selected_label = OTHER
    _stroke(labels, viewer, points, MouseEvent)
    assert np.array_equal(labels.data, before)
    labels.selected_label = TUMOUR

    # with the Label tools' HU range on too, both filters apply: a range that holds
    # the locked voxels the stroke crosses, and not all the others
    hu = np.asarray(image.data)
    crossed = hu[(free != before) & (before == OTHER)]
    low, high = float(np.floor(crossed.min())), float(np.ceil(crossed.max()))
    inside = editing.in_range(hu, low, high)
    assert ((free != before) & ~inside & (before != OTHER)).any()
    tools = dock(viewer, "Label tools")
    tools.labels_combo.set_layer(labels)
    tools.image_combo.set_layer(image)
    tools.hu_low.setValue(low)
    tools.hu_high.setValue(high)
    tools.hu_check.setChecked(True)
    assert tools.hu_check.isChecked()
    _stroke(labels, viewer, points, MouseEvent)
    expected = np.where(inside & (before != OTHER), free, before)
    assert np.array_equal(labels.data, expected)
    labels.undo()
    tools.hu_check.setChecked(False)

    # a Label tool growing the tumour over the locked label leaves it whole
    tools.overwrite_check.setChecked(True)
    tools.margin_mm.setValue(6.0)
    tools.label_spin.setValue(TUMOUR)
    with qtbot.waitSignal(tools.tool_finished, timeout=WAIT_MS):
        tools.margin_button.click()
    grown = editing.change_margin(before == TUMOUR, 6.0, tuple(labels.scale))
    assert (grown & (before == OTHER)).any(), "the margin must reach label 2"
    reference = editing.plan_label_change(before, TUMOUR, grown, overwrite_other_labels=True)
    unlocked_result = before.copy()
    reference.apply(unlocked_result)
    assert np.array_equal(labels.data, np.where(before == OTHER, before, unlocked_result))
    labels.undo()

    # a tool on the locked label itself is refused, naming it
    tools.label_spin.setValue(OTHER)
    with qtbot.waitSignal(tools.tool_failed, timeout=WAIT_MS):
        tools.largest_button.click()
    assert any("label 2 is locked" in note for note in notes)
    assert np.array_equal(labels.data, before)

    # unlocked: the brush paints over it again
    widget.table.item(widget.row_of(OTHER), LOCK).setCheckState(Qt.CheckState.Unchecked)
    assert locked_labels(labels) == set()
    labels.selected_label = TUMOUR
    _stroke(labels, viewer, points, MouseEvent)
    assert np.array_equal(labels.data, free)


def test_closing_the_panel_unlocks_its_labels(sample):
    viewer, _, labels, widget = sample
    widget.set_locked(OTHER, True)
    target = tuple(int(v) for v in np.argwhere(labels.data == OTHER)[0])
    labels.brush_size = 1
    labels.paint(target, TUMOUR)
    assert labels.data[target] == OTHER

    viewer.window.remove_dock_widget(widget)  # napari's "close this panel"
    assert locked_labels(labels) == set()
    labels.paint(target, TUMOUR)
    assert labels.data[target] == TUMOUR


ITKSNAP = """\
# ITK-SNAP Label Description File
    0     0    0    0        0  0  0    "Clear Label"
    1   255    0    0        1  1  1    "tumour core"
    2     0  128  255        1  1  1    "left lung"
"""


def test_names_files_load_and_save_round_trip(sample, qtbot, tmp_path, monkeypatch, notes):
    _, _, labels, widget = sample
    source = tmp_path / "names.txt"
    source.write_text(ITKSNAP)
    with qtbot.waitSignal(widget.names_loaded):
        widget.load_names(source)
    assert label_names(labels)[TUMOUR] == "tumour core"
    assert label_names(labels)[OTHER] == "left lung"
    assert label_names(labels)[0] == "background"  # the background keeps its name
    np.testing.assert_allclose(labels.get_color(OTHER), (0.0, 128 / 255, 1.0, 1.0))
    _settled(qtbot, widget, lambda: _cell(widget, OTHER, NAME) == "left lung")

    out = tmp_path / "saved.txt"
    with qtbot.waitSignal(widget.names_saved):
        widget.save_names(out)
    rows = {}
    for line in out.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            fields = shlex.split(line)
            rows[int(fields[0])] = (tuple(int(v) for v in fields[1:4]), fields[7])
    assert rows[TUMOUR] == ((255, 0, 0), "tumour core")
    assert rows[OTHER] == ((0, 128, 255), "left lung")

    as_json = tmp_path / "saved.json"
    widget.save_names(as_json)
    assert json.loads(as_json.read_text()) == {"1": "tumour core", "2": "left lung"}
    slicer = tmp_path / "saved.ctbl"
    widget.save_names(slicer)
    lines = [line.split() for line in slicer.read_text().splitlines() if line[:1] != "#"]
    assert lines == [
        ["1", "tumour_core", "255", "0", "0", "255"],
        ["2", "left_lung", "0", "128", "255", "255"],
    ]

    # never over an existing file without asking
    text = out.read_text()
    with qtbot.waitSignal(widget.failed):
        widget.save_names(out)
    assert any("saved.txt" in note and "already exists" in note for note in notes)
    set_label_class(labels, TUMOUR, name="GTV")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    widget.save_button.click()
    assert out.read_text() == text and "kept" in widget.status.text()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(widget.names_saved):
        widget.save_button.click()
    assert '"GTV"' in out.read_text()

    # a names file that cannot be read: one clear error naming it, classes unchanged
    bad = tmp_path / "bad.txt"
    bad.write_text("liver 1 2 3\n")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    with qtbot.waitSignal(widget.failed):
        widget.load_button.click()
    assert any("bad.txt" in note and "line 1" in note for note in notes)
    assert label_names(labels)[TUMOUR] == "GTV"
