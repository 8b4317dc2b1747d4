"""nnU-Net v2 model folders: the same labels as nnunetv2's own ``nnUNetPredictor``.

The models are tiny but real nnU-Net v2 folders, written the way ``nnUNetv2_train`` writes
them: ``dataset.json``, ``plans.json`` (configurations with nnU-Net's ``architecture``
entries) and ``fold_N/checkpoint_final.pth`` holding what ``nnUNetTrainer.save_checkpoint``
stores (network weights, optimizer state, logging with numpy scalars, init args with a
``torch.device``...), with random weights initialised as nnU-Net initialises its networks.
One fold is written by nnunetv2's trainer itself. The scan is the bundled real chest CT,
cropped small (with a zero frame on two sides, as scanners pad, so the crop to the
non-zero box matters).

Each comparison runs ``nnUNetPredictor.predict_from_files_sequential`` (CPU,
``perform_everything_on_device=False``, all folds found) on the NIfTI file and
napari-medseg's :class:`~napari_medseg.inference.Segmenter` on the same file read by
:func:`~napari_medseg.io.read_scan`, and counts the voxels whose labels differ: none.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("dynamic_network_architectures")

from napari_medseg.errors import MedsegError  # noqa: E402
from napari_medseg.models.errors import ModelLoadError  # noqa: E402
from napari_medseg.models.nnunet import NnUNetFolderError, is_nnunet_folder  # noqa: E402
from napari_medseg.models.registry import load_model  # noqa: E402
from napari_medseg.samples import sample_path  # noqa: E402

TRAINER = "nnUNetTrainer"
LABELS = {"background": 0, "lung": 1, "mediastinum": 2}

#: Foreground intensity properties of a CT channel (what the fingerprint stores).
CT_PROPERTIES = {
    "max": 3071.0,
    "mean": -310.5,
    "median": -120.0,
    "min": -1024.0,
    "percentile_00_5": -1000.0,
    "percentile_99_5": 850.0,
    "std": 420.25,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the 2-core CI machine runs other tests beside (and it is faster)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------ the scan
@pytest.fixture(scope="module")
def ct_files(tmp_path_factory) -> list[Path]:
    """A small crop of the bundled real chest CT (LPS, 1.14 x 1.14 x 5 mm) as NIfTI, and a
    second channel made from it (air at 0, like an MR), both with a zero frame."""
    import nibabel as nib

    folder = tmp_path_factory.mktemp("nnunet_case")
    image = nib.load(sample_path("chest_ct"))
    start = np.array([80, 60, 14])
    array = np.asarray(image.dataobj)[80:144, 60:124, 14:33].astype(np.int16)
    array[:, :3, :] = 0  # zero frame: nnU-Net crops to the non-zero box
    array[-2:, :, :] = 0
    affine = image.affine.copy()
    affine[:3, 3] = image.affine[:3, :3] @ start + image.affine[:3, 3]
    second = np.clip(array.astype(np.int32) + 1024, 0, None).astype(np.int16)
    second[array == 0] = 0
    files = []
    for index, data in enumerate((array, second)):
        out = nib.Nifti1Image(data, affine)
        out.header.set_qform(affine, 1)
        out.header.set_sform(affine, 1)
        path = folder / f"case_{index:04d}.nii.gz"
        nib.save(out, path)
        files.append(path)
    return files


# ----------------------------------------------------------------------- the models
def architecture(dims: int, n_stages: int = 3) -> dict:
    """A small PlainConvUNet as nnU-Net's planner writes it into the plans."""
    conv = "torch.nn.modules.conv.Conv3d" if dims == 3 else "torch.nn.modules.conv.Conv2d"
    norm = f"torch.nn.modules.instancenorm.InstanceNorm{dims}d"
    if dims == 3:
        kernels = [[1, 3, 3], [3, 3, 3], [3, 3, 3]][:n_stages]
        strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2]][:n_stages]
    else:
        kernels = [[3, 3]] * n_stages
        strides = [[1, 1], [2, 2], [2, 2]][:n_stages]
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n_stages,
            "features_per_stage": [4, 8, 16][:n_stages],
            "conv_op": conv,
            "kernel_sizes": kernels,
            "strides": strides,
            "n_conv_per_stage": [2] * n_stages,
            "n_conv_per_stage_decoder": [2] * (n_stages - 1),
            "conv_bias": True,
            "norm_op": norm,
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def configuration(dims: int, channels: int) -> dict:
    """A configuration entry of plans.json (nnU-Net's default preprocessing)."""
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    schemes = ["CTNormalization", "ZScoreNormalization"][:channels]
    return {
        "data_identifier": f"nnUNetPlans_{'3d_fullres' if dims == 3 else '2d'}",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": [16, 32, 32] if dims == 3 else [32, 32],
        "median_image_size_in_voxels": [24, 40, 36] if dims == 3 else [40, 36],
        # transposed order (z, x, y): 5 mm slices -> 4 mm; anisotropic both ways
        "spacing": [4.0, 1.8, 2.0] if dims == 3 else [1.8, 2.0],
        "normalization_schemes": schemes,
        "use_mask_for_norm": [False, True][:channels],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": resampling,
        "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {**resampling, "order": 1},
        "architecture": architecture(dims),
        "batch_dice": False,
    }


