"""The Report dock widget fits a 1366x768 window: 8 label-table rows in sight, and the
table, the chart, the status and the buttons do not overlap (checked on the widgets'
own geometry in a real, shown main window; the screenshot is written for a look).
"""

from __future__ import annotations

import itertools

import numpy as np
from _helpers import dock, open_sample
from qtpy.QtCore import QPoint, QRect

from napari_medseg._napari.layers import labels_like
from napari_medseg._napari.widgets.report import MIN_ROWS_SHOWN

WAIT_MS = 30_000


def _ready(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: widget.report is not None and not widget.live.busy, timeout=WAIT_MS)


def _rect_in(widget, ancestor) -> QRect:
    return QRect(widget.mapTo(ancestor, QPoint(0, 0)), widget.size())


def test_the_docked_report_fits_a_1366x768_window(make_napari_viewer, qtbot, artifacts):
    """12 labels: the label table shows 8 rows or more, in sight without scrolling,
    and the table, the chart, the status and the buttons do not overlap."""
    viewer = make_napari_viewer(show=True)
    image, _ = open_sample(viewer, "chest_ct")
    from napari.layers import Layer

    organs = viewer.add_layer(Layer.create(*labels_like(image, name="organs")))
    data = np.zeros(organs.data.shape, np.uint8)
    for n in range(1, 13):
        data[2 + 3 * n : 4 + 3 * n, 20:60, 20:60] = n
    organs.data = data
    widget = dock(viewer, "Report")
    widget.set_layers(organs)
    window = viewer.window._qt_window
    window.resize(1366, 768)
    qtbot.waitUntil(lambda: window.size().height() == 768, timeout=WAIT_MS)
    _ready(qtbot, widget)
    qtbot.waitUntil(lambda: widget.table.rowCount() == 12, timeout=WAIT_MS)
    qtbot.wait(1)  # let the layouts settle (events only, no fixed sleep for results)

    table = widget.table
    row_height = table.verticalHeader().defaultSectionSize()
    assert table.viewport().height() >= MIN_ROWS_SHOWN * row_height
    # the rows are on screen: not clipped by the dock or a scroll area around them
    shown = table.viewport().visibleRegion().boundingRect()
    assert shown.height() >= MIN_ROWS_SHOWN * row_height
    assert table.rowAt(0) == 0 and table.rowAt(MIN_ROWS_SHOWN * row_height - 1) >= 7

    parts = {
        "table": table,
        "chart": widget.chart,
        "status": widget.status,
        "refresh": widget.refresh_button,
        "csv": widget.csv_button,
        "json": widget.json_button,
    }
    rects = {name: _rect_in(part, window) for name, part in parts.items()}
    dock_rect = _rect_in(widget, window)
    for name, part in parts.items():
        assert part.isVisible(), name
        assert dock_rect.contains(rects[name]), name
        assert rects[name].bottom() < window.height(), name
    for (a, ra), (b, rb) in itertools.combinations(rects.items(), 2):
        assert not ra.intersects(rb), (a, b, ra, rb)
    assert rects["chart"].bottom() < rects["refresh"].top()
    # the buttons are on screen too
    for name in ("refresh", "csv", "json"):
        assert not parts[name].visibleRegion().isEmpty(), name
    viewer.screenshot(str(artifacts / "report_1366x768.png"), canvas_only=False, flash=False)
