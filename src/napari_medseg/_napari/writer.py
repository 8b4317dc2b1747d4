"""npe2 writers: save an image or labels layer as NIfTI on its source scan's grid, and a
labels layer as a 3D Slicer segmentation (``.seg.nrrd``, :func:`write_seg_nrrd`).

Where the geometry comes from, in order:

1. ``attributes["metadata"]["medseg"]``: layers made by this plugin (reader,
   sample data, widgets) and labels copied from them.
2. A layer napari made on a scan (the *New labels* button) carries no metadata;
   it has exactly the grid (shape, scale, translate...) the scan is shown on, so
   it is matched by grid: first against the napari-medseg layers of the open
   viewers as they are placed *now* (the user may have moved the scan), then
   against the scan grids of the process-local :mod:`.geometry_registry`, then
   (the moved scan is no longer in the viewer) against registered scans of the
   same shape and voxel size when only one position is possible.
3. The layer's own transform under the display convention (world axes
   ``(S, P, L)`` in mm), saved with a warning that no source scan matched.

A layer on a scan's grid is always saved on that scan's own voxel grid with its
true affine, even when the user moved it in the viewer (a warning says that the
move is not saved): its voxels are the scan's voxels, and the file must overlay
the scan file in any other tool.

The display-order array is turned back into the stored voxel order
(:meth:`DisplayGeometry.to_source`, a view) and written atomically with the
source affine and qform/sform codes by :func:`napari_medseg.io.nifti.write_nifti`,
which refuses to replace a source scan.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_medseg.errors import MedsegError, ScanWriteError
from napari_medseg.geometry import RAS_TO_WORLD, DisplayGeometry, voxel_spacing

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


def write_seg_nrrd(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: a labels layer as a 3D Slicer segmentation (``.seg.nrrd``).

    The labels are written on their source scan's voxel grid (found as for NIfTI,
    :func:`resolve_geometry`) with the layer's class names and colours (its
    ``features``; values without a class in the colour the layer shows them in),
    by :func:`napari_medseg.io.nrrd.write_seg_nrrd`: atomically, never over a scan
    opened in this session. napari's save dialog asks before replacing a file.

    Parameters
    ----------
    path : str
        Target ``.seg.nrrd`` file.
    data : array-like
        Layer data, shape ``(S, P, L)`` display order.
    attributes : dict
        Layer state (``metadata``, ``features``, ``colormap``, ``scale``...).

    Returns
    -------
    list of str
        The written file.
    """
    from napari_medseg._napari.label_classes import classes_from_state
    from napari_medseg._napari.notifications import notify_warnings
    from napari_medseg.io.nrrd import write_seg_nrrd as write
    from napari_medseg.labels.maps import present_labels
    from napari_medseg.volume import ScanMetadata, Volume

    path = os.fspath(path)
    source_array, geometry, medseg, how, messages = layer_on_source_grid(
        path, data, attributes, kind="labels"
    )
    classes = classes_from_state(
        attributes.get("features"),
        attributes.get("colormap"),
        values=present_labels(source_array).tolist(),
    )
    labels = Volume(
        np.ascontiguousarray(source_array),
        np.array(geometry.source_affine, dtype=float),
        ScanMetadata(source=str(medseg.get("source", "") or ""), format="memory"),
    )
    try:
        written = write(
            path, labels, classes, protect=protected_sources(medseg, "labels"), overwrite=True
        )
    except MedsegError:
        raise
    except (ValueError, OSError) as error:
        raise ScanWriteError(path, str(error)) from error
    logger.info("saved labels layer %r to %s (geometry from %s)", attributes.get("name"), path, how)
    if messages:
        notify_warnings(messages, context=os.path.basename(path))
    return [str(written)]


# ------------------------------------------------------------------ geometry
#: Tolerance (mm) when comparing layer grids and positions.
GRID_TOL_MM = 1e-3


