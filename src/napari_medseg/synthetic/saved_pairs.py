"""Phantoms written the way napari's Save widget leaves corrected labels on disk.

For the fine-tuning tests, benchmark and demo: each phantom becomes ``<stem>.nii.gz``
(the scan, int16 HU) and, beside it, ``<stem>_labels.nii.gz`` with its sidecar
``<stem>_labels.json`` written by :func:`~napari_medseg.io.save.save_segmentation`
(the Save widget's one save path), naming the scan and a model marked
``edited_by_hand``: the folder a user has after correcting a model's output.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from napari_medseg.synthetic.phantom import PHANTOM_LABELS, make_phantom

#: The model recorded as the one whose output was corrected.
CORRECTED_MODEL = "phantom-abdomen-3d"


def write_saved_pairs(
    folder: str | Path,
    seeds: Iterable[int],
    *,
    spacing: tuple[float | None, float | None, float | None] | None = None,
    organ_hu_shift: dict[str, float] | None = None,
    prefix: str = "ph",
) -> list[tuple[Path, Path]]:
    """Write one (scan, corrected labels) pair per seed into ``folder``.

    Parameters
    ----------
    folder : path
        Created if needed.
    seeds : iterable of int
        :func:`~napari_medseg.synthetic.phantom.make_phantom` seeds.
    spacing, organ_hu_shift : optional
        Passed to ``make_phantom`` (a coarser grid; a domain the models have not seen).
    prefix : str
        File names are ``<prefix><seed>``.

    Returns
    -------
    list of (scan, labels) paths
    """
    from napari_medseg.io.nifti import write_nifti
    from napari_medseg.io.save import SaveTargets, save_segmentation
    from napari_medseg.labels.classes import classes_from_label_classes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    classes = classes_from_label_classes(PHANTOM_LABELS)
    written = []
    for seed in seeds:
        phantom = make_phantom(int(seed), spacing=spacing, organ_hu_shift=organ_hu_shift)
        scan = folder / f"{prefix}{seed}.nii.gz"
        labels = folder / f"{prefix}{seed}_labels.nii.gz"
        write_nifti(scan, phantom.image.array, phantom.image.affine)
        save_segmentation(
            phantom.labels,
            SaveTargets(labels),
            classes,
            model={"name": CORRECTED_MODEL, "settings": {}, "edited_by_hand": True},
            source=str(scan),
            protect=[scan],
        )
        written.append((scan, labels))
    return written


__all__ = ["CORRECTED_MODEL", "write_saved_pairs"]
