"""Read a MONAI bundle folder: its metadata (plain JSON), its inference config, its weights.

A MONAI Model Zoo bundle is a folder::

    configs/metadata.json      what the network takes and outputs (channel_def...)
    configs/inference.json     (or .yaml) MONAI ConfigParser content: network, transforms
    models/model.pt            state_dict (sometimes wrapped in {"model": ...})
    models/model.ts            or a TorchScript export
    scripts/                   optional Python package the config may import

Reading ``metadata.json`` runs nothing, so :func:`read_bundle_info` is safe on any folder.
Parsing the inference config runs Python: ``"$..."`` values are ``eval``-ed and every
``"_target_"`` imports and calls whatever it names. :func:`open_config` therefore needs the
caller to have checked trust first (:func:`require_trust`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_medseg.models.spec import ModelSpecError

#: Inference config file names, in the order they are looked for under ``configs/``.
INFERENCE_CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")

#: Weights files looked for under ``models/`` when the config names none.
WEIGHTS_NAMES = ("model.pt", "model.ts")

#: What the trust error tells the user to do.
TRUST_FIX = (
    "Bundle configs run Python code when they are loaded. Load it only if you trust "
    "where it came from: pass --trust-bundle to `medseg segment` (trust=True in Python, "
    "or confirm in napari); bundles from `medseg models` are hash-checked and trusted."
)


class BundleError(ModelSpecError):
    """A MONAI bundle is missing a file, is malformed, or does something we cannot reproduce."""


class BundleTrustError(BundleError):
    """A bundle's config would run Python code and the user has not said they trust it."""


