"""Linked axial, coronal and sagittal views of the same layers, with a crosshair.

napari shows one plane at a time (its issue #662 on linked orthogonal views is open
since 2019). This module adds the two missing planes the way napari's own
``multiple_viewer_widget`` example does, through public API: two more
:class:`napari.components.ViewerModel` instances drawn by :class:`napari.qt.QtViewer`
canvases in a dock under napari's own canvas, which stays the axial view (and turns 3D
with napari's 2D/3D button). Each view follows :data:`~napari_medseg._napari.views.VIEWS`
(axial radiological; superior up in coronal and sagittal; patient right on the screen's
left) through :func:`~napari_medseg._napari.views.set_view`, for a scan in any voxel order
or oblique: the layers carry their affines into the (S, P, L) world, so the views are
planes of the world.

Shared layers
-------------
Every Image and Labels layer of the viewer gets a *mirror* in each extra view:
``Layer.create(*layer.as_layer_data_tuple())``, which holds the **same data array**
(no copy). The viewer's layer is the one the docks, the report and Save see; its mirrors
follow it:

* its display properties (opacity, colormap, contrast limits, visibility, affine,
  the Labels mode, selected label, brush size, preserve-labels...) are copied to the
  mirrors as they change, and its name, order, selection and removal;
* a new data array (a Segment run, Open) is handed to the mirrors; a stroke or an
  undo refreshes the other views (coalesced: one refresh per view per event loop turn);
* a stroke painted in an extra view changes the shared array; its undo item is moved
  onto the viewer's layer (:func:`~napari_medseg._napari.history.move_newest_history_item`)
  and announced there as napari announces its own strokes, so there is **one undo
  history**, and the segment list, the live report and the unsaved marker follow edits
  made in any view; Ctrl+Z / Ctrl+Shift+Z in an extra view undo and redo on that
  history; the paint filters of the viewer's layer (the HU-range brush, locked labels)
  apply to strokes in every view (:func:`~napari_medseg._napari.history.follow_paint_filters`).

Crosshair
---------
One world point ``(s, p, l)`` mm: the axial view's slice gives ``s``, the coronal's ``p``,
the sagittal's ``l``. Each view draws the two lines through it in its plane, over its
layers (:class:`~napari_medseg._napari.history.SceneLines`: a vispy line in the view's
scene, moved by rewriting its vertex buffer; a napari Vectors layer rebuilt its shader on
every move, which made a crosshair move miss the 100 ms goal). Scrolling changes only that
view's slice (and so moves the lines in the other two); a click without dragging (in a
mode that does not paint: napari's pan/zoom, or while holding Space, napari's own
hold-to-pan) or a Shift+drag in pan/zoom mode moves the point under the mouse: the other
views go to its slices (napari snaps a slice to the nearest step, so the crosshair lies
within half a voxel of the click). :meth:`LinkedViews.set_crosshair` does the same from
code.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

from napari_medseg._napari import history
from napari_medseg._napari.views import VIEWS, refit_on_resize, set_view

if TYPE_CHECKING:
    import napari

#: Colour and opacity of the crosshair's lines.
CROSSHAIR_COLOR, CROSSHAIR_OPACITY = "#ffdd00", 0.8
#: The planes of the extra views, in the dock from left to right.
EXTRA_PLANES = ("coronal", "sagittal")
#: Name of the dock that holds them.
DOCK_NAME = "Linked views"
#: Narrowest an extra view gets, pixels.
MIN_VIEW_WIDTH = 150
#: Share of the window's height the dock takes when it opens.
DOCK_SHARE = 0.45
#: Layer events that are not display properties to copy.
_NOT_COPIED = frozenset({
    "data", "name", "thumbnail", "extent", "loaded", "highlight", "set_data", "paint",
    "labels_update", "features", "feature_defaults", "properties", "current_properties",
    "reload", "refresh", "metadata", "source", "status", "cursor", "cursor_size",
    "help", "interactive", "_overlays", "selected_data", "editable",
})
#: Mouse travel (screen pixels) under which a press-release is a click, not a drag.
_CLICK_PIXELS = 4.0


def _is_labels(layer: Any) -> bool:
    from napari.layers import Labels

    return isinstance(layer, Labels)


def _is_mirrored(layer: Any) -> bool:
    from napari.layers import Image

    return isinstance(layer, Image) or _is_labels(layer)


def _copied_properties(layer: Any) -> list[str]:
    """Names of ``layer``'s settable properties that have an event of the same name."""
    kind = type(layer)
    names = []
    for name in layer.events.emitters:
        if name in _NOT_COPIED or name.startswith("_"):
            continue
        attribute = getattr(kind, name, None)
        if isinstance(attribute, property) and attribute.fset is not None:
            names.append(name)
    return names


