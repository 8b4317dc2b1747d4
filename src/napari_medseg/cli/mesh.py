"""``medseg mesh``: smoothed surface meshes of a label map, one file per label.

:func:`register` adds the sub-command to the ``medseg`` parser; the meshing code is
imported only when the command runs, so ``medseg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DESCRIPTION = """\
Build a smoothed, closed surface mesh of each label of a label map and write one file
per label into DIR, named <value>_<name>.<format> (e.g. 2_liver.stl), in world
millimetres: RAS+ (3D Slicer's world, nibabel's), or DICOM LPS+ with --lps (ITK and
most DICOM tools). The names come from --names, else from the label map itself: the
sidecar `medseg segment` writes, a names file beside it, or a .seg.nrrd's segments.

Each mesh encloses the label's volume (within 2 % for organ-sized labels) with
outward normals. Smoothing is a windowed-sinc filter that does not shrink the
surface; --smooth 0 keeps the raw voxel-boundary surface.
"""


def _label_list(text: str) -> list[int]:
    """``"1,2,5"`` -> ``[1, 2, 5]`` (positive whole numbers)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be label values separated by commas, e.g. 1,2; got {text!r}"
        ) from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"must be label values above 0, e.g. 1,2; got {text!r}")
    return list(dict.fromkeys(values))


def _iterations(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 500:
        raise argparse.ArgumentTypeError(f"must be 0 to 500 iterations, got {text}")
    return value


def _classes(labels, path: str, names_file: str | None, chosen: bool) -> dict[int, str]:
    """Label value -> name: ``--names``, else what the label map carries or has beside it.

    A volume that does not look like a label map is refused unless the labels to mesh
    were ``chosen`` (``--labels``): a map with many labels and a plain name looks like
    an image to the evidence, but the user knows better."""
    from napari_medseg.io.label_evidence import label_map_evidence
    from napari_medseg.io.label_names import read_label_names
    from napari_medseg.labels.maps import LabelMapError

    if names_file:
        return read_label_names(names_file)
    decision = label_map_evidence(labels)
    for warning in decision.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not decision.is_labels and not chosen:
        raise LabelMapError(
            path,
            f"does not look like a label map ({decision.reason}).",
            "Give a label map (0 = background), or name the labels to mesh with --labels.",
        )
    return {value: name for value, (name, _) in decision.classes.items()}


def cmd_mesh(args: argparse.Namespace) -> int:
    """Run ``medseg mesh``."""
    from napari_medseg.errors import ScanWriteError, shown_path
    from napari_medseg.io.atomic import check_writable, output_set, refuse_source_overwrite
    from napari_medseg.io.mesh_files import mesh_file_name, write_mesh
    from napari_medseg.io.reader import read_scan
    from napari_medseg.labels.classes import default_name
    from napari_medseg.labels.maps import as_label_array
    from napari_medseg.labels.mesh import label_boxes, label_meshes

    folder = Path(args.output)
    if folder.exists() and not folder.is_dir():
        raise ScanWriteError(folder, "is a file; -o names the folder the meshes go to.")
    labels = read_scan(args.labels)
    for warning in labels.metadata.warnings:  # what the reader noticed (gaps, tilt...)
        print(f"warning: {warning}", file=sys.stderr)
    classes = _classes(labels, args.labels, args.names, chosen=bool(args.select))
    array = as_label_array(labels.array, args.labels)
    values = args.select or list(label_boxes(array))  # one pass, in memory order
    if not values:
        raise ScanWriteError(args.labels, "holds no label (only background, 0): nothing to mesh.")
    names = {v: classes.get(v) or default_name(v) for v in values}
    targets = {v: folder / mesh_file_name(v, names[v], args.format) for v in values}
    inputs = [p for p in (args.labels, args.names, labels.metadata.source) if p]
    for target in targets.values():  # before the meshing: not an input, writable, new
        refuse_source_overwrite(target, inputs + list(labels.metadata.files))
        check_writable(target)
        if not args.overwrite and os.path.lexists(target):
            raise ScanWriteError(target, "already exists.", "Pass --overwrite to replace it.")
    meshes = label_meshes(labels, values, smooth=args.smooth)
    frame = "LPS" if args.lps else "RAS"
    exists = "{path}: already exists; pass --overwrite to replace it."
    with output_set(exclusive=not args.overwrite, exists_message=exists):  # all or none
        for mesh in meshes:
            write_mesh(
                targets[mesh.value],
                mesh.vertices,
                mesh.faces,
                fmt=args.format,
                lps=args.lps,
                header=f"label {mesh.value} {names[mesh.value]} ({frame} mm)",
                overwrite=args.overwrite,
            )
    for mesh in meshes:
        print(
            f"{shown_path(targets[mesh.value])}: {len(mesh.faces)} triangles, "
            f"{mesh.volume_mm3 / 1000:.4g} mL (voxels: {mesh.voxel_volume_mm3 / 1000:.4g} mL)"
        )
    count = len(meshes)
    print(f"wrote {count} mesh{'es' * (count != 1)} to {shown_path(folder)} ({frame} mm)")
    return 0


def register(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``mesh`` to the ``medseg`` sub-commands; returns its parser."""
    from napari_medseg.io.mesh_files import MESH_FORMATS
    from napari_medseg.labels.mesh import DEFAULT_SMOOTH

    parser = commands.add_parser(
        "mesh",
        help="surface meshes of a label map (STL, OBJ, PLY, VTK), one file per label",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("labels", help="label map (NIfTI, NRRD or .seg.nrrd; 0 = background)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write to")
    parser.add_argument(
        "--format", choices=MESH_FORMATS, default="stl", help="file format (default stl)"
    )
    parser.add_argument(
        "--labels",
        dest="select",
        type=_label_list,
        metavar="1,2",
        help="the labels to mesh (default: every label the map holds)",
    )
    parser.add_argument(
        "--smooth",
        type=_iterations,
        default=DEFAULT_SMOOTH,
        metavar="N",
        help=f"windowed-sinc smoothing iterations, 0 for none (default {DEFAULT_SMOOTH})",
    )
    parser.add_argument(
        "--lps", action="store_true", help="write DICOM LPS+ mm instead of RAS+ (x, y negated)"
    )
    parser.add_argument(
        "--names",
        help="label names: JSON {value: name} or dataset.json, or ITK-SNAP/Slicer text "
        "(default: what the label map carries or has beside it)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.set_defaults(func=cmd_mesh)
    return parser
