"""The nnInteractive backend: the same masks as nnInteractive's own session.

The model folder is laid out as the published ``nnInteractive_v1.0`` (plans.json,
dataset.json, inference_session_class.json, LICENSE, fold_0/checkpoint_final.pth as its
release script leaves it: no optimizer state, trainer ``nnInteractiveTrainer_stub``) and
holds its real architecture, nnU-Net's ``ResidualEncoderUNet`` with 1 + 7 input channels
and 2 outputs, built by nnU-Net from the plans, with random weights: small (4-8-16
features, a 24^3 patch) so a prediction takes a fraction of a second on one CPU thread.
The seg head's bias is set so that the zero padding around a scan reads as background, as
a trained network reads it.

Most tests run with nnInteractive's AutoZoom off on both sides (a random network's mask
touches every border, so AutoZoom would zoom out to 4x and refine in dozens of patches,
minutes on a CPU); one runs the default, AutoZoom on, with a 56^3 patch (the least that
nnInteractive's refinement margins of 24 voxels allow), where a point zooms out once and
refines.

The reference drives ``nnInteractiveInferenceSession`` directly with the same prompts,
written here by hand in voxels (the point's voxel, the box's half-open voxel ranges, the
scribble's voxels, the lasso's filled rectangle); the backend runs inside a
:class:`~napari_medseg.interactive.session.PromptSession` given the prompts in world mm.
Masks are compared voxel for voxel after every prompt, after an undo (nnInteractive's own
undo), after two undos (reset and replay), and on a second scan.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

from napari_medseg.interactive import Prompt  # noqa: E402
from napari_medseg.interactive.backends import BackendError, make_backend  # noqa: E402
from napari_medseg.interactive.backends.nninteractive import (  # noqa: E402
    NnInteractiveBackend,
    lasso_mask,
)
from napari_medseg.interactive.prompts import VoxelPrompt  # noqa: E402
from napari_medseg.interactive.session import PromptSession  # noqa: E402
from napari_medseg.volume import Volume  # noqa: E402

CONFIGURATION = "3d_fullres_ps"
ARCHITECTURES = "dynamic_network_architectures.architectures"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------- the model folder
def plans_json(patch: int) -> dict:
    """plans.json as nnInteractive's release has it (ResEnc plans, no resampling), with
    one small configuration."""
    n = 3
    architecture = {
        "network_class_name": f"{ARCHITECTURES}.unet.ResidualEncoderUNet",
        "arch_kwargs": {
            "n_stages": n,
            "features_per_stage": [4, 8, 16],
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3]] * n,
            "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
            "n_blocks_per_stage": [1, 1, 1],
            "n_conv_per_stage_decoder": [1, 1],
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    configuration = {
        "data_identifier": "nnUNetResEncUNetLPlans_noResampling_3d_fullres",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": [patch] * 3,
        "median_image_size_in_voxels": [139, 248, 250],
        "spacing": [1.0, 1.0, 1.0],
        "normalization_schemes": ["ZScoreNormalization"],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": resampling,
        "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {**resampling, "order": 1},
        "architecture": architecture,
        "batch_dice": True,
    }
    return {
        "dataset_name": "Dataset998_nnInteractiveTiny",
        "plans_name": "nnUNetResEncUNetLPlans_noResampling",
        "original_median_spacing_after_transp": [1.25, 1.0, 1.0],
        "original_median_shape_after_transp": [139, 248, 250],
        "image_reader_writer": "NibabelIOWithReorient",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {CONFIGURATION: configuration},
        "experiment_planner_used": "nnUNetPlannerResEncL",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {
                "max": 1.0,
                "mean": 0.0,
                "median": 0.0,
                "min": -1.0,
                "percentile_00_5": -1.0,
                "percentile_99_5": 1.0,
                "std": 1.0,
            }
        },
    }


def build_network(plans: dict, seed: int):
    """nnInteractive's network for the plans (as its loader builds it), random weights."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(plans)
    torch.manual_seed(seed)
    network = nnUNetTrainer.build_network_architecture(
        manager,
        manager.get_configuration(CONFIGURATION),
        1 + 7,
        2,
        enable_deep_supervision=False,
    ).eval()
    # zero padding (no image, no prompt) -> background
    with torch.no_grad():
        patch = plans["configurations"][CONFIGURATION]["patch_size"]
        logits = network(torch.zeros(1, 8, *patch))[0]
        margin = float((logits[1] - logits[0]).max())
        network.decoder.seg_layers[-1].bias[1] -= margin + 0.5
    return network


