"""The VISTA3D backend: the same masks as the bundle's own pipeline run by MONAI.

The bundle is written after the Model Zoo's ``vista3d`` (``configs/inference.json`` with
the same ids in the same order: imports, ``input_dict``, ``everything_labels``,
``metadata``/``labels_dict``, ``subclass``, ``resample_spacing`` 1.5 mm, ``patch_size``,
``use_point_window``, the preprocessing ``LoadImaged(reader="NibabelGPUReader")``,
``EnsureChannelFirstd``, ``EnsureTyped``, ``Spacingd``, ``CropForegroundd(margin=10)``,
``VistaPreTransformd``, ``ScaleIntensityRanged(-963.8, 1053.7)``, ``Orientationd(RAS)``,
``CastToTyped``; the ``inferer``, ``postprocessing`` with ``VistaPostTransformd`` and
``Invertd(nearest_interp=True)``, ``checkpointloader``, ``evaluator``; its
``metadata.json`` and ``LICENSE.weights``; a ``scripts`` package, which the config
imports). Only ``network_def`` and ``patch_size`` are small: VISTA3D's own classes
(``SegResNetDS2`` encoder, ``PointMappingSAM`` point head, ``ClassMappingClassify`` class
head) with 8 features and 3 levels, random weights, a 32^3 window.

The reference is MONAI's own pipeline on the same bundle, as its evaluator runs it: the
config's ``preprocessing`` on the scan written as NIfTI (read by ``NibabelReader``: MONAI
1.6 has no ``NibabelGPUReader``), the clicks (scan voxels) mapped with
``inv(image.affine) @ original_affine``, the config's network with ``model.pt`` loaded,
``point_based_window_inferer`` as the bundle's ``Vista3dInferer`` calls it, then the
config's own ``VistaPostTransformd`` and ``Invertd`` (nearest) back onto the scan, and
its ``nan_to_num(255)``. The scan is LPS with 1 mm voxels, so resampling to 1.5 mm puts
no scan voxel centre half-way between two model voxels (where either
neighbour is right) and the masks must be equal voxel for voxel.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai.apps.vista3d.inferer")
pytest.importorskip("skimage")

from napari_medseg.interactive import Prompt  # noqa: E402
from napari_medseg.interactive.backends import (  # noqa: E402
    BackendError,
    PromptBackend,
    make_backend,
)
from napari_medseg.interactive.backends.vista3d import Vista3dBackend  # noqa: E402
from napari_medseg.interactive.session import PromptSession  # noqa: E402
from napari_medseg.volume import Volume  # noqa: E402

#: the scan: LPS, 1 mm voxels (exact in float32, as NIfTI stores it), finer than the
#: model's 1.5 mm, so that every model voxel is the nearest of some scan voxel
AFFINE = np.array([[-1.0, 0, 0, 20.0], [0, -1.0, 0, 18.0], [0, 0, 1.0, -30.0], [0, 0, 0, 1]])
SHAPE = (60, 44, 24)
FEATURES = 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------- the bundle
def network_def() -> dict:
    """VISTA3D's own modules (as ``vista3d132`` assembles them), small."""
    return {
        "_target_": "monai.networks.nets.vista3d.VISTA3D",
        "image_encoder": {
            "_target_": "monai.networks.nets.segresnet_ds.SegResNetDS2",
            "in_channels": "@input_channels",
            "blocks_down": [1, 1, 1],
            "norm": "instance",
            "out_channels": FEATURES,
            "init_filters": FEATURES,
            "dsdepth": 1,
        },
        "class_head": {
            "_target_": "monai.networks.nets.vista3d.ClassMappingClassify",
            "n_classes": 512,
            "feature_size": FEATURES,
            "use_mlp": True,
        },
        "point_head": {
            "_target_": "monai.networks.nets.vista3d.PointMappingSAM",
            "feature_size": FEATURES,
            "n_classes": 512,
            "last_supported": 132,
        },
    }


LABELS = {
    "0": "background",
    "1": "liver",
    "2": "kidney",
    "3": "spleen",
    "4": "pancreas",
    "5": "right kidney",
    "14": "left kidney",
    "25": "hepatic vessel",
}


