"""Window/level by mouse drag, as in 3D Slicer: a mode, and a modifier in any mode.

Two ways to drag the contrast of a CT or MR image on the canvas:

* **W/L mode** (the checkable "W/L drag" button of the CT window dock, or the ``W``
  key on the canvas): every left-drag adjusts the window; nothing paints, pans or
  rotates until the mode is switched off.
* **Ctrl + left-drag** (Cmd on macOS) in any mode, painting included, except a
  layer's transform mode (where napari itself uses Ctrl to scale about the centre).

The drag maps as Slicer's (:func:`napari_medseg.window_presets.dragged_window`):
right widens the window, up raises the level, one pixel = the image's value range
over the view's smaller side; Escape during the drag puts the window back. The
image adjusted is the selected image layer, or, when another kind of layer is
selected (painting on a labels layer), the top visible image under the cursor.
The contrast range grows with the window (napari's ``contrast_limits`` setter
widens ``contrast_limits_range``), and at the start of a drag it is widened to the
image's values, so a window opened narrower than the data (a file's DICOM window)
can be dragged out to all of them.

Why Ctrl: napari 0.9 gives Alt to the labels brush size (mouse move) and to the
zoom box (Alt-drag in pan/zoom mode), Shift to points/shapes selection and to the
3D plane drag (and the linked views' crosshair), and vispy's cameras pan or rotate
only on an unmodified drag (Shift pans in 3D); Ctrl is used only by mouse-wheel
slice scrolling (not a drag), Points' select mode (where Shift does the same) and
the transform box (left alone here). 3D Slicer also puts its alternative
window/level drag on Ctrl.

Why the vispy canvas: napari runs the viewer's drag callbacks *and then* the
selected layer's (``VispyCanvas._process_mouse_event``), whatever the first did, so
a viewer callback cannot keep a labels layer in paint mode from painting. The drag
is taken from the vispy ``SceneCanvas`` before napari sees it
(:func:`~napari_medseg._napari.history.scene_canvas`): a W/L drag reaches no layer,
overlay or camera. Moves without a button, the wheel and the other buttons pass
through untouched. No undo step is recorded (a window is a view setting).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal

from napari_medseg._napari.cursor_status import voxel_index
from napari_medseg._napari.history import scene_canvas, unwrapped_viewer
from napari_medseg._napari.layers import is_helper_layer
from napari_medseg.window_presets import dragged_window, window_limits

#: The key that switches the W/L mode on and off (napari 0.9 binds no plain W).
MODE_KEY = "W"
#: The modifier of a W/L drag in any mode (vispy's name; Qt's Control is Cmd on macOS).
MODIFIER = "Control"
#: The mouse button of a W/L drag (vispy: 1 left, 2 right, 3 middle).
BUTTON = 1


def is_image(layer: Any) -> bool:
    """A single-channel image layer a window applies to (RGB and tool helpers left out)."""
    import napari.layers

    return (
        isinstance(layer, napari.layers.Image)
        and not getattr(layer, "rgb", False)
        and not is_helper_layer(layer)
    )


def target_image(viewer: Any, world: Any | None = None) -> Any | None:
    """The image a W/L drag adjusts.

    The selected layer when it is an image; otherwise the top visible image whose
    voxels hold ``world`` (the cursor, napari world mm), else the top visible image.
    """
    active = viewer.layers.selection.active
    if active is not None and is_image(active):
        return active
    images = [layer for layer in reversed(viewer.layers) if is_image(layer) and layer.visible]
    if world is not None:
        for layer in images:
            if voxel_index(layer, world) is not None:
                return layer
    return images[0] if images else None


_VALUE_RANGES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def value_range(layer: Any) -> tuple[float, float]:
    """``(min, max)`` of an image layer's finite values (cached until its data changes).

    A multiscale image is measured on its coarsest level.
    """
    data = layer.data[-1] if getattr(layer, "multiscale", False) else layer.data
    cached = _VALUE_RANGES.get(layer)
    if cached is not None and cached[0] is data:
        return cached[1]
    array = np.asarray(data)
    if array.size == 0:
        found = (0.0, 1.0)
    elif array.dtype.kind != "f":
        found = (float(array.min()), float(array.max()))
    else:
        found = (float(np.nanmin(array)), float(np.nanmax(array)))
        if not all(np.isfinite(found)):  # infinities (or all NaN): the finite values
            finite = array[np.isfinite(array)]
            found = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    _VALUE_RANGES[layer] = (data, found)
    return found


def window_of(layer: Any) -> tuple[float, float]:
    """``(centre, width)`` of an image layer's contrast limits."""
    low, high = (float(v) for v in layer.contrast_limits)
    return (low + high) / 2.0, high - low


