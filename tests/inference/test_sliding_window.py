"""The band-finalising sliding window against MONAI's own ``sliding_window_inference``."""

from __future__ import annotations

import pytest
import torch
from model_factory import tiny_unet
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers import sliding_window_inference as monai_sliding_window
from monai.inferers.utils import _get_scan_interval

from napari_medseg.inference.sliding_window import (
    importance_map,
    plan_windows,
    scan_interval,
    sliding_window_inference,
    stitch_blocks,
)

ROI = (16, 16, 16)


@pytest.fixture(scope="module")
def network():
    return tiny_unet(3, 1, 3, seed=1)


@pytest.mark.parametrize(
    "shape, roi, overlap",
    [
        ((40, 36, 30), (16, 16, 16), 0.25),
        ((40, 36, 30), (16, 12, 10), 0.5),
        ((17, 16, 33), (16, 16, 16), 0.7),
        ((64, 20, 5), (32, 20, 5), 0.25),
        ((9, 9, 200), (8, 8, 1), 0.0),
    ],
)
def test_windows_sit_where_monai_puts_them(shape, roi, overlap):
    plan = plan_windows(shape, roi, overlap, batch_size=3)
    steps = _get_scan_interval(shape, roi, 3, (overlap,) * 3)
    assert scan_interval(shape, roi, (overlap,) * 3) == steps
    expected = sorted(
        tuple(s.start for s in window) for window in dense_patch_slices(shape, roi, steps)
    )
    assert sorted(plan.starts) == expected
    # processing order: by start along the band (last) axis
    assert [s[2] for s in plan.starts] == sorted(s[2] for s in plan.starts)
    assert plan.n_batches == -(-len(expected) // 3)


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
@pytest.mark.parametrize("roi", [(16, 16, 16), (24, 10, 7), (8, 8, 1)])
def test_importance_map_is_monais(mode, roi):
    ours = importance_map(roi, mode, 0.125)
    theirs = compute_importance_map(roi, mode=mode, sigma_scale=0.125)
    assert ours.shape == theirs.shape
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("overlap", [0.25, 0.5])
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_same_output_as_monai_sliding_window_inference(network, overlap, mode):
    torch.manual_seed(3)
    image = torch.randn(1, 1, 40, 36, 30)  # larger than the window in every axis
    with torch.inference_mode():
        theirs = monai_sliding_window(image, ROI, 3, network, overlap=overlap, mode=mode)[0]
        ours = sliding_window_inference(image[0], ROI, 3, network, overlap=overlap, mode=mode)
    assert ours.shape == theirs.shape == (3, 40, 36, 30)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # labels: equal wherever the two best classes are not a float-rounding tie
    top2 = torch.topk(theirs, 2, dim=0).values
    clear = (top2[0] - top2[1]) > 1e-4
    assert torch.equal(ours.argmax(0)[clear], theirs.argmax(0)[clear])
    assert clear.float().mean() > 0.99


@pytest.mark.parametrize("padding_mode", ["constant", "replicate"])
def test_volume_smaller_than_the_window_is_padded_like_monai(network, padding_mode):
    torch.manual_seed(4)
    image = torch.randn(1, 1, 10, 21, 12)  # smaller than 16 along two axes
    with torch.inference_mode():
        theirs = monai_sliding_window(
            image, ROI, 2, network, overlap=0.25, mode="gaussian", padding_mode=padding_mode
        )[0]
        ours = sliding_window_inference(
            image[0], ROI, 2, network, overlap=0.25, padding_mode=padding_mode
        )
    assert ours.shape == (3, 10, 21, 12)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(9, 21, 13), (15, 7, 16), (3, 5, 1)])
