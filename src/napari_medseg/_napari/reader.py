"""npe2 reader: NIfTI files, DICOM files, DICOM folders and DICOMDIRs.

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
#: NIfTI intent code of a label map (NIFTI_INTENT_LABEL).
_NIFTI_INTENT_LABEL = 1002
_LABEL_NAME_HINTS = ("label", "seg", "mask", "tumour", "tumor", "lesion", "roi")


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
        ``reader(path) -> list[LayerData]`` for ``.nii``/``.nii.gz``, DICOM files
        (``.dcm``/``.ima``), ``DICOMDIR`` and folders holding DICOM; None for
        anything else (e.g. a folder without DICOM), so napari tries other readers.
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

    NIfTI: one layer (a labels layer when the file holds a label map). DICOM file:
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
    return _dicom_layers(path)


def _nifti_or_file_layer(path: str) -> LayerData:
    from napari_medseg._napari.layers import layer_warnings, volume_to_layer_data
    from napari_medseg._napari.notifications import notify_warnings
    from napari_medseg.io import read_scan

    volume = read_scan(path)
    kind = "labels" if looks_like_labels(volume) else "image"
    data = volume_to_layer_data(volume, layer_type=kind)
    notify_warnings(layer_warnings(data), context=os.path.basename(path))
    return data


def looks_like_labels(volume: Any) -> bool:
    """Whether a NIfTI volume is a label map rather than an image.

    A label map here holds non-negative whole numbers with 0 (background) as its
    most common value, and either a NIfTI "label" intent, at most 16 distinct
    values, or at most 255 with a file name that says so (``label``, ``seg``,
    ``mask``, ``tumour``...). Values are counted on a strided sample of about a
    million voxels. CT is never a label map, nor is a float file with NaN or infinite
    voxels (``metadata.nonfinite_voxels``, counted by ``read_scan``): as labels they
    would silently become 0, so it opens as an image and the read warning naming
    their count is shown (see :mod:`napari_medseg.io.nonfinite`).
    """
    from napari_medseg._napari.layers import _sample

    meta = volume.metadata
    if meta.modality.upper() == "CT" or meta.nonfinite_voxels:
        return False
    sample = _sample(volume.array)
    if sample.size == 0:
        return False
    if sample.dtype.kind == "f":
        if not np.all(sample == np.rint(sample)):
            return False
    elif sample.dtype.kind not in "iub":
        return False
    if sample.min() < 0:
        return False
    distinct, counts = np.unique(sample, return_counts=True)
    if distinct[0] != 0 or counts[0] != counts.max():
        return False
    extra = meta.extra if isinstance(meta.extra, dict) else {}
    if (
        str(extra.get("intent", "")).lower() in ("label", "nifti_intent_label")
        or extra.get("intent_code") == _NIFTI_INTENT_LABEL
    ):
        return True
    if len(distinct) <= 16:
        return True
    name = os.path.basename(meta.source).lower()
    return len(distinct) <= 255 and any(hint in name for hint in _LABEL_NAME_HINTS)


def _dicom_layers(path: str) -> list[LayerData]:
    from napari_medseg._napari.layers import layer_warnings, volume_to_layer_data
    from napari_medseg._napari.notifications import notify_error, notify_info, notify_warnings
    from napari_medseg.errors import MedsegError
    from napari_medseg.io.dicom import index_dicom, read_dicom_series, series_of_file

    p = Path(path)
    if p.is_file() and not is_dicomdir_name(p):
        series_list = [series_of_file(p)]  # one file: the series it belongs to
    else:
        series_list = index_dicom(p)
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
    for series in images:
        try:
            volume = read_dicom_series(series, allow_gaps=True)
        except MedsegError as error:
            if len(images) == 1:
                raise
            first_error = first_error or error
            notify_error(error)
            continue
        data = volume_to_layer_data(volume, name=_series_name(series, volume, len(images) > 1))
        notify_warnings(layer_warnings(data), context=data[1]["name"])
        out.append(data)
    if not out and first_error is not None:
        raise first_error
    return out


def _series_name(series: Any, volume: Any, several: bool) -> str:
    from napari_medseg._napari.layers import display_name

    name = display_name(volume)
    number = getattr(series, "number", None)
    if several and number not in (None, "") and not name.startswith(f"{number} "):
        name = f"{number}: {name}"
    return name
