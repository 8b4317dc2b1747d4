"""Interactive dock: segment one object from clicks, boxes, lassos and scribbles.

The user picks the scan (image layer), where the result goes (a labels layer on the
scan's grid, or a new one), the label value and the method (backend). The dock adds
three prompt layers on the scan's grid (:mod:`~napari_medseg._napari.prompt_layers`):
*clicks* (Points: a click on the object is positive, green; with ``N`` pressed once,
clicks are negative, red), *boxes* (Shapes: a rectangle around the object, a polygon
or lasso around it or around a part to cut) and *scribbles* (Labels: brush strokes,
label 1 on the object, 2 off it). ``N`` on any of them, or the polarity button,
toggles positive/negative.

Every change of the prompts updates the mask in a worker
(:class:`~napari_medseg._napari.jobs.JobSlot`; the viewer never waits): the session
(:class:`~napari_medseg.interactive.session.PromptSession`) gets the new prompt, or
takes back the ones removed, and the mask shows at once in a preview layer drawn in
the colour of the chosen label of the target layer. A prompt given while an update
runs waits for it, and the next update goes straight to the prompts as they are then
(the latest wins). The status line says how long each update took. Cancel stops the
running update and takes back the prompts it had not applied.

Undo takes the newest prompt back (and its point, shape or stroke off its layer),
Reset takes them all back, and Accept writes the mask into the target label as ONE
undo step (:func:`~napari_medseg._napari.label_edit.apply_mask_edit`: locked labels
keep their voxels, other labels are overwritten only when the layer's *preserve
labels* is off), adds it to what the label held, selects the target layer (so Ctrl+Z
undoes the accept) and clears the prompts for the next object.

The preview is a layer of its own rather than voxels written into the target while
the user prompts: the target's undo history, its unsaved marker, the live report
and a save in the meantime see only accepted results, never a half-made mask.

Prompts are world millimetres (RAS+) of the voxel the user pointed at: see
:mod:`~napari_medseg._napari.prompt_layers` for how napari's scale and affine are
taken into account.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_medseg._napari.interactive_job import (
    Engine,
    UpdateJob,
    UpdateResult,
    update_session,
)
from napari_medseg._napari.jobs import JobSlot
from napari_medseg._napari.prompt_layers import (
    BOXES,
    CLICKS,
    PREVIEW,
    SCRIBBLES,
    PromptLayers,
    preview_colormap,
)
from napari_medseg._napari.widgets.layer_combo import LayerCombo, is_volume_layer
from napari_medseg._napari.widgets.scroll import scroll_body
from napari_medseg.errors import Cancelled, MedsegError
from napari_medseg.interactive.backends import backend_entry

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

#: What the status line says while there is nothing to show.
HINT = (
    "Click on the object (layer '{name} clicks'); N toggles negative clicks. "
    "Boxes, lassos and scribbles work too."
)


class InteractiveWidget(QWidget):
    """Dock widget for prompt-based segmentation (see the module docstring).

    Parameters
    ----------
    napari_viewer : napari.Viewer

    Signals
    -------
    updated(object)
        The :class:`~napari_medseg._napari.interactive_job.UpdateResult` the preview
        now shows.
    accepted(object, int)
        The target layer and the number of voxels Accept changed.
    failed(str)
        An error message (also a notification).
    cancelled()
        An update was cancelled; the prompts it had not applied were taken back.
    """

    updated = Signal(object)
    accepted = Signal(object, int)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._slot = JobSlot(self, napari_viewer)
        self._image: Any = None
        self._source: Any = None  # LayerVolume of the image
        self._engine: Engine | None = None
        self._layers: PromptLayers | None = None
        self._preview: Any = None
        self._mask: np.ndarray | None = None  # the mask the preview shows (source grid)
        self._pending = False
        self._user_cancel = False
        self._warned: set[str] = set()

        self._build()
        self.image_combo.layer_changed.connect(self._on_image)
        self.target_combo.layer_changed.connect(self._on_target)
        self.value_spin.valueChanged.connect(self._recolour_preview)
        self.backend_combo.currentIndexChanged.connect(self._on_backend)
        self.checkpoint_edit.editingFinished.connect(self._on_backend)
        self._on_backend()
        self._on_image(self.image_combo.layer())
        self._on_target(self.target_combo.layer())

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        from napari_medseg.interactive.backends import DEFAULT_BACKEND, backend_names

        layout = scroll_body(self)

        inputs = QGroupBox("Scan and result", self)
        form = QFormLayout(inputs)
        self.image_combo = LayerCombo(self.viewer, is_volume_layer("image"), inputs)
        self.image_combo.setToolTip("The 3D scan to prompt on")
        self.target_combo = LayerCombo(
            self.viewer, is_volume_layer("labels"), inputs, none_text="New layer"
        )
        self.target_combo.setToolTip(
            "Where Accept writes the object: a labels layer on the scan's grid, or a new one"
        )
        self.value_spin = QSpinBox(inputs)
        self.value_spin.setRange(1, 255)
        self.value_spin.setToolTip("The label value Accept gives the object")
        form.addRow("Image", self.image_combo)
        form.addRow("Labels", self.target_combo)
        form.addRow("Label", self.value_spin)
        layout.addWidget(inputs)

        method = QGroupBox("Method", self)
        method_layout = QVBoxLayout(method)
        self.backend_combo = QComboBox(method)
        names = backend_names()
        for name, title in names.items():
            self.backend_combo.addItem(title, name)
            self.backend_combo.setItemData(
                self.backend_combo.count() - 1, f"{name}: {title}", Qt.ItemDataRole.ToolTipRole
            )
        self.backend_combo.setCurrentIndex(max(0, self.backend_combo.findData(DEFAULT_BACKEND)))
        self.method_info = QLabel(method)
        self.method_info.setWordWrap(True)
        self.checkpoint_row = QWidget(method)
        row = QHBoxLayout(self.checkpoint_row)
        row.setContentsMargins(0, 0, 0, 0)
        self.checkpoint_edit = QLineEdit(self.checkpoint_row)
        self.checkpoint_edit.setPlaceholderText("checkpoint file or model folder")
        self.checkpoint_edit.setToolTip("The weights this method runs (you give them)")
        browse = QPushButton("...", self.checkpoint_row)
        browse.setFixedWidth(32)
        browse.setToolTip("Choose the checkpoint file (Shift-click: a folder)")
        browse.clicked.connect(self._browse_checkpoint)
        row.addWidget(QLabel("Checkpoint", self.checkpoint_row))
        row.addWidget(self.checkpoint_edit, 1)
        self.trust_check = QCheckBox("Trust this bundle", method)
        self.trust_check.setToolTip(
            "A MONAI bundle's config runs Python code: tick only for a bundle from a source "
            "you trust"
        )
        self.trust_check.toggled.connect(self._on_backend)
        row.addWidget(browse)
        method_layout.addWidget(self.backend_combo)
        method_layout.addWidget(self.method_info)
        method_layout.addWidget(self.checkpoint_row)
        method_layout.addWidget(self.trust_check)
        layout.addWidget(method)

        prompts = QGroupBox("Prompts", self)
        grid = QGridLayout(prompts)
        self.polarity_button = QPushButton("Positive (N toggles)", prompts)
        self.polarity_button.setCheckable(True)
        self.polarity_button.setToolTip(
            "Positive: the object is here. Negative: it is not. Key N on a prompt layer "
            "toggles it too."
        )
        self.polarity_button.toggled.connect(self._on_polarity_button)
        grid.addWidget(self.polarity_button, 0, 0, 1, 4)
        self.tool_buttons = {}
        for column, (text, role, mode, tip) in enumerate(
            (
                ("Click", CLICKS, "add", "Click on the object (points layer)"),
                ("Box", BOXES, "add_rectangle", "Draw a box around the object"),
                ("Lasso", BOXES, "add_polygon_lasso", "Draw a lasso around the object"),
                ("Scribble", SCRIBBLES, "paint", "Paint strokes on the object"),
            )
        ):
            button = QPushButton(text, prompts)
            button.setToolTip(tip)
            button.clicked.connect(partial(self._activate, role, mode))
            grid.addWidget(button, 1, column)
            self.tool_buttons[text] = button
        layout.addWidget(prompts)
        layout.addStretch(1)

        # the buttons and what the last update did stay in sight below the scrolling part
        footer = QVBoxLayout()
        footer.setContentsMargins(9, 0, 9, 9)
        buttons = QHBoxLayout()
        self.undo_button = QPushButton("Undo", self)
        self.undo_button.setToolTip("Take the newest prompt back")
        self.undo_button.clicked.connect(self.undo)
        self.reset_button = QPushButton("Reset", self)
        self.reset_button.setToolTip("Take every prompt back")
        self.reset_button.clicked.connect(self.reset)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop the running update; its new prompts are taken back")
        self.cancel_button.clicked.connect(self.cancel)
        self.accept_button = QPushButton("Accept", self)
        self.accept_button.setToolTip(
            "Write the object into the label (one undo step: Ctrl+Z on the labels layer)"
        )
        self.accept_button.clicked.connect(self.accept)
        for button in (self.undo_button, self.reset_button, self.cancel_button, self.accept_button):
            buttons.addWidget(button)
        footer.addLayout(buttons)
        self.timing = QLabel("", self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        footer.addWidget(self.timing)
        footer.addWidget(self.status)
        self.layout().addLayout(footer)
        self._update_state()

    def _update_state(self) -> None:
        busy = self._slot.busy
        self.cancel_button.setEnabled(busy)
        self.accept_button.setEnabled(
            not busy and not self._pending and self._mask is not None and bool(self._mask.any())
        )
        has_prompts = bool(self._layers is not None and self._layers.items)
        self.undo_button.setEnabled(has_prompts)
        self.reset_button.setEnabled(has_prompts or busy)

    # ------------------------------------------------------------------ choices
    @property
    def backend(self) -> str:
        """The chosen backend's name."""
        return str(self.backend_combo.currentData() or "")

    def set_backend(self, name: str, checkpoint: str | None = None) -> None:
        """Choose backend ``name`` (and its checkpoint) as the combo and field would."""
        index = self.backend_combo.findData(name)
        if index < 0:
            raise KeyError(f"{name!r} is not an interactive method")
        self.checkpoint_edit.setText(checkpoint or "")
        if index == self.backend_combo.currentIndex():
            self._on_backend()
        else:
            self.backend_combo.setCurrentIndex(index)

    @property
    def checkpoint(self) -> str | None:
        """The checkpoint path, when the chosen backend needs one and it is given."""
        if not backend_entry(self.backend).needs_checkpoint:
            return None
        return self.checkpoint_edit.text().strip() or None

    @property
    def trusted(self) -> bool:
        """The user ticked "Trust this bundle" for a backend whose checkpoint runs code."""
        return backend_entry(self.backend).needs_trust and self.trust_check.isChecked()

    def _browse_checkpoint(self) -> None:
        from qtpy.QtWidgets import QApplication

        if QApplication.keyboardModifiers() & Qt.KeyboardModifier.ShiftModifier:
            path = QFileDialog.getExistingDirectory(self, "Model folder")
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", "", "All files (*)")
        if path:
            self.checkpoint_edit.setText(path)
            self._on_backend()

    def _on_backend(self, *_: Any) -> None:
        from napari_medseg._napari.notifications import notify_warning

        info = backend_entry(self.backend)
        self.checkpoint_row.setVisible(info.needs_checkpoint)
        self.trust_check.setVisible(info.needs_trust)
        lines = []
        if info.licence:
            lines.append(f"Weights: {info.licence}.")
        if info.needs_checkpoint:
            lines.append("Runs weights you give: their licence applies.")
        else:
            lines.append("Needs no weights.")
        if info.non_commercial:
            lines.append("Non-commercial use only.")
            if info.name not in self._warned:  # once per method, before its first use
                self._warned.add(info.name)
                licence = info.licence or "non-commercially"
                notify_warning(
                    f"the {info.name} method runs weights licensed {licence}: "
                    "non-commercial use only.",
                    context="Interactive",
                )
        self.method_info.setText(" ".join(lines))
        self.method_info.setStyleSheet("color: #f0a030;" if info.non_commercial else "")
        if self._source is not None:
            key = (info.name, self.checkpoint, self.trusted)
            if self._engine is None or self._engine.key != key:
                self._new_engine()
                self._schedule()

    def _new_engine(self) -> None:
        """A fresh engine for the scan and the chosen backend (the old one is freed)."""
        old, self._engine = self._engine, None
        if old is not None:
            job = self._slot.job
            if isinstance(job, UpdateJob) and job.engine is old:
                job.retire = True  # freed when its worker ends
                self._slot.invalidate()  # its result is for the old engine
            else:
                old.close()
        if self._source is not None:
            self._engine = Engine(
                self._source.volume, self.backend, self.checkpoint, self.trusted
            )

    def _on_target(self, layer: Any) -> None:
        if layer is not None:
            dtype = np.dtype(layer.data.dtype)
            high = np.iinfo(dtype).max if dtype.kind in "iu" else 2**31 - 1
            self.value_spin.setMaximum(int(min(high, 2**31 - 1)))
            if int(layer.selected_label) > 0:
                self.value_spin.setValue(int(layer.selected_label))
        else:
            self.value_spin.setMaximum(65535)
        self._recolour_preview()

    def _label_colour(self) -> tuple[float, ...]:
        value = int(self.value_spin.value())
        target = self.target_combo.layer()
        if target is not None:
            colour = np.asarray(target.get_color(value), dtype=float).ravel()
        else:  # the colour a new labels layer gives the value
            from napari.layers import Labels

            colour = np.asarray(
                Labels(np.zeros((1, 1, 1), dtype=np.uint8)).get_color(value), dtype=float
            ).ravel()
        colour = colour[:4] if colour.size >= 4 else np.r_[colour[:3], 1.0]
        colour[3] = 1.0
        return tuple(float(c) for c in colour)

    def _recolour_preview(self, *_: Any) -> None:
        if self._preview is not None:
            self._preview.colormap = preview_colormap(self._label_colour())

    # ------------------------------------------------------------------ image
    def _on_image(self, layer: Any) -> None:
        """Prompts live on one scan: another scan gets its own prompt layers."""
        from napari_medseg._napari.layer_volume import layer_volume
        from napari_medseg._napari.notifications import notify_warnings

        if layer is self._image and self._layers is not None:
            return
        self._drop_scan()
        self._image = layer
        if layer is None:
            self.status.setText("Open a scan to prompt on.")
            return
        try:
            self._source = layer_volume(layer)
        except MedsegError as error:
            self._source = None
            self.status.setText(str(error))
            return
        notify_warnings(self._source.warnings, context=layer.name)
        self._make_preview()
        self._layers = PromptLayers(
            self.viewer, layer, self._source.geometry.display_affine, self._on_prompts
        )
        self._layers.on_toggle(self._on_polarity)
        self._layers.ensure()
        self._layers.activate(CLICKS, "add")
        self._new_engine()
        self.status.setText(HINT.format(name=layer.name))
        self._update_state()

    def _drop_scan(self) -> None:
        if self._slot.busy:
            self._slot.invalidate()
            self._slot.cancel()
        self._pending = False
        if self._layers is not None:
            self._layers.remove_layers()
            self._layers = None
        if self._preview is not None and self._preview in self.viewer.layers:
            self.viewer.layers.remove(self._preview)
        self._preview = None
        self._mask = None
        self._source = None
        old, self._engine = self._engine, None
        if old is not None:
            job = self._slot.job
            if isinstance(job, UpdateJob) and job.engine is old:
                job.retire = True
            else:
                old.close()

    def _make_preview(self) -> None:
        from napari.layers import Labels

        from napari_medseg._napari.prompt_layers import _grid_kwargs

        image = self._image
        layer = Labels(
            np.zeros(tuple(image.data.shape), dtype=np.uint8),
            opacity=0.6,
            **_grid_kwargs(image, PREVIEW, f"{image.name} preview"),
        )
        layer.colormap = preview_colormap(self._label_colour())
        layer.editable = False
        self.viewer.add_layer(layer)
        self._preview = layer

    def _show(self, mask: np.ndarray | None) -> None:
        """Show ``mask`` (source grid) in the preview layer."""
        self._mask = mask
        if self._preview is None or self._source is None:
            return
        if mask is None:
            mask = np.zeros(self._source.volume.shape, dtype=bool)
        self._preview.data = self._source.geometry.to_display(mask.view(np.uint8))

    # ------------------------------------------------------------------ prompts
    @property
    def prompt_layers(self) -> PromptLayers | None:
        """The prompt layers of the current scan."""
        return self._layers

    def _activate(self, role: str, mode: str, *_: Any) -> None:
        if self._layers is not None:
            self._layers.activate(role, mode)

    def _on_polarity_button(self, checked: bool) -> None:
        if self._layers is not None:
            self._layers.positive = not checked
        self._on_polarity(not checked)

    def _on_polarity(self, positive: bool) -> None:
        self.polarity_button.blockSignals(True)
        self.polarity_button.setChecked(not positive)
        self.polarity_button.setText("Positive (N toggles)" if positive else "Negative (N toggles)")
        self.polarity_button.blockSignals(False)

    def _on_prompts(self) -> None:
        """The prompt layers changed: check the new prompts, then update."""
        from napari_medseg._napari.notifications import notify_error
        from napari_medseg.interactive.prompts import PromptError, to_voxels

        layers, source = self._layers, self._source
        if layers is None or source is None or not self._slot.owner_alive():
            return  # (the dock is gone: its prompt layers stay, inert)
        for item in list(layers.items):
            try:
                to_voxels(item.prompt, source.volume.affine, source.volume.shape)
            except PromptError as error:
                notify_error(error, context="Interactive")
                self.status.setText(str(error))
                layers.remove(item)  # (calls this again with the rest)
                return
        self._schedule()
        self._update_state()

    # ------------------------------------------------------------------ updates
    def _schedule(self) -> None:
        """Start an update to the prompts as they are now, unless one runs (then after it)."""
        engine, layers = self._engine, self._layers
        if engine is None or layers is None:
            return
        if self._slot.busy:
            self._pending = True
            self._update_state()
            return
        self._pending = False
        wanted = layers.prompts()
        applied = engine.applied()
        if not wanted:  # no backend call: forget the prompts here (nothing runs now)
            if engine.session is not None and applied:
                engine.session.reset()
            self._show(None)
            self._update_state()
            return
        if [id(p) for p in wanted] == [id(p) for p in applied]:  # the same prompt objects
            self._update_state()
            return
        if backend_entry(engine.backend_name).needs_checkpoint and not engine.checkpoint:
            self.status.setText(
                f"The {engine.backend_name} method runs weights you give: choose its "
                "checkpoint first."
            )
            return
        job = UpdateJob(kind="interactive", engine=engine, wanted=wanted)
        self._slot.start(
            job,
            partial(update_session, engine, wanted, job.cancel),
            returned=self._on_returned,
            errored=self._on_errored,
            finished=self._on_finished,
        )
        self.status.setText(f"Updating ({len(wanted)} prompt{'s' * (len(wanted) != 1)}) ...")
        self._update_state()

    def _on_returned(self, job: UpdateJob, result: UpdateResult) -> None:
        from napari_medseg._napari.notifications import notify_warning

        self._slot.release(job)
        if job.engine is not self._engine:
            self._schedule()
            return
        self._show(result.mask)
        self.timing.setText(f"updated in {result.seconds:.2f} s")
        spacing = np.asarray(self._source.volume.spacing, dtype=float)
        voxels = int(np.count_nonzero(result.mask))
        volume_ml = voxels * float(np.prod(spacing)) / 1000.0
        self.status.setText(
            f"{result.prompts} prompt{'s' * (result.prompts != 1)}: {voxels} voxels "
            f"({volume_ml:.3g} mL). Accept writes them into label {self.value_spin.value()}."
        )
        if result.non_commercial and self.backend not in self._warned:
            # the weights' own licence file said so (not known before they loaded)
            self._warned.add(self.backend)
            notify_warning(
                f"the {self.backend} weights are licensed {result.licence or 'non-commercially'}: "
                "non-commercial use only.",
                context="Interactive",
            )
        self.updated.emit(result)
        self._schedule()  # prompts given meanwhile
        self._update_state()

    def _on_errored(self, job: UpdateJob, error: BaseException) -> None:
        from napari_medseg._napari.notifications import notify_error

        self._slot.release(job)
        current = job.engine is self._engine
        if isinstance(error, Cancelled) and job.cancel.is_set():
            if current and self._layers is not None:
                self._show(job.engine.session.mask if job.engine.session is not None else None)
                if self._user_cancel:
                    # the prompts not applied are taken back off their layers
                    self._layers.keep_first(len(job.engine.applied()))
            if self._user_cancel:
                self._user_cancel = False
                self._pending = False
                self.status.setText("Cancelled: the prompts not applied were taken back.")
                self.cancelled.emit()
            else:
                self._schedule()
            self._update_state()
            return
        self._pending = False
        notify_error(error, context="Interactive")
        self.status.setText(str(error))
        if current and job.engine.session is not None:
            self._show(job.engine.session.mask)
        self.failed.emit(str(error))
        self._update_state()

    def _on_finished(self, job: UpdateJob) -> None:
        """The worker ended with its result unwanted (the scan or method changed)."""
        self._schedule()
        self._update_state()

    # ------------------------------------------------------------------ buttons
    @property
    def busy(self) -> bool:
        """Whether an update is running."""
        return self._slot.busy

    def undo(self) -> None:
        """Take the newest prompt back (off its layer too)."""
        if self._layers is not None:
            self._layers.remove_last()
        self._update_state()

    def reset(self) -> None:
        """Take every prompt back; the preview empties."""
        if self._slot.busy:
            self._slot.cancel()  # its result is not wanted: the update after it resets
        if self._layers is not None:
            self._layers.clear()
        self._update_state()

    def cancel(self) -> None:
        """Stop the running update; the prompts it had not applied are taken back."""
        if self._slot.cancel():
            self._user_cancel = True
            self._pending = False
            self.status.setText("Cancelling ...")

    def accept(self) -> None:
        """Write the preview into the target label as one undo step; clear the prompts."""
        from napari.layers import Layer

        from napari_medseg._napari.edit_state import track_edits
        from napari_medseg._napari.label_edit import apply_mask_edit, select_edited_layer
        from napari_medseg._napari.layer_volume import layer_volume
        from napari_medseg._napari.layers import labels_like
        from napari_medseg._napari.notifications import notify_error
        from napari_medseg._napari.segment_job import check_same_grid
        from napari_medseg.labels.editing import bounding_box

        if self._slot.busy or self._pending:
            self.status.setText("An update is running: wait for it (or Cancel) to accept.")
            return
        mask, image, source = self._mask, self._image, self._source
        if mask is None or source is None or not mask.any():
            self.status.setText("Nothing to accept: the mask is empty.")
            return
        value = int(self.value_spin.value())
        try:
            target = self.target_combo.layer()
            if target is None:
                dtype = np.uint8 if value < 256 else np.uint16
                target = Layer.create(
                    *labels_like(image, name=f"{image.name} interactive", dtype=dtype)
                )
                target.selected_label = value  # (the combo follows the layer's label)
                self.viewer.add_layer(target)
                self.target_combo.set_layer(target)
            else:
                check_same_grid(target, layer_volume(target), image, source)
            display = source.geometry.to_display(mask)
            region = bounding_box(display)
            new = (np.asarray(target.data[region]) == value) | display[region]
            track_edits(target)
            changed = apply_mask_edit(target, value, new, region=region)
        except (MedsegError, ValueError) as error:
            notify_error(error, context="Interactive: Accept")
            self.status.setText(str(error))
            self.failed.emit(str(error))
            return
        select_edited_layer(self.viewer, target)  # Ctrl+Z acts on the selected layer
        volume_ml = changed * float(np.prod(source.volume.spacing)) / 1000.0
        self.status.setText(
            f"Accepted: {changed} voxels ({volume_ml:.3g} mL) into label {value} of "
            f"'{target.name}' (Ctrl+Z undoes it)."
        )
        if self._layers is not None:
            self._layers.clear()  # the next object starts from no prompt
        self._show(None)
        self.accepted.emit(target, changed)
        self._update_state()


__all__ = ["InteractiveWidget"]
