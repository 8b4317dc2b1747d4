"""The Views dock: the canvas's plane, linked orthogonal views, and 3D.

* **Axial / Coronal / Sagittal** show that radiological plane in napari's canvas
  (:func:`~napari_medseg._napari.views.set_view`).
* **Linked views** (checkable) docks the coronal and sagittal views under the canvas,
  linked to it by a crosshair (:mod:`~napari_medseg._napari.linked_views`); unchecked,
  napari's single view is back. ``medseg view`` and ``medseg demo`` open with it on.
* **3D** turns the canvas to napari's 3D view and back (as napari's own 2D/3D button);
  the linked views stay 2D.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QGridLayout, QPushButton, QWidget

from napari_medseg._napari.linked_views import (
    hide_linked_views,
    linked_views_of,
    show_linked_views,
)
from napari_medseg._napari.views import VIEWS, set_view

if TYPE_CHECKING:
    import napari


class ViewOrientation(QWidget):
    """Dock widget: the canvas's plane, the linked views on or off, 2D or 3D."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        layout = QGridLayout(self)
        self.buttons: dict[str, QPushButton] = {}
        for column, plane in enumerate(VIEWS):
            button = QPushButton(plane.capitalize(), self)
            button.clicked.connect(lambda _=False, p=plane: set_view(self.viewer, p))
            layout.addWidget(button, 0, column)
            self.buttons[plane] = button
        self.linked_button = QPushButton("Linked views", self)
        self.linked_button.setCheckable(True)
        self.linked_button.setToolTip(
            "Axial, coronal and sagittal views of the same layers, with a crosshair: a "
            "click (in pan/zoom mode, or holding Space) or Shift+drag moves it"
        )
        self.linked_button.setChecked(linked_views_of(self.viewer) is not None)
        self.linked_button.toggled.connect(self.set_linked)
        layout.addWidget(self.linked_button, 1, 0, 1, 2)
        self.button_3d = QPushButton("3D", self)
        self.button_3d.setCheckable(True)
        self.button_3d.setChecked(self.viewer.dims.ndisplay == 3)
        self.button_3d.toggled.connect(self.set_3d)
        self.viewer.dims.events.ndisplay.connect(self._on_ndisplay)
        layout.addWidget(self.button_3d, 1, 2)

    def set_linked(self, on: bool) -> None:
        """Show (True) or remove (False) the linked coronal and sagittal views."""
        if on:
            show_linked_views(self.viewer)
        else:
            hide_linked_views(self.viewer)
        if self.linked_button.isChecked() != on:
            self.linked_button.setChecked(on)

    def set_3d(self, on: bool) -> None:
        """napari's 3D view in the canvas (True) or 2D (False)."""
        self.viewer.dims.ndisplay = 3 if on else 2

    def _on_ndisplay(self, _event: Any = None) -> None:
        self.button_3d.setChecked(self.viewer.dims.ndisplay == 3)
