"""The ``medseg`` command (console script ``napari_medseg.cli:main``).

One module per sub-command (``info``, ``convert``, ``demo`` with ``view``, ``segment``
with ``models``, ``report``), :mod:`~napari_medseg.cli.entry` for the parser and
:mod:`~napari_medseg.cli.common` for what they share.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``medseg`` with ``argv`` (default: the command line); returns the exit status."""
    from napari_medseg.cli.entry import main as run

    return run(argv)


__all__ = ["main"]
