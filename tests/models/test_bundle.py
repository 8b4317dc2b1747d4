"""MONAI bundle folders -> LoadedModel: trust, metadata, the bundle's own transforms, weights.

These tests need no inference engine: they check the bundle side against MONAI itself
(the bundle's full preprocessing run on the NIfTI file, exactly as ``monai.bundle`` would).
The end-to-end comparison with ``monai.bundle.run`` is in ``test_bundle_equivalence.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from bundle_factory import (
    BRATS_LAMBDA,
    write_brats_like,
    write_ct_phantom,
    write_mr_phantom,
    write_scripts_bundle,
    write_spleen_like,
    write_wholebody_like,
)
from geometry_cases import make_affine

from napari_medseg.io.nifti import read_nifti
from napari_medseg.models.bundle import (
    BundleError,
    BundleTrustError,
    is_bundle_folder,
    load_bundle,
    read_bundle_info,
)
from napari_medseg.models.bundle_transforms import probe_paint_order
from napari_medseg.models.errors import ModelLoadError


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """The fixture bundles (written once for the module) and input scans."""
    root = tmp_path_factory.mktemp("bundles")
    data = root / "data"
    ct = write_ct_phantom(
        data / "imagesTs" / "ct.nii.gz",
        shape=(40, 36, 24),
        affine=make_affine("LPS", spacing=(0.8, 0.9, 2.5)),
    )
    mr = write_mr_phantom(data, "case", shape=(24, 20, 16))
    return {
        "root": root,
        "data": data,
        "ct": ct,
        "mr": [data / name for name in mr],
        "spleen": write_spleen_like(root, fit_steps=0),
        "wholebody": write_wholebody_like(root, out_channels=12),
        "brats": write_brats_like(root, cases=[mr]),
        "scripts": write_scripts_bundle(root, fit_steps=0),
    }


def _edit_config(folder, change):
    """Apply ``change(config_dict)`` to a bundle's configs/inference.json."""
    path = folder / "configs" / "inference.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config, indent=2))


