"""Per-label statistics (volume, HU, centroid, box, diameter) against plain numpy and ITK."""

from __future__ import annotations

import math

import numpy as np
import pytest
from geometry_cases import make_affine
from metrics_cases import SPACING, random_blobs
from scipy.spatial.distance import pdist

from napari_medseg.labels.maps import LabelMapError, as_label_array
from napari_medseg.measure.overlap import compare_labels
from napari_medseg.measure.stats import label_statistics
from napari_medseg.measure.surface import max_diameter_mm
from napari_medseg.measure.tally import tally_labels


def numpy_stats(values: np.ndarray) -> dict:
    v = values.astype(np.float64)
    return {
        "voxels": v.size,
        "mean": v.mean(),
        "sd": v.std(ddof=1),
        "median": np.median(v),
        "p5": np.percentile(v, 5),
        "p95": np.percentile(v, 95),
        "min": v.min(),
        "max": v.max(),
    }


@pytest.fixture
def scan():
    rng = np.random.default_rng(11)
    labels = random_blobs((26, 22, 14), 5, seed=12)
    image = rng.integers(-1024, 2000, labels.shape).astype(np.int16)
    affine = make_affine("LPS", spacing=SPACING, origin=(10.0, -20.0, 30.0))
    return labels, image, affine


@pytest.mark.parametrize("kind", ["int16", "float_whole", "float"])
def test_intensity_statistics_equal_numpy_masks(scan, kind):
    labels, image, affine = scan
    if kind == "float_whole":
        image = image.astype(np.float32)  # e.g. a NIfTI with scl_slope: whole-number HU
    elif kind == "float":
        image = image.astype(np.float32) * np.float32(0.37) + np.float32(0.1)
    rows = label_statistics(labels, affine, image, units="HU")
    assert [r.label for r in rows] == sorted(set(np.unique(labels)) - {0})
    for row in rows:
        expected = numpy_stats(image[labels == row.label])
        got = row.intensity
        assert got.units == "HU" and got.excluded_voxels == 0
        for key, value in expected.items():
            assert getattr(got, key) == pytest.approx(value, rel=1e-9, abs=1e-9), key


def test_intensity_statistics_equal_simpleitk(scan):
    sitk = pytest.importorskip("SimpleITK")
    labels, image, affine = scan
    stats = sitk.LabelStatisticsImageFilter()
    stats.Execute(sitk.GetImageFromArray(image), sitk.GetImageFromArray(labels))
    for row in label_statistics(labels, affine, image):
        c = row.label
        assert row.voxels == stats.GetCount(c)
        assert row.intensity.mean == pytest.approx(stats.GetMean(c), rel=1e-12)
        assert row.intensity.sd == pytest.approx(stats.GetSigma(c), rel=1e-9)
        assert (row.intensity.min, row.intensity.max) == (stats.GetMinimum(c), stats.GetMaximum(c))


def test_padding_and_nan_are_left_out_of_intensity_only(scan):
    labels, image, affine = scan
    image = image.copy()
    image[::3] = -2000  # pixel padding
    rows = label_statistics(labels, affine, image, exclude_range=(-2000, -2000))
    for row in rows:
        inside = image[labels == row.label]
        kept = inside[inside != -2000]
        assert row.voxels == inside.size  # the volume counts every voxel
        assert row.intensity.excluded_voxels == inside.size - kept.size > 0
        assert row.intensity.mean == pytest.approx(kept.mean(), rel=1e-12)
        assert row.intensity.min > -2000
    with_nan = image.astype(np.float32)
    with_nan[1::4] = np.nan
    for row in label_statistics(labels, affine, with_nan):
        inside = with_nan[labels == row.label]
        assert row.intensity.voxels == np.count_nonzero(~np.isnan(inside))
        assert row.intensity.median == pytest.approx(np.nanmedian(inside), rel=1e-9)


def test_geometry_equals_direct_computation(scan):
    labels, _, affine = scan
    for row in label_statistics(labels, affine):
        ijk = np.argwhere(labels == row.label)
        assert row.voxels == len(ijk)
        assert row.volume_ml == pytest.approx(len(ijk) * np.prod(SPACING) / 1000, rel=1e-12)
        expected = affine[:3, :3] @ ijk.mean(axis=0) + affine[:3, 3]
        assert np.allclose(row.centroid_ras_mm, expected, atol=1e-9)
        assert row.bbox_ijk == tuple(
            (int(lo), int(hi)) for lo, hi in zip(ijk.min(0), ijk.max(0), strict=True)
        )
        points = ijk @ affine[:3, :3].T
        assert row.diameter_mm == pytest.approx(pdist(points).max(), rel=1e-12)
        touches = (ijk.min(0) == 0).any() or (ijk.max(0) == np.array(labels.shape) - 1).any()
        assert row.touches_border == touches


def test_border_flag_and_empty_requested_label():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[0:3, 4:6, 4:6] = 1  # touches the I = 0 face
    labels[4:6, 4:6, 4:6] = 2
    rows = {r.label: r for r in label_statistics(labels, np.eye(4), which=[1, 2, 9])}
    assert rows[1].touches_border and not rows[2].touches_border
    assert rows[1].volume_ml == pytest.approx(12 / 1000)  # reported, never zeroed
    assert rows[9].voxels == 0 and rows[9].centroid_ras_mm is None
    assert math.isnan(rows[9].diameter_mm) and rows[9].name == "label_9"


