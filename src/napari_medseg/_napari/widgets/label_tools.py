"""Label tools: edit one label of a Labels layer; every tool run is one napari undo step.

Tools (:mod:`napari_medseg.labels.editing` does the work): fill holes (3D or slice by
slice), remove islands smaller than N mL, keep the largest component, split into
instances (each component its own label value), smooth (median / opening / closing
with a ball of N mm), grow or shrink by N mm, interpolate between drawn slices, and
clip the label to an HU range. Rename and recolour the label (the layer's features).

Scope: "This slice" works on the slice under the slider (2D view; smoothing and
margins act in-plane there), "Whole volume" on the label's 3D bounding box. "Overwrite
other labels" is napari's own *preserve labels* setting, inverted, so the brush and
the tools follow one switch.

"Edit only where the image is in [low, high]" limits napari's brush, eraser, fill
bucket and polygons (:class:`~napari_medseg._napari.hu_paint.RangeRestriction`) and
every tool except the clip itself to voxels whose image value is in the range.

Whole-volume runs compute in a napari worker (seconds on a large organ; one at a
time, through :class:`~napari_medseg._napari.jobs.JobSlot`), and are applied in the
main thread only if the label did not change meanwhile, nor the widget or viewer
went; one-slice runs take milliseconds and run inline. The result is written with
:func:`~napari_medseg._napari.label_edit.apply_label_change` (one history item), and
the edited layer becomes the selected one: napari's Ctrl+Z undoes edits of the
selected layer only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QEvent, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QColorDialog,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QWidget,
)

from napari_medseg._napari.jobs import Job, JobSlot
from napari_medseg._napari.label_edit import (
    LabelEditError,
    apply_instances,
    apply_mask_edit,
    image_on_labels_grid,
    layer_spacing,
    select_edited_layer,
    view_slice,
)
from napari_medseg._napari.widgets.layer_combo import LayerCombo, is_volume_layer
from napari_medseg._napari.widgets.scroll import scroll_body
from napari_medseg.errors import MedsegError
from napari_medseg.labels import editing

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

#: A reach (voxels) beyond any array: the whole extent along that axis.
_WHOLE = 1 << 30

#: Default editable range, HU: soft tissue (excludes air, lung and bone).
DEFAULT_HU_RANGE = (-100.0, 200.0)


@dataclass(eq=False)
class _Run(Job):
    """One tool run: what to compute (pure, on copies) and how to write the result.

    ``box``, ``region``, ``scope`` and ``mask`` describe the label when the run
    started (its bounding box in the scope, the crop, the scope, the label's mask in
    the crop): a result computed from a label that changed since is not written.
    """

    title: str
    layer: Any
    value: int
    compute: Callable[[], Any]
    apply: Callable[[Any], int]
    box: editing.Region
    region: editing.Region
    mask: np.ndarray
    scope: editing.Region | None = None

    def label_changed(self) -> bool:
        """Whether the label differs from what the run computed from."""
        data = self.layer.data
        now = editing.label_bounding_box(data, self.value, within=self.scope)
        return now != self.box or not np.array_equal(
            np.asarray(data[self.region]) == self.value, self.mask
        )


class _BrushRange:
    """The HU restriction of napari's brush, stopped with the widget.

    :meth:`stop` is connected to the widget's ``destroyed`` signal: a plain object,
    not a widget method, since the widget's Qt side is gone by then.
    """

    def __init__(self) -> None:
        self.restriction: Any | None = None

    def stop(self, *_: Any) -> None:
        if self.restriction is not None:
            self.restriction.stop()
            self.restriction = None


class LabelToolsWidget(QWidget):
    """Dock widget with the label tools (see the module docstring).

    Parameters
    ----------
    napari_viewer : napari.Viewer

    Signals
    -------
    tool_finished(str, int)
        A tool's title and the number of voxels it changed, after it was written.
    tool_failed(str, str)
        A tool's title and the error message (also shown as a notification).
    """

    tool_finished = Signal(str, int)
    tool_failed = Signal(str, str)

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._events_layer: Any | None = None
        self._docked = False
        self._slot = JobSlot(self, napari_viewer)
        self._brush = _BrushRange()
        self.destroyed.connect(self._brush.stop)

        # the tools scroll in a short dock; what the last one did stays in sight below
        layout = scroll_body(self)
        layout.addWidget(self._label_group())
        layout.addWidget(self._scope_group())
        layout.addWidget(self._tools_group())
        layout.addWidget(self._range_group())
        layout.addStretch(1)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setContentsMargins(9, 0, 9, 9)
        self.layout().addWidget(self.status)

        self.labels_combo.layer_changed.connect(self._on_labels_layer)
        self.image_combo.layer_changed.connect(self._on_image_layer)
        self._on_labels_layer()

    # -- layout ---------------------------------------------------------------------

    def _label_group(self) -> QGroupBox:
        box = QGroupBox("Layer and label", self)
        form = QFormLayout(box)
        self.labels_combo = LayerCombo(self.viewer, is_volume_layer("labels"), box)
        form.addRow("Labels layer", self.labels_combo)
        self.label_spin = QSpinBox(box)
        self.label_spin.setRange(1, 255)
        self.label_spin.setToolTip("The label the tools edit (follows the layer's selected label)")
        self.label_spin.valueChanged.connect(self._on_label_spin)
        self.name_edit = QLineEdit(box)
        self.name_edit.setToolTip("Name of the label: press Enter to rename")
        self.name_edit.editingFinished.connect(self._on_name_edited)
        self.color_button = QPushButton("", box)
        self.color_button.setFixedWidth(36)
        self.color_button.setToolTip("Colour of the label: click to change")
        self.color_button.clicked.connect(self._choose_color)
        row = QHBoxLayout()
        row.addWidget(self.label_spin)
        row.addWidget(self.name_edit, 1)
        row.addWidget(self.color_button)
        form.addRow("Label", row)
        return box

    def _scope_group(self) -> QGroupBox:
        box = QGroupBox("Where", self)
        row = QHBoxLayout(box)
        self.slice_radio = QRadioButton("This slice", box)
        self.volume_radio = QRadioButton("Whole volume", box)
        self.volume_radio.setChecked(True)
        group = QButtonGroup(box)
        group.addButton(self.slice_radio)
        group.addButton(self.volume_radio)
        self.overwrite_check = QCheckBox("Overwrite other labels", box)
        self.overwrite_check.setToolTip(
            "On: tools and the brush may take voxels of other labels. "
            "Off: they change only background and this label (napari's 'preserve labels')."
        )
        self.overwrite_check.toggled.connect(self._on_overwrite)
        row.addWidget(self.slice_radio)
        row.addWidget(self.volume_radio)
        row.addWidget(self.overwrite_check)
        return box

    def _tools_group(self) -> QGroupBox:
        box = QGroupBox("Tools", self)
        grid = QGridLayout(box)

        def button(text: str, slot: Callable[[], None], tip: str) -> QPushButton:
            widget = QPushButton(text, box)
            widget.setToolTip(tip)
            widget.clicked.connect(lambda *_: slot())
            return widget

        def spin(low: float, high: float, value: float, suffix: str, step: float) -> QDoubleSpinBox:
            widget = QDoubleSpinBox(box)
            widget.setRange(low, high)
            widget.setDecimals(2)
            widget.setSingleStep(step)
            widget.setValue(value)
            widget.setSuffix(suffix)
            return widget

        self.fill_button = button(
            "Fill holes", self.fill_holes, "Fill background enclosed by the label"
        )
        self.per_slice_check = QCheckBox("slice by slice", box)
        self.per_slice_check.setToolTip(
            "Whole volume: fill each slice across the view on its own (holes open in 3D)"
        )
        grid.addWidget(self.fill_button, 0, 0)
        grid.addWidget(self.per_slice_check, 0, 1)

        self.islands_button = button(
            "Remove islands", self.remove_islands, "Remove pieces smaller than the volume"
        )
        self.island_ml = spin(0.0, 1e6, 0.1, " mL", 0.05)
        self.island_ml.setDecimals(3)
        grid.addWidget(self.islands_button, 1, 0)
        grid.addWidget(QLabel("smaller than", box), 1, 1)
        grid.addWidget(self.island_ml, 1, 2)

        self.largest_button = button(
            "Keep largest", self.keep_largest, "Keep only the largest connected piece"
        )
        self.split_button = button(
            "Split instances",
            self.split_instances,
            "Whole volume: each connected piece gets its own label value (largest keeps it)",
        )
        grid.addWidget(self.largest_button, 2, 0)
        grid.addWidget(self.split_button, 2, 1, 1, 2)

        self.smooth_button = button("Smooth", self.smooth, "Median / opening / closing with a ball")
        self.smooth_method = QComboBox(box)
        self.smooth_method.addItems(list(editing.SMOOTHING_METHODS))
        self.smooth_size = spin(0.1, 500.0, 3.0, " mm", 0.5)
        self.smooth_size.setToolTip("Diameter of the ball")
        grid.addWidget(self.smooth_button, 3, 0)
        grid.addWidget(self.smooth_method, 3, 1)
        grid.addWidget(self.smooth_size, 3, 2)

        self.margin_button = button(
            "Grow / shrink", self.change_margin, "Grow (> 0) or shrink (< 0) by a distance"
        )
        self.margin_mm = spin(-500.0, 500.0, 2.0, " mm", 0.5)
        grid.addWidget(self.margin_button, 4, 0)
        grid.addWidget(QLabel("margin", box), 4, 1)
        grid.addWidget(self.margin_mm, 4, 2)

        self.interpolate_button = button(
            "Interpolate slices",
            self.interpolate,
            "Whole volume: fill the slices between drawn slices (across the view)",
        )
        grid.addWidget(self.interpolate_button, 5, 0, 1, 3)
        self._tools_box = box
        return box

    def _range_group(self) -> QGroupBox:
        box = QGroupBox("Intensity range", self)
        form = QFormLayout(box)
        self.image_combo = LayerCombo(self.viewer, is_volume_layer("image"), box)
        form.addRow("Image layer", self.image_combo)
        self.hu_low = QDoubleSpinBox(box)
        self.hu_high = QDoubleSpinBox(box)
        for widget, value in (
            (self.hu_low, DEFAULT_HU_RANGE[0]),
            (self.hu_high, DEFAULT_HU_RANGE[1]),
        ):
            widget.setRange(-1e6, 1e6)
            widget.setDecimals(1)
            widget.setValue(value)
            widget.valueChanged.connect(self._on_range)
        row = QHBoxLayout()
        row.addWidget(self.hu_low)
        row.addWidget(QLabel("to", box))
        row.addWidget(self.hu_high)
        form.addRow("Range (HU)", row)
        self.hu_check = QCheckBox("Edit only where the image is in the range", box)
        self.hu_check.setToolTip(
            "Applies to napari's brush, eraser, fill and polygon, and to the tools"
        )
        self.hu_check.toggled.connect(lambda *_: self._update_restriction(report=True))
        form.addRow(self.hu_check)
        self.clip_button = QPushButton("Clip label to range", box)
        self.clip_button.setToolTip(
            "Remove the label's voxels whose image value is outside the range"
        )
        self.clip_button.clicked.connect(lambda *_: self.clip_to_range())
        form.addRow(self.clip_button)
        return box

    # -- layers and label -----------------------------------------------------------

    def labels_layer(self) -> Any:
        """The chosen labels layer (raises :class:`LabelEditError` when there is none)."""
        layer = self.labels_combo.layer()
        if layer is None:
            raise LabelEditError("no labels layer: open or create one, then choose it here")
        return layer

    @property
    def value(self) -> int:
        """The label value the tools edit."""
        return int(self.label_spin.value())

    def _on_labels_layer(self, *_: Any) -> None:
        from napari_medseg._napari.edit_state import track_edits

        layer = self.labels_combo.layer()
        if layer is self._events_layer:
            return
        self._disconnect_layer()
        if layer is not None:
            track_edits(layer)  # the tools' edits show as unsaved without the Save widget
            layer.events.selected_label.connect(self._on_selected_label)
            layer.events.preserve_labels.connect(self._on_preserve_labels)
            layer.events.data.connect(self._on_layer_data)
            self._events_layer = layer
            self._on_layer_data()
            self.label_spin.setValue(max(1, int(layer.selected_label)))
            self._on_preserve_labels()
        self._show_label()
        self._update_restriction(report=False)

    def _on_image_layer(self, *_: Any) -> None:
        self._update_restriction(report=False)

    def _disconnect_layer(self) -> None:
        layer, self._events_layer = self._events_layer, None
        if layer is not None:
            layer.events.selected_label.disconnect(self._on_selected_label)
            layer.events.preserve_labels.disconnect(self._on_preserve_labels)
            layer.events.data.disconnect(self._on_layer_data)

    def _on_layer_data(self, *_: Any) -> None:
        """The labels the layer's dtype holds (napari's *Convert to uint16* changes it)."""
        layer = self._events_layer
        if layer is not None:
            dtype = np.dtype(layer.data.dtype)
            high = np.iinfo(dtype).max if dtype.kind in "iu" else 2**31 - 1
            self.label_spin.setMaximum(int(min(high, 2**31 - 1)))

    def _on_selected_label(self, *_: Any) -> None:
        layer = self._events_layer
        if layer is not None and layer.selected_label > 0:
            self.label_spin.setValue(int(layer.selected_label))

    def _on_label_spin(self, value: int) -> None:
        layer = self._events_layer
        if layer is not None and layer.selected_label != value:
            layer.selected_label = value
        self._show_label()

    def _on_preserve_labels(self, *_: Any) -> None:
        layer = self._events_layer
        if layer is not None:
            self.overwrite_check.blockSignals(True)
            self.overwrite_check.setChecked(not layer.preserve_labels)
            self.overwrite_check.blockSignals(False)

    def _on_overwrite(self, checked: bool) -> None:
        layer = self._events_layer
        if layer is not None:
            layer.preserve_labels = not checked

    def _label_class(self) -> tuple[str, str]:
        """Name and ``#rrggbb`` colour of the chosen label in the chosen layer."""
        from napari_medseg._napari.label_classes import hex_color, label_names, layer_classes

        layer = self.labels_combo.layer()
        if layer is None:
            return "", "#000000"
        classes = layer_classes(layer)
        if self.value in classes:
            return classes[self.value]
        name = label_names(layer, [self.value])[self.value]
        return name, hex_color(layer.get_color(self.value), unit=True)

    def _show_label(self) -> None:
        name, color = self._label_class()
        self.name_edit.setText(name)
        self.color_button.setStyleSheet(f"background-color: {color};")
        self.color_button.setProperty("label_color", color)

    def rename_label(self, name: str) -> None:
        """Rename the chosen label of the chosen layer (its features)."""
        self._set_class(name=name.strip())

    def recolour_label(self, color: str) -> None:
        """Give the chosen label of the chosen layer a new ``#rrggbb`` colour."""
        self._set_class(color=color)

    def _set_class(self, **change: str) -> None:
        from napari_medseg._napari.edit_state import mark_modified
        from napari_medseg._napari.label_classes import set_label_class

        try:
            layer = self.labels_layer()
            if change.get("name") == "":
                raise LabelEditError(f"layer '{layer.name}': a label needs a non-empty name")
            set_label_class(layer, self.value, **change)
        except (MedsegError, ValueError) as error:
            self._report_error("Rename/recolour", error)
            self._show_label()
            return
        mark_modified(layer)  # names and colours are saved with the labels
        self._show_label()

    def _on_name_edited(self) -> None:
        name = self.name_edit.text().strip()
        if name and name != self._label_class()[0]:
            self.rename_label(name)

    def _choose_color(self) -> None:
        current = QColor(self._label_class()[1])
        chosen = QColorDialog.getColor(current, self, "Label colour")
        if chosen.isValid():
            self.recolour_label(chosen.name())

    # -- intensity range --------------------------------------------------------------

    def _image_data(self, layer: Any) -> np.ndarray:
        """The chosen image's data, checked to be on the labels layer's grid."""
        image = self.image_combo.layer()
        if image is None:
            raise LabelEditError(
                f"layer '{layer.name}': the intensity range needs an image layer; open the scan"
            )
        return image_on_labels_grid(image, layer)

    def _on_range(self, *_: Any) -> None:
        restriction = self._brush.restriction
        if restriction is not None:
            try:
                restriction.set_range(self.hu_low.value(), self.hu_high.value())
            except MedsegError as error:
                self._report_error("Intensity range", error)

    def _update_restriction(self, *, report: bool) -> None:
        """(Re)start the brush restriction for the chosen layers when the box is ticked.

        When it cannot start, the box is unticked; the error is a notification when
        the user ticked it (``report``), a status line when a layer went away.
        """
        from napari_medseg._napari.hu_paint import RangeRestriction

        self._brush.stop()
        if not self.hu_check.isChecked():
            return
        try:
            layer = self.labels_layer()
            self._brush.restriction = RangeRestriction(
                layer, self._image_data(layer), self.hu_low.value(), self.hu_high.value()
            )
        except MedsegError as error:
            self.hu_check.blockSignals(True)
            self.hu_check.setChecked(False)
            self.hu_check.blockSignals(False)
            if report:
                self._report_error("Intensity range", error)
            else:
                self.status.setText(f"Intensity range switched off: {error}")

    def _allowed(self, layer: Any, region: editing.Region) -> np.ndarray | None:
        """Where the tools may edit in ``region`` (None: everywhere)."""
        if not self.hu_check.isChecked():
            return None
        image = self._image_data(layer)
        return editing.in_range(
            np.asarray(image[region]), self.hu_low.value(), self.hu_high.value()
        )

    # -- the tools ---------------------------------------------------------------------

    def fill_holes(self) -> None:
        """Fill the label's holes: this slice, slice by slice, or in 3D."""

        per_slice = self.per_slice_check.isChecked()

        def operation(mask, spacing, axis, in_slice):
            return editing.fill_holes(mask, axis if in_slice or per_slice else None)

        self._mask_tool("Fill holes", operation)

    def remove_islands(self) -> None:
        """Remove the label's pieces smaller than the volume in mL."""
        min_ml = self.island_ml.value()
        self._mask_tool(
            "Remove islands",
            lambda mask, spacing, axis, in_slice: editing.remove_islands(mask, min_ml, spacing),
        )

    def keep_largest(self) -> None:
        """Keep the label's largest connected piece."""
        self._mask_tool(
            "Keep largest",
            lambda mask, spacing, axis, in_slice: editing.keep_largest_component(mask),
        )

    def smooth(self) -> None:
        """Median / opening / closing with a ball of the size in mm (in-plane on a slice)."""
        method, size = self.smooth_method.currentText(), self.smooth_size.value()
        self._mask_tool(
            f"Smooth ({method})",
            _in_plane(lambda mask, spacing: editing.smooth(mask, method, size, spacing)),
            reach=lambda spacing, axis: editing.smoothing_reach(method, size, spacing),
        )

    def change_margin(self) -> None:
        """Grow (> 0) or shrink (< 0) the label by the margin in mm (in-plane on a slice)."""
        margin = self.margin_mm.value()
        self._mask_tool(
            "Grow" if margin >= 0 else "Shrink",
            _in_plane(lambda mask, spacing: editing.change_margin(mask, margin, spacing)),
            reach=lambda spacing, axis: editing.margin_reach(margin, spacing),
        )

    def interpolate(self) -> None:
        """Fill the slices between the label's drawn slices (whole volume, across the view)."""
        self._mask_tool(
            "Interpolate slices",
            lambda mask, spacing, axis, in_slice: editing.interpolate_slices(mask, axis, spacing),
            # shapes moving between drawn slices may leave the label's box in-plane
            reach=lambda spacing, axis: tuple(0 if a == axis else _WHOLE for a in range(3)),
            whole_volume=True,
        )

    def clip_to_range(self) -> None:
        """Remove the label's voxels whose image value is outside the range."""
        low, high = self.hu_low.value(), self.hu_high.value()

        def prepare(layer, region):
            image = np.asarray(self._image_data(layer)[region])
            return lambda mask, spacing, axis, in_slice: mask & editing.in_range(image, low, high)

        self._mask_tool("Clip to range", None, prepare=prepare, use_range=False)

    def split_instances(self) -> None:
        """Give each connected piece of the label its own value (the largest keeps it)."""
        title = "Split instances"
        try:
            layer, value, _, scope, _ = self._context(whole_volume=True)
            region = box = self._label_box(layer, value, scope)
            if box is None:
                return
            mask = np.asarray(layer.data[region]) == value
        except (MedsegError, ValueError) as error:
            self._report_error(title, error)
            return

        def apply(result: tuple[np.ndarray, int]) -> int:
            return apply_instances(layer, value, result[0], region)

        compute = partial(editing.split_instances, mask)
        self._start(_Run(title, layer, value, compute, apply, box, region, mask), background=True)

    # -- running ----------------------------------------------------------------------------

    def _context(self, *, whole_volume: bool) -> tuple[Any, int, tuple[float, ...], Any, int]:
        """(layer, value, spacing, scope region, axis across the view); raises on bad input."""
        layer = self.labels_layer()
        in_slice = self.slice_radio.isChecked() and not whole_volume
        where = view_slice(self.viewer, layer, current=in_slice)
        scope = where.region(layer.data.shape) if in_slice else None
        return layer, self.value, layer_spacing(layer), scope, where.axis

    def _label_box(self, layer: Any, value: int, scope: Any) -> Any:
        box = editing.label_bounding_box(layer.data, value, within=scope)
        if box is None:
            place = "this slice" if scope is not None else "the layer"
            self.status.setText(f"Label {value} has no voxels in {place} of '{layer.name}'.")
        return box

    def _mask_tool(
        self,
        title: str,
        operation: Callable[..., np.ndarray] | None,
        *,
        reach: Callable[[tuple[float, ...], int], Any] | None = None,
        whole_volume: bool = False,
        prepare: Callable[[Any, Any], Callable[..., np.ndarray]] | None = None,
        use_range: bool = True,
    ) -> None:
        """Run ``operation(mask, spacing, axis, in_slice) -> new mask`` on the label's crop."""
        try:
            layer, value, spacing, scope, axis = self._context(whole_volume=whole_volume)
            in_slice = scope is not None
            box = self._label_box(layer, value, scope)
            if box is None:
                return
            extra = reach(_scope_spacing(spacing, axis, in_slice), axis) if reach else 0
            if in_slice and reach is not None:
                extra = tuple(np.insert(np.asarray(extra), axis, 0))
            region = editing.expand_region(box, extra, layer.data.shape, within=scope)
            mask = np.asarray(layer.data[region]) == value
            allowed = self._allowed(layer, region) if use_range else None
            if prepare is not None:
                operation = prepare(layer, region)
            overwrite = self.overwrite_check.isChecked()
        except (MedsegError, ValueError) as error:
            self._report_error(title, error)
            return
        assert operation is not None

        def apply(new_mask: np.ndarray) -> int:
            return apply_mask_edit(
                layer,
                value,
                new_mask,
                region=region,
                overwrite_other_labels=overwrite,
                allowed=allowed,
            )

        compute = partial(operation, mask, spacing, axis, in_slice)
        run = _Run(title, layer, value, compute, apply, box, region, mask, scope)
        self._start(run, background=not in_slice)

    def _start(self, run: _Run, *, background: bool) -> None:
        if self._slot.busy:
            self.status.setText("Another tool is still running.")
            return
        if not background:
            try:
                result = run.compute()
            except (MedsegError, ValueError) as error:
                self._report_error(run.title, error)
                return
            self._finish(run, result, computed_aside=False)
            return
        self._slot.start(
            run,
            run.compute,
            returned=self._on_computed,
            errored=self._on_compute_failed,
            finished=self._on_compute_ended,
        )
        self._show_busy()
        self.status.setText(
            f"{run.title}: computing on label {run.value} of '{run.layer.name}' ..."
        )

    def _show_busy(self) -> None:
        busy = self._slot.busy
        self._tools_box.setEnabled(not busy)
        self.clip_button.setEnabled(not busy)

    def _on_computed(self, run: _Run, result: Any) -> None:
        self._slot.release(run)
        self._show_busy()
        self._finish(run, result)

    def _on_compute_failed(self, run: _Run, error: BaseException) -> None:
        self._slot.release(run)
        self._show_busy()
        self._report_error(run.title, error)

    def _on_compute_ended(self, run: _Run) -> None:
        """The worker ended without a result (napari quit it): the tools are free again."""
        self._show_busy()

    def _finish(self, run: _Run, result: Any, *, computed_aside: bool = True) -> None:
        """Write a run's result (refused when computed aside from a label that changed)."""
        if computed_aside:
            if run.layer not in self.viewer.layers:
                problem = "was removed"
            elif run.label_changed():
                problem = f"changed label {run.value}"
            else:
                problem = ""
            if problem:
                from napari_medseg._napari.notifications import notify_warning

                message = (
                    f"{run.title}: layer '{run.layer.name}' {problem} while the tool was "
                    "computing; nothing was written, run it again"
                )
                notify_warning(message)
                self.status.setText(message)
                self.tool_failed.emit(run.title, message)
                return
        try:
            changed = run.apply(result)
        except (MedsegError, ValueError) as error:
            self._report_error(run.title, error)
            return
        if changed:
            select_edited_layer(self.viewer, run.layer)  # Ctrl+Z acts on the selected layer
        volume_ml = changed * float(np.prod(layer_spacing(run.layer))) / 1000.0
        self.status.setText(
            f"{run.title}: {changed} voxels ({volume_ml:.3g} mL) changed in label {run.value} "
            f"of '{run.layer.name}'" + (" (Ctrl+Z undoes it)." if changed else ".")
        )
        self._show_label()
        self.tool_finished.emit(run.title, changed)

    def _report_error(self, title: str, error: BaseException | str) -> None:
        from napari_medseg._napari.notifications import notify_error

        text = str(error)
        layer = self.labels_combo.layer()
        if layer is not None and f"'{layer.name}'" not in text:
            text = f"layer '{layer.name}': {text}"
        notify_error(text, context=title)
        self.status.setText(f"{title}: {text}")
        self.tool_failed.emit(title, text)

    def event(self, event: Any) -> bool:
        """Lift the brush restriction when napari takes the widget out of its dock.

        napari's "close this panel" un-parents the widget (it is neither closed nor
        destroyed), so the brush must not stay limited by a widget no one sees.
        """
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked:
                self._docked = False
                self.hu_check.setChecked(False)
                self._brush.stop()
        return super().event(event)


def _scope_spacing(spacing: tuple[float, ...], axis: int, in_slice: bool) -> tuple[float, ...]:
    """The spacing an operation sees: in-plane only (axis removed) on one slice."""
    return tuple(s for a, s in enumerate(spacing) if not (in_slice and a == axis))


def _in_plane(
    operation: Callable[[np.ndarray, tuple[float, ...]], np.ndarray],
) -> Callable[..., np.ndarray]:
    """Adapt ``operation(mask, spacing)`` to work in-plane on a one-slice crop."""

    def run(mask: np.ndarray, spacing: tuple[float, ...], axis: int, in_slice: bool) -> np.ndarray:
        if not in_slice:
            return operation(mask, spacing)
        plane = operation(np.take(mask, 0, axis=axis), _scope_spacing(spacing, axis, True))
        return np.expand_dims(plane, axis)

    return run


__all__ = ["DEFAULT_HU_RANGE", "LabelToolsWidget"]
