"""What a fine-tuning run is asked to do, as one value (no torch import).

``medseg finetune``, the napari Train dock and each torchrun process build their run
from a :class:`FinetuneSettings`; its JSON form travels to the torchrun processes and
into the run's log, and a ``--resume`` compares it with the run it continues.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class FinetuneSettings:
    """Settings of one fine-tuning run.

    Attributes
    ----------
    model : str
        The parent: a catalogue name, a spec JSON or a network file with its spec.
    data : str
        Folder of saved corrections, ``medseg batch`` output folder, or CSV of pairs.
    val_data : str
        Held-out pairs given apart (a folder or CSV as ``data``): all of ``data`` then
        trains and ``val_fraction`` is not used ("" = split ``data``).
    out : str
        The model library the new model is published into ("" = the default library,
        :func:`~napari_medseg.models.library.default_library_dir`); the run's working
        files (checkpoints, log) go in its ``.training/<name>/``.
    name : str
        The new model's name ("" = ``<parent>-ft-<YYYYMMDD-HHMM>``).
    epochs : int
        Most epochs (early stopping may end sooner).
    steps_per_epoch : int
        Optimiser steps per epoch (0 = enough for ``patches_per_case`` patches of each
        training pair).
    patches_per_case : int
        Patches per training pair and epoch when ``steps_per_epoch`` is 0.
    batch_size : int
        Patches per step and process (DDP: the global batch is this times the processes).
    val_fraction : float
        Share of the pairs held out for validation, in [0, 1).
    patch_size : tuple of int
        Training patch in model voxels (2 entries for a 2D model); () = the model's
        sliding-window size.
    lr : float
        AdamW learning rate (cosine decay to 10 % over the epochs).
    weight_decay : float
        AdamW weight decay.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``...
    amp : bool
        float16 autocast with a gradient scaler on CUDA (float32 on the CPU).
    seed : int
        Seeds the split, the patches, the augmentations and torch.
    patience : int
        Stop after this many epochs without a better validation Dice (0 = never).
    focus : float
        About this share of the patches is centred on voxels where the parent model's
        labels differ from the corrected ones (0 = sample by class only), in [0, 1).
    trust_bundle : bool
        The parent is a MONAI bundle outside the catalogue whose configs may run (they
        run Python code).
    dice_per_patch : bool
        Dice of each patch averaged over the batch, instead of one Dice over the batch
        (MONAI's ``batch=True``, the default). Per patch, the loss of a batch is the mean
        of its patches' losses, so DDP processes averaging their gradients compute
        exactly what one process with their whole batch would.
    """

    model: str
    data: str
    val_data: str = ""
    out: str = ""
    name: str = ""
    epochs: int = 20
    steps_per_epoch: int = 0
    patches_per_case: int = 8
    batch_size: int = 2
    val_fraction: float = 0.2
    patch_size: tuple[int, ...] = ()
    lr: float = 3e-4
    weight_decay: float = 1e-4
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    patience: int = 5
    focus: float = 0.33
    trust_bundle: bool = False
    dice_per_patch: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch size must be >= 1, got {self.batch_size}")
        if self.steps_per_epoch < 0 or self.patches_per_case < 1:
            problems.append("steps per epoch must be >= 0 and patches per case >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"the validation fraction must be in [0, 1), got {self.val_fraction}")
        if not self.lr > 0:
            problems.append(f"the learning rate must be > 0, got {self.lr}")
        if any(int(p) < 1 for p in self.patch_size):
            problems.append(f"patch sizes must be >= 1, got {self.patch_size}")
        if not 0.0 <= self.focus < 1.0:
            problems.append(
                f"the share of patches on corrections must be in [0, 1), got {self.focus}"
            )
        if self.patience < 0:
            problems.append(f"patience must be >= 0, got {self.patience}")
        if problems:
            raise ValueError("; ".join(problems))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["patch_size"] = tuple(int(p) for p in values.get("patch_size", ()))
        return cls(**values)

    def learning(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues (the number
        of epochs and the patience may change: a resumed run may go on for longer, its
        learning-rate schedule stretched to the new end)."""
        keep = (
            "model", "data", "val_data", "steps_per_epoch", "patches_per_case", "batch_size",
            "val_fraction", "patch_size", "lr", "weight_decay", "seed", "focus",
            "dice_per_patch",
        )  # fmt: skip
        data = asdict(self)
        data["patch_size"] = list(self.patch_size)
        return {key: data[key] for key in keep}


__all__ = ["FinetuneSettings"]
