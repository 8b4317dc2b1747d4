"""One measurement report of a label map: per-label rows, lesions and provenance.

:func:`build_report` measures a label map (a :class:`~napari_medseg.volume.Volume`)
on its scan and against a reference, as its :class:`ReportSettings` say, through the
steps of :mod:`~napari_medseg.measure.pipeline` (prepare the inputs, measure them) and
adds the provenance; :func:`write_report` writes it as CSV or JSON.

Output conventions
------------------
* One row per label value present in the label map or the reference, with the same
  columns in CSV and JSON (:func:`label_rows`); lesions one row each
  (:func:`lesion_rows`). In CSV mode the lesions go to a sibling file
  ``<name>_lesions.csv``.
* Non-finite numbers: CSV writes ``nan`` (not defined, e.g. precision of an empty
  label) and ``inf`` (distances when exactly one mask is empty); both read back as
  floats with Python, pandas and R. Strict JSON has neither, so JSON writes
  ``null`` for both; the row's ``empty`` column (``none``/``labels``/``reference``/
  ``both``) tells which one a distance was, and the JSON ``conventions`` block says so.
* No patient identifiers unless ``include_patient=True``: sources are named by file
  name only (not the full path) and the patient's name, ID and study date are left
  out. The SeriesInstanceUID of DICOM sources is kept for traceability.
* Files are written atomically; an existing output is replaced only with
  ``overwrite=True``, and a source scan never.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import platform
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.errors import ScanWriteError
from napari_medseg.io.atomic import atomic_output, output_set, refuse_source_overwrite
from napari_medseg.labels.components import DEFAULT_CONNECTIVITY
from napari_medseg.measure.lesions import LesionTable
from napari_medseg.measure.overlap import DEFAULT_TOLERANCE_MM, OverlapMetrics
from napari_medseg.measure.pipeline import PreparedInputs, measure, prepare, shown_source
from napari_medseg.measure.stats import LabelStats
from napari_medseg.volume import Volume

#: Output suffixes :func:`write_report` understands.
REPORT_SUFFIXES = (".csv", ".json")
#: Added to a CSV report's stem for its lesion table.
LESIONS_SUFFIX = "_lesions.csv"
#: Version of the JSON layout.
JSON_FORMAT_VERSION = 1

#: Columns taken as they are from :class:`~napari_medseg.measure.overlap.OverlapMetrics`.
OVERLAP_COLUMNS = (
    "ref_voxels",
    "ref_volume_ml",
    "dice",
    "iou",
    "sensitivity",
    "precision",
    "volume_diff_ml",
    "volume_diff_pct",
    "hd_mm",
    "hd95_mm",
    "assd_mm",
    "surface_dice",
)
#: Column -> :class:`~napari_medseg.measure.lesions.LesionSummary` field, with a reference.
LESION_COLUMNS = {
    "ref_lesions": "ref_lesions",
    "lesions_detected": "detected",
    "lesions_missed": "missed",
    "lesions_true_positive": "true_positives",
    "lesions_false_positive": "false_positives",
    "lesion_precision": "precision",
    "lesion_recall": "recall",
    "lesion_f1": "f1",
}

CONVENTIONS = {
    "coordinates": "centroids in RAS+ mm (+x towards the patient's right, +y anterior, "
    "+z superior; DICOM LPS coordinates are (-x, -y, z)); bounding boxes as voxel "
    "indices (I, J, K) of the label map's array, both ends included",
    "volume": "voxel count x |det(affine[:3, :3])| mm^3, in mL",
    "intensity": "over the label's voxels in the image's units; pixel padding, NaN and "
    "infinite values left out; sd is the sample SD (n - 1); percentiles with linear "
    "interpolation",
    "diameter_mm": "largest distance between two surface voxel centres",
    "distances": "MONAI-compatible: surface voxels by 6-connected erosion, distances "
    "between surface voxel centres in mm; hd95_mm = max of the two directed 95th "
    "percentiles; assd_mm = mean of both directed sets pooled; surface_dice counts "
    "surface voxels within the tolerance (<=)",
    "null": "JSON null = NaN (not defined) or, for hd_mm/hd95_mm/assd_mm, infinite "
    "(exactly one of the two masks is empty); the 'empty' column says which mask is empty",
    "lesions": "connected components per label; a lesion matches a reference lesion of "
    "the same label when they share a voxel (and reach the IoU threshold if one is set)",
}


@dataclass
class SourceInfo:
    """Where one input came from (no patient identifiers).

    Attributes
    ----------
    role : str
        ``"labels"``, ``"image"`` or ``"reference"``.
    file : str
        File or folder name (the full path only with ``include_patient``).
    format : str
        ``"nifti"``, ``"dicom"`` or ``"memory"``.
    series_uid : str
        DICOM SeriesInstanceUID ("" otherwise).
    modality, units : str
        E.g. ``"CT"``, ``"HU"``.
    shape : list of int
        ``(I, J, K)``.
    spacing_mm : list of float
        Voxel size along I, J, K.
    orientation : str
        RAS+ axis code of I, J, K.
    resampled : bool
        Brought onto the label map's grid by nearest neighbour (reference only).
    """

    role: str
    file: str
    format: str
    series_uid: str
    modality: str
    units: str
    shape: list[int]
    spacing_mm: list[float]
    orientation: str
    resampled: bool = False


@dataclass
class Provenance:
    """How a report was made.

    Attributes
    ----------
    created_utc : str
        ISO 8601 time in UTC, e.g. ``"2026-01-31T12:00:00Z"``.
    software : dict
        Versions of napari-medseg, Python, numpy and scipy.
    sources : list of SourceInfo
        The inputs.
    settings : dict
        Measurement settings (connectivity, tolerance, thresholds, padding range).
    model : dict or None
        Model and inference settings that produced the labels, when given.
    patient : dict or None
        Patient name, ID and study date; only with ``include_patient``.
    """

    created_utc: str
    software: dict[str, str]
    sources: list[SourceInfo]
    settings: dict[str, Any]
    model: dict[str, Any] | None = None
    patient: dict[str, str] | None = None


@dataclass
class Report:
    """Measurements of one label map.

    Attributes
    ----------
    provenance : Provenance
    labels : list of LabelStats
        One per label value (present in the label map or the reference).
    overlap : list of OverlapMetrics or None
        Agreement with the reference, one per label value (None without reference).
    lesions : LesionTable or None
        Connected components (None unless asked).
    notes : list of str
        Things a reader of the numbers should know (resampling, padding left out).
    """

    provenance: Provenance
    labels: list[LabelStats]
    overlap: list[OverlapMetrics] | None = None
    lesions: LesionTable | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReportSettings:
    """What a report measures: the keyword arguments of :func:`build_report`.

    See :func:`build_report` for each field. :func:`~napari_medseg.measure.pipeline.measure`
    reads the measuring ones; ``model`` and ``include_patient`` shape the provenance.
    """

    names: Mapping[int, str] | None = None
    lesions: bool = False
    connectivity: int = DEFAULT_CONNECTIVITY
    tolerance_mm: float = DEFAULT_TOLERANCE_MM
    iou_threshold: float | None = None
    distances: bool = True
    diameters: bool = True
    model: Mapping[str, Any] | None = None
    include_patient: bool = False

    def build(
        self,
        labels: Volume,
        image: Volume | None = None,
        reference: Volume | None = None,
        inputs: PreparedInputs | None = None,
    ) -> Report:
        """The full report of these inputs, as :func:`build_report` makes it.

        Parameters
        ----------
        labels, image, reference : Volume
            As for :func:`build_report`.
        inputs : PreparedInputs, optional
            Their :func:`~napari_medseg.measure.pipeline.prepare` result, when already
            made (with this ``include_patient``).

        Returns
        -------
        Report
        """
        return _full_report(labels, image, reference, self, inputs)


def utc_timestamp() -> str:
    """The time now in UTC as a report records it, e.g. ``"2026-01-31T12:00:00Z"``."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def software_versions() -> dict[str, str]:
    """Versions of the software that computes the numbers."""
    import scipy

    from napari_medseg import __version__

    return {
        "napari-medseg": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }


