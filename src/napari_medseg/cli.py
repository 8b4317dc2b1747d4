"""The ``medseg`` command: inspect, convert and view scans from a terminal.

Each sub-command prints a clear one-line error naming the file on bad input and
exits with status 2; it never writes over a source scan or an existing output
unless told to with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from napari_medseg import __version__
from napari_medseg.io.errors import MedsegError

logger = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2
ALLOW_GAPS_HELP = (
    "read a DICOM series with missing slices: they are filled with the lowest value at their "
    "true positions (never stretched) and reported"
)


def _format_spacing(values: Sequence[float]) -> str:
    return " x ".join(f"{v:.4g}" for v in values)


def _volume_summary(volume) -> dict:
    """Summary of a read volume, without patient identifiers."""
    import numpy as np

    from napari_medseg.geometry import obliquity_deg

    meta = volume.metadata
    array = volume.array
    return {
        "source": meta.source,
        "format": meta.format,
        "modality": meta.modality or "unknown",
        "series_uid": meta.series_uid,
        "description": meta.series_description,
        "shape": list(volume.shape),
        "spacing_mm": [round(float(s), 6) for s in volume.spacing],
        "orientation": volume.orientation,
        "obliquity_deg": round(obliquity_deg(volume.affine), 4),
        "dtype": str(array.dtype),
        "value_range": [float(np.min(array)), float(np.max(array))] if array.size else [],
        "units": meta.units,
        "qform_code": meta.qform_code,
        "sform_code": meta.sform_code,
        "affine_ras_mm": [[round(float(v), 6) for v in row] for row in volume.affine],
        "warnings": list(meta.warnings),
    }


def _print_volume_summary(summary: dict) -> None:
    print(f"{summary['source']}  ({summary['format']})")
    if summary["description"]:
        print(f"  description : {summary['description']}")
    print(f"  modality    : {summary['modality']}")
    print(f"  shape       : {' x '.join(str(n) for n in summary['shape'])} voxels (I, J, K)")
    print(f"  spacing     : {_format_spacing(summary['spacing_mm'])} mm")
    print(f"  orientation : {summary['orientation']} (RAS+ axis code of I, J, K)")
    if summary["obliquity_deg"] > 0.001:
        print(f"  obliquity   : {summary['obliquity_deg']:.3f} deg")
    low, high = summary["value_range"] or (float("nan"), float("nan"))
    print(f"  values      : {summary['dtype']}, {low:g} .. {high:g} {summary['units']}".rstrip())
    for warning in summary["warnings"]:
        print(f"  warning     : {warning}")


def _series_summary(series) -> dict:
    fields = (
        "key",
        "uid",
        "number",
        "description",
        "modality",
        "n_slices",
        "rows",
        "columns",
        "pixel_spacing",
        "slice_spacing",
        "orientation",
        "is_localizer",
        "is_multiframe",
        "warnings",
    )
    out = {}
    for name in fields:
        value = getattr(series, name, None)
        if isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


def _print_series_table(path: Path, rows: list[dict]) -> None:
    print(f"{path}: {len(rows)} series")
    for row in rows:
        spacing = list(row.get("pixel_spacing") or []) + [row.get("slice_spacing") or 0.0]
        kind = " [localizer]" if row.get("is_localizer") else ""
        print(
            f"  {row['key']}{kind}\n"
            f"      {row.get('modality') or '?'}  #{row.get('number')}  "
            f"{row.get('description') or '(no description)'}\n"
            f"      {row['n_slices']} slices of {row['rows']} x {row['columns']}, "
            f"spacing {_format_spacing(spacing)} mm, orientation {row.get('orientation')}"
        )
        for warning in row.get("warnings") or []:
            print(f"      warning: {warning}")


def cmd_info(args: argparse.Namespace) -> int:
    """``medseg info PATH``: what is in a file or folder."""
    from napari_medseg.io.reader import is_volume_file, read_scan

    path = Path(args.path)
    if is_volume_file(path) or args.series:
        volume = read_scan(
            path, series_key=args.series, volume_index=args.volume, allow_gaps=args.allow_gaps
        )
        summary = _volume_summary(volume)
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            _print_volume_summary(summary)
        return 0
    from napari_medseg.io.dicom import index_dicom

    rows = [_series_summary(series) for series in index_dicom(path)]
    if args.json:
        print(json.dumps({"source": str(path), "series": rows}, indent=2))
    else:
        _print_series_table(path, rows)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """``medseg convert PATH OUT.nii.gz``: DICOM (or NIfTI) to NIfTI, geometry kept."""

    from napari_medseg.geometry import (
        OBLIQUE_TOLERANCE_DEG,
        remove_shear,
        shear_deg,
        voxel_spacing,
    )
    from napari_medseg.io.nifti import check_nifti_name, write_nifti_like
    from napari_medseg.io.reader import read_scan

    out = Path(args.output)
    check_nifti_name(out)  # before reading a whole series
    if out.exists() and not args.overwrite:
        raise MedsegError(f"{out}: already exists; pass --overwrite to replace it.")
    volume = read_scan(
        args.path, series_key=args.series, volume_index=args.volume, allow_gaps=args.allow_gaps
    )
    meta = volume.metadata
    array, affine = volume.array, volume.affine
    shear = shear_deg(affine)
    if shear > OBLIQUE_TOLERANCE_DEG and args.resample_tilt:
        array, affine = remove_shear(array, affine, order=1)
        print(
            f"warning: resampled the gantry-tilted grid ({shear:.2f} deg) "
            "onto the orthogonal grid of its slices (linear interpolation)",
            file=sys.stderr,
        )
    # a sheared grid kept as it is: write_nifti warns (qform_code 0, ITK refuses it)
    write_nifti_like(out, array, affine, volume, description=meta.series_description)
    for warning in meta.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"wrote {out}: {' x '.join(map(str, array.shape))} voxels, "
        f"spacing {_format_spacing(voxel_spacing(affine))} mm, orientation {volume.orientation}"
    )
    return 0


def gui_unavailable_reason(timeout_s: float = 60.0) -> str:
    """Why napari cannot open here ("" when it can).

    On Linux a display variable is not enough (it may point at a closed X server), so
    a Qt application is started in a child process as a probe.
    """
    if sys.platform not in ("darwin", "win32") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display found (DISPLAY is not set)"
    probe = "from qtpy.QtWidgets import QApplication; QApplication([])"
    try:
        result = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return f"the display did not answer within {timeout_s:.0f} s"
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["Qt could not start"])[-1]
        return f"napari cannot open a window here ({last_line})"
    return ""


def cmd_view(args: argparse.Namespace) -> int:
    """``medseg view [PATH]``: open napari with a scan (default: the sample) and the widgets."""
    from napari_medseg.demo import open_in_napari

    open_in_napari(args.path)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``medseg demo``: the main job on the bundled sample, in napari or headless."""
    from napari_medseg.demo import open_in_napari, run_headless_demo

    reason = "" if args.headless else gui_unavailable_reason()
    if args.headless or reason:
        if reason:
            print(f"{reason}: running the headless demo.", flush=True)
        run_headless_demo(Path(args.out))
        return 0
    open_in_napari(None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medseg",
        description="Open, convert and segment CT/MR scans with exact patient geometry.",
    )
    parser.add_argument("--version", action="version", version=f"napari-medseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="summarise a scan, or the series in a DICOM folder")
    info.add_argument("path", help="NIfTI file, DICOM file, DICOM folder or DICOMDIR")
    info.add_argument("--series", help="series key or SeriesInstanceUID: summarise that volume")
    info.add_argument("--volume", type=int, help="volume of a 4D NIfTI (0-based)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.add_argument("--allow-gaps", action="store_true", help=ALLOW_GAPS_HELP)
    info.set_defaults(func=cmd_info)

    convert = commands.add_parser("convert", help="convert a DICOM series to NIfTI")
    convert.add_argument("path", help="DICOM file, folder or DICOMDIR (or a NIfTI file)")
    convert.add_argument("output", help="output .nii.gz or .nii")
    convert.add_argument("--series", help="series key or SeriesInstanceUID (see `medseg info`)")
    convert.add_argument("--volume", type=int, help="volume of a 4D NIfTI (0-based)")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing output")
    convert.add_argument("--allow-gaps", action="store_true", help=ALLOW_GAPS_HELP)
    convert.add_argument(
        "--resample-tilt",
        action="store_true",
        help="resample a gantry-tilted CT onto an orthogonal grid (for ITK-based tools); "
        "by default the exact sheared grid is kept",
    )
    convert.set_defaults(func=cmd_convert)

    view = commands.add_parser("view", help="open napari with a scan and the plugin's widgets")
    view.add_argument("path", nargs="?", help="scan to open (default: the bundled sample)")
    view.set_defaults(func=cmd_view)

    demo = commands.add_parser(
        "demo", help="the main job on the bundled sample (napari, or headless without a display)"
    )
    demo.add_argument("--headless", action="store_true", help="do not open napari")
    demo.add_argument(
        "--out", default="medseg-demo-output", help="folder for the headless demo's outputs"
    )
    demo.set_defaults(func=cmd_demo)

    # commands with their own modules; each imports its heavy dependencies lazily
    from napari_medseg import cli_report, cli_segment

    cli_segment.register(commands)
    cli_report.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medseg`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except MedsegError as error:
        print(f"medseg: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:  # the last net: a file system problem the I/O layer let through
        where = error.filename or "a file"
        print(f"medseg: error: {where}: {error.strerror or error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