class _Drag:
    """One W/L drag in progress: the layer and where it started."""

    def __init__(self, layer: Any, pos: Any, view_pixels: float) -> None:
        self.layer = layer
        self.start = np.asarray(pos, dtype=float)[:2]
        self.window = window_of(layer)
        self.limits = tuple(layer.contrast_limits)
        self.cancelled = False
        self.range = value_range(layer)
        self.view_pixels = view_pixels
        low, high = (float(v) for v in layer.contrast_limits_range)
        wide = (min(low, self.range[0]), max(high, self.range[1]))
        if wide != (low, high):
            layer.contrast_limits_range = wide  # the limits stay (they lie inside)

    def move(self, pos: Any) -> tuple[float, float]:
        dx, dy = np.asarray(pos, dtype=float)[:2] - self.start
        center, width = dragged_window(
            *self.window, dx, dy, value_range=self.range, view_pixels=self.view_pixels
        )
        low, high = center - width / 2.0, center + width / 2.0
        if high <= low:  # a width below float resolution at this centre
            low, high = window_limits(center, width)
        self.layer.contrast_limits = (low, high)
        return center, width

    def cancel(self) -> None:
        """Put the window back as it was when the drag started (Escape, as in Slicer)."""
        self.cancelled = True
        self.layer.contrast_limits = self.limits


