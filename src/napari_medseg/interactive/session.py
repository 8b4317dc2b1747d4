"""A prompt session on one scan: prompts in, a 3D mask on the scan's grid out.

:class:`PromptSession` keeps the prompts given so far (world mm), a history of masks for
undo, and the current mask on the scan's own grid. Each :meth:`PromptSession.add`:

1. turns the prompt into voxel indices of the scan (:func:`~.prompts.to_voxels`);
2. picks a crop: the box around the positive prompts' vertices, the newest prompt's
   and the current mask, widened by ``margin_mm`` on each side and clipped to the scan
   (the whole scan for a backend whose ``crops`` is False); an older negative prompt
   far from the mask (a leak already cut) would only widen the crop, and with it the
   backend's grid;
3. asks the backend for the mask in that crop, given every prompt and the previous mask
   (so a change refines the last result instead of starting over);
4. when the mask touches a side of the crop that is not the scan's edge, widens that
   side (doubling the margin) and asks again, up to ``max_grow`` times: the crop grows
   with the object;
5. when the first prompt's mask still touches an inner side of the widest crop, the
   method found no edge anywhere (a faint 18 mm brain tumour grew into the whole brain,
   538 000 voxels for 453): the mask is then the one on the first crop, within about
   ``margin_mm`` of the prompt, and the next prompt says which way to go (a positive one
   farther out grows it, a negative one cuts it). Measured with the simulated user
   (``bench/bench_prompt.py``, with the ``grow`` method letting a later positive click
   grow on as the first did): tumours after 5 clicks 0.764 -> 0.788, four brain
   structures after one click 0.18 -> 0.37; organs 0.944 -> 0.940 (the whole brain of
   Colin27, which a first click no longer takes at once: 0.91 -> 0.86 after 5 clicks);
6. writes the crop's mask into the scan-sized mask (voxels outside the crop are cleared:
   the mask is one object, and the crop holds all of it).

Core module: no napari, no Qt, no torch.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from napari_medseg.interactive.backends.base import (
    BackendError,
    PromptBackend,
    PromptRequest,
)
from napari_medseg.interactive.prompts import Prompt, VoxelPrompt, to_voxels
from napari_medseg.progress import raise_if_cancelled
from napari_medseg.volume import Volume


@dataclass(frozen=True)
class PromptUpdate:
    """What one prompt did.

    Attributes
    ----------
    mask : numpy.ndarray
        bool ``(I, J, K)`` on the scan grid: the current mask (the session's own array;
        copy it before changing it).
    crop : tuple of slice
        The part of the scan the backend saw last, in scan voxels.
    changed : tuple of slice or None
        The smallest box holding every voxel whose value changed (None: none changed).
    seconds : float
        Wall time of the update.
    grew : int
        How many times the crop was widened because the object reached its border.
    """

    mask: np.ndarray
    crop: tuple[slice, slice, slice]
    changed: tuple[slice, slice, slice] | None
    seconds: float
    grew: int


def _bounding_box(mask: np.ndarray):
    """``(low, high)`` voxel corners (inclusive) of the True voxels, or None."""
    across_k = mask.any(axis=2)  # two passes over the volume, not three
    where = [
        np.flatnonzero(across_k.any(axis=1)),
        np.flatnonzero(across_k.any(axis=0)),
        np.flatnonzero(mask.any(axis=(0, 1))),
    ]
    if any(len(w) == 0 for w in where):
        return None
    return np.array([w[0] for w in where]), np.array([w[-1] for w in where])


class PromptSession:
    """Prompts on one scan, and the mask they make.

    Parameters
    ----------
    volume : Volume
        The scan; its array is read as float32 once.
    backend : PromptBackend
        What turns prompts into masks.
    margin_mm : float
        How far the first crop reaches beyond the prompts and the mask, in mm.
    max_grow : int
        Most times one update widens its crop.
    """

    def __init__(
        self,
        volume: Volume,
        backend: PromptBackend,
        margin_mm: float = 25.0,
        max_grow: int = 4,
    ) -> None:
        self.volume = volume
        self.backend = backend
        self.margin_mm = float(margin_mm)
        self.max_grow = int(max_grow)
        self.image = np.asarray(volume.array, dtype=np.float32)
        self.spacing = tuple(float(s) for s in volume.spacing)
        self._prompts: list[Prompt] = []
        self._voxel_prompts: list[VoxelPrompt] = []
        self._masks: list[np.ndarray] = []  # the mask after each prompt
        self._empty = np.zeros(volume.shape, dtype=bool)
        self._key = id(self)

    # -- state ---------------------------------------------------------------------------
    @property
    def prompts(self) -> tuple[Prompt, ...]:
        """The prompts given so far, oldest first."""
        return tuple(self._prompts)

    @property
    def mask(self) -> np.ndarray:
        """The current mask, bool ``(I, J, K)`` on the scan grid (all False at first)."""
        return self._masks[-1] if self._masks else self._empty

    # -- changes -------------------------------------------------------------------------
    def add(self, prompt: Prompt, cancel: threading.Event | None = None) -> PromptUpdate:
        """Add ``prompt`` and update the mask.

        Raises
        ------
        PromptError
            The prompt lies off the scan.
        BackendError
            The backend fails.
        Cancelled
            ``cancel`` was set; the session is left as it was.
        """
        start = time.perf_counter()
        voxel_prompt = to_voxels(prompt, self.volume.affine, self.volume.shape)
        prompts = (*self._voxel_prompts, voxel_prompt)
        previous = self.mask
        low, high = self._crop_box(prompts, previous)
        first_crop = tuple(slice(int(a), int(b) + 1) for a, b in zip(low, high, strict=True))
        grew = 0
        while True:
            raise_if_cancelled(cancel, "interactive segmentation cancelled")
            crop = tuple(slice(int(a), int(b) + 1) for a, b in zip(low, high, strict=True))
            result = self._run_backend(
                crop, prompts, previous, cancel, will_widen=grew < self.max_grow
            )
            widen = self._sides_to_widen(result, low, high)
            if widen is None or grew >= self.max_grow:
                break
            low, high = self._widen(low, high, widen, 2 ** (grew + 1))
            grew += 1
        if widen is not None and grew > 0 and not self._masks:
            # the first prompt's object reaches past the widest crop: no edge was found,
            # so its mask is the part on the first crop (step 5 of the module notes)
            raise_if_cancelled(cancel, "interactive segmentation cancelled")
            crop = first_crop
            result = self._run_backend(crop, prompts, previous, cancel, will_widen=False)
        raise_if_cancelled(cancel, "interactive segmentation cancelled")
        mask = np.zeros(self.volume.shape, dtype=bool)
        mask[crop] = result
        self._prompts.append(prompt)
        self._voxel_prompts.append(voxel_prompt)
        self._masks.append(mask)
        return PromptUpdate(
            mask, crop, self._changed(previous, mask, crop), time.perf_counter() - start, grew
        )

    def undo(self) -> np.ndarray:
        """Take the newest prompt back; return the mask as it was before it."""
        if self._prompts:
            self._prompts.pop()
            self._voxel_prompts.pop()
            self._masks.pop()
        return self.mask

    def reset(self) -> np.ndarray:
        """Forget every prompt; return the (empty) mask."""
        self._prompts.clear()
        self._voxel_prompts.clear()
        self._masks.clear()
        self.backend.reset()
        return self.mask

    # -- the crop ------------------------------------------------------------------------
    def _margin_voxels(self, factor: float = 1.0) -> np.ndarray:
        return np.ceil(factor * self.margin_mm / np.asarray(self.spacing)).astype(int)

    def _crop_box(self, prompts, previous):
        """Voxel corners (inclusive) of the first crop of an update."""
        upper = np.asarray(self.volume.shape) - 1
        if not self.backend.crops:
            return np.zeros(3, dtype=int), upper
        # the positive prompts and the newest: an older negative one far from the mask
        # (a cut of a leak already made) would only widen the crop and coarsen its grid
        vertices = np.vstack(
            [p.ijk for n, p in enumerate(prompts) if p.positive or n == len(prompts) - 1]
        )
        low, high = np.floor(vertices.min(axis=0)), np.ceil(vertices.max(axis=0))
        box = _bounding_box(previous)
        if box is not None:
            low, high = np.minimum(low, box[0]), np.maximum(high, box[1])
        margin = self._margin_voxels()
        return (
            np.clip(low - margin, 0, upper).astype(int),
            np.clip(high + margin, 0, upper).astype(int),
        )

    def _sides_to_widen(self, result, low, high):
        """(low sides, high sides) boolean per axis the mask touches inside the scan."""
        if not self.backend.crops:
            return None
        upper = np.asarray(self.volume.shape) - 1
        lows = np.array([result.take(0, axis=a).any() for a in range(3)]) & (low > 0)
        highs = np.array([result.take(-1, axis=a).any() for a in range(3)]) & (high < upper)
        if not (lows.any() or highs.any()):
            return None
        return lows, highs

    def _widen(self, low, high, sides, factor):
        upper = np.asarray(self.volume.shape) - 1
        margin = self._margin_voxels(factor)
        lows, highs = sides
        low = np.where(lows, np.clip(low - margin, 0, upper), low)
        high = np.where(highs, np.clip(high + margin, 0, upper), high)
        return low.astype(int), high.astype(int)

    def _run_backend(self, crop, prompts, previous, cancel, will_widen=False) -> np.ndarray:
        offset = tuple(s.start for s in crop)
        affine = np.array(self.volume.affine, dtype=np.float64)
        affine[:3, 3] = affine[:3, :3] @ np.asarray(offset, dtype=np.float64) + affine[:3, 3]
        request = PromptRequest(
            image=self.image[crop],
            spacing_mm=self.spacing,
            prompts=tuple(p.shifted(offset) for p in prompts),
            previous=previous[crop] if self._masks else None,
            offset=offset,
            scan_shape=self.volume.shape,
            scan_key=self._key,
            cancel=cancel,
            affine=affine,
            will_widen=will_widen and self.backend.crops,
        )
        result = np.asarray(self.backend.segment(request), dtype=bool)
        if result.shape != request.image.shape:
            raise BackendError(
                f"the {self.backend.name} method returned a mask of shape {result.shape} "
                f"for an image of shape {request.image.shape}."
            )
        return result

    @staticmethod
    def _changed(before: np.ndarray, after: np.ndarray, crop):
        """Box of the voxels that differ; only the crop and the old mask's box can."""
        low = np.array([s.start for s in crop])
        high = np.array([s.stop - 1 for s in crop])
        box = _bounding_box(before)
        if box is not None:
            low, high = np.minimum(low, box[0]), np.maximum(high, box[1])
        region = tuple(slice(int(a), int(b) + 1) for a, b in zip(low, high, strict=True))
        box = _bounding_box(before[region] != after[region])
        if box is None:
            return None
        return tuple(
            slice(int(a) + r.start, int(b) + r.start + 1)
            for a, b, r in zip(*box, region, strict=True)
        )


__all__ = ["PromptSession", "PromptUpdate"]
