"""Named CT display windows (centre and width in Hounsfield units).

A window maps ``[centre - width / 2, centre + width / 2]`` HU onto black..white;
values below are black, above white. The presets are the typical values listed by
Radiopaedia, *Windowing (CT)* (Murphy A, Bell DJ et al.,
https://radiopaedia.org/articles/windowing-ct, accessed 2025), written there as
``W:width L:level``:

=============  ======  =====  ====================================================
preset         centre  width  Radiopaedia
=============  ======  =====  ====================================================
brain              40     80  head: brain W:80 L:40
subdural           75    215  head: subdural W:130-300 L:50-100 (mid-range values)
lung             -600   1500  chest: lungs W:1500 L:-600
mediastinum        50    350  chest: mediastinum W:350 L:50
abdomen            50    400  abdomen: soft tissues W:400 L:50
liver              30    150  abdomen: liver W:150 L:30
bone              400   1800  spine/general: bones W:1800 L:400
=============  ======  =====  ====================================================

Institutions and vendors vary these a little; they are starting points, and napari's
contrast slider adjusts from there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WindowPreset:
    """One named CT window.

    Attributes
    ----------
    name : str
        Key, e.g. ``"lung"``.
    title : str
        What a button shows, e.g. ``"Lung"``.
    center : float
        Window centre (level), HU.
    width : float
        Window width, HU (> 0).
    """

    name: str
    title: str
    center: float
    width: float

    @property
    def limits(self) -> tuple[float, float]:
        """``(low, high)`` HU shown black and white."""
        return window_limits(self.center, self.width)


#: The presets, in the order the widget shows them (see the module docstring).
CT_WINDOWS: tuple[WindowPreset, ...] = (
    WindowPreset("brain", "Brain", 40.0, 80.0),
    WindowPreset("subdural", "Subdural", 75.0, 215.0),
    WindowPreset("lung", "Lung", -600.0, 1500.0),
    WindowPreset("mediastinum", "Mediastinum", 50.0, 350.0),
    WindowPreset("abdomen", "Abdomen", 50.0, 400.0),
    WindowPreset("liver", "Liver", 30.0, 150.0),
    WindowPreset("bone", "Bone", 400.0, 1800.0),
)


def window_limits(center: float, width: float) -> tuple[float, float]:
    """Display limits ``(center - width / 2, center + width / 2)`` of a window.

    Parameters
    ----------
    center, width : float
        Window centre and width in the image's units (HU for CT). A width below 1
        (DICOM allows >= 1 only) is taken as 1, so the limits never coincide.

    Returns
    -------
    tuple of float
        ``(low, high)``, ``low < high``.
    """
    center, width = float(center), max(float(width), 1.0)
    return center - width / 2.0, center + width / 2.0


def dragged_window(
    center: float,
    width: float,
    dx: float,
    dy: float,
    *,
    value_range: tuple[float, float],
    view_pixels: float,
) -> tuple[float, float]:
    """The window after a window/level drag, mapped as 3D Slicer maps it.

    Slicer's ``vtkMRMLWindowLevelWidget`` (``ProcessAdjustWindowLevel``): one pixel of
    mouse travel changes the window by ``gain = (max - min) / min(view width, view
    height)``, the image's value range over the view's smaller side, so a drag across
    the view sweeps the whole range whatever the modality. Right widens the window
    (less contrast), left narrows it; up raises the level (the image darkens), down
    lowers it. The width stays at least one step (``gain``) and the centre within
    ``[min - width / 2, max + width / 2]``, so the window always overlaps the values.
    The drag is measured from where it started, so moving back restores the window.

    Parameters
    ----------
    center, width : float
        The window when the drag started (image units: HU for CT).
    dx, dy : float
        Mouse travel since the drag started, screen pixels; ``dx`` to the right and
        ``dy`` downwards (Qt's and vispy's screen axes) are positive.
    value_range : tuple of float
        ``(min, max)`` of the image's values.
    view_pixels : float
        The smaller side of the view, pixels.

    Returns
    -------
    tuple of float
        ``(center, width)``, ``width > 0``.
    """
    low, high = (float(v) for v in value_range)
    span = high - low if high > low else 1.0
    gain = span / max(float(view_pixels), 1.0)
    new_width = max(float(width) + gain * float(dx), gain)
    new_center = float(center) - gain * float(dy)
    new_center = min(max(new_center, low - new_width / 2.0), high + new_width / 2.0)
    return new_center, new_width


def get_preset(name: str) -> WindowPreset:
    """The preset called ``name`` (case-insensitive).

    Raises
    ------
    KeyError
        Unknown name; the message lists the known ones.
    """
    for preset in CT_WINDOWS:
        if preset.name == name.strip().lower():
            return preset
    raise KeyError(f"unknown CT window {name!r}; choose one of {[p.name for p in CT_WINDOWS]}")


__all__ = ["CT_WINDOWS", "WindowPreset", "dragged_window", "get_preset", "window_limits"]
