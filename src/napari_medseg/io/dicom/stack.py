"""Slice geometry of a stack of DICOM frames: order, affine, gaps, duplicates, tilt.

Pure computation on header values (no file access). Frames are sorted by their
position along the slice normal, the cross product of the two direction cosines
in ImageOrientationPatient, never by InstanceNumber.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_medseg.io.dicom.records import FrameRef
from napari_medseg.io.errors import InconsistentSeriesError

#: Two frames closer than this along the normal (mm) sit at the same position.
DUPLICATE_TOL_MM = 0.01
#: A step larger than this many median steps is a gap (missing slices).
GAP_FACTOR = 1.5
#: Max difference between direction cosines of frames of one stack.
ORIENTATION_TOL = 1e-3
#: Max relative difference between pixel spacings of frames of one stack.
SPACING_RTOL = 1e-3
#: Tilt angles (degrees) below this are float noise, not gantry tilt.
TILT_TOL_DEG = 0.01


@dataclass
class StackPlan:
    """Where each frame of a stack goes in the output volume.

    Attributes
    ----------
    slots : list of list of int
        For output slice ``k`` (0 .. K-1), the indices (into the frame list given
        to :func:`plan_stack`) of the frames at that position: one normally,
        several for duplicates (the first is read), none for a missing slice.
    affine_lps : numpy.ndarray
        4x4 voxel ``(i, j, k)`` -> LPS+ mm matrix of the output volume
        (i = column, j = row, k = slot). Column 2 is the actual step between
        slice positions, so gantry tilt stays as a shear.
    slice_spacing : float or None
        Median step along the slice normal (mm); None for a single slice.
    tilt_deg : float
        Angle between the slice step and the slice normal (0 without tilt).
    warnings : list of str
        Problems that did not stop the plan (gaps only with ``allow_gaps``).
    gaps : list of str
        One line per gap (also in ``warnings``).
    missing : list of int
        Output slices with no frame (filled by the reader).
    duplicate_slots : list of int
        Output slices with more than one frame.
    """

    slots: list[list[int]]
    affine_lps: np.ndarray
    slice_spacing: float | None
    tilt_deg: float = 0.0
    warnings: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    duplicate_slots: list[int] = field(default_factory=list)


def _fail(frame: FrameRef, problem: str, fix: str) -> InconsistentSeriesError:
    return InconsistentSeriesError(frame.label, problem, fix)


def check_geometry(frames: list[FrameRef]) -> None:
    """Raise unless every frame has orientation, position and pixel spacing that agree.

    Raises
    ------
    InconsistentSeriesError
        Naming the first offending file.
    """
    if not frames:
        raise InconsistentSeriesError("", "the series has no image frames.", "")
    for ref in frames:
        missing = [
            name
            for name, value in (
                ("ImageOrientationPatient", ref.iop),
                ("ImagePositionPatient", ref.ipp),
                ("PixelSpacing", ref.pixel_spacing),
            )
            if value is None
        ]
        if missing:
            raise _fail(
                ref,
                f"has no valid {', '.join(missing)}, so its position in the patient is "
                "unknown (projection images, secondary captures and stripped multi-frame "
                "files lack it).",
                "Choose another series; this one cannot be placed in patient space.",
            )
    first = frames[0]
    iop0 = np.asarray(first.iop, dtype=float)
    spacing0 = np.asarray(first.pixel_spacing, dtype=float)
    if np.any(spacing0 <= 0):
        raise _fail(first, f"has a non-positive PixelSpacing {tuple(spacing0)}.", "")
    row, col = iop0[:3], iop0[3:]
    if (
        abs(np.linalg.norm(row) - 1) > 1e-2
        or abs(np.linalg.norm(col) - 1) > 1e-2
        or abs(float(row @ col)) > 1e-3
    ):
        raise _fail(
            first,
            f"has an invalid ImageOrientationPatient {tuple(iop0)} (the two direction "
            "cosines must be unit vectors at right angles).",
            "The file is corrupt; re-export the series.",
        )
    for ref in frames[1:]:
        if np.abs(np.asarray(ref.iop) - iop0).max() > ORIENTATION_TOL:
            raise _fail(
                ref,
                f"has orientation {ref.iop}, unlike {first.label} ({first.iop}); one "
                "volume cannot mix slice orientations.",
                "Read the series through index_dicom(), which splits it by orientation.",
            )
        if np.abs(np.asarray(ref.pixel_spacing) - spacing0).max() > SPACING_RTOL * spacing0.max():
            raise _fail(
                ref,
                f"has PixelSpacing {ref.pixel_spacing}, unlike {first.label} "
                f"({first.pixel_spacing}); one volume cannot mix pixel sizes.",
                "Remove the files that do not belong to this series.",
            )
        if (ref.rows, ref.columns) != (first.rows, first.columns):
            raise _fail(
                ref,
                f"is {ref.columns}x{ref.rows} pixels, unlike {first.label} "
                f"({first.columns}x{first.rows}).",
                "Read the series through index_dicom(), which splits it by image size.",
            )


def direction_cosines(iop: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row cosine, column cosine and slice normal (all unit, LPS+) from IOP."""
    iop_arr = np.asarray(iop, dtype=float)
    row = iop_arr[:3] / np.linalg.norm(iop_arr[:3])
    col = iop_arr[3:] / np.linalg.norm(iop_arr[3:])
    normal = np.cross(row, col)
    return row, col, normal / np.linalg.norm(normal)


