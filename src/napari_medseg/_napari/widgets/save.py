"""Save widget: a labels layer as NIfTI on its scan's grid, DICOM SEG, RTSTRUCT, .seg.nrrd.

Every button saves through :func:`napari_medseg.io.save.save_segmentation`, the save
path of ``medseg segment`` and the demo, handing it the layer on the voxel grid of the
scan it was drawn on (:func:`napari_medseg._napari.layer_volume.layer_volume`: the
geometry napari's own writer works out), its classes (the layer's features) and its
model (``metadata["medseg"]["model"]``, marked ``edited_by_hand`` once corrected).

*Save NIfTI* writes the labels NIfTI (atomic, refuses source scans) plus the JSON
sidecar ``medseg report`` reads (class names and colours, the model).

*Save DICOM SEG* and *Save RTSTRUCT* are offered when the layer lies on a scan read
from DICOM (its own metadata, or an open DICOM image layer on the same patient grid,
in any voxel order: a NIfTI label map of the series counts): both reference that
series' images. *Save .seg.nrrd* writes a 3D Slicer segmentation (any scan).

Every write runs in a napari worker on a copy of the layer data taken when the
button is pressed, so the viewer stays responsive. A successful write of any kind
marks the layer saved (each holds every label value); when the layer was edited
while the file was written, it stays marked, since the newer edits are not in the
file.

Default names sit next to the scan: ``ct.nii.gz`` -> ``ct_<layer>.nii.gz`` in the
same folder; a DICOM folder ``series/`` -> ``series_<layer>.nii.gz`` beside the
folder; the other files take the NIfTI name with ``_seg.dcm``, ``_rt.dcm`` and
``.seg.nrrd``. When that folder is not for the user's files (a bundled sample's,
or one that cannot be written) they go to :func:`fallback_folder`
(``~/medseg-output``) instead, and the widget says so. The names and the *Replace
existing file* tick belong to the layer they were set for: another layer gets its
own names back (its defaults the first time) and the tick cleared. An existing file
is only replaced when *Replace existing file* is ticked; a source scan never is.
"""

from __future__ import annotations

import logging
import os
import weakref
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
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from napari_medseg._napari.jobs import Job, JobSlot
from napari_medseg._napari.widgets.layer_combo import LayerCombo, is_volume_layer
from napari_medseg._napari.widgets.scroll import scroll_body
from napari_medseg.io.atomic import safe_name
from napari_medseg.io.nifti import NIFTI_PAIR_SUFFIXES, NIFTI_SUFFIXES

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

#: Suffix of the default DICOM SEG name (after the NIfTI name's stem).
SEG_SUFFIX = "_seg.dcm"
#: Suffix of the default RT Structure Set name.
RTSTRUCT_SUFFIX = "_rt.dcm"
#: Suffix of the default 3D Slicer segmentation name.
SEG_NRRD_SUFFIX = ".seg.nrrd"
#: Folder (below the home folder) of default names when the scan's folder is not for
#: the user's files.
FALLBACK_FOLDER = "medseg-output"


# ------------------------------------------------------------------ file names
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


def sibling_path(nifti_path: str, suffix: str) -> str:
    """The name of another file of a save: the NIfTI name's stem + ``suffix``.

    ``sibling_path("x.nii.gz", "_rt.dcm")`` -> ``"x_rt.dcm"``; "" for "".
    """
    if not nifti_path:
        return ""
    path = Path(nifti_path)
    return str(path.with_name(_strip_nifti(path.name) + suffix))


def seg_path_for(nifti_path: str) -> str:
    """The DICOM SEG name that goes with a NIfTI name (``x.nii.gz`` -> ``x_seg.dcm``)."""
    return sibling_path(nifti_path, SEG_SUFFIX)


def fallback_folder() -> Path:
    """Where default names go when the scan's folder is not for the user's files:
    ``~/medseg-output`` (made when the first file is saved there)."""
    return Path.home() / FALLBACK_FOLDER


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def is_sample(path: str | os.PathLike) -> bool:
    """Whether ``path`` is (in) one of the bundled sample folders (``sample_scans/``)."""
    from napari_medseg.samples import sample_dirs

    return bool(path) and any(_inside(Path(path), folder) for folder in sample_dirs())


