"""MONAI Model Zoo-format bundles for tests and benchmarks, written line by line after real ones.

Each writer copies the structure of a real Model Zoo bundle's ``configs/metadata.json``
and ``configs/inference.json`` (same ids, same transforms in the same order, same
``datalist``/``dataset``/``dataloader``/``evaluator``/``handlers``/``initialize``/``run``),
changing only what a test needs: network sizes (tiny by default, real sizes on request),
the sliding-window ROI, and weights (random, seeded, with the final bias shifted so the
classes are balanced and the labels varied). Sources (Project-MONAI/model-zoo):

* :func:`write_spleen_like`: ``models/spleen_ct_segmentation/configs/inference.json`` and
  ``metadata.json`` (UNet, CT, 2 classes, softmax, Invertd of probabilities, bilinear).
* :func:`write_wholebody_like`: ``models/wholeBody_ct_segmentation/configs/inference.json``
  and ``metadata.json`` (SegResNet, CT, 105 classes, ``displayable_configs``, pixdim by
  ``highres``, argmax *before* ``Invertd`` with nearest interpolation, replicate padding).
* :func:`write_brats_like`: ``models/brats_mri_segmentation/configs/inference.json`` and
  ``metadata.json`` (SegResNet, 4-channel MR, sigmoid, threshold, ``Lambdad`` to BraTS
  label values 1/2/4, datalist from ``configs/datalist.json``).
* :func:`write_scripts_bundle`: ``models/renalStructures_UNEST_segmentation/configs/
  inference.json`` (network from the bundle's own ``scripts.networks`` package, absolute
  ``bundle_root``, ``"evaluating"`` run id, ``EnsureChannelFirstd(channel_dim="no_channel")``).

:func:`write_ct_phantom` / :func:`write_mr_phantom` write input NIfTI files.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

#: wholeBody_ct_segmentation metadata.json outputs.pred.channel_def (TotalSegmentator v1).
WHOLEBODY_CLASSES = (
    "background spleen kidney_right kidney_left gallbladder liver stomach aorta "
    "inferior_vena_cava portal_vein_and_splenic_vein pancreas adrenal_gland_right "
    "adrenal_gland_left lung_upper_lobe_left lung_lower_lobe_left lung_upper_lobe_right "
    "lung_middle_lobe_right lung_lower_lobe_right vertebrae_L5 vertebrae_L4 vertebrae_L3 "
    "vertebrae_L2 vertebrae_L1 vertebrae_T12 vertebrae_T11 vertebrae_T10 vertebrae_T9 "
    "vertebrae_T8 vertebrae_T7 vertebrae_T6 vertebrae_T5 vertebrae_T4 vertebrae_T3 "
    "vertebrae_T2 vertebrae_T1 vertebrae_C7 vertebrae_C6 vertebrae_C5 vertebrae_C4 "
    "vertebrae_C3 vertebrae_C2 vertebrae_C1 esophagus trachea heart_myocardium "
    "heart_atrium_left heart_ventricle_left heart_atrium_right heart_ventricle_right "
    "pulmonary_artery brain iliac_artery_left iliac_artery_right iliac_vena_left "
    "iliac_vena_right small_bowel duodenum colon "
    + " ".join(f"rib_left_{i}" for i in range(1, 13))
    + " "
    + " ".join(f"rib_right_{i}" for i in range(1, 13))
    + " "
    "humerus_left humerus_right scapula_left scapula_right clavicula_left clavicula_right "
    "femur_left femur_right hip_left hip_right sacrum face gluteus_maximus_left "
    "gluteus_maximus_right gluteus_medius_left gluteus_medius_right gluteus_minimus_left "
    "gluteus_minimus_right autochthon_left autochthon_right iliopsoas_left iliopsoas_right "
    "urinary_bladder"
).split()
assert len(WHOLEBODY_CLASSES) == 105

_SCHEMA = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
    "meta_schema_20220324.json"
)


def _evaluator(amp: bool = True) -> dict:
    return {
        "_target_": "SupervisedEvaluator",
        "device": "@device",
        "val_data_loader": "@dataloader",
        "network": "@network",
        "inferer": "@inferer",
        "postprocessing": "@postprocessing",
        "val_handlers": "@handlers",
        "amp": amp,
    }


def _evaluate(handlers: list) -> dict:
    """handlers, evaluator, initialize (cudnn.benchmark) and run: the newer configs' tail."""
    return {
        "handlers": handlers,
        "evaluator": _evaluator(),
        "initialize": ["$setattr(torch.backends.cudnn, 'benchmark', True)"],
        "run": ["$@evaluator.run()"],
    }


