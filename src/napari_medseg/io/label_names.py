"""Label names and colours in the files segmentation tools keep next to label maps.

Read (:func:`read_label_classes`, names and colours; :func:`read_label_names`, names):

* JSON: a plain mapping ``{"1": "liver", "2": "spleen"}``; a dataset description with
  a ``"labels"`` entry, either value -> name (Medical Segmentation Decathlon
  ``dataset.json``) or name -> value (nnU-Net v2 ``dataset.json``); napari-medseg's
  sidecar (``"labels"`` plus ``"colors"`` as ``[r, g, b]``).
* Text, one label per line (``#`` starts a comment): ITK-SNAP label descriptions
  (``IDX R G B A VIS MSH "name"``), 3D Slicer colour tables and FreeSurfer's
  ``FreeSurferColorLUT.txt`` (``value name R G B A``), or plain ``value name``. Names
  may be quoted; a line with an unpaired quote (an apostrophe, as in ``4 Couinaud's
  segment IV``) is split at whitespace instead.

Written (:func:`write_label_classes`) in the format :data:`NAMES_FORMATS` names: ITK-SNAP
label descriptions, a 3D Slicer colour table (``.ctbl``), a FreeSurfer colour LUT, or
JSON ``{value: name}``. Slicer and FreeSurfer tables separate fields by spaces, so a
space in a name is written as ``_`` there (as Slicer does).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

from napari_medseg.errors import FileError


class LabelNamesError(FileError):
    """A label-names file cannot be read."""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


#: Formats :func:`write_label_classes` writes.
NAMES_FORMATS = ("itksnap", "slicer", "freesurfer", "json")

#: ``{value: (name, "#rrggbb")}``; the colour is ``""`` when the file gives none.
ClassTable = dict[int, tuple[str, str]]


def _colour(values: list[str]) -> str:
    from napari_medseg.labels.classes import hex_color

    try:
        return hex_color([float(v) for v in values[:3]])
    except ValueError:
        return ""


def _mapping_colours(path: Path, data: dict, values: list[int]) -> dict[int, str]:
    """``"colors": {value: [r, g, b]}`` of a napari-medseg sidecar, when present."""
    from napari_medseg.labels.classes import hex_color

    colours = data.get("colors") if isinstance(data.get("colors"), dict) else {}
    out = {}
    for key, rgb in colours.items():
        if not _is_number(str(key)):
            continue
        try:
            if not isinstance(rgb, list) or len(rgb) < 3:
                raise ValueError(rgb)
            out[int(float(key))] = hex_color([float(v) for v in rgb])
        except (TypeError, ValueError):
            raise LabelNamesError(path, f"colour of label {key} is not [r, g, b].") from None
    return {v: out.get(v, "") for v in values}


def _from_mapping(path: Path, mapping: dict) -> dict[int, str]:
    if "labels" in mapping and isinstance(mapping["labels"], dict):
        mapping = mapping["labels"]
    out: dict[int, str] = {}
    for key, value in mapping.items():
        if isinstance(value, int) and not isinstance(value, bool) and not _is_number(str(key)):
            out[int(value)] = str(key)  # nnU-Net v2: name -> value
        elif _is_number(str(key)) and float(key).is_integer():
            out[int(float(key))] = str(value)
        else:
            raise LabelNamesError(
                path,
                f"entry {key!r}: {value!r} is neither 'value: name' nor 'name: value'.",
                'Write e.g. {"1": "liver", "2": "spleen"}.',
            )
    return out


def _from_text(path: Path, text: str) -> ClassTable:
    out: ClassTable = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            tokens = shlex.split(line)
        except ValueError:  # an unpaired quote, e.g. "3 Couinaud's segment IV"
            tokens = line.split()
        if len(tokens) < 2 or not _is_number(tokens[0]) or not float(tokens[0]).is_integer():
            raise LabelNamesError(
                path, f"line {number} does not start with a label value and a name: {line!r}."
            )
        colour = ""
        if len(tokens) >= 8 and all(_is_number(t) for t in tokens[1:7]):
            name = tokens[7]  # ITK-SNAP: IDX R G B A VIS MSH "LABEL"
            colour = _colour(tokens[1:4])
        elif len(tokens) == 6 and all(_is_number(t) for t in tokens[2:6]):
            name = tokens[1]  # 3D Slicer colour table, FreeSurfer LUT: value name R G B A
            colour = _colour(tokens[2:5])
        else:
            name = " ".join(tokens[1:])
        out[int(float(tokens[0]))] = (name, colour)
    return out


def read_label_names(path: str | PathLike) -> dict[int, str]:
    """Label value -> name from a JSON or text file (see the module notes).

    Raises
    ------
    LabelNamesError
        Missing or unreadable file, or a format not understood; the message names
        the file.
    """
    return {value: name for value, (name, _) in read_label_classes(path).items()}


def read_label_classes(path: str | PathLike) -> ClassTable:
    """``{value: (name, "#rrggbb")}`` from a JSON or text file (see the module notes).

    The colour is ``""`` where the file gives none (plain JSON, ``value name`` lines).

    Raises
    ------
    LabelNamesError
        Missing or unreadable file, or a format not understood; the message names
        the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as error:
        raise LabelNamesError(path, "no such file.", "Check the path.") from error
    except (OSError, UnicodeDecodeError) as error:
        raise LabelNamesError(path, f"cannot be read as text ({error}).") from error
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise LabelNamesError(path, f"is not valid JSON ({error}).") from error
        if not isinstance(data, dict):
            raise LabelNamesError(path, "holds JSON that is not a mapping of labels to names.")
        names = _from_mapping(path, data)
        colours = _mapping_colours(path, data, list(names))
        return {value: (name, colours[value]) for value, name in names.items()}
    return _from_text(path, text)


