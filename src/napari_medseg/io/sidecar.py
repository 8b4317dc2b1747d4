"""The JSON file beside a label map that says what its values mean and what made it.

Every labels NIfTI saved through :func:`napari_medseg.io.save.save_segmentation`
(``medseg segment -o seg.nii.gz``, the demo, napari's Save widget) gets ``seg.json``
beside it (the BIDS sidecar convention: same name, ``.json`` instead of
``.nii``/``.nii.gz``) with the class names and colours and the model's name and
settings. ``medseg report seg.nii.gz`` reads it, so the report names the labels and
carries the model in its provenance without extra options.
The ``labels`` entry is ``{"value": "name"}``, the form
:func:`napari_medseg.io.label_names.read_label_names` reads, so ``--names seg.json`` works
with any tool that understands that mapping.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from napari_medseg.io.nifti import NIFTI_SUFFIXES
from napari_medseg.labels.classes import rgb_from_hex


def sidecar_path(labels_path: str | PathLike) -> Path:
    """``seg.nii.gz`` -> ``seg.json`` (a path without a NIfTI suffix gets ``.json`` added)."""
    path = Path(labels_path)
    name = path.name
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_name(name + ".json")


def sidecar_content(
    classes: Mapping[int, tuple[str, str]], model: Mapping[str, Any], source_name: str
) -> dict[str, Any]:
    """The sidecar as a JSON-ready dict.

    Parameters
    ----------
    classes : mapping
        ``{value: (name, "#rrggbb")}``, the one class table
        (:mod:`napari_medseg.labels.classes`); written in its order, colours as
        ``[r, g, b]`` integers 0-255.
    model : mapping
        What made the labels, ``{"name", "settings"}`` (device, overlap, window...),
        for provenance; empty for labels drawn by hand.
    source_name : str
        File name (not the full path) of the scan that was segmented.
    """
    return {
        "labels": {str(value): name for value, (name, _) in classes.items()},
        "colors": {str(value): list(rgb_from_hex(color)) for value, (_, color) in classes.items()},
        "model": model,
        "source": source_name,
    }


def write_sidecar(
    path: str | PathLike, content: dict[str, Any], protect: Iterable[str | PathLike] = ()
) -> None:
    """Write a sidecar atomically, never over a file in ``protect`` (the inputs)."""
    from napari_medseg.io.atomic import atomic_output, refuse_source_overwrite

    refuse_source_overwrite(path, protect)
    with atomic_output(Path(path)) as temporary:
        Path(temporary).write_text(json.dumps(content, indent=2, default=str) + "\n")


def read_sidecar_model(path: str | PathLike) -> dict[str, Any] | None:
    """The ``model`` entry of a sidecar, or None when it has none (or is not JSON)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, dict) else None