def inference_json() -> dict:
    """models/vista3d/configs/inference.json (Model Zoo), key for key."""
    return {
        "imports": [
            "$import glob",
            "$import os",
            "$import scripts",
            "$import numpy as np",
            "$import copy",
            "$import json",
            "$import pathlib",
        ],
        "bundle_root": "./",
        "image_key": "image",
        "output_dir": "$@bundle_root + '/eval'",
        "output_ext": ".nii.gz",
        "output_dtype": "$np.float32",
        "output_postfix": "trans",
        "separate_folder": True,
        "input_dict": "${'image': '/workspace/Task09_Spleen/imagesTr/spleen_10.nii.gz', "
        "'label_prompt': [3]}",
        "everything_labels": "$list(set([i+1 for i in range(132)]) - set([2,16,18,20,21,23,"
        "24,25,26,27,128,129,130,131,132]))",
        "metadata_path": "$@bundle_root + '/configs/metadata.json'",
        "metadata": "$json.loads(pathlib.Path(@metadata_path).read_text())",
        "labels_dict": "$@metadata['network_data_format']['outputs']['pred']['channel_def']",
        "subclass": {
            "2": [14, 5],
            "20": [28, 29, 30, 31, 32],
            "21": "$list(range(33, 57)) + list(range(63, 98)) + [114, 120, 122]",
        },
        "input_channels": 1,
        "resample_spacing": [1.5, 1.5, 1.5],
        "sw_batch_size": 1,
        "patch_size": [32, 32, 32],
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "use_point_window": True,
        "network_def": network_def(),
        "network": "$@network_def.to(@device)",
        "preprocessing_transforms": [
            {
                "_target_": "LoadImaged",
                "keys": "@image_key",
                "reader": "NibabelGPUReader",
                "image_only": True,
            },
            {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
            {
                "_target_": "EnsureTyped",
                "keys": "@image_key",
                "device": "@device",
                "track_meta": True,
            },
            {
                "_target_": "Spacingd",
                "keys": "@image_key",
                "pixdim": "@resample_spacing",
                "mode": "bilinear",
            },
            {
                "_target_": "CropForegroundd",
                "keys": "@image_key",
                "allow_smaller": True,
                "margin": 10,
                "source_key": "@image_key",
            },
            {
                "_target_": "monai.apps.vista3d.transforms.VistaPreTransformd",
                "keys": "@image_key",
                "subclass": "@subclass",
                "labels_dict": "@labels_dict",
            },
            {
                "_target_": "ScaleIntensityRanged",
                "keys": "@image_key",
                "a_min": -963.8247715525971,
                "a_max": 1053.678477684517,
                "b_min": 0,
                "b_max": 1,
                "clip": True,
            },
            {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
            {"_target_": "CastToTyped", "keys": "@image_key", "dtype": "$torch.float32"},
        ],
        "preprocessing": {"_target_": "Compose", "transforms": "$@preprocessing_transforms "},
        "dataset": {"_target_": "Dataset", "data": "$[@input_dict]", "transform": "@preprocessing"},
        "dataloader": {
            "_target_": "ThreadDataLoader",
            "dataset": "@dataset",
            "batch_size": 1,
            "shuffle": False,
            "num_workers": 0,
        },
        "inferer": {
            "_target_": "scripts.inferer.Vista3dInferer",
            "roi_size": "@patch_size",
            "overlap": 0.3,
            "sw_batch_size": "@sw_batch_size",
            "use_point_window": "@use_point_window",
        },
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "ToDeviced", "keys": "pred", "device": "cpu", "_disabled_": True},
                {"_target_": "monai.apps.vista3d.transforms.VistaPostTransformd", "keys": "pred"},
                {
                    "_target_": "Invertd",
                    "keys": "pred",
                    "transform": "$copy.deepcopy(@preprocessing)",
                    "orig_keys": "@image_key",
                    "nearest_interp": True,
                    "to_tensor": True,
                },
                {
                    "_target_": "Lambdad",
                    "func": "$lambda x: torch.nan_to_num(x, nan=255)",
                    "keys": "pred",
                },
                {
                    "_target_": "SaveImaged",
                    "keys": "pred",
                    "resample": False,
                    "output_dir": "@output_dir",
                    "output_ext": "@output_ext",
                    "output_dtype": "@output_dtype",
                    "output_postfix": "@output_postfix",
                    "separate_folder": "@separate_folder",
                },
            ],
        },
        "handlers": [{"_target_": "StatsHandler", "iteration_log": False}],
        "checkpointloader": {
            "_target_": "CheckpointLoader",
            "load_path": "$@bundle_root + '/models/model.pt'",
            "load_dict": {"model": "@network"},
            "map_location": "@device",
        },
        "evaluator": {
            "_target_": "scripts.evaluator.Vista3dEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "val_handlers": "@handlers",
            "amp": True,
            "hyper_kwargs": {"user_prompt": True, "everything_labels": "@everything_labels"},
        },
        "initialize": ["$monai.utils.set_determinism(seed=123)", "$@checkpointloader(@evaluator)"],
        "run": ["$@evaluator.run()"],
    }


