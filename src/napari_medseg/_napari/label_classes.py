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
of its class (0 stays transparent). A labels layer napari made itself (no
features) gets ``label_<n>`` names and napari's own colours until the user
renames or recolours a label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from napari_medseg.class_table import classes_from_label_classes, hex_color
from napari_medseg.label_stats import default_name

#: Feature columns, in order.
FEATURE_COLUMNS = ("index", "name", "color")


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


def colormap_for(classes: Mapping[int, tuple[str, str]]):
    """A DirectLabelColormap: each value its class colour, 0 and unknown values as napari's."""
    from napari.utils.colormaps import DirectLabelColormap

    colors: dict[Any, Any] = {None: np.array([0.0, 0.0, 0.0, 0.0])}
    for value, (_, color) in classes.items():
        colors[int(value)] = rgba(color)
    colors[0] = np.array([0.0, 0.0, 0.0, 0.0])
    return DirectLabelColormap(color_dict=colors)


def layer_kwargs_for_classes(classes: Mapping[int, tuple[str, str]]) -> dict[str, Any]:
    """``features`` and ``colormap`` keyword arguments of a labels layer showing ``classes``."""
    return {"features": features_table(classes), "colormap": colormap_for(classes)}


def layer_classes(layer: Any) -> dict[int, tuple[str, str]]:
    """``{value: (name, "#rrggbb")}`` stored in a labels layer's features (may be empty).

    Values without a ``name`` column get ``label_<n>``; without a ``color`` column,
    the colour napari shows them in.
    """
    features = getattr(layer, "features", None)
    if features is None or "index" not in getattr(features, "columns", ()):
        return {}
    out: dict[int, tuple[str, str]] = {}
    for row in range(len(features)):
        value = int(features["index"].iloc[row])
        name = features["name"].iloc[row] if "name" in features else default_name(value)
        if "color" in features:
            color = str(features["color"].iloc[row])
        else:
            color = hex_color(layer.get_color(value), unit=True) if value else "#000000"
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
    classes = layer_classes(layer)
    current_name, current_color = classes.get(value, (default_name(value), ""))
    if not current_color:
        current_color = hex_color(layer.get_color(value), unit=True)
    if not classes:  # a napari-made layer: keep the colours napari shows for drawn labels
        present = np.unique(np.asarray(layer.data))
        for other in present[present > 0]:
            classes[int(other)] = (
                default_name(int(other)),
                hex_color(layer.get_color(other), unit=True),
            )
    classes[value] = (
        current_name if name is None else str(name),
        current_color if color is None else hex_color(rgba(color), unit=True),
    )
    layer.features = features_table(classes)
    layer.colormap = colormap_for(classes)


__all__ = [
    "FEATURE_COLUMNS",
    "classes_from_label_classes",
    "colormap_for",
    "features_table",
    "hex_color",
    "label_names",
    "layer_classes",
    "layer_kwargs_for_classes",
    "rgba",
    "set_label_class",
]
