"""The scans a model was made for, and the warnings when a scan lies outside them.

A network gives confident nonsense on a scan unlike its training data: the bundled
phantom model labelled 71 % of the air of a 20-slice 2 mm slab "body". A model spec
may therefore state its domain (:class:`ModelDomain`: body region, voxel spacing and
field of view of its training scans, fewest slices), and :func:`domain_warnings`
compares a scan with it before the model runs. The Segment widget and ``medseg
segment`` show the warnings; nothing is refused (a user may know better).

Spacing and field of view are measured along the scan's own axes: the axis closest to
the patient's head-foot direction is the slice (cranio-caudal) axis, the other two are
in-plane. A scan whose slices are not axial is compared in its own axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ModelDomain:
    """The scans a model was trained on (each bound optional).

    Attributes
    ----------
    body_region : str
        E.g. ``"abdomen"``, ``"head"``, ``"thorax"``; shown in the warnings.
    in_plane_spacing_mm, slice_spacing_mm : (float, float) or None
        Smallest and largest voxel size in mm in-plane and between slices.
    in_plane_fov_mm, cranio_caudal_fov_mm : (float, float) or None
        Smallest and largest field of view in mm: the larger in-plane extent and the
        head-foot extent of the scan.
    min_slices : int
        Fewest slices (0: no bound).
    """

    body_region: str = ""
    in_plane_spacing_mm: tuple[float, float] | None = None
    slice_spacing_mm: tuple[float, float] | None = None
    in_plane_fov_mm: tuple[float, float] | None = None
    cranio_caudal_fov_mm: tuple[float, float] | None = None
    min_slices: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ModelDomain:
        """From the ``"domain"`` entry of a spec JSON (absent: no bounds)."""
        if not data:
            return cls()
        values: dict[str, Any] = {}
        for key, value in data.items():
            if value is None or value == "":
                continue  # written by ModelSpec.to_dict for an unset bound
            if key in ("body_region",):
                values[key] = str(value)
            elif key == "min_slices":
                values[key] = int(value)
            elif key in cls.__dataclass_fields__:
                low, high = (float(v) for v in value)
                if not 0 <= low <= high:
                    raise ValueError(f"domain {key} must be [low, high] with 0 <= low <= high")
                values[key] = (low, high)
            else:
                raise ValueError(f"unknown domain field {key!r}")
        return cls(**values)


def scan_geometry(shape: Sequence[int], affine: np.ndarray) -> dict[str, float]:
    """Spacing and field of view of a scan along its slice axis and in-plane, in mm.

    Returns
    -------
    dict
        ``slices`` (count along the slice axis), ``slice_spacing``,
        ``in_plane_spacing`` (the coarser in-plane voxel size), ``cranio_caudal_fov``
        and ``in_plane_fov`` (the larger in-plane extent).
    """
    columns = np.asarray(affine, dtype=float)[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    head_foot = np.abs(columns[2]) / np.where(spacing > 0, spacing, 1.0)
    axis = int(np.argmax(head_foot))
    others = [a for a in range(3) if a != axis]
    extent = spacing * np.asarray(shape, dtype=float)
    return {
        "slices": float(shape[axis]),
        "slice_spacing": float(spacing[axis]),
        "in_plane_spacing": float(max(spacing[a] for a in others)),
        "cranio_caudal_fov": float(extent[axis]),
        "in_plane_fov": float(max(extent[a] for a in others)),
    }


def _outside(value: float, bounds: tuple[float, float] | None) -> bool:
    return bounds is not None and not bounds[0] * 0.999 <= value <= bounds[1] * 1.001


def domain_warnings(
    domain: ModelDomain, modality: str, volume: Any, *, model: str = "the model"
) -> list[str]:
    """Ways a scan lies outside a model's domain, one sentence each (empty: none).

    Parameters
    ----------
    domain : ModelDomain
    modality : str
        The model's modality (``"CT"``, ``"MR"``, or "" for any).
    volume : Volume
        The scan (its shape, affine and ``metadata.modality``).
    model : str
        The model's name, for the sentences.
    """
    warnings = []
    scan_modality = str(volume.metadata.modality or "")
    if modality and scan_modality and scan_modality.upper() != modality.upper():
        warnings.append(
            f"{model} was made for {modality}; this scan is {scan_modality}: its labels "
            "are unlikely to mean anything"
        )
    geometry = scan_geometry(volume.shape, volume.affine)
    region = f" {domain.body_region}" if domain.body_region else ""
    checks = [
        ("in-plane voxel size", "in_plane_spacing", domain.in_plane_spacing_mm),
        ("slice spacing", "slice_spacing", domain.slice_spacing_mm),
        ("in-plane field of view", "in_plane_fov", domain.in_plane_fov_mm),
        ("head-foot field of view", "cranio_caudal_fov", domain.cranio_caudal_fov_mm),
    ]
    for what, key, bounds in checks:
        if _outside(geometry[key], bounds):
            low, high = bounds  # type: ignore[misc]
            warnings.append(
                f"the scan's {what} is {geometry[key]:.4g} mm; {model} was trained on{region} "
                f"scans of {low:g}-{high:g} mm: check its labels"
            )
    if domain.min_slices and geometry["slices"] < domain.min_slices:
        warnings.append(
            f"the scan has {int(geometry['slices'])} slices; {model} needs at least "
            f"{domain.min_slices} to see the{region or ''} anatomy it was trained on"
        )
    return warnings


__all__ = ["ModelDomain", "domain_warnings", "scan_geometry"]
