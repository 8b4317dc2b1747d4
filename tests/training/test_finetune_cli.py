"""``medseg finetune`` as a user runs it, and the published model used by name by
``medseg models``, ``medseg segment`` and ``medseg batch``; a batch output folder whose
labels were corrected is data for the next fine-tuning."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from training_factory import write_parent, write_saved

from napari_medseg.cli import main


@pytest.fixture
def library(tmp_path, monkeypatch):
    folder = tmp_path / "library"
    monkeypatch.setenv("MEDSEG_MODELS_DIR", str(folder))
    return folder


def test_the_published_model_works_everywhere_by_name(tmp_path, library, capsys):
    parent = write_parent(tmp_path / "parent")
    write_saved(tmp_path / "data", range(6))
    status = main(
        ["finetune", "--model", str(parent), "--data", str(tmp_path / "data"), "--name", "mine",
         "--epochs", "2", "--steps-per-epoch", "6", "--lr", "0.03", "--val-fraction", "0.34",
         "--patch-size", "16", "16", "16", "--device", "cpu"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "epoch 0/2  parent  val Dice" in out and "epoch 2/2  loss" in out
    assert f"published mine: {library / 'mine' / 'mine.json'}" in out
    assert "4 training pairs, 2 held out for validation" in err

    assert main(["models", "--json"]) == 0
    listed = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert listed["mine"]["kind"] == "user" and listed["mine"]["license"] == "MIT"

    scan = tmp_path / "data" / "case0.nii.gz"
    segmented = tmp_path / "seg.nii.gz"
    assert main(["segment", str(scan), "-o", str(segmented), "--model", "mine"]) == 0
    sidecar = json.loads(segmented.with_name("seg.json").read_text())
    assert sidecar["model"]["name"] == "mine"
    capsys.readouterr()

    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for seed in (0, 1, 2):
        (cohort / f"case{seed}.nii.gz").write_bytes(
            (tmp_path / "data" / f"case{seed}.nii.gz").read_bytes()
        )
    out_dir = tmp_path / "batch"
    assert (
        main(["batch", str(cohort), "-o", str(out_dir), "--model", "mine", "--workers", "0"]) == 0
    )
    done = json.loads((out_dir / "case0" / "done.json").read_text())
    assert done["model"]["name"] == "mine" and len(done["model"]["weights_sha256"]) == 64
    assert done["images"] == [str(cohort / "case0.nii.gz")]
    labels = np.asarray(nib.load(out_dir / "case0" / "labels.nii.gz").dataobj)
    assert np.array_equal(labels, np.asarray(nib.load(segmented).dataobj))


def test_a_batch_folder_without_corrections_is_refused_by_name(tmp_path, library, capsys):
    parent = write_parent(tmp_path / "parent")
    cohort = tmp_path / "cohort"
    write_saved(cohort, range(2))
    out_dir = tmp_path / "batch"
    assert (
        main(["batch", str(cohort), "-o", str(out_dir), "--model", str(parent), "--workers", "0"])
        == 0
    )
    capsys.readouterr()
    status = main(["finetune", "--model", str(parent), "--data", str(out_dir), "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("medseg: error:") == 1
    assert f"{out_dir}: holds no (scan, corrected labels) pair" in err
    assert "labels.nii.gz: the model's output, not corrected by hand" in err


def test_options_are_checked_before_any_work(tmp_path, capsys):
    status = main(["finetune", "--model", "x", "--data", str(tmp_path), "--epochs", "0"])
    assert status == 2
    assert "finetune: epochs must be >= 1, got 0." in capsys.readouterr().err
    status = main(["finetune", "--model", "x", "--data", str(tmp_path), "--val-fraction", "1.5"])
    assert "the validation fraction must be in [0, 1), got 1.5" in capsys.readouterr().err
    assert status == 2


def test_a_taken_name_is_refused_before_the_data_is_read(tmp_path, library, capsys):
    """The name is checked first: a user with a large data set is not kept waiting while
    the parent predicts on every pair, only to hear that the name is taken (here the
    data hold no pair at all, which would otherwise be the error)."""
    (library / "mine").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    status = main(
        ["finetune", "--model", str(write_parent(tmp_path / "parent")), "--data",
         str(tmp_path / "empty"), "--name", "mine", "--device", "cpu"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2
    assert f"{library / 'mine'}: exists already" in err and "no (scan" not in err


def test_ctrl_c_keeps_the_best_checkpoint_and_resume_finishes(tmp_path, library):
    """A real SIGINT to `medseg finetune` once epoch 1 is printed: exit status 130,
    nothing published, the checkpoints kept; `--resume` finishes the run."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    parent = write_parent(tmp_path / "parent")
    write_saved(tmp_path / "data", range(4))
    medseg = str(Path(sys.executable).with_name("medseg"))
    command = [
        medseg, "finetune", "--model", str(parent), "--data", str(tmp_path / "data"),
        "--name", "later", "--epochs", "40", "--steps-per-epoch", "40", "--lr", "0.03",
        "--val-fraction", "0.5", "--patch-size", "16", "16", "16", "--device", "cpu",
        "--patience", "0",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("epoch 1/40"):
            process.send_signal(signal.SIGINT)
            break
    out = "".join(lines) + process.stdout.read()
    assert process.wait(timeout=120) == 130, process.stderr.read()[-2000:]
    assert "not published: cancelled after epoch" in out and "--resume continues" in out
    run = library / ".training" / "later"
    assert (run / "state.pt").is_file() and (run / "log.json").is_file()
    assert not (library / "later").exists()

    longer = command.index("--epochs") + 1
    resumed = subprocess.run(
        [*command[:longer], "3", *command[longer + 1 :], "--resume", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming later after epoch 1" in resumed.stderr
    outcome = json.loads(resumed.stdout[resumed.stdout.index("\n{") + 1 :])
    assert [r["epoch"] for r in outcome["history"]] == [0, 1, 2, 3]
    assert outcome["name"] == "later" and not outcome["cancelled"]
