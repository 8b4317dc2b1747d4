"""Train the default models (3D and 2D MONAI U-Nets) on synthetic abdominal CT phantoms.

Reproduces the weights shipped in ``src/napari_medseg/models/default/``::

    python scripts/train_default_models.py --model 3d --seed 0 --threads 2
    python scripts/train_default_models.py --model 2d --seed 0 --threads 2

Every training image goes through the inference preprocessing
(:func:`napari_medseg.models.preprocess.prepare_spec_input` with the model's own spec),
and its labels through :func:`napari_medseg.resample.resample_labels` onto the same model
grid, so training and inference see identical inputs. Phantom seeds:

* training pool: ``TRAIN_SEED_BASE + i`` for ``i < pool`` (0, 1, 2, ...);
* validation during training: ``VALIDATION_SEED_BASE + i`` (100000, ...);
* held-out evaluation (``scripts/evaluate_default_models.py``): ``EVALUATION_SEED_BASE + i``
  (200000, ...).

The run is deterministic for a given seed, thread count and machine (torch deterministic
algorithms, seeded numpy/torch generators). Outputs, written atomically: the weights
(``<name>.pt``, a ``state_dict``), the spec (``<name>.json`` with the weights' SHA-256)
and a training log (``<name>.training.json``: command, seed, iterations, wall time,
machine, loss and validation Dice history).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_medseg.models.spec import IntensitySpec, ModelSpec, NetworkSpec
from napari_medseg.synthetic.phantom import PHANTOM_LABELS, make_phantom

LOG = logging.getLogger("train_default_models")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "src" / "napari_medseg" / "models" / "default"

TRAIN_SEED_BASE = 0
VALIDATION_SEED_BASE = 100_000
EVALUATION_SEED_BASE = 200_000

#: CT window mapped to [0, 1] (HU): fat (-100) to just above the brightest organ.
CT_WINDOW = IntensitySpec(
    kind="scale_range", a_min=-200.0, a_max=300.0, b_min=0.0, b_max=1.0, clip=True
)


@dataclass(frozen=True)
class Profile:
    """How one default model is built and trained.

    Attributes
    ----------
    name, title, description : str
        Spec fields.
    spatial_dims : int
        3 or 2 (2: axial slices of the RAS grid, slice axis 2).
    target_spacing : tuple of float
        Model grid voxel size in mm (0 keeps the scan's slice spacing for 2D).
    roi_size : tuple of int
        Sliding-window size at inference (model voxels).
    patch : tuple of int
        Training crop ``(X, Y, Z)`` in model voxels (Z = 1 for 2D).
    batch : int
        Crops per iteration.
    channels, strides : tuple of int
        UNet levels.
    iterations : int
        Default number of iterations.
    pool : int
        Training phantoms generated once and kept in memory.
    phantom_in_plane_mm : tuple of float or None
        Range the training phantoms' in-plane spacing is drawn from (None: the
        phantom's own 0.6-1.0 mm). Coarser than real scans only to save time.
    phantom_slice_mm : float or None
        Fixed slice spacing of the training phantoms (None: the phantom's own 1-5 mm).
    lr : float
        Adam learning rate at the start (polynomial decay to 0).
    """

    name: str
    title: str
    description: str
    spatial_dims: int
    target_spacing: tuple[float, float, float]
    roi_size: tuple[int, ...]
    patch: tuple[int, int, int]
    batch: int
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    iterations: int
    pool: int
    phantom_in_plane_mm: tuple[float, float] | None
    phantom_slice_mm: float | None
    lr: float = 2e-3
    num_res_units: int = 1
    sw_batch_size: int = 2
    overlap: float = 0.25


_DESCRIPTION = (
    "{dims} MONAI U-Net trained only on synthetic abdominal CT phantoms "
    "(napari_medseg.synthetic.phantom): body, liver, spleen, right and left kidney, liver/kidney "
    "tumours. For demonstration and testing of napari-medseg; it has never seen a real "
    "patient and is NOT for clinical or research use. See MODEL_CARD.md."
)

PROFILES: dict[str, Profile] = {
    "3d": Profile(
        name="phantom-abdomen-3d",
        title="Phantom abdomen CT, 3D U-Net (demo, synthetic data)",
        description=_DESCRIPTION.format(dims="3D"),
        spatial_dims=3,
        target_spacing=(3.0, 3.0, 3.0),
        roi_size=(96, 96, 64),
        patch=(80, 80, 64),
        batch=2,
        channels=(16, 32, 64, 128, 256),
        strides=(2, 2, 2, 2),
        iterations=1200,
        pool=120,
        phantom_in_plane_mm=(1.2, 2.0),
        phantom_slice_mm=None,
    ),
    "2d": Profile(
        name="phantom-abdomen-2d",
        title="Phantom abdomen CT, 2D U-Net on axial slices (demo, synthetic data)",
        description=_DESCRIPTION.format(dims="2D (axial slice by slice)"),
        spatial_dims=2,
        target_spacing=(1.5, 1.5, 0.0),
        roi_size=(256, 256),
        patch=(192, 192, 1),
        batch=8,
        channels=(16, 32, 64, 128, 256),
        strides=(2, 2, 2, 2),
        iterations=1500,
        pool=100,
        phantom_in_plane_mm=None,
        phantom_slice_mm=6.0,
        sw_batch_size=8,
    ),
}


#: Intended use of the phantom models (shown by `medseg models` and in provenance).
PHANTOM_USE = (
    "Demonstration and testing of the pipeline on synthetic abdominal phantoms. "
    "Its labels are not anatomy on real scans; not for research or clinical use."
)


def make_spec(profile: Profile, weights: str = "", weights_sha256: str = "") -> ModelSpec:
    """The :class:`ModelSpec` of a default model (weights file relative to the spec)."""
    return ModelSpec(
        name=profile.name,
        title=profile.title,
        description=profile.description,
        spatial_dims=profile.spatial_dims,
        in_channels=1,
        channel_names=("CT",),
        labels=PHANTOM_LABELS,
        network=NetworkSpec(
            kind="monai",
            name="UNet",
            args={
                "spatial_dims": profile.spatial_dims,
                "in_channels": 1,
                "out_channels": len(PHANTOM_LABELS),
                "channels": list(profile.channels),
                "strides": list(profile.strides),
                "num_res_units": profile.num_res_units,
            },
        ),
        weights=weights,
        weights_sha256=weights_sha256,
        target_orientation="RAS",
        target_spacing=profile.target_spacing,
        intensity=CT_WINDOW,
        roi_size=profile.roi_size,
        overlap=profile.overlap,
        blend_mode="gaussian",
        sw_batch_size=profile.sw_batch_size,
        activation="softmax",
        slice_axis=2,
        modality="CT",
        model_card="MODEL_CARD.md",
        license="BSD-3-Clause",
        intended_use=PHANTOM_USE,
        source="trained by napari-medseg's scripts/train_default_models.py on synthetic phantoms",
    )


def build_network(spec: ModelSpec):
    """The MONAI UNet a spec describes (random weights)."""
    from monai.networks.nets import UNet

    return UNet(**spec.network.args)


# -- data -------------------------------------------------------------------------------


def phantom_spacing(profile: Profile, seed: int) -> tuple[float | None, float | None, float | None]:
    """Spacing override of a training phantom (deterministic in the seed)."""
    in_plane = None
    if profile.phantom_in_plane_mm is not None:
        rng = np.random.default_rng([seed, 77])
        in_plane = float(rng.uniform(*profile.phantom_in_plane_mm))
    return (in_plane, in_plane, profile.phantom_slice_mm)


def model_grid_case(spec: ModelSpec, seed: int, spacing) -> tuple[np.ndarray, np.ndarray, dict]:
    """One phantom on the model grid: image ``(X, Y, Z)`` float32 and labels uint8.

    Made exactly as at inference: ``prepare_spec_input`` for the image,
    ``resample_labels`` (nearest neighbour) for the labels onto its grid.
    """
    from napari_medseg.models.preprocess import prepare_spec_input
    from napari_medseg.resample import resample_labels

    phantom = make_phantom(seed, spacing=spacing)
    model_input = prepare_spec_input(spec, [phantom.image])
    image = model_input.image[0].numpy()
    labels = resample_labels(
        phantom.labels.array, phantom.labels.affine, image.shape, model_input.affine
    )
    return image, labels, phantom.parameters


def _cache_key(spec: ModelSpec, seed: int, spacing) -> str:
    """Hash of everything a model-grid case depends on: the code making it, the spec's
    grid and intensity settings, the seed and the spacing override."""
    import napari_medseg.models.preprocess as preprocess
    import napari_medseg.resample as resample
    import napari_medseg.synthetic.phantom as phantom
    import napari_medseg.synthetic.shapes as phantom_shapes

    digest = hashlib.sha256()
    for module in (phantom, phantom_shapes, preprocess, resample):
        digest.update(Path(module.__file__).read_bytes())
    grid = (spec.target_orientation, spec.target_spacing, spec.intensity, seed, tuple(spacing))
    digest.update(repr(grid).encode())
    return digest.hexdigest()[:16]


def cached_case(spec: ModelSpec, seed: int, spacing, cache_dir: str) -> tuple[np.ndarray, ...]:
    """:func:`model_grid_case` (image, labels), kept in ``cache_dir`` when one is given.

    The cache only saves time when a run is restarted: its key covers the code and
    settings the case depends on, so a cached case is identical to a fresh one.
    """
    if not cache_dir:
        return model_grid_case(spec, seed, spacing)[:2]
    path = Path(cache_dir) / f"{spec.name}-{seed}-{_cache_key(spec, seed, spacing)}.npz"
    if path.is_file():
        with np.load(path) as data:
            return data["image"], data["labels"]
    image, labels, _ = model_grid_case(spec, seed, spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npz")
    np.savez(temporary, image=image, labels=labels)
    temporary.replace(path)
    return image, labels


class Pool:
    """Training cases on the model grid with per-class voxel lists for patch sampling.

    Crops of ``patch`` voxels are centred on a voxel of a randomly chosen class present
    in the case (odds ``class_weights``, by default tumour twice as likely as each other
    class) with probability ``foreground``, else on a uniformly random voxel. Volumes
    smaller than the patch are zero-padded (0 is air after the CT window, as the
    engine's padding).
    """

    CLASS_WEIGHTS = {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 1.0, 6: 2.0}

    def __init__(
        self,
        patch: tuple[int, int, int],
        foreground: float = 0.7,
        class_weights: dict[int, float] | None = None,
    ):
        self.patch = patch
        self.foreground = foreground
        self.class_weights = dict(class_weights or self.CLASS_WEIGHTS)
        self.images: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.class_voxels: list[dict[int, np.ndarray]] = []

    def add(self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> None:
        pad = [
            (max(0, p - n) // 2, max(0, p - n) - max(0, p - n) // 2)
            for n, p in zip(image.shape, self.patch, strict=True)
        ]
        image = np.pad(image, pad)
        labels = np.pad(labels, pad)
        voxels = {}
        for value in self.class_weights:
            flat = np.flatnonzero(labels == value)
            if flat.size > 20000:
                flat = np.sort(rng.choice(flat, 20000, replace=False))
            if flat.size:
                voxels[value] = flat
        self.images.append(np.ascontiguousarray(image, dtype=np.float32))
        self.labels.append(np.ascontiguousarray(labels, dtype=np.uint8))
        self.class_voxels.append(voxels)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One crop: image ``(X, Y, Z)`` float32 and labels uint8 of shape ``patch``."""
        case = int(rng.integers(len(self.images)))
        image, labels, voxels = self.images[case], self.labels[case], self.class_voxels[case]
        if voxels and rng.uniform() < self.foreground:
            classes = sorted(voxels)
            odds = np.array([self.class_weights[c] for c in classes])
            value = classes[int(rng.choice(len(classes), p=odds / odds.sum()))]
            flat = voxels[value][int(rng.integers(voxels[value].size))]
            centre = np.array(np.unravel_index(flat, labels.shape))
        else:
            centre = np.array([rng.integers(n) for n in labels.shape])
        # jitter so the class voxel is not always at the patch centre
        jitter = np.array([rng.integers(-(p // 4), p // 4 + 1) for p in self.patch])
        start = centre + jitter - np.array(self.patch) // 2
        start = np.clip(start, 0, np.array(labels.shape) - np.array(self.patch))
        window = tuple(slice(s, s + p) for s, p in zip(start, self.patch, strict=True))
        return image[window], labels[window]


# -- evaluation on the model grid -----------------------------------------------------------


def dice_per_class(prediction: np.ndarray, truth: np.ndarray, n_classes: int) -> dict[int, float]:
    """Dice of each class 1..n-1 (NaN when absent from both)."""
    out = {}
    for value in range(1, n_classes):
        p = prediction == value
        t = truth == value
        denominator = int(p.sum()) + int(t.sum())
        out[value] = float("nan") if denominator == 0 else 2.0 * int((p & t).sum()) / denominator
    return out


def predict_model_grid(network, spec: ModelSpec, image: np.ndarray) -> np.ndarray:
    """Argmax labels of a model-grid image ``(X, Y, Z)`` by MONAI sliding windows."""
    import torch
    from monai.inferers import sliding_window_inference

    with torch.inference_mode():
        tensor = torch.from_numpy(np.ascontiguousarray(image))
        if spec.spatial_dims == 3:
            logits = sliding_window_inference(
                tensor[None, None],
                spec.roi_size,
                spec.sw_batch_size,
                network,
                overlap=spec.overlap,
                mode="gaussian",
            )
            return logits[0].argmax(0).numpy().astype(np.uint8)
        slices = tensor.permute(2, 0, 1)[:, None]  # (Z, 1, X, Y)
        out = []
        for start in range(0, slices.shape[0], spec.sw_batch_size):
            logits = sliding_window_inference(
                slices[start : start + spec.sw_batch_size],
                spec.roi_size,
                spec.sw_batch_size,
                network,
                overlap=spec.overlap,
                mode="gaussian",
            )
            out.append(logits.argmax(1))
        return torch.cat(out).permute(1, 2, 0).numpy().astype(np.uint8)


# -- training -----------------------------------------------------------------------------


def machine_description() -> dict:
    import monai
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
    }


def train(profile: Profile, args: argparse.Namespace) -> dict:
    """Train one model; returns its training log (also written next to the weights)."""
    import torch
    from monai.losses import DiceCELoss

    from napari_medseg.io.atomic import atomic_output
    from napari_medseg.models.build import sha256_file

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng([args.seed, profile.spatial_dims])
    spec = make_spec(profile)
    iterations = args.iterations or profile.iterations
    pool_size = args.pool or profile.pool

    LOG.info("%s: generating %d training phantoms", profile.name, pool_size)
    class_weights = dict(enumerate(args.sample_weights, start=1))
    pool = Pool(profile.patch, class_weights=class_weights)
    for i in range(pool_size):
        seed = TRAIN_SEED_BASE + i
        image, labels = cached_case(spec, seed, phantom_spacing(profile, seed), args.cache_dir)
        pool.add(image, labels, rng)
        if (i + 1) % 20 == 0:
            LOG.info("  %d/%d phantoms, last model grid %s", i + 1, pool_size, image.shape)
    validation = [
        cached_case(
            spec,
            VALIDATION_SEED_BASE + i,
            phantom_spacing(profile, VALIDATION_SEED_BASE + i),
            args.cache_dir,
        )
        for i in range(args.validation)
    ]
    data_s = time.perf_counter() - started
    LOG.info("%s: data ready in %.0f s", profile.name, data_s)

    network = build_network(spec)
    if args.init:  # a second stage, starting from the weights of a first
        network.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True))
    n_parameters = sum(p.numel() for p in network.parameters())
    lr = args.lr or profile.lr
    optimiser = torch.optim.Adam(network.parameters(), lr=lr, weight_decay=1e-5)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: max(0.0, 1.0 - step / iterations) ** 0.9
    )
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    history: list[dict] = []
    validations: list[dict] = []
    running = []
    train_started = time.perf_counter()
    for iteration in range(1, iterations + 1):
        network.train()
        crops = [pool.sample(rng) for _ in range(profile.batch)]
        images = torch.from_numpy(np.stack([c[0] for c in crops]))[:, None]
        labels = torch.from_numpy(np.stack([c[1] for c in crops]).astype(np.int64))[:, None]
        if profile.spatial_dims == 2:
            images, labels = images[..., 0], labels[..., 0]
        optimiser.zero_grad(set_to_none=True)
        loss = loss_function(network(images), labels)
        loss.backward()
        optimiser.step()
        schedule.step()
        running.append(loss.item())
        if iteration % args.log_every == 0 or iteration == iterations:
            elapsed = time.perf_counter() - train_started
            entry = {
                "iteration": iteration,
                "loss": float(np.mean(running)),
                "lr": schedule.get_last_lr()[0],
                "elapsed_s": round(elapsed, 1),
            }
            history.append(entry)
            running = []
            LOG.info(
                "%s it %d/%d loss %.4f (%.2f s/it)",
                profile.name,
                iteration,
                iterations,
                entry["loss"],
                elapsed / iteration,
            )
        if validation and (iteration % args.eval_every == 0 or iteration == iterations):
            network.eval()
            scores = [
                dice_per_class(predict_model_grid(network, spec, image), truth, len(PHANTOM_LABELS))
                for image, truth in validation
            ]
            mean = {
                PHANTOM_LABELS[v].name: float(np.nanmean([s[v] for s in scores]))
                for v in range(1, len(PHANTOM_LABELS))
            }
            validations.append({"iteration": iteration, "dice_model_grid": mean})
            LOG.info(
                "%s it %d validation Dice %s",
                profile.name,
                iteration,
                ", ".join(f"{k} {v:.3f}" for k, v in mean.items()),
            )
        if args.checkpoint and iteration % args.eval_every == 0:
            torch.save(network.state_dict(), args.checkpoint)
    train_s = time.perf_counter() - train_started

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights_name = f"{profile.name}.pt"
    network.eval()
    with atomic_output(out / weights_name) as temporary:
        torch.save(network.state_dict(), temporary)
    digest = sha256_file(out / weights_name)
    make_spec(profile, weights_name, digest).save_json(out / f"{profile.name}.json")
    log = {
        "model": profile.name,
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "environment": {
            key: value
            for key, value in os.environ.items()
            if key.startswith(("OMP_", "GOMP_", "MKL_", "OPENBLAS_"))
        },
        "iterations": iterations,
        "batch": profile.batch,
        "patch": list(profile.patch),
        "pool_phantoms": pool_size,
        "train_seeds": [TRAIN_SEED_BASE, TRAIN_SEED_BASE + pool_size - 1],
        "validation_seeds": [VALIDATION_SEED_BASE, VALIDATION_SEED_BASE + args.validation - 1],
        "phantom_in_plane_mm": profile.phantom_in_plane_mm,
        "phantom_slice_mm": profile.phantom_slice_mm,
        "optimiser": f"Adam lr {lr} poly(0.9) decay, weight decay 1e-5",
        "init": ({"path": args.init, "sha256": sha256_file(args.init)} if args.init else "random"),
        "sample_weights": {PHANTOM_LABELS[v].name: w for v, w in class_weights.items()},
        "loss": "DiceCELoss(to_onehot_y, softmax, batch)",
        "parameters": n_parameters,
        "weights_bytes": (out / weights_name).stat().st_size,
        "weights_sha256": digest,
        "data_s": round(data_s, 1),
        "train_s": round(train_s, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine_description(),
        "history": history,
        "validation": validations,
    }
    with atomic_output(out / f"{profile.name}.training.json") as temporary:
        Path(temporary).write_text(json.dumps(log, indent=2) + "\n")
    LOG.info(
        "%s: saved %s (%d parameters, %d bytes) in %.0f s",
        profile.name,
        out / weights_name,
        n_parameters,
        log["weights_bytes"],
        log["wall_s"],
    )
    return log


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["3d", "2d", "both"], default="both")
    parser.add_argument("--seed", type=int, default=0, help="torch/numpy seed (default 0)")
    parser.add_argument(
        "--iterations",
        type=int,
        default=0,
        help="training iterations (default: the model's profile)",
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=0,
        help="training phantoms kept in memory (default: the profile's)",
    )
    parser.add_argument(
        "--validation", type=int, default=3, help="held-out phantoms scored during training"
    )
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--init", default="", help="state_dict to start from (a second training stage)"
    )
    parser.add_argument(
        "--lr", type=float, default=0.0, help="initial learning rate (default: the profile's)"
    )
    parser.add_argument(
        "--sample-weights",
        type=lambda text: [float(v) for v in text.split(",")],
        default=[1.0, 1.0, 1.0, 1.0, 1.0, 2.0],
        help="odds of centring a crop on body, liver, spleen, right kidney, left kidney, "
        "tumour (default 1,1,1,1,1,2)",
    )
    parser.add_argument("--checkpoint", default="", help="file for periodic state_dict saves")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder")
    parser.add_argument(
        "--cache-dir",
        default="",
        help="keep the model-grid training cases here (saves regenerating them on a restart)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    import torch

    torch.set_num_threads(args.threads)
    names = ["3d", "2d"] if args.model == "both" else [args.model]
    for name in names:
        train(PROFILES[name], args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
