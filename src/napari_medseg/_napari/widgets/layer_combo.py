"""A combo box of the viewer's layers kept in step with the layer list.

Widgets pick "the image layer", "the labels layer to replace"... from a
:class:`LayerCombo`: it lists the layers a filter accepts, refreshes when layers
are inserted, removed, reordered or renamed, and keeps the chosen layer (by
identity, not by name) across refreshes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QWidget

if TYPE_CHECKING:
    import napari


def is_layer(kind: str) -> Callable[[Any], bool]:
    """Filter for layers of one kind (``"image"``, ``"labels"``...); RGB images excluded."""
    import napari.layers

    cls = getattr(napari.layers, kind.capitalize())

    def accept(layer: Any) -> bool:
        return isinstance(layer, cls) and not getattr(layer, "rgb", False)

    return accept


def is_volume_layer(kind: str) -> Callable[[Any], bool]:
    """Filter for 3D single-channel layers of one kind (``"image"`` or ``"labels"``); a
    tool's helper layers (prompts, previews: :func:`~napari_medseg._napari.layers.is_helper_layer`)
    are left out."""
    from napari_medseg._napari.layers import is_helper_layer

    of_kind = is_layer(kind)

    def accept(layer: Any) -> bool:
        return (
            of_kind(layer)
            and layer.ndim == 3
            and not getattr(layer, "multiscale", False)
            and not is_helper_layer(layer)
        )

    return accept


class LayerCombo(QComboBox):
    """The viewer's layers that ``accept`` lets through, newest first.

    Parameters
    ----------
    viewer : napari.Viewer
    accept : callable
        ``accept(layer) -> bool``.
    none_text : str, optional
        A first entry that stands for "no layer" (e.g. ``"New layer"``).

    Signals
    -------
    layer_changed(object)
        The chosen layer (None for the ``none_text`` entry or an empty list).
    """

    layer_changed = Signal(object)

    def __init__(
        self,
        viewer: napari.Viewer,
        accept: Callable[[Any], bool],
        parent: QWidget | None = None,
        none_text: str | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.accept = accept
        self.none_text = none_text
        self._last: Any = None
        self.currentIndexChanged.connect(self._on_index)
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self.refresh)
        self.refresh()

    def layer(self) -> Any:
        """The chosen layer, or None."""
        return self.currentData() if self.currentIndex() >= 0 else None

    def set_layer(self, layer: Any) -> None:
        """Choose ``layer`` (None: the ``none_text`` entry); unknown layers are ignored."""
        for index in range(self.count()):
            if self.itemData(index) is layer:
                self.setCurrentIndex(index)
                return

    def refresh(self, *_: Any) -> None:
        """List the accepted layers again, keeping the chosen one when it is still there."""
        current = self._last
        layers = [layer for layer in reversed(self.viewer.layers) if self.accept(layer)]
        self.blockSignals(True)
        try:
            self.clear()
            if self.none_text is not None:
                self.addItem(self.none_text, None)
            for layer in layers:
                self.addItem(layer.name, layer)
            index = next((i for i in range(self.count()) if self.itemData(i) is current), 0)
            self.setCurrentIndex(index if self.count() else -1)
        finally:
            self.blockSignals(False)
        self._on_index()

    def _on_index(self, *_: Any) -> None:
        layer = self.layer()
        if layer is not self._last:
            self._last = layer
            self.layer_changed.emit(layer)


__all__ = ["LayerCombo", "is_layer", "is_volume_layer"]
