"""Put a scan on a model's grid: reorient, resample to the model spacing, scale intensities.

This is the preprocessing of the project's own models and of TorchScript models with a
JSON spec, and the same function makes their training data, so training and inference
see identical inputs. The model grid is defined exactly by its affine:

* reorientation to ``spec.target_orientation`` only flips and transposes axes (no
  interpolation), like MONAI's ``Orientation``;
* resampling to ``spec.target_spacing`` keeps the scan's physical extent: along an axis
  of ``n`` voxels of size ``s`` the model grid has ``n' = max(1, round(n * s / s'))``
  voxels of size ``s'`` whose centres are spread over the same field of view
  (``x = (i' + 0.5) * n / n' - 0.5`` in source voxel units, so the field of view
  edges coincide). Linear interpolation is applied one axis at a time.

NaN and +/-inf voxels never reach the interpolation: in the float32 copy made here (the
scan itself is not changed) each channel's non-finite voxels are replaced by that
channel's lowest finite value (:func:`napari_medseg.io.nonfinite.replace_nonfinite`).
Left in, one NaN spreads through the interpolation, through ``normalize`` (its mean
and standard deviation become NaN) and through every convolution of the windows that
see it, and the labels of the whole scan silently come out empty. The lowest finite
value is chosen because it cannot create structure, whatever the intensity transform
and modality: in CT it is air (or the scanner's padding below it; a ``scale_range``
window clips both to its lower bound ``b_min``, the value air gets), in MR it is the
empty background, and, being a value the scan already holds, it stays inside the
range ``normalize`` and the model were trained on. A fixed value such as the CT
window's ``a_min`` would mean nothing for MR or z-scored inputs. The engine
(:meth:`napari_medseg.inference.Segmenter.predict`) counts them and says so in the
result's warnings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from nibabel import orientations as nio

from napari_medseg.io.nonfinite import replace_nonfinite
from napari_medseg.models.loaded import ModelInput
from napari_medseg.models.spec import IntensitySpec, ModelSpec
from napari_medseg.resample import same_grid
from napari_medseg.volume import Volume


def reorient(array: np.ndarray, affine: np.ndarray, axcodes: str) -> tuple[np.ndarray, np.ndarray]:
    """Flip/transpose a volume so its axes point along ``axcodes``.

    Parameters
    ----------
    array : numpy.ndarray
        Shape ``(I, J, K)`` or ``(C, I, J, K)``.
    affine : numpy.ndarray
        4x4 voxel -> RAS mm matrix of ``array``'s spatial axes.
    axcodes : str
        Target RAS+ axis code, e.g. ``"RAS"``; "" keeps the grid as is.

    Returns
    -------
    array : numpy.ndarray
        A view (no copy) with the reoriented spatial axes.
    affine : numpy.ndarray
        4x4 voxel -> RAS mm matrix of the reoriented grid.
    """
    if not axcodes:
        return array, np.asarray(affine, dtype=float)
    spatial = array.shape[-3:]
    transform = nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt(tuple(axcodes)))
    lead = array.ndim - 3
    view = array
    # apply_orientation works on leading spatial axes; do it by hand to keep a view
    axes = list(range(lead)) + [lead + int(a) for a in np.argsort(transform[:, 0])]
    flips = transform[:, 1] < 0
    slicer: list[slice] = [slice(None)] * array.ndim
    for axis in range(3):
        if flips[axis]:
            slicer[lead + axis] = slice(None, None, -1)
    view = view[tuple(slicer)]
    view = np.transpose(view, axes)
    new_affine = np.asarray(affine, dtype=float) @ nio.inv_ornt_aff(transform, spatial)
    return view, new_affine


def _resample_axis(data, axis: int, new_size: int):
    """Linear resampling of one axis of a torch tensor onto ``new_size`` samples."""
    import torch

    old_size = data.shape[axis]
    if new_size == old_size:
        return data
    position = (torch.arange(new_size, dtype=torch.float64) + 0.5) * (old_size / new_size) - 0.5
    position = position.clamp(0, old_size - 1)
    low = position.floor().long()
    high = (low + 1).clamp(max=old_size - 1)
    weight = (position - low).to(data.dtype)
    shape = [1] * data.ndim
    shape[axis] = new_size
    weight = weight.reshape(shape)
    lower = data.index_select(axis, low)
    upper = data.index_select(axis, high)
    return torch.lerp(lower, upper, weight)


def resample_to_spacing(
    image, affine: np.ndarray, spacing: Sequence[float]
) -> tuple[object, np.ndarray]:
    """Resample ``(C, X, Y, Z)`` data to a voxel size, keeping the field of view.

    Parameters
    ----------
    image : torch.Tensor
        float32, shape ``(C, X, Y, Z)``.
    affine : numpy.ndarray
        4x4 voxel -> RAS mm matrix of the spatial axes.
    spacing : sequence of float
        Target voxel size per axis in mm; 0 keeps that axis.

    Returns
    -------
    image : torch.Tensor
        Resampled, shape ``(C, X', Y', Z')``.
    affine : numpy.ndarray
        4x4 voxel -> RAS mm matrix of the new grid (see the module notes).
    """
    old_shape = np.array(image.shape[1:])
    old_spacing = np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))
    target = np.where(np.asarray(spacing, float) > 0, np.asarray(spacing, float), old_spacing)
    new_shape = np.maximum(1, np.round(old_shape * old_spacing / target).astype(int))
    for axis in range(3):
        image = _resample_axis(image, axis + 1, int(new_shape[axis]))
    # new voxel i' sits at old index (i' + 0.5) * n / n' - 0.5
    factor = old_shape / new_shape
    index_map = np.eye(4)
    index_map[:3, :3] = np.diag(factor)
    index_map[:3, 3] = 0.5 * factor - 0.5
    return image, np.asarray(affine, float) @ index_map


def apply_intensity(image, intensity: IntensitySpec):
    """Apply an :class:`IntensitySpec` to a float32 ``(C, X, Y, Z)`` torch tensor in place."""
    import torch

    if intensity.kind == "scale_range":
        span = intensity.a_max - intensity.a_min
        if span == 0:
            image.zero_().add_(intensity.b_min)
            return image
        image.sub_(intensity.a_min).mul_((intensity.b_max - intensity.b_min) / span)
        image.add_(intensity.b_min)
        if intensity.clip:
            image.clamp_(intensity.b_min, intensity.b_max)
    elif intensity.kind == "normalize":
        groups = [image[c] for c in range(image.shape[0])] if intensity.channel_wise else [image]
        for group in groups:
            values = group[group != 0] if intensity.nonzero else group
            if values.numel() == 0:
                continue
            mean = values.mean()
            std = values.std(unbiased=False)
            std = torch.where(std == 0, torch.ones_like(std), std)
            if intensity.nonzero:
                mask = group != 0
                group[mask] = (group[mask] - mean) / std
            else:
                group.sub_(mean).div_(std)
    return image


def check_channels(
    channels: Volume | Sequence[Volume],
    in_channels: int,
    name: str,
    channel_names: Sequence[str] = (),
) -> list[Volume]:
    """The input channels as a list, checked for their number and a shared voxel grid.

    Parameters
    ----------
    channels : Volume or sequence of Volume
        One volume per input channel.
    in_channels : int
        How many the model takes.
    name : str
        The model's name, for the message.
    channel_names : sequence of str
        The model's channel names, in order, for the message.

    Raises
    ------
    ValueError
        Wrong number of channels, or channels on different grids (the message names
        the channel files).
    """
    channels = [channels] if isinstance(channels, Volume) else list(channels)
    if len(channels) != in_channels:
        wanted = ", ".join(channel_names) or ("one scan" if in_channels == 1 else "scans")
        raise ValueError(
            f"model {name!r} takes {in_channels} input channel(s) ({wanted}), got {len(channels)}"
        )
    first = channels[0]
    for other in channels[1:]:
        if not same_grid(first.shape, first.affine, other.shape, other.affine):
            raise ValueError(
                f"input channels must share one voxel grid: {other.metadata.source or 'a channel'}"
                f" {other.shape} is not on the grid of {first.metadata.source or 'the first'}"
                f" {first.shape}"
            )
    return channels


def prepare_spec_input(spec: ModelSpec, channels: Sequence[Volume]) -> ModelInput:
    """Put the input channels onto the model grid of ``spec``.

    Parameters
    ----------
    spec : ModelSpec
        Target orientation, spacing and intensity transform.
    channels : sequence of Volume
        One volume per input channel, all on the same grid, in the spec's channel order.

    Returns
    -------
    ModelInput
        float32 ``(C, X, Y, Z)`` tensor on the model grid and that grid's affine; NaN
        and +/-inf voxels of a channel enter it as that channel's lowest finite value.

    Raises
    ------
    ValueError
        Wrong number of channels, or channels on different grids (the message names
        the channel files).
    """
    import torch

    channels = check_channels(channels, spec.in_channels, spec.name, spec.channel_names)
    image = None
    for index, volume in enumerate(channels):
        view, affine = reorient(volume.array, volume.affine, spec.target_orientation)
        if image is None:  # one float32 buffer for all channels, filled in place
            image = np.empty((len(channels), *view.shape), dtype=np.float32)
        image[index] = view
        replace_nonfinite(image[index])  # in our copy only; see the module notes
    image = torch.from_numpy(image)
    if spec.target_spacing:
        image, affine = resample_to_spacing(image, affine, spec.target_spacing)
    image = apply_intensity(image.contiguous(), spec.intensity)
    return ModelInput(image=image, affine=affine)
