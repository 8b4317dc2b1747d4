"""npe2 reader: NIfTI and NRRD files, DICOM files, DICOM folders and DICOMDIRs, and
label maps: NIfTI with napari-medseg's sidecar (or a names file), 3D Slicer
``.seg.nrrd``, DICOM SEG and RT Structure Set files.

Whether a file opens as labels or as an image is decided in the core
(:func:`napari_medseg.io.label_evidence.label_map_evidence`); a label map opens at
half opacity with its class names and colours. A DICOM SEG or RTSTRUCT opens on the
grid of the series it references: the one a viewer shows, else the one found beside
it (:mod:`napari_medseg.io.dicom_derived`).

Every layer carries ``metadata["medseg"]`` (see :mod:`.layers`) and its geometry
is registered (see :mod:`.geometry_registry`), so labels drawn on it save back
onto the source voxel grid. Reading problems become napari notifications whose
text is the typed error's message (the file and the problem); the error is then
re-raised so napari (and scripts calling ``viewer.open``) see the failure too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.io.reader import is_volume_file
from napari_medseg.io.sniff import is_dicomdir_name, looks_like_dicom

logger = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[Any], list[LayerData]]

#: A folder counts as DICOM when one of its first files (breadth-first) is DICOM.
_PROBE_MAX_FILES = 400


# --------------------------------------------------------------------- probing
def folder_has_dicom(folder: str | os.PathLike, max_files: int = _PROBE_MAX_FILES) -> bool:
    """Cheap check: does the folder (searched breadth-first) hold a DICOM file?

    Looks at most ``max_files`` files: a ``DICOMDIR``, a ``.dcm``/``.ima`` name or
    the ``DICM`` marker after the 128-byte preamble.
    """
    queue = [str(folder)]
    seen = 0
    while queue and seen < max_files:
        current = queue.pop(0)
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    queue.append(entry.path)
                    continue
                if not entry.is_file():
                    continue
            except OSError:
                continue
            seen += 1
            if looks_like_dicom(entry.path):
                return True
            if seen >= max_files:
                break
    return False


def get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """npe2 ``get_reader``: a reader function for scans we can open, else None.

    Parameters
    ----------
    path : str or list of str
        One path (a list is accepted when it holds a single path; stacks of
        several files are left to other readers).

    Returns
    -------
    callable or None
        ``reader(path) -> list[LayerData]`` for ``.nii``/``.nii.gz``, ``.nrrd``/
        ``.seg.nrrd``/``.nhdr``, DICOM files (``.dcm``/``.ima``: images, SEG,
        RTSTRUCT), ``DICOMDIR`` and folders holding DICOM; None for anything else
        (e.g. a folder without DICOM), so napari tries other readers.
    """
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    path = os.fspath(path)
    if os.path.isdir(path):
        return read_layers if folder_has_dicom(path) else None
    if is_volume_file(path) or looks_like_dicom(path):
        return read_layers
    return None


# --------------------------------------------------------------------- reading
def read_layers(path: str | Sequence[str]) -> list[LayerData]:
    """Read a scan into napari layer data (the function :func:`get_reader` returns).

    NIfTI, NRRD: one layer (a labels layer when the file holds a label map). DICOM
    SEG or RTSTRUCT file: a labels layer on its series' grid. Other DICOM file:
    its series. DICOM folder or DICOMDIR: every non-localizer image series, each
    as its own layer, with a notification pointing to the series browser.

    Raises
    ------
    napari_medseg.errors.ScanReadError
        After showing its message as a napari notification.
    """
    from napari_medseg._napari.notifications import notify_error
    from napari_medseg.errors import MedsegError

    if isinstance(path, list | tuple):
        paths = [os.fspath(p) for p in path]
    else:
        paths = [os.fspath(path)]
    out: list[LayerData] = []
    for one in paths:
        try:
            out.extend(_read_one(one))
        except MedsegError as error:
            notify_error(error)
            raise
        except Exception as error:  # unexpected: still say which file
            notify_error(error, context=one)
            raise
    return out


def _read_one(path: str) -> list[LayerData]:
    if is_volume_file(path) or (os.path.isfile(path) and not looks_like_dicom(path)):
        return [_nifti_or_file_layer(path)]
    if os.path.isfile(path) and not is_dicomdir_name(path):
        from napari_medseg.io.dicom_derived import derived_kind

        if derived_kind(path):  # a DICOM SEG or RT Structure Set: labels on its series
            return [_derived_layer(path)]
    from napari_medseg._napari.read_feedback import DicomReadFeedback

    with DicomReadFeedback(path) as feedback:  # announced, with progress (main thread)
        return _dicom_layers(path, feedback)


def _nifti_or_file_layer(path: str) -> LayerData:
    from napari_medseg.io import read_scan

    return volume_layer(read_scan(path))


def volume_layer(volume: Any, *, name: str | None = None) -> LayerData:
    """LayerData of a volume read from a file: labels or image, as the evidence says.

    The decision is :func:`napari_medseg.io.label_evidence.label_map_evidence`'s (a
    sidecar, the NIfTI intent, a names file, a segmentation format, the values). A
    label map opens as a labels layer at half opacity with its classes (names on
    hover, colours: :func:`.label_classes.layer_kwargs_for_classes`), which the
    Save widget writes again; ``metadata["medseg"]["label_evidence"]`` says why.
    Reader warnings and problems with the files beside it are shown as notifications.
    """
    from napari_medseg._napari.label_classes import layer_kwargs_for_classes
    from napari_medseg._napari.layers import (
        LABELS_OPACITY,
        MEDSEG_KEY,
        layer_warnings,
        volume_to_layer_data,
    )
    from napari_medseg._napari.notifications import notify_warnings
    from napari_medseg.io.label_evidence import describe, label_map_evidence

    decision = label_map_evidence(volume)
    logger.info("%s: %s", volume.metadata.source, describe(decision))
    if decision.is_labels:
        kwargs: dict[str, Any] = {"opacity": LABELS_OPACITY}
        if decision.classes:
            kwargs.update(layer_kwargs_for_classes(decision.classes))
        data = volume_to_layer_data(volume, layer_type="labels", name=name, **kwargs)
    else:
        data = volume_to_layer_data(volume, name=name)
    data[1]["metadata"][MEDSEG_KEY]["label_evidence"] = describe(decision)
    source = str(volume.metadata.source or "")
    model = _sidecar_model(decision, source)
    if model is not None:  # what made these labels, so saving them again keeps it
        data[1]["metadata"][MEDSEG_KEY]["model"] = model
    messages = layer_warnings(data) + list(decision.warnings)
    notify_warnings(messages, context=os.path.basename(source.rstrip("/\\")) or data[1]["name"])
    return data


def _sidecar_model(decision: Any, source: str) -> dict[str, Any] | None:
    """The ``model`` entry of napari-medseg's sidecar, when the classes came from it."""
    from napari_medseg.io.sidecar import read_sidecar_model, sidecar_path

    if not (decision.is_labels and source and decision.classes_from):
        return None
    sidecar = sidecar_path(source)
    if Path(decision.classes_from).resolve() != sidecar.resolve():
        return None
    return read_sidecar_model(sidecar)


