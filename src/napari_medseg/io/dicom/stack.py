"""Slice geometry of a stack of DICOM frames: order, affine, gaps, duplicates, tilt.

Pure computation on header values (no file access). Frames are sorted by their
position along the slice normal, the cross product of the two direction cosines
in ImageOrientationPatient, never by InstanceNumber.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from napari_medseg.errors import InconsistentSeriesError
from napari_medseg.io.dicom.records import FrameRef
from napari_medseg.io.dicom.spacing import StepEstimate, estimate_step

#: How a gap's warning begins.
GAP_TEXT = "gap in slice positions"
#: Two frames closer than this along the normal (mm) sit at the same position.
DUPLICATE_TOL_MM = 0.01
#: Max difference between direction cosines of frames of one stack.
ORIENTATION_TOL = 1e-3
#: Max relative difference between pixel spacings of frames of one stack.
SPACING_RTOL = 1e-3
#: In-plane drift of ImagePositionPatient over the whole stack below this fraction
#: of a pixel is rounding noise, not gantry tilt.
TILT_PIXEL_FRACTION = 0.1


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
        Step of the output grid along the slice normal (mm): the expected step
        between adjacent slices (gaps excluded); None for a single slice.
    tilt_deg : float
        Angle between the slice step and the slice normal (0 without tilt).
    warnings : list of str
        Problems that did not stop the plan (gaps only with ``allow_gaps``).
    gaps : list of str
        One line per gap (also in ``warnings``).
    misplaced : str
        Non-empty when irregular spacing puts a slice more than half a voxel
        from its true position (only with ``allow_gaps``; also in ``warnings``).
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
    misplaced: str = ""
    missing: list[int] = field(default_factory=list)
    duplicate_slots: list[int] = field(default_factory=list)


def _fail(frame: FrameRef, problem: str, fix: str) -> InconsistentSeriesError:
    return InconsistentSeriesError(frame.label, problem, fix)


def numbers(values: tuple[float, ...] | list[float] | np.ndarray | None) -> str:
    """``"(0, 0.8)"``: numbers for messages, never a numpy repr (``np.float64(0.8)``)."""
    if values is None:
        return "(none)"
    return "(" + ", ".join(f"{float(v):g}" for v in values) + ")"


def check_geometry(frames: list[FrameRef], source: str = "") -> None:
    """Raise unless every frame has orientation, position and pixel spacing that agree.

    Parameters
    ----------
    frames : list of FrameRef
        Frames of one stack.
    source : str
        File or folder named in the error when ``frames`` is empty.

    Raises
    ------
    InconsistentSeriesError
        Naming the first offending file.
    """
    if not frames:
        raise InconsistentSeriesError(
            source or "(no file)",
            "the series has no image frames.",
            "Index the folder again with index_dicom() and choose a series it lists.",
        )
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
        raise _fail(
            first,
            f"has a non-positive PixelSpacing {numbers(spacing0)}.",
            "The file is corrupt; re-export the series.",
        )
    row, col = iop0[:3], iop0[3:]
    if (
        abs(np.linalg.norm(row) - 1) > 1e-2
        or abs(np.linalg.norm(col) - 1) > 1e-2
        or abs(float(row @ col)) > 1e-3
    ):
        raise _fail(
            first,
            f"has an invalid ImageOrientationPatient {numbers(iop0)} (the two direction "
            "cosines must be unit vectors at right angles).",
            "The file is corrupt; re-export the series.",
        )
    for ref in frames[1:]:
        if np.abs(np.asarray(ref.iop) - iop0).max() > ORIENTATION_TOL:
            raise _fail(
                ref,
                f"has orientation {numbers(ref.iop)}, unlike {first.label} "
                f"{numbers(first.iop)}; one "
                "volume cannot mix slice orientations.",
                "Read the series through index_dicom(), which splits it by orientation.",
            )
        if np.abs(np.asarray(ref.pixel_spacing) - spacing0).max() > SPACING_RTOL * spacing0.max():
            raise _fail(
                ref,
                f"has PixelSpacing {numbers(ref.pixel_spacing)}, unlike {first.label} "
                f"{numbers(first.pixel_spacing)}; one volume cannot mix pixel sizes.",
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
    """Row cosine, column cosine and slice normal (all unit, LPS+) from IOP.

    A degenerate IOP (zero or parallel cosines) gives NaN, silently: the index
    groups such frames as best it can and :func:`check_geometry` names the file.
    """
    iop_arr = np.asarray(iop, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        row = iop_arr[:3] / np.linalg.norm(iop_arr[:3])
        col = iop_arr[3:] / np.linalg.norm(iop_arr[3:])
        normal = np.cross(row, col)
        return row, col, normal / np.linalg.norm(normal)


def _header_step(frames: list[FrameRef], attribute: str) -> float | None:
    """Most common absolute value of a per-frame header step (mm), or None."""
    values = [getattr(ref, attribute) for ref in frames]
    values = [round(abs(v), 4) for v in values if v is not None and v != 0]
    if not values:
        return None
    return Counter(values).most_common(1)[0][0]


def _step_vector(
    rep_pos: np.ndarray, rep_depth: np.ndarray, normal: np.ndarray, n_out: int, pixel: float
) -> tuple[np.ndarray, float]:
    """The affine's slice axis and the tilt it implies (degrees).

    The step runs from the first to the last slice position; when the in-plane
    drift over the whole stack stays below :data:`TILT_PIXEL_FRACTION` of a
    pixel it is rounding noise in ImagePositionPatient (common on oblique MR),
    not gantry tilt, and the step is projected onto the normal (no shear).
    """
    drift = rep_pos[-1] - rep_pos[0]
    in_plane = drift - float(drift @ normal) * normal
    if float(np.linalg.norm(in_plane)) <= TILT_PIXEL_FRACTION * pixel:
        return normal * (rep_depth[-1] - rep_depth[0]) / (n_out - 1), 0.0
    step = drift / (n_out - 1)
    cos_tilt = abs(float(step @ normal)) / float(np.linalg.norm(step))
    return step, float(np.degrees(np.arccos(min(1.0, cos_tilt))))


def _gap_texts(
    frames: list[FrameRef],
    reps: list[int],
    rep_depth: np.ndarray,
    steps: np.ndarray,
    estimate: StepEstimate,
) -> list[str]:
    source = "" if estimate.source == "measured" else f", from {estimate.source}"
    texts = []
    for k in np.flatnonzero(estimate.counts > 1):
        a, b = frames[reps[k]], frames[reps[k + 1]]
        texts.append(
            f"{GAP_TEXT}: {steps[k]:.3f} mm between {rep_depth[k]:.3f} and "
            f"{rep_depth[k + 1]:.3f} mm along the slice normal (expected step "
            f"{estimate.step:.3f} mm{source}; about {int(estimate.counts[k]) - 1} slice(s) "
            f"missing between {a.label} and {b.label})"
        )
    return texts


def _check_filler(
    frames: list[FrameRef],
    reps: list[int],
    steps: np.ndarray,
    estimate: StepEstimate,
    name: str,
) -> None:
    """Refuse a plan that would invent more slices than the stack has.

    Filling a gap keeps every real slice at its true position, which is honest
    for a slice or a few lost in a long stack. When the missing slices outnumber
    the real ones the "gap" is not a few lost files: a slice of another stack or
    acquisition sits far away (e.g. 4 slices 1.25 mm apart and one 202 mm off
    would become 165 slices, 161 of them filler), and a volume that is mostly
    filler is no scan. This holds with ``allow_gaps`` too.

    Raises
    ------
    InconsistentSeriesError
        Naming the slice on the short side of the largest gap, the series, the
        distance and the count.
    """
    missing = int(estimate.counts.sum()) - len(estimate.counts)
    n_real = len(reps)
    if missing <= n_real:
        return
    k = int(np.argmax(estimate.counts))
    lone = reps[k] if k + 1 <= n_real - (k + 1) else reps[k + 1]  # the short side
    a, b = frames[reps[k]], frames[reps[k + 1]]
    what = f"series {name}" if name else "the series"
    raise _fail(
        frames[lone],
        f"{what} has {n_real} slice positions, and filling its gaps would invent {missing} "
        f"more: the largest gap is {steps[k]:g} mm along the slice normal, between "
        f"{a.label} and {b.label}, where the other slices are {estimate.step:g} mm apart. "
        "The slices on either side probably belong to different stacks or acquisitions.",
        "Move the slices that do not belong (e.g. this one) out of the folder, or into "
        "their own folder; filling the gap would make a volume that is mostly invented.",
    )


def plan_stack(frames: list[FrameRef], *, allow_gaps: bool = False, name: str = "") -> StackPlan:
    """Sort frames along the slice normal and derive the volume's LPS affine.

    Parameters
    ----------
    frames : list of FrameRef
        Frames of one stack (one orientation, one image size).
    allow_gaps : bool
        When False, a gap (a step of at least 1.5 expected steps, see
        :func:`~napari_medseg.io.dicom.spacing.estimate_step`) raises, and so
        does irregular spacing that puts a slice more than half a voxel from its
        true position on the uniform grid. When True, missing slices get empty
        slots and both are reported in the warnings.
    name : str
        The series, for messages (e.g. its key and description).

    Returns
    -------
    StackPlan

    Raises
    ------
    InconsistentSeriesError
        Missing or mixed geometry; slice positions off a straight line; a gap
        or a slice misplaced by more than half a voxel when ``allow_gaps`` is
        False; gaps whose filling would invent more slices than the stack has
        (even with ``allow_gaps``, see :func:`_check_filler`). The message
        names the file.
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
    lin = np.zeros((4, 4))
    lin[3, 3] = 1.0
    lin[:3, 0] = row * col_spacing
    lin[:3, 1] = col * row_spacing
    lin[:3, 3] = rep_pos[0]

    if len(reps) == 1:
        step_mm = (
            _header_step(frames, "spacing_between_slices")
            or _header_step(frames, "slice_thickness")
            or 1.0
        )
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
    estimate = estimate_step(
        steps,
        spacing_between_slices=_header_step(frames, "spacing_between_slices"),
        slice_thickness=_header_step(frames, "slice_thickness"),
    )
    warnings.extend(estimate.notes)
    _check_filler(frames, reps, steps, estimate, name)
    gaps = _gap_texts(frames, reps, rep_depth, steps, estimate)
    if gaps and not allow_gaps:
        first_gap = int(np.flatnonzero(estimate.counts > 1)[0])
        raise InconsistentSeriesError(
            frames[reps[first_gap + 1]].label,
            gaps[0] + (f" and {len(gaps) - 1} more gap(s)" if len(gaps) > 1 else "") + ".",
            "Find the missing files, or read with allow_gaps=True to fill the missing "
            "slices (they are filled with the volume's minimum value and reported).",
        )
    warnings.extend(gaps)

    slot_index = np.concatenate([[0], np.cumsum(estimate.counts)]).astype(int)
    n_out = int(slot_index[-1]) + 1
    slots: list[list[int]] = [[] for _ in range(n_out)]
    for g, k in zip(groups, slot_index, strict=True):
        slots[int(k)] = g
    step, tilt = _step_vector(rep_pos, rep_depth, normal, n_out, min(row_spacing, col_spacing))
    lin[:3, 2] = step

    _check_line(frames, reps, rep_pos, rep_depth, min(row_spacing, col_spacing), warnings)
    misplaced = _check_placement(
        frames, reps, rep_pos, slot_index, lin, steps / estimate.counts, allow_gaps, warnings
    )

    if tilt > 0:
        tag = first.info.get("gantry_tilt")
        tag_text = f", GantryDetectorTilt {tag:g} deg" if tag is not None else ""
        warnings.append(
            f"gantry tilt: slices are stacked {tilt:.2f} deg off the slice normal{tag_text}; "
            "the affine keeps this shear so every voxel is at its true position (tools "
            "that assume orthogonal voxel axes need a resampled copy)"
        )
    return StackPlan(
        slots=slots,
        affine_lps=lin,
        slice_spacing=abs(float(step @ normal)),
        tilt_deg=tilt,
        warnings=warnings,
        gaps=gaps,
        misplaced=misplaced,
        missing=[k for k, s in enumerate(slots) if not s],
        duplicate_slots=[k for k, s in enumerate(slots) if len(s) > 1],
    )