def _source_info(volume: Volume, role: str, include_patient: bool) -> SourceInfo:
    return SourceInfo(
        role=role,
        file=shown_source(volume, include_patient),
        format=volume.metadata.format,
        series_uid=volume.metadata.series_uid,
        modality=volume.metadata.modality,
        units=volume.metadata.units,
        shape=list(volume.shape),
        spacing_mm=[round(float(s), 6) for s in volume.spacing],
        orientation=volume.orientation,
    )


def _patient_info(volumes: Iterable[Volume]) -> dict[str, str]:
    out: dict[str, str] = {}
    for volume in volumes:
        for key in ("patient_name", "patient_id", "study_date"):
            value = volume.metadata.extra.get(key)
            if value and key not in out:
                out[key] = str(value)
    return out


def build_report(
    labels: Volume,
    image: Volume | None = None,
    reference: Volume | None = None,
    *,
    names: Mapping[int, str] | None = None,
    lesions: bool = False,
    connectivity: int = DEFAULT_CONNECTIVITY,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    iou_threshold: float | None = None,
    distances: bool = True,
    diameters: bool = True,
    model: Mapping[str, Any] | None = None,
    include_patient: bool = False,
) -> Report:
    """Measure a label map on its scan and against a reference.

    Parameters
    ----------
    labels : Volume
        Integer label map (0 = background). Whole-number float maps are accepted.
    image : Volume, optional
        The scan the labels were drawn on; must be on the same voxel grid (the same
        voxels stored in another axis order or direction are reordered, with a note).
        Gives intensity statistics (HU for CT) and lesion means.
    reference : Volume, optional
        Reference label map. On another grid it is resampled onto the label map's
        grid by nearest neighbour, with a note and a logged warning.
    names : mapping, optional
        Label value -> name (default ``label_<n>``).
    lesions : bool
        Also find connected components (lesions) and, with a reference, match them.
    connectivity : int
        6, 18 or 26 for lesions.
    tolerance_mm : float
        Surface Dice tolerance in mm.
    iou_threshold : float, optional
        Minimum IoU for two lesions to match (default: any overlap).
    distances, diameters : bool
        Compute surface distances / maximum diameters (the slower measures).
    model : mapping, optional
        Model and inference settings to record in the provenance.
    include_patient : bool
        Record the patient's name, ID and study date and full source paths.

    Returns
    -------
    Report

    Raises
    ------
    LabelMapError
        A label map holds fractional or negative values.
    GridMismatchError
        ``image`` is not on the label map's grid (nor the same voxels in another order).
    """
    settings = ReportSettings(
        names=names,
        lesions=lesions,
        connectivity=connectivity,
        tolerance_mm=tolerance_mm,
        iou_threshold=iou_threshold,
        distances=distances,
        diameters=diameters,
        model=model,
        include_patient=include_patient,
    )
    return _full_report(labels, image, reference, settings)


