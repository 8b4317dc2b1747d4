"""``brain-mask``: deepbet's two-stage T1 brain extraction, run as its authors run it.

deepbet (Fisch et al., MIT licence, ``pip install deepbet``) ships two TorchScript
networks in its wheel (``data/models/bbox_model.pt`` and ``model.pt``); napari-medseg
loads them from the installed package (the ``brain`` extra) and does not ship them.
The steps, from deepbet 1.0.2's ``BrainExtraction.run``:

1. the scan in RAS voxel order (flips and transposes only, like nibabel's
   ``as_closest_canonical``), NaN as 0;
2. **box stage**: the scan resized to 128^3 (``nearest-exact``); intensity clamped to its
   0.5 %-99.5 % quantiles (of the 128^3 copy) scaled to [0, 1], then z-scored and mapped
   to ``0.226 z + 0.449``; the box network's channel 1 > 0.5, largest 26-connected
   component; its bounding box (rows whose mean exceeds 0.02) scaled to the scan and
   widened by 10 % of its size on each side;
3. **mask stage**: the box of the scan resized to 256^3, normalised with the same
   quantiles, the mask network's channel 1 resized back to the box (``nearest-exact``);
4. threshold 0.5; inside the box the largest 26-connected component with its holes
   (voids) filled;

then back to the scan's voxel order. Labels: 0 background, 1 brain.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_medseg.labels.editing import keep_largest_component
from napari_medseg.models.build import check_weights_file, load_torchscript
from napari_medseg.models.errors import ModelLoadError
from napari_medseg.models.licence import licence_details
from napari_medseg.models.loaded import LoadedModel, RunRequest, RunResult
from napari_medseg.models.preprocess import check_channels, reorient
from napari_medseg.models.spec import ModelSpec
from napari_medseg.volume import Volume

#: Side of the box stage's cube and of the mask stage's cube, in voxels.
SMALL, LARGE = 128, 256

#: Install hint shown when deepbet is missing.
INSTALL_HINT = "Install it with: pip install 'napari-medseg[brain]' (or pip install deepbet)."


def deepbet_models_folder() -> Path:
    """Folder of deepbet's TorchScript files (``site-packages/data/models``), found
    without importing deepbet; ``ModelLoadError`` when deepbet is not installed."""
    try:
        found = importlib.util.find_spec("deepbet")
    except (ImportError, ValueError):
        found = None
    if found is None or not found.origin:
        raise ModelLoadError(
            "brain-mask", "needs the deepbet package, which is not installed.", INSTALL_HINT
        )
    return Path(found.origin).resolve().parents[1] / "data" / "models"


def load_deepbet(spec: ModelSpec, origin: str = "") -> LoadedModel:
    """The two networks (checked against the spec's SHA-256s) and the runner."""
    import torch

    folder = deepbet_models_folder()
    pipeline = spec.pipeline
    networks = {}
    digests = {}
    for key, name in (("bbox", "bbox_model.pt"), ("mask", "model.pt")):
        path = folder / name
        digests[key] = check_weights_file(path, str(pipeline.get(f"{key}_sha256", "")))
        networks[key] = load_torchscript(path)
    network = torch.nn.ModuleDict(networks).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    details = {
        "network": "deepbet TorchScript (box + mask)",
        "weights": str(folder),
        "weights_sha256": digests["mask"],
        "bbox_weights_sha256": digests["bbox"],
        "pipeline": dict(pipeline),
        **licence_details(spec),
    }
    return LoadedModel(
        spec=spec,
        network=network,
        preprocess=_no_preprocess,
        source=origin or spec.name,
        details=details,
        runner=run_deepbet,
    )


def _no_preprocess(channels: Sequence[Volume]):  # the runner does it all
    raise NotImplementedError("brain-mask runs its own pipeline")


def _normalise(x, low, high):
    x = ((x - low) / (high - low)).clamp(0, 1)
    return 0.226 * (x - x.mean()) / x.std() + 0.449


def _box_with_margin(mask_small, shape, margin: float = 0.1) -> tuple[slice, ...]:
    """deepbet's bounding box: rows of mean > 0.02, scaled to ``shape``, widened."""
    import torch

    ranges = [torch.where(mask_small.mean(dims) > 0.02)[0] for dims in [(1, 2), (0, 2), (0, 1)]]
    if not all(r.numel() for r in ranges):
        raise ValueError("no brain found by the box stage: is this a T1-weighted head scan?")
    centre = torch.tensor([(r.max() + 1 + r.min()) / 2 for r in ranges])
    size = torch.tensor([(r.max() + 1) - r.min() for r in ranges])
    scale = torch.tensor(shape) / torch.tensor(mask_small.shape)
    centre, size = (scale * centre).round(), ((1 + 2 * margin) * scale * size).round()
    return tuple(
        slice(max(0, int(c - s / 2)), min(n, int(c + s / 2)))
        for c, s, n in zip(centre, size, shape, strict=True)
    )


def run_deepbet(network, channels: Sequence[Volume], request: RunRequest) -> RunResult:
    """deepbet's pipeline (module notes) on one T1; labels on the scan's grid."""
    import torch
    import torch.nn.functional as F

    from napari_medseg.progress import raise_if_cancelled

    started = time.perf_counter()
    (volume,) = check_channels(channels, 1, "brain-mask", ("T1",))
    ras, _ = reorient(volume.array, volume.affine, "RAS")
    device = request.device
    x = torch.nan_to_num(torch.from_numpy(np.array(ras, dtype=np.float32))).to(device)
    if request.progress:
        request.progress(0, 2)
    raise_if_cancelled(request.cancel, "segmentation cancelled")
    prepared = time.perf_counter()
    with torch.inference_mode():
        small = F.interpolate(x[None, None], (SMALL,) * 3, mode="nearest-exact")[0, 0]
        low, high = small.quantile(0.005), small.quantile(0.995)
        box_probability = network["bbox"](_normalise(small, low, high)[None, None])[0, 1]
        box_mask = keep_largest_component((box_probability > 0.5).cpu().numpy())
        box = _box_with_margin(torch.from_numpy(box_mask.astype(np.float32)), tuple(x.shape))
        if request.progress:
            request.progress(1, 2)
        raise_if_cancelled(request.cancel, "segmentation cancelled")
        crop = F.interpolate(x[box][None, None], (LARGE,) * 3, mode="nearest-exact")[0, 0]
        probability = network["mask"](_normalise(crop, low, high)[None, None])[0, 1]
        inside = F.interpolate(probability[None, None], tuple(x[box].shape), mode="nearest-exact")[
            0, 0
        ]
    if request.progress:
        request.progress(2, 2)
    networked = time.perf_counter()
    mask = np.zeros(x.shape, dtype=bool)
    inside_mask = keep_largest_component(inside.cpu().numpy() > 0.5)
    mask[box] = ndimage.binary_fill_holes(inside_mask)
    labels_ras = mask.astype(np.uint8)
    # back to the scan's voxel order: undo the flips/transposes of ``reorient``
    labels = _from_ras(labels_ras, volume)
    finished = time.perf_counter()
    return RunResult(
        labels=labels,
        probabilities=None,
        model_shape=(LARGE,) * 3,
        settings={"box_voxels": [[s.start, s.stop] for s in box]},
        timings_s={
            "preprocess": prepared - started,
            "network": networked - prepared,
            "postprocess": finished - networked,
        },
    )


def _from_ras(labels_ras: np.ndarray, volume: Volume) -> np.ndarray:
    """A map in RAS voxel order back in ``volume``'s own voxel order: written through
    the flipped/transposed view :func:`reorient` gives of the output."""
    out = np.empty(volume.shape, dtype=labels_ras.dtype)
    view, _ = reorient(out, volume.affine, "RAS")
    view[...] = labels_ras
    return out