def metadata_json() -> dict:
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/"
        "0.8.1/meta_schema_20240725.json",
        "version": "0.6.0",
        "monai_version": "1.4.0",
        "name": "VISTA-3D: Versatile Imaging SegmenTation and Annotation",
        "task": "Multi-organ Segmentation in CT Scans with Zero-shot Learning",
        "description": "A 3D segmentation model (test copy: tiny, random weights).",
        "intended_use": "This is an example, not to be used for diagnostic purposes",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "hounsfield",
                    "modality": "CT",
                    "num_channels": 1,
                    "spatial_shape": [128, 128, 128],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": True,
                    "channel_def": {"0": "image"},
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": 1,
                    "spatial_shape": [128, 128, 128],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": True,
                    "channel_def": LABELS,
                }
            },
        },
    }


NVIDIA_LICENCE = """NVIDIA License

1. Definitions
...
3.3 Use Limitation. The Work and any derivative works thereof only may be used or intended for
use non-commercially. As used herein, "non-commercially" means for research or evaluation
purposes only.
"""


def write_bundle(root: Path, seed: int = 5) -> Path:
    """The bundle folder. Seed 5 draws a network whose masks are neither empty nor full and
    whose positive logits fall into several pieces, of which VistaPostTransformd keeps the
    one under the positive clicks."""
    from monai.bundle import ConfigParser

    folder = root / "vista3d"
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    (folder / "scripts").mkdir()
    (folder / "scripts" / "__init__.py").write_text("")
    (folder / "configs" / "inference.json").write_text(json.dumps(inference_json(), indent=4))
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata_json(), indent=4))
    (folder / "LICENSE").write_text("Apache License\nVersion 2.0, January 2004\n")
    (folder / "LICENSE.weights").write_text(NVIDIA_LICENCE)
    parser = ConfigParser({"input_channels": 1, "network_def": network_def()})
    network = parser.get_parsed_content("network_def")
    torch.save(random_weights(network, seed), folder / "models" / "model.pt")
    return folder


def random_weights(network, seed: int) -> dict:
    """Weights drawn from numpy's frozen ``RandomState`` stream (not torch's generator,
    whose draws a torch release may change): He-uniform like torch's default for
    convolutions and linear layers, N(0, 1) for embeddings and the point encoding's
    random matrix (a buffer); norms keep 1 and 0."""
    rng = np.random.RandomState(seed)
    norms = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._NormBase)
    state = {}
    for module_name, module in network.named_modules():
        for name, value in module.named_parameters(recurse=False):
            key = f"{module_name}.{name}" if module_name else name
            if isinstance(module, norms):
                state[key] = value.detach().clone()
            elif isinstance(module, torch.nn.Embedding):
                state[key] = torch.from_numpy(rng.normal(0, 1, value.shape).astype(np.float32))
            else:
                weight = getattr(module, "weight", value)
                fan_in = int(np.prod(weight.shape[1:])) if weight.ndim > 1 else weight.shape[0]
                bound = 1 / np.sqrt(max(fan_in, 1))
                draw = rng.uniform(-bound, bound, value.shape).astype(np.float32)
                state[key] = torch.from_numpy(draw)
    for key, value in network.named_buffers():  # the point encoding's random matrix
        state[key] = torch.from_numpy(rng.normal(0, 1, value.shape).astype(np.float32))
    full = network.state_dict()
    full.update(state)
    return full


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("vista3d"))


