"""A dock widget's content in a vertical scroll area, so a dock never forces the window's height.

A QMainWindow is at least as tall as the minimum heights of the docks stacked in one
area (tabbed docks count with the tallest of their tabs) plus its menu and status
bars. A widget laid out directly in its dock asks for its whole content's height
(the Label tools about 550 px), which pushed napari's window past a 768 px screen.
Laid out inside :func:`scroll_body`, it asks for a few lines of height only and
scrolls when the dock is shorter than its content; it still asks for its whole
content's width (no horizontal scrolling) and, when there is room, its whole height.
"""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

#: Lines of text a scrolling dock keeps visible at its smallest.
MIN_VISIBLE_LINES = 6


class VerticalScrollArea(QScrollArea):
    """A scroll area that scrolls vertically only and is as wide as its content.

    Its minimum height is :data:`MIN_VISIBLE_LINES` lines of text (or the content's
    minimum height when that is less); its preferred size is the content's, plus the
    scroll bar.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def _extra_width(self) -> int:
        return self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

    def minimumSizeHint(self) -> QSize:
        body = self.widget()
        if body is None:
            return super().minimumSizeHint()
        content = body.minimumSizeHint()
        lines = self.fontMetrics().lineSpacing() * MIN_VISIBLE_LINES
        return QSize(content.width() + self._extra_width(), min(content.height(), lines))

    def sizeHint(self) -> QSize:
        body = self.widget()
        if body is None:
            return super().sizeHint()
        content = body.sizeHint().expandedTo(body.minimumSizeHint())
        return QSize(content.width() + self._extra_width(), content.height())


def scroll_body(widget: QWidget) -> QVBoxLayout:
    """Give ``widget`` a vertical scroll area filling it; return the layout inside it.

    Lay the widget's content out in the returned layout. ``widget.layout()`` is the
    outer layout (the scroll area, then whatever is added after it, such as buttons
    that must stay in sight).

    Parameters
    ----------
    widget : QWidget
        A widget without a layout yet.

    Returns
    -------
    QVBoxLayout
        The layout of the scrolled body.
    """
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    area = VerticalScrollArea(widget)
    body = QWidget(area)
    body.setObjectName("scroll_body")
    area.setWidget(body)
    outer.addWidget(area, 1)
    return QVBoxLayout(body)


__all__ = ["MIN_VISIBLE_LINES", "VerticalScrollArea", "scroll_body"]


def scrolled_with_footer(
    widget: QWidget, boxes: list[QWidget], buttons: list[QWidget], below: list[QWidget]
) -> None:
    """Lay a job widget out: ``boxes`` (its choices) scroll; ``buttons`` in one row and
    ``below`` them (progress, status...) stay in sight under the scroll area.

    Parameters
    ----------
    widget : QWidget
        A widget without a layout yet.
    boxes, buttons, below : list of QWidget
    """
    from qtpy.QtWidgets import QHBoxLayout

    layout = scroll_body(widget)
    for box in boxes:
        layout.addWidget(box)
    layout.addStretch(1)
    footer = QVBoxLayout()
    footer.setContentsMargins(9, 0, 9, 9)
    row = QHBoxLayout()
    for button in buttons:
        row.addWidget(button)
    footer.addLayout(row)
    for item in below:
        footer.addWidget(item)
    widget.layout().addLayout(footer)
