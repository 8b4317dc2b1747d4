"""Read label names (value -> name) from the files segmentation tools write next to labels.

Understood formats:

* JSON: a plain mapping ``{"1": "liver", "2": "spleen"}``; or a dataset description
  with a ``"labels"`` entry, either value -> name (Medical Segmentation Decathlon
  ``dataset.json``) or name -> value (nnU-Net v2 ``dataset.json``).
* Text, one label per line (``#`` starts a comment): ITK-SNAP label descriptions
  (``IDX R G B A VIS MSH "name"``), 3D Slicer colour tables (``value name R G B A``)
  or plain ``value name``. Names may be quoted; a line with an unpaired quote (an
  apostrophe, as in ``4 Couinaud's segment IV``) is split at whitespace instead.
"""

from __future__ import annotations

import json
import shlex
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


def _from_text(path: Path, text: str) -> dict[int, str]:
    out: dict[int, str] = {}
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
        if len(tokens) >= 8 and all(_is_number(t) for t in tokens[1:7]):
            name = tokens[7]  # ITK-SNAP: IDX R G B A VIS MSH "LABEL"
        elif len(tokens) == 6 and all(_is_number(t) for t in tokens[2:6]):
            name = tokens[1]  # 3D Slicer colour table: value name R G B A
        else:
            name = " ".join(tokens[1:])
        out[int(float(tokens[0]))] = name
    return out


def read_label_names(path: str | PathLike) -> dict[int, str]:
    """Label value -> name from a JSON or text file (see the module notes).

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
        return _from_mapping(path, data)
    return _from_text(path, text)
