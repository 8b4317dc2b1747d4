"""A MONAI bundle's preprocessing, inferer and postprocessing, as the engine needs them.

* **Preprocessing** runs the bundle's *own* transform objects, built from its config, so
  every detail (``Orientationd``, ``Spacingd`` with its output grid, ``NormalizeIntensityd``
  with ``nonzero``/``channel_wise``, ``CropForegroundd``...) is MONAI's code, not a copy.
  Only the file reading changes: the bundle's ``LoadImaged`` is called with a
  :class:`VolumeReader` that hands it our in-memory :class:`~napari_medseg.volume.Volume`
  channels with the metadata ``NibabelReader`` would give for the same NIfTI (RAS
  affine, ``original_channel_dim``, ``spatial_shape``; several channels stacked on a new
  first axis, as MONAI stacks a list of files), so ``LoadImaged``'s own dtype
  conversion, ``ensure_channel_first`` and ``image_only`` handling still apply.
* **Inferer**: the config's ``SlidingWindowInferer`` is built and its settings read back,
  so MONAI's defaults (``mode="constant"``, ``overlap=0.25``...) are the ones used.
* **Postprocessing** is read, not run: ``Activationsd``/``AsDiscreted`` give softmax +
  argmax or sigmoid + threshold; a ``Lambdad`` that turns thresholded channels into label
  values (BraTS) is probed on every on/off channel combination and turned into a paint
  order; label-only transforms (``KeepLargestConnectedComponentd``...) are kept and run
  on the model grid. ``Invertd`` and ``SaveImaged`` are what the engine does itself
  (labels back to the scan grid, writing). Anything else acting on the prediction is
  refused, because we could not promise the bundle's result.
* **Invertd before the argmax/threshold** (``Invertd(nearest_interp=False)``, spleen,
  renal): the bundle interpolates its probabilities (or logits) back to the scan grid
  with its ``Spacingd``'s mode and padding, then decides. :func:`inverse_resampling`
  reads that mode and padding from the built transforms, and the engine then decides
  on the scan grid the same way
  (:mod:`napari_medseg.inference.label_resample`), running the label transforms that
  follow there too.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.data.image_reader import ImageReader, _stack_images
from monai.data.meta_tensor import MetaTensor
from monai.transforms import Compose, LoadImaged
from monai.utils import SpaceKeys

from napari_medseg.models.bundle_config import BundleError, BundleInfo, parsed, target_name
from napari_medseg.models.loaded import ModelInput
from napari_medseg.models.preprocess import check_channels, reorient
from napari_medseg.volume import Volume

#: Postprocessing transforms that do not change which label a voxel gets.
NEUTRAL_TRANSFORMS = frozenset(
    {
        "SaveImaged",
        "EnsureTyped",
        "ToDeviced",
        "CopyItemsd",
        "DeleteItemsd",
        "SqueezeDimd",
        "CastToTyped",
        "ToTensord",
        "ToNumpyd",
        "EnsureChannelFirstd",
        "Identityd",
        "FromMetaTensord",
        "ToMetaTensord",
        "SelectItemsd",
    }
)

#: Label-map clean-up transforms run on the model grid after the argmax.
LABEL_TRANSFORMS = frozenset(
    {"KeepLargestConnectedComponentd", "RemoveSmallObjectsd", "FillHolesd", "LabelFilterd"}
)

#: Key of the network output in MONAI's evaluators (``CommonKeys.PRED``).
PRED_KEY = "pred"

#: Largest number of sigmoid channels whose label mapping is probed (2**n combinations).
MAX_PROBED_CHANNELS = 8


class VolumeReader(ImageReader):
    """An ``ImageReader`` that serves in-memory volumes to a bundle's ``LoadImaged``.

    ``get_data`` returns what ``monai.data.NibabelReader.get_data`` returns for NIfTI
    files holding the same voxels and affine: the array in file (I, J, K) order, several
    channels stacked on a new first axis with ``original_channel_dim = 0``, and the
    metadata keys later transforms read (``affine``, ``original_affine``,
    ``spatial_shape``, ``space = RAS``, ``original_channel_dim``).

    Parameters
    ----------
    volumes : sequence of Volume
        The input channels, in channel order, all on one grid.
    as_closest_canonical : bool
        Reorient to RAS first, like ``NibabelReader(as_closest_canonical=True)``.
    """

    def __init__(self, volumes: Sequence[Volume], as_closest_canonical: bool = False) -> None:
        super().__init__()
        self.volumes = list(volumes)
        self.as_closest_canonical = as_closest_canonical

    def verify_suffix(self, filename) -> bool:  # noqa: D102 - ImageReader API
        return True

    def read(self, data, **kwargs):  # noqa: D102 - ImageReader API; ignores the names
        return self.volumes

    def get_data(self, img) -> tuple[np.ndarray, dict]:  # noqa: D102 - ImageReader API
        arrays: list[np.ndarray] = []
        meta: dict[str, Any] = {}
        for volume in img:
            array, affine = volume.array, np.array(volume.affine, dtype=np.float64)
            header: dict[str, Any] = {
                "affine": affine.copy(),
                "original_affine": affine.copy(),
                "as_closest_canonical": self.as_closest_canonical,
            }
            if self.as_closest_canonical:
                array, header["affine"] = reorient(array, affine, "RAS")
            header["spatial_shape"] = np.asarray(array.shape)
            header["space"] = SpaceKeys.RAS
            header["original_channel_dim"] = float("nan")
            arrays.append(array)
            if not meta:
                meta = header
        return _stack_images(arrays, meta), meta


def _loader_reads_canonical(loader: LoadImaged) -> bool:
    """Whether the bundle's ``LoadImaged`` was set up with ``as_closest_canonical=True``."""
    return any(getattr(r, "as_closest_canonical", False) for r in loader._loader.readers)


