"""Lesions: connected components of each label, their table, and matching to a reference.

A *lesion* is a connected component of the voxels of one label value, with
6-, 18- or 26-connectivity in 3D (faces; faces and edges; faces, edges and corners;
default 26, as ``scipy.ndimage.label`` with a full 3x3x3 structure, cc3d and
scikit-image's default).

Matching (per label value, lesions against reference lesions of the same label)
-------------------------------------------------------------------------------
A lesion and a reference lesion *match* when they share at least one voxel and, if
``iou_threshold`` is given, their voxel IoU is at least that threshold. Then:

* a reference lesion is **detected** when at least one lesion matches it, else
  **missed**;
* a lesion is a **true positive** when it matches at least one reference lesion,
  else a **false positive**;
* ``recall = detected / reference lesions``, ``precision = true positives /
  lesions``, ``f1 = 2 precision recall / (precision + recall)``.

Matching is many-to-many (a lesion split in two still detects its reference lesion,
and both halves count as true positives); with ``iou_threshold > 0.5`` every lesion
can match at most one on the other side, so the matching is one-to-one. Empty sides:
no lesions -> precision NaN; no reference lesions -> recall NaN; F1 is NaN when both
sides are empty, and 0 when only one side has lesions (all of them are errors).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from napari_medseg.labels.components import DEFAULT_CONNECTIVITY, structure_for
from napari_medseg.labels.maps import voxel_volume_mm3
from napari_medseg.measure.stats import resolve_names
from napari_medseg.measure.surface import mask_diameter_mm
from napari_medseg.measure.tally import Tally, bounding_boxes, intensity_keep, tally_labels


@dataclass
class Lesion:
    """One connected component of one label.

    Attributes
    ----------
    id : int
        1-based, unique within its table; lesions are numbered by label value, then
        by size (largest first), then by position (bounding box start).
    label : int
        Label value.
    name : str
        Label name.
    voxels : int
        Number of voxels.
    volume_ml : float
        Volume in mL.
    diameter_mm : float
        Maximum 3D diameter in mm, between voxel centres (0 for one voxel).
    centroid_ras_mm : tuple of float
        Mean voxel-centre position in RAS+ mm.
    bbox_ijk : tuple of (int, int)
        First and last voxel index along I, J, K (both included).
    touches_border : bool
        Reaches the volume's border.
    intensity_mean : float or None
        Mean image value (e.g. HU) of its voxels, padding, NaN and infinite values
        left out; None without an image, NaN when every voxel is left out.
    matches : tuple of int
        Ids of the lesions on the other side (reference for a lesion, lesions for a
        reference lesion) it matches; empty without a reference.
    best_iou : float
        Largest voxel IoU with any lesion of the other side; NaN without a reference.
    """

    id: int
    label: int
    name: str
    voxels: int
    volume_ml: float
    diameter_mm: float
    centroid_ras_mm: tuple[float, float, float]
    bbox_ijk: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    touches_border: bool
    intensity_mean: float | None = None
    matches: tuple[int, ...] = ()
    best_iou: float = float("nan")


@dataclass
class LesionSummary:
    """Lesion counts of one label and, with a reference, lesion-wise detection.

    Attributes
    ----------
    label : int
        Label value.
    name : str
        Label name.
    lesions : int
        Lesions in the label map.
    ref_lesions : int or None
        Lesions in the reference (None without one; then the fields below are None).
    detected, missed : int or None
        Reference lesions matched / not matched by a lesion.
    true_positives, false_positives : int or None
        Lesions matching / not matching a reference lesion.
    precision, recall, f1 : float or None
        Lesion-wise, see the module notes (NaN where not defined).
    """

    label: int
    name: str
    lesions: int
    ref_lesions: int | None = None
    detected: int | None = None
    missed: int | None = None
    true_positives: int | None = None
    false_positives: int | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None


@dataclass
class LesionTable:
    """All lesions of a label map (and of its reference), with per-label summaries.

    Attributes
    ----------
    connectivity : int
        6, 18 or 26.
    iou_threshold : float or None
        Matching threshold; None: any overlap matches.
    lesions : list of Lesion
        Lesions of the label map, by id.
    ref_lesions : list of Lesion or None
        Lesions of the reference, by id (None without a reference).
    summary : list of LesionSummary
        One per label value, sorted.
    """

    connectivity: int
    iou_threshold: float | None
    lesions: list[Lesion] = field(default_factory=list)
    ref_lesions: list[Lesion] | None = None
    summary: list[LesionSummary] = field(default_factory=list)


def lesion_precision_recall_f1(
    lesions: int, true_positives: int, ref_lesions: int, detected: int
) -> tuple[float, float, float]:
    """Lesion-wise precision, recall and F1 (see the module notes for empty sides)."""
    nan = float("nan")
    precision = true_positives / lesions if lesions else nan
    recall = detected / ref_lesions if ref_lesions else nan
    if not lesions and not ref_lesions:
        return nan, nan, nan
    if not lesions or not ref_lesions:
        return precision, recall, 0.0
    total = precision + recall
    return precision, recall, (2 * precision * recall / total if total else 0.0)


@dataclass
class _Component:
    """A component inside a crop, before ids are given out."""

    label: int
    number: int  # its number in the crop's component map
    voxels: int
    centroid_ijk: np.ndarray
    low: np.ndarray
    high: np.ndarray
    diameter_mm: float
    intensity_mean: float | None
    overlaps: dict[int, tuple[int, int]] = field(default_factory=dict)  # number -> (inter, union)
    id: int = 0  # given by _finish


def _components(
    components: np.ndarray,
    count: int,
    offset: np.ndarray,
    label: int,
    linear: np.ndarray,
    image: np.ndarray | None,
    keep: np.ndarray | None,
) -> list[_Component]:
    """Measure the ``count`` components numbered in a crop's component map."""
    if image is not None:
        used = components[keep] if keep is not None else components.ravel()
        weights = image[keep] if keep is not None else image.ravel()
        sums = np.bincount(used, weights=weights.astype(np.float64), minlength=count + 1)
        kept = np.bincount(used, minlength=count + 1)
    out = []
    for number, box in enumerate(ndimage.find_objects(components, max_label=count), start=1):
        mask = components[box] == number
        voxels = int(np.count_nonzero(mask))
        centroid = np.empty(3)
        for axis in range(3):
            others = tuple(a for a in range(3) if a != axis)
            along = mask.sum(axis=others)
            centroid[axis] = along @ np.arange(along.size) / voxels + box[axis].start
        mean = None
        if image is not None:
            mean = float(sums[number] / kept[number]) if kept[number] else float("nan")
        out.append(
            _Component(
                label=label,
                number=number,
                voxels=voxels,
                centroid_ijk=centroid + offset,
                low=np.array([b.start for b in box]) + offset,
                high=np.array([b.stop - 1 for b in box]) + offset,
                diameter_mm=mask_diameter_mm(mask, linear),
                intensity_mean=mean,
            )
        )
    return out