class _View:
    """One extra plane: its viewer model, its canvas and the mirrors it shows."""

    def __init__(self, plane: str) -> None:
        from napari.components import ViewerModel
        from napari.qt import QtViewer

        self.plane = plane
        self.model = ViewerModel(title=plane)
        qt_viewer = QtViewer(self.model, show_welcome_screen=False)
        # Qt owns the canvas (it goes with the window); Python only looks at it
        self._canvas_ref = weakref.ref(qt_viewer)
        self.mirrors: dict[int, Any] = {}  # id(viewer layer) -> mirror layer
        self.widget = QWidget()
        layout = QVBoxLayout(self.widget)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        title = QLabel(plane.capitalize())
        title.setObjectName(f"linked_{plane}_title")
        layout.addWidget(title)
        layout.addWidget(qt_viewer, 1)
        # narrower than napari's slider row asks (237 px): both views fit under the
        # canvas of a 1366 px wide window with the docks beside it
        for widget in (qt_viewer, self.widget):
            widget.setMinimumWidth(MIN_VIEW_WIDTH)

    @property
    def qt_viewer(self) -> Any:
        """The view's ``napari.qt.QtViewer`` (None once its window is gone)."""
        return self._canvas_ref()


class LinkedViews(QSplitter):
    """Coronal and sagittal views beside the viewer's own (axial) canvas.

    Build it with :func:`show_linked_views`, which docks it; :func:`hide_linked_views`
    removes it and returns napari to its single view.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer whose layers the views show.
    """

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.setObjectName("napari_medseg_linked_views")
        self.views = {plane: _View(plane) for plane in EXTRA_PLANES}
        for view in self.views.values():
            self.addWidget(view.widget)
        self._syncing = False
        # id(layer): whether the viewer's layer itself is refreshed too (a stroke made in
        # an extra view), not only its mirrors
        self._pending_refresh: dict[int, bool] = {}
        self._last_set_data: dict[int, tuple] = {}  # id(layer): (its slice, history key)
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(0)
        self._refresh_timer.timeout.connect(self._refresh_pending)
        self._disconnects: list[Callable[[], None]] = []
        self._crosshair_lines: dict[str, Any] = {}  # plane: SceneLines
        self._crosshair_segments: dict[str, np.ndarray] = {}  # plane: world (2, 2, ndim)
        self._drawing = False
        self._closed = False

        for index, layer in enumerate(viewer.layers):
            self._add_layer(layer, index)
        self._listen(viewer.layers.events.inserted, self._on_inserted)
        self._listen(viewer.layers.events.removed, self._on_removed)
        self._listen(viewer.layers.events.moved, self._on_moved)
        self._listen(viewer.layers.selection.events.active, self._on_active)
        self._listen(viewer.dims.events.ndim, self._on_ndim)
        self._listen(viewer.dims.events.point, self._on_point)
        for view in self.views.values():
            self._listen(view.model.dims.events.point, self._on_point)
            view.model.mouse_drag_callbacks.append(self._crosshair_drag)
        viewer.mouse_drag_callbacks.append(self._crosshair_drag)
        self._disconnects.append(lambda: _remove(viewer.mouse_drag_callbacks,
                                                 self._crosshair_drag))
        for model in self.models().values():
            self._listen(model.dims.events.ndisplay, self._on_point)
            self._listen(model.dims.events.order, self._on_point)
        for view in self.views.values():
            refit_on_resize(view.model, view.widget)
        self._attach_window_level()
        for view in self.views.values():  # hovering an extra view: its status shows
            self._listen(view.model.events.status, self._on_status)
        # the window closing takes the views with it: let go of the viewer then
        self.destroyed.connect(_forget(weakref.ref(self), _key_of(viewer)))
        self._on_active()
        self._orient_all()
        self._draw_crosshair()

    # -- public ------------------------------------------------------------------------
    def models(self) -> dict[str, Any]:
        """``{plane: viewer model}`` of all three views (axial is the napari viewer)."""
        return {"axial": self.viewer, **{p: v.model for p, v in self.views.items()}}

    def mirror_of(self, layer: Any, plane: str) -> Any:
        """The layer showing ``layer`` in the ``plane`` view (``layer`` itself for axial)."""
        if plane == "axial":
            return layer
        return self.views[plane].mirrors[id(layer)]

    def crosshair(self) -> np.ndarray:
        """The crosshair, world ``(S, P, L)`` mm (the last three world axes)."""
        offset = self.viewer.dims.ndim - 3
        models = self.models()
        return np.array([
            models[plane].dims.point[offset + VIEWS[plane][0]] for plane in VIEWS
        ], dtype=float)

    def set_crosshair(self, world: Any, *, moved_in: str | None = None) -> np.ndarray:
        """Move the crosshair to ``world`` (the last three world coordinates, mm).

        Every view except ``moved_in`` (whose slice stays) goes to the slice through the
        point, snapped by napari to its nearest step. Returns the crosshair as it lands.
        """
        world = np.asarray(world, dtype=float)[-3:]
        offset = self.viewer.dims.ndim - 3
        drawing, self._drawing = self._drawing, True  # the lines are drawn once, below
        try:
            for plane, model in self.models().items():
                if plane == moved_in or model.dims.ndim < 3:
                    continue
                axis = offset + VIEWS[plane][0]
                model.dims.set_point(axis, float(world[VIEWS[plane][0]]))
        finally:
            self._drawing = drawing
        self._draw_crosshair()
        return self.crosshair()

    def crosshair_segments(self, plane: str) -> np.ndarray | None:
        """The two lines ``plane``'s view draws, world ``(2 lines, start/end, ndim)`` mm
        (None while the view shows no crosshair: 3D, or no layer)."""
        return self._crosshair_segments.get(plane)

    def close_views(self) -> None:
        """Disconnect from the viewer and its layers; remove the crosshair."""
        if self._closed:
            return
        self._closed = True
        for disconnect in reversed(self._disconnects):
            disconnect()
        self._disconnects.clear()
        self._refresh_timer.stop()
        for lines in self._crosshair_lines.values():
            lines.remove()
        self._crosshair_lines.clear()
        self._crosshair_segments.clear()
        for view in self.views.values():
            view.model.layers.clear()
            qt_viewer = view.qt_viewer
            if qt_viewer is not None:  # gone with this function's reference
                qt_viewer.close()
                qt_viewer.setParent(None)
                qt_viewer.deleteLater()

    def _attach_window_level(self) -> None:
        """Window/level by Ctrl+drag (or the W/L mode) in the extra views too, on the
        viewer's layer of the image dragged (its mirrors follow its contrast)."""
        from napari_medseg._napari.window_level import install_window_level

        tool = install_window_level(self.viewer)
        for view in self.views.values():
            if view.qt_viewer is not None:
                tool.attach(view.qt_viewer, view.model, source_of=self.source_of)

    def source_of(self, mirror: Any) -> Any:
        """The viewer's layer a mirror shows (``mirror`` itself when it is not one)."""
        for layer in self.viewer.layers:
            if any(view.mirrors.get(id(layer)) is mirror for view in self.views.values()):
                return layer
        return mirror

    def _on_status(self, event: Any) -> None:
        self.viewer.status = event.value

    # -- layers ------------------------------------------------------------------------
    def _listen(self, emitter: Any, callback: Callable) -> None:
        emitter.connect(callback)
        self._disconnects.append(lambda: emitter.disconnect(callback))

    def _on_inserted(self, event: Any) -> None:
        self._add_layer(event.value, event.index)
        self._orient_all()
        self._draw_crosshair()

    def _add_layer(self, layer: Any, index: int) -> None:
        if not _is_mirrored(layer):
            return
        from napari.layers import Layer

        position = sum(1 for other in list(self.viewer.layers)[:index] if _is_mirrored(other))
        for view in self.views.values():
            mirror = Layer.create(*layer.as_layer_data_tuple())
            view.mirrors[id(layer)] = mirror
            view.model.layers.insert(position, mirror)
            if _is_labels(layer):
                self._link_labels(layer, mirror)
        for name in _copied_properties(layer):
            self._listen(getattr(layer.events, name),
                         _PropertyCopy(self, layer, name))
        self._listen(layer.events.name, _PropertyCopy(self, layer, "name"))
        self._listen(layer.events.data, self._on_data)
        if _is_labels(layer):
            for emitter in (layer.events.paint, layer.events.labels_update):
                self._listen(emitter, self._on_edited)
            self._listen(layer.events.set_data, self._on_set_data)
            self._remember_slice(layer)

    def _link_labels(self, layer: Any, mirror: Any) -> None:
        """A stroke on ``mirror`` goes into ``layer``'s one undo history and filters."""
        history.follow_paint_filters(mirror, layer)
        layer_ref = weakref.ref(layer)

        def adopt(event: Any) -> None:
            target = layer_ref()
            if target is not None and not self._syncing:
                history.move_newest_history_item(mirror, target)

        mirror.events.paint.connect(adopt)
        mirror.events.labels_update.connect(
            lambda _event: self._schedule(layer, source_too=True))

        def undo(_layer: Any) -> None:
            target = layer_ref()
            if target is not None:
                target.undo()

        def redo(_layer: Any) -> None:
            target = layer_ref()
            if target is not None:
                target.redo()

        mirror.bind_key("Control-Z", undo, overwrite=True)
        mirror.bind_key("Control-Shift-Z", redo, overwrite=True)
        mirror.bind_key("Control-Y", redo, overwrite=True)

    def _on_removed(self, event: Any) -> None:
        layer = event.value
        self._last_set_data.pop(id(layer), None)
        for view in self.views.values():
            mirror = view.mirrors.pop(id(layer), None)
            if mirror is not None and mirror in view.model.layers:
                view.model.layers.remove(mirror)

    def _on_moved(self, _event: Any) -> None:
        for view in self.views.values():
            order = [view.mirrors[id(layer)] for layer in self.viewer.layers
                     if id(layer) in view.mirrors]
            for target, mirror in enumerate(order):
                current = view.model.layers.index(mirror)
                if current != target:
                    view.model.layers.move(current, target)

    def _on_active(self, _event: Any = None) -> None:
        active = self.viewer.layers.selection.active
        for view in self.views.values():
            mirror = view.mirrors.get(id(active)) if active is not None else None
            view.model.layers.selection.active = mirror

    def _on_data(self, event: Any) -> None:
        layer = event.source
        for view in self.views.values():
            mirror = view.mirrors.get(id(layer))
            if mirror is not None and mirror.data is not layer.data:
                with self._sync():
                    mirror.data = layer.data

    def _on_edited(self, event: Any) -> None:
        self._schedule(event.source)

    def _on_set_data(self, event: Any) -> None:
        """napari emits ``set_data`` for a new slice and for a refresh alike (an undo, a
        redo, an edit written in place): only the second changes what the other views
        must show. A new slice is told by the layer's slice of the viewer's dims having
        changed since its last ``set_data``; an undo or redo also by its history."""
        if self._syncing:
            return  # the refresh the views made themselves
        layer = event.source
        seen = self._last_set_data.get(id(layer))
        now = self._remember_slice(layer)
        if seen is not None and seen[0] != now[0] and seen[1] == now[1]:
            return  # the viewer scrolled: the mirrors slice the same array themselves
        self._schedule(layer)

    def _remember_slice(self, layer: Any) -> tuple:
        """Note the viewer's slice of ``layer`` and its history key; returns them."""
        dims = self.viewer.dims
        sliced_at = (tuple(dims.point[-layer.ndim:]), tuple(dims.order), dims.ndisplay,
                     tuple(dims.thickness[-layer.ndim:]))
        self._last_set_data[id(layer)] = (sliced_at, history.history_key(layer))
        return self._last_set_data[id(layer)]

    def _schedule(self, layer: Any, *, source_too: bool = False) -> None:
        """Refresh the mirrors of ``layer`` (and ``layer`` itself when ``source_too``)
        once the event loop turns."""
        key = id(layer)
        self._pending_refresh[key] = self._pending_refresh.get(key, False) or source_too
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def _refresh_pending(self) -> None:
        pending, self._pending_refresh = self._pending_refresh, {}
        with self._sync():  # their set_data events are not edits to pass on again
            for layer in list(self.viewer.layers):
                if id(layer) not in pending:
                    continue
                if pending[id(layer)]:
                    layer.refresh()
                for view in self.views.values():
                    mirror = view.mirrors.get(id(layer))
                    if mirror is not None:
                        mirror.refresh()

    def refresh_now(self) -> None:
        """Run the pending refreshes at once (tests and benchmarks)."""
        self._refresh_timer.stop()
        self._refresh_pending()

    def _sync(self) -> Any:
        return _Flag(self)

    # -- planes ------------------------------------------------------------------------
    def _on_ndim(self, _event: Any) -> None:
        self._orient_all()
        self._draw_crosshair()

    def _orient_all(self) -> None:
        for plane, view in self.views.items():
            if view.model.dims.ndim >= 3 and getattr(view, "_oriented", 0) != view.model.dims.ndim:
                set_view(view.model, plane)
                view._oriented = view.model.dims.ndim
                point = self.viewer.dims.point
                axis = view.model.dims.ndim - 3 + VIEWS[plane][0]
                if len(point) == view.model.dims.ndim:
                    view.model.dims.set_point(axis, point[axis])

    # -- crosshair ---------------------------------------------------------------------
    def _on_point(self, _event: Any) -> None:
        self._draw_crosshair()

    def _lines_of(self, plane: str) -> Any:
        """``plane``'s crosshair lines, made on first use (None without a canvas)."""
        lines = self._crosshair_lines.get(plane)
        if lines is None:
            view = self.viewer if plane == "axial" else self.views[plane].qt_viewer
            if view is None or history.scene_node(view) is None:
                return None
            lines = history.SceneLines(view, CROSSHAIR_COLOR, CROSSHAIR_OPACITY)
            self._crosshair_lines[plane] = lines
        return lines

    def _draw_crosshair(self) -> None:
        if self._drawing or self._closed or self.viewer.dims.ndim < 3:
            return
        self._drawing = True  # adding a crosshair layer re-enters through the events
        try:
            self._draw_crosshair_lines()
        finally:
            self._drawing = False

    def _draw_crosshair_lines(self) -> None:
        layers = list(self.viewer.layers)
        # (2, ndim): low, high; napari caches it
        extent = np.asarray(self.viewer.layers.extent.world) if layers else None
        ndim = self.viewer.dims.ndim
        offset = ndim - 3
        centre = self.crosshair()
        full_point = np.array(self.viewer.dims.point, dtype=float)
        full_point[offset:] = centre
        for plane, model in self.models().items():
            lines = self._lines_of(plane)
            if extent is None or model.dims.ndim != ndim or model.dims.ndisplay != 2:
                self._crosshair_segments.pop(plane, None)
                if lines is not None:
                    lines.show(None)
                continue
            segments = []
            for axis in VIEWS[plane][1]:  # the plane's two screen axes
                start, end = full_point.copy(), full_point.copy()
                start[offset + axis] = extent[0, offset + axis]
                end[offset + axis] = extent[1, offset + axis]
                segments.append([start, end])
            segments = np.asarray(segments, dtype=float)
            self._crosshair_segments[plane] = segments
            if lines is not None:  # scene (x, y) = the displayed world axes, reversed
                displayed = list(model.dims.displayed)
                lines.show(segments[:, :, displayed[::-1]])

    def _crosshair_drag(self, model: Any, event: Any) -> Iterator[None]:
        """Mouse drag callback of every view: a click or a Shift+drag moves the crosshair."""
        plane = next((p for p, m in self.models().items() if m is model), None)
        active = model.layers.selection.active
        editing = active is not None and getattr(active, "mode", "pan_zoom") not in (
            "pan_zoom", "transform")
        if plane is None or editing or model.dims.ndisplay != 2 or event.button != 1:
            return
        modifiers = getattr(event, "modifiers", ())
        shift = "Shift" in {str(getattr(m, "name", m)) for m in modifiers}
        press = np.asarray(event.pos, dtype=float)
        if shift:
            self.set_crosshair(event.position, moved_in=plane)
        yield
        dragged = False
        while event.type == "mouse_move":
            dragged = dragged or np.hypot(*(np.asarray(event.pos) - press)) > _CLICK_PIXELS
            if shift:
                self.set_crosshair(event.position, moved_in=plane)
            yield
        if shift or not dragged:  # (napari drops some moves: the release counts too)
            self.set_crosshair(event.position, moved_in=plane)


