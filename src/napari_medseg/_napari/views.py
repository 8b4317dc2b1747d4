"""Standard radiological views of the napari world (S, P, L) of :mod:`napari_medseg.geometry`.

* axial: slider along S; anterior at the top, patient right on the screen's left;
* coronal: slider along P; superior at the top, patient right on the left;
* sagittal: slider along L; superior at the top, anterior on the left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import napari

#: plane -> (world axis under the slider, (vertical, horizontal) screen axes,
#: napari 2D camera orientation of those two axes).
VIEWS: dict[str, tuple[int, tuple[int, int], tuple[str, str]]] = {
    "axial": (0, (1, 2), ("down", "right")),
    "coronal": (1, (0, 2), ("up", "right")),
    "sagittal": (2, (0, 1), ("up", "right")),
}


def set_view(viewer: napari.Viewer, plane: str) -> None:
    """Show ``plane`` (``"axial"``, ``"coronal"`` or ``"sagittal"``) in 2D.

    Sets ``viewer.dims.order`` so the slider runs along the plane normal and the
    2D camera orientation so superior is up in coronal and sagittal views. Only
    the last three dims are reordered (a leading time/channel axis stays put).
    """
    if plane not in VIEWS:
        raise ValueError(f"plane must be one of {sorted(VIEWS)}, got {plane!r}")
    slider, (vertical, horizontal), orientation = VIEWS[plane]
    ndim = viewer.dims.ndim
    if ndim < 3:
        return
    lead = list(range(ndim - 3))
    offset = ndim - 3
    viewer.dims.ndisplay = 2
    viewer.dims.order = tuple(lead + [offset + slider, offset + vertical, offset + horizontal])
    viewer.scene.camera.orientation2d = orientation
    viewer.reset_view()


def refit_on_resize(viewer: Any, window: Any) -> Any:
    """Fit ``viewer``'s view again whenever its canvas changes size.

    Only while the view is as the last fit left it: once the user zoomed or panned,
    a resize keeps their view. Every fit (napari's Home button,
    :func:`~napari_medseg._napari.views.set_view`, this one) emits
    ``viewer.events.reset_view``; the camera it leaves is what "as fitted" means.

    Parameters
    ----------
    viewer : napari.Viewer or napari.components.ViewerModel
    window : QWidget
        Its main window (or the widget holding its canvas): the refitter lives
        (and goes) with it.

    Returns
    -------
    QObject
        The refitter (one per window; calling again returns the same).
    """
    from qtpy.QtCore import QObject, QTimer

    class Refit(QObject):
        def __init__(self) -> None:
            super().__init__(window)
            self.setObjectName(_REFIT_NAME)
            self.viewer = viewer
            self.fitted = self.camera()
            self.timer = QTimer(self)
            self.timer.setSingleShot(True)
            self.timer.setInterval(0)  # once per burst of resize events
            self.timer.timeout.connect(self.refit)
            viewer.events.reset_view.connect(self.on_reset_view)
            viewer.canvas.events.size.connect(self.on_size)

        def camera(self) -> tuple[float, ...]:
            camera = self.viewer.scene.camera
            return (float(camera.zoom), *map(float, camera.center), *map(float, camera.angles))

        def on_reset_view(self, *_: Any) -> None:
            self.fitted = self.camera()

        def on_size(self, *_: Any) -> None:
            self.timer.start()

        def still_fitted(self) -> bool:
            return bool(np.allclose(self.camera(), self.fitted, rtol=1e-6, atol=1e-6))

        def refit(self) -> None:
            if len(self.viewer.layers) and self.still_fitted():
                self.viewer.reset_view()

    existing = window.findChild(QObject, _REFIT_NAME)
    return existing if existing is not None else Refit()


_REFIT_NAME = "napari_medseg_refit_on_resize"