def _check_line(
    frames: list[FrameRef],
    reps: list[int],
    rep_pos: np.ndarray,
    rep_depth: np.ndarray,
    pixel: float,
    warnings: list[str],
) -> None:
    """Raise unless the slice positions lie on one line (in-plane offsets grow with depth)."""
    frac = (rep_depth - rep_depth[0]) / (rep_depth[-1] - rep_depth[0])
    expected = rep_pos[0] + frac[:, None] * (rep_pos[-1] - rep_pos[0])
    off_line = np.linalg.norm(rep_pos - expected, axis=1)
    worst = int(np.argmax(off_line))
    if off_line[worst] > 0.5 * pixel:
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


def _check_placement(
    frames: list[FrameRef],
    reps: list[int],
    rep_pos: np.ndarray,
    slot_index: np.ndarray,
    lin: np.ndarray,
    unit_steps: np.ndarray,
    allow_gaps: bool,
    warnings: list[str],
) -> str:
    """Measure how far the uniform grid puts each slice from its ImagePositionPatient.

    The bound is ``max_k ||IPP_k - A @ (0, 0, slot_k, 1)||`` over the slices
    actually placed. Above half the slice step it raises (or, with
    ``allow_gaps``, warns and returns the problem); above 1 % of the step
    (and 0.01 mm) it warns.

    Returns
    -------
    str
        The problem text when a slice is misplaced by more than half a voxel
        (and ``allow_gaps`` let it through), else ``""``.
    """
    placed = slot_index[:, None] * lin[:3, 2] + lin[:3, 3]
    error = np.linalg.norm(rep_pos - placed, axis=1)
    worst = int(np.argmax(error))
    bound = float(error[worst])
    voxel = float(np.linalg.norm(lin[:3, 2]))
    if bound <= max(0.01 * voxel, 0.01):
        return ""
    label = frames[reps[worst]].label
    detail = (
        f"steps between slices range from {unit_steps.min():.3f} to {unit_steps.max():.3f} "
        f"mm, so on a uniform grid of {voxel:.3f} mm a slice lands up to {bound:.3f} mm "
        f"({bound / voxel:.2f} voxel) from its true position"
    )
    if bound <= 0.5 * voxel:
        warnings.append(f"irregular slice spacing: {detail} (worst: {label})")
        return ""
    problem = (
        f"irregular slice spacing: {detail} (worst: {label}), more than half a voxel, so "
        "its pixels would be shown and measured in the wrong slice"
    )
    if not allow_gaps:
        raise _fail(
            frames[reps[worst]],
            f"is misplaced by the volume's grid: {detail}; that is more than half a voxel.",
            "Check that the folder holds a single acquisition (remove files that do not "
            "belong), or read with allow_gaps=True to accept the misplacement (it is "
            "reported), or resample the series with a tool made for irregular spacing.",
        )
    warnings.append(problem)
    return problem
