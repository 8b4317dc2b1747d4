"""One case of a cohort: segment, save, measure, and say so in ``done.json``.

The same steps as ``medseg segment`` then ``medseg report`` (the same reader, segmenter
and writers, so a case's labels equal ``medseg segment``'s for the same scan and model),
into the case's own folder ``OUTDIR/<case_id>/``:

======================  ==============================================================
``labels.nii.gz``       the label map on the scan's grid (affine and codes kept)
``labels.json``         its names/colours sidecar with the model's provenance
``labels_seg.dcm``      a DICOM SEG referencing the series (DICOM cases, on request)
``report.csv``          one row per label: volume, HU statistics, lesions, Dice/HD95
``report_lesions.csv``  one row per lesion
``done.json``           written last: each input file's SHA-256, the model and its weights'
                        SHA-256, the settings, timings and warnings
======================  ==============================================================

Every file is written atomically (:mod:`napari_medseg.io.atomic`), and ``done.json`` is
removed first and written last, so a case is done exactly when its ``done.json`` exists
and matches (:func:`is_done`); a run killed in between leaves no file under a final name
that claims more than it holds, and the next run redoes the case. A bad case raises
:class:`~napari_medseg.errors.MedsegError` with the message the CLI would print.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from napari_medseg.cohort.cases import Case, hash_files, input_hashes
from napari_medseg.inference.settings import SegmentSettings

#: Names of a case's outputs, in its folder.
LABELS_NAME = "labels.nii.gz"
DICOM_SEG_NAME = "labels_seg.dcm"
REPORT_NAME = "report.csv"
DONE_NAME = "done.json"
#: Version of ``done.json``'s layout (a change redoes every case).
DONE_FORMAT = 1


@dataclass(frozen=True)
class BatchSettings(SegmentSettings):
    """How every case of a run is segmented: the Segment widget's settings
    (:class:`~napari_medseg.inference.settings.SegmentSettings`: model, device, amp,
    overlap, sw_batch_size, tta, trust_bundle) and what ``medseg batch`` adds.

    Attributes
    ----------
    allow_gaps : bool
        Read a DICOM series with missing slices (``--allow-gaps``).
    dicom_seg : bool
        Also write a DICOM SEG for DICOM cases.
    """

    allow_gaps: bool = False
    dicom_seg: bool = False

    def recorded(self) -> dict[str, Any]:
        """What ``done.json`` records of the settings (and compares on a rerun)."""
        return asdict(self)


def model_fingerprint(model: str) -> dict[str, str]:
    """The model's name and the SHA-256 of the files it is made of
    (:func:`~napari_medseg.models.registry.model_files`). Read once per run, before any
    case."""
    from napari_medseg.models.registry import model_files

    files = model_files(model)
    if not files:
        return {"name": model, "weights_sha256": ""}  # loading it will say what is wrong
    return {"name": model, "weights_sha256": hash_files(files)}


def case_folder(outdir: str | os.PathLike, case: Case) -> Path:
    """``OUTDIR/<case_id>``."""
    return Path(outdir) / case.case_id


def expected_done(
    case: Case, settings: BatchSettings, model: Mapping[str, str], inputs: list[dict]
) -> dict[str, Any]:
    """The part of ``done.json`` a rerun compares: the input files with their SHA-256
    (``inputs``: ``[{"path", "sha256"}]``), the model with its weights' SHA-256, the
    settings."""
    return {
        "format": DONE_FORMAT,
        "case_id": case.case_id,
        "inputs": inputs,
        "model": dict(model),
        "settings": settings.recorded(),
    }


def read_done(folder: str | os.PathLike) -> dict[str, Any] | None:
    """A case folder's ``done.json``, or None when it is missing or unreadable."""
    try:
        with open(Path(folder) / DONE_NAME, encoding="utf-8") as handle:
            done = json.load(handle)
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) else None


def is_done(folder: str | os.PathLike, expected: Mapping[str, Any]) -> bool:
    """Whether the case in ``folder`` was done for exactly these inputs, model and
    settings, and its outputs are all there."""
    done = read_done(folder)
    if done is None or any(done.get(key) != value for key, value in expected.items()):
        return False
    return all((Path(folder) / name).is_file() for name in done.get("outputs", ()))


