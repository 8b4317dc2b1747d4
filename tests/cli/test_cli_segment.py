"""``medseg segment`` and ``medseg models`` on real files (NIfTI, DICOM), in and out of process."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from geometry_cases import make_affine
from model_factory import write_threshold_model, write_unet_model

from napari_medseg.cli import main
from napari_medseg.cli.common import EXIT_BAD_INPUT
from napari_medseg.io.reader import read_scan
from napari_medseg.synthetic.dicom_series import write_dicom_series

SHAPE = (26, 22, 14)


def medseg_subprocess(*args):
    return subprocess.run(
        [sys.executable, "-m", "napari_medseg.cli", *map(str, args)],
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {
        # labels voxels above 0 HU, on the scan's own grid (exact expectations)
        "threshold": write_threshold_model(folder, level=0.0, target_orientation="RAS"),
        # the same on a 1.5 mm RAS grid (labels resampled back)
        "resampled": write_threshold_model(
            folder,
            level=0.0,
            name="resampled",
            target_orientation="RAS",
            target_spacing=(1.5, 1.5, 1.5),
        ),
        "two_channels": write_unet_model(folder, name="two", in_channels=2, roi_size=(16, 16, 16)),
        # other labels than "threshold": tells two runs' outputs apart
        "high": write_threshold_model(folder, level=300.0, name="high", target_orientation="RAS"),
    }


@pytest.fixture
def ct_nifti(tmp_path):
    affine = make_affine("LPS", spacing=(0.8, 0.9, 2.0), origin=(40.0, 30.0, -60.0))
    rng = np.random.default_rng(0)
    hu = rng.normal(-200, 400, SHAPE).astype(np.int16)
    image = nib.Nifti1Image(hu, affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=2)
    path = tmp_path / "ct.nii.gz"
    nib.save(image, path)
    return path, hu, affine


def test_segment_nifti_writes_labels_on_the_source_grid(ct_nifti, models, tmp_path, capsys):
    path, hu, affine = ct_nifti
    out = tmp_path / "labels.nii.gz"
    code = main(["segment", str(path), "-o", str(out), "--model", str(models["threshold"])])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    written = nib.load(out)
    assert written.shape == SHAPE
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)
    assert int(written.header["qform_code"]) == 1 and int(written.header["sform_code"]) == 2
    assert written.get_data_dtype() == np.uint8
    labels = np.asarray(written.dataobj)
    assert np.array_equal(labels, (hu > 0).astype(np.uint8))
    # one line per label with voxels and mL, and the device/time line
    voxel_ml = 0.8 * 0.9 * 2.0 / 1000
    n = int((hu > 0).sum())
    assert "class1" in captured.out and f"{n} voxels" in captured.out
    assert f"{n * voxel_ml:.2f} mL" in captured.out
    assert "on cpu" in captured.out
    assert "window batches" in captured.err  # plain progress lines: stderr is not a terminal


def test_segment_dicom_folder(models, tmp_path, capsys):
    affine = make_affine("LPS", spacing=(0.7, 0.7, 2.5), origin=(10.0, -20.0, 30.0))
    stored = np.random.default_rng(1).integers(0, 2048, SHAPE).astype(np.int16)
    folder = tmp_path / "dicom"
    write_dicom_series(stored, affine, folder, modality="CT", rescale_intercept=-1024.0)
    out = tmp_path / "labels.nii.gz"
    code = main(["segment", str(folder), "-o", str(out), "--model", str(models["resampled"])])
    assert code == 0, capsys.readouterr().err
    source = read_scan(folder)
    written = nib.load(out)
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-4)
    labels = np.asarray(written.dataobj)
    hu = source.array
    # resampled to 1.5 mm and back: the bulk agrees with the threshold
    assert ((labels > 0) == (hu > 0)).mean() > 0.6
    assert labels.max() == 1


def test_dicom_seg_of_a_dicom_input_references_its_series(models, tmp_path, capsys):
    """--dicom-seg: every SEG frame is the label slice of the source image it references."""
    import highdicom as hd
    import pydicom

    affine = make_affine("RAS", spacing=(0.7, 0.8, 2.5), origin=(10.0, -20.0, 30.0))
    stored = np.random.default_rng(2).integers(0, 2048, SHAPE).astype(np.int16)
    folder = tmp_path / "dicom"
    write_dicom_series(stored, affine, folder, modality="CT", rescale_intercept=-1024.0)
    out, seg_path = tmp_path / "labels.nii.gz", tmp_path / "labels_seg.dcm"
    args = ["segment", str(folder), "-o", str(out), "--model", str(models["threshold"])]
    assert main([*args, "--dicom-seg", str(seg_path)]) == 0, capsys.readouterr().err
    labels = np.asarray(nib.load(out).dataobj)
    seg = hd.seg.segread(seg_path)
    source = read_scan(folder)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.metadata.series_uid
    assert seg.SegmentSequence[0].SegmentLabel == "class1"
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    # which slice each source file holds, from its own position (not from our writer)
    inverse = np.linalg.inv(affine)
    checked = 0
    for path in source.metadata.files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        lps = np.asarray(ds.ImagePositionPatient, dtype=float)
        k = int(round((inverse @ np.append(lps * [-1, -1, 1], 1.0))[2]))
        expected = labels[:, :, k].T  # DICOM rows run along j here (RAS, no transpose)
        if not expected.any():
            continue
        frame = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[ds.SOPInstanceUID], segment_numbers=[1]
        )[0, :, :, 0]
        assert np.array_equal(frame > 0, expected > 0), path
        checked += 1
    assert checked > 0
    # a NIfTI input has no DICOM images to reference: refused before any work
    nifti = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(stored, affine), nifti)
    again = ["segment", str(nifti), "-o", str(tmp_path / "b.nii.gz"), "--model"]
    capsys.readouterr()
    code = main([*again, str(models["threshold"]), "--dicom-seg", str(tmp_path / "b.dcm")])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and "needs a DICOM input" in err
    assert "window batches" not in err and not (tmp_path / "b.nii.gz").exists()  # no work
    # the SEG is an output like the others: kept unless --overwrite
    assert main([*args, "--dicom-seg", str(seg_path), "-o", str(tmp_path / "c.nii.gz")]) == 2


def test_probabilities_and_multichannel(ct_nifti, models, tmp_path, capsys):
    path, hu, affine = ct_nifti
    second = tmp_path / "t2.nii.gz"
    nib.save(nib.Nifti1Image((hu * 0.5).astype(np.float32), affine), second)
    out, probs = tmp_path / "labels.nii.gz", tmp_path / "probs.nii.gz"
    args = ["segment", str(path), str(second), "-o", str(out), "--model"]
    args += [str(models["two_channels"]), "--probabilities", str(probs), "--json", "--tta"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["settings"]["tta"] is True and summary["model"] == "two"
    assert {row["name"] for row in summary["labels"]} == {"class1", "class2"}
    p = nib.load(probs)
    assert p.shape == (*SHAPE, 3) and p.get_data_dtype() == np.float32
    np.testing.assert_allclose(p.affine, affine, atol=1e-5)
    labels = np.asarray(nib.load(out).dataobj)
    assert np.array_equal(np.asarray(p.dataobj).argmax(axis=-1), labels)


def test_refuses_to_overwrite(ct_nifti, models, tmp_path, capsys):
    path, _, _ = ct_nifti
    out = tmp_path / "labels.nii.gz"
    out.write_bytes(b"keep me")
    model = ["--model", str(models["threshold"])]
    assert main(["segment", str(path), "-o", str(out), *model]) == EXIT_BAD_INPUT
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main(["segment", str(path), "-o", str(out), *model, "--overwrite"]) == 0
    assert nib.load(out).shape == SHAPE
    # never over the source scan, even with --overwrite (and --overwrite is not the advice)
    before = path.read_bytes()
    capsys.readouterr()
    assert main(["segment", str(path), "-o", str(path), *model]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "source scan" in err and "--overwrite" not in err and path.read_bytes() == before
    probs = ["--probabilities", str(path)]
    other = tmp_path / "other.nii.gz"
    assert main(["segment", str(path), "-o", str(other), *probs, *model]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "source scan" in err and "--overwrite" not in err and path.read_bytes() == before
    assert not other.exists()
    assert main(["segment", str(path), "-o", str(path), *model, "--overwrite"]) == EXIT_BAD_INPUT
    assert "source scan" in capsys.readouterr().err and path.read_bytes() == before


@pytest.mark.parametrize(
    "problem, args, message",
    [
        ("not a scan", [], "ct.nii.gz"),
        ("unknown model", ["--model", "no-such-model"], "not a model name"),
        ("bad overlap", ["--overlap", "1.5"], "--overlap"),
        ("bad batch", ["--sw-batch-size", "0"], "--sw-batch-size"),
    ],
)
def test_bad_input_exits_2(tmp_path, models, capsys, problem, args, message):
    scan = tmp_path / "ct.nii.gz"
    if problem == "not a scan":
        scan.write_bytes(b"this is not a NIfTI file" * 20)
        args = ["--model", str(models["threshold"])]
    else:
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4)), scan)
    code = main(["segment", str(scan), "-o", str(tmp_path / "out.nii.gz"), *args])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert message in err and err.startswith("medseg: error:") and err.count("\n") == 1
    assert not (tmp_path / "out.nii.gz").exists()


def test_cuda_on_a_machine_without_it(ct_nifti, models, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path, _, _ = ct_nifti
    out = tmp_path / "labels.nii.gz"
    args = ["segment", str(path), "-o", str(out), "--model", str(models["threshold"])]
    assert main([*args, "--device", "cuda"]) == EXIT_BAD_INPUT
    assert "CUDA is not available" in capsys.readouterr().err


def test_untrusted_bundle_exits_2_before_any_work(ct_nifti, tmp_path, capsys):
    path, _, _ = ct_nifti
    bundle = tmp_path / "some_bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "metadata.json").write_text("{}")
    out = tmp_path / "labels.nii.gz"
    assert main(["segment", str(path), "-o", str(out), "--model", str(bundle)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "run Python" in err and "--trust-bundle" in err
    assert not out.exists()


def test_models_command_lists_the_catalogue(capsys):
    assert main(["models", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert isinstance(entries, list)
    assert all({"name", "kind", "modality", "labels", "license"} <= set(e) for e in entries)
    by_name = {e["name"]: e for e in entries}
    # every real model shows its licence and intended use; zoo bundles say "unknown"
    six = (
        "lungs-ct",
        "brain-structures",
        "brain-tissue",
        "brain-regions",
        "skull-strip",
        "brain-mask",
    )
    for name in six:
        assert by_name[name]["license"] == "MIT" and by_name[name]["intended_use"]
    assert by_name["phantom-abdomen-3d"]["license"] == "BSD-3-Clause"
    assert by_name["spleen_ct_segmentation"]["license"] == "unknown"
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    header = ["NAME", "KIND", "MODALITY", "DIMS", "LICENCE", "LABELS"]
    assert table.split()[:6] == header
    lungs = next(line for line in table.splitlines() if line.startswith("lungs-ct "))
    assert " MIT " in lungs
    assert "use: Research lung masks" in table


def test_progress_bar_on_a_terminal():
    import io

    from napari_medseg.cli.segment import _ProgressBar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = _ProgressBar("segment (cpu)", stream)
    for done in range(5):
        bar(done, 4)
    text = stream.getvalue()
    assert text.count("\r") == 5 and text.endswith("\n")
    assert "[" + "#" * 30 + "] 4/4" in text


def test_segment_as_a_user_runs_it(ct_nifti, models, tmp_path):
    """A real ``medseg`` process: exit 0, the file, the summary."""
    path, hu, _ = ct_nifti
    out = tmp_path / "labels.nii.gz"
    result = medseg_subprocess("segment", path, "-o", out, "--model", models["threshold"])
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    assert np.array_equal(np.asarray(nib.load(out).dataobj), (hu > 0).astype(np.uint8))
    again = medseg_subprocess("segment", path, "-o", out, "--model", models["threshold"])
    assert again.returncode == EXIT_BAD_INPUT and "already exists" in again.stderr


@pytest.mark.slow
@pytest.mark.parametrize("key", ["chest_ct", "chest_ct_dicom"])
def test_default_model_on_the_bundled_sample(tmp_path, key):
    """The acceptance run: `medseg segment SAMPLE -o OUT` with the default model."""
    from napari_medseg.samples import sample_path

    sample = sample_path(key)
    out = tmp_path / "labels.nii.gz"
    result = medseg_subprocess("segment", sample, "-o", out, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    source = read_scan(sample)
    written = nib.load(out)
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-4)
    labels = np.asarray(written.dataobj)
    assert labels.dtype == np.uint8 and labels.max() <= 6
    assert (labels == 1).sum() > 0.1 * labels.size  # "body" covers much of a chest CT
    assert "phantom-abdomen-3d" in result.stdout and " mL" in result.stdout


def test_probabilities_of_a_tilted_series_keep_the_labels_geometry(models, tmp_path, capsys):
    """Gantry tilt: the probabilities file gets the labels' qform policy (code 0, exact sform).

    A sheared grid cannot be a qform; with a non-zero qform code ITK-based tools would
    read the shear-stripped qform and misplace the probabilities by centimetres.
    """
    from dicom_factory import write_tilted

    series = write_tilted(tmp_path / "tilted", tilt_deg=20.0)
    out, probs = tmp_path / "labels.nii.gz", tmp_path / "probs.nii.gz"
    args = ["segment", str(series.folder), "-o", str(out), "--probabilities", str(probs)]
    assert main([*args, "--model", str(models["threshold"])]) == 0, capsys.readouterr().err
    labels, probabilities = nib.load(out), nib.load(probs)
    assert int(labels.header["qform_code"]) == 0  # write_nifti's rule for sheared grids
    for key in ("qform_code", "sform_code"):
        assert int(probabilities.header[key]) == int(labels.header[key]), key
    np.testing.assert_allclose(probabilities.header.get_sform(), labels.header.get_sform())
    np.testing.assert_allclose(probabilities.affine, read_scan(series.folder).affine, atol=1e-4)
    assert probabilities.shape == (*labels.shape, 2)


def test_probabilities_and_labels_must_be_two_files(ct_nifti, models, tmp_path, capsys):
    path, _, _ = ct_nifti
    out = tmp_path / "labels.nii.gz"
    args = ["segment", str(path), "-o", str(out), "--probabilities", str(out), "--overwrite"]
    assert main([*args, "--model", str(models["threshold"])]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "two different files" in err and err.count("\n") == 1
    assert not out.exists()


def _misfit_model(folder, case):
    """A model whose spec does not fit its network; returns the spec or network file."""
    import torch

    if case == "monai in_channels":  # the spec feeds 1 channel to a 2-channel U-Net
        spec = write_unet_model(folder, name="misfit", in_channels=2)
        data = json.loads(spec.read_text())
        data["in_channels"] = 1
        spec.write_text(json.dumps(data))
        return spec, spec
    if case == "odd window":  # strides of 2 need an even window: output is 16, not 15
        spec = write_unet_model(folder, name="misfit", roi_size=(15, 15, 15))
        return spec, spec
    # a TorchScript network taking 2 channels, its spec says 1: only running it tells
    path = write_threshold_model(folder, name="misfit")
    torch.jit.script(torch.nn.Conv3d(2, 2, 1)).save(str(path))
    return path, path.with_suffix(".json")


@pytest.mark.parametrize(
    "case, message",
    [
        ("monai in_channels", "network.args in_channels is 2 but the spec's in_channels is 1"),
        ("torchscript in_channels", "to have 2 channels, but got 1 channels instead"),
        ("odd window", "the network returned shape (2, 3, 16, 16, 16)"),
    ],
)
def test_a_network_that_does_not_fit_its_spec_exits_2(tmp_path, capsys, case, message):
    """A spec inconsistent with its network: one line naming the spec, no traceback."""
    model, named = _misfit_model(tmp_path / "m", case)
    scan = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.float32), np.eye(4)), scan)
    out = tmp_path / "out.nii.gz"
    assert main(["segment", str(scan), "-o", str(out), "--model", str(model)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("medseg: error:") and str(named) in err and message in err
    assert not out.exists()


def test_label_names_and_model_travel_to_the_report(ct_nifti, models, tmp_path, capsys):
    """`segment` writes seg.json beside seg.nii.gz; `report` names the labels from it and
    keeps the model in its provenance; the sidecar is never replaced without --overwrite."""
    path, _, _ = ct_nifti
    out = tmp_path / "seg.nii.gz"
    assert main(["segment", str(path), "-o", str(out), "--model", str(models["threshold"])]) == 0
    sidecar = tmp_path / "seg.json"
    content = json.loads(sidecar.read_text())
    spec = json.loads(models["threshold"].with_suffix(".json").read_text())
    assert content["labels"] == {str(c["value"]): c["name"] for c in spec["labels"]}
    assert content["model"]["name"] == spec["name"] and content["source"] == path.name
    assert content["model"]["settings"]["device"] == "cpu"

    report = tmp_path / "report.json"
    assert main(["report", str(out), "-o", str(report)]) == 0
    data = json.loads(report.read_text())
    present = {row["label"]: row["name"] for row in data["labels"]}
    assert present and all(name == content["labels"][str(v)] for v, name in present.items())
    assert data["provenance"]["model"]["name"] == spec["name"]

    out.unlink()  # the labels are gone but their sidecar is still there: keep it
    capsys.readouterr()
    assert main(["segment", str(path), "-o", str(out), "--model", str(models["threshold"])]) == (
        EXIT_BAD_INPUT
    )
    assert "seg.json: already exists" in capsys.readouterr().err
    assert json.loads(sidecar.read_text()) == content


# -- outputs: claimed, written as a set, checked first, never over an input ---------------
@pytest.mark.slow
def test_two_runs_racing_for_one_output_one_wins_and_the_other_says_so(ct_nifti, models, tmp_path):
    """Two real `medseg segment` processes started together, to one output without
    --overwrite: exactly one writes it (its own labels), the other exits 2 saying the
    file exists, and nothing of the loser is left."""
    path, hu, _ = ct_nifti
    for trial in range(3):
        out = tmp_path / f"race{trial}" / "labels.nii.gz"
        runs = {
            name: subprocess.Popen(
                [sys.executable, "-m", "napari_medseg.cli", "segment", str(path), "-o", str(out)]
                + ["--model", str(models[name])],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in ("threshold", "high")
        }
        results = {name: run.communicate(timeout=300) for name, run in runs.items()}
        codes = {name: run.returncode for name, run in runs.items()}
        (winner,) = [name for name, code in codes.items() if code == 0]
        (loser,) = [name for name, code in codes.items() if code != 0]
        assert codes[loser] == EXIT_BAD_INPUT, results[loser][1]
        assert results[loser][1].splitlines()[-1] == (
            f"medseg: error: {out}: already exists; pass --overwrite to replace the labels."
        )
        assert f"wrote {out}" in results[winner][0]
        level = {"threshold": 0.0, "high": 300.0}[winner]
        labels = np.asarray(nib.load(out).dataobj)
        assert np.array_equal(labels, (hu > level).astype(np.uint8)), trial
        assert json.loads(out.with_name("labels.json").read_text())["model"]["name"] == winner
        assert sorted(p.name for p in out.parent.iterdir()) == ["labels.json", "labels.nii.gz"]


LIMITED = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (8000, 8000))
sys.argv = ["medseg", *sys.argv[1:]]
runpy.run_module("napari_medseg.cli", run_name="__main__")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_dicom_seg_that_does_not_fit_leaves_no_file_and_one_line(models, tmp_path):
    """The disk fills up writing the SEG, after the labels and sidecar: one line naming
    the SEG and the reason (no traceback), none of the three files, no temporary file,
    and a rerun is not refused."""
    affine = make_affine("RAS", spacing=(0.7, 0.8, 2.5), origin=(10.0, -20.0, 30.0))
    stored = np.random.default_rng(2).integers(0, 2048, SHAPE).astype(np.int16)
    folder = tmp_path / "dicom"
    write_dicom_series(stored, affine, folder, modality="CT", rescale_intercept=-1024.0)
    outputs = tmp_path / "outputs"
    out, seg = outputs / "labels.nii.gz", outputs / "labels_seg.dcm"
    args = ["segment", folder, "-o", out, "--dicom-seg", seg, "--model", models["threshold"]]
    limited = subprocess.run(
        [sys.executable, "-c", LIMITED, *map(str, args)], capture_output=True, text=True
    )
    assert limited.returncode == EXIT_BAD_INPUT, limited.stderr
    assert limited.stderr.splitlines()[-1] == (
        f"medseg: error: {seg}: cannot be written: File too large. Write it to a file system "
        "(or with limits) that allows larger files."
    )
    assert "Traceback" not in limited.stderr and "With tag" not in limited.stderr
    assert list(outputs.iterdir()) == []
    assert medseg_subprocess(*args).returncode == 0
    assert sorted(p.name for p in outputs.iterdir()) == [
        "labels.json",
        "labels.nii.gz",
        "labels_seg.dcm",
    ]


def test_no_input_is_ever_an_output(ct_nifti, models, tmp_path, capsys):
    """The model's spec and weights are inputs like the scan: never written over, even
    with --overwrite, and refused before any work."""
    import shutil

    path, _, _ = ct_nifti
    model_folder = tmp_path / "model"
    model_folder.mkdir()
    for name in ("threshold.ts", "threshold.json"):
        shutil.copy(models["threshold"].parent / name, model_folder)
    network, spec = model_folder / "threshold.ts", model_folder / "threshold.json"
    before = {p: p.read_bytes() for p in (network, spec, path)}
    cases = [
        # the labels' sidecar would be the TorchScript file's spec
        ["-o", str(model_folder / "threshold.nii.gz"), "--model", str(network)],
        # the same through the spec itself
        ["-o", str(model_folder / "threshold.nii.gz"), "--model", str(spec)],
        # the weights the spec names
        ["-o", str(tmp_path / "a.nii.gz"), "--dicom-seg", str(network), "--model", str(spec)],
        # a file in a bundle-like folder given as the model
        ["-o", str(model_folder / "threshold.nii.gz"), "--model", str(model_folder)],
    ]
    for case in cases:
        assert main(["segment", str(path), *case, "--overwrite"]) == EXIT_BAD_INPUT, case
        err = capsys.readouterr().err
        assert "refusing to write here" in err and err.count("\n") == 1, (case, err)
        assert "input" in err and "source scan" not in err  # a model file or folder
        assert "window batches" not in err  # before the work
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in model_folder.iterdir()) == ["threshold.json", "threshold.ts"]


def test_output_problems_are_found_before_the_work(ct_nifti, models, tmp_path, capsys):
    path, _, _ = ct_nifti
    folder = tmp_path / "folder.nii.gz"
    folder.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    loop = tmp_path / "loop.nii.gz"
    loop.symlink_to(loop.name)
    cases = {
        str(folder): f"{folder}: is a folder. Name a file (inside it, or elsewhere).",
        str(a_file / "out.nii.gz"): f"{a_file / 'out.nii.gz'}: cannot be written: Not a directory.",
        str(loop): f"{loop}: cannot be written: Too many levels of symbolic links.",
    }
    for out, message in cases.items():
        for overwrite in ([], ["--overwrite"]):
            code = main(
                ["segment", str(path), "-o", out, "--model", str(models["threshold"])] + overwrite
            )
            err = capsys.readouterr().err
            assert code == EXIT_BAD_INPUT and err.startswith(f"medseg: error: {message}"), err
            assert err.count("\n") == 1  # refused before reading and segmenting
    # a loop given as the scan: the reader's typed error, not a RuntimeError
    code = main(
        [
            "segment",
            str(loop),
            "-o",
            str(tmp_path / "x.nii.gz"),
            "--model",
            str(models["threshold"]),
        ]
    )
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and err.startswith(f"medseg: error: {loop}"), err


def test_rtstruct_and_seg_nrrd_outputs_hold_the_same_labels(models, tmp_path, capsys):
    """--rtstruct and --seg-nrrd beside the NIfTI: each read back gives its voxels."""
    from napari_medseg.io.nrrd import read_nrrd
    from napari_medseg.io.rtstruct import read_rtstruct

    affine = make_affine("LPS", spacing=(0.7, 0.8, 2.5), origin=(10.0, -20.0, 30.0))
    stored = np.random.default_rng(5).integers(0, 2048, SHAPE).astype(np.int16)
    folder = tmp_path / "dicom"
    write_dicom_series(stored, affine, folder, modality="CT", rescale_intercept=-1024.0)
    out = tmp_path / "labels.nii.gz"
    rt, seg_nrrd = tmp_path / "labels_rt.dcm", tmp_path / "labels.seg.nrrd"
    args = ["segment", str(folder), "-o", str(out), "--model", str(models["threshold"])]
    assert main([*args, "--rtstruct", str(rt), "--seg-nrrd", str(seg_nrrd)]) == 0
    labels = np.asarray(nib.load(out).dataobj)
    assert labels.any()
    source = read_scan(folder)
    np.testing.assert_array_equal(read_rtstruct(rt, source).array, labels)
    back = read_nrrd(seg_nrrd)
    np.testing.assert_array_equal(back.array, labels)
    np.testing.assert_allclose(back.affine, source.affine, atol=1e-5)
    # both reference a DICOM series or need none: an RTSTRUCT of a NIfTI input is refused
    nifti = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(stored, affine), nifti)
    capsys.readouterr()
    code = main(["segment", str(nifti), "-o", str(tmp_path / "b.nii.gz"), "--model",
                 str(models["threshold"]), "--rtstruct", str(tmp_path / "b.dcm")])  # fmt: skip
    assert code == EXIT_BAD_INPUT and "--rtstruct needs a DICOM input" in capsys.readouterr().err