class BundlePreprocess:
    """The bundle's preprocessing ``Compose``, fed Volumes instead of file names.

    Parameters
    ----------
    loader : LoadImaged
        The bundle's own loader (first transform of its preprocessing).
    rest : Compose
        The bundle's preprocessing without the loader.
    image_key : str
        Data-dictionary key of the image (``"image"``).
    info : BundleInfo
        For the channel count and names.
    """

    def __init__(self, loader: LoadImaged, rest: Compose, image_key: str, info: BundleInfo):
        self.loader = loader
        self.rest = rest
        self.image_key = image_key
        self.info = info
        self.canonical = _loader_reads_canonical(loader)

    def __call__(self, channels: Sequence[Volume]) -> ModelInput:
        """Channels on the scan grid -> float32 ``(C, X, Y, Z)`` on the model grid.

        Parameters
        ----------
        channels : sequence of Volume
            One volume per input channel (``metadata.json`` channel order), one grid.

        Returns
        -------
        ModelInput
            ``image``: float32 CPU tensor ``(C, X, Y, Z)``; ``affine``: model-grid voxel
            -> RAS mm (the final ``MetaTensor.affine`` of the bundle's transforms).
        """
        info = self.info
        channels = check_channels(channels, info.in_channels, info.name, info.channel_names)
        names = [v.metadata.source or f"channel_{i}" for i, v in enumerate(channels)]
        data = {self.image_key: names[0] if len(names) == 1 else names}
        with torch.no_grad():
            data = self.loader(data, reader=VolumeReader(channels, self.canonical))
            data = self.rest(data)
        image = data[self.image_key]
        if not isinstance(image, MetaTensor):
            raise BundleError(
                info.config_file,
                "preprocessing returned a plain array without its affine (a transform "
                "dropped the MetaTensor), so labels cannot be put back on the scan grid.",
            )
        if image.ndim != 4 or image.shape[0] != info.in_channels:
            raise BundleError(
                info.config_file,
                f"preprocessing gave an image of shape {tuple(image.shape)}; expected "
                f"({info.in_channels}, X, Y, Z).",
            )
        affine = np.asarray(image.affine.detach().cpu().numpy(), dtype=np.float64)
        tensor = image.as_tensor().detach().to("cpu", torch.float32).contiguous()
        return ModelInput(image=tensor, affine=affine)


