"""DICOM series browser: pick a folder, see its series, load the ones you want.

Indexing and reading run in napari thread workers, so the viewer never blocks;
layers are added and notifications shown from the main thread (the workers'
``returned``/``yielded``/``errored`` callbacks).

Each scan or load is a :class:`~napari_medseg._napari.jobs.Job` (its worker and a
``threading.Event``) run through the widget's
:class:`~napari_medseg._napari.jobs.JobSlot`. *Cancel* sets the event: a load stops
between and inside series (``read_dicom_series(cancel=...)``), a scan before the
next file (``index_dicom(cancel=...)``); both raise
:class:`~napari_medseg.errors.Cancelled`. When the widget is destroyed or its viewer
closed, the running job is cancelled the same way and its callbacks no longer touch
the widget or the viewer.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_medseg._napari.jobs import Job, JobSlot

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

#: Table columns, in order.
COLUMNS = (
    "#",
    "Description",
    "Modality",
    "Slices",
    "Matrix",
    "Spacing (mm)",
    "Orientation",
    "Warnings",
)


def _fmt_float(value: Any) -> str:
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        return "?"


#: Progress updates of a scan shown per folder (one per header would flood the event loop).
SCAN_PROGRESS_STEPS = 50


@dataclass(eq=False)
class LoadJob(Job):
    """A load of series: the layers added so far (they stay when it is cancelled)."""

    kind: str = "load"
    added: list = field(default_factory=list)


def series_row(series: Any) -> list[str]:
    """Table cells for one ``SeriesInfo`` (see :data:`COLUMNS`)."""
    spacing = getattr(series, "pixel_spacing", None)
    if spacing is not None and len(spacing) >= 2:
        in_plane = f"{_fmt_float(spacing[0])} x {_fmt_float(spacing[1])}"
    else:
        in_plane = "?"
    slice_spacing = getattr(series, "slice_spacing", None)
    spacing_text = in_plane + (f" x {_fmt_float(slice_spacing)}" if slice_spacing else "")
    warnings = [str(w) for w in getattr(series, "warnings", ()) or ()]
    if not getattr(series, "has_geometry", True):
        warnings.insert(0, "no patient geometry")
    if getattr(series, "is_localizer", False):
        warnings.insert(0, "localizer")
    number = getattr(series, "number", None)
    return [
        "" if number is None else str(number),
        str(getattr(series, "description", "") or ""),
        str(getattr(series, "modality", "") or ""),
        str(getattr(series, "n_slices", "")),
        f"{getattr(series, 'rows', '?')} x {getattr(series, 'columns', '?')}",
        spacing_text,
        str(getattr(series, "orientation", "") or ""),
        "; ".join(warnings),
    ]


def series_tooltip(series: Any) -> str:
    """Details shown when hovering a row (no patient identifiers)."""
    parts = [
        ("Series", getattr(series, "description", "")),
        ("Study", getattr(series, "study_description", "")),
        ("Series date", getattr(series, "series_date", "")),
        ("SOP class", getattr(series, "sop_class", "")),
        ("Image type", "\\".join(getattr(series, "image_type", ()) or ())),
        ("Transfer syntax", ", ".join(getattr(series, "transfer_syntaxes", ()) or ())),
        ("Split off by", getattr(series, "split_by", "")),
        ("Files", str(len(getattr(series, "files", ()) or ()))),
    ]
    lines = [f"{k}: {v}" for k, v in parts if v]
    lines += [f"! {w}" for w in getattr(series, "warnings", ()) or ()]
    return "\n".join(lines)


class DicomBrowser(QWidget):
    """Dock widget listing the DICOM series of a folder and loading the chosen ones.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer the layers are added to (napari passes it by this name).

    Signals
    -------
    indexed(list)
        Emitted in the main thread with the ``SeriesInfo`` list once a folder is indexed.
    loaded(list)
        Emitted with the layers added once a load finishes.
    failed(str)
        Emitted with the error message when indexing or loading fails.
    cancelled(str)
        Emitted with ``"scan"`` or ``"load"`` when a job stopped because of
        :meth:`cancel` (a cancelled load also emits ``loaded`` with the layers
        added before it stopped).
    """

    indexed = Signal(list)
    loaded = Signal(list)
    failed = Signal(str)
    cancelled = Signal(str)

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.series: list[Any] = []
        # stops the running job when the widget goes (e.g. its viewer is closed)
        self._slot = JobSlot(self, napari_viewer)
        self._folder = ""

        self.folder_edit = QLineEdit(self)
        self.folder_edit.setPlaceholderText("Folder with DICOM files (searched recursively)")
        self.folder_edit.returnPressed.connect(self.scan)
        self.browse_button = QPushButton("Browse...", self)
        self.browse_button.clicked.connect(self._browse)
        self.scan_button = QPushButton("Scan", self)
        self.scan_button.setToolTip("List the DICOM series in the folder")
        self.scan_button.clicked.connect(self.scan)

        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.cellDoubleClicked.connect(self._on_double_click)

        self.load_button = QPushButton("Load selected", self)
        self.load_button.clicked.connect(self.load_selected)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop the scan, or the load (series already loaded stay)")
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel("Choose a folder and press Scan.", self)
        self.status.setWordWrap(True)

        top = QHBoxLayout()
        top.addWidget(self.folder_edit, 1)
        top.addWidget(self.browse_button)
        top.addWidget(self.scan_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.load_button)
        bottom.addWidget(self.cancel_button)
        layout.addLayout(bottom)
        self._update_buttons()

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        """Whether a worker is indexing or loading."""
        return self._slot.busy

    def _done(self, job: Job) -> None:
        self._slot.release(job)
        self._update_buttons()

    def _update_buttons(self) -> None:
        idle = not self._slot.busy
        self.scan_button.setEnabled(idle)
        self.browse_button.setEnabled(idle)
        self.load_button.setEnabled(idle and bool(self.selected_rows()))
        self.cancel_button.setVisible(not idle)

    def selected_rows(self) -> list[int]:
        """Selected table rows, top to bottom."""
        return sorted({index.row() for index in self.table.selectionModel().selectedRows()})

    # --------------------------------------------------------------- indexing
    def _browse(self) -> None:
        start = self.folder_edit.text() or os.path.expanduser("~")
        folder = QFileDialog.getExistingDirectory(self, "DICOM folder", start)
        if folder:
            self.folder_edit.setText(folder)
            self.scan()

    def set_folder(self, folder: str | os.PathLike) -> None:
        """Put ``folder`` in the line edit and index it (in a worker)."""
        self.folder_edit.setText(os.fspath(folder))
        self.scan()

    def scan(self) -> None:
        """Index the folder in the line edit in a napari worker (Cancel stops it)."""
        from napari_medseg.io.dicom import index_dicom

        if self._slot.busy:
            return
        folder = self.folder_edit.text().strip()
        if not folder:
            self.status.setText("Choose a folder first.")
            return
        self._folder = folder
        self.table.setRowCount(0)
        self.series = []
        job = Job(kind="scan")
        self.status.setText(f"Scanning {folder} ...")
        self._slot.start(
            job,
            partial(index_dicom, folder, progress=job.progress, cancel=job.cancel),
            returned=self._on_indexed,
            errored=self._on_error,
            progressed=self._on_index_progress,
            finished=self._done,
            progress_steps=SCAN_PROGRESS_STEPS,
        )
        self._update_buttons()

    def _on_index_progress(self, job: Job, done: int, total: int) -> None:
        if total and not job.cancel.is_set():
            self.status.setText(f"Scanning {self._folder}: {done}/{total} files ...")

    def _on_indexed(self, job: Job, series: Sequence[Any]) -> None:
        if job.cancel.is_set():  # Cancel came after the last file's header
            self.status.setText("Scan cancelled.")
            self._done(job)
            self.cancelled.emit(job.kind)
            return
        self.series = list(series)
        self.table.setRowCount(len(self.series))
        grey = QBrush(QColor(150, 150, 150))
        first_image = None
        for row, info in enumerate(self.series):
            localizer = bool(getattr(info, "is_localizer", False))
            tooltip = series_tooltip(info)
            for col, text in enumerate(series_row(info)):
                item = QTableWidgetItem(text)
                item.setToolTip(tooltip)
                if col in (0, 3):
                    item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                if localizer:
                    item.setForeground(grey)
                self.table.setItem(row, col, item)
            if not localizer and first_image is None:
                first_image = row
        if first_image is not None:
            self.table.selectRow(first_image)
        n_loc = sum(bool(getattr(s, "is_localizer", False)) for s in self.series)
        text = f"{len(self.series)} series in {self._folder}"
        if n_loc:
            text += f" ({n_loc} localizer{'s' if n_loc > 1 else ''}, greyed)"
        self.status.setText(text + "." if self.series else f"No DICOM series in {self._folder}.")
        self._done(job)  # idle before telling listeners (the worker's `finished` comes later)
        self.indexed.emit(self.series)

    def _on_error(self, job: Job, error: BaseException) -> None:
        from napari_medseg._napari.notifications import notify_error
        from napari_medseg.errors import Cancelled

        if isinstance(error, Cancelled) and job.cancel.is_set():
            self.status.setText("Scan cancelled." if job.kind == "scan" else "Load cancelled.")
            self._done(job)
            self.cancelled.emit(job.kind)
            return
        notify_error(error)
        self.status.setText(str(error))
        self._done(job)
        self.failed.emit(str(error))

    # ---------------------------------------------------------------- loading
    def _on_double_click(self, *_: Any) -> None:
        self.load_selected()

    def load_selected(self) -> None:
        """Read the selected series in a worker and add each as an image layer."""
        rows = self.selected_rows()
        if self._slot.busy or not rows:
            return
        self.load_series([self.series[r] for r in rows])

    def load_series(self, series: Sequence[Any]) -> None:
        """Read ``series`` (``SeriesInfo`` objects) in a worker; add layers as they come."""
        if self._slot.busy:
            return
        series = list(series)
        job = LoadJob()
        self.status.setText(f"Loading {len(series)} series ...")
        self._slot.start(
            job,
            partial(_read_series_iter, series, job.cancel),
            yielded=self._on_series_read,
            errored=self._on_error,
            finished=self._on_loaded,
            bar_total=len(series),
        )
        self._update_buttons()

    def cancel(self) -> None:
        """Stop the running scan or load (layers already added stay)."""
        if self._slot.cancel():
            self.status.setText("Cancelling ...")

    def _on_series_read(self, job: LoadJob, item: tuple[Any, Any, BaseException | None]) -> None:
        from napari.layers import Layer

        from napari_medseg._napari.layers import layer_warnings, volume_to_layer_data
        from napari_medseg._napari.notifications import notify_error, notify_warnings

        series, volume, error = item
        if error is not None:
            notify_error(error)
            return
        data = volume_to_layer_data(volume)
        layer = self.viewer.add_layer(Layer.create(*data))
        notify_warnings(layer_warnings(data), context=layer.name)
        job.added.append(layer)
        self.status.setText(f"Loaded {layer.name}.")

    def _on_loaded(self, job: LoadJob) -> None:
        added = list(job.added)
        text = f"Loaded {len(added)} layer{'s' if len(added) != 1 else ''}"
        self.status.setText(text + (" (cancelled)." if job.cancel.is_set() else "."))
        self._done(job)
        if job.cancel.is_set():
            self.cancelled.emit(job.kind)
        self.loaded.emit(added)


def _read_series_iter(series: Sequence[Any], cancel: threading.Event):
    """Worker body: read each series; yield ``(series, volume, None)`` or the error.

    Gaps do not stop a read: missing slices are filled and reported as warnings.
    Setting ``cancel`` stops between (and inside) series.
    """
    from napari_medseg.errors import Cancelled, MedsegError
    from napari_medseg.io.dicom import read_dicom_series

    for info in series:
        if cancel.is_set():
            return
        try:
            yield info, read_dicom_series(info, cancel=cancel, allow_gaps=True), None
        except Cancelled:
            return
        except MedsegError as error:
            yield info, None, error
