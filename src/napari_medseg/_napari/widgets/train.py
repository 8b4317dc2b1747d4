"""Train dock: fine-tune a model on the label maps corrected and saved in this viewer.

The dock offers the pairs there are: every labels layer saved since the viewer opened
(the Save widget's NIfTI with its sidecar beside the scan it names), refreshed as layers
come and go and by *Refresh*, and those of a folder or CSV added with *Add folder or
CSV...* (a folder of saved corrections, a ``medseg batch`` output folder, or a CSV of
image and labels columns). The ticked pairs, the parent model (the catalogue's trainable
models, a spec file, or a MONAI bundle folder once *Trust this bundle* is ticked) and
the epochs, held-out share (or *Held-out pairs...*: pairs of the user's own to
check the new model on, every ticked pair then training) and learning rate make a
:class:`~napari_medseg.training.settings.FinetuneSettings`; *Start* runs
:func:`~napari_medseg.training.finetune.run_finetune` in a worker (the one job lifecycle,
:mod:`~napari_medseg._napari.jobs`), with a progress bar over the steps, a live plot of
the loss and the validation Dice per epoch, and *Cancel* (the best checkpoint is kept;
*Continue the last unfinished run* resumes it). A model that beats its parent on the
held-out pairs is published into the model library and the Segment widgets list it at
once (:mod:`~napari_medseg._napari.app_events`); otherwise the status says why
nothing was published.
"""

from __future__ import annotations

import hashlib
import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_medseg._napari.app_events import app_events
from napari_medseg._napari.jobs import Job, JobSlot
from napari_medseg._napari.widgets.model_combo import TRUST_TEXT, ModelCombo
from napari_medseg._napari.widgets.scroll import scrolled_with_footer
from napari_medseg._napari.widgets.training_chart import TrainingChart
from napari_medseg.errors import MedsegError

if TYPE_CHECKING:  # pragma: no cover
    import napari

logger = logging.getLogger(__name__)

SPEC_ITEM = "Spec file..."
BUNDLE_ITEM = "MONAI bundle folder..."


class EpochRelay(QObject):
    """Brings each epoch of a run from the worker thread to the main thread."""

    epoch = Signal(object)


def trainable_models() -> list[tuple[str, str]]:
    """``(name, tooltip)`` of the default and user models that can be fine-tuned
    (their specs read, no weights loaded)."""
    from napari_medseg.models.library import library_bundles, library_specs
    from napari_medseg.models.registry import DEFAULT_MODEL, default_specs
    from napari_medseg.training.finetune import not_trainable_reason

    found = []
    for specs in (default_specs(), library_specs()):
        for name, (spec, _) in specs.items():
            if not not_trainable_reason(spec)[0] and name not in {n for n, _ in found}:
                found.append((name, spec.title or name))
    found += [(name, f"fine-tuned MONAI bundle ({folder})") for name, folder in
              library_bundles().items() if name not in {n for n, _ in found}]  # fmt: skip
    return sorted(found, key=lambda item: item[0] != DEFAULT_MODEL)


