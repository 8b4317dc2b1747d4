"""Every touch of napari's private API, in one module.

The plugin needs a few things napari has no public API for. Each is wrapped here,
with what it reads or writes, what the public API lacks, and what breaks
(loudly) if a napari release changes it. Nothing else in ``_napari/`` reads a
private napari name (``tests/test_architecture.py`` checks it).

========================  ==============================  ==================================
private name              used for                        public API lacking
========================  ==============================  ==================================
``Labels._undo_history``  which edit an undo/redo moved   undo/redo emit only ``set_data``,
``Labels._redo_history``  (live report, unsaved marker,   with no item; no getter of the
                          classes following an undo)      history exists
history atoms             what an edit touched (box,      the item that ``events.paint``
(``_MaskedPaintAtom``,    values) for the live report     carries has no public type
``(indices, old, new)``)
``Labels._save_history``  Segment's replace as one undo   ``data_setitem`` takes index
                          step over the whole volume      arrays (24 bytes per changed
                                                          voxel, GBs for an organ map)
``Labels._apply_mask_to_  limiting the brush, eraser,     no paint filter or hook
data``                    fill and polygon to an HU range
                          and away from locked labels
                          (in every linked view)
``Labels._append_to_      a stroke painted in a linked    no public way to add an item
undo_history``            view joins the one undo         to a layer's history
                          history of the viewer's layer
``Viewer._instances``     the open viewers: is a job's    ``napari.current_viewer()``
                          viewer still open; layers of    gives one viewer only; closing
                          every viewer for the writer     a viewer emits nothing public
``__wrapped__`` of        the viewer behind the public-   the proxy napari hands plugin
``PublicOnlyProxy``       only proxy (for the registry)   widgets hides private names
``Window._qt_viewer``     the vispy ``SceneCanvas`` whose a viewer callback cannot stop the
``.canvas._scene_canvas`` mouse events window/level by    active layer's: napari runs the
                          drag takes before napari (so    viewer's drag callbacks and then
                          a W/L drag neither paints nor   the layer's, whatever the first
                          pans)                           did (``_process_mouse_event``)
``QtViewer.canvas.view``  the crosshair of the linked      a layer is redrawn through its
``.scene``                views: a vispy line in the      slice (a Vectors layer's data
                          scene of each 2D view, in world change rebuilds its shader: 5 ms
                          mm, moved by its vertex buffer  a view on llvmpipe); napari has
                          only                            no public canvas overlay API
========================  ==============================  ==================================

napari versions checked
-----------------------
PyPI offers napari 0.5.0 to 0.9.2 in the 0.5+ range (``pip index versions napari``).
The wheels of 0.5.0, 0.5.6, 0.6.0, 0.6.6, 0.7.0, 0.8.0 and 0.9.0 (``pip download
napari==X --no-deps``) and the installed 0.9.2 were read (``napari/layers/labels/
labels.py``, ``napari/viewer.py``, ``napari/utils/_proxies.py``):

* ``_undo_history``/``_redo_history`` (deques of items, an item a list of atoms),
  ``_save_history(atom)``, ``block_history()``, ``Viewer._instances`` (a WeakSet,
  left by ``close()``) and the proxy's ``__wrapped__``: the same from 0.5.0 to 0.9.2.
* ``Labels._apply_mask_to_data(data, mask, new_label, slice_key)`` and
  ``_MaskedPaintAtom(slice_key, mask, old_values, new_value)`` exist from 0.8.0 on
  (identical in 0.8.0, 0.9.0 and 0.9.2); 0.7 and older paint through
  ``_paint_indices`` with ``(indices, old, new)`` atoms only, so the HU-range brush
  would refuse to start there.
* ``Window._qt_viewer``, ``QtViewer.canvas`` (a ``VispyCanvas``) and its
  ``_scene_canvas`` (the vispy ``SceneCanvas`` whose ``events.mouse_press/move/release``
  napari's ``_on_mouse_*`` handlers listen to, connected with vispy's default
  position, so a handler connected later with ``position="first"`` runs before them
  and ``event.blocked`` stops them): read in the 0.9.0 and 0.9.2 sources
  (``napari/_qt/qt_main_window.py``, ``napari/_vispy/canvas.py``).
* ``Labels._append_to_undo_history(item)`` (appends and emits ``events.paint`` with the
  item), which the linked views use to move a stroke onto the viewer's layer, and
  ``napari.qt.QtViewer(model, show_welcome_screen=...)``: the same in the 0.9.0 wheel and
  the installed 0.9.2 (``tests/gui/test_linked_views.py`` ran on 0.9.2).
* ``viewer.scene`` (its camera) is new in 0.9.0; the GUI tests and ``views.set_view``
  use it: on napari 0.8.0 (installed over 0.9.0 in the scratch environment) the tests
  stop with ``'Viewer' object has no attribute 'scene'``.

So ``pyproject.toml`` asks for ``napari>=0.9,<0.10``: the GUI tests of everything
here and of the jobs (``tests/gui``: label tools, edit state, Segment's replace and
undo, the report widget, the Save widget, the workflow, the DICOM browser, launch,
jobs; 90 tests) pass on napari 0.9.0, run in a scratch virtual environment
(``pip install -e '.[napari,test]' napari==0.9.0``), as on 0.9.2; a 0.10 may change
any of these names, so it is not claimed before the tests ran on it.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

#: An undo/redo history atom napari stores for ``data_setitem`` and that
#: :func:`save_replacement` stores: ``(indices, values before, values after)``.
SetitemAtom = tuple[Any, Any, Any]

#: The Labels method every paint operation calls with (data, mask, new_label, slice_key).
_PAINT_HOOK = "_apply_mask_to_data"


# ------------------------------------------------------------------ undo / redo history
def _undo(layer: Any) -> Any:
    # napari keeps the undo queue private (a deque of items; 0.5.0 - 0.9.2)
    return getattr(layer, "_undo_history", ())


def _redo(layer: Any) -> Any:
    # napari keeps the redo queue private (a deque of items; 0.5.0 - 0.9.2)
    return getattr(layer, "_redo_history", ())


def history_key(layer: Any) -> tuple:
    """A key that changes whenever an edit, an undo or a redo changes the layer's history.

    napari emits only ``events.set_data`` for an undo or a redo (as for any refresh):
    comparing the key before and after tells an undo/redo from a refresh.

    Returns
    -------
    tuple
        ``(undo length, redo length, id of the last undo item, id of the last redo item)``.
    """
    undo, redo = _undo(layer), _redo(layer)
    return (len(undo), len(redo), id(undo[-1]) if undo else 0, id(redo[-1]) if redo else 0)


def moved_history_item(layer: Any, before: tuple, after: tuple) -> list | None:
    """The item an undo or redo moved between a layer's history queues, if one did.

    Parameters
    ----------
    layer : napari.layers.Labels
    before, after : tuple
        :func:`history_key` before and after the change.

    Returns
    -------
    list or None
        The history item (a list of atoms, see :func:`atom_extent`), or None when the
        change was not one undo or redo.
    """
    undo_before, redo_before = before[:2]
    undo_after, redo_after = after[:2]
    redo, undo = _redo(layer), _undo(layer)
    if undo_after == undo_before - 1 and redo_after == redo_before + 1 and redo:
        return redo[-1]  # undo
    if undo_after == undo_before + 1 and redo_after == redo_before - 1 and undo:
        return undo[-1]  # redo
    return None


def atom_extent(atom: Any, shape: tuple[int, ...]) -> tuple[list, list, set] | None:
    """The box and label values one napari history atom touched.

    napari (0.8+) records paint, fill and polygon strokes as ``_MaskedPaintAtom``
    (``slice_key``, ``mask``, ``old_values``, ``new_value``) and ``data_setitem`` as
    ``(indices, old values, new values)``; neither type is public.

    Parameters
    ----------
    atom : napari history atom
    shape : tuple of int
        The layer's data shape (display order).

    Returns
    -------
    tuple or None
        ``(start, stop, values)``: first and one-past-last index along each axis and the
        set of label values before and after; None when the atom is of another kind.
    """
    if hasattr(atom, "slice_key") and hasattr(atom, "new_value"):  # _MaskedPaintAtom
        ranges = [key.indices(n)[:2] for key, n in zip(atom.slice_key, shape, strict=True)]
        values = set(np.unique(np.asarray(atom.old_values)).tolist()) | {int(atom.new_value)}
        return [a for a, _ in ranges], [b for _, b in ranges], values
    if isinstance(atom, tuple) and len(atom) == 3:  # data_setitem: (indices, old, new)
        indices, old, new = atom
        if not isinstance(indices, tuple) or len(indices) != len(shape):
            return None
        indices = [np.asarray(i).ravel() for i in indices]
        if indices[0].size == 0:
            return [0] * len(shape), [0] * len(shape), set()
        values = set(np.unique(np.asarray(old)).tolist()) | set(np.unique(np.asarray(new)).tolist())
        return [int(i.min()) for i in indices], [int(i.max()) + 1 for i in indices], values
    return None


def can_save_history(layer: Any) -> bool:
    """Whether :func:`save_replacement` can record an undo step on ``layer``."""
    return hasattr(layer, "_save_history")


def save_replacement(layer: Any, indices: tuple, old: np.ndarray, new: np.ndarray) -> SetitemAtom:
    """Record replacing ``layer.data[indices]`` (``old`` -> ``new``) as one undo step.

    The caller writes ``new`` into the data itself. napari's public ``data_setitem``
    records the same kind of atom but takes index arrays (24 bytes per changed
    voxel); a box of slices costs a copy of the old and the new voxels only.

    Parameters
    ----------
    layer : napari.layers.Labels
        Check :func:`can_save_history` first.
    indices : tuple of slice
        The box replaced.
    old, new : numpy.ndarray
        The voxels of the box before and after (kept by the history: pass copies).

    Returns
    -------
    tuple
        The atom recorded; :func:`history_queue_of` finds it later.
    """
    atom = (indices, old, new)  # napari's (indices, before, after)
    layer._save_history(atom)
    return atom


def history_queue_of(layer: Any, atom: Any) -> str:
    """Where a history atom is now: ``"undo"`` (done), ``"redo"`` (undone), or ``""``
    (gone: the data was replaced, or a new edit after an undo dropped it)."""
    for name, history in (("undo", _undo(layer)), ("redo", _redo(layer))):
        if any(part is atom for item in history for part in item):
            return name
    return ""


# ------------------------------------------------------------------ painting
def can_filter_painting(layer: Any) -> bool:
    """Whether napari's painting on ``layer`` goes through the hook :func:`filter_painting`
    needs (napari >= 0.8)."""
    return callable(getattr(type(layer), _PAINT_HOOK, None))


def paint_hook_name() -> str:
    """The napari method :func:`filter_painting` wraps (for error messages)."""
    return f"Labels.{_PAINT_HOOK}"


#: A paint filter: ``keep(data, mask, new_label, slice_key) -> mask``.
PaintFilter = Callable[[np.ndarray, np.ndarray, int, tuple[slice, ...]], np.ndarray]


def filter_painting(layer: Any, keep: PaintFilter, *, key: str = "") -> Callable[[], None]:
    """Let napari's brush, eraser, fill and polygon change only voxels ``keep`` allows.

    Every napari paint operation (napari 0.8+: ``paint``, ``fill``, ``paint_polygon``
    on numpy, zarr or dask data) funnels through ``Labels._apply_mask_to_data(data,
    mask, new_label, slice_key)``, which writes the masked voxels of a box and saves
    the history atom. The hook is wrapped on this one layer instance (the class is
    untouched) and its mask passed through every filter of the layer in turn (each
    may only clear voxels), so the voxels left out are neither shown painted nor
    recorded, and one undo still reverts the whole stroke.

    Filters compose: an HU range and locked labels both apply. A filter with the
    ``key`` of one already on the layer replaces it.

    Parameters
    ----------
    layer : napari.layers.Labels
        Check :func:`can_filter_painting` first.
    keep : callable
        ``keep(data, mask, new_label, slice_key) -> mask``: ``data`` is the box
        ``layer.data[slice_key]`` before the paint (display axes), ``mask`` the
        voxels of the box about to be painted (boolean, ``data``'s shape) and
        ``new_label`` the value painted (the background value when erasing); it
        returns the voxels that may change (a boolean array of the mask's shape).
    key : str
        Which filter this is (e.g. ``"hu-range"``, ``"locks"``).

    Returns
    -------
    callable
        ``stop()``: remove this filter (idempotent; does nothing once another filter
        with the same key replaced it or the layer is gone). Painting is unfiltered
        again when the last filter of the layer stopped.
    """
    hook = vars(layer).get(_PAINT_HOOK)
    filters: dict[str, PaintFilter] | None = getattr(hook, "paint_filters", None)
    if filters is None:
        original = getattr(type(layer), _PAINT_HOOK).__get__(layer)
        chain: dict[str, PaintFilter] = {}

        def filtered(data, mask, new_label, slice_key):
            for each in list(chain.values()):
                mask = each(data, mask, new_label, slice_key)
            return original(data, mask, new_label, slice_key)

        filtered.paint_filters = chain  # type: ignore[attr-defined]
        setattr(layer, _PAINT_HOOK, filtered)
        filters = chain
    filters[key] = keep
    layer_ref = weakref.ref(layer)

    def stop() -> None:
        target = layer_ref()
        if target is None:
            return
        current = getattr(vars(target).get(_PAINT_HOOK), "paint_filters", None)
        if current is None or current.get(key) is not keep:
            return
        del current[key]
        if not current:
            delattr(target, _PAINT_HOOK)

    return stop


def follow_paint_filters(layer: Any, source: Any) -> None:
    """Let napari's painting on ``layer`` pass through the paint filters of ``source``.

    For a layer that shows ``source``'s data array in another view (the linked views'
    mirrors): the filters :func:`filter_painting` puts on ``source`` (the HU-range
    brush, locked labels) are looked up at each paint, so ones added or stopped later
    apply too. ``layer``'s own history records the stroke as napari does.
    """
    original = getattr(type(layer), _PAINT_HOOK).__get__(layer)
    source_ref = weakref.ref(source)

    def filtered(data, mask, new_label, slice_key):
        target = source_ref()
        hook = vars(target).get(_PAINT_HOOK) if target is not None else None
        for each in list(getattr(hook, "paint_filters", {}).values()):
            mask = each(data, mask, new_label, slice_key)
        return original(data, mask, new_label, slice_key)

    setattr(layer, _PAINT_HOOK, filtered)


def move_newest_history_item(source: Any, target: Any) -> list | None:
    """Move ``source``'s newest undo item onto ``target``'s undo history.

    For two layers on one data array (a layer and its mirror in a linked view): a
    stroke painted on ``source`` becomes ``target``'s newest undo step, its redo
    history is cleared (a new edit, as napari does), and ``target`` announces it with
    its own ``events.paint`` (napari's ``_append_to_undo_history``), as if painted
    there. Returns the item moved (None when ``source`` had none).
    """
    undo = _undo(source)
    if not undo:
        return None
    item = undo.pop()
    _redo(target).clear()
    target._append_to_undo_history(item)
    return item


# ------------------------------------------------------------------ viewers
def _unwrapped(viewer: Any) -> Any:
    # plugin widgets docked through the manifest get napari's PublicOnlyProxy of the
    # viewer; the registry holds the viewer behind it
    return getattr(viewer, "__wrapped__", viewer)


def unwrapped_viewer(viewer: Any) -> Any:
    """The viewer behind napari's public-only proxy (the viewer itself when not proxied).

    Per-viewer state (window/level mode, status hooks) is keyed by the real viewer,
    so a widget docked through the manifest and one built in code share it.
    """
    return _unwrapped(viewer)


def scene_canvas(view: Any) -> Any | None:
    """The vispy ``SceneCanvas`` showing a viewer, or None.

    Parameters
    ----------
    view : napari.Viewer or napari.qt.QtViewer
        A viewer with a window (a bare ``ViewerModel`` has no canvas: None), or a
        ``QtViewer`` (an extra view of a layout of several).

    Returns
    -------
    vispy.scene.SceneCanvas or None
        Its ``events.mouse_press``, ``mouse_move`` and ``mouse_release`` reach napari's
        own handlers after any callback connected with ``position="first"``; setting
        ``event.blocked`` there keeps the event from napari (layers, camera) entirely.
    """
    view = _unwrapped(view)
    scene = getattr(getattr(view, "canvas", None), "_scene_canvas", None)  # a QtViewer
    viewer_module = sys.modules.get("napari.viewer")
    if scene is None and viewer_module is not None and isinstance(view, viewer_module.Viewer):
        qt_viewer = getattr(getattr(view, "window", None), "_qt_viewer", None)
        scene = getattr(getattr(qt_viewer, "canvas", None), "_scene_canvas", None)
    return scene


def scene_node(view: Any) -> Any | None:
    """The vispy scene of a view's canvas: its nodes are in world units, the displayed
    world axes reversed (x is the last displayed axis), as napari's layer nodes.

    Parameters
    ----------
    view : napari.Viewer or napari.qt.QtViewer
        A viewer with a window, or a ``QtViewer`` (None without a canvas).
    """
    # a Viewer's window holds its QtViewer; a QtViewer's ``window`` is Qt's method
    qt_viewer = getattr(getattr(_unwrapped(view), "window", None), "_qt_viewer", None) or view
    box = getattr(getattr(qt_viewer, "canvas", None), "view", None)
    return getattr(box, "scene", None)


class SceneLines:
    """Straight segments drawn over a view's layers, in world mm, one pixel wide at any
    zoom; moving them rewrites a vertex buffer only.

    Parameters
    ----------
    view : napari.Viewer or napari.qt.QtViewer
    color : str
        ``"#rrggbb"``.
    opacity : float
    """

    #: Drawn after every layer node (napari gives layers their list index as order).
    ORDER = 1_000_000

    def __init__(self, view: Any, color: str, opacity: float = 1.0) -> None:
        from vispy.color import Color
        from vispy.scene.visuals import Line

        self.scene = scene_node(view)
        rgba = Color(color, alpha=opacity).rgba
        self.visual = Line(
            pos=np.zeros((2, 2), np.float32), color=rgba, width=1, method="gl", connect="segments"
        )
        self.visual.order = self.ORDER
        self.visual.set_gl_state("translucent", depth_test=False)
        self.visual.visible = False
        if self.scene is not None:
            self.visual.parent = self.scene

    def show(self, segments: np.ndarray | None) -> None:
        """Draw ``segments``, ``(n, 2, 2)`` start/end points ``(x, y)`` in scene units
        (None hides them)."""
        if segments is None or len(segments) == 0:
            self.visual.visible = False
            return
        self.visual.set_data(pos=np.asarray(segments, np.float32).reshape(-1, 2))
        self.visual.visible = True

    def remove(self) -> None:
        self.visual.parent = None


def viewer_is_open(viewer: Any) -> bool:
    """False once ``viewer.close()`` ran (napari forgets closed viewers).

    True for a ``ViewerModel`` without a window (never registered).
    """
    viewer = _unwrapped(viewer)
    instances = getattr(type(viewer), "_instances", None)
    if instances is None:  # a ViewerModel
        return True
    try:
        return viewer in instances
    except TypeError:
        return True


def open_viewers() -> list[Any]:
    """The open napari viewers (the current one first); none when napari is not imported."""
    viewer_module = sys.modules.get("napari.viewer")
    if viewer_module is None:
        return []
    viewers: list[Any] = []
    current = viewer_module.current_viewer()
    if current is not None:
        viewers.append(current)
    for viewer in list(getattr(viewer_module.Viewer, "_instances", ())):
        if all(viewer is not v for v in viewers):
            viewers.append(viewer)
    return viewers


__all__ = [
    "atom_extent",
    "can_filter_painting",
    "can_save_history",
    "PaintFilter",
    "filter_painting",
    "history_key",
    "history_queue_of",
    "moved_history_item",
    "open_viewers",
    "paint_hook_name",
    "save_replacement",
    "SceneLines",
    "scene_canvas",
    "scene_node",
    "unwrapped_viewer",
    "viewer_is_open",
]
