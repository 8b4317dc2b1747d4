"""Re-measure the labels an edit touched, with exactly the numbers a full report gives.

A live report (the napari Report widget) measures a label map once with
:func:`~napari_medseg.measure.report.build_report` and then, after each edit, re-measures
only the label values whose voxels changed, inside a box that holds all their
voxels: the union of each value's previous bounding box (in the label map and the
reference) and the edited region. One pass over that crop counts the value's voxels
per index plane, its overlap with the reference and its image values; placed in
full-volume coordinates they form a :class:`~napari_medseg.measure.tally.Tally` (label
index 1 = the value) that the measuring step of the full report
(:func:`~napari_medseg.measure.pipeline.measure`, on the inputs
:func:`~napari_medseg.measure.pipeline.prepare` made for it) turns into rows. The rows
are therefore *identical* to a full report's, not merely close:

* counts, bounding boxes and centroids come from the same integer projections;
* diameters, surface distances and lesions crop the same full arrays with the same
  boxes;
* intensity statistics take the same code path as the full report: the exact
  per-label histogram, which the full report surely takes when the image holds
  whole numbers (CT in HU) in a range that fits its limit. Otherwise (e.g. a float
  MR image) the path depends on every label's values, and an update is a full
  report.

Everything is in the label map's voxel order ``(I, J, K)``; boxes are voxel index
ranges, the stop excluded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_medseg.measure.lesions import Lesion, LesionSummary, LesionTable
from napari_medseg.measure.pipeline import PreparedInputs, measure, prepare
from napari_medseg.measure.report import Report, ReportSettings, utc_timestamp
from napari_medseg.measure.stats import _HISTOGRAM_BINS, _is_whole, resolve_names
from napari_medseg.measure.surface import memory_axes
from napari_medseg.measure.tally import Tally, bounding_boxes, tally_labels
from napari_medseg.volume import Volume

#: Largest label value a direct-index tally uses (see ``tally._lookup_table``).
_DIRECT_MAX_LABEL = 255


@dataclass(frozen=True)
class VoxelBox:
    """A box of voxel indices ``[start, stop)`` along I, J, K.

    Attributes
    ----------
    start, stop : tuple of int
        First index and one past the last along each axis.
    """

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @classmethod
    def from_bbox(cls, bbox: Iterable[tuple[int, int]]) -> VoxelBox:
        """From inclusive ``((i_min, i_max), (j_min, j_max), (k_min, k_max))``."""
        pairs = [(int(a), int(b)) for a, b in bbox]
        return cls(tuple(a for a, _ in pairs), tuple(b + 1 for _, b in pairs))  # type: ignore[arg-type]

    def union(self, other: VoxelBox | None) -> VoxelBox:
        """The smallest box holding both."""
        if other is None:
            return self
        return VoxelBox(
            tuple(min(a, b) for a, b in zip(self.start, other.start, strict=True)),  # type: ignore[arg-type]
            tuple(max(a, b) for a, b in zip(self.stop, other.stop, strict=True)),  # type: ignore[arg-type]
        )

    def clipped(self, shape: tuple[int, ...]) -> VoxelBox:
        """The part inside an array of ``shape``."""
        start = tuple(min(max(int(a), 0), int(n)) for a, n in zip(self.start, shape, strict=True))
        stop = tuple(
            min(max(int(b), a), int(n)) for a, b, n in zip(start, self.stop, shape, strict=True)
        )
        return VoxelBox(start, stop)  # type: ignore[arg-type]

    def slices(self) -> tuple[slice, slice, slice]:
        """Index expression of the box."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))  # type: ignore[return-value]


@dataclass
class _LabelLesions:
    """The lesions of one label value, numbered from 1 within the value."""

    lesions: list[Lesion]
    ref_lesions: list[Lesion] | None
    summary: LesionSummary


