"""Segments: the labels of a Labels layer as a list to name, colour, show, hide and lock.

One row per label value drawn in the chosen labels layer (background left out), as
3D Slicer's and ITK-SNAP's segment lists: a colour swatch (click it to change the
colour), the value, the name (double-click or F2 to rename: the class name every
widget, the Report and Save use), the voxel count and volume in mL, *Show*, the
opacity, and *Lock*.

* **Show / opacity** act through the layer's colormap (an alpha per value,
  :func:`~napari_medseg._napari.label_classes.set_label_alpha`), so napari renders a
  hidden label transparent in 2D and 3D; *Show all*, *Hide all* and *Show only
  selected* change every row at once. A hidden label keeps its opacity for when it is
  shown again.
* **Lock**: napari's brush, eraser, fill and polygon, and the Label tools, leave a
  locked label's voxels as they are, and paint nothing with it
  (:mod:`~napari_medseg._napari.label_locks`). Closing the panel unlocks the labels it
  locked (as the Label tools lift their HU range), so no brush stays limited by a
  panel no one sees.
* **Selecting a row** (a click, or Up/Down with the list focused) makes that label
  the brush's label (``layer.selected_label``); the list follows the layer's
  selected label too.
* **Live**: painting a new value adds its row, erasing a label entirely removes it;
  renames and recolours done elsewhere (the Label tools), undo, redo and a Segment
  run replacing the data show as they happen. Layer events are gathered for
  :data:`DEBOUNCE_MS`; counting the voxels (``np.bincount`` in blocks, about 0.4 s
  for a 512x512x300 uint8 map) runs in a napari worker
  (:class:`~napari_medseg._napari.jobs.JobSlot`), so the viewer never waits for it.
* **Show 3D** builds a smoothed surface model of each shown label (hidden ones left
  out) as napari Surface layers in world mm, in the class colours, in a worker
  (:mod:`~napari_medseg._napari.surfaces`), and switches the viewer to 3D; pressing
  it again after edits rebuilds them.
* **Load names... / Save names...** read a names file (ITK-SNAP label descriptions,
  3D Slicer ``.ctbl``, FreeSurfer LUT, JSON) into the layer's classes, and write the
  layer's classes in the format the file name picks
  (:mod:`napari_medseg.io.label_names`); an existing file is replaced only after the
  user said yes.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QEvent, Qt, QTimer, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_medseg._napari.history import history_key
from napari_medseg._napari.jobs import Job, JobSlot
from napari_medseg._napari.label_classes import (
    hex_color,
    label_alpha,
    layer_classes,
    set_label_alpha,
    set_label_class,
    set_label_classes,
)
from napari_medseg._napari.label_locks import locked_labels, set_locked
from napari_medseg._napari.widgets.layer_combo import LayerCombo, is_layer
from napari_medseg.errors import Cancelled, MedsegError
from napari_medseg.labels.classes import default_name

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

#: Quiet time after the last layer event before the list is brought up to date, ms.
DEBOUNCE_MS = 100

#: Columns of the list.
SWATCH, VALUE, NAME, VOXELS, VOLUME, SHOW, OPACITY, LOCK = range(8)
HEADERS = ("", "#", "Name", "Voxels", "mL", "Show", "Opacity", "Lock")

#: Width the Name column gets at least, pixels (the list asks for room for it).
MIN_NAME_WIDTH = 110

#: What a names file may be called (the Save dialog's filters pick the format).
NAMES_FILTERS = (
    "ITK-SNAP label descriptions (*.txt *.label)",
    "3D Slicer colour table (*.ctbl)",
    "FreeSurfer colour LUT (*LUT.txt)",
    "JSON (*.json)",
)


def is_labels_layer(layer: Any) -> bool:
    """Labels layers the list can count (single-scale)."""
    return is_layer("labels")(layer) and not getattr(layer, "multiscale", False)


def format_ml(volume_ml: float) -> str:
    """A volume in mL as the list shows it (3 significant digits below 100 mL)."""
    return f"{volume_ml:.0f}" if volume_ml >= 100 else f"{volume_ml:.3g}"


def _count(data: Any, cancel: Any) -> dict[int, int]:
    from napari_medseg.labels.maps import label_voxel_counts

    return label_voxel_counts(np.asarray(data), cancel=cancel)


@dataclass(eq=False, kw_only=True)
class _Count(Job):
    """One count of a layer's voxels per label (in a worker)."""

    layer: Any = None


