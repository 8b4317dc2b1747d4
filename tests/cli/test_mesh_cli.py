"""``medseg mesh`` as a user runs it: files named ``<value>_<name>.<format>``, in RAS or
LPS mm, each read back (numpy parsers of tests/io/test_mesh_files.py) and compared with
the label's voxels; the label names from a sidecar, a .seg.nrrd and --names; errors
naming the file with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from geometry_cases import make_affine
from mesh_readers import NUMPY_READERS

from napari_medseg.io.nrrd import write_seg_nrrd
from napari_medseg.io.sidecar import sidecar_content, sidecar_path, write_sidecar
from napari_medseg.labels.mesh import mesh_volume_mm3
from napari_medseg.volume import Volume

SHAPE = (40, 36, 16)
AFFINE = make_affine("LAS", spacing=(0.9, 1.1, 2.5), origin=(40.0, -30.0, -60.0))
CLASSES = {1: ("liver", "#dc6440"), 3: ("left kidney / cortex", "#3cb44b")}


def _labels() -> np.ndarray:
    ijk = np.indices(SHAPE).transpose(1, 2, 3, 0).astype(float)
    array = np.zeros(SHAPE, dtype=np.uint8)
    first = (((ijk - [12, 18, 8]) / [9, 10, 5]) ** 2).sum(-1) <= 1
    second = (((ijk - [30, 15, 7]) / [6, 8, 4]) ** 2).sum(-1) <= 1
    array[first] = 1
    array[second] = 3
    return array


@pytest.fixture
def labels_file(tmp_path):
    path = tmp_path / "seg.nii.gz"
    nib.save(nib.Nifti1Image(_labels(), AFFINE), path)
    write_sidecar(sidecar_path(path), sidecar_content(CLASSES, {}, "ct.nii.gz"))
    return path


def _ras_of_voxels(value: int) -> np.ndarray:
    ijk = np.argwhere(_labels() == value)
    return ijk @ AFFINE[:3, :3].T + AFFINE[:3, 3]


def test_one_file_per_label_named_by_value_and_name_in_ras_mm(run, labels_file, tmp_path):
    out = tmp_path / "meshes"
    result = run("mesh", labels_file, "-o", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["1_liver.stl", "3_left_kidney_cortex.stl"]
    assert "wrote 2 meshes" in result.stdout and "(RAS mm)" in result.stdout
    voxel_mm3 = abs(np.linalg.det(AFFINE[:3, :3]))
    for value, name in ((1, "1_liver.stl"), (3, "3_left_kidney_cortex.stl")):
        vertices, faces = NUMPY_READERS["stl"]((out / name).read_bytes())[:2]
        volume = mesh_volume_mm3(np.asarray(vertices, float), faces)
        assert volume == pytest.approx(np.count_nonzero(_labels() == value) * voxel_mm3, rel=0.02)
        # the mesh lies where the label's voxels are in RAS mm: its extent within a voxel
        # (2.5 mm) of theirs, its middle within 0.5 mm of their centroid (a symmetric shape)
        centres = _ras_of_voxels(value)
        np.testing.assert_allclose(vertices.min(0), centres.min(0), atol=2.5)
        np.testing.assert_allclose(vertices.max(0), centres.max(0), atol=2.5)
        middle = (vertices.min(0) + vertices.max(0)) / 2
        np.testing.assert_allclose(middle, centres.mean(0), atol=0.5)


@pytest.mark.parametrize("fmt", ["obj", "ply", "vtk"])
def test_labels_format_lps_and_smooth(run, labels_file, tmp_path, fmt):
    ras = tmp_path / "ras"
    lps = tmp_path / "lps"
    assert run("mesh", labels_file, "-o", ras, "--labels", "3", "--format", fmt).returncode == 0
    result = run("mesh", labels_file, "-o", lps, "--labels", "3", "--format", fmt, "--lps")
    assert result.returncode == 0, result.stderr
    assert "(LPS mm)" in result.stdout
    name = f"3_left_kidney_cortex.{fmt}"
    assert [p.name for p in lps.iterdir()] == [name]
    v_ras, f_ras = NUMPY_READERS[fmt]((ras / name).read_bytes())[:2]
    v_lps, f_lps = NUMPY_READERS[fmt]((lps / name).read_bytes())[:2]
    np.testing.assert_allclose(v_lps, v_ras * [-1, -1, 1], atol=1e-4)
    np.testing.assert_array_equal(f_lps, f_ras)
    assert mesh_volume_mm3(np.asarray(v_lps, float), f_lps) > 0  # still outward
    # --smooth 0: the raw surface on the voxel boundaries (coordinates on half-voxel steps)
    raw = tmp_path / "raw"
    assert run("mesh", labels_file, "-o", raw, "--labels", "3", "--smooth", "0",
               "--format", fmt).returncode == 0  # fmt: skip
    v_raw = np.asarray(NUMPY_READERS[fmt]((raw / name).read_bytes())[0], float)
    ijk = (v_raw - AFFINE[:3, 3]) @ np.linalg.inv(AFFINE[:3, :3]).T
    assert np.all(np.abs(ijk * 2 - np.round(ijk * 2)) < 1e-3)
    assert not np.allclose(np.sort(v_raw, axis=0), np.sort(np.asarray(v_ras, float), axis=0))


def test_names_from_a_seg_nrrd_and_from_names_file(run, tmp_path):
    seg = tmp_path / "organs.seg.nrrd"
    write_seg_nrrd(seg, Volume(_labels(), AFFINE), {1: ("Liver", "#dc6440"), 3: ("Kidney", "")})
    assert run("mesh", seg, "-o", tmp_path / "a", "--format", "ply").returncode == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["1_Liver.ply", "3_Kidney.ply"]
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"1": "hepar", "3": "ren sinister"}))
    result = run("mesh", seg, "-o", tmp_path / "b", "--names", names)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "1_hepar.stl",
        "3_ren_sinister.stl",
    ]


def test_unnamed_labels_are_label_n(run, tmp_path):
    path = tmp_path / "plain.nii.gz"
    nib.save(nib.Nifti1Image(_labels(), AFFINE), path)
    assert run("mesh", path, "-o", tmp_path / "m").returncode == 0
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1_label_1.stl", "3_label_3.stl"]


def test_existing_files_are_kept_unless_overwrite_all_or_none(run, labels_file, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "3_left_kidney_cortex.stl").write_bytes(b"mine")
    result = run("mesh", labels_file, "-o", out)
    assert result.returncode == 2
    assert "3_left_kidney_cortex.stl: already exists. Pass --overwrite" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["3_left_kidney_cortex.stl"]  # none written
    assert (out / "3_left_kidney_cortex.stl").read_bytes() == b"mine"
    assert run("mesh", labels_file, "-o", out, "--overwrite").returncode == 0
    assert (out / "3_left_kidney_cortex.stl").read_bytes() != b"mine"
    assert sorted(p.name for p in out.iterdir()) == ["1_liver.stl", "3_left_kidney_cortex.stl"]


def test_bad_input_is_one_error_naming_the_file(run, labels_file, tmp_path):
    result = run("mesh", labels_file, "-o", tmp_path / "m", "--labels", "1,7")
    assert result.returncode == 2
    assert f"{labels_file}: holds no voxel of label 7 (the labels it holds: 1, 3)" in result.stderr
    assert not (tmp_path / "m").exists()

    ct = tmp_path / "ct.nii.gz"
    hu = np.random.default_rng(1).integers(-1000, 1500, SHAPE).astype(np.int16)
    nib.save(nib.Nifti1Image(hu, AFFINE), ct)
    result = run("mesh", ct, "-o", tmp_path / "m")
    assert result.returncode == 2
    assert f"{ct}: does not look like a label map" in result.stderr

    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), AFFINE), empty)
    result = run("mesh", empty, "-o", tmp_path / "m")
    assert result.returncode == 2 and f"{empty}: holds no label" in result.stderr

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    result = run("mesh", labels_file, "-o", a_file)
    assert result.returncode == 2 and f"{a_file}: is a file" in result.stderr

    missing = tmp_path / "missing.nii.gz"
    result = run("mesh", missing, "-o", tmp_path / "m")
    assert result.returncode == 2 and str(missing) in result.stderr
    for line in (result.stderr,):
        assert "Traceback" not in line


@pytest.mark.parametrize("bad", [["--labels", "0"], ["--labels", "a,b"], ["--smooth", "-1"],
                                 ["--format", "stp"]])  # fmt: skip
def test_bad_options_are_refused_by_the_parser(labels_file, tmp_path, bad):
    result = subprocess.run(
        [sys.executable, "-m", "napari_medseg.cli", "mesh", str(labels_file), "-o",
         str(tmp_path / "m"), *bad],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "usage: medseg mesh" in result.stderr
    assert not (tmp_path / "m").exists()


def test_mesh_is_listed_in_the_help():
    result = subprocess.run(
        [sys.executable, "-m", "napari_medseg.cli", "mesh", "--help"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    assert "<value>_<name>.<format>" in result.stdout and "--lps" in result.stdout
