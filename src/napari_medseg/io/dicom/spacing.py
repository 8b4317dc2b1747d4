"""The expected slice step of a stack, and which steps are gaps.

Pure arithmetic on the steps between successive slice positions along the
slice normal (no file access, no patient geometry).

The expected step is *not* the median step: when half or more of the steps of a
short series are gaps, the median is a gap too and nothing would be flagged. The
candidates are the typical step of each cluster of similar steps (the smallest
cluster first) and the headers' SpacingBetweenSlices and SliceThickness; the
one whose uniform grid (gaps counted as whole numbers of steps) puts every
slice closest to its true position wins. See :func:`estimate_step`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: A step at least this many expected steps long is a gap (missing slices).
GAP_FACTOR = 1.5
#: A ratio of two steps within this of a whole number counts as that whole number.
MULTIPLE_TOL = 0.1
#: Candidate steps whose worst misplacement is within this many grid steps of the
#: best one tie; the one inventing the fewest missing slices wins.
TIE_VOXELS = 0.05
_MAX_CANDIDATES = 16


@dataclass
class StepEstimate:
    """The expected step between slices and how it was judged.

    Attributes
    ----------
    step : float
        Expected step between adjacent slices along the normal (mm, > 0).
    counts : numpy.ndarray
        Per observed step, how many expected steps it spans (int, >= 1); a
        count above 1 is a gap of ``count - 1`` missing slices.
    source : str
        ``"measured"`` (the smallest cluster of steps), or the header attribute
        the step was taken from (``"SpacingBetweenSlices"``, ``"SliceThickness"``).
    notes : list of str
        Doubts that do not change the grid (e.g. every step is twice
        SpacingBetweenSlices, so every other slice may be missing).
    """

    step: float
    counts: np.ndarray
    source: str = "measured"
    notes: list[str] = field(default_factory=list)


def step_counts(steps: np.ndarray, expected: float) -> np.ndarray:
    """How many expected steps each observed step spans.

    A step shorter than ``GAP_FACTOR * expected`` spans one; a longer one spans
    the nearest whole number of expected steps (at least 2), so a step of 1.5
    expected steps counts as a gap of one missing slice. Steps that are not a
    whole number of expected steps are left to the placement check of the
    caller, which measures how far each slice then lands from its position.

    Parameters
    ----------
    steps : numpy.ndarray
        Positive steps between successive positions (mm), shape ``(n,)``.
    expected : float
        Expected step (mm, > 0).

    Returns
    -------
    numpy.ndarray
        Integer counts, shape ``(n,)``.
    """
    ratio = np.asarray(steps, dtype=float) / expected
    counts = np.where(ratio >= GAP_FACTOR, np.maximum(2, np.rint(ratio)), 1)
    return counts.astype(int)


def placement_error(steps: np.ndarray, counts: np.ndarray) -> float:
    """Worst distance (in grid steps) between a slice and its slot on a uniform grid.

    The grid runs from the first to the last position with ``sum(counts)``
    equal steps, as the volume's affine does.

    Parameters
    ----------
    steps : numpy.ndarray
        Observed steps (mm), shape ``(n,)``.
    counts : numpy.ndarray
        Grid steps each observed step spans, shape ``(n,)``.

    Returns
    -------
    float
        ``max_k |d_k - slot_k * grid| / grid`` (0 for a perfect fit).
    """
    depth = np.concatenate([[0.0], np.cumsum(steps)])
    slots = np.concatenate([[0], np.cumsum(counts)])
    grid = depth[-1] / slots[-1]
    return float(np.abs(depth - slots * grid).max() / grid)


def _candidates(steps: np.ndarray) -> list[float]:
    """Typical steps: the median of each cluster of similar steps, smallest first."""
    ordered = np.sort(steps)
    out: list[float] = []
    start = 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] > ordered[start] * (1 + 2 * MULTIPLE_TOL):
            out.append(float(np.median(ordered[start:i])))
            start = i
        if len(out) == _MAX_CANDIDATES:
            break
    return out


def estimate_step(
    steps: np.ndarray,
    *,
    spacing_between_slices: float | None = None,
    slice_thickness: float | None = None,
) -> StepEstimate:
    """Judge the expected step between slices from the observed steps.

    Parameters
    ----------
    steps : numpy.ndarray
        Steps between successive distinct slice positions along the normal
        (mm, all > 0), shape ``(n,)`` with ``n >= 1``.
    spacing_between_slices, slice_thickness : float, optional
        SpacingBetweenSlices and SliceThickness from the headers (mm; the sign
        is ignored).

    Returns
    -------
    StepEstimate

    Notes
    -----
    Candidates are the typical step of each cluster of similar steps (the
    smallest cluster first) and the header steps. Each is scored by how far the
    uniform grid it implies (gaps counted with :func:`step_counts`) puts the
    worst slice from its position, in grid steps; the best score wins; among
    candidates within :data:`TIE_VOXELS` of it, the one that invents the fewest
    missing slices, then the one most observed steps are close to.

    So steps of 2.5 and 5 mm give 2.5 mm (a gap, no misplacement), where the
    median (3.75 mm) would misplace a slice by a third of a voxel; steps of 5
    and 7.5 mm with SliceThickness 2.5 give 2.5 mm; one displaced slice (steps
    2.5, ..., 1.5, 3.5) keeps 2.5 mm instead of turning every step into a gap.
    A regular stack never becomes gaps from a header: slices 1 mm thick 10 mm
    apart are a high-resolution CT protocol, and a stack whose step is a
    multiple of SpacingBetweenSlices is reported in :attr:`StepEstimate.notes`
    (each slice is still at its true position).
    """
    steps = np.asarray(steps, dtype=float)
    measured = _candidates(steps)
    headers = {
        name: abs(float(value))
        for name, value in (
            ("SpacingBetweenSlices", spacing_between_slices),
            ("SliceThickness", slice_thickness),
        )
        if value is not None and abs(float(value)) > 0
    }
    scored = []
    for source, value in [("measured", v) for v in measured] + list(headers.items()):
        counts = step_counts(steps, value)
        scored.append((placement_error(steps, counts), value, source, counts))
    best = min(score for score, *_ in scored)
    _, step, source, counts = max(
        (item for item in scored if item[0] <= best + TIE_VOXELS),
        key=lambda item: (-int(item[3].sum()), _support(steps, item[1])),
    )
    if source != "measured" and any(_same(step, v) for v in measured):
        source = "measured"  # the header agrees with a measured step
    estimate = StepEstimate(step, counts, source=source)
    spacing = headers.get("SpacingBetweenSlices")
    if spacing is not None and not counts.max() > 1:
        note = _multiple_note(step, spacing, headers.get("SliceThickness"))
        if note:
            estimate.notes.append(note)
    return estimate


def _multiple_note(step: float, spacing: float, thickness: float | None) -> str:
    """A note when a regular step is a whole multiple (>= 2) of SpacingBetweenSlices."""
    multiple = step / spacing
    whole = int(np.rint(multiple))
    if whole < 2 or abs(multiple - whole) > MULTIPLE_TOL:
        return ""
    note = (
        f"the slices are {step:.3f} mm apart, {whole} x SpacingBetweenSlices "
        f"({spacing:.3f} mm): {whole - 1} slice(s) may be missing between every two"
    )
    if thickness is not None and _same(thickness + spacing, step):
        note += (
            f", or SpacingBetweenSlices holds the gap between {thickness:g} mm slices, as "
            "some scanners write it"
        )
    return note + " (each slice is still placed at its true position)"


def _support(steps: np.ndarray, value: float) -> int:
    """How many observed steps are about ``value`` long."""
    return int(np.count_nonzero(np.abs(steps - value) <= MULTIPLE_TOL * value))


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= MULTIPLE_TOL * min(a, b)
