"""Tiny real models for the engine tests: MONAI UNets with saved weights, TorchScript modules.

Everything is written to a folder the test owns, as a user would have it on disk: a
``state_dict`` file plus a JSON spec, or a TorchScript file plus its sidecar spec.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from napari_medseg.labels.classes import LabelClass
from napari_medseg.models.spec import IntensitySpec, ModelSpec, NetworkSpec

#: Arguments of the tiny MONAI UNet the tests use (a few thousand parameters).
TINY_UNET = {"channels": [4, 8], "strides": [2], "num_res_units": 0}


def labels_for(n: int) -> tuple[LabelClass, ...]:
    """``n`` label classes: background then ``class1``..."""
    return tuple(LabelClass(v, "background" if v == 0 else f"class{v}") for v in range(n))


def tiny_unet(spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 3, seed: int = 0):
    """A tiny MONAI UNet with seeded random weights, in eval mode."""
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    network = UNet(spatial_dims, in_channels, out_channels, **TINY_UNET).eval()
    with torch.no_grad():  # larger weights than the default init: more varied argmax
        for parameter in network.parameters():
            parameter.mul_(3.0)
    return network


def write_unet_model(
    folder: Path,
    name: str = "tiny",
    spatial_dims: int = 3,
    in_channels: int = 1,
    out_channels: int = 3,
    roi_size: tuple[int, ...] = (16, 16, 16),
    seed: int = 0,
    **spec_fields,
) -> Path:
    """Save a tiny UNet's ``state_dict`` and its spec JSON in ``folder``; return the spec path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    network = tiny_unet(spatial_dims, in_channels, out_channels, seed)
    torch.save(network.state_dict(), folder / f"{name}.pt")
    args = {
        "spatial_dims": spatial_dims,
        "in_channels": in_channels,
        "out_channels": out_channels,
        **TINY_UNET,
    }
    fields = {
        "labels": labels_for(out_channels),
        "overlap": 0.25,
        "sw_batch_size": 2,
        **spec_fields,
    }
    spec = ModelSpec(
        name=name,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        network=NetworkSpec("monai", "UNet", args),
        weights=f"{name}.pt",
        roi_size=tuple(roi_size),
        **fields,
    )
    path = folder / f"{name}.json"
    spec.save_json(path)
    return path


class Threshold(torch.nn.Module):
    """Two-class logits ``(level - x, x - level)``: argmax labels voxels brighter than ``level``.

    Works for 2D and 3D windows; a deterministic network makes geometry tests exact.
    """

    def __init__(self, level: float) -> None:
        super().__init__()
        self.level = level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = x[:, :1]
        return torch.cat([self.level - first, first - self.level], dim=1)


def write_threshold_model(
    folder: Path,
    level: float = 0.5,
    name: str = "threshold",
    spatial_dims: int = 3,
    roi_size: tuple[int, ...] = (8, 8, 8),
    suffix: str = ".ts",
    **spec_fields,
) -> Path:
    """Script :class:`Threshold` to ``folder/name.ts`` with a sidecar spec; return the .ts path."""
    import warnings

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(Threshold(level)).save(str(path))
    fields = {"labels": labels_for(2), "overlap": 0.25, "sw_batch_size": 2, **spec_fields}
    spec = ModelSpec(
        name=name,
        spatial_dims=spatial_dims,
        in_channels=1,
        network=NetworkSpec("torchscript"),
        weights=path.name,
        roi_size=tuple(roi_size),
        intensity=fields.pop("intensity", IntensitySpec()),
        **fields,
    )
    spec.save_json(path.with_suffix(".json"))
    return path


def count_calls(network) -> list[int]:
    """Count forward calls of ``network`` with a forward hook; returns the live counter."""
    calls = [0]

    def hook(module, inputs, output):
        calls[0] += 1

    network.register_forward_hook(hook)
    return calls


def random_volume(shape, seed: int = 0) -> np.ndarray:
    """Smooth-ish random float32 volume (so a UNet's argmax makes regions, not noise)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), 1.5).astype(np.float32) * 5.0