def _full_report(
    labels: Volume,
    image: Volume | None,
    reference: Volume | None,
    settings: ReportSettings,
    inputs: PreparedInputs | None = None,
) -> Report:
    """The report of every label: :func:`prepare` (unless done), :func:`measure`, provenance."""
    include_patient = settings.include_patient
    if inputs is None:
        inputs = prepare(labels, image, reference, include_patient=include_patient)
    found = measure(inputs, settings)
    sources = [_source_info(labels, "labels", include_patient)]
    if image is not None:
        sources.append(_source_info(image, "image", include_patient))
    if reference is not None:
        sources.append(_source_info(reference, "reference", include_patient))
        sources[-1].resampled = inputs.reference_resampled
    exclude = inputs.exclude
    recorded: dict[str, Any] = {
        "intensity_excluded_range": list(exclude) if exclude is not None else None,
    }
    if reference is not None:
        recorded["surface_dice_tolerance_mm"] = float(settings.tolerance_mm)
    if settings.lesions:
        recorded["lesion_connectivity"] = settings.connectivity
        recorded["lesion_iou_threshold"] = settings.iou_threshold
    provenance = Provenance(
        created_utc=utc_timestamp(),
        software=software_versions(),
        sources=sources,
        settings=recorded,
        model=dict(settings.model) if settings.model else None,
        patient=_patient_info(v for v in (image, labels, reference) if v is not None)
        if include_patient
        else None,
    )
    return Report(provenance, found.labels, found.overlap, found.lesions, list(inputs.notes))


# ------------------------------------------------------------------------ rows


#: Intensity statistics, each a column ``intensity_<key>``.
INTENSITY_KEYS = ("mean", "sd", "median", "p5", "p95", "min", "max")
_PLACE_COLUMNS = (
    *(f"centroid_{axis}_ras_mm" for axis in "xyz"),
    *(f"bbox_{axis}_{end}" for axis in "ijk" for end in ("min", "max")),
)


def _has_image(report: Report) -> bool:
    """Whether the report was made with an image (also when it has no label rows)."""
    return any(s.intensity is not None for s in report.labels) or any(
        source.role == "image" for source in report.provenance.sources
    )


