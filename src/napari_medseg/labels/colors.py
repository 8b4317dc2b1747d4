"""Label colours that can be told apart: a perceptual distance, and defaults for classes
that come without a colour.

A names file (``value name`` lines, plain JSON, a DICOM SEG without display colours)
often gives no colour. :func:`complete_colors` gives each such class a colour of its
own: the default palette colour of its value (:func:`napari_medseg.labels.classes.default_color`)
when that is far enough from the colours of its neighbouring values and not used by
another class, else the first colour of a long sequence of well-spread hues that is.
Neighbours matter most: label ``n`` and ``n + 1`` usually touch (kidney cortex and
medulla, organ and tumour), so they must never look alike.

Distances are CIE76 colour differences (Delta E in CIELAB, D65 white): about 2.3 is
just noticeable, and two label colours should differ by :data:`MIN_NEIGHBOUR_DELTA_E`
or more.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable, Mapping

import numpy as np

from napari_medseg.labels.classes import DEFAULT_COLORS, default_color, hex_color, rgb_from_hex

#: Smallest colour difference (CIE76 Delta E) between a default colour and the
#: colours of the neighbouring label values.
MIN_NEIGHBOUR_DELTA_E = 30.0
#: Smallest difference between a default colour and any other class's colour
#: (kept while such colours remain; a map with hundreds of classes reuses hues).
MIN_ANY_DELTA_E = 12.0
#: How many values either side count as neighbours.
NEIGHBOURS = 2


_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_D65 = np.array([0.95047, 1.0, 1.08883])


def lab(rgb) -> np.ndarray:
    """CIELAB ``(L*, a*, b*)`` of sRGB colours in 0-255 (D65 white).

    Parameters
    ----------
    rgb : array-like
        One colour ``(r, g, b)`` or an array of them, shape ``(..., 3)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., 3)``.
    """
    c = np.asarray(rgb, dtype=float)[..., :3] / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = (linear @ _RGB_TO_XYZ.T) / _D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


def delta_e(a: Iterable[float], b: Iterable[float]) -> float:
    """CIE76 colour difference of two sRGB colours ``(r, g, b)`` in 0-255."""
    return float(np.linalg.norm(lab(list(a)[:3]) - lab(list(b)[:3])))


def _far_from(candidates: np.ndarray, colours: list, limit: float) -> np.ndarray:
    """Which candidate colours (CIELAB, ``(M, 3)``) are ``limit`` or more from all of
    ``colours`` (RGB)."""
    if not colours:
        return np.ones(len(candidates), dtype=bool)
    d = np.linalg.norm(candidates[:, None, :] - lab(np.asarray(colours))[None], axis=-1)
    return np.all(d >= limit, axis=1)


def _candidates(value: int) -> list[tuple[int, int, int]]:
    """Colours tried for a value, best first: its palette colour, the rest of the
    palette from there, then golden-angle hues at three saturation/brightness levels."""
    palette = list(DEFAULT_COLORS[1:])
    start = palette.index(default_color(value)) if value > 0 else 0
    out = palette[start:] + palette[:start]
    for sat, bright in ((0.75, 0.95), (0.55, 0.75), (0.9, 0.6)):
        for k in range(48):
            hue = (value * 0.618033988749895 + k * 0.381966011250105) % 1.0
            r, g, b = colorsys.hsv_to_rgb(hue, sat, bright)
            out.append((round(r * 255), round(g * 255), round(b * 255)))
    return out


def _valid(color: str) -> tuple[int, int, int] | None:
    try:
        return rgb_from_hex(color) if color else None
    except ValueError:
        return None


def complete_colors(classes: Mapping[int, tuple[str, str]]) -> dict[int, tuple[str, str]]:
    """The classes with a ``"#rrggbb"`` colour for every one that has none (or a bad one).

    Parameters
    ----------
    classes : mapping
        ``{value: (name, "#rrggbb" or "")}``.

    Returns
    -------
    dict
        The same classes in ascending value order; given colours are kept as they are.
        A class without one gets the first candidate colour (see :func:`_candidates`)
        at least :data:`MIN_NEIGHBOUR_DELTA_E` from the classes within
        :data:`NEIGHBOURS` values of it and, while there is one, at least
        :data:`MIN_ANY_DELTA_E` from every other class; 0 (background) gets black.
    """
    table = {int(v): (str(n), str(c)) for v, (n, c) in classes.items()}
    given = {v: _valid(c) for v, (_, c) in table.items()}
    chosen: dict[int, tuple[int, int, int]] = {v: c for v, c in given.items() if c is not None}
    for value in sorted(given):
        if given[value] is not None:
            continue
        if value == 0:
            chosen[0] = (0, 0, 0)
            continue
        near = [
            chosen[v]
            for v in range(value - NEIGHBOURS, value + NEIGHBOURS + 1)
            if v != value and v > 0 and v in chosen
        ]
        others = [c for v, c in chosen.items() if v > 0]
        candidates = _candidates(value)
        cand_lab = lab(np.asarray(candidates))
        apart = _far_from(cand_lab, near, MIN_NEIGHBOUR_DELTA_E)
        best = apart & _far_from(cand_lab, others, MIN_ANY_DELTA_E)
        index = int(np.argmax(best)) if best.any() else int(np.argmax(apart))  # 0: none apart
        pick = candidates[index]
        chosen[value] = pick
    return {
        v: (name, color if given[v] is not None else hex_color(chosen[v]))
        for v, (name, color) in sorted(table.items())
    }


__all__ = ["MIN_NEIGHBOUR_DELTA_E", "complete_colors", "delta_e", "lab"]