def write_model(root: Path, patch: int = 24, seed: int = 0) -> Path:
    """An nnInteractive model folder laid out as nnInteractive_v1.0."""
    folder = root / "nnInteractive_tiny"
    (folder / "fold_0").mkdir(parents=True)
    plans = plans_json(patch)
    dataset = {
        "channel_names": {"0": "any"},
        "labels": {"background": 0, "target": 1},
        "numTraining": 1,
        "file_ending": ".nii.gz",
    }
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    (folder / "inference_session_class.json").write_text(
        json.dumps(
            {
                "inference_class": "nnInteractiveInferenceSession",
                "point_radius": 4,
                "preferred_scribble_thickness": [2, 2, 2],
                "interaction_decay": 0.9,
            }
        )
    )
    (folder / "LICENSE").write_text(
        "CC BY-NC-SA 4.0\nhttps://creativecommons.org/licenses/by-nc-sa/4.0/\n"
    )
    network = build_network(plans, seed)
    # what nnInteractive's cleanse_checkpoint_for_release leaves
    checkpoint = {
        "network_weights": network.state_dict(),
        "grad_scaler_state": None,
        "logging": {"ema_fg_dice": [np.float64(0.5)]},
        "_best_ema": np.float64(0.5),
        "current_epoch": 1,
        "init_args": {
            "plans": plans,
            "configuration": CONFIGURATION,
            "fold": 0,
            "device": torch.device("cpu"),
        },
        "trainer_name": "nnInteractiveTrainer_stub",
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    return folder


@pytest.fixture(scope="module")
def installed():
    """nnInteractive's session (imported here, not at collection: it takes seconds)."""
    pytest.importorskip("nnInteractive.inference.inference_session")


@pytest.fixture(scope="module")
def model(installed, tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("nninteractive"))


@pytest.fixture
def opened():
    """Backends and reference sessions a test opens, closed after it."""
    held = []
    yield lambda thing: held.append(thing) or thing
    for thing in held:
        thing.close()


# --------------------------------------------------------------------------- scans
def scan(shape=(28, 26, 24), centre=(14, 12, 11), seed=0) -> Volume:
    grid = np.indices(shape)
    ball = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) < 36
    rng = np.random.default_rng(seed)
    array = np.where(ball, 300.0, 20.0) + rng.normal(0, 30, shape)
    affine = np.diag([0.9, 0.9, 2.5, 1.0])
    affine[:3, 3] = [-12.0, 7.0, -30.0]
    return Volume(array.astype(np.float32), affine)


def world(volume: Volume, ijk) -> np.ndarray:
    return (volume.affine @ np.r_[np.asarray(ijk, dtype=float), 1.0])[:3]


class Reference:
    """nnInteractive's session driven directly, in voxels."""

    def __init__(self, folder: Path, image: np.ndarray, autozoom: bool = False):
        from nnInteractive.inference.inference_session import nnInteractiveInferenceSession

        self.session = nnInteractiveInferenceSession(
            device=torch.device("cpu"),
            torch_n_threads=1,
            verbose=False,
            do_autozoom=autozoom,
        )
        self.session.initialize_from_trained_model_folder(str(folder))
        self.session.set_image(image[None])
        self.buffer = torch.zeros(image.shape, dtype=torch.uint8)
        self.session.set_target_buffer(self.buffer)

    def run(self, step) -> np.ndarray:
        kind, args = step
        options = args[2] if len(args) > 2 else {}
        getattr(self.session, f"add_{kind}_interaction")(*args[:2], **options)
        return self.buffer.numpy().astype(bool)

    def close(self) -> None:
        self.session.executor.shutdown()  # not from its own thread when collected


