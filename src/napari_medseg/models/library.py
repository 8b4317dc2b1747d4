"""The user's own models: a folder of models fine-tuned here (``medseg finetune``) or
placed there by hand, listed by the catalogue beside the default models.

Each model is a sub-folder holding its spec JSON (with the weights, model card and
training log beside it)::

    <library>/phantom-abdomen-3d-ft-20261207-1130/
        phantom-abdomen-3d-ft-20261207-1130.json   the spec (weights + SHA-256)
        phantom-abdomen-3d-ft-20261207-1130.pt     the state_dict
        MODEL_CARD.md                              parent, data, Dice before/after
        training.json                              the training log

A fine-tuned MONAI bundle is a bundle folder instead (``configs/``, ``models/``...,
``MODEL_CARD.md``, ``training.json``) with ``medseg_model.json`` beside its configs: the
SHA-256 of every file under ``configs/`` and ``scripts/`` as published. Its configs run
Python code, as every bundle's; they are those of a parent the user trusted (or a
hash-checked catalogue bundle), so the bundle is trusted as long as they are unchanged
(:func:`bundle_unchanged`), and needs ``--trust-bundle`` again once edited.

Where the library is: every folder of ``MEDSEG_MODELS_DIR`` (``os.pathsep``-separated),
then ``$XDG_DATA_HOME/napari-medseg/models`` (``~/.local/share/napari-medseg/models``).
The first one is where ``medseg finetune`` publishes by default. No torch is imported.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from napari_medseg.models.spec import ModelSpec, ModelSpecError

logger = logging.getLogger(__name__)

#: Environment variable naming the user's model folders (``os.pathsep``-separated).
MODELS_DIR_ENV = "MEDSEG_MODELS_DIR"


def library_dirs() -> list[Path]:
    """The folders the user's models are looked for in, first = where new ones go."""
    folders = [Path(p).expanduser() for p in os.environ.get(MODELS_DIR_ENV, "").split(os.pathsep)]
    folders = [p for p in folders if str(p) not in ("", ".")]
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    folders.append(Path(data_home).expanduser() / "napari-medseg" / "models")
    unique: list[Path] = []
    for folder in folders:
        if folder not in unique:
            unique.append(folder)
    return unique


def default_library_dir() -> Path:
    """Where ``medseg finetune`` publishes unless told otherwise."""
    return library_dirs()[0]


def library_specs(folders: list[Path] | None = None) -> dict[str, tuple[ModelSpec, Path]]:
    """The user's models by name: the spec JSON named like its folder, in each model
    folder of each library folder (the first library folder wins a repeated name).

    Folders without such a spec, or with one that does not read, are skipped (logged at
    debug level): a library folder may hold other things.
    """
    found: dict[str, tuple[ModelSpec, Path]] = {}
    for library in library_dirs() if folders is None else folders:
        if not library.is_dir():
            continue
        for folder in sorted(library.iterdir()):
            spec_path = folder / f"{folder.name}.json"
            if not spec_path.is_file():
                continue
            try:
                spec = ModelSpec.from_json(spec_path)
            except ModelSpecError as error:
                logger.debug("skipping %s: %s", spec_path, error)
                continue
            found.setdefault(spec.name, (spec, spec_path))
    return found


#: The file that marks a bundle folder as one medseg published, with its code's hashes.
BUNDLE_MARKER = "medseg_model.json"
#: The folders of a bundle whose files can run code (hashed in the marker).
CODE_FOLDERS = ("configs", "scripts")


def bundle_code_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under a bundle's ``configs/`` and ``scripts/``, by path
    relative to the bundle (``__pycache__`` left out)."""
    import hashlib

    hashes = {}
    for part in CODE_FOLDERS:
        for path in sorted((folder / part).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                hashes[path.relative_to(folder).as_posix()] = digest
    return hashes


def bundle_unchanged(folder: Path) -> bool:
    """Whether a published bundle's code is byte for byte what its marker recorded
    (no file added, removed or edited since)."""
    import json

    try:
        marker = json.loads((folder / BUNDLE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    recorded = marker.get("code_sha256") if isinstance(marker, dict) else None
    return isinstance(recorded, dict) and recorded == bundle_code_hashes(folder)


def library_bundles(folders: list[Path] | None = None) -> dict[str, Path]:
    """The bundle folders of the user's library by name (their folder's name)."""
    found: dict[str, Path] = {}
    for library in library_dirs() if folders is None else folders:
        if not library.is_dir():
            continue
        for folder in sorted(library.iterdir()):
            if (folder / BUNDLE_MARKER).is_file() and (
                folder / "configs" / "metadata.json"
            ).is_file():
                found.setdefault(folder.name, folder)
    return found


__all__ = [
    "BUNDLE_MARKER",
    "MODELS_DIR_ENV",
    "bundle_code_hashes",
    "bundle_unchanged",
    "default_library_dir",
    "library_bundles",
    "library_dirs",
    "library_specs",
]
