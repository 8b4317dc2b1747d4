"""The contract between where a model comes from and the engine that runs it.

Every model source (the project's default models, MONAI bundles, TorchScript files)
turns into a :class:`LoadedModel`: the network, ready in eval mode, plus the
preprocessing that puts the scan on the model's grid. The :class:`~napari_medseg.
inference.Segmenter` takes it from there: sliding window, argmax on the model grid,
labels back to the scan's grid by nearest neighbour. torch is only imported for type
checking here, so importing this module stays cheap.

A model whose results depend on a pipeline of its own from scan to labels (nnU-Net v2
folders: its own window placement, blending, mirroring, fold averaging and export of
resampled logits, :mod:`~napari_medseg.models.nnunet`) gives a :data:`Runner` instead;
the Segmenter then hands it the scan, its network (on the Segmenter's device) and a
:class:`RunRequest`, and wraps the :class:`RunResult` like its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_medseg.models.spec import ModelSpec
from napari_medseg.progress import Progress
from napari_medseg.volume import Volume

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class ModelInput:
    """A scan prepared for the network.

    Attributes
    ----------
    image : torch.Tensor
        float32, shape ``(C, X, Y, Z)`` on the model grid (CPU), intensity-transformed.
    affine : numpy.ndarray
        4x4 model-grid voxel -> RAS mm matrix: where each model voxel lies in the
        patient, which is all that is needed to bring labels back to the scan grid.
    """

    image: torch.Tensor
    affine: np.ndarray


#: Puts the input channels (one Volume each, all on one grid) onto the model grid.
Preprocess = Callable[[Sequence[Volume]], ModelInput]

#: Optional label clean-up on the model grid (e.g. keep the largest component),
#: given labels ``(X, Y, Z)`` and returning an array of the same shape.
PostprocessLabels = Callable[[np.ndarray], np.ndarray]


@dataclass
class RunRequest:
    """What the Segmenter asks of a model that runs its own pipeline.

    Attributes
    ----------
    device : torch.device
        Where the network is (and runs).
    amp : bool
        Mixed precision allowed (CUDA only).
    tta : bool
        Test-time augmentation asked for.
    overlap : float
        Sliding-window overlap in [0, 1).
    sw_batch_size : int
        Windows per network call.
    progress : Progress or None
        ``progress(done, total)`` over the network calls.
    cancel : threading.Event or None
        Checked before every network call (raise ``Cancelled`` when set).
    return_probabilities : bool
        Also return float32 class probabilities on the scan's grid.
    """

    device: Any
    amp: bool
    tta: bool
    overlap: float
    sw_batch_size: int
    progress: Progress | None = None
    cancel: threading.Event | None = None
    return_probabilities: bool = False


@dataclass
class RunResult:
    """What a :data:`Runner` returns.

    Attributes
    ----------
    labels : numpy.ndarray
        Integer labels ``(I, J, K)`` on the first channel's grid.
    probabilities : numpy.ndarray or None
        float32 ``(K, I, J, K)`` on that grid, when asked for.
    model_shape : tuple of int
        Shape of the grid the network ran on.
    settings : dict
        Run settings for provenance (merged into the result's settings).
    timings_s : dict
        Seconds of ``preprocess``, ``network``, ``postprocess``.
    warnings : list of str
        What the user should know.
    """

    labels: np.ndarray
    probabilities: np.ndarray | None
    model_shape: tuple[int, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


#: A model's own pipeline: ``runner(network, channels, request) -> RunResult``, channels
#: on one grid (NaN/inf already replaced); ``ValueError`` when the channels do not fit.
Runner = Callable[[Any, Sequence[Volume], RunRequest], RunResult]


@dataclass
class LoadedModel:
    """A network with its spec and preprocessing, ready to run.

    Attributes
    ----------
    spec : ModelSpec
        Labels, dimensions, channels and sliding-window settings.
    network : torch.nn.Module
        In eval mode, on the CPU (the Segmenter moves it to its device).
    preprocess : Preprocess
        Channels (scan grid) -> :class:`ModelInput` (model grid).
    postprocess_labels : PostprocessLabels or None
        Label clean-up, on the grid where the labels are decided: the model grid before
        resampling to the scan grid, or the scan grid when ``details["interpolate"]``
        asks for scores interpolated there first (a bundle's ``Invertd``).
    source : str
        Where the model came from (catalogue name, bundle folder or file), for reports.
    details : dict
        Source-specific facts for provenance (bundle version, weights SHA-256...).
    runner : Runner or None
        The model's own pipeline from scan to labels, used instead of the engine's
        preprocessing, sliding window and resampling (``preprocess`` is then only
        informative).
    """

    spec: ModelSpec
    network: torch.nn.Module
    preprocess: Preprocess
    postprocess_labels: PostprocessLabels | None = None
    source: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    runner: Runner | None = None
