"""Overlap and surface-distance metrics against analytic values, MONAI and SimpleITK."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from geometry_cases import make_affine
from metrics_cases import SPACING, grid_around, perturbed, random_blobs, sphere_mask
from scipy import ndimage

from napari_medseg.measure.overlap import compare_labels
from napari_medseg.measure.stats import label_statistics
from napari_medseg.measure.surface import surface_distances

# MONAI's own use of torch.jit warns on import; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def one_hot(labels, n_classes):
    import torch

    tensor = torch.as_tensor(labels.astype(np.int64))
    return torch.nn.functional.one_hot(tensor, n_classes).permute(3, 0, 1, 2)[None].float()


# ------------------------------------------------------------------------ analytic


@pytest.mark.parametrize("spacing", [(0.5, 0.5, 0.5), (0.7, 0.7, 2.5)])
def test_sphere_volume_within_one_percent(spacing):
    radius = 20.0
    shape, affine = grid_around(radius, spacing)
    mask = sphere_mask(shape, affine, (0.0, 0.0, 0.0), radius)
    (stats,) = label_statistics(mask.astype(np.uint8), affine)
    exact_ml = 4.0 / 3.0 * math.pi * radius**3 / 1000.0
    assert stats.volume_ml == pytest.approx(exact_ml, rel=0.01)
    assert stats.voxels * np.prod(spacing) / 1000.0 == pytest.approx(stats.volume_ml, rel=1e-12)
    assert np.allclose(stats.centroid_ras_mm, 0.0, atol=0.05)
    # diameter between voxel centres: at most 2r, at least 2r less one voxel diagonal
    assert 2 * radius - np.linalg.norm(spacing) <= stats.diameter_mm <= 2 * radius
    assert not stats.touches_border


def test_offset_spheres_give_the_lens_dice():
    radius, offset = 20.0, 12.0
    shape, affine = grid_around(radius + offset / 2, (0.5, 0.5, 0.5))
    a = sphere_mask(shape, affine, (-offset / 2, 0.0, 0.0), radius)
    b = sphere_mask(shape, affine, (offset / 2, 0.0, 0.0), radius)
    (metrics,) = compare_labels(a.astype(np.uint8), b.astype(np.uint8), affine, distances=False)
    lens = math.pi * (4 * radius + offset) * (2 * radius - offset) ** 2 / 12.0
    sphere = 4.0 / 3.0 * math.pi * radius**3
    assert metrics.dice == pytest.approx(lens / sphere, rel=0.01)
    assert metrics.iou == pytest.approx(lens / (2 * sphere - lens), rel=0.01)
    assert metrics.volume_diff_pct == pytest.approx(0.0, abs=0.5)


def test_shifted_sphere_distances_are_the_shift():
    # a sphere shifted along x by 4 voxels: every directed distance is at most 4 voxels
    radius, spacing = 10.0, (1.0, 1.0, 1.0)
    shape, affine = grid_around(radius + 4, spacing)
    a = sphere_mask(shape, affine, (0.0, 0.0, 0.0), radius).astype(np.uint8)
    b = np.roll(a, 4, axis=0)
    (m,) = compare_labels(a, b, affine)
    assert m.hd_mm == pytest.approx(4.0, abs=1e-9)  # the poles along x move by exactly 4
    assert 0 < m.assd_mm < m.hd95_mm <= m.hd_mm


def test_oblique_grid_gives_the_same_volume_and_distances():
    rng = np.random.default_rng(5)
    labels = random_blobs((20, 18, 12), 3, seed=1)
    reference = perturbed(labels, seed=2)
    straight = make_affine("LPS", spacing=SPACING)
    oblique = make_affine("LPS", spacing=SPACING, rotation_deg=tuple(rng.uniform(-30, 30, 3)))
    a = compare_labels(labels, reference, straight)
    b = compare_labels(labels, reference, oblique)
    for x, y in zip(a, b, strict=True):
        assert x.volume_ml == pytest.approx(y.volume_ml, rel=1e-12)
        for key in ("hd_mm", "hd95_mm", "assd_mm", "surface_dice", "dice"):
            assert getattr(x, key) == pytest.approx(getattr(y, key), rel=1e-9), key
    # a sphere voxelised on a rotated grid has the analytic volume too
    shape, rotated = grid_around(15.0, (0.6, 0.6, 1.2), rotation=(25.0, -10.0, 40.0))
    sphere = sphere_mask(shape, rotated, (0.0, 0.0, 0.0), 15.0).astype(np.uint8)
    (stats,) = label_statistics(sphere, rotated)
    assert stats.volume_ml == pytest.approx(4 / 3 * math.pi * 15.0**3 / 1000, rel=0.01)


def test_sheared_grid_distances_are_physical():
    # gantry tilt: the K axis leans; distances follow the true voxel positions
    labels = np.zeros((12, 12, 12), np.uint8)
    labels[4:8, 4:8, 4:8] = 1
    reference = np.roll(labels, 2, axis=2)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    affine[1, 2] = 0.5  # each slice is shifted 0.5 mm along y
    (m,) = compare_labels(labels, reference, affine)
    shift = np.linalg.norm(affine[:3, :3] @ [0, 0, 2])  # the true move of the cube
    assert m.hd_mm == pytest.approx(shift, rel=1e-9)
    assert m.volume_ml == pytest.approx(64 * 2.0 / 1000)


# ------------------------------------------------------------------------ references


def test_overlap_matches_monai_and_simpleitk_on_random_maps():
    sitk = pytest.importorskip("SimpleITK")
    from monai.metrics import (
        compute_average_surface_distance,
        compute_dice,
        compute_hausdorff_distance,
        compute_iou,
        compute_surface_dice,
    )

    labels = random_blobs((28, 24, 16), 4, seed=3)
    reference = perturbed(labels, seed=4)
    affine = make_affine("LPS", spacing=SPACING)
    tolerance = 1.5
    ours = {m.label: m for m in compare_labels(labels, reference, affine, tolerance_mm=tolerance)}
    assert sorted(ours) == [1, 2, 3, 4]
    n = 5
    pred, ref = one_hot(labels, n), one_hot(reference, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dice = compute_dice(pred, ref, include_background=False)[0]
        iou = compute_iou(pred, ref, include_background=False)[0]
        hd95 = compute_hausdorff_distance(
            pred, ref, include_background=False, percentile=95, spacing=SPACING
        )[0]
        hd = compute_hausdorff_distance(pred, ref, include_background=False, spacing=SPACING)[0]
        assd = compute_average_surface_distance(
            pred, ref, include_background=False, symmetric=True, spacing=SPACING
        )[0]
        nsd = compute_surface_dice(
            pred, ref, [tolerance] * (n - 1), include_background=False, spacing=SPACING
        )[0]
    # ITK: FalseNegativeError(source S, target T) = |T without S| / |T|
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(sitk.GetImageFromArray(reference), sitk.GetImageFromArray(labels))
    swapped = sitk.LabelOverlapMeasuresImageFilter()
    swapped.Execute(sitk.GetImageFromArray(labels), sitk.GetImageFromArray(reference))
    for c in range(1, n):
        m = ours[c]
        assert m.dice == pytest.approx(float(dice[c - 1]), rel=1e-6)
        assert m.iou == pytest.approx(float(iou[c - 1]), rel=1e-6)
        assert m.dice == pytest.approx(overlap.GetDiceCoefficient(c), rel=1e-12)
        assert m.iou == pytest.approx(overlap.GetJaccardCoefficient(c), rel=1e-12)
        # MONAI works in float32: distances agree to float32 precision
        assert m.hd95_mm == pytest.approx(float(hd95[c - 1]), rel=1e-5)
        assert m.hd_mm == pytest.approx(float(hd[c - 1]), rel=1e-5)
        assert m.assd_mm == pytest.approx(float(assd[c - 1]), rel=1e-5)
        assert m.surface_dice == pytest.approx(float(nsd[c - 1]), rel=1e-6)
        assert m.volume_ml == pytest.approx(m.voxels * np.prod(SPACING) / 1000, rel=1e-12)
        assert m.sensitivity == pytest.approx(1 - swapped.GetFalseNegativeError(c), rel=1e-12)
        assert m.precision == pytest.approx(1 - overlap.GetFalseNegativeError(c), rel=1e-12)


def sitk_hausdorff(a: np.ndarray, b: np.ndarray, spacing) -> float:
    import SimpleITK as sitk

    images = []
    for mask in (a, b):
        image = sitk.GetImageFromArray(mask.astype(np.uint8))
        image.SetSpacing(tuple(float(s) for s in reversed(spacing)))  # numpy axis 0 is z
        images.append(image)
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(*images)
    return hausdorff.GetHausdorffDistance()


@pytest.mark.parametrize("kind", ["dilated", "shifted"])
def test_sample_tumour_against_monai_and_simpleitk(kind):
    pytest.importorskip("SimpleITK")
    from monai.metrics import compute_dice, compute_hausdorff_distance

    from napari_medseg.io import read_scan
    from napari_medseg.samples import sample_path

    volume = read_scan(sample_path("chest_ct_tumour"))
    tumour = (volume.array > 0).astype(np.uint8)
    spacing = tuple(float(s) for s in volume.spacing)
    if kind == "dilated":
        other = ndimage.binary_dilation(tumour, iterations=2).astype(np.uint8)
    else:
        other = np.roll(tumour, (2, -1, 1), axis=(0, 1, 2))
    (m,) = compare_labels(tumour, other, volume.affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred, ref = one_hot(tumour, 2), one_hot(other, 2)
        dice = float(compute_dice(pred, ref, include_background=False)[0, 0])
        hd95 = float(
            compute_hausdorff_distance(
                pred, ref, include_background=False, percentile=95, spacing=spacing
            )[0, 0]
        )
    assert m.dice == pytest.approx(dice, rel=1e-6)
    assert m.hd95_mm == pytest.approx(hd95, rel=1e-5)
    # ITK measures from every voxel (not surface to surface): the maxima agree within
    # the largest voxel size
    assert abs(m.hd_mm - sitk_hausdorff(tumour, other, spacing)) <= max(spacing) + 1e-6
    assert m.volume_ml == pytest.approx(tumour.sum() * np.prod(spacing) / 1000, rel=1e-12)


# ------------------------------------------------------------------------ empty masks


def test_empty_masks_follow_the_stated_conventions():
    labels = np.zeros((8, 8, 8), np.uint8)
    reference = np.zeros_like(labels)
    labels[1:3, 1:3, 1:3] = 1  # only in labels
    reference[5:7, 5:7, 5:7] = 2  # only in the reference
    affine = np.eye(4)
    rows = {m.label: m for m in compare_labels(labels, reference, affine, which=[1, 2, 3])}
    only_labels, only_ref, neither = rows[1], rows[2], rows[3]
    assert only_labels.empty == "reference"
    assert (only_labels.dice, only_labels.iou, only_labels.precision) == (0.0, 0.0, 0.0)
    assert math.isnan(only_labels.sensitivity) and math.isnan(only_labels.volume_diff_pct)
    assert only_labels.hd95_mm == math.inf and only_labels.assd_mm == math.inf
    assert only_labels.surface_dice == 0.0
    assert only_ref.empty == "labels"
    assert (only_ref.dice, only_ref.sensitivity, only_ref.volume_diff_pct) == (0.0, 0.0, -100.0)
    assert math.isnan(only_ref.precision) and only_ref.hd_mm == math.inf
    assert neither.empty == "both" and neither.volume_diff_ml == 0.0
    for key in ("dice", "iou", "sensitivity", "precision", "hd95_mm", "assd_mm", "surface_dice"):
        assert math.isnan(getattr(neither, key)), key


def test_one_sided_empty_distances_are_infinite_as_monai_max():
    from monai.metrics import compute_hausdorff_distance

    labels = np.zeros((8, 8, 8), np.uint8)
    labels[2:5, 2:5, 2:5] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred, ref = one_hot(labels, 2), one_hot(np.zeros_like(labels), 2)
        monai_max = float(compute_hausdorff_distance(pred, ref)[0, 0])
        monai_95 = float(compute_hausdorff_distance(pred, ref, percentile=95)[0, 0])
    (ours,) = compare_labels(labels, np.zeros_like(labels), np.eye(4))
    assert monai_max == ours.hd_mm == ours.hd95_mm == math.inf
    # MONAI's percentile interpolates between infinities and returns NaN; we keep inf
    assert math.isnan(monai_95)


def test_surface_distances_of_identical_masks_are_zero():
    mask = random_blobs((10, 10, 10), 1, seed=9) == 1
    found = surface_distances(mask, mask, np.diag(SPACING))
    assert found.hausdorff() == 0.0 and found.average_symmetric() == 0.0
    assert found.surface_dice(0.0) == 1.0


def test_labels_absent_from_both_maps_are_not_reported_by_default():
    labels = np.zeros((6, 6, 6), np.uint16)
    labels[1, 1, 1] = 300  # a large label value goes through the lookup table
    reference = labels.copy()
    reference[4, 4, 4] = 7
    rows = compare_labels(labels, reference, np.eye(4))
    assert [m.label for m in rows] == [7, 300]
    assert rows[1].dice == 1.0 and rows[0].empty == "labels"


def test_measurement_modules_import_no_torch_monai_or_qt():
    modules = "report, overlap, lesions, stats, tally, surface"
    code = (
        f"import sys, json; from napari_medseg.measure import {modules}; "
        "from napari_medseg.cli import report as cli_report; "
        "from napari_medseg.io import label_names; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy = ("torch", "monai", "napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6")
    loaded = {m.split(".")[0] for m in json.loads(out.stdout)}
    assert "napari_medseg" in loaded
    assert not loaded & set(heavy)


def test_one_sided_empty_surfaces_give_infinite_percentile_hausdorff():
    # the public SurfaceDistances: HD95 of a mask against nothing is inf, as its maximum
    mask = np.zeros((8, 8, 8), bool)
    mask[2:5, 2:5, 2:5] = True
    for found in (
        surface_distances(mask, np.zeros_like(mask), np.eye(3)),
        surface_distances(np.zeros_like(mask), mask, np.eye(3)),
    ):
        assert found.hausdorff() == found.hausdorff(95.0) == math.inf
        assert found.average_symmetric() == math.inf and found.surface_dice(1.0) == 0.0