def build_preprocess(parser, info: BundleInfo) -> BundlePreprocess:
    """Build the bundle's ``preprocessing`` and split off its leading ``LoadImaged``.

    Raises
    ------
    BundleError
        No ``preprocessing`` Compose, no leading ``LoadImaged``, or a loader later on.
    """
    compose = parsed(parser, "preprocessing", "input transforms", info)
    if not isinstance(compose, Compose):
        raise BundleError(info.config_file, "'preprocessing' is not a MONAI Compose.")
    transforms = list(compose.transforms)
    loaders = []
    while transforms and isinstance(transforms[0], LoadImaged):
        loaders.append(transforms.pop(0))
    if len(loaders) != 1 or any(isinstance(t, LoadImaged) for t in transforms):
        raise BundleError(
            info.config_file,
            "preprocessing must start with exactly one LoadImaged (and load nothing later);"
            f" found {len(loaders)} at the start.",
        )
    loader = loaders[0]
    image_keys = [str(k) for k in loader.keys]
    image_key = "image" if "image" in image_keys else image_keys[0]
    compose.transforms = tuple(transforms)
    return BundlePreprocess(loader, compose, image_key, info)


@dataclass(frozen=True)
class InfererSettings:
    """Sliding-window settings of the bundle's ``inferer`` (MONAI defaults filled in)."""

    roi_size: tuple[int, ...]
    sw_batch_size: int
    overlap: float
    mode: str
    sigma_scale: float
    padding_mode: str
    cval: float


def _single(value: Any, what: str, info: BundleInfo) -> float:
    """One float from a scalar or a sequence whose entries are all equal."""
    values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    if len(set(values)) != 1:
        raise BundleError(
            info.config_file, f"inferer {what} differs per axis ({values}); not supported."
        )
    return values[0]


def read_inferer(parser, info: BundleInfo) -> InfererSettings:
    """Build the config's ``inferer`` and read its sliding-window settings back.

    Raises
    ------
    BundleError
        The inferer is not a 3D ``SlidingWindowInferer`` (e.g. ``SimpleInferer``, 2D).
    """
    from monai.inferers import SlidingWindowInferer

    inferer = parsed(parser, "inferer", "sliding-window inferer", info)
    if not isinstance(inferer, SlidingWindowInferer) or type(inferer).__name__ == "SliceInferer":
        raise BundleError(
            info.config_file,
            f"uses a {type(inferer).__name__}; only SlidingWindowInferer bundles are supported.",
        )
    roi = inferer.roi_size
    roi_size = tuple(int(v) for v in (roi if isinstance(roi, (list, tuple)) else (roi,) * 3))
    if len(roi_size) != 3 or min(roi_size) <= 0:
        raise BundleError(
            info.config_file,
            f"inferer roi_size {roi_size}: only 3D windows of positive size are supported.",
        )
    return InfererSettings(
        roi_size=roi_size,
        sw_batch_size=int(inferer.sw_batch_size),
        overlap=_single(inferer.overlap, "overlap", info),
        mode=str(getattr(inferer.mode, "value", inferer.mode)),
        sigma_scale=_single(inferer.sigma_scale, "sigma_scale", info),
        padding_mode=str(getattr(inferer.padding_mode, "value", inferer.padding_mode)),
        cval=float(inferer.cval),
    )


