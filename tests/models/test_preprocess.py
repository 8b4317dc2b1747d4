"""prepare_spec_input: reorientation, spacing (field of view kept), intensity transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from geometry_cases import ORIENTATIONS, orientation_affine
from model_factory import labels_for

from napari_medseg.geometry import orientation_code
from napari_medseg.models.preprocess import (
    apply_intensity,
    prepare_spec_input,
    reorient,
    resample_to_spacing,
)
from napari_medseg.models.spec import IntensitySpec, ModelSpec, NetworkSpec
from napari_medseg.volume import Volume

SHAPE = (9, 7, 5)


def spec(**fields) -> ModelSpec:
    values = {
        "name": "p",
        "spatial_dims": 3,
        "in_channels": 1,
        "labels": labels_for(2),
        "network": NetworkSpec("torchscript"),
        "weights": "x.ts",
        "roi_size": (8, 8, 8),
        **fields,
    }
    return ModelSpec(**values)


def ras_of(affine, ijk):
    return affine[:3, :3] @ np.asarray(ijk, float) + affine[:3, 3]


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
@pytest.mark.parametrize("target", ["RAS", "LPS", "PIL"])
def test_reorient_moves_voxels_not_anatomy(name, target):
    affine = orientation_affine(name)
    array = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    view, new_affine = reorient(array, affine, target)
    if name != "oblique_LPS":
        assert orientation_code(new_affine) == target
    # every voxel value sits at the same RAS position as before
    for value in (0, 17, 101, array.size - 1):
        old = np.argwhere(array == value)[0]
        new = np.argwhere(view == value)[0]
        np.testing.assert_allclose(ras_of(affine, old), ras_of(new_affine, new), atol=1e-9)
    assert np.shares_memory(view, array)  # a view, no copy


def test_resampling_keeps_the_field_of_view_and_is_linear():
    affine = orientation_affine("axial_LPS", spacing=(0.8, 0.9, 2.5))
    i = np.arange(20, dtype=np.float32)
    ramp = np.broadcast_to(i[:, None, None] * 3.0 + 1.0, (20, 12, 8)).copy()
    image = torch.from_numpy(ramp)[None]
    out, new_affine = resample_to_spacing(image, affine, (2.0, 1.8, 0.0))
    assert tuple(out.shape[1:]) == (8, 6, 8)  # round(20*0.8/2), round(12*0.9/1.8), kept
    # the grids' outer edges (voxel -0.5 and n-0.5) coincide in mm
    for corner in ([-0.5, -0.5, -0.5], [19.5, 11.5, 7.5]):
        new_corner = (np.array(corner) + 0.5) * np.array([8 / 20, 6 / 12, 1]) - 0.5
        np.testing.assert_allclose(ras_of(affine, corner), ras_of(new_affine, new_corner))
    # linear interpolation of a ramp is the ramp at the new centres (x = (i'+0.5)*n/n' - 0.5)
    x = (np.arange(8) + 0.5) * 20 / 8 - 0.5
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), x * 3.0 + 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.sqrt((new_affine[:3, :3] ** 2).sum(0)), [2.0, 1.8, 2.5])


def test_intensity_transforms_match_monai():
    from monai.transforms import NormalizeIntensity, ScaleIntensityRange

    rng = np.random.default_rng(0)
    data = rng.normal(0, 300, (2, 6, 5, 4)).astype(np.float32)
    data[:, :2] = 0
    scale = IntensitySpec("scale_range", a_min=-175, a_max=250, b_min=0, b_max=1, clip=True)
    ours = apply_intensity(torch.from_numpy(data.copy()), scale)
    theirs = ScaleIntensityRange(-175, 250, 0, 1, clip=True)(torch.from_numpy(data.copy()))
    torch.testing.assert_close(ours, torch.as_tensor(theirs), rtol=1e-5, atol=1e-6)
    for nonzero in (False, True):
        for channel_wise in (False, True):
            normalize = IntensitySpec("normalize", nonzero=nonzero, channel_wise=channel_wise)
            ours = apply_intensity(torch.from_numpy(data.copy()), normalize)
            theirs = NormalizeIntensity(nonzero=nonzero, channel_wise=channel_wise)(
                torch.from_numpy(data.copy())
            )
            torch.testing.assert_close(ours, torch.as_tensor(theirs), rtol=1e-4, atol=1e-4)


def test_prepare_spec_input_end_to_end():
    affine = orientation_affine("axial_LPS", spacing=(0.8, 0.9, 2.5))
    array = np.random.default_rng(1).normal(0, 100, (20, 12, 8)).astype(np.float32)
    model_spec = spec(
        target_orientation="RAS",
        target_spacing=(1.6, 1.8, 2.5),
        intensity=IntensitySpec("scale_range", a_min=-100, a_max=100, b_min=0, b_max=1),
    )
    prepared = prepare_spec_input(model_spec, [Volume(array, affine)])
    assert prepared.image.dtype == torch.float32 and tuple(prepared.image.shape) == (1, 10, 6, 8)
    assert orientation_code(prepared.affine) == "RAS"
    assert float(prepared.image.min()) >= 0 and float(prepared.image.max()) <= 1


def test_channel_count_and_grid_are_checked():
    affine = np.eye(4)
    a = Volume(np.zeros(SHAPE, np.float32), affine)
    with pytest.raises(ValueError, match="takes 2 input channel"):
        prepare_spec_input(spec(in_channels=2, channel_names=("t1", "t2")), [a])
    b = Volume(np.zeros(SHAPE, np.float32), affine @ np.diag([2.0, 1, 1, 1]))
    with pytest.raises(ValueError, match="one voxel grid"):
        prepare_spec_input(spec(in_channels=2), [a, b])
