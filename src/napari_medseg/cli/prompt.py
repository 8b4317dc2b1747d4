"""``medseg prompt``: interactive segmentation from the command line (for scripts and
evaluation).

Points and boxes are given in RAS+ millimetres, the world of the scan's affine (as
``medseg info`` and napari's status bar show them), and applied in the order given, as
clicks in the napari "Interactive" dock are. The mask is written on the scan's own voxel
grid (label value 1, or ``--value``), atomically, with a sidecar that records the
method and every prompt.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_medseg.cli.common import ALLOW_GAPS_HELP, EXISTS_MESSAGE
from napari_medseg.errors import MedsegError, shown_path


def _coordinates(text: str, count: int, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise argparse.ArgumentTypeError(
            f"{option} takes {count} comma-separated numbers (RAS mm), got {text!r}"
        )
    return values


#: The options whose value is a list of coordinates (which may start with a minus sign).
COORDINATE_OPTIONS = ("--point", "--negative", "--box")


def attach_coordinates(argv: list[str]) -> list[str]:
    """``--point -12.5,3,40`` -> ``--point=-12.5,3,40``: argparse would read a value
    starting with ``-`` as an option (it knows negative numbers, not lists of them)."""
    out, items = [], iter(argv)
    for item in items:
        if item in COORDINATE_OPTIONS:
            value = next(items, None)
            out.append(item if value is None else f"{item}={value}")
        else:
            out.append(item)
    return out


class _PromptAction(argparse.Action):
    """Collects --point/--negative/--box into one list, in command-line order."""

    def __call__(self, parser, namespace, value, option_string=None):
        kind = {"--point": "point", "--negative": "negative", "--box": "box"}[option_string]
        count = 6 if kind == "box" else 3
        try:
            numbers = _coordinates(value, count, option_string)
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))
        prompts = list(getattr(namespace, "prompts", None) or [])
        prompts.append((kind, numbers))
        namespace.prompts = prompts


def register(commands) -> None:
    """Add ``prompt`` to the ``medseg`` sub-commands."""
    from napari_medseg.interactive.backends import DEFAULT_BACKEND, backend_names

    prompt = commands.add_parser(
        "prompt",
        help="segment one object from points and boxes (RAS mm); the mask on the scan's grid",
        description="Segment one object of a scan from prompts: positive and negative "
        "points and boxes in RAS+ millimetres (the scan affine's world), applied in the "
        "order given. Methods: " + "; ".join(f"{k}: {v}" for k, v in backend_names().items()),
    )
    prompt.add_argument("image", help="scan file or DICOM folder")
    prompt.add_argument("-o", "--output", required=True, help="output mask .nii.gz / .nii")
    prompt.add_argument("--point", action=_PromptAction, metavar="R,A,S",
                        help="a positive click (object here), RAS mm; repeatable")
    prompt.add_argument("--negative", action=_PromptAction, metavar="R,A,S",
                        help="a negative click (not the object), RAS mm; repeatable")
    prompt.add_argument("--box", action=_PromptAction, metavar="R1,A1,S1,R2,A2,S2",
                        help="a box by two opposite corners, RAS mm; repeatable")
    prompt.add_argument("--method", default=DEFAULT_BACKEND, choices=list(backend_names()),
                        help=f"how the mask is made (default {DEFAULT_BACKEND}: no weights)")
    prompt.add_argument("--checkpoint", help="weights file or folder, for methods that need one")
    prompt.add_argument(
        "--trust-bundle",
        action="store_true",
        help="trust the bundle folder of a method that runs one (vista3d): bundle configs "
        "run Python code, so only for bundles from a source you trust",
    )
    prompt.add_argument("--value", type=int, default=1, help="label value of the mask (default 1)")
    prompt.add_argument("--name", default="object", help="class name in the sidecar")
    prompt.add_argument("--series", help="DICOM series key or SeriesInstanceUID")
    prompt.add_argument("--allow-gaps", action="store_true", help=ALLOW_GAPS_HELP)
    prompt.add_argument("--overwrite", action="store_true", help="replace an existing output")
    prompt.add_argument("--json", action="store_true", help="print the result as JSON")
    prompt.set_defaults(func=cmd_prompt, prompts=None)


def build_prompts(pairs) -> list:
    """``[(kind, numbers)]`` from the command line -> :class:`Prompt` objects."""
    from napari_medseg.interactive import Prompt

    out = []
    for kind, numbers in pairs:
        if kind == "box":
            out.append(Prompt.box(numbers[:3], numbers[3:]))
        else:
            out.append(Prompt.point(numbers, positive=kind == "point"))
    return out


def cmd_prompt(args: argparse.Namespace) -> int:
    """Run the prompts on the scan and write the mask."""
    import numpy as np

    from napari_medseg.interactive.backends import backend_entry, make_backend
    from napari_medseg.interactive.prompts import PromptError
    from napari_medseg.interactive.session import PromptSession
    from napari_medseg.io.reader import read_scan
    from napari_medseg.io.save import SaveTargets, check_targets, save_segmentation
    from napari_medseg.labels.colors import complete_colors
    from napari_medseg.volume import Volume

    if not args.prompts:
        raise MedsegError("give at least one --point or --box (RAS mm).")
    if not 1 <= args.value <= 65535:
        raise MedsegError(f"--value must be in 1..65535, got {args.value}.")
    out = Path(args.output)
    targets = SaveTargets(out)
    inputs = [args.image, *([args.checkpoint] if args.checkpoint else [])]
    check_targets(targets, inputs, overwrite=args.overwrite, exists_message=EXISTS_MESSAGE)
    prompts = build_prompts(args.prompts)  # bad prompts fail before the scan is read
    entry = backend_entry(args.method)
    options = {"trust": bool(args.trust_bundle)} if entry.needs_trust else {}
    backend = make_backend(args.method, checkpoint=args.checkpoint, **options)
    if backend.licence:
        note = " (non-commercial use only)" if backend.non_commercial else ""
        print(f"{args.method}: weights licensed {backend.licence}{note}", file=sys.stderr)
    volume = read_scan(args.image, series_key=args.series, allow_gaps=args.allow_gaps)
    for warning in volume.metadata.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    session = PromptSession(volume, backend)
    steps = []
    for prompt in prompts:
        try:
            update = session.add(prompt)
        except PromptError as error:  # a prompt off this scan: say which scan
            raise PromptError(f"{args.image}: {error}") from None
        steps.append({"prompt": prompt.kind if prompt.positive else f"negative {prompt.kind}",
                      "ras_mm": prompt.world_mm.round(3).tolist(),
                      "voxels": int(update.mask.sum()), "seconds": round(update.seconds, 3)})
    dtype = np.uint8 if args.value < 256 else np.uint16
    labels = np.where(session.mask, args.value, 0).astype(dtype)
    model = {
        "name": f"interactive:{args.method}",
        "settings": {"method": args.method, "checkpoint": args.checkpoint, "prompts": steps},
    }
    save_segmentation(
        Volume(labels, volume.affine, volume.metadata),
        targets,
        complete_colors({args.value: (args.name, "")}),
        model=model,
        source=args.image,
        protect=[args.image, *volume.metadata.files,
                 *([args.checkpoint] if args.checkpoint else [])],
        overwrite=args.overwrite,
        exists_message=EXISTS_MESSAGE,
    )
    voxel_ml = abs(float(np.linalg.det(volume.affine[:3, :3]))) / 1000.0
    volume_ml = float(session.mask.sum()) * voxel_ml
    if args.json:
        print(json.dumps({"output": str(out), "method": args.method, "volume_ml": volume_ml,
                          "steps": steps}, indent=2))
        return 0
    for step in steps:
        print(f"  {step['prompt']:<16} {step['voxels']:>10} voxels  {step['seconds']:.2f} s")
    print(f"wrote {shown_path(out)}: {volume_ml:.2f} mL ({args.method})")
    return 0