def probe_paint_order(func, n_channels: int) -> tuple[tuple[int, int], ...]:
    """Turn a "binary channels -> label value" function into a paint order.

    ``func`` is called once on a ``(C, 2**C, 1, 1)`` float tensor holding every on/off
    combination of the ``C`` thresholded channels. It is a paint order when there is an
    order of the channels such that each voxel gets the value of the last channel (in
    that order) that is on, and 0 when none is.

    Returns
    -------
    tuple of (int, int)
        ``(channel, label value)`` pairs, painted first to last.

    Raises
    ------
    ValueError
        ``func`` fails, returns the wrong shape, or is not a paint order.
    """
    combos = list(itertools.product((0.0, 1.0), repeat=n_channels))
    probe = torch.tensor(combos, dtype=torch.float32).T.reshape(n_channels, len(combos), 1, 1)
    result = func(probe.clone())
    values = torch.as_tensor(result).detach().cpu().reshape(-1)
    if values.numel() != len(combos):
        raise ValueError(
            f"returned {tuple(torch.as_tensor(result).shape)} for {tuple(probe.shape)}"
        )
    table = {combo: int(round(float(v))) for combo, v in zip(combos, values.tolist(), strict=True)}
    if table[(0.0,) * n_channels] != 0:
        raise ValueError("gives a non-zero label where no channel is on")
    single = {
        c: table[tuple(1.0 if i == c else 0.0 for i in range(n_channels))]
        for c in range(n_channels)
    }
    painting = [c for c in range(n_channels) if single[c] != 0]

    def painted(combo: tuple[float, ...], order: Sequence[int]) -> int:
        on = [c for c in order if combo[c]]
        return single[on[-1]] if on else 0

    for order in itertools.permutations(painting):
        if all(painted(combo, order) == label for combo, label in table.items()):
            return tuple((c, single[c]) for c in order)
    raise ValueError(
        f"maps channel combinations to {sorted(set(table.values()))} in no paint order"
    )


@dataclass
class PostprocessPlan:
    """What the bundle's ``postprocessing`` does to the network output.

    Attributes
    ----------
    activation : str
        ``"softmax"`` (label = argmax over channels) or ``"sigmoid"``.
    threshold : float
        Sigmoid threshold (``AsDiscreted(threshold=...)``, voxel on when ``>=``).
    paint_order : tuple of (int, int)
        For sigmoid: ``(channel, label value)`` painted in order.
    label_transforms : list
        The bundle's label-map transforms (dictionary transforms on key ``pred``).
    interpolated : str
        What the bundle interpolates back to the scan grid before its argmax or
        threshold (``Invertd(nearest_interp=False)`` before ``AsDiscreted``):
        ``"softmax"`` or ``"sigmoid"`` probabilities, or ``"logits"`` (no activation
        yet); ``""`` when it inverts labels, by nearest neighbour, or nothing.
    label_transforms_after_invert : list of str
        Names of the label transforms after ``Invertd`` (the bundle runs them on the
        scan grid).
    steps : list of str
        The transforms read, in order (provenance).
    warnings : list of str
        Where our result may differ and why.
    """

    activation: str = "softmax"
    threshold: float = 0.5
    paint_order: tuple[tuple[int, int], ...] = ()
    label_transforms: list[Any] = field(default_factory=list)
    interpolated: str = ""
    label_transforms_after_invert: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _raw_component(parser, id_: str) -> tuple[str, Any]:
    """Follow ``"@other"`` references to the raw config of a component."""
    raw = parser.get(id_)
    for _ in range(8):
        if isinstance(raw, str) and raw.startswith("@"):
            id_ = raw[1:]
            raw = parser.get(id_)
        else:
            break
    return id_, raw


def _acts_on_pred(parser, item_id: str, info: BundleInfo) -> bool:
    """Whether a postprocessing dictionary transform's ``keys`` include ``pred``."""
    keys = parsed(parser, f"{item_id}#keys", "transform keys", info, default=())
    keys = [keys] if isinstance(keys, str) else list(keys or ())
    return PRED_KEY in [str(k) for k in keys]


def _item_arg(parser, item_id: str, info: BundleInfo, key: str, default: Any = None) -> Any:
    """One parsed argument of a config component (``default`` when it is not set)."""
    return parsed(parser, f"{item_id}#{key}", key, info, default=default)


