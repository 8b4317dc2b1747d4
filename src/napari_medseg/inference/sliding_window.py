"""Sliding-window inference that finalises the output block by block.

The windows are placed exactly as MONAI's ``sliding_window_inference`` places them
(``_get_scan_interval`` + ``dense_patch_slices``: a step of ``int(roi * (1 - overlap))``
voxels, at least 1, the last window pushed back to end on the image's edge), blended
with the same importance map (``compute_importance_map``: a separable gaussian with
``sigma = sigma_scale * roi``, clamped below at ``max(min, 1e-3)``, or ones), and
volumes smaller than the window are zero-padded like MONAI (``diff // 2`` before, the
rest after) and cropped again. Each output voxel is therefore
``sum(w * p) / sum(w)`` over the windows covering it, as in MONAI, up to the order
of the floating-point sums.

What differs is memory. MONAI keeps the whole ``(K, X, Y, Z)`` float accumulator
(plus a count map) until the last window is done. Here the volume is cut into *blocks*
at every window edge along every axis (so a window covers whole blocks), the windows
run in order along the last axis (the *band axis*), then the middle axis, then the
first, and every block is handed to the caller (:func:`stitch_blocks` is a generator)
and freed as soon as its last covering window is done. The caller turns a block into
labels (argmax) right away, so the float accumulator only holds the blocks under
windows still to come: roughly the overlap slab behind the current row of windows
(``K * X * Y * overlap * roi_z``) plus the current row (``K * X * roi_y * roi_z``),
instead of ``K * X * Y * Z``.

Only torch is needed (MONAI is not imported), so this module loads fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

#: Floor of the importance map, as in MONAI's ``compute_importance_map``.
MIN_WEIGHT = 1e-3


def scan_interval(
    image_size: Sequence[int], roi_size: Sequence[int], overlap: Sequence[float]
) -> tuple[int, ...]:
    """Window step per axis (MONAI's ``_get_scan_interval``).

    ``roi`` when the window spans the axis, else ``int(roi * (1 - overlap))`` (at
    least 1), in voxels.
    """
    steps = []
    for size, roi, ovl in zip(image_size, roi_size, overlap, strict=True):
        if roi == size:
            steps.append(int(roi))
        else:
            steps.append(max(int(roi * (1 - ovl)), 1))
    return tuple(steps)


def axis_starts(size: int, roi: int, step: int) -> list[int]:
    """Window starts along one axis (MONAI's ``dense_patch_slices`` for one axis).

    Windows start every ``step`` voxels until one reaches the end; the last start is
    pulled back to ``size - roi`` so no window leaves the image.
    """
    roi = min(roi, size)
    if step == 0:
        return [0]
    count = 1
    for index in range(int(math.ceil(size / step))):
        if index * step + roi >= size:
            count = index + 1
            break
    return [index * step - max(index * step + roi - size, 0) for index in range(count)]


def importance_map(
    roi_size: Sequence[int], mode: str = "gaussian", sigma_scale: float | Sequence[float] = 0.125
):
    """Blending weights of one window (MONAI's ``compute_importance_map``), on the CPU.

    Parameters
    ----------
    roi_size : sequence of int
        Window size per spatial axis, voxels.
    mode : {"gaussian", "constant"}
        Gaussian: the product of 1D gaussians with ``sigma = sigma_scale * roi``,
        centred on the window; constant: ones.
    sigma_scale : float or sequence of float
        Gaussian sigma as a fraction of the window size, per axis or for all.

    Returns
    -------
    torch.Tensor
        float32, shape ``roi_size``, every value ``>= max(min, 1e-3)``.
    """
    import torch

    roi_size = tuple(int(r) for r in roi_size)
    if mode == "constant":
        weights = torch.ones(roi_size, dtype=torch.float)
    elif mode == "gaussian":
        if isinstance(sigma_scale, int | float):
            sigma_scale = (float(sigma_scale),) * len(roi_size)
        weights = None
        for axis, (size, scale) in enumerate(zip(roi_size, sigma_scale, strict=True)):
            sigma = size * scale
            x = torch.arange(start=-(size - 1) / 2.0, end=(size - 1) / 2.0 + 1, dtype=torch.float)
            x = torch.exp(x**2 / (-2 * sigma**2))
            weights = x if axis == 0 else weights.unsqueeze(-1) * x[(None,) * axis]
    else:
        raise ValueError(f"blend mode must be 'gaussian' or 'constant', got {mode!r}")
    floor = max(float(torch.min(weights).item()), MIN_WEIGHT)
    return torch.clamp_(weights.to(torch.float), min=floor)


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of a sliding-window pass go, in processing order.

    Attributes
    ----------
    shape : tuple of int
        Spatial shape ``(X, Y, Z)`` of the image (Z is the band axis).
    roi : tuple of int
        Window size, voxels.
    pad_before : tuple of int
        Zero padding added before each axis when the image is smaller than the window.
    padded_shape : tuple of int
        ``shape`` plus padding (each axis at least the window size).
    starts : tuple of tuple of int
        Window corners in padded coordinates, in processing order: by start along
        the last (band) axis, then the middle axis, then the first.
    batch_size : int
        Windows per network call.
    """

    shape: tuple[int, int, int]
    roi: tuple[int, int, int]
    pad_before: tuple[int, int, int]
    padded_shape: tuple[int, int, int]
    starts: tuple[tuple[int, int, int], ...]
    batch_size: int

    @property
    def n_windows(self) -> int:
        """Number of windows."""
        return len(self.starts)

    @property
    def n_batches(self) -> int:
        """Number of network calls (batches of ``batch_size`` windows)."""
        return -(-len(self.starts) // self.batch_size)

    def batches(self) -> list[range]:
        """Indices into :attr:`starts` of each batch, in order."""
        n = len(self.starts)
        return [range(i, min(i + self.batch_size, n)) for i in range(0, n, self.batch_size)]


def plan_windows(
    shape: Sequence[int],
    roi_size: Sequence[int],
    overlap: float | Sequence[float],
    batch_size: int,
) -> WindowPlan:
    """Place the windows of a 3D sliding-window pass like MONAI does.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape ``(X, Y, Z)``; the last axis is the band axis.
    roi_size : sequence of int
        Window size; an entry of 1 with overlap 0 slides plane by plane (2D models).
    overlap : float or sequence of float
        Fraction of the window shared by neighbours, per axis or for all, in [0, 1).
    batch_size : int
        Windows per network call, >= 1.
    """
    shape = tuple(int(n) for n in shape)
    roi = tuple(int(r) for r in roi_size)
    if len(shape) != 3 or len(roi) != 3:
        raise ValueError(f"plan_windows needs 3 axes, got shape {shape} and roi {roi}")
    if isinstance(overlap, int | float):
        overlap = (float(overlap),) * 3
    if any(not 0.0 <= o < 1.0 for o in overlap):
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if min(roi) < 1 or min(shape) < 1:
        raise ValueError(f"empty image {shape} or window {roi}")
    padded = tuple(max(n, r) for n, r in zip(shape, roi, strict=True))
    pad_before = tuple((p - n) // 2 for p, n in zip(padded, shape, strict=True))
    steps = scan_interval(padded, roi, overlap)
    per_axis = [axis_starts(n, r, s) for n, r, s in zip(padded, roi, steps, strict=True)]
    # along the last axis, then the middle one, then the first: blocks finish early
    grid = [(a, b, c) for c in per_axis[2] for b in per_axis[1] for a in per_axis[0]]
    return WindowPlan(shape, roi, pad_before, padded, tuple(grid), int(batch_size))


def pad_image(image, plan: WindowPlan, padding_mode: str = "constant", cval: float = 0.0):
    """Pad ``(C, X, Y, Z)`` to ``plan.padded_shape`` like MONAI (``diff // 2`` before).

    ``padding_mode`` is a ``torch.nn.functional.pad`` mode (``"constant"``,
    ``"replicate"``, ``"reflect"``, ``"circular"``); the image is returned as is when
    it needs no padding.
    """
    import torch.nn.functional as F

    if plan.padded_shape == plan.shape:
        return image
    pad: list[int] = []
    for axis in (2, 1, 0):  # F.pad lists the last axis first
        before = plan.pad_before[axis]
        pad += [before, plan.padded_shape[axis] - plan.shape[axis] - before]
    if padding_mode == "constant":
        return F.pad(image, pad, mode="constant", value=cval)
    return F.pad(image[None], pad, mode=padding_mode)[0]


def gather_windows(image, plan: WindowPlan, indices: Sequence[int]):
    """Cut windows out of the padded image.

    Parameters
    ----------
    image : torch.Tensor
        Shape ``(C, *plan.padded_shape)`` (see :func:`pad_image`), any device.
    plan : WindowPlan
        Window placement.
    indices : sequence of int
        Which windows of ``plan.starts``.

    Returns
    -------
    torch.Tensor
        Shape ``(len(indices), C, *plan.roi)``, on ``image``'s device.
    """
    import torch

    rx, ry, rz = plan.roi
    return torch.stack(
        [
            image[:, x : x + rx, y : y + ry, z : z + rz]
            for x, y, z in (plan.starts[index] for index in indices)
        ]
    )


def _axis_segments(size: int, roi: int, starts: Sequence[int]) -> list[int]:
    """Bounds of the segments an axis splits into at every window edge."""
    return sorted({0, size} | set(starts) | {s + roi for s in starts})


@dataclass(frozen=True)
class _Blocks:
    """The volume cut at every window edge, and when each block is complete."""

    bounds: tuple[list[int], list[int], list[int]]  # per axis, padded coordinates
    covers: list[tuple[range, range, range]]  # per window: block indices per axis
    finished_after: dict[int, list[tuple[int, int, int]]]  # batch -> blocks done


def _blocks(plan: WindowPlan) -> _Blocks:
    """Split the padded volume into blocks; find the batch after which each is complete.

    Every block boundary is a window edge, so a window covers each block it touches
    completely. A block is complete after the last batch holding a window over it.
    """
    import numpy as np

    bounds = tuple(
        _axis_segments(plan.padded_shape[a], plan.roi[a], [s[a] for s in plan.starts])
        for a in range(3)
    )
    index = [{b: i for i, b in enumerate(axis)} for axis in bounds]
    last = np.full([len(axis) - 1 for axis in bounds], -1, dtype=np.int64)
    covers = []
    for n, start in enumerate(plan.starts):
        ranges = tuple(
            range(index[a][start[a]], index[a][start[a] + plan.roi[a]]) for a in range(3)
        )
        covers.append(ranges)
        # windows come in batch order, so the last writer is the last batch
        last[tuple(slice(r.start, r.stop) for r in ranges)] = n // plan.batch_size
    if last.min() < 0:  # pragma: no cover - MONAI's placement covers every voxel
        raise AssertionError("a block is covered by no window")
    finished: dict[int, list[tuple[int, int, int]]] = {}
    for block in np.argwhere(last >= 0):
        block = tuple(int(i) for i in block)
        finished.setdefault(int(last[block]), []).append(block)
    return _Blocks(bounds, covers, finished)


def stitch_blocks(
    image,
    plan: WindowPlan,
    predict: Callable,
    weights,
    stitch_device=None,
    padding_mode: str = "constant",
    cval: float = 0.0,
) -> Iterator[tuple[tuple[slice, slice, slice], object]]:
    """Run the windows of ``plan`` through ``predict`` and yield finished blocks.

    Parameters
    ----------
    image : torch.Tensor
        float32, shape ``(C, X, Y, Z)`` (unpadded); windows are cut from it on its device.
    plan : WindowPlan
        From :func:`plan_windows` for ``image``'s spatial shape.
    predict : callable
        ``predict(windows)`` with windows ``(B, C, *roi)`` returns ``(B, K, *roi)``
        (logits or probabilities; blended as they are).
    weights : torch.Tensor
        Importance map, shape ``roi`` (see :func:`importance_map`).
    stitch_device : torch.device, optional
        Where the accumulator lives (default: ``image``'s device).
    padding_mode, cval
        How an image smaller than the window is padded (see :func:`pad_image`).

    Yields
    ------
    region : tuple of slice
        Where the block lies in the image (padding removed), along ``(X, Y, Z)``.
    block : torch.Tensor
        float32 ``(K, *region shape)`` on ``stitch_device``: the blended output
        ``sum(w * p) / sum(w)``. A view into memory freed once the caller drops it.
        Blocks come after the batch that completes them and tile the image exactly once.
    """
    import torch

    stitch_device = torch.device(stitch_device) if stitch_device is not None else image.device
    weights = weights.to(device=stitch_device, dtype=torch.float32)
    blocks = _blocks(plan)
    image = pad_image(image, plan, padding_mode, cval)
    bx, by, bz = blocks.bounds
    accumulators: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}
    for batch_index, batch in enumerate(plan.batches()):
        windows = gather_windows(image, plan, batch)
        output = predict(windows)
        if tuple(output.shape[2:]) != plan.roi or output.shape[0] != len(batch):
            raise ValueError(
                f"the network returned shape {tuple(output.shape)} for windows of shape "
                f"{tuple(windows.shape)}; models whose output size differs from their input "
                "window are not supported"
            )
        del windows
        # weight in place (as MONAI does): no second copy of the batch output
        weighted = output.to(device=stitch_device, dtype=torch.float32).mul_(weights)
        del output
        for i, index in enumerate(batch):
            start = plan.starts[index]
            rx, ry, rz = blocks.covers[index]
            for block in ((a, b, c) for a in rx for b in ry for c in rz):
                lo = (bx[block[0]], by[block[1]], bz[block[2]])
                hi = (bx[block[0] + 1], by[block[1] + 1], bz[block[2] + 1])
                if block not in accumulators:
                    shape = tuple(h - low for low, h in zip(lo, hi, strict=True))
                    accumulators[block] = (
                        torch.zeros((weighted.shape[1], *shape), device=stitch_device),
                        torch.zeros(shape, device=stitch_device),
                    )
                total, count = accumulators[block]
                inside = tuple(
                    slice(low - s, h - s) for low, h, s in zip(lo, hi, start, strict=True)
                )
                total += weighted[(i, slice(None), *inside)]
                count += weights[inside]
        del weighted
        for block in blocks.finished_after.get(batch_index, ()):
            total, count = accumulators.pop(block)
            lo = (bx[block[0]], by[block[1]], bz[block[2]])
            hi = (bx[block[0] + 1], by[block[1] + 1], bz[block[2] + 1])
            region, crop = [], []
            for low, h, pad, n in zip(lo, hi, plan.pad_before, plan.shape, strict=True):
                a, b = max(low, pad), min(h, pad + n)
                region.append(slice(a - pad, b - pad))
                crop.append(slice(a - low, b - low))
            if any(r.start >= r.stop for r in region):  # only padding
                continue
            total.div_(count[None])  # in place: no copy of the block
            del count
            yield tuple(region), total[(slice(None), *crop)]
            del total


def sliding_window_inference(
    image,
    roi_size: Sequence[int],
    sw_batch_size: int,
    predict: Callable,
    overlap: float | Sequence[float] = 0.25,
    mode: str = "gaussian",
    sigma_scale: float = 0.125,
    stitch_device=None,
    padding_mode: str = "constant",
    cval: float = 0.0,
):
    """Whole-volume convenience form of :func:`stitch_blocks` (keeps the full output).

    Parameters
    ----------
    image : torch.Tensor
        float32, shape ``(C, X, Y, Z)``.
    roi_size, sw_batch_size, overlap, mode, sigma_scale, padding_mode, cval
        As MONAI's ``sliding_window_inference``.
    predict : callable
        ``(B, C, *roi) -> (B, K, *roi)``.

    Returns
    -------
    torch.Tensor
        float32 ``(K, X, Y, Z)``: what MONAI's ``sliding_window_inference`` returns for
        ``image[None]``, without the batch axis.
    """
    import torch

    plan = plan_windows(image.shape[1:], roi_size, overlap, sw_batch_size)
    weights = importance_map(plan.roi, mode, sigma_scale)
    out = None
    for region, block in stitch_blocks(
        image, plan, predict, weights, stitch_device, padding_mode, cval
    ):
        if out is None:
            out = torch.empty((block.shape[0], *plan.shape), device=block.device)
        out[(slice(None), *region)] = block
    return out
