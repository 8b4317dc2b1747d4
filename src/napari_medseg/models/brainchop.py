"""Brainchop's pre- and postprocessing for MeshNet brain models, as its authors do it.

brainchop (``neuroneural/brainchop``) runs its MeshNet models on a T1 MR *conformed*
FreeSurfer-style, and this module reproduces each step from the published facts:

1. **Conform** (:func:`conform`): 256 x 256 x 256 voxels of 1 mm in **LIA** orientation
   (axis 0 towards patient left, 1 inferior, 2 anterior), centred on the scan's centre
   (FreeSurfer's ``c_ras``: the scan's affine applied to ``shape / 2``), trilinear
   interpolation with 0 outside the scan, then intensities scaled to uint8 with
   FreeSurfer's robust range (:func:`uint8_scale`: the minimum, and the 99.9th
   percentile of the non-zero voxels read from a 1000-bin histogram), rounded. This is
   FastSurfer's ``conform.py``, which brainchop credits for its own conform step.
   A MeshNet fed the same brain in RAS order loses every subcortical structure:
   orientation matters.
2. **Normalise** the conformed volume to [0, 1]: min-max, or the 5 %-95 % quantiles
   for the models trained that way (``normalization`` in the spec's ``pipeline``).
3. **Crop** to the box of voxels above ``auto_threshold`` x the maximum (or above 0
   when the threshold is 0), widened by ``crop_padding`` voxels and kept inside the
   256 cube. The network runs once on the whole crop (no sliding window: its
   receptive field is large and brainchop never tiles).
4. **Argmax**, then keep only the largest 26-connected component of all non-zero
   labels together (brainchop's ``bwlabel(conn=26, binarize=true,
   onlyLargestClusterPerClass=true)``); voxels outside the crop are background.

The labels then go back to the scan's own grid by nearest neighbour through the crop's
affine (the engine does that for every model). brainchop itself shows its result on the
conformed volume instead.

A spec selects this with ``"pipeline": {"kind": "brainchop", "normalization": ...,
"auto_threshold": ..., "crop_padding": ...}``; values are brainchop's own per-model
settings (``brainchop-parameters.js``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from napari_medseg.labels.components import bounding_box
from napari_medseg.labels.editing import keep_largest_component
from napari_medseg.models.loaded import ModelInput
from napari_medseg.models.preprocess import check_channels, replace_nonfinite
from napari_medseg.models.spec import ModelSpec
from napari_medseg.volume import Volume

#: Side of the conformed cube in voxels (1 mm each).
CONFORMED_SIZE = 256

#: Direction cosines of LIA (columns: where voxel axes 0, 1, 2 point in RAS).
LIA_DIRECTIONS = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

#: Keys a ``"brainchop"`` pipeline takes, with their defaults.
PIPELINE_DEFAULTS: dict[str, Any] = {
    "normalization": "minmax",
    "auto_threshold": 0.0,
    "crop_padding": 0,
    "keep_largest_component": True,
}


def pipeline_settings(spec: ModelSpec) -> dict[str, Any]:
    """The spec's brainchop settings with defaults filled in; ``ValueError`` if bad."""
    settings = dict(PIPELINE_DEFAULTS)
    unknown = set(spec.pipeline) - set(settings) - {"kind"}
    if unknown:
        raise ValueError(f"unknown brainchop pipeline keys: {', '.join(sorted(unknown))}")
    settings.update({k: v for k, v in spec.pipeline.items() if k != "kind"})
    if settings["normalization"] not in ("minmax", "quantile"):
        raise ValueError("pipeline normalization must be 'minmax' or 'quantile'")
    if not 0.0 <= float(settings["auto_threshold"]) <= 1.0:
        raise ValueError("pipeline auto_threshold must lie in [0, 1]")
    if int(settings["crop_padding"]) < 0:
        raise ValueError("pipeline crop_padding must be >= 0")
    return settings


def uint8_scale(data: np.ndarray, f_high: float = 0.999, bins: int = 1000) -> tuple[float, float]:
    """FreeSurfer's robust intensity range for uint8: ``(src_min, scale)``.

    ``uint8 = clip(rint((value - src_min) * scale), 0, 255)`` where ``src_min`` is the
    minimum and ``src_min + 255 / scale`` the value under which ``f_high`` of the
    non-zero voxels lie, read from a ``bins``-bin histogram of the whole volume
    (two bins below the first bin edge whose cumulative count reaches
    ``voxels - (1 - f_high) * non-zero voxels``, as FastSurfer's ``getscale``).
    """
    data = np.asarray(data)
    src_min, src_max = float(data.min()), float(data.max())
    if src_max == src_min:
        return src_min, 1.0
    nonzero = int(np.count_nonzero(np.abs(data) >= 1e-15))
    histogram, _ = np.histogram(data, bins)
    cumulative = np.concatenate(([0], np.cumsum(histogram)))
    wanted = data.size - int((1.0 - f_high) * nonzero)
    index = int(np.flatnonzero(cumulative >= wanted)[0]) - 2
    bin_size = (src_max - src_min) / bins
    robust_max = index * bin_size + src_min
    if robust_max <= src_min:
        return src_min, 1.0
    return src_min, 255.0 / (robust_max - src_min)


