"""The model catalogue, and one entry point that turns any model reference into a network.

The catalogue lists, without importing torch:

* the project's **default models**: every spec JSON in ``models/default/`` (weights
  ship in the package, see its ``MODEL_CARD.md``);
* the user's own models (:mod:`napari_medseg.models.library`: models fine-tuned by
  ``medseg finetune``, in ``MEDSEG_MODELS_DIR`` or ``~/.local/share/napari-medseg/models``);
* the known **MONAI Model Zoo bundles** of :mod:`napari_medseg.models.zoo`, downloaded
  (and hash-checked) on first use.

:func:`load_model` accepts a catalogue name, a MONAI bundle folder, an nnU-Net v2
model folder, a spec JSON file,
or a TorchScript/state_dict file with a sidecar spec of the same stem (``model.ts`` +
``model.json``), and returns a :class:`~napari_medseg.models.loaded.LoadedModel`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_medseg.models.errors import SPEC_DOCS, ModelLoadError, UnknownModelError
from napari_medseg.models.loaded import LoadedModel
from napari_medseg.models.spec import ModelSpec, ModelSpecError

logger = logging.getLogger(__name__)

#: Folder of the default models' specs, weights and model card.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"

#: The model ``medseg segment`` and the napari widget use when none is named.
DEFAULT_MODEL = "phantom-abdomen-3d"

#: Its 2D sibling (slice by slice).
DEFAULT_MODEL_2D = "phantom-abdomen-2d"

#: File suffixes read as a network file with a sidecar JSON spec.
NETWORK_SUFFIXES = (".ts", ".pt", ".pth", ".torchscript", ".jit")


@dataclass(frozen=True)
class CatalogueEntry:
    """One model the catalogue offers.

    Attributes
    ----------
    name : str
        What ``--model`` takes, e.g. ``"phantom-abdomen-3d"`` or ``"spleen_ct_segmentation"``.
    kind : str
        ``"default"`` (ships with the package), ``"user"`` (the user's model library,
        e.g. a fine-tuned model) or ``"zoo"`` (MONAI Model Zoo bundle, downloaded on
        first use).
    title : str
        One line for menus.
    description : str
        What it segments and on which scans.
    modality : str
        ``"CT"``, ``"MR"`` or "" (any).
    labels : tuple of str
        Class names, background excluded, in label-value order (may be empty for zoo
        bundles whose labels are only known after download).
    spatial_dims : int or None
        2 or 3 when known.
    version : str
        Bundle version (zoo).
    location : str
        Spec file of a default model; "" for zoo bundles.
    license : str
        Licence of the weights (SPDX identifier where one exists), or ``"unknown"``.
    intended_use : str
        What the model is for.
    """

    name: str
    kind: str
    title: str = ""
    description: str = ""
    modality: str = ""
    labels: tuple[str, ...] = ()
    spatial_dims: int | None = None
    version: str = ""
    location: str = ""
    license: str = "unknown"
    intended_use: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        data = dataclasses.asdict(self)
        data["labels"] = list(self.labels)
        return data


def _spec_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def default_specs(folder: str | Path | None = None) -> dict[str, tuple[ModelSpec, Path]]:
    """Default model specs by name, read from ``folder`` (default: the package's).

    JSON files that are not model specs (e.g. training metrics) are skipped.
    """
    folder = DEFAULT_MODEL_DIR if folder is None else Path(folder)
    specs: dict[str, tuple[ModelSpec, Path]] = {}
    for path in _spec_files(folder):
        try:
            spec = ModelSpec.from_json(path)
        except ModelSpecError as error:
            logger.debug("skipping %s: %s", path, error)
            continue
        specs[spec.name] = (spec, path)
    return specs


def default_entries(folder: str | Path | None = None) -> list[CatalogueEntry]:
    """Catalogue entries of the default models in ``folder`` (default: the package's)."""
    return _spec_entries(default_specs(folder), "default")


def user_entries() -> list[CatalogueEntry]:
    """Catalogue entries of the user's model library (:mod:`~napari_medseg.models.library`):
    its spec models and its fine-tuned MONAI bundles."""
    from napari_medseg.models.bundle_config import BundleError, read_bundle_info
    from napari_medseg.models.library import library_bundles, library_specs

    entries = _spec_entries(library_specs(), "user")
    for name, folder in library_bundles().items():
        try:
            info = read_bundle_info(folder)
        except BundleError as error:
            logger.debug("skipping %s: %s", folder, error)
            continue
        entries.append(
            CatalogueEntry(
                name=name,
                kind="user",
                title=f"{info.name} (fine-tuned)",
                description=info.description,
                modality=info.modality,
                labels=tuple(n for i, n in sorted(info.output_names.items()) if i != 0),
                spatial_dims=3,
                version=info.version,
                location=str(folder),
                license=str(info.metadata.get("license") or "unknown"),
                intended_use=str(info.metadata.get("intended_use") or ""),
            )
        )
    return entries


def _spec_entries(specs: dict[str, tuple[ModelSpec, Path]], kind: str) -> list[CatalogueEntry]:
    entries = []
    for spec, path in specs.values():
        entries.append(
            CatalogueEntry(
                name=spec.name,
                kind=kind,
                title=spec.title,
                description=spec.description,
                modality=spec.modality,
                labels=tuple(label.name for label in spec.labels if label.value != 0),
                spatial_dims=spec.spatial_dims,
                location=str(path),
                license=spec.license,
                intended_use=spec.intended_use,
            )
        )
    return entries


def _field(item: Any, name: str, default: Any = None) -> Any:
    if isinstance(item, dict):
        return item.get(name, default)
    return getattr(item, name, default)


def zoo_entries() -> list[CatalogueEntry]:
    """Catalogue entries of the known MONAI Model Zoo bundles (nothing is downloaded)."""
    try:
        from napari_medseg.models import zoo
    except ImportError as error:  # pragma: no cover - zoo.py ships with the package
        logger.warning("Model Zoo catalogue unavailable: %s", error)
        return []
    entries = []
    for item in zoo.known_bundles():
        labels = _field(item, "labels", ()) or ()
        labels = tuple(
            str(_field(label, "name", label)) for label in labels if _field(label, "value", 1) != 0
        )
        dims = _field(item, "spatial_dims")
        entries.append(
            CatalogueEntry(
                name=str(_field(item, "name")),
                kind="zoo",
                title=str(_field(item, "title", "") or ""),
                description=str(_field(item, "description", "") or ""),
                modality=str(_field(item, "modality", "") or ""),
                labels=labels,
                spatial_dims=int(dims) if dims else None,
                version=str(_field(item, "version", "") or ""),
                license=str(_field(item, "license", "") or "unknown"),
                intended_use=str(_field(item, "intended_use", "") or ""),
            )
        )
    return entries


def catalogue(default_dir: str | Path | None = None) -> list[CatalogueEntry]:
    """Every model the catalogue offers: default models first, then the user's, then zoo
    bundles (a user model named like a default model is left out: the default wins)."""
    defaults = default_entries(default_dir)
    taken = {entry.name for entry in defaults}
    return defaults + [e for e in user_entries() if e.name not in taken] + zoo_entries()


def library_bundle(name: str) -> Path | None:
    """The folder of a fine-tuned bundle of the user's library called ``name``, or None."""
    from napari_medseg.models.library import library_bundles

    return library_bundles().get(name)


def named_spec(name: str, default_dir: str | Path | None = None) -> tuple[ModelSpec, Path] | None:
    """The spec and spec file of a default or user model called ``name``, or None."""
    from napari_medseg.models.library import library_specs

    found = default_specs(default_dir).get(name)
    return found if found is not None else library_specs().get(name)


def find_entry(name: str, default_dir: str | Path | None = None) -> CatalogueEntry | None:
    """The catalogue entry called ``name``, or None."""
    for entry in catalogue(default_dir):
        if entry.name == name:
            return entry
    return None


def load_spec(spec: ModelSpec, origin: str = "") -> LoadedModel:
    """A spec's model: its network and preprocessing (:mod:`~napari_medseg.models.build`),
    or deepbet's networks from the installed package (:mod:`~napari_medseg.models.deepbet`)."""
    if spec.pipeline.get("kind") == "deepbet":
        from napari_medseg.models.deepbet import load_deepbet

        return load_deepbet(spec, origin)
    from napari_medseg.models.build import load_spec_model

    return load_spec_model(spec, origin=origin)


def is_bundle_folder(path: str | Path) -> bool:
    """Whether ``path`` is a MONAI bundle folder (``configs/metadata.json`` in it)."""
    from napari_medseg.models.bundle import is_bundle_folder as bundle_check

    return bundle_check(Path(path))


def load_model(
    ref: str | Path | LoadedModel,
    trust_bundle: bool = False,
    cache_dir: str | Path | None = None,
    default_dir: str | Path | None = None,
) -> LoadedModel:
    """Load a model from whatever names it.

    Parameters
    ----------
    ref : str, Path or LoadedModel
        In this order: an existing folder with ``configs/metadata.json`` (a MONAI bundle),
        an nnU-Net v2 model folder (``dataset.json``, ``plans.json``,
        ``fold_N/checkpoint_final.pth``; see :mod:`~napari_medseg.models.nnunet`),
        an existing ``.json`` spec file, an existing network file (``.ts``, ``.pt``,
        ``.pth``...) with a JSON spec of the same stem beside it, or a catalogue name
        (default model, a model of the user's library, or zoo bundle: downloaded to
        ``cache_dir`` on first use). A
        :class:`LoadedModel` is returned as is.
    trust_bundle : bool
        Allow a bundle folder outside the catalogue: its configs run Python code.
        Zoo bundles from the catalogue are trusted (their archives are hash-checked).
    cache_dir : path, optional
        Where zoo bundles are downloaded (default: the zoo module's cache).
    default_dir : path, optional
        Folder of the default models (tests point it elsewhere).

    Raises
    ------
    UnknownModelError
        ``ref`` is neither an existing file or folder nor a catalogue name.
    ModelLoadError, ModelSpecError
        The files are there but cannot be loaded (the message names the file).
    """
    if isinstance(ref, LoadedModel):
        return ref
    text = str(ref)
    path = Path(text).expanduser()
    if path.exists():
        return _load_path(path, trust_bundle)
    found = named_spec(text, default_dir)
    if found is not None:
        spec, spec_path = found
        return load_spec(spec, origin=str(spec_path))
    bundle = library_bundle(text)
    if bundle is not None:
        from napari_medseg.models.bundle import load_bundle
        from napari_medseg.models.library import bundle_unchanged

        # published by medseg from a trusted parent: trusted while its code is unchanged
        return load_bundle(bundle, trust=trust_bundle or bundle_unchanged(bundle))
    if text in {entry.name for entry in zoo_entries()}:
        from napari_medseg.models.zoo import load_known_bundle

        # catalogue bundles are trusted: their archive is hash-checked on download
        return load_known_bundle(text, cache_dir=cache_dir)
    if path.suffix.lower() in (".json", *NETWORK_SUFFIXES) or "/" in text or "\\" in text:
        raise UnknownModelError(path, "model file or folder not found.")
    names = [entry.name for entry in catalogue(default_dir)]
    raise UnknownModelError(
        text,
        "not a model name in the catalogue, nor an existing file or folder.",
        f"Known models: {', '.join(names) or 'none'} (see `medseg models`); or give a MONAI "
        "bundle folder, a spec JSON, or a TorchScript file with a JSON spec beside it.",
    )


def _load_path(path: Path, trust_bundle: bool) -> LoadedModel:
    """Load an existing file or folder (see :func:`load_model`)."""
    if path.is_dir():
        if is_bundle_folder(path) or (path / "configs").is_dir():
            from napari_medseg.models.bundle import load_bundle

            return load_bundle(path, trust=trust_bundle)
        from napari_medseg.models.nnunet import is_nnunet_folder, load_nnunet_folder

        if is_nnunet_folder(path):
            return load_nnunet_folder(path)
        raise ModelLoadError(
            path,
            "is a folder but not a MONAI bundle (no configs/metadata.json in it) and not an "
            "nnU-Net v2 model folder (no dataset.json, plans.json or fold_N/ in it).",
            "Give the bundle's top folder, the nnU-Net folder <Trainer>__<Plans>__<config>, "
            "a spec JSON file, or a catalogue name.",
        )
    suffix = path.suffix.lower()
    if suffix == ".json":
        return load_spec(ModelSpec.from_json(path), origin=str(path))
    if suffix in NETWORK_SUFFIXES:
        sidecar = path.with_suffix(".json")
        if not sidecar.is_file():
            raise ModelLoadError(
                path,
                f"a network file needs a JSON spec beside it ({sidecar.name} not found): "
                "the spec says which input channels, grid, intensity transform, window and "
                "labels the network expects.",
                SPEC_DOCS,
            )
        spec = ModelSpec.from_json(sidecar)
        spec = dataclasses.replace(spec, weights=str(path.resolve()))
        return load_spec(spec, origin=str(sidecar))
    raise ModelLoadError(
        path,
        "is not a model: expected a MONAI bundle folder, a .json spec, or a network file "
        f"({', '.join(NETWORK_SUFFIXES)}) with a JSON spec of the same name beside it.",
        SPEC_DOCS,
    )


def model_files(ref: str | Path) -> list[Path]:
    """The files a model reference is made of, found without loading anything.

    A default or user model's name: its spec JSON and weights file; a spec JSON: it and
    the weights it names; a network file: it and the JSON spec beside it; a folder (a
    MONAI bundle, an nnU-Net folder): every file in it. A zoo name, or a reference that
    names nothing: no files (loading it says what is wrong). A spec that cannot be read
    gives only itself.

    Used to keep outputs off the model's files (``medseg segment``) and to fingerprint
    the model a cohort ran with (``medseg batch``'s ``done.json``).
    """
    path = Path(str(ref)).expanduser()
    if not path.exists():
        path = library_bundle(str(ref)) or path  # a fine-tuned bundle of the user's
    if not path.exists():
        found = named_spec(str(ref))
        if found is None:
            return []
        spec, spec_path = found
        files = [spec_path]
        if spec.weights and spec.weights_path.is_file():
            files.append(spec.weights_path)
        return files
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files = [path]
    partner = path.with_suffix(".json")
    if path.suffix.lower() == ".json":
        try:
            partner = ModelSpec.from_json(path).weights_path
        except (ModelSpecError, OSError, ValueError):
            partner = path
    if partner != path and partner.is_file():
        files.append(partner)
    return files