def label_columns(report: Report) -> list[str]:
    """Columns of :func:`label_rows`, in order (the CSV header, also without rows)."""
    columns = ["label", "name", "voxels", "volume_ml"]
    if _has_image(report):
        columns += ["intensity_units", "intensity_voxels", "intensity_excluded_voxels"]
        columns += [f"intensity_{key}" for key in INTENSITY_KEYS]
    columns += [*_PLACE_COLUMNS, "diameter_mm", "touches_border"]
    if report.overlap is not None:
        columns += [*OVERLAP_COLUMNS, "surface_dice_tolerance_mm", "empty"]
    if report.lesions is not None:
        columns.append("lesions")
        if report.lesions.ref_lesions is not None:
            columns += list(LESION_COLUMNS)
    return columns


def lesion_columns(report: Report) -> list[str]:
    """Columns of :func:`lesion_rows`, in order (the CSV header, also without rows)."""
    columns = ["source", "id", "label", "name", "voxels", "volume_ml", "diameter_mm"]
    columns += [*_PLACE_COLUMNS, "touches_border"]
    if _has_image(report):
        columns.append("intensity_mean")
    if report.lesions is not None and report.lesions.ref_lesions is not None:
        columns += ["matched", "matches", "best_iou"]
    return columns


def label_rows(report: Report) -> list[dict[str, Any]]:
    """One flat dict per label: the columns of the CSV and of the JSON ``labels`` list.

    Columns: ``label, name, voxels, volume_ml``; with an image ``intensity_*``; then
    ``centroid_{x,y,z}_ras_mm``, ``bbox_{i,j,k}_{min,max}``, ``diameter_mm``,
    ``touches_border``; with a reference ``ref_voxels, ref_volume_ml, dice, iou,
    sensitivity, precision, volume_diff_ml, volume_diff_pct, hd_mm, hd95_mm, assd_mm,
    surface_dice, surface_dice_tolerance_mm, empty``; with lesions the per-label lesion
    counts (``lesions``, and with a reference ``ref_lesions, lesions_detected,
    lesions_missed, lesions_true_positive, lesions_false_positive, lesion_precision,
    lesion_recall, lesion_f1``).
    """
    has_image = _has_image(report)
    overlap = {o.label: o for o in report.overlap or []}
    summary = {s.label: s for s in (report.lesions.summary if report.lesions else [])}
    nan = float("nan")
    rows = []
    for stats in report.labels:
        row: dict[str, Any] = {
            "label": stats.label,
            "name": stats.name,
            "voxels": stats.voxels,
            "volume_ml": stats.volume_ml,
        }
        if has_image:
            i = stats.intensity
            row["intensity_units"] = i.units if i else ""
            row["intensity_voxels"] = i.voxels if i else 0
            row["intensity_excluded_voxels"] = i.excluded_voxels if i else 0
            for key in INTENSITY_KEYS:
                row[f"intensity_{key}"] = getattr(i, key) if i else nan
        centroid = stats.centroid_ras_mm or (nan, nan, nan)
        for axis, value in zip("xyz", centroid, strict=True):
            row[f"centroid_{axis}_ras_mm"] = value
        box = stats.bbox_ijk or ((None, None),) * 3
        for axis, (low, high) in zip("ijk", box, strict=True):
            row[f"bbox_{axis}_min"] = low
            row[f"bbox_{axis}_max"] = high
        row["diameter_mm"] = stats.diameter_mm
        row["touches_border"] = stats.touches_border
        if report.overlap is not None:
            o = overlap[stats.label]
            row.update({column: getattr(o, column) for column in OVERLAP_COLUMNS})
            row["surface_dice_tolerance_mm"] = o.tolerance_mm
            row["empty"] = o.empty
        if report.lesions is not None:
            s = summary[stats.label]
            row["lesions"] = s.lesions
            if s.ref_lesions is not None:
                row.update({column: getattr(s, key) for column, key in LESION_COLUMNS.items()})
        rows.append(row)
    return rows


def lesion_rows(report: Report) -> list[dict[str, Any]]:
    """One flat dict per lesion (``source`` = ``labels`` or ``reference``)."""
    table = report.lesions
    if table is None:
        return []
    compared = table.ref_lesions is not None
    has_image = _has_image(report)
    rows = []
    for source, lesions in (("labels", table.lesions), ("reference", table.ref_lesions or [])):
        for lesion in lesions:
            row: dict[str, Any] = {
                "source": source,
                "id": lesion.id,
                "label": lesion.label,
                "name": lesion.name,
                "voxels": lesion.voxels,
                "volume_ml": lesion.volume_ml,
                "diameter_mm": lesion.diameter_mm,
            }
            for axis, value in zip("xyz", lesion.centroid_ras_mm, strict=True):
                row[f"centroid_{axis}_ras_mm"] = value
            for axis, (low, high) in zip("ijk", lesion.bbox_ijk, strict=True):
                row[f"bbox_{axis}_min"] = low
                row[f"bbox_{axis}_max"] = high
            row["touches_border"] = lesion.touches_border
            if has_image:
                row["intensity_mean"] = lesion.intensity_mean
            if compared:
                row["matched"] = bool(lesion.matches)
                row["matches"] = ";".join(str(i) for i in lesion.matches)
                row["best_iou"] = lesion.best_iou
            rows.append(row)
    return rows


