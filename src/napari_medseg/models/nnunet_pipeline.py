"""nnU-Net v2's inference, step for step, in the project's own code.

This is what ``nnunetv2``'s ``nnUNetPredictor`` does between reading a case and writing
its segmentation (version 2.8, the reference of ``tests/models/test_nnunet.py``), on
:class:`~napari_medseg.volume.Volume` channels instead of files:

1. **the array nnU-Net reads**: the plans' ``image_reader_writer`` decides the axis order.
   ``SimpleITKIO`` and ``NibabelIO`` read a NIfTI file's voxel axes ``(I, J, K)`` as
   ``(K, J, I)`` with spacing reversed; the ``...WithReorient`` readers first turn the
   volume to the closest RAS orientation (nibabel's ``as_closest_canonical``, which equals
   SimpleITK's ``DICOMOrient(image, "RAS")``). A DICOM series is taken in the voxel order
   :func:`~napari_medseg.io.read_scan` gives it, which is the order of the NIfTI file
   ``medseg convert`` (or dcm2niix) writes;
2. **preprocessing** (``DefaultPreprocessor.run_case_npy``): float32, ``transpose_forward``,
   crop to the bounding box of the non-zero voxels of all channels (holes filled), the
   normalisation scheme of each channel (``CTNormalization`` with the plans' foreground
   intensity properties, ``ZScoreNormalization`` (inside the non-zero mask when
   ``use_mask_for_norm``), ``NoNormalization``, ``RescaleTo01Normalization``,
   ``RGBTo01Normalization``), then resampling to the configuration's spacing with
   ``resample_data_or_seg_to_shape`` (scikit-image ``resize``, order 3; along the
   low-resolution axis separately with order 0 when one spacing is more than 3 times
   another: nnU-Net's anisotropy rule);
3. **sliding window** (``predict_sliding_window_return_logits``): zero padding up to the
   patch size (centred), window starts evenly spread with a step of at most
   ``tile_step_size`` x patch (``compute_steps_for_sliding_window``), nnU-Net's gaussian
   importance map (``compute_gaussian``: a unit impulse smoothed with sigma = patch / 8,
   scaled to a maximum of 10, float16, zeros replaced by the smallest non-zero value),
   mirroring test-time augmentation over every combination of the checkpoint's
   ``inference_allowed_mirroring_axes`` (logits averaged), and the accumulators in float16
   exactly as nnU-Net keeps them (so ties fall the same way);
4. **folds**: each fold's logits are computed in full and the float16 logits are averaged
   (``predict_logits_from_preprocessed_data``: nnU-Net v2 averages logits over folds, not
   softmax probabilities);
5. **export** (``convert_predicted_logits_to_segmentation_with_correct_shape``): the
   float16 logits are resampled back to the cropped original shape (order 1; order 0 along
   an anisotropic axis), then argmax (softmax labels) or sigmoid > 0.5 painted in
   ``regions_class_order`` (region-based training), put back into the uncropped volume
   (background outside the crop) and transposed back.

Only numpy, scipy, scikit-image and torch are used; nnunetv2 itself is not imported.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_medseg.progress import raise_if_cancelled

#: nnU-Net's ``ANISO_THRESHOLD``: a spacing ratio above it resamples one axis apart.
ANISO_THRESHOLD = 3.0

#: Readers nnU-Net plans may name, and whether they reorient to RAS first.
READERS = {
    "SimpleITKIO": False,
    "NibabelIO": False,
    "SimpleITKIOWithReorient": True,
    "NibabelIOWithReorient": True,
}

#: Normalisation schemes of ``nnunetv2.preprocessing.normalization`` reproduced here.
NORMALIZATIONS = (
    "CTNormalization",
    "ZScoreNormalization",
    "NoNormalization",
    "RescaleTo01Normalization",
    "RGBTo01Normalization",
)

#: Resampling functions of nnU-Net plans reproduced here.
RESAMPLING_FUNCTIONS = ("resample_data_or_seg_to_shape",)


@dataclass(frozen=True)
class Resampling:
    """Arguments of nnU-Net's ``resample_data_or_seg_to_shape`` (``is_seg=False``).

    Attributes
    ----------
    order : int
        Spline order in the plane (or in 3D when no axis is anisotropic).
    order_z : int
        Order along the anisotropic axis when it is resampled apart.
    force_separate_z : bool or None
        None: decide by :data:`ANISO_THRESHOLD`; True/False: always/never apart.
    threshold : float
        The spacing ratio above which an axis is anisotropic.
    """

    order: int = 3
    order_z: int = 0
    force_separate_z: bool | None = None
    threshold: float = ANISO_THRESHOLD


@dataclass(frozen=True)
class NnUNetPlan:
    """One configuration of an nnU-Net plans file, as inference needs it.

    Axis order is nnU-Net's: after ``transpose_forward`` of the array it reads.

    Attributes
    ----------
    configuration : str
        E.g. ``"3d_fullres"`` or ``"2d"``.
    patch_size : tuple of int
        Sliding-window patch, 3 entries (3D) or 2 (2D: the last two axes, slice by slice
        along the first).
    spacing : tuple of float
        Target spacing in mm (2 entries for 2D: the first axis keeps its spacing).
    normalization : tuple of str
        Scheme of each input channel (one of :data:`NORMALIZATIONS`).
    use_mask_for_norm : tuple of bool
        Per channel: normalise only inside the non-zero mask (``ZScoreNormalization``).
    intensity : tuple of dict
        Per channel: the plans' ``foreground_intensity_properties_per_channel``.
    transpose_forward, transpose_backward : tuple of int
        Axis permutation into and out of the plans' order.
    data_resampling, probability_resampling : Resampling
        How the image goes to the target spacing and the logits come back.
    reader : str
        The plans' ``image_reader_writer`` (one of :data:`READERS`).
    n_heads : int
        Network output channels.
    regions_class_order : tuple of int or None
        Region-based models: the label painted for each output channel, in order.
    n_foreground : int
        Foreground labels (the output is uint8 below 255 of them, else uint16).
    """

    configuration: str
    patch_size: tuple[int, ...]
    spacing: tuple[float, ...]
    normalization: tuple[str, ...]
    use_mask_for_norm: tuple[bool, ...]
    intensity: tuple[dict[str, float], ...]
    transpose_forward: tuple[int, int, int]
    transpose_backward: tuple[int, int, int]
    data_resampling: Resampling = field(default_factory=Resampling)
    probability_resampling: Resampling = field(default_factory=lambda: Resampling(order=1))
    reader: str = "SimpleITKIO"
    n_heads: int = 2
    regions_class_order: tuple[int, ...] | None = None
    n_foreground: int = 1

    @property
    def is_2d(self) -> bool:
        """Whether the network is 2D (slice by slice along the first axis)."""
        return len(self.patch_size) == 2

    @property
    def in_channels(self) -> int:
        """Input channels."""
        return len(self.normalization)


@dataclass
class Properties:
    """What preprocessing remembers to undo itself (nnU-Net's ``data_properties``).

    Attributes
    ----------
    spacing : list of float
        Spacing of the array nnU-Net read (before ``transpose_forward``), mm.
    shape_before_cropping : tuple of int
        Transposed shape before cropping.
    bbox : list of [int, int]
        Half-open crop per transposed axis.
    shape_after_cropping : tuple of int
        Transposed, cropped shape (the shape the logits return to).
    reorient : numpy.ndarray or None
        nibabel orientation applied to the volume before reading (reorienting readers).
    """

    spacing: list[float]
    shape_before_cropping: tuple[int, ...]
    bbox: list[list[int]]
    shape_after_cropping: tuple[int, ...]
    reorient: np.ndarray | None = None


# --------------------------------------------------------------------------- reading
def read_volumes(volumes: Sequence[Any], plan: NnUNetPlan) -> tuple[np.ndarray, Properties]:
    """The ``(C, X, Y, Z)`` array and spacing nnU-Net's reader would give for these volumes.

    Raises
    ------
    ValueError
        Not one volume per input channel, or the volumes lie on different grids.
    """
    from napari_medseg.resample import same_grid

    if len(volumes) != plan.in_channels:
        raise ValueError(
            f"the model takes {plan.in_channels} input channel(s), {len(volumes)} given"
        )
    first = volumes[0]
    for volume in volumes[1:]:
        if not same_grid(first.shape, first.affine, volume.shape, volume.affine):
            raise ValueError("the input channels are not on one voxel grid")
    spacing = np.asarray(first.spacing, dtype=float)
    ornt = None
    arrays = [np.asarray(volume.array) for volume in volumes]
    if READERS[plan.reader]:
        from nibabel.orientations import apply_orientation, io_orientation

        ornt = io_orientation(first.affine)
        arrays = [apply_orientation(array, ornt) for array in arrays]
        moved = np.empty(3)
        moved[ornt[:, 0].astype(int)] = spacing
        spacing = moved
    data = np.stack([array.transpose(2, 1, 0) for array in arrays])
    properties = Properties(
        spacing=[abs(float(s)) for s in spacing[::-1]],
        shape_before_cropping=(),
        bbox=[],
        shape_after_cropping=(),
        reorient=ornt,
    )
    return data, properties


def labels_to_volume(labels: np.ndarray, properties: Properties) -> np.ndarray:
    """Undo :func:`read_volumes` on a label map (or ``(K, ...)`` maps): the volume's axes."""
    out = np.moveaxis(labels, (-3, -2, -1), (-1, -2, -3))
    if properties.reorient is not None:
        from nibabel.orientations import apply_orientation, ornt_transform

        ras = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
        back = ornt_transform(ras, properties.reorient)
        if out.ndim == 4:
            out = np.stack([apply_orientation(channel, back) for channel in out])
        else:
            out = apply_orientation(out, back)
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------- preprocessing
def nonzero_bbox(mask: np.ndarray) -> list[list[int]]:
    """Half-open bounding box of a mask (acvl_utils ``get_bbox_from_mask``; whole array when
    the mask is empty)."""
    bbox = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(np.any(mask, axis=others))
        bbox.append([int(hit[0]), int(hit[-1]) + 1] if hit.size else [0, mask.shape[axis]])
    return bbox


def crop_to_nonzero(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """nnU-Net's ``crop_to_nonzero``: crop, the mask as seg (0 inside, -1 outside), bbox."""
    from scipy.ndimage import binary_fill_holes

    mask = data[0] != 0
    for channel in range(1, data.shape[0]):
        mask |= data[channel] != 0
    mask = binary_fill_holes(mask)
    bbox = nonzero_bbox(mask)
    slicer = tuple(slice(*b) for b in bbox)
    seg = np.where(mask[slicer][None], np.int8(0), np.int8(-1))
    return data[(slice(None), *slicer)], seg, bbox


def normalize(data: np.ndarray, seg: np.ndarray, plan: NnUNetPlan) -> np.ndarray:
    """Each channel's normalisation scheme, in place (nnU-Net's ``_normalize``)."""
    for channel in range(data.shape[0]):
        image = data[channel]
        scheme = plan.normalization[channel]
        props = plan.intensity[channel] if channel < len(plan.intensity) else {}
        eps = 1e-8
        if scheme == "CTNormalization":
            np.clip(image, props["percentile_00_5"], props["percentile_99_5"], out=image)
            image -= props["mean"]
            image /= max(props["std"], eps)
        elif scheme == "ZScoreNormalization":
            if plan.use_mask_for_norm[channel]:
                mask = seg[0] >= 0
                mean = image[mask].mean()
                std = image[mask].std()
                image[mask] = (image[mask] - mean) / (max(std, eps))
            else:
                mean = image.mean()
                std = image.std()
                image -= mean
                image /= max(std, eps)
        elif scheme == "RescaleTo01Normalization":
            image -= image.min()
            image /= np.clip(image.max(), a_min=eps, a_max=None)
        elif scheme == "RGBTo01Normalization":
            image /= 255.0
        data[channel] = image
    return data


def compute_new_shape(old_shape, old_spacing, new_spacing) -> np.ndarray:
    """nnU-Net's ``compute_new_shape``: ``round(old_spacing / new_spacing * old_shape)``."""
    return np.array(
        [int(round(i / j * k)) for i, j, k in zip(old_spacing, new_spacing, old_shape, strict=True)]
    )


def _lowres_axis(spacing) -> np.ndarray:
    return np.where(max(spacing) / np.array(spacing) == 1)[0]


def separate_z(force: bool | None, current, new, threshold: float) -> tuple[bool, int | None]:
    """nnU-Net's ``determine_do_sep_z_and_axis``: resample one axis apart, and which."""

    def anisotropic(spacing) -> bool:
        return (np.max(spacing) / np.min(spacing)) > threshold

    if force is not None:
        do_separate = bool(force)
        axis = _lowres_axis(current) if force else None
    elif anisotropic(current):
        do_separate, axis = True, _lowres_axis(current)
    elif anisotropic(new):
        do_separate, axis = True, _lowres_axis(new)
    else:
        do_separate, axis = False, None
    if axis is not None:
        if len(axis) in (2, 3):  # no single low-resolution axis
            return False, None
        return do_separate, int(axis[0])
    return do_separate, None


def resample(
    data: np.ndarray, new_shape, current_spacing, new_spacing, how: Resampling
) -> np.ndarray:
    """nnU-Net's ``resample_data_or_seg_to_shape`` for images and logits (``is_seg=False``).

    ``data`` is ``(C, X, Y, Z)``; the result keeps its dtype (float16 logits stay float16).
    """
    from scipy.ndimage import map_coordinates
    from skimage.transform import resize

    do_separate, axis = separate_z(
        how.force_separate_z, current_spacing, new_spacing, how.threshold
    )
    shape = np.array(data[0].shape)
    new_shape = np.array(new_shape)
    if not np.any(shape != new_shape):
        return data
    kwargs = {"mode": "edge", "anti_aliasing": False}
    out = np.zeros((data.shape[0], *new_shape), dtype=data.dtype)
    # nnU-Net converts all channels to float64 at once; one at a time gives the same
    # values with one channel's worth of float64 (K logits of a large CT add up)
    if not do_separate:
        for c in range(data.shape[0]):
            out[c] = resize(data[c].astype(float), new_shape, how.order, **kwargs)
        return out
    plane = new_shape[[a for a in range(3) if a != axis]]
    coords = None
    if shape[axis] != new_shape[axis]:
        # along the anisotropic axis: nnU-Net's map_coordinates (align_corners=False)
        size = new_shape.copy()
        size[axis] = shape[axis]
        rows, cols, dim = new_shape
        orig_rows, orig_cols, orig_dim = size
        map_rows, map_cols, map_dims = np.mgrid[:rows, :cols, :dim]
        map_rows = float(orig_rows) / rows * (map_rows + 0.5) - 0.5
        map_cols = float(orig_cols) / cols * (map_cols + 0.5) - 0.5
        map_dims = float(orig_dim) / dim * (map_dims + 0.5) - 0.5
        coords = np.array([map_rows, map_cols, map_dims])
        del map_rows, map_cols, map_dims
    for c in range(data.shape[0]):
        channel = data[c].astype(float)
        size = new_shape.copy()
        size[axis] = shape[axis]
        here = np.zeros(size)
        for index in range(shape[axis]):
            at = [slice(None)] * 3
            at[axis] = index
            here[tuple(at)] = resize(channel[tuple(at)], plane, how.order, **kwargs)
        if coords is not None:
            out[c] = map_coordinates(here, coords, order=how.order_z, mode="nearest")
        else:
            out[c] = here
    return out


def preprocess(data: np.ndarray, properties: Properties, plan: NnUNetPlan) -> np.ndarray:
    """``DefaultPreprocessor.run_case_npy`` without a segmentation.

    Parameters
    ----------
    data : numpy.ndarray
        ``(C, X, Y, Z)`` as :func:`read_volumes` gives it (not changed).
    properties : Properties
        From :func:`read_volumes`; its crop fields are filled in.

    Returns
    -------
    numpy.ndarray
        float32 ``(C, *model grid)``: transposed, cropped, normalised, resampled.
    """
    data = data.astype(np.float32)
    data = data.transpose([0, *[i + 1 for i in plan.transpose_forward]])
    original_spacing = [properties.spacing[i] for i in plan.transpose_forward]
    properties.shape_before_cropping = tuple(int(n) for n in data.shape[1:])
    data, seg, bbox = crop_to_nonzero(data)
    properties.bbox = bbox
    properties.shape_after_cropping = tuple(int(n) for n in data.shape[1:])
    target_spacing = list(plan.spacing)
    if len(target_spacing) < len(data.shape[1:]):
        target_spacing = [original_spacing[0], *target_spacing]
    new_shape = compute_new_shape(data.shape[1:], original_spacing, target_spacing)
    data = normalize(data, seg, plan)
    return resample(data, new_shape, original_spacing, target_spacing, plan.data_resampling)


def model_grid_affine(
    volume_affine: np.ndarray,
    volume_shape: tuple[int, int, int],
    properties: Properties,
    plan: NnUNetPlan,
    model_shape: tuple[int, ...],
) -> np.ndarray:
    """4x4 model-grid voxel -> RAS mm matrix of the preprocessed array (provenance only).

    Resampling maps voxel centres with ``align_corners=False``: model index ``n`` lies at
    ``(n + 0.5) * cropped / model - 0.5`` in the cropped, transposed array.
    """
    # the reader's (X, Y, Z) index -> volume index (I, J, K)
    read_to_volume = np.eye(4)[[2, 1, 0, 3]].T
    if properties.reorient is not None:
        from nibabel.orientations import inv_ornt_aff

        read_to_volume = inv_ornt_aff(properties.reorient, volume_shape) @ read_to_volume
    # transposed index -> read index
    transposed_to_read = np.zeros((4, 4))
    transposed_to_read[3, 3] = 1.0
    for position, axis in enumerate(plan.transpose_forward):
        transposed_to_read[axis, position] = 1.0
    scale = np.eye(4)
    for axis in range(3):
        ratio = properties.shape_after_cropping[axis] / model_shape[axis]
        scale[axis, axis] = ratio
        scale[axis, 3] = 0.5 * ratio - 0.5 + properties.bbox[axis][0]
    return volume_affine @ read_to_volume @ transposed_to_read @ scale


# -------------------------------------------------------------------- sliding window
def compute_gaussian(patch_size: Sequence[int], device=None):
    """nnU-Net's ``compute_gaussian(patch, 1/8, value_scaling_factor=10)``: float16 weights."""
    import torch
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros(patch_size)
    impulse[tuple(i // 2 for i in patch_size)] = 1
    weights = gaussian_filter(impulse, [i / 8 for i in patch_size], 0, mode="constant", cval=0)
    weights /= np.max(weights) / 10
    weights = torch.from_numpy(weights).to(device=device, dtype=torch.float16)
    zero = weights == 0
    weights[zero] = torch.min(weights[~zero])
    return weights


def window_steps(image_size: Sequence[int], patch: Sequence[int], step: float) -> list[list[int]]:
    """nnU-Net's ``compute_steps_for_sliding_window``: evenly spread starts per axis."""
    steps = []
    for size, tile in zip(image_size, patch, strict=True):
        count = int(np.ceil((size - tile) / (tile * step))) + 1
        actual = (size - tile) / (count - 1) if count > 1 else 99999999999
        steps.append([int(np.round(actual * i)) for i in range(count)])
    return steps


def pad_to_patch(data, patch: Sequence[int]):
    """nnU-Net's ``pad_nd_image(data, patch, "constant", value 0)``: the padded tensor and the
    slicer that removes the padding."""
    import torch.nn.functional as F

    old = list(data.shape)
    new = old[: len(old) - len(patch)] + list(patch)
    new = [max(n, o) for n, o in zip(new, old, strict=True)]
    below = [(n - o) // 2 for n, o in zip(new, old, strict=True)]
    above = [(n - o) // 2 + (n - o) % 2 for n, o in zip(new, old, strict=True)]
    if any(below) or any(above):
        pad = [p for b, a in zip(below[::-1], above[::-1], strict=True) for p in (b, a)]
        data = F.pad(data, pad, "constant", 0)
    slicer = tuple(slice(b, n - a) for b, a, n in zip(below, above, new, strict=True))
    return data, slicer


def window_slicers(shape: Sequence[int], plan: NnUNetPlan, step: float) -> list[tuple]:
    """Windows in nnU-Net's order (``_internal_get_sliding_window_slicers``)."""
    patch = plan.patch_size
    if plan.is_2d:
        sx, sy = window_steps(shape[1:], patch, step)
        return [
            (slice(None), d, slice(x, x + patch[0]), slice(y, y + patch[1]))
            for d in range(shape[0])
            for x in sx
            for y in sy
        ]
    sx, sy, sz = window_steps(shape, patch, step)
    return [
        (slice(None), slice(x, x + patch[0]), slice(y, y + patch[1]), slice(z, z + patch[2]))
        for x in sx
        for y in sy
        for z in sz
    ]


def mirror_combinations(mirror_axes: Sequence[int] | None, spatial_dims: int) -> list[tuple]:
    """The flips of a window, identity first (``_internal_maybe_mirror_and_predict``)."""
    if not mirror_axes:
        return [()]
    if max(mirror_axes) > spatial_dims - 1:
        raise ValueError(f"mirror axes {tuple(mirror_axes)} do not fit a {spatial_dims}D network")
    axes = [m + 2 for m in mirror_axes]
    return [()] + [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]


@dataclass
class WindowRun:
    """How one fold's sliding window runs.

    Attributes
    ----------
    device : torch.device
        Where the network runs (and, on CUDA, where the accumulators live).
    amp : bool
        float16 autocast on CUDA (nnU-Net always uses it there).
    step : float
        nnU-Net's ``tile_step_size`` (1 - overlap).
    flips : list of tuple
        From :func:`mirror_combinations`.
    batch_size : int
        Windows per network call (nnU-Net: 1).
    tick : callable
        Called after every network call.
    planned : callable
        Called with the number of network calls once the model grid is known.
    cancel : threading.Event or None
        Checked before every network call.
    """

    device: Any
    amp: bool
    step: float
    flips: list[tuple]
    batch_size: int = 1
    tick: Callable[[], None] = lambda: None
    cancel: Any = None
    planned: Callable[[int], None] = lambda n_calls: None


def _network_output(network, x):
    y = network(x)
    if isinstance(y, list | tuple):  # deep supervision heads: the first is full resolution
        y = y[0]
    return y


def _mirror_predict(network, x, run: WindowRun):
    """Logits of a batch of windows averaged over the flips (nnU-Net's order of sums)."""
    import torch

    prediction = None
    for flip in run.flips:
        raise_if_cancelled(run.cancel, "segmentation cancelled")
        if flip:
            prediction += torch.flip(_network_output(network, torch.flip(x, flip)), flip)
        else:
            prediction = _network_output(network, x)
        run.tick()
    if len(run.flips) > 1:
        prediction /= len(run.flips)
    return prediction


def sliding_window_logits(network, data, plan: NnUNetPlan, run: WindowRun, results_device=None):
    """One fold's logits on the model grid, float16 ``(K, *model grid)`` (nnU-Net's
    ``predict_sliding_window_return_logits``)."""
    import torch

    results_device = run.device if results_device is None else results_device
    autocast = (
        torch.autocast(run.device.type, enabled=True)
        if run.device.type == "cuda" and run.amp
        else nullcontext()
    )
    with autocast:
        padded, revert = pad_to_patch(data, plan.patch_size)
        slicers = window_slicers(padded.shape[1:], plan, run.step)
        padded = padded.to(results_device)
        logits = torch.zeros(
            (plan.n_heads, *padded.shape[1:]), dtype=torch.half, device=results_device
        )
        counts = torch.zeros(padded.shape[1:], dtype=torch.half, device=results_device)
        gaussian = compute_gaussian(tuple(plan.patch_size), device=results_device)
        for start in range(0, len(slicers), run.batch_size):
            batch = slicers[start : start + run.batch_size]
            if len(batch) == 1:
                x = torch.clone(padded[batch[0]][None], memory_format=torch.contiguous_format)
            else:
                x = torch.stack([padded[s] for s in batch]).contiguous()
            x = x.to(run.device)
            predictions = _mirror_predict(network, x, run)
            for index, s in enumerate(batch):
                prediction = predictions[index].to(results_device)
                prediction *= gaussian
                logits[s] += prediction
                counts[s[1:]] += gaussian
            del x, predictions
        torch.div(logits, counts, out=logits)
        if torch.any(torch.isinf(logits)):
            raise ValueError("the network's logits overflow float16 (inf after blending)")
        return logits[(slice(None), *revert[1:])]


def fold_logits(network, states: Sequence[dict], data, plan: NnUNetPlan, run: WindowRun):
    """Logits averaged over the folds, float16 on the CPU (nnU-Net's
    ``predict_logits_from_preprocessed_data``).

    ``network`` gets each fold's ``state_dict`` in turn; on CUDA the accumulators move to
    the CPU when the device runs out of memory (as nnU-Net does).
    """
    import torch

    prediction = None
    for state in states:
        network.load_state_dict(state)
        network.eval()
        try:
            logits = sliding_window_logits(network, data, plan, run).to("cpu")
        except torch.cuda.OutOfMemoryError:
            if run.device.type != "cuda":
                raise
            torch.cuda.empty_cache()
            logits = sliding_window_logits(network, data, plan, run, torch.device("cpu"))
        prediction = logits if prediction is None else prediction.add_(logits)
        del logits
    if len(states) > 1:
        prediction /= len(states)
    return prediction


# -------------------------------------------------------------------------- export
def export(
    logits, properties: Properties, plan: NnUNetPlan, return_probabilities: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (and probabilities) on the array nnU-Net read
    (``convert_predicted_logits_to_segmentation_with_correct_shape``).

    Returns
    -------
    labels : numpy.ndarray
        uint8 (uint16 from 255 foreground labels), shape of the read array ``(X, Y, Z)``.
    probabilities : numpy.ndarray or None
        float32 ``(K, X, Y, Z)``: softmax (or per-region sigmoid) of the resampled logits,
        background 1 outside the crop.
    """
    import torch

    spacing_transposed = [properties.spacing[i] for i in plan.transpose_forward]
    current_spacing = (
        list(plan.spacing)
        if len(plan.spacing) == len(properties.shape_after_cropping)
        else [spacing_transposed[0], *plan.spacing]
    )
    logits = resample(
        logits.numpy() if isinstance(logits, torch.Tensor) else logits,
        properties.shape_after_cropping,
        current_spacing,
        spacing_transposed,
        plan.probability_resampling,
    )
    regions = plan.regions_class_order is not None
    probabilities = None
    if return_probabilities or regions:
        with torch.no_grad():
            tensor = torch.from_numpy(logits).float()
            probabilities = (torch.sigmoid(tensor) if regions else torch.softmax(tensor, 0)).numpy()
    scores = probabilities if probabilities is not None else logits
    if regions:
        segmentation = np.zeros(scores.shape[1:], dtype=np.uint16)
        for channel, value in enumerate(plan.regions_class_order):
            segmentation[scores[channel] > 0.5] = value
    else:
        segmentation = scores.argmax(0)
    del logits
    dtype = np.uint8 if plan.n_foreground < 255 else np.uint16
    labels = np.zeros(properties.shape_before_cropping, dtype=dtype)
    slicer = tuple(slice(*b) for b in properties.bbox)
    labels[slicer] = segmentation
    labels = labels.transpose(plan.transpose_backward)
    if return_probabilities:
        full = np.zeros(
            (probabilities.shape[0], *properties.shape_before_cropping), dtype=np.float32
        )
        if not regions:
            full[0] = 1
        full[(slice(None), *slicer)] = probabilities
        probabilities = full.transpose([0, *[i + 1 for i in plan.transpose_backward]])
    else:
        probabilities = None
    return labels, probabilities


# --------------------------------------------------------------------------- whole
@dataclass
class PipelineOutput:
    """Labels on the volumes' grid and what the run did."""

    labels: np.ndarray
    probabilities: np.ndarray | None
    model_shape: tuple[int, ...]
    n_windows: int
    n_network_calls: int
    timings_s: dict[str, float]


def run_pipeline(
    network,
    states: Sequence[dict],
    volumes: Sequence[Any],
    plan: NnUNetPlan,
    run: WindowRun,
    return_probabilities: bool = False,
) -> PipelineOutput:
    """The whole of nnU-Net's inference on one case (see the module docstring).

    Parameters
    ----------
    network : torch.nn.Module
        On ``run.device``, in eval mode; gets each fold's weights in turn.
    states : sequence of dict
        One ``state_dict`` per fold (CPU tensors).
    volumes : sequence of Volume
        One per input channel, on one grid; labels come back on it.

    Raises
    ------
    ValueError
        The volumes do not fit the model (channels, grids).
    Cancelled
        ``run.cancel`` was set.
    """
    import torch

    started = time.perf_counter()
    data, properties = read_volumes(volumes, plan)
    prepared = torch.from_numpy(preprocess(data, properties, plan))
    del data
    preprocessed = time.perf_counter()
    padded_shape = [
        max(n, p)
        for n, p in zip(prepared.shape[-len(plan.patch_size) :], plan.patch_size, strict=True)
    ]
    full_shape = [*prepared.shape[1 : prepared.ndim - len(plan.patch_size)], *padded_shape]
    n_windows = len(window_slicers(full_shape, plan, run.step))
    n_calls = -(-n_windows // run.batch_size) * len(run.flips) * len(states)
    run.planned(n_calls)
    with torch.inference_mode():
        logits = fold_logits(network, states, prepared, plan, run)
    networked = time.perf_counter()
    labels, probabilities = export(logits, properties, plan, return_probabilities)
    del logits
    labels = labels_to_volume(labels, properties)
    if probabilities is not None:
        probabilities = labels_to_volume(probabilities, properties).astype(np.float32, copy=False)
    finished = time.perf_counter()
    return PipelineOutput(
        labels=labels,
        probabilities=probabilities,
        model_shape=tuple(int(n) for n in prepared.shape[1:]),
        n_windows=n_windows,
        n_network_calls=n_calls,
        timings_s={
            "preprocess": preprocessed - started,
            "network": networked - preprocessed,
            "postprocess": finished - networked,
            "total": finished - started,
        },
    )
