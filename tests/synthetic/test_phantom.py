"""The synthetic CT phantom: deterministic, varied, and anatomically right in patient space."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_medseg.geometry import orientation_code, voxel_spacing
from napari_medseg.models.preprocess import reorient
from napari_medseg.synthetic.phantom import (
    BODY,
    HU_RANGES,
    LEFT_KIDNEY,
    LIVER,
    PHANTOM_LABELS,
    RIGHT_KIDNEY,
    SPLEEN,
    TUMOUR,
    make_phantom,
)

#: Coarse grid for speed (LR, PA, IS mm); the anatomy does not depend on it.
COARSE = (2.5, 2.5, 4.0)
SEEDS = range(8)


@pytest.fixture(scope="module")
def phantoms():
    return {seed: make_phantom(seed, spacing=COARSE) for seed in SEEDS}


def _centroid_ras(phantom, value: int) -> np.ndarray:
    """Centroid of a label in RAS mm."""
    ijk = np.argwhere(phantom.labels.array == value).mean(axis=0)
    return (phantom.labels.affine @ np.append(ijk, 1.0))[:3]


def test_same_seed_gives_identical_phantom():
    a = make_phantom(11, spacing=COARSE)
    b = make_phantom(11, spacing=COARSE)
    assert np.array_equal(a.image.array, b.image.array)
    assert np.array_equal(a.labels.array, b.labels.array)
    assert np.array_equal(a.image.affine, b.image.affine)
    assert np.array_equal(a.labels.affine, a.image.affine)
    assert a.parameters == b.parameters
    assert a.image.array.dtype == np.int16 and a.labels.array.dtype == np.uint8
    assert a.image.metadata.units == "HU" and a.image.metadata.modality == "CT"


def test_seeds_vary_shape_size_position_hu_noise_spacing_and_order(phantoms):
    params = [p.parameters for p in phantoms.values()]
    for key in (
        "body_semi_axes_mm",
        "body_centre_mm",
        "liver_centre_mm",
        "liver_semi_axes_mm",
        "liver_hu",
        "spleen_hu",
        "kidney_cortex_hu",
        "noise_sd_hu",
        "contrast_phase",
    ):
        assert len({str(p[key]) for p in params}) == len(params), key
    # drawn acquisition (overridden here by COARSE, but recorded): real CT ranges
    drawn = np.array([p["drawn_spacing_mm"] for p in params])
    assert np.all((drawn[:, :2] >= 0.6) & (drawn[:, :2] <= 1.0))
    assert np.all(drawn[:, 0] == drawn[:, 1])
    assert np.all((drawn[:, 2] >= 1.0) & (drawn[:, 2] <= 5.0))
    assert len(set(drawn[:, 2])) >= 3 and len(set(drawn[:, 0])) == len(params)
    assert all(5.0 <= p["noise_sd_hu"] <= 25.0 for p in params)
    # voxel storage order varies, and the affine agrees with the recorded order
    codes = {orientation_code(p.image.affine) for p in phantoms.values()}
    assert len(codes) >= 3
    for phantom in phantoms.values():
        assert orientation_code(phantom.image.affine) == phantom.parameters["orientation"]
    # lesion counts vary, including none
    counts = [len(p["lesions"]) for p in params] + [
        len(make_phantom(s, spacing=(6.0, 6.0, 8.0)).parameters["lesions"]) for s in range(8, 20)
    ]
    assert 0 in counts and max(counts) >= 3
    shapes = {p.image.shape for p in phantoms.values()}
    assert len(shapes) == len(phantoms)


def test_spacing_override_is_honoured_and_keeps_anatomy():
    coarse = make_phantom(5, spacing=(3.0, 3.0, 5.0), orientation="RAS")
    finer = make_phantom(5, spacing=(2.0, 2.0, None), orientation="RAS")
    assert np.allclose(voxel_spacing(coarse.image.affine), (3.0, 3.0, 5.0))
    drawn_slice = finer.parameters["drawn_spacing_mm"][2]
    assert np.allclose(voxel_spacing(finer.image.affine), (2.0, 2.0, drawn_slice))
    for value in (LIVER, SPLEEN, RIGHT_KIDNEY):
        assert np.allclose(_centroid_ras(coarse, value), _centroid_ras(finer, value), atol=3.0)


def test_anatomy_is_in_place_in_patient_space_whatever_the_voxel_order(phantoms):
    for seed, phantom in phantoms.items():
        liver, spleen = _centroid_ras(phantom, LIVER), _centroid_ras(phantom, SPLEEN)
        right, left = _centroid_ras(phantom, RIGHT_KIDNEY), _centroid_ras(phantom, LEFT_KIDNEY)
        spine_x, spine_y = phantom.parameters["spine_centre_mm"]
        # RAS+: x grows towards the patient's right, y towards anterior
        assert liver[0] > spine_x + 20 and spleen[0] < spine_x - 40, seed
        assert right[0] > spine_x + 20 and left[0] < spine_x - 20, seed
        assert right[1] < liver[1] and left[1] < liver[1], seed  # kidneys posterior
        assert spleen[1] < liver[1], seed  # spleen posterior
        assert right[2] < liver[2], seed  # right kidney below the liver
        assert (phantom.labels.array == LIVER).sum() > 3 * (phantom.labels.array == SPLEEN).sum()


@pytest.mark.parametrize("order", ["LPS", "PSR", "IRA"])
def test_voxel_order_changes_only_the_storage(order):
    reference = make_phantom(2, spacing=COARSE, orientation="RAS")
    stored = make_phantom(2, spacing=COARSE, orientation=order)
    assert orientation_code(stored.image.affine) == order
    image, affine = reorient(stored.image.array, stored.image.affine, "RAS")
    labels, _ = reorient(stored.labels.array, stored.labels.affine, "RAS")
    assert np.allclose(affine, reference.image.affine)
    assert np.array_equal(labels, reference.labels.array)
    # the noise is drawn per voxel in RAS order, so the images are identical too
    assert np.array_equal(image, reference.image.array)


def test_labels_cover_every_class(phantoms):
    seen = set()
    for phantom in phantoms.values():
        seen |= set(np.unique(phantom.labels.array).tolist())
    assert seen == {label.value for label in PHANTOM_LABELS}
    assert [label.value for label in PHANTOM_LABELS] == list(range(7))
    assert len({label.color for label in PHANTOM_LABELS}) == 7


def _core_median(phantom, value: int) -> float:
    """Median HU of a label away from its edges (partial volume)."""
    mask = ndimage.binary_erosion(phantom.labels.array == value, iterations=2)
    return float(np.median(phantom.image.array[mask]))


def test_organ_hu_is_within_its_range(phantoms):
    for seed, phantom in phantoms.items():
        p = phantom.parameters
        for key, name in (
            ("liver_hu", "liver"),
            ("spleen_hu", "spleen"),
            ("kidney_cortex_hu", "kidney_cortex"),
        ):
            low, high = HU_RANGES[name]
            assert low <= p[key] <= high, (seed, key)
        assert abs(_core_median(phantom, LIVER) - p["liver_hu"]) < 8.0, seed
        assert abs(_core_median(phantom, SPLEEN) - p["spleen_hu"]) < 8.0, seed
        # kidney: cortex and darker medulla
        core = _core_median(phantom, RIGHT_KIDNEY)
        assert p["kidney_medulla_hu"] - 8 <= core <= p["kidney_cortex_hu"] + 8, seed
        image, labels = phantom.image.array, phantom.labels.array
        background = ndimage.binary_erosion(labels == 0, iterations=3)
        air = image[background]
        assert np.median(air) < -900, seed  # air (the table, when present, is not body)
        body = image[labels == BODY]
        assert body.max() > 400, seed  # the spine is bone, labelled body
        assert np.percentile(body, 5) < -50, seed  # fat rim
        # noise: the spread inside the liver core follows the drawn SD
        core_mask = ndimage.binary_erosion(labels == LIVER, iterations=3)
        spread = np.std(image[core_mask])
        assert 0.7 * p["noise_sd_hu"] < spread < 1.3 * p["noise_sd_hu"] + 6, seed


def test_tumours_lie_in_organs_and_differ_from_liver(phantoms):
    checked = 0
    for seed, phantom in phantoms.items():
        labels = phantom.labels.array
        tumour = labels == TUMOUR
        if not tumour.any():
            continue
        components, n = ndimage.label(tumour)
        for index in range(1, n + 1):
            shell = ndimage.binary_dilation(components == index) & ~tumour
            hosts = set(np.unique(labels[shell]).tolist())
            assert hosts & {LIVER, RIGHT_KIDNEY, LEFT_KIDNEY}, (seed, hosts)
        liver_lesions = [lesion["delta_hu"] for lesion in phantom.parameters["lesions"]]
        assert all(20 <= abs(delta) <= 60 for delta in liver_lesions)
        checked += 1
    assert checked >= 4