def steps(volume: Volume):
    """(world prompt, the same prompt as nnInteractive is given it) pairs."""
    scribble = np.array([[12, 10, 11], [13, 11, 11], [14, 12, 11], [15, 12, 11]])
    scribble_crop = np.zeros((4, 3, 1), dtype=np.uint8)
    scribble_crop[tuple((scribble - scribble.min(axis=0)).T)] = 1
    lasso = np.array([[9, 8, 13], [9, 17, 13], [19, 17, 13], [19, 8, 13]])  # on slice k=13
    lasso_crop = np.ones((11, 10, 1), dtype=np.uint8)  # the rectangle, edges included
    return [
        (Prompt.point(world(volume, (14, 12, 11))), ("point", ((14, 12, 11), True))),
        (Prompt.point(world(volume, (5, 20, 4)), positive=False), ("point", ((5, 20, 4), False))),
        (
            Prompt.box(world(volume, (10, 8, 11)), world(volume, (18, 16, 11))),
            ("bbox", ([[10, 19], [8, 17], [11, 12]], True)),
        ),
        (
            Prompt("scribble", np.array([world(volume, v) for v in scribble])),
            (
                "scribble",
                (scribble_crop, True, {"interaction_bbox": [[12, 16], [10, 13], [11, 12]]}),
            ),
        ),
        (
            Prompt("lasso", np.array([world(volume, v) for v in lasso]), positive=False),
            ("lasso", (lasso_crop, False, {"interaction_bbox": [[9, 20], [8, 18], [13, 14]]})),
        ),
    ]


# --------------------------------------------------------------------------- tests
def test_masks_equal_nninteractive_own_session_prompt_by_prompt(model, opened):
    volume = scan()
    backend = opened(make_backend("nninteractive", model, device="cpu", autozoom=False))
    assert isinstance(backend, NnInteractiveBackend) and backend.crops is False
    session = PromptSession(volume, backend)
    reference = opened(Reference(model, volume.array))
    pairs = steps(volume)
    masks = []
    for prompt, step in pairs:
        mask = session.add(prompt).mask
        expected = reference.run(step)
        assert np.array_equal(mask, expected), step[0]
        masks.append(expected.copy())
    fraction = masks[0].mean()
    assert 0.001 < fraction < 0.9  # the random network draws something, not everything
    assert len({m.tobytes() for m in masks}) > 1  # and the prompts change it

    # undo the lasso, then a positive point instead: nnInteractive's own undo
    assert np.array_equal(session.undo(), masks[3])
    extra = Prompt.point(world(volume, (16, 14, 12)))
    after_undo = session.add(extra).mask
    replayed = opened(Reference(model, volume.array))
    for _prompt, step in pairs[:4]:
        replayed.run(step)
    assert np.array_equal(after_undo, replayed.run(("point", ((16, 14, 12), True))))

    # two undos and a new prompt: reset and replay from the start
    session.undo()
    session.undo()
    again = session.add(Prompt.point(world(volume, (12, 11, 10)), positive=False)).mask
    fresh = opened(Reference(model, volume.array))
    for _prompt, step in pairs[:3]:
        fresh.run(step)
    assert np.array_equal(again, fresh.run(("point", ((12, 11, 10), False))))

    # reset: nothing held; the first prompt again gives the first mask
    assert not session.reset().any()
    assert np.array_equal(session.add(pairs[0][0]).mask, masks[0])


def test_a_second_scan_gets_its_own_image(model, opened):
    backend = opened(make_backend("nninteractive", model, device="cpu", autozoom=False))
    first, second = scan(), scan(centre=(10, 14, 12), seed=1)
    one, two = PromptSession(first, backend), PromptSession(second, backend)
    a = one.add(Prompt.point(world(first, (14, 12, 11)))).mask
    b = two.add(Prompt.point(world(second, (10, 14, 12)))).mask
    # back on the first scan: its prompts are replayed on its image
    c = one.add(Prompt.point(world(first, (13, 12, 11)))).mask
    reference = opened(Reference(model, first.array))
    assert np.array_equal(a, reference.run(("point", ((14, 12, 11), True))))
    assert np.array_equal(c, reference.run(("point", ((13, 12, 11), True))))
    other = opened(Reference(model, second.array))
    assert np.array_equal(b, other.run(("point", ((10, 14, 12), True))))


def test_autozoom_on_as_nninteractive_runs_by_default(installed, tmp_path, opened):
    """The default settings: a point whose mask reaches the patch border zooms out and
    refines; the same mask as nnInteractive's own session with AutoZoom on."""
    model = write_model(tmp_path, patch=56)
    volume = scan()
    backend = opened(make_backend("nninteractive", model, device="cpu"))
    reference = opened(Reference(model, volume.array, autozoom=True))
    mask = PromptSession(volume, backend).add(Prompt.point(world(volume, (14, 12, 11)))).mask
    expected = reference.run(("point", ((14, 12, 11), True)))
    assert np.array_equal(mask, expected) and 0.001 < expected.mean() < 0.9


