"""A live plot of a fine-tuning run: training loss and validation Dice per epoch (QPainter).

Two lines over the epochs: the mean validation Dice on a fixed 0-1 scale (epoch 0 is the
parent model, drawn as a dashed level so "better than the parent" reads at a glance),
and the training loss scaled to its largest value. Painted with ``QPainter`` so the
plugin needs no plotting library (as :mod:`~napari_medseg._napari.widgets.volume_chart`).
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPalette, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

DICE_COLOUR, LOSS_COLOUR = QColor("#4caf50"), QColor("#ff9800")
MARGIN = 8


class TrainingChart(QWidget):
    """Validation Dice and training loss per epoch; :meth:`add` appends an epoch."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.epochs: list[int] = []
        self.dice: list[float] = []
        self.loss: list[float] = []
        self.last_epoch = 1
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(120)
        self.setToolTip(
            "Green: mean validation Dice (0-1; dashed: the parent model). "
            "Orange: training loss (relative to its largest value)."
        )

    def sizeHint(self) -> QSize:
        return QSize(240, 140)

    def clear(self, epochs: int = 1) -> None:
        """Forget the points; the x axis spans ``epochs`` epochs."""
        self.epochs, self.dice, self.loss = [], [], []
        self.last_epoch = max(1, int(epochs))
        self.update()

    def add(self, epoch: int, mean_dice: float, loss: float) -> None:
        """One epoch's point (epoch 0: the parent, whose loss is NaN)."""
        self.epochs.append(int(epoch))
        self.dice.append(float(mean_dice))
        self.loss.append(float(loss))
        self.update()

    @property
    def parent_dice(self) -> float:
        """The parent's Dice (NaN before epoch 0 arrived)."""
        return self.dice[self.epochs.index(0)] if 0 in self.epochs else float("nan")

    def _point(self, epoch: int, value: float) -> QPointF:
        width = self.width() - 2 * MARGIN
        height = self.height() - 2 * MARGIN
        x = MARGIN + width * epoch / self.last_epoch
        y = MARGIN + height * (1.0 - min(1.0, max(0.0, value)))
        return QPointF(x, y)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        frame = self.palette().color(QPalette.ColorRole.Mid)
        painter.setPen(QPen(frame, 1))
        painter.drawRect(MARGIN, MARGIN, self.width() - 2 * MARGIN, self.height() - 2 * MARGIN)
        if not self.epochs:
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no run yet")
            return
        if not math.isnan(self.parent_dice):
            pen = QPen(DICE_COLOUR, 1, Qt.PenStyle.DashLine)
            painter.setPen(pen)
            left, right = self._point(0, self.parent_dice), self._point(self.last_epoch, 0)
            painter.drawLine(left, QPointF(right.x(), left.y()))
        finite = [v for v in self.loss if not math.isnan(v)]
        top = max(finite) if finite else 1.0
        for values, colour, scale in ((self.dice, DICE_COLOUR, 1.0), (self.loss, LOSS_COLOUR, top)):
            points = [
                self._point(e, v / scale)
                for e, v in zip(self.epochs, values, strict=True)
                if not math.isnan(v) and scale > 0
            ]
            painter.setPen(QPen(colour, 2))
            for a, b in zip(points, points[1:], strict=False):
                painter.drawLine(a, b)
            for point in points:
                painter.drawEllipse(point, 2.5, 2.5)


__all__ = ["TrainingChart"]