def plans_json(channels: int = 1, reader: str = "SimpleITKIO") -> dict:
    """plans.json with a 3d_fullres and a 2d configuration; transpose_forward [0, 2, 1]."""
    return {
        "dataset_name": "Dataset901_ChestTiny",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [5.0, 1.140625, 1.140625],
        "original_median_shape_after_transp": [19, 64, 64],
        "image_reader_writer": reader,
        "transpose_forward": [0, 2, 1],
        "transpose_backward": [0, 2, 1],
        "configurations": {
            "2d": configuration(2, channels),
            "3d_fullres": configuration(3, channels),
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(c): dict(CT_PROPERTIES) for c in range(channels)
        },
    }


def dataset_json(channels: int = 1, labels: dict | None = None, **extra) -> dict:
    names = {"0": "CT", "1": "T2"}
    return {
        "channel_names": {str(c): names[str(c)] for c in range(channels)},
        "labels": dict(labels or LABELS),
        "numTraining": 2,
        "file_ending": ".nii.gz",
        **extra,
    }


def build_network(config: dict, channels: int, outputs: int, seed: int):
    """nnU-Net's ``get_network_from_plans`` for a PlainConvUNet, seeded He init."""
    import importlib

    arch = config["architecture"]
    kwargs = dict(arch["arch_kwargs"])
    for key in arch["_kw_requires_import"]:
        if kwargs[key] is not None:
            module, _, name = kwargs[key].rpartition(".")
            kwargs[key] = getattr(importlib.import_module(module), name)
    module, _, name = arch["network_class_name"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    torch.manual_seed(seed)
    network = cls(input_channels=channels, num_classes=outputs, deep_supervision=True, **kwargs)
    network.apply(network.initialize)
    return network


def checkpoint_dict(network, plans, dataset, config_name, fold, mirror_axes) -> dict:
    """What ``nnUNetTrainer.save_checkpoint`` stores (nnunetv2 2.8), CPU training."""
    optimizer = torch.optim.SGD(
        network.parameters(), 1e-2, weight_decay=3e-5, momentum=0.99, nesterov=True
    )
    logging = {
        "mean_fg_dice": [np.float64(0.41), np.float64(0.52)],
        "ema_fg_dice": [np.float64(0.41), np.float64(0.421)],
        "dice_per_class_or_region": [[np.float64(0.4), np.float64(0.42)]] * 2,
        "train_losses": [np.float32(-0.2), np.float32(-0.35)],
        "val_losses": [np.float32(-0.1), np.float32(-0.3)],
        "lrs": [0.01, 0.00999],
        "epoch_start_timestamps": [1765000000.5, 1765000100.5],
        "epoch_end_timestamps": [1765000099.5, 1765000199.5],
    }
    return {
        "network_weights": network.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "grad_scaler_state": None,
        "logging": logging,
        "_best_ema": np.float64(0.421),
        "current_epoch": 2,
        "init_args": {
            "plans": plans,
            "configuration": config_name,
            "fold": fold,
            "dataset_json": dataset,
            "device": torch.device("cpu"),
        },
        "trainer_name": TRAINER,
        "inference_allowed_mirroring_axes": mirror_axes,
    }


def write_model(
    root: Path,
    config_name: str = "3d_fullres",
    folds=(0, 1),
    channels: int = 1,
    labels: dict | None = None,
    reader: str = "SimpleITKIO",
    mirror_axes=(0, 1, 2),
    dataset_extra: dict | None = None,
    seed: int = 0,
) -> Path:
    """An nnU-Net v2 model folder ``<Trainer>__<Plans>__<configuration>`` under ``root``."""
    plans = plans_json(channels, reader)
    dataset = dataset_json(channels, labels, **(dataset_extra or {}))
    folder = root / "Dataset901_ChestTiny" / f"{TRAINER}__nnUNetPlans__{config_name}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    values = dataset["labels"].values()
    regions = any(isinstance(v, list) and len(v) > 1 for v in values)
    outputs = len(dataset["labels"]) - 1 if regions else len(dataset["labels"])
    config = plans["configurations"][config_name]
    for fold in folds:
        network = build_network(config, channels, outputs, seed + 17 * (fold + 1))
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(
            checkpoint_dict(network, plans, dataset, config_name, fold, mirror_axes),
            folder / f"fold_{fold}" / "checkpoint_final.pth",
        )
    return folder


# --------------------------------------------------------------------- references
def nnunet_predict(folder: Path, files, mirroring: bool, probabilities: bool = False):
    """``nnUNetPredictor`` on the files, its segmentation written by the plans' writer and
    read back: labels in the files' voxel order (and its probabilities, in SimpleITK's
    axis order transposed back)."""
    import nibabel as nib

    pytest.importorskip("nnunetv2")  # the reference (test extra); a failure in CI
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=mirroring,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        allow_tqdm=False,
    )
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=None)
    out = Path(files[0]).parent / f"nnunet_{folder.name}_{int(mirroring)}"
    predictor.predict_from_files_sequential(
        [[str(f) for f in files]], [str(out)], save_probabilities=probabilities
    )
    labels = np.asarray(nib.load(f"{out}.nii.gz").dataobj)
    if probabilities:
        with np.load(f"{out}.npz") as saved:
            return labels, saved["probabilities"].transpose(0, 3, 2, 1)
    return labels


