"""Convert the published pretrained networks into the project's model format.

Reads the authors' files as kept in ``../shared/models-src`` (see its README):

* brainchop's MeshNet models (TensorFlow.js layers format: ``model.json`` topology +
  float32 ``.bin`` weights, MIT licence, ``neuroneural/brainchop`` at commit
  4c87885f3a2a8835e260d521dcec922b58d91d41);
* the 2D lung U-Net of ``knottwill/UNet-Small`` (a PyTorch ``state_dict``, MIT
  licence, commit 4e64091e5dd92bdb291816c8952bbc15288180ea);

and writes, into ``src/napari_medseg/models/default/``, for each catalogue model a
``state_dict`` file ``<name>.pt`` of the project's own network
(:mod:`napari_medseg.models.networks`), its spec ``<name>.json`` (labels, colours,
pipeline settings from ``brainchop-parameters.js``, licence, source, SHA-256), and the
authors' licence notices verbatim. Run it again and the same bytes come out
(``torch.save`` of the same tensors; JSON with sorted labels)::

    python scripts/convert_pretrained.py [--source ../shared/models-src] [--out DIR]

tfjs stores a Conv3D kernel as ``[kD, kH, kW, C_in, C_out]``; PyTorch wants
``[C_out, C_in, kD, kH, kW]``: ``permute(4, 3, 0, 1, 2)``.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "models-src"
DEFAULT_OUT = REPO / "src" / "napari_medseg" / "models" / "default"

BRAINCHOP_SOURCE = (
    "neuroneural/brainchop (https://github.com/neuroneural/brainchop), commit "
    "4c87885f3a2a8835e260d521dcec922b58d91d41, public/models/{folder}"
)
UNET_SOURCE = (
    "knottwill/UNet-Small (https://github.com/knottwill/UNet-Small), commit "
    "4e64091e5dd92bdb291816c8952bbc15288180ea, Models/UNet_wdk24.pt"
)

#: Brain MR domain: a whole head, millimetre voxels (the conform step resamples).
HEAD_DOMAIN = {
    "body_region": "head",
    "in_plane_spacing_mm": [0.4, 1.6],
    "slice_spacing_mm": [0.4, 2.0],
    "in_plane_fov_mm": [160.0, 300.0],
    "cranio_caudal_fov_mm": [100.0, 300.0],
    "min_slices": 60,
}

#: Catalogue name -> brainchop folder, title, pipeline (brainchop-parameters.js), texts.
MESHNET_MODELS = {
    "brain-structures": {
        "folder": "model30chan18cls",
        "title": "Brain structures, T1 MR (MeshNet, 17 FreeSurfer aseg structures)",
        "pipeline": {"normalization": "minmax", "auto_threshold": 0.2, "crop_padding": 0},
        "modality": "MR",
        "description": (
            "Cerebral white matter and cortex, ventricles, cerebellum, thalamus, caudate, "
            "putamen, pallidum, brainstem, hippocampus, amygdala, accumbens and ventral DC "
            "on a T1-weighted brain MR (FreeSurfer aseg-style labels), by brainchop's "
            "MeshNet model30chan18cls."
        ),
        "intended_use": (
            "Research segmentation of subcortical structures and white/grey matter on "
            "T1-weighted adult brain MR. Not for clinical decisions; not for CT, other MR "
            "contrasts, or brains with large lesions."
        ),
    },
    "brain-tissue": {
        # measured choice (model card): on the MNI152 template model5_gw_ae gives Dice
        # WM 0.81 / GM 0.80 in 17 s, model20chan3cls 0.75 / 0.73 in 41 s
        "folder": "model5_gw_ae",
        "colormap": "colormap3.json",
        "title": "Grey / white matter, T1 MR (MeshNet)",
        "pipeline": {"normalization": "minmax", "auto_threshold": 0.0, "crop_padding": 18},
        "modality": "MR",
        "description": (
            "White matter and grey matter on a T1-weighted brain MR, by brainchop's "
            "MeshNet model5_gw_ae ('Tissue GWM (light)')."
        ),
        "intended_use": (
            "Research tissue segmentation of T1-weighted adult brain MR. Not for clinical "
            "decisions; cerebrospinal fluid is not a class (it is background)."
        ),
    },
    "brain-regions": {
        "folder": "model21_104class",
        "title": "Brain regions, T1 MR (MeshNet, 103-region aparc+aseg atlas)",
        "pipeline": {"normalization": "minmax", "auto_threshold": 0.0, "crop_padding": 0},
        "modality": "MR",
        "description": (
            "Desikan-Killiany cortical regions and subcortical structures (FreeSurfer "
            "aparc+aseg style, 103 regions) on a T1-weighted brain MR, by brainchop's "
            "MeshNet model21_104class. Needs about 4 GB of memory."
        ),
        "intended_use": (
            "Research parcellation of T1-weighted adult brain MR. Not for clinical "
            "decisions; region borders are approximate."
        ),
    },
    "skull-strip": {
        "folder": "mindgrab",
        "title": "Skull strip, any head scan (MeshNet mindgrab)",
        "pipeline": {"normalization": "minmax", "auto_threshold": 0.5, "crop_padding": 20},
        "modality": "",
        "description": (
            "Intracranial (brain) mask of a head scan of any modality (T1, T2, FLAIR, "
            "DWI, EPI, CT...), by brainchop's omnimodal MeshNet 'mindgrab'."
        ),
        "intended_use": (
            "Research brain extraction (skull stripping) before further analysis. Not for "
            "clinical decisions."
        ),
    },
}


def read_tfjs_layers(folder: Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Conv3D/Activation layer configs and the weights by name of a tfjs layers model."""
    model = json.loads((folder / "model.json").read_text())
    topology = model["modelTopology"]
    config = topology.get("model_config", topology)["config"]
    layers = [layer for layer in config["layers"] if layer["class_name"] != "InputLayer"]
    weights: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        blob = b"".join((folder / path).read_bytes() for path in group["paths"])
        offset = 0
        for entry in group["weights"]:
            if entry.get("dtype", "float32") != "float32" or "quantization" in entry:
                raise ValueError(f"{folder}: weight {entry['name']} is not plain float32")
            count = int(np.prod(entry["shape"]))
            array = np.frombuffer(blob, dtype="<f4", count=count, offset=offset)
            weights[entry["name"]] = array.reshape(entry["shape"]).copy()
            offset += 4 * count
        if offset != len(blob):
            raise ValueError(f"{folder}: {len(blob) - offset} bytes of weights left unread")
    return layers, weights


