"""Report dock widget: live measurements of a labels layer, its lesions and a volume chart.

Choose a labels layer, the scan it was drawn on (by default the image layer on the
same source grid; "none" for volumes only) and optionally a reference labels layer
(Dice, HD95...). The tables follow the edits: after a paint, a label tool, undo or
redo, the labels the edit touched are measured again in a worker
(:class:`~napari_medseg._napari.live_report.LiveReport`), with the numbers
``medseg report`` gives for the saved file. A click on a row moves the view to that
label's or lesion's centroid; *Export* writes the report as CSV or JSON.
"""

from __future__ import annotations

import logging
import math
import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from napari_medseg._napari.image_values import format_hu
from napari_medseg._napari.live_report import LiveReport
from napari_medseg._napari.widgets.layer_combo import LayerCombo, is_volume_layer
from napari_medseg._napari.widgets.scroll import scroll_body
from napari_medseg._napari.widgets.volume_chart import Bar, VolumeChart
from napari_medseg.labels.components import CONNECTIVITY_RANK, DEFAULT_CONNECTIVITY
from napari_medseg.measure.incremental import ReportSettings
from napari_medseg.measure.report import INTENSITY_KEYS

if TYPE_CHECKING:
    import napari

    from napari_medseg.measure.incremental import MeasuredReport
    from napari_medseg.measure.report import Report

logger = logging.getLogger(__name__)

#: Label table columns shown by default (others in the row tooltip, or all with
#: "All columns"), when the report has them.
LABEL_COLUMNS = (
    "label",
    "name",
    "voxels",
    "volume_ml",
    "dice",
    "hd95_mm",
    "lesions",
    "intensity_mean",
    "intensity_sd",
    "diameter_mm",
)
#: Lesion table columns shown by default.
LESION_COLUMNS = (
    "source",
    "id",
    "label",
    "name",
    "voxels",
    "volume_ml",
    "diameter_mm",
    "intensity_mean",
    "matched",
    "best_iou",
)
#: Column headers people read (others show the report's column name).
TITLES = {
    "label": "Label",
    "name": "Name",
    "voxels": "Voxels",
    "volume_ml": "Volume (mL)",
    "intensity_mean": "Mean",
    "intensity_sd": "SD",
    "intensity_median": "Median",
    "diameter_mm": "Diameter (mm)",
    "dice": "Dice",
    "hd95_mm": "HD95 (mm)",
    "lesions": "Lesions",
    "source": "Source",
    "id": "Lesion",
    "matched": "Matched",
    "best_iou": "Best IoU",
}
_NONE = "none"


#: Columns that hold image values (in ``intensity_units``: HU for CT).
INTENSITY_COLUMNS = frozenset(f"intensity_{key}" for key in INTENSITY_KEYS)


def format_value(value: Any) -> str:
    """A table cell: integers as they are, floats to 3 decimals (1 from 10 up)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_cell(column: str, value: Any, units: str) -> str:
    """A table cell of ``column``: HU values as :func:`format_hu` (``1.5`` beside
    ``32.8``, as every widget shows HU), the rest as :func:`format_value`."""
    if column in INTENSITY_COLUMNS and units.upper() == "HU" and isinstance(value, float):
        return format_hu(value)
    return format_value(value)


def _layer_sources(layer: Any) -> list[str]:
    """Files a layer came from (never to be written over)."""
    from napari_medseg._napari.layers import MEDSEG_KEY

    medseg = (getattr(layer, "metadata", None) or {}).get(MEDSEG_KEY, {}) or {}
    return [str(p) for p in [medseg.get("source"), *(medseg.get("files") or [])] if p]


#: Table rows shown before a table scrolls.
MAX_ROWS_SHOWN = 10
#: Label-table rows kept in sight however short the dock (the chart gives way first).
MIN_ROWS_SHOWN = 8
#: Lesion-table rows kept in sight.
MIN_LESION_ROWS_SHOWN = 4


def _rows_height(table: QTableWidget, rows: int) -> int:
    """Pixel height of a table showing ``rows`` rows, its header and scroll bar."""
    height = table.horizontalHeader().sizeHint().height() + 2 * table.frameWidth()
    height += rows * table.verticalHeader().defaultSectionSize()
    return height + table.horizontalScrollBar().sizeHint().height()


def _fit_height(table: QTableWidget, min_rows: int) -> None:
    """Make a table as tall as its rows (at most :data:`MAX_ROWS_SHOWN`, at least one),
    and never shorter than ``min_rows`` of them (a short dock scrolls instead)."""
    rows = max(1, min(table.rowCount(), MAX_ROWS_SHOWN))
    table.setMinimumHeight(_rows_height(table, min(rows, min_rows)))
    table.setMaximumHeight(_rows_height(table, rows))


def _forget(viewer: Any, live: LiveReport, callbacks: list[Any], *_: Any) -> None:
    """Disconnect a closed widget's callbacks from the viewer and stop its live report."""
    emitters = [viewer.layers.events.inserted]
    for layer in viewer.layers:
        if hasattr(layer.events, "colormap"):  # not every layer has one (the crosshair)
            emitters.append(layer.events.colormap)
    for emitter in emitters:
        for callback in callbacks:
            emitter.disconnect(callback)
    live.close()