def _writable_folder(folder: Path) -> bool:
    """Whether files can be made in ``folder`` (or, when it is still to be made, the
    nearest existing folder above it)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def user_default(path: Path, source: str) -> tuple[Path, str]:
    """``path``, or its name in :func:`fallback_folder` when its folder is not the user's.

    Parameters
    ----------
    path : pathlib.Path
        A default output name next to the scan (see :func:`default_nifti_path`).
    source : str
        The scan (a bundled sample's folder is never written into by default).

    Returns
    -------
    path : pathlib.Path
        Where the default name goes.
    why : str
        Why it moved ("" when it did not), for the user.
    """
    folder = path.parent
    if is_sample(source) or is_sample(path):
        why = f"the scan is a bundled sample; {folder} is not for your files"
    elif not _writable_folder(folder):
        why = f"{folder} cannot be written"
    else:
        return path, ""
    return fallback_folder() / path.name, why


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
    DICOM image layer of the viewer on the same patient grid supplies the series
    when the layer's own source is not DICOM (e.g. labels read from a NIfTI file
    drawn on that series). The grids are matched by geometry, not by stored voxel
    order: a NIfTI conversion of a series usually stores its voxels along other axes
    or in the other direction, and still lies on the series' grid. Default names
    follow an image layer on the same grid.
    """
    from napari_medseg._napari.layer_volume import LayerGeometryError, layer_volume
    from napari_medseg._napari.layer_volume import same_patient_grid as same_grid
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

    save_segmentation(**options, exists_message=EXISTS_MESSAGE)
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
    kind : {"nifti", "seg", "rtstruct", "seg_nrrd"}
    layer : napari.layers.Labels
        The layer written.
    path : str
        The file written (a NIfTI file, with its sidecar beside it, a DICOM SEG, an
        RT Structure Set or a ``.seg.nrrd``).
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
        if self.kind == "nifti":
            from napari_medseg._napari.app_events import app_events

            app_events().labels_saved.emit(path)
        if not self.current:
            notify_warning(
                f"{name} was edited while {path} was written; those edits are not in the file."
            )


@dataclass(frozen=True)
class SaveFormat:
    """One kind of file the widget writes.

    Attributes
    ----------
    kind : str
        ``"nifti"``, ``"seg"``, ``"rtstruct"`` or ``"seg_nrrd"`` (``saved``'s first value).
    target : str
        The :class:`~napari_medseg.io.save.SaveTargets` field it fills.
    row : str
        The label of its file-name row.
    button : str
        The text of its Save button.
    what : str
        What the file is, in messages.
    suffix : str
        Its default name: the NIfTI name's stem + ``suffix`` ("" for the NIfTI itself).
    dialog : str
        The file dialog's filter.
    needs_series : bool
        Only for labels on a DICOM series (the file references its images).
    tooltip : str
        What the button writes.
    """

    kind: str
    target: str
    row: str
    button: str
    what: str
    suffix: str
    dialog: str
    needs_series: bool
    tooltip: str


#: The files the widget writes, in the order of their rows.
FORMATS = (
    SaveFormat(
        "nifti",
        "labels",
        "NIfTI",
        "Save NIfTI",
        "NIfTI file",
        "",
        "NIfTI (*.nii.gz *.nii)",
        False,
        "Labels on the scan's voxel grid, with a .json of names",
    ),
    SaveFormat(
        "seg",
        "dicom_seg",
        "DICOM SEG",
        "Save DICOM SEG",
        "DICOM SEG",
        SEG_SUFFIX,
        "DICOM (*.dcm)",
        True,
        "A DICOM SEG that references the scan's DICOM series",
    ),
    SaveFormat(
        "rtstruct",
        "rtstruct",
        "RTSTRUCT",
        "Save RTSTRUCT",
        "RT Structure Set",
        RTSTRUCT_SUFFIX,
        "DICOM (*.dcm)",
        True,
        "An RT Structure Set (contours) that references the scan's DICOM series",
    ),
    SaveFormat(
        "seg_nrrd",
        "seg_nrrd",
        "Slicer",
        "Save .seg.nrrd",
        "Slicer segmentation",
        SEG_NRRD_SUFFIX,
        "3D Slicer segmentation (*.seg.nrrd)",
        False,
        "A 3D Slicer segmentation (.seg.nrrd) on the scan's voxel grid",
    ),
)
_FORMAT = {f.kind: f for f in FORMATS}


@dataclass
class _LayerNames:
    """What the user set for one layer: the text of each name field and the default
    each field held last (a field still holding its default follows the layer)."""

    texts: dict[str, str]
    defaults: dict[str, str]


class SaveWidget(QWidget):
    """Dock widget that saves a labels layer as NIfTI, DICOM SEG, RTSTRUCT and .seg.nrrd.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose labels layers are saved (napari passes it by this name).

    Attributes
    ----------
    edits, buttons : dict
        The file-name field and the Save button of each kind (see :data:`FORMATS`);
        ``nifti_edit``, ``seg_edit``, ``rt_edit``, ``nrrd_edit`` and ``save_button``,
        ``seg_button``, ``rt_button``, ``nrrd_button`` name them too.
    folder_note : QLabel
        Says where default names go when not next to the scan, and why (shown while
        the NIfTI field holds its default name).

    Signals
    -------
    saved(str, str)
        ``(kind, path)`` once a file is written; kind as :attr:`SaveFormat.kind`.
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
        #: the default each field held last ("" for none)
        self._defaults = {f.kind: "" for f in FORMATS}
        #: layer -> the names set for it (while it is not the layer shown)
        self._names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._shown: Any = None  # the layer whose names the fields hold

        self.layer_combo = LayerCombo(napari_viewer, is_volume_layer("labels"), self)
        self.layer_combo.setToolTip("The labels layer to save")
        self.edits: dict[str, QLineEdit] = {}
        self.browse_buttons: dict[str, QPushButton] = {}
        self.buttons: dict[str, QPushButton] = {}
        for fmt in FORMATS:
            edit = QLineEdit(self)
            edit.setPlaceholderText(f"labels{fmt.suffix or '.nii.gz'}")
            browse = QPushButton("Browse...", self)
            browse.clicked.connect(partial(self._browse, fmt.kind))
            button = QPushButton(fmt.button, self)
            button.setToolTip(fmt.tooltip)
            button.clicked.connect(partial(self.save, fmt.kind))
            self.edits[fmt.kind], self.browse_buttons[fmt.kind] = edit, browse
            self.buttons[fmt.kind] = button
        self.nifti_edit, self.seg_edit = self.edits["nifti"], self.edits["seg"]
        self.rt_edit, self.nrrd_edit = self.edits["rtstruct"], self.edits["seg_nrrd"]
        self.nifti_browse, self.seg_browse = (
            self.browse_buttons["nifti"],
            self.browse_buttons["seg"],
        )
        self.save_button, self.seg_button = self.buttons["nifti"], self.buttons["seg"]
        self.rt_button, self.nrrd_button = self.buttons["rtstruct"], self.buttons["seg_nrrd"]
        self.nifti_edit.textChanged.connect(self._follow_nifti)
        self.replace_check = QCheckBox("Replace existing file", self)
        self.replace_check.setToolTip(
            "Without it, a file that exists is never replaced (cleared when another "
            "layer is chosen)"
        )
        self.folder_note = QLabel("", self)
        self.folder_note.setWordWrap(True)
        self.folder_note.setVisible(False)
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
        for fmt in FORMATS:
            row = QHBoxLayout()
            row.addWidget(self.edits[fmt.kind], 1)
            row.addWidget(self.browse_buttons[fmt.kind])
            form.addRow(fmt.row, row)
        buttons = QGridLayout()
        for index, fmt in enumerate(FORMATS):
            buttons.addWidget(self.buttons[fmt.kind], index // 2, index % 2)
        layout = scroll_body(self)  # scrolls in a short dock: the window fits a laptop
        layout.addLayout(form)
        layout.addWidget(self.folder_note)
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

    def _switch_names(self, layer: Any) -> None:
        """Keep the fields' names with the layer they were set for; show ``layer``'s.

        A layer chosen for the first time gets empty fields (filled with its defaults
        next); the *Replace existing file* tick is cleared either way.
        """
        if self._shown is not None:
            self._names[self._shown] = _LayerNames(
                {kind: edit.text() for kind, edit in self.edits.items()}, dict(self._defaults)
            )
        remembered = self._names.get(layer) if layer is not None else None
        if remembered is None:
            remembered = _LayerNames({}, {})
        for kind, edit in self.edits.items():
            edit.blockSignals(True)  # no following while the fields are swapped
            try:
                edit.setText(remembered.texts.get(kind, ""))
            finally:
                edit.blockSignals(False)
            self._defaults[kind] = remembered.defaults.get(kind, "")
        self.replace_check.setChecked(False)
        self._shown = layer

    def _on_layer_changed(self, layer: Any) -> None:
        from napari_medseg._napari.edit_state import base_name

        if not self._alive():
            return
        if layer is not self._shown:
            self._switch_names(layer)
        self.scan = scan_of(self.viewer, layer) if layer is not None else ScanInfo()
        default, why = None, ""
        if layer is not None:
            default = default_nifti_path(self.scan.source, self.scan.format, base_name(layer))
        if default is not None:
            default, why = user_default(default, self.scan.source)
        self.folder_note.setText(
            f"Default folder: {default.parent} ({why})." if default is not None and why else ""
        )
        text = str(default) if default is not None else ""
        if self.nifti_edit.text() in ("", self._defaults["nifti"]):
            self._defaults["nifti"] = text
            self.nifti_edit.setText(text)
        self._follow_nifti(self.nifti_edit.text())
        self._update_buttons()
        self._update_status()

    def _follow_nifti(self, text: str) -> None:
        """The other names follow the NIfTI name while they hold their default; the
        note on the default folder shows while the NIfTI name is the default."""
        default = self._defaults["nifti"]
        self.folder_note.setVisible(bool(self.folder_note.text()) and text == default != "")
        for fmt in FORMATS[1:]:
            edit = self.edits[fmt.kind]
            if edit.text() in ("", self._defaults[fmt.kind]):
                self._defaults[fmt.kind] = sibling_path(text.strip(), fmt.suffix)
                edit.setText(self._defaults[fmt.kind])

    def _update_buttons(self) -> None:
        layer = self.layer()
        idle = not self.busy
        has_series = bool(self.scan.dicom_files)
        for fmt in FORMATS:
            offered = layer is not None and (has_series or not fmt.needs_series)
            self.buttons[fmt.kind].setEnabled(idle and offered)
            self.buttons[fmt.kind].setToolTip(
                fmt.tooltip
                if has_series or not fmt.needs_series
                else f"Only for labels on a scan read from DICOM ({fmt.what} references "
                "its images): open the DICOM series the labels lie on"
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
    def _browse(self, kind: str) -> None:
        fmt, edit = _FORMAT[kind], self.edits[kind]
        path, _ = QFileDialog.getSaveFileName(
            self, f"Save labels as {fmt.what}", edit.text(), fmt.dialog
        )
        if path:
            edit.setText(path)

    # ------------------------------------------------------------------ saving
    def _refuse(self, message: str) -> None:
        from napari_medseg._napari.notifications import notify_error

        notify_error(message)
        self.status.setText(message)
        self.failed.emit(message)

    def _save_in_worker(self, fmt: SaveFormat, path: str) -> None:
        """Start writing the chosen layer to ``path`` as ``fmt`` in a worker.

        Refused first (a notification, the status line, ``failed``): an empty name, a
        bad NIfTI name, a source scan, an existing file without the tick, a layer that
        cannot be placed on its scan.
        """
        from napari_medseg._napari.edit_state import edit_count
        from napari_medseg.errors import MedsegError
        from napari_medseg.io.save import SaveTargets, check_targets

        if not path:
            self._refuse(f"Choose a file name for the {fmt.what}.")
            return
        layer = self.layer()
        chosen = SaveTargets(**{fmt.target: path})
        overwrite = self.replace_check.isChecked()
        try:
            check_targets(
                chosen, self.scan.protect, overwrite=overwrite, exists_message=EXISTS_MESSAGE
            )
            options = _save_options(layer, self.scan)
        except MedsegError as error:  # LayerGeometryError is one
            self._refuse(str(error))
            return
        if fmt.needs_series:
            options["warnings"] = []  # the file references the series: its geometry is theirs
        job = SaveJob(kind=fmt.kind, layer=layer, path=path, edits=edit_count(layer))
        self._slot.start(
            job,
            partial(_save, path, targets=chosen, overwrite=overwrite, **options),
            returned=self._on_returned,
            errored=self._on_errored,
        )
        self.status.setText(f"Writing {fmt.what} {path} ...")
        self._update_buttons()

    def save(self, kind: str) -> None:
        """Write the chosen layer as ``kind`` (see :data:`FORMATS`) in a worker."""
        fmt = _FORMAT[kind]
        layer = self.layer()
        if layer is None or self.busy:
            return
        if self.scan.problem:
            self._refuse(self.scan.problem)
            return
        if fmt.needs_series and not self.scan.dicom_files:
            self._refuse(
                f"{layer.name}: not on a scan read from DICOM; no {fmt.what} to write. "
                "Open the DICOM series the labels lie on."
            )
            return
        self._save_in_worker(fmt, self.edits[kind].text().strip())

    def save_nifti(self) -> None:
        """Write the chosen layer as NIfTI (and its .json sidecar) in a worker."""
        self.save("nifti")

    def save_seg(self) -> None:
        """Write the chosen layer as a DICOM SEG referencing its DICOM series, in a worker."""
        self.save("seg")

    def save_rtstruct(self) -> None:
        """Write the chosen layer as an RT Structure Set referencing its DICOM series."""
        self.save("rtstruct")

    def save_seg_nrrd(self) -> None:
        """Write the chosen layer as a 3D Slicer segmentation (``.seg.nrrd``)."""
        self.save("seg_nrrd")

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


__all__ = [
    "FORMATS",
    "RTSTRUCT_SUFFIX",
    "SEG_NRRD_SUFFIX",
    "SEG_SUFFIX",
    "SaveFormat",
    "SaveWidget",
    "ScanInfo",
    "default_nifti_path",
    "fallback_folder",
    "is_sample",
    "safe_name",
    "scan_of",
    "sibling_path",
    "user_default",
]