# ------------------------------------------------------------------------- the scan
def scan() -> Volume:
    """A CT-like block: air around a body (soft tissue) off to one side, so that
    ``CropForegroundd`` cuts the other side (40 model voxels wide, 32 left), an organ
    and a bone in the body."""
    grid = np.indices(SHAPE).astype(np.float64)
    rng = np.random.default_rng(0)
    array = np.full(SHAPE, -1000.0)
    body = ((grid[0] - 38) / 12) ** 2 + ((grid[1] - 22) / 10) ** 2 < 1
    array[body] = 40.0
    organ = ((grid[0] - 40) / 6) ** 2 + ((grid[1] - 20) / 5) ** 2 + ((grid[2] - 12) / 5) ** 2 < 1
    array[organ] = 120.0
    array[((grid[0] - 31) ** 2 + (grid[1] - 28) ** 2) < 6] = 700.0
    array += rng.normal(0, 15, SHAPE)
    return Volume(array.astype(np.float32), AFFINE)


def world(ijk) -> np.ndarray:
    return (AFFINE @ np.r_[np.asarray(ijk, dtype=float), 1.0])[:3]


# ----------------------------------------------------------------------- the reference
def monai_pipeline(
    folder: Path, volume: Volume, clicks, tmp_path: Path, label: int | None = None
) -> np.ndarray:
    """The bundle run by MONAI as its evaluator runs it, with ``points`` (scan voxels)
    and ``point_labels`` (and ``label_prompt: [label]``); the mask on the scan grid."""
    import nibabel as nib
    from monai.apps.vista3d.inferer import point_based_window_inferer
    from monai.bundle import ConfigParser

    path = tmp_path / "scan.nii.gz"
    image = nib.Nifti1Image(volume.array, volume.affine)
    image.header.set_sform(volume.affine, 1)
    image.header.set_qform(volume.affine, 1)
    nib.save(image, path)

    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    parser.read_meta(str(folder / "configs" / "metadata.json"))
    parser["bundle_root"] = str(folder)
    parser["device"] = "$torch.device('cpu')"
    parser["preprocessing_transforms#0#reader"] = "NibabelReader"  # not in MONAI 1.6
    import sys

    sys.path.insert(0, str(folder))  # the config imports its scripts package
    try:
        preprocessing = parser.get_parsed_content("preprocessing")
        network = parser.get_parsed_content("network")
        post = [parser.get_parsed_content(f"postprocessing#transforms#{i}") for i in (1, 2, 3)]
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("scripts", None)
    network.load_state_dict(torch.load(folder / "models" / "model.pt", weights_only=True))
    network.eval()

    item = {
        "image": str(path),
        "points": [c[0] for c in clicks],
        "point_labels": [int(c[1]) for c in clicks],
    }
    if label is not None:
        item["label_prompt"] = [label]
    data = preprocessing(item)
    inputs = data["image"][None]  # the dataloader's batch of one
    points = np.array([c[0] for c in clicks], dtype=np.float64)[None]
    # Vista3dEvaluator.transform_points (the batch's affine of its one item)
    affine = np.asarray(data["image"].affine, dtype=np.float64)
    to_model = np.linalg.inv(affine) @ np.asarray(data["image"].meta["original_affine"])
    points = np.einsum(
        "ij,bnj->bni", to_model, np.concatenate([points, np.ones((*points.shape[:2], 1))], axis=-1)
    )[..., :3]
    points = torch.from_numpy(points)
    labels = torch.as_tensor([data["point_labels"]])
    class_vector = None if label is None else torch.as_tensor([[label]])
    with torch.no_grad():
        pred = point_based_window_inferer(
            inputs=inputs,
            roi_size=parser.get_parsed_content("patch_size"),
            sw_batch_size=1,
            transpose=True,
            predictor=network,
            mode="gaussian",
            sw_device=inputs.device,
            device=inputs.device,
            overlap=0.3,
            point_coords=points,
            point_labels=labels,
            class_vector=class_vector,
            prompt_class=copy.deepcopy(class_vector),
            prev_mask=None,
            labels=None,
            label_set=None,
        )
    # the evaluator's reset_ops_id, its decollated item, the bundle's postprocessing
    from monai.transforms import reset_ops_id

    out = {
        "image": reset_ops_id(data["image"]),
        "pred": pred[0],
        "points": points,
        "point_labels": labels,
        "label_prompt": None if class_vector is None else class_vector[:, 0],
    }
    for transform in post:
        out = transform(out)
    result = np.asarray(out["pred"])[0]
    assert result.shape == volume.shape
    return result == (1 if label is None else label)


