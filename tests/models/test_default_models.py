"""The shipped default models: specs, weights, sizes, model card, and held-out Dice."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from napari_medseg.models.spec import ModelSpec
from napari_medseg.synthetic.phantom import (
    LIVER,
    PHANTOM_LABELS,
    RIGHT_KIDNEY,
    SPLEEN,
    make_phantom,
)

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "src" / "napari_medseg" / "models" / "default"
NAMES = ("phantom-abdomen-3d", "phantom-abdomen-2d")
LARGE_ORGANS = ("body", "liver", "spleen", "right kidney", "left kidney")
#: Allowed shortfall against the model card's per-class minimum (rounding, BLAS order).
MARGIN = 0.02


def _spec(name: str) -> ModelSpec:
    return ModelSpec.from_json(DEFAULT_DIR / f"{name}.json")


def _evaluation() -> dict:
    return json.loads((DEFAULT_DIR / "evaluation.json").read_text())["models"]


@pytest.mark.parametrize("name", NAMES)
def test_spec_loads_and_weights_match_their_hash(name):
    spec = _spec(name)
    assert spec.name == name
    assert spec.labels == PHANTOM_LABELS
    assert spec.target_orientation == "RAS" and spec.modality == "CT"
    assert spec.intensity.kind == "scale_range" and spec.activation == "softmax"
    assert spec.network.kind == "monai" and spec.network.name == "UNet"
    assert spec.network.args["out_channels"] == len(PHANTOM_LABELS)
    assert spec.spatial_dims == (3 if name.endswith("3d") else 2)
    if spec.spatial_dims == 2:
        assert spec.target_spacing[2] == 0.0 and spec.slice_axis == 2
    digest = hashlib.sha256(spec.weights_path.read_bytes()).hexdigest()
    assert spec.weights_sha256 == digest
    assert spec.resolve(spec.model_card).is_file()


def test_weights_load_strictly_and_stay_small():
    import torch
    from monai.networks.nets import UNet

    total = 0
    for name in NAMES:
        spec = _spec(name)
        total += spec.weights_path.stat().st_size
        state = torch.load(spec.weights_path, map_location="cpu", weights_only=True)
        network = UNet(**spec.network.args)
        network.load_state_dict(state, strict=True)
    assert total < 20 * 1024 * 1024


def test_catalogue_lists_both_default_models():
    from napari_medseg.models.registry import DEFAULT_MODEL, default_specs

    specs = default_specs()
    assert set(NAMES) <= set(specs)
    assert DEFAULT_MODEL in specs


def test_training_logs_and_card_agree_with_the_evaluation():
    card = (DEFAULT_DIR / "MODEL_CARD.md").read_text()
    evaluation = _evaluation()
    assert set(NAMES) <= set(evaluation)
    for name in NAMES:
        log = json.loads((DEFAULT_DIR / f"{name}.training.json").read_text())
        assert log["weights_sha256"] == _spec(name).weights_sha256
        assert isinstance(log["seed"], int) and log["iterations"] > 0 and log["wall_s"] > 0
        assert "train_default_models.py" in log["command"]
        # evaluation phantoms are disjoint from training and validation phantoms
        first, last = log["train_seeds"]
        assert not set(evaluation[name]["seeds"]) & set(range(first, last + 1))
        assert len(evaluation[name]["seeds"]) >= 20
        for cls in LARGE_ORGANS:
            summary = evaluation[name]["summary"][cls]
            assert f"{summary['mean']:.3f}" in card and f"{summary['min']:.3f}" in card
    assert "not for clinical" in card.lower() or "not clinical" in card.lower()


def _centroid_ras(labels: np.ndarray, affine: np.ndarray, value: int) -> np.ndarray:
    ijk = np.argwhere(labels == value).mean(axis=0)
    return (affine @ np.append(ijk, 1.0))[:3]


def test_3d_model_finds_the_organs_on_the_source_grid():
    """Quick check on a coarse held-out phantom stored LPS: right grid, right anatomy."""
    from napari_medseg.inference.segmenter import Segmenter

    phantom = make_phantom(200_999, spacing=(2.5, 2.5, 4.0), orientation="LPS")
    result = Segmenter(str(DEFAULT_DIR / f"{NAMES[0]}.json"), device="cpu").predict(phantom.image)
    assert result.labels.shape == phantom.labels.shape
    assert np.array_equal(result.affine, phantom.image.affine)
    for value in (LIVER, SPLEEN, RIGHT_KIDNEY):
        truth = _centroid_ras(phantom.labels.array, phantom.labels.affine, value)
        found = _centroid_ras(result.labels, result.affine, value)
        assert np.linalg.norm(truth - found) < 15.0, PHANTOM_LABELS[value].name


@pytest.mark.parametrize("name", NAMES)
def test_held_out_dice_reaches_the_model_card(name):
    """Re-run the two smallest evaluation phantoms: the same Dice as recorded, and at least
    the card's per-class minimum (less a small margin) for the large organs."""
    import sys

    from napari_medseg.inference.segmenter import Segmenter

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from train_default_models import dice_per_class

    evaluation = _evaluation()[name]
    cases = sorted(evaluation["cases"], key=lambda c: int(np.prod(c["shape"])))[:2]
    segmenter = Segmenter(str(DEFAULT_DIR / f"{name}.json"), device="cpu")
    for case in cases:
        phantom = make_phantom(case["seed"])
        result = segmenter.predict(phantom.image)
        dice = dice_per_class(result.labels, phantom.labels.array, len(PHANTOM_LABELS))
        for value, score in dice.items():
            cls = PHANTOM_LABELS[value].name
            recorded = case["dice"][cls]
            if recorded is None or np.isnan(recorded):
                assert np.isnan(score)
                continue
            assert abs(score - recorded) <= 0.01, (case["seed"], cls)
            if cls in LARGE_ORGANS:
                assert score >= evaluation["summary"][cls]["min"] - MARGIN, (case["seed"], cls)
