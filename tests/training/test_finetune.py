"""``medseg finetune``: a tiny real MONAI UNet fine-tuned on real files.

The data are analytic shapes written as napari's Save widget writes corrected labels
(``tests/training_factory.py``). The parent is a tiny UNet
with seeded random weights (``tests/model_factory.py``), so a few epochs of training
make it measurably better, and a learning rate of 1e-12 leaves it as it was.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from training_factory import AFFINE, CLASSES, shapes_case, write_parent, write_saved

from napari_medseg.errors import FileError, MedsegError
from napari_medseg.io.save import SaveTargets, save_segmentation
from napari_medseg.training.settings import FinetuneSettings


@pytest.fixture
def parent(tmp_path) -> Path:
    return write_parent(tmp_path / "parent")


@pytest.fixture
def data(tmp_path) -> Path:
    write_saved(tmp_path / "data", range(6))
    return tmp_path / "data"


def settings_for(parent, data, library, **changes) -> FinetuneSettings:
    """Settings of a short run; its patches (16 x 16 x 24) are deeper than the scans (20
    slices), so the cases are padded as the sliding window pads."""
    values = dict(
        model=str(parent), data=str(data), out=str(library), name="tiny-ft", epochs=3,
        steps_per_epoch=6, batch_size=2, val_fraction=0.34, patch_size=(16, 16, 24),
        lr=3e-2, device="cpu", seed=0, patience=0,
    )  # fmt: skip
    values.update(changes)
    return FinetuneSettings(**values)


def independent_dice(model: str, pairs: list[dict]) -> float:
    """Mean over classes of the mean Dice over ``pairs``, by plain numpy on the files."""
    import nibabel as nib

    from napari_medseg.inference.segmenter import Segmenter
    from napari_medseg.io.reader import read_scan

    segmenter = Segmenter(model, device="cpu")
    per_class: dict[int, list[float]] = {1: [], 2: []}
    for row in pairs:
        truth = np.asarray(nib.load(row["labels"]).dataobj)
        labels = segmenter.predict(read_scan(row["images"][0])).labels
        for value in per_class:
            a, b = labels == value, truth == value
            if a.any() or b.any():
                per_class[value].append(2 * (a & b).sum() / (a.sum() + b.sum()))
    return float(np.mean([np.mean(v) for v in per_class.values()]))


def test_a_better_model_is_published_with_its_card_and_used_by_name(
    parent, data, tmp_path, monkeypatch
):
    from napari_medseg.models.registry import catalogue, load_model
    from napari_medseg.training.finetune import run_finetune

    library = tmp_path / "library"
    monkeypatch.setenv("MEDSEG_MODELS_DIR", str(library))
    records = []
    outcome = run_finetune(settings_for(parent, data, library), on_epoch=records.append)

    assert [r.epoch for r in records] == [0, 1, 2, 3]
    assert outcome.published, outcome.reason
    parent_mean = outcome.parent_score["mean_dice"]
    best_mean = outcome.best_score["mean_dice"]
    assert best_mean > parent_mean + 0.1  # random weights -> learnt shapes
    folder = library / "tiny-ft"
    assert sorted(p.name for p in folder.iterdir()) == [
        "MODEL_CARD.md", "tiny-ft.json", "tiny-ft.pt", "training.json",
    ]  # fmt: skip
    spec = json.loads((folder / "tiny-ft.json").read_text())
    assert spec["license"] == "MIT" and spec["intended_use"] == "tests only"
    card = (folder / "MODEL_CARD.md").read_text()
    assert "Fine-tuned from **tiny**" in card and "MIT" in card
    assert f"| **mean** | {parent_mean:.4f} | {best_mean:.4f} |" in card
    log = json.loads((folder / "training.json").read_text())
    validation = [row for row in log["data"] if row["split"] == "validation"]
    assert len(validation) == 2 and len(log["data"]) == 6
    assert all(len(row["labels_sha256"]) == 64 for row in log["data"])

    # listed by the catalogue, loadable by name, and scoring what its card says
    entry = next(e for e in catalogue() if e.name == "tiny-ft")
    assert entry.kind == "user" and entry.labels == ("class1", "class2")
    assert load_model("tiny-ft").spec.weights_sha256 == spec["weights_sha256"]
    assert independent_dice("tiny-ft", validation) == pytest.approx(best_mean, abs=1e-3)
    assert independent_dice(str(parent), validation) == pytest.approx(parent_mean, abs=1e-3)


def test_a_model_that_does_not_beat_its_parent_is_not_published(parent, data, tmp_path):
    from napari_medseg.training.finetune import run_finetune

    library = tmp_path / "library"
    outcome = run_finetune(settings_for(parent, data, library, lr=1e-12, epochs=2))
    assert not outcome.published
    assert "no epoch beat the parent" in outcome.reason
    assert outcome.best_epoch == 0
    assert not (library / "tiny-ft").exists()
    # the run's files stay for inspection
    assert (library / ".training" / "tiny-ft" / "log.json").is_file()


def test_resume_after_cancel_continues_exactly(parent, data, tmp_path):
    from napari_medseg.training.finetune import run_finetune

    whole = run_finetune(settings_for(parent, data, tmp_path / "a"))
    cancel = threading.Event()

    def stop_after_first(record):
        if record.epoch == 1:
            cancel.set()

    settings = settings_for(parent, data, tmp_path / "b")
    first = run_finetune(settings, on_epoch=stop_after_first, cancel=cancel)
    assert first.cancelled and not first.published and first.epochs_run == 1
    assert "--resume" in first.reason
    run_dir = Path(first.run_dir)
    assert (run_dir / "state.pt").is_file() and (run_dir / "best.pt").is_file()

    resumed = run_finetune(settings, resume=True)
    assert resumed.name == first.name and resumed.published
    assert [r["epoch"] for r in resumed.history] == [0, 1, 2, 3]
    losses = [r["loss"] for r in resumed.history[1:]]
    assert losses == pytest.approx([r["loss"] for r in whole.history[1:]], rel=1e-4)
    assert resumed.best_score["mean_dice"] == pytest.approx(whole.best_score["mean_dice"], abs=1e-4)

    with pytest.raises(MedsegError, match="no unfinished run"):
        run_finetune(settings, resume=True)


@pytest.mark.slow
def test_two_gloo_processes_learn_as_one(parent, data, tmp_path):
    """DDP through torchrun: 2 processes with a batch of 1 each, Dice per patch, see the
    same patches as 1 process with a batch of 2, so the loss curves agree closely."""
    import subprocess
    import sys

    medseg = str(Path(sys.executable).with_name("medseg"))

    def run(nproc: int, batch: int, library: Path) -> dict:
        command = [
            medseg, "finetune", "--model", str(parent), "--data", str(data), "-o", str(library),
            "--name", "tiny-ft", "--epochs", "3", "--steps-per-epoch", "6",
            "--batch-size", str(batch), "--val-fraction", "0.34", "--patch-size", "16", "16", "16",
            "--lr", "0.03", "--device", "cpu", "--patience", "0", "--dice-per-patch",
            "--nproc", str(nproc), "--json",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout[done.stdout.index("{") :])

    one = run(1, 2, tmp_path / "one")
    two = run(2, 1, tmp_path / "two")
    assert two["published"] and one["published"]
    log = json.loads((tmp_path / "two" / "tiny-ft" / "training.json").read_text())
    assert log["processes"] == 2 and log["steps_per_epoch"] == 6
    losses_one = [r["loss"] for r in one["history"][1:]]
    losses_two = [r["loss"] for r in two["history"][1:]]
    assert losses_one[-1] < losses_one[0]  # it learns
    assert losses_two == pytest.approx(losses_one, rel=1e-3)
    assert two["best_score"]["mean_dice"] == pytest.approx(one["best_score"]["mean_dice"], abs=5e-3)


# -- bad input ---------------------------------------------------------------------------
def test_bad_data_folders_give_one_clear_error(parent, tmp_path):
    from napari_medseg.training.finetune import run_finetune

    library = tmp_path / "library"
    with pytest.raises(FileError, match="does not exist"):
        run_finetune(settings_for(parent, tmp_path / "nowhere", library))

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileError, match="holds no .scan, corrected labels. pair"):
        run_finetune(settings_for(parent, empty, library))

    # model outputs nobody corrected are skipped, and said so
    untouched = tmp_path / "untouched"
    write_saved(untouched, range(3), model={"name": "tiny", "settings": {}})
    with pytest.raises(FileError, match="not corrected by hand"):
        run_finetune(settings_for(parent, untouched, library))

    # a class the model does not have
    odd = tmp_path / "odd"
    written = write_saved(odd, range(3))
    import nibabel as nib

    image = nib.load(written[1])
    array = np.asarray(image.dataobj).copy()
    array[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(array, image.affine), written[1])
    with pytest.raises(FileError, match=r"case1_labels.nii.gz: has label values \[7\]"):
        run_finetune(settings_for(parent, odd, library, val_fraction=0.5))

    # names that clash with the model's
    renamed = tmp_path / "renamed"
    write_saved(renamed, range(3), classes={**CLASSES, 2: ("kidney", "#00ff00")})
    with pytest.raises(FileError, match="2 is 'kidney' here but 'class2'"):
        run_finetune(settings_for(parent, renamed, library, val_fraction=0.5))

    # one pair cannot be split
    single = tmp_path / "single"
    write_saved(single, [0])
    with pytest.raises(FileError, match="at least 2 are needed"):
        run_finetune(settings_for(parent, single, library))
    assert not library.exists() or not any((library / ".training").glob("*/state.pt"))


def test_labels_off_the_scan_grid_and_bad_csvs_are_named(parent, tmp_path):
    from napari_medseg.training.finetune import run_finetune

    library = tmp_path / "library"
    folder = tmp_path / "shifted"
    written = write_saved(folder, range(3))
    import nibabel as nib

    moved = nib.load(written[0])
    affine = moved.affine.copy()
    affine[0, 3] += 4.0
    nib.save(nib.Nifti1Image(np.asarray(moved.dataobj), affine), written[0])
    rows = "\n".join(f"{p.name.replace('_labels', '')},{p.name}" for p in written)
    (folder / "pairs.csv").write_text("image,labels\n" + rows + "\n")
    with pytest.raises(FileError, match="case0_labels.nii.gz: is not on the grid of its scan"):
        run_finetune(settings_for(parent, folder / "pairs.csv", library, val_fraction=0.5))

    # a file that is not a scan, named as one: the error names both
    (folder / "notes.txt").write_text("not a scan")
    (folder / "notes.csv").write_text("image,labels\nnotes.txt,case1_labels.nii.gz\n"
                                      "case2.nii.gz,case2_labels.nii.gz\n")  # fmt: skip
    with pytest.raises(FileError, match=r"notes.txt: .*named as the scan of .*case1_labels"):
        run_finetune(settings_for(parent, folder / "notes.csv", library, val_fraction=0.5))

    (folder / "bad.csv").write_text("scan,mask\na,b\n")
    with pytest.raises(FileError, match="bad.csv: needs an 'image' column"):
        run_finetune(settings_for(parent, folder / "bad.csv", library))
    (folder / "missing.csv").write_text("image,labels\nnope.nii.gz,case1_labels.nii.gz\n")
    with pytest.raises(FileError, match="line 2: .*nope.nii.gz does not exist"):
        run_finetune(settings_for(parent, folder / "missing.csv", library))


def test_models_that_cannot_be_trained_say_why(data, tmp_path):
    from model_factory import write_threshold_model

    from napari_medseg.training.finetune import NotTrainableError, run_finetune

    scripted = write_threshold_model(tmp_path / "ts", roi_size=(16, 16, 16))
    with pytest.raises(NotTrainableError, match="TorchScript network: a compiled graph"):
        run_finetune(settings_for(scripted, data, tmp_path / "library"))


def test_pairs_from_a_batch_output_folder(parent, tmp_path):
    """Only the cases saved again after a correction (sidecar marked edited_by_hand)."""
    from napari_medseg.training.pairs import find_pairs

    cohort = tmp_path / "cohort"
    scans = tmp_path / "scans"
    write_saved(scans, range(3))
    for seed in range(3):
        case = cohort / f"case{seed}"
        case.mkdir(parents=True)
        image, labels = shapes_case(seed)
        from napari_medseg.volume import Volume

        edited = {"name": "tiny", "settings": {}} | ({"edited_by_hand": True} if seed else {})
        save_segmentation(
            Volume(labels, AFFINE), SaveTargets(case / "labels.nii.gz"), CLASSES,
            model=edited, source=str(scans / f"case{seed}.nii.gz"),
        )  # fmt: skip
        done = {"images": [str(scans / f"case{seed}.nii.gz")], "series": None}
        (case / "done.json").write_text(json.dumps(done))
    found = find_pairs(cohort)
    assert [Path(p.labels).parent.name for p in found.pairs] == ["case1", "case2"]
    assert all(p.origin == "batch" and p.edited_by_hand for p in found.pairs)
    assert len(found.skipped) == 1 and "case0" in found.skipped[0]


def test_the_split_depends_on_the_files_and_seed_only(data, tmp_path):
    import shutil

    from napari_medseg.training.pairs import find_pairs, split_pairs

    pairs = find_pairs(data).pairs
    train, val = split_pairs(pairs, 0.34, seed=0)
    again_train, again_val = split_pairs(list(reversed(pairs)), 0.34, seed=0)
    assert {p.key for p in val} == {p.key for p in again_val} and len(val) == 2
    assert {p.key for p in train} == {p.key for p in again_train}
    assert not {p.key for p in train} & {p.key for p in val}
    # a moved copy of the data folder is split the same way
    copy = shutil.copytree(data, tmp_path / "elsewhere" / data.name)
    moved_val = split_pairs(find_pairs(copy).pairs, 0.34, seed=0)[1]
    assert sorted(Path(p.labels).name for p in moved_val) == sorted(
        Path(p.labels).name for p in val
    )
    other = {p.key for p in split_pairs(pairs, 0.34, seed=1)[1]}
    seeds = [{p.key for p in split_pairs(pairs, 0.34, seed=s)[1]} for s in range(2, 8)]
    assert any(s != other for s in seeds)


def test_a_share_of_the_patches_lands_where_the_parent_was_corrected():
    """``focus``: about that share of patches holds a corrected voxel; without it, a
    small corrected corner is seldom seen."""
    from napari_medseg.training.data import ModelGridCase, PatchDataset

    shape = (40, 40, 40)
    labels = np.zeros((1, *shape), np.uint8)
    labels[0, 10:30, 10:30, 10:30] = 1  # the organ
    image = np.zeros((1, *shape), np.float32)
    corner = (slice(34, 37), slice(2, 5), slice(34, 37))  # what the user fixed
    image[(0, *corner)] = 1000.0
    marker = np.zeros(shape, bool)
    marker[corner] = True
    case = ModelGridCase(
        image,
        labels,
        [np.flatnonzero(labels[0] == v) for v in (0, 1)],
        corrected=np.flatnonzero(marker),
    )

    def share(focus: float) -> float:
        patches = PatchDataset([case], (8, 8, 8), 2, slots=300, seed=0, focus=focus)
        return float(np.mean([patches[i][0].max().item() > 500 for i in range(300)]))

    assert share(0.0) < 0.05
    assert 0.4 < share(0.5) < 0.6  # both classes present: the share is exact


def test_held_out_pairs_given_apart(parent, data, tmp_path):
    from napari_medseg.training.finetune import run_finetune

    held_out = tmp_path / "held_out"
    write_saved(held_out, range(10, 13))
    settings = settings_for(parent, data, tmp_path / "library", val_data=str(held_out), epochs=1)
    outcome = run_finetune(settings)
    log = json.loads((Path(outcome.run_dir) / "log.json").read_text())
    splits = {Path(row["labels"]).name: row["split"] for row in log["data"]}
    assert sorted(n for n, s in splits.items() if s == "train") == [
        f"case{i}_labels.nii.gz" for i in range(6)
    ]
    assert sorted(n for n, s in splits.items() if s == "validation") == [
        f"case{i}_labels.nii.gz" for i in range(10, 13)
    ]
    assert len(outcome.parent_score["dice_per_case"]) == 3
