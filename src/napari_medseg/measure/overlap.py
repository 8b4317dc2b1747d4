"""Agreement of a label map with a reference on the same grid: Dice, IoU, HD95, ASSD...

Overlap measures come from the confusion matrix of one
:func:`~napari_medseg.measure.tally.tally_labels` pass; distance measures from the surfaces of
each label inside the bounding box of the label in either map (plus one voxel), so
their cost follows the structure's size, not the scan's.

Definitions (per label; "L" the label map, "R" the reference; TP, FP, FN voxel counts)
------------------------------------------------------------------------------------
* ``dice = 2 TP / (|L| + |R|)``, ``iou = TP / (|L| + |R| - TP)``,
  ``sensitivity = TP / |R|``, ``precision = TP / |L|``.
* ``volume_diff_ml = V(L) - V(R)``; ``volume_diff_pct = 100 (V(L) - V(R)) / V(R)``.
* Distances follow MONAI (``monai.metrics``, ``use_subvoxels=False``): surface voxels
  by 6-connected erosion, distances between surface voxel centres in mm
  (:mod:`napari_medseg.measure.surface`).

  - ``hd_mm``: Hausdorff distance, the larger of the two directed maxima.
  - ``hd95_mm``: the larger of the two directed 95th percentiles (MONAI's
    ``compute_hausdorff_distance(percentile=95)``). Other tools take the 95th
    percentile of both directed sets pooled (MedPy, Metrics Reloaded), or weigh
    surface elements by area (DeepMind's surface-distance); values differ by up to
    about a voxel on irregular shapes.
  - ``assd_mm``: mean of both directed sets pooled (MONAI's
    ``compute_average_surface_distance(symmetric=True)``).
  - ``surface_dice``: share of surface voxels of both masks within ``tolerance_mm``
    of the other surface (MONAI's ``compute_surface_dice``, counting voxels).

Empty masks (the ``empty`` field says which case a row is)
-----------------------------------------------------------
* both empty (``"both"``): every ratio and distance is NaN (not defined),
  ``volume_diff_ml`` is 0.
* label map empty, reference not (``"labels"``): dice, iou, sensitivity and
  surface_dice 0; precision NaN (0/0); hd, hd95, assd ``inf`` (no surface to reach,
  as MONAI); volume_diff_pct -100.
* reference empty, label map not (``"reference"``): dice, iou, precision and
  surface_dice 0; sensitivity NaN; distances ``inf``; volume_diff_pct NaN.
  (MONAI's ``compute_dice`` gives NaN here by default, ``ignore_empty=True``; 0 with
  ``ignore_empty=False``, as here: a structure found where the reference has none is
  an error, not a case to leave out.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from napari_medseg.labels.maps import voxel_volume_mm3
from napari_medseg.measure.stats import resolve_names
from napari_medseg.measure.tally import Tally, bounding_boxes, tally_labels

#: Default surface Dice tolerance in mm (as the FLARE challenges; set it per structure).
DEFAULT_TOLERANCE_MM = 1.0

#: Values of :attr:`OverlapMetrics.empty`.
EMPTY_CASES = ("none", "labels", "reference", "both")


@dataclass
class OverlapMetrics:
    """Agreement of one label with the reference.

    Attributes
    ----------
    label : int
        Label value.
    name : str
        Label name.
    voxels, ref_voxels : int
        Voxels in the label map and in the reference.
    volume_ml, ref_volume_ml : float
        Volumes in mL.
    dice, iou, sensitivity, precision : float
        In [0, 1]; NaN where not defined (see the module notes).
    volume_diff_ml : float
        Label map minus reference volume, mL.
    volume_diff_pct : float
        The same in % of the reference volume.
    hd_mm, hd95_mm, assd_mm : float
        Hausdorff distance, its 95th-percentile version and the average symmetric
        surface distance, in mm; NaN when not computed or both masks are empty,
        ``inf`` when exactly one is empty.
    surface_dice : float
        Normalised surface Dice at :attr:`tolerance_mm`, in [0, 1].
    tolerance_mm : float
        Tolerance of :attr:`surface_dice`, mm.
    empty : str
        ``"none"``, ``"labels"``, ``"reference"`` or ``"both"``: which mask is empty.
    """

    label: int
    name: str
    voxels: int
    ref_voxels: int
    volume_ml: float
    ref_volume_ml: float
    dice: float
    iou: float
    sensitivity: float
    precision: float
    volume_diff_ml: float
    volume_diff_pct: float
    hd_mm: float
    hd95_mm: float
    assd_mm: float
    surface_dice: float
    tolerance_mm: float
    empty: str


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")


def _union_boxes(tally: Tally, pad: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per label index, the union of its bounding boxes in both maps grown by ``pad``.

    Returns ``(low, high)``, shape (L, 3), inclusive and clipped to the volume; rows
    of labels absent from both maps are meaningless.
    """
    low_l, high_l = bounding_boxes(tally.projections)
    low_r, high_r = bounding_boxes(tally.ref_projections)
    big = np.iinfo(np.int64).max
    low = np.minimum(np.where(low_l < 0, big, low_l), np.where(low_r < 0, big, low_r))
    high = np.maximum(high_l, high_r)
    low = np.maximum(low - pad, 0)
    high = np.minimum(high + pad, np.array(tally.shape) - 1)
    return low, high


