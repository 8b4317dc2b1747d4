"""The simulated user of interactive-segmentation papers: clicks from a reference mask.

The protocol (as in Sakinis et al. 2019, DeepIGeoS, nnInteractive's evaluation): the
first click is a positive click at the object's most interior point (the maximum of its
distance transform, in mm); every next click goes to the most interior point of the
largest error region of the current mask: positive where the mask missed the object,
negative where it leaked. An error region is a 6-connected component of the missed or
leaked voxels; "largest" counts voxels. Interior distances are measured in mm (the
voxel spacing), with the array's edge counting as outside.

:func:`next_click` places one click; :func:`run_clicks` drives a
:class:`~napari_medseg.interactive.session.PromptSession` through ``n`` clicks and
records Dice and the session's wall time after each (``bench/bench_prompt.py``, tests).

Core module: no napari, no Qt, no torch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_medseg.interactive.prompts import Prompt
from napari_medseg.interactive.session import PromptSession
from napari_medseg.labels.components import bounding_box, label_components

#: Connectivity of error regions (faces only, scipy's default in 3D).
ERROR_CONNECTIVITY = 6


@dataclass(frozen=True)
class Click:
    """One simulated click.

    Attributes
    ----------
    ijk : tuple of int
        Voxel index ``(i, j, k)`` of the scan.
    positive : bool
        True: on missed object; False: on a leak.
    depth_mm : float
        How far the click lies inside its region (distance to the region's outside), mm.
    """

    ijk: tuple[int, int, int]
    positive: bool
    depth_mm: float


@dataclass(frozen=True)
class ClickRun:
    """Dice and time after each click of :func:`run_clicks`.

    Attributes
    ----------
    clicks : tuple of Click
        The clicks given, in order.
    dice : tuple of float
        Dice of the session's mask with the reference after each click.
    seconds : tuple of float
        The session's wall time of each click (``PromptUpdate.seconds``).
    """

    clicks: tuple[Click, ...]
    dice: tuple[float, ...]
    seconds: tuple[float, ...]

    def dice_after(self, n: int) -> float:
        """Dice after ``n`` clicks (the last one when the run stopped earlier: no error left)."""
        return self.dice[min(n, len(self.dice)) - 1]


def dice(mask: np.ndarray, reference: np.ndarray) -> float:
    """Dice coefficient of two boolean arrays of one shape (1.0 when both are empty)."""
    total = int(np.count_nonzero(mask)) + int(np.count_nonzero(reference))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(mask & reference)) / total


def interior_point(region: np.ndarray, spacing_mm) -> tuple[tuple[int, int, int], float]:
    """The voxel of ``region`` farthest from its outside.

    Parameters
    ----------
    region : numpy.ndarray
        bool ``(I, J, K)``, not empty.
    spacing_mm : sequence of float
        Voxel step along ``(I, J, K)``, mm.

    Returns
    -------
    ijk : tuple of int
        The voxel (the first in C order among equals).
    depth_mm : float
        Its distance to the nearest voxel outside ``region`` (the array's edge counts as
        outside), mm.
    """
    box = bounding_box(region)
    if box is None:
        raise ValueError("interior_point needs a region with at least one voxel")
    inside = np.pad(region[box], 1)
    distance = ndimage.distance_transform_edt(inside, sampling=spacing_mm)
    flat = int(np.argmax(distance))
    where = np.unravel_index(flat, distance.shape)
    ijk = tuple(int(w) - 1 + s.start for w, s in zip(where, box, strict=True))
    return ijk, float(distance.flat[flat])


def _largest_component(errors: np.ndarray):
    """(size, component mask in the full array) of the largest error component, or None."""
    components, count, box = label_components(errors, ERROR_CONNECTIVITY)
    if count == 0:
        return None
    sizes = np.bincount(components.ravel())[1:]
    best = int(np.argmax(sizes)) + 1
    region = np.zeros(errors.shape, dtype=bool)
    region[box] = components == best
    return int(sizes[best - 1]), region


def next_click(reference: np.ndarray, mask: np.ndarray, spacing_mm) -> Click | None:
    """Where the simulated user clicks next.

    Parameters
    ----------
    reference, mask : numpy.ndarray
        bool ``(I, J, K)``: the true object and the current mask.
    spacing_mm : sequence of float
        Voxel step along ``(I, J, K)``, mm.

    Returns
    -------
    Click or None
        A positive click at the most interior point of the largest missed region, or a
        negative one in the largest leak, whichever region has more voxels (missed on a
        tie); None when the mask equals the reference.
    """
    box = bounding_box(reference | mask)
    if box is None:
        return None
    found = []
    for positive, errors in (
        (True, reference[box] & ~mask[box]),
        (False, mask[box] & ~reference[box]),
    ):
        largest = _largest_component(errors)
        if largest is not None:
            found.append((largest[0], positive, largest[1]))
    if not found:
        return None
    _size, positive, region = max(found, key=lambda entry: entry[0])
    ijk, depth = interior_point(region, spacing_mm)
    ijk = tuple(int(v + s.start) for v, s in zip(ijk, box, strict=True))
    return Click(ijk, positive, depth)


def run_clicks(
    session: PromptSession,
    reference: np.ndarray,
    n_clicks: int,
    cancel: threading.Event | None = None,
    first_shift: tuple[int, int, int] = (0, 0, 0),
) -> ClickRun:
    """Give ``session`` up to ``n_clicks`` simulated clicks against ``reference``.

    Parameters
    ----------
    session : PromptSession
        A session on the scan (usually fresh); each click is added as a point prompt at
        the voxel centre (world mm through the scan's affine).
    reference : numpy.ndarray
        bool ``(I, J, K)`` on the scan's grid: the object to segment.
    n_clicks : int
        Most clicks; the run stops early when the mask equals the reference.
    cancel : threading.Event, optional
        Passed to each :meth:`PromptSession.add`.
    first_shift : tuple of int
        Voxels ``(i, j, k)`` the first click is moved by from the object's most interior
        point (kept on the scan; still a positive click, wherever it lands; its
        ``depth_mm`` is the interior point's): how much a result depends on where
        exactly the user clicks first.

    Returns
    -------
    ClickRun
    """
    reference = np.asarray(reference, dtype=bool)
    if reference.shape != session.volume.shape:
        raise ValueError(
            f"the reference has shape {reference.shape}, the scan {session.volume.shape}"
        )
    affine = np.asarray(session.volume.affine, dtype=np.float64)
    spacing = session.spacing
    clicks, dices, seconds = [], [], []
    for n in range(int(n_clicks)):
        click = next_click(reference, session.mask, spacing)
        if click is None:
            break
        if n == 0 and any(first_shift):
            moved = np.clip(np.add(click.ijk, first_shift), 0, np.subtract(reference.shape, 1))
            click = Click(tuple(int(v) for v in moved), True, click.depth_mm)
        world = (affine @ np.r_[np.asarray(click.ijk, dtype=np.float64), 1.0])[:3]
        update = session.add(Prompt.point(world, positive=click.positive), cancel=cancel)
        clicks.append(click)
        dices.append(dice(update.mask, reference))
        seconds.append(update.seconds)
    return ClickRun(tuple(clicks), tuple(dices), tuple(seconds))


__all__ = ["Click", "ClickRun", "dice", "interior_point", "next_click", "run_clicks"]
