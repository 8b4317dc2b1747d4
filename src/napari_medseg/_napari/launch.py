"""Start napari with a scan and napari-medseg's widgets docked (``medseg view``/``demo``).

The window fits the screen it opens on, 1366x768 included: it takes 90% of the
screen's available area, frame included, and every docked widget scrolls inside its
dock (:mod:`~napari_medseg._napari.widgets.scroll`) instead of forcing the window
taller. The workflow docks share one tab group whose tabs carry short titles, never
elided; the live report has its own dock below them. The view is fitted again
whenever the canvas changes size (window resized, docks opened or closed), unless
the user zoomed or panned since the last fit.
"""

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

#: Widgets docked too when the plugin's manifest offers them: (name, after which tab).
OPTIONAL_WIDGETS = (("Segments", "Label tools"),)

#: Tab titles of the docks (napari titles them "<name> (napari-medseg)", and seven
#: such titles in one dock's width were elided to "Se..."); all fit a 460 px dock.
TAB_TITLES = {
    "Segment": "Segment",
    "Label tools": "Label tools",
    "Segments": "Segments",
    "Save labels": "Save",
    "Window presets": "CT window",
    "DICOM series browser": "DICOM",
    "View orientation": "Views",
    "Report": "Report",
}

#: Share of the screen's available width and height the window takes, frame included.
SCREEN_FRACTION = 0.9

#: Share of the right dock column the workflow tabs get at start (the report the rest).
WORKFLOW_SHARE = 0.5


#: The model the Segment widget offers first on the sample chest CT.
SAMPLE_MODEL = "lungs-ct"


def make_viewer(path: str | Path | None = None, viewer=None, linked_views: bool = True):
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
    linked_views : bool
        Also show the coronal and sagittal views under the (axial) canvas, linked by a
        crosshair (:mod:`~napari_medseg._napari.linked_views`); False: napari's single
        view.

    Returns
    -------
    napari.Viewer
    """
    import napari

    from napari_medseg._napari.views import refit_on_resize, set_view

    new_window = viewer is None
    if viewer is None:
        viewer = napari.Viewer(title="napari-medseg")
    docks, widgets = {}, {}
    for widget_name, tabify in docked_widgets():
        docks[widget_name], widgets[widget_name] = viewer.window.add_plugin_dock_widget(
            PLUGIN, widget_name, tabify=tabify
        )
    window = docks[DOCKED_WIDGETS[0][0]].window()  # napari's main window (a QMainWindow)
    if new_window:
        fit_window_to_screen(window)
    _process_events()
    _title_tabs(window, docks)
    _share_the_column(window, docks)
    docks[DOCKED_WIDGETS[0][0]].raise_()  # the first tab (Segment) in front
    if path is None:
        layers = viewer.open_sample(PLUGIN, "chest_ct")
        # the sample is a chest CT: Run gives real anatomy (its lungs), not phantom organs
        if "Segment" in widgets:
            widgets["Segment"].set_model(SAMPLE_MODEL)
    else:
        layers = viewer.open(str(path), plugin=PLUGIN)
    _process_events()  # the docks take their room: the canvas gets its final size
    set_view(viewer, "axial")  # also fits the view to the canvas
    show_slice_of_interest(viewer, layers)
    refit_on_resize(viewer, window)
    if linked_views:
        from napari_medseg._napari.linked_views import show_linked_views

        views = show_linked_views(viewer)
        _process_events()  # the dock takes its room: the views are fitted as they are
        views.set_crosshair(viewer.dims.point)  # through the slice of interest
    return viewer


def docked_widgets() -> list[tuple[str, bool]]:
    """:data:`DOCKED_WIDGETS`, with each of :data:`OPTIONAL_WIDGETS` the manifest offers
    inserted as a tab after its neighbour."""
    offered = set(_manifest_widgets())
    out = list(DOCKED_WIDGETS)
    for name, after in OPTIONAL_WIDGETS:
        if name in offered:
            position = [n for n, _ in out].index(after) + 1
            out.insert(position, (name, True))
    return out


def _manifest_widgets() -> list[str]:
    """Display names of the widgets in the plugin's npe2 manifest."""
    from npe2 import PluginManager

    try:
        manifest = PluginManager.instance().get_manifest(PLUGIN)
    except KeyError:
        return []
    return [widget.display_name for widget in manifest.contributions.widgets or ()]