def label_distances(
    labels: np.ndarray,
    reference: np.ndarray,
    value: int,
    linear: np.ndarray,
    crop: tuple[slice, slice, slice] | None = None,
):
    """Surface distances of one label value between two maps (see :mod:`surface`).

    Parameters
    ----------
    labels, reference : numpy.ndarray
        Integer label maps ``(I, J, K)`` on one grid.
    value : int
        Label value.
    linear : numpy.ndarray
        3x3 voxel -> mm matrix (``affine[:3, :3]``).
    crop : tuple of slice, optional
        Region holding the label in both maps with one voxel to spare (or reaching
        the volume border); default the whole volume.

    Returns
    -------
    napari_medseg.measure.surface.SurfaceDistances
    """
    from napari_medseg.measure.surface import surface_distances

    crop = crop or (slice(None),) * 3
    return surface_distances(labels[crop] == value, reference[crop] == value, linear)


def compare_labels(
    labels: np.ndarray,
    reference: np.ndarray,
    affine: np.ndarray,
    *,
    names: Mapping[int, str] | None = None,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    distances: bool = True,
    which: Iterable[int] | None = None,
    tally: Tally | None = None,
) -> list[OverlapMetrics]:
    """Per-label Dice, IoU, sensitivity, precision, volume difference, HD95, ASSD, NSD.

    Parameters
    ----------
    labels, reference : numpy.ndarray
        Integer label maps ``(I, J, K)`` on the same grid (0 = background).
    affine : numpy.ndarray
        4x4 voxel -> RAS+ mm matrix of the grid.
    names : mapping, optional
        Label value -> name.
    tolerance_mm : float
        Surface Dice tolerance, mm (default 1 mm).
    distances : bool
        Compute the surface distance measures (otherwise they are NaN).
    which : iterable of int, optional
        Label values to compare; default every non-zero value in either map.
    tally : Tally, optional
        A pass already made over ``labels`` and ``reference``.

    Returns
    -------
    list of OverlapMetrics
        Sorted by label value. See the module notes for empty masks.
    """
    if tolerance_mm < 0 or not np.isfinite(tolerance_mm):
        raise ValueError(f"tolerance_mm must be a finite number >= 0, got {tolerance_mm}")
    if tally is None or tally.confusion is None:
        tally = tally_labels(labels, reference)
    affine = np.asarray(affine, dtype=np.float64)
    voxel_ml = voxel_volume_mm3(affine) / 1000.0
    confusion = tally.confusion
    if which is None:
        wanted = tally.present_values()
    else:
        wanted = sorted({int(v) for v in which if int(v) != 0})
    label_names = resolve_names(wanted, names)
    nan, inf = float("nan"), float("inf")
    crop_low, crop_high = _union_boxes(tally) if distances else (None, None)
    out = []
    for value in wanted:
        index = tally.index_of(value)
        n_lab = int(tally.counts[index]) if index is not None else 0
        n_ref = int(tally.ref_counts[index]) if index is not None else 0
        tp = int(confusion[index, index]) if index is not None else 0
        empty = EMPTY_CASES[(n_lab == 0) + 2 * (n_ref == 0)]
        hd = hd95 = assd = nsd = nan
        if empty in ("labels", "reference"):
            hd = hd95 = assd = inf if distances else nan
            nsd = 0.0 if distances else nan
        elif empty == "none" and distances:
            crop = tuple(
                slice(int(a), int(b) + 1)
                for a, b in zip(crop_low[index], crop_high[index], strict=True)
            )
            found = label_distances(labels, reference, value, affine[:3, :3], crop)
            hd, hd95 = found.hausdorff(), found.hausdorff(95.0)
            assd, nsd = found.average_symmetric(), found.surface_dice(tolerance_mm)
        out.append(
            OverlapMetrics(
                label=value,
                name=label_names[value],
                voxels=n_lab,
                ref_voxels=n_ref,
                volume_ml=n_lab * voxel_ml,
                ref_volume_ml=n_ref * voxel_ml,
                dice=_ratio(2 * tp, n_lab + n_ref),
                iou=_ratio(tp, n_lab + n_ref - tp),
                sensitivity=_ratio(tp, n_ref),
                precision=_ratio(tp, n_lab),
                volume_diff_ml=(n_lab - n_ref) * voxel_ml,
                volume_diff_pct=100.0 * _ratio(n_lab - n_ref, n_ref),
                hd_mm=hd,
                hd95_mm=hd95,
                assd_mm=assd,
                surface_dice=nsd,
                tolerance_mm=float(tolerance_mm),
                empty=empty,
            )
        )
    return out