def ours(folder: Path, files, tta: bool, probabilities: bool = False):
    from napari_medseg.inference.segmenter import Segmenter
    from napari_medseg.io.reader import read_scan

    segmenter = Segmenter(folder, device="cpu", tta=tta)
    return segmenter.predict([read_scan(f) for f in files], return_probabilities=probabilities)


def differing(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape
    return int(np.count_nonzero(a != b))


# ----------------------------------------------------------------------- agreement
@pytest.fixture(scope="module")
def two_fold_model(tmp_path_factory) -> Path:
    """3d_fullres, 2 folds, 2 channels (CTNormalization; ZScoreNormalization in the mask)."""
    return write_model(tmp_path_factory.mktemp("nnunet_models"), channels=2)


@pytest.mark.parametrize("mirroring", [False, True], ids=["no-mirroring", "mirroring"])
def test_same_labels_as_nnunet_predictor(two_fold_model, ct_files, mirroring):
    expected = nnunet_predict(two_fold_model, ct_files, mirroring)
    result = ours(two_fold_model, ct_files, tta=mirroring)
    assert differing(result.labels, expected) == 0
    counts = np.bincount(result.labels.ravel(), minlength=3)
    assert (counts[1:] > 500).all()  # the comparison is not trivial: every class is there
    assert counts[0] > 1000  # the zero frame is background, as nnU-Net leaves it
    settings = result.settings
    assert settings["n_folds"] == 2
    assert settings["tta_flips"] == (
        [[]] + [[a] for a in (2, 3, 4)] + [[2, 3], [2, 4], [3, 4]] + [[2, 3, 4]]
        if mirroring
        else [[]]
    )
    assert settings["model_details"]["configuration"] == "3d_fullres"
    assert settings["model_grid_shape"] == [24, 39, 35]  # cropped, transposed, resampled
    assert [c.name for c in result.label_classes] == ["background", "lung", "mediastinum"]


def test_2d_configuration_and_probabilities(tmp_path, ct_files):
    folder = write_model(tmp_path, "2d", folds=(0,), mirror_axes=(0, 1))
    expected, expected_probabilities = nnunet_predict(
        folder, ct_files[:1], mirroring=False, probabilities=True
    )
    result = ours(folder, ct_files[:1], tta=False, probabilities=True)
    assert differing(result.labels, expected) == 0
    assert result.probabilities.shape == expected_probabilities.shape
    np.testing.assert_allclose(result.probabilities, expected_probabilities, atol=1e-6)
    assert len(np.unique(result.labels)) == 3


def test_region_based_model_with_reorienting_reader(tmp_path, ct_files):
    """Regions (sigmoid per region, painted in regions_class_order), a reader that turns the
    LPS scan to RAS first, and --tta on a model that allows no mirroring."""
    labels = {"background": 0, "whole": [1, 2], "core": [2]}
    folder = write_model(
        tmp_path,
        folds=(0,),
        labels=labels,
        reader="NibabelIOWithReorient",
        mirror_axes=None,
        dataset_extra={"regions_class_order": [1, 2]},
    )
    expected = nnunet_predict(folder, ct_files[:1], mirroring=True)
    result = ours(folder, ct_files[:1], tta=True)
    assert differing(result.labels, expected) == 0
    assert [(c.value, c.name) for c in result.label_classes] == [
        (0, "background"),
        (1, "whole"),
        (2, "core"),
    ]
    assert any("allows no mirroring" in w for w in result.warnings)
    assert result.settings["tta_flips"] == [[]]


def test_medseg_segment_writes_the_labels(tmp_path, ct_files):
    """The CLI takes the folder (registry dispatch) and saves names from dataset.json."""
    from napari_medseg.cli import main
    from napari_medseg.io.reader import read_scan

    folder = write_model(tmp_path, "2d", folds=(0,), mirror_axes=(0, 1))
    out = tmp_path / "labels.nii.gz"
    assert main(["segment", str(ct_files[0]), "--model", str(folder), "-o", str(out)]) == 0
    written = read_scan(out)
    assert differing(np.asarray(written.array), nnunet_predict(folder, ct_files[:1], False)) == 0
    sidecar = json.loads(next(tmp_path.glob("labels*.json")).read_text())
    assert "mediastinum" in json.dumps(sidecar)


def test_a_fold_folder_runs_that_fold_alone(two_fold_model, ct_files):
    model = load_model(two_fold_model / "fold_1")
    assert model.details["folds"] == ["fold_1"]
    assert load_model(two_fold_model).details["folds"] == ["fold_0", "fold_1"]


def test_progress_cancel_and_model_grid(tmp_path, ct_files):
    """Progress counts every network call (windows x flips x folds) and ends at the total;
    a set cancel event stops before the first call; ``preprocess`` gives nnU-Net's grid."""
    import threading

    from napari_medseg.errors import Cancelled
    from napari_medseg.inference.segmenter import Segmenter
    from napari_medseg.io.reader import read_scan

    folder = write_model(tmp_path, "2d", folds=(0,), mirror_axes=(0, 1))
    scan = read_scan(ct_files[0])
    segmenter = Segmenter(folder, device="cpu")
    calls = []
    result = segmenter.predict(scan, progress=lambda done, total: calls.append((done, total)))
    total = result.settings["n_network_calls"]
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) == total + 1
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        segmenter.predict(scan, cancel=cancel)

    prepared = segmenter.model.preprocess([scan])
    assert list(prepared.image.shape[1:]) == result.settings["model_grid_shape"]
    # model axes are the transposed (z, i, j) axes: 5 mm -> 5 mm (2d), i -> ~1.8, j -> ~2.0
    spacing = np.sqrt((prepared.affine[:3, :3] ** 2).sum(axis=0))
    np.testing.assert_allclose(spacing, [5.0, 1.8, 2.0], rtol=0.02)
    # the model grid covers the cropped scan: its centre is the crop's centre
    crop = np.array([[0, 62], [3, 64], [0, 19]])  # i, j, k without the zero frame
    centre = scan.affine @ [*(crop.mean(axis=1) - 0.5), 1]
    shape = np.array(prepared.image.shape[1:])
    np.testing.assert_allclose(prepared.affine @ [*((shape - 1) / 2), 1], centre, atol=1e-6)


