"""Whether a labels layer has edits that are not saved, shown in its name.

A labels layer with unsaved edits is named ``"<name> *"`` (the marker every
desktop editor uses); saving removes the marker. What counts as an edit:

- a napari paint, fill or erase stroke, and every label-tool change (they go
  through napari's undo history and emit ``events.paint``);
- undo and redo (napari emits only ``set_data`` for them, as it does on any
  refresh, so an edit is recognised by the undo/redo history having changed);
- the whole data replaced (``events.data``), e.g. a new segmentation.

An undo back to the saved state still counts as an edit (the layer stays
marked): the data is not compared with the file.

napari keeps layer names unique by adding `` [n]`` (a second ``"liver"`` becomes
``"liver [1]"``). The number goes before the marker: when another layer holds
``"liver *"`` already, an edit names the layer ``"liver [1] *"``, not napari's
``"liver * [1]"``, so marker and numbers never pile up over edits and saves. A
name napari numbered after the marker (``"liver * [1]"``) is still recognised:
:func:`base_name` gives ``"liver [1]"``.

The state (modified or not, the last file written, how many edits were made)
is kept per layer object in this module, not in ``layer.metadata``: napari's
*Duplicate layer* gives the copy the same metadata dict, and an edit of the copy
must not mark the original (nor a save of one clear the other).
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass
from typing import Any

from napari_medseg._napari.history import history_key

#: Appended to the name of a layer with unsaved edits.
UNSAVED_MARKER = " *"

#: A name carrying the marker, maybe followed by the `` [n]`` napari adds to keep names unique.
_MARKED = re.compile(r"^(?P<base>.*) \*(?P<suffix> \[\d+\])?$", re.DOTALL)
#: A name ending in napari's `` [n]``.
_NUMBERED = re.compile(r"^(?P<stem>.*) \[(?P<n>\d+)\]$", re.DOTALL)


@dataclass
class _EditState:
    modified: bool = False
    saved_path: str = ""
    edits: int = 0
    model_edits: int | None = None  # edits when a model last wrote the whole layer


#: layer -> its state (dropped with the layer)
_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: layer -> its watcher (kept alive as long as the layer: napari holds bound methods weakly)
_WATCHERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _state(layer: Any) -> _EditState:
    state = _STATES.get(layer)
    if state is None:
        state = _STATES[layer] = _EditState()
    return state


def _has_marker(name: str) -> bool:
    return _MARKED.match(name) is not None


def base_name(layer: Any) -> str:
    """The layer's name without the unsaved marker (``"a * [1]"`` -> ``"a [1]"``)."""
    name = str(layer.name)
    marked = _MARKED.match(name)
    if marked is None:
        return name
    return marked.group("base") + (marked.group("suffix") or "")


def _next_number(name: str) -> str:
    """``"a"`` -> ``"a [1]"``, ``"a [1]"`` -> ``"a [2]"`` (napari's numbering)."""
    numbered = _NUMBERED.match(name)
    if numbered is None:
        return f"{name} [1]"
    return f"{numbered.group('stem')} [{int(numbered.group('n')) + 1}]"


def _rename(layer: Any, base: str, marked: bool) -> None:
    """Name the layer ``base`` (plus the marker when ``marked``), numbered before the marker.

    napari renames a layer whose new name another layer of its viewer holds (``"a *"``
    -> ``"a * [1]"``); then the next number goes into ``base`` instead (``"a [1] *"``).
    """
    for _ in range(10_000):
        wanted = base + UNSAVED_MARKER if marked else base
        layer.name = wanted
        if str(layer.name) == wanted:
            return
        base = _next_number(base)


def is_modified(layer: Any) -> bool:
    """Whether the layer has edits that are not saved."""
    state = _STATES.get(layer)
    return bool(state is not None and state.modified)


def saved_path(layer: Any) -> str:
    """The file the layer was last saved to ("" if never)."""
    state = _STATES.get(layer)
    return state.saved_path if state is not None else ""


def edit_count(layer: Any) -> int:
    """How many edits were recorded on the layer (see :func:`mark_saved`)."""
    state = _STATES.get(layer)
    return state.edits if state is not None else 0


def mark_modified(layer: Any) -> None:
    """Record an unsaved edit and add the marker to the layer's name."""
    state = _state(layer)
    state.modified = True
    state.edits += 1
    if not _has_marker(str(layer.name)):
        _rename(layer, base_name(layer), marked=True)


def mark_model_output(layer: Any) -> None:
    """Record that a model just wrote the layer's labels (see :func:`edited_since_model`)."""
    state = _state(layer)
    state.model_edits = state.edits


def edited_since_model(layer: Any) -> bool:
    """Whether the layer was edited (brush, tools, undo) after a model last wrote it.

    False for layers no model wrote. Files record such labels as semi-automatic.
    """
    state = _STATES.get(layer)
    return state is not None and state.model_edits is not None and state.edits > state.model_edits


def mark_saved(layer: Any, path: str = "", *, edits: int | None = None) -> bool:
    """Record that the layer's data is saved (to ``path``) and drop the marker.

    Parameters
    ----------
    layer : napari.layers.Labels
    path : str
        The file written (remembered by :func:`saved_path`).
    edits : int, optional
        :func:`edit_count` when the written data was taken from the layer. When
        the layer was edited after that (a save that runs in a worker while the
        user paints), only ``path`` is recorded: the newer edits are not in the
        file, so the layer stays marked.

    Returns
    -------
    bool
        Whether the layer is now marked as saved.
    """
    state = _state(layer)
    if path:
        state.saved_path = str(path)
    if edits is not None and edits != state.edits:
        return False
    state.modified = False
    if _has_marker(str(layer.name)):
        _rename(layer, base_name(layer), marked=False)
    return True


class _Watcher:
    """Connects a layer's events to :func:`mark_modified`."""

    def __init__(self, layer: Any) -> None:
        self.history = history_key(layer)
        layer.events.paint.connect(self.on_edit)
        layer.events.data.connect(self.on_edit)
        layer.events.set_data.connect(self.on_set_data)

    def on_edit(self, event: Any) -> None:
        layer = event.source
        self.history = history_key(layer)
        mark_modified(layer)

    def on_set_data(self, event: Any) -> None:
        layer = event.source
        key = history_key(layer)
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
    "edit_count",
    "is_modified",
    "mark_modified",
    "mark_saved",
    "saved_path",
    "track_edits",
]