class ReportWidget(QWidget):
    """Dock widget with the live measurement report of a labels layer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose layers are measured (napari passes it by this name).

    Signals
    -------
    shown(object)
        The :class:`~napari_medseg.measure.report.Report` the tables now show.
    """

    shown = Signal(object)

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state: MeasuredReport | None = None
        self._label_rows: list[dict[str, Any]] = []
        self._lesion_rows: list[dict[str, Any]] = []
        self._deferred_export: tuple[str, bool] | None = None

        self.live = LiveReport()
        self.live.updated.connect(self._on_updated)
        self.live.failed.connect(self._on_failed)
        self.live.busy_changed.connect(self._on_busy)

        self.labels_combo = LayerCombo(napari_viewer, is_volume_layer("labels"), self)
        self.labels_combo.setToolTip("The labels layer to measure")
        self.image_combo = LayerCombo(napari_viewer, is_volume_layer("image"), self, _NONE)
        self.image_combo.setToolTip(
            "The scan the labels were drawn on (intensity statistics, e.g. HU); 'none' for "
            "volumes only"
        )
        self.reference_combo = LayerCombo(napari_viewer, self._is_reference, self, _NONE)
        self.reference_combo.setToolTip("A reference labels layer for Dice, HD95, ASSD...")
        #: the image follows the labels (the image on their grid) until the user picks one
        self._image_auto = True
        self.labels_combo.layer_changed.connect(self._on_labels_changed)
        self.labels_combo.activated.connect(self._on_labels_activated)
        self.image_combo.layer_changed.connect(self._apply)
        self.image_combo.activated.connect(self._on_image_activated)
        self.reference_combo.layer_changed.connect(self._apply)

        self.lesions_check = QCheckBox("Lesions", self)
        self.lesions_check.setToolTip("Connected components of each label")
        self.connectivity_combo = QComboBox(self)
        for n in CONNECTIVITY_RANK:
            self.connectivity_combo.addItem(f"{n}-connected", n)
        self.connectivity_combo.setCurrentIndex(list(CONNECTIVITY_RANK).index(DEFAULT_CONNECTIVITY))
        self.connectivity_combo.setToolTip("Which neighbours join voxels into one lesion")
        self.distances_check = QCheckBox("Surface distances", self)
        self.distances_check.setChecked(True)
        self.distances_check.setToolTip(
            "HD, HD95, ASSD and surface Dice against the reference (slower on large labels)"
        )
        self.diameters_check = QCheckBox("Diameters", self)
        self.diameters_check.setChecked(True)
        self.diameters_check.setToolTip(
            "Maximum 3D diameter of each label (slower after edits of very large labels)"
        )
        self.all_columns_check = QCheckBox("All columns", self)
        self.all_columns_check.setToolTip("Show every column of the report")
        for check in (self.lesions_check, self.distances_check, self.diameters_check):
            check.toggled.connect(self._on_settings)
        self.connectivity_combo.currentIndexChanged.connect(self._on_settings)
        self.all_columns_check.toggled.connect(self._fill_tables)

        self.status = QLabel("Add or open a labels layer to measure it.", self)
        self.status.setWordWrap(True)

        self.table = self._make_table()
        self.table.cellClicked.connect(self.go_to_label_row)
        self.lesion_table = self._make_table()
        self.lesion_table.cellClicked.connect(self.go_to_lesion_row)
        self.lesion_title = QLabel("Lesions (click one to go there)", self)
        self.chart = VolumeChart(self)

        self.refresh_button = QPushButton("Refresh", self)
        self.refresh_button.setToolTip("Measure everything again")
        self.refresh_button.clicked.connect(self.live.refresh)
        self.csv_button = QPushButton("Export CSV...", self)
        self.csv_button.clicked.connect(lambda: self._export_dialog(".csv"))
        self.json_button = QPushButton("Export JSON...", self)
        self.json_button.clicked.connect(lambda: self._export_dialog(".json"))

        form = QFormLayout()
        form.addRow("Labels", self.labels_combo)
        form.addRow("Image", self.image_combo)
        form.addRow("Reference", self.reference_combo)
        lesion_row = QHBoxLayout()
        lesion_row.addWidget(self.lesions_check)
        lesion_row.addWidget(self.connectivity_combo)
        lesion_row.addStretch(1)
        lesion_row.addWidget(self.all_columns_check)
        measure_row = QHBoxLayout()
        measure_row.addWidget(self.distances_check)
        measure_row.addWidget(self.diameters_check)
        measure_row.addStretch(1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.refresh_button)
        buttons.addStretch(1)
        buttons.addWidget(self.csv_button)
        buttons.addWidget(self.json_button)
        layout = scroll_body(self)  # scrolls in a short dock: the window fits a laptop
        layout.addLayout(form)
        layout.addLayout(lesion_row)
        layout.addLayout(measure_row)
        layout.addWidget(self.status)
        layout.addWidget(QLabel("Labels (click one to go there)", self))
        # the room left goes to the tables and the chart (each up to its rows), then below
        layout.addWidget(self.table, 1)
        layout.addWidget(self.chart, 1)
        layout.addWidget(self.lesion_title)
        layout.addWidget(self.lesion_table, 1)
        layout.addStretch(0)
        buttons.setContentsMargins(9, 0, 9, 9)
        self.layout().addLayout(buttons)  # below the scrolled part: always in sight
        self.setMinimumWidth(460)  # label, name, voxels, volume and Dice without scrolling

        self.viewer.layers.events.inserted.connect(self._on_inserted)
        # when the widget goes, nothing may call it any more (plain callables only)
        self.destroyed.connect(
            partial(_forget, self.viewer, self.live, [self._on_inserted, self._update_chart])
        )
        self._update_options()
        self.labels_combo.set_layer(self.viewer.layers.selection.active)  # if it is labels
        self._on_labels_changed(self.labels_combo.layer())

    # ------------------------------------------------------------- choices
    def _make_table(self) -> QTableWidget:
        table = QTableWidget(0, 0, self)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.verticalHeader().setVisible(False)
        # one line of text per row: napari's style makes rows 30 px, 5 rows where 8 fit
        row_height = table.fontMetrics().height() + 8
        table.verticalHeader().setMinimumSectionSize(row_height)
        table.verticalHeader().setDefaultSectionSize(row_height)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        return table

    @property
    def labels_layer(self) -> Any:
        """The labels layer chosen (None when there is none)."""
        return self.labels_combo.layer()

    @property
    def image_layer(self) -> Any:
        """The image layer chosen (None: "none")."""
        return self.image_combo.layer()

    @property
    def reference_layer(self) -> Any:
        """The reference labels layer chosen (None: "none")."""
        return self.reference_combo.layer()

    @property
    def report(self) -> Report | None:
        """The report the tables show (None before the first measurement)."""
        return self.state.report if self.state is not None else None

    def _is_reference(self, layer: Any) -> bool:
        return is_volume_layer("labels")(layer) and layer is not self.labels_combo.layer()

    def _default_image(self, labels: Any) -> Any:
        """The image layer on the labels' patient grid (None when there is none).

        Matched by geometry, not by stored voxel order: a NIfTI label map of a DICOM
        series (same voxels, other axes or directions) finds that series.
        """
        from napari_medseg._napari.layer_volume import layer_volume, same_patient_grid
        from napari_medseg.errors import MedsegError

        if labels is None:
            return None
        try:
            found = layer_volume(labels)
        except MedsegError:
            return None
        accept = is_volume_layer("image")
        for layer in reversed(list(self.viewer.layers)):
            try:
                if accept(layer) and same_patient_grid(found, layer_volume(layer)):
                    return layer
            except MedsegError:
                continue
        return None

    def set_layers(self, labels: Any, image: Any = "default", reference: Any = None) -> None:
        """Choose the layers to measure (``image="default"``: the image on the labels' grid)."""
        self.labels_combo.set_layer(labels)
        self._image_auto = isinstance(image, str) and image == "default"
        self.image_combo.set_layer(self._default_image(labels) if self._image_auto else image)
        self.reference_combo.set_layer(reference)
        self._apply()

    def _on_labels_activated(self, *_: Any) -> None:
        self._image_auto = True  # a labels layer picked by the user: its own scan again
        self._on_labels_changed(self.labels_combo.layer())

    def _on_image_activated(self, *_: Any) -> None:
        self._image_auto = False  # the user's choice stays

    def _on_labels_changed(self, labels: Any) -> None:
        self.reference_combo.refresh()  # a layer is never its own reference
        if self._image_auto:
            self.image_combo.set_layer(self._default_image(labels))
        self._apply()

    def _on_inserted(self, event: Any = None) -> None:
        if self._image_auto and self.image_combo.layer() is None:
            self.image_combo.set_layer(self._default_image(self.labels_combo.layer()))

    def _apply(self, *_: Any) -> None:
        """Hand the chosen layers to the live report when they changed."""
        labels, image, reference = self.labels_layer, self.image_layer, self.reference_layer
        live = self.live
        if (live.labels_layer, live.image_layer, live.reference_layer) == (
            labels,
            image,
            reference,
        ):
            return
        if live.labels_layer is not None:
            live.labels_layer.events.colormap.disconnect(self._update_chart)
        if labels is not None:
            labels.events.colormap.connect(self._update_chart)
        self.state = None
        live.set_layers(labels, image, reference)
        if labels is None:
            self._show(None)
            self.status.setText("Add or open a labels layer to measure it.")

    # ------------------------------------------------------------- settings
    def settings(self) -> ReportSettings:
        """The measurement settings the controls ask for."""
        return ReportSettings(
            lesions=self.lesions_check.isChecked(),
            connectivity=int(self.connectivity_combo.currentData()),
            distances=self.distances_check.isChecked(),
            diameters=self.diameters_check.isChecked(),
        )

    def _update_options(self) -> None:
        lesions = self.lesions_check.isChecked()
        self.connectivity_combo.setEnabled(lesions)
        self.lesion_title.setVisible(lesions)
        self.lesion_table.setVisible(lesions)

    def _on_settings(self, *_: Any) -> None:
        self._update_options()
        self.live.set_settings(self.settings())

    # ------------------------------------------------------------- results
    def _on_busy(self, busy: bool) -> None:
        if busy:
            name = getattr(self.live.labels_layer, "name", "")
            self.status.setText(f"Measuring {name} ...")

    def _on_failed(self, message: str) -> None:
        self.status.setText(message)

    def _on_updated(self, state: MeasuredReport) -> None:
        self.state = state
        self._show(state.report)
        report = state.report
        n_labels = len(report.labels)
        parts = [f"{n_labels} label{'s' * (n_labels != 1)}"]
        if report.lesions is not None:
            n_lesions = len(report.lesions.lesions)
            parts.append(f"{n_lesions} lesion{'s' * (n_lesions != 1)}")
        text = ", ".join(parts) + f"; measured {report.provenance.created_utc}"
        self.status.setText("\n".join([text, *self.live.input_notes, *report.notes]))
        if self._deferred_export is not None and not self.live.busy:
            path, overwrite = self._deferred_export
            self._deferred_export = None
            self._export_now(path, overwrite)

    def _show(self, report: Report | None) -> None:
        from napari_medseg.measure.report import label_rows, lesion_rows

        self._label_rows = label_rows(report) if report is not None else []
        self._lesion_rows = lesion_rows(report) if report is not None else []
        self._fill_tables()
        self._update_chart()
        self.shown.emit(report)

    def _columns(self, all_columns: list[str], default: tuple[str, ...]) -> list[str]:
        if self.all_columns_check.isChecked():
            return all_columns
        return [c for c in default if c in all_columns]

    def label_table_columns(self) -> list[str]:
        """Columns the label table shows now."""
        from napari_medseg.measure.report import label_columns

        if self.report is None:
            return []
        return self._columns(label_columns(self.report), LABEL_COLUMNS)

    def lesion_table_columns(self) -> list[str]:
        """Columns the lesion table shows now."""
        from napari_medseg.measure.report import lesion_columns

        if self.report is None:
            return []
        return self._columns(lesion_columns(self.report), LESION_COLUMNS)

    def _header(self, column: str) -> str:
        title = TITLES.get(column, column)
        if column in INTENSITY_COLUMNS:
            units = self._units()
            return f"{title} ({units})" if units else title
        return title

    def _units(self) -> str:
        """The image's units in the report (HU for CT; "" without an image)."""
        return str(self._label_rows[0].get("intensity_units", "")) if self._label_rows else ""

    def _fill(self, table: QTableWidget, rows: list[dict[str, Any]], columns: list[str]) -> None:
        units = self._units()  # lesion rows hold no units: the labels' image is theirs
        table.setUpdatesEnabled(False)
        try:
            table.clear()
            table.setColumnCount(len(columns))
            table.setRowCount(len(rows))
            table.setHorizontalHeaderLabels([self._header(c) for c in columns])
            for r, row in enumerate(rows):
                tooltip = "\n".join(
                    f"{key}: {format_cell(key, value, units)}" for key, value in row.items()
                )
                for c, column in enumerate(columns):
                    value = row.get(column)
                    item = QTableWidgetItem(format_cell(column, value, units))
                    item.setToolTip(tooltip)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        item.setTextAlignment(
                            int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                        )
                    table.setItem(r, c, item)
        finally:
            table.setUpdatesEnabled(True)

    def _fill_tables(self, *_: Any) -> None:
        self._fill(self.table, self._label_rows, self.label_table_columns())
        self._fill(self.lesion_table, self._lesion_rows, self.lesion_table_columns())
        _fit_height(self.table, MIN_ROWS_SHOWN)
        _fit_height(self.lesion_table, MIN_LESION_ROWS_SHOWN)

    def _update_chart(self, *_: Any) -> None:
        from napari_medseg._napari.label_classes import hex_color, layer_classes

        layer = self.live.labels_layer
        classes = layer_classes(layer) if layer is not None else {}
        bars = []
        for row in self._label_rows:
            value = int(row["label"])
            color = classes.get(value, ("", ""))[1]
            if not color and layer is not None:
                color = hex_color(layer.get_color(value), unit=True)
            bars.append(Bar(value, str(row["name"]), float(row["volume_ml"]), color or "#808080"))
        self.chart.set_bars(bars)

    # ------------------------------------------------------------- navigation
    def _go_to(self, row: dict[str, Any]) -> None:
        from napari_medseg._napari.live_report import ras_to_layer_world
        from napari_medseg._napari.notifications import notify_error
        from napari_medseg.errors import MedsegError

        ras = [row.get(f"centroid_{axis}_ras_mm") for axis in "xyz"]
        layer = self.live.labels_layer
        if layer is None or any(v is None or not math.isfinite(v) for v in ras):
            self.status.setText(f"{row.get('name', 'This label')} has no voxels in the labels.")
            return
        try:
            world = ras_to_layer_world(layer, ras)
        except MedsegError as error:
            notify_error(error, context=f"Report of {layer.name!r}")
            return
        dims = self.viewer.dims
        axes = list(range(dims.ndim - len(world), dims.ndim))
        dims.set_point(axes, [float(v) for v in world])
        point = dict(zip(axes, world, strict=True))
        self.viewer.scene.camera.center = tuple(float(point.get(d, 0.0)) for d in dims.displayed)

    def go_to_label_row(self, row: int, column: int = 0) -> None:
        """Move the view to the centroid of the label in table row ``row``."""
        if 0 <= row < len(self._label_rows):
            self._go_to(self._label_rows[row])

    def go_to_lesion_row(self, row: int, column: int = 0) -> None:
        """Move the view to the centroid of the lesion in table row ``row``."""
        if 0 <= row < len(self._lesion_rows):
            self._go_to(self._lesion_rows[row])

    # ------------------------------------------------------------- export
    def protected_paths(self) -> list[str]:
        """Source files of the chosen layers (an export never writes over them)."""
        layers = (self.live.labels_layer, self.live.image_layer, self.live.reference_layer)
        return [p for layer in layers if layer is not None for p in _layer_sources(layer)]

    def export(self, path: str | os.PathLike, *, overwrite: bool = False) -> list[Path]:
        """Write the report shown now as CSV or JSON (``report.write_report``).

        Raises
        ------
        ScanWriteError
            No report yet, an unknown suffix, or an existing output without ``overwrite``.
        OverwriteSourceError
            ``path`` is one of the layers' source files.
        """
        from napari_medseg.errors import ScanWriteError
        from napari_medseg.measure.report import write_report

        if self.report is None:
            raise ScanWriteError(
                path, "there is no report to export yet.", "Choose a labels layer."
            )
        return write_report(self.report, path, overwrite=overwrite, protect=self.protected_paths())

    def _export_now(self, path: str, overwrite: bool) -> None:
        from napari_medseg._napari.notifications import notify_error, notify_info
        from napari_medseg.errors import MedsegError

        try:
            written = self.export(path, overwrite=overwrite)
        except MedsegError as error:
            notify_error(error, context="Report export")
            return
        notify_info(f"Report written to {', '.join(str(p) for p in written)}")

    def _default_export_path(self, suffix: str) -> str:
        """Next to the file the labels were last saved to or read from; in
        ``~/medseg-output`` when that is a bundled sample's folder or cannot be written
        (:func:`~napari_medseg._napari.widgets.save.user_default`)."""
        from napari_medseg._napari.edit_state import base_name, saved_path
        from napari_medseg._napari.widgets.save import fallback_folder, safe_name, user_default

        layer = self.live.labels_layer
        if layer is None:
            return str(fallback_folder() / f"labels_report{suffix}")
        candidates = [c for c in (saved_path(layer), *_layer_sources(layer)) if c]
        name = f"{safe_name(base_name(layer))}_report{suffix}"
        if not candidates:
            return str(fallback_folder() / name)
        path, _ = user_default(Path(candidates[0]).parent / name, candidates[0])
        return str(path)

    def _export_dialog(self, suffix: str) -> None:
        from napari_medseg.measure.report import report_outputs

        if self.report is None:
            self.status.setText("Nothing to export yet.")
            return
        kind = "CSV (*.csv)" if suffix == ".csv" else "JSON (*.json)"
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Export report",
            self._default_export_path(suffix),
            kind,
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if not path:
            return
        if not path.lower().endswith(suffix):
            path += suffix
        existing = [p for p in report_outputs(path, self.report.lesions is not None) if p.exists()]
        if existing:
            names = "\n".join(str(p) for p in existing)
            answer = QMessageBox.question(
                self,
                "Replace files?",
                f"These files exist already:\n{names}\n\nReplace them?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        if self.live.busy:  # export the numbers of the data as it is now
            self._deferred_export = (path, bool(existing))
            self.status.setText("The report is being updated; it is exported when it is done.")
            return
        self._export_now(path, bool(existing))


__all__ = ["ReportWidget", "format_cell", "format_value"]
