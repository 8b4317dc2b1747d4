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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QFormLayout, QGridLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_medseg._napari.image_values import format_hu, hu_note, layer_window
from napari_medseg._napari.widgets.layer_combo import LayerCombo, is_layer
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

        form = QFormLayout()
        form.addRow("Image", self.layer_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(grid)
        layout.addWidget(self.note)
        layout.addStretch(1)
        self.layer_combo.layer_changed.connect(self._update)
        self._update()

    def _update(self, *_: Any) -> None:
        layer = self.layer_combo.layer()
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