# ------------------------------------------------------------------------ writing


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return repr(float(value))  # shortest exact form; nan and inf as such
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, np.ndarray):  # e.g. a window size in model settings
        return _json_value(value.tolist())
    if isinstance(value, PathLike):
        return str(value)
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def report_to_dict(report: Report) -> dict[str, Any]:
    """The JSON document of a report (strict JSON: NaN and inf become null)."""
    document = {
        "format": "napari-medseg measurement report",
        "format_version": JSON_FORMAT_VERSION,
        "provenance": asdict(report.provenance),
        "conventions": CONVENTIONS,
        "notes": list(report.notes),
        "labels": label_rows(report),
    }
    if report.lesions is not None:
        rows = lesion_rows(report)
        document["lesions"] = [r for r in rows if r["source"] == "labels"]
        if report.lesions.ref_lesions is not None:
            document["reference_lesions"] = [r for r in rows if r["source"] == "reference"]
    return _json_value(document)


def _write_csv(path: Path, rows: list[dict[str, Any]], header: Iterable[str]) -> None:
    columns = list(header)  # written even without rows: an empty table keeps its columns
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with atomic_output(path) as temp, open(temp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_value(row.get(c)) for c in columns])


def report_outputs(path: str | PathLike, lesions: bool) -> list[Path]:
    """Files :func:`write_report` writes for ``path`` (CSV with lesions: two files)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        raise ScanWriteError(
            path, "a report is written as .csv or .json.", "Name the output e.g. report.csv."
        )
    if suffix == ".csv" and lesions:
        return [path, path.with_name(path.stem + LESIONS_SUFFIX)]
    return [path]


def write_report(
    report: Report,
    path: str | PathLike,
    *,
    overwrite: bool = False,
    protect: Iterable[str | PathLike] = (),
) -> list[Path]:
    """Write a report as CSV (``.csv``) or JSON (``.json``).

    Parameters
    ----------
    report : Report
    path : path
        Output file. For CSV with lesions, the lesion table goes to
        ``<stem>_lesions.csv`` next to it.
    overwrite : bool
        Replace existing outputs (never a protected source).
    protect : iterable of path
        Source files and folders that must never be written over.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    ScanWriteError
        Unknown suffix; an output exists and ``overwrite`` is False (also when it
        appeared while writing: the name is claimed exclusively); a write failed (the
        message names the file and the OS reason).
    OverwriteSourceError
        An output is one of the sources.

    Notes
    -----
    The files are published as a set (:func:`napari_medseg.io.atomic.output_set`):
    the label table and the lesion table both, or, when either fails, neither.
    """
    outputs = report_outputs(path, report.lesions is not None)
    fix = "Pass --overwrite (overwrite=True) to replace it."
    for out in outputs:
        refuse_source_overwrite(out, protect)
        if (out.exists() or out.is_symlink()) and not overwrite:
            raise ScanWriteError(out, "already exists.", fix)
    # both tables, or neither; a name taken meanwhile by another writer is not replaced
    with output_set(exclusive=not overwrite, exists_message=f"{{path}}: already exists. {fix}"):
        if outputs[0].suffix.lower() == ".json":
            text = json.dumps(report_to_dict(report), indent=2, allow_nan=False)
            with atomic_output(outputs[0]) as temp:
                temp.write_text(text + "\n", encoding="utf-8")
        else:
            _write_csv(outputs[0], label_rows(report), label_columns(report))
        if len(outputs) > 1:
            _write_csv(outputs[1], lesion_rows(report), lesion_columns(report))
    return outputs


__all__ = [
    "Provenance",
    "Report",
    "ReportSettings",
    "SourceInfo",
    "build_report",
    "label_columns",
    "label_rows",
    "lesion_columns",
    "lesion_rows",
    "report_to_dict",
    "write_report",
]