def names_format_for(path: str | PathLike) -> str:
    """The format :func:`write_label_classes` picks for a file name.

    ``.json`` -> JSON, ``.ctbl`` -> Slicer, a name with ``lut`` in it -> FreeSurfer,
    anything else (``.txt``, ``.label``) -> ITK-SNAP label descriptions.
    """
    name = Path(path).name.lower()
    if name.endswith(".json"):
        return "json"
    if name.endswith(".ctbl"):
        return "slicer"
    if "lut" in name:
        return "freesurfer"
    return "itksnap"


def _rgb(colour: str, value: int) -> tuple[int, int, int]:
    from napari_medseg.labels.classes import default_color, rgb_from_hex

    try:
        return rgb_from_hex(colour) if colour else default_color(value)
    except ValueError:
        return default_color(value)


def _names_text(classes: Mapping[int, tuple[str, str]], fmt: str) -> str:
    rows = sorted((int(v), str(n), str(c)) for v, (n, c) in classes.items())
    if fmt == "json":
        return json.dumps({str(v): n for v, n, _ in rows}, indent=2, ensure_ascii=False) + "\n"
    lines = []
    if fmt == "itksnap":
        lines += [
            "# ITK-SNAP Label Description File, written by napari-medseg",
            "#    IDX:   Zero-based index",
            "#    -R-:   Red color component (0..255)",
            "#    -G-:   Green color component (0..255)",
            "#    -B-:   Blue color component (0..255)",
            "#    -A-:   Label transparency (0.00 .. 1.00)",
            "#    VIS:   Label visibility (0 or 1)",
            "#    MSH:   Label mesh visibility (0 or 1)",
            "#  LABEL:   Label description",
        ]
        if 0 not in classes:
            lines.append('    0     0    0    0        0  0  0    "Clear Label"')
        for value, name, colour in rows:
            r, g, b = _rgb(colour, value)
            alpha, visible = (0, 0) if value == 0 else (1, 1)
            text = name.replace('"', "'")
            lines.append(
                f'{value:5d} {r:5d} {g:4d} {b:4d} {alpha:8g} {visible:2d} {visible:2d}    "{text}"'
            )
    else:  # slicer and freesurfer: value name R G B A
        title = "3D Slicer colour table" if fmt == "slicer" else "FreeSurfer colour table"
        lines.append(f"# {title}, written by napari-medseg")
        for value, name, colour in rows:
            r, g, b = _rgb(colour, value)
            alpha = 255 if fmt == "slicer" else 0  # FreeSurfer's 4th value is 0 for opaque
            lines.append(
                f"{value} {'_'.join(name.split()) or f'label_{value}'} {r} {g} {b} {alpha}"
            )
    return "\n".join(lines) + "\n"


def write_label_classes(
    path: str | PathLike,
    classes: Mapping[int, tuple[str, str]],
    fmt: str | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write label names and colours as a names file other tools read.

    Parameters
    ----------
    path : path
        Output file.
    classes : mapping
        ``{value: (name, "#rrggbb")}``; a missing colour gets the default colour of
        the value.
    fmt : {"itksnap", "slicer", "freesurfer", "json"}, optional
        Default: :func:`names_format_for` the file name.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    LabelNamesError
        Unknown format, or ``path`` exists and ``overwrite`` is False.
    """
    from napari_medseg.io.atomic import atomic_output

    path = Path(path)
    fmt = fmt or names_format_for(path)
    if fmt not in NAMES_FORMATS:
        raise LabelNamesError(path, f"unknown names format {fmt!r}; use one of {NAMES_FORMATS}.")
    if path.exists() and not overwrite:
        raise LabelNamesError(path, "already exists; it is not replaced.", "Choose another name.")
    text = _names_text(classes, fmt)
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path
