"""nnU-Net v2 trained-model folders as a :class:`~napari_medseg.models.loaded.LoadedModel`.

An nnU-Net v2 training writes one folder per trainer, plans and configuration,
``<Trainer>__<Plans>__<configuration>`` (e.g. ``nnUNetTrainer__nnUNetPlans__3d_fullres``),
holding ``dataset.json``, ``plans.json`` and one ``fold_N/checkpoint_final.pth`` per
trained fold. ``medseg segment SCAN --model FOLDER`` (and the napari Segment widget, through
:func:`~napari_medseg.models.registry.load_model`) runs such a folder as ``nnUNetPredictor``
does, and gives the same labels (``tests/models/test_nnunet.py`` checks it voxel for voxel
against nnunetv2 on a real CT):

* every ``fold_N`` with a ``checkpoint_final.pth`` is used and the folds' logits averaged
  (nnU-Net's default; ``fold_all`` only when it is the only fold). A ``fold_N`` folder given
  instead of the model folder runs that fold alone;
* the configuration and trainer are the checkpoint's (``init_args.configuration``,
  ``trainer_name``), the network is built from the configuration's ``architecture`` in the
  plans, as the standard ``nnUNetTrainer`` builds it (trainers that build another network
  are not supported: their weights do not fit and are refused);
* test-time mirroring over the checkpoint's ``inference_allowed_mirroring_axes`` is the
  engine's ``tta`` switch (``medseg segment --tta``); nnU-Net's own predictor mirrors by
  default. ``--overlap`` is ``1 - tile_step_size`` (the model's default 0.5 is nnU-Net's);
* labels are named by ``dataset.json`` ``labels``. Region-based models (labels given as
  lists of values) are supported as nnU-Net runs them: a sigmoid per region, thresholded at
  0.5 and painted in ``regions_class_order``; a region is named by its key;
* cascades (``3d_cascade_fullres``, which need the low-resolution stage's labels) are
  refused.

**What is reused from nnU-Net.** The steps between scan and labels (preprocessing, sliding
window, mirroring, fold averaging, export) are the project's own code in
:mod:`~napari_medseg.models.nnunet_pipeline`, written to match nnunetv2 2.8 operation for
operation: nnunetv2 is a large training framework (its import pulls matplotlib, seaborn,
blosc2, batchgenerators, SimpleITK...) and its predictor works on files and
multiprocessing, while the engine works on in-memory volumes with progress and
cancellation. nnunetv2 is only the reference of the tests (``napari-medseg[nnunet]`` for
users who want it beside). The network itself is nnU-Net's: ``dynamic_network_architectures``
(nnU-Net's small network package, a dependency of the ``nnunet`` extra) builds the class the
plans name; only its classes may be named, and only ``torch.nn`` classes for its
``conv_op``/``norm_op``/``dropout_op``/``nonlin`` arguments, since plans are data and must
not choose what gets imported.

**Trust.** Checkpoints are read with ``torch.load(weights_only=True)``, allowing the numpy
scalars and dtypes nnU-Net's trainer stores in its logging besides tensors, ``OrderedDict``
and ``torch.device`` (which torch allows itself); a checkpoint that would run code is
refused with an error naming the file (the machinery of :mod:`~napari_medseg.models.build`).

Importing this module is cheap: json and pathlib only until a model is loaded.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_medseg.models.errors import ModelLoadError

#: Where nnU-Net support is documented.
NNUNET_DOCS = "See docs/models.md (nnU-Net v2 folders)."

#: The checkpoint nnU-Net predicts with.
CHECKPOINT = "checkpoint_final.pth"

#: The package that builds nnU-Net's networks.
ARCHITECTURES = "dynamic_network_architectures.architectures"

#: pip extra that installs it.
EXTRA_HINT = (
    "Install it with: pip install 'napari-medseg[nnunet]' (or dynamic-network-architectures)."
)


class NnUNetFolderError(ModelLoadError):
    """An nnU-Net v2 model folder cannot be used (the message names the file at fault)."""


@dataclass(frozen=True)
class NnUNetInfo:
    """What an nnU-Net folder says before any checkpoint is read (no torch).

    Attributes
    ----------
    folder : Path
        The ``<Trainer>__<Plans>__<configuration>`` folder.
    dataset : dict
        ``dataset.json``.
    plans : dict
        ``plans.json``.
    folds : tuple of Path
        The checkpoints that will be used, in fold order.
    configuration : str
        From the folder name (the checkpoint's own value wins when loaded), or "".
    """

    folder: Path
    dataset: dict
    plans: dict
    folds: tuple[Path, ...]
    configuration: str = ""

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Input channel names in channel order (``channel_names`` or the old ``modality``)."""
        names = self.dataset.get("channel_names") or self.dataset.get("modality") or {}
        return tuple(str(names[k]) for k in sorted(names, key=lambda k: int(k)))

    @property
    def name(self) -> str:
        """``<dataset>_<configuration>``, e.g. ``Dataset003_Liver_3d_fullres``."""
        dataset = str(self.plans.get("dataset_name") or self.folder.parent.name)
        return f"{dataset}_{self.configuration}" if self.configuration else dataset


def _fold_number(folder: Path) -> tuple[int, str]:
    suffix = folder.name[len("fold_") :]
    return (int(suffix), "") if suffix.isdigit() else (1 << 30, suffix)


def is_nnunet_folder(path: str | Path) -> bool:
    """Whether ``path`` looks like an nnU-Net v2 model folder (or one of its ``fold_N``).

    True for a folder with ``plans.json`` or ``dataset.json`` and no MONAI bundle
    ``configs/``, or with ``fold_*`` subfolders holding ``.pth`` checkpoints, or a
    ``fold_*`` folder inside such a folder: :func:`read_nnunet_info` then says what is
    missing.
    """
    path = Path(path)
    if not path.is_dir():
        return False
    if path.name.startswith("fold_") and (
        (path.parent / "plans.json").is_file() or (path.parent / "dataset.json").is_file()
    ):
        return True
    if (path / "configs").is_dir():
        return False
    if (path / "plans.json").is_file() or (path / "dataset.json").is_file():
        return True
    return any(path.glob("fold_*/*.pth"))


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise NnUNetFolderError(
            path,
            f"not found: an nnU-Net v2 model folder holds {what} beside its fold_N folders.",
            "Give the folder nnUNetv2_train wrote (<Trainer>__<Plans>__<configuration>), "
            "with dataset.json, plans.json and fold_N/checkpoint_final.pth.",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise NnUNetFolderError(path, f"is not valid JSON ({error}).") from None
    if not isinstance(data, dict):
        raise NnUNetFolderError(path, "is not a JSON object.")
    return data


def read_nnunet_info(path: str | Path) -> NnUNetInfo:
    """Read an nnU-Net v2 folder's JSON files and find its checkpoints (no torch).

    Parameters
    ----------
    path : path
        The model folder, or one ``fold_N`` folder in it (that fold alone).

    Raises
    ------
    NnUNetFolderError
        ``dataset.json`` or ``plans.json`` missing or malformed, no fold with a
        ``checkpoint_final.pth``.
    """
    path = Path(path).expanduser().resolve()
    only = None
    if path.name.startswith("fold_") and not (path / "plans.json").is_file():
        only, path = path, path.parent
    dataset = _read_json(path / "dataset.json", "dataset.json")
    plans = _read_json(path / "plans.json", "plans.json")
    for key in ("labels",):
        if not isinstance(dataset.get(key), dict):
            raise NnUNetFolderError(path / "dataset.json", f"has no {key!r} object.")
    if not isinstance(plans.get("configurations"), dict):
        raise NnUNetFolderError(path / "plans.json", "has no 'configurations' object.")
    if only is not None:
        candidates = [only]
    else:
        candidates = sorted((p for p in path.glob("fold_*") if p.is_dir()), key=_fold_number)
        numbered = [p for p in candidates if p.name != "fold_all"]
        usable = [p for p in numbered if (p / CHECKPOINT).is_file()]
        candidates = numbered if usable else candidates
    folds = tuple(p / CHECKPOINT for p in candidates if (p / CHECKPOINT).is_file())
    if not folds:
        where = only or path
        others = sorted(p.name for p in where.glob("fold_*/*.pth")) if only is None else []
        others += sorted(p.name for p in where.glob("*.pth")) if only is not None else []
        found = (
            f" (found {', '.join(sorted(set(others)))}: training did not finish?)" if others else ""
        )
        raise NnUNetFolderError(
            where,
            f"no {CHECKPOINT} in {'this fold' if only else 'any fold_N folder'}{found}; "
            "nnU-Net predicts with the final checkpoint of each trained fold.",
            "Finish the training (or copy the fold's checkpoint_final.pth there).",
        )
    parts = path.name.split("__")
    configuration = parts[2] if len(parts) == 3 else ""
    return NnUNetInfo(path, dataset, plans, folds, configuration)


# ------------------------------------------------------------------------- labels
def _label_classes(info: NnUNetInfo, plans_file: Path):
    """Label classes, the number of network outputs, and regions_class_order (or None)."""
    from napari_medseg.labels.classes import LabelClass, default_color

    dataset_file = info.folder / "dataset.json"
    labels = {k: v for k, v in info.dataset["labels"].items() if k != "ignore"}
    if labels.get("background") != 0:
        raise NnUNetFolderError(
            dataset_file, "'labels' must map 'background' to 0 (nnU-Net's rule)."
        )

    def values(v) -> list[int]:
        items = v if isinstance(v, list | tuple) else [v]
        if not items or not all(isinstance(x, int) and not isinstance(x, bool) for x in items):
            raise NnUNetFolderError(dataset_file, f"label value {v!r} is not an integer.")
        return [int(x) for x in items]

    regions = any(isinstance(v, list | tuple) and len(v) > 1 for v in labels.values())
    if not regions:
        by_value: dict[int, str] = {}
        for name, value in labels.items():
            by_value.setdefault(values(value)[0], str(name))
        ordered = sorted(by_value)
        if ordered != list(range(len(ordered))):
            raise NnUNetFolderError(
                dataset_file,
                f"label values {ordered} are not 0..{len(ordered) - 1}; nnU-Net needs "
                "consecutive values.",
            )
        classes = tuple(LabelClass(v, by_value[v], default_color(v)) for v in ordered)
        return classes, len(ordered), None
    order = info.dataset.get("regions_class_order")
    foreground = [
        (str(name), values(v))
        for name, v in labels.items()
        if not (len(set(values(v))) == 1 and values(v)[0] == 0)
    ]
    if not isinstance(order, list) or len(order) != len(foreground):
        raise NnUNetFolderError(
            dataset_file,
            "region-based 'labels' (lists of values) need 'regions_class_order' with one "
            f"label value per region ({len(foreground)} regions).",
        )
    painted: dict[int, str] = {0: "background"}
    for (name, _), value in zip(foreground, order, strict=True):
        painted.setdefault(int(value), name)
    classes = tuple(LabelClass(v, painted[v], default_color(v)) for v in sorted(painted))
    return classes, len(foreground), tuple(int(v) for v in order)


# -------------------------------------------------------------------------- plans
def _configuration(plans: dict, name: str, plans_file: Path) -> dict:
    """A configuration with ``inherits_from`` resolved (PlansManager's rule)."""
    configurations = plans["configurations"]
    seen: list[str] = []
    merged: dict = {}
    while True:
        if name not in configurations:
            known = ", ".join(configurations) or "none"
            raise NnUNetFolderError(
                plans_file,
                f"has no configuration {name!r}"
                + (f" (inherited by {seen[-1]!r})" if seen else "")
                + f"; it has {known}.",
                "The checkpoints were trained with other plans: use the plans.json of their "
                "training.",
            )
        if name in seen:
            raise NnUNetFolderError(plans_file, f"configuration {name!r} inherits from itself.")
        seen.append(name)
        entry = configurations[name]
        merged = {**entry, **merged}
        if "inherits_from" not in entry:
            return merged
        name = entry["inherits_from"]


def _resampling(config: dict, key: str, plans_file: Path):
    from napari_medseg.models.nnunet_pipeline import (
        ANISO_THRESHOLD,
        RESAMPLING_FUNCTIONS,
        Resampling,
    )

    name = config.get(key)
    if name not in RESAMPLING_FUNCTIONS:
        raise NnUNetFolderError(
            plans_file,
            f"{key} is {name!r}; napari-medseg reproduces nnU-Net's default "
            f"({', '.join(RESAMPLING_FUNCTIONS)}) only.",
            NNUNET_DOCS,
        )
    kwargs = dict(config.get(key + "_kwargs") or {})
    return Resampling(
        order=int(kwargs.get("order", 3)),
        order_z=int(kwargs.get("order_z", 0)),
        force_separate_z=kwargs.get("force_separate_z"),
        threshold=float(kwargs.get("separate_z_anisotropy_threshold", ANISO_THRESHOLD)),
    )


def build_plan(info: NnUNetInfo, configuration: str, n_heads: int, regions_order):
    """The :class:`~napari_medseg.models.nnunet_pipeline.NnUNetPlan` of a configuration.

    Raises
    ------
    NnUNetFolderError
        Unknown configuration, a cascade stage, or settings this project does not
        reproduce (reader, normalisation, resampling function), naming ``plans.json``.
    """
    from napari_medseg.models.nnunet_pipeline import NORMALIZATIONS, READERS, NnUNetPlan

    plans_file = info.folder / "plans.json"
    plans = info.plans
    config = _configuration(plans, configuration, plans_file)
    if config.get("previous_stage"):
        raise NnUNetFolderError(
            plans_file,
            f"configuration {configuration!r} is a cascade stage: it needs the labels of "
            f"{config['previous_stage']!r} as input, which napari-medseg does not run.",
            "Use the 3d_fullres, 3d_lowres or 2d model folder instead.",
        )
    reader = str(plans.get("image_reader_writer", "SimpleITKIO"))
    if reader not in READERS:
        raise NnUNetFolderError(
            plans_file,
            f"image_reader_writer {reader!r} is not one napari-medseg reproduces "
            f"({', '.join(READERS)}).",
            NNUNET_DOCS,
        )
    try:
        patch = tuple(int(v) for v in config["patch_size"])
        spacing = tuple(float(v) for v in config["spacing"])
        schemes = tuple(str(v) for v in config["normalization_schemes"])
        masks = tuple(bool(v) for v in config["use_mask_for_norm"])
        forward = tuple(int(v) for v in plans["transpose_forward"])
        backward = tuple(int(v) for v in plans["transpose_backward"])
    except (KeyError, TypeError, ValueError) as error:
        raise NnUNetFolderError(
            plans_file, f"configuration {configuration!r} lacks or garbles {error}."
        ) from None
    unknown = [s for s in schemes if s not in NORMALIZATIONS]
    if unknown:
        raise NnUNetFolderError(
            plans_file,
            f"normalisation {', '.join(unknown)} is not one napari-medseg reproduces "
            f"({', '.join(NORMALIZATIONS)}).",
            NNUNET_DOCS,
        )
    channels = len(info.channel_names)
    problems = []
    if len(patch) not in (2, 3) or len(spacing) != len(patch):
        problems.append(f"patch_size {list(patch)} and spacing {list(spacing)} disagree")
    if sorted(forward) != [0, 1, 2] or [forward[i] for i in backward] != [0, 1, 2]:
        problems.append(f"transpose_forward {list(forward)} / backward {list(backward)}")
    if len(schemes) != channels or len(masks) != channels:
        problems.append(
            f"{len(schemes)} normalisation schemes for the {channels} channels of dataset.json"
        )
    intensity = plans.get("foreground_intensity_properties_per_channel") or {}
    props = tuple(dict(intensity.get(str(c)) or {}) for c in range(channels))
    for c, scheme in enumerate(schemes):
        need = ("mean", "std", "percentile_00_5", "percentile_99_5")
        if scheme == "CTNormalization" and any(k not in props[c] for k in need):
            problems.append(f"channel {c} uses CTNormalization without intensity properties")
    if problems:
        raise NnUNetFolderError(plans_file, "; ".join(problems) + ".")
    n_foreground = len({v for v in _flat_label_values(info.dataset["labels"]) if v != 0})
    return NnUNetPlan(
        configuration=configuration,
        patch_size=patch,
        spacing=spacing,
        normalization=schemes,
        use_mask_for_norm=masks,
        intensity=props,
        transpose_forward=forward,  # type: ignore[arg-type]
        transpose_backward=backward,  # type: ignore[arg-type]
        data_resampling=_resampling(config, "resampling_fn_data", plans_file),
        probability_resampling=_resampling(config, "resampling_fn_probabilities", plans_file),
        reader=reader,
        n_heads=n_heads,
        regions_class_order=regions_order,
        n_foreground=n_foreground,
    )


def _flat_label_values(labels: dict) -> list[int]:
    out = []
    for name, value in labels.items():
        if name == "ignore":
            continue
        out += [int(v) for v in (value if isinstance(value, list | tuple) else [value])]
    return out


# --------------------------------------------------------------------- checkpoints
def _numpy_safe_globals() -> list:
    """What nnU-Net's trainer pickles besides tensors: numpy scalars and their dtypes
    (its logging holds ``numpy.float64`` values), under numpy 1's and numpy 2's names."""
    import numpy as np

    try:
        scalar = np._core.multiarray.scalar  # numpy >= 2
    except AttributeError:  # pragma: no cover - numpy 1
        scalar = np.core.multiarray.scalar
    allowed: list = [np.dtype, scalar]
    for name in ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar"):
        allowed.append((scalar, name))
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 may pickle dtype classes
    for cls in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType"):
        if dtypes is not None and hasattr(dtypes, cls):
            allowed.append(getattr(dtypes, cls))
    return allowed


def read_checkpoint(path: Path) -> dict[str, Any]:
    """An nnU-Net checkpoint, read with ``torch.load(weights_only=True)``.

    Raises
    ------
    NnUNetFolderError
        Not a checkpoint, a pickle that would run code, or not an nnU-Net checkpoint
        (no ``network_weights``).
    """
    import pickle

    import torch

    from napari_medseg.models.build import (
        _first_unsafe_global,
        _not_a_checkpoint,
        _unsupported_global,
    )

    allowed = _numpy_safe_globals()
    try:
        with torch.serialization.safe_globals(allowed), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        with torch.serialization.safe_globals(allowed):
            found = _unsupported_global(str(error)) or _first_unsafe_global(path)
        if found:
            raise NnUNetFolderError(
                path,
                f"holds Python objects that would run code when loaded (a pickled {found}); "
                "it is refused.",
                "nnU-Net's trainer stores only tensors, numbers, strings and numpy scalars: "
                "use the checkpoint_final.pth nnUNetv2_train wrote.",
            ) from None
        raise _as_folder_error(_not_a_checkpoint(path, error)) from None
    except Exception as error:  # any other parse failure: not a checkpoint at all
        raise _as_folder_error(_not_a_checkpoint(path, error)) from None
    weights = data.get("network_weights") if isinstance(data, dict) else None
    if not isinstance(weights, dict) or not weights:
        raise NnUNetFolderError(
            path,
            "is a PyTorch file but not an nnU-Net v2 checkpoint (no 'network_weights').",
            "Use the checkpoint_final.pth nnUNetv2_train wrote.",
        )
    return data


def _as_folder_error(error: ModelLoadError) -> NnUNetFolderError:
    return NnUNetFolderError(error.path, error.problem, error.fix)


def _checkpoint_facts(path: Path, data: dict) -> tuple[str, str, tuple[int, ...] | None]:
    """Configuration, trainer name and mirroring axes a checkpoint states."""
    init_args = data.get("init_args") if isinstance(data.get("init_args"), dict) else {}
    configuration = init_args.get("configuration")
    if not isinstance(configuration, str) or not configuration:
        raise NnUNetFolderError(
            path, "does not say its configuration (init_args.configuration is missing)."
        )
    trainer = str(data.get("trainer_name") or "")
    axes = data.get("inference_allowed_mirroring_axes")
    if axes is not None:
        try:
            axes = tuple(int(a) for a in axes)
        except (TypeError, ValueError):
            raise NnUNetFolderError(
                path, f"inference_allowed_mirroring_axes {axes!r} is not a list of axes."
            ) from None
    return configuration, trainer, axes


def _strip_prefixes(state: dict) -> dict:
    for prefix in ("module.", "_orig_mod."):
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


# ------------------------------------------------------------------------- network
def _locate(name: str, plans_file: Path, what: str, base) -> Any:
    """Import ``module.Class`` named by the plans; only below ``base``'s allowed packages."""
    import importlib

    roots = base
    module_name, _, attr = str(name).rpartition(".")
    if not module_name or not any(
        module_name == root or module_name.startswith(root + ".") for root in roots
    ):
        raise NnUNetFolderError(
            plans_file,
            f"{what} {name!r} is outside {' / '.join(roots)}; plans may only name nnU-Net's "
            "network classes and torch.nn layers.",
            NNUNET_DOCS,
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        if module_name.startswith("dynamic_network_architectures"):
            raise NnUNetFolderError(
                plans_file,
                f"its network {name!r} needs the package dynamic-network-architectures ({error}).",
                EXTRA_HINT,
            ) from None
        raise NnUNetFolderError(plans_file, f"{what} {name!r} cannot be imported.") from None
    found = getattr(module, attr, None)
    import torch

    if not (isinstance(found, type) and issubclass(found, torch.nn.Module)):
        raise NnUNetFolderError(plans_file, f"{what} {name!r} is not a torch.nn.Module class.")
    return found


def build_network(architecture: dict, in_channels: int, out_channels: int, plans_file: Path):
    """The network of a configuration's ``architecture`` (``get_network_from_plans`` without
    deep supervision), on the CPU, untrained."""
    if not isinstance(architecture, dict) or "network_class_name" not in architecture:
        raise NnUNetFolderError(
            plans_file,
            "the configuration has no 'architecture' (network_class_name, arch_kwargs): "
            "plans of nnU-Net v2 before 2.4 are not supported.",
            "Re-run nnUNetv2_plan_experiment with a current nnU-Net, or convert the plans.",
        )
    cls = _locate(architecture["network_class_name"], plans_file, "network", (ARCHITECTURES,))
    kwargs = dict(architecture.get("arch_kwargs") or {})
    for key in architecture.get("_kw_requires_import") or ():
        if kwargs.get(key) is not None:
            kwargs[key] = _locate(kwargs[key], plans_file, key, ("torch.nn",))
    description = cls.__name__
    try:
        network = cls(
            input_channels=in_channels,
            num_classes=out_channels,
            deep_supervision=False,
            **kwargs,
        )
    except (TypeError, ValueError, AssertionError, KeyError, IndexError) as error:
        raise NnUNetFolderError(
            plans_file,
            f"cannot build its {description} from arch_kwargs: {str(error).rstrip('.')}.",
        ) from None
    return network


# --------------------------------------------------------------------------- model
def load_nnunet_folder(path: str | Path):
    """Load an nnU-Net v2 model folder, ready for the :class:`~napari_medseg.inference.Segmenter`.

    Parameters
    ----------
    path : path
        ``<Trainer>__<Plans>__<configuration>`` (all folds), or one ``fold_N`` in it.

    Returns
    -------
    LoadedModel
        ``runner`` runs nnU-Net's pipeline; ``details["kind"] == "nnunet_v2"``.

    Raises
    ------
    NnUNetFolderError
        Missing or malformed files, a configuration the plans lack, checkpoints that do not
        fit the plans (or each other), a checkpoint that would run code.
    """
    import functools

    import torch

    from napari_medseg.models.build import check_state_dict, sha256_file
    from napari_medseg.models.loaded import LoadedModel, ModelInput
    from napari_medseg.models.nnunet_pipeline import mirror_combinations
    from napari_medseg.models.spec import ModelSpec, NetworkSpec

    info = read_nnunet_info(path)
    plans_file = info.folder / "plans.json"
    checkpoints = [(fold, read_checkpoint(fold)) for fold in info.folds]
    first_path, first = checkpoints[0]
    configuration, trainer, mirror_axes = _checkpoint_facts(first_path, first)
    for fold, data in checkpoints[1:]:
        other = _checkpoint_facts(fold, data)[0]
        if other != configuration:
            raise NnUNetFolderError(
                fold,
                f"was trained for configuration {other!r}, but {first_path.parent.name} "
                f"for {configuration!r}: the folds of one model share a configuration.",
            )
    classes, n_heads, regions_order = _label_classes(info, plans_file)
    plan = build_plan(info, configuration, n_heads, regions_order)
    try:
        mirror_combinations(mirror_axes, len(plan.patch_size))
    except ValueError as error:
        raise NnUNetFolderError(first_path, f"inference_allowed_mirroring_axes: {error}.") from None
    config = _configuration(info.plans, configuration, plans_file)
    network = build_network(config.get("architecture"), plan.in_channels, n_heads, plans_file)
    description = (
        f"the network plans.json describes for {configuration!r} "
        f"({type(network).__name__}, {plan.in_channels} input channel(s), {n_heads} outputs)"
    )
    states = []
    for fold, data in checkpoints:
        state = _strip_prefixes(dict(data["network_weights"]))
        try:
            check_state_dict(network, state, fold, description)
        except ModelLoadError as error:
            raise NnUNetFolderError(
                fold,
                error.problem,
                "The checkpoint was trained with other plans (or another dataset.json): "
                "use the plans.json and dataset.json of its own training.",
            ) from None
        states.append(state)
    network.load_state_dict(states[0])
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    del checkpoints
    configuration_name = configuration
    info = NnUNetInfo(info.folder, info.dataset, info.plans, info.folds, configuration_name)
    schemes = set(plan.normalization)
    spec = ModelSpec(
        name=info.name,
        title=f"nnU-Net {info.plans.get('dataset_name', '')} {configuration}".strip(),
        description=str(info.dataset.get("description") or info.dataset.get("name") or ""),
        spatial_dims=len(plan.patch_size),
        in_channels=plan.in_channels,
        channel_names=info.channel_names,
        labels=classes,
        # nnU-Net's network, built from the plans (details["network"]), not a MONAI class
        network=NetworkSpec(kind="monai", name="", args={}),
        weights=str(info.folds[0].relative_to(info.folder)),
        roi_size=tuple(plan.patch_size),
        target_spacing=tuple(plan.spacing) if len(plan.spacing) == 3 else (),
        overlap=0.5,
        sw_batch_size=1,
        activation="sigmoid" if regions_order else "softmax",
        paint_order=tuple(enumerate(regions_order)) if regions_order else (),
        slice_axis=2,
        modality="CT" if schemes == {"CTNormalization"} else "",
        base_dir=str(info.folder),
    )
    details = {
        "kind": "nnunet_v2",
        "folder": str(info.folder),
        "dataset_name": str(info.plans.get("dataset_name", "")),
        "plans_name": str(info.plans.get("plans_name", "")),
        "configuration": configuration,
        "trainer": trainer,
        "network": str(config["architecture"]["network_class_name"]),
        "folds": [fold.parent.name for fold in info.folds],
        "weights": [str(fold) for fold in info.folds],
        "weights_sha256": [sha256_file(fold) for fold in info.folds],
        "mirror_axes": list(mirror_axes) if mirror_axes is not None else None,
        "patch_size": list(plan.patch_size),
        "target_spacing_mm": list(plan.spacing),
        "normalization": list(plan.normalization),
        "reader": plan.reader,
        "region_based": regions_order is not None,
    }
    if info.dataset.get("labels", {}).get("ignore") is not None:
        details["ignore_label"] = info.dataset["labels"]["ignore"]

    def preprocess(volumes) -> ModelInput:
        from napari_medseg.models import nnunet_pipeline as pipe

        data, properties = pipe.read_volumes(volumes, plan)
        image = pipe.preprocess(data, properties, plan)
        affine = pipe.model_grid_affine(
            volumes[0].affine, volumes[0].shape, properties, plan, image.shape[1:]
        )
        return ModelInput(image=torch.from_numpy(image), affine=affine)

    return LoadedModel(
        spec=spec,
        network=network,
        preprocess=preprocess,
        postprocess_labels=None,
        source=str(Path(path).expanduser().resolve()),
        details=details,
        runner=functools.partial(_run, plan=plan, states=tuple(states), mirror_axes=mirror_axes),
    )


def _run(network, volumes, request, *, plan, states, mirror_axes):
    """The :data:`~napari_medseg.models.loaded.Runner` of an nnU-Net model."""
    from napari_medseg.models import nnunet_pipeline as pipe
    from napari_medseg.models.loaded import RunResult

    flips = pipe.mirror_combinations(mirror_axes if request.tta else None, len(plan.patch_size))
    warnings_out = []
    if request.tta and not mirror_axes:
        warnings_out.append(
            "test-time mirroring was asked for, but this nnU-Net model allows no mirroring "
            "axes (inference_allowed_mirroring_axes): it ran without."
        )
    calls = {"done": 0, "total": 0}

    def tick() -> None:
        calls["done"] += 1
        if request.progress is not None:
            request.progress(min(calls["done"], calls["total"]), calls["total"])

    run = pipe.WindowRun(
        device=request.device,
        amp=request.amp,
        step=1.0 - float(request.overlap),
        flips=flips,
        batch_size=int(request.sw_batch_size),
        tick=tick,
        cancel=request.cancel,
    )

    def planned(n_calls: int) -> None:
        calls["total"] = n_calls
        if request.progress is not None:
            request.progress(0, n_calls)

    run.planned = planned
    output = pipe.run_pipeline(network, states, volumes, plan, run, request.return_probabilities)
    return RunResult(
        labels=output.labels,
        probabilities=output.probabilities,
        model_shape=output.model_shape,
        settings={
            "tile_step_size": run.step,
            "mirror_axes": list(mirror_axes or ()) if request.tta else [],
            "n_folds": len(states),
            "n_windows": output.n_windows,
            "n_network_calls": output.n_network_calls,
            "tta_flips": [list(f) for f in flips],
        },
        timings_s=output.timings_s,
        warnings=warnings_out,
    )


__all__ = [
    "NnUNetFolderError",
    "NnUNetInfo",
    "is_nnunet_folder",
    "load_nnunet_folder",
    "read_checkpoint",
    "read_nnunet_info",
]
