"""What the ``medseg`` sub-commands share: exit status, help texts, number formats."""

from __future__ import annotations

from collections.abc import Sequence

#: Exit status of a command refused for bad input (a :class:`~napari_medseg.errors.MedsegError`).
EXIT_BAD_INPUT = 2

#: Help of ``--allow-gaps`` (info, convert, segment).
ALLOW_GAPS_HELP = (
    "read a DICOM series with missing slices: they are filled with the lowest value at their "
    "true positions (never stretched) and reported"
)


#: How a command refuses an existing output (see ``io.save.check_targets``).
EXISTS_MESSAGE = "{path}: already exists; pass --overwrite to replace the {what}."

#: How the core's messages tell Python callers to read a series with gaps anyway.
PYTHON_ALLOW_GAPS = "allow_gaps=True"


def cli_advice(text: str, *, has_allow_gaps: bool = True) -> str:
    """A core message with its Python advice said the command line's way.

    The core's errors and warnings tell Python callers to pass
    ``allow_gaps=True``; ``medseg info``, ``convert`` and ``segment`` spell it
    ``--allow-gaps``, and a command without that option (``report``) is pointed
    to ``medseg convert --allow-gaps``.
    """
    option = "--allow-gaps" if has_allow_gaps else "`medseg convert --allow-gaps` (into NIfTI)"
    return text.replace(PYTHON_ALLOW_GAPS, option)


def check_window_options(args) -> None:
    """Refuse ``--overlap`` outside [0, 1) and ``--sw-batch-size`` below 1 (``medseg
    segment`` and ``medseg batch``), before any work."""
    from napari_medseg.errors import MedsegError

    if args.overlap is not None and not 0.0 <= args.overlap < 1.0:
        raise MedsegError(f"--overlap must be in [0, 1), got {args.overlap}")
    if args.sw_batch_size is not None and args.sw_batch_size < 1:
        raise MedsegError(f"--sw-batch-size must be >= 1, got {args.sw_batch_size}")


def format_spacing(values: Sequence[float]) -> str:
    """Voxel sizes as ``"0.7 x 0.7 x 1.25"`` (4 significant digits)."""
    return " x ".join(f"{v:.4g}" for v in values)


__all__ = [
    "ALLOW_GAPS_HELP",
    "EXIT_BAD_INPUT",
    "check_window_options",
    "cli_advice",
    "format_spacing",
]
