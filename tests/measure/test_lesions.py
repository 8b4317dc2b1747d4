"""Lesions: connected components against scipy.ndimage.label, and lesion matching."""

from __future__ import annotations

import math

import numpy as np
import pytest
from metrics_cases import SPACING, random_blobs
from scipy import ndimage
from scipy.spatial.distance import pdist

from napari_medseg.labels.components import structure_for
from napari_medseg.measure.lesions import find_lesions, lesion_precision_recall_f1


def tricky_map() -> np.ndarray:
    """Components that touch by a face, an edge or a corner, single voxels, two labels."""
    labels = np.zeros((12, 12, 10), np.uint8)
    labels[1:4, 1:4, 1:4] = 1
    labels[4, 4, 4] = 1  # touches the cube at a corner only
    labels[5, 5, 4] = 1  # touches the previous voxel by an edge only
    labels[5, 6, 4] = 1  # ... and this one by a face
    labels[9, 9, 8] = 1  # alone
    labels[1:4, 4:6, 1:4] = 2  # another label, touching the cube by a face
    labels[8, 1, 1] = 2
    labels[9, 2, 2] = 2  # corner neighbour of the previous one
    labels[10, 2, 2] = 2
    return labels


def scipy_components(mask: np.ndarray, connectivity: int) -> list[tuple[int, tuple]]:
    found, count = ndimage.label(mask, structure=structure_for(connectivity))
    out = []
    for n in range(1, count + 1):
        ijk = np.argwhere(found == n)
        out.append((len(ijk), tuple(np.round(ijk.mean(axis=0), 9))))
    return sorted(out)


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_components_match_scipy_label(connectivity):
    for labels in (tricky_map(), random_blobs((20, 16, 10), 3, seed=7, smooth=1.0)):
        table = find_lesions(labels, np.eye(4), connectivity=connectivity)
        for value in sorted(set(np.unique(labels)) - {0}):
            ours = sorted(
                (les.voxels, tuple(np.round(les.centroid_ras_mm, 9)))
                for les in table.lesions
                if les.label == value
            )
            assert ours == scipy_components(labels == value, connectivity)
        counts = {s.label: s.lesions for s in table.summary}
        assert sum(counts.values()) == len(table.lesions)


def test_connectivity_changes_the_count_as_expected():
    labels = tricky_map()
    count = {c: len(find_lesions(labels, np.eye(4), connectivity=c).lesions) for c in (6, 18, 26)}
    assert count[6] > count[18] > count[26]


def test_lesion_table_values():
    rng = np.random.default_rng(3)
    labels = random_blobs((24, 20, 12), 2, seed=4, smooth=1.2)
    image = rng.integers(-200, 300, labels.shape).astype(np.int16)
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = (5.0, -7.0, 11.0)
    table = find_lesions(labels, affine, image, exclude_range=(-200, -150))
    assert [les.id for les in table.lesions] == list(range(1, len(table.lesions) + 1))
    order = [(les.label, -les.voxels) for les in table.lesions]
    assert order == sorted(order)  # by label, largest first
    found = {v: ndimage.label(labels == v, structure=structure_for(26))[0] for v in (1, 2)}
    for les in table.lesions:
        (i0, i1), (j0, j1), (k0, k1) = les.bbox_ijk
        numbers = np.unique(found[les.label][i0 : i1 + 1, j0 : j1 + 1, k0 : k1 + 1])
        match = [n for n in numbers if n and (found[les.label] == n).sum() == les.voxels]
        mask = found[les.label] == match[0]
        ijk = np.argwhere(mask)
        assert les.volume_ml == pytest.approx(len(ijk) * np.prod(SPACING) / 1000, rel=1e-12)
        points = ijk @ affine[:3, :3].T
        expected = pdist(points).max() if len(ijk) > 1 else 0.0
        assert les.diameter_mm == pytest.approx(expected, rel=1e-12)
        values = image[mask]
        kept = values[values > -150]
        if kept.size:
            assert les.intensity_mean == pytest.approx(kept.mean(), rel=1e-12)
        else:
            assert math.isnan(les.intensity_mean)
        assert les.matches == () and math.isnan(les.best_iou)