@dataclass
class MeasuredReport:
    """A report and what it takes to update it after an edit.

    Attributes
    ----------
    report : Report
        Equal (up to its creation time) to ``settings.build(labels, image, reference)``
        on the arrays as they are now.
    labels, image, reference : Volume or None
        The inputs; their arrays are read again by :func:`update_report`.
    settings : ReportSettings
    partial : bool
        Whether :func:`update_report` can re-measure single labels: whether the
        prepared inputs are views of the volumes' arrays (False: every update is a full
        report, e.g. for a reference resampled from another grid or a float label map).
    """

    report: Report
    labels: Volume
    image: Volume | None
    reference: Volume | None
    settings: ReportSettings
    partial: bool = False
    #: the live inputs partial updates read (None when every update is a full report)
    _inputs: PreparedInputs | None = field(default=None, repr=False)
    #: image values bound: (all finite values whole, lowest, highest), None without image
    _image_range: tuple[bool, float, float] | None = field(default=None, repr=False)
    _ref_boxes: dict[int, VoxelBox] = field(default_factory=dict, repr=False)
    _lesions: dict[int, _LabelLesions] = field(default_factory=dict, repr=False)

    def present_values(self) -> list[int]:
        """Label values with a row (present in the label map or the reference)."""
        return [s.label for s in self.report.labels]


# ------------------------------------------------------------------------ full


def _image_range(image: np.ndarray) -> tuple[bool, float, float]:
    """Whether every finite value is a whole number, and the lowest and highest value.

    8-bit images are bounded by their type; others are read plane by plane (no copy
    of the whole image).
    """
    if image.dtype.kind in "iub":
        info = np.iinfo(np.uint8 if image.dtype.kind == "b" else image.dtype)
        if info.bits <= 8 or image.size == 0:
            return True, float(info.min), float(info.max)
        return True, float(image.min()), float(image.max())
    whole, low, high = True, np.inf, -np.inf
    for plane in image:
        finite = plane[np.isfinite(plane)]
        if finite.size:
            whole = whole and _is_whole(finite)
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    return (whole, low, high) if low <= high else (True, 0.0, 0.0)


def _split_lesions(table: LesionTable | None) -> dict[int, _LabelLesions]:
    """A lesion table cut into per-label groups numbered from 1 within each label."""
    if table is None:
        return {}
    groups: dict[int, _LabelLesions] = {}
    ids: dict[tuple[str, int], int] = {}  # (side, global id) -> id within its label
    sides = [("labels", table.lesions), ("reference", table.ref_lesions or [])]
    for side, lesions in sides:
        seen: dict[int, int] = {}
        for lesion in lesions:
            seen[lesion.label] = seen.get(lesion.label, 0) + 1
            ids[(side, lesion.id)] = seen[lesion.label]
    for summary in table.summary:
        groups[summary.label] = _LabelLesions(
            [], [] if table.ref_lesions is not None else None, summary
        )
    for side, lesions in sides:
        other = "reference" if side == "labels" else "labels"
        for lesion in lesions:
            local = dataclasses.replace(
                lesion,
                id=ids[(side, lesion.id)],
                matches=tuple(ids[(other, m)] for m in lesion.matches),
            )
            group = groups[lesion.label]
            (group.lesions if side == "labels" else group.ref_lesions).append(local)  # type: ignore[union-attr]
    return groups


def _join_lesions(
    groups: Mapping[int, _LabelLesions],
    connectivity: int,
    iou_threshold: float | None,
    compared: bool,
) -> LesionTable:
    """The lesion table of per-label groups (ids numbered on, label by label)."""
    lesions: list[Lesion] = []
    ref_lesions: list[Lesion] = []
    summary = []
    for value in sorted(groups):
        group = groups[value]
        offset, ref_offset = len(lesions), len(ref_lesions)
        lesions += [
            dataclasses.replace(
                lesion, id=lesion.id + offset, matches=tuple(m + ref_offset for m in lesion.matches)
            )
            for lesion in group.lesions
        ]
        ref_lesions += [
            dataclasses.replace(
                lesion, id=lesion.id + ref_offset, matches=tuple(m + offset for m in lesion.matches)
            )
            for lesion in group.ref_lesions or []
        ]
        summary.append(group.summary)
    return LesionTable(
        connectivity=connectivity,
        iou_threshold=iou_threshold,
        lesions=lesions,
        ref_lesions=ref_lesions if compared else None,
        summary=summary,
    )