def run_case(
    case: Case,
    settings: BatchSettings,
    model: Mapping[str, str],
    outdir: str | os.PathLike,
    segmenter: Any,
    inputs: list[dict] | None = None,
) -> dict[str, Any]:
    """Segment, save and measure one case into ``OUTDIR/<case_id>/``; returns its
    ``done.json`` (also written).

    Parameters
    ----------
    case : Case
    settings : BatchSettings
    model : mapping
        :func:`model_fingerprint` of ``settings.model``.
    outdir : path
        The cohort's output folder.
    segmenter : Segmenter
        Loaded once per worker and reused for every case it runs.
    inputs : list of dict, optional
        :func:`~napari_medseg.cohort.cases.input_hashes` of the case, when the caller has
        them already (else computed here).

    Raises
    ------
    MedsegError
        A bad case: the message names the file and the problem.
    """
    from napari_medseg.io.atomic import atomic_output, remove_stale_temporaries
    from napari_medseg.io.reader import read_scan
    from napari_medseg.io.save import SaveTargets, save_segmentation
    from napari_medseg.labels.classes import classes_from_label_classes
    from napari_medseg.measure.report import build_report, write_report
    from napari_medseg.volume import Volume

    started = time.perf_counter()
    folder = case_folder(outdir, case)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder, min_age_s=0.0)  # a killed worker's leftovers
    (folder / DONE_NAME).unlink(missing_ok=True)  # not done until it is written again
    if inputs is None:
        inputs = input_hashes(case)
    # a DICOM SEG references the series' images: NIfTI cases have none to reference
    dicom_seg = folder / DICOM_SEG_NAME if settings.dicom_seg and case.is_dicom else None

    timings: dict[str, float] = {}
    tick = time.perf_counter()
    volumes = [
        read_scan(
            image, series_key=case.series_key if i == 0 else None, allow_gaps=settings.allow_gaps
        )
        for i, image in enumerate(case.images)
    ]
    reference = read_scan(case.reference) if case.reference else None
    timings["read"] = time.perf_counter() - tick
    source = volumes[0]
    warnings = list(source.metadata.warnings) + list(segmenter.advance_warnings(source))

    tick = time.perf_counter()
    result = segmenter.predict(volumes)
    timings["segment"] = time.perf_counter() - tick
    warnings += [w for w in result.warnings if w not in warnings]

    tick = time.perf_counter()
    labels = Volume(result.labels, result.affine, source.metadata)
    classes = classes_from_label_classes(result.label_classes)
    targets = SaveTargets(folder / LABELS_NAME, dicom_seg=dicom_seg)
    protect = [*case.input_files(), *source.metadata.files]
    written = save_segmentation(
        labels,
        targets,
        classes,
        model=result.provenance(),
        source=case.images[0],
        protect=protect,
        overwrite=True,
    )
    report = build_report(
        labels,
        source,
        reference,
        names={value: name for value, (name, _) in classes.items()},
        lesions=True,
        model=result.provenance(),
    )
    written += write_report(report, folder / REPORT_NAME, overwrite=True, protect=protect)
    timings["save_and_measure"] = time.perf_counter() - tick
    timings["total"] = time.perf_counter() - started

    done = {
        **expected_done(case, settings, model, inputs),
        "images": list(case.images),  # what the case is, for `medseg finetune`
        "series": case.series_key,
        "model_run": result.provenance(),
        "outputs": sorted({Path(path).name for path in written}),
        "timings_s": {key: round(value, 3) for key, value in timings.items()},
        "warnings": warnings,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": os.uname().nodename if hasattr(os, "uname") else "",
        "pid": os.getpid(),
    }
    with atomic_output(folder / DONE_NAME) as temp:
        temp.write_text(json.dumps(done, indent=2, default=str) + "\n", encoding="utf-8")
    return done


__all__ = [
    "BatchSettings",
    "DONE_NAME",
    "LABELS_NAME",
    "REPORT_NAME",
    "case_folder",
    "expected_done",
    "is_done",
    "model_fingerprint",
    "read_done",
    "run_case",
]
