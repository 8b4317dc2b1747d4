"""What the ``medseg`` sub-commands share: exit status, help texts, number formats."""

from __future__ import annotations

from collections.abc import Sequence

#: Exit status of a command refused for bad input (a :class:`~napari_medseg.errors.MedsegError`).
EXIT_BAD_INPUT = 2

#: Help of ``--allow-gaps`` (info, convert, segment).
ALLOW_GAPS_HELP = (
    "read a DICOM series with missing slices: they are filled with the lowest value at their "
    "true positions (never stretched) and reported"
)


def format_spacing(values: Sequence[float]) -> str:
    """Voxel sizes as ``"0.7 x 0.7 x 1.25"`` (4 significant digits)."""
    return " x ".join(f"{v:.4g}" for v in values)


__all__ = ["ALLOW_GAPS_HELP", "EXIT_BAD_INPUT", "format_spacing"]
