"""The layers a user prompts an interactive segmentation on, and the prompts they hold.

Three helper layers are made on an image layer's grid (its scale, translate, affine,
units and axis labels, so napari's sliders and the scan's millimetres stay as they
are; a prompt layer made without the image's ``scale`` reads world millimetres as
voxel indices, which is how napari-nninteractive once asked for a box hundreds of
times too large and ran out of memory):

``"<image> clicks"`` (Points)
    each point is a click: green inside the object (positive), red outside.
``"<image> boxes"`` (Shapes)
    a rectangle is a box around the object; a polygon (napari's polygon or lasso
    tool) is a lasso: around the object (positive) or around a part to cut away.
``"<image> scribbles"`` (Labels)
    each brush stroke is a scribble: label 1 on the object, label 2 off it.

Key ``N`` on any of them toggles between positive and negative.

:class:`PromptLayers` keeps the prompts in the order they were given, each a
:class:`~napari_medseg.interactive.prompts.Prompt` in RAS+ millimetres:
a vertex in a prompt layer's data coordinates goes to napari's world
(``layer.data_to_world``), into the image layer's data coordinates
(``image.world_to_data``: the display voxel index, whatever scale, translate or
affine napari applies), and from the display index to RAS+ through the scan's true
geometry (:attr:`~napari_medseg.geometry.DisplayGeometry.display_affine`). So a
prompt names the voxel the user pointed at, in any voxel order the scan is stored in,
and for an oblique scan napari shows straightened too.

Removing a point or shape in napari, erasing a scribble or undoing it takes that
prompt back; moving one gives it again as the newest prompt.
"""

from __future__ import annotations

import itertools
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_medseg._napari.history import history_key
from napari_medseg._napari.layers import HELPER_KEY
from napari_medseg.interactive.prompts import Prompt

#: Roles of the prompt layers (the value of their ``metadata[HELPER_KEY]``).
CLICKS, BOXES, SCRIBBLES, PREVIEW = "clicks", "boxes", "scribbles", "preview"

#: Scribble label values.
POSITIVE_SCRIBBLE, NEGATIVE_SCRIBBLE = 1, 2

#: Colours of positive and negative prompts (RGBA).
POSITIVE_COLOUR = (0.0, 1.0, 0.0, 1.0)
NEGATIVE_COLOUR = (1.0, 0.2, 0.2, 1.0)

#: The key that toggles positive / negative on the prompt layers.
TOGGLE_KEY = "n"

#: Decimals of data coordinates that identify a point or shape in its layer.
_DECIMALS = 4

_ids = itertools.count(1)


@dataclass(eq=False)
class PromptItem:
    """One prompt and where it came from.

    Attributes
    ----------
    role : str
        The layer it is in: :data:`CLICKS`, :data:`BOXES` or :data:`SCRIBBLES`.
    key : object
        Identifies it in its layer (rounded coordinates and polarity; a number for
        a scribble).
    prompt : Prompt
        In RAS+ mm.
    voxels : numpy.ndarray or None
        A scribble's voxels, ``(N, 3)`` display indices of the scribbles layer.
    value : int
        A scribble's label value.
    """

    role: str
    key: Any
    prompt: Prompt
    voxels: np.ndarray | None = None
    value: int = 0


