"""Connected threshold region growing: the plain baseline of interactive segmentation.

The mask is every voxel connected (6-connectivity) to a positive seed through voxels
whose value lies in ``[low, high]``, the range of the positive seeds' 3x3x3
neighbourhoods widened by ``widen`` times their standard deviation (SimpleITK's
``ConnectedThreshold`` with the interval taken from the seeds). Negative points cut away
the connected piece they fall in. Boxes and lassos add their centre as a seed. No weights,
no learning: it is here to measure the other methods against (``bench/bench_prompt.py``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_medseg.interactive.backends.base import PromptBackend, PromptRequest


def _seed_voxels(request: PromptRequest, positive: bool) -> np.ndarray:
    shape = np.asarray(request.image.shape) - 1
    seeds = []
    for prompt in request.prompts:
        if prompt.positive != positive:
            continue
        voxels = prompt.voxels()
        if prompt.kind in ("box", "lasso"):
            voxels = np.rint(prompt.ijk.mean(axis=0, keepdims=True)).astype(np.int64)
        seeds.append(voxels)
    if not seeds:
        return np.zeros((0, 3), dtype=np.int64)
    return np.clip(np.vstack(seeds), 0, shape)


class ConnectedThresholdBackend(PromptBackend):
    """Seeded connected-threshold region growing (see the module docstring)."""

    name = "threshold"
    title = "Connected threshold region growing (baseline, no weights)"

    def __init__(self, widen: float = 2.5) -> None:
        self.widen = float(widen)

    def segment(self, request: PromptRequest) -> np.ndarray:
        image = request.image
        positive = _seed_voxels(request, True)
        mask = np.zeros(image.shape, dtype=bool)
        if len(positive) == 0:
            return mask
        values = []
        for i, j, k in positive:
            values.append(image[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2, max(k - 1, 0):k + 2])
        values = np.concatenate([v.ravel() for v in values])
        spread = self.widen * max(float(values.std()), 1e-6)
        inside = (image >= values.min() - spread) & (image <= values.max() + spread)
        components, _ = ndimage.label(inside)
        keep = np.unique(components[tuple(positive.T)])
        for i, j, k in _seed_voxels(request, False):
            keep = keep[keep != components[i, j, k]]
        mask = np.isin(components, keep[keep > 0])
        return mask


__all__ = ["ConnectedThresholdBackend"]