def test_checkpoint_written_by_nnunet_trainer_loads(tmp_path, monkeypatch):
    """nnunetv2's own trainer writes the checkpoint (numpy scalars in its logging, a
    torch.device in its init args): weights-only loading with the allow-list reads it."""
    pytest.importorskip("nnunetv2")
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    folder = write_model(tmp_path / "results", folds=())
    preprocessed = tmp_path / "preprocessed" / "Dataset901_ChestTiny" / "nnUNetPlans_3d_fullres"
    preprocessed.mkdir(parents=True)
    (preprocessed / "case.b2nd").write_bytes(b"")  # the trainer infers its dataset class
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    plans = {**json.loads((folder / "plans.json").read_text()), "continue_training": False}
    dataset = json.loads((folder / "dataset.json").read_text())
    trainer = nnUNetTrainer(plans, "3d_fullres", 0, dataset, torch.device("cpu"))
    trainer.initialize()
    trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    trainer.logger.log("mean_fg_dice", np.nanmean([np.float64(0.3), np.float64(0.5)]), 0)
    trainer.logger.log("dice_per_class_or_region", [np.float64(0.3), np.float64(0.5)], 0)
    for key in ("train_losses", "val_losses"):
        trainer.logger.log(key, np.float32(-0.25), 0)
    trainer._best_ema = trainer.logger.get_value("ema_fg_dice", step=-1)
    trainer.save_checkpoint(str(folder / "fold_0" / "checkpoint_final.pth"))
    model = load_model(folder)
    assert model.details["mirror_axes"] == [0, 1, 2]
    assert model.details["trainer"] == TRAINER


