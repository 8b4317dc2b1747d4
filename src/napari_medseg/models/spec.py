"""What a segmentation model is, as plain data: no torch, so catalogues list cheaply.

A :class:`ModelSpec` says everything the inference engine needs besides the weights:
how many spatial dimensions and input channels the network takes, the grid it works on
(orientation and spacing), the intensity transform, the sliding-window settings, and the
label classes it outputs. Specs are stored as JSON next to their weights; relative paths
in a spec resolve against the folder of its JSON file (``base_dir``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from napari_medseg.errors import FileError
from napari_medseg.labels.classes import LabelClass, default_color
from napari_medseg.models.domain import ModelDomain


class ModelSpecError(FileError):
    """A model spec (or bundle config) is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class IntensitySpec:
    """Intensity transform applied to each input channel on the model grid.

    Attributes
    ----------
    kind : str
        ``"none"``; ``"scale_range"`` (MONAI ``ScaleIntensityRange``: map
        ``[a_min, a_max]`` linearly to ``[b_min, b_max]``, then clip if ``clip``);
        or ``"normalize"`` (MONAI ``NormalizeIntensity``: subtract the mean and
        divide by the standard deviation, over non-zero voxels if ``nonzero``,
        per channel if ``channel_wise``).
    a_min, a_max : float
        Input range of ``scale_range`` (HU for CT).
    b_min, b_max : float
        Output range of ``scale_range``.
    clip : bool
        Clip ``scale_range`` output to ``[b_min, b_max]``.
    nonzero, channel_wise : bool
        Options of ``normalize``.
    """

    kind: str = "none"
    a_min: float = 0.0
    a_max: float = 1.0
    b_min: float = 0.0
    b_max: float = 1.0
    clip: bool = True
    nonzero: bool = False
    channel_wise: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("none", "scale_range", "normalize"):
            raise ValueError(f"unknown intensity transform {self.kind!r}")


@dataclass(frozen=True)
class NetworkSpec:
    """How to build the network.

    Attributes
    ----------
    kind : str
        ``"monai"``: a class of ``monai.networks.nets`` built with ``args``, whose
        weights are a ``state_dict`` file; ``"medseg"``: one of the project's own
        architectures (:mod:`napari_medseg.models.networks`: ``MeshNet``,
        ``LungUNet2D``), also with a ``state_dict``; ``"torchscript"``: a TorchScript
        file (any architecture), ``name`` and ``args`` unused.
    name : str
        Network class name (``"UNet"``, ``"SegResNet"``, ``"SwinUNETR"``... for MONAI).
    args : dict
        Keyword arguments of the network class.
    """

    kind: str = "monai"
    name: str = ""
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("monai", "medseg", "torchscript"):
            raise ValueError(f"unknown network kind {self.kind!r}")


