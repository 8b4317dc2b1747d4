"""The contract between where a model comes from and the engine that runs it.

Every model source (the project's default models, MONAI bundles, TorchScript files)
turns into a :class:`LoadedModel`: the network, ready in eval mode, plus the
preprocessing that puts the scan on the model's grid. The :class:`~napari_medseg.
inference.Segmenter` takes it from there: sliding window, argmax on the model grid,
labels back to the scan's grid by nearest neighbour. torch is only imported for type
checking here, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_medseg.models.spec import ModelSpec
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
        Label clean-up on the model grid, applied before resampling to the scan grid.
    source : str
        Where the model came from (catalogue name, bundle folder or file), for reports.
    details : dict
        Source-specific facts for provenance (bundle version, weights SHA-256...).
    """

    spec: ModelSpec
    network: torch.nn.Module
    preprocess: Preprocess
    postprocess_labels: PostprocessLabels | None = None
    source: str = ""
    details: dict[str, Any] = field(default_factory=dict)