def measure_report(
    labels: Volume,
    image: Volume | None = None,
    reference: Volume | None = None,
    settings: ReportSettings | None = None,
) -> MeasuredReport:
    """Measure a label map fully and keep what later partial updates need.

    Parameters
    ----------
    labels, image, reference : Volume
        As for :func:`~napari_medseg.measure.report.build_report`. For live updates their
        arrays should be views of the data being edited.
    settings : ReportSettings, optional

    Returns
    -------
    MeasuredReport
    """
    settings = settings or ReportSettings()
    inputs = prepare(labels, image, reference, include_patient=settings.include_patient)
    report = settings.build(labels, image, reference, inputs)
    # partial updates read the arrays again after each edit: only views of the edited data do
    state = MeasuredReport(report, labels, image, reference, settings, partial=inputs.live)
    if not inputs.live:
        return state
    state._inputs = inputs
    if inputs.image is not None:
        state._image_range = _image_range(inputs.image)
    if inputs.reference is not None:
        tally = tally_labels(inputs.reference)
        low, high = bounding_boxes(tally.projections)
        for index in np.flatnonzero(tally.counts):
            state._ref_boxes[int(tally.values[index])] = VoxelBox(
                tuple(int(a) for a in low[index]),
                tuple(int(b) + 1 for b in high[index]),  # type: ignore[arg-type]
            )
    state._lesions = _split_lesions(report.lesions)
    return state


# ------------------------------------------------------------------------ partial


def _projections(mask: np.ndarray, box: VoxelBox, shape: tuple[int, ...]) -> list[np.ndarray]:
    """Per-plane voxel counts of a crop's mask along I, J, K of the full volume.

    Each array has shape (2, n_axis): row 0 (the "anything else" index) zero, row 1
    the mask's voxels in each plane of the full volume. The mask is summed once along
    its memory axis; the other two projections come from that plane of sums.
    """
    axis = memory_axes(mask)[-1]
    ones = mask.view(np.uint8)
    others = tuple(a for a in range(3) if a != axis)
    plane = ones.sum(axis=axis, dtype=np.int64)  # shape of the two other axes
    counts = {axis: ones.sum(axis=others, dtype=np.int64)}
    counts[others[0]] = plane.sum(axis=1)
    counts[others[1]] = plane.sum(axis=0)
    out = []
    for a in range(3):
        row = np.zeros((2, shape[a]), np.int64)
        row[1, box.start[a] : box.stop[a]] = counts[a]
        out.append(row)
    return out


def _value_tally(inputs: PreparedInputs, value: int, box: VoxelBox) -> Tally:
    """A full-volume :class:`Tally` of one label value from a crop holding all its voxels.

    Label index 1 is ``value``, index 0 everything else; the counts, projections,
    reference overlap and image values of index 1 are those a full tally has for
    ``value``.
    """
    from napari_medseg.measure.tally import intensity_keep

    crop = box.slices()
    shape = tuple(int(n) for n in inputs.labels.shape)
    mask = inputs.labels[crop] == value
    projections = _projections(mask, box, shape)
    count = int(projections[0][1].sum())
    tally = Tally(
        shape=shape,  # type: ignore[arg-type]
        values=np.array([0, int(value)], np.int64),
        counts=np.array([0, count], np.int64),
        projections=projections,
    )
    if inputs.reference is not None:
        ref_mask = inputs.reference[crop] == value
        tally.ref_projections = _projections(ref_mask, box, shape)
        ref_count = int(tally.ref_projections[0][1].sum())
        both = int(np.count_nonzero(mask & ref_mask))
        tally.ref_counts = np.array([0, ref_count], np.int64)
        tally.confusion = np.array([[0, ref_count - both], [count - both, both]], np.int64)
    if inputs.image is not None:
        image = inputs.image[crop]
        axes = memory_axes(image)  # read in memory order: the histogram statistics
        # (the only path a partial update takes, see _histogram_certain) ignore order
        values = image.transpose(axes)[mask.transpose(axes)]
        keep = intensity_keep(values, inputs.exclude)
        excluded = 0
        if keep is not None:
            excluded = int(values.size - np.count_nonzero(keep))
            values = values[keep]
        tally.image_values = values
        tally.label_of_value = np.ones(values.size, np.uint8)
        tally.excluded = np.array([0, excluded], np.int64)
    return tally


def _label_count(present: Iterable[int]) -> int:
    """How many label indices a full tally of maps holding ``present`` values uses."""
    present = list(present)
    top = max(present, default=0)
    return top + 1 if top <= _DIRECT_MAX_LABEL else len(present) + 1


def _histogram_certain(
    image_range: tuple[bool, float, float] | None, present: Iterable[int]
) -> bool:
    """Whether a full report surely takes the exact histogram path for intensities.

    True without an image, or when every finite image value is whole and the image's
    value range times the label count fits ``label_stats``' histogram limit. Then a
    single label's values (whole, and a narrower range) take that path too, so its
    statistics are bit-identical to the full report's. Otherwise the path a full
    report takes depends on the values of every label, and updates are full reports.
    """
    if image_range is None:
        return True
    whole, low, high = image_range
    return whole and (high - low + 1) * _label_count(present) <= _HISTOGRAM_BINS


