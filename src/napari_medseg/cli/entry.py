"""The ``medseg`` command: its parser and entry point.

Each sub-command lives in its own module of this package and adds itself with a
``register(commands)`` function; the heavy parts of a command (reading, torch,
measuring) are imported only when it runs, so ``medseg --help`` stays fast.

Each sub-command prints a clear one-line error naming the file on bad input and
exits with status 2; it never writes over a source scan or an existing output
unless told to with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from napari_medseg import __version__
from napari_medseg.cli import (
    batch,
    convert,
    demo,
    finetune,
    info,
    mesh,
    prompt,
    report,
    segment,
)
from napari_medseg.cli.common import EXIT_BAD_INPUT, cli_advice
from napari_medseg.errors import MedsegError, shown_path

logger = logging.getLogger(__name__)

#: The sub-command modules, in the order ``medseg --help`` lists them.
COMMAND_MODULES = (info, convert, demo, segment, batch, finetune, prompt, report, mesh)


def build_parser() -> argparse.ArgumentParser:
    """The ``medseg`` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="medseg",
        description="Open, convert and segment CT/MR scans with exact patient geometry.",
    )
    parser.add_argument("--version", action="version", version=f"napari-medseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medseg`` command; returns the exit status."""
    for stream in (sys.stdout, sys.stderr):
        # a file name with bytes the terminal's encoding cannot show is printed escaped,
        # never a UnicodeEncodeError traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    # prompt's coordinates may start with a minus sign (also after -v: no position test)
    argv = prompt.attach_coordinates(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except MedsegError as error:
        message = cli_advice(str(error), has_allow_gaps=hasattr(args, "allow_gaps"))
        print(f"medseg: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:  # the last net: a file system problem the I/O layer let through
        from napari_medseg.io.atomic import os_reason, target_of_temporary

        where = error.filename
        if where is not None:  # the file meant, not its temporary file
            where = target_of_temporary(os.fsdecode(where)) or os.fsdecode(where)
        reason = os_reason(error)
        shown = f"{shown_path(where)}: " if where else ""
        print(f"medseg: error: {shown}{reason}.", file=sys.stderr)
        return EXIT_BAD_INPUT