def resolve_geometry(
    shape: tuple[int, ...], attributes: dict[str, Any]
) -> tuple[DisplayGeometry, dict[str, Any], str, list[str]]:
    """Find the source geometry a layer saves onto.

    Parameters
    ----------
    shape : tuple of int
        Shape of the layer's (full-resolution) data, napari axes ``(S, P, L)``.
    attributes : dict
        Layer state as napari passes it to writers (``metadata``, ``scale``,
        ``translate``, ``rotate``, ``shear``, ``affine``, ``units``...). Nothing in
        it is modified.

    Returns
    -------
    geometry : DisplayGeometry
    medseg : dict
        A deep copy of the ``metadata["medseg"]`` dict it came from (empty for
        the fallback): changing it never changes a layer's metadata (napari's
        *Duplicate* shares one metadata dict between two layers).
    how : {"metadata", "viewer layer", "registry", "moved scan", "layer transform"}
    warnings : list of str
        What the user should know about the choice.

    Notes
    -----
    The voxels of a layer on a scan's grid belong to that scan's voxels, wherever
    the user moved the layers in the viewer: such a layer is saved on the scan's
    own voxel grid with the scan's true affine (so the file overlays the scan
    file in any tool), and a warning says that the move shown in the viewer was
    not saved. This holds for layers carrying the scan's metadata and for layers
    napari made on the moved scan (*New labels*), which are matched by grid.
    """
    from napari_medseg._napari.layers import MEDSEG_KEY, geometry_from_metadata

    messages: list[str] = []
    ndim = len(shape)
    world = _world_matrix(attributes, ndim)
    metadata = attributes.get("metadata") or {}
    geometry = geometry_from_metadata(metadata)
    if geometry is not None:
        medseg = copy.deepcopy(dict(metadata[MEDSEG_KEY]))
        if tuple(shape) == tuple(geometry.display_shape):
            messages.extend(_moved_note(world, geometry, medseg))
            return geometry, medseg, "metadata", messages
        messages.append(
            f"the layer's shape {tuple(shape)} no longer matches its source scan's grid "
            f"{tuple(geometry.display_shape)}; looking for another grid."
        )

    if ndim == 3:
        found = _match_scan(tuple(shape), world, attributes)
        if found is not None:
            chosen, how, notes = found
            messages.extend(notes)
            return chosen.geometry, copy.deepcopy(chosen.medseg), how, messages

    geometry = _geometry_from_transform(shape, attributes)
    messages.append(_no_source_message(tuple(shape), world))
    units = attributes.get("units")
    if units is not None and any(str(u) not in ("mm", "millimeter") for u in units):
        messages.append(f"the layer's units are {tuple(str(u) for u in units)}; taken as mm.")
    return geometry, {}, "layer transform", messages


def _match_scan(
    shape: tuple[int, ...], world: np.ndarray, attributes: dict[str, Any]
) -> tuple[Any, str, list[str]] | None:
    """The scan a layer without our metadata was drawn on, matched by grid.

    In order: a napari-medseg layer of an open viewer whose *current* grid is the
    layer's (the scan may have been moved in the viewer); a registered scan
    whose display grid is the layer's; a registered scan with the layer's shape
    and voxel size at another position (the scan was moved, then removed from
    the viewer), only for a layer on the display axes ``(S, P, L)`` (napari's
    *New labels* copies them from the scan) and only when that position is
    unambiguous.
    """
    from napari_medseg._napari import geometry_registry

    plain = _is_plain_grid(attributes, len(shape))
    scale = voxel_spacing(world)
    translate = world[:3, 3]

    candidates = _viewer_matches(shape, world)
    how = "viewer layer"
    if not candidates and plain:
        candidates = geometry_registry.find_by_grid(shape, scale, translate, tol_mm=GRID_TOL_MM)
        how = "registry"
    if not candidates and plain and _has_display_axes(attributes):
        # napari's New labels copies the scan's axis labels: a layer another reader
        # made with the same shape and voxel size (other axis order) is not taken
        candidates = geometry_registry.find_by_shape_and_scale(shape, scale, tol_mm=GRID_TOL_MM)
        how = "moved scan"
        positions = _distinct_positions(candidates)
        if len(positions) > 1:
            return None  # several scans of this size elsewhere: do not guess
    if not candidates:
        return None

    def moved(entry: Any) -> bool:
        return not np.allclose(world, entry.geometry.world_affine, atol=GRID_TOL_MM)

    # a scan shown where it belongs wins over one the user moved onto this grid;
    # then the most recently opened
    candidates = sorted(candidates, key=lambda e: (moved(e), -geometry_registry.recency(e.medseg)))
    chosen = candidates[0]
    chosen_name = _source_name(chosen.medseg)
    notes: list[str] = []
    others = [m for m in candidates[1:] if not m.same_source_grid(chosen)]
    same_place = [
        m
        for m in others
        if np.allclose(m.geometry.world_affine, chosen.geometry.world_affine, atol=GRID_TOL_MM)
    ]
    elsewhere = [m for m in others if not any(m is n for n in same_place)]
    if same_place:
        names = ", ".join(sorted({_source_name(m.medseg) for m in same_place}))
        notes.append(
            f"the layer lies on the grid of several scans; saved in the voxel order "
            f"of the most recently opened one ({chosen_name}), not of {names}. All of "
            "them share the same patient positions."
        )
    if elsewhere:
        names = ", ".join(sorted({_source_name(m.medseg) for m in elsewhere}))
        why = (
            "which is shown at its own position"
            if not moved(chosen)
            else "the most recently opened of them"
        )
        notes.append(
            f"the layer also lies where {names} is shown after being moved in the viewer; "
            f"it was saved on the grid of {chosen_name}, {why}."
        )
    notes.extend(_moved_note(world, chosen.geometry, chosen.medseg))
    return chosen, how, notes