@dataclass(frozen=True)
class ModelSpec:
    """Everything about a segmentation model except its weights' values.

    Attributes
    ----------
    name : str
        Catalogue name, e.g. ``"phantom-abdomen-3d"``.
    title : str
        One line for menus.
    description : str
        What it segments, on which scans, and what it is not for.
    spatial_dims : int
        2 (slice by slice along ``slice_axis`` of the model grid) or 3.
    in_channels : int
        Number of input channels (e.g. 4 for T1, T1c, T2, FLAIR).
    channel_names : tuple of str
        One name per input channel, in the network's channel order.
    labels : tuple of LabelClass
        Classes of the output label map, background (0) included.
    network : NetworkSpec
        Architecture.
    weights : str
        Weights file (``state_dict`` for ``monai``; TorchScript file for
        ``torchscript``), relative to ``base_dir`` unless absolute.
    weights_sha256 : str
        Expected SHA-256 of the weights file ("" to skip the check).
    target_orientation : str
        RAS+ axis code of the model grid (``"RAS"``...), or "" to keep the scan's.
    target_spacing : tuple of float
        Voxel size of the model grid in mm along its axes, or () to keep the scan's.
        For 2D models the slice-axis entry may be 0 to keep the scan's slice spacing.
    intensity : IntensitySpec
        Intensity transform on the model grid.
    roi_size : tuple of int
        Sliding-window size in model voxels (2 entries for 2D models, 3 for 3D); an
        entry of 0 means the whole extent of that axis (one window along it).
    overlap : float
        Sliding-window overlap, 0 <= overlap < 1.
    blend_mode : str
        ``"gaussian"`` or ``"constant"`` blending of overlapping windows.
    sigma_scale : float
        Gaussian sigma as a fraction of the ROI size (MONAI's default 0.125).
    sw_batch_size : int
        Windows per network call.
    activation : str
        ``"softmax"``: one channel per label value, label = argmax; ``"sigmoid"``:
        independent channels, thresholded at 0.5 and painted by ``paint_order``.
    paint_order : tuple of (int, int)
        For ``"sigmoid"``: ``(channel, label value)`` pairs painted in this order, a
        later pair overwriting an earlier one (e.g. BraTS whole tumour, then tumour
        core, then enhancing tumour).
    slice_axis : int
        Model-grid axis the 2D model steps along (2 = axial for RAS/LPS grids).
    modality : str
        ``"CT"``, ``"MR"`` or "" when any.
    domain : ModelDomain
        The scans the model was trained on (body region, spacing, field of view);
        scans outside it get a warning before the model runs.
    model_card : str
        Model card file (relative to ``base_dir``), or "".
    pipeline : dict
        Pre- and postprocessing other than the standard one (reorient, resample,
        intensity transform, sliding window): ``{}`` for the standard one, or
        ``{"kind": "brainchop", ...}`` (:mod:`napari_medseg.models.brainchop`), or
        ``{"kind": "deepbet", ...}`` (:mod:`napari_medseg.models.deepbet`: its networks
        come from the installed ``deepbet`` package, ``weights`` is unused).
    cpu_bf16 : bool
        True (default): with mixed precision on, a CPU with native bfloat16 runs the
        network under bfloat16 autocast. False: float32 always on the CPU, for a model
        whose labels under bfloat16 agree with float32 on fewer than 99.5 % of voxels
        (measured by ``scripts/evaluate_precision.py``; the numbers are in its card).
    license : str
        Licence of the weights, as an SPDX identifier where one exists (``"MIT"``,
        ``"Apache-2.0"``, ``"CC-BY-NC-4.0"``), or ``"unknown"``.
    license_file : str
        The licence notice shipped with the weights (relative to ``base_dir``), or "".
    intended_use : str
        What the model is for, and what it is not for, in one or two sentences.
    source : str
        Where the weights come from (repository and commit, or "trained by ...").
    base_dir : str
        Folder relative paths resolve against (set when loaded from a file).
    """

    name: str
    spatial_dims: int
    in_channels: int
    labels: tuple[LabelClass, ...]
    network: NetworkSpec
    weights: str
    roi_size: tuple[int, ...]
    title: str = ""
    description: str = ""
    channel_names: tuple[str, ...] = ()
    weights_sha256: str = ""
    target_orientation: str = ""
    target_spacing: tuple[float, ...] = ()
    intensity: IntensitySpec = field(default_factory=IntensitySpec)
    overlap: float = 0.25
    blend_mode: str = "gaussian"
    sigma_scale: float = 0.125
    sw_batch_size: int = 4
    activation: str = "softmax"
    paint_order: tuple[tuple[int, int], ...] = ()
    slice_axis: int = 2
    modality: str = ""
    domain: ModelDomain = field(default_factory=ModelDomain)
    model_card: str = ""
    pipeline: dict[str, Any] = field(default_factory=dict)
    cpu_bf16: bool = True
    license: str = "unknown"
    license_file: str = ""
    intended_use: str = ""
    source: str = ""
    base_dir: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.spatial_dims not in (2, 3):
            problems.append(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if self.in_channels < 1:
            problems.append(f"in_channels must be >= 1, got {self.in_channels}")
        if len(self.roi_size) != self.spatial_dims:
            problems.append(f"roi_size {self.roi_size} needs {self.spatial_dims} entries")
        if self.target_spacing and len(self.target_spacing) != 3:
            problems.append(f"target_spacing {self.target_spacing} needs 3 entries (mm)")
        if not 0.0 <= self.overlap < 1.0:
            problems.append(f"overlap must be in [0, 1), got {self.overlap}")
        if self.activation not in ("softmax", "sigmoid"):
            problems.append(f"activation must be softmax or sigmoid, got {self.activation!r}")
        if self.blend_mode not in ("gaussian", "constant"):
            problems.append(f"blend_mode must be gaussian or constant, got {self.blend_mode!r}")
        if self.channel_names and len(self.channel_names) != self.in_channels:
            problems.append(f"{len(self.channel_names)} channel names for {self.in_channels}")
        if self.pipeline and self.pipeline.get("kind") not in ("brainchop", "deepbet"):
            problems.append(f"unknown pipeline kind {self.pipeline.get('kind')!r}")
        if not str(self.license).strip():
            problems.append('license must name a licence or say "unknown"')
        values = [label.value for label in self.labels]
        if len(set(values)) != len(values):
            problems.append("label values repeat")
        if problems:
            raise ValueError(f"model spec {self.name!r}: " + "; ".join(problems))

    # -- paths -----------------------------------------------------------------
    def resolve(self, relative: str) -> Path:
        """Absolute path of a file the spec names (relative to ``base_dir``)."""
        path = Path(relative).expanduser()
        if path.is_absolute() or not self.base_dir:
            return path
        return Path(self.base_dir) / path

    @property
    def weights_path(self) -> Path:
        """Absolute path of the weights file."""
        return self.resolve(self.weights)

    @property
    def label_names(self) -> dict[int, str]:
        """Label value -> class name."""
        return {label.value: label.name for label in self.labels}

    # -- JSON --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (``base_dir`` left out: it is where the file lies)."""
        data = asdict(self)
        data.pop("base_dir")
        return data

    def save_json(self, path: str | Path) -> None:
        """Write the spec as JSON (atomically)."""
        from napari_medseg.io.atomic import atomic_output

        with atomic_output(Path(path)) as temporary:
            Path(temporary).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: str | Path = "") -> ModelSpec:
        """Build a spec from its JSON form; raises ``ValueError``/``KeyError`` if bad."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown spec fields: {', '.join(sorted(unknown))}")
        values = dict(data)
        values["labels"] = tuple(
            LabelClass(
                int(item["value"]),
                str(item["name"]),
                tuple(int(c) for c in item.get("color") or default_color(int(item["value"]))),
            )
            for item in data["labels"]
        )
        values["network"] = NetworkSpec(**data["network"])
        values["intensity"] = IntensitySpec(**data.get("intensity", {}))
        values["domain"] = ModelDomain.from_dict(data.get("domain"))
        for key in ("roi_size", "channel_names"):
            if key in values:
                values[key] = tuple(values[key])
        values["target_spacing"] = tuple(float(v) for v in data.get("target_spacing", ()))
        values["pipeline"] = dict(data.get("pipeline") or {})
        values["paint_order"] = tuple(
            tuple(int(v) for v in pair) for pair in data.get("paint_order", ())
        )
        values["base_dir"] = str(base_dir)
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path) -> ModelSpec:
        """Read a spec JSON file; relative paths in it resolve against its folder.

        Raises
        ------
        ModelSpecError
            The file is missing, not JSON, or not a valid spec (the message names the
            file and the field at fault).
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelSpecError(path, "model spec file not found.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelSpecError(path, f"is not a readable JSON model spec ({error}).") from None
        if not isinstance(data, dict):
            raise ModelSpecError(path, "a model spec must be a JSON object.")
        try:
            return cls.from_dict(data, base_dir=path.parent.resolve())
        except (KeyError, TypeError, ValueError) as error:
            missing = f"missing field {error}" if isinstance(error, KeyError) else str(error)
            raise ModelSpecError(
                path, f"is not a valid model spec: {missing}.", "See docs/models.md."
            ) from None