def brute_force_matching(labels, reference, value, connectivity, iou_threshold):
    """Lesion matching by the stated rule, with plain loops over scipy's components."""
    structure = structure_for(connectivity)
    mine, n_mine = ndimage.label(labels == value, structure=structure)
    theirs, n_theirs = ndimage.label(reference == value, structure=structure)
    matched_mine, matched_theirs = set(), set()
    for a in range(1, n_mine + 1):
        for b in range(1, n_theirs + 1):
            inter = np.count_nonzero((mine == a) & (theirs == b))
            union = np.count_nonzero((mine == a) | (theirs == b))
            if inter and (iou_threshold is None or inter / union >= iou_threshold):
                matched_mine.add(a)
                matched_theirs.add(b)
    return n_mine, n_theirs, len(matched_mine), len(matched_theirs)


@pytest.mark.parametrize("iou_threshold", [None, 0.3])
@pytest.mark.parametrize("connectivity", [6, 26])
def test_matching_equals_the_rule_by_brute_force(connectivity, iou_threshold):
    labels = random_blobs((22, 18, 10), 2, seed=21, smooth=1.0)
    reference = np.roll(random_blobs((22, 18, 10), 2, seed=21, smooth=1.0), 1, axis=0)
    reference[ndimage.binary_erosion(reference > 0, iterations=1) & (reference == 1)] = 0
    table = find_lesions(
        labels,
        np.eye(4),
        reference=reference,
        connectivity=connectivity,
        iou_threshold=iou_threshold,
    )
    for summary in table.summary:
        n_mine, n_theirs, tp, detected = brute_force_matching(
            labels, reference, summary.label, connectivity, iou_threshold
        )
        assert (summary.lesions, summary.ref_lesions) == (n_mine, n_theirs)
        assert (summary.true_positives, summary.detected) == (tp, detected)
        assert summary.false_positives == n_mine - tp and summary.missed == n_theirs - detected
        precision, recall, f1 = lesion_precision_recall_f1(n_mine, tp, n_theirs, detected)
        assert summary.precision == pytest.approx(tp / n_mine)
        assert summary.recall == pytest.approx(detected / n_theirs)
        assert summary.f1 == pytest.approx(2 * precision * recall / (precision + recall))
    # every match is listed on both sides
    for les in table.lesions:
        for other in les.matches:
            assert les.id in table.ref_lesions[other - 1].matches


def test_split_missed_and_false_positive_lesions():
    reference = np.zeros((20, 20, 8), np.uint8)
    labels = np.zeros_like(reference)
    reference[2:6, 2:6, 2:6] = 1  # A: found
    labels[3:6, 2:6, 2:6] = 1
    reference[10:18, 2:6, 2:6] = 1  # B: found as two halves
    labels[10:13, 2:6, 2:6] = 1
    labels[15:18, 2:6, 2:6] = 1
    reference[2:5, 12:15, 2:5] = 1  # C: missed
    labels[12:15, 12:15, 2:5] = 1  # D: false positive
    table = find_lesions(labels, np.eye(4), reference=reference)
    (s,) = table.summary
    assert (s.lesions, s.ref_lesions, s.detected, s.missed) == (4, 3, 2, 1)
    assert (s.true_positives, s.false_positives) == (3, 1)
    strict = find_lesions(labels, np.eye(4), reference=reference, iou_threshold=0.5)
    (t,) = strict.summary
    assert (t.detected, t.true_positives) == (1, 1)  # the halves have IoU 3/8 < 0.5


def test_lesion_scores_when_a_side_is_empty():
    assert all(math.isnan(v) for v in lesion_precision_recall_f1(0, 0, 0, 0))
    precision, recall, f1 = lesion_precision_recall_f1(3, 0, 0, 0)
    assert precision == 0.0 and math.isnan(recall) and f1 == 0.0
    precision, recall, f1 = lesion_precision_recall_f1(0, 0, 2, 0)
    assert math.isnan(precision) and recall == 0.0 and f1 == 0.0
    with pytest.raises(ValueError, match="6, 18 or 26"):
        structure_for(8)


def test_lesion_means_leave_out_non_finite_values():
    labels = np.zeros((12, 6, 6), np.uint8)
    labels[1:4, 1:4, 1:4] = 1
    labels[7:10, 1:4, 1:4] = 1
    image = np.full(labels.shape, 40.0)
    image[2, 2, 2] = np.inf  # one broken voxel in the first lesion
    image[8, 2, 2] = np.nan
    table = find_lesions(labels, np.eye(4), image)
    assert [les.intensity_mean for les in table.lesions] == [40.0, 40.0]