def test_describe_model_for_the_widget(two_fold_model, tmp_path):
    from napari_medseg.models.describe import describe_model

    choice = describe_model(str(two_fold_model))
    assert (choice.kind, choice.in_channels, choice.channel_names) == ("nnunet", 2, ("CT", "T2"))
    assert choice.error == "" and "2 folds" in choice.summary
    assert (choice.overlap, choice.sw_batch_size, choice.needs_trust) == (0.5, 1, False)
    (tmp_path / "plans.json").write_text("{}")
    broken = describe_model(str(tmp_path))
    assert "dataset.json" in broken.error


# -------------------------------------------------------------------------- errors
@pytest.fixture
def model(tmp_path) -> Path:
    return write_model(tmp_path, folds=(0,))


def load_error(folder: Path, match: str) -> NnUNetFolderError:
    with pytest.raises(NnUNetFolderError) as caught:
        load_model(folder)
    error = caught.value
    assert isinstance(error, ModelLoadError) and isinstance(error, MedsegError)
    assert match in str(error), str(error)
    assert len(str(error).splitlines()) == 1
    return error


def test_missing_dataset_json(model):
    (model / "dataset.json").unlink()
    error = load_error(model, "dataset.json: not found")
    assert error.path == str(model / "dataset.json")


def test_missing_plans_json(model):
    (model / "plans.json").unlink()
    assert load_error(model, "plans.json: not found").path == str(model / "plans.json")


