"""How an image layer's values read: Hounsfield units for CT, the file's units otherwise.

Shared by the CT window dock, the status bar (:mod:`.cursor_status`) and the report:
HU are shown with one decimal everywhere (:func:`format_hu`); :func:`hu_note` says
why a layer is not taken for CT in HU ("" when it is); :func:`layer_window` is the
window its file gives.
"""

from __future__ import annotations

import math
from typing import Any

from napari_medseg._napari.layers import MEDSEG_KEY


def format_hu(value: float) -> str:
    """A value in Hounsfield units as every widget shows it: one decimal (``-1350.0``,
    ``1.5``, ``32.8``), ``-`` when not finite."""
    return f"{value:.1f}" if math.isfinite(value) else "-"


def layer_window(layer: Any) -> tuple[float, float] | None:
    """The ``(centre, width)`` the layer's file gives, or None."""
    window = ((layer.metadata or {}).get(MEDSEG_KEY) or {}).get("window")
    if window is None or len(window) != 2:
        return None
    return float(window[0]), float(window[1])


def hu_note(layer: Any) -> str:
    """Why the HU presets do not fit this layer ("" when it is known or guessed CT in HU).

    From ``metadata["medseg"]``: modality CT or units HU fit; a modality other than
    CT or units other than HU do not, nor does a scan whose file records neither
    (e.g. a NIfTI MR: the reader guesses CT from HU-like values). A layer without
    that metadata (opened by another reader) fits when its value range looks like
    HU (:func:`napari_medseg.io.nifti.guess_modality`, the reader's rule).
    """
    from napari_medseg.io.nifti import guess_modality

    medseg = (layer.metadata or {}).get(MEDSEG_KEY)
    if not medseg:
        low, high = (float(v) for v in layer.contrast_limits_range)
        if guess_modality((low, high))[0] == "CT":
            return ""
        return (
            f"{layer.name!r} records no modality and its values ({format_hu(low)} to "
            f"{format_hu(high)}) do not look like CT in HU: the presets are CT windows in HU."
        )
    modality = str(medseg.get("modality", "") or "").upper()
    units = str(medseg.get("units", "") or "").upper()
    if modality and modality != "CT":
        return f"{layer.name!r} is {modality}, not CT: the presets are CT windows in HU."
    if units and units != "HU":
        return f"{layer.name!r} is in {units}, not Hounsfield units: the presets are in HU."
    if modality == "CT" or units == "HU":
        return ""
    return (
        f"{layer.name!r}: its file records no modality and its values do not look like CT "
        "in HU (air at -1000 HU), e.g. an MR: the presets are CT windows in HU."
    )


__all__ = ["format_hu", "hu_note", "layer_window"]
