"""Segment dock widget: run a MONAI model on an image layer, get a labels layer.

The user picks the image layer (and more channel layers when the model takes
several), the model (catalogue, a MONAI bundle or nnU-Net v2 model folder, a
TorchScript file), the device
and the sliding-window options, and where the result goes: a new labels layer, or
an existing one on the same voxel grid (replaced in one undoable step).

Run hands the layers to the core as volumes on their source grid
(:func:`~napari_medseg._napari.layer_volume.layer_volume`) and runs
:class:`~napari_medseg.inference.segmenter.Segmenter` in a napari worker; the model loads
there too, so building the widget never imports torch. The dock shows the run
itself, below its scrolling choices: a busy bar while the model loads ("Loading
model ...") and the scan is brought onto the model's grid ("Preparing ..."), then the
network calls done of all, and Cancel; napari's activity dock has the same bar with
its own Cancel. A cancelled run adds and replaces nothing. A run that replaced a
labels layer selects it, so Ctrl+Z (which acts on the selected layer) restores it. The
loaded model is kept for the next run with the same settings
(:class:`~napari_medseg._napari.segment_job.SegmenterCache`).
Closing the viewer (or the widget) mid-run cancels the run and drops its result.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_medseg._napari.app_events import app_events
from napari_medseg._napari.jobs import JobSlot
from napari_medseg._napari.segment_job import (
    SegmenterCache,
    SegmentJob,
    device_choices,
    is_cancelled,
    probe_devices,
)
from napari_medseg._napari.widgets.layer_combo import LayerCombo, is_volume_layer
from napari_medseg._napari.widgets.model_combo import TRUST_TEXT, ModelCombo
from napari_medseg._napari.widgets.scroll import scrolled_with_footer
from napari_medseg.errors import MedsegError
from napari_medseg.inference.settings import SegmentSettings
from napari_medseg.models.describe import ModelChoice, describe_model

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

#: Model combo entries that open a dialog instead of naming a model.
BUNDLE_ITEM = "Bundle folder..."
FILE_ITEM = "TorchScript file..."

#: What the folder entry takes.
FOLDER_TIP = (
    "A MONAI bundle folder (configs/metadata.json), or an nnU-Net v2 model folder "
    "(<Trainer>__<Plans>__<configuration> with dataset.json, plans.json and "
    "fold_N/checkpoint_final.pth; all folds are averaged, a fold_N folder runs alone)"
)

#: File dialog filter for model files.
MODEL_FILE_FILTER = "Models (*.ts *.pt *.pth *.torchscript *.jit *.json);;All files (*)"


class DeviceCombo(QComboBox):
    """Device choice; CUDA/MPS are listed once torch is imported (first popup or run)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._probed = False
        self.set_choices(device_choices())

    def set_choices(self, names: list[str]) -> None:
        """List ``names``, keeping the current choice when it is among them."""
        current = self.currentText() or "auto"
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        self.setCurrentIndex(max(0, self.findText(current)))
        self.blockSignals(False)

    def showPopup(self) -> None:
        if not self._probed:
            self._probed = True
            self.set_choices(probe_devices())
        super().showPopup()


