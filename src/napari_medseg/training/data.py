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
negative sampling generalised to several classes), then augmented in intensity only
(``RandScaleIntensityd``, ``RandShiftIntensityd``, ``RandGaussianNoised``): no flips,
because left and right organs are different classes.

Every patch is a pure function of ``(seed, epoch, slot)`` (:class:`PatchDataset`), so
the patches of a step are the same whichever process draws them: one process with a
batch of 2 and two DDP processes with a batch of 1 see the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_medseg.errors import FileError
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
    """

    image: np.ndarray
    labels: np.ndarray
    indices: list[np.ndarray]


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

    channels = [
        read_scan(path, series_key=pair.series if i == 0 else None)
        for i, path in enumerate(pair.images)
    ]
    labels = read_scan(pair.labels)
    array = as_label_array(labels.array, pair.labels)
    source = channels[0]
    if array.shape != source.shape or not np.allclose(
        labels.affine, source.affine, atol=GRID_TOLERANCE_MM
    ):
        raise FileError(
            pair.labels,
            f"is not on the grid of its scan {pair.images[0]} (labels {array.shape}, scan "
            f"{source.shape}, or the voxel-to-patient matrices differ).",
            "Save the labels from the scan they were drawn on (napari's Save widget does).",
        )
    values = np.unique(array)
    check_pair_classes(pair, [int(v) for v in values], model_names, model)
    if n_classes <= int(values.max(initial=0)):  # pragma: no cover - check_pair_classes
        raise FileError(pair.labels, "has more classes than the model.")
    return ReadPair(pair, channels, Volume(array, labels.affine, labels.metadata))


def to_model_grid(
    preprocess: Any, read: ReadPair, patch: Sequence[int], n_classes: int
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
    labels = resample_labels(
        read.labels.array, read.labels.affine, image.shape[1:], np.asarray(prepared.affine)
    ).astype(np.uint8)
    pad = [(0, 0)] + [
        (max(0, p - n) // 2, max(0, p - n) - max(0, p - n) // 2)
        for n, p in zip(image.shape[1:], patch, strict=True)
    ]
    image = np.ascontiguousarray(np.pad(image, pad))
    labels = np.ascontiguousarray(np.pad(labels[None], pad))
    indices = [np.asarray(i) for i in map_classes_to_indices(labels, n_classes)]
    return ModelGridCase(image, labels, indices)


def patch_transform(patch: Sequence[int], n_classes: int):
    """The MONAI transforms that draw and augment one patch from a :class:`ModelGridCase`
    given as ``{"image", "label", "indices"}``."""
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
                num_classes=n_classes,
                num_samples=1,
                indices_key="indices",
                warn=False,
            ),
            RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
            RandGaussianNoised(keys="image", std=0.02, prob=0.2),
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
    ) -> None:
        self.cases = list(cases)
        self.patch = tuple(int(p) for p in patch)
        self.n_classes = n_classes
        self.slots = int(slots)
        self.seed = int(seed)
        self.spatial_dims = spatial_dims
        self.slice_axis = slice_axis
        self.epoch = 0
        self.transform = patch_transform(self.patch, n_classes)

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
            "indices": case.indices,
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
    "patch_transform",
    "read_pair",
    "to_model_grid",
]
