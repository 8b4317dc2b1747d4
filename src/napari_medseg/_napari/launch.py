"""Start napari with a scan and napari-medseg's widgets docked (``medseg view``/``demo``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PLUGIN = "napari-medseg"

#: Widgets docked at start, in order, and whether each joins the previous dock as a tab.
#: The workflow (segment -> correct -> save) shares one tabbed dock; the live report
#: has its own, so its numbers stay in sight while editing.
DOCKED_WIDGETS = (
    ("Segment", False),
    ("Label tools", True),
    ("Save labels", True),
    ("Window presets", True),
    ("DICOM series browser", True),
    ("View orientation", True),
    ("Report", False),
)


def make_viewer(path: str | Path | None = None, viewer=None):
    """Open ``path`` (default: the sample chest CT) in a viewer and dock the widgets.

    The widgets are docked first and the view is fitted once the window has laid
    them out, so the whole scan is inside the canvas; the axial view opens on the
    middle of the first labels layer that holds labels (the sample's tumour), else
    on the middle slice.

    Parameters
    ----------
    path : path, optional
        Scan to open through the plugin's reader.
    viewer : napari.Viewer, optional
        Viewer to use; a new one is made when omitted.

    Returns
    -------
    napari.Viewer
    """
    import napari

    from napari_medseg._napari.views import set_view

    if viewer is None:
        viewer = napari.Viewer(title="napari-medseg")
        _use_most_of_the_screen(viewer)
    docks = {}
    for widget_name, tabify in DOCKED_WIDGETS:
        docks[widget_name], _ = viewer.window.add_plugin_dock_widget(
            PLUGIN, widget_name, tabify=tabify
        )
    _process_events()
    docks[DOCKED_WIDGETS[0][0]].raise_()  # the first tab (Segment) in front
    if path is None:
        layers = viewer.open_sample(PLUGIN, "chest_ct")
    else:
        layers = viewer.open(str(path), plugin=PLUGIN)
    _process_events()  # the docks take their room: the canvas gets its final size
    set_view(viewer, "axial")  # also fits the view to the canvas
    show_slice_of_interest(viewer, layers)
    return viewer


def show_slice_of_interest(viewer: Any, layers: Sequence[Any]) -> None:
    """Move the slider to the labelled region of ``layers``, else to their middle slice.

    Parameters
    ----------
    viewer : napari.Viewer
    layers : sequence of napari layers
        The layers just opened; the first labels layer with non-zero voxels wins.
    """
    from napari.layers import Labels

    layers = [layer for layer in layers if getattr(layer, "ndim", 0) >= 3]
    if not layers or viewer.dims.ndim < 3:
        return
    axis = int(viewer.dims.order[-3])  # the world axis under the slider
    target = None
    for layer in layers:
        if not isinstance(layer, Labels) or getattr(layer, "multiscale", False):
            continue
        centre = _labelled_centre(np.asarray(layer.data))
        if centre is not None:
            target = np.asarray(layer.data_to_world(centre), dtype=float)
            break
    if target is None:
        first = layers[0]
        multiscale = getattr(first, "multiscale", False)
        shape = np.asarray(first.level_shapes[0] if multiscale else first.data.shape)
        target = np.asarray(first.data_to_world((shape[: first.ndim] - 1) / 2.0), dtype=float)
    offset = viewer.dims.ndim - len(target)
    point = list(viewer.dims.point)
    point[axis] = float(target[axis - offset])
    viewer.dims.point = tuple(point)


def _labelled_centre(data: np.ndarray) -> np.ndarray | None:
    """Mean index of the non-zero voxels (per axis, from one boolean mask), or None.

    Per-axis counts instead of ``np.argwhere``: an organ map of millions of voxels
    would otherwise need an index array of 24 bytes per labelled voxel.
    """
    labelled = data != 0
    total = int(np.count_nonzero(labelled))
    if total == 0:
        return None
    centre = []
    for axis in range(labelled.ndim):
        others = tuple(a for a in range(labelled.ndim) if a != axis)
        counts = labelled.sum(axis=others, dtype=np.int64)
        centre.append(float(np.dot(np.arange(counts.size), counts)) / total)
    return np.asarray(centre)


def _use_most_of_the_screen(viewer: Any, fraction: float = 0.85) -> None:
    """Enlarge a new viewer's window so the canvas keeps room beside the docks."""
    from qtpy.QtWidgets import QApplication

    screen = QApplication.primaryScreen()
    if screen is None:
        return
    available = screen.availableGeometry()
    width = max(int(available.width() * fraction), 1)
    height = max(int(available.height() * fraction), 1)
    viewer.window.resize(width, height)


def _process_events() -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        app.processEvents()


def launch_viewer(path: str | Path | None = None) -> None:
    """Open the viewer and run the Qt event loop until the window closes."""
    import napari
    from qtpy.QtCore import QTimer

    viewer = make_viewer(path)
    # the window manager may still resize the window once it is mapped: fit again
    # as soon as the event loop runs
    QTimer.singleShot(0, viewer.reset_view)
    napari.run()
