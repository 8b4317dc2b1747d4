"""The one save path of a segmentation: labels NIfTI + sidecar, DICOM SEG, RTSTRUCT,
``.seg.nrrd``, probabilities.

``medseg segment``, the headless demo and the napari Save widget all save through
:func:`save_segmentation`; :func:`check_targets` is its check of the target files,
which a caller runs before the long work (reading, segmenting) so that a name it
would refuse is refused first.

What is written (:class:`SaveTargets` names the files; any may be left out):

* the labels as NIfTI on the scan's own voxel grid
  (:func:`napari_medseg.io.nifti.write_nifti_like`: the scan's qform/sform codes and
  its distinct qform, taken from ``labels.metadata``);
* beside it the JSON sidecar (:mod:`napari_medseg.io.sidecar`): class names and
  colours, the model, the scan's file name;
* the class probabilities as a 4D float32 NIfTI ``(I, J, K, C)`` whose header is
  copied from the labels file just written (one geometry policy for both, including
  ``write_nifti``'s handling of sheared gantry-tilt grids);
* a DICOM SEG referencing the DICOM images the labels were drawn on
  (:func:`napari_medseg.io.dicom_seg.write_dicom_seg`);
* an RT Structure Set referencing them too (:func:`napari_medseg.io.rtstruct.write_rtstruct`);
* a 3D Slicer segmentation, ``.seg.nrrd`` (:func:`napari_medseg.io.nrrd.write_seg_nrrd`).

Every file is written atomically (a reader never sees half a file; a failed write
leaves the old file as it was) and never over a file in ``protect``, and the files of
one save are published as a set (:func:`napari_medseg.io.atomic.output_set`): each is
written to its temporary file first, in the order above, and only when all are
written are they published, so a failure part-way (labels off the DICOM series' grid,
a full disk, a killed process) leaves none of them and no temporary file, and a rerun
finds nothing in its way. Without ``overwrite`` a name is claimed exclusively when
published: of two saves racing for one name exactly one wins, the other raises
:class:`OutputExistsError` and writes nothing.

The model is recorded the same way in every file: the provenance dict
``{"name", "settings"}`` (``SegmentationResult.provenance()``, or a napari layer's
``metadata["medseg"]["model"]``). One marked ``"edited_by_hand": True`` makes the
DICOM SEG segments SEMIAUTOMATIC instead of AUTOMATIC; without a model they are
MANUAL.

Where the labels come from: the CLI and the demo hand the model's result on the scan
grid with the scan's metadata. The Save widget hands
:func:`napari_medseg._napari.layer_volume.layer_volume` of the layer: the layer's
data turned back into the source scan's voxel order with the scan's true affine and
NIfTI codes. That is the geometry the npe2 writer
(:func:`napari_medseg._napari.writer.save_layer`) works out too, through the same
``resolve_geometry``, so the widget needs no writer of its own: the labels NIfTI of
the widget, the CLI and the demo is one function's output. ``save_layer`` stays the
npe2 writer of napari's *File > Save* (images as well as labels, no sidecar).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.errors import MedsegError
from napari_medseg.volume import Volume

logger = logging.getLogger(__name__)

#: Message of :class:`OutputExistsError` (``str.format`` fields ``path`` and ``what``).
EXISTS_MESSAGE = (
    "{path}: exists already; it is not replaced. Allow replacing the {what}, or choose "
    "another name."
)


class OutputExistsError(MedsegError):
    """A target file exists and replacing it was not allowed.

    Parameters
    ----------
    path : path
        The existing file.
    what : str
        What it would have held (``"labels"``, ``"DICOM SEG"``...).
    message : str
        ``str.format`` template with the fields ``path`` and ``what``.
    """

    def __init__(self, path: str | PathLike, what: str, message: str = EXISTS_MESSAGE) -> None:
        self.path = str(path)
        self.what = what
        super().__init__(message.format(path=self.path, what=what))


@dataclass(frozen=True)
class SaveTargets:
    """The files one save writes; ``None`` leaves a file out.

    Attributes
    ----------
    labels : pathlib.Path or None
        The labels NIfTI (``.nii``/``.nii.gz``); its sidecar goes beside it.
    dicom_seg : pathlib.Path or None
        The DICOM SEG.
    probabilities : pathlib.Path or None
        The class probabilities NIfTI; needs ``labels`` (its header is copied).
    rtstruct : pathlib.Path or None
        The RT Structure Set.
    seg_nrrd : pathlib.Path or None
        The 3D Slicer segmentation (``.seg.nrrd``).
    """

    labels: Path | None = None
    dicom_seg: Path | None = None
    probabilities: Path | None = None
    rtstruct: Path | None = None
    seg_nrrd: Path | None = None

    def __post_init__(self) -> None:
        for name in ("labels", "dicom_seg", "probabilities", "rtstruct", "seg_nrrd"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        if self.probabilities is not None and self.labels is None:
            raise ValueError("probabilities are written with the labels NIfTI: name both")

    @property
    def sidecar(self) -> Path | None:
        """The JSON sidecar of the labels NIfTI (None without one)."""
        from napari_medseg.io.sidecar import sidecar_path

        return None if self.labels is None else sidecar_path(self.labels)

    def named(self) -> list[tuple[Path, str]]:
        """``(path, what)`` of every file to write, in the order they are written."""
        files = [
            (self.labels, "labels"),
            (self.sidecar, "label names file"),
            (self.probabilities, "probabilities"),
            (self.dicom_seg, "DICOM SEG"),
            (self.rtstruct, "RT Structure Set"),
            (self.seg_nrrd, "Slicer segmentation"),
        ]
        return [(path, what) for path, what in files if path is not None]


def check_targets(
    targets: SaveTargets,
    protect: Iterable[str | PathLike],
    *,
    overwrite: bool,
    exists_message: str = EXISTS_MESSAGE,
) -> None:
    """Refuse bad target files before any work, in the order they would be written.

    Parameters
    ----------
    targets : SaveTargets
    protect : iterable of path
        Source scans (files, or folders protecting the files in them) never written over.
    overwrite : bool
        Whether an existing target may be replaced.
    exists_message : str
        Template of the message for an existing target (fields ``path`` and ``what``),
        so that it can say how the caller allows replacing (a flag, a tick box).

    Raises
    ------
    ScanWriteError
        A NIfTI target without a ``.nii``/``.nii.gz`` name; a file named for two of
        the outputs; a target that cannot be written (a folder, a read-only folder,
        a name too long: :func:`napari_medseg.io.atomic.check_writable`).
    OverwriteSourceError
        A target is a protected source (checked before existence: allowing
        replacement would not help).
    OutputExistsError
        A target exists and ``overwrite`` is False.
    """
    from napari_medseg.errors import ScanWriteError
    from napari_medseg.io.atomic import check_writable, refuse_source_overwrite
    from napari_medseg.io.nifti import check_nifti_name

    protect = list(protect)
    seen: dict[str, str] = {}
    for path, what in targets.named():
        if path in (targets.labels, targets.probabilities):
            check_nifti_name(path)
        key = os.path.normcase(os.path.realpath(path))
        if key in seen:
            raise ScanWriteError(
                path,
                f"is named for both the {seen[key]} and the {what}.",
                "Name two different files.",
            )
        seen[key] = what
        refuse_source_overwrite(path, protect)
        check_writable(path)  # a folder, a link loop, a read-only folder...
        if os.path.lexists(path) and not overwrite:
            raise OutputExistsError(path, what, exists_message)


def save_segmentation(
    labels: Volume,
    targets: SaveTargets,
    classes: Mapping[int, tuple[str, str]],
    *,
    model: Mapping[str, Any] | str | None = None,
    source: str | PathLike | None = None,
    protect: Iterable[str | PathLike] = (),
    overwrite: bool = False,
    dicom_files: Sequence[str | PathLike] | None = None,
    probabilities: np.ndarray | None = None,
    description: str | None = None,
    exists_message: str = EXISTS_MESSAGE,
) -> list[Path]:
    """Write a label map as NIfTI + sidecar, DICOM SEG and/or probabilities NIfTI.

    Parameters
    ----------
    labels : Volume
        The label map on the scan's voxel grid: integer values (0 = background),
        shape ``(I, J, K)`` in the scan's stored voxel order, its voxel -> RAS+ mm
        affine, and the scan's metadata (NIfTI codes, distinct qform in
        ``extra["qform_affine"]``, DICOM files).
    targets : SaveTargets
        The files to write.
    classes : mapping
        ``{value: (name, "#rrggbb")}``: the sidecar's names and colours and the SEG's
        segment labels and colours.
    model : mapping or str, optional
        What made the labels: ``{"name", "settings"}`` (plus ``"edited_by_hand":
        True`` once corrected by hand), or only a name. None for labels drawn by
        hand. Recorded in the sidecar (a name alone is not) and in the SEG's
        algorithm identification.
    source : path, optional
        The scan the labels were drawn on; its file name goes into the sidecar
        (default ``labels.metadata.source``).
    protect : iterable of path
        Files never written over (the scans; folders protect the files below them).
        The SEG's source images are always protected.
    overwrite : bool
        Replace existing targets.
    dicom_files : sequence of path, optional
        The DICOM images the SEG references (default ``labels.metadata.files``).
    probabilities : numpy.ndarray, optional
        Class probabilities, shape ``(C, I, J, K)`` float32 on the labels' grid;
        needed when ``targets.probabilities`` is set.
    description : str, optional
        The labels NIfTI's header description (default ``"medseg <model name>"``,
        ``"napari-medseg labels"`` without a model).
    exists_message : str
        Template of the message for an existing target, as :func:`check_targets`.

    Returns
    -------
    list of pathlib.Path
        The written files, in the order written (labels, sidecar, probabilities, SEG,
        RT Structure Set, Slicer segmentation).

    Raises
    ------
    ScanWriteError, OverwriteSourceError, OutputExistsError
        As :func:`check_targets`, before anything is written. ``OutputExistsError``
        also when a target appeared while writing (another save won the name); a
        ``ScanWriteError`` also for a write that failed (full disk...). Either way
        no file of this save is left.
    DicomSegError
        The SEG cannot be made (no DICOM files, labels off their grid, no label...);
        no file of this save is left.
    """
    from napari_medseg.io.atomic import TargetExistsError, output_set
    from napari_medseg.io.dicom_seg import write_dicom_seg
    from napari_medseg.io.nifti import write_nifti_like
    from napari_medseg.io.nrrd import write_seg_nrrd
    from napari_medseg.io.rtstruct import write_rtstruct
    from napari_medseg.io.sidecar import sidecar_content, write_sidecar

    if not isinstance(model, Mapping | str):
        model = None
    protect = [str(p) for p in protect if p]
    check_targets(targets, protect, overwrite=overwrite, exists_message=exists_message)
    if targets.probabilities is not None and probabilities is None:
        raise ValueError(f"{targets.probabilities}: no probabilities given to write")
    written: list[Path] = []
    try:
        # every file to its temporary file first; published together when all are written
        with output_set(exclusive=not overwrite) as batch:
            if targets.labels is not None:
                written.append(
                    write_nifti_like(
                        targets.labels,
                        labels.array,
                        labels.affine,
                        labels,
                        kind="labels",
                        description=_description(model) if description is None else description,
                        protect=protect,
                    )
                )
                scan_name = Path(labels.metadata.source if source is None else source).name
                model_dict = model if isinstance(model, Mapping) else {}
                write_sidecar(
                    targets.sidecar, sidecar_content(classes, model_dict, scan_name), protect
                )
                written.append(targets.sidecar)
            if targets.probabilities is not None:
                labels_file = batch.pending(targets.labels)  # written, not yet published
                _write_probabilities(targets.probabilities, probabilities, labels_file, protect)
                written.append(targets.probabilities)
            if targets.dicom_seg is not None:
                edited = isinstance(model, Mapping) and bool(model.get("edited_by_hand"))
                written.append(
                    write_dicom_seg(
                        targets.dicom_seg,
                        labels,
                        labels.metadata.files if dicom_files is None else list(dicom_files),
                        classes,
                        protect=protect,
                        overwrite=overwrite,
                        algorithm=model,
                        algorithm_type="SEMIAUTOMATIC" if edited else None,
                    )
                )
            if targets.rtstruct is not None:
                written.append(
                    write_rtstruct(
                        targets.rtstruct,
                        labels,
                        labels.metadata.files if dicom_files is None else list(dicom_files),
                        classes,
                        protect=protect,
                        overwrite=overwrite,
                        automatic=model is not None,
                    )
                )
            if targets.seg_nrrd is not None:
                written.append(
                    write_seg_nrrd(
                        targets.seg_nrrd, labels, classes, protect=protect, overwrite=overwrite
                    )
                )
    except TargetExistsError as error:  # another writer took the name meanwhile
        what = {str(path): what for path, what in targets.named()}.get(error.path, "file")
        raise OutputExistsError(error.path, what, exists_message) from error
    return written


def _description(model: Mapping[str, Any] | str | None) -> str:
    """The labels NIfTI's default header description: ``medseg <model name>``."""
    name = model.get("name") if isinstance(model, Mapping) else model
    return f"medseg {name}" if name else "napari-medseg labels"


def _write_probabilities(
    path: Path, probabilities: np.ndarray, labels_path: Path, protect: list[str]
) -> None:
    """4D float32 NIfTI ``(I, J, K, C)`` with the geometry of the labels just written.

    The header (sform, qform and their codes, including ``write_nifti``'s handling of
    sheared gantry-tilt grids) is copied from ``labels_path`` (the labels' temporary
    file while the save's files are not yet published), so both files share one
    geometry policy.
    """
    import nibabel as nib

    from napari_medseg.io.atomic import atomic_output, refuse_source_overwrite

    refuse_source_overwrite(path, protect)
    saved_labels = nib.load(labels_path)
    header = saved_labels.header.copy()
    header.set_data_dtype(np.float32)
    header.set_intent("none")
    header["cal_min"], header["cal_max"] = 0, 0
    image = nib.Nifti1Image(np.moveaxis(probabilities, 0, -1), saved_labels.affine, header=header)
    with atomic_output(path) as temporary:
        nib.save(image, temporary)
    logger.info("wrote probabilities %s %s", image.shape, path)


__all__ = [
    "EXISTS_MESSAGE",
    "OutputExistsError",
    "SaveTargets",
    "check_targets",
    "save_segmentation",
]
