"""Class names and colours of a napari Labels layer, kept in the layer's features.

One convention for every widget: a labels layer made by napari-medseg carries a
``features`` table with one row per label value (background included)::

    index  name        color
    0      background  #000000
    1      liver       #dc6440
    ...

napari maps rows to label values through the ``index`` column, so hovering a
voxel shows its class name in the status bar. The colours are also set as a
:class:`napari.utils.colormaps.DirectLabelColormap`, so a label shows the colour
of its class (0 stays transparent; values without a class keep napari's own
colours, so a new label painted on a model's output is visible). A labels layer
napari made itself (no features) gets ``label_<n>`` names and napari's own colours
until the user renames or recolours a label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from napari_medseg.labels.classes import classes_from_label_classes, default_name, hex_color


def rgba(color: str | Iterable[float]) -> np.ndarray:
    """A colour as napari's RGBA floats in [0, 1] (``"#rrggbb"`` or 0-255 RGB)."""
    if isinstance(color, str):
        text = color.lstrip("#")
        if len(text) != 6:
            raise ValueError(f"colour {color!r} is not #rrggbb")
        return np.array([int(text[i : i + 2], 16) / 255.0 for i in (0, 2, 4)] + [1.0])
    values = np.asarray(list(color), dtype=float)[:4]
    if values.max(initial=0.0) > 1.0:
        values[:3] = values[:3] / 255.0
    if values.size == 3:
        values = np.append(values, 1.0)
    return values


def features_table(classes: Mapping[int, tuple[str, str]]):
    """A features DataFrame from ``{value: (name, "#rrggbb")}`` (0 added when missing)."""
    import pandas as pd

    rows = dict(classes)
    rows.setdefault(0, ("background", "#000000"))
    values = sorted(rows)
    return pd.DataFrame(
        {
            "index": np.asarray(values, dtype=np.int64),
            "name": [str(rows[v][0]) for v in values],
            "color": [str(rows[v][1]) for v in values],
        }
    )


#: Label values below this that have no class keep the colour napari gives them on a
#: plain labels layer; higher ones share one colour. A direct colormap shows values it
#: does not list as transparent: a label painted with a value the class table lacks
#: (a new lesion on a model's output) would be invisible.
UNLISTED_COLOURED_BELOW = 256


def colormap_for(classes: Mapping[int, tuple[str, str]], alpha: Mapping[int, float] | None = None):
    """A DirectLabelColormap: each value its class colour, 0 transparent, and values
    without a class in the colour napari gives them (see :data:`UNLISTED_COLOURED_BELOW`).

    Parameters
    ----------
    classes : mapping
        ``{value: (name, "#rrggbb")}``.
    alpha : mapping, optional
        ``{value: opacity}`` in [0, 1] (0: hidden) for values not shown opaque.
    """
    from napari.utils.colormaps import DirectLabelColormap, label_colormap

    napari_colours = label_colormap(49, 0.5, background_value=0)  # a plain layer's
    values = np.arange(UNLISTED_COLOURED_BELOW + 1)
    mapped = napari_colours.map(values)
    colors: dict[Any, Any] = {None: mapped[-1]}
    colors.update({int(v): c for v, c in zip(values[1:-1], mapped[1:-1], strict=True)})
    for value, (_, color) in classes.items():
        colors[int(value)] = rgba(color)
    _set_alpha(colors, alpha or {})
    colors[0] = np.array([0.0, 0.0, 0.0, 0.0])
    return DirectLabelColormap(color_dict=colors)


def _set_alpha(colors: dict[Any, Any], alpha: Mapping[int, float]) -> None:
    """Give values of a colormap's ``{value: RGBA}`` an opacity (in place)."""
    for value, opacity in alpha.items():
        value, opacity = int(value), float(opacity)
        if value <= 0:
            raise ValueError("the background (0) is always transparent")
        if not 0.0 <= opacity <= 1.0:
            raise ValueError(f"opacity {opacity:g} of label {value} is not in [0, 1]")
        colour = np.array(colors.get(value, colors[None]), dtype=float)  # a copy
        colour[3] = opacity
        colors[value] = colour


def label_alpha(layer: Any) -> dict[int, float]:
    """``{value: opacity}`` of the label values a layer shows below full opacity.

    Read from the layer's direct colormap (the one place the per-label opacity
    lives, so every rebuild of the colormap can keep it); values not listed are
    opaque. Empty for a layer in napari's automatic colours.
    """
    color_dict = getattr(layer.colormap, "color_dict", None) or {}
    return {
        int(value): round(float(colour[3]), 4)
        for value, colour in color_dict.items()
        if value is not None and int(value) > 0 and float(colour[3]) < 1.0
    }


def set_label_alpha(layer: Any, alpha: Mapping[int, float]) -> None:
    """Show label values of a labels layer at an opacity, in one colormap update.

    Parameters
    ----------
    layer : napari.layers.Labels
    alpha : mapping
        ``{value: opacity}``, values > 0, opacity in [0, 1] (0: hidden, 1: opaque);
        other values keep theirs. A layer in napari's automatic colours first gets
        classes for its drawn values, in the colours they are shown in
        (:func:`set_label_classes`).
    """
    from napari.utils.colormaps import DirectLabelColormap

    if not isinstance(layer.colormap, DirectLabelColormap):
        set_label_classes(layer, {})
    colormap = layer.colormap
    colors = dict(colormap.color_dict)
    _set_alpha(colors, alpha)
    layer.colormap = DirectLabelColormap(
        color_dict=colors, use_selection=colormap.use_selection, selection=colormap.selection
    )


