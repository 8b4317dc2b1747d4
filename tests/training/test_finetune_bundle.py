"""Fine-tuning a MONAI bundle: its own transforms in training and validation, published
as a bundle folder with the new weights, trusted while its configs are unchanged.

The parent is ``tests/bundle_factory.py``'s spleen-like bundle (real MONAI configs:
UNet with batch norm, Spacingd 1.5 x 1.5 x 2 mm, ScaleIntensityRanged -57..164 HU,
sliding window, Invertd + argmax) with random weights; the data are the analytic ball
scans of ``tests/training_factory.py``, the ball labelled ``spleen``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from bundle_factory import write_spleen_like
from training_factory import write_spleen_pairs

from napari_medseg.cli import main


@pytest.fixture
def library(tmp_path, monkeypatch):
    folder = tmp_path / "library"
    monkeypatch.setenv("MEDSEG_MODELS_DIR", str(folder))
    return folder


def test_a_fine_tuned_bundle_is_published_as_a_bundle_and_used_by_name(tmp_path, library, capsys):
    parent = write_spleen_like(tmp_path / "bundles", fit_steps=0, roi=(32, 32, 32))
    write_spleen_pairs(tmp_path / "data", list(range(6)))
    status = main(
        ["finetune", "--model", str(parent), "--trust-bundle", "--data", str(tmp_path / "data"),
         "--name", "spleen-mine", "--epochs", "6", "--steps-per-epoch", "8", "--lr", "0.01",
         "--val-fraction", "0.34", "--device", "cpu", "--patience", "0", "--json"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0, captured.err
    outcome = json.loads(captured.out[captured.out.index("{") :])
    assert outcome["published"], outcome["reason"]
    folder = library / "spleen-mine"
    assert outcome["spec_path"] == str(folder / "configs" / "metadata.json")
    # the parent's files, the new weights, the card, the log and the marker
    for name in ("configs/inference.json", "models/model.pt", "MODEL_CARD.md",
                 "training.json", "medseg_model.json"):  # fmt: skip
        assert (folder / name).is_file(), name
    assert (folder / "configs" / "inference.json").read_bytes() == (
        parent / "configs" / "inference.json"
    ).read_bytes()
    assert (folder / "models" / "model.pt").read_bytes() != (
        parent / "models" / "model.pt"
    ).read_bytes()
    metadata = json.loads((folder / "configs" / "metadata.json").read_text())
    assert metadata["version"].startswith("0.5.9+ft.")
    assert "spleen-mine" in metadata["changelog"][metadata["version"]]

    # listed, trusted as published, and scoring what the run measured
    from napari_medseg.inference.segmenter import Segmenter
    from napari_medseg.io.reader import read_scan
    from napari_medseg.models.registry import catalogue, load_model

    entry = next(e for e in catalogue() if e.name == "spleen-mine")
    assert entry.kind == "user" and entry.labels == ("spleen",)
    loaded = load_model("spleen-mine")
    assert loaded.details["kind"] == "monai_bundle"
    segmenter = Segmenter(loaded, device="cpu")
    dices = []
    log = json.loads((folder / "training.json").read_text())
    for row in (r for r in log["data"] if r["split"] == "validation"):
        truth = read_scan(row["labels"]).array == 1
        found = segmenter.predict(read_scan(row["images"][0])).labels == 1
        dices.append(2 * (truth & found).sum() / (truth.sum() + found.sum()))
    assert float(np.mean(dices)) == pytest.approx(outcome["best_score"]["mean_dice"], abs=1e-3)

    # an edited config is code nobody vetted: trust is asked for again
    inference = folder / "configs" / "inference.json"
    inference.write_text(inference.read_text().replace('"bundle_root": "."', '"bundle_root": "./"'))
    from napari_medseg.models.bundle_config import BundleTrustError

    with pytest.raises(BundleTrustError, match="not trusted"):
        load_model("spleen-mine")
    assert load_model("spleen-mine", trust_bundle=True).details["kind"] == "monai_bundle"


def test_a_bundle_outside_the_catalogue_needs_trust_to_be_fine_tuned(tmp_path, library, capsys):
    parent = write_spleen_like(tmp_path / "bundles", fit_steps=0, roi=(32, 32, 32))
    write_spleen_pairs(tmp_path / "data", [0, 1])
    status = main(["finetune", "--model", str(parent), "--data", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("medseg: error:") == 1
    assert "is not trusted" in err and "would run Python code" in err