def test_names_and_large_label_values():
    labels = np.zeros((6, 6, 6), np.int32)
    labels[1, 1, 1] = 70000
    labels[3:5, 3:5, 3:5] = 1
    rows = label_statistics(labels, np.eye(4), names={70000: "vessel"})
    assert [(r.label, r.name, r.voxels) for r in rows] == [(1, "label_1", 8), (70000, "vessel", 1)]
    labels[0, 0, 0] = 2**30  # beyond the lookup table: found by search
    reference = np.where(labels == 1, 2**30, labels)
    rows = compare_labels(labels, reference, np.eye(4))
    assert [(m.label, m.voxels, m.ref_voxels) for m in rows] == [
        (1, 8, 0),
        (70000, 1, 1),
        (2**30, 1, 9),
    ]


def test_tally_is_the_same_in_both_memory_orders(scan):
    labels, image, _ = scan
    reference = np.roll(labels, 1, axis=0)
    a = tally_labels(labels, reference, image, block_voxels=997)  # many small blocks
    b = tally_labels(
        np.asfortranarray(labels), np.asfortranarray(reference), np.asfortranarray(image)
    )
    assert np.array_equal(a.confusion, b.confusion)
    pairs = zip(a.projections + a.ref_projections, b.projections + b.ref_projections, strict=True)
    for pa, pb in pairs:
        assert np.array_equal(pa, pb)
    direct = np.zeros_like(a.confusion)
    np.add.at(direct, (labels.ravel(), reference.ravel()), 1)
    direct[0, 0] = 0
    assert np.array_equal(a.confusion, direct)


def test_diameter_of_flat_and_tiny_sets():
    # a flat 60 x 50 plate: more points than the brute-force limit, and coplanar
    i, j = np.meshgrid(np.arange(60), np.arange(50), indexing="ij")
    plate = np.stack([i.ravel() * 0.7, j.ravel() * 0.9, np.zeros(i.size)], axis=1)
    assert max_diameter_mm(plate) == pytest.approx(math.hypot(59 * 0.7, 49 * 0.9), rel=1e-12)
    assert max_diameter_mm(plate[:1]) == 0.0
    assert math.isnan(max_diameter_mm(plate[:0]))
    cloud = np.random.default_rng(0).normal(size=(3000, 3))
    assert max_diameter_mm(cloud) == pytest.approx(pdist(cloud).max(), rel=1e-12)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((3, 3, 3), 0.5), "non-integer"),
        (np.full((3, 3, 3), -1, np.int16), "negative"),
        (np.zeros((3, 3)), "3D"),
        (np.full((3, 3, 3), np.nan), "NaN"),
    ],
)
def test_bad_label_maps_are_refused_naming_the_file(array, message):
    with pytest.raises(LabelMapError, match=message) as caught:
        as_label_array(array, "seg.nii.gz")
    assert "seg.nii.gz" in str(caught.value)


def test_whole_number_float_labels_are_accepted():
    array = np.zeros((4, 4, 4), np.float32)
    array[1, 1, 1] = 3.0
    out = as_label_array(array)
    assert out.dtype == np.uint8 and out[1, 1, 1] == 3


@pytest.mark.parametrize("kind", ["float_whole", "float"])
def test_infinite_image_values_are_left_out_like_nan(scan, kind):
    # an overflowed or corrupted voxel must neither crash nor turn mean/SD/p95 into inf/NaN
    labels, image, affine = scan
    image = image.astype(np.float32)
    if kind == "float":
        image = image * np.float32(0.37)
    image[::5, ::2] = np.inf
    image[1::5, ::3] = -np.inf
    for row in label_statistics(labels, affine, image):
        inside = image[labels == row.label]
        kept = inside[np.isfinite(inside)]
        assert row.intensity.excluded_voxels == inside.size - kept.size > 0
        expected = numpy_stats(kept)
        for key, value in expected.items():
            assert getattr(row.intensity, key) == pytest.approx(value, rel=1e-9, abs=1e-9), key


@pytest.mark.parametrize(
    ("labels_dtype", "reference_dtype"),
    [(np.uint64, np.int16), (np.int64, np.uint64), (np.uint64, np.int64)],
)
def test_label_maps_of_mixed_integer_types(labels_dtype, reference_dtype):
    # NIfTI label maps come as any integer type; uint64 and a signed type share none
    labels = random_blobs((12, 10, 8), 3, seed=41)
    reference = np.roll(labels, 1, axis=0)
    expected = compare_labels(labels, reference, np.eye(4))
    for large in (0, 1000, 2**30):  # also through the lookup table and beyond it
        if large > min(np.iinfo(labels_dtype).max, np.iinfo(reference_dtype).max):
            continue
        a = np.where(labels == 3, large or 3, labels.astype(np.int64)).astype(labels_dtype)
        b = np.where(reference == 3, large or 3, reference.astype(np.int64))
        b = b.astype(reference_dtype)
        rows = compare_labels(a, b, np.eye(4))
        assert [m.label for m in rows] == [1, 2, large or 3]
        for got, want in zip(rows, expected, strict=True):
            assert (got.voxels, got.ref_voxels) == (want.voxels, want.ref_voxels)
            assert got.dice == want.dice