# ----------------------------------------------------------------------------- tests
def test_masks_equal_the_bundle_run_by_monai(bundle, tmp_path):
    volume = scan()
    backend = make_backend("vista3d", bundle, trust=True, device="cpu")
    assert isinstance(backend, Vista3dBackend) and backend.crops is False
    session = PromptSession(volume, backend)
    # scan voxels whose model-grid coordinates are a third off an integer (no window or
    # component lookup depends on float rounding)
    clicks = [((40.0, 20.0, 13.0), True), ((31.0, 28.0, 14.0), False), ((43.0, 17.0, 10.0), True)]
    masks = []
    for index, (ijk, positive) in enumerate(clicks):
        mask = session.add(Prompt.point(world(ijk), positive)).mask
        expected = monai_pipeline(bundle, volume, clicks[: index + 1], tmp_path)
        assert np.array_equal(mask, expected), index
        masks.append(mask.copy())
    assert 0 < masks[0].sum() < masks[0].size  # the random network marks something
    assert not np.array_equal(masks[0], masks[2])  # and the clicks change it
    assert np.array_equal(session.undo(), masks[1])


@pytest.mark.parametrize("label", [3, 25])  # spleen; hepatic vessel, a "special" class
def test_clicks_on_a_class_equal_the_bundle_with_its_label_prompt(bundle, tmp_path, label):
    """``label=N``: the bundle's ``label_prompt: [N]`` with points (class head and point
    head together; VistaPreTransformd turns clicks on special classes into 2/3)."""
    volume = scan()
    backend = make_backend("vista3d", bundle, trust=True, device="cpu", label=label)
    session = PromptSession(volume, backend)
    clicks = [((40.0, 20.0, 13.0), True), ((31.0, 28.0, 14.0), False)]
    for index, (ijk, positive) in enumerate(clicks):
        mask = session.add(Prompt.point(world(ijk), positive)).mask
        expected = monai_pipeline(bundle, volume, clicks[: index + 1], tmp_path, label)
        assert np.array_equal(mask, expected), index
    assert 0 < mask.sum() < mask.size


def test_the_licence_of_the_weights_is_shown(bundle):
    assert Vista3dBackend.non_commercial and "NVIDIA" in Vista3dBackend.licence
    backend = make_backend("vista3d", bundle, trust=True, device="cpu")
    # LICENSE.weights, not the Apache LICENSE of the bundle's code
    assert backend.licence == "NVIDIA License (non-commercial use only)"
    assert backend.non_commercial


def test_an_untrusted_bundle_is_refused_before_its_config_runs(bundle, tmp_path):
    marker = tmp_path / "ran"
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    folder = tmp_path / "untrusted"
    import shutil

    shutil.copytree(bundle, folder)
    config["imports"].append(f"$open({str(marker)!r}, 'w').close()")
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(BackendError, match=r"untrusted: MONAI bundle .* not trusted.*trust=True"):
        make_backend("vista3d", folder)
    assert not marker.exists()


def test_only_points_and_a_negative_click_alone_gives_nothing(bundle):
    volume = scan()
    session = PromptSession(volume, make_backend("vista3d", bundle, trust=True, device="cpu"))
    assert not session.add(Prompt.point(world((40, 20, 13)), positive=False)).mask.any()
    with pytest.raises(BackendError, match="point prompts only, not a box"):
        session.add(Prompt.box(world((36, 14, 13)), world((44, 24, 13))))
    assert len(session.prompts) == 1


