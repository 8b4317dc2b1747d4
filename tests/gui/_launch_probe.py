"""Open the window ``medseg demo`` opens and measure it (run by ``test_window_fits``).

Run in its own X server, whose screen size is the point: ``python _launch_probe.py
OUT.json SHOT.png``. The window is made by :func:`napari_medseg._napari.launch.make_viewer`
exactly as ``medseg demo`` makes it (a new viewer, sized for the screen); once the live
report has measured, the geometry of the window and of the widgets a user must reach
is written to ``OUT.json`` (global screen pixels, ``[x, y, width, height]``) and the
window to ``SHOT.png``. Private napari names are read here only to find the widgets.
"""

from __future__ import annotations

import json
import sys
import time


def _rect(widget) -> list[int]:
    """Global ``[x, y, width, height]`` of a widget's visible part (empty when hidden)."""
    if not widget.isVisible():
        return [0, 0, 0, 0]
    region = widget.visibleRegion().boundingRect()
    corner = widget.mapToGlobal(region.topLeft())
    return [corner.x(), corner.y(), region.width(), region.height()]


def _wait(app, condition, timeout_s: float = 120.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the live report did not finish measuring")
        app.processEvents()
        time.sleep(0.01)


def main(out_path: str, shot_path: str) -> None:
    from qtpy.QtWidgets import QApplication, QTabBar

    from napari_medseg._napari.launch import make_viewer

    viewer = make_viewer()
    app = QApplication.instance()
    docks = viewer.window.dock_widgets
    report = docks["Report (napari-medseg)"]
    _wait(app, lambda: report.report is not None and not report.live.busy)
    for _ in range(10):
        app.processEvents()
    window = report.window()
    qt_viewer = viewer.window._qt_viewer
    widgets = {
        "dims slider": qt_viewer.dims,
        "status bar": window.statusBar(),
        "canvas": qt_viewer.canvas.native,
        "Report Export CSV": report.csv_button,
        "Report Export JSON": report.json_button,
        "Segment Run": docks["Segment (napari-medseg)"].run_button,
    }
    from napari_medseg._napari.linked_views import linked_views_of

    for plane, view in linked_views_of(viewer).views.items():  # the linked views' canvases
        widgets[f"{plane} view"] = view.qt_viewer.canvas.native
    tabs = []
    for bar in window.findChildren(QTabBar):
        if bar.isVisible() and bar.count():
            tabs.append(
                {
                    "titles": [bar.tabText(i) for i in range(bar.count())],
                    "elide_none": bar.elideMode().name == "ElideNone",
                    "tab_rects": [_rect_of_tab(bar, i) for i in range(bar.count())],
                    "text_widths": [
                        bar.fontMetrics().horizontalAdvance(bar.tabText(i))
                        for i in range(bar.count())
                    ],
                    "bar": _rect(bar),
                }
            )
    screen = window.screen()
    available = screen.availableGeometry()
    frame = window.frameGeometry()
    result = {
        "screen": [screen.geometry().width(), screen.geometry().height()],
        "available": [available.x(), available.y(), available.width(), available.height()],
        "frame": [frame.x(), frame.y(), frame.width(), frame.height()],
        "minimum": [window.minimumSizeHint().width(), window.minimumSizeHint().height()],
        "widgets": {name: _rect(widget) for name, widget in widgets.items()},
        "tabs": tabs,
        "zoom": float(viewer.scene.camera.zoom),
    }
    viewer.reset_view()
    result["fitted_zoom"] = float(viewer.scene.camera.zoom)
    window.grab().save(shot_path)
    with open(out_path, "w") as handle:
        json.dump(result, handle, indent=1)
    viewer.close()


def _rect_of_tab(bar, index: int) -> list[int]:
    rect = bar.tabRect(index)
    corner = bar.mapToGlobal(rect.topLeft())
    return [corner.x(), corner.y(), rect.width(), rect.height()]


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
