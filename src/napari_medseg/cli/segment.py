"""``medseg segment`` and ``medseg models``.

``segment`` reads a scan (NIfTI file or DICOM series; several paths for a multi-channel
model), runs a model and writes the label map on the scan's own voxel grid, with its
affine and qform/sform codes. ``models`` lists the catalogue without importing torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from napari_medseg.cli.common import ALLOW_GAPS_HELP, EXISTS_MESSAGE, check_window_options
from napari_medseg.errors import MedsegError, shown_path

#: Why a bundle folder needs --trust-bundle, shown when it is missing.
TRUST_HELP = (
    "trust a MONAI bundle folder that is not in the catalogue: bundle configs run "
    "Python expressions, so only pass this for bundles from a source you trust"
)


def register(commands) -> None:
    """Add the ``segment`` and ``models`` sub-commands to ``medseg``'s sub-parsers."""
    from napari_medseg.models.registry import DEFAULT_MODEL

    segment = commands.add_parser(
        "segment",
        help="segment a scan with a model; labels land on the scan's own voxel grid",
        description="Segment a scan (NIfTI or DICOM) and write the labels as NIfTI on the "
        "scan's voxel grid. Several inputs are the channels of a multi-channel model "
        "(e.g. T1 T1c T2 FLAIR), all on one grid; the first sets the output grid.",
    )
    segment.add_argument("inputs", nargs="+", metavar="INPUT", help="scan file or DICOM folder")
    segment.add_argument("-o", "--output", required=True, help="output labels .nii.gz / .nii")
    segment.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"catalogue name (see `medseg models`), MONAI bundle folder, nnU-Net v2 model "
        f"folder (<Trainer>__<Plans>__<configuration>), spec .json, or TorchScript file with "
        f"a .json spec beside it (default: {DEFAULT_MODEL})",
    )
    segment.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps"
    )
    segment.add_argument("--overlap", type=float, help="sliding-window overlap in [0, 1)")
    segment.add_argument("--sw-batch-size", type=int, help="windows per network call")
    segment.add_argument(
        "--no-amp",
        action="store_true",
        help="no mixed precision (float16 on CUDA, bfloat16 on a CPU that has it natively); "
        "float32 throughout",
    )
    segment.add_argument(
        "--tta", action="store_true", help="test-time augmentation: average over axis flips"
    )
    segment.add_argument("--trust-bundle", action="store_true", help=TRUST_HELP)
    segment.add_argument(
        "--probabilities",
        metavar="PROBS.nii.gz",
        help="also write class probabilities (4D float32, one volume per class) on the scan's grid",
    )
    segment.add_argument(
        "--dicom-seg",
        metavar="SEG.dcm",
        help="also write the labels as a DICOM SEG referencing the input DICOM series",
    )
    segment.add_argument(
        "--rtstruct",
        metavar="RT.dcm",
        help="also write the labels as an RT Structure Set referencing the input DICOM series",
    )
    segment.add_argument(
        "--seg-nrrd",
        metavar="LABELS.seg.nrrd",
        help="also write the labels as a 3D Slicer segmentation (names and colours kept)",
    )
    segment.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    segment.add_argument("--series", help="series key or SeriesInstanceUID (see `medseg info`)")
    segment.add_argument("--allow-gaps", action="store_true", help=ALLOW_GAPS_HELP)
    segment.add_argument("--json", action="store_true", help="print the summary as JSON")
    segment.set_defaults(func=cmd_segment)

    models = commands.add_parser("models", help="list the models of the catalogue")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(func=cmd_models)