def _handlers(load_path: str = "$@bundle_root + '/models/model.pt'", **loader) -> list:
    """``handlers``: the CheckpointLoader of the newer configs, then StatsHandler."""
    checkpoint = {
        "_target_": "CheckpointLoader",
        "load_path": load_path,
        "load_dict": {"model": "@network"},
        **loader,
    }
    return [checkpoint, {"_target_": "StatsHandler", "iteration_log": False}]


def _data(
    num_workers: int = 4, shuffle: bool = False, data: str = "$[{'image': i} for i in @datalist]"
) -> dict:
    """``dataset`` and ``dataloader`` entries (batch 1), as every inference config has."""
    return {
        "dataset": {"_target_": "Dataset", "data": data, "transform": "@preprocessing"},
        "dataloader": {
            "_target_": "DataLoader",
            "dataset": "@dataset",
            "batch_size": 1,
            "shuffle": shuffle,
            "num_workers": num_workers,
        },
    }


def _sliding_window(roi, sw_batch_size, overlap, **extra) -> dict:
    return {
        "_target_": "SlidingWindowInferer",
        "roi_size": list(roi),
        "sw_batch_size": sw_batch_size,
        "overlap": overlap,
        **extra,
    }


def _ct_grid_transforms(key: str, pixdim, scale: dict, **channel_first) -> list:
    """EnsureChannelFirstd, Orientationd RAS, Spacingd bilinear, ScaleIntensityRanged
    (``scale``: a_min, a_max, b_min, b_max), EnsureTyped: spleen's and renal's CT steps."""
    return [
        {"_target_": "EnsureChannelFirstd", "keys": key, **channel_first},
        {"_target_": "Orientationd", "keys": key, "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": key, "pixdim": list(pixdim), "mode": "bilinear"},
        {"_target_": "ScaleIntensityRanged", "keys": key, **scale, "clip": True},
        {"_target_": "EnsureTyped", "keys": key},
    ]


def _softmax_invert_argmax(key: str, **save) -> list:
    """Activationsd softmax, Invertd (bilinear, probabilities), AsDiscreted argmax, SaveImaged."""
    return [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {
            "_target_": "Invertd",
            "keys": "pred",
            "transform": "@preprocessing",
            "orig_keys": key,
            "nearest_interp": False,
            "to_tensor": True,
        },
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", **save},
    ]


def _metadata(
    *,
    version: str,
    name: str,
    task: str,
    description: str,
    modality: str,
    image_format: str,
    in_names: list[str],
    out_names: list[str],
    roi: tuple[int, int, int],
    out_range: list,
) -> dict:
    """metadata.json in the Model Zoo schema (network_data_format with channel_def)."""
    return {
        "schema": _SCHEMA,
        "version": version,
        "changelog": {version: "napari-medseg test fixture"},
        "monai_version": "1.4.0",
        "pytorch_version": "2.4.0",
        "numpy_version": "1.24.4",
        "optional_packages_version": {"nibabel": "5.2.1", "pytorch-ignite": "0.4.11"},
        "name": name,
        "task": task,
        "description": description,
        "authors": "napari-medseg tests (structure after the MONAI team's bundle)",
        "copyright": "Copyright (c) MONAI Consortium",
        "data_type": "nibabel",
        "intended_use": "Testing only: random weights",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": image_format,
                    "modality": modality,
                    "num_channels": len(in_names),
                    "spatial_shape": list(roi),
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": True,
                    "channel_def": {str(i): n for i, n in enumerate(in_names)},
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": len(out_names),
                    "spatial_shape": list(roi),
                    "dtype": "float32",
                    "value_range": out_range,
                    "is_patch_data": True,
                    "channel_def": {str(i): n for i, n in enumerate(out_names)},
                }
            },
        },
    }