def layer_kwargs_for_classes(classes: Mapping[int, tuple[str, str]]) -> dict[str, Any]:
    """``features`` and ``colormap`` keyword arguments of a labels layer showing ``classes``.

    A class without a colour (``""``) gets one that differs from its neighbours'
    (:func:`napari_medseg.labels.colors.complete_colors`).
    """
    from napari_medseg.labels.colors import complete_colors

    classes = complete_colors(classes)
    return {"features": features_table(classes), "colormap": colormap_for(classes)}


def layer_classes(layer: Any) -> dict[int, tuple[str, str]]:
    """``{value: (name, "#rrggbb")}`` stored in a labels layer's features (may be empty).

    Values without a ``name`` column get ``label_<n>``; without a ``color`` column,
    the colour napari shows them in.
    """
    return _feature_classes(
        getattr(layer, "features", None),
        lambda value: hex_color(layer.get_color(value), unit=True) if value else "#000000",
    )


def classes_from_state(
    features: Any, colormap: Any = None, values: Iterable[int] = ()
) -> dict[int, tuple[str, str]]:
    """``{value: (name, "#rrggbb")}`` from a labels layer's state, as napari hands it to
    a writer (``attributes["features"]`` and ``attributes["colormap"]``).

    Parameters
    ----------
    features : pandas.DataFrame or None
        The layer's features (``index``, ``name``, ``color`` columns, as
        :func:`features_table` makes them).
    colormap : napari label colormap, optional
        Colours of values the features do not colour.
    values : iterable of int
        Label values drawn in the layer: those without a class get ``label_<n>`` in
        the colour the colormap shows them in.
    """

    def shown(value: int) -> str:
        if not value or colormap is None:
            return "#000000" if not value else ""
        return hex_color(colormap.map(np.asarray([value]))[0], unit=True)

    classes = _feature_classes(features, shown)
    for value in (int(v) for v in values):
        if value > 0 and value not in classes:
            classes[value] = (default_name(value), shown(value))
    return classes


def _feature_classes(features: Any, color_of: Any) -> dict[int, tuple[str, str]]:
    """Rows of a features table as ``{value: (name, colour)}`` (``color_of(value)`` for a
    table without a ``color`` column)."""
    if features is None or "index" not in getattr(features, "columns", ()):
        return {}
    out: dict[int, tuple[str, str]] = {}
    for row in range(len(features)):
        value = int(features["index"].iloc[row])
        name = features["name"].iloc[row] if "name" in features else default_name(value)
        color = str(features["color"].iloc[row]) if "color" in features else color_of(value)
        out[value] = (str(name) if name == name else default_name(value), color)  # NaN name
    return out


def label_names(layer: Any, values: Iterable[int] = ()) -> dict[int, str]:
    """Names of label values in a layer: its features, else ``label_<n>`` (0: background).

    Parameters
    ----------
    layer : napari.layers.Labels
    values : iterable of int
        Values to name even when the features do not list them.
    """
    names = {value: name for value, (name, _) in layer_classes(layer).items()}
    for value in values:
        names.setdefault(int(value), "background" if int(value) == 0 else default_name(value))
    return names


def set_label_class(
    layer: Any, value: int, *, name: str | None = None, color: str | None = None
) -> None:
    """Rename and/or recolour one label value of a labels layer (features and colormap).

    Parameters
    ----------
    layer : napari.layers.Labels
    value : int
        Label value (> 0).
    name : str, optional
        New name; unchanged when None.
    color : str, optional
        New ``"#rrggbb"`` colour; unchanged when None.
    """
    value = int(value)
    if value <= 0:
        raise ValueError("the background (0) has no name or colour to change")
    current_name, current_color = layer_classes(layer).get(value, (default_name(value), ""))
    if not current_color:
        current_color = hex_color(layer.get_color(value), unit=True)
    set_label_classes(
        layer,
        {
            value: (
                current_name if name is None else str(name),
                current_color if color is None else hex_color(rgba(color), unit=True),
            )
        },
    )


def set_label_classes(layer: Any, changes: Mapping[int, tuple[str, str]]) -> None:
    """Give label values of a labels layer names and colours, in one update.

    Parameters
    ----------
    layer : napari.layers.Labels
    changes : mapping
        ``{value: (name, "#rrggbb")}`` for values > 0; other classes are kept. Drawn
        values without a class (all of them on a napari-made layer) get one, in the
        colour they are shown in, so the new colormap does not recolour them.
    """
    from napari_medseg.labels.maps import present_labels

    classes = layer_classes(layer)
    for other in present_labels(layer.data).tolist():
        if other not in classes:
            classes[other] = (default_name(other), hex_color(layer.get_color(other), unit=True))
    classes.update({int(v): (str(n), str(c)) for v, (n, c) in changes.items()})
    layer.features = features_table(classes)
    layer.colormap = colormap_for(classes, alpha=label_alpha(layer))  # hidden labels stay hidden


__all__ = [
    "classes_from_label_classes",
    "classes_from_state",
    "colormap_for",
    "features_table",
    "hex_color",
    "label_alpha",
    "label_names",
    "layer_classes",
    "layer_kwargs_for_classes",
    "rgba",
    "set_label_alpha",
    "set_label_class",
    "set_label_classes",
]
