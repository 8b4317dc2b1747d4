"""A napari layer as a :class:`~napari_medseg.volume.Volume` on its source scan's grid.

The widgets hand layers to the core (segmentation, measurements, saving) through
:func:`layer_volume`: the layer's display-order data is turned back into the stored
voxel order of the scan it was opened from (a view, no copy), with the scan's true
affine, exactly as the NIfTI writer does. So a report computed from a layer gives
the same numbers as ``medseg report`` on the file the layer is saved to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_medseg.errors import MedsegError
from napari_medseg.geometry import DisplayGeometry
from napari_medseg.volume import ScanMetadata, Volume


class LayerGeometryError(MedsegError):
    """A layer is not a 3D single-channel volume placed on a scan."""


@dataclass
class LayerVolume:
    """A layer's data on its source grid.

    Attributes
    ----------
    volume : Volume
        ``volume.array`` is a view of the layer data in the stored voxel order
        ``(I, J, K)`` of the source scan; ``volume.affine`` the scan's voxel -> RAS mm.
    geometry : DisplayGeometry
        How the layer's ``(S, P, L)`` display axes map onto the stored axes.
    medseg : dict
        A copy of the ``metadata["medseg"]`` entry the geometry came from (empty
        when the layer's own transform was used).
    how : str
        Where the geometry came from (see :func:`napari_medseg._napari.writer.resolve_geometry`).
    warnings : list of str
        What the user should know (e.g. no source scan matched).
    """

    volume: Volume
    geometry: DisplayGeometry
    medseg: dict[str, Any]
    how: str
    warnings: list[str] = field(default_factory=list)


def _metadata(medseg: dict[str, Any], name: str) -> ScanMetadata:
    window = medseg.get("window")
    return ScanMetadata(
        source=str(medseg.get("source", "") or name),
        format=str(medseg.get("format", "memory") or "memory"),
        modality=str(medseg.get("modality", "") or ""),
        units=str(medseg.get("units", "") or ""),
        series_uid=str(medseg.get("series_uid", "") or ""),
        study_uid=str(medseg.get("study_uid", "") or ""),
        frame_of_reference_uid=str(medseg.get("frame_of_reference_uid", "") or ""),
        series_description=str(medseg.get("series_description", "") or ""),
        window=tuple(window) if window else None,
        qform_code=int(medseg.get("qform_code", 1) or 0),
        sform_code=int(medseg.get("sform_code", 1) or 0),
        files=list(medseg.get("files", []) or []),
        # a distinct qform of the scan's NIfTI file, as the reader stored it
        extra={"qform_affine": medseg["qform_affine"]} if medseg.get("qform_affine") else {},
    )


def layer_volume(layer: Any) -> LayerVolume:
    """The data of a 3D image or labels layer on its source scan's voxel grid.

    Parameters
    ----------
    layer : napari.layers.Image or napari.layers.Labels
        A single-channel 3D layer; normally opened or made by napari-medseg, or
        drawn by napari on such a layer's grid (matched by grid, as the writer does).

    Returns
    -------
    LayerVolume

    Raises
    ------
    LayerGeometryError
        The layer is not 3D single-channel, or its geometry cannot be worked out.
    """
    from napari_medseg._napari.writer import full_resolution, resolve_geometry

    data, attributes, _ = layer.as_layer_data_tuple()
    if attributes.get("rgb"):
        raise LayerGeometryError(f"layer {layer.name!r} is an RGB colour image, not a scan.")
    array = full_resolution(data, attributes)
    if getattr(array, "ndim", 0) != 3:
        raise LayerGeometryError(
            f"layer {layer.name!r} is {getattr(array, 'ndim', 0)}D; a 3D scan layer is needed."
        )
    if not isinstance(array, np.ndarray):
        array = np.asarray(array)
    try:
        geometry, medseg, how, warnings = resolve_geometry(tuple(array.shape), attributes)
    except (ValueError, TypeError, KeyError, IndexError, np.linalg.LinAlgError) as error:
        raise LayerGeometryError(
            f"the geometry of layer {layer.name!r} could not be worked out ({error})."
        ) from error
    volume = Volume(
        geometry.to_source(array),
        np.array(geometry.source_affine, dtype=float),
        _metadata(medseg, layer.name),
    )
    return LayerVolume(volume, geometry, medseg, how, list(warnings))


def same_source_grid(a: LayerVolume, b: LayerVolume, atol_mm: float = 1e-4) -> bool:
    """Whether two layers hold the same source voxel grid (shape and affine)."""
    return a.volume.shape == b.volume.shape and bool(
        np.allclose(a.volume.affine, b.volume.affine, atol=atol_mm)
    )


def same_patient_grid(a: LayerVolume, b: LayerVolume, tol_mm: float = 1e-3) -> bool:
    """Whether two layers hold the same voxels on the same patient grid, in any voxel order.

    Unlike :func:`same_source_grid`, the stored voxel order may differ (axes permuted
    and/or flipped, e.g. a DICOM series and its NIfTI conversion): every voxel centre
    of ``b`` is a voxel centre of ``a`` within ``tol_mm`` (mm), and vice versa
    (:func:`napari_medseg.labels.maps.reorder_onto_grid`).
    """
    from napari_medseg.labels.maps import reorder_onto_grid

    x, y = a.volume, b.volume
    return reorder_onto_grid(y.array, y.affine, x.shape, x.affine, tol_mm=tol_mm) is not None


__all__ = [
    "LayerGeometryError",
    "LayerVolume",
    "layer_volume",
    "same_patient_grid",
    "same_source_grid",
]
