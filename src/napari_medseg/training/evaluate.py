"""Dice of a model on held-out pairs, measured the way a user meets the model.

Each validation scan runs through :class:`~napari_medseg.inference.segmenter.Segmenter`
(the project's sliding window, argmax on the model grid, labels back on the scan's
grid) and its labels are compared on the scan's grid with the corrected labels by
:func:`~napari_medseg.measure.overlap.compare_labels` (the metric ``medseg report
--reference`` prints, checked against MONAI and SimpleITK in its tests). So the numbers
of a fine-tuning run, of its model card and of a later ``medseg report`` agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from napari_medseg.training.data import ReadPair


@dataclass
class ValidationScore:
    """Dice per class over the validation pairs.

    Attributes
    ----------
    per_class : dict
        Class name -> mean Dice over the pairs whose reference or prediction holds the
        class (a class absent from both in a pair does not count for it).
    per_case : list of dict
        Class name -> Dice, one dict per pair, in the pairs' order.
    """

    per_class: dict[str, float] = field(default_factory=dict)
    per_case: list[dict[str, float]] = field(default_factory=list)

    @property
    def mean(self) -> float:
        """Mean of :attr:`per_class` (NaN when empty): what "better" means here."""
        values = [v for v in self.per_class.values() if not math.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    def to_dict(self) -> dict:
        return {
            "mean_dice": _rounded(self.mean),
            "dice_per_class": {k: _rounded(v) for k, v in self.per_class.items()},
            "dice_per_case": [{k: _rounded(v) for k, v in c.items()} for c in self.per_case],
        }


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 4)


def validation_dice(
    segmenter, pairs: Sequence[ReadPair], names: dict[int, str], cancel=None
) -> ValidationScore:
    """Dice per class of ``segmenter``'s labels against each pair's labels.

    Parameters
    ----------
    segmenter : Segmenter
        The model to score (its network in eval mode while this runs).
    pairs : sequence of ReadPair
        Held-out scans with their corrected labels.
    names : dict
        ``{value: name}`` of the model's classes (background left out).
    cancel : threading.Event, optional
        Passed to every prediction.
    """
    from napari_medseg.measure.overlap import compare_labels

    per_case: list[dict[str, float]] = []
    for read in pairs:
        result = segmenter.predict(read.channels, cancel=cancel)
        metrics = compare_labels(
            result.labels,
            read.labels.array,
            read.labels.affine,
            names=names,
            distances=False,
            which=sorted(names),
        )
        case = {}
        for metric in metrics:
            if metric.empty != "both":
                case[names[metric.label]] = float(metric.dice)
        per_case.append(case)
    per_class = {}
    for name in names.values():
        values = [case[name] for case in per_case if name in case]
        per_class[name] = float(np.mean(values)) if values else float("nan")
    return ValidationScore(per_class, per_case)


__all__ = ["ValidationScore", "validation_dice"]