class WindowLevelTool(QObject):
    """The W/L drag of one viewer: its mode and the canvases it listens to.

    Made by :func:`install_window_level`; :func:`window_level_tool` finds it.

    Attributes
    ----------
    mode_changed : Signal(bool)
        The W/L mode was switched on or off.
    window_changed : Signal(object, float, float)
        A drag set ``(layer, centre, width)``.
    """

    mode_changed = Signal(bool)
    window_changed = Signal(object, float, float)

    def __init__(self, viewer: Any) -> None:
        super().__init__()
        self._viewer = weakref.ref(viewer)
        self._mode = False
        self._drag: _Drag | None = None
        self._canvases: list[weakref.ref] = []  # the vispy canvases listened to

    @property
    def viewer(self) -> Any | None:
        """The viewer (None once it is gone)."""
        return self._viewer()

    @property
    def mode(self) -> bool:
        """Whether every left-drag adjusts the window (not only Ctrl-drags)."""
        return self._mode

    def set_mode(self, on: bool) -> None:
        """Switch the W/L mode on or off."""
        on = bool(on)
        if on != self._mode:
            self._mode = on
            viewer = self.viewer
            if viewer is not None:
                viewer.status = (
                    f"W/L drag on: left-drag right widens the window, up raises the level "
                    f"({MODE_KEY} switches it off)"
                    if on
                    else "W/L drag off (Ctrl-drag still sets the window)"
                )
            self.mode_changed.emit(on)

    def toggle(self, *_: Any) -> None:
        """Switch the W/L mode over (the ``W`` key)."""
        self.set_mode(not self._mode)

    @property
    def dragging(self) -> bool:
        """Whether a W/L drag is in progress."""
        return self._drag is not None

    def attach(
        self, view: Any, model: Any | None = None, source_of: Callable[[Any], Any] | None = None
    ) -> bool:
        """Listen to the mouse on the canvas of ``view``.

        Parameters
        ----------
        view : napari.Viewer or QtViewer
            The viewer itself, or an extra view (a ``QtViewer``) of a layout.
        model : napari.components.ViewerModel, optional
            Whose layers a drag on that canvas adjusts (default: the view's own
            ``viewer``, or the viewer).
        source_of : callable, optional
            ``source_of(layer) -> layer``: the layer to adjust for the image found in
            ``model`` (an extra view showing copies of the viewer's layers adjusts
            the original, whose settings its copy follows).

        Returns
        -------
        bool
            False when the view has no canvas (a bare ``ViewerModel``) or is attached.
        """
        canvas = scene_canvas(view)
        if canvas is None or any(ref() is canvas for ref in self._canvases):
            return False
        model = model if model is not None else getattr(view, "viewer", None) or self.viewer
        model_ref = weakref.ref(unwrapped_viewer(model))
        self._canvases.append(weakref.ref(canvas))
        canvas.events.mouse_press.connect(
            lambda event: self._on_press(event, canvas, model_ref, source_of), position="first"
        )
        canvas.events.mouse_move.connect(self._on_move, position="first")
        canvas.events.mouse_release.connect(self._on_release, position="first")
        canvas.events.key_press.connect(self._on_key, position="first")
        return True

    # ------------------------------------------------------------------ vispy events
    def wants(self, model: Any, button: int, modifiers: Any) -> bool:
        """Whether a press of ``button`` with ``modifiers`` (vispy keys) starts a W/L drag."""
        if button != BUTTON:
            return False
        if self._mode:
            return True
        if MODIFIER not in modifiers:
            return False
        active = model.layers.selection.active
        return active is None or str(getattr(active, "mode", "")) != "transform"

    def _on_press(self, event: Any, canvas: Any, model_ref: Any, source_of: Any) -> None:
        model = model_ref()
        if model is None or event.handled or not self.wants(model, event.button, event.modifiers):
            return
        layer = target_image(model, model.cursor.position)
        if layer is not None and source_of is not None:
            layer = source_of(layer)
        if layer is None:
            return
        self._drag = _Drag(layer, event.pos, float(min(canvas.size)))
        event.handled = True
        event.blocked = True

    def _on_move(self, event: Any) -> None:
        if self._drag is None:
            return
        if BUTTON not in (event.buttons or ()):  # the release went elsewhere
            self._drag = None
            return
        drag = self._drag
        if not drag.cancelled:  # (a cancelled drag still keeps its moves from napari)
            center, width = drag.move(event.pos)
            self.window_changed.emit(drag.layer, center, width)
        event.handled = True
        event.blocked = True

    def _on_release(self, event: Any) -> None:
        if self._drag is None:
            return
        if event.button == BUTTON:
            self._drag = None
            event.handled = True
            event.blocked = True

    def _on_key(self, event: Any) -> None:
        drag = self._drag
        if drag is None or drag.cancelled or event.key != "Escape":
            return
        drag.cancel()
        self.window_changed.emit(drag.layer, *window_of(drag.layer))
        event.handled = True
        event.blocked = True


_TOOLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def window_level_tool(viewer: Any) -> WindowLevelTool | None:
    """The viewer's W/L drag (None before :func:`install_window_level`)."""
    return _TOOLS.get(unwrapped_viewer(viewer))


def install_window_level(viewer: Any) -> WindowLevelTool:
    """Give a viewer window/level by mouse drag (idempotent).

    Listens to the viewer's canvas (nothing to listen to for a ``ViewerModel``
    without a window: the tool then only keeps the mode) and binds :data:`MODE_KEY`.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer, or the public-only proxy napari hands a plugin widget.

    Returns
    -------
    WindowLevelTool
        The viewer's one tool; :meth:`WindowLevelTool.attach` adds an extra view.
    """
    viewer = unwrapped_viewer(viewer)
    tool = _TOOLS.get(viewer)
    if tool is None:
        tool = WindowLevelTool(viewer)
        _TOOLS[viewer] = tool
        tool.attach(viewer, viewer)
        tool_ref = weakref.ref(tool)

        def toggle(_viewer: Any) -> None:
            found = tool_ref()
            if found is not None:
                found.toggle()

        viewer.bind_key(MODE_KEY, toggle, overwrite=True)
    return tool


__all__ = [
    "BUTTON",
    "MODE_KEY",
    "MODIFIER",
    "WindowLevelTool",
    "install_window_level",
    "is_image",
    "target_image",
    "value_range",
    "window_level_tool",
    "window_of",
]