class _Flag:
    """``with views._sync():`` marks changes the views make themselves."""

    def __init__(self, views: LinkedViews) -> None:
        self.views = views

    def __enter__(self) -> None:
        self.previous = self.views._syncing
        self.views._syncing = True

    def __exit__(self, *exc: Any) -> None:
        self.views._syncing = self.previous


class _PropertyCopy:
    """Copies one property of a viewer layer to its mirrors when it changes."""

    def __init__(self, views: LinkedViews, layer: Any, name: str) -> None:
        self.views = weakref.ref(views)
        self.layer = weakref.ref(layer)
        self.name = name

    def __call__(self, _event: Any = None) -> None:
        views, layer = self.views(), self.layer()
        if views is None or layer is None or views._closed:
            return
        value = getattr(layer, self.name)
        for view in views.views.values():
            mirror = view.mirrors.get(id(layer))
            if mirror is None:
                continue
            try:
                with views._sync():
                    setattr(mirror, self.name, value)
            except (ValueError, TypeError, AttributeError):
                continue  # a property the mirror cannot take now (e.g. a mode in 3D)


def _key_of(viewer: Any) -> Any:
    return history.unwrapped_viewer(viewer)


def _forget(views_ref: Callable, key: Any) -> Callable[..., None]:
    """What runs when the views' widget is destroyed with its window: disconnect."""
    key_ref = weakref.ref(key)

    def forget(*_: Any) -> None:
        views = views_ref()
        if views is not None and not views._closed:
            views._closed = True
            for disconnect in reversed(views._disconnects):
                disconnect()
            views._disconnects.clear()
        viewer = key_ref()
        if viewer is not None and _OPEN.get(viewer) is views:
            del _OPEN[viewer]

    return forget


