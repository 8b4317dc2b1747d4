"""Fine-tune a model on corrected label maps: train, validate, keep the best, publish
only when it beats the parent.

One run (:func:`run_finetune`), in one process or in each of ``N`` torchrun processes
(DDP: ``torch.distributed`` initialised from torchrun's environment, gloo on the CPU,
NCCL on CUDA; a ``DistributedSampler`` shares each epoch's patches out; rank 0
validates, writes and publishes):

1. the parent model is loaded as for inference and must be trainable: a state_dict
   network from a spec (the default models, converted networks, a spec + weights) or a
   MONAI bundle (its own preprocessing transforms), not TorchScript (no source to
   train), not an nnU-Net folder (its own trainer) — each refusal says so;
2. the pairs (:mod:`~napari_medseg.training.pairs`) are split, read, checked against the
   model's classes, and the training pairs put on the model grid by the model's own
   preprocessing (:mod:`~napari_medseg.training.data`);
3. the parent is scored on the validation pairs (epoch 0), then every epoch: patches
   from MONAI's samplers, Dice + cross-entropy (``monai.losses.DiceCELoss``), AdamW with
   a cosine learning rate, float16 autocast with a gradient scaler on CUDA; validation
   Dice per class through the Segmenter (:mod:`~napari_medseg.training.evaluate`); the
   best epoch's weights kept; early stopping after ``patience`` epochs without gain;
4. the model is published (:mod:`~napari_medseg.training.publish`) only when its best
   validation Dice beats the parent's on the same pairs; otherwise the outcome says why
   not.

The run's folder (``<library>/.training/<name>/``) holds ``state.pt`` (everything a
``--resume`` needs, written atomically after every epoch), ``best.pt`` (the best
weights), ``log.json`` (settings, data with hashes, history) and ``outcome.json``.
Cancelling (the ``cancel`` event, or Ctrl+C) stops within one step and keeps both
checkpoints; a resumed run continues after the last finished epoch, and since every
patch is a function of ``(seed, epoch, slot)`` it draws what the uninterrupted run would
have drawn.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.errors import Cancelled, FileError, MedsegError
from napari_medseg.progress import Progress
from napari_medseg.training.settings import FinetuneSettings

logger = logging.getLogger(__name__)

#: Sub-folder of the model library that holds the runs' working files.
RUNS_FOLDER = ".training"
STATE_NAME, BEST_NAME, LOG_NAME, OUTCOME_NAME = "state.pt", "best.pt", "log.json", "outcome.json"


class NotTrainableError(FileError):
    """The model cannot be fine-tuned here (the message says why and what to use)."""


@dataclass
class EpochRecord:
    """One epoch of a run, as the terminal and the Train dock show it.

    Attributes
    ----------
    epoch : int
        1-based; 0 is the parent's score before training.
    epochs : int
        Most epochs of the run.
    loss : float
        Mean training loss over the epoch's steps (NaN for epoch 0).
    dice : dict
        Validation Dice per class.
    mean_dice : float
    best_epoch : int
        Epoch of the best mean Dice so far (0: the parent).
    elapsed_s : float
        Seconds since the run (or its resumption) started.
    eta_s : float
        Seconds the remaining epochs should take at this pace.
    """

    epoch: int
    epochs: int
    loss: float
    dice: dict[str, float]
    mean_dice: float
    best_epoch: int
    elapsed_s: float
    eta_s: float

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("loss", "mean_dice"):
            data[key] = None if math.isnan(data[key]) else round(data[key], 5)
        data["dice"] = {k: None if math.isnan(v) else round(v, 4) for k, v in self.dice.items()}
        data["elapsed_s"], data["eta_s"] = round(self.elapsed_s, 1), round(self.eta_s, 1)
        return data

    def line(self) -> str:
        """One terminal line."""
        dice = ", ".join(f"{k} {v:.3f}" for k, v in self.dice.items() if not math.isnan(v))
        loss = "parent" if self.epoch == 0 else f"loss {self.loss:.4f}"
        eta = f", ETA {_duration(self.eta_s)}" if self.epoch and self.epoch < self.epochs else ""
        return (
            f"epoch {self.epoch}/{self.epochs}  {loss}  val Dice {self.mean_dice:.4f} "
            f"[{dice}]  best epoch {self.best_epoch}  ({_duration(self.elapsed_s)}{eta})"
        )


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


@dataclass
class FinetuneOutcome:
    """What a run did.

    Attributes
    ----------
    name : str
        The (would-be) new model's name.
    published : bool
        A new model folder was written.
    reason : str
        Why it was or was not published, in one sentence.
    spec_path : str
        The published spec JSON ("" when not published).
    run_dir : str
        The run's working folder.
    parent_score, best_score : dict
        :meth:`ValidationScore.to_dict` of the parent and of the best epoch.
    best_epoch, epochs_run : int
    cancelled : bool
    train_s : float
        Seconds of training and validation (this process's part of the run).
    history : list of dict
        :meth:`EpochRecord.to_dict` of every epoch, epoch 0 first.
    """

    name: str
    published: bool
    reason: str
    spec_path: str = ""
    run_dir: str = ""
    parent_score: dict = field(default_factory=dict)
    best_score: dict = field(default_factory=dict)
    best_epoch: int = 0
    epochs_run: int = 0
    cancelled: bool = False
    train_s: float = 0.0
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- the parts of a run ------------------------------------------------------------------
def not_trainable_reason(spec) -> tuple[str, str]:
    """Why a spec's model cannot be fine-tuned here, and what to use instead; ``("", "")``
    when it can (no weights are loaded: the Train dock lists models with it)."""
    if spec.network.kind == "torchscript":
        return (
            "is a TorchScript network: a compiled graph without its source cannot be trained here.",
            "Fine-tune the network's source model and export it again, or give its "
            "state_dict with a spec naming its MONAI class.",
        )
    if spec.pipeline.get("kind") == "deepbet":
        return "runs deepbet's own networks from its package.", ""
    if spec.activation == "sigmoid" and sigmoid_targets(spec) is None:
        return (
            "has sigmoid outputs for nested or overlapping regions (its paint order "
            "paints one label over another): only softmax models and sigmoid models with "
            "one channel per label are fine-tuned here.",
            "",
        )
    return "", ""


def check_trainable(loaded, ref: str) -> None:
    """Refuse a model this trainer cannot fine-tune, saying what to use instead.

    Raises
    ------
    NotTrainableError
    """
    kind = loaded.details.get("kind", "")
    if loaded.runner is not None or kind == "nnunet_v2":
        raise NotTrainableError(
            ref,
            "is an nnU-Net model: it runs and trains with nnU-Net's own pipeline.",
            "Fine-tune it with nnUNetv2_train (-pretrained_weights) and load the result here.",
        )
    if kind == "monai_bundle" and loaded.details.get("weights_kind") == "torchscript":
        raise NotTrainableError(
            ref,
            "is a MONAI bundle whose network is a TorchScript file: a compiled graph "
            "without its source cannot be trained here.",
            "Use the bundle's state_dict version (models/model.pt), or its configs/train.json.",
        )
    problem, fix = not_trainable_reason(loaded.spec)
    if problem:
        raise NotTrainableError(ref, problem, fix)


def train_mode(network) -> None:
    """``network.train()`` with its batch-norm layers left in eval mode: they normalise
    with the parent's running statistics and keep them (their scale and shift still
    learn).

    In training mode a batch norm normalises with the statistics of the batch, a few
    patches, and pulls its running statistics towards them; for a pretrained network
    whose statistics come from other data (``lungs-ct``: its first layer's running mean
    is 0.4x what our 256^2 patches give) that changes what the network computes from the
    first step and overwrites the parent's statistics within a few steps (validation
    Dice 0.965 -> 0.16 after 4 steps of lr 1e-4). Frozen statistics are the usual way to
    fine-tune with small batches, and DDP processes then compute what one process does.
    No effect on networks without batch norm (MONAI's UNet: instance norm).
    """
    import torch

    network.train()
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def sigmoid_targets(spec) -> list[int] | None:
    """The label value of each output channel of a sigmoid model whose channels are one
    label each (channel order), or None when its paint order nests regions."""
    pairs = sorted(spec.paint_order)
    channels = [c for c, _ in pairs]
    values = [v for _, v in pairs]
    if not pairs or channels != list(range(len(pairs))) or len(set(values)) != len(values):
        return None
    return values


def make_loss(spec, dice_per_patch: bool):
    """Dice + cross-entropy for the model's outputs: ``loss(logits, labels)`` with
    labels ``(B, 1, ...)`` int64.

    Softmax models: MONAI's ``DiceCELoss`` on one-hot labels. Sigmoid models with one
    channel per label: ``DiceLoss(sigmoid=True)`` + binary cross-entropy with logits on
    each channel's mask (MONAI's ``DiceCELoss`` would take the multi-class
    cross-entropy for several channels).
    """
    import torch
    from monai.losses import DiceCELoss, DiceLoss

    batch = not dice_per_patch
    if spec.activation == "softmax":
        return DiceCELoss(to_onehot_y=True, softmax=True, batch=batch)
    values = sigmoid_targets(spec)
    dice = DiceLoss(sigmoid=True, batch=batch)
    bce = torch.nn.BCEWithLogitsLoss()

    def loss(logits, labels):
        target = torch.cat([(labels == value) for value in values], dim=1).to(logits.dtype)
        return dice(logits, target) + bce(logits, target)

    return loss


def resolve_patch(spec, patch_size: tuple[int, ...]) -> tuple[int, int, int]:
    """The training patch ``(X, Y, Z)`` in model voxels: ``patch_size`` or the model's
    sliding-window size (a 2D model's patch is one slice thick along its slice axis)."""
    wanted = tuple(int(p) for p in (patch_size or spec.roi_size))
    if len(wanted) != spec.spatial_dims:
        raise MedsegError(
            f"--patch-size needs {spec.spatial_dims} numbers for {spec.name} "
            f"({spec.spatial_dims}D), got {list(wanted)}."
        )
    if spec.spatial_dims == 3:
        if any(p == 0 for p in wanted):
            raise MedsegError(
                f"{spec.name} runs on whole axes (a window size of 0); give --patch-size."
            )
        return wanted  # type: ignore[return-value]
    patch = list(wanted)
    patch.insert(spec.slice_axis, 1)
    return tuple(patch)  # type: ignore[return-value]


def sha256_of(path: str) -> str:
    """SHA-256 of a file, or of a folder's files in name order (a DICOM series)."""
    import hashlib

    from napari_medseg.models.build import sha256_file

    target = Path(path)
    if not target.is_dir():
        return sha256_file(target)
    digest = hashlib.sha256()
    for item in sorted(p for p in target.rglob("*") if p.is_file()):
        digest.update(bytes.fromhex(sha256_file(item)))
    return digest.hexdigest()


def data_list(train, validation) -> list[dict[str, Any]]:
    """The pairs with their files' SHA-256 and split, for the log and the model card."""
    rows = []
    for split, pairs in (("train", train), ("validation", validation)):
        for pair in pairs:
            rows.append(
                {
                    "split": split,
                    "images": list(pair.images),
                    "labels": pair.labels,
                    "origin": pair.origin,
                    "edited_by_hand": pair.edited_by_hand,
                    "images_sha256": [sha256_of(p) for p in pair.images],
                    "labels_sha256": sha256_of(pair.labels),
                }
            )
    return rows


@dataclass
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device_type: str) -> Distributed:
        """Join torchrun's process group when ``WORLD_SIZE`` > 1 (gloo on the CPU)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def merged(self, part: dict) -> dict:
        """The union of every rank's ``part`` (each rank computed some of the keys)."""
        if self.world == 1:
            return part
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, part)
        return {key: value for one in parts for key, value in one.items()}

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks."""
        if self.world == 1:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def run_name(settings: FinetuneSettings, parent: str) -> str:
    """``settings.name`` or ``<parent>-ft-<YYYYMMDD-HHMM>`` (file-name safe)."""
    from napari_medseg.io.atomic import safe_name

    return safe_name(settings.name or f"{parent}-ft-{time.strftime('%Y%m%d-%H%M')}", "model")


def find_resumable(library: Path, settings: FinetuneSettings) -> Path | None:
    """The latest unfinished run in ``library`` with the same learning settings."""
    runs = library / RUNS_FOLDER
    if not runs.is_dir():
        return None
    candidates = []
    for folder in runs.iterdir():
        log = _read_json(folder / LOG_NAME)
        if log is None or (folder / OUTCOME_NAME).is_file() and not _cancelled(folder):
            continue
        if settings.name and folder.name != settings.name:
            continue
        if (
            log.get("settings", {}).get("learning") == settings.learning()
            and (folder / STATE_NAME).is_file()
        ):
            candidates.append((folder.stat().st_mtime, folder))
    return max(candidates)[1] if candidates else None


def _cancelled(folder: Path) -> bool:
    outcome = _read_json(folder / OUTCOME_NAME) or {}
    return bool(outcome.get("cancelled"))


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: Any) -> None:
    from napari_medseg.io.atomic import atomic_output

    with atomic_output(path) as temporary:
        Path(temporary).write_text(json.dumps(data, indent=2, default=str) + "\n")


def _save_torch(path: Path, data: Any) -> None:
    import torch

    from napari_medseg.io.atomic import atomic_output

    with atomic_output(path) as temporary:
        torch.save(data, temporary)


# -- the run -----------------------------------------------------------------------------
EpochCallback = Callable[[EpochRecord], None]


def run_finetune(
    settings: FinetuneSettings,
    *,
    resume: bool = False,
    on_epoch: EpochCallback | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    on_message: Callable[[str], None] | None = None,
) -> FinetuneOutcome:
    """Fine-tune ``settings.model`` on ``settings.data`` (see the module notes).

    Parameters
    ----------
    settings : FinetuneSettings
    resume : bool
        Continue the latest unfinished run of the same model, data and learning
        settings in the library (its name, split and patches included).
    on_epoch : callable, optional
        Called on rank 0 with each :class:`EpochRecord` (epoch 0: the parent's score).
    progress : callable, optional
        ``progress(done, total)`` over the run's optimiser steps (rank 0).
    cancel : threading.Event, optional
        Checked before every step and validation scan: the run stops, keeping its
        checkpoints, and is not published.
    on_message : callable, optional
        Lines for the user (pairs skipped, the split, where the run is).

    Returns
    -------
    FinetuneOutcome

    Raises
    ------
    NotTrainableError, FileError, MedsegError
        Bad model, data or settings (before any training).
    """
    import torch

    from napari_medseg.inference.devices import resolve_device
    from napari_medseg.models.library import default_library_dir
    from napari_medseg.models.registry import load_model
    from napari_medseg.training.data import read_pair, to_model_grid
    from napari_medseg.training.pairs import find_pairs, split_pairs

    say = on_message or (lambda text: logger.info("%s", text))
    started = time.perf_counter()
    device = resolve_device(settings.device)
    ranks = Distributed.from_environment(device.type)
    if ranks.world > 1 and device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not ranks.is_main:
        say = lambda text: None  # noqa: E731 - rank 0 speaks for the job
    if settings.val_fraction <= 0 and not settings.val_data:
        raise MedsegError(
            "fine-tuning needs held-out pairs (--val-fraction > 0, or --val-data): a model "
            "is only published when it beats its parent on them."
        )

    loaded = load_model(settings.model, trust_bundle=settings.trust_bundle)
    check_trainable(loaded, settings.model)
    spec = loaded.spec
    model_names = spec.label_names
    class_names = {v: n for v, n in model_names.items() if v != 0}
    n_classes = max(model_names) + 1
    patch = resolve_patch(spec, settings.patch_size)

    # the model's name first: a name taken is refused before any pair is read or predicted
    library = Path(settings.out).expanduser() if settings.out else default_library_dir()
    problem, name = "", ""
    if ranks.is_main:  # rank 0 decides; every rank raises the same error
        resumable = find_resumable(library, settings) if resume else None
        name = resumable.name if resumable else run_name(settings, spec.name)
        if resume and resumable is None:
            problem = (
                f"{library}: no unfinished run of {spec.name} on {settings.data} with these "
                "settings to resume."
            )
        elif (library / name).exists():
            problem = (
                f"{library / name}: exists already: a model of that name is published. "
                "Give another --name."
            )
    problem, name = ranks.share((problem, name))
    if problem:
        ranks.close()
        raise MedsegError(problem)

    found = find_pairs(settings.data)
    for line in found.skipped:
        say(f"skipped {line}")
    if settings.val_data:  # the user's own held-out pairs: all of DATA trains
        held_out = find_pairs(settings.val_data)
        for line in held_out.skipped:
            say(f"skipped {line}")
        keys = {pair.key for pair in held_out.pairs}
        train_pairs = [pair for pair in found.pairs if pair.key not in keys]
        val_pairs = held_out.pairs
        if not train_pairs:
            raise FileError(
                settings.data, "holds only the --val-data pairs: none is left to train on."
            )
    else:
        try:
            train_pairs, val_pairs = split_pairs(found.pairs, settings.val_fraction, settings.seed)
        except ValueError as error:
            raise FileError(settings.data, f"{error}") from None
    say(f"{len(train_pairs)} training pairs, {len(val_pairs)} held out for validation")
    train_read = [read_pair(p, n_classes, model_names, spec.name) for p in train_pairs]
    val_read = [read_pair(p, n_classes, model_names, spec.name) for p in val_pairs]
    from napari_medseg.inference.segmenter import Segmenter

    # the parent as the user meets it; its network becomes the one trained (same object)
    segmenter = Segmenter(loaded, device=str(device), amp=settings.amp)
    parent_labels: dict[int, np.ndarray] = {}
    if settings.focus > 0:  # where the user corrected the parent; each rank predicts a share
        for n, read in enumerate(train_read):
            if n % ranks.world == ranks.rank:
                parent_labels[n] = segmenter.predict(read.channels, cancel=cancel).labels
        parent_labels = ranks.merged(parent_labels)
    train_cases = [
        to_model_grid(loaded.preprocess, read, patch, n_classes, parent_labels.get(n))
        for n, read in enumerate(train_read)
    ]
    del parent_labels
    if settings.focus > 0:
        corrected = sum(case.corrected.size for case in train_cases)
        say(f"{corrected} model-grid voxels corrected in the training pairs")
    del train_read

    run_dir = library / RUNS_FOLDER / name
    if ranks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / OUTCOME_NAME).unlink(missing_ok=True)
    data_rows = data_list(train_pairs, val_pairs) if ranks.is_main else []

    torch.manual_seed(settings.seed)
    network = segmenter.network  # loaded.network, on the device
    for parameter in network.parameters():
        parameter.requires_grad_(True)
    network.to(device)
    slots_per_rank = (
        settings.steps_per_epoch or math.ceil(len(train_cases) * settings.patches_per_case
                                              / (settings.batch_size * ranks.world))
    ) * settings.batch_size  # fmt: skip
    steps = slots_per_rank // settings.batch_size
    total_steps = steps * settings.epochs
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda step: (
            0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
        ),
    )
    use_amp = bool(settings.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    history: list[dict] = []
    best = {"epoch": 0, "mean": float("nan"), "score": {}}
    best_weights: dict = {}  # the best epoch's state_dict (CPU), kept in state.pt too
    parent_score: dict = {}
    first_epoch = 1
    state_path = run_dir / STATE_NAME
    if ranks.is_main and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        network.load_state_dict(state["network"])
        best_weights.update(state["best_network"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        scaler.load_state_dict(state["scaler"])
        progress_state = json.loads(state["progress"])
        history, best, parent_score = (
            progress_state["history"], progress_state["best"], progress_state["parent_score"]
        )  # fmt: skip
        first_epoch = int(state["epoch"]) + 1
        say(f"resuming {name} after epoch {first_epoch - 1}")
    first_epoch = ranks.share(first_epoch)
    if ranks.world > 1:  # every rank starts from rank 0's weights
        import torch.distributed as dist

        for tensor in network.state_dict().values():
            dist.broadcast(tensor, src=0)

    train_mode(network)
    trained = network
    if ranks.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None
        )

    from torch.utils.data import DataLoader, DistributedSampler

    from napari_medseg.training.data import PatchDataset, intensity_unit
    from napari_medseg.training.evaluate import validation_dice

    dataset = PatchDataset(
        train_cases, patch, n_classes, slots_per_rank * ranks.world, settings.seed,
        spec.spatial_dims, spec.slice_axis,
        unit=intensity_unit(spec, [case.image for case in train_cases]), focus=settings.focus,
    )  # fmt: skip
    sampler = DistributedSampler(
        dataset, num_replicas=ranks.world, rank=ranks.rank, shuffle=True, seed=settings.seed
    )
    loader = DataLoader(dataset, batch_size=settings.batch_size, sampler=sampler, num_workers=0)
    loss_function = make_loss(spec, settings.dice_per_patch)

    def log_state(finished: bool = False) -> dict:
        return {
            "name": name,
            "parent": {"name": spec.name, "reference": settings.model, **_parent_facts(loaded)},
            "settings": {**dataclasses.asdict(settings), "learning": settings.learning()},
            "processes": ranks.world,
            "device": str(device),
            "amp": use_amp,
            "patch": list(patch),
            "steps_per_epoch": steps,
            "loss": f"Dice ({'per patch' if settings.dice_per_patch else 'over the batch'}) "
            f"+ cross-entropy, {spec.activation} outputs",
            "optimiser": f"AdamW lr {settings.lr} cosine to 10 %, weight decay "
            f"{settings.weight_decay}",
            "data": data_rows,
            "history": history,
            "best_epoch": best["epoch"],
            "finished": finished,
        }

    def validate(epoch: int, loss: float) -> tuple[bool, EpochRecord | None]:
        """Score on rank 0; returns whether to stop early (shared with every rank) and
        the epoch's record (rank 0), announced once the epoch's checkpoint is written."""
        stop, record = False, None
        if ranks.is_main:
            network.eval()
            score = validation_dice(segmenter, val_read, class_names, cancel=cancel)
            train_mode(network)
            mean = score.mean
            if epoch == 0:
                parent_score.update(score.to_dict())
            better = not math.isnan(mean) and (math.isnan(best["mean"]) or mean > best["mean"])
            if better:
                best.update(epoch=epoch, mean=mean, score=score.to_dict())
                if epoch > 0:
                    best_weights.clear()
                    best_weights.update({k: v.detach().cpu().clone() for k, v in
                                         network.state_dict().items()})  # fmt: skip
            elapsed = time.perf_counter() - started
            done_epochs = epoch - first_epoch + 1
            eta = elapsed / done_epochs * (settings.epochs - epoch) if done_epochs > 0 else 0.0
            record = EpochRecord(
                epoch, settings.epochs, loss, score.per_class, mean, best["epoch"], elapsed, eta
            )
            history.append(record.to_dict())
            stop = bool(settings.patience) and epoch - best["epoch"] >= settings.patience
        return bool(ranks.share(stop)), record

    def announce(record: EpochRecord | None) -> None:
        if record is not None and on_epoch is not None:
            on_epoch(record)

    cancelled, saved_epoch = False, first_epoch - 1  # the last epoch in state.pt
    try:
        if first_epoch == 1:
            _, record = validate(0, float("nan"))
            if ranks.is_main:
                _write_json(run_dir / LOG_NAME, log_state())
            announce(record)
        for epoch in range(first_epoch, settings.epochs + 1):
            sampler.set_epoch(epoch)
            dataset.set_epoch(epoch)
            losses = []
            for step, (images, labels) in enumerate(loader):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("fine-tuning cancelled")
                images, labels = images.to(device), labels.to(device)
                optimiser.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    loss = loss_function(trained(images), labels)
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
                schedule.step()
                losses.append(ranks.mean(float(loss.detach())))
                if progress is not None and ranks.is_main:
                    progress((epoch - 1) * steps + step + 1, total_steps)
            stop, record = validate(epoch, float(np.mean(losses)) if losses else float("nan"))
            if ranks.is_main:
                _save_torch(
                    state_path,
                    {
                        "network": network.state_dict(),
                        "optimiser": optimiser.state_dict(),
                        "schedule": schedule.state_dict(),
                        "scaler": scaler.state_dict(),
                        "epoch": epoch,
                        "best_network": best_weights,
                        "progress": json.dumps(
                            {"history": history, "best": best, "parent_score": parent_score}
                        ),
                    },
                )
                if best["epoch"] == epoch:  # a copy for the user; the state holds it too
                    _save_torch(run_dir / BEST_NAME, best_weights)
                _write_json(run_dir / LOG_NAME, log_state())
            saved_epoch = epoch
            announce(record)
            if stop:
                say(f"no better validation Dice for {settings.patience} epochs: stopping early")
                break
    except (Cancelled, KeyboardInterrupt):
        # state.pt holds the last finished epoch (a write cut short leaves the one before)
        cancelled = True
    train_s = time.perf_counter() - started

    outcome = FinetuneOutcome(
        name=name,
        published=False,
        reason="",
        run_dir=str(run_dir),
        parent_score=parent_score,
        best_score=best.get("score", {}),
        best_epoch=int(best["epoch"]),
        epochs_run=max(0, saved_epoch),
        cancelled=cancelled,
        train_s=round(train_s, 1),
        history=history,
    )
    if ranks.is_main:
        outcome = _conclude(outcome, loaded, library, run_dir, log_state, best, best_weights)
        _write_json(run_dir / OUTCOME_NAME, outcome.to_dict())
    ranks.close()
    return outcome


def _parent_facts(loaded) -> dict[str, Any]:
    return {
        "weights_sha256": loaded.details.get("weights_sha256", ""),
        "license": loaded.spec.license,
        "source": loaded.spec.source,
    }


def _conclude(outcome, loaded, library, run_dir, log_state, best, weights) -> FinetuneOutcome:
    """Publish when the best epoch beats the parent; say why not otherwise."""

    from napari_medseg.training.publish import publish_model

    parent_mean = outcome.parent_score.get("mean_dice")
    best_mean = best["mean"]
    if outcome.cancelled:
        outcome.reason = (
            f"cancelled after epoch {outcome.epochs_run}: nothing published; the best "
            f"checkpoint is kept in {run_dir} and --resume continues the run."
        )
        return outcome
    if best["epoch"] == 0 or parent_mean is None:
        outcome.reason = (
            f"no epoch beat the parent's validation Dice ({parent_mean}) on the same "
            f"{len([r for r in log_state()['data'] if r['split'] == 'validation'])} "
            "held-out pairs: nothing published."
        )
        return outcome
    log = log_state(finished=True)
    spec_path = publish_model(
        library, outcome.name, loaded, weights, log,
        parent_score=outcome.parent_score, best_score=best["score"],
    )  # fmt: skip
    outcome.published = True
    outcome.spec_path = str(spec_path)
    outcome.reason = (
        f"epoch {best['epoch']} beat the parent on the held-out pairs: mean Dice "
        f"{best_mean:.4f} against {parent_mean:.4f}."
    )
    return outcome


__all__ = [
    "Distributed",
    "EpochRecord",
    "FinetuneOutcome",
    "NotTrainableError",
    "check_trainable",
    "not_trainable_reason",
    "find_resumable",
    "resolve_patch",
    "run_finetune",
]