def _viewer_matches(shape: tuple[int, ...], world: np.ndarray) -> list[Any]:
    """napari-medseg layers of the open viewers whose current grid is this one.

    A writer is not given the viewer; the layers are found through
    ``napari.current_viewer()`` and the open viewers. Nothing is imported when
    napari's viewer module was never loaded (no viewer can exist then).
    """
    from napari_medseg._napari.geometry_registry import RegisteredGeometry
    from napari_medseg._napari.layers import MEDSEG_KEY, geometry_from_metadata

    out: list[Any] = []
    seen: set[int] = set()
    for layer in _open_viewer_layers():
        metadata = getattr(layer, "metadata", None) or {}
        geometry = geometry_from_metadata(metadata)
        if geometry is None or tuple(geometry.display_shape) != tuple(shape):
            continue
        try:
            layer_shape = tuple(int(n) for n in _layer_shape(layer))
            layer_world = _world_matrix(
                {
                    "scale": layer.scale,
                    "translate": layer.translate,
                    "rotate": layer.rotate,
                    "shear": layer.shear,
                    "affine": layer.affine.affine_matrix,
                },
                len(shape),
            )
        except (AttributeError, TypeError, ValueError):
            continue
        if layer_shape != tuple(shape) or not np.allclose(layer_world, world, atol=GRID_TOL_MM):
            continue
        medseg = metadata[MEDSEG_KEY]
        if id(medseg) in seen:
            continue
        seen.add(id(medseg))
        out.append(RegisteredGeometry(geometry, copy.deepcopy(dict(medseg))))
    return out


def _open_viewer_layers() -> list[Any]:
    """Layers of the current viewer, then of the other open viewers."""
    from napari_medseg._napari.history import open_viewers

    return [layer for viewer in open_viewers() for layer in list(viewer.layers)]


def _layer_shape(layer: Any) -> tuple[int, ...]:
    shapes = getattr(layer, "level_shapes", None)
    if shapes is not None and len(shapes):
        return tuple(shapes[0])
    return tuple(layer.data.shape[: layer.ndim])


def _has_display_axes(attributes: dict[str, Any]) -> bool:
    """Whether the layer's axis labels are the display convention's ``(S, P, L)``."""
    from napari_medseg._napari.layers import AXIS_LABELS

    labels = attributes.get("axis_labels")
    return labels is not None and tuple(str(a) for a in labels) == tuple(AXIS_LABELS)


def _distinct_positions(candidates: list[Any]) -> list[np.ndarray]:
    positions: list[np.ndarray] = []
    for entry in candidates:
        translate = np.asarray(entry.geometry.translate, dtype=float)
        if not any(np.allclose(translate, p, atol=GRID_TOL_MM) for p in positions):
            positions.append(translate)
    return positions


def _source_name(medseg: dict[str, Any]) -> str:
    return os.path.basename(str(medseg.get("source", "")).rstrip("/\\")) or "an unnamed scan"