def _derived_layer(path: str) -> LayerData:
    """A DICOM SEG / RT Structure Set as labels on the grid of the series it references
    (a series open in a viewer, else found beside the file: see
    :mod:`napari_medseg.io.dicom_derived`)."""
    from napari_medseg.io.dicom_derived import read_derived_labels

    return volume_layer(
        read_derived_labels(path, open_series=_open_dicom_series()), name=_derived_name(path)
    )


def _derived_name(path: str) -> str:
    """Layer name of a SEG / RTSTRUCT file: its name without a DICOM suffix."""
    name = Path(path).name
    if name.lower().endswith((".dcm", ".dicom", ".ima")):
        name = name.rsplit(".", 1)[0]
    return name


def _open_dicom_series() -> dict[str, Any]:
    """SeriesInstanceUID -> the grid of each DICOM image series shown in an open
    viewer (a zero-copy Volume with the series' shape, affine, files and Frame of
    Reference), so a SEG opened after its series lies exactly on that layer's grid."""
    from napari_medseg._napari.history import open_viewers
    from napari_medseg._napari.layers import MEDSEG_KEY
    from napari_medseg.volume import ScanMetadata, Volume

    out: dict[str, Any] = {}
    for viewer in open_viewers():
        for layer in list(viewer.layers):
            medseg = (getattr(layer, "metadata", None) or {}).get(MEDSEG_KEY)
            if not isinstance(medseg, dict) or medseg.get("kind") == "labels":
                continue
            uid = str(medseg.get("series_uid", "") or "")
            if medseg.get("format") != "dicom" or not uid or not medseg.get("files"):
                continue
            try:
                shape = tuple(int(n) for n in medseg["source_shape"])
                affine = np.asarray(medseg["source_affine"], dtype=float)
                grid = Volume(
                    np.broadcast_to(np.zeros((), dtype=np.uint8), shape),
                    affine,
                    ScanMetadata(
                        source=str(medseg.get("source", "")),
                        format="dicom",
                        modality=str(medseg.get("modality", "") or ""),
                        series_uid=uid,
                        frame_of_reference_uid=str(medseg.get("frame_of_reference_uid", "")),
                        files=[str(f) for f in medseg["files"]],
                    ),
                )
            except (KeyError, TypeError, ValueError):
                continue
            out.setdefault(uid, grid)
    return out