def _remove(callbacks: list, callback: Callable) -> None:
    if callback in callbacks:
        callbacks.remove(callback)


# -- docking -----------------------------------------------------------------------------
_OPEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_BOTTOM_CORNERS = {
    Qt.Corner.BottomLeftCorner: Qt.DockWidgetArea.LeftDockWidgetArea,
    Qt.Corner.BottomRightCorner: Qt.DockWidgetArea.RightDockWidgetArea,
}


def linked_views_of(viewer: Any) -> LinkedViews | None:
    """The linked views docked on ``viewer``, or None."""
    return _OPEN.get(_key_of(viewer))


def show_linked_views(viewer: Any) -> LinkedViews:
    """Dock the coronal and sagittal views under the canvas (once); axial in the canvas."""
    key = _key_of(viewer)
    views = _OPEN.get(key)
    if views is not None:
        return views
    set_view(viewer, "axial")
    views = LinkedViews(viewer)
    dock = viewer.window.add_dock_widget(views, name=DOCK_NAME, area="bottom")
    views.dock = dock
    window = dock.window()  # napari's main window (a QMainWindow)
    # the bottom dock sits under the canvas only: the side columns keep their height
    views.corners = {corner: window.corner(corner) for corner in _BOTTOM_CORNERS}
    for corner, area in _BOTTOM_CORNERS.items():
        window.setCorner(corner, area)
    window.resizeDocks([dock], [int(window.height() * DOCK_SHARE)], Qt.Orientation.Vertical)
    _OPEN[key] = views
    for view in views.views.values():
        view.model.reset_view()
    return views


def hide_linked_views(viewer: Any) -> None:
    """Remove the linked views: napari's single view again (in whatever plane it shows)."""
    key = _key_of(viewer)
    views = _OPEN.pop(key, None)
    if views is None:
        return
    views.close_views()
    window = views.dock.window()
    viewer.window.remove_dock_widget(views.dock)
    for corner, area in getattr(views, "corners", {}).items():
        window.setCorner(corner, area)


__all__ = [
    "CROSSHAIR_COLOR",
    "LinkedViews",
    "hide_linked_views",
    "linked_views_of",
    "show_linked_views",
]
