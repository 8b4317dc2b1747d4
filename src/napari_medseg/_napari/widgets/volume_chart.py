"""A horizontal bar chart of the volume of each label, in the label colours (QPainter).

One bar per label: the name on the left, a bar whose length is the volume relative
to the largest, and the volume in mL at its end. Painted with ``QPainter`` so the
plugin needs no plotting library.

The chart asks for the height of all its bars (at most :data:`MAX_ROWS_SHOWN`) and
gives way in a short dock down to :data:`MIN_ROWS_SHOWN` bars, painting as many as
fit and saying how many more there are: the label table above it keeps its rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qtpy.QtCore import QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPalette
from qtpy.QtWidgets import QSizePolicy, QWidget

#: Pixel height of one bar row.
ROW_HEIGHT = 20
#: Bars shown before the chart asks for a scroll area's worth of height.
MAX_ROWS_SHOWN = 12
#: Bars the chart keeps room for when the dock is short.
MIN_ROWS_SHOWN = 4
#: Pixels above and below the bars.
MARGIN = 4


@dataclass(frozen=True)
class Bar:
    """One bar: a label's name, volume (mL) and colour (``"#rrggbb"``)."""

    label: int
    name: str
    volume_ml: float
    color: str


def format_ml(volume_ml: float) -> str:
    """A volume for the chart: 3 significant digits, at least 2 decimals below 10 mL."""
    if not math.isfinite(volume_ml):
        return "-"
    if abs(volume_ml) < 10:
        return f"{volume_ml:.2f} mL"
    return f"{volume_ml:.1f} mL" if abs(volume_ml) < 1000 else f"{volume_ml:.0f} mL"


class VolumeChart(QWidget):
    """Bar chart of label volumes; :meth:`set_bars` replaces what it shows."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bars: list[Bar] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("Volume of each label (mL)")
        self._update_height()

    def set_bars(self, bars: list[Bar]) -> None:
        """Show these bars (in the given order)."""
        self.bars = list(bars)
        self._update_height()
        self.update()

    def _update_height(self) -> None:
        rows = max(1, min(len(self.bars), MAX_ROWS_SHOWN))
        self.setMinimumHeight(min(rows, MIN_ROWS_SHOWN) * ROW_HEIGHT + 2 * MARGIN)
        self.setMaximumHeight(rows * ROW_HEIGHT + 2 * MARGIN)
        self.updateGeometry()

    def rows_shown(self) -> int:
        """How many bars are painted at the chart's height now.

        At most :data:`MAX_ROWS_SHOWN` rows fit; when bars are left over, the last
        row says how many.
        """
        rows = min(MAX_ROWS_SHOWN, max(1, (self.height() - 2 * MARGIN) // ROW_HEIGHT))
        if len(self.bars) > rows:
            rows = max(1, rows - 1)
        return min(len(self.bars), rows)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        # the fewest rows: a scrolling dock sizes its content to its preferred height,
        # so a taller hint would scroll the table away; it grows into the room left
        return QSize(240, self.minimumHeight())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(120, self.minimumHeight())

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        try:
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, painter: QPainter) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text_color = self.palette().color(QPalette.ColorRole.WindowText)
        painter.setPen(text_color)
        if not self.bars:
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No labels")
            return
        metrics = painter.fontMetrics()
        shown = self.bars[: self.rows_shown()]
        name_width = min(
            max(metrics.horizontalAdvance(b.name) for b in shown) + 8, self.width() // 3
        )
        value_width = max(metrics.horizontalAdvance(format_ml(b.volume_ml)) for b in shown) + 8
        top = max((b.volume_ml for b in self.bars if math.isfinite(b.volume_ml)), default=0.0)
        room = max(self.width() - name_width - value_width - 8, 1)
        for row, bar in enumerate(shown):
            y = MARGIN + row * ROW_HEIGHT
            name_rect = QRectF(2, y, name_width - 6, ROW_HEIGHT)
            painter.setPen(text_color)
            elided = metrics.elidedText(bar.name, Qt.TextElideMode.ElideRight, name_width - 6)
            align = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
            painter.drawText(name_rect, int(align), elided)
            share = bar.volume_ml / top if top > 0 and math.isfinite(bar.volume_ml) else 0.0
            length = max(share * room, 1.0 if bar.volume_ml > 0 else 0.0)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(bar.color))
            painter.drawRect(QRectF(name_width, y + 3, length, ROW_HEIGHT - 6))
            painter.setPen(text_color)
            value_rect = QRectF(name_width + length + 4, y, value_width, ROW_HEIGHT)
            left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
            painter.drawText(value_rect, int(left), format_ml(bar.volume_ml))
        if len(self.bars) > len(shown):
            more = QRectF(name_width, MARGIN + len(shown) * ROW_HEIGHT, room, ROW_HEIGHT)
            painter.drawText(
                more,
                int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                f"+{len(self.bars) - len(shown)} more (in the table)",
            )


__all__ = ["MAX_ROWS_SHOWN", "MIN_ROWS_SHOWN", "Bar", "VolumeChart", "format_ml"]
