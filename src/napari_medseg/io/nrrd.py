"""NRRD scans and 3D Slicer segmentations (``.seg.nrrd``), with exact geometry.

Reading (:func:`read_nrrd`): a ``.nrrd`` or detached ``.nhdr`` volume becomes a
:class:`~napari_medseg.volume.Volume` whose affine maps voxel ``(i, j, k)`` (the
file's fastest axis first, as pynrrd's Fortran index order gives it) to RAS+ mm:
``space origin`` + ``space directions`` in the file's ``space`` (left-posterior-
superior as Slicer writes, or right-anterior-superior), turned into RAS. A file
without a space but with ``spacings`` gets a diagonal affine and a warning: it has
no patient orientation.

A 3D Slicer segmentation (``Segment<N>_*`` fields, see Slicer's "Segmentation
labelmap file format") is read as a label map: each segment's voxels take its
``LabelValue`` in its ``Layer``. Segments of several layers may overlap; one label
map cannot keep both, so layers are merged with the smaller segment on top and the
overlap reported, and a label value used in two layers is given a new value (said in
the warnings). ``metadata.extra["classes"]`` holds ``{value: (Name, "#rrggbb")}``.

Writing (:func:`write_seg_nrrd`): a label map as a one-layer Slicer segmentation,
gzip-compressed, space left-posterior-superior, one ``Segment<N>_*`` group per label
value present (ID ``Segment_<value>``, Name, Color as 0-1 floats, LabelValue, Layer
0, Extent = the segment's bounding box, and a TerminologyEntry tag with the SNOMED CT
codes of the name, :mod:`napari_medseg.labels.terminology`), so Slicer opens it with
the names, colours and meanings; atomic, never over a source.

Core module: imports neither napari, Qt nor torch; pynrrd is imported inside the
functions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.errors import ScanReadError, ScanWriteError
from napari_medseg.volume import RAS_TO_LPS, ScanMetadata, Volume

logger = logging.getLogger(__name__)

#: File name endings read as NRRD.
NRRD_SUFFIXES = (".seg.nrrd", ".nrrd", ".nhdr")
#: NRRD spaces and the matrix that turns their coordinates into RAS+.
_SPACES = {
    "left-posterior-superior": RAS_TO_LPS[:3, :3],  # its own inverse
    "lps": RAS_TO_LPS[:3, :3],
    "right-anterior-superior": np.eye(3),
    "ras": np.eye(3),
    "scanner-xyz": np.eye(3),  # NIfTI-style scanner space is RAS+
}
_SEGMENT_KEY = re.compile(r"^Segment(\d+)_(\w+)$")


class NrrdReadError(ScanReadError):
    """A NRRD file cannot be read as a 3D volume or segmentation."""


class NrrdWriteError(ScanWriteError):
    """A segmentation cannot be written as ``.seg.nrrd``."""


def is_nrrd_path(path: str | PathLike) -> bool:
    """Whether the file name ends like a NRRD file (``.nrrd``, ``.seg.nrrd``, ``.nhdr``)."""
    return str(path).lower().endswith(NRRD_SUFFIXES)


# ---------------------------------------------------------------------------- reading
def _affine(header: dict[str, Any], path: Path, warnings: list[str]) -> np.ndarray:
    """Voxel (i, j, k) -> RAS+ mm of the three spatial axes of a NRRD header."""
    space = str(header.get("space", "") or "").strip().lower()
    directions = header.get("space directions")
    affine = np.eye(4)
    if directions is not None and space:
        if space not in _SPACES:
            raise NrrdReadError(
                path,
                f"its space '{space}' is not a patient space napari-medseg knows "
                "(left-posterior-superior or right-anterior-superior).",
            )
        rows = [np.asarray(d, dtype=float) for d in directions]
        spatial = [d for d in rows if d.size == 3 and np.all(np.isfinite(d))]
        if len(spatial) != 3:
            raise NrrdReadError(path, "does not have 3 spatial axes in its space directions.")
        to_ras = _SPACES[space]
        origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=float)
        if origin.shape != (3,) or not np.all(np.isfinite(origin)):
            origin = np.zeros(3)
            warnings.append("no valid space origin: the volume is placed at 0, 0, 0 mm")
        affine[:3, :3] = to_ras @ np.stack(spatial, axis=1)
        affine[:3, 3] = to_ras @ origin
    else:
        spacings = np.asarray(header.get("spacings", [1.0, 1.0, 1.0]), dtype=float)
        spacings = spacings[np.isfinite(spacings)][-3:]
        if spacings.size != 3:
            spacings = np.ones(3)
        affine[:3, :3] = np.diag(spacings)
        warnings.append(
            "the file states no patient space (no 'space' and 'space directions'): its "
            "orientation and position are unknown; shown with RAS axes at 0, 0, 0 mm"
        )
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise NrrdReadError(path, "its space directions are degenerate (zero volume per voxel).")
    return affine


def _segments(header: dict[str, Any]) -> dict[int, dict[str, str]]:
    """``Segment<N>_*`` fields grouped by N."""
    found: dict[int, dict[str, str]] = {}
    for key, value in header.items():
        match = _SEGMENT_KEY.match(str(key))
        if match:
            found.setdefault(int(match.group(1)), {})[match.group(2)] = str(value)
    return found


def _colour(text: str) -> str:
    from napari_medseg.labels.classes import hex_color

    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        return ""
    return hex_color(values, unit=True) if len(values) == 3 else ""


def _merge_segments(
    data: np.ndarray, segments: dict[int, dict[str, str]], path: Path, warnings: list[str]
) -> tuple[np.ndarray, dict[int, tuple[str, str]]]:
    """One label map from a segmentation's layers; its classes."""
    layers = data if data.ndim == 4 else data[None]
    masks: list[tuple[int, str, str, np.ndarray]] = []  # (value, name, colour, mask)
    used: set[int] = set()
    for index in sorted(segments):
        fields = segments[index]
        try:
            value = int(fields.get("LabelValue", index + 1))
            layer = int(fields.get("Layer", 0))
        except ValueError as error:
            raise NrrdReadError(
                path, f"segment {index}: LabelValue/Layer is not a whole number ({error})."
            ) from None
        if not 0 <= layer < layers.shape[0]:
            raise NrrdReadError(
                path, f"segment {index} names layer {layer}; the file has {layers.shape[0]}."
            )
        name = fields.get("Name", "") or fields.get("ID", "") or f"Segment {index}"
        mask = layers[layer] == value
        if value in used:
            new = max(used | {int(layers.max())}) + 1
            warnings.append(
                f"segment '{name}' shares label value {value} with another layer; it is "
                f"label {new} here"
            )
            value = new
        used.add(value)
        masks.append((value, name, _colour(fields.get("Color", "")), mask))
    top = max((v for v, *_ in masks), default=0)
    out = np.zeros(layers.shape[1:], dtype=np.uint8 if top <= 255 else np.uint16)
    names = {v: n for v, n, _, _ in masks}
    for value, name, _, mask in sorted(masks, key=lambda m: -int(m[3].sum())):
        below = np.unique(out[mask])
        for other in below[below > 0].tolist():
            shared = int(np.count_nonzero(mask & (out == other)))
            warnings.append(
                f"segment '{name}' overlaps '{names[other]}' on {shared} voxels; the label "
                f"map shows '{name}' there"
            )
        out[mask] = value
    return out, {v: (n, c) for v, n, c, _ in sorted(masks)}