def balance_final_bias(
    network: torch.nn.Module, in_channels: int, seed: int, patch: int = 16
) -> None:
    """Shift the last bias so each output channel has zero mean on a smooth random input.

    With default init one class usually wins everywhere; centring the channels' mean
    logits makes the argmax (or the sigmoid threshold) vary across the volume, so the
    equivalence tests see many labels and many label boundaries.
    """
    generator = torch.Generator().manual_seed(seed + 1)
    sample = torch.rand((2, in_channels, patch, patch, patch), generator=generator)
    sample = torch.nn.functional.avg_pool3d(sample, 5, stride=1, padding=2)
    network.eval()
    with torch.no_grad():
        logits = network(sample)
        if isinstance(logits, (list, tuple)):
            logits = logits[0]
        means = logits.mean(dim=(0, 2, 3, 4))
        bias = [
            p
            for n, p in network.named_parameters()
            if n.endswith("bias") and p.numel() == means.numel()
        ][-1]
        bias -= means


#: Fitted state_dicts by (class, constructor-visible shapes, classes, steps, seed): the
#: fixtures re-write the same bundle many times per test session; fit it once.
_FITTED: dict[tuple, dict[str, torch.Tensor]] = {}


def fit_to_intensity_bands(
    network: torch.nn.Module,
    in_channels: int,
    n_classes: int,
    *,
    steps: int = 40,
    patch: int = 16,
    seed: int = 0,
) -> None:
    """A few Adam steps that teach the network "class = band of smoothed intensity".

    Randomly initialised U-Nets with transposed convolutions output a checkerboard
    (their logits differ by a stride-2 parity pattern larger than anything the input
    does), so every voxel would sit on a label boundary and a test of "differences only
    at boundaries" would test nothing. After these steps the labels follow the input's
    bright and dark regions, with boundaries where a trained model has them. The
    weights mean nothing else. Deterministic (seeded), and cached per process.
    """
    shapes = tuple((k, tuple(v.shape)) for k, v in network.state_dict().items())
    key = (type(network).__qualname__, shapes, in_channels, n_classes, steps, patch, seed)
    if key in _FITTED:
        network.load_state_dict(_FITTED[key])
        network.eval()
        return
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-2)
    bands = torch.linspace(0.0, 1.0, n_classes + 1)[1:-1]
    network.train()
    for _ in range(steps):
        field = torch.rand((2, 1, patch, patch, patch), generator=generator)
        for _ in range(2):
            field = torch.nn.functional.avg_pool3d(
                field, 5, stride=1, padding=2, count_include_pad=False
            )
        low = field.amin(dim=(1, 2, 3, 4), keepdim=True)
        high = field.amax(dim=(1, 2, 3, 4), keepdim=True)
        field = (field - low) / (high - low + 1e-6)
        target = torch.bucketize(field[:, 0], bands)
        loss = torch.nn.functional.cross_entropy(
            network(field.repeat(1, in_channels, 1, 1, 1)), target
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    network.eval()
    _FITTED[key] = {k: v.detach().clone() for k, v in network.state_dict().items()}


def _save_weights(network, folder: Path, weights: str, example) -> None:
    """models/model.pt (state_dict, optionally wrapped) or models/model.ts (TorchScript)."""
    models = folder / "models"
    models.mkdir(parents=True, exist_ok=True)
    if weights == "pt":
        torch.save(network.state_dict(), models / "model.pt")
    elif weights == "pt_wrapped":
        torch.save({"model": network.state_dict()}, models / "model.pt")
    elif weights == "ts":
        torch.jit.trace(network.eval(), example).save(str(models / "model.ts"))
    else:
        raise ValueError(weights)


def _write(folder: Path, metadata: dict, inference: dict) -> Path:
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=4) + "\n")
    (folder / "configs" / "inference.json").write_text(json.dumps(inference, indent=4) + "\n")
    return folder


