"""``medseg convert``: a DICOM series (or a NIfTI file) to NIfTI, geometry kept.

Values are written as they were read: NaN and +/-inf voxels too (a converter does not
decide what they should have been), with a warning giving their count (see
:mod:`napari_medseg.io.nonfinite`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_medseg.cli.common import ALLOW_GAPS_HELP, format_spacing
from napari_medseg.errors import MedsegError, shown_path


def cmd_convert(args: argparse.Namespace) -> int:
    """``medseg convert PATH OUT.nii.gz``: DICOM (or NIfTI) to NIfTI, geometry kept."""

    from napari_medseg.geometry import (
        OBLIQUE_TOLERANCE_DEG,
        remove_shear,
        shear_deg,
        voxel_spacing,
    )
    from napari_medseg.io.atomic import check_writable, output_set, refuse_source_overwrite
    from napari_medseg.io.nifti import check_nifti_name, write_nifti_like
    from napari_medseg.io.reader import read_scan

    out = Path(args.output)
    check_nifti_name(out)  # before reading a whole series
    exists = "{path}: already exists; pass --overwrite to replace it."
    refuse_source_overwrite(out, [args.path])  # before "pass --overwrite", which would not help
    check_writable(out)  # a folder, a read-only folder... before reading
    if out.exists() and not args.overwrite:
        raise MedsegError(exists.format(path=out))
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
    with output_set(exclusive=not args.overwrite, exists_message=exists):  # claimed, not replaced
        write_nifti_like(
            out,
            array,
            affine,
            volume,
            description=meta.series_description,
            protect=[args.path, meta.source, *meta.files],
        )
    for warning in meta.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if meta.nonfinite_voxels:
        print(
            f"warning: {out}: the NaN and infinite voxels ({meta.nonfinite_voxels}) are "
            "written as they are; convert never changes values.",
            file=sys.stderr,
        )
    print(
        f"wrote {shown_path(out)}: {' x '.join(map(str, array.shape))} voxels, "
        f"spacing {format_spacing(voxel_spacing(affine))} mm, orientation {volume.orientation}"
    )
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``convert`` to the ``medseg`` sub-commands."""
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
