"""The window ``medseg demo``/``view`` opens fits a laptop screen and uses a large one.

Each screen size runs the real launch (:func:`napari_medseg._napari.launch.make_viewer`
in a new viewer) in its own X server of that size (``_launch_probe.py`` under
``xvfb-run``): the window's frame must lie inside the screen's available area, the
widgets a user must reach (slider, status bar, Run, the report's Export buttons) inside
the window and visible, and the tab titles whole. The screenshots go to
``test-artifacts/workstation_<W>x<H>.png`` (the README shows them, copied to
``docs/images/`` once looked at).

The in-process tests check what docking from the Plugins menu does to a window of
the size a 1366x768 screen gets, and that the view is fitted again when the canvas
changes size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import dock

HERE = Path(__file__).resolve().parent

#: What a 1366x768 screen gives the window (90% of it, see launch.SCREEN_FRACTION).
LAPTOP_WINDOW = (1229, 691)


def _inside(inner, outer) -> bool:
    x, y, w, h = inner
    ox, oy, ow, oh = outer
    return w > 0 and h > 0 and x >= ox and y >= oy and x + w <= ox + ow and y + h <= oy + oh


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run (Linux)")
@pytest.mark.parametrize("screen", [(1366, 768), (1920, 1080)], ids=["1366x768", "1920x1080"])
def test_the_launch_window_fits_the_screen(screen, artifacts, tmp_path):
    width, height = screen
    out = tmp_path / "geometry.json"
    shot = artifacts / f"workstation_{width}x{height}.png"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    run = subprocess.run(
        [
            "xvfb-run",
            "-a",
            "-s",
            f"-screen 0 {width}x{height}x24",
            sys.executable,
            str(HERE / "_launch_probe.py"),
            str(out),
            str(shot),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    found = json.loads(out.read_text())
    assert found["screen"] == [width, height]
    available, frame = found["available"], found["frame"]

    # the whole window is on the screen, and it is not a small window on a large one
    assert _inside(frame, available), found
    assert frame[2] >= 0.85 * available[2] and frame[3] >= 0.85 * available[3], found
    # every widget a user must reach is inside the window, and shown
    for name, rect in found["widgets"].items():
        assert _inside(rect, frame), (name, rect, frame)
    # the linked coronal and sagittal views are there and big enough to work in
    for plane in ("coronal", "sagittal"):
        width, height = found["widgets"][f"{plane} view"][2:]
        assert width >= 150 and height >= 150, (plane, width, height)
    # the tab titles are whole: not elided, each tab as wide as its title needs, and
    # all tabs inside their bar (no scrolling needed to see one)
    (tabs,) = [t for t in found["tabs"] if any(x.startswith("Segment") for x in t["titles"])]
    assert tabs["elide_none"], tabs
    assert {"Segment", "Label tools", "Save", "Views"} <= set(tabs["titles"])
    for rect, needed in zip(tabs["tab_rects"], tabs["text_widths"], strict=True):
        assert rect[2] > needed and _inside(rect, tabs["bar"]), tabs
    # the view was fitted to the canvas as it finally is
    np.testing.assert_allclose(found["zoom"], found["fitted_zoom"], rtol=1e-3)
    assert shot.stat().st_size > 10_000


def _main_window(viewer):
    return viewer.window._qt_window


def test_docking_from_the_plugins_menu_keeps_the_window_size(make_napari_viewer, qtbot):
    """The Plugins menu docks a widget below the others (no tab): their minimum heights
    add up. Docked this way, Segment, Label tools, Save labels and Report used to make
    a 1229x691 window (a 1366x768 screen's) 1760 px tall."""
    viewer = make_napari_viewer(show=True)
    window = _main_window(viewer)
    window.resize(*LAPTOP_WINDOW)
    for name in ("Segment", "Label tools", "Save labels", "Report"):
        dock(viewer, name)
    qtbot.waitUntil(lambda: window.height() == LAPTOP_WINDOW[1], timeout=5_000)
    assert window.minimumSizeHint().height() <= LAPTOP_WINDOW[1]
    qtbot.wait(50)  # (a later layout pass must not grow it either)
    assert window.height() == LAPTOP_WINDOW[1]


def test_the_train_dock_fits_beside_the_docks_of_its_loop(make_napari_viewer, qtbot):
    """Correct, save, train, segment again: Segment, Save labels, Report and Train docked
    together keep a laptop's window size; idle, Train is no taller than Segment."""
    viewer = make_napari_viewer(show=True)
    window = _main_window(viewer)
    window.resize(*LAPTOP_WINDOW)
    docked = {name: dock(viewer, name) for name in ("Segment", "Save labels", "Report", "Train")}
    qtbot.waitUntil(lambda: window.height() == LAPTOP_WINDOW[1], timeout=5_000)
    assert window.minimumSizeHint().height() <= LAPTOP_WINDOW[1]
    train, segment = docked["Train"], docked["Segment"]
    assert train.minimumSizeHint().height() <= segment.minimumSizeHint().height()
    qtbot.wait(50)
    assert window.height() == LAPTOP_WINDOW[1]


def test_scrolled_widgets_keep_their_content_reachable(make_napari_viewer, qtbot):
    """In a short dock the content scrolls: the last control can be scrolled into view."""
    from qtpy.QtWidgets import QScrollArea

    viewer = make_napari_viewer(show=True)
    _main_window(viewer).resize(*LAPTOP_WINDOW)
    tools = dock(viewer, "Label tools")
    dock(viewer, "Segment")
    dock(viewer, "Report")
    qtbot.waitUntil(lambda: tools.isVisible(), timeout=5_000)
    (area,) = tools.findChildren(QScrollArea)
    last = tools.clip_button
    area.ensureWidgetVisible(last)
    qtbot.waitUntil(lambda: not last.visibleRegion().isEmpty(), timeout=5_000)
    # no horizontal scrolling: the dock is as wide as the tools need
    assert area.viewport().width() >= area.widget().minimumSizeHint().width()


def test_the_view_is_fitted_again_when_the_canvas_changes_size(make_napari_viewer, qtbot):
    from qtpy.QtCore import QObject
    from qtpy.QtWidgets import QWidget

    from napari_medseg._napari.launch import make_viewer
    from napari_medseg._napari.views import _REFIT_NAME

    viewer = make_napari_viewer(show=True)
    window = _main_window(viewer)
    window.resize(1400, 900)
    make_viewer(viewer=viewer)
    refit = window.findChild(QObject, _REFIT_NAME)
    camera = viewer.scene.camera
    fits: list[float] = []
    viewer.events.reset_view.connect(lambda event: fits.append(camera.zoom))

    def resized(change) -> bool:
        """Do ``change``; wait until the canvas has another size and the refit ran."""
        size, count = tuple(viewer.canvas.size), len(fits)
        change()
        qtbot.waitUntil(lambda: tuple(viewer.canvas.size) != size, timeout=5_000)
        qtbot.waitUntil(lambda: not refit.timer.isActive(), timeout=5_000)
        return len(fits) > count

    # the window is made smaller: fitted to the smaller canvas
    before = camera.zoom
    assert resized(lambda: window.resize(1100, 650))
    assert camera.zoom < before
    # a dock opens below the canvas: fitted again
    panel = QWidget()
    panel.setMinimumHeight(200)
    assert resized(lambda: viewer.window.add_dock_widget(panel, name="notes", area="bottom"))

    # once the user zoomed, a resize keeps their view
    camera.zoom = zoomed = camera.zoom * 3
    assert not resized(lambda: window.resize(1300, 800))
    assert camera.zoom == pytest.approx(zoomed)
    # the Home button fits again, and resizes fit from then on
    viewer.reset_view()
    assert resized(lambda: window.resize(1400, 900))
    # (each fit is napari's own: the zoom is what reset_view gives)
    zoom = camera.zoom
    viewer.reset_view()
    assert camera.zoom == pytest.approx(zoom, rel=1e-6)
