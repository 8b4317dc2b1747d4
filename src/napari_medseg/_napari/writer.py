"""npe2 writers: save an image or labels layer as NIfTI on its source scan's grid.

Where the geometry comes from, in order:

1. ``attributes["metadata"]["medseg"]``: layers made by this plugin (reader,
   sample data, widgets) and labels copied from them.
2. The process-local :mod:`.geometry_registry`, by grid: a layer napari made on
   a scan's display grid (the "new labels" button) has exactly that grid's
   shape, scale and translate.
3. The layer's own transform under the display convention (world axes
   ``(S, P, L)`` in mm): an axis-aligned grid, saved with a warning that no
   source scan was known.

The display-order array is turned back into the stored voxel order
(:meth:`DisplayGeometry.to_source`, a view) and written atomically with the
source affine and qform/sform codes by :func:`napari_medseg.io.nifti.write_nifti`,
which refuses to replace a source scan.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from napari_medseg.geometry import RAS_TO_WORLD, DisplayGeometry
from napari_medseg.io.errors import MedsegError, ScanWriteError

logger = logging.getLogger(__name__)


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer for labels layers.

    Parameters
    ----------
    path : str
        Target ``.nii`` or ``.nii.gz`` file.
    data : array-like
        Layer data, shape ``(S, P, L)`` display order.
    attributes : dict
        Layer state (``metadata``, ``scale``, ``translate``, ``rotate``...).

    Returns
    -------
    list of str
        The written file.
    """
    return [save_layer(path, data, attributes, kind="labels")]


