"""Save widget: a labels layer as NIfTI on its scan's grid, and as DICOM SEG.

Both buttons save through :func:`napari_medseg.io.save.save_segmentation`, the save
path of ``medseg segment`` and the demo, handing it the layer on the voxel grid of the
scan it was drawn on (:func:`napari_medseg._napari.layer_volume.layer_volume`: the
geometry napari's own writer works out), its classes (the layer's features) and its
model (``metadata["medseg"]["model"]``, marked ``edited_by_hand`` once corrected).

*Save NIfTI* writes the labels NIfTI (atomic, refuses source scans) plus the JSON
sidecar ``medseg report`` reads (class names and colours, the model).

*Save DICOM SEG* is offered when the layer lies on a scan read from DICOM (its own
metadata, or an open DICOM image layer on the same voxel grid): the SEG references
that series' images.

Both writes run in a napari worker on a copy of the layer data taken when the
button is pressed, so the viewer stays responsive. A successful write of either
kind marks the layer saved (a SEG holds every label value too); when the layer was
edited while the file was written, it stays marked, since the newer edits are not
in the file.

Default names sit next to the scan: ``ct.nii.gz`` -> ``ct_<layer>.nii.gz`` in the
same folder; a DICOM folder ``series/`` -> ``series_<layer>.nii.gz`` beside the
folder; the SEG gets the NIfTI name with ``_seg.dcm``. An existing file is only
replaced when *Replace existing file* is ticked; a source scan never is.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_medseg._napari.jobs import Job, JobSlot
from napari_medseg._napari.widgets.layer_combo import LayerCombo, is_volume_layer
from napari_medseg.io.nifti import NIFTI_PAIR_SUFFIXES, NIFTI_SUFFIXES

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

#: Suffix of the default DICOM SEG name (after the NIfTI name's stem).
SEG_SUFFIX = "_seg.dcm"


# ------------------------------------------------------------------ file names
def safe_name(text: str) -> str:
    """``text`` as a file-name part: runs of other than letters, digits, ``._-`` -> ``_``.

    ``"chest CT (DICOM) - Labels"`` -> ``"chest_CT_DICOM-Labels"``.
    """
    cleaned = re.sub(r"[^\w.-]+", "_", str(text), flags=re.ASCII)
    cleaned = re.sub(r"_*-[-_]*", "-", cleaned).strip("._-")
    return cleaned or "labels"


def _strip_nifti(name: str) -> str:
    lower = name.lower()
    for suffix in sorted(NIFTI_SUFFIXES + NIFTI_PAIR_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def default_nifti_path(source: str, fmt: str, layer_name: str) -> Path | None:
    """Default NIfTI file for a labels layer named ``layer_name`` drawn on ``source``.

    Parameters
    ----------
    source : str
        The scan: a NIfTI file, or a DICOM folder (or a file in it, or a DICOMDIR).
    fmt : {"nifti", "dicom"}
        How the scan was stored.
    layer_name : str
        The layer's name (without the unsaved marker).

    Returns
    -------
    pathlib.Path or None
        ``<scan stem>_<layer>.nii.gz`` next to a NIfTI scan, ``<folder>_<layer>.nii.gz``
        next to a DICOM folder; None without a source.
    """
    if not source:
        return None
    path = Path(source)
    if fmt == "dicom":
        folder = path if path.is_dir() else path.parent
        return folder.parent / f"{safe_name(folder.name)}_{safe_name(layer_name)}.nii.gz"
    return path.parent / f"{safe_name(_strip_nifti(path.name))}_{safe_name(layer_name)}.nii.gz"


def seg_path_for(nifti_path: str) -> str:
    """The DICOM SEG name that goes with a NIfTI name (``x.nii.gz`` -> ``x_seg.dcm``)."""
    if not nifti_path:
        return ""
    path = Path(nifti_path)
    return str(path.with_name(_strip_nifti(path.name) + SEG_SUFFIX))


# ------------------------------------------------------------------ the scan of a layer
@dataclass
class ScanInfo:
    """What a labels layer is saved against.

    Attributes
    ----------
    source : str
        The scan the default names are made from ("" when unknown).
    format : str
        ``"nifti"``, ``"dicom"`` or ``""``.
    dicom_files : list of str
        Files of the DICOM series the layer lies on (empty: no DICOM SEG).
    protect : list of str
        Files that must never be written over (the scans and their files).
    problem : str
        Why the layer cannot be placed on a scan (empty when it can).
    """

    source: str = ""
    format: str = ""
    dicom_files: list[str] = field(default_factory=list)
    protect: list[str] = field(default_factory=list)
    problem: str = ""


def scan_of(viewer: Any, layer: Any) -> ScanInfo:
    """The scan a labels layer lies on, and the DICOM series it can reference.

    The layer's own metadata first (labels made on a scan carry its source); a
    DICOM image layer of the viewer on the same voxel grid supplies the series
    when the layer's own source is not DICOM (e.g. labels read from a NIfTI file
    drawn on that series); default names follow an image layer on the same grid.
    """
    from napari_medseg._napari.layer_volume import LayerGeometryError, layer_volume
    from napari_medseg._napari.layer_volume import same_source_grid as same_grid
    from napari_medseg._napari.writer import protected_sources

    try:
        own = layer_volume(layer)
    except LayerGeometryError as error:
        return ScanInfo(problem=str(error))
    medseg = own.medseg
    images = []
    for other in viewer.layers:
        if other is layer or not is_volume_layer("image")(other):
            continue
        try:
            candidate = layer_volume(other)
        except LayerGeometryError:
            continue
        if candidate.medseg.get("source") and same_grid(own, candidate):
            images.append(candidate.medseg)
    scan = medseg
    if not (medseg.get("format") == "dicom" and medseg.get("files")):
        same_source = [m for m in images if m.get("source") == medseg.get("source")]
        dicom = [m for m in images if m.get("format") == "dicom" and m.get("files")]
        scan = (same_source or dicom or images or [medseg])[0]
    series = (
        scan
        if scan.get("format") == "dicom"
        else next((m for m in images if m.get("format") == "dicom" and m.get("files")), {})
    )
    files = [str(f) for f in series.get("files", []) or []]
    # the scans (never a labels file the layer was read from: saving edits back is fine)
    protect = set(protected_sources(medseg, "labels"))
    protect.update(str(m["source"]) for m in images)
    protect.update(files)
    return ScanInfo(
        source=str(scan.get("source", "") or ""),
        format=str(scan.get("format", "") or ""),
        dicom_files=files,
        protect=sorted(protect),
    )


# ------------------------------------------------------------------ writing
#: How the widget refuses an existing file (see ``io.save.check_targets``).
EXISTS_MESSAGE = (
    "{path}: exists already; it is not replaced. Tick 'Replace existing file' to replace "
    "it, or choose another name."
)


def _save(path: str, warnings: list[str], **options: Any) -> str:
    """:func:`napari_medseg.io.save.save_segmentation` in a worker; returns ``path``.

    ``warnings`` (how the layer's geometry was found, e.g. a scan moved in the viewer)
    are shown once the file is written, as napari's own writer shows them.
    """
    from napari_medseg._napari.notifications import notify_warnings
    from napari_medseg.io.save import save_segmentation

    save_segmentation(**options)
    if warnings:
        notify_warnings(warnings, context=os.path.basename(path))
    return path


def _save_options(layer: Any, scan: ScanInfo) -> dict[str, Any]:
    """What :func:`napari_medseg.io.save.save_segmentation` gets for ``layer``, taken now.

    The layer on its source scan's grid (:func:`layer_volume`, the geometry napari's
    writer works out too) with its voxels copied, so edits made while the worker
    writes do not reach the file half-way; its classes and model; the files never to
    write over; the NIfTI header text napari's writer gives labels; and the notes on
    how the geometry was found (``warnings``).

    Raises
    ------
    LayerGeometryError
        The layer is not a 3D labels volume that can be placed on a scan.
    """
    from napari_medseg._napari.label_classes import layer_classes
    from napari_medseg._napari.layer_volume import layer_volume
    from napari_medseg._napari.writer import header_description, protected_sources
    from napari_medseg.volume import Volume

    found = layer_volume(layer)
    on_grid = found.volume
    return {
        "labels": Volume(np.array(on_grid.array), on_grid.affine.copy(), on_grid.metadata),
        "classes": dict(sorted(layer_classes(layer).items())),
        "model": _model(layer),
        "source": scan.source,
        "protect": sorted({*scan.protect, *protected_sources(found.medseg, "labels")}),
        "dicom_files": list(scan.dicom_files),
        "description": header_description(found.medseg, "labels"),
        "warnings": list(found.warnings),
    }


def _model(layer: Any) -> Any:
    """``metadata["medseg"]["model"]`` of the layer (None for hand-drawn labels).

    A model output edited by hand since gets ``"edited_by_hand": True`` added (in the
    copy returned), so sidecars and DICOM SEG files do not pass it off as the model's.
    """
    from napari_medseg._napari.edit_state import edited_since_model
    from napari_medseg._napari.layers import MEDSEG_KEY

    model = ((layer.metadata or {}).get(MEDSEG_KEY) or {}).get("model")
    if isinstance(model, dict) and edited_since_model(layer):
        return {**model, "edited_by_hand": True}
    return model


@dataclass(eq=False, kw_only=True)
class SaveJob(Job):
    """Writing one file of a labels layer.

    Attributes
    ----------
    kind : {"nifti", "seg"}
    layer : napari.layers.Labels
        The layer written.
    path : str
        The file written (a NIfTI file, with its sidecar beside it, or a DICOM SEG).
    edits : int
        The layer's edit count when its data was copied for the worker.
    current : bool
        Set when the file is written: whether the layer was not edited meanwhile.
    """

    layer: Any
    path: str
    edits: int
    current: bool = True

    def stop(self) -> None:
        """A save is not stopped when its widget goes: the file is written in full
        either way, and :meth:`end` must still record it on the layer."""

    def end(self) -> None:
        """Mark the layer saved and tell the user, even when the widget is gone."""
        from napari_medseg._napari.edit_state import base_name, mark_saved
        from napari_medseg._napari.notifications import notify_error, notify_info, notify_warning

        if self.error is not None:
            notify_error(self.error, context=self.path)
            return
        if self.result is None:  # napari quit the worker: nothing was written
            return
        path = str(self.result)
        self.current = mark_saved(self.layer, path, edits=self.edits)
        name = base_name(self.layer)
        notify_info(f"saved {name} to {path}")
        if not self.current:
            notify_warning(
                f"{name} was edited while {path} was written; those edits are not in the file."
            )


class SaveWidget(QWidget):
    """Dock widget that saves a labels layer as NIfTI and as DICOM SEG.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose labels layers are saved (napari passes it by this name).

    Signals
    -------
    saved(str, str)
        ``(kind, path)`` once a file is written; kind is ``"nifti"`` or ``"seg"``.
    failed(str)
        The error message when a save was refused or failed.
    """

    saved = Signal(str, str)
    failed = Signal(str)

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._slot = JobSlot(self, napari_viewer)
        self.scan = ScanInfo()
        self._auto_nifti = ""
        self._auto_seg = ""

        self.layer_combo = LayerCombo(napari_viewer, is_volume_layer("labels"), self)
        self.layer_combo.setToolTip("The labels layer to save")
        self.nifti_edit = QLineEdit(self)
        self.nifti_edit.setPlaceholderText("labels.nii.gz")
        self.nifti_edit.textChanged.connect(self._on_nifti_text)
        self.nifti_browse = QPushButton("Browse...", self)
        self.nifti_browse.clicked.connect(self._browse_nifti)
        self.seg_edit = QLineEdit(self)
        self.seg_edit.setPlaceholderText("labels_seg.dcm")
        self.seg_browse = QPushButton("Browse...", self)
        self.seg_browse.clicked.connect(self._browse_seg)
        self.replace_check = QCheckBox("Replace existing file", self)
        self.replace_check.setToolTip("Without it, a file that exists is never replaced")
        self.save_button = QPushButton("Save NIfTI", self)
        self.save_button.setToolTip("Labels on the scan's voxel grid, with a .json of names")
        self.save_button.clicked.connect(self.save_nifti)
        self.seg_button = QPushButton("Save DICOM SEG", self)
        self.seg_button.clicked.connect(self.save_seg)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self._layout()

        self.layer_combo.layer_changed.connect(self._on_layer_changed)
        events = napari_viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layers_changed)
        events.renamed.connect(self._on_renamed)
        self._on_layers_changed()
        self._on_layer_changed(self.layer_combo.layer())

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("Labels", self.layer_combo)
        nifti_row = QHBoxLayout()
        nifti_row.addWidget(self.nifti_edit, 1)
        nifti_row.addWidget(self.nifti_browse)
        form.addRow("NIfTI", nifti_row)
        seg_row = QHBoxLayout()
        seg_row.addWidget(self.seg_edit, 1)
        seg_row.addWidget(self.seg_browse)
        form.addRow("DICOM SEG", seg_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.seg_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.replace_check)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch(1)

    # ------------------------------------------------------------------ state
    def layer(self) -> Any:
        """The chosen labels layer, or None."""
        return self.layer_combo.layer()

    @property
    def busy(self) -> bool:
        """Whether a file is being written."""
        return self._slot.busy

    def _alive(self) -> bool:
        """Whether the widget (and its viewer) still exist to be updated."""
        return self._slot.owner_alive()

    def _on_layers_changed(self, *_: Any) -> None:
        from napari.layers import Labels

        from napari_medseg._napari.edit_state import track_edits

        if not self._alive():
            return
        for layer in self.viewer.layers:
            if isinstance(layer, Labels):
                track_edits(layer)
        self._on_layer_changed(self.layer())  # an image on its grid may have come or gone

    def _on_renamed(self, *_: Any) -> None:
        if self._alive():  # the default file names follow the layer's name
            self._on_layer_changed(self.layer())

    def _on_layer_changed(self, layer: Any) -> None:
        from napari_medseg._napari.edit_state import base_name

        if not self._alive():
            return
        self.scan = scan_of(self.viewer, layer) if layer is not None else ScanInfo()
        default = None
        if layer is not None:
            default = default_nifti_path(self.scan.source, self.scan.format, base_name(layer))
        text = str(default) if default is not None else ""
        if self.nifti_edit.text() in ("", self._auto_nifti):
            self._auto_nifti = text
            self.nifti_edit.setText(text)
        self._update_buttons()
        self._update_status()

    def _on_nifti_text(self, text: str) -> None:
        if self.seg_edit.text() in ("", self._auto_seg):
            self._auto_seg = seg_path_for(text.strip())
            self.seg_edit.setText(self._auto_seg)

    def _update_buttons(self) -> None:
        layer = self.layer()
        idle = not self.busy
        self.save_button.setEnabled(idle and layer is not None)
        has_series = bool(self.scan.dicom_files)
        self.seg_button.setEnabled(idle and layer is not None and has_series)
        self.seg_button.setToolTip(
            "A DICOM SEG that references the scan's DICOM series"
            if has_series
            else "Only for labels on a scan read from DICOM"
        )

    def _update_status(self) -> None:
        from napari_medseg._napari.edit_state import is_modified, saved_path

        layer = self.layer()
        if self.busy:
            return  # the job's own message stays until it ends
        if layer is None:
            self.status.setText("No labels layer.")
        elif self.scan.problem:
            self.status.setText(self.scan.problem)
        elif is_modified(layer):
            last = saved_path(layer)
            self.status.setText("Unsaved edits" + (f" (last saved to {last})." if last else "."))
        elif saved_path(layer):
            self.status.setText(f"Saved to {saved_path(layer)}.")
        else:
            self.status.setText("No unsaved edits.")

    # ------------------------------------------------------------------ browsing
    def _browse_nifti(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save labels as NIfTI", self.nifti_edit.text(), "NIfTI (*.nii.gz *.nii)"
        )
        if path:
            self.nifti_edit.setText(path)

    def _browse_seg(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save labels as DICOM SEG", self.seg_edit.text(), "DICOM (*.dcm)"
        )
        if path:
            self.seg_edit.setText(path)

    # ------------------------------------------------------------------ saving
    def _refuse(self, message: str) -> None:
        from napari_medseg._napari.notifications import notify_error

        notify_error(message)
        self.status.setText(message)
        self.failed.emit(message)

    def _save_in_worker(self, kind: str, what: str, path: str, **targets: str) -> None:
        """Start writing the chosen layer to ``SaveTargets(**targets)`` in a worker.

        Refused first (a notification, the status line, ``failed``): an empty name, a
        bad NIfTI name, a source scan, an existing file without the tick, a layer that
        cannot be placed on its scan.
        """
        from napari_medseg._napari.edit_state import edit_count
        from napari_medseg.errors import MedsegError
        from napari_medseg.io.save import SaveTargets, check_targets

        if not path:
            self._refuse(f"Choose a file name for the {what}.")
            return
        layer = self.layer()
        chosen = SaveTargets(**targets)
        overwrite = self.replace_check.isChecked()
        try:
            check_targets(
                chosen, self.scan.protect, overwrite=overwrite, exists_message=EXISTS_MESSAGE
            )
            options = _save_options(layer, self.scan)
        except MedsegError as error:  # LayerGeometryError is one
            self._refuse(str(error))
            return
        if kind == "seg":
            options["warnings"] = []  # the notes on the geometry go with the NIfTI file only
        job = SaveJob(kind=kind, layer=layer, path=path, edits=edit_count(layer))
        self._slot.start(
            job,
            partial(_save, path, targets=chosen, overwrite=overwrite, **options),
            returned=self._on_returned,
            errored=self._on_errored,
        )
        what = "NIfTI" if kind == "nifti" else "DICOM SEG"
        self.status.setText(f"Writing {what} {path} ...")
        self._update_buttons()

    def save_nifti(self) -> None:
        """Write the chosen layer as NIfTI (and its .json sidecar) in a worker."""
        if self.layer() is None or self.busy:
            return
        if self.scan.problem:
            self._refuse(self.scan.problem)
            return
        path = self.nifti_edit.text().strip()
        self._save_in_worker("nifti", "NIfTI file", path, labels=path)

    def save_seg(self) -> None:
        """Write the chosen layer as a DICOM SEG referencing its DICOM series, in a worker."""
        layer = self.layer()
        if layer is None or self.busy:
            return
        if not self.scan.dicom_files:
            self._refuse(f"{layer.name}: not on a scan read from DICOM; no DICOM SEG to write.")
            return
        path = self.seg_edit.text().strip()
        self._save_in_worker("seg", "DICOM SEG", path, dicom_seg=path)

    def _done(self, job: SaveJob) -> None:
        """The slot is free again: buttons back on."""
        self._slot.release(job)
        self._update_buttons()

    def _on_returned(self, job: SaveJob, written: Any) -> None:
        # SaveJob.end marked the layer saved and told the user
        self._done(job)
        self._update_status()
        self.saved.emit(job.kind, str(written))

    def _on_errored(self, job: SaveJob, error: BaseException) -> None:
        # SaveJob.end showed the error
        self._done(job)
        self.status.setText(f"Not saved: {error}")
        self.failed.emit(str(error))


__all__ = ["SEG_SUFFIX", "SaveWidget", "ScanInfo", "default_nifti_path", "safe_name", "scan_of"]
