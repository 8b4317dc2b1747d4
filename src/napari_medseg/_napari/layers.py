"""Turn a :class:`~napari_medseg.volume.Volume` into napari layer data, and back.

A layer made here shows the stored array through
:meth:`DisplayGeometry.to_display` (a view: flips and transposes, no copy) so
that its axes run along the napari world axes ``(S, P, L)`` in patient
millimetres, placed with the geometry's ``scale`` and ``translate``. Its
``metadata["medseg"]`` holds everything needed to save an edit back onto the
source voxel grid::

    {source_affine, source_shape, transform, scale, translate, deobliqued,  # geometry
     source, format, modality, units, series_uid, study_uid, frame_of_reference_uid,
     series_description, files (DICOM),
     orientation, qform_code, sform_code, qform_affine, window, warnings, kind}

No patient identifiers are copied into layer metadata.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from napari_medseg.geometry import DisplayGeometry, display_geometry, obliquity_deg, shear_deg
from napari_medseg.io.label_evidence import file_stem
from napari_medseg.volume import Volume
from napari_medseg.window_presets import window_limits

#: Key of our dict in ``layer.metadata``.
MEDSEG_KEY = "medseg"

#: ``layer.metadata`` key of the layers a tool makes for its own use (the Interactive
#: dock's clicks, boxes, scribbles and preview); its value names the layer's role. No
#: widget offers such a layer as an input or output (:func:`is_helper_layer`).
HELPER_KEY = "medseg_helper"

#: Default CT window (centre, width) in HU when the file gives none: soft tissue.
SOFT_TISSUE_WINDOW = (40.0, 400.0)

#: Percentiles used for the initial contrast limits of MR and unknown images.
PERCENTILE_LIMITS = (0.5, 99.5)

#: napari axis labels of the display convention (world axes S, P, L).
AXIS_LABELS = ("S", "P", "L")

#: Opacity a label map opens with: the scan stays visible under it.
LABELS_OPACITY = 0.5


def display_name(volume: Volume) -> str:
    """Layer name for a volume: DICOM series description, else the file name.

    NIfTI and NRRD files are named after the file without ``.nii``/``.nii.gz``/
    ``.nrrd``/``.seg.nrrd``... (their ``descrip``/``content`` field is usually a
    tool's version string, not a name).
    """
    meta = volume.metadata
    source = meta.source.rstrip("/\\")
    base = os.path.basename(source)
    if meta.format == "dicom":
        if meta.series_description.strip():
            return meta.series_description.strip()
        number = meta.extra.get("series_number") if isinstance(meta.extra, dict) else None
        if number not in (None, ""):
            return f"Series {number}"
        return base or "DICOM series"
    return file_stem(base) if base else meta.series_description.strip() or "scan"


def looks_like_ct(volume: Volume) -> bool:
    """Whether the volume holds CT Hounsfield units.

    True for DICOM modality CT or units HU; for a NIfTI (no modality) when its
    lowest values sit near air (-1000 HU), as in a CT stored in HU.
    """
    meta = volume.metadata
    if meta.modality:
        return meta.modality.upper() == "CT"
    if meta.units.upper() == "HU":
        return True
    sample = _sample(volume.array)
    if sample.size == 0 or not np.issubdtype(sample.dtype, np.number):
        return False
    low = float(np.percentile(sample, 0.5))
    return -1100.0 <= low <= -500.0


def _sample(array: np.ndarray, target: int = 1_000_000) -> np.ndarray:
    """A strided subsample of about ``target`` voxels (cheap statistics)."""
    step = max(1, int(np.ceil((array.size / target) ** (1.0 / 3.0))))
    sample = np.asarray(array[::step, ::step, ::step])
    if np.issubdtype(sample.dtype, np.floating):
        sample = sample[np.isfinite(sample)]
    return sample.ravel()


def initial_contrast(volume: Volume) -> tuple[tuple[float, float], str]:
    """Contrast limits a scan opens with, and where they came from.

    Returns
    -------
    limits : tuple of float
        ``(low, high)`` in the volume's units.
    source : str
        ``"file window"`` (DICOM WindowCenter/Width), ``"soft-tissue window"``
        (CT without a window: 40/400 HU) or ``"percentiles"`` (MR and others:
        0.5th-99.5th percentile).
    """
    if looks_like_ct(volume):
        if volume.metadata.window is not None:
            center, width = (float(v) for v in volume.metadata.window)
            source = "file window"
        else:
            center, width = SOFT_TISSUE_WINDOW
            source = "soft-tissue window"
        return window_limits(center, width), source
    sample = _sample(volume.array)
    if sample.size == 0:
        return (0.0, 1.0), "percentiles"
    low, high = (float(v) for v in np.percentile(sample, PERCENTILE_LIMITS))
    if not high > low:
        high = low + 1.0
    return (low, high), "percentiles"


def volume_warnings(volume: Volume, geometry: DisplayGeometry) -> list[str]:
    """Messages the user must see when this volume is shown.

    The reader's own warnings (gaps, gantry tilt, duplicates...) plus a note when
    the scan is shown de-obliqued.
    """
    messages = [str(w) for w in volume.metadata.warnings]
    if geometry.deobliqued:
        angle = obliquity_deg(geometry.source_affine)
        shear = shear_deg(geometry.source_affine)
        what = f"oblique by {angle:.1f} deg" if angle >= shear else f"sheared by {shear:.1f} deg"
        messages.append(
            f"the scan is {what}: napari shows it straightened (de-obliqued) around its "
            "centre, so world coordinates are approximate away from the centre; labels "
            "are saved with the true oblique geometry."
        )
    return messages


def medseg_metadata(
    volume: Volume, geometry: DisplayGeometry | None = None, *, kind: str = "image"
) -> dict[str, Any]:
    """The ``metadata["medseg"]`` dict of a layer showing ``volume``.

    Parameters
    ----------
    volume : Volume
        The scan (or label map) shown.
    geometry : DisplayGeometry, optional
        Its display geometry (computed when omitted).
    kind : {"image", "labels"}
        Layer kind; labels layers carry the same geometry as their image.
    """
    if geometry is None:
        geometry = display_geometry(volume.affine, volume.shape)
    meta = volume.metadata
    out: dict[str, Any] = geometry.to_dict()
    out.update(
        {
            "source": str(meta.source),
            "format": meta.format,
            "modality": meta.modality,
            "units": meta.units,
            "series_uid": meta.series_uid,
            "study_uid": meta.study_uid,
            "frame_of_reference_uid": meta.frame_of_reference_uid,
            "series_description": meta.series_description,
            # DICOM: the series' files (DICOM SEG export references them)
            "files": [str(f) for f in meta.files] if meta.format == "dicom" else [],
            "orientation": volume.orientation,
            "qform_code": int(meta.qform_code),
            "sform_code": int(meta.sform_code),
            "window": list(meta.window) if meta.window is not None else None,
            "qform_affine": _qform_affine(meta),
            "warnings": volume_warnings(volume, geometry),
            "kind": kind,
        }
    )
    return out


def _qform_affine(meta: Any) -> list | None:
    """A NIfTI qform that differs from the sform (kept so a save round-trips it)."""
    extra = meta.extra if isinstance(meta.extra, dict) else {}
    value = extra.get("qform_affine")
    return np.asarray(value, dtype=float).tolist() if value is not None else None


def geometry_from_metadata(metadata: dict[str, Any] | None) -> DisplayGeometry | None:
    """The :class:`DisplayGeometry` stored in a layer's metadata, or None."""
    if not metadata:
        return None
    medseg = metadata.get(MEDSEG_KEY)
    if not isinstance(medseg, dict):
        return None
    try:
        return DisplayGeometry.from_dict(medseg)
    except (KeyError, TypeError, ValueError):
        return None


def _as_label_array(array: np.ndarray) -> np.ndarray:
    """Integer label values (a label map read as float is rounded; ints pass as is)."""
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return array if array.dtype != bool else array.view(np.uint8)
    rounded = np.rint(np.nan_to_num(array))
    top = float(rounded.max(initial=0))
    dtype = np.uint8 if 0 <= rounded.min(initial=0) and top < 256 else np.int32
    return rounded.astype(dtype)


def volume_to_layer_data(
    volume: Volume,
    *,
    layer_type: str = "image",
    name: str | None = None,
    register: bool = True,
    **layer_kwargs: Any,
) -> tuple[np.ndarray, dict[str, Any], str]:
    """napari ``LayerData`` tuple ``(data, kwargs, layer_type)`` for a volume.

    Parameters
    ----------
    volume : Volume
        Scan or label map; ``volume.array`` has shape ``(I, J, K)`` in stored order.
    layer_type : {"image", "labels"}
        Layer to make. Images open in gray with a CT window or MR percentiles.
    name : str, optional
        Layer name; default :func:`display_name`.
    register : bool
        Record the geometry in :mod:`.geometry_registry` so that labels layers
        napari makes on this grid can be saved onto the source grid.
    **layer_kwargs
        Extra layer keyword arguments (override the defaults).

    Returns
    -------
    tuple
        ``(data, kwargs, layer_type)``: ``data`` is a view of ``volume.array``
        with axes ``(S, P, L)``; ``kwargs`` holds ``name``, ``scale``,
        ``translate`` (mm), ``units``, ``axis_labels`` and ``metadata``.
    """
    if layer_type not in ("image", "labels"):
        raise ValueError(f"layer_type must be 'image' or 'labels', got {layer_type!r}")
    geometry = display_geometry(volume.affine, volume.shape)
    array = volume.array if layer_type == "image" else _as_label_array(volume.array)
    data = geometry.to_display(array)
    medseg = medseg_metadata(volume, geometry, kind=layer_type)
    kwargs: dict[str, Any] = {
        "name": name or display_name(volume),
        "scale": tuple(float(v) for v in geometry.scale),
        "translate": tuple(float(v) for v in geometry.translate),
        "units": ("mm", "mm", "mm"),
        "axis_labels": AXIS_LABELS,
        "metadata": {MEDSEG_KEY: medseg},
    }
    if layer_type == "image":
        limits, limits_source = initial_contrast(volume)
        medseg["contrast_source"] = limits_source
        kwargs.update({"colormap": "gray", "contrast_limits": limits})
    kwargs.update(layer_kwargs)
    if register:
        from napari_medseg._napari import geometry_registry

        geometry_registry.register(medseg)
    return data, kwargs, layer_type


def is_helper_layer(layer: Any) -> bool:
    """Whether ``layer`` is a tool's helper layer (see :data:`HELPER_KEY`)."""
    metadata = getattr(layer, "metadata", None)
    return isinstance(metadata, dict) and HELPER_KEY in metadata


def layer_warnings(layer_data: tuple) -> list[str]:
    """The warnings stored in a LayerData tuple made by :func:`volume_to_layer_data`."""
    meta = layer_data[1].get("metadata", {}).get(MEDSEG_KEY, {})
    return list(meta.get("warnings", []))


def labels_like(
    layer: Any, *, name: str | None = None, dtype: Any = np.uint8
) -> tuple[np.ndarray, dict[str, Any], str]:
    """An empty labels ``LayerData`` on the grid of ``layer``, carrying its metadata.

    Parameters
    ----------
    layer : napari.layers.Layer
        A 3D image (or labels) layer, normally made by this plugin.
    name : str, optional
        Default ``"<layer name> labels"``.
    dtype : numpy dtype
        Label dtype (uint8 holds 255 labels).

    Returns
    -------
    tuple
        ``(zeros of layer.data.shape, kwargs, "labels")`` with the same scale,
        translate, units, axis labels and a deep copy of ``metadata["medseg"]``
        (``kind = "labels"``, no reader warnings), so the writer saves it onto
        the layer's source grid. ``layer.metadata`` is not modified.
    """
    import copy

    # a deep copy of our entry only: the new layer never shares (or changes) the
    # source layer's metadata, and other plugins' entries describe the image, not
    # an empty label map
    metadata: dict[str, Any] = {}
    medseg = (layer.metadata or {}).get(MEDSEG_KEY)
    if isinstance(medseg, dict):
        medseg = copy.deepcopy(dict(medseg))
        medseg["kind"] = "labels"
        medseg["warnings"] = []
        medseg.pop("contrast_source", None)
        metadata[MEDSEG_KEY] = medseg
    shape = tuple(layer.data.shape[: layer.ndim])
    kwargs: dict[str, Any] = {
        "name": name or f"{layer.name} labels",
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "units": tuple(str(u) for u in layer.units),
        "axis_labels": tuple(layer.axis_labels),
        "metadata": metadata,
    }
    return np.zeros(shape, dtype=dtype), kwargs, "labels"