def conformed_affine(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """4x4 voxel -> RAS mm matrix of the conformed cube for a scan of ``shape``/``affine``.

    1 mm LIA voxels, with voxel ``(128, 128, 128)`` on the scan's centre
    ``affine @ (shape / 2)`` (FreeSurfer's ``c_ras`` convention).
    """
    centre = np.asarray(affine, dtype=float) @ np.array([*(np.asarray(shape[:3]) / 2.0), 1.0])
    target = np.eye(4)
    target[:3, :3] = LIA_DIRECTIONS
    target[:3, 3] = centre[:3] - LIA_DIRECTIONS @ np.full(3, CONFORMED_SIZE / 2.0)
    return target


def conform(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """The scan on brainchop's input grid: uint8 ``(256, 256, 256)`` LIA and its affine.

    Non-finite voxels count as the scan's lowest finite value. Scans that are already
    uint8 keep their values; others are scaled by :func:`uint8_scale` when the
    resampled maximum exceeds 255 (as FastSurfer's conform) or when their values are
    not whole numbers (a float image in [0, 1], such as nilearn's MNI152 template, which
    FastSurfer's rule would round to 0 and 1).
    """
    data = np.array(volume.array, dtype=np.float32)
    replace_nonfinite(data)
    target = conformed_affine(data.shape, volume.affine)
    transform = np.linalg.inv(np.asarray(volume.affine, dtype=float)) @ target
    resampled = ndimage.affine_transform(
        data,
        transform[:3, :3],
        offset=transform[:3, 3],
        output_shape=(CONFORMED_SIZE,) * 3,
        order=1,
        mode="constant",
        cval=0.0,
    )
    if volume.array.dtype != np.uint8 and (
        float(resampled.max()) > 255.0 or not np.array_equal(data, np.round(data))
    ):
        src_min, scale = uint8_scale(data)
        resampled = np.clip((resampled - src_min) * scale, 0.0, 255.0)
    return np.rint(np.clip(resampled, 0.0, 255.0)).astype(np.uint8), target


def normalise(conformed: np.ndarray, how: str) -> np.ndarray:
    """float32 copy in [0, 1]: min-max, or 5 %-95 % quantiles (not clipped), as brainchop.

    The quantiles are the sorted values at ``floor(0.05 n)`` and ``ceil(0.95 n) - 1``.
    """
    data = conformed.astype(np.float32)
    if how == "quantile":
        flat = np.sort(data, axis=None)
        low = float(flat[int(np.floor(flat.size * 0.05))])
        high = float(flat[int(np.ceil(flat.size * 0.95)) - 1])
    else:
        low, high = float(data.min()), float(data.max())
    if high <= low:
        return np.zeros_like(data)
    return (data - low) / (high - low)


def crop_region(normalised: np.ndarray, auto_threshold: float, padding: int) -> tuple[slice, ...]:
    """Box of the voxels above ``auto_threshold`` x max (above 0 if the threshold is 0),
    widened by ``padding`` voxels inside the cube; the whole cube if nothing is above."""
    if 0.0 < auto_threshold <= 1.0:
        mask = normalised > float(normalised.max()) * auto_threshold
    else:
        mask = normalised > 0
    box = bounding_box(mask)
    if box is None:
        return tuple(slice(0, n) for n in normalised.shape)
    return tuple(
        slice(max(0, s.start - padding), min(n, s.stop + padding))
        for s, n in zip(box, normalised.shape, strict=True)
    )


def prepare_brainchop_input(spec: ModelSpec, channels: Sequence[Volume]) -> ModelInput:
    """Steps 1-3 of the module notes: the crop the network runs on, and its affine."""
    import torch

    settings = pipeline_settings(spec)
    (volume,) = check_channels(channels, 1, spec.name, spec.channel_names)
    conformed, affine = conform(volume)
    normalised = normalise(conformed, settings["normalization"])
    region = crop_region(
        normalised, float(settings["auto_threshold"]), int(settings["crop_padding"])
    )
    crop = np.ascontiguousarray(normalised[region])
    corner = np.array([s.start for s in region], dtype=float)
    crop_affine = affine.copy()
    crop_affine[:3, 3] = affine[:3, :3] @ corner + affine[:3, 3]
    return ModelInput(image=torch.from_numpy(crop)[None], affine=crop_affine)


def keep_largest_foreground(labels: np.ndarray) -> np.ndarray:
    """Labels with everything outside the largest 26-connected non-zero component set to 0."""
    out = labels.copy()
    out[~keep_largest_component(labels != 0, 26)] = 0
    return out


def postprocess_for(spec: ModelSpec):
    """The label clean-up of the spec's pipeline (None when it keeps every component)."""
    return keep_largest_foreground if pipeline_settings(spec)["keep_largest_component"] else None