def read_postprocessing(parser, info: BundleInfo, out_channels: int) -> PostprocessPlan:
    """Read the bundle's ``postprocessing`` into a :class:`PostprocessPlan`.

    Raises
    ------
    BundleError
        A transform acting on ``pred`` that napari-medseg cannot reproduce, a label map
        that is never made (no argmax/threshold), or a ``Lambdad`` that is not a paint order.
    """
    plan = PostprocessPlan()
    post_id, raw = _raw_component(parser, "postprocessing")
    items = raw.get("transforms") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise BundleError(info.config_file, "'postprocessing' is not a Compose with transforms.")
    activation = ""
    discrete = ""  # "", "argmax" or "threshold"
    inverted = False
    for index, item in enumerate(items):
        item_id = f"{post_id}#transforms#{index}"
        name = target_name(item)
        if not name or (isinstance(item, dict) and item.get("_disabled_") in (True, "true")):
            continue
        plan.steps.append(name)
        if name in NEUTRAL_TRANSFORMS or not _acts_on_pred(parser, item_id, info):
            continue
        arg = functools.partial(_item_arg, parser, item_id, info)
        if name == "Activationsd":
            if arg("other") is not None:
                raise BundleError(
                    info.config_file, f"{item_id}: Activationsd 'other' is not supported."
                )
            activation = (
                "sigmoid" if arg("sigmoid", False) else "softmax" if arg("softmax", False) else ""
            )
        elif name == "AsDiscreted":
            if arg("argmax", False):
                discrete = "argmax"
            elif arg("threshold") is not None or arg("threshold_values", False):
                discrete = "threshold"
                threshold = arg("threshold")
                plan.threshold = float(arg("logit_thresh", 0.5) if threshold is None else threshold)
        elif name == "Invertd":
            inverted = True
            nearest = arg("nearest_interp", True)
            if discrete and not nearest:
                plan.warnings.append(
                    "the bundle inverts its label map with bilinear interpolation; "
                    "napari-medseg uses nearest neighbour (labels stay whole numbers)."
                )
            elif not discrete and not nearest:  # scores interpolated, then decided
                plan.interpolated = activation or "logits"
        elif name == "Lambdad" and discrete == "threshold" and not plan.paint_order:
            try:
                plan.paint_order = probe_paint_order(arg("func"), out_channels)
            except Exception as error:
                raise BundleError(
                    info.config_file, f"{item_id}: Lambdad label mapping {error}; not supported."
                ) from None
        elif name in LABEL_TRANSFORMS and (discrete == "argmax" or plan.paint_order):
            plan.label_transforms.append(parsed(parser, item_id, name, info))
            if inverted:
                plan.label_transforms_after_invert.append(name)
        else:
            raise BundleError(
                info.config_file,
                f"postprocessing transform {name} ({item_id}) changes the prediction in a way "
                "napari-medseg cannot reproduce.",
                "Remove it from the config or ask for support in an issue.",
            )
    if discrete == "argmax":
        plan.activation = "softmax"
        if activation == "sigmoid":
            plan.steps.append("argmax of sigmoid == argmax of logits")
    elif discrete == "threshold" and activation == "sigmoid":
        plan.activation = "sigmoid"
        if not plan.paint_order:
            plan.paint_order = tuple((c, c + 1) for c in range(out_channels))
            plan.warnings.append(
                f"the bundle writes {out_channels} overlapping binary channels; here channel c "
                "becomes label c+1, painted in channel order (a later channel wins)."
            )
    else:
        raise BundleError(
            info.config_file,
            "postprocessing makes no label map (needs AsDiscreted argmax, or Activationsd "
            f"sigmoid + AsDiscreted threshold); found {', '.join(plan.steps) or 'nothing'}.",
        )
    return plan


#: Transforms that resample the way ``Spacingd`` does (``SpatialResample``, ``grid_sample``).
GRID_RESAMPLE_TRANSFORMS = frozenset({"Spacingd", "SpatialResampled", "ResampleToMatchd"})