def meshnet_from_tfjs(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """MeshNet args and its state_dict, converted from a brainchop tfjs model."""
    from napari_medseg.models.networks import MeshNet

    layers, weights = read_tfjs_layers(folder)
    convs = [layer for layer in layers if layer["class_name"] == "Conv3D"]
    activations = {
        layer["config"]["activation"] for layer in layers if layer["class_name"] == "Activation"
    }
    if len(activations) != 1:
        raise ValueError(f"{folder}: expected one activation kind, got {activations}")
    hidden, classifier = convs[:-1], convs[-1]
    args = {
        "n_classes": int(classifier["config"]["filters"]),
        "channels": int(hidden[0]["config"]["filters"]),
        "dilations": [int(layer["config"]["dilation_rate"][0]) for layer in hidden],
        "activation": activations.pop(),
        # brainchop applies instance normalisation after the convolutions named *_gn
        "instance_norm": all(layer["config"]["name"].endswith("_gn") for layer in hidden),
        "bias": bool(hidden[0]["config"]["use_bias"]),
    }
    network = MeshNet(**args)
    hidden_convs = [m for m in network.features if isinstance(m, torch.nn.Conv3d)]
    state: dict[str, torch.Tensor] = {}
    names = {id(m): n for n, m in network.named_modules()}
    for layer, module in zip(
        [*hidden, classifier], [*hidden_convs, network.classifier], strict=True
    ):
        name = layer["config"]["name"]
        if layer["config"].get("padding") != "same" or layer["config"]["strides"] != [1, 1, 1]:
            raise ValueError(f"{folder}: layer {name} is not a stride-1 'same' convolution")
        kernel = torch.from_numpy(weights[f"{name}/kernel"]).permute(4, 3, 0, 1, 2).contiguous()
        state[f"{names[id(module)]}.weight"] = kernel
        if layer["config"]["use_bias"]:
            state[f"{names[id(module)]}.bias"] = torch.from_numpy(weights[f"{name}/bias"])
    network.load_state_dict(state, strict=True)
    return args, network.state_dict()


def labels_from_colormap(folder: Path, name: str = "colormap.json") -> list[dict]:
    """Spec labels from brainchop's colormap file (background first)."""
    colormap = json.loads((folder / name).read_text())
    labels = []
    for value, name in enumerate(colormap["labels"]):
        colour = [int(colormap[c][value]) for c in "RGB"]
        if value == 0:
            name, colour = "background", [0, 0, 0]
        labels.append({"value": value, "name": str(name), "color": colour})
    return labels


def save_state(state: dict[str, torch.Tensor], path: Path) -> str:
    """Write a state_dict reproducibly (same tensors, same bytes); return its SHA-256."""
    import hashlib

    buffer = io.BytesIO()
    torch.save({k: v.detach().clone().contiguous() for k, v in state.items()}, buffer)
    data = buffer.getvalue()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def write_spec(spec: dict, path: Path) -> None:
    from napari_medseg.models.spec import ModelSpec

    ModelSpec.from_dict(spec, base_dir=path.parent)  # validate before writing
    path.write_text(json.dumps(spec, indent=2) + "\n")


def convert_meshnet(name: str, info: dict, source: Path, out: Path) -> None:
    folder = source / "brainchop" / "models" / info["folder"]
    args, state = meshnet_from_tfjs(folder)
    labels = labels_from_colormap(folder, info.get("colormap", "colormap.json"))
    if len(labels) != args["n_classes"]:
        raise ValueError(f"{folder}: {len(labels)} label names for {args['n_classes']} outputs")
    digest = save_state(state, out / f"{name}.pt")
    spec = {
        "name": name,
        "title": info["title"],
        "description": info["description"],
        "spatial_dims": 3,
        "in_channels": 1,
        "channel_names": [info["modality"] or "head scan"],
        "labels": labels,
        "network": {"kind": "medseg", "name": "MeshNet", "args": args},
        "weights": f"{name}.pt",
        "weights_sha256": digest,
        "roi_size": [0, 0, 0],
        "overlap": 0.0,
        "blend_mode": "constant",
        "sw_batch_size": 1,
        "activation": "softmax",
        "modality": info["modality"],
        "domain": HEAD_DOMAIN,
        "model_card": "MODEL_CARD_PRETRAINED.md",
        "pipeline": {"kind": "brainchop", **info["pipeline"], "keep_largest_component": True},
        "license": "MIT",
        "license_file": "LICENSE-brainchop.txt",
        "intended_use": info["intended_use"],
        "source": BRAINCHOP_SOURCE.format(folder=info["folder"]),
    }
    write_spec(spec, out / f"{name}.json")
    print(f"{name}: {sum(v.numel() for v in state.values())} parameters, sha256 {digest[:12]}")


def convert_lung_unet(source: Path, out: Path) -> None:
    from napari_medseg.models.networks import LungUNet2D

    weights = source / "unet-small" / "Models" / "UNet_wdk24.pt"
    state = torch.load(weights, map_location="cpu", weights_only=True)
    network = LungUNet2D()
    network.load_state_dict(state, strict=True)
    digest = save_state(network.state_dict(), out / "lungs-ct.pt")
    spec = {
        "name": "lungs-ct",
        "title": "Lungs, chest CT (2D U-Net, UNet-Small)",
        "description": (
            "Both lungs together on an axial chest CT, slice by slice, by the small 2D "
            "U-Net of knottwill/UNet-Small (trained on 8 cases of the LCTSC 2017 lung CT "
            "challenge). Leaves out the trachea and may leave out tumour next to the "
            "bronchi."
        ),
        "spatial_dims": 2,
        "in_channels": 1,
        "channel_names": ["CT"],
        "labels": [
            {"value": 0, "name": "background", "color": [0, 0, 0]},
            {"value": 1, "name": "lungs", "color": [197, 165, 145]},
        ],
        "network": {"kind": "medseg", "name": "LungUNet2D", "args": {}},
        "weights": "lungs-ct.pt",
        "weights_sha256": digest,
        # DICOM row/column order of the authors' slices: rows run posterior, columns left
        "target_orientation": "PLS",
        "target_spacing": [1.0, 1.0, 0.0],
        # the network sees raw stored values (HU + 1024, as LCTSC stores them)
        "intensity": {
            "kind": "scale_range",
            "a_min": -1024.0,
            "a_max": 0.0,
            "b_min": 0.0,
            "b_max": 1024.0,
            "clip": False,
        },
        "roi_size": [512, 512],
        "overlap": 0.25,
        "blend_mode": "gaussian",
        "sw_batch_size": 4,
        "activation": "sigmoid",
        "paint_order": [[0, 1]],
        "slice_axis": 2,
        "modality": "CT",
        "domain": {
            "body_region": "thorax",
            "in_plane_spacing_mm": [0.5, 1.5],
            "slice_spacing_mm": [0.5, 5.0],
            "in_plane_fov_mm": [250.0, 700.0],
        },
        "model_card": "MODEL_CARD_PRETRAINED.md",
        "license": "MIT",
        "license_file": "LICENSE-unet-small.txt",
        "intended_use": (
            "Research lung masks on adult chest CT (lung volume, a region for further "
            "analysis). Trained on 8 scans only: check every result. Not for clinical "
            "decisions."
        ),
        "source": UNET_SOURCE,
    }
    write_spec(spec, out / "lungs-ct.json")
    values = sum(v.numel() for v in network.state_dict().values())
    print(f"lungs-ct: {values} values, sha256 {digest[:12]}")


#: SHA-256 of the TorchScript files in the deepbet 1.0.2 wheel (checked on load).
DEEPBET_SHA256 = {
    "bbox_sha256": "39a7b2b5f799faa1391ea97bfcdc0b9299f20d84f2316a4ff8918dc4685e40aa",
    "mask_sha256": "de8ee7c69654d0dd3935dc4a5d84571d8ecf4637a6bfc01df399c4c2bc86e0fd",
}


def write_deepbet_spec(out: Path) -> None:
    """The spec of ``brain-mask``: its networks stay in the installed deepbet package."""
    spec = {
        "name": "brain-mask",
        "title": "Brain mask, T1 MR (deepbet; needs the brain extra)",
        "description": (
            "Brain mask (brain extraction) of a T1-weighted MR by deepbet's two networks: a "
            "box network at 128^3, then a mask network on the box at 256^3. The networks "
            "come from the deepbet package: pip install 'napari-medseg[brain]'."
        ),
        "spatial_dims": 3,
        "in_channels": 1,
        "channel_names": ["T1"],
        "labels": [
            {"value": 0, "name": "background", "color": [0, 0, 0]},
            {"value": 1, "name": "brain", "color": [250, 190, 212]},
        ],
        "network": {"kind": "torchscript"},
        "weights": "deepbet",
        "roi_size": [256, 256, 256],
        "modality": "MR",
        "domain": HEAD_DOMAIN,
        "model_card": "MODEL_CARD_PRETRAINED.md",
        "pipeline": {"kind": "deepbet", **DEEPBET_SHA256},
        "license": "MIT",
        "intended_use": (
            "Research brain extraction of T1-weighted adult brain MR (intracranial volume, "
            "skull stripping before further analysis). Not for clinical decisions."
        ),
        "source": "deepbet 1.0.2 on PyPI (https://github.com/wwu-mmll/deepbet), "
        "data/models/bbox_model.pt and model.pt of its wheel",
    }
    write_spec(spec, out / "brain-mask.json")
    print("brain-mask: spec written (networks from the deepbet package)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", nargs="*", help="catalogue names to convert (default: all)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = set(args.only or [*MESHNET_MODELS, "lungs-ct", "brain-mask"])
    for name, info in MESHNET_MODELS.items():
        if name in wanted:
            convert_meshnet(name, info, args.source, args.out)
    if "lungs-ct" in wanted:
        convert_lung_unet(args.source, args.out)
    if "brain-mask" in wanted:
        write_deepbet_spec(args.out)
    shutil.copyfile(args.source / "brainchop" / "LICENSE", args.out / "LICENSE-brainchop.txt")
    shutil.copyfile(args.source / "unet-small" / "LICENSE", args.out / "LICENSE-unet-small.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
