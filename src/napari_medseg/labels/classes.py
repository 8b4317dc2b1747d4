"""What the values of a label map mean: names and colours.

A model describes its outputs as :class:`LabelClass` objects (value, name, RGB
0-255). Everywhere else (napari layer features, sidecars, DICOM SEG files, the
save path) classes travel as one plain table, ``{value: (name, "#rrggbb")}``;
:func:`classes_from_label_classes` is the one conversion between the two, and
:func:`hex_color` / :func:`rgb_from_hex` the one between colour notations. A value
without a known name is called :func:`default_name` (``label_<n>``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Colours for labels that do not state one (RGB, 0-255), cycled by label value.
DEFAULT_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (0, 0, 128),
)


def default_color(value: int) -> tuple[int, int, int]:
    """Colour of label ``value`` when the model does not state one (0 is black)."""
    if value == 0:
        return DEFAULT_COLORS[0]
    return DEFAULT_COLORS[1 + (value - 1) % (len(DEFAULT_COLORS) - 1)]


@dataclass(frozen=True)
class LabelClass:
    """One output class of a model.

    Attributes
    ----------
    value : int
        Value of the class in the label map (0 is background).
    name : str
        Human-readable name, e.g. ``"liver"``.
    color : tuple of int
        RGB colour, 0-255.
    """

    value: int
    name: str
    color: tuple[int, int, int] = (0, 0, 0)


def default_name(label: int) -> str:
    """Name of a label without a known name: ``label_<n>``."""
    return f"label_{int(label)}"


def hex_color(rgb: Iterable[float], *, unit: bool = False) -> str:
    """``(r, g, b)`` -> ``"#rrggbb"``.

    Parameters
    ----------
    rgb : iterable of float
        Red, green, blue (an alpha after them is ignored), 0-255; 0-1 when ``unit``.
    unit : bool
        The values are napari's 0-1 floats.
    """
    values = [float(v) * (255.0 if unit else 1.0) for v in list(rgb)[:3]]
    r, g, b = (int(round(min(max(v, 0.0), 255.0))) for v in values)
    return f"#{r:02x}{g:02x}{b:02x}"


def rgb_from_hex(color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` -> ``(r, g, b)``, 0-255."""
    text = color.lstrip("#")
    if len(text) != 6:
        raise ValueError(f"colour {color!r} is not #rrggbb")
    return tuple(int(text[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


def classes_from_label_classes(label_classes: Iterable) -> dict[int, tuple[str, str]]:
    """``{value: (name, "#rrggbb")}`` from model :class:`LabelClass` objects."""
    return {int(c.value): (str(c.name), hex_color(c.color)) for c in label_classes}


__all__ = [
    "DEFAULT_COLORS",
    "LabelClass",
    "classes_from_label_classes",
    "default_color",
    "default_name",
    "hex_color",
    "rgb_from_hex",
]