def test_the_request_carries_the_crop_affine():
    seen = []

    class Recorder(PromptBackend):
        name = "recorder"

        def segment(self, request):
            seen.append(request)
            return np.zeros(request.image.shape, dtype=bool)

    volume = scan()
    PromptSession(volume, Recorder(), margin_mm=3.0).add(Prompt.point(world((20, 18, 12))))
    request = seen[0]
    assert request.offset != (0, 0, 0)
    expected = AFFINE @ np.r_[np.asarray(request.offset, dtype=float), 1.0]
    np.testing.assert_allclose(request.affine[:, 3], expected)
    np.testing.assert_allclose(request.affine[:3, :3], AFFINE[:3, :3])


# -------------------------------------------------------------------------- bad bundles
def test_bad_bundles_name_the_file(bundle, tmp_path):
    import shutil

    with pytest.raises(BackendError, match=r"nowhere: no such folder"):
        make_backend("vista3d", tmp_path / "nowhere", trust=True)
    folder = tmp_path / "b"
    shutil.copytree(bundle, folder)
    (folder / "models" / "model.pt").unlink()
    with pytest.raises(BackendError, match=r"model\.pt: is missing"):
        make_backend("vista3d", folder, trust=True)
    shutil.rmtree(folder)
    shutil.copytree(bundle, folder)
    (folder / "configs" / "metadata.json").unlink()
    with pytest.raises(BackendError, match=r"configs/metadata\.json is missing"):
        make_backend("vista3d", folder, trust=True)
    shutil.rmtree(folder)
    shutil.copytree(bundle, folder)
    config = json.loads((folder / "configs" / "inference.json").read_text())
    config["network_def"] = {
        "_target_": "BasicUNet",
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 2,
        "features": [4, 4, 4, 4, 4, 4],
    }
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(BackendError, match=r"inference\.json: 'network_def' builds a BasicUNet"):
        make_backend("vista3d", folder, trust=True)


def test_weights_that_do_not_fit_are_refused(bundle, tmp_path):
    import shutil

    folder = tmp_path / "small"
    shutil.copytree(bundle, folder)
    state = torch.load(folder / "models" / "model.pt", weights_only=True)
    state.pop(next(iter(state)))
    torch.save(state, folder / "models" / "model.pt")
    with pytest.raises(BackendError, match=r"model\.pt"):
        make_backend("vista3d", folder, trust=True)


def test_reference_pipeline_is_deterministic(bundle, tmp_path):
    """The reference itself: two runs give one mask (no hidden randomness)."""
    volume = scan()
    clicks = [((40.0, 20.0, 13.0), True)]
    first = monai_pipeline(bundle, volume, clicks, tmp_path)
    assert np.array_equal(first, monai_pipeline(bundle, volume, copy.deepcopy(clicks), tmp_path))


def test_the_command_line_needs_the_users_word_for_a_bundle(bundle, tmp_path, capsys):
    """``medseg prompt --method vista3d``: refused without --trust-bundle (the config never
    runs), and with it the same mask as the session gives."""
    import nibabel as nib

    from napari_medseg.cli import main
    from napari_medseg.cli.common import EXIT_BAD_INPUT

    volume = scan()
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(volume.array, AFFINE), path)
    out = tmp_path / "mask.nii.gz"
    click = ",".join(f"{v:.4f}" for v in world((40.0, 20.0, 13.0)))
    args = ["prompt", str(path), "-o", str(out), "--method", "vista3d",
            "--checkpoint", str(bundle), "--point", click]
    assert main(args) == EXIT_BAD_INPUT
    assert "--trust-bundle" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--trust-bundle"]) == 0
    expected = PromptSession(
        Volume(np.asarray(nib.load(path).dataobj, np.float32), nib.load(path).affine),
        make_backend("vista3d", bundle, trust=True, device="cpu"),
    ).add(Prompt.point(world((40.0, 20.0, 13.0)))).mask
    assert np.array_equal(np.asarray(nib.load(out).dataobj) > 0, expected)
    assert expected.any()