@dataclass(frozen=True)
class BundleInfo:
    """What a bundle's ``metadata.json`` says, read without running any code.

    Attributes
    ----------
    folder : Path
        Bundle root (holds ``configs/``).
    config_file : Path
        The inference config (``configs/inference.json`` or ``.yaml``).
    name, version, description : str
        From the metadata (``name`` falls back to the folder name).
    modality : str
        ``"CT"``, ``"MR"`` or "" (from ``network_data_format.inputs.image.modality``).
    in_channels : int
        ``inputs.image.num_channels`` (1 when absent).
    channel_names : tuple of str
        Input channel names in channel order (``inputs.image.channel_def``), or ().
    out_channels : int
        ``outputs.pred.num_channels`` (0 when absent).
    output_names : dict
        Output channel index -> name (``outputs.pred.channel_def``).
    metadata : dict
        The whole metadata JSON.
    """

    folder: Path
    config_file: Path
    name: str
    version: str
    description: str
    modality: str
    in_channels: int
    channel_names: tuple[str, ...]
    out_channels: int
    output_names: dict[int, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def is_bundle_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder with ``configs/metadata.json`` (a MONAI bundle)."""
    return (Path(path) / "configs" / "metadata.json").is_file()


def _channel_def(section: dict[str, Any]) -> dict[int, str]:
    """``channel_def`` of a metadata input/output section as ``{index: name}``."""
    raw = section.get("channel_def") or {}
    names = {}
    for key, value in raw.items():
        try:
            names[int(key)] = str(value)
        except (TypeError, ValueError):
            continue
    return dict(sorted(names.items()))


def _modality(text: str) -> str:
    """Normalise a metadata modality ("MRI", "mr", "CT"...) to ``"CT"``/``"MR"``/as given."""
    upper = str(text or "").strip().upper()
    return {"MRI": "MR", "MR": "MR", "CT": "CT"}.get(upper, str(text or "").strip())


def read_bundle_info(folder: str | Path) -> BundleInfo:
    """Read a bundle's metadata and find its inference config; runs no code.

    Parameters
    ----------
    folder : path
        Bundle root folder.

    Returns
    -------
    BundleInfo

    Raises
    ------
    BundleError
        Not a bundle folder, unreadable metadata, or no inference config.
    """
    folder = Path(folder).expanduser().resolve()
    meta_file = folder / "configs" / "metadata.json"
    if not folder.is_dir():
        raise BundleError(folder, "no such folder.", "Give the folder that holds configs/.")
    if not meta_file.is_file():
        raise BundleError(
            folder,
            "is not a MONAI bundle: configs/metadata.json is missing.",
            "Give the bundle's root folder (the one holding configs/ and models/).",
        )
    try:
        metadata = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(meta_file, f"is not readable JSON ({error}).") from None
    if not isinstance(metadata, dict):
        raise BundleError(meta_file, "must hold a JSON object.")
    config_file = next(
        (
            folder / "configs" / name
            for name in INFERENCE_CONFIG_NAMES
            if (folder / "configs" / name).is_file()
        ),
        None,
    )
    if config_file is None:
        raise BundleError(
            folder,
            "has no inference config (configs/inference.json or inference.yaml).",
            "Only bundles with an inference config can segment.",
        )
    data_format = metadata.get("network_data_format") or {}
    image = (data_format.get("inputs") or {}).get("image") or {}
    pred = (data_format.get("outputs") or {}).get("pred") or {}
    in_names = _channel_def(image)
    try:
        in_channels = int(image.get("num_channels") or max(len(in_names), 1))
        out_channels = int(pred.get("num_channels") or 0)
    except (TypeError, ValueError):
        raise BundleError(
            meta_file, "num_channels of inputs.image/outputs.pred is not a number."
        ) from None
    channel_names = tuple(in_names.get(i, f"channel {i}") for i in range(in_channels))
    return BundleInfo(
        folder=folder,
        config_file=config_file,
        name=str(metadata.get("name") or folder.name),
        version=str(metadata.get("version") or ""),
        description=str(metadata.get("description") or metadata.get("task") or ""),
        modality=_modality(image.get("modality", "")),
        in_channels=in_channels,
        channel_names=channel_names if in_names else (),
        out_channels=out_channels,
        output_names=_channel_def(pred),
        metadata=metadata,
    )


def require_trust(info: BundleInfo, trust: bool) -> None:
    """Raise :class:`BundleTrustError` unless the caller trusts the bundle.

    Every bundle config can run code (``_target_`` imports, ``$`` expressions), so there
    is no "safe subset" to allow without trust.
    """
    if not trust:
        label = f"{info.name} {info.version}".strip()
        raise BundleTrustError(
            info.folder,
            f"MONAI bundle '{label}' is not trusted: its config "
            f"({info.config_file.name}) would run Python code.",
            TRUST_FIX,
        )


def _bundle_modules(root: Path) -> dict[str, Any]:
    """Loaded modules that a bundle could shadow or own: ``scripts*`` and files under ``root``."""
    found = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if name == "scripts" or name.startswith("scripts.") or file.startswith(f"{root}{os.sep}"):
            found[name] = module
    return found


@contextlib.contextmanager
def bundle_imports(folder: Path) -> Iterator[None]:
    """Make the bundle's own modules (its ``scripts`` package) importable while it is parsed.

    ``monai.bundle`` puts the bundle root on ``sys.path`` so a config can name
    ``scripts.networks.X``. Two bundles in one process both call their package
    ``scripts``, so a cached ``sys.modules["scripts"]`` from another bundle (or from the
    user's own project) would shadow this one: those entries are set aside first, the
    bundle root goes to the front of ``sys.path``, and on exit the bundle's modules are
    dropped, the root leaves ``sys.path`` and everything set aside is put back. Objects
    built meanwhile (the network) keep their modules alive; an import made later, at run
    time, from inside the bundle's code is the one case this cannot serve.
    """
    root = str(folder)
    saved = _bundle_modules(folder)
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, root)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(root)
        for name in _bundle_modules(folder):
            del sys.modules[name]
        sys.modules.update(saved)
        importlib.invalidate_caches()


def open_config(info: BundleInfo):
    """Parse the inference config with MONAI's ``ConfigParser`` (runs the config's imports).

    ``bundle_root`` is set to the bundle folder and ``device`` to the CPU, so files resolve
    and transforms stay on the CPU (the engine moves tensors to its device itself). Call
    it inside :func:`bundle_imports`.

    Returns
    -------
    monai.bundle.ConfigParser
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    try:
        parser.read_config(str(info.config_file))
        parser.read_meta(str(info.folder / "configs" / "metadata.json"))
    except Exception as error:  # yaml/json errors of any kind
        raise BundleError(
            info.config_file, f"cannot be read as a MONAI config ({error})."
        ) from None
    parser["bundle_root"] = str(info.folder)
    if "device" in parser:
        parser["device"] = "$torch.device('cpu')"
    return parser


def parsed(parser, id_: str, what: str, info: BundleInfo, default: Any = ...) -> Any:
    """``parser.get_parsed_content(id_)`` with errors turned into :class:`BundleError`."""
    if id_ not in parser:
        if default is not ...:
            return default
        raise BundleError(info.config_file, f"has no '{id_}' ({what}).")
    try:
        return parser.get_parsed_content(id_)
    except Exception as error:
        raise BundleError(
            info.config_file,
            f"'{id_}' ({what}) could not be built: {type(error).__name__}: {error}",
        ) from error


def target_name(item: Any) -> str:
    """Short class name of a config component (``"monai.transforms.Spacingd"``: ``Spacingd``)."""
    if not isinstance(item, dict):
        return ""
    target = str(item.get("_target_", "")).lstrip("$")
    return target.rsplit(".", 1)[-1]


def walk_config(config: Any, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every dict in a raw config with its config id (``"a#0#b"``), depth first, a dict
    before what it holds."""
    if isinstance(config, dict):
        yield path, config
        items = config.items()
    elif isinstance(config, list):
        items = ((str(i), v) for i, v in enumerate(config))
    else:
        return
    for key, value in items:
        yield from walk_config(value, f"{path}#{key}" if path else str(key))


def _find_checkpoint_loader(config: Any) -> str | None:
    """Config id of the first ``CheckpointLoader`` component, depth first."""
    return next(
        (path for path, item in walk_config(config) if target_name(item) == "CheckpointLoader"),
        None,
    )


@dataclass
class WeightsSource:
    """Where a bundle's weights are and how they are stored.

    Attributes
    ----------
    path : Path
        ``models/model.pt`` (state_dict) or ``models/model.ts`` (TorchScript).
    kind : str
        ``"state_dict"`` or ``"torchscript"``.
    key : str
        ``load_dict`` key of the network in the config's ``CheckpointLoader`` ("model").
    strict : bool
        Whether the config loads the state_dict strictly (``CheckpointLoader`` default).
    """

    path: Path
    kind: str
    key: str = "model"
    strict: bool = True


def find_weights(parser, info: BundleInfo) -> WeightsSource:
    """Find the weights the bundle's own run would load.

    The config's ``CheckpointLoader`` (in ``handlers``, ``checkpointloader``...) says
    which file (``load_path``, e.g. ``model.pt`` or ``model_lowres.pt`` depending on a
    flag) and under which key; without one, ``models/model.pt`` then ``models/model.ts``.
    """
    loader_id = _find_checkpoint_loader(parser.config)
    if loader_id is not None:
        path = Path(str(parsed(parser, f"{loader_id}#load_path", "weights file", info)))
        raw_dict = parser.get(f"{loader_id}#load_dict") or {}
        key = next(
            (k for k, v in raw_dict.items() if str(v).strip() in ("@network", "@network_def")),
            next(iter(raw_dict), "model"),
        )
        strict = str(parser.get(f"{loader_id}#strict", True)).strip().lower() not in ("false", "0")
        if not path.is_file():
            raise BundleError(
                path,
                "is missing: the bundle's CheckpointLoader loads its weights from there.",
                "Download the bundle again, or its large files (the bundle's large_files.yml).",
            )
        if path.suffix == ".ts":
            return WeightsSource(path, "torchscript")
        return WeightsSource(path, "state_dict", str(key), strict)
    for name in WEIGHTS_NAMES:
        candidate = info.folder / "models" / name
        if candidate.is_file():
            return WeightsSource(candidate, "torchscript" if name.endswith(".ts") else "state_dict")
    raise BundleError(
        info.folder,
        "has no weights: models/model.pt and models/model.ts are missing.",
        "Download the bundle again (large files may need `python -m monai.bundle download`).",
    )


def load_weights(network, weights: WeightsSource) -> list[str]:
    """Load a state_dict file into ``network`` as the bundle's ``CheckpointLoader`` would.

    Reading goes through :func:`napari_medseg.models.build.read_state_dict`
    (``torch.load(weights_only=True)``, ``{"model": ...}``-style wrappers and ``module.``
    prefixes removed). A strict loader (the default) needs every key to fit.

    Returns
    -------
    list of str
        Warnings (keys a non-strict load left at their initial values).

    Raises
    ------
    ModelLoadError
        Pickled Python objects (refused), not a state_dict, or weights that do not fit
        the network (missing, unexpected and mis-shaped keys listed).
    """
    from napari_medseg.models.build import check_state_dict, read_state_dict

    state = read_state_dict(weights.path)
    if weights.strict:
        check_state_dict(network, state, weights.path, "the bundle's network_def")
        network.load_state_dict(state, strict=True)
        return []
    result = network.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        return [
            f"{weights.path.name}: non-strict load left {len(result.missing_keys)} network "
            f"weight(s) at their initial values and ignored {len(result.unexpected_keys)}."
        ]
    return []