#: Other spatial transforms whose inverse interpolates in ways not reproduced here.
OTHER_RESAMPLE_TRANSFORMS = frozenset({"Resized", "Zoomd", "Affined", "Rotated"})


@dataclass(frozen=True)
class InverseResampling:
    """How ``Invertd(nearest_interp=False)`` brings the model grid back to the scan grid.

    Attributes
    ----------
    kind : str
        ``"linear"``: trilinear (``grid_sample`` bilinear) with ``padding_mode``;
        ``"nearest"``: the resampling's own mode is nearest; ``"none"``: nothing is
        interpolated (only reorientation, flips, crops or pads); ``"other"``: an
        interpolation napari-medseg does not reproduce (``why`` says which).
    padding_mode : str
        ``"border"`` or ``"zeros"`` for ``"linear"``. A crop after the resampling is
        undone by padding with zeros: ``"zeros"`` then, exact for an argmax (a zero
        score vector does not change which class wins a mix, and the crop's far side
        lies within one model voxel of the scan's edge).
    why : str
        For ``"other"``: the transform and setting, for the user.
    """

    kind: str
    padding_mode: str = ""
    why: str = ""


def _mode_name(value: Any) -> str:
    return str(getattr(value, "value", value))


def inverse_resampling(preprocess: BundlePreprocess) -> InverseResampling:
    """Read how the bundle's preprocessing resamples its image, to invert it the same way.

    ``Invertd`` undoes the image's transforms in reverse order with their own settings:
    a ``Spacingd`` is undone by ``SpatialResample`` with the same ``mode``,
    ``padding_mode`` and ``align_corners`` (the last does not move samples: MONAI
    normalises with the convention it samples with), a crop by padding with zeros, a
    pad by a crop. Reorientation and flips move voxels without interpolating.

    Parameters
    ----------
    preprocess : BundlePreprocess
        The bundle's built preprocessing (its ``rest`` transforms after ``LoadImaged``).
    """
    resampled = ""  # the grid-resampling transform seen so far
    padding = ""
    zero_padded = False
    for transform in preprocess.rest.transforms:
        name = type(transform).__name__
        keys = [str(k) for k in getattr(transform, "keys", ())]
        if preprocess.image_key not in keys:
            continue
        index = keys.index(preprocess.image_key)
        if name in GRID_RESAMPLE_TRANSFORMS:
            mode = _mode_name(transform.mode[index])
            padding = _mode_name(transform.padding_mode[index])
            if resampled or zero_padded:
                return InverseResampling("other", why=f"{name} after another spatial change")
            if mode == "nearest":
                return InverseResampling("nearest")
            if mode != "bilinear" or padding not in ("border", "zeros"):
                return InverseResampling(
                    "other", why=f"{name} with mode {mode!r} and padding {padding!r}"
                )
            resampled = name
        elif "Pad" in name:  # undone by a crop before the resampling's inverse
            if resampled:
                return InverseResampling("other", why=f"{name} after the resampling")
        elif "Crop" in name:  # undone by padding with zeros
            if not resampled:
                return InverseResampling("other", why=f"{name} before the resampling")
            zero_padded = True
        elif name in OTHER_RESAMPLE_TRANSFORMS:
            return InverseResampling("other", why=f"{name}")
    if not resampled:
        return InverseResampling("none")
    return InverseResampling("linear", "zeros" if zero_padded else padding)


class LabelPostprocess:
    """The bundle's label-map transforms, run on an ``(X, Y, Z)`` label array."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        """Apply the transforms in order; same shape and dtype back."""
        data = {PRED_KEY: torch.from_numpy(np.ascontiguousarray(labels))[None]}
        for transform in self.transforms:
            data = transform(data)
        result = torch.as_tensor(data[PRED_KEY]).detach().cpu().numpy()
        return result.reshape(labels.shape).astype(labels.dtype, copy=False)