def write_spleen_like(
    root: str | Path,
    *,
    name: str = "spleen_ct_segmentation",
    channels: tuple[int, ...] = (4, 8, 16),
    strides: tuple[int, ...] = (2, 2),
    num_res_units: int = 1,
    roi: tuple[int, int, int] = (32, 32, 32),
    pixdim: tuple[float, float, float] = (1.5, 1.5, 2.0),
    sw_batch_size: int = 4,
    weights: str = "pt",
    fit_steps: int = 40,
    seed: int = 0,
) -> Path:
    """spleen_ct_segmentation: UNet, 1 CT channel, 2 classes; softmax, Invertd, argmax.

    Real sizes: ``channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2),
    num_res_units=2, roi=(96, 96, 96)``. ``weights="ts"`` writes ``models/model.ts``
    only and makes the config's ``network_def`` load it (``torch.jit.load``) with no
    checkpoint loader, as a TorchScript-only bundle does. ``fit_steps`` Adam steps of
    :func:`fit_to_intensity_bands` follow the random init (0: random init with balanced
    final bias only, enough for timing).
    """
    from monai.networks.nets import UNet

    folder = Path(root) / name
    network_def = {
        "_target_": "UNet",
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 2,
        "channels": list(channels),
        "strides": list(strides),
        "num_res_units": num_res_units,
        "norm": "batch",
    }
    inference = {
        "imports": ["$import glob", "$import numpy", "$import os"],
        "bundle_root": ".",
        "image_key": "image",
        "output_dir": "$@bundle_root + '/eval'",
        "output_ext": ".nii.gz",
        "output_dtype": "$numpy.float32",
        "output_postfix": "trans",
        "separate_folder": True,
        "load_pretrain": True,
        "dataset_dir": "/workspace/data/Task09_Spleen",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii.gz')))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": network_def,
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "@image_key"},
                *_ct_grid_transforms(
                    "@image_key", pixdim, {"a_min": -57, "a_max": 164, "b_min": 0, "b_max": 1}
                ),
            ],
        },
        **_data(),
        "inferer": _sliding_window(roi, sw_batch_size, 0.5),
        "postprocessing": {
            "_target_": "Compose",
            "transforms": _softmax_invert_argmax(
                "@image_key",
                output_ext="@output_ext",
                output_dtype="@output_dtype",
                output_postfix="@output_postfix",
                separate_folder="@separate_folder",
            ),
        },
        "handlers": [{"_target_": "StatsHandler", "iteration_log": False}],
        "evaluator": _evaluator(),
        "checkpointloader": {
            "_target_": "CheckpointLoader",
            "load_path": "$@bundle_root + '/models/model.pt'",
            "load_dict": {"model": "@network"},
        },
        "initialize": [
            "$monai.utils.set_determinism(seed=123)",
            "$@checkpointloader(@evaluator) if @load_pretrain else None",
        ],
        "run": ["$@evaluator.run()"],
    }
    if weights == "ts":
        inference["network_def"] = "$torch.jit.load(@bundle_root + '/models/model.ts')"
        del inference["checkpointloader"]
        inference["initialize"] = ["$monai.utils.set_determinism(seed=123)"]
    metadata = _metadata(
        version="0.5.9",
        name="Spleen CT segmentation",
        task="Decathlon spleen segmentation",
        description="A pre-trained model for volumetric (3D) segmentation of the spleen "
        "from CT image",
        modality="CT",
        image_format="hounsfield",
        in_names=["image"],
        out_names=["background", "spleen"],
        roi=roi,
        out_range=[0, 1],
    )
    torch.manual_seed(seed)
    network = UNet(**{k: v for k, v in network_def.items() if k != "_target_"})
    if fit_steps:
        fit_to_intensity_bands(network, 1, 2, steps=fit_steps, seed=seed)
    else:
        balance_final_bias(network, 1, seed)
    _save_weights(network, folder, weights, torch.zeros(1, 1, 16, 16, 16))
    return _write(folder, metadata, inference)