# -- models -------------------------------------------------------------------------------
def models_table(entries) -> str:
    """The catalogue as a text table (name, kind, modality, dims, licence, labels), each
    model followed by its intended use."""
    from napari_medseg.models.licence import is_non_commercial

    rows = [("NAME", "KIND", "MODALITY", "DIMS", "LICENCE", "LABELS")]
    uses = [""]
    for entry in entries:
        labels = ", ".join(entry.labels) or "(after download)"
        if len(labels) > 50:
            labels = labels[:47] + "..."
        dims = f"{entry.spatial_dims}D" if entry.spatial_dims else "?"
        licence = entry.license + (" (non-commercial)" if is_non_commercial(entry.license) else "")
        rows.append((entry.name, entry.kind, entry.modality or "any", dims, licence, labels))
        uses.append(entry.intended_use)
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for row, use in zip(rows, uses, strict=True):
        lines.append(
            "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) + "  " + row[5]
        )
        if use:
            lines.append(f"    use: {use}")
    return "\n".join(line.rstrip() for line in lines)


def list_models(as_json: bool = False) -> str:
    """What ``medseg models`` prints (imports no torch)."""
    from napari_medseg.models.registry import catalogue

    entries = catalogue()
    if as_json:
        return json.dumps([entry.to_dict() for entry in entries], indent=2)
    return models_table(entries)


def cmd_models(args: argparse.Namespace) -> int:
    """``medseg models``: the catalogue."""
    print(list_models(args.json))
    return 0