def _dicom_layers(path: str, feedback: Any = None) -> list[LayerData]:
    from napari_medseg._napari.layers import layer_warnings, volume_to_layer_data
    from napari_medseg._napari.notifications import notify_error, notify_info, notify_warnings
    from napari_medseg.errors import MedsegError
    from napari_medseg.io.dicom import index_dicom, read_dicom_series, series_of_file

    p = Path(path)
    if p.is_file() and not is_dicomdir_name(p):
        series_list = [series_of_file(p)]  # one file: the series it belongs to
    else:
        series_list = index_dicom(p, progress=getattr(feedback, "indexing", None))
    images = [s for s in series_list if not getattr(s, "is_localizer", False)]
    localizers = len(series_list) - len(images)
    if not images:
        images = list(series_list)
        if images:
            notify_info(
                f"only localizer (scout) series found; opening {len(images)} of them.",
                context=p.name,
            )
    if len(images) > 1:
        extra = f" (and {localizers} localizer series, not opened)" if localizers else ""
        notify_info(
            f"holds {len(images)} image series{extra}; each is opened as its own layer. "
            "To choose which to load, use Plugins > napari-medseg > DICOM series browser.",
            context=p.name,
        )
    out: list[LayerData] = []
    first_error: MedsegError | None = None
    opened: dict[str, Any] = {}  # SeriesInstanceUID -> Volume read here
    for series in images:
        try:
            volume = read_dicom_series(
                series, allow_gaps=True, progress=getattr(feedback, "reading", None)
            )
        except MedsegError as error:
            if len(images) == 1:
                raise
            first_error = first_error or error
            notify_error(error)
            continue
        data = volume_to_layer_data(volume, name=_series_name(series, volume, len(images) > 1))
        notify_warnings(layer_warnings(data), context=data[1]["name"])
        out.append(data)
        if volume.metadata.series_uid:
            opened[str(volume.metadata.series_uid)] = volume
    if not out and first_error is not None:
        raise first_error
    out += _derived_layers_beside(getattr(series_list, "skipped", ()), opened)
    return out


def _derived_layers_beside(skipped: Sequence[Any], opened: dict[str, Any]) -> list[LayerData]:
    """The DICOM SEG and RT Structure Set files of a folder that reference an image
    series just read from it, as labels on that series' grid (others are left alone, as
    before); one that cannot be placed is a notification, and the images stay open."""
    from napari_medseg._napari.notifications import notify_error
    from napari_medseg.errors import MedsegError
    from napari_medseg.io.dicom_derived import derived_kind, read_derived_labels, references_of

    out: list[LayerData] = []
    for item in skipped:
        if getattr(item, "kind", "") != "non-image" or not derived_kind(item.path):
            continue
        if not set(references_of(item.path)) & set(opened):
            continue
        try:
            volume = read_derived_labels(item.path, open_series=opened)
        except MedsegError as error:
            notify_error(error)
            continue
        out.append(volume_layer(volume, name=_derived_name(item.path)))
    return out


def _series_name(series: Any, volume: Any, several: bool) -> str:
    from napari_medseg._napari.layers import display_name

    name = display_name(volume)
    number = getattr(series, "number", None)
    if several and number not in (None, "") and not name.startswith(f"{number} "):
        name = f"{number}: {name}"
    return name
