"""Three buttons: axial, coronal and sagittal radiological views."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QHBoxLayout, QPushButton, QWidget

from napari_medseg._napari.views import VIEWS, set_view

if TYPE_CHECKING:
    import napari


class ViewOrientation(QWidget):
    """Dock widget that switches the 2D view to axial, coronal or sagittal."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        layout = QHBoxLayout(self)
        self.buttons: dict[str, QPushButton] = {}
        for plane in VIEWS:
            button = QPushButton(plane.capitalize(), self)
            button.clicked.connect(lambda _=False, p=plane: set_view(self.viewer, p))
            layout.addWidget(button)
            self.buttons[plane] = button