# -- segment ------------------------------------------------------------------------------
class _ProgressBar:
    """``progress(done, total)`` on stderr: a bar on a terminal, a line per 10 % otherwise."""

    def __init__(self, label: str, stream=None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.perf_counter()
        self.last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        if self.tty:
            width = 30
            filled = int(round(width * fraction))
            elapsed = time.perf_counter() - self.started
            self.stream.write(
                f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                f"{done}/{total} {elapsed:5.1f}s"
            )
            if done >= total:
                self.stream.write("\n")
            self.stream.flush()
            return
        tenth = int(fraction * 10)
        if tenth > self.last_tenth and (done == 0 or tenth > 0):
            self.last_tenth = tenth
            print(f"{self.label}: {done}/{total} window batches", file=self.stream, flush=True)


def label_volumes(result, volume) -> list[dict]:
    """Voxel count and volume (mL) of every label the model names or the result holds."""
    import numpy as np

    voxel_ml = abs(float(np.linalg.det(volume.affine[:3, :3]))) / 1000.0
    counts = np.bincount(result.labels.ravel())
    names = {label.value: label.name for label in result.label_classes}
    rows = []
    for value in sorted(set(names) | {v for v in range(len(counts)) if counts[v]}):
        if value == 0:
            continue
        n = int(counts[value]) if value < len(counts) else 0
        rows.append(
            {
                "value": value,
                "name": names.get(value, f"label {value}"),
                "voxels": n,
                "volume_ml": round(n * voxel_ml, 3),
            }
        )
    return rows


def _refuse_untrusted_bundle(model: str, trusted: bool) -> None:
    """Stop before any work when ``model`` is a bundle folder and trust was not given."""
    from napari_medseg.models.registry import is_bundle_folder

    if not trusted and is_bundle_folder(Path(model)):
        raise MedsegError(
            f"{model}: is a MONAI bundle folder that is not in the catalogue. Bundle configs "
            "run Python expressions (and may import the bundle's own scripts), so loading it "
            "runs its code. Pass --trust-bundle if you trust where it came from."
        )


def cmd_segment(args: argparse.Namespace) -> int:
    """``medseg segment INPUT... -o OUT.nii.gz``: labels on the scan's own grid."""

    from napari_medseg.inference.segmenter import Segmenter
    from napari_medseg.io.reader import read_scan
    from napari_medseg.io.save import SaveTargets, check_targets, save_segmentation
    from napari_medseg.labels.classes import classes_from_label_classes
    from napari_medseg.models.registry import model_files
    from napari_medseg.volume import Volume

    out = Path(args.output)
    probabilities_path = Path(args.probabilities) if args.probabilities else None
    targets = SaveTargets(
        out,
        dicom_seg=Path(args.dicom_seg) if args.dicom_seg else None,
        probabilities=probabilities_path,
        rtstruct=Path(args.rtstruct) if args.rtstruct else None,
        seg_nrrd=Path(args.seg_nrrd) if args.seg_nrrd else None,
    )
    # refused before reading or segmenting; the source check comes before "pass
    # --overwrite", which would not help. Every input is protected: scans and model.
    inputs = [*args.inputs, *map(str, model_files(args.model))]
    check_targets(targets, inputs, overwrite=args.overwrite, exists_message=EXISTS_MESSAGE)
    _refuse_untrusted_bundle(args.model, args.trust_bundle)
    check_window_options(args)
    volumes = [
        read_scan(path, series_key=args.series, allow_gaps=args.allow_gaps) for path in args.inputs
    ]
    protect = [*inputs, *(p for v in volumes for p in (v.metadata.source, *v.metadata.files))]
    segmenter = Segmenter(
        args.model,
        device=args.device,
        amp=not args.no_amp,
        overlap=args.overlap,
        sw_batch_size=args.sw_batch_size,
        tta=args.tta,
        trust_bundle=args.trust_bundle,
    )
    source = volumes[0]
    meta = source.metadata
    for option, wanted in (("--dicom-seg", targets.dicom_seg), ("--rtstruct", targets.rtstruct)):
        if wanted is not None and meta.format != "dicom":
            raise MedsegError(
                f"{shown_path(args.inputs[0])}: {option} needs a DICOM input (it references "
                f"the DICOM images the labels were drawn on); this input is "
                f"{meta.format or 'not DICOM'}. Leave out {option}."
            )
    # what the user should know before waiting: problems of the scan, and a scan the
    # model was not made for
    told = [*meta.warnings, *segmenter.advance_warnings(source)]
    for warning in told:
        print(f"warning: {warning}", file=sys.stderr)
    progress = None if args.json else _ProgressBar(f"segment ({segmenter.device})")
    result = segmenter.predict(
        volumes, progress=progress, return_probabilities=probabilities_path is not None
    )
    save_segmentation(
        Volume(result.labels, result.affine, meta),
        targets,
        classes_from_label_classes(result.label_classes),
        model=result.provenance(),
        source=args.inputs[0],
        protect=[*protect, segmenter.model.source],
        overwrite=args.overwrite,
        probabilities=result.probabilities,
        exists_message=EXISTS_MESSAGE,
    )
    for warning in result.warnings:
        if warning not in told:
            print(f"warning: {warning}", file=sys.stderr)
    settings = result.settings
    if args.json:
        print(
            json.dumps(
                {
                    "output": str(out),
                    "probabilities": str(probabilities_path) if probabilities_path else None,
                    "dicom_seg": str(targets.dicom_seg) if targets.dicom_seg else None,
                    "rtstruct": str(targets.rtstruct) if targets.rtstruct else None,
                    "seg_nrrd": str(targets.seg_nrrd) if targets.seg_nrrd else None,
                    "model": result.model_name,
                    "labels": label_volumes(result, source),
                    "settings": settings,
                    "timings_s": result.timings_s,
                    "warnings": result.warnings,
                },
                indent=2,
                default=str,
            )
        )
        return 0
    print(
        f"wrote {shown_path(out)}: {' x '.join(map(str, result.labels.shape))} voxels on the "
        f"grid of {shown_path(meta.source or args.inputs[0])}"
    )
    for row in label_volumes(result, source):
        print(
            f"  {row['value']:>3} {row['name']:<24} {row['voxels']:>10} voxels "
            f"{row['volume_ml']:>10.2f} mL"
        )
    print(
        f"model {result.model_name} on {settings['device']}, "
        f"{settings['precision']} ({settings['precision_reason']})"
        f"{', TTA' if settings['tta'] else ''}: "
        f"{result.timings_s['total']:.1f} s (network {result.timings_s['network']:.1f} s)"
    )
    return 0
