"""The project's own network definitions, for published weights that are not MONAI's.

A spec names these with ``network.kind = "medseg"`` and ``network.name`` one of
:data:`NETWORKS`. The architectures are written here from the facts their authors
publish (layer list, kernel sizes, dilations, activations, normalisation); the weights
are converted once by ``scripts/convert_pretrained.py`` into plain ``state_dict`` files
(read with ``weights_only=True``).

``MeshNet``
    Fedorov et al.'s dilated-convolution network as brainchop publishes it (TensorFlow.js
    layers models, ``neuroneural/brainchop``): a stack of 3x3x3 convolutions with
    dilations such as 1, 2, 4, 8, 16, 8, 4, 2, 1, each followed by an optional instance
    normalisation (brainchop's ``_gn`` layers: per-channel mean and biased variance over
    the whole volume, epsilon 1e-5, no affine) and an activation, then a 1x1x1
    convolution to the classes. "same" padding: a dilation ``d`` pads ``d`` voxels on
    each side. Input ``(B, 1, X, Y, Z)``; output ``(B, classes, X, Y, Z)`` scores
    (brainchop takes their argmax; no softmax is needed for labels).
``LungUNet2D``
    The small 2D U-Net of ``knottwill/UNet-Small`` (16-32-64-128 channels, two 3x3
    convolutions with batch norm and ReLU per level, max pooling, transposed-convolution
    upsampling with skip connections, a 1x1 output convolution; dropout is inactive at
    inference). The authors' module ends in a sigmoid; this one returns the logit, and
    the spec's ``activation: "sigmoid"`` applies it once. Input ``(B, 1, H, W)`` with
    ``H`` and ``W`` multiples of 8; output ``(B, 1, H, W)``.

torch is imported at module level: import this module only where a network is built.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: Activation layers MeshNet variants use, by the name brainchop's model.json gives.
ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "gelu": nn.GELU}


class MeshNet(nn.Module):
    """Dilated 3D convolutions at full resolution, then a 1x1x1 classifier.

    Parameters
    ----------
    n_classes : int
        Output channels (background included).
    channels : int
        Feature channels of every hidden layer.
    dilations : sequence of int
        One 3x3x3 convolution per entry, with that dilation (and padding).
    activation : str
        ``"elu"``, ``"relu"`` or ``"gelu"`` (exact, erf-based).
    instance_norm : bool
        Normalise each hidden convolution's output per channel over the volume.
    bias : bool
        Whether the hidden convolutions have a bias (the classifier always has one).
    in_channels : int
        Input channels (1 for brainchop's models).
    """

    def __init__(
        self,
        n_classes: int,
        channels: int,
        dilations: Sequence[int],
        activation: str = "elu",
        instance_norm: bool = False,
        bias: bool = True,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = []
        width = in_channels
        for dilation in dilations:
            layers.append(
                nn.Conv3d(
                    width, channels, 3, padding=int(dilation), dilation=int(dilation), bias=bias
                )
            )
            if instance_norm:
                layers.append(nn.InstanceNorm3d(channels, eps=1e-5, affine=False))
            layers.append(ACTIVATIONS[activation]())
            width = channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv3d(width, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``(B, n_classes, X, Y, Z)`` of ``x`` ``(B, in_channels, X, Y, Z)``."""
        return self.classifier(self.features(x))


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class LungUNet2D(nn.Module):
    """Three-level 2D U-Net (16-32-64 channels, 128 at the bottom), one logit out.

    Parameter names follow the published ``state_dict`` (``conv1.0.weight``...), so the
    authors' weights load without renaming.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = _double_conv(in_channels, 16)
        self.conv2 = _double_conv(16, 32)
        self.conv3 = _double_conv(32, 64)
        self.middle = _double_conv(64, 128)
        self.upsample3 = nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=1)
        self.upconv3 = _double_conv(128, 64)
        self.upsample2 = nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1)
        self.upconv2 = _double_conv(64, 32)
        self.upsample1 = nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1)
        self.upconv1 = _double_conv(32, 16)
        self.final = nn.Conv2d(16, out_channels, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Lung logit ``(B, 1, H, W)`` of raw CT values ``(B, 1, H, W)`` (HU + 1024)."""
        level1 = self.conv1(x)
        level2 = self.conv2(self.pool(level1))
        level3 = self.conv3(self.pool(level2))
        bottom = self.middle(self.pool(level3))
        up3 = self.upconv3(torch.cat([self.upsample3(bottom), level3], 1))
        up2 = self.upconv2(torch.cat([self.upsample2(up3), level2], 1))
        up1 = self.upconv1(torch.cat([self.upsample1(up2), level1], 1))
        return self.final(up1)


#: Network classes a spec may name with ``network.kind = "medseg"``.
NETWORKS: dict[str, type[nn.Module]] = {"MeshNet": MeshNet, "LungUNet2D": LungUNet2D}
