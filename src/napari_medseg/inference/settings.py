"""How to segment: the model and the inference options, as one value (no torch import).

:class:`SegmentSettings` holds exactly the arguments of
:class:`~napari_medseg.inference.segmenter.Segmenter`; the Segment widget's runs and
``medseg batch``'s cases (which add their own options to it) both make their Segmenter
from it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SegmentSettings:
    """How to segment: the model and the inference options.

    Attributes
    ----------
    model : str
        Catalogue name or path (see :func:`napari_medseg.models.describe.describe_model`).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    amp : bool
        Mixed precision (float16 on CUDA, bfloat16 on a CPU that has it natively).
    overlap : float or None
        Sliding-window overlap in [0, 1); None: the model's.
    sw_batch_size : int or None
        Windows per network call; None: the model's.
    tta : bool
        Test-time augmentation (flips).
    trust_bundle : bool
        The user trusts this MONAI bundle folder (its config runs code).
    """

    model: str
    device: str = "auto"
    amp: bool = True
    overlap: float | None = None
    sw_batch_size: int | None = None
    tta: bool = False
    trust_bundle: bool = False

    def segmenter_arguments(self) -> dict[str, Any]:
        """The :class:`~napari_medseg.inference.segmenter.Segmenter` keyword arguments
        (this class's fields only, also on a subclass that adds its own)."""
        return {field.name: getattr(self, field.name) for field in fields(SegmentSettings)}

    def make_segmenter(self, device: str | None = None) -> Any:
        """Load the model: a :class:`~napari_medseg.inference.segmenter.Segmenter`
        (on ``device`` instead of the settings' when given)."""
        from napari_medseg.inference.segmenter import Segmenter

        arguments = self.segmenter_arguments()
        if device is not None:
            arguments["device"] = device
        return Segmenter(**arguments)

    def cache_key(self) -> tuple:
        """What makes two loaded Segmenters interchangeable.

        A model file or folder also counts with its modification time, so an updated
        model on disk is loaded again.
        """
        path = Path(self.model).expanduser()
        stamp = path.stat().st_mtime_ns if path.exists() else None
        return (
            self.model,
            stamp,
            self.device,
            self.amp,
            self.overlap,
            self.sw_batch_size,
            self.tta,
        )


__all__ = ["SegmentSettings"]
