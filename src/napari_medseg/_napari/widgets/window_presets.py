"""Window presets dock widget: one click sets a CT layer's contrast to a named window.

The presets are :data:`napari_medseg.window_presets.CT_WINDOWS` (HU); "DICOM window"
is the window the file itself gives (``metadata["medseg"]["window"]``: DICOM
WindowCenter/WindowWidth, or a NIfTI's cal_min/cal_max), disabled when it gives none.
A button sets ``layer.contrast_limits = (centre - width / 2, centre + width / 2)``.
The HU presets are enabled only for layers known or guessed to be CT: modality CT
or units HU in ``metadata["medseg"]`` (a DICOM CT; a NIfTI whose values span air to
soft tissue in HU, as the reader guesses), or, for a layer napari-medseg did not
open, values that look like HU by the same rule. Any other layer (an MR, a NIfTI
without modality whose values are not HU-like) gets the reason shown instead.
HU values are shown with one decimal everywhere (:func:`format_hu`).

The dock also shows the chosen layer's current window (centre and width, following
the presets, napari's contrast slider and a mouse drag alike) and holds the
checkable "W/L drag" button of :mod:`napari_medseg._napari.window_level` (also the
``W`` key; Ctrl-drag works without it). Opening the dock installs the W/L drag and
the cursor status (:mod:`napari_medseg._napari.cursor_status`) on its viewer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QFormLayout, QGridLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_medseg._napari.cursor_status import install_cursor_status
from napari_medseg._napari.image_values import format_hu, hu_note, layer_window
from napari_medseg._napari.widgets.layer_combo import LayerCombo, is_layer
from napari_medseg._napari.window_level import MODE_KEY, MODIFIER, install_window_level, window_of
from napari_medseg.window_presets import CT_WINDOWS, window_limits

if TYPE_CHECKING:
    import napari

#: Buttons per row.
COLUMNS = 3


class WindowPresetsWidget(QWidget):
    """Buttons that set the contrast limits of a CT image layer to a named window.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.layer_combo = LayerCombo(napari_viewer, is_layer("image"), self)
        self.buttons: dict[str, QPushButton] = {}
        grid = QGridLayout()
        for index, preset in enumerate(CT_WINDOWS):
            button = QPushButton(preset.title, self)
            button.setToolTip(
                f"centre {format_hu(preset.center)} HU, width {format_hu(preset.width)} HU"
            )
            button.clicked.connect(lambda _=False, p=preset: self.apply(p.center, p.width))
            grid.addWidget(button, index // COLUMNS, index % COLUMNS)
            self.buttons[preset.name] = button
        self.dicom_button = QPushButton("DICOM window", self)
        self.dicom_button.clicked.connect(self.apply_file_window)
        grid.addWidget(self.dicom_button, len(CT_WINDOWS) // COLUMNS + 1, 0, 1, COLUMNS)
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        self.window_label = QLabel(self)
        self.window_label.setToolTip("the chosen image's window now (a drag changes it too)")
        self.tool = install_window_level(napari_viewer)
        install_cursor_status(napari_viewer)
        self.drag_button = QPushButton("W/L drag", self)
        self.drag_button.setCheckable(True)
        self.drag_button.setChecked(self.tool.mode)
        self.drag_button.setToolTip(
            f"Left-drag on the canvas sets the window (right: wider, up: higher level) "
            f"instead of painting or panning; key {MODE_KEY}. "
            f"{'Ctrl' if MODIFIER == 'Control' else MODIFIER}-drag does it in any mode."
        )
        self.drag_button.toggled.connect(self.tool.set_mode)
        self.tool.mode_changed.connect(self._on_mode)
        self.tool.window_changed.connect(self._on_dragged)

        form = QFormLayout()
        form.addRow("Image", self.layer_combo)
        form.addRow("Window", self.window_label)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(grid)
        layout.addWidget(self.drag_button)
        layout.addWidget(self.note)
        layout.addStretch(1)
        self._watched: Any = None
        self.layer_combo.layer_changed.connect(self._update)
        self._update()

    def _on_mode(self, on: bool) -> None:
        if self.drag_button.isChecked() != on:
            self.drag_button.setChecked(on)

    def _on_dragged(self, layer: Any, *_: Any) -> None:
        """A drag set ``layer``'s window: show that layer (its window follows)."""
        if layer is not self.layer_combo.layer():
            self.layer_combo.set_layer(layer)

    def _watch(self, layer: Any) -> None:
        """Follow the contrast limits of ``layer`` (only)."""
        if self._watched is layer:
            return
        if self._watched is not None:
            self._watched.events.contrast_limits.disconnect(self._show_window)
        self._watched = layer
        if layer is not None:
            layer.events.contrast_limits.connect(self._show_window)

    def _show_window(self, *_: Any) -> None:
        layer = self.layer_combo.layer()
        if layer is None:
            self.window_label.setText("-")
            return
        center, width = window_of(layer)
        if hu_note(layer):
            self.window_label.setText(f"centre {center:.6g}, width {width:.6g}")
        else:
            self.window_label.setText(f"centre {format_hu(center)} HU, width {format_hu(width)} HU")

    def _update(self, *_: Any) -> None:
        layer = self.layer_combo.layer()
        self._watch(layer)
        self._show_window()
        note = hu_note(layer) if layer is not None else "Open a CT scan."
        for button in self.buttons.values():
            button.setEnabled(layer is not None and not note)
        window = layer_window(layer) if layer is not None else None
        self.dicom_button.setEnabled(window is not None)
        if window is None:
            self.dicom_button.setToolTip("the file gives no window")
        else:
            self.dicom_button.setToolTip(f"centre {window[0]:g}, width {window[1]:g}")
        self.note.setText(note)

    def apply(self, center: float, width: float) -> None:
        """Set the chosen layer's contrast limits to the window ``(center, width)``."""
        layer = self.layer_combo.layer()
        if layer is None:
            return
        layer.contrast_limits = window_limits(center, width)
        low, high = layer.contrast_limits
        self.note.setText(
            hu_note(layer) or f"{layer.name}: {format_hu(low)} to {format_hu(high)} HU"
        )

    def apply_preset(self, name: str) -> None:
        """Apply the preset called ``name`` (see :data:`CT_WINDOWS`)."""
        self.buttons[name].click()

    def apply_file_window(self) -> None:
        """Apply the window stored in the layer's file (DICOM WindowCenter/Width)."""
        layer = self.layer_combo.layer()
        window = layer_window(layer) if layer is not None else None
        if window is not None:
            self.apply(*window)