class _Unlocker:
    """Unlocks the labels a widget locked; a plain object, so it can be connected to
    the widget's ``destroyed`` signal (the widget's Qt side is gone by then)."""

    def __init__(self) -> None:
        self.layers: weakref.WeakSet = weakref.WeakSet()

    def release(self, *_: Any) -> None:
        for layer in list(self.layers):
            set_locked(layer, locked_labels(layer), locked=False)
        self.layers.clear()


@dataclass(eq=False, kw_only=True)
class _Surfaces(Job):
    """One build of a layer's 3D models (in a worker)."""

    layer: Any = None
    started: float = 0.0


class SegmentListWidget(QWidget):
    """Dock widget listing a labels layer's segments (see the module docstring).

    Parameters
    ----------
    napari_viewer : napari.Viewer

    Signals
    -------
    rows_updated()
        The list shows the layer as it is now (after a count, a rename...).
    names_loaded(str), names_saved(str)
        A names file was read into the layer's classes, or written (its path).
    surfaces_shown(int)
        Show 3D built the 3D models (how many surface layers are shown).
    failed(str)
        An action was refused or failed; the message (also a notification).
    """

    rows_updated = Signal()
    names_loaded = Signal(str)
    names_saved = Signal(str)
    surfaces_shown = Signal(int)
    failed = Signal(str)

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._layer: Any | None = None
        self._counts: dict[int, int] | None = None
        self._values: list[int] = []  # the value of each row
        self._history: tuple = ()
        self._need_count = False
        self._docked = False
        #: layer -> {value: opacity} of its hidden labels, for when they are shown again
        self._hidden: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._slot = JobSlot(self, napari_viewer)
        self._surface_slot = JobSlot(self, napari_viewer)  # Show 3D, beside the counts
        self._unlocker = _Unlocker()
        self.destroyed.connect(self._unlocker.release)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._bring_up_to_date)

        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.labels_combo = LayerCombo(self.viewer, is_labels_layer, self)
        form.addRow("Labels layer", self.labels_combo)
        layout.addLayout(form)
        self.table = self._make_table()
        layout.addWidget(self.table, 1)
        self.summary = QLabel("", self)  # how many labels, how much in all
        layout.addWidget(self.summary)
        layout.addLayout(self._buttons())
        self.status = QLabel("", self)  # what the last action did
        self.status.setWordWrap(True)
        layout.addWidget(self.status)

        self.labels_combo.layer_changed.connect(self._on_layer)
        self._on_layer()

    # -- layout -------------------------------------------------------------------------

    def _make_table(self) -> QTableWidget:
        table = QTableWidget(0, len(HEADERS), self)
        table.setHorizontalHeaderLabels(list(HEADERS))
        table.verticalHeader().setVisible(False)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        header = table.horizontalHeader()
        for column in range(len(HEADERS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        tips = {
            SWATCH: "Colour of the label: click to change",
            NAME: "Name of the label (double-click or F2 to rename)",
            VOXELS: "Voxels of the label",
            VOLUME: "Volume of the label, mL (voxel count x voxel size)",
            SHOW: "Show or hide the label",
            OPACITY: "Opacity of the label (0.05 to 1)",
            LOCK: (
                "Locked: napari's brush, eraser, fill and polygon, and the Label tools, "
                "neither change its voxels nor paint it"
            ),
        }
        for column, tip in tips.items():
            table.horizontalHeaderItem(column).setToolTip(tip)
        table.setToolTip("Click a label to paint with it; Up/Down switch labels")
        table.currentCellChanged.connect(self._on_current_cell)
        table.cellClicked.connect(self._on_cell_clicked)
        table.itemChanged.connect(self._on_item_changed)
        return table

    def _buttons(self) -> QGridLayout:
        grid = QGridLayout()

        def button(text: str, slot: Any, tip: str, row: int, column: int) -> QPushButton:
            widget = QPushButton(text, self)
            widget.setToolTip(tip)
            widget.clicked.connect(lambda *_: slot())
            grid.addWidget(widget, row, column)
            return widget

        self.show_all_button = button("Show all", self.show_all, "Show every label", 0, 0)
        self.hide_all_button = button("Hide all", self.hide_all, "Hide every label", 0, 1)
        self.only_selected_button = button(
            "Show only selected", self.show_only_selected, "Hide every label but this one", 0, 2
        )
        self.load_button = button(
            "Load names...",
            self.choose_names_to_load,
            "Name and colour the labels from an ITK-SNAP, 3D Slicer (.ctbl), FreeSurfer LUT "
            "or JSON file",
            1,
            0,
        )
        self.save_button = button(
            "Save names...",
            self.choose_names_to_save,
            "Write the names and colours as ITK-SNAP (.txt), 3D Slicer (.ctbl), FreeSurfer "
            "(*LUT.txt) or JSON (.json), by the file name",
            1,
            1,
        )
        self.show_3d_button = button(
            "Show 3D",
            self.show_3d,
            "Build smoothed 3D models of the shown labels (Surface layers in the class "
            "colours) and show the 3D view; press again after edits to rebuild them",
            1,
            2,
        )
        return grid

    # -- the layer ---------------------------------------------------------------------

    def labels_layer(self) -> Any:
        """The chosen labels layer (raises :class:`MedsegError` when there is none)."""
        layer = self.labels_combo.layer()
        if layer is None:
            raise MedsegError("no labels layer: open or create one, then choose it here")
        return layer

    def values(self) -> list[int]:
        """The label value of each row, top to bottom."""
        return list(self._values)

    def row_of(self, value: int) -> int:
        """The row of a label value (-1 when the list has none)."""
        return self._values.index(int(value)) if int(value) in self._values else -1

    def _on_layer(self, *_: Any) -> None:
        layer = self.labels_combo.layer()
        if layer is self._layer:
            return
        if self._layer is not None:
            self._connect(self._layer, False)
        self._layer = None
        self._counts = None
        self._values = []
        self.table.setRowCount(0)
        self._slot.invalidate()
        if layer is not None:
            self._connect(layer, True)
            self._layer = layer
            self._history = history_key(layer)
            self._need_count = True
            self._bring_up_to_date()
        else:
            self.summary.setText("No labels layer.")
            self.rows_updated.emit()

    def _connect(self, layer: Any, on: bool) -> None:
        """Follow (or stop following) the layer's edits, classes and selected label."""
        events = layer.events
        for emitter, slot in (
            (events.data, self._on_data),
            (events.paint, self._on_data),
            (events.set_data, self._on_set_data),
            (events.features, self._on_classes),
            (events.colormap, self._on_classes),
            (events.selected_label, self._on_selected_label),
        ):
            (emitter.connect if on else emitter.disconnect)(slot)

    # -- following the layer -------------------------------------------------------------

    def _on_data(self, *_: Any) -> None:
        """A paint, a tool's edit, or new data: count again once the edits pause."""
        if self._layer is not None:
            self._history = history_key(self._layer)
        self._need_count = True
        self._timer.start()

    def _on_set_data(self, *_: Any) -> None:
        """napari refreshed the layer: an undo or redo when its history moved."""
        layer = self._layer
        if layer is not None and history_key(layer) != self._history:
            self._on_data()

    def _on_classes(self, *_: Any) -> None:
        """Names, colours or opacities changed (here or in another widget)."""
        self._timer.start()

    def _on_selected_label(self, *_: Any) -> None:
        layer = self._layer
        if layer is not None:
            self._select_row(self.row_of(int(layer.selected_label)))

    def _bring_up_to_date(self) -> None:
        layer = self._layer
        if layer is None:
            return
        if self._need_count:
            self._need_count = False
            job = _Count(kind="count", layer=layer)
            # a newer count replaces a running one (its result is not wanted any more)
            self._slot.start(
                job,
                partial(_count, layer.data, job.cancel),
                returned=self._on_counted,
                errored=self._on_count_failed,
            )
            if self._counts is None:
                self.summary.setText(f"Counting the labels of '{layer.name}' ...")
            return
        self._show_rows()

    def _on_counted(self, job: _Count, counts: dict[int, int]) -> None:
        self._slot.release(job)
        if job.layer is not self._layer:
            return
        self._counts = counts
        self._show_rows()

    def _on_count_failed(self, job: _Count, error: BaseException) -> None:
        self._slot.release(job)
        if not isinstance(error, Cancelled):
            self._report_error("Segments", error)

    @property
    def busy(self) -> bool:
        """Whether the list is not yet up to date (a count runs or edits are pending)."""
        return self._slot.busy or self._timer.isActive() or self._need_count

    # -- rows ---------------------------------------------------------------------------

    def _show_rows(self) -> None:
        """Fill the list from the last count and the layer's classes, colours and locks."""
        layer = self._layer
        if layer is None or self._counts is None:
            return
        values = sorted(self._counts)
        classes = layer_classes(layer)
        alpha = label_alpha(layer)
        locked = locked_labels(layer)
        hidden = self._hidden.get(layer, {})
        voxel_ml = (
            float(np.prod(np.abs(np.asarray(layer.scale, dtype=float)))) / 1000.0
            if layer.ndim == 3
            else None
        )
        table = self.table
        table.blockSignals(True)
        try:
            if values != self._values:
                table.setRowCount(len(values))
                for row in range(len(values)):
                    self._make_row(row)
                self._values = values
            for row, value in enumerate(values):
                name, colour = classes.get(value, ("", ""))
                name = name or default_name(value)
                colour = colour or hex_color(layer.get_color(value), unit=True)
                opacity = alpha.get(value, 1.0)
                shown = opacity > 0
                if not shown:
                    opacity = hidden.get(value, 1.0)
                swatch = table.item(row, SWATCH)
                swatch.setData(Qt.ItemDataRole.DecorationRole, QColor(colour))  # also when selected
                swatch.setData(Qt.ItemDataRole.UserRole, colour)
                table.item(row, VALUE).setText(str(value))
                if table.item(row, NAME).text() != name:
                    table.item(row, NAME).setText(name)
                count = self._counts[value]
                table.item(row, VOXELS).setText(str(count))
                table.item(row, VOLUME).setText(
                    format_ml(count * voxel_ml) if voxel_ml is not None else ""
                )
                table.item(row, SHOW).setCheckState(_checked(shown))
                table.item(row, LOCK).setCheckState(_checked(value in locked))
                spin = table.cellWidget(row, OPACITY)
                spin.blockSignals(True)
                spin.setProperty("label_value", value)
                spin.setValue(round(opacity, 2))
                spin.blockSignals(False)
        finally:
            table.blockSignals(False)
        self._fit_width()
        self._select_row(self.row_of(int(layer.selected_label)))
        total = sum(self._counts.values())
        self.summary.setText(
            f"{len(values)} label{'s' if len(values) != 1 else ''} in '{layer.name}'"
            + (f", {format_ml(total * voxel_ml)} mL in all." if voxel_ml is not None else ".")
        )
        self.rows_updated.emit()

    def _fit_width(self) -> None:
        """Ask for the width that shows every column and :data:`MIN_NAME_WIDTH` of names."""
        table = self.table
        others = sum(
            max(table.sizeHintForColumn(c), table.horizontalHeader().sectionSizeHint(c))
            for c in range(len(HEADERS))
            if c != NAME
        )
        scroll_bar = table.verticalScrollBar().sizeHint().width()
        table.setMinimumWidth(others + MIN_NAME_WIDTH + scroll_bar + 2 * table.frameWidth())

    def _make_row(self, row: int) -> None:
        table = self.table
        fixed = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        for column in (SWATCH, VALUE, VOXELS, VOLUME):
            item = QTableWidgetItem("")
            item.setFlags(fixed)
            if column in (VALUE, VOXELS, VOLUME):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(row, column, item)
        name = QTableWidgetItem("")
        name.setFlags(fixed | Qt.ItemFlag.ItemIsEditable)
        table.setItem(row, NAME, name)
        for column in (SHOW, LOCK):
            item = QTableWidgetItem("")
            item.setFlags(fixed | Qt.ItemFlag.ItemIsUserCheckable)
            table.setItem(row, column, item)
        if not isinstance(table.cellWidget(row, OPACITY), QDoubleSpinBox):
            spin = QDoubleSpinBox(table)
            spin.setRange(0.05, 1.0)
            spin.setSingleStep(0.1)
            spin.setDecimals(2)
            spin.setKeyboardTracking(False)
            spin.setFrame(False)
            spin.setFixedWidth(spin.fontMetrics().horizontalAdvance("0.00") + 34)
            spin.valueChanged.connect(partial(self._on_opacity_spin, spin))
            table.setCellWidget(row, OPACITY, spin)

    def _select_row(self, row: int) -> None:
        """Make ``row`` the current row without setting the layer's label (-1: none)."""
        table = self.table
        if table.currentRow() == row:
            return
        table.blockSignals(True)
        try:
            if row < 0:
                table.clearSelection()
                table.setCurrentCell(-1, -1)
            else:
                table.setCurrentCell(row, VALUE)
                table.scrollToItem(table.item(row, VALUE))
        finally:
            table.blockSignals(False)

    # -- the user's actions on rows ---------------------------------------------------------

    def _value_at(self, row: int) -> int | None:
        return self._values[row] if 0 <= row < len(self._values) else None

    def _on_current_cell(self, row: int, column: int, previous_row: int, _: int) -> None:
        value = self._value_at(row)
        if value is not None and row != previous_row:
            self.select_label(value)

    def _on_cell_clicked(self, row: int, column: int) -> None:
        value = self._value_at(row)
        if value is None:
            return
        self.select_label(value)
        if column == SWATCH:
            self._choose_colour(value)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        value = self._value_at(item.row())
        if value is None:
            return
        column = item.column()
        if column == NAME:
            self.rename(value, item.text())
        elif column == SHOW:
            self.set_shown([value], item.checkState() == Qt.CheckState.Checked)
        elif column == LOCK:
            self.set_locked(value, item.checkState() == Qt.CheckState.Checked)

    def _on_opacity_spin(self, spin: QDoubleSpinBox, opacity: float) -> None:
        value = spin.property("label_value")
        if value is not None:
            self.set_opacity(int(value), opacity)

    def select_label(self, value: int) -> None:
        """Make ``value`` the label napari's brush paints with."""
        layer = self._layer
        if layer is None or int(layer.selected_label) == int(value):
            self._note_locked(value)
            return
        layer.selected_label = int(value)
        self._note_locked(value)

    def _note_locked(self, value: int) -> None:
        layer = self._layer
        if layer is not None and int(value) in locked_labels(layer):
            self.status.setText(
                f"Label {value} '{self._name(value)}' is locked: the brush paints nothing "
                "with it. Untick Lock to edit it."
            )

    def _name(self, value: int) -> str:
        row = self.row_of(value)
        if row >= 0:
            return self.table.item(row, NAME).text()
        return layer_classes(self._layer).get(int(value), (default_name(value), ""))[0]

    def rename(self, value: int, name: str) -> None:
        """Rename label ``value`` of the chosen layer (its class: every widget sees it)."""
        self._change_class(value, name=name.strip())

    def recolour(self, value: int, colour: str) -> None:
        """Give label ``value`` of the chosen layer a new ``#rrggbb`` colour."""
        self._change_class(value, color=colour)

    def _change_class(self, value: int, **change: str) -> None:
        from napari_medseg._napari.edit_state import mark_modified

        try:
            layer = self.labels_layer()
            if change.get("name") == "":
                raise MedsegError(f"layer '{layer.name}': a label needs a non-empty name")
            set_label_class(layer, value, **change)
        except (MedsegError, ValueError) as error:
            self._report_error("Rename/recolour", error)
            self._show_rows()  # back to the name the layer has
            return
        mark_modified(layer)  # names and colours are saved with the labels

    def _choose_colour(self, value: int) -> None:
        row = self.row_of(value)
        current = QColor(self.table.item(row, SWATCH).data(Qt.ItemDataRole.UserRole))
        chosen = QColorDialog.getColor(current, self, f"Colour of label {value}")
        if chosen.isValid():
            self.recolour(value, chosen.name())

    # -- showing, hiding, opacity -------------------------------------------------------------

    def set_shown(self, values: list[int], shown: bool) -> None:
        """Show or hide labels; a hidden label keeps its opacity for when it is shown."""
        self._set_alpha({int(v): shown for v in values})

    def show_all(self) -> None:
        """Show every label of the list."""
        self._set_alpha(dict.fromkeys(self._values, True))

    def hide_all(self) -> None:
        """Hide every label of the list."""
        self._set_alpha(dict.fromkeys(self._values, False))

    def show_only_selected(self) -> None:
        """Show the selected label (the brush's) and hide every other one."""
        layer = self._layer
        if layer is None:
            return
        selected = int(layer.selected_label)
        self._set_alpha({v: v == selected for v in self._values})

    def set_opacity(self, value: int, opacity: float) -> None:
        """Show label ``value`` at ``opacity`` (0.05 to 1); a hidden label stays hidden."""
        layer = self._layer
        if layer is None:
            return
        opacity = float(np.clip(opacity, 0.05, 1.0))
        hidden = self._hidden.setdefault(layer, {})
        if label_alpha(layer).get(int(value), 1.0) == 0:
            hidden[int(value)] = opacity
            return
        self._apply_alpha(layer, {int(value): opacity})

    def _set_alpha(self, shown: dict[int, bool]) -> None:
        layer = self._layer
        if layer is None or not shown:
            return
        alpha = label_alpha(layer)
        hidden = self._hidden.setdefault(layer, {})
        changes: dict[int, float] = {}
        for value, show in shown.items():
            now = alpha.get(value, 1.0)
            if show and now == 0:
                changes[value] = hidden.pop(value, 1.0)
            elif not show and now > 0:
                hidden[value] = now
                changes[value] = 0.0
        if changes:
            self._apply_alpha(layer, changes)

    def _apply_alpha(self, layer: Any, changes: dict[int, float]) -> None:
        try:
            set_label_alpha(layer, changes)
        except (MedsegError, ValueError) as error:
            self._report_error("Show/hide", error)

    # -- locks ----------------------------------------------------------------------------

    def set_locked(self, value: int, locked: bool) -> None:
        """Lock or unlock label ``value`` of the chosen layer."""
        try:
            layer = self.labels_layer()
            set_locked(layer, [int(value)], locked)
        except (MedsegError, ValueError) as error:
            self._report_error("Lock", error)
            self._show_rows()
            return
        if locked:
            self._unlocker.layers.add(layer)
            self.status.setText(
                f"Label {value} '{self._name(value)}' locked: the brush, eraser, fill and the "
                "Label tools leave its voxels as they are."
            )
        else:
            self.status.setText(f"Label {value} '{self._name(value)}' unlocked.")
        self._show_rows()

    # -- 3D models --------------------------------------------------------------------------

    def shown_values(self) -> list[int]:
        """Label values of the list that are shown (not hidden)."""
        layer = self._layer
        alpha = label_alpha(layer) if layer is not None else {}
        return [v for v in self._values if alpha.get(v, 1.0) > 0]

    @property
    def building_surfaces(self) -> bool:
        """Whether Show 3D is building the 3D models."""
        return self._surface_slot.busy

    def show_3d(self) -> None:
        """Build (or rebuild) the 3D models of the shown labels in a worker."""
        import time

        from napari_medseg._napari.layer_volume import layer_volume
        from napari_medseg._napari.surfaces import build_surfaces

        try:
            layer = self.labels_layer()
            if self._counts is not None and not self._values:
                raise MedsegError(f"'{layer.name}' holds no label to show in 3D")
            built = layer_volume(layer)
        except (MedsegError, ValueError) as error:
            self._report_error("Show 3D", error)
            return
        # every label drawn now (the list may not have counted the last edit yet)
        hidden = [v for v, a in label_alpha(layer).items() if a == 0]
        if self._counts is not None and self._values and not self.shown_values():
            self._report_error("Show 3D", f"every label of '{layer.name}' is hidden")
            return
        volume = built.volume
        volume.array = np.array(volume.array, order="C")  # a copy: painting goes on meanwhile
        job = _Surfaces(kind="surfaces", layer=layer, started=time.perf_counter())
        self._surface_slot.start(  # a newer build replaces a running one
            job,
            partial(
                build_surfaces,
                volume,
                built.geometry,
                skip=hidden,
                progress=job.progress,
                cancel=job.cancel,
            ),
            returned=self._on_surfaces,
            errored=self._on_surfaces_failed,
            progressed=self._on_surfaces_progress,
        )
        self.status.setText(f"Building the 3D models of '{layer.name}' ...")

    def _on_surfaces_progress(self, job: _Surfaces, done: int, total: int) -> None:
        self.status.setText(f"Building the 3D models of '{job.layer.name}': {done}/{total}")

    def _on_surfaces(self, job: _Surfaces, meshes: list) -> None:
        import time

        from napari_medseg._napari.surfaces import show_surfaces

        self._surface_slot.release(job)
        layer = job.layer
        if layer not in self.viewer.layers:
            return
        hidden = {v for v, a in label_alpha(layer).items() if a == 0}  # hidden meanwhile
        meshes = [m for m in meshes if m.value not in hidden]
        surfaces = show_surfaces(self.viewer, layer, meshes)
        if surfaces and self.viewer.dims.ndisplay != 3:
            self.viewer.dims.ndisplay = 3
        seconds = time.perf_counter() - job.started
        self.status.setText(
            f"3D models of {len(surfaces)} label{'s' * (len(surfaces) != 1)} of "
            f"'{layer.name}' in {seconds:.1f} s. After edits, press Show 3D again to rebuild."
        )
        self.surfaces_shown.emit(len(surfaces))

    def _on_surfaces_failed(self, job: _Surfaces, error: BaseException) -> None:
        self._surface_slot.release(job)
        if isinstance(error, Cancelled):
            self.status.setText("Show 3D cancelled.")
        else:
            self._report_error("Show 3D", error)

    # -- names files ------------------------------------------------------------------------

    def choose_names_to_load(self) -> None:
        """Ask for a names file and read it into the layer's classes."""
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Load label names",
            "",
            ";;".join(
                ("Label names (*.txt *.label *.ctbl *.lut *.json)", *NAMES_FILTERS, "All files (*)")
            ),
        )
        if path:
            self.load_names(path)

    def load_names(self, path: str | Path) -> None:
        """Name (and colour) the layer's labels from a names file.

        Values the file lists get its name, and its colour when it gives one (else
        they keep theirs); other labels keep their names; the background (0) is not
        renamed.
        """
        from napari_medseg._napari.edit_state import mark_modified
        from napari_medseg.io.label_names import LabelNamesError, read_label_classes

        title = "Load names"
        try:
            layer = self.labels_layer()
            loaded = {v: c for v, c in read_label_classes(path).items() if v > 0}
            if not loaded:
                raise LabelNamesError(path, "lists no label value above 0.")
            current = layer_classes(layer)
            changes = {
                value: (
                    name,
                    colour
                    or current.get(value, ("", ""))[1]
                    or hex_color(layer.get_color(value), unit=True),
                )
                for value, (name, colour) in loaded.items()
            }
            set_label_classes(layer, changes)
        except (MedsegError, ValueError) as error:
            self._report_error(title, error)
            return
        mark_modified(layer)
        self._show_rows()
        self.status.setText(f"Named {len(changes)} labels of '{layer.name}' from {path}.")
        self.names_loaded.emit(str(path))

    def choose_names_to_save(self) -> None:
        """Ask where to write the names file (and, for an existing file, whether to replace it)."""
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Save label names",
            "",
            ";;".join(NAMES_FILTERS),
            options=QFileDialog.Option.DontConfirmOverwrite,  # asked below, once
        )
        if not path:
            return
        overwrite = False
        if Path(path).exists():
            answer = QMessageBox.question(
                self,
                "Save label names",
                f"{path} exists. Replace it?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                self.status.setText(f"Not saved: {path} exists and was kept.")
                return
            overwrite = True
        self.save_names(path, overwrite=overwrite)

    def names_table(self) -> dict[int, tuple[str, str]]:
        """``{value: (name, "#rrggbb")}`` of the layer's labels: its classes and every
        label of the list (background left out), as a names file gets them."""
        layer = self.labels_layer()
        classes = {v: c for v, c in layer_classes(layer).items() if v > 0}
        for row, value in enumerate(self._values):
            if value not in classes:
                classes[value] = (
                    self.table.item(row, NAME).text() or default_name(value),
                    str(self.table.item(row, SWATCH).data(Qt.ItemDataRole.UserRole)),
                )
        return classes

    def save_names(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write the layer's names and colours; the format follows the file name
        (``.json``, ``.ctbl``, a name with ``LUT``, else ITK-SNAP). An existing file is
        replaced only with ``overwrite``."""
        from napari_medseg.io.label_names import names_format_for, write_label_classes

        try:
            classes = self.names_table()
            written = write_label_classes(path, classes, overwrite=overwrite)
        except (MedsegError, ValueError, OSError) as error:
            self._report_error("Save names", error)
            return
        self.status.setText(
            f"Saved {len(classes)} label names ({names_format_for(written)}) to {written}."
        )
        self.names_saved.emit(str(written))

    # -- messages and the panel ----------------------------------------------------------------

    def _report_error(self, title: str, error: BaseException | str) -> None:
        from napari_medseg._napari.notifications import notify_error

        text = str(error)
        notify_error(text, context=title)
        self.status.setText(f"{title}: {text}")
        self.failed.emit(text)

    def event(self, event: Any) -> bool:
        """Unlock the labels this panel locked when napari takes it out of its dock.

        napari's "close this panel" un-parents the widget (it is neither closed nor
        destroyed): the brush must not stay limited by locks no one sees.
        """
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked:
                self._docked = False
                self._unlocker.release()
                self._show_rows()
        return super().event(event)


def _checked(on: bool) -> Qt.CheckState:
    return Qt.CheckState.Checked if on else Qt.CheckState.Unchecked


__all__ = ["SegmentListWidget", "format_ml", "is_labels_layer"]