def _overlaps(
    found: np.ndarray, ref_found: np.ndarray, mine: list[_Component], theirs: list[_Component]
) -> None:
    """Record (intersection, union) voxel counts of every overlapping pair, both ways."""
    both = (found > 0) & (ref_found > 0)
    if not both.any():
        return
    n_ref = len(theirs) + 1
    pairs, inter = np.unique(
        found[both].astype(np.int64) * n_ref + ref_found[both], return_counts=True
    )
    for pair, shared in zip(pairs, inter, strict=True):
        a, b = divmod(int(pair), n_ref)
        union = mine[a - 1].voxels + theirs[b - 1].voxels - int(shared)
        mine[a - 1].overlaps[b] = (int(shared), union)
        theirs[b - 1].overlaps[a] = (int(shared), union)


def _finish(
    parts: list[_Component], affine: np.ndarray, shape: tuple, names: dict[int, str]
) -> list[Lesion]:
    """Number the components (setting their ``id``) and turn them into :class:`Lesion` rows."""
    order = sorted(
        range(len(parts)),
        key=lambda n: (parts[n].label, -parts[n].voxels, tuple(parts[n].low)),
    )
    voxel_ml = voxel_volume_mm3(affine) / 1000.0
    lesions = []
    last = np.array(shape) - 1
    for new_id, n in enumerate(order, start=1):
        part = parts[n]
        part.id = new_id
        centroid = affine[:3, :3] @ part.centroid_ijk + affine[:3, 3]
        lesions.append(
            Lesion(
                id=new_id,
                label=part.label,
                name=names[part.label],
                voxels=part.voxels,
                volume_ml=part.voxels * voxel_ml,
                diameter_mm=part.diameter_mm,
                centroid_ras_mm=tuple(float(c) for c in centroid),  # type: ignore[arg-type]
                bbox_ijk=tuple((int(a), int(b)) for a, b in zip(part.low, part.high, strict=True)),  # type: ignore[arg-type]
                touches_border=bool((part.low == 0).any() or (part.high == last).any()),
                intensity_mean=part.intensity_mean,
            )
        )
    return lesions