def read_nrrd(path: str | PathLike) -> Volume:
    """Read a NRRD volume or a 3D Slicer segmentation.

    Parameters
    ----------
    path : path
        ``.nrrd``, ``.seg.nrrd`` or ``.nhdr`` (with its data file).

    Returns
    -------
    Volume
        ``array`` ``(I, J, K)`` in the file's axis order (fastest axis first),
        ``affine`` voxel -> RAS+ mm. A segmentation gives an integer label map with
        ``metadata.extra["classes"]`` and ``metadata.extra["kind"] == "labels"``.

    Raises
    ------
    NrrdReadError
        Not readable as NRRD, not 3D (or 3D plus one list axis for segmentation
        layers), an unknown space, degenerate directions, or bad segment fields.
    """
    import nrrd

    path = Path(path)
    if not path.is_file():
        raise NrrdReadError(path, "no such file.", "Check the path.")
    try:
        data, header = nrrd.read(str(path), index_order="F")
    except Exception as error:  # pynrrd raises NRRDError, ValueError, OSError, zlib errors
        message = " ".join(str(error).split())
        raise NrrdReadError(path, f"cannot be read as NRRD ({message}).") from error
    warnings: list[str] = []
    segments = _segments(header)
    kinds = [str(k).lower() for k in header.get("kinds", [])]
    layered = data.ndim == 4 and segments and kinds and kinds[0] in ("list", "vector", "none")
    if data.ndim != 3 and not layered:  # a layered segmentation is (layer, i, j, k)
        raise NrrdReadError(
            path,
            f"holds a {data.ndim}D array ({' x '.join(map(str, data.shape))}); napari-medseg "
            "reads 3D volumes (and segmentations with layers).",
        )
    affine = _affine(header, path, warnings)
    extra: dict[str, Any] = {"nrrd_type": str(header.get("type", ""))}
    if segments:
        if data.dtype.kind not in "iub":
            raise NrrdReadError(path, f"is a segmentation with non-integer voxels ({data.dtype}).")
        array, classes = _merge_segments(np.asarray(data), segments, path, warnings)
        extra.update(classes=classes, kind="labels")
    else:
        array = np.asarray(data)
    meta = ScanMetadata(
        source=str(path),
        format="nrrd",
        series_description=str(header.get("content", "") or ""),
        warnings=warnings,
        extra=extra,
    )
    return Volume(array, affine, meta)