def _moved_note(world: np.ndarray, geometry: DisplayGeometry, medseg: dict[str, Any]) -> list[str]:
    """A warning when the layer is shown elsewhere than its scan's display grid."""
    expected = geometry.world_affine
    if world.shape != expected.shape or np.allclose(world, expected, atol=GRID_TOL_MM):
        return []
    name = _source_name(medseg)
    if np.allclose(world[:3, :3], expected[:3, :3], atol=GRID_TOL_MM):
        shift = world[:3, 3] - expected[:3, 3]
        how = "shifted by ({}) mm (S, P, L)".format(", ".join(f"{v:+.4g}" for v in shift))
    else:
        how = "moved, rotated or rescaled"
    return [
        f"the layer is shown {how} from its scan {name}; it was saved on {name}'s own voxel "
        f"grid with its true affine, so the file overlays {name}. The move made in the viewer "
        "is not saved."
    ]


def _no_source_message(shape: tuple[int, ...], world: np.ndarray) -> str:
    from napari_medseg._napari import geometry_registry

    scale = voxel_spacing(world) if world.shape == (4, 4) else None
    grid = f"shape {tuple(shape)}"
    if scale is not None:
        grid += ", voxel size ({}) mm".format(", ".join(f"{v:.4g}" for v in scale))
    same_size = (
        geometry_registry.find_by_shape_and_scale(shape, scale, tol_mm=GRID_TOL_MM)
        if scale is not None
        else []
    )
    if same_size:
        names = ", ".join(sorted({_source_name(e.medseg) for e in same_size}))
        why = (
            f"its grid ({grid}) has the size of {names} but lies at none of their "
            "positions and no napari-medseg layer in the viewer is placed there, so "
            "which scan it belongs to (if any) is not known"
        )
    else:
        why = (
            f"its grid ({grid}) is not the grid of any scan opened with napari-medseg in "
            "this session, nor of a napari-medseg layer in the viewer"
        )
    return (
        f"no source scan matches this layer: {why}. It was saved on its own grid, "
        "reading its scale/translate as patient millimetres (napari world axes S, P, L). "
        "To save it on a scan's grid, draw it in a labels layer made on that scan."
    )


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


def _world_matrix(attributes: dict[str, Any], ndim: int) -> np.ndarray:
    """The layer's data -> world matrix (scale, translate, rotate, shear, affine)."""
    from napari.utils.transforms import CompositeAffine

    composite = CompositeAffine(
        scale=attributes.get("scale", np.ones(ndim)),
        translate=attributes.get("translate", np.zeros(ndim)),
        rotate=attributes.get("rotate", np.eye(ndim)),
        shear=attributes.get("shear", np.zeros(ndim * (ndim - 1) // 2)),
        ndim=ndim,
    )
    affine = attributes.get("affine")
    if affine is None:
        affine = np.eye(ndim + 1)
    affine = np.asarray(getattr(affine, "affine_matrix", affine), dtype=float)
    return affine @ composite.affine_matrix


def _geometry_from_transform(shape: tuple[int, ...], attributes: dict[str, Any]) -> DisplayGeometry:
    """Geometry of a layer with no known source, from its napari data -> world transform.

    The layer's array is saved as is (axes ``S, P, L``); its affine maps the
    array index to RAS+ mm through napari's full transform (scale, translate,
    rotate, shear and the layer affine) and the display convention.
    """
    world = _world_matrix(attributes, len(shape))
    affine = np.linalg.inv(RAS_TO_WORLD) @ world
    scale = voxel_spacing(world)
    return DisplayGeometry(
        source_affine=affine,
        source_shape=tuple(int(n) for n in shape),  # type: ignore[arg-type]
        transform=np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]),
        scale=scale,
        translate=world[:3, 3].copy(),
        deobliqued=False,
    )


def protected_sources(medseg: dict[str, Any], kind: str) -> list[str]:
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
def full_resolution(data: Any, attributes: dict[str, Any]) -> Any:
    """The full-resolution level of a layer's data (the data itself if not multiscale).

    napari passes multiscale data as a ``MultiScaleData`` (a sequence of levels,
    largest first) whose ``__array__`` is the *smallest* level, so
    ``np.asarray`` alone would save the wrong level with full-resolution voxel sizes.
    """
    if attributes.get("multiscale"):
        return data[0]
    if (
        isinstance(data, Sequence)
        and not isinstance(data, str | bytes | np.ndarray)
        and len(data)
        and hasattr(data[0], "shape")
    ):  # a list of levels passed without the flag (not a nested list of numbers)
        return data[0]
    return data