def write_wholebody_like(
    root: str | Path,
    *,
    name: str = "wholeBody_ct_segmentation",
    init_filters: int = 8,
    out_channels: int = 105,
    roi: tuple[int, int, int] = (32, 32, 32),
    highres: bool = True,
    sw_batch_size: int = 1,
    seed: int = 1,
) -> Path:
    """wholeBody_ct_segmentation: SegResNet, 105 classes; argmax, then Invertd (nearest).

    Real sizes: ``init_filters=32, roi=(96, 96, 96)``; ``highres=True`` is the 1.5 mm
    model (``model.pt``), ``False`` the 3.0 mm one (``model_lowres.pt``), as the real
    ``displayable_configs#highres`` flag selects.
    """
    from monai.networks.nets import SegResNet

    folder = Path(root) / name
    network_def = {
        "_target_": "SegResNet",
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": out_channels,
        "init_filters": init_filters,
        "blocks_down": [1, 2, 2, 4],
        "blocks_up": [1, 1, 1],
        "dropout_prob": 0.2,
    }
    inference = {
        "displayable_configs": {
            "highres": highres,
            "sw_overlap": 0.25,
            "sw_batch_size": sw_batch_size,
        },
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "sampledata",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii.gz')))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "pixdim": "$[1.5, 1.5, 1.5] if @displayable_configs#highres else [3.0, 3.0, 3.0]",
        "modelname": "$'model.pt' if @displayable_configs#highres else 'model_lowres.pt'",
        "network_def": network_def,
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image"},
                {"_target_": "EnsureTyped", "keys": "image"},
                {"_target_": "EnsureChannelFirstd", "keys": "image"},
                {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
                {"_target_": "Spacingd", "keys": "image", "pixdim": "@pixdim", "mode": "bilinear"},
                {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True},
                {"_target_": "ScaleIntensityd", "keys": "image", "minv": -1.0, "maxv": 1.0},
            ],
        },
        **_data(num_workers=1),
        "inferer": _sliding_window(
            roi,
            "@displayable_configs#sw_batch_size",
            "@displayable_configs#sw_overlap",
            padding_mode="replicate",
            mode="gaussian",
            device="$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        ),
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
                {
                    "_target_": "Invertd",
                    "keys": "pred",
                    "transform": "@preprocessing",
                    "orig_keys": "image",
                    "meta_key_postfix": "meta_dict",
                    "nearest_interp": True,
                    "to_tensor": True,
                },
                {
                    "_target_": "SaveImaged",
                    "keys": "pred",
                    "meta_keys": "pred_meta_dict",
                    "output_dir": "@output_dir",
                },
            ],
        },
        **_evaluate(_handlers("$@bundle_root + '/models/' + @modelname")),
    }
    metadata = _metadata(
        version="0.2.5",
        name="Whole body CT segmentation",
        task="TotalSegmentator Segmentation",
        description="A pre-trained SegResNet model for volumetric (3D) segmentation of the "
        "104 whole body segments",
        modality="CT",
        image_format="hounsfield",
        in_names=["image"],
        out_names=list(WHOLEBODY_CLASSES[:out_channels]),
        roi=roi,
        out_range=[0, out_channels - 1],
    )
    torch.manual_seed(seed)
    network = SegResNet(**{k: v for k, v in network_def.items() if k != "_target_"})
    balance_final_bias(network, 1, seed)
    folder.joinpath("models").mkdir(parents=True, exist_ok=True)
    torch.save(
        network.state_dict(), folder / "models" / ("model.pt" if highres else "model_lowres.pt")
    )
    return _write(folder, metadata, inference)


#: The BraTS bundle's Lambdad: ET -> 4, else TC -> 1, else WT -> 2 (BraTS label values).
BRATS_LAMBDA = (
    "$lambda x: torch.where(x[[2]] > 0, 4, torch.where(x[[0]] > 0, 1, "
    "torch.where(x[[1]] > 0, 2, 0)))"
)


