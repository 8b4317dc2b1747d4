"""Whether a labels layer has edits that are not saved, shown in its name.

A labels layer with unsaved edits is named ``"<name> *"`` (the marker every
desktop editor uses); saving removes the marker. What counts as an edit:

- a napari paint, fill or erase stroke, and every label-tool change (they go
  through napari's undo history and emit ``events.paint``);
- undo and redo (napari emits only ``set_data`` for them, as it does on any
  refresh, so an edit is recognised by the undo/redo history having changed);
- the whole data replaced (``events.data``), e.g. a new segmentation.

The state lives in ``layer.metadata["medseg"]``: ``modified`` (bool) and
``saved_path`` (the last file written, "" if none).
"""

from __future__ import annotations

import weakref
from typing import Any

#: Appended to the name of a layer with unsaved edits.
UNSAVED_MARKER = " *"

#: layer -> its watcher (kept alive as long as the layer: napari holds bound methods weakly)
_WATCHERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _state(layer: Any) -> dict[str, Any]:
    from napari_medseg._napari.layers import MEDSEG_KEY

    if layer.metadata is None:
        layer.metadata = {}
    return layer.metadata.setdefault(MEDSEG_KEY, {})


def base_name(layer: Any) -> str:
    """The layer's name without the unsaved marker."""
    name = str(layer.name)
    return name[: -len(UNSAVED_MARKER)] if name.endswith(UNSAVED_MARKER) else name


def is_modified(layer: Any) -> bool:
    """Whether the layer has edits that are not saved."""
    from napari_medseg._napari.layers import MEDSEG_KEY

    return bool((layer.metadata or {}).get(MEDSEG_KEY, {}).get("modified", False))


def saved_path(layer: Any) -> str:
    """The file the layer was last saved to ("" if never)."""
    from napari_medseg._napari.layers import MEDSEG_KEY

    return str((layer.metadata or {}).get(MEDSEG_KEY, {}).get("saved_path", "") or "")


def mark_modified(layer: Any) -> None:
    """Record that the layer has unsaved edits and add the marker to its name."""
    _state(layer)["modified"] = True
    if not str(layer.name).endswith(UNSAVED_MARKER):
        layer.name = base_name(layer) + UNSAVED_MARKER


def mark_saved(layer: Any, path: str = "") -> None:
    """Record that the layer's data is saved (to ``path``) and drop the marker."""
    state = _state(layer)
    state["modified"] = False
    if path:
        state["saved_path"] = str(path)
    if str(layer.name).endswith(UNSAVED_MARKER):
        layer.name = base_name(layer)


def _history_key(layer: Any) -> tuple:
    undo = getattr(layer, "_undo_history", ())
    redo = getattr(layer, "_redo_history", ())
    return (len(undo), len(redo), id(undo[-1]) if undo else 0, id(redo[-1]) if redo else 0)


class _Watcher:
    """Connects a layer's events to :func:`mark_modified`."""

    def __init__(self, layer: Any) -> None:
        self.history = _history_key(layer)
        layer.events.paint.connect(self.on_edit)
        layer.events.data.connect(self.on_edit)
        layer.events.set_data.connect(self.on_set_data)

    def on_edit(self, event: Any) -> None:
        layer = event.source
        self.history = _history_key(layer)
        mark_modified(layer)

    def on_set_data(self, event: Any) -> None:
        layer = event.source
        key = _history_key(layer)
        if key != self.history:  # undo or redo moved an item between the histories
            self.history = key
            mark_modified(layer)


def track_edits(layer: Any) -> None:
    """Watch a labels layer so that every edit marks it modified (idempotent)."""
    if layer not in _WATCHERS:
        _WATCHERS[layer] = _Watcher(layer)


__all__ = [
    "UNSAVED_MARKER",
    "base_name",
    "is_modified",
    "mark_modified",
    "mark_saved",
    "saved_path",
    "track_edits",
]
