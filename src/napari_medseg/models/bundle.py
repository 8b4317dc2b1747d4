"""Load a MONAI Model Zoo bundle folder as a :class:`~napari_medseg.models.loaded.LoadedModel`.

The engine then runs it like any other model. What comes from where:

=====================  ==================================================================
spec.labels            ``metadata.json`` ``outputs.pred.channel_def`` (softmax), or the
                       paint order read from the postprocessing (sigmoid, e.g. BraTS)
spec.in_channels       ``inputs.image.num_channels`` and ``channel_def`` names
roi / overlap / ...    the config's ``inferer`` (a ``SlidingWindowInferer``), built by MONAI
network                ``network_def`` + the ``CheckpointLoader``'s file (``model.pt``,
                       ``torch.load(weights_only=True)``), or ``models/model.ts``
preprocess             the config's own ``preprocessing`` transforms (see
                       :mod:`~napari_medseg.models.bundle_transforms`)
postprocess_labels     label-map transforms of its ``postprocessing`` (e.g.
                       ``KeepLargestConnectedComponentd``), run on the model grid, or on
                       the scan grid after an ``Invertd`` of probabilities
details["interpolate"] for ``Invertd(nearest_interp=False)`` before the argmax/threshold:
                       what to interpolate (``values``: softmax, sigmoid or logits) and
                       how (``padding_mode``), read from its ``Spacingd``
=====================  ==================================================================

Importing this module is cheap (torch and MONAI are imported when a bundle is loaded).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from napari_medseg.labels.classes import LabelClass, default_color
from napari_medseg.models.bundle_config import (
    BundleError,
    BundleInfo,
    BundleTrustError,
    bundle_imports,
    find_weights,
    is_bundle_folder,
    load_weights,
    open_config,
    parsed,
    read_bundle_info,
    require_trust,
    target_name,
)
from napari_medseg.models.loaded import LoadedModel
from napari_medseg.models.spec import ModelSpec, NetworkSpec

__all__ = [
    "BundleError",
    "BundleInfo",
    "BundleTrustError",
    "is_bundle_folder",
    "load_bundle",
    "read_bundle_info",
]


def _labels(info: BundleInfo, activation: str, paint_order, out_channels: int):
    """Label classes: one per softmax channel, or background + one per painted value."""
    names = info.output_names
    if activation == "softmax":
        pairs = [
            (i, names.get(i, "background" if i == 0 else f"class {i}")) for i in range(out_channels)
        ]
    else:
        pairs = [(0, "background")]
        for channel, value in paint_order:
            if value not in dict(pairs):
                pairs.append((value, names.get(channel, f"channel {channel}")))
        pairs.sort()
    return tuple(LabelClass(value, name, default_color(value)) for value, name in pairs)


def _network_args(parser) -> dict:
    """``network_def`` arguments as plain JSON (for the spec; references kept as text)."""
    raw = parser.get("network_def")
    if not isinstance(raw, dict):
        return {}
    args = {k: v for k, v in raw.items() if not str(k).startswith("_")}
    return json.loads(json.dumps(args, default=str))


def _grid_hints(parser, info: BundleInfo) -> dict:
    """Model-grid orientation and spacing the preprocessing asks for (provenance only)."""
    hints: dict = {}
    compose = parser.get("preprocessing")
    items = compose.get("transforms") or [] if isinstance(compose, dict) else []
    for index, item in enumerate(items):
        item_id = f"preprocessing#transforms#{index}"
        if target_name(item) == "Orientationd" and "axcodes" in item:
            hints["orientation"] = str(parsed(parser, f"{item_id}#axcodes", "axcodes", info))
        if target_name(item) == "Spacingd" and "pixdim" in item:
            pixdim = parsed(parser, f"{item_id}#pixdim", "pixdim", info)
            hints["spacing_mm"] = [float(v) for v in pixdim]
    return hints


def _out_channels(parser, info: BundleInfo, network) -> int:
    """Number of network output channels: metadata, else ``network_def`` / the network."""
    if info.out_channels:
        return info.out_channels
    value = parsed(parser, "network_def#out_channels", "out_channels", info, default=None)
    value = value if value is not None else getattr(network, "out_channels", None)
    if value is None:
        raise BundleError(
            info.folder / "configs" / "metadata.json",
            "does not say how many channels the network outputs "
            "(network_data_format.outputs.pred.num_channels).",
        )
    return int(value)


def _interpolation(plan, inverse, warnings: list[str]) -> dict | None:
    """``details["interpolate"]``: how the Segmenter brings scores to the scan grid
    before deciding labels, as the bundle's ``Invertd`` does; None when labels go back
    by nearest neighbour (which then equals the bundle, or a warning says where not)."""
    interpolate = None
    if plan.interpolated and inverse.kind == "linear":
        interpolate = {"values": plan.interpolated, "padding_mode": inverse.padding_mode}
        if plan.activation == "sigmoid" and inverse.padding_mode == "zeros":
            warnings.append(
                "the bundle crops the image after resampling it: its thresholds within "
                "half a model voxel of the scan's edge may differ."
            )
    elif plan.interpolated and inverse.kind == "other":
        warnings.append(
            f"the bundle interpolates its {plan.interpolated} back to the scan grid through "
            f"{inverse.why}, which napari-medseg does not reproduce: labels are decided on "
            "the model grid and brought back by nearest neighbour, so they may differ "
            "within one model voxel of a label boundary."
        )
    if plan.label_transforms_after_invert and interpolate is None:
        for name in plan.label_transforms_after_invert:
            warnings.append(f"{name} runs on the scan grid in the bundle, on the model grid here.")
    return interpolate


def load_bundle(folder: str | Path, trust: bool = False) -> LoadedModel:
    """Load a MONAI bundle folder, ready for :class:`~napari_medseg.inference.segmenter.Segmenter`.

    Parameters
    ----------
    folder : path
        Bundle root: ``configs/metadata.json``, ``configs/inference.json`` (or ``.yaml``),
        ``models/model.pt`` or ``models/model.ts``, optionally ``scripts/``.
    trust : bool
        The config runs Python code (``$`` expressions, ``_target_`` imports, the bundle's
        ``scripts`` package) while it is loaded: only ``True`` lets that happen.

    Returns
    -------
    LoadedModel
        ``network`` in eval mode on the CPU; ``preprocess`` runs the bundle's own
        transforms; ``details["kind"] == "monai_bundle"``, with ``details["warnings"]``
        saying where results can differ from the bundle's own run.

    Raises
    ------
    BundleTrustError
        ``trust`` is False (nothing of the config is run).
    BundleError
        A file is missing or malformed, or the bundle does something napari-medseg
        cannot reproduce (the message names the file and the transform).
    ModelLoadError
        The weights file is refused (pickled objects) or does not fit the network.
    """
    info = read_bundle_info(folder)
    require_trust(info, trust)
    from napari_medseg.models import bundle_transforms
    from napari_medseg.models.build import load_torchscript, sha256_file

    warnings: list[str] = []
    with bundle_imports(info.folder):
        parser = open_config(info)
        preprocess = bundle_transforms.build_preprocess(parser, info)
        inferer = bundle_transforms.read_inferer(parser, info)
        weights = find_weights(parser, info)
        if weights.kind == "torchscript":
            network = load_torchscript(weights.path)
            network_spec = NetworkSpec(kind="torchscript")
        else:
            key = "network_def" if "network_def" in parser else "network"
            network = parsed(parser, key, "network", info)
            warnings += load_weights(network, weights)
            network_spec = NetworkSpec(
                kind="monai",
                name=str((parser.get("network_def") or {}).get("_target_", ""))
                if isinstance(parser.get("network_def"), dict)
                else "",
                args=_network_args(parser),
            )
        out_channels = _out_channels(parser, info, network)
        plan = bundle_transforms.read_postprocessing(parser, info, out_channels)
        hints = _grid_hints(parser, info)
    network = network.cpu().eval()
    warnings += plan.warnings
    interpolate = _interpolation(plan, bundle_transforms.inverse_resampling(preprocess), warnings)
    if inferer.padding_mode != "constant":
        warnings.append(
            f"the bundle pads images smaller than its window with {inferer.padding_mode!r}."
        )
    spec = ModelSpec(
        name=re.sub(rf"_v{re.escape(info.version)}$", "", info.folder.name)
        if info.version
        else info.folder.name,
        title=info.name,
        description=info.description,
        spatial_dims=3,
        in_channels=info.in_channels,
        channel_names=info.channel_names,
        labels=_labels(info, plan.activation, plan.paint_order, out_channels),
        network=network_spec,
        weights=str(weights.path.relative_to(info.folder))
        if weights.path.is_relative_to(info.folder)
        else str(weights.path),
        roi_size=inferer.roi_size,
        overlap=inferer.overlap,
        blend_mode=inferer.mode,
        sigma_scale=inferer.sigma_scale,
        sw_batch_size=inferer.sw_batch_size,
        activation=plan.activation,
        paint_order=plan.paint_order if plan.activation == "sigmoid" else (),
        modality=info.modality,
        base_dir=str(info.folder),
    )
    details = {
        "kind": "monai_bundle",
        "bundle_name": info.name,
        "bundle_version": info.version,
        "folder": str(info.folder),
        "config_file": str(info.config_file),
        "weights": str(weights.path),
        "weights_kind": weights.kind,
        "weights_sha256": sha256_file(weights.path),
        "padding_mode": inferer.padding_mode,
        "cval": inferer.cval,
        "threshold": plan.threshold,
        "interpolate": interpolate,
        "preprocessing": [type(t).__name__ for t in preprocess.rest.transforms],
        "postprocessing": plan.steps,
        "grid": hints,
        "warnings": warnings,
    }
    postprocess = (
        bundle_transforms.LabelPostprocess(plan.label_transforms) if plan.label_transforms else None
    )
    return LoadedModel(
        spec=spec,
        network=network,
        preprocess=preprocess,
        postprocess_labels=postprocess,
        source=str(info.folder),
        details=details,
    )