def fit_window_to_screen(window: Any, fraction: float = SCREEN_FRACTION) -> None:
    """Size ``window`` to ``fraction`` of its screen's available area and centre it.

    The frame (title bar, borders: known once the window manager decorated the
    window) counts in, so the whole window lies inside the available area.

    Parameters
    ----------
    window : QWidget
        A top-level window (napari's main window).
    fraction : float
        Share of the available width and height, in (0, 1].
    """
    from qtpy.QtWidgets import QApplication

    screen = window.screen() or QApplication.primaryScreen()
    if screen is None:
        return
    available = screen.availableGeometry()
    frame, inner = window.frameGeometry(), window.geometry()
    extra_w = max(0, frame.width() - inner.width())
    extra_h = max(0, frame.height() - inner.height())
    outer_w = max(1, int(available.width() * fraction))
    outer_h = max(1, int(available.height() * fraction))
    window.resize(max(1, outer_w - extra_w), max(1, outer_h - extra_h))
    size = window.frameGeometry().size()  # what the minimum size allowed
    left = available.x() + max(0, (available.width() - size.width()) // 2)
    top = available.y() + max(0, (available.height() - size.height()) // 2)
    window.move(left, top)


def _title_tabs(window: Any, docks: dict[str, Any]) -> None:
    """Short tab titles (:data:`TAB_TITLES`), never elided: scroll arrows instead."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QTabBar

    for name, dock in docks.items():
        dock.setWindowTitle(TAB_TITLES.get(name, name))
    titles = set(TAB_TITLES.values())
    _process_events()  # Qt titles the tabs of a dock group from the docks' titles
    for bar in window.findChildren(QTabBar):
        if any(bar.tabText(i) in titles for i in range(bar.count())):
            bar.setElideMode(Qt.TextElideMode.ElideNone)
            bar.setUsesScrollButtons(True)


def _share_the_column(window: Any, docks: dict[str, Any]) -> None:
    """Give the workflow tabs :data:`WORKFLOW_SHARE` of the right column's height."""
    from qtpy.QtCore import Qt

    workflow, report = docks[DOCKED_WIDGETS[0][0]], docks.get("Report")
    if report is None:
        return
    column = workflow.height() + report.height()
    top = int(column * WORKFLOW_SHARE)
    window.resizeDocks([workflow, report], [top, column - top], Qt.Orientation.Vertical)




def show_slice_of_interest(viewer: Any, layers: Sequence[Any]) -> None:
    """Move the viewer's point to the labelled region of ``layers``, else to their middle.

    The slider shows that slice; the linked views' crosshair starts at that point.

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
    # the whole point, not only the slider's axis: the linked views' crosshair starts there
    for index, value in enumerate(target):
        point[offset + index] = float(value)
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


def _process_events() -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        app.processEvents()


def launch_viewer(path: str | Path | None = None, linked_views: bool = True) -> None:
    """Open the viewer (:func:`make_viewer`) and run the Qt event loop until it closes."""
    import napari
    from qtpy.QtCore import QTimer

    viewer = make_viewer(path, linked_views=linked_views)
    window = viewer.window.dock_widgets[f"{DOCKED_WIDGETS[0][0]} ({PLUGIN})"].window()
    # the window manager decorates the window once it is mapped: fit the frame into
    # the screen again then (the view refits with the canvas)
    QTimer.singleShot(0, lambda: fit_window_to_screen(window))
    napari.run()