def update_report(
    state: MeasuredReport, values: Iterable[int], region: VoxelBox | None
) -> MeasuredReport:
    """The report after an edit that changed voxels of ``values`` inside ``region``.

    Parameters
    ----------
    state : MeasuredReport
        The report before the edit (not modified).
    values : iterable of int
        Every label value a changed voxel had before or has after the edit, in the
        label map or the reference (0 is ignored).
    region : VoxelBox or None
        A box holding every changed voxel (I, J, K indices); None: unknown, so a full
        report is made.

    Returns
    -------
    MeasuredReport
        Equal to :func:`measure_report` on the edited arrays (up to creation time).
    """
    inputs = state._inputs
    values = sorted({int(v) for v in values} - {0})
    if (
        region is None
        or inputs is None
        or (values and values[0] < 0)
        or not _histogram_certain(state._image_range, state.present_values())
    ):
        return measure_report(state.labels, state.image, state.reference, state.settings)
    shape = tuple(int(n) for n in inputs.labels.shape)
    region = region.clipped(shape)
    settings = state.settings
    rows = {s.label: s for s in state.report.labels}
    overlap = {o.label: o for o in state.report.overlap or []}
    ref_boxes = dict(state._ref_boxes)
    lesions = dict(state._lesions)
    for value in values:
        box = region
        if value in rows and rows[value].bbox_ijk is not None:
            box = box.union(VoxelBox.from_bbox(rows[value].bbox_ijk))
        box = box.union(ref_boxes.get(value))
        tally = _value_tally(inputs, value, box)
        present = bool(tally.counts[1]) or bool(
            tally.ref_counts is not None and tally.ref_counts[1]
        )
        ref_boxes.pop(value, None)
        if not present:
            rows.pop(value, None)
            overlap.pop(value, None)
            lesions.pop(value, None)
            continue
        if tally.ref_counts is not None and tally.ref_counts[1]:
            low, high = bounding_boxes(tally.ref_projections)  # type: ignore[arg-type]
            ref_boxes[value] = VoxelBox(
                tuple(int(a) for a in low[1]),
                tuple(int(b) + 1 for b in high[1]),  # type: ignore[arg-type]
            )
        found = measure(inputs, settings, [value], tally)
        (rows[value],) = found.labels
        if found.overlap is not None:
            (overlap[value],) = found.overlap
        if found.lesions is not None:
            lesions[value] = _split_lesions(found.lesions)[value]
    if not _histogram_certain(state._image_range, rows):
        return measure_report(state.labels, state.image, state.reference, settings)
    report = dataclasses.replace(
        state.report,
        provenance=dataclasses.replace(state.report.provenance, created_utc=utc_timestamp()),
        labels=[rows[v] for v in sorted(rows)],
        overlap=[overlap[v] for v in sorted(overlap)] if state.report.overlap is not None else None,
        lesions=_join_lesions(
            lesions, settings.connectivity, settings.iou_threshold, inputs.reference is not None
        )
        if settings.lesions
        else None,
    )
    return dataclasses.replace(state, report=report, _ref_boxes=ref_boxes, _lesions=lesions)


def rename_labels(state: MeasuredReport, names: Mapping[int, str] | None) -> MeasuredReport:
    """The same measurements under other label names (``label_<n>`` where none is given)."""
    wanted = {s.label for s in state.report.labels}
    resolved = resolve_names(wanted, names)

    def renamed(items: list[Any] | None) -> list[Any] | None:
        if items is None:
            return None
        return [
            dataclasses.replace(item, name=resolved.get(item.label, item.name)) for item in items
        ]

    table = state.report.lesions
    if table is not None:
        table = dataclasses.replace(
            table,
            lesions=renamed(table.lesions),
            ref_lesions=renamed(table.ref_lesions),
            summary=renamed(table.summary),
        )
    report = dataclasses.replace(
        state.report,
        labels=renamed(state.report.labels),
        overlap=renamed(state.report.overlap),
        lesions=table,
    )
    settings = dataclasses.replace(state.settings, names=dict(names) if names else None)
    return dataclasses.replace(
        state, report=report, settings=settings, _lesions=_split_lesions(table)
    )


__all__ = [
    "MeasuredReport",
    "ReportSettings",
    "VoxelBox",
    "measure_report",
    "rename_labels",
    "update_report",
]
