"""The real pretrained networks of the catalogue: conversion, preprocessing, real scans.

* The MeshNet weights converted by ``scripts/convert_pretrained.py`` compute what the
  authors' TensorFlow.js layers compute: a reference forward pass written here in numpy,
  straight from ``model.json`` and the ``.bin`` weights (channels-last, as tfjs runs it).
* brainchop's pipeline (conform to 256^3 1 mm LIA uint8, normalise, crop, argmax,
  largest component, back to the scan grid) equals a straightforward reference built on
  nibabel (FreeSurfer's MGH header for the conformed grid, ``resample_from_to``) and
  scikit-image (components), on a real T1.
* ``lungs-ct`` on the bundled real chest CT agrees with a Hounsfield-unit lung mask.
* Licences are shown, and non-commercial weights are flagged before a run.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_medseg.inference import Segmenter
from napari_medseg.io import read_scan
from napari_medseg.labels.classes import LabelClass
from napari_medseg.models.licence import is_non_commercial, licence_from_text, licence_warning
from napari_medseg.models.registry import DEFAULT_MODEL_DIR, load_model
from napari_medseg.models.spec import ModelSpec, ModelSpecError, NetworkSpec
from napari_medseg.samples import sample_path
from napari_medseg.volume import Volume

MODELS_SRC = Path(__file__).resolve().parents[3] / "shared" / "models-src"
NIBABEL_T1 = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"


def real_t1() -> Volume:
    """nibabel's real T1 (33 x 41 x 25 voxels of 2 mm), through the project's reader."""
    return read_scan(NIBABEL_T1)


# -- the converted weights ------------------------------------------------------------------
def tfjs_reference_forward(folder: Path, patch: np.ndarray) -> np.ndarray:
    """The tfjs layers model of ``folder`` on a (X, Y, Z) patch, channels last, in numpy:
    'same' dilated 3x3x3 convolutions, instance norm after ``*_gn`` layers, activations."""
    from scipy.special import erf

    model = json.loads((folder / "model.json").read_text())
    blob = b"".join((folder / p).read_bytes() for g in model["weightsManifest"] for p in g["paths"])
    weights, offset = {}, 0
    for group in model["weightsManifest"]:
        for entry in group["weights"]:
            n = int(np.prod(entry["shape"]))
            weights[entry["name"]] = np.frombuffer(blob, "<f4", n, offset).reshape(entry["shape"])
            offset += 4 * n
    layers = model["modelTopology"]["model_config"]["config"]["layers"][1:]
    x = patch.astype(np.float64)[..., None]  # (X, Y, Z, C)
    for layer in layers:
        config = layer["config"]
        if layer["class_name"] == "Activation":
            kind = config["activation"]
            if kind == "elu":
                x = np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
            elif kind == "relu":
                x = np.maximum(x, 0)
            else:
                x = 0.5 * x * (1 + erf(x / np.sqrt(2)))
            continue
        kernel = weights[f"{config['name']}/kernel"].astype(np.float64)  # (kD,kH,kW,Ci,Co)
        d = config["dilation_rate"][0]
        k = kernel.shape[0]
        reach = d * (k // 2)
        padded = np.pad(x, [(reach, reach)] * 3 + [(0, 0)])
        out = np.zeros((*x.shape[:3], kernel.shape[-1]))
        for a in range(k):
            for b in range(k):
                for c in range(k):
                    shifted = padded[
                        a * d : a * d + x.shape[0],
                        b * d : b * d + x.shape[1],
                        c * d : c * d + x.shape[2],
                    ]
                    out += shifted @ kernel[a, b, c]
        if config["use_bias"]:
            out += weights[f"{config['name']}/bias"]
        if config["name"].endswith("_gn"):
            mean = out.mean(axis=(0, 1, 2))
            var = out.var(axis=(0, 1, 2))
            out = (out - mean) / np.sqrt(var + 1e-5)
        x = out
    return x


@pytest.mark.skipif(not MODELS_SRC.is_dir(), reason="needs ../shared/models-src")
@pytest.mark.parametrize(
    ("name", "folder"), [("brain-structures", "model30chan18cls"), ("skull-strip", "mindgrab")]
)
def test_converted_meshnet_computes_what_the_tfjs_model_computes(name, folder):
    data = real_t1().array.astype(np.float32)
    patch = data[4:20, 8:24, 4:20]
    patch = (patch - patch.min()) / (patch.max() - patch.min())
    reference = tfjs_reference_forward(MODELS_SRC / "brainchop" / "models" / folder, patch)
    network = load_model(name).network
    with torch.no_grad():
        ours = network(torch.from_numpy(np.ascontiguousarray(patch))[None, None])[0].numpy()
    ours = np.moveaxis(ours, 0, -1)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-3, atol=1e-3 * np.abs(reference).max())
    assert np.array_equal(ours.argmax(-1), reference.argmax(-1))


@pytest.mark.skipif(not MODELS_SRC.is_dir(), reason="needs ../shared/models-src")
def test_conversion_is_reproducible_and_matches_the_shipped_files(tmp_path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "convert_pretrained.py"
    subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path), "--only", "brain-tissue", "lungs-ct"],
        check=True,
        capture_output=True,
    )
    for name in ("brain-tissue", "lungs-ct"):
        assert (tmp_path / f"{name}.pt").read_bytes() == (
            DEFAULT_MODEL_DIR / f"{name}.pt"
        ).read_bytes()
        assert json.loads((tmp_path / f"{name}.json").read_text()) == json.loads(
            (DEFAULT_MODEL_DIR / f"{name}.json").read_text()
        )
    assert (tmp_path / "LICENSE-brainchop.txt").read_text().startswith("MIT License")


# -- brainchop's pipeline against a straightforward reference --------------------------------
def tiny_meshnet_model(folder: Path, pipeline: dict) -> Path:
    """A spec + random weights of a small MeshNet with the brainchop pipeline."""
    from napari_medseg.models.networks import MeshNet

    torch.manual_seed(3)
    args = {"n_classes": 3, "channels": 2, "dilations": [1, 2, 1], "activation": "elu"}
    network = MeshNet(**args)
    with torch.no_grad():  # intensity bands with some random spatial mixing
        for conv in [m for m in network.features if isinstance(m, torch.nn.Conv3d)]:
            conv.weight.mul_(0.02)
            conv.bias.zero_()
            conv.weight[0, 0, 1, 1, 1] += 1.0
        network.classifier.weight.zero_()
        network.classifier.weight[1, 0] = 1.0
        network.classifier.weight[2, 0] = 2.0
        network.classifier.bias.copy_(torch.tensor([0.2, 0.0, -0.55]))
    torch.save(network.state_dict(), folder / "tiny.pt")
    spec = ModelSpec(
        name="tiny-meshnet",
        spatial_dims=3,
        in_channels=1,
        labels=(LabelClass(0, "background"), LabelClass(1, "a"), LabelClass(2, "b")),
        network=NetworkSpec(kind="medseg", name="MeshNet", args=args),
        weights="tiny.pt",
        roi_size=(0, 0, 0),
        overlap=0.0,
        blend_mode="constant",
        sw_batch_size=1,
        pipeline={"kind": "brainchop", **pipeline},
        license="MIT",
    )
    spec.save_json(folder / "tiny.json")
    return folder / "tiny.json"


def reference_brainchop(path: Path, network, pipeline: dict) -> np.ndarray:
    """brainchop's steps with independent tools, labels on the scan grid of ``path``."""
    from nibabel.freesurfer.mghformat import MGHHeader
    from nibabel.processing import resample_from_to
    from skimage.measure import label as skimage_label

    image = nib.load(path)
    data = np.asarray(image.dataobj, dtype=np.float64)
    # FreeSurfer's conformed grid: 256^3, 1 mm, LIA, centred on the scan's c_ras
    source = MGHHeader()
    source.set_data_shape(image.shape[:3])
    source.set_zooms(image.header.get_zooms()[:3])
    zooms = np.array(image.header.get_zooms()[:3])
    source["Mdc"] = (image.affine[:3, :3] / zooms).T
    source["Pxyz_c"] = (image.affine @ [*(np.array(image.shape[:3]) / 2), 1])[:3]
    target = MGHHeader()
    target.set_data_shape((256, 256, 256))
    target.set_zooms((1, 1, 1))
    target["Mdc"] = np.array([[-1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)
    target["Pxyz_c"] = source["Pxyz_c"]
    conformed_affine = target.get_affine()
    mapped = resample_from_to(
        nib.Nifti1Image(data.astype(np.float32), image.affine),
        ((256, 256, 256), conformed_affine),
        order=1,
        mode="constant",
        cval=0.0,
    ).get_fdata()
    assert mapped.max() > 255  # so FastSurfer's rule rescales it to uint8:
    # 0 .. the 99.9th percentile of the non-zero voxels (a 1000-bin histogram) -> 0 .. 255
    low, high = data.min(), data.max()
    counts, _ = np.histogram(data, 1000)
    cumulative = np.concatenate(([0], np.cumsum(counts)))
    wanted = data.size - int(0.001 * np.count_nonzero(data))
    robust_max = low + (np.argmax(cumulative >= wanted) - 2) * (high - low) / 1000
    scaled = np.clip((mapped - low) * 255 / (robust_max - low), 0, 255)
    conformed = np.rint(scaled).astype(np.uint8).astype(np.float32)
    normalised = (conformed - conformed.min()) / (conformed.max() - conformed.min())
    mask = normalised > normalised.max() * pipeline["auto_threshold"]
    where = np.nonzero(mask)
    pad = pipeline["crop_padding"]
    box = tuple(slice(max(0, int(w.min()) - pad), min(256, int(w.max()) + 1 + pad)) for w in where)
    with torch.no_grad():
        scores = network(torch.from_numpy(np.ascontiguousarray(normalised[box]))[None, None])
    cube = np.zeros((256, 256, 256), np.int16)
    cube[box] = scores[0].argmax(0).numpy()
    components = skimage_label(cube > 0, connectivity=3)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    cube[components != sizes.argmax()] = 0
    back = resample_from_to(
        nib.Nifti1Image(cube, conformed_affine), image, order=0, mode="constant", cval=0
    )
    return np.asarray(back.dataobj).astype(np.int16)


@pytest.mark.parametrize("pipeline", [{"auto_threshold": 0.2, "crop_padding": 3}])
def test_brainchop_pipeline_matches_a_straightforward_reference(tmp_path, pipeline):
    spec_file = tiny_meshnet_model(tmp_path, {"normalization": "minmax", **pipeline})
    model = load_model(spec_file)
    result = Segmenter(model, device="cpu").predict(real_t1())
    reference = reference_brainchop(NIBABEL_T1, model.network, pipeline)
    assert result.labels.shape == reference.shape
    assert len(np.unique(reference)) == 3  # both classes present: a real comparison
    differ = int((result.labels != reference).sum())
    # interpolation of nibabel and of the project differ only in float rounding
    assert differ <= 0.001 * reference.size, differ
    # the model grid is the crop of the conformed cube, 1 mm LIA
    assert result.settings["model_grid_spacing_mm"] == [1.0, 1.0, 1.0]
    assert result.settings["license"] == "MIT"


def test_conformed_cube_is_lia_whatever_the_voxel_order():
    """The same T1 stored in its own LAS order and in RAS order conforms to the same LIA
    image; only FreeSurfer's centre (``affine @ shape / 2``, not symmetric under a flip)
    moves the cube by a whole voxel of the scan."""
    from napari_medseg.models.brainchop import conform
    from napari_medseg.models.preprocess import reorient

    t1 = real_t1()
    flipped, affine = reorient(t1.array, t1.affine, "RAS")
    a, affine_a = conform(t1)
    b, affine_b = conform(Volume(np.ascontiguousarray(flipped), affine, t1.metadata))
    assert nib.aff2axcodes(affine_a) == nib.aff2axcodes(affine_b) == ("L", "I", "A")
    shift = (np.linalg.inv(affine_a) @ affine_b)[:3, 3]
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-6)
    assert np.abs(shift).max() <= max(t1.spacing)
    i, j, k = (int(v) for v in np.round(shift))
    region = tuple(slice(max(0, -n), 256 - max(0, n)) for n in (i, j, k))
    moved = tuple(slice(r.start + n, r.stop + n) for r, n in zip(region, (i, j, k), strict=True))
    assert np.abs(a[moved].astype(int) - b[region].astype(int)).max() <= 1


def test_uint8_scale_follows_freesurfer_robust_range():
    from napari_medseg.models.brainchop import uint8_scale

    rng = np.random.default_rng(0)
    data = np.zeros((20, 20, 20))
    data[5:15, 5:15, 5:15] = rng.uniform(100, 1100, (10, 10, 10))
    data[0, 0, 0] = 50_000  # one hot voxel must not set the range
    low, scale = uint8_scale(data)
    assert low == 0
    top = low + 255 / scale
    assert 950 <= top <= 1200  # ~ the 99.9th percentile of the non-zero voxels, not 50000


# -- lungs-ct on the bundled chest CT --------------------------------------------------------
def hu_lung_mask(ct: np.ndarray) -> np.ndarray:
    """Air inside the body (< -400 HU), the two largest such regions."""
    from scipy import ndimage

    body = np.zeros(ct.shape, bool)
    for k in range(ct.shape[2]):
        tissue, count = ndimage.label(ct[:, :, k] > -500)
        if count:
            largest = np.argmax(np.bincount(tissue.ravel())[1:]) + 1
            body[:, :, k] = ndimage.binary_fill_holes(tissue == largest)
    regions, _ = ndimage.label((ct < -400) & body)
    sizes = np.bincount(regions.ravel())
    sizes[0] = 0
    return np.isin(regions, np.argsort(sizes)[::-1][:2])


def test_lungs_ct_on_the_sample_chest_ct():
    ct = read_scan(sample_path("chest_ct"))
    slab = slice(20, 32)  # 12 of the 48 slices, through both lungs
    affine = ct.affine.copy()
    affine[:3, 3] = ct.affine[:3, :3] @ [0, 0, slab.start] + ct.affine[:3, 3]
    volume = Volume(np.ascontiguousarray(ct.array[:, :, slab]), affine, ct.metadata)
    result = Segmenter("lungs-ct", device="cpu").predict(volume)
    lungs = result.labels == 1
    reference = hu_lung_mask(volume.array)
    dice = 2 * (lungs & reference).sum() / (lungs.sum() + reference.sum())
    assert dice >= 0.95, dice
    assert result.settings["license"] == "MIT"
    assert "LCTSC" in load_model("lungs-ct").spec.description


# -- licences --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("licence", "flagged"),
    [
        ("CC-BY-NC-4.0", True),
        ("CC-BY-NC-SA-4.0", True),
        ("Research only, non-commercial", True),
        ("MIT", False),
        ("Apache-2.0", False),
        ("CC-BY-4.0", False),
        ("unknown", False),
    ],
)
def test_non_commercial_licences_are_flagged(licence, flagged):
    assert is_non_commercial(licence) is flagged
    assert bool(licence_warning("m", licence)) is flagged