def write_brats_like(
    root: str | Path,
    *,
    name: str = "brats_mri_segmentation",
    init_filters: int = 8,
    roi: tuple[int, int, int] = (32, 32, 32),
    cases: list[list[str]] | None = None,
    label_lambda: str | None = BRATS_LAMBDA,
    seed: int = 2,
) -> Path:
    """brats_mri_segmentation: SegResNet, 4 MR channels stacked, sigmoid on 3 channels.

    ``cases`` are the ``testing`` entries of ``configs/datalist.json``: per case the
    four file names (T1c, T1, T2, FLAIR) relative to ``dataset_dir``. Real sizes:
    ``init_filters=16, roi=(240, 240, 160)``. ``label_lambda=None`` drops the ``Lambdad``
    (older versions of the bundle, which saved the 3 thresholded channels).
    """
    from monai.networks.nets import SegResNet

    folder = Path(root) / name
    network_def = {
        "_target_": "SegResNet",
        "blocks_down": [1, 2, 2, 4],
        "blocks_up": [1, 1, 1],
        "init_filters": init_filters,
        "in_channels": 4,
        "out_channels": 3,
        "dropout_prob": 0.2,
    }
    post = [
        {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
        {
            "_target_": "Invertd",
            "keys": "pred",
            "transform": "@preprocessing",
            "orig_keys": "image",
            "meta_keys": "pred_meta_dict",
            "nearest_interp": False,
            "to_tensor": True,
        },
        {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5},
        {"_target_": "Lambdad", "keys": "pred", "func": label_lambda},
        {
            "_target_": "SaveImaged",
            "keys": "pred",
            "meta_keys": "pred_meta_dict",
            "output_dir": "@output_dir",
            "output_postfix": "seg",
            "output_dtype": "uint8",
            "resample": False,
            "squeeze_end_dims": True,
        },
    ]
    if label_lambda is None:
        post.pop(3)
    inference = {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "ckpt_dir": "$@bundle_root + '/models'",
        "output_dir": "$@bundle_root + '/eval'",
        "data_list_file_path": "$@bundle_root + '/configs/datalist.json'",
        "dataset_dir": "/workspace/data/medical/brats2018challenge",
        "test_datalist": "$monai.data.load_decathlon_datalist(@data_list_file_path, "
        "data_list_key='testing', base_dir=@dataset_dir)",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "amp": True,
        "network_def": network_def,
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image", "image_only": False},
                {
                    "_target_": "NormalizeIntensityd",
                    "keys": "image",
                    "nonzero": True,
                    "channel_wise": True,
                },
            ],
        },
        **_data(shuffle=True, data="@test_datalist"),
        "inferer": _sliding_window(roi, 1, 0.5),
        "postprocessing": {"_target_": "Compose", "transforms": post},
        **_evaluate(_handlers()),
    }
    metadata = _metadata(
        version="0.5.2",
        name="BraTS MRI segmentation",
        task="Multimodal Brain Tumor segmentation",
        description="A pre-trained model for volumetric (3D) segmentation of brain tumor "
        "subregions from multimodal MRIs based on BraTS 2018 data",
        modality="MR",
        image_format="magnitude",
        in_names=["T1c", "T1", "T2", "FLAIR"],
        out_names=["Tumor core", "Whole tumor", "Enhancing tumor"],
        roi=roi,
        out_range=[0, 1],
    )
    torch.manual_seed(seed)
    network = SegResNet(**{k: v for k, v in network_def.items() if k != "_target_"})
    balance_final_bias(network, 4, seed)
    _save_weights(network, folder, "pt", None)
    _write(folder, metadata, inference)
    datalist = {"testing": [{"image": list(case)} for case in (cases or [])]}
    (folder / "configs" / "datalist.json").write_text(json.dumps(datalist, indent=4) + "\n")
    return folder


#: The custom network of :func:`write_scripts_bundle` (its ``scripts/networks/tiny.py``).
SCRIPTS_NETWORK = '''
"""A small custom 3D network, as a bundle's own scripts/ package would ship one."""

import torch
from torch import nn


class TinySegNet(nn.Module):
    """Two 3x3x3 convolutions (one strided), upsampling, a 1x1x1 head."""

    flavour = "{flavour}"

    def __init__(self, in_channels: int = 1, out_channels: int = 4, features: int = 8):
        super().__init__()
        self.encode = nn.Sequential(
            nn.Conv3d(in_channels, features, 3, padding=1), nn.PReLU(),
            nn.Conv3d(features, {width}, 3, stride=2, padding=1), nn.PReLU(),
        )
        self.decode = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        self.head = nn.Conv3d({width} + in_channels, out_channels, 1)

    def forward(self, x):
        y = self.decode(self.encode(x))
        return self.head(torch.cat([y, x], dim=1))
'''


