"""What a user gives an interactive segmentation: points, boxes, scribbles, lassos.

A :class:`Prompt` is in world millimetres (RAS+, the scan affine's world), so a prompt
means the same place whichever voxel order the scan is stored in. The session turns it
into a :class:`VoxelPrompt` in (fractional) voxel indices ``(i, j, k)`` of the scan, or
of a crop of it, with :func:`to_voxels`.

Kinds and their vertices (``world_mm``, shape ``(N, 3)``):

``"point"``
    one vertex, ``N == 1``; positive (inside the object) or negative (outside).
``"box"``
    two opposite corners of a rectangle on one slice (``N == 2``), or of a 3D box.
``"scribble"``
    the voxel centres painted by a brush stroke (``N >= 1``).
``"lasso"``
    the vertices of a closed polygon on one slice (``N >= 3``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_medseg.errors import MedsegError

#: Prompt kinds, and the fewest vertices each needs.
PROMPT_KINDS = {"point": 1, "box": 2, "scribble": 1, "lasso": 3}


class PromptError(MedsegError):
    """A prompt that cannot be used: unknown kind, wrong vertex count, off the scan."""


@dataclass(frozen=True)
class Prompt:
    """One user prompt in world millimetres.

    Attributes
    ----------
    kind : str
        ``"point"``, ``"box"``, ``"scribble"`` or ``"lasso"``.
    world_mm : numpy.ndarray
        Vertices, shape ``(N, 3)``, RAS+ millimetres.
    positive : bool
        True: the object is here (a click inside, a box around it, a scribble on it, a
        lasso around it). False: it is not (a negative click or scribble, a lasso to cut).
    """

    kind: str
    world_mm: np.ndarray
    positive: bool = True

    def __post_init__(self) -> None:
        if self.kind not in PROMPT_KINDS:
            raise PromptError(
                f"unknown prompt kind {self.kind!r}; choose one of {', '.join(PROMPT_KINDS)}."
            )
        vertices = np.asarray(self.world_mm, dtype=np.float64).reshape(-1, 3)
        if len(vertices) < PROMPT_KINDS[self.kind]:
            raise PromptError(
                f"a {self.kind} prompt needs at least {PROMPT_KINDS[self.kind]} vertices, "
                f"got {len(vertices)}."
            )
        if self.kind == "box" and len(vertices) != 2:
            raise PromptError(f"a box prompt has 2 opposite corners, got {len(vertices)}.")
        if not np.isfinite(vertices).all():
            raise PromptError(f"a {self.kind} prompt has a coordinate that is not finite.")
        object.__setattr__(self, "world_mm", vertices)

    @classmethod
    def point(cls, ras_mm, positive: bool = True) -> Prompt:
        """A click at ``ras_mm`` (3 numbers, RAS+ mm)."""
        return cls("point", np.asarray(ras_mm, dtype=np.float64).reshape(1, 3), positive)

    @classmethod
    def box(cls, corner_a_mm, corner_b_mm) -> Prompt:
        """A box with opposite corners ``corner_a_mm`` and ``corner_b_mm`` (RAS+ mm)."""
        return cls("box", np.vstack([np.ravel(corner_a_mm), np.ravel(corner_b_mm)]), True)


@dataclass(frozen=True)
class VoxelPrompt:
    """A prompt in voxel indices of the array a backend is given.

    Attributes
    ----------
    kind : str
        As :attr:`Prompt.kind`.
    ijk : numpy.ndarray
        Vertices, shape ``(N, 3)``, fractional voxel indices ``(i, j, k)`` along the
        array's axes (voxel centres at integers).
    positive : bool
        As :attr:`Prompt.positive`.
    slice_axis : int or None
        For a box or lasso drawn on one slice: the array axis across that slice (the
        axis along which all vertices share one index); None for a 3D box, a point or a
        scribble.
    """

    kind: str
    ijk: np.ndarray
    positive: bool = True
    slice_axis: int | None = field(default=None)

    def voxels(self) -> np.ndarray:
        """The vertices rounded to the nearest voxel, shape ``(N, 3)``, int64."""
        return np.rint(self.ijk).astype(np.int64)

    def shifted(self, offset) -> VoxelPrompt:
        """The same prompt in the coordinates of a crop starting at voxel ``offset``."""
        return VoxelPrompt(
            self.kind, self.ijk - np.asarray(offset, dtype=np.float64), self.positive,
            self.slice_axis,
        )


#: How far (in voxels) a vertex may sit outside the scan's voxel centres and still count
#: as on the scan: half a voxel, the edge of the outermost voxel.
_EDGE = 0.5


def to_voxels(prompt: Prompt, affine: np.ndarray, shape) -> VoxelPrompt:
    """``prompt`` in voxel indices of a scan with ``affine`` (voxel -> RAS+ mm) and ``shape``.

    Raises
    ------
    PromptError
        When a vertex lies off the scan (further than half a voxel outside its edge
        voxels), naming the vertex and the scan's extent.
    """
    affine = np.asarray(affine, dtype=np.float64)
    homogeneous = np.c_[prompt.world_mm, np.ones(len(prompt.world_mm))]
    ijk = (np.linalg.inv(affine) @ homogeneous.T).T[:, :3]
    upper = np.asarray(shape, dtype=np.float64) - 1
    outside = ((ijk < -_EDGE) | (ijk > upper + _EDGE)).any(axis=1)
    if outside.any():
        where = prompt.world_mm[int(np.argmax(outside))]
        corners = np.array([[0, 0, 0], upper]).T
        low, high = (affine[:3, :3] @ corners + affine[:3, 3:]).T
        raise PromptError(
            f"the {prompt.kind} prompt at R,A,S = {', '.join(f'{v:.1f}' for v in where)} mm "
            f"lies off the scan (its voxel corners span {np.round(low, 1).tolist()} to "
            f"{np.round(high, 1).tolist()} mm); give coordinates in the scan's world (RAS+ mm)."
        )
    ijk = np.clip(ijk, 0, upper)
    slice_axis = None
    if prompt.kind in ("box", "lasso"):
        spread = np.ptp(ijk, axis=0)
        flat = np.flatnonzero(spread < 0.5)
        if len(flat) >= 1:
            slice_axis = int(flat[np.argmin(spread[flat])])
    return VoxelPrompt(prompt.kind, ijk, prompt.positive, slice_axis)


__all__ = ["PROMPT_KINDS", "Prompt", "PromptError", "VoxelPrompt", "to_voxels"]