def find_lesions(
    labels: np.ndarray,
    affine: np.ndarray,
    image: np.ndarray | None = None,
    *,
    reference: np.ndarray | None = None,
    connectivity: int = DEFAULT_CONNECTIVITY,
    iou_threshold: float | None = None,
    names: Mapping[int, str] | None = None,
    exclude_range: tuple[float, float] | None = None,
    which: Iterable[int] | None = None,
    tally: Tally | None = None,
) -> LesionTable:
    """Connected components of each label, measured, and matched to a reference.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map ``(I, J, K)`` (0 = background).
    affine : numpy.ndarray
        4x4 voxel -> RAS+ mm matrix.
    image : numpy.ndarray, optional
        Scan on the same grid: gives each lesion's mean value (e.g. HU).
    reference : numpy.ndarray, optional
        Reference label map on the same grid: its lesions are found too and matched.
    connectivity : int
        6, 18 or 26 (default 26).
    iou_threshold : float, optional
        Minimum voxel IoU for a match; default: any shared voxel.
    names : mapping, optional
        Label value -> name.
    exclude_range : (low, high), optional
        Image values left out of the means (DICOM pixel padding), both ends included;
        NaN and infinite values are always left out.
    which : iterable of int, optional
        Label values to analyse; default every non-zero value in either map.
    tally : Tally, optional
        A pass already made over ``labels`` (and ``reference``), for bounding boxes.

    Returns
    -------
    LesionTable
    """
    structure = structure_for(connectivity)
    if iou_threshold is not None and not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if tally is None or (reference is not None and tally.ref_projections is None):
        tally = tally_labels(labels, reference)
    affine = np.asarray(affine, dtype=np.float64)
    linear = affine[:3, :3]
    boxes = [bounding_boxes(tally.projections)]
    if reference is not None:
        boxes.append(bounding_boxes(tally.ref_projections))
    present = set(tally.present_values(reference=reference is not None))
    if which is None:
        wanted = sorted(present)
    else:
        wanted = sorted({int(v) for v in which if int(v) != 0})
    label_names = resolve_names(wanted, names)
    parts: list[_Component] = []
    ref_parts: list[_Component] = []
    per_label: dict[int, tuple[list[_Component], list[_Component]]] = {}
    for value in wanted:
        index = tally.index_of(value)
        mine: list[_Component] = []
        theirs: list[_Component] = []
        per_label[value] = (mine, theirs)
        if index is None or value not in present:
            continue
        lows = [low[index] for low, _ in boxes if low[index][0] >= 0]
        highs = [high[index] for low, high in boxes if low[index][0] >= 0]
        low, high = np.min(lows, axis=0), np.max(highs, axis=0)
        crop = tuple(slice(int(a), int(b) + 1) for a, b in zip(low, high, strict=True))
        image_crop = keep = None
        if image is not None:
            image_crop = image[crop]
            keep = intensity_keep(image_crop, exclude_range)
        found, count = ndimage.label(labels[crop] == value, structure=structure)
        mine.extend(_components(found, count, low, value, linear, image_crop, keep))
        if reference is not None:
            ref_found, ref_count = ndimage.label(reference[crop] == value, structure=structure)
            theirs.extend(_components(ref_found, ref_count, low, value, linear, None, None))
            _overlaps(found, ref_found, mine, theirs)
        parts.extend(mine)
        ref_parts.extend(theirs)
    lesions = _finish(parts, affine, tally.shape, label_names)
    table = LesionTable(connectivity=connectivity, iou_threshold=iou_threshold, lesions=lesions)
    if reference is None:
        table.summary = [
            LesionSummary(value, label_names[value], len(per_label[value][0])) for value in wanted
        ]
        return table
    ref_lesions = _finish(ref_parts, affine, tally.shape, label_names)
    table.ref_lesions = ref_lesions

    def accepted(inter: int, union: int) -> bool:
        return inter > 0 and (iou_threshold is None or inter / union >= iou_threshold)

    for value in wanted:
        mine, theirs = per_label[value]
        for group, other, rows in ((mine, theirs, lesions), (theirs, mine, ref_lesions)):
            for part in group:  # overlaps are keyed by the other side's number in the crop
                row = rows[part.id - 1]
                row.best_iou = max((i / u for i, u in part.overlaps.values()), default=0.0)
                row.matches = tuple(
                    sorted(other[n - 1].id for n, pair in part.overlaps.items() if accepted(*pair))
                )
        true_pos = sum(1 for part in mine if lesions[part.id - 1].matches)
        detected = sum(1 for part in theirs if ref_lesions[part.id - 1].matches)
        precision, recall, f1 = lesion_precision_recall_f1(
            len(mine), true_pos, len(theirs), detected
        )
        table.summary.append(
            LesionSummary(
                label=value,
                name=label_names[value],
                lesions=len(mine),
                ref_lesions=len(theirs),
                detected=detected,
                missed=len(theirs) - detected,
                true_positives=true_pos,
                false_positives=len(mine) - true_pos,
                precision=precision,
                recall=recall,
                f1=f1,
            )
        )
    return table
