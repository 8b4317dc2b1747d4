"""The two steps every report takes: prepare the inputs once, then measure them.

:func:`prepare` brings a label map, its scan and a reference onto the label map's grid
(:class:`PreparedInputs`); :func:`measure` turns prepared inputs into per-label
statistics, overlap with the reference and lesions, for every label (the full report,
:func:`~napari_medseg.measure.report.build_report`) or for the labels an edit touched,
from a tally of their crop (:func:`~napari_medseg.measure.incremental.update_report`).
Both reports going through the same two steps is what makes their numbers equal.

Everything is in the label map's voxel order ``(I, J, K)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_medseg.labels.maps import as_label_array, check_same_grid, reorder_onto_grid
from napari_medseg.measure.lesions import LesionTable, find_lesions
from napari_medseg.measure.overlap import OverlapMetrics, compare_labels
from napari_medseg.measure.stats import LabelStats, label_statistics
from napari_medseg.measure.tally import Tally, tally_labels
from napari_medseg.volume import Volume

if TYPE_CHECKING:
    from napari_medseg.measure.report import ReportSettings

logger = logging.getLogger(__name__)


@dataclass
class PreparedInputs:
    """A report's inputs on the label map's grid.

    Attributes
    ----------
    labels : numpy.ndarray
        Integer label map ``(I, J, K)`` (see
        :func:`~napari_medseg.labels.maps.as_label_array`).
    affine : numpy.ndarray
        4x4 voxel -> RAS+ mm matrix of the label map.
    image : numpy.ndarray or None
        The scan's values on the label map's grid (a view of its array).
    reference : numpy.ndarray or None
        The reference label map on the label map's grid.
    exclude : (float, float) or None
        Image values left out of intensity statistics (DICOM pixel padding), in the
        image's units, both ends included.
    units : str
        Units of the image values, e.g. ``"HU"`` ("" without image).
    notes : list of str
        What a reader of the numbers should know (reordering, resampling, padding).
    reference_resampled : bool
        The reference was on another grid and was resampled by nearest neighbour.
    live : bool
        Every array is the volume's own array or a view of it (no label map converted
        from floats, no reference resampled), so edits made to the volumes show in it.
    """

    labels: np.ndarray
    affine: np.ndarray
    image: np.ndarray | None = None
    reference: np.ndarray | None = None
    exclude: tuple[float, float] | None = None
    units: str = ""
    notes: list[str] = field(default_factory=list)
    reference_resampled: bool = False
    live: bool = True


@dataclass
class Measurements:
    """What :func:`measure` finds: one entry per label value asked for, sorted.

    Attributes
    ----------
    labels : list of LabelStats
    overlap : list of OverlapMetrics or None
        None without a reference.
    lesions : LesionTable or None
        None unless lesions were asked for.
    """

    labels: list[LabelStats]
    overlap: list[OverlapMetrics] | None
    lesions: LesionTable | None


def _name(volume: Volume, role: str) -> str:
    return volume.metadata.source or role


def shown_source(volume: Volume, include_patient: bool) -> str:
    """A source as a report may show it: the file name, the full path only if asked."""
    source = volume.metadata.source
    if source and include_patient:
        return str(Path(source).resolve())
    return Path(source).name if source else ""


def _is_view(derived: np.ndarray, source: np.ndarray) -> bool:
    """Whether ``derived`` is ``source`` or a view of its data (not a copy)."""
    return derived is source or np.may_share_memory(derived, source)


def padding_range(image: Volume, notes: list[str]) -> tuple[float, float] | None:
    """The DICOM pixel padding range of a scan in its units, noting what is done with it."""
    extra = image.metadata.extra
    found = extra.get("pixel_padding_range")
    if found is not None:
        low, high = (float(v) for v in found)
        notes.append(
            f"Voxels with the scan's pixel padding value ({low:g}..{high:g} {image.metadata.units})"
            " are left out of the intensity statistics (not of volumes)."
        )
        return low, high
    if extra.get("pixel_padding_stored") is not None:
        notes.append(
            "The scan declares pixel padding, but not as one value in its units (slices use "
            "different rescale values): padding voxels are NOT left out of the statistics."
        )
    return None


def _image_on_grid(
    labels: Volume, image: Volume, include_patient: bool, notes: list[str]
) -> np.ndarray:
    """The image's array on the label map's grid: as it is, or its voxels reordered."""
    from napari_medseg.resample import same_grid

    if same_grid(image.shape, image.affine, labels.shape, labels.affine):
        return image.array
    # the same voxels stored in another order (e.g. a DICOM series and its NIfTI
    # conversion) are taken as they are; any other grid is refused
    array = reorder_onto_grid(image.array, image.affine, labels.shape, labels.affine)
    if array is None:
        check_same_grid(
            labels.shape,
            labels.affine,
            _name(labels, "labels"),
            image.shape,
            image.affine,
            _name(image, "image"),
        )
    notes.append(
        f"{shown_source(image, include_patient) or 'The image'} stores the label "
        f"map's voxels in another order (axes {image.orientation}, the label map "
        f"{labels.orientation}); its values were reordered onto the label map's grid "
        "(no interpolation)."
    )
    return array


def _reference_on_grid(
    labels: Volume, reference: Volume, include_patient: bool, notes: list[str]
) -> tuple[np.ndarray, bool]:
    """The reference label map on the label map's grid, and whether it was resampled."""
    from napari_medseg.resample import resample_labels, same_grid

    array = as_label_array(reference.array, _name(reference, "reference"))
    if same_grid(reference.shape, reference.affine, labels.shape, labels.affine):
        return array, False
    # the report names files, not paths (a path may name the patient)
    shown_ref = shown_source(reference, include_patient) or "the reference"
    shown_labels = shown_source(labels, include_patient) or "the label map"
    message = (
        f"{shown_ref} is on another voxel grid than {shown_labels}; it was resampled "
        "onto the label map's grid by nearest neighbour before comparing (distances "
        "and volumes carry that resampling error)."
    )
    logger.info(message)  # users see it in report.notes (CLI, widget)
    notes.append(message)
    resampled = resample_labels(array, reference.affine, labels.shape, labels.affine)
    if not resampled.any() and array.any():
        notes.append(
            f"{shown_ref} and {shown_labels} do not overlap in space: none of the "
            "reference's labelled voxels lies inside the label map's grid (another patient "
            "position, scan or frame of reference?). Every Dice is 0 and every distance "
            "infinite because of that, not because of the labels."
        )
    return resampled, True