def test_no_final_checkpoint(model):
    fold = model / "fold_0"
    (fold / "checkpoint_final.pth").rename(fold / "checkpoint_best.pth")
    error = load_error(model, "no checkpoint_final.pth in any fold_N folder")
    assert "checkpoint_best.pth" in str(error) and error.path == str(model)


def test_fold_folder_without_checkpoint(model):
    (model / "fold_3").mkdir()
    error = load_error(model / "fold_3", "no checkpoint_final.pth in this fold")
    assert error.path == str(model / "fold_3")


def test_configuration_not_in_plans(model):
    plans = json.loads((model / "plans.json").read_text())
    del plans["configurations"]["3d_fullres"]
    (model / "plans.json").write_text(json.dumps(plans))
    error = load_error(model, "has no configuration '3d_fullres'; it has 2d")
    assert error.path == str(model / "plans.json")


def test_plans_that_do_not_fit_the_checkpoint(model):
    plans = json.loads((model / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["features_per_stage"] = [
        4,
        8,
        32,
    ]
    (model / "plans.json").write_text(json.dumps(plans))
    error = load_error(model, "shape mismatches")
    assert error.path == str(model / "fold_0" / "checkpoint_final.pth")
    assert "other plans" in str(error)


def test_checkpoint_with_code_is_refused(model):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo owned > /dev/null",))

    path = model / "fold_0" / "checkpoint_final.pth"
    data = torch.load(path, weights_only=False)
    data["logging"]["note"] = Exploit()
    torch.save(data, path)
    error = load_error(model, "would run code when loaded (a pickled posix.system)")
    assert error.path == str(path)


def test_not_a_checkpoint(model):
    path = model / "fold_0" / "checkpoint_final.pth"
    path.write_bytes(pickle.dumps({"network_weights": "nothing"})[:10])
    assert load_error(model, "is not a PyTorch checkpoint").path == str(path)


def test_folds_of_different_configurations(tmp_path):
    folder = write_model(tmp_path, folds=(0, 1))
    path = folder / "fold_1" / "checkpoint_final.pth"
    data = torch.load(path, weights_only=False)
    data["init_args"]["configuration"] = "2d"
    torch.save(data, path)
    assert load_error(folder, "share a configuration").path == str(path)


def test_plans_may_not_name_other_code(model):
    plans = json.loads((model / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["nonlin"] = "os.system"
    (model / "plans.json").write_text(json.dumps(plans))
    load_error(model, "nonlin 'os.system' is outside torch.nn")


def test_mirror_axes_beyond_the_network(model):
    path = model / "fold_0" / "checkpoint_final.pth"
    data = torch.load(path, weights_only=False)
    data["inference_allowed_mirroring_axes"] = (0, 1, 3)
    torch.save(data, path)
    assert load_error(model, "do not fit a 3D network").path == str(path)


def test_cascade_is_refused(model):
    plans = json.loads((model / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["previous_stage"] = "3d_lowres"
    (model / "plans.json").write_text(json.dumps(plans))
    load_error(model, "is a cascade stage")


def test_regions_without_class_order(tmp_path):
    folder = write_model(tmp_path, folds=(0,), labels={"background": 0, "a": [1, 2], "b": [2]})
    load_error(folder, "need 'regions_class_order'")


def test_folder_detection(tmp_path, model):
    assert is_nnunet_folder(model) and is_nnunet_folder(model / "fold_0")
    assert not is_nnunet_folder(tmp_path / "nothing")
    (tmp_path / "bundle" / "configs").mkdir(parents=True)
    (tmp_path / "bundle" / "dataset.json").write_text("{}")
    assert not is_nnunet_folder(tmp_path / "bundle")  # a MONAI bundle stays a bundle
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        ModelLoadError, match="not a MONAI bundle .* and not an nnU-Net v2 model folder"
    ):
        load_model(tmp_path / "empty")
