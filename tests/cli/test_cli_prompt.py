"""``medseg prompt``: points and boxes in RAS mm -> a mask on the scan's own grid."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.cli import main
from napari_medseg.cli.common import EXIT_BAD_INPUT

SHAPE = (60, 50, 30)
CENTRE = (28, 22, 14)


def _ras(affine, ijk):
    return ",".join(f"{v:.3f}" for v in (affine @ np.r_[ijk, 1.0])[:3])


@pytest.fixture
def scan(tmp_path):
    """An LPS-stored, anisotropic, slightly oblique NIfTI with a bright ball (12 mm radius)."""
    angle = np.deg2rad(8.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                         [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ rotation @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 3] = [40.0, 30.0, -20.0]
    grid = np.indices(SHAPE).reshape(3, -1).T
    world = grid @ affine[:3, :3].T
    centre = affine[:3, :3] @ np.asarray(CENTRE, float)
    ball = (np.linalg.norm(world - centre, axis=1) < 12.0).reshape(SHAPE)
    rng = np.random.default_rng(1)
    image = np.where(ball, 60.0, -100.0) + rng.normal(0, 8, SHAPE)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(image.astype(np.int16), affine), path)
    return path, affine, ball


def test_a_click_in_ras_mm_makes_the_mask_on_the_scan_grid(scan, tmp_path, capsys):
    path, affine, ball = scan
    out = tmp_path / "mask.nii.gz"
    rc = main(["prompt", str(path), "-o", str(out), "--point", _ras(affine, CENTRE),
               "--method", "threshold", "--value", "3", "--name", "tumour", "--json"])
    assert rc == 0
    saved = nib.load(out)
    assert np.allclose(saved.affine, affine, atol=1e-4)
    mask = np.asarray(saved.dataobj)
    assert set(np.unique(mask)) == {0, 3}
    dice = 2 * ((mask == 3) & ball).sum() / ((mask == 3).sum() + ball.sum())
    assert dice > 0.97
    report = json.loads(capsys.readouterr().out)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    assert report["volume_ml"] == pytest.approx((mask == 3).sum() * voxel_ml)
    sidecar = json.loads(out.with_name("mask.json").read_text())
    assert sidecar["labels"] == {"3": "tumour"}
    assert sidecar["model"]["name"] == "interactive:threshold"
    (step,) = sidecar["model"]["settings"]["prompts"]
    assert np.allclose(step["ras_mm"][0], (affine @ np.r_[CENTRE, 1.0])[:3], atol=1e-3)


def test_prompts_apply_in_the_order_given(scan, tmp_path, capsys):
    path, affine, _ = scan
    where = _ras(affine, CENTRE)
    out = tmp_path / "mask.nii.gz"
    assert main(["prompt", str(path), "-o", str(out), "--method", "threshold", "--json",
                 "--point", where, "--negative", where]) == 0
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert [s["prompt"] for s in steps] == ["point", "negative point"]
    assert steps[0]["voxels"] > 0 and steps[1]["voxels"] == 0
    assert not np.asarray(nib.load(out).dataobj).any()


def test_negative_coordinates_need_no_equals_sign(scan, tmp_path):
    path, affine, _ = scan
    where = _ras(affine, (5, 5, 5))
    assert where.startswith("-") or ",-" in where  # the scan lies partly at negative R/A/S
    out = tmp_path / "mask.nii.gz"
    assert main(["prompt", str(path), "-o", str(out), "--method", "threshold",
                 "--negative", where, "--point", _ras(affine, CENTRE)]) == 0
    assert np.asarray(nib.load(out).dataobj).any()
    # the same after a global option before the sub-command
    assert main(["-v", "prompt", str(path), "-o", str(out), "--method", "threshold",
                 "--overwrite", "--negative", where, "--point", _ras(affine, CENTRE)]) == 0


def test_bad_prompts_are_one_clear_error(scan, tmp_path, capsys):
    path, affine, _ = scan
    out = tmp_path / "mask.nii.gz"
    assert main(["prompt", str(path), "-o", str(out), "--method", "threshold",
                 "--point", "900,0,0"]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "off the scan" in error and "900.0" in error and "Traceback" not in error
    assert path.name in error  # the scan it is off
    assert not out.exists()
    assert main(["prompt", str(path), "-o", str(out)]) == EXIT_BAD_INPUT
    assert "--point" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["prompt", str(path), "-o", str(out), "--point", "1,2"])
    assert exit_info.value.code == 2
    assert "3 comma-separated numbers" in capsys.readouterr().err
    assert main(["prompt", str(path), "-o", str(out), "--method", "sam2",
                 "--point", _ras(affine, CENTRE)]) == EXIT_BAD_INPUT
    assert "--checkpoint" in capsys.readouterr().err


def test_an_existing_output_and_the_scan_itself_are_never_written_over(scan, tmp_path, capsys):
    path, affine, _ = scan
    before = path.read_bytes()
    args = ["--method", "threshold", "--point", _ras(affine, CENTRE)]
    assert main(["prompt", str(path), "-o", str(path), *args]) == EXIT_BAD_INPUT
    assert path.read_bytes() == before
    out = tmp_path / "mask.nii.gz"
    out.write_bytes(b"mine")
    assert main(["prompt", str(path), "-o", str(out), *args]) == EXIT_BAD_INPUT
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"mine"
    assert main(["prompt", str(path), "-o", str(out), *args, "--overwrite"]) == 0
