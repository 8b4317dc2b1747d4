"""Label classes as a plain table: ``{value: (name, "#rrggbb")}``.

The one form in which class names and colours travel between models (their
:class:`~napari_medseg.models.spec.LabelClass` list), napari layers (their
features), sidecars and DICOM SEG files.
"""

from __future__ import annotations

from collections.abc import Iterable


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


def classes_from_label_classes(label_classes: Iterable) -> dict[int, tuple[str, str]]:
    """``{value: (name, "#rrggbb")}`` from model :class:`LabelClass` objects."""
    return {int(c.value): (str(c.name), hex_color(c.color)) for c in label_classes}


__all__ = ["classes_from_label_classes", "hex_color"]
