"""3D models of a labels layer: one napari Surface layer per label, in world mm.

*Show 3D* (the Segments list) builds a smoothed surface mesh of each shown label
(:func:`napari_medseg.labels.mesh.label_meshes`, in a worker through the widget's
:class:`~napari_medseg._napari.jobs.JobSlot`) from the layer's data on its source grid
(:func:`~napari_medseg._napari.layer_volume.layer_volume`), and shows each as a Surface
layer named ``"<labels layer> 3D: <label name>"`` in the label's class colour (and its
opacity in the list). Pressing it again after edits rebuilds them: a label's surface
layer is updated in place (it keeps its place in the layer list and its settings),
and the surfaces of labels no longer shown or drawn are removed.

Where the vertices go: the mesh is made in RAS+ mm and placed in napari's world
``(S, P, L)`` mm exactly where napari shows the labels, through the layer's display
geometry (:class:`~napari_medseg.geometry.DisplayGeometry`): RAS -> display voxel index
-> world. For an axis-aligned scan that is :data:`~napari_medseg.geometry.RAS_TO_WORLD`;
an oblique scan is shown de-obliqued around its centre, and so are its surfaces, so
they lie on its labels. The triangles keep their winding: napari's 3D view draws the
world axes ``(S, P, L)`` as vispy's ``(z, y, x)``, a rotation of RAS, so the normals
still point outwards on screen.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_medseg.geometry import DisplayGeometry
from napari_medseg.labels.classes import default_name, hex_color
from napari_medseg.progress import Progress
from napari_medseg.volume import Volume

#: ``layer.metadata`` key of a surface layer: ``{"value": int, "labels": str}``.
SURFACE_KEY = "medseg_surface"

#: labels layer -> {value: Surface layer} of the surfaces built from it.
_SURFACES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class WorldMesh:
    """The surface of one label, placed in napari's world.

    Attributes
    ----------
    value : int
        The label value.
    vertices : numpy.ndarray
        float32 ``(N, 3)``, napari world ``(S, P, L)`` mm.
    faces : numpy.ndarray
        int32 ``(M, 3)``.
    volume_mm3 : float
        Volume the mesh encloses, mm^3.
    """

    value: int
    vertices: np.ndarray
    faces: np.ndarray
    volume_mm3: float


def ras_to_world(vertices: np.ndarray, geometry: DisplayGeometry) -> np.ndarray:
    """RAS+ mm ``(N, 3)`` -> napari world ``(S, P, L)`` mm ``(N, 3)`` float32, where
    napari shows the labels of ``geometry`` (de-obliqued for an oblique scan)."""
    to_world = geometry.world_affine @ np.linalg.inv(geometry.display_affine)
    points = np.asarray(vertices, dtype=np.float64)
    return (points @ to_world[:3, :3].T + to_world[:3, 3]).astype(np.float32)


def build_surfaces(
    volume: Volume,
    geometry: DisplayGeometry,
    values: Iterable[int] | None = None,
    *,
    skip: Iterable[int] = (),
    smooth: int | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> list[WorldMesh]:
    """Meshes of a label map's labels in napari's world (runs in a worker).

    Parameters
    ----------
    volume : Volume
        The labels on their source grid (:func:`~napari_medseg._napari.layer_volume.layer_volume`).
    geometry : DisplayGeometry
        How the layer shows that grid.
    values : iterable of int, optional
        The labels (default: all the map holds, but ``skip``).
    skip : iterable of int
        Labels left out when ``values`` is not given (the hidden ones).
    smooth : int, optional
        Smoothing iterations (default :data:`~napari_medseg.labels.mesh.DEFAULT_SMOOTH`).
    progress, cancel
        As :func:`~napari_medseg.labels.mesh.label_meshes`.
    """
    from napari_medseg.labels.mesh import DEFAULT_SMOOTH, label_meshes

    meshes = label_meshes(
        volume,
        values,
        skip=skip,
        smooth=DEFAULT_SMOOTH if smooth is None else smooth,
        progress=progress,
        cancel=cancel,
    )
    return [
        WorldMesh(m.value, ras_to_world(m.vertices, geometry), m.faces, m.volume_mm3)
        for m in meshes
    ]


def surface_name(layer_name: str, label_name: str) -> str:
    """``"<labels layer> 3D: <label name>"``."""
    return f"{layer_name} 3D: {label_name}"


def surface_layers(viewer: Any, labels: Any) -> dict[int, Any]:
    """``{value: Surface layer}`` built from ``labels`` that are still in the viewer."""
    built = _SURFACES.get(labels, {})
    return {v: s for v, s in built.items() if s in viewer.layers}


def label_colours(labels: Any, values: Iterable[int]) -> dict[int, tuple[str, str]]:
    """``{value: (name, "#rrggbb")}`` of ``values``: the layer's classes, else
    ``label_<n>`` in the colour napari shows the value in."""
    from napari_medseg._napari.label_classes import layer_classes

    classes = layer_classes(labels)
    out = {}
    for value in (int(v) for v in values):
        name, colour = classes.get(value, ("", ""))
        out[value] = (name or default_name(value), colour or _shown(labels, value))
    return out


def _shown(labels: Any, value: int) -> str:
    return hex_color(labels.get_color(value), unit=True)


def show_surfaces(viewer: Any, labels: Any, meshes: list[WorldMesh]) -> list[Any]:
    """Add or update one Surface layer per mesh; remove this layer's other surfaces.

    Parameters
    ----------
    viewer : napari.Viewer
    labels : napari.layers.Labels
        The layer the meshes were built from (names, colours and opacities come from it).
    meshes : list of WorldMesh

    Returns
    -------
    list of napari.layers.Surface
        In the order of ``meshes``.
    """
    from napari_medseg._napari.label_classes import label_alpha, rgba

    existing = surface_layers(viewer, labels)
    classes = label_colours(labels, [m.value for m in meshes])
    alpha = label_alpha(labels)
    shown: dict[int, Any] = {}
    for mesh in meshes:
        name, colour = classes[mesh.value]
        colours = np.tile(rgba(colour).astype(np.float32), (len(mesh.vertices), 1))
        data = (mesh.vertices, mesh.faces)
        surface = existing.pop(mesh.value, None)
        if surface is not None:
            surface.vertex_colors = None  # vispy checks the colours against the vertices
            surface.data = data
            surface.vertex_colors = colours
            surface.name = surface_name(labels.name, name)
        else:
            surface = viewer.add_surface(
                data,
                vertex_colors=colours,
                name=surface_name(labels.name, name),
                shading="smooth",
                opacity=float(alpha.get(mesh.value, 1.0)) or 1.0,
                units=tuple(str(u) for u in labels.units),  # mm, as the labels: one world
                metadata={SURFACE_KEY: {"value": int(mesh.value), "labels": str(labels.name)}},
            )
        shown[mesh.value] = surface
    for stale in existing.values():  # labels no longer shown, or erased
        viewer.layers.remove(stale)
    _SURFACES[labels] = shown
    return [shown[m.value] for m in meshes]


__all__ = [
    "SURFACE_KEY",
    "WorldMesh",
    "build_surfaces",
    "label_colours",
    "ras_to_world",
    "show_surfaces",
    "surface_layers",
    "surface_name",
]