def test_licence_is_shown_before_and_after_loading(model, opened):
    assert NnInteractiveBackend.licence == "CC-BY-NC-SA-4.0"
    assert NnInteractiveBackend.non_commercial and NnInteractiveBackend.needs_checkpoint
    backend = opened(make_backend("nninteractive", model / "fold_0", device="cpu"))
    assert backend.licence == "CC-BY-NC-SA-4.0" and backend.non_commercial
    assert backend.folder == model


def test_a_box_across_slices_is_refused_by_name(model, opened):
    volume = scan()
    backend = opened(make_backend("nninteractive", model, device="cpu", autozoom=False))
    session = PromptSession(volume, backend)
    with pytest.raises(BackendError, match="refuses the box prompt.*one slice"):
        session.add(Prompt.box(world(volume, (10, 8, 9)), world(volume, (18, 16, 13))))
    assert session.prompts == ()


def test_lasso_fill():
    square = VoxelPrompt(
        "lasso", np.array([[2.0, 3, 5], [2, 7, 5], [6, 7, 5], [6, 3, 5]]), True, slice_axis=2
    )
    crop, bounds = lasso_mask(square, (10, 10, 10))
    assert bounds == [[2, 7], [3, 8], [5, 6]] and crop.shape == (5, 5, 1) and crop.all()
    triangle = VoxelPrompt("lasso", np.array([[4.0, 0, 0], [4, 0, 8], [4, 8, 0]]), True, 0)
    crop, bounds = lasso_mask(triangle, (10, 10, 10))
    assert bounds[0] == [4, 5] and crop[0, 0, 0] and not crop[0, 8, 8]
    with pytest.raises(BackendError, match="one slice"):
        lasso_mask(VoxelPrompt("lasso", np.eye(3) * 4, True, None), (10, 10, 10))


# --------------------------------------------------------------------- bad folders
@pytest.mark.parametrize(
    ("remove", "match"),
    [
        ("plans.json", r"nnInteractive_tiny: has no plans\.json"),
        ("dataset.json", r"has no dataset\.json"),
        ("inference_session_class.json", r"neither inference_info\.json nor inference_sess"),
        ("fold_0/checkpoint_final.pth", r"fold_0: has no checkpoint_final\.pth"),
        ("fold_0", r"has no fold_N folder"),
    ],
)
def test_a_folder_missing_a_piece_names_it(model, tmp_path, remove, match):
    import shutil

    folder = tmp_path / "nnInteractive_tiny"
    shutil.copytree(model, folder)
    target = folder / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(BackendError, match=match):
        make_backend("nninteractive", folder)


def test_other_bad_folders(model, tmp_path):
    import shutil

    with pytest.raises(BackendError, match="does not exist"):
        make_backend("nninteractive", tmp_path / "nowhere")
    folder = tmp_path / "two_folds"
    shutil.copytree(model, folder)
    shutil.copytree(folder / "fold_0", folder / "fold_1")
    with pytest.raises(BackendError, match=r"several fold folders \(fold_0, fold_1\).*fold_0"):
        make_backend("nninteractive", folder)
    shutil.rmtree(folder / "fold_1")
    (folder / "plans.json").write_text("{not json")
    with pytest.raises(BackendError, match=r"plans\.json: is not valid JSON"):
        make_backend("nninteractive", folder)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this would run",))


def test_a_checkpoint_that_would_run_code_is_refused(model, tmp_path):
    import shutil

    folder = tmp_path / "evil"
    shutil.copytree(model, folder)
    with open(folder / "fold_0" / "checkpoint_final.pth", "wb") as handle:
        pickle.dump({"network_weights": {}, "payload": _RunsCode()}, handle)
    with pytest.raises(BackendError, match=r"checkpoint_final\.pth.*(refused|not a)"):
        make_backend("nninteractive", folder)


def test_plans_that_do_not_fit_the_checkpoint(model, tmp_path):
    import shutil

    folder = tmp_path / "mismatch"
    shutil.copytree(model, folder)
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"][CONFIGURATION]["architecture"]["arch_kwargs"]["features_per_stage"] = [
        8,
        16,
        32,
    ]
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(BackendError, match=r"mismatch: nnInteractive cannot load this model"):
        make_backend("nninteractive", folder, device="cpu")
    plans["configurations"] = {"other": plans["configurations"][CONFIGURATION]}
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(BackendError, match=r"has no configuration '3d_fullres_ps'"):
        make_backend("nninteractive", folder, device="cpu")
