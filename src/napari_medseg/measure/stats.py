"""Per-label measurements of a label map on its scan: volume, intensity, position, size.

All numbers come from one :func:`~napari_medseg.measure.tally.tally_labels` pass plus, for the
maximum diameter, a look at each label inside its bounding box.

Conventions
-----------
* Arrays are ``(I, J, K)``; the affine maps voxel indices to RAS+ mm (nibabel).
* Volume: voxel count x ``|det(affine[:3, :3])|`` mm^3, reported in mL (cm^3), so
  anisotropic, oblique and sheared grids are right.
* Intensity statistics are over the label's voxels in the image's units (HU for CT),
  leaving out DICOM pixel padding when the scan records it, and NaN and infinite
  values (:func:`~napari_medseg.measure.tally.intensity_keep`). SD is the
  sample standard deviation (n - 1, as SimpleITK's ``LabelStatisticsImageFilter``);
  percentiles use numpy's default linear interpolation. Integer-valued images (also
  float images whose values are whole numbers) are summarised exactly from a
  per-label histogram; other float images by sorting.
* Centroid: mean of the label's voxel centres, in RAS+ mm (+x towards the patient's
  right, +y anterior, +z superior; DICOM LPS coordinates are ``(-x, -y, z)``).
* Bounding box: first and last voxel index along I, J, K, both included.
* Maximum 3D diameter: largest distance between two voxel centres of the label in
  mm (:func:`~napari_medseg.measure.surface.mask_diameter_mm`; the two lie on its surface).
* ``touches_border``: the label reaches the first or last plane of the volume along
  some axis, so part of the structure may lie outside the scan. Its measurements
  are reported as they are (never set to zero); the flag says to read them with care.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from napari_medseg.labels.classes import default_name
from napari_medseg.labels.maps import voxel_volume_mm3
from napari_medseg.measure.tally import Tally, bounding_boxes, centroids_ijk, tally_labels

#: Percentiles reported besides the median.
PERCENTILES = (5.0, 95.0)
#: Largest histogram (labels x distinct values) used for exact integer statistics.
_HISTOGRAM_BINS = 1 << 23


@dataclass
class IntensityStats:
    """Image values inside one label.

    Attributes
    ----------
    voxels : int
        Voxels the statistics are over.
    excluded_voxels : int
        Voxels of the label left out (pixel padding, NaN, infinite values).
    mean, sd, median, p5, p95, min, max : float
        In :attr:`units`; NaN when ``voxels`` is 0 (``sd`` also when it is 1).
    units : str
        ``"HU"`` for CT with the modality LUT applied, else ``""`` (arbitrary units).
    """

    voxels: int
    excluded_voxels: int
    mean: float
    sd: float
    median: float
    p5: float
    p95: float
    min: float
    max: float
    units: str = ""


@dataclass
class LabelStats:
    """Measurements of one label of a label map.

    Attributes
    ----------
    label : int
        Label value.
    name : str
        Label name (``label_<n>`` when none is known).
    voxels : int
        Number of voxels.
    volume_ml : float
        Volume in mL.
    centroid_ras_mm : tuple of float or None
        Mean voxel-centre position ``(x, y, z)`` in RAS+ mm; None when empty.
    bbox_ijk : tuple of (int, int) or None
        ``((i_min, i_max), (j_min, j_max), (k_min, k_max))``, both ends included.
    touches_border : bool
        The label reaches the volume's border (may be cut off by the field of view).
    diameter_mm : float
        Maximum 3D diameter in mm (voxel centres); NaN when empty.
    intensity : IntensityStats or None
        Image statistics; None without an image.
    """

    label: int
    name: str
    voxels: int
    volume_ml: float
    centroid_ras_mm: tuple[float, float, float] | None
    bbox_ijk: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None
    touches_border: bool
    diameter_mm: float
    intensity: IntensityStats | None = None


def _empty_stats(excluded: int, units: str) -> IntensityStats:
    nan = float("nan")
    return IntensityStats(0, excluded, nan, nan, nan, nan, nan, nan, nan, units)


def _is_whole(values: np.ndarray) -> bool:
    if values.dtype.kind in "iub":
        return True
    return bool(np.array_equal(values, np.rint(values)))


def _histogram_stats(index: np.ndarray, values: np.ndarray, n_labels: int) -> dict | None:
    """Exact statistics from a per-label histogram of whole-number values (None: too wide)."""
    low, high = int(values.min()), int(values.max())
    n_bins = high - low + 1
    if n_bins * n_labels > _HISTOGRAM_BINS:
        return None
    code = values.astype(np.intp)
    code -= low
    if index.size and index.min() == index.max():  # one label (a partial update's tally)
        hist = np.zeros((n_labels, n_bins), dtype=np.intp)
        hist[int(index[0])] = np.bincount(code, minlength=n_bins)
    else:
        code += index.astype(np.intp) * n_bins
        hist = np.bincount(code, minlength=n_labels * n_bins).reshape(n_labels, n_bins)
    grid = np.arange(low, high + 1, dtype=np.float64)
    n = hist.sum(axis=1)
    out = {}
    for label_index in np.flatnonzero(n):
        row = hist[label_index]
        count = int(n[label_index])
        filled = np.flatnonzero(row)
        used_values, used_counts = grid[filled], row[filled]
        mean = float(used_values @ used_counts) / count
        square = float(((used_values - mean) ** 2) @ used_counts)
        cumulative = np.cumsum(used_counts)

        def rank_value(rank: int, cumulative=cumulative, used_values=used_values) -> float:
            return float(used_values[np.searchsorted(cumulative, rank, side="right")])

        quantiles = []
        for q in (50.0, *PERCENTILES):  # numpy "linear": position q/100 * (n - 1)
            position = q / 100.0 * (count - 1)
            below = int(np.floor(position))
            value = rank_value(below)
            if position > below:
                value += (position - below) * (rank_value(below + 1) - value)
            quantiles.append(value)
        out[int(label_index)] = (
            count,
            mean,
            float(np.sqrt(square / (count - 1))) if count > 1 else float("nan"),
            *quantiles,
            float(used_values[0]),
            float(used_values[-1]),
        )
    return out


def _sorted_stats(index: np.ndarray, values: np.ndarray, n_labels: int) -> dict:
    """Statistics by grouping the values of each label (any float image)."""
    order = np.argsort(index, kind="stable")
    grouped = values[order]
    n = np.bincount(index, minlength=n_labels)
    ends = np.cumsum(n)
    out = {}
    for label_index in np.flatnonzero(n):
        group = grouped[ends[label_index] - n[label_index] : ends[label_index]].astype(np.float64)
        median, p_low, p_high = np.percentile(group, [50.0, *PERCENTILES])
        out[int(label_index)] = (
            group.size,
            float(group.mean()),
            float(group.std(ddof=1)) if group.size > 1 else float("nan"),
            float(median),
            float(p_low),
            float(p_high),
            float(group.min()),
            float(group.max()),
        )
    return out


def intensity_statistics(tally: Tally, units: str = "") -> dict[int, IntensityStats]:
    """Per-label image statistics from a tally made with an image.

    Parameters
    ----------
    tally : Tally
        From :func:`~napari_medseg.measure.tally.tally_labels` with ``image``.
    units : str
        Units of the image values (e.g. ``"HU"``).

    Returns
    -------
    dict
        Label index -> :class:`IntensityStats`, for every label index with voxels.
    """
    if tally.image_values is None or tally.label_of_value is None:
        raise ValueError("the tally was made without an image")
    n_labels = tally.values.size
    index, values = tally.label_of_value, tally.image_values
    raw = None
    if values.size and _is_whole(values):
        raw = _histogram_stats(index, values, n_labels)
    if raw is None:
        raw = _sorted_stats(index, values, n_labels) if values.size else {}
    out = {}
    for label_index in np.flatnonzero(tally.counts):
        excluded = int(tally.excluded[label_index]) if tally.excluded is not None else 0
        if int(label_index) in raw:
            count, mean, sd, median, p_low, p_high, least, most = raw[int(label_index)]
            out[int(label_index)] = IntensityStats(
                count, excluded, mean, sd, median, p_low, p_high, least, most, units
            )
        else:
            out[int(label_index)] = _empty_stats(excluded, units)
    return out


def label_diameter_mm(
    labels: np.ndarray, value: int, low: np.ndarray, high: np.ndarray, linear: np.ndarray
) -> float:
    """Maximum 3D diameter (mm) of one label, measured inside its bounding box."""
    from napari_medseg.measure.surface import mask_diameter_mm

    crop = labels[tuple(slice(int(a), int(b) + 1) for a, b in zip(low, high, strict=True))]
    return mask_diameter_mm(crop == value, linear)


def resolve_names(values: Iterable[int], names: Mapping[int, str] | None) -> dict[int, str]:
    """Label value -> name, ``label_<n>`` where ``names`` has none."""
    names = names or {}
    return {int(v): str(names.get(int(v)) or default_name(v)) for v in values}


def label_statistics(
    labels: np.ndarray,
    affine: np.ndarray,
    image: np.ndarray | None = None,
    *,
    names: Mapping[int, str] | None = None,
    units: str = "",
    exclude_range: tuple[float, float] | None = None,
    which: Iterable[int] | None = None,
    diameters: bool = True,
    tally: Tally | None = None,
) -> list[LabelStats]:
    """Volume, intensity statistics, centroid, bounding box and diameter of each label.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map ``(I, J, K)`` (0 = background).
    affine : numpy.ndarray
        4x4 voxel -> RAS+ mm matrix of ``labels``.
    image : numpy.ndarray, optional
        Scan on the same grid, e.g. CT in HU; gives :class:`IntensityStats`.
    names : mapping, optional
        Label value -> name.
    units : str
        Units of the image values, e.g. ``"HU"``.
    exclude_range : (low, high), optional
        Image values to leave out of the statistics, both ends included (DICOM pixel
        padding: ``Volume.metadata.extra["pixel_padding_range"]``).
    which : iterable of int, optional
        Label values to report (also absent ones, with zero voxels). Default: every
        non-zero label present.
    diameters : bool
        Compute the maximum 3D diameter (the only step that looks at label surfaces).
    tally : Tally, optional
        A pass already made over ``labels`` (and ``image``), to avoid a second one.

    Returns
    -------
    list of LabelStats
        Sorted by label value.
    """
    if tally is None:
        tally = tally_labels(labels, image=image, exclude_range=exclude_range)
    affine = np.asarray(affine, dtype=np.float64)
    voxel_ml = voxel_volume_mm3(affine) / 1000.0
    low, high = bounding_boxes(tally.projections)
    centres = centroids_ijk(tally.projections)
    intensities = intensity_statistics(tally, units) if tally.image_values is not None else None
    if which is None:
        wanted = tally.present_values(reference=False)
    else:
        wanted = sorted({int(v) for v in which if int(v) != 0})
    label_names = resolve_names(wanted, names)
    shape = np.array(tally.shape)
    out = []
    for value in wanted:
        index = tally.index_of(value)
        voxels = int(tally.counts[index]) if index is not None else 0
        intensity = None
        if intensities is not None:
            intensity = intensities.get(index) if voxels else _empty_stats(0, units)
        if not voxels:
            out.append(
                LabelStats(
                    value, label_names[value], 0, 0.0, None, None, False, float("nan"), intensity
                )
            )
            continue
        centroid = affine[:3, :3] @ centres[index] + affine[:3, 3]
        box = tuple((int(a), int(b)) for a, b in zip(low[index], high[index], strict=True))
        diameter = (
            label_diameter_mm(labels, value, low[index], high[index], affine[:3, :3])
            if diameters
            else float("nan")
        )
        out.append(
            LabelStats(
                label=value,
                name=label_names[value],
                voxels=voxels,
                volume_ml=voxels * voxel_ml,
                centroid_ras_mm=tuple(float(c) for c in centroid),  # type: ignore[arg-type]
                bbox_ijk=box,  # type: ignore[arg-type]
                touches_border=bool((low[index] == 0).any() or (high[index] == shape - 1).any()),
                diameter_mm=diameter,
                intensity=intensity,
            )
        )
    return out
