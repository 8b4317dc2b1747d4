"""``medseg report``: measure a label map (volumes, HU statistics, Dice, HD95, lesions).

:func:`register` adds the sub-command to the ``medseg`` parser; the measuring code is
imported only when the command runs, so ``medseg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DESCRIPTION = """\
Measure a label map: per label the voxel count, volume (mL), centroid (RAS+ mm),
bounding box, maximum 3D diameter and whether it touches the volume border; with
--image the intensity statistics (HU for CT: mean, SD, median, p5, p95, min, max;
DICOM pixel padding left out); with --reference Dice, IoU, sensitivity, precision,
volume difference, HD95, Hausdorff, ASSD and surface Dice (MONAI's definitions);
with --lesions the connected components of each label (and, with a reference,
detected / missed / false-positive lesions).

OUT.csv gets one row per label (and, with --lesions, a sibling OUT_lesions.csv with
one row per lesion); OUT.json holds the same rows plus provenance (sources, settings,
software versions, time). Patient name, ID and study date, and full source paths,
are left out unless --include-patient-info is given.
"""


def _read_input(path: str, role: str, series_key: str | None = None):
    """Read one input; advice naming options ``medseg report`` lacks is rewritten."""
    from napari_medseg.errors import ScanReadError
    from napari_medseg.io.reader import read_scan

    try:
        return read_scan(path, series_key=series_key)
    except ScanReadError as error:
        if "--series" in error.fix and role != "--image":
            fix = f"Point {role} at the folder or a file of one series."
        elif "--volume" in error.fix:
            fix = "medseg report reads 3D volumes: save the one to measure as its own file."
        else:
            raise
        raise type(error)(error.path, error.problem, fix) from error


def cmd_report(args: argparse.Namespace) -> int:
    """Run ``medseg report``."""
    from napari_medseg.errors import ScanWriteError, shown_path
    from napari_medseg.io.atomic import check_writable, refuse_source_overwrite
    from napari_medseg.io.label_names import read_label_names
    from napari_medseg.io.sidecar import read_sidecar_model, sidecar_path
    from napari_medseg.measure.report import build_report, report_outputs, write_report

    # the outputs are checked before reading: not an input (never, even with
    # --overwrite), writable (not a folder, the folder takes a file), then existence
    sidecar = sidecar_path(args.labels)
    names_input = args.names or (sidecar if sidecar.is_file() else None)  # read below
    inputs = [args.labels, args.image, args.reference, names_input]
    outputs = report_outputs(args.output, args.lesions)
    for out in outputs:
        refuse_source_overwrite(out, [p for p in inputs if p])
        check_writable(out)
        if not args.overwrite and os.path.lexists(out):
            raise ScanWriteError(out, "already exists.", "Pass --overwrite to replace it.")
    model = None
    if args.model_info:
        try:
            model = json.loads(args.model_info)
        except json.JSONDecodeError as error:
            raise ScanWriteError(
                "--model-info", f"is not valid JSON ({error}).", "Pass a JSON object."
            ) from error
        if not isinstance(model, dict):
            raise ScanWriteError("--model-info", 'must be a JSON object, e.g. \'{"name": "x"}\'.')
    names_file = args.names
    if names_file is None and sidecar.is_file():  # written by `medseg segment`
        names_file = sidecar
        if model is None:
            model = read_sidecar_model(sidecar)
    names = read_label_names(names_file) if names_file else None
    labels = _read_input(args.labels, "LABELS")
    image = _read_input(args.image, "--image", args.series) if args.image else None
    reference = _read_input(args.reference, "--reference") if args.reference else None
    report = build_report(
        labels,
        image,
        reference,
        names=names,
        lesions=args.lesions,
        connectivity=args.connectivity,
        tolerance_mm=args.tolerance_mm,
        iou_threshold=args.iou_threshold,
        model=model,
        include_patient=args.include_patient_info,
    )
    protect = [p for p in (*inputs, names_file) if p]  # every input, the names file too
    for volume in (labels, image, reference):
        if volume is not None:
            protect += [volume.metadata.source, *volume.metadata.files]
    written = write_report(report, args.output, overwrite=args.overwrite, protect=protect)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    count = len(report.labels)
    shown = ", ".join(shown_path(p) for p in written)
    print(f"wrote {shown}: {count} label{'s' * (count != 1)}")
    return 0


def _tolerance(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def register(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``report`` to the ``medseg`` sub-commands; returns its parser."""
    parser = commands.add_parser(
        "report",
        help="measure a label map: volumes, HU statistics, Dice/HD95 against a reference",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("labels", help="label map (NIfTI; 0 = background)")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="OUT.csv or OUT.json (CSV with --lesions also writes OUT_lesions.csv)",
    )
    parser.add_argument(
        "--image", help="the scan the labels belong to, on the same voxel grid (NIfTI or DICOM)"
    )
    parser.add_argument("--series", help="series key or SeriesInstanceUID of --image")
    parser.add_argument(
        "--reference",
        help="reference label map to compare with (another grid is resampled by nearest "
        "neighbour, with a warning)",
    )
    parser.add_argument(
        "--names",
        help="label names: JSON {value: name} or dataset.json, or ITK-SNAP/Slicer text "
        "(default: the .json that `medseg segment` writes beside LABELS, when there is one)",
    )
    parser.add_argument(
        "--lesions", action="store_true", help="connected components (lesions) of each label"
    )
    parser.add_argument(
        "--connectivity",
        type=int,
        choices=(6, 18, 26),
        default=26,
        help="lesion connectivity in 3D (default 26)",
    )
    parser.add_argument(
        "--iou-threshold",
        type=_fraction,
        help="minimum IoU for a lesion to match a reference lesion (default: any overlap)",
    )
    parser.add_argument(
        "--tolerance-mm",
        type=_tolerance,
        default=1.0,
        help="surface Dice tolerance in mm (default 1)",
    )
    parser.add_argument(
        "--model-info", help="JSON object describing the model/settings, kept in the provenance"
    )
    parser.add_argument(
        "--include-patient-info",
        action="store_true",
        help="record patient name, ID, study date and full source paths in the report",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.set_defaults(func=cmd_report)
    return parser