def test_licence_files_are_recognised():
    assert licence_from_text("MIT License\n\nCopyright (c) 2020") == "MIT"
    assert licence_from_text("  Apache License\n Version 2.0, January 2004") == "Apache-2.0"
    text = "Attribution-NonCommercial 4.0 International\n..."
    assert licence_from_text(text) == "CC-BY-NC-4.0"
    assert licence_from_text("") == "unknown"


def test_non_commercial_model_is_flagged_before_it_runs(tmp_path, capsys):
    from napari_medseg.cli import main

    spec_file = tiny_meshnet_model(tmp_path, {"normalization": "minmax"})
    data = json.loads(spec_file.read_text())
    data["license"] = "CC-BY-NC-4.0"
    spec_file.write_text(json.dumps(data))
    out = tmp_path / "labels.nii.gz"
    assert main(["segment", str(NIBABEL_T1), "--model", str(spec_file), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "licensed CC-BY-NC-4.0, which does not allow commercial use" in err
    # said before the run: ahead of the progress lines
    assert err.index("CC-BY-NC-4.0") < err.index("segment (cpu)")
    sidecar = json.loads(out.with_name("labels.json").read_text())
    assert sidecar["model"]["settings"]["license"] == "CC-BY-NC-4.0"


def test_bad_pipeline_is_refused_naming_the_spec(tmp_path):
    spec_file = tiny_meshnet_model(tmp_path, {"normalization": "minmax"})
    data = json.loads(spec_file.read_text())
    data["pipeline"] = {"kind": "nnunet-ish"}
    spec_file.write_text(json.dumps(data))
    with pytest.raises(ModelSpecError, match="tiny.json.*unknown pipeline kind"):
        load_model(spec_file)


def test_every_shipped_model_has_licence_notice_card_and_hash():
    import hashlib

    from napari_medseg.models.registry import default_specs

    specs = default_specs()
    assert {"lungs-ct", "brain-structures", "brain-tissue", "brain-regions", "skull-strip"} <= set(
        specs
    )
    total = 0
    for name, (spec, _path) in specs.items():
        assert spec.license != "unknown" and spec.intended_use and spec.source, name
        if spec.license_file:
            assert spec.resolve(spec.license_file).read_text().startswith("MIT License"), name
        card = spec.resolve(spec.model_card).read_text()
        assert f"`{name}`" in card, f"{name} is not described in {spec.model_card}"
        if spec.pipeline.get("kind") == "deepbet":
            continue  # networks of the deepbet package, hash-checked when loaded
        weights = spec.weights_path.read_bytes()
        assert hashlib.sha256(weights).hexdigest() == spec.weights_sha256, name
        total += len(weights)
    assert total < 20 * 1024 * 1024  # the package stays light


# -- brain-mask: deepbet's own pipeline is the reference ---------------------------------------
@pytest.mark.parametrize("order", ["RAS", "LPI"])
def test_brain_mask_equals_deepbet_run(tmp_path, order):
    pytest.importorskip("deepbet")  # the brain extra (a failure in CI, where it is installed)
    from deepbet.bet import BrainExtraction

    from napari_medseg.models.preprocess import reorient

    t1 = read_scan(sample_path("brain_t1"))
    array, affine = reorient(t1.array, t1.affine, order)  # the same brain, stored otherwise
    path = tmp_path / f"t1_{order}.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(array), affine), path)
    _, reference, _ = BrainExtraction(no_gpu=True).run(str(path))
    result = Segmenter("brain-mask", device="cpu").predict(read_scan(path))
    expected = np.asarray(reference.dataobj) > 0
    assert expected.sum() > 1_000_000  # a brain of more than 1 L
    assert int(((result.labels == 1) != expected).sum()) == 0
    assert result.settings["license"] == "MIT"


def test_brain_mask_without_deepbet_says_how_to_install():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'deepbet': raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from napari_medseg.cli import main\n"
        "sys.exit(main(['segment', sys.argv[1], '--model', 'brain-mask', '-o', sys.argv[2]]))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code, str(NIBABEL_T1), "/nonexistent/out.nii.gz"],
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 2
    assert "brain-mask: needs the deepbet package" in ran.stderr
    assert "pip install 'napari-medseg[brain]'" in ran.stderr
    assert "Traceback" not in ran.stderr


@pytest.mark.skipif(not MODELS_SRC.is_dir(), reason="needs ../shared/models-src")
def test_lung_network_computes_what_the_authors_module_computes():
    """The authors' own UNet class (UNet-Small's src/model.py, sigmoid included) and ours
    (logit out; the engine applies the sigmoid) on the same real CT slice."""
    import importlib.util

    source = MODELS_SRC / "unet-small" / "src" / "model.py"
    loader = importlib.util.spec_from_file_location("unet_small_model", source)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    theirs = module.UNet(in_channels=1, out_channels=1)
    weights = MODELS_SRC / "unet-small" / "Models" / "UNet_wdk24.pt"
    theirs.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    theirs.eval()
    ours = load_model("lungs-ct").network
    ct = read_scan(sample_path("chest_ct")).array
    slice_ = np.zeros((512, 512), np.float32)  # raw stored values, air (0) around
    slice_[156:356, 128:384] = ct[:, :, 30].T + 1024.0  # rows posterior, columns left
    x = torch.from_numpy(slice_)[None, None]
    with torch.no_grad():
        expected = theirs(x)
        got = torch.sigmoid(ours(x))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
    assert int((expected > 0.5).sum()) > 5000  # lungs on this slice: a real comparison
