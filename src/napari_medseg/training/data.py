"""Training pairs on the model's grid, and the random patches a network learns from.

A pair is read with the readers the rest of the package uses and put on the model grid
by **the model's own preprocessing** (``LoadedModel.preprocess``: the same function the
:class:`~napari_medseg.inference.segmenter.Segmenter` calls), its labels brought onto
that grid by nearest neighbour (:func:`~napari_medseg.resample.resample_labels`), so a
fine-tuned model sees in training exactly what it will see at inference. NaN/inf voxels
are replaced as at inference (:func:`~napari_medseg.inference.segmenter.finite_copies`).

Patches are drawn by MONAI (``RandCropByLabelClassesd``: the centre on a voxel of a class
drawn with equal odds among the classes the case holds, background included, so small
classes such as a lesion are seen as often as the liver; this is MONAI's positive /
negative sampling generalised to several classes). What makes it *learning from
corrections*: a share of the patches (``focus``) is centred on the voxels where the
parent model's labels differ from the corrected ones, the places the user had to fix,
which in a whole scan are few (a tumour the lung mask left out is 1 % of the lung).
Patches are then augmented in intensity only (``RandScaleIntensityd``,
``RandShiftIntensityd``, ``RandGaussianNoised``, in units of the model's intensity range:
5 % of a CT window is 25 HU of a 500 HU window), with no flips, because left and right
organs are different classes.

Every patch is a pure function of ``(seed, epoch, slot)`` (:class:`PatchDataset`), so
the patches of a step are the same whichever process draws them: one process with a
batch of 2 and two DDP processes with a batch of 1 see the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_medseg.errors import FileError, shown_path
from napari_medseg.training.pairs import TrainingPair, check_pair_classes
from napari_medseg.volume import Volume

#: Largest mismatch (mm) between the scan's and the labels' voxel-to-RAS matrices.
GRID_TOLERANCE_MM = 1e-3


@dataclass
class ReadPair:
    """A pair as read: the scan's channels and the labels, on the scan's grid."""

    pair: TrainingPair
    channels: list[Volume]
    labels: Volume


@dataclass
class ModelGridCase:
    """A pair on the model grid.

    Attributes
    ----------
    image : numpy.ndarray
        float32 ``(C, X, Y, Z)``, intensity-transformed, padded to at least the patch.
    labels : numpy.ndarray
        uint8 ``(1, X, Y, Z)`` on the same grid.
    indices : list of numpy.ndarray
        Flat voxel indices of each class value ``0..K-1`` (MONAI's
        ``map_classes_to_indices``), computed once.
    corrected : numpy.ndarray
        Flat voxel indices where the parent's labels differ from the corrected ones
        (empty when not known).
    """

    image: np.ndarray
    labels: np.ndarray
    indices: list[np.ndarray]
    corrected: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def read_pair(
    pair: TrainingPair, n_classes: int, model_names: dict[int, str], model: str
) -> ReadPair:
    """Read a pair and check it: labels integral, on the scan's grid, with values the
    model has classes for.

    Raises
    ------
    FileError
        Naming the file at fault (unreadable, not a label map, another grid, classes
        the model does not have).
    """
    from napari_medseg.io.reader import read_scan
    from napari_medseg.labels.maps import as_label_array

    try:
        channels = [
            read_scan(path, series_key=pair.series if i == 0 else None)
            for i, path in enumerate(pair.images)
        ]
    except FileError as error:  # say which label map named this file as its scan
        raise type(error)(
            error.path,
            f"{error.problem} It is named as the scan of {shown_path(pair.labels)}.",
            error.fix,
        ) from None
    labels = read_scan(pair.labels)
    array = as_label_array(labels.array, pair.labels)
    source = channels[0]
    if array.shape != source.shape or not np.allclose(
        labels.affine, source.affine, atol=GRID_TOLERANCE_MM
    ):
        raise FileError(
            pair.labels,
            f"is not on the grid of its scan {shown_path(pair.images[0])} (labels "
            f"{array.shape}, scan {source.shape}, or the voxel-to-patient matrices differ).",
            "Save the labels from the scan they were drawn on (napari's Save widget does).",
        )
    values = np.unique(array)
    check_pair_classes(pair, [int(v) for v in values], model_names, model)
    if n_classes <= int(values.max(initial=0)):  # pragma: no cover - check_pair_classes
        raise FileError(pair.labels, "has more classes than the model.")
    return ReadPair(pair, channels, Volume(array, labels.affine, labels.metadata))


def to_model_grid(
    preprocess: Any,
    read: ReadPair,
    patch: Sequence[int],
    n_classes: int,
    parent_labels: np.ndarray | None = None,
) -> ModelGridCase:
    """Put a read pair on the model grid with the model's preprocessing.

    Parameters
    ----------
    preprocess : callable
        ``LoadedModel.preprocess``.
    read : ReadPair
    patch : sequence of int
        Patch size ``(X, Y, Z)`` in model voxels; the case is zero-padded (symmetric)
        to at least it, as the sliding window pads.
    n_classes : int
        Classes of the model, background included.
    parent_labels : numpy.ndarray, optional
        The parent model's labels of the scan, on the scan's grid: where they differ
        from the corrected labels becomes :attr:`ModelGridCase.corrected`.

    Raises
    ------
    FileError
        The preprocessing refuses the scan (wrong channels...), naming the scan.
    """
    from monai.transforms.utils import map_classes_to_indices

    from napari_medseg.inference.segmenter import finite_copies
    from napari_medseg.io.nonfinite import count_nonfinite
    from napari_medseg.resample import resample_labels

    nonfinite = [count_nonfinite(v.array) for v in read.channels]
    try:
        prepared = preprocess(finite_copies(read.channels, nonfinite))
    except ValueError as error:
        raise FileError(read.pair.images[0], f"the model cannot take this scan: {error}.") from None
    image = prepared.image.detach().cpu().numpy().astype(np.float32, copy=False)
    grid = image.shape[1:]  # the model grid, before padding
    labels = resample_labels(
        read.labels.array, read.labels.affine, grid, np.asarray(prepared.affine)
    ).astype(np.uint8)
    pad = [(0, 0)] + [
        (max(0, p - n) // 2, max(0, p - n) - max(0, p - n) // 2)
        for n, p in zip(image.shape[1:], patch, strict=True)
    ]
    image = np.ascontiguousarray(np.pad(image, pad))
    labels = np.ascontiguousarray(np.pad(labels[None], pad))
    indices = [np.asarray(i) for i in map_classes_to_indices(labels, n_classes)]
    case = ModelGridCase(image, labels, indices)
    if parent_labels is not None:
        parent = resample_labels(
            parent_labels, read.labels.affine, grid, np.asarray(prepared.affine)
        )
        parent = np.pad(parent.astype(np.uint8)[None], pad)
        case.corrected = np.flatnonzero(parent != labels)
    return case


def intensity_unit(spec, images: Sequence[np.ndarray]) -> float:
    """The size of "one" in the model's input intensities, for the augmentations: the
    width of ``scale_range``'s output, 1 for ``normalize`` (standard deviations), else
    the 1st-99th percentile spread of the training images."""
    intensity = spec.intensity
    if intensity.kind == "scale_range":
        return abs(float(intensity.b_max) - float(intensity.b_min)) or 1.0
    if intensity.kind == "normalize":
        return 1.0
    values = np.concatenate([np.asarray(i).ravel()[:: max(1, i.size // 100_000)] for i in images])
    low, high = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
    return float(high - low) or 1.0


def patch_transform(patch: Sequence[int], n_classes: int, unit: float = 1.0, focus: float = 0.0):
    """The MONAI transforms that draw and augment one patch from a :class:`ModelGridCase`
    given as ``{"image", "label", "indices"}`` (``indices``: one list per class, then the
    corrected voxels when ``focus`` > 0).

    Parameters
    ----------
    patch : sequence of int
    n_classes : int
    unit : float
        :func:`intensity_unit`.
    focus : float
        About this share of the patches is centred on corrected voxels (the share is
        exact when the case holds every class), in [0, 1).
    """
    ratios = [1.0] * n_classes
    if focus > 0:
        ratios.append(n_classes * focus / (1.0 - focus))
    from monai.transforms import (
        Compose,
        RandCropByLabelClassesd,
        RandGaussianNoised,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    return Compose(
        [
            RandCropByLabelClassesd(
                keys=["image", "label"],
                label_key="label",
                spatial_size=list(patch),
                ratios=ratios,
                num_classes=len(ratios),
                num_samples=1,
                indices_key="indices",
                warn=False,
            ),
            RandScaleIntensityd(keys="image", factors=0.05, prob=0.5),
            RandShiftIntensityd(keys="image", offsets=0.05 * unit, prob=0.5),
            RandGaussianNoised(keys="image", std=0.01 * unit, prob=0.2),
        ],
        lazy=False,
    )


class PatchDataset:
    """Patch ``slot`` of an epoch: case ``slot % n_cases``, drawn with a generator seeded
    by ``(seed, epoch, slot)``; a torch ``Dataset`` (``len`` + ``[]``) for a
    ``DistributedSampler`` to share out.

    Parameters
    ----------
    cases : list of ModelGridCase
    patch : sequence of int
        ``(X, Y, Z)`` model voxels (``Z`` = 1 for a 2D model: the patch is an axial slice
        of the model grid, returned without its slice axis).
    n_classes : int
    slots : int
        Patches per epoch.
    seed : int
    spatial_dims : int
        2 or 3.
    slice_axis : int
        For 2D models: the model-grid axis the network steps along.
    unit, focus : float
        See :func:`patch_transform`.
    """

    def __init__(
        self,
        cases: Sequence[ModelGridCase],
        patch: Sequence[int],
        n_classes: int,
        slots: int,
        seed: int,
        spatial_dims: int = 3,
        slice_axis: int = 2,
        unit: float = 1.0,
        focus: float = 0.0,
    ) -> None:
        self.cases = list(cases)
        self.patch = tuple(int(p) for p in patch)
        self.n_classes = n_classes
        self.slots = int(slots)
        self.seed = int(seed)
        self.spatial_dims = spatial_dims
        self.slice_axis = slice_axis
        self.epoch = 0
        self.focus = float(focus)
        self.transform = patch_transform(self.patch, n_classes, unit, self.focus)

    def __len__(self) -> int:
        return self.slots

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, slot: int) -> tuple[Any, Any]:
        """``(image, label)`` torch tensors ``(C, *patch)`` and ``(1, *patch)`` (int64)."""
        import torch

        case = self.cases[int(slot) % len(self.cases)]
        seed = np.random.SeedSequence([self.seed, self.epoch, int(slot)]).generate_state(1)[0]
        self.transform.set_random_state(seed=int(seed))
        item = {
            "image": case.image,
            "label": case.labels,
            "indices": case.indices + ([case.corrected] if self.focus > 0 else []),
        }
        out = self.transform(item)[0]
        image = torch.as_tensor(np.asarray(out["image"]), dtype=torch.float32)
        label = torch.as_tensor(np.asarray(out["label"]), dtype=torch.int64)
        if self.spatial_dims == 2:
            image = image.select(1 + self.slice_axis, 0)
            label = label.select(1 + self.slice_axis, 0)
        return image.contiguous(), label.contiguous()


__all__ = [
    "GRID_TOLERANCE_MM",
    "ModelGridCase",
    "PatchDataset",
    "ReadPair",
    "intensity_unit",
    "patch_transform",
    "read_pair",
    "to_model_grid",
]
