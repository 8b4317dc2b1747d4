"""Labels of interpolated scores == the brute force (every class interpolated), except ties.

The brute force interpolates every class onto the target grid (scipy's
``affine_transform(order=1)``, or MONAI's own ``SpatialResample``, which is what a
bundle's ``Invertd`` runs) and then takes the argmax or threshold. The fast functions
may only differ where that decision is a floating-point tie: a voxel whose two best
interpolated scores (or score and threshold) are within ``TIE`` of each other. Every
test counts those ties and asserts that each difference is one of them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from napari_medseg.inference import label_resample
from napari_medseg.inference.label_resample import (
    argmax_of_interpolated,
    threshold_of_interpolated,
)
from napari_medseg.labels.classes import LabelClass
from napari_medseg.resample import grid_transform

#: Two decisions closer than this (in score) are a floating-point tie.
TIE = 1e-9


def brute_force(scores, model_affine, target_shape, target_affine, padding_mode="border"):
    """Every channel interpolated (float64, scipy), ``(K, *target_shape)``."""
    transform = grid_transform(model_affine, target_affine)
    mode = {"border": "nearest", "zeros": "grid-constant"}[padding_mode]
    return np.stack(
        [
            ndimage.affine_transform(
                channel.astype(np.float64),
                transform[:3, :3],
                offset=transform[:3, 3],
                output_shape=tuple(target_shape),
                order=1,
                mode=mode,
                cval=0.0,
            )
            for channel in scores
        ]
    )


def argmax_ties(interpolated):
    """Voxels whose best two interpolated scores are within ``TIE``."""
    if interpolated.shape[0] == 1:
        return np.zeros(interpolated.shape[1:], dtype=bool)
    top = np.sort(interpolated, axis=0)
    return top[-1] - top[-2] < TIE


def assert_equal_but_ties(ours, reference, ties, max_ties):
    differ = ours != reference
    assert not (differ & ~ties).any(), f"{int((differ & ~ties).sum())} differences off ties"
    assert int(ties.sum()) <= max_ties, int(ties.sum())
    return int(differ.sum()), int(ties.sum())


def smooth_scores(rng, classes, shape, sharpness=4.0):
    """Softmax of smooth random logits: regions of every class with soft boundaries."""
    logits = ndimage.gaussian_filter(rng.normal(size=(classes, *shape)), (0, 1.5, 1.5, 1.5))
    logits *= sharpness / logits.std()
    scores = np.exp(logits - logits.max(axis=0))
    return (scores / scores.sum(axis=0)).astype(np.float32)


def affine(linear, origin):
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = origin
    return out


def model_and_scan(rng, oblique, model_shape):
    """A RAS model grid (1.5 x 1.5 x 2 mm) and a scan grid over the same field of view.

    The scan is LPS-like (flipped axes), anisotropic (0.7-1.2 mm in-plane, 2.5 mm slices),
    axes permuted, and with ``oblique`` rotated by up to 25 degrees about every axis; its
    field of view overhangs the model grid's by up to two model voxels on some sides.
    """
    model = affine(np.diag([1.5, 1.5, 2.0]), rng.uniform(-3, 3, 3))
    spacing = np.array([rng.uniform(0.7, 1.2), rng.uniform(0.7, 1.2), 2.5])
    linear = np.diag([-1.0, -1.0, 1.0])[:, [1, 0, 2]] @ np.diag(spacing)
    if oblique:
        linear = Rotation.from_euler("xyz", rng.uniform(-25, 25, 3), degrees=True).as_matrix() @ (
            linear
        )
    extent = (np.array(model_shape) - 1) * np.array([1.5, 1.5, 2.0])
    centre = model[:3, 3] + extent / 2
    shape = tuple(int(n) for n in np.ceil((extent + 6.0) / spacing[[1, 0, 2]]))
    corner = centre - linear @ ((np.array(shape) - 1) / 2)
    return model, shape, affine(linear, corner)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("oblique", [False, True])
@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
def test_argmax_equals_brute_force_on_random_scores(seed, oblique, padding_mode):
    rng = np.random.default_rng(seed)
    classes = (2, 3, 5, 14)[seed]
    model_shape = tuple(int(n) for n in rng.integers(14, 26, 3))
    scores = smooth_scores(rng, classes, model_shape)
    model, shape, scan = model_and_scan(rng, oblique, model_shape)
    interpolated = brute_force(scores, model, shape, scan, padding_mode)
    reference = np.argmax(interpolated, axis=0)
    ours = argmax_of_interpolated(scores, model, shape, scan, padding_mode=padding_mode)
    assert ours.shape == shape and ours.dtype == np.uint8
    ties = argmax_ties(interpolated)
    if padding_mode == "zeros":  # beyond one model voxel out: all zeros, an exact tie
        ties &= interpolated.max(axis=0) > 0
        outside = interpolated.max(axis=0) == 0
        assert (ours[outside] == 0).all()
    assert_equal_but_ties(ours, reference, ties, max_ties=0)
    # a model-grid argmax brought back by nearest neighbour differs: the test can tell
    assert (reference != _nearest_labels(scores, model, shape, scan)).mean() > 0.01


def _nearest_labels(scores, model, shape, scan):
    from napari_medseg.resample import resample_labels

    return resample_labels(np.argmax(scores, axis=0).astype(np.uint8), model, shape, scan)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
def test_argmax_equals_monais_own_inverse_resampling(align_corners, padding_mode):
    """What ``Invertd`` runs for a ``Spacingd``: ``SpatialResample`` (bilinear, float64)."""
    import torch
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    rng = np.random.default_rng(7)
    model_shape = (19, 15, 13)
    scores = smooth_scores(rng, 3, model_shape)
    model, shape, scan = model_and_scan(rng, True, model_shape)
    image = MetaTensor(torch.from_numpy(scores.astype(np.float64)), affine=torch.tensor(model))
    resample = SpatialResample(
        mode="bilinear",
        padding_mode=padding_mode,
        align_corners=align_corners,
        dtype=torch.float64,
    )
    theirs = resample(image, dst_affine=torch.tensor(scan), spatial_size=shape)
    np.testing.assert_allclose(theirs.affine.numpy(), scan, atol=1e-9)
    interpolated = theirs.numpy()
    np.testing.assert_allclose(  # the same interpolation as scipy's, to rounding
        interpolated, brute_force(scores, model, shape, scan, padding_mode), atol=1e-9
    )
    ours = argmax_of_interpolated(scores, model, shape, scan, padding_mode=padding_mode)
    ties = argmax_ties(interpolated) & (interpolated.max(axis=0) > 0)
    assert_equal_but_ties(ours, np.argmax(interpolated, axis=0), ties, max_ties=0)


def test_structured_scores_with_exact_ties_on_a_half_voxel_grid():
    """One-hot-like blocks, a target grid whose voxel centres fall on model voxel centres,
    cell faces and cell centres: many exact 50/50 and 4-way mixes. Only those may differ."""
    model_shape = (12, 10, 8)
    labels = np.zeros(model_shape, dtype=np.int64)
    labels[3:9, 2:7, 2:6] = 1
    labels[5:7, 4:6, 3:5] = 2
    labels[:, :, 7] = 3
    scores = np.full((4, *model_shape), 0.1, dtype=np.float32)
    np.put_along_axis(scores, labels[None], 0.7, axis=0)
    model = affine(np.diag([2.0, 2.0, 3.0]), (0.0, 0.0, 0.0))
    scan = affine(np.diag([1.0, 1.0, 1.5]), (0.0, 0.0, 0.0))  # half the model's spacing
    shape = (23, 19, 15)
    interpolated = brute_force(scores, model, shape, scan)
    reference = np.argmax(interpolated, axis=0)
    ours = argmax_of_interpolated(scores, model, shape, scan)
    ties = argmax_ties(interpolated)
    differ, tied = assert_equal_but_ties(ours, reference, ties, max_ties=ours.size // 4)
    assert tied > 100  # the exact mixes are there
    # on model voxel centres (even target indices) nothing is mixed: the labels themselves
    np.testing.assert_array_equal(ours[::2, ::2, ::2], labels)
    # a tie resolves to a label of its cell, the lower of the tied classes in exact
    # arithmetic (numpy's rule): here the first of the tied pair
    tied_values = interpolated[:, ties]
    best = tied_values.max(axis=0)
    assert all(
        ours[ties][i] in np.flatnonzero(np.abs(tied_values[:, i] - best[i]) < TIE)
        for i in range(int(ties.sum()))
    )
    print(f"structured: {differ} of {tied} ties differ")


def test_edges_single_slice_model_and_one_class():
    rng = np.random.default_rng(3)
    # a one-slice model grid (an axis of size 1): the cell has one corner along it
    scores = smooth_scores(rng, 3, (16, 14, 1))
    model = affine(np.diag([1.5, 1.5, 5.0]), (0, 0, 0))
    scan = affine(np.diag([0.9, 1.1, 1.0]), (-2.0, -1.0, -2.0))  # overhangs every side
    shape = (30, 22, 5)
    interpolated = brute_force(scores, model, shape, scan)
    ours = argmax_of_interpolated(scores, model, shape, scan)
    assert_equal_but_ties(ours, np.argmax(interpolated, axis=0), argmax_ties(interpolated), 0)
    # one class: every voxel is 0
    one = argmax_of_interpolated(scores[:1], model, shape, scan)
    assert not one.any()
    # the same grid: the argmax itself
    same = argmax_of_interpolated(scores, model, scores.shape[1:], model)
    np.testing.assert_array_equal(same, np.argmax(scores, axis=0))


def test_chunks_and_given_labels_do_not_change_the_result():
    rng = np.random.default_rng(5)
    scores = smooth_scores(rng, 4, (18, 16, 12))
    model, shape, scan = model_and_scan(rng, True, scores.shape[1:])
    whole = argmax_of_interpolated(scores, model, shape, scan)
    chunked = argmax_of_interpolated(
        scores, model, shape, scan, chunk_voxels=97, labels=np.argmax(scores, axis=0)
    )
    np.testing.assert_array_equal(whole, chunked)
    with pytest.raises(ValueError, match="not on the scores' grid"):
        argmax_of_interpolated(scores, model, shape, scan, labels=np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="padding_mode"):
        argmax_of_interpolated(scores, model, shape, scan, padding_mode="reflection")


def test_only_voxels_near_a_boundary_are_interpolated(monkeypatch):
    """A sphere: the interpolated voxels are those within one model voxel of its surface."""
    model_shape = (40, 40, 30)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in model_shape], indexing="ij"))
    distance = np.linalg.norm(grid - np.array([20, 20, 15])[:, None, None, None], axis=0)
    inside = 1 / (1 + np.exp(distance - 10.0))
    scores = np.stack([1 - inside, inside]).astype(np.float32)
    model = affine(np.diag([1.5, 1.5, 2.0]), (0, 0, 0))
    scan = affine(np.diag([-0.7, -0.7, 2.5])[:, [1, 0, 2]], (58.0, 58.0, 0.0))
    shape = (84, 84, 24)
    counted = []
    original = label_resample._interpolate

    def counting(scores_, cells, *args):
        counted.append(cells[0].size)
        return original(scores_, cells, *args)

    monkeypatch.setattr(label_resample, "_interpolate", counting)
    ours = argmax_of_interpolated(scores, model, shape, scan)
    interpolated = brute_force(scores, model, shape, scan)
    ties = argmax_ties(interpolated)  # a symmetric sphere on symmetric grids: a few exact
    assert_equal_but_ties(ours, np.argmax(interpolated, axis=0), ties, max_ties=8)
    fraction = sum(counted) / ours.size
    assert 0 < fraction < 0.1, fraction  # a shell around the sphere, not the volume


@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
@pytest.mark.parametrize("threshold", [0.5, 0.0, 0.3])
def test_threshold_equals_brute_force(padding_mode, threshold):
    rng = np.random.default_rng(11)
    scores = smooth_scores(rng, 3, (17, 15, 12))  # three overlapping "sigmoid" channels
    model, shape, scan = model_and_scan(rng, True, scores.shape[1:])
    interpolated = brute_force(scores, model, shape, scan, padding_mode)
    ours = threshold_of_interpolated(
        scores, threshold, model, shape, scan, padding_mode=padding_mode
    )
    assert ours.shape == (3, *shape) and ours.dtype == bool
    ties = np.abs(interpolated - threshold) < TIE
    if threshold == 0.0:  # every interpolated probability is >= 0: all on, except ties
        assert ours[~ties].all()
    assert_equal_but_ties(ours, interpolated >= threshold, ties, max_ties=ours.size)
    if threshold == 0.5:
        assert not ties.any()


# -- the Segmenter decides on the scan grid when a model's details ask for it ----------------


@pytest.fixture(scope="module")
def resampling_model(tmp_path_factory):
    """The pointwise two-class model (logits ``(-x, x)``) on a RAS 1.5 x 1.5 x 2 mm grid,
    so its exact logits on the model grid are known, and an LPS-like oblique scan."""
    from model_factory import write_threshold_model

    from napari_medseg.volume import Volume

    path = write_threshold_model(
        tmp_path_factory.mktemp("resampling"),
        level=0.0,
        target_orientation="RAS",
        target_spacing=(1.5, 1.5, 2.0),
    )
    rng = np.random.default_rng(2)
    linear = Rotation.from_euler("xyz", (8, -5, 12), degrees=True).as_matrix() @ np.diag(
        [-0.8, -0.9, 2.5]
    )
    array = ndimage.gaussian_filter(rng.normal(size=(40, 36, 14)), 2.0).astype(np.float32)
    return path, Volume(array / array.std(), affine(linear, (30.0, 25.0, -10.0)))


def _logits_on_model_grid(model, scan):
    prepared = model.preprocess([scan])
    x = prepared.image[0].numpy().astype(np.float64)
    return np.stack([-x, x]), np.asarray(prepared.affine, dtype=float)


@pytest.mark.parametrize("values", ["softmax", "logits"])
def test_segmenter_takes_the_argmax_of_interpolated_scores(resampling_model, values):
    from napari_medseg.inference.segmenter import Segmenter
    from napari_medseg.models.registry import load_model

    path, scan = resampling_model
    model = load_model(path)
    logits, model_affine = _logits_on_model_grid(model, scan)
    scores = np.exp(logits) / np.exp(logits).sum(axis=0) if values == "softmax" else logits
    interpolated = brute_force(scores, model_affine, scan.shape, scan.affine)
    reference = np.argmax(interpolated, axis=0)
    nearest = Segmenter(model, device="cpu").predict(scan)
    model.details["interpolate"] = {"values": values, "padding_mode": "border"}
    result = Segmenter(model, device="cpu").predict(scan, return_probabilities=True)
    ties = np.abs(interpolated[1] - interpolated[0]) < 1e-5  # float32 network vs float64
    assert_equal_but_ties(result.labels, reference, ties, max_ties=5)
    assert (nearest.labels != reference).mean() > 0.01  # what the labels path gave
    assert result.settings["labels_decided_on"].startswith(f"scan grid, from interpolated {values}")
    # the probabilities asked for are still the softmax, interpolated
    np.testing.assert_allclose(result.probabilities.sum(axis=0), 1.0, atol=1e-5)


@pytest.mark.parametrize("values", ["sigmoid", "logits"])
def test_segmenter_thresholds_interpolated_sigmoids_and_paints_them(resampling_model, values):
    from napari_medseg.inference.segmenter import Segmenter
    from napari_medseg.models.registry import load_model

    path, scan = resampling_model
    model = load_model(path)
    labels = (*model.spec.labels, LabelClass(2, "below"))
    model.spec = dataclasses.replace(
        model.spec, activation="sigmoid", paint_order=((1, 1), (0, 2)), labels=labels
    )
    model.details.update(threshold=0.7, interpolate={"values": values, "padding_mode": "zeros"})
    logits, model_affine = _logits_on_model_grid(model, scan)
    scores = 1 / (1 + np.exp(-logits)) if values == "sigmoid" else logits
    cut = 0.7 if values == "sigmoid" else np.log(0.7 / 0.3)
    interpolated = brute_force(scores, model_affine, scan.shape, scan.affine, "zeros")
    reference = np.zeros(scan.shape, np.uint8)
    reference[interpolated[1] >= cut] = 1
    reference[interpolated[0] >= cut] = 2
    result = Segmenter(model, device="cpu").predict(scan)
    ties = (np.abs(interpolated - cut) < 1e-5).any(axis=0)
    assert_equal_but_ties(result.labels, reference, ties, max_ties=5)
    assert set(np.unique(result.labels)) == {0, 1, 2}