def plan_stack(frames: list[FrameRef], *, allow_gaps: bool = False) -> StackPlan:
    """Sort frames along the slice normal and derive the volume's LPS affine.

    Parameters
    ----------
    frames : list of FrameRef
        Frames of one stack (one orientation, one image size).
    allow_gaps : bool
        When False a gap (a step larger than 1.5 x the median step) raises;
        when True the missing slices get empty slots and a warning.

    Returns
    -------
    StackPlan

    Raises
    ------
    InconsistentSeriesError
        Missing or mixed geometry; slice positions off a straight line; a gap
        when ``allow_gaps`` is False.
    """
    check_geometry(frames)
    first = frames[0]
    row, col, normal = direction_cosines(first.iop)  # type: ignore[arg-type]
    row_spacing, col_spacing = (float(v) for v in first.pixel_spacing)  # type: ignore[union-attr]
    positions = np.array([ref.ipp for ref in frames], dtype=float)
    depth = positions @ normal
    order = sorted(range(len(frames)), key=lambda i: (depth[i], frames[i].path, frames[i].frame))

    # group frames at the same position (duplicates)
    groups: list[list[int]] = []
    for idx in order:
        if groups and depth[idx] - depth[groups[-1][0]] <= DUPLICATE_TOL_MM:
            groups[-1].append(idx)
        else:
            groups.append([idx])
    warnings: list[str] = []
    duplicate_groups = [g for g in groups if len(g) > 1]
    if duplicate_groups:
        example = duplicate_groups[0]
        warnings.append(
            f"{len(duplicate_groups)} slice position(s) hold more than one image (e.g. "
            f"{depth[example[0]]:.3f} mm along the normal: "
            + ", ".join(frames[i].label for i in example[:3])
            + "); one is kept when the images are identical"
        )

    reps = [g[0] for g in groups]
    rep_pos = positions[reps]
    rep_depth = depth[reps]
    n_unique = len(reps)
    lin = np.zeros((4, 4))
    lin[3, 3] = 1.0
    lin[:3, 0] = row * col_spacing
    lin[:3, 1] = col * row_spacing
    lin[:3, 3] = rep_pos[0]

    if n_unique == 1:
        step_mm = first.spacing_between_slices or first.slice_thickness or 1.0
        lin[:3, 2] = normal * step_mm
        warnings.append(
            f"single slice: its thickness along the normal is taken as {step_mm:g} mm "
            "(SpacingBetweenSlices or SliceThickness)"
        )
        return StackPlan(
            slots=[groups[0]],
            affine_lps=lin,
            slice_spacing=None,
            warnings=warnings,
            duplicate_slots=[0] if len(groups[0]) > 1 else [],
        )

    steps = np.diff(rep_depth)
    median = float(np.median(steps))
    counts = np.maximum(1, np.rint(steps / median)).astype(int)
    gap_mask = steps > GAP_FACTOR * median
    gaps: list[str] = []
    for k in np.flatnonzero(gap_mask):
        a, b = frames[reps[k]], frames[reps[k + 1]]
        missing = int(counts[k]) - 1
        off = abs(float(steps[k]) - counts[k] * median)
        text = (
            f"gap in slice positions: {steps[k]:.3f} mm between {rep_depth[k]:.3f} and "
            f"{rep_depth[k + 1]:.3f} mm along the slice normal (median step "
            f"{median:.3f} mm; about {missing} slice(s) missing between {a.label} and "
            f"{b.label})"
        )
        if off > 0.1 * median:
            text += (
                f"; the gap is not a whole number of steps, so slices beyond it are "
                f"placed up to {off:.3f} mm from their true position"
            )
        gaps.append(text)
    if gaps and not allow_gaps:
        first_gap = int(np.flatnonzero(gap_mask)[0])
        raise InconsistentSeriesError(
            frames[reps[first_gap + 1]].label,
            gaps[0] + (f" and {len(gaps) - 1} more gap(s)" if len(gaps) > 1 else "") + ".",
            "Find the missing files, or read with allow_gaps=True to fill the missing "
            "slices (they are filled with the volume's minimum value and reported).",
        )
    warnings.extend(gaps)

    regular = steps[~gap_mask]
    if regular.size and np.abs(regular - median).max() > max(0.01 * median, 0.01):
        warnings.append(
            f"irregular slice spacing: steps range from {regular.min():.3f} to "
            f"{regular.max():.3f} mm (median {median:.3f} mm); the volume uses the mean step "
            "so positions may be off by up to "
            f"{np.abs(regular - median).max():.3f} mm"
        )

    slot_index = np.concatenate([[0], np.cumsum(counts)])
    n_out = int(slot_index[-1]) + 1
    slots: list[list[int]] = [[] for _ in range(n_out)]
    for g, k in zip(groups, slot_index, strict=True):
        slots[int(k)] = g
    step = (rep_pos[-1] - rep_pos[0]) / (n_out - 1)
    lin[:3, 2] = step

    # positions must lie on a line: in-plane offsets proportional to depth
    frac = (rep_depth - rep_depth[0]) / (rep_depth[-1] - rep_depth[0])
    expected = rep_pos[0] + frac[:, None] * (rep_pos[-1] - rep_pos[0])
    off_line = np.linalg.norm(rep_pos - expected, axis=1)
    worst = int(np.argmax(off_line))
    if off_line[worst] > 0.5 * min(row_spacing, col_spacing):
        raise _fail(
            frames[reps[worst]],
            f"lies {off_line[worst]:.3f} mm off the line through the first and last slice "
            "positions; the slices do not form one regular volume.",
            "Check that the folder holds a single acquisition; remove the files that do "
            "not belong to it.",
        )
    if off_line[worst] > 0.01:
        warnings.append(
            f"slice positions deviate up to {off_line[worst]:.3f} mm from a straight line "
            f"(at {frames[reps[worst]].label})"
        )

    cos_tilt = abs(float(step @ normal)) / float(np.linalg.norm(step))
    tilt = float(np.degrees(np.arccos(min(1.0, cos_tilt))))
    if tilt > TILT_TOL_DEG:
        tag = first.info.get("gantry_tilt")
        tag_text = f", GantryDetectorTilt {tag:g} deg" if tag is not None else ""
        warnings.append(
            f"gantry tilt: slices are stacked {tilt:.2f} deg off the slice normal{tag_text}; "
            "the affine keeps this shear so every voxel is at its true position (tools "
            "that assume orthogonal voxel axes need a resampled copy)"
        )
    missing = [k for k, s in enumerate(slots) if not s]
    return StackPlan(
        slots=slots,
        affine_lps=lin,
        slice_spacing=median,
        tilt_deg=tilt if tilt > TILT_TOL_DEG else 0.0,
        warnings=warnings,
        gaps=gaps,
        missing=missing,
        duplicate_slots=[k for k, s in enumerate(slots) if len(s) > 1],
    )