def display_to_ras(display_affine: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """RAS+ mm of display voxel indices ``(N, 3)`` (fractional allowed)."""
    indices = np.asarray(indices, dtype=np.float64).reshape(-1, 3)
    affine = np.asarray(display_affine, dtype=np.float64)
    return indices @ affine[:3, :3].T + affine[:3, 3]


def layer_to_ras(layer: Any, image: Any, display_affine: np.ndarray, coords) -> np.ndarray:
    """RAS+ mm of vertices in ``layer``'s data coordinates, through napari's world.

    Parameters
    ----------
    layer : napari layer
        The prompt layer (any scale, translate or affine).
    image : napari.layers.Image
        The scan the prompts are on.
    display_affine : numpy.ndarray
        4x4 display voxel index of ``image`` -> RAS+ mm.
    coords : array-like
        ``(N, layer.ndim)`` vertices in ``layer``'s data coordinates.

    Returns
    -------
    numpy.ndarray
        ``(N, 3)`` RAS+ mm.
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, layer.ndim)
    indices = [
        np.asarray(image.world_to_data(layer.data_to_world(vertex)), dtype=np.float64)[-3:]
        for vertex in coords
    ]
    return display_to_ras(display_affine, np.array(indices).reshape(-1, 3))


def _grid_kwargs(image: Any, role: str, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "scale": tuple(image.scale),
        "translate": tuple(image.translate),
        "affine": np.asarray(image.affine.affine_matrix),
        "units": tuple(str(u) for u in image.units),
        "axis_labels": tuple(image.axis_labels),
        "metadata": {HELPER_KEY: role},
    }


def _scribble_colormap() -> Any:
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(
        color_dict={
            None: (0.0, 0.0, 0.0, 0.0),
            0: (0.0, 0.0, 0.0, 0.0),
            POSITIVE_SCRIBBLE: POSITIVE_COLOUR,
            NEGATIVE_SCRIBBLE: NEGATIVE_COLOUR,
        }
    )


def preview_colormap(colour) -> Any:
    """A labels colormap showing value 1 in ``colour`` (RGBA) and nothing else."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(
        color_dict={None: (0.0, 0.0, 0.0, 0.0), 0: (0.0, 0.0, 0.0, 0.0), 1: tuple(colour)}
    )


