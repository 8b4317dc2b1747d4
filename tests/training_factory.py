"""Corrected label maps on disk for the fine-tuning tests (core and GUI).

Analytic shapes (a bright ball = class 1, a dimmer box = class 2 on a dark background,
with noise) written as napari's Save widget writes corrected labels: the scan NIfTI, the
labels NIfTI and its sidecar naming the scan and a model marked ``edited_by_hand``; and
the tiny MONAI UNet parent (``model_factory``) those classes fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from model_factory import write_unet_model

from napari_medseg.io.nifti import write_nifti
from napari_medseg.io.save import SaveTargets, save_segmentation

SHAPE = (24, 24, 20)
AFFINE = np.diag([2.0, 2.0, 2.5, 1.0])
CLASSES = {0: ("background", "#000000"), 1: ("class1", "#ff0000"), 2: ("class2", "#00ff00")}


def shapes_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A noisy scan with a ball (class 1) and a box (class 2) placed by ``seed``."""
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(np.float32)
    centre = rng.uniform([7, 7, 6], [16, 16, 13])
    radius = rng.uniform(3.5, 6.0)
    ball = ((grid - centre[:, None, None, None]) ** 2).sum(0) <= radius**2
    labels = np.zeros(SHAPE, np.uint8)
    labels[ball] = 1
    corner = rng.integers([1, 1, 1], [6, 6, 5])
    size = rng.integers(3, 6, size=3)
    box = tuple(slice(c, c + s) for c, s in zip(corner, size, strict=True))
    labels[box] = np.where(labels[box] == 0, 2, labels[box])
    image = np.where(labels == 1, 80.0, np.where(labels == 2, 45.0, 5.0))
    image = image + rng.normal(0, 6.0, SHAPE)
    return image.astype(np.int16), labels


def write_saved(folder: Path, seeds, classes=CLASSES, model=None) -> list[Path]:
    """Save-widget pairs: ``caseN.nii.gz`` + ``caseN_labels.nii.gz`` + its sidecar."""
    from napari_medseg.volume import Volume

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for seed in seeds:
        image, labels = shapes_case(seed)
        scan = folder / f"case{seed}.nii.gz"
        write_nifti(scan, image, AFFINE)
        target = folder / f"case{seed}_labels.nii.gz"
        save_segmentation(
            Volume(labels, AFFINE),
            SaveTargets(target),
            classes,
            model={"name": "tiny", "settings": {}, "edited_by_hand": True}
            if model is None
            else model,
            source=str(scan),
        )
        written.append(target)
    return written


def write_spleen_pairs(folder: Path, seeds) -> list[Path]:
    """Save-widget pairs for a spleen bundle: the ball of each shapes case as the spleen
    (value 1), the box left out."""
    import nibabel as nib

    written = write_saved(folder, seeds, classes={0: ("background", "#000000"),
                                                  1: ("spleen", "#ff0000")})  # fmt: skip
    for seed, labels_path in zip(seeds, written, strict=True):
        _, labels = shapes_case(seed)
        image = nib.load(labels_path)
        nib.save(nib.Nifti1Image((labels == 1).astype(np.uint8), image.affine), labels_path)
    return written


def write_parent(folder: Path) -> Path:
    """The tiny UNet parent (3 classes, 16^3 windows, 0-100 mapped to 0-1); its spec."""
    from napari_medseg.models.spec import IntensitySpec

    return write_unet_model(
        folder,
        name="tiny",
        out_channels=3,
        roi_size=(16, 16, 16),
        intensity=IntensitySpec(kind="scale_range", a_min=0.0, a_max=100.0, b_min=0.0, b_max=1.0),
        license="MIT",
        intended_use="tests only",
    )