@pytest.mark.parametrize("padding_mode", ["constant", "replicate"])
def test_odd_padding_is_split_like_monai(network, shape, padding_mode):
    """An odd shortfall puts the smaller half before the volume, as MONAI does.

    MONAI pads ``diff // 2`` before and the rest after; with only even shortfalls a
    window shifted by one voxel would go unnoticed.
    """
    plan = plan_windows(shape, ROI, 0.25, batch_size=2)
    diffs = [max(r - n, 0) for n, r in zip(shape, ROI, strict=True)]
    assert any(d % 2 for d in diffs)
    assert plan.pad_before == tuple(d // 2 for d in diffs)
    torch.manual_seed(7)
    image = torch.randn(1, 1, *shape)
    with torch.inference_mode():
        theirs = monai_sliding_window(
            image, ROI, 2, network, overlap=0.25, mode="gaussian", padding_mode=padding_mode
        )[0]
        ours = sliding_window_inference(
            image[0], ROI, 2, network, overlap=0.25, padding_mode=padding_mode
        )
    assert ours.shape == (3, *shape)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_blocks_tile_the_volume_and_are_handed_over_early(network):
    """Blocks tile the volume once, and most are handed over while windows still run."""
    image = torch.randn(1, 40, 36, 60)
    plan = plan_windows(image.shape[1:], ROI, 0.25, batch_size=2)
    calls = []

    def predict(windows):
        calls.append(windows.shape[0])
        return network(windows)

    covered = torch.zeros(40, 36, 60, dtype=torch.int32)
    handed_over_at = []
    with torch.inference_mode():
        for region, block in stitch_blocks(image, plan, predict, importance_map(ROI)):
            assert block.shape == (3, *covered[region].shape)
            covered[region] += 1
            handed_over_at.append(len(calls))
    assert bool((covered == 1).all())
    assert handed_over_at == sorted(handed_over_at)
    assert sum(calls) == plan.n_windows and len(calls) == plan.n_batches
    # half of the blocks are done before the last quarter of the batches
    assert handed_over_at[len(handed_over_at) // 2] < 0.75 * plan.n_batches


def test_accumulator_stays_a_fraction_of_the_volume(network):
    """Peak voxels the accumulator holds, from the blocks live after each batch."""
    from napari_medseg.inference import sliding_window as sw

    plan = plan_windows((64, 48, 96), ROI, 0.25, batch_size=2)
    blocks = sw._blocks(plan)
    live, peak = set(), 0
    for batch_index, batch in enumerate(plan.batches()):
        for index in batch:
            r = blocks.covers[index]
            live |= {(a, b, c) for a in r[0] for b in r[1] for c in r[2]}
        voxels = 0
        for a, b, c in live:
            bx, by, bz = blocks.bounds
            voxels += (bx[a + 1] - bx[a]) * (by[b + 1] - by[b]) * (bz[c + 1] - bz[c])
        peak = max(peak, voxels)
        live -= set(blocks.finished_after.get(batch_index, ()))
    assert not live
    # full volume: 294912 voxels; held at most: a slab of window depth, far less
    assert peak <= 64 * 48 * 16 * 1.2
    assert peak < 0.25 * 64 * 48 * 96


def test_batches_may_span_band_positions(network):
    """A batch holding windows of two band positions gives the same result as batch 1."""
    torch.manual_seed(5)
    image = torch.randn(1, 20, 18, 40)
    with torch.inference_mode():
        one = sliding_window_inference(image, ROI, 1, network, overlap=0.5)
        many = sliding_window_inference(image, ROI, 7, network, overlap=0.5)
    torch.testing.assert_close(one, many, rtol=1e-5, atol=1e-6)


def test_plane_windows_equal_monai_2d_per_slice():
    """A (H, W, 1) window sliding over Z is MONAI's 2D sliding window on every slice."""
    network2d = tiny_unet(2, 1, 3, seed=2)
    torch.manual_seed(6)
    image = torch.randn(1, 30, 25, 5)
    with torch.inference_mode():
        ours = sliding_window_inference(
            image,
            (16, 16, 1),
            4,
            lambda w: network2d(w[..., 0])[..., None],
            overlap=(0.25, 0.25, 0),
        )
        for k in range(5):
            theirs = monai_sliding_window(
                image[None, :, :, :, k], (16, 16), 4, network2d, 0.25, mode="gaussian"
            )[0]
            torch.testing.assert_close(ours[..., k], theirs, rtol=1e-5, atol=1e-5)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        plan_windows((10, 10, 10), (4, 4, 4), 1.0, 1)
    with pytest.raises(ValueError, match="batch size"):
        plan_windows((10, 10, 10), (4, 4, 4), 0.25, 0)
    with pytest.raises(ValueError, match="blend mode"):
        importance_map((4, 4, 4), "median")