class PromptLayers:
    """The clicks, boxes and scribbles layers of one image layer, and their prompts.

    Parameters
    ----------
    viewer : napari.Viewer
    image : napari.layers.Image
        The scan prompted on (3D).
    display_affine : numpy.ndarray
        4x4 display voxel index of ``image`` -> RAS+ mm (the scan's true geometry).
    on_change : callable
        Called (no argument) whenever the list of prompts changed.
    """

    def __init__(
        self,
        viewer: Any,
        image: Any,
        display_affine: np.ndarray,
        on_change: Callable[[], None],
    ) -> None:
        self.viewer = viewer
        self.image = image
        self.display_affine = np.asarray(display_affine, dtype=np.float64)
        self.on_change = on_change
        self.items: list[PromptItem] = []
        self._positive = True
        self._muted = 0
        self._toggle_listeners: list[Callable[[bool], None]] = []
        self.points: Any = None
        self.shapes: Any = None
        self.scribbles: Any = None
        self._snapshot: np.ndarray | None = None
        self._scribble_history: tuple = ()
        viewer.layers.events.removed.connect(self._on_layer_removed)

    # ---------------------------------------------------------------- layers
    def ensure(self) -> None:
        """Add the prompt layers the viewer lacks (made once, or again after removal)."""
        from napari.layers import Labels, Points, Shapes
        from napari.utils.colormaps.categorical_colormap import CategoricalColormap

        image, name = self.image, self.image.name
        if self.scribbles is None or self.scribbles not in self.viewer.layers:
            layer = Labels(
                np.zeros(tuple(image.data.shape), dtype=np.uint8),
                opacity=0.7,
                **_grid_kwargs(image, SCRIBBLES, f"{name} scribbles"),
            )
            layer.colormap = _scribble_colormap()
            layer.brush_size = 5
            layer.selected_label = POSITIVE_SCRIBBLE if self._positive else NEGATIVE_SCRIBBLE
            self.scribbles = self._add(layer)
            self._snapshot = np.zeros(tuple(image.data.shape), dtype=np.uint8)
            self._scribble_history = history_key(self.scribbles)
            self.scribbles.events.paint.connect(self._on_scribbles_history)
            self.scribbles.events.set_data.connect(self._on_scribbles_history)
            self.scribbles.events.data.connect(self._on_scribbles_history)
            self._drop_role(SCRIBBLES)
        if self.shapes is None or self.shapes not in self.viewer.layers:
            layer = Shapes(
                ndim=3,
                features={"positive": np.zeros(0, dtype=bool)},
                feature_defaults={"positive": self._positive},
                edge_color=np.array([POSITIVE_COLOUR]),
                edge_width=max(0.5, 1.0 / float(min(np.abs(image.scale)[-2:]))),
                face_color="transparent",
                **_grid_kwargs(image, BOXES, f"{name} boxes"),
            )
            self.shapes = self._add(layer)
            self.shapes.events.data.connect(self._on_shapes)
            self._drop_role(BOXES)
        if self.points is None or self.points not in self.viewer.layers:
            colours = CategoricalColormap(
                colormap={True: POSITIVE_COLOUR, False: NEGATIVE_COLOUR},
                fallback_color=(0.5, 0.5, 0.5, 1.0),
            )
            layer = Points(
                np.zeros((0, 3)),
                ndim=3,
                features={"positive": np.zeros(0, dtype=bool)},
                feature_defaults={"positive": self._positive},
                face_color="positive",
                face_color_cycle=colours,
                border_color="white",
                size=max(3.0, 5.0 / float(min(np.abs(image.scale)[-2:]))),
                **_grid_kwargs(image, CLICKS, f"{name} clicks"),
            )
            self.points = self._add(layer)
            self.points.events.data.connect(self._on_points)
            self._drop_role(CLICKS)
            self.points.mode = "add"

    def _add(self, layer: Any) -> Any:
        # (the viewer a plugin dock gets may hand back a public-only proxy of the layer:
        # the layer itself is kept)
        self.viewer.add_layer(layer)
        owner = weakref.ref(self)

        def toggle(_layer: Any) -> None:
            this = owner()
            if this is not None:
                this.positive = not this.positive

        layer.bind_key(TOGGLE_KEY, toggle, overwrite=True)
        return layer

    def layers(self) -> list[Any]:
        """The prompt layers still in the viewer."""
        return [
            layer
            for layer in (self.scribbles, self.shapes, self.points)
            if layer is not None and layer in self.viewer.layers
        ]

    def _on_layer_removed(self, event: Any) -> None:
        """A prompt layer the user deleted takes its prompts with it."""
        layer = getattr(event, "value", None)
        for attribute, role in (("points", CLICKS), ("shapes", BOXES), ("scribbles", SCRIBBLES)):
            if layer is not None and getattr(self, attribute) is layer:
                setattr(self, attribute, None)
                self._drop_role(role)

    def remove_layers(self) -> None:
        """Take the prompt layers out of the viewer (their prompts are forgotten)."""
        self.viewer.layers.events.removed.disconnect(self._on_layer_removed)
        self._muted += 1
        try:
            for layer in self.layers():
                self.viewer.layers.remove(layer)
        finally:
            self._muted -= 1
        self.items = []
        self.points = self.shapes = self.scribbles = None

    def activate(self, role: str, mode: str | None = None) -> None:
        """Select the prompt layer of ``role`` (and its ``mode``), making it if needed."""
        self.ensure()
        layer = {CLICKS: self.points, BOXES: self.shapes, SCRIBBLES: self.scribbles}[role]
        self.viewer.layers.selection.active = layer
        if mode is not None:
            layer.mode = mode

    # ---------------------------------------------------------------- polarity
    @property
    def positive(self) -> bool:
        """Whether new prompts are positive (on the object)."""
        return self._positive

    @positive.setter
    def positive(self, value: bool) -> None:
        value = bool(value)
        if value == self._positive:
            return
        self._positive = value
        for layer in (self.points, self.shapes):
            if layer is not None:
                layer.feature_defaults = {"positive": value}
        if self.scribbles is not None:
            self.scribbles.selected_label = POSITIVE_SCRIBBLE if value else NEGATIVE_SCRIBBLE
        for listener in list(self._toggle_listeners):
            listener(value)

    def on_toggle(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(positive)`` whenever the polarity changes (button or key)."""
        self._toggle_listeners.append(listener)

    # ---------------------------------------------------------------- reading layers
    def _merge(self, role: str, entries: list[tuple[Any, Callable[[], Prompt]]]) -> None:
        """Make the items of ``role`` those of ``entries`` (key, prompt maker): items whose
        key is still there stay where they are, the others go, new ones come last."""
        left = Counter(key for key, _ in entries)
        kept: list[PromptItem] = []
        for item in self.items:
            if item.role != role:
                kept.append(item)
            elif left[item.key] > 0:
                left[item.key] -= 1
                kept.append(item)
        for key, make in entries:
            if left[key] > 0:
                left[key] -= 1
                kept.append(PromptItem(role, key, make()))
        self._set_items(kept)

    def _set_items(self, items: list[PromptItem]) -> None:
        changed = len(items) != len(self.items) or any(
            a is not b for a, b in zip(items, self.items, strict=True)
        )
        self.items = items
        if changed and not self._muted:
            self.on_change()

    def _drop_role(self, role: str) -> None:
        self._set_items([item for item in self.items if item.role != role])

    def _on_points(self, event: Any) -> None:
        if str(getattr(event, "action", "")) not in ("added", "removed", "changed"):
            return  # "adding", "removing", "changing": not done yet
        self.read_points()

    def read_points(self) -> None:
        """Read the clicks layer into prompts."""
        layer = self.points
        if layer is None:
            return
        data = np.asarray(layer.data, dtype=np.float64)
        positive = _positive_column(layer, len(data))
        entries = []
        for row, sign in zip(data, positive, strict=True):
            key = (tuple(np.round(row, _DECIMALS).tolist()), sign)
            entries.append((key, _maker(self, layer, "point", row[None, :], sign)))
        self._merge(CLICKS, entries)

    def _on_shapes(self, event: Any) -> None:
        if str(getattr(event, "action", "")) not in ("added", "removed", "changed"):
            return
        self.read_shapes()

    def read_shapes(self) -> None:
        """Read the boxes layer into prompts (rectangles: boxes; polygons: lassos)."""
        layer = self.shapes
        if layer is None:
            return
        kinds = list(layer.shape_type)
        positive = _positive_column(layer, len(kinds))
        entries = []
        for vertices, shape_type, sign in zip(layer.data, kinds, positive, strict=True):
            vertices = np.asarray(vertices, dtype=np.float64)
            if shape_type == "rectangle":
                kind, corners = "box", np.vstack([vertices.min(axis=0), vertices.max(axis=0)])
            elif shape_type == "polygon" and len(vertices) >= 3:
                kind, corners = "lasso", vertices
            else:
                continue  # lines, paths, ellipses are no prompts
            key = (kind, np.round(vertices, _DECIMALS).tobytes(), sign)
            entries.append((key, _maker(self, layer, kind, corners, sign)))
        self._recolour_shapes(positive)
        self._merge(BOXES, entries)

    def _recolour_shapes(self, positive: list[bool]) -> None:
        layer = self.shapes
        wanted = np.array(
            [POSITIVE_COLOUR if sign else NEGATIVE_COLOUR for sign in positive], dtype=float
        ).reshape(-1, 4)
        current = np.asarray(layer.edge_color, dtype=float).reshape(-1, 4)
        if len(wanted) and (current.shape != wanted.shape or not np.allclose(current, wanted)):
            layer.edge_color = wanted

    def _on_scribbles_history(self, event: Any = None) -> None:
        layer = self.scribbles
        if layer is None:
            return
        kind = getattr(event, "type", "")
        key = history_key(layer)
        if kind == "set_data" and key == self._scribble_history:
            return  # a refresh (slider moved...), not an undo or redo
        self._scribble_history = key
        self.read_scribbles()

    def read_scribbles(self) -> None:
        """Read new strokes of the scribbles layer into prompts; erased voxels leave theirs."""
        layer = self.scribbles
        if layer is None:
            return
        data = np.asarray(layer.data)
        before = self._snapshot
        if before is None or before.shape != data.shape:
            before = np.zeros(data.shape, dtype=np.uint8)
        changed = data != before
        if not changed.any():
            return
        self._snapshot = np.array(data, dtype=np.uint8, copy=True)
        items: list[PromptItem] = []
        for item in self.items:
            if item.role != SCRIBBLES:
                items.append(item)
                continue
            still = data[tuple(item.voxels.T)] == item.value
            if still.all():
                items.append(item)
            elif still.any():  # partly erased: the rest is a new scribble in its place
                voxels = item.voxels[still]
                items.append(self._scribble(voxels, item.value, key=item.key))
        for value in (POSITIVE_SCRIBBLE, NEGATIVE_SCRIBBLE):
            fresh = np.argwhere(changed & (data == value))
            if len(fresh):
                items.append(self._scribble(fresh, value, key=next(_ids)))
        self._set_items(items)

    def _scribble(self, voxels: np.ndarray, value: int, *, key: Any) -> PromptItem:
        prompt = Prompt(
            "scribble",
            display_to_ras(self.display_affine, voxels),
            value == POSITIVE_SCRIBBLE,
        )
        return PromptItem(SCRIBBLES, key, prompt, voxels=voxels.astype(np.int64), value=value)

    # ---------------------------------------------------------------- taking back
    def prompts(self) -> tuple[Prompt, ...]:
        """The prompts, oldest first."""
        return tuple(item.prompt for item in self.items)

    def remove(self, item: PromptItem) -> None:
        """Take ``item`` out of its layer (and so out of the prompts)."""
        if item.role == SCRIBBLES:
            layer = self.scribbles
            if layer is not None:
                index = tuple(item.voxels.T)
                data = layer.data
                data[index] = np.where(data[index] == item.value, 0, data[index])
                layer.refresh()
                self.read_scribbles()
            return
        layer = self.points if item.role == CLICKS else self.shapes
        index = self._index_of(item, layer)
        if index is None:
            self._set_items([i for i in self.items if i is not item])
            return
        layer.selected_data = {index}
        layer.remove_selected()

    def _index_of(self, item: PromptItem, layer: Any) -> int | None:
        if layer is None:
            return None
        positive = _positive_column(layer, len(layer.data))
        for index in range(len(layer.data) - 1, -1, -1):
            vertices = np.asarray(layer.data[index], dtype=np.float64)
            if item.role == CLICKS:
                key = (tuple(np.round(vertices, _DECIMALS).tolist()), positive[index])
            else:
                key = (item.key[0], np.round(vertices, _DECIMALS).tobytes(), positive[index])
            if key == item.key:
                return index
        return None

    def remove_last(self) -> bool:
        """Take the newest prompt back; False when there is none."""
        if not self.items:
            return False
        self.remove(self.items[-1])
        return True

    def keep_first(self, count: int) -> None:
        """Take back every prompt after the first ``count`` (newest first)."""
        self._muted += 1
        try:
            while len(self.items) > count:
                before = len(self.items)
                self.remove(self.items[-1])
                if len(self.items) >= before:  # could not be found: forget it
                    self.items = self.items[:-1]
        finally:
            self._muted -= 1
        self.on_change()

    def clear(self) -> None:
        """Remove every prompt from the layers."""
        self._muted += 1
        try:
            for layer in (self.points, self.shapes):
                if layer is not None and len(layer.data):
                    layer.selected_data = set(range(len(layer.data)))
                    layer.remove_selected()
            if self.scribbles is not None:
                self.scribbles.data[...] = 0
                self.scribbles.refresh()
                self._snapshot = np.zeros(self.scribbles.data.shape, dtype=np.uint8)
            self.items = []
        finally:
            self._muted -= 1
        self.on_change()


def _positive_column(layer: Any, count: int) -> list[bool]:
    features = layer.features
    if "positive" in getattr(features, "columns", ()) and len(features) == count:
        return [bool(v) for v in features["positive"]]
    return [True] * count


def _maker(
    owner: PromptLayers, layer: Any, kind: str, vertices: np.ndarray, positive: bool
) -> Callable[[], Prompt]:
    def make() -> Prompt:
        ras = layer_to_ras(layer, owner.image, owner.display_affine, vertices)
        return Prompt(kind, ras, positive)

    return make


__all__ = [
    "BOXES",
    "CLICKS",
    "NEGATIVE_SCRIBBLE",
    "POSITIVE_SCRIBBLE",
    "PREVIEW",
    "PromptItem",
    "PromptLayers",
    "SCRIBBLES",
    "TOGGLE_KEY",
    "display_to_ras",
    "layer_to_ras",
    "preview_colormap",
]
