"""The catalogue (listed without torch) and load_model's dispatch on what a reference is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from model_factory import write_threshold_model, write_unet_model

from napari_medseg.models import registry
from napari_medseg.models.errors import ModelLoadError, UnknownModelError
from napari_medseg.models.registry import (
    DEFAULT_MODEL,
    catalogue,
    default_entries,
    find_entry,
    load_model,
    zoo_entries,
)

HEAVY = ("torch", "monai")


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.fixture
def default_dir(tmp_path):
    folder = tmp_path / "default"
    write_unet_model(folder, name="demo-3d", title="Demo 3D", modality="CT")
    write_unet_model(folder, name="demo-2d", spatial_dims=2, roi_size=(16, 16), modality="CT")
    (folder / "metrics.json").write_text(json.dumps({"dice": {"liver": 0.9}}))  # not a spec
    return folder


def test_default_entries_from_a_folder(default_dir):
    entries = {entry.name: entry for entry in default_entries(default_dir)}
    assert set(entries) == {"demo-3d", "demo-2d"}
    entry = entries["demo-3d"]
    assert entry.kind == "default" and entry.title == "Demo 3D" and entry.modality == "CT"
    assert entry.labels == ("class1", "class2") and entry.spatial_dims == 3
    assert Path(entry.location) == default_dir / "demo-3d.json"
    assert entries["demo-2d"].spatial_dims == 2
    assert find_entry("demo-2d", default_dir).name == "demo-2d"
    assert find_entry("nope", default_dir) is None
    assert json.loads(json.dumps(entry.to_dict()))["labels"] == ["class1", "class2"]


def test_catalogue_lists_without_importing_torch(default_dir):
    code = (
        "import sys, json\n"
        "from napari_medseg.models.registry import catalogue\n"
        f"names = [e.name for e in catalogue({str(default_dir)!r})]\n"
        "from napari_medseg.cli.segment import list_models\n"
        "table = list_models()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in %r)\n"
        "print(json.dumps({'names': names, 'heavy': heavy, 'table': table}))\n" % (HEAVY,)
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["heavy"] == []
    assert out["names"][:2] == ["demo-2d", "demo-3d"]
    header = ["NAME", "KIND", "MODALITY", "DIMS", "LICENCE", "LABELS"]
    assert out["table"].splitlines()[0].split() == header


def test_zoo_bundles_are_in_the_catalogue():
    from napari_medseg.models import zoo

    known = [entry.name for entry in zoo.known_bundles()]
    assert known, "the zoo catalogue is empty"
    listed = zoo_entries()
    assert [entry.name for entry in listed] == known
    assert all(entry.kind == "zoo" and entry.version for entry in listed)
    assert [e.name for e in catalogue()][-len(known) :] == known


def test_default_model_names():
    assert DEFAULT_MODEL == "phantom-abdomen-3d"
    assert registry.DEFAULT_MODEL_2D == "phantom-abdomen-2d"


def test_load_by_catalogue_name(default_dir):
    model = load_model("demo-2d", default_dir=default_dir)
    assert model.spec.name == "demo-2d" and model.spec.spatial_dims == 2
    assert model.source == str(default_dir / "demo-2d.json")


def test_load_by_spec_file_and_network_file(tmp_path):
    spec = write_unet_model(tmp_path / "a")
    assert load_model(spec).spec.name == "tiny"
    assert load_model(str(spec)).spec.name == "tiny"
    script = write_threshold_model(tmp_path / "b", suffix=".pt")  # TorchScript named .pt
    model = load_model(script)
    assert model.details["weights"] == str(script.resolve())
    # a state_dict .pt with a sidecar spec of kind monai works the same way
    weights = spec.with_suffix(".pt")
    assert load_model(weights).spec.name == "tiny"


def test_unknown_references(tmp_path, default_dir):
    with pytest.raises(UnknownModelError, match="not a model name in the catalogue") as caught:
        load_model("liver-magic", default_dir=default_dir)
    assert "demo-3d" in str(caught.value) and "medseg models" in str(caught.value)
    with pytest.raises(UnknownModelError, match="not found"):
        load_model(tmp_path / "missing.ts")
    folder = tmp_path / "just-a-folder"
    folder.mkdir()
    with pytest.raises(ModelLoadError, match="not a MONAI bundle"):
        load_model(folder)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ModelLoadError, match="is not a model"):
        load_model(other)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    from bundle_factory import write_spleen_like

    return write_spleen_like(
        tmp_path_factory.mktemp("bundles"),
        channels=(4, 8),
        strides=(2,),
        num_res_units=0,
        roi=(16, 16, 16),
        fit_steps=0,
    )


def test_bundle_folder_needs_trust(bundle_dir):
    from napari_medseg.models.bundle import BundleTrustError

    with pytest.raises(BundleTrustError, match="Python code"):
        load_model(bundle_dir)
    model = load_model(bundle_dir, trust_bundle=True)
    assert model.details.get("kind") == "monai_bundle"
    assert registry.is_bundle_folder(bundle_dir)