def write_scripts_bundle(
    root: str | Path,
    *,
    name: str = "renalStructures_tiny_segmentation",
    flavour: str = "a",
    width: int = 8,
    roi: tuple[int, int, int] = (32, 32, 32),
    fit_steps: int = 40,
    seed: int = 3,
) -> Path:
    """A bundle whose network comes from its own ``scripts`` package (after renal UNesT).

    ``flavour`` and ``width`` make two bundles whose ``scripts.networks.tiny.TinySegNet``
    differ (class attribute and layer sizes), to test two such bundles in one process.
    """
    import importlib.util

    folder = Path(root) / name
    package = folder / "scripts" / "networks"
    package.mkdir(parents=True, exist_ok=True)
    (folder / "scripts" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    source = textwrap.dedent(SCRIPTS_NETWORK).replace("{flavour}", flavour)
    source = source.replace("{width}", str(width))
    (package / "tiny.py").write_text(source)
    network_def = {
        "_target_": "scripts.networks.tiny.TinySegNet",
        "in_channels": 1,
        "out_channels": 4,
    }
    inference = {
        "imports": ["$import glob", "$import os"],
        "bundle_root": f"/models/{name}",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "$@bundle_root + './dataset/spleen'",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/*.nii.gz')))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": network_def,
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image"},
                *_ct_grid_transforms(
                    "image",
                    (1.0, 1.0, 1.0),
                    {"a_min": -175, "a_max": 250, "b_min": 0.0, "b_max": 1.0},
                    channel_dim="no_channel",
                ),
            ],
        },
        **_data(),
        "inferer": _sliding_window(roi, 4, 0.5),
        "postprocessing": {"_target_": "Compose", "transforms": _softmax_invert_argmax("image")},
        "handlers": _handlers(strict="True"),
        "evaluator": _evaluator(amp=False),
        "evaluating": [
            "$setattr(torch.backends.cudnn, 'benchmark', True)",
            "$@evaluator.run()",
        ],
    }
    metadata = _metadata(
        version="0.2.5",
        name="Renal structures tiny segmentation",
        task="Renal segmentation with a custom network",
        description="A custom network from the bundle's scripts/ package",
        modality="CT",
        image_format="hounsfield",
        in_names=["image"],
        out_names=["background", "kidney cortex", "medulla", "pelvis"],
        roi=roi,
        out_range=[0, 3],
    )
    spec = importlib.util.spec_from_file_location(
        f"_bundle_factory_tiny_{flavour}", package / "tiny.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(seed)
    network = module.TinySegNet(in_channels=1, out_channels=4)
    if fit_steps:
        fit_to_intensity_bands(network, 1, 4, steps=fit_steps, seed=seed)
    else:
        balance_final_bias(network, 1, seed)
    _save_weights(network, folder, "pt", None)
    return _write(folder, metadata, inference)


def _blob_image(shape, affine, seed: int, background: float, levels, noise: float):
    """Ellipsoidal body with spheres of other intensities, smooth-ish noise (float32)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    mm = grid @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
    centre = mm.reshape(-1, 3).mean(axis=0)
    extent = np.ptp(mm.reshape(-1, 3), axis=0) / 2
    image = np.full(shape, background, dtype=np.float32)
    body = (((mm - centre) / (0.9 * extent)) ** 2).sum(axis=-1) <= 1
    image[body] = levels[0]
    for level in levels[1:]:
        spot = centre + rng.uniform(-0.4, 0.4, 3) * extent
        radius = rng.uniform(0.15, 0.3) * extent.min()
        image[np.linalg.norm(mm - spot, axis=-1) <= radius] = level
    from scipy import ndimage

    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape), 2.0)
    image += (noise * texture / max(float(texture.std()), 1e-6)).astype(np.float32)
    return image


def write_ct_phantom(
    path: str | Path, shape=(64, 60, 40), affine=None, seed: int = 0, dtype=np.int16
) -> Path:
    """A CT-like NIfTI (HU): air, a soft-tissue body, brighter and darker organs, noise."""
    affine = np.asarray(affine if affine is not None else np.diag([0.8, 0.9, 2.5, 1.0]))
    image = _blob_image(shape, affine, seed, -1000.0, (30.0, 120.0, -40.0, 60.0, 200.0), 25.0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.round(image).astype(dtype), affine), path)
    return path


def write_mr_phantom(
    folder: str | Path, case: str = "case", shape=(48, 44, 40), affine=None, seed: int = 0
) -> list[str]:
    """Four co-registered MR-like NIfTI files (T1c, T1, T2, FLAIR); returns their names."""
    affine = np.asarray(affine if affine is not None else np.diag([1.0, 1.0, 1.0, 1.0]))
    folder = Path(folder)
    (folder / case).mkdir(parents=True, exist_ok=True)
    names = []
    for index, sequence in enumerate(("t1ce", "t1", "t2", "flair")):
        levels = tuple(200.0 + 90.0 * ((index * 7 + k * 3) % 5) for k in range(5))
        image = np.clip(_blob_image(shape, affine, seed, 0.0, levels, 20.0), 0, None)
        image[image < 40] = 0  # zero background, as skull-stripped BraTS volumes
        name = f"{case}/{case}_{sequence}.nii.gz"
        nib.save(nib.Nifti1Image(image.astype(np.float32), affine), folder / name)
        names.append(name)
    return names
