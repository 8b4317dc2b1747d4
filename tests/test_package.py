"""Packaging: cheap core imports, the manifest npe2 finds, what a wheel carries."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "torch", "monai")


def _modules_after_import(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    "statement",
    [
        "import napari_medseg.io",
        "import napari_medseg.io.dicom",
        "import napari_medseg.geometry, napari_medseg.volume",
        "import napari_medseg.cli",
    ],
)
def test_core_imports_no_gui_and_no_torch(statement):
    loaded = _modules_after_import(statement)
    assert "napari_medseg" in loaded
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert heavy == [], f"{statement} pulled in {heavy[:5]}"


def test_the_heavy_check_would_catch_an_import():
    loaded = _modules_after_import("import napari_medseg.io, qtpy")
    assert any(m.split(".")[0] in HEAVY for m in loaded)


def test_npe2_finds_the_root_manifest():
    from npe2 import PluginManager, PluginManifest

    manager = PluginManager.instance()
    manager.discover()
    installed = manager.get_manifest("napari-medseg")
    root = PluginManifest.from_file(ROOT / "napari.yaml")
    assert installed.model_dump(exclude={"package_metadata"}) == root.model_dump(
        exclude={"package_metadata"}
    )
    # one file, not two copies kept by hand: the package's manifest links to the root one
    packaged = ROOT / "src" / "napari_medseg" / "napari.yaml"
    assert packaged.is_symlink()
    assert packaged.resolve() == (ROOT / "napari.yaml").resolve()


def test_every_manifest_command_imports():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(ROOT / "napari.yaml")
    manifest.validate_imports()
    names = {c.python_name for c in manifest.contributions.commands}
    assert "napari_medseg._napari.reader:get_reader" in names


@pytest.mark.slow
def test_wheel_carries_manifest_and_samples(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("napari_medseg-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        manifest = archive.read("napari_medseg/napari.yaml").decode()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        entry = archive.read(entry_points).decode()
    assert manifest == (ROOT / "napari.yaml").read_text()
    assert "napari-medseg = napari_medseg:napari.yaml" in entry
    assert "medseg = napari_medseg.cli:main" in entry
    assert "napari_medseg/sample_scans/chest_ct.nii.gz" in names
    assert any(n.startswith("napari_medseg/sample_scans/chest_ct_dicom/") for n in names)
    # the default models travel inside the package: spec, weights and model card
    for model in ("phantom-abdomen-3d", "phantom-abdomen-2d"):
        assert f"napari_medseg/models/default/{model}.json" in names
        assert f"napari_medseg/models/default/{model}.pt" in names
    assert "napari_medseg/models/default/MODEL_CARD.md" in names
    assert "napari_medseg/models/zoo_bundles.json" in names


def test_the_console_entry_point_stays_a_function_once_every_cli_module_is_loaded():
    # a submodule named like the entry point would replace it on the package
    import importlib
    import inspect
    import pkgutil

    import napari_medseg.cli as cli

    for module in pkgutil.iter_modules(cli.__path__):
        if module.name != "__main__":
            importlib.import_module(f"napari_medseg.cli.{module.name}")
    assert inspect.isfunction(cli.main)
