"""``medseg info``: what is in a scan file, or the series in a DICOM folder.

The value range is that of the finite voxels: NaN and +/-inf are counted
(``nonfinite_voxels``, read once by ``read_scan``) and named in a warning, never
printed as the range (see :mod:`napari_medseg.io.nonfinite`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_medseg.cli.common import ALLOW_GAPS_HELP, cli_advice, format_spacing
from napari_medseg.errors import MedsegError, shown_path


def _volume_summary(volume) -> dict:
    """Summary of a read volume, without patient identifiers."""
    from napari_medseg.geometry import obliquity_deg
    from napari_medseg.io.nonfinite import finite_range

    meta = volume.metadata
    array = volume.array
    finite = finite_range(array)
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
        "value_range": list(finite) if finite is not None else [],
        "nonfinite_voxels": int(meta.nonfinite_voxels),
        "units": meta.units,
        "qform_code": meta.qform_code,
        "sform_code": meta.sform_code,
        "affine_ras_mm": [[round(float(v), 6) for v in row] for row in volume.affine],
        "warnings": list(meta.warnings),
    }


def _print_volume_summary(summary: dict) -> None:
    print(f"{shown_path(summary['source'])}  ({summary['format']})")
    if summary["description"]:
        print(f"  description : {summary['description']}")
    print(f"  modality    : {summary['modality']}")
    print(f"  shape       : {' x '.join(str(n) for n in summary['shape'])} voxels (I, J, K)")
    print(f"  spacing     : {format_spacing(summary['spacing_mm'])} mm")
    print(f"  orientation : {summary['orientation']} (RAS+ axis code of I, J, K)")
    if summary["obliquity_deg"] > 0.001:
        print(f"  obliquity   : {summary['obliquity_deg']:.3f} deg")
    low, high = summary["value_range"] or (float("nan"), float("nan"))
    values = f"{summary['dtype']}, {low:g} .. {high:g} {summary['units']}".rstrip()
    if summary["nonfinite_voxels"]:
        values += f" (finite voxels; {summary['nonfinite_voxels']} NaN or infinite)"
    print(f"  values      : {values}")
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
    print(f"{shown_path(path)}: {len(rows)} series")
    for row in rows:
        spacing = list(row.get("pixel_spacing") or []) + [row.get("slice_spacing") or 0.0]
        kind = " [localizer]" if row.get("is_localizer") else ""
        print(
            f"  {row['key']}{kind}\n"
            f"      {row.get('modality') or '?'}  #{row.get('number')}  "
            f"{row.get('description') or '(no description)'}\n"
            f"      {row['n_slices']} slices of {row['rows']} x {row['columns']}, "
            f"spacing {format_spacing(spacing)} mm, orientation {row.get('orientation')}"
        )
        for warning in row.get("warnings") or []:
            print(f"      warning: {cli_advice(warning)}")


#: Skipped files ``medseg info`` lists below the series, and how it titles them.
_REPORTED_SKIPS = {
    "unreadable": "could not be read",
    "outside": "refused: referenced by the DICOMDIR outside its folder",
}


def _skipped_rows(skipped) -> list[dict]:
    """The skipped files worth a user's attention: unreadable ones, refused references."""
    return [
        {"path": s.path, "kind": s.kind, "reason": s.reason}
        for s in skipped
        if s.kind in _REPORTED_SKIPS
    ]


def _print_skipped(rows: list[dict]) -> None:
    for kind, title in _REPORTED_SKIPS.items():
        listed = [row for row in rows if row["kind"] == kind]
        if listed:
            print(f"  {len(listed)} file{'s' * (len(listed) != 1)} {title}:")
            for row in listed:
                print(f"      {shown_path(row['path'])}: {row['reason']}")


def _print_system(summary: dict) -> None:
    print(f"torch            {summary['torch']} ({summary['threads']} threads)")
    print(f"CPU              {summary['cpu_bf16']}")
    print(f"CPU precision    {summary['cpu_precision']}, with mixed precision on (the default)")
    print(f"CUDA             {', '.join(summary['cuda']) or 'none'}")
    print(f"Apple MPS        {'yes' if summary['mps'] else 'no'}")


def cmd_info(args: argparse.Namespace) -> int:
    """``medseg info PATH``: what is in a file or folder; ``--system``: this machine."""
    from napari_medseg.io.reader import is_volume_file, read_scan

    if args.system:
        from napari_medseg.inference.devices import system_summary

        summary = system_summary()
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            _print_system(summary)
        if args.path is None:
            return 0
    elif args.path is None:
        raise MedsegError("give a scan to describe (medseg info PATH), or --system.")
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
    from napari_medseg.io.dicom import index_dicom, series_of_file
    from napari_medseg.io.sniff import is_dicomdir_name

    if path.is_file() and not is_dicomdir_name(path):
        # one file of a series: describe the series it belongs to, as convert reads it
        series = series_of_file(path)
        rows = [_series_summary(series)]
        if args.json:
            print(json.dumps({"source": str(path), "series": rows, "skipped": []}, indent=2))
        else:
            print(f"{shown_path(path)} is one of the {series.n_slices} images of this series:")
            _print_series_table(path.parent, rows)
        return 0
    index = index_dicom(path)
    rows = [_series_summary(series) for series in index]
    skipped = _skipped_rows(index.skipped)
    if args.json:
        print(json.dumps({"source": str(path), "series": rows, "skipped": skipped}, indent=2))
    else:
        _print_series_table(path, rows)
        _print_skipped(skipped)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``info`` to the ``medseg`` sub-commands."""
    info = commands.add_parser("info", help="summarise a scan, or the series in a DICOM folder")
    info.add_argument(
        "path", nargs="?", help="NIfTI file, DICOM file, DICOM folder or DICOMDIR"
    )
    info.add_argument(
        "--system",
        action="store_true",
        help="what this machine offers the networks: torch, CUDA, the CPU's bfloat16",
    )
    info.add_argument("--series", help="series key or SeriesInstanceUID: summarise that volume")
    info.add_argument("--volume", type=int, help="volume of a 4D NIfTI (0-based)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.add_argument("--allow-gaps", action="store_true", help=ALLOW_GAPS_HELP)
    info.set_defaults(func=cmd_info)