def layer_on_source_grid(
    path: str, data: Any, attributes: dict[str, Any], *, kind: str
) -> tuple[np.ndarray, DisplayGeometry, dict[str, Any], str, list[str]]:
    """A layer's data in its source scan's stored voxel order, for a writer.

    Parameters
    ----------
    path : str
        The file being written (named in errors).
    data, attributes
        What napari hands a writer.
    kind : {"image", "labels"}
        Labels stored as float are rounded to integers.

    Returns
    -------
    source_array : numpy.ndarray
        ``(I, J, K)`` in the source scan's voxel order (a view where possible).
    geometry, medseg, how, messages
        As :func:`resolve_geometry`.

    Raises
    ------
    ScanWriteError
        For a layer that is not a single-channel 3D volume (RGB, 2D, 4D...) or a
        geometry that cannot be worked out.
    """
    if attributes.get("rgb"):
        raise ScanWriteError(
            path,
            "the layer is an RGB(A) colour image; a scan saved as NIfTI by napari-medseg "
            "holds one value per voxel.",
            "Save colour images with napari's own writers (e.g. as .tif or .png), or save "
            "a single-channel 3D layer.",
        )
    array = np.asarray(full_resolution(data, attributes))
    if array.ndim != 3:
        raise ScanWriteError(
            path,
            f"the layer is {array.ndim}D (shape {array.shape}); only 3D layers can be saved "
            "as a scan.",
            "Draw labels in a 3D labels layer made on the scan.",
        )
    scale = attributes.get("scale")
    if scale is not None and len(scale) != array.ndim:
        raise ScanWriteError(
            path,
            f"the layer's data has {array.ndim} axes (shape {array.shape}) but its transform "
            f"has {len(scale)}; it is not a volume napari-medseg can place in patient space.",
            "Save a 3D single-channel image or labels layer.",
        )
    # napari hides ValueErrors raised by writers ("no writer found"): turn every
    # failure to work out or apply the geometry into a ScanWriteError naming the file
    try:
        geometry, medseg, how, messages = resolve_geometry(tuple(array.shape), attributes)
        source_array = geometry.to_source(array)
    except MedsegError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, np.linalg.LinAlgError) as error:
        raise ScanWriteError(
            path,
            f"the layer's geometry could not be worked out ({type(error).__name__}: {error}).",
            "Save a 3D layer opened or made with napari-medseg, or one with a plain "
            "scale/translate transform.",
        ) from error
    if kind == "labels" and source_array.dtype.kind == "f":
        source_array = np.rint(source_array).astype(np.int64)
    return source_array, geometry, medseg, how, messages


def save_layer(path: str, data: Any, attributes: dict[str, Any], *, kind: str) -> str:
    """Save one layer's data as NIfTI on its source grid; return the written path.

    Raises
    ------
    ScanWriteError
        For a layer that is not a single-channel 3D volume (RGB, 2D, 4D...), a
        geometry that cannot be worked out, or a bad file name.
    OverwriteSourceError
        When ``path`` is a source scan.
    """
    from napari_medseg._napari.notifications import notify_warnings
    from napari_medseg.io.nifti import write_nifti

    path = os.fspath(path)
    source_array, geometry, medseg, how, messages = layer_on_source_grid(
        path, data, attributes, kind=kind
    )
    qform_affine = medseg.get("qform_affine")
    description = header_description(medseg, kind)
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
            protect=protected_sources(medseg, kind),
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


def header_description(medseg: dict[str, Any], kind: str) -> str:
    """The NIfTI header ``descrip`` of a layer written onto its scan.

    Labels: ``"napari-medseg labels on <scan file name>"``; an image: its series
    description. ``medseg`` is the layer's ``metadata["medseg"]``.
    """
    source = os.path.basename(str(medseg.get("source", ""))) if medseg else ""
    if kind == "labels":
        return f"napari-medseg labels on {source}" if source else "napari-medseg labels"
    return str(medseg.get("series_description", "")) if medseg else ""
