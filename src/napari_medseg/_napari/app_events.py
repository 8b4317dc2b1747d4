"""Signals between the plugin's widgets about what happened outside any one of them.

* ``model_published(name)``: the Train dock published a fine-tuned model; the Segment
  widgets list it at once, so it can be chosen without reopening them.
* ``labels_saved(path)``: a labels layer was written (the Save widget's NIfTI with its
  sidecar); the Train dock offers it as a corrected label map.
"""

from __future__ import annotations

from qtpy.QtCore import QObject, Signal


class AppEvents(QObject):
    """The plugin's application-wide signals (see the module notes)."""

    model_published = Signal(str)
    labels_saved = Signal(str)


_EVENTS: AppEvents | None = None


def app_events() -> AppEvents:
    """The application's one :class:`AppEvents` (made on first use, in the main thread)."""
    global _EVENTS
    if _EVENTS is None:
        _EVENTS = AppEvents()
    return _EVENTS
