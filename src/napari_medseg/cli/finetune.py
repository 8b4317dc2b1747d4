"""``medseg finetune``: fine-tune a model on corrected label maps, publish it when better.

The work is :mod:`napari_medseg.training`'s; this module reads the options, prints the
epochs, launches torchrun for ``--nproc`` > 1, and says what was published, or why not.
"""

from __future__ import annotations

import argparse
import json
import sys

from napari_medseg.errors import MedsegError

DESCRIPTION = """\
Fine-tune MODEL (a catalogue name, a spec JSON, or a MONAI bundle folder) on corrected
label maps and publish the result as a new model when its
Dice on held-out pairs beats MODEL's. DATA is a folder of label maps saved from napari
(each with its JSON sidecar, beside the scan it names), a `medseg batch` output folder
(the cases whose labels were corrected and saved again), or a CSV with image and labels
columns. A share of the pairs (--val-fraction) is held out; each epoch trains on random
patches of the others and scores the held-out ones with the same sliding window
`medseg segment` uses. The new model, MODEL_DIR/<MODEL>-ft-<YYYYMMDD-HHMM>/ (spec,
weights, MODEL_CARD.md, training.json), is listed by `medseg models` and usable by name
in `medseg segment`, `medseg batch` and the Segment widget. Ctrl+C stops and keeps the
best checkpoint; --resume continues. --nproc N trains in N torchrun processes (DDP: one
per GPU; gloo on the CPU). Several nodes: run
`torchrun --nnodes K --nproc-per-node N --rdzv-endpoint HOST:PORT -m
napari_medseg.training.distributed SETTINGS.json OUTCOME.json` on each node.
"""


def register(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``finetune`` to the ``medseg`` sub-commands; returns its parser."""
    parser = commands.add_parser(
        "finetune",
        help="fine-tune a model on corrected label maps (published only when better)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="catalogue name, spec JSON or network file")
    parser.add_argument(
        "--data", required=True, help="folder of saved corrections, batch output or CSV"
    )
    parser.add_argument(
        "-o", "--out", default="", metavar="MODEL_DIR",
        help="model library to publish into (default: MEDSEG_MODELS_DIR's first folder, else "
        "~/.local/share/napari-medseg/models)",
    )  # fmt: skip
    parser.add_argument("--name", default="", help="the new model's name")
    parser.add_argument("--epochs", type=int, default=20, help="most epochs (default 20)")
    parser.add_argument(
        "--steps-per-epoch", type=int, default=0,
        help="optimiser steps per epoch (default: 8 patches per training pair)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=2, help="patches per step and process")
    parser.add_argument(
        "--val-fraction", type=float, default=0.2, help="share held out for validation (0.2)"
    )
    parser.add_argument(
        "--val-data", default="", metavar="VAL",
        help="held-out pairs of your own (folder or CSV): all of DATA trains",
    )  # fmt: skip
    parser.add_argument(
        "--patch-size", type=int, nargs="+", default=(), metavar="N",
        help="training patch in model voxels (default: the model's window)",
    )  # fmt: skip
    parser.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate (3e-4)")
    parser.add_argument("--patience", type=int, default=5, help="early stopping (0: never)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--no-amp", action="store_true", help="float32 on CUDA too")
    parser.add_argument(
        "--focus", type=float, default=0.33, metavar="F",
        help="share of patches centred where the parent's labels were corrected (0.33; 0: "
        "by class only)",
    )  # fmt: skip
    parser.add_argument(
        "--dice-per-patch", action="store_true",
        help="Dice per patch, averaged (default: one Dice over the batch)",
    )  # fmt: skip
    parser.add_argument(
        "--trust-bundle", action="store_true",
        help="MODEL is a MONAI bundle folder you trust (its configs run Python code)",
    )  # fmt: skip
    parser.add_argument("--nproc", type=int, default=1, help="torchrun processes (DDP)")
    parser.add_argument("--resume", action="store_true", help="continue the last unfinished run")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    parser.set_defaults(func=cmd_finetune)
    return parser


def settings_from_args(args: argparse.Namespace):
    """The :class:`FinetuneSettings` of the options."""
    from napari_medseg.training.settings import FinetuneSettings

    try:
        return FinetuneSettings(
            model=args.model,
            data=args.data,
            val_data=args.val_data,
            out=args.out,
            name=args.name,
            epochs=args.epochs,
            steps_per_epoch=args.steps_per_epoch,
            batch_size=args.batch_size,
            val_fraction=args.val_fraction,
            patch_size=tuple(args.patch_size),
            lr=args.lr,
            device=args.device,
            amp=not args.no_amp,
            seed=args.seed,
            patience=args.patience,
            focus=args.focus,
            trust_bundle=args.trust_bundle,
            dice_per_patch=args.dice_per_patch,
        )
    except ValueError as error:
        raise MedsegError(f"finetune: {error}.") from None


def describe_outcome(outcome: dict) -> str:
    """The closing lines: published where, or why not."""
    if outcome.get("published"):
        return f"published {outcome['name']}: {outcome['spec_path']}\n{outcome['reason']}"
    return f"not published: {outcome['reason']}"


def cmd_finetune(args: argparse.Namespace) -> int:
    """``medseg finetune --model M --data D``."""
    settings = settings_from_args(args)
    if args.nproc < 1:
        raise MedsegError(f"--nproc must be >= 1, got {args.nproc}.")
    if args.nproc > 1:
        from napari_medseg.training.distributed import launch

        outcome = launch(settings, args.nproc, resume=args.resume)
        if "error" in outcome:
            raise MedsegError(outcome["error"])
    else:
        from napari_medseg.training.finetune import run_finetune

        def show(record) -> None:
            print(record.line(), flush=True)

        def message(text: str) -> None:
            print(text, file=sys.stderr, flush=True)

        outcome = run_finetune(
            settings, resume=args.resume, on_epoch=show, on_message=message
        ).to_dict()
    if args.json:
        print(json.dumps(outcome, indent=2, default=str))
    else:
        print(describe_outcome(outcome))
    return 0 if not outcome.get("cancelled") else 130
