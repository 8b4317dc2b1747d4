"""Typed errors of model loading (no torch: the catalogue and the CLI import them cheaply)."""

from __future__ import annotations

from napari_medseg.errors import FileError

#: Where the JSON spec format for TorchScript and MONAI models is documented.
SPEC_DOCS = "See docs/models.md."


class ModelLoadError(FileError):
    """A model file (weights, TorchScript, spec) cannot be turned into a network.

    The message names the file, what is wrong with it (missing, not a checkpoint,
    pickled objects refused, mismatched weights, hash mismatch...) and what to do.
    """


class UnknownModelError(ModelLoadError):
    """A model reference is neither a catalogue name nor an existing file or folder."""