def _copy_bundle(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _bundles_own_preprocessing(folder, image):
    """The bundle's complete preprocessing (LoadImaged included) on files, as MONAI runs it."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    parser["bundle_root"] = str(folder)
    result = parser.get_parsed_content("preprocessing")({"image": image})
    return result["image"]


# -- reading without running anything -----------------------------------------------


def test_importing_bundle_and_zoo_modules_pulls_in_no_torch():
    code = (
        "import sys, napari_medseg.models.bundle, napari_medseg.models.zoo;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'monai')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_metadata_is_read_without_trust(bundles):
    assert is_bundle_folder(bundles["brats"]) and not is_bundle_folder(bundles["data"])
    info = read_bundle_info(bundles["brats"])
    assert (info.in_channels, info.channel_names) == (4, ("T1c", "T1", "T2", "FLAIR"))
    assert info.output_names == {0: "Tumor core", 1: "Whole tumor", 2: "Enhancing tumor"}
    assert (info.modality, info.version, info.config_file.name) == ("MR", "0.5.2", "inference.json")


def test_untrusted_bundle_is_refused_before_any_of_its_code_runs(bundles, tmp_path):
    folder = _copy_bundle(bundles["spleen"], tmp_path / "evil")
    marker = tmp_path / "ran.txt"
    steps = f"$open({str(marker)!r}, 'w').close() or -57"  # runs when preprocessing is built
    _edit_config(folder, lambda c: c["preprocessing"]["transforms"][4].update(a_min=steps))
    with pytest.raises(BundleTrustError) as caught:
        load_bundle(folder)
    message = str(caught.value)
    assert str(folder) in message and "--trust-bundle" in message and "Python code" in message
    assert not marker.exists()
    load_bundle(folder, trust=True)  # the same config, trusted: its import line runs
    assert marker.exists()


@pytest.mark.parametrize(
    ("remove", "expected"),
    [
        ("configs/metadata.json", "configs/metadata.json is missing"),
        ("configs/inference.json", "no inference config"),
        ("models/model.pt", "CheckpointLoader loads its weights from there"),
    ],
)
def test_incomplete_bundles_are_named_errors(bundles, tmp_path, remove, expected):
    folder = _copy_bundle(bundles["spleen"], tmp_path / "broken")
    (folder / remove).unlink()
    with pytest.raises(BundleError, match=expected) as caught:
        load_bundle(folder, trust=True)
    assert str(folder) in str(caught.value)


# -- what the spec says ----------------------------------------------------------------


def test_spleen_spec_comes_from_metadata_and_inferer(bundles):
    model = load_bundle(bundles["spleen"], trust=True)
    spec = model.spec
    assert [(label.value, label.name) for label in spec.labels] == [
        (0, "background"),
        (1, "spleen"),
    ]
    # SlidingWindowInferer(roi_size, sw_batch_size=4, overlap=0.5): MONAI's default mode
    assert (spec.roi_size, spec.sw_batch_size, spec.overlap) == ((32, 32, 32), 4, 0.5)
    assert (spec.blend_mode, spec.activation, spec.modality) == ("constant", "softmax", "CT")
    assert spec.target_spacing == () and spec.intensity.kind == "none"  # the transforms do it
    assert model.details["grid"] == {"orientation": "RAS", "spacing_mm": [1.5, 1.5, 2.0]}
    assert model.details["weights_sha256"] and not model.network.training
    assert model.postprocess_labels is None


def test_wholebody_spec_reads_displayable_configs(bundles):
    model = load_bundle(bundles["wholebody"], trust=True)
    spec = model.spec
    assert len(spec.labels) == 12 and spec.labels[5].name == "liver"
    assert (spec.blend_mode, spec.overlap, spec.sw_batch_size) == ("gaussian", 0.25, 1)
    assert model.details["padding_mode"] == "replicate"
    assert any("replicate" in w for w in model.details["warnings"])
    assert model.details["grid"]["spacing_mm"] == [1.5, 1.5, 1.5]


def test_brats_spec_is_four_channels_painted_like_the_lambda(bundles):
    spec = load_bundle(bundles["brats"], trust=True).spec
    assert (spec.in_channels, spec.channel_names) == (4, ("T1c", "T1", "T2", "FLAIR"))
    assert spec.activation == "sigmoid"
    # Lambdad: ET (ch 2) -> 4 over TC (ch 0) -> 1 over WT (ch 1) -> 2
    assert spec.paint_order == ((1, 2), (0, 1), (2, 4))
    assert [(lab.value, lab.name) for lab in spec.labels] == [
        (0, "background"),
        (1, "Tumor core"),
        (2, "Whole tumor"),
        (4, "Enhancing tumor"),
    ]


def test_paint_order_probe_rejects_a_mapping_that_is_not_one():
    func = eval(BRATS_LAMBDA[1:])  # noqa: S307 - the test's own constant
    assert probe_paint_order(func, 3) == ((1, 2), (0, 1), (2, 4))
    with pytest.raises(ValueError, match="no paint order"):  # "1 when exactly one is on"
        probe_paint_order(lambda x: (x.sum(0, keepdim=True) == 1).float(), 2)


def test_brats_without_lambda_paints_channels_in_order_and_says_so(bundles, tmp_path):
    folder = write_brats_like(tmp_path, label_lambda=None)
    model = load_bundle(folder, trust=True)
    assert model.spec.paint_order == ((0, 1), (1, 2), (2, 3))
    assert any("overlapping binary channels" in w for w in model.details["warnings"])


# -- preprocessing: the bundle's own transforms, fed our volumes ---------------------------


@pytest.mark.parametrize("name", ["spleen", "wholebody", "scripts"])
def test_preprocess_equals_the_bundles_own_on_the_file(bundles, name):
    model = load_bundle(bundles[name], trust=True)
    ours = model.preprocess([read_nifti(bundles["ct"])])
    theirs = _bundles_own_preprocessing(bundles[name], str(bundles["ct"]))
    assert ours.image.dtype == torch.float32 and type(ours.image) is torch.Tensor
    assert torch.equal(ours.image, theirs.as_tensor())
    np.testing.assert_allclose(ours.affine, theirs.affine.numpy(), atol=1e-9)
    # the model grid really differs (LPS 0.8 x 0.9 x 2.5 mm in, RAS out)
    assert ours.affine[0, 0] > 0 and ours.image.shape[1:] != read_nifti(bundles["ct"]).shape


def test_crop_foreground_moves_the_model_grid_and_the_affine_follows(bundles, tmp_path):
    folder = _copy_bundle(bundles["spleen"], tmp_path / "crop")
    crop = {"_target_": "CropForegroundd", "keys": "@image_key", "source_key": "@image_key"}
    _edit_config(folder, lambda c: c["preprocessing"]["transforms"].insert(5, crop))
    source = read_nifti(bundles["ct"])
    cropped = load_bundle(folder, trust=True).preprocess([source])
    theirs = _bundles_own_preprocessing(folder, str(bundles["ct"]))
    assert torch.equal(cropped.image, theirs.as_tensor())
    np.testing.assert_allclose(cropped.affine, theirs.affine.numpy(), atol=1e-9)
    full = load_bundle(bundles["spleen"], trust=True).preprocess([source])
    assert cropped.image.shape[1:] < full.image.shape[1:]  # the air around the body is gone
    shift = np.linalg.solve(full.affine, cropped.affine)  # cropped grid in full-grid voxels
    np.testing.assert_allclose(shift[:3, :3], np.eye(3), atol=1e-9)
    x, y, z = shift[:3, 3].round().astype(int)
    assert min(x, y, z) >= 0 and max(x, y, z) > 0
    size = cropped.image.shape[1:]
    assert torch.equal(
        full.image[:, x : x + size[0], y : y + size[1], z : z + size[2]], cropped.image
    )


def test_preprocess_stacks_four_mr_channels_like_loadimaged_of_a_file_list(bundles):
    model = load_bundle(bundles["brats"], trust=True)
    ours = model.preprocess([read_nifti(p) for p in bundles["mr"]])
    theirs = _bundles_own_preprocessing(bundles["brats"], [str(p) for p in bundles["mr"]])
    assert ours.image.shape == (4, 24, 20, 16)
    assert torch.equal(ours.image, theirs.as_tensor())
    # NormalizeIntensityd(nonzero, channel_wise): each channel's non-zero voxels ~ N(0, 1)
    for channel in ours.image:
        values = channel[channel != 0]
        assert abs(float(values.mean())) < 1e-4 and abs(float(values.std()) - 1) < 1e-2


def test_preprocess_refuses_wrong_channel_count_or_grids(bundles):
    model = load_bundle(bundles["brats"], trust=True)
    volumes = [read_nifti(p) for p in bundles["mr"]]
    with pytest.raises(ValueError, match="takes 4 input channel"):
        model.preprocess(volumes[:3])
    volumes[2].affine[:3, 3] += 5.0
    with pytest.raises(ValueError, match="one voxel grid"):
        model.preprocess(volumes)


# -- weights ------------------------------------------------------------------------------


def test_wrapped_state_dict_and_torchscript_weights_load(tmp_path, bundles):
    plain = load_bundle(bundles["spleen"], trust=True)
    wrapped = load_bundle(
        write_spleen_like(tmp_path / "w", weights="pt_wrapped", fit_steps=0), trust=True
    )
    scripted = load_bundle(write_spleen_like(tmp_path / "t", weights="ts", fit_steps=0), trust=True)
    assert scripted.spec.network.kind == "torchscript" and wrapped.spec.network.name == "UNet"
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        reference = plain.network(x)
        assert torch.equal(wrapped.network(x), reference)
        torch.testing.assert_close(scripted.network(x), reference)


def test_weights_with_pickled_objects_or_wrong_shapes_are_refused(bundles, tmp_path):
    folder = _copy_bundle(bundles["spleen"], tmp_path / "pickled")
    torch.save(
        {"model": torch.load(folder / "models" / "model.pt"), "hook": types.SimpleNamespace()},
        folder / "models" / "model.pt",
    )
    with pytest.raises(ModelLoadError, match="would run code when loaded .a pickled types"):
        load_bundle(folder, trust=True)
    _edit_config(folder, lambda c: c["network_def"].update(channels=[4, 8, 32]))
    torch.save(
        torch.load(bundles["spleen"] / "models" / "model.pt"), folder / "models" / "model.pt"
    )
    with pytest.raises(ModelLoadError, match="do not fit the bundle's network_def") as caught:
        load_bundle(folder, trust=True)
    assert "model.pt" in str(caught.value)


def test_lowres_flag_picks_the_weights_the_bundle_would(tmp_path):
    folder = write_wholebody_like(tmp_path, out_channels=3, highres=False)
    model = load_bundle(folder, trust=True)
    assert model.details["weights"].endswith("model_lowres.pt")
    assert model.details["grid"]["spacing_mm"] == [3.0, 3.0, 3.0]


# -- scripts/ packages ----------------------------------------------------------------------


def test_two_bundles_with_their_own_scripts_package_in_one_process(tmp_path):
    unrelated = types.ModuleType("scripts")  # e.g. the user's own top-level package
    sys.modules["scripts"] = unrelated
    try:
        first = load_bundle(
            write_scripts_bundle(tmp_path / "a", flavour="a", width=8, fit_steps=0), trust=True
        )
        second = load_bundle(
            write_scripts_bundle(tmp_path / "b", flavour="b", width=6, fit_steps=0), trust=True
        )
        assert sys.modules["scripts"] is unrelated  # put back as it was
        assert "scripts.networks" not in sys.modules
    finally:
        del sys.modules["scripts"]
    assert (type(first.network).flavour, type(second.network).flavour) == ("a", "b")
    assert first.network.head.in_channels == 9 and second.network.head.in_channels == 7
    assert first.spec.network.name == "scripts.networks.tiny.TinySegNet"
    with torch.no_grad():  # both still run after their modules left sys.modules
        assert first.network(torch.rand(1, 1, 8, 8, 8)).shape == (1, 4, 8, 8, 8)
        assert second.network(torch.rand(1, 1, 8, 8, 8)).shape == (1, 4, 8, 8, 8)


# -- postprocessing ------------------------------------------------------------------------


def test_keep_largest_component_after_invertd_runs_on_the_labels_it_is_given(bundles, tmp_path):
    folder = _copy_bundle(bundles["spleen"], tmp_path / "klcc")

    def add_klcc(config):  # prostate_mri_anatomy: AsDiscreted argmax, then this
        transforms = config["postprocessing"]["transforms"]
        transforms.insert(
            3, {"_target_": "KeepLargestConnectedComponentd", "keys": "pred", "applied_labels": [1]}
        )

    _edit_config(folder, add_klcc)
    model = load_bundle(folder, trust=True)
    labels = np.zeros((12, 12, 12), np.uint8)
    labels[1:6, 1:6, 1:6] = 1  # 125 voxels
    labels[9:11, 9:11, 9:11] = 1  # 8 voxels, removed
    cleaned = model.postprocess_labels(labels)
    assert cleaned.dtype == np.uint8 and cleaned.sum() == 125 and cleaned[10, 10, 10] == 0
    # it comes after Invertd: the bundle runs it on the scan grid, and so does the
    # Segmenter, which decides this bundle's labels there (details["interpolate"])
    assert model.details["interpolate"] == {"values": "softmax", "padding_mode": "border"}
    assert not any("model grid" in w for w in model.details["warnings"])
    # a bundle that inverts labels by nearest neighbour keeps them on the model grid: said
    nearest = _copy_bundle(folder, tmp_path / "klcc_nearest")
    _edit_config(
        nearest, lambda c: c["postprocessing"]["transforms"][1].update(nearest_interp=True)
    )
    model = load_bundle(nearest, trust=True)
    assert model.details["interpolate"] is None
    assert any(
        "KeepLargestConnectedComponentd runs on the scan grid in the bundle, on the model grid" in w
        for w in model.details["warnings"]
    )


def _postprocessing(folder, tmp_path, name, change=None, preprocessing=None):
    """A copy of ``folder`` with its postprocessing (and preprocessing) transforms changed."""
    copy = _copy_bundle(folder, tmp_path / name)

    def edit(config):
        if change is not None:
            change(config["postprocessing"]["transforms"])
        if preprocessing is not None:
            preprocessing(config["preprocessing"]["transforms"])

    _edit_config(copy, edit)
    return load_bundle(copy, trust=True)


def test_what_invertd_interpolates_before_the_decision_is_read(bundles, tmp_path):
    """``details["interpolate"]``: the scores the bundle interpolates and its padding."""
    spleen = bundles["spleen"]
    assert load_bundle(spleen, trust=True).details["interpolate"] == {
        "values": "softmax",
        "padding_mode": "border",
    }
    # argmax before Invertd (wholeBody), or no spatial transform to undo (BraTS): labels
    assert load_bundle(bundles["wholebody"], trust=True).details["interpolate"] is None
    assert load_bundle(bundles["brats"], trust=True).details["interpolate"] is None

    def invert_first(transforms):  # Invertd, then Activationsd: the logits are interpolated
        transforms[0], transforms[1] = transforms[1], transforms[0]

    model = _postprocessing(spleen, tmp_path, "logits", invert_first)
    assert model.details["interpolate"]["values"] == "logits"

    def sigmoid(transforms):
        transforms[0] = {"_target_": "Activationsd", "keys": "pred", "sigmoid": True}

    model = _postprocessing(spleen, tmp_path, "sigmoid_argmax", sigmoid)
    assert model.spec.activation == "softmax"  # argmax of sigmoids: the same on one voxel
    assert model.details["interpolate"]["values"] == "sigmoid"  # not of their mixes

    def zeros(transforms):
        transforms[3]["padding_mode"] = "zeros"

    model = _postprocessing(spleen, tmp_path, "zeros", preprocessing=zeros)
    assert model.details["interpolate"]["padding_mode"] == "zeros"

    def crop_after(transforms):
        transforms.insert(
            5, {"_target_": "CropForegroundd", "keys": "image", "source_key": "image"}
        )

    model = _postprocessing(spleen, tmp_path, "crop_after", preprocessing=crop_after)
    assert model.details["interpolate"]["padding_mode"] == "zeros"  # the crop's inverse pads 0


@pytest.mark.parametrize(
    ("where", "transform", "why"),
    [
        (3, {"_target_": "CropForegroundd", "keys": "image", "source_key": "image"}, "before"),
        (5, {"_target_": "SpatialPadd", "keys": "image", "spatial_size": [96, 96, 96]}, "after"),
        (5, {"_target_": "Zoomd", "keys": "image", "zoom": 0.9}, "Zoomd"),
    ],
)
def test_an_inverse_not_reproduced_falls_back_to_nearest_labels_and_says_so(
    bundles, tmp_path, where, transform, why
):
    def insert(transforms):
        transforms.insert(where, transform)

    model = _postprocessing(bundles["spleen"], tmp_path, "other", preprocessing=insert)
    assert model.details["interpolate"] is None
    (warning,) = [w for w in model.details["warnings"] if "does not reproduce" in w]
    assert why in warning and "nearest neighbour" in warning


def test_spacing_with_nearest_or_bicubic_mode(bundles, tmp_path):
    def mode(value):
        return lambda transforms: transforms[3].update(mode=value)

    nearest = _postprocessing(bundles["spleen"], tmp_path, "nn", preprocessing=mode("nearest"))
    assert nearest.details["interpolate"] is None  # nearest scores: nearest labels, exact
    assert not nearest.details["warnings"]
    bicubic = _postprocessing(bundles["spleen"], tmp_path, "cubic", preprocessing=mode("bicubic"))
    assert bicubic.details["interpolate"] is None
    assert any("'bicubic'" in w for w in bicubic.details["warnings"])


def test_unsupported_postprocessing_or_inferer_is_refused_by_name(bundles, tmp_path):
    folder = _copy_bundle(bundles["spleen"], tmp_path / "odd")
    _edit_config(
        folder,
        lambda c: c["postprocessing"]["transforms"].insert(
            3, {"_target_": "GaussianSmoothd", "keys": "pred", "sigma": 1.0}
        ),
    )
    with pytest.raises(BundleError, match="GaussianSmoothd"):
        load_bundle(folder, trust=True)
    folder = _copy_bundle(bundles["spleen"], tmp_path / "simple")
    _edit_config(folder, lambda c: c.update(inferer={"_target_": "SimpleInferer"}))
    with pytest.raises(BundleError, match="SimpleInferer"):
        load_bundle(folder, trust=True)