def prepare(
    labels: Volume,
    image: Volume | None = None,
    reference: Volume | None = None,
    *,
    include_patient: bool = False,
) -> PreparedInputs:
    """Bring a report's inputs onto the label map's grid.

    Parameters
    ----------
    labels, image, reference : Volume
        As for :func:`~napari_medseg.measure.report.build_report`: a float label map is
        converted (a copy), an image storing the label map's voxels in another order is
        reordered (a view) and a reference on another grid resampled, each with a note.
    include_patient : bool
        Name sources in the notes by full path rather than file name.

    Returns
    -------
    PreparedInputs

    Raises
    ------
    LabelMapError, GridMismatchError
        As :func:`~napari_medseg.measure.report.build_report` raises them.
    """
    inputs = PreparedInputs(as_label_array(labels.array, _name(labels, "labels")), labels.affine)
    inputs.live = _is_view(inputs.labels, labels.array)
    if image is not None:
        inputs.image = _image_on_grid(labels, image, include_patient, inputs.notes)
        inputs.units = image.metadata.units
        inputs.exclude = padding_range(image, inputs.notes)
    if reference is not None:
        inputs.reference, inputs.reference_resampled = _reference_on_grid(
            labels, reference, include_patient, inputs.notes
        )
        inputs.live = inputs.live and _is_view(inputs.reference, reference.array)
    return inputs


def measure(
    inputs: PreparedInputs,
    settings: ReportSettings,
    which: Iterable[int] | None = None,
    tally: Tally | None = None,
) -> Measurements:
    """Per-label statistics, overlap with the reference and lesions of prepared inputs.

    Parameters
    ----------
    inputs : PreparedInputs
    settings : ReportSettings
        What to measure (names, lesions, distances, diameters and their parameters).
    which : iterable of int, optional
        Label values to measure; default every value present in the label map or the
        reference.
    tally : Tally, optional
        A pass already made over the inputs that holds every voxel of ``which`` (e.g.
        of one label's crop); default one pass over the whole inputs.

    Returns
    -------
    Measurements
        Overlap only with a reference, lesions only with ``settings.lesions``.
    """
    if tally is None:
        tally = tally_labels(
            inputs.labels, inputs.reference, inputs.image, exclude_range=inputs.exclude
        )
    wanted = tally.present_values() if which is None else list(which)
    stats = label_statistics(
        inputs.labels,
        inputs.affine,
        inputs.image,
        names=settings.names,
        units=inputs.units,
        which=wanted,
        diameters=settings.diameters,
        tally=tally,
    )
    overlap = None
    if inputs.reference is not None:
        overlap = compare_labels(
            inputs.labels,
            inputs.reference,
            inputs.affine,
            names=settings.names,
            tolerance_mm=settings.tolerance_mm,
            distances=settings.distances,
            which=wanted,
            tally=tally,
        )
    lesions = None
    if settings.lesions:
        lesions = find_lesions(
            inputs.labels,
            inputs.affine,
            inputs.image,
            reference=inputs.reference,
            connectivity=settings.connectivity,
            iou_threshold=settings.iou_threshold,
            names=settings.names,
            exclude_range=inputs.exclude,
            which=wanted,
            tally=tally,
        )
    return Measurements(stats, overlap, lesions)


__all__ = ["Measurements", "PreparedInputs", "measure", "padding_range", "prepare", "shown_source"]