# ---------------------------------------------------------------------------- writing
def _format_vector(values: Iterable[float]) -> str:
    return " ".join(f"{float(v):.6g}" for v in values)


def _terminology_tag(name: str) -> str:
    """Slicer's ``Segment<N>_Tags`` value with the SNOMED CT codes of a class name."""
    from napari_medseg.labels.terminology import structure_code

    code = structure_code(name)

    def sct(pair: tuple[str, str] | None) -> str:
        return f"SCT^{pair[0]}^{pair[1]}" if pair else "^^"

    return (
        "TerminologyEntry:Segmentation category and type - 3D Slicer General Anatomy list"
        f"~{sct(code.category)}~{sct(code.type)}~{sct(code.modifier)}"
        "~Anatomic codes - DICOM master list~^^~^^|"
    )


def write_seg_nrrd(
    path: str | PathLike,
    labels: Volume,
    classes: Mapping[int, tuple[str, str]] | None = None,
    *,
    protect: Iterable[str | PathLike] = (),
    overwrite: bool = False,
) -> Path:
    """Write a label map as a 3D Slicer segmentation (``.seg.nrrd``).

    Parameters
    ----------
    path : path
        Output file; should end in ``.seg.nrrd`` so Slicer opens it as a segmentation.
    labels : Volume
        Integer label map ``(I, J, K)`` with its affine (voxel -> RAS+ mm).
    classes : mapping, optional
        ``{value: (name, "#rrggbb")}``; a value without an entry is named
        ``label_<n>`` and gets a default colour.
    protect : iterable of path
        Files never to write over.
    overwrite : bool
        Replace an existing ``path``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    NrrdWriteError
        A name that does not end in ``.nrrd``, or an existing file without ``overwrite``.
    OverwriteSourceError
        ``path`` is a protected file.
    """
    import nrrd

    from napari_medseg.io.atomic import atomic_output, refuse_source_overwrite
    from napari_medseg.labels.classes import default_color, default_name, hex_color, rgb_from_hex
    from napari_medseg.labels.components import bounding_box
    from napari_medseg.labels.maps import as_label_array

    path = Path(path)
    if not path.name.lower().endswith(".nrrd"):
        raise NrrdWriteError(path, "a segmentation is written as .seg.nrrd.", "Name it x.seg.nrrd.")
    refuse_source_overwrite(path, protect)
    if path.exists() and not overwrite:
        raise NrrdWriteError(path, "already exists.", "Pass --overwrite to replace it.")
    array = as_label_array(labels.array, labels.metadata.source or "labels")
    top = int(array.max(initial=0))
    dtype = np.uint8 if top <= 255 else np.uint16
    if top > 65535:
        raise NrrdWriteError(path, f"label value {top} does not fit the 16 bits Slicer reads.")
    lps = RAS_TO_LPS @ np.asarray(labels.affine, dtype=float)
    header: dict[str, Any] = {
        "type": "unsigned char" if dtype == np.uint8 else "unsigned short",
        "dimension": 3,
        "space": "left-posterior-superior",
        "space directions": lps[:3, :3].T,  # one row per voxel axis
        "space origin": lps[:3, 3],
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip",
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    classes = dict(classes or {})
    for number, value in enumerate(int(v) for v in np.unique(array) if v > 0):
        name, color = classes.get(value, (default_name(value), ""))
        try:
            rgb = rgb_from_hex(color) if color else default_color(value)
        except ValueError:
            rgb = default_color(value)
        box = bounding_box(array == value)
        extent = " ".join(f"{s.start} {s.stop - 1}" for s in box)  # type: ignore[union-attr]
        fields = {
            "ID": f"Segment_{value}",
            "Name": str(name).replace("\n", " "),
            "NameAutoGenerated": "0",
            "Color": _format_vector(c / 255.0 for c in rgb),
            "ColorAutoGenerated": "0" if color else "1",
            "LabelValue": str(value),
            "Layer": "0",
            "Extent": extent,
            "Tags": _terminology_tag(str(name)),
        }
        for key, text in fields.items():
            header[f"Segment{number}_{key}"] = text
        logger.debug("segment %s: %s %s", value, name, hex_color(rgb))
    with atomic_output(path) as temporary:
        nrrd.write(str(temporary), array.astype(dtype, copy=False), header, index_order="F")
    return path


__all__ = [
    "NRRD_SUFFIXES",
    "NrrdReadError",
    "NrrdWriteError",
    "is_nrrd_path",
    "read_nrrd",
    "write_seg_nrrd",
]