class TrainWidget(QWidget):
    """Dock widget that fine-tunes a model on corrected label maps.

    Parameters
    ----------
    napari_viewer : napari.Viewer

    Signals
    -------
    published(str)
        The new model's name, when a run published one.
    finished(object)
        The run's :class:`~napari_medseg.training.finetune.FinetuneOutcome`.
    failed(str)
        The error message of a run that could not start or failed.
    """

    published = Signal(str)
    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._slot = JobSlot(self, napari_viewer)
        self._extra: list[Any] = []  # pairs of the folders and CSVs added
        self._relay = EpochRelay(self)
        self._relay.epoch.connect(self._on_epoch)

        self.model_combo = ModelCombo(self, "the list of trainable models")
        self.refresh_models()
        self.model_combo.add_chooser(SPEC_ITEM, "Model spec", "Model spec (*.json)")
        self.model_combo.add_chooser(BUNDLE_ITEM, "MONAI bundle folder")
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        app_events().model_published.connect(self.refresh_models)
        self.trust_check = QCheckBox(TRUST_TEXT, self)
        self.trust_check.setToolTip(
            "A MONAI bundle's configs run Python code when its transforms are built: train "
            "only bundles from a source you trust. Bundles published here are hash-checked."
        )
        self.trust_check.setVisible(False)
        self._needs_trust = False

        self.pairs_list = QListWidget(self)
        self.pairs_list.setToolTip(
            "Ticked pairs are trained on (a share is held out for validation). Labels "
            "saved in this viewer appear here; add a folder or CSV for more."
        )
        self.pairs_list.itemChanged.connect(self._update_state)
        self.add_button = QPushButton("Add folder or CSV...", self)
        self.add_button.clicked.connect(self._browse_data)
        self.refresh_button = QPushButton("Refresh", self)
        self.refresh_button.clicked.connect(self.refresh_pairs)

        self.epochs_spin = QSpinBox(self)
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.setValue(20)
        self.val_spin = QDoubleSpinBox(self)
        self.val_spin.setRange(0.05, 0.9)
        self.val_spin.setSingleStep(0.05)
        self.val_spin.setValue(0.2)
        self.val_spin.setToolTip("Share of the pairs held out to decide whether it got better")
        self.val_data = ""  # a folder or CSV of held-out pairs ("" = hold out a share)
        self.val_data_button = QPushButton("Held-out pairs...", self)
        self.val_data_button.setToolTip(
            "Check the new model on pairs of your own instead of a share of the ticked "
            "ones (all ticked pairs then train): e.g. scans from another site or scanner"
        )
        self.val_data_button.clicked.connect(self._browse_val_data)
        self.val_data_clear = QPushButton("Use a share", self)
        self.val_data_clear.clicked.connect(lambda: self.set_val_data(""))
        self.val_data_label = QLabel("", self)
        self.val_data_label.setWordWrap(True)
        self.lr_spin = QDoubleSpinBox(self)
        self.lr_spin.setDecimals(6)
        self.lr_spin.setRange(1e-6, 1e-1)
        self.lr_spin.setSingleStep(1e-4)
        self.lr_spin.setValue(3e-4)
        self.name_edit = QLineEdit(self)
        self.name_edit.setPlaceholderText("<model>-ft-<date>-<time>")
        self.resume_check = QCheckBox("Continue the last unfinished run", self)

        self.start_button = QPushButton("Start", self)
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar = QProgressBar(self)
        self.chart = TrainingChart(self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self._layout()
        self.viewer.layers.events.inserted.connect(self.refresh_pairs)
        self.viewer.layers.events.removed.connect(self.refresh_pairs)
        app_events().labels_saved.connect(self.refresh_pairs)
        self.refresh_pairs()

    def _layout(self) -> None:
        model = QGroupBox("Model to fine-tune", self)
        model_layout = QVBoxLayout(model)
        model_layout.addWidget(self.model_combo)
        model_layout.addWidget(self.trust_check)
        data = QGroupBox("Corrected label maps", self)
        data_layout = QVBoxLayout(data)
        data_layout.addWidget(self.pairs_list)
        row = QHBoxLayout()
        row.addWidget(self.add_button)
        row.addWidget(self.refresh_button)
        data_layout.addLayout(row)
        options = QGroupBox("Training", self)
        form = QFormLayout(options)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Held out", self.val_spin)
        held_out = QHBoxLayout()
        held_out.addWidget(self.val_data_button)
        held_out.addWidget(self.val_data_clear)
        form.addRow(held_out)
        form.addRow(self.val_data_label)
        form.addRow("Learning rate", self.lr_spin)
        form.addRow("New name", self.name_edit)
        form.addRow(self.resume_check)
        progress = QGroupBox("Loss and held-out Dice per epoch", self)
        QVBoxLayout(progress).addWidget(self.chart)
        scrolled_with_footer(
            self,
            [model, data, options, progress],
            [self.start_button, self.cancel_button],
            [self.progress_bar, self.status],
        )
        self._update_state()

    # ------------------------------------------------------------------ choices
    def refresh_models(self, *_: Any) -> None:
        """List the trainable models, with those published since the dock was made (a
        fine-tuned model can be fine-tuned again); the current choice stays."""
        self.model_combo.add_models(trainable_models())

    def set_model(self, name: str) -> None:
        """Choose a listed model by name (KeyError when it is not listed)."""
        self.model_combo.select(name)

    def set_model_path(self, path: str | Path) -> None:
        """Choose a model by its spec JSON (or network file with its spec) or its MONAI
        bundle folder (which runs only once *Trust this bundle* is ticked)."""
        self.model_combo.select_path(path)

    def _on_model_changed(self, *_: Any) -> None:
        """Show *Trust this bundle* for a bundle that runs its code unchecked; trust is
        given per bundle, so choosing another model unticks it."""
        from napari_medseg.models.describe import describe_model

        self.trust_check.setChecked(False)
        ref = self.model_ref
        self._needs_trust = bool(ref) and describe_model(ref).needs_trust
        self.trust_check.setVisible(self._needs_trust)

    @property
    def model_ref(self) -> str:
        """The chosen model's name or path ("" while none is)."""
        return self.model_combo.ref

    def _browse_data(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of corrected label maps")
        if folder:
            self.add_data(folder)

    @staticmethod
    def _pairs_of(path: str | Path) -> list[Any] | None:
        """The pairs of a folder or CSV, the files it skipped notified as warnings; None,
        with a notification saying why, when it has no usable pair."""
        from napari_medseg._napari.notifications import notify_error, notify_warnings
        from napari_medseg.training.pairs import find_pairs

        try:
            found = find_pairs(path)
        except MedsegError as error:
            notify_error(error)
            return None
        notify_warnings(found.skipped)
        return found.pairs

    def add_data(self, path: str | Path) -> None:
        """Offer the pairs of a folder or CSV (a notification says why when it has none)."""
        pairs = self._pairs_of(path)
        if pairs is None:
            return
        known = {pair.key for pair in self._extra}
        self._extra += [pair for pair in pairs if pair.key not in known]
        self.refresh_pairs()

    def _browse_val_data(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of held-out label maps")
        if folder:
            self.set_val_data(folder)

    def set_val_data(self, path: str | Path) -> None:
        """Check the new model on the pairs of a folder or CSV (``""``: on a share of the
        ticked pairs). A path with no usable pair is refused with a notification."""
        path = str(Path(path).expanduser()) if str(path) else ""
        count = 0
        if path:
            pairs = self._pairs_of(path)
            if pairs is None:
                return
            count = len(pairs)
        self.val_data = path
        self.val_data_label.setText(
            f"Held out: the {count} pair{'s' * (count != 1)} of {path}" if path else ""
        )
        self.val_data_label.setToolTip(path)
        self._update_state()

    def _pairs_needed(self) -> int:
        """Ticked pairs a run needs: 2 to split, 1 with held-out pairs of their own."""
        return 1 if self.val_data else 2

    def saved_pairs(self) -> list[Any]:
        """The pairs of the labels layers saved in this viewer."""
        from napari.layers import Labels

        from napari_medseg._napari.edit_state import saved_path
        from napari_medseg.training.pairs import saved_pair

        pairs = []
        for layer in self.viewer.layers:
            path = saved_path(layer) if isinstance(layer, Labels) else ""
            if path and Path(path).is_file():
                pair = saved_pair(path)
                if not isinstance(pair, str):
                    pairs.append(pair)
        return pairs

    def refresh_pairs(self, *_: Any) -> None:
        """List the saved layers' pairs and the added ones, keeping what was unticked."""
        unticked = {
            self.pairs_list.item(i).data(Qt.ItemDataRole.UserRole).key
            for i in range(self.pairs_list.count())
            if self.pairs_list.item(i).checkState() != Qt.CheckState.Checked
        }
        self.pairs_list.blockSignals(True)
        self.pairs_list.clear()
        seen = set()
        for pair in self.saved_pairs() + self._extra:
            if pair.key in seen:
                continue
            seen.add(pair.key)
            item = QListWidgetItem(f"{Path(pair.labels).name}  ({Path(pair.images[0]).name})")
            item.setToolTip(f"labels: {pair.labels}\nscan: {pair.images[0]}")
            item.setData(Qt.ItemDataRole.UserRole, pair)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            checked = pair.key not in unticked
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            self.pairs_list.addItem(item)
        self.pairs_list.blockSignals(False)
        self._update_state()

    def chosen_pairs(self) -> list[Any]:
        return [
            self.pairs_list.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.pairs_list.count())
            if self.pairs_list.item(i).checkState() == Qt.CheckState.Checked
        ]

    def settings(self):
        """The run the dock's choices describe; its pairs are written to a CSV in the
        model library (named by its contents, so a resumed run finds the same data)."""
        from napari_medseg.models.library import default_library_dir
        from napari_medseg.training.finetune import RUNS_FOLDER
        from napari_medseg.training.pairs import write_pairs_csv
        from napari_medseg.training.settings import FinetuneSettings

        pairs = self.chosen_pairs()
        if len(pairs) < self._pairs_needed():
            raise MedsegError(
                "tick at least 2 corrected label maps: one or more is held out to check "
                "that the new model is better (or choose a held-out folder or CSV)."
                if not self.val_data
                else "tick at least 1 corrected label map to train on."
            )
        if not self.model_ref:
            raise MedsegError("choose the model to fine-tune.")
        if self._needs_trust and not self.trust_check.isChecked():
            raise MedsegError(
                f"{self.model_ref}: this bundle's configs run Python code when it trains. "
                "If you trust where it came from, tick 'Trust this bundle' and press Start "
                "again."
            )
        keys = "\n".join(sorted(pair.key for pair in pairs))
        digest = hashlib.sha256(keys.encode()).hexdigest()[:12]
        library = default_library_dir()
        csv_path = write_pairs_csv(library / RUNS_FOLDER / f"pairs-{digest}.csv", pairs)
        return FinetuneSettings(
            model=self.model_ref,
            data=str(csv_path),
            name=self.name_edit.text().strip(),
            epochs=self.epochs_spin.value(),
            val_fraction=round(self.val_spin.value(), 4),
            val_data=self.val_data,
            trust_bundle=self._needs_trust,  # ticked: refused above otherwise
            lr=self.lr_spin.value(),
        )

    # ------------------------------------------------------------------ run
    @property
    def busy(self) -> bool:
        return self._slot.busy

    def start(self) -> None:
        """Start a run with the dock's choices (a notification says what is missing)."""
        from napari_medseg._napari.notifications import notify_error
        from napari_medseg.training.finetune import run_finetune

        if self._slot.busy:
            return
        try:
            settings = self.settings()
        except (MedsegError, ValueError) as error:
            notify_error(error)
            self.status.setText(str(error))
            self.failed.emit(str(error))
            return
        job = Job(kind="finetune")
        self.chart.clear(settings.epochs)
        self.progress_bar.setRange(0, 0)
        self.status.setText(f"Fine-tuning {settings.model} on {len(self.chosen_pairs())} pairs...")
        relay = self._relay
        self._slot.start(
            job,
            partial(
                run_finetune,
                settings,
                resume=self.resume_check.isChecked(),
                on_epoch=relay.epoch.emit,
                progress=job.progress,
                cancel=job.cancel,
            ),
            returned=self._on_returned,
            errored=self._on_errored,
            progressed=self._on_progress,
            progress_steps=200,
        )
        self._update_state()

    def cancel(self) -> None:
        """Stop the run after its current step; the best checkpoint is kept."""
        if self._slot.cancel():
            self.status.setText("Cancelling: the run stops after its current step...")

    def _on_progress(self, job: Job, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(done)

    def _on_epoch(self, record: Any) -> None:
        if not self._slot.busy:
            return
        self.chart.add(record.epoch, record.mean_dice, record.loss)
        self.status.setText(record.line())

    def _on_returned(self, job: Job, outcome: Any) -> None:
        from napari_medseg._napari.notifications import notify_info

        self._slot.release(job)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1 if outcome.published else 0)
        if outcome.published:
            self.status.setText(f"Published {outcome.name}: {outcome.reason}")
            notify_info(f"published {outcome.name}; choose it in Segment")
            app_events().model_published.emit(outcome.name)
            self.published.emit(outcome.name)
        else:
            self.status.setText(outcome.reason[:1].upper() + outcome.reason[1:])
        self.finished.emit(outcome)
        self._update_state()

    def _on_errored(self, job: Job, error: BaseException) -> None:
        from napari_medseg._napari.notifications import notify_error

        self._slot.release(job)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        notify_error(error)
        self.status.setText(str(error))
        self.failed.emit(str(error))
        self._update_state()

    def _update_state(self, *_: Any) -> None:
        busy = self._slot.busy
        self.start_button.setEnabled(not busy and len(self.chosen_pairs()) >= self._pairs_needed())
        self.cancel_button.setEnabled(busy)
        self.cancel_button.setVisible(busy)  # idle, the dock is as short as Segment's
        self.progress_bar.setVisible(busy)
        for control in (self.model_combo, self.pairs_list, self.add_button, self.epochs_spin,
                        self.val_data_button):  # fmt: skip
            control.setEnabled(not busy)
        self.val_spin.setEnabled(not busy and not self.val_data)
        self.val_data_clear.setVisible(bool(self.val_data))
        self.val_data_clear.setEnabled(not busy)


__all__ = ["TrainWidget", "trainable_models"]