def write_image(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer for image layers (same rules as :func:`write_labels`)."""
    return [save_layer(path, data, attributes, kind="image")]


# ------------------------------------------------------------------ geometry
def resolve_geometry(
    shape: tuple[int, ...], attributes: dict[str, Any]
) -> tuple[DisplayGeometry, dict[str, Any], str, list[str]]:
    """Find the source geometry a layer saves onto.

    Returns
    -------
    geometry : DisplayGeometry
    medseg : dict
        The ``metadata["medseg"]`` dict it came from (empty for the fallback).
    how : {"metadata", "registry", "layer transform"}
    warnings : list of str
        What the user should know about the choice.
    """
    from napari_medseg._napari import geometry_registry
    from napari_medseg._napari.layers import MEDSEG_KEY, geometry_from_metadata

    messages: list[str] = []
    metadata = attributes.get("metadata") or {}
    geometry = geometry_from_metadata(metadata)
    if geometry is not None:
        if tuple(shape) == tuple(geometry.display_shape):
            return geometry, dict(metadata[MEDSEG_KEY]), "metadata", messages
        messages.append(
            f"the layer's shape {tuple(shape)} no longer matches its source scan's grid "
            f"{tuple(geometry.display_shape)}; looking for another grid."
        )

    scale = np.asarray(attributes.get("scale", np.ones(len(shape))), dtype=float)
    translate = np.asarray(attributes.get("translate", np.zeros(len(shape))), dtype=float)
    if _is_plain_grid(attributes, len(shape)):
        matches = geometry_registry.find_by_grid(shape, scale, translate)
        if matches:
            chosen = matches[0]
            others = [m for m in matches[1:] if not m.same_source_grid(chosen)]
            if others:
                names = ", ".join(os.path.basename(m.source) or "?" for m in others)
                messages.append(
                    f"the layer lies on the grid of several scans; saved in the voxel order "
                    f"of the most recently opened one ({os.path.basename(chosen.source)}), "
                    f"not of {names}. All of them share the same patient positions."
                )
            return chosen.geometry, dict(chosen.medseg), "registry", messages

    geometry = _geometry_from_transform(shape, attributes)
    messages.append(
        "no source scan is known for this layer (it was not opened with napari-medseg and "
        "does not lie on the grid of a scan opened in this session): saved on its own "
        "axis-aligned grid, reading its scale/translate as patient millimetres "
        "(napari world axes S, P, L)."
    )
    units = attributes.get("units")
    if units is not None and any(str(u) not in ("mm", "millimeter") for u in units):
        messages.append(f"the layer's units are {tuple(str(u) for u in units)}; taken as mm.")
    return geometry, {}, "layer transform", messages


def _is_plain_grid(attributes: dict[str, Any], ndim: int) -> bool:
    """No rotation, shear or extra affine: the grid is scale + translate only."""
    eye = np.eye(ndim)
    rotate = np.asarray(attributes.get("rotate", eye), dtype=float)
    shear = np.asarray(attributes.get("shear", np.zeros(ndim * (ndim - 1) // 2)), dtype=float)
    affine = np.asarray(attributes.get("affine", np.eye(ndim + 1)), dtype=float)
    return (
        rotate.shape == eye.shape
        and np.allclose(rotate, eye)
        and np.allclose(shear, 0.0)
        and affine.shape == (ndim + 1, ndim + 1)
        and np.allclose(affine, np.eye(ndim + 1))
    )


def _geometry_from_transform(shape: tuple[int, ...], attributes: dict[str, Any]) -> DisplayGeometry:
    """Geometry of a layer with no known source, from its napari data -> world transform.

    The layer's array is saved as is (axes ``S, P, L``); its affine maps the
    array index to RAS+ mm through napari's full transform (scale, translate,
    rotate, shear and the layer affine) and the display convention.
    """
    from napari.utils.transforms import Affine, CompositeAffine

    ndim = len(shape)
    composite = CompositeAffine(
        scale=attributes.get("scale", np.ones(ndim)),
        translate=attributes.get("translate", np.zeros(ndim)),
        rotate=attributes.get("rotate", np.eye(ndim)),
        shear=attributes.get("shear", np.zeros(ndim * (ndim - 1) // 2)),
        ndim=ndim,
    )
    physical_to_world = Affine(affine_matrix=np.asarray(attributes.get("affine", np.eye(ndim + 1))))
    world = physical_to_world.affine_matrix @ composite.affine_matrix
    affine = np.linalg.inv(RAS_TO_WORLD) @ world
    scale = np.sqrt((world[:3, :3] ** 2).sum(axis=0))
    return DisplayGeometry(
        source_affine=affine,
        source_shape=tuple(int(n) for n in shape),  # type: ignore[arg-type]
        transform=np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]),
        scale=scale,
        translate=world[:3, 3].copy(),
        deobliqued=False,
    )


def _protected_sources(medseg: dict[str, Any], kind: str) -> list[str]:
    """Scans that must not be overwritten: every image opened in this session.

    A labels file the layer was read from is not protected: editing a label map
    and saving it back is the point (the write is atomic).
    """
    from napari_medseg._napari import geometry_registry

    protect = set(geometry_registry.registered_sources(exclude_kind="labels"))
    if medseg.get("source") and (kind == "image" or medseg.get("kind") != "labels"):
        protect.add(str(medseg["source"]))
    return sorted(protect)


# ------------------------------------------------------------------- writing
def save_layer(path: str, data: Any, attributes: dict[str, Any], *, kind: str) -> str:
    """Save one layer's data as NIfTI on its source grid; return the written path.

    Raises
    ------
    ScanWriteError
        For a layer that is not 3D or a bad file name.
    OverwriteSourceError
        When ``path`` is a source scan.
    """
    from napari_medseg._napari.notifications import notify_warnings
    from napari_medseg.io.nifti import write_nifti

    path = os.fspath(path)
    if isinstance(data, list):  # multiscale: save the full-resolution level
        data = data[0]
    array = np.asarray(data)
    if array.ndim != 3:
        raise ScanWriteError(
            path,
            f"the layer is {array.ndim}D (shape {array.shape}); only 3D layers can be saved "
            "as a scan.",
            "Draw labels in a 3D labels layer made on the scan.",
        )
    geometry, medseg, how, messages = resolve_geometry(tuple(array.shape), attributes)
    try:
        source_array = geometry.to_source(array)
    except ValueError as error:  # napari hides ValueErrors raised by writers
        raise ScanWriteError(path, str(error)) from error
    if kind == "labels" and source_array.dtype.kind == "f":
        source_array = np.rint(source_array).astype(np.int64)
    qform_affine = medseg.get("qform_affine")
    description = _description(attributes, medseg, kind)
    try:
        written = write_nifti(
            path,
            np.ascontiguousarray(source_array),
            geometry.source_affine,
            kind=kind,
            qform_code=int(medseg.get("qform_code", 1) or 0),
            sform_code=int(medseg.get("sform_code", 1) or 0),
            qform_affine=np.asarray(qform_affine, dtype=float) if qform_affine else None,
            description=description,
            protect=_protected_sources(medseg, kind),
        )
    except MedsegError:
        raise
    except (ValueError, OSError) as error:
        raise ScanWriteError(path, str(error)) from error
    name = attributes.get("name")
    logger.info("saved %s layer %r to %s (geometry from %s)", kind, name, path, how)
    if messages:
        notify_warnings(messages, context=os.path.basename(path))
    return str(written)


def _description(attributes: dict[str, Any], medseg: dict[str, Any], kind: str) -> str:
    source = os.path.basename(str(medseg.get("source", ""))) if medseg else ""
    if kind == "labels":
        return f"napari-medseg labels on {source}" if source else "napari-medseg labels"
    return str(medseg.get("series_description", "")) if medseg else ""