class SegmentWidget(QWidget):
    """Dock widget that segments a 3D image layer with a model.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose layers are segmented (napari passes it by this name).

    Signals
    -------
    segmented(object)
        The labels layer added or replaced, once a run finished.
    failed(str)
        The error message when a run could not start or failed.
    cancelled()
        A run stopped because of Cancel; nothing was added or replaced.
    """

    segmented = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.segmenter_cache = SegmenterCache()
        self._slot = JobSlot(self, napari_viewer)
        self._choice = ModelChoice("", "file", error="no model chosen")

        # input
        self.image_combo = LayerCombo(napari_viewer, is_volume_layer("image"), self)
        self.image_combo.setToolTip("The 3D image layer to segment (the model's first channel)")
        self.channel_form = QFormLayout()
        self.channel_combos: list[LayerCombo] = []

        # model
        self.model_combo = ModelCombo(self)
        self._fill_models()
        app_events().model_published.connect(self.refresh_models)
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        self.model_info = QLabel(self)
        self.model_info.setWordWrap(True)
        self.trust_check = QCheckBox(TRUST_TEXT, self)
        self.trust_check.setToolTip(
            "MONAI bundle configs run Python code when they are loaded. Tick only for "
            "bundles from a source you trust. Catalogue bundles are hash-checked instead."
        )

        # options
        self.device_combo = DeviceCombo(self)
        self.device_combo.setToolTip("auto: CUDA, then Apple MPS, then the CPU")
        self.overlap_spin = QDoubleSpinBox(self)
        self.overlap_spin.setRange(-0.05, 0.95)
        self.overlap_spin.setSingleStep(0.05)
        self.overlap_spin.setDecimals(2)
        self.overlap_spin.setSpecialValueText("model's")
        self.overlap_spin.setToolTip("Sliding-window overlap, 0 to 0.95 (fraction of a window)")
        self.batch_spin = QSpinBox(self)
        self.batch_spin.setRange(0, 64)
        self.batch_spin.setSpecialValueText("model's")
        self.batch_spin.setToolTip("Windows per network call (more: faster, more memory)")
        self.amp_check = QCheckBox("Mixed precision (float16 / bfloat16)", self)
        self.amp_check.setChecked(True)
        self.amp_check.setToolTip(
            "float16 on CUDA; bfloat16 on a CPU that computes it natively (AMX, "
            "AVX512-BF16), float32 on other CPUs. The status line says which ran."
        )
        self.tta_check = QCheckBox("Test-time augmentation (flips; slower)", self)

        # output
        self.output_combo = LayerCombo(
            napari_viewer, is_volume_layer("labels"), self, none_text="New layer"
        )
        self.output_combo.setToolTip(
            "Add a new labels layer, or replace the voxels of a labels layer on the same "
            "voxel grid (undo with Ctrl+Z)"
        )

        self.run_button = QPushButton("Run", self)
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop the run: nothing is added or replaced")
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar = QProgressBar(self)
        self.progress_bar.setToolTip(
            "Busy while the model loads and the scan is prepared; then the network calls "
            "done of all (window batches x test-time flips)"
        )
        self.status = QLabel("", self)
        self.status.setWordWrap(True)

        self._layout()
        self._on_model_changed()

    def _layout(self) -> None:
        inputs = QGroupBox("Input", self)
        form = QFormLayout(inputs)
        form.addRow("Image", self.image_combo)
        form.addRow(self.channel_form)

        model = QGroupBox("Model", self)
        model_layout = QVBoxLayout(model)
        model_layout.addWidget(self.model_combo)
        model_layout.addWidget(self.model_info)
        model_layout.addWidget(self.trust_check)

        self.options = QGroupBox("Options", self)
        options = QFormLayout(self.options)
        options.addRow("Device", self.device_combo)
        options.addRow("Overlap", self.overlap_spin)
        options.addRow("Window batch", self.batch_spin)
        options.addRow(self.amp_check)
        options.addRow(self.tta_check)

        output = QGroupBox("Output", self)
        QFormLayout(output).addRow("Labels", self.output_combo)

        # the choices scroll; Run, the run's progress, Cancel and the status stay in sight
        self._inputs = (inputs, model, self.options, output)
        scrolled_with_footer(
            self,
            list(self._inputs),
            [self.run_button, self.cancel_button],
            [self.progress_bar, self.status],
        )
        self._update_state()

    # ------------------------------------------------------------------ models
    def _fill_models(self) -> None:
        self.refresh_models()
        self.model_combo.add_chooser(
            BUNDLE_ITEM, "MONAI bundle or nnU-Net folder", tip=FOLDER_TIP
        )
        self.model_combo.add_chooser(FILE_ITEM, "Model file", MODEL_FILE_FILTER)

    def refresh_models(self, *_: Any) -> None:
        """List catalogue models that appeared since the widget was made (a model the
        Train dock published), the default first; the current choice stays."""
        from napari_medseg.models.registry import DEFAULT_MODEL, catalogue

        entries = sorted(catalogue(), key=lambda e: e.name != DEFAULT_MODEL)
        self.model_combo.add_models(
            (e.name, e.title + (f"\n{e.description}" if e.description else "")) for e in entries
        )

    @property
    def model_choice(self) -> ModelChoice:
        """What is known about the chosen model (channels, defaults, trust)."""
        return self._choice

    def set_model(self, name: str) -> None:
        """Choose a catalogue model by name (KeyError when it is not listed)."""
        self.model_combo.select(name)

    def set_model_path(self, path: str | Path) -> None:
        """Choose a model by path (what the two dialogs do): a MONAI bundle folder, an
        nnU-Net v2 model folder, a spec JSON, or a network file (``.ts``, ``.pt``...) with
        its JSON spec beside it."""
        self.model_combo.select_path(path)

    def _on_model_changed(self, *_: Any) -> None:
        ref = self.model_combo.ref
        if not ref:
            return
        previous, self._choice = self._choice, describe_model(ref)
        choice = self._choice
        if choice.ref != previous.ref:
            self.trust_check.setChecked(False)  # trust is given per bundle
        self.trust_check.setVisible(choice.needs_trust)
        self.overlap_spin.setValue(
            choice.overlap if choice.overlap is not None else self.overlap_spin.minimum()
        )
        self.batch_spin.setValue(choice.sw_batch_size or 0)
        channels = (
            f"{choice.in_channels} input channel{'s' if choice.in_channels != 1 else ''}"
            if choice.in_channels
            else "input channels known once loaded"
        )
        self.model_info.setText(
            choice.error or f"{choice.summary} ({channels}). {choice.licence_line}"
        )
        self._set_channel_rows(choice)

    def _set_channel_rows(self, choice: ModelChoice) -> None:
        """One layer combo per input channel after the first."""
        wanted = max(0, (choice.in_channels or 1) - 1)
        while len(self.channel_combos) > wanted:
            self.channel_form.removeRow(self.channel_form.rowCount() - 1)
            self.channel_combos.pop()
        while len(self.channel_combos) < wanted:
            combo = LayerCombo(self.viewer, is_volume_layer("image"), self)
            self.channel_combos.append(combo)
            self.channel_form.addRow(f"Channel {len(self.channel_combos) + 1}", combo)
        names = choice.channel_names
        for position, combo in enumerate(self.channel_combos, start=1):
            label = self.channel_form.labelForField(combo)
            name = names[position] if position < len(names) else ""
            if label is not None:
                label.setText(f"Channel {position + 1}" + (f" ({name})" if name else ""))

    # ---------------------------------------------------------------- settings
    def settings(self) -> SegmentSettings:
        """The settings a run would use now."""
        overlap = self.overlap_spin.value()
        batch = self.batch_spin.value()
        return SegmentSettings(
            model=self._choice.ref,
            device=self.device_combo.currentText() or "auto",
            amp=self.amp_check.isChecked(),
            overlap=None if overlap < 0 else round(float(overlap), 4),
            sw_batch_size=batch or None,
            tta=self.tta_check.isChecked(),
            trust_bundle=self._choice.needs_trust and self.trust_check.isChecked(),
        )

    @property
    def busy(self) -> bool:
        """Whether a segmentation is running."""
        return self._slot.busy

    def _update_state(self) -> None:
        idle = not self._slot.busy
        self.run_button.setEnabled(idle)
        self.cancel_button.setVisible(not idle)
        self.progress_bar.setVisible(not idle)
        for box in self._inputs:
            box.setEnabled(idle)

    def _show_busy(self, text: str) -> None:
        """The bar as a busy indicator (no steps known yet), and what is going on."""
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setFormat(text)
        self.status.setText(text)

    # --------------------------------------------------------------------- run
    def run(self) -> None:
        """Segment the chosen image layer in a napari worker (Cancel stops it)."""
        from napari_medseg._napari.notifications import notify_error

        if self._slot.busy:
            return
        try:
            job, volumes = self._prepare()
        except MedsegError as error:
            notify_error(error)
            self.status.setText(str(error))
            self.failed.emit(str(error))
            return
        self._start(job, volumes)

    def _prepare(self) -> tuple[SegmentJob, list]:
        """Check the choices and build the job; raise a MedsegError saying what is wrong."""
        from napari_medseg._napari.layer_volume import layer_volume
        from napari_medseg._napari.notifications import notify_warnings
        from napari_medseg._napari.segment_job import check_same_grid
        from napari_medseg.models.bundle_config import BundleTrustError

        image = self.image_combo.layer()
        if image is None:
            raise MedsegError("Segment: no 3D image layer to segment; open a scan first.")
        choice = self._choice
        if choice.error:
            raise MedsegError(choice.error)
        if choice.needs_trust and not self.trust_check.isChecked():
            raise BundleTrustError(
                choice.ref,
                "this MONAI bundle is outside the catalogue and its configs run Python code "
                "when it is loaded, so it was not loaded.",
                "If you trust where it came from, tick 'Trust this bundle' and press Run again.",
            )
        layers = [image, *(combo.layer() for combo in self.channel_combos)]
        if any(layer is None for layer in layers):
            raise MedsegError(
                f"model {choice.ref} takes {choice.in_channels} input channels: choose an "
                "image layer for each channel."
            )
        sources = [layer_volume(layer) for layer in layers]
        notify_warnings(sources[0].warnings, context=image.name)
        target = self.output_combo.layer()
        if target is not None:
            check_same_grid(target, layer_volume(target), image, sources[0])
        job = SegmentJob(image=image, source=sources[0], settings=self.settings(), target=target)
        return job, [source.volume for source in sources]

    def _start(self, job: SegmentJob, volumes: list) -> None:
        from napari_medseg._napari.segment_job import (
            PhaseRelay,
            cancelable_bar_class,
            segment_volumes,
        )

        job.bar = cancelable_bar_class()(
            total=0, desc=f"Segmenting {job.image.name}", cancel_callback=job.cancel.set
        )
        job.phases = PhaseRelay()
        job.phases.changed.connect(partial(self._on_phase, job))
        body = partial(
            segment_volumes,
            self.segmenter_cache,
            job.settings,
            volumes,
            job.progress,
            job.cancel,
            job.phase,
        )
        self._slot.start(
            job,
            body,
            returned=self._on_returned,
            errored=self._on_errored,
            progressed=self._on_progress,
            finished=self._on_finished,
        )
        self._update_state()
        self._show_busy(f"Starting: {job.image.name} ...")

    def cancel(self) -> None:
        """Stop the running segmentation; nothing is added or replaced."""
        if self._slot.cancel():
            self._show_busy("Cancelling ...")

    # ------------------------------------------------------- worker callbacks
    # (called by the job slot only while the run's result is wanted: not once the
    # widget is destroyed or the viewer closed; the bar closes when the worker ends)
    def _on_phase(self, job: SegmentJob, name: str) -> None:
        """Loading the model, then preparing the scan: the bar is busy (no steps yet)."""
        from napari_medseg._napari.segment_job import LOADING

        if self._slot.job is not job or job.cancel.is_set() or self.progress_bar.maximum():
            return  # another run, cancelled, or the windows already started
        if name == LOADING:
            self._show_busy(f"Loading model {self.model_combo.currentText()} ...")
        else:
            self._show_busy(f"Preparing {job.image.name} for the model ...")

    def _on_progress(self, job: SegmentJob, done: int, total: int) -> None:
        if job.cancel.is_set():
            return
        if self._slot.job is job:
            self.progress_bar.setRange(0, max(total, 1))
            self.progress_bar.setValue(done)
            self.progress_bar.setFormat("%v/%m network calls")
            self.status.setText(f"Segmenting {job.image.name}: {done}/{total} network calls")
        bar = job.bar
        if bar is None:
            return
        if bar.total != total:
            bar.total = total
        if done > bar.n:
            bar.update(done - bar.n)  # (its repaint processes events: we may be done after)

    def _on_returned(self, job: SegmentJob, result: Any) -> None:
        from napari_medseg._napari.notifications import notify_error, notify_warnings

        if job.cancel.is_set():  # Cancel came after the last window
            self._finish(job, cancelled=True)
            return
        try:
            layer, undoable = self._apply(job, result)
        except Exception as error:  # noqa: BLE001 - shown, and the widget goes idle
            notify_error(error, context=f"segmenting {job.image.name}")
            self._finish(job, error=str(error))
            return
        notify_warnings(result.warnings, context=job.image.name)
        seconds = result.timings_s.get("total", 0.0)
        if layer is not job.target:
            how = "added"
        elif undoable:
            how = "replaced (Ctrl+Z restores it)"
        else:
            how = "replaced (its previous voxels cannot be restored by undo)"
        settings = result.settings
        self.status.setText(
            f"{layer.name}: {how}; {result.model_name} on {settings['device']}, "
            f"{settings['precision']} ({settings['precision_reason']}), {seconds:.1f} s."
        )
        self._finish(job)
        self.segmented.emit(layer)

    def _apply(self, job: SegmentJob, result: Any) -> tuple[Any, bool]:
        """Add the result as a new layer, or put it into the chosen labels layer."""
        from napari.layers import Layer

        from napari_medseg._napari.edit_state import (
            mark_model_output,
            mark_modified,
            track_edits,
        )
        from napari_medseg._napari.label_edit import select_edited_layer
        from napari_medseg._napari.notifications import notify_warning
        from napari_medseg._napari.segment_job import labels_layer_data, replace_labels

        target, undoable = job.target, False
        if target is not None and target in self.viewer.layers:
            dtype = target.data.dtype
            undoable = replace_labels(target, result, job.source)
            layer = target
            select_edited_layer(self.viewer, layer)  # Ctrl+Z acts on the selected layer
            if not undoable:
                notify_warning(
                    f"labels layer {target.name!r} ({dtype}) cannot hold the labels of "
                    f"{result.model_name} ({result.labels.dtype}) as an undoable edit: its "
                    "data was replaced and undo cannot restore the previous voxels."
                )
        else:
            if target is not None:
                notify_warning(
                    f"labels layer {target.name!r} was removed during the run; the result "
                    "is a new layer."
                )
            layer = Layer.create(*labels_layer_data(result, job.image, job.source))
            self.viewer.add_layer(layer)  # (returns napari's public-only proxy of it)
        track_edits(layer)
        mark_modified(layer)
        mark_model_output(layer)
        return layer, undoable

    def _on_errored(self, job: SegmentJob, error: BaseException) -> None:
        from napari_medseg._napari.notifications import notify_error

        if is_cancelled(job, error):
            self._finish(job, cancelled=True)
            return
        notify_error(error, context=f"segmenting {job.image.name}")
        self._finish(job, error=str(error))

    def _on_finished(self, job: SegmentJob) -> None:
        """The worker ended and neither callback took the run (a quit worker): cancelled."""
        self._finish(job, cancelled=True)

    def _finish(self, job: SegmentJob, *, cancelled: bool = False, error: str = "") -> None:
        job.close_bar()
        self._slot.release(job)
        self._update_state()
        self.device_combo.set_choices(device_choices())  # torch is imported by now
        if cancelled:
            self.status.setText("Cancelled: nothing was added or replaced.")
            self.cancelled.emit()
        elif error:
            self.status.setText(error)
            self.failed.emit(error)
