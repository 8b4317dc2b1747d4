"""Segmenter on a MONAI bundle == the bundle's own ``monai.bundle.run``, voxel by voxel.

For each fixture bundle (written after the real Model Zoo configs, see bundle_factory.py)
the bundle runs exactly as a user runs it, ``monai.bundle.run(...)`` on its own
``inference.json`` with ``dataset_dir``/``output_dir``/``bundle_root`` overridden, and
writes its label NIfTI with ``SaveImaged``. ``Segmenter(load_bundle(folder)).predict``
runs on the same image; both label maps lie on the source grid.

Bundles whose ``postprocessing`` is ``Activationsd -> Invertd(nearest_interp=False) ->
AsDiscreted`` (spleen, renal) interpolate the *probabilities* of every class back to the
source grid (trilinear, float64) and decide there; the Segmenter decides there too
(:mod:`napari_medseg.inference.label_resample`, interpolating only near boundaries), so
the labels must be equal except at floating-point ties: voxels whose two best
interpolated probabilities (or a sigmoid and its threshold) are closer than ``TIE``
(our float32 sliding window may differ from MONAI's in the last bits). The brute force
that finds them is ``return_probabilities=True`` (every class interpolated by scipy).
Each test counts the ties and asserts that every differing voxel is one of them.

Measured on blocks of the sample chest CT (real HU, LPS, 1.14 x 1.14 x 5 mm) with
random weights, the hardest case: the labels path (argmax on the model grid, nearest
neighbour back) differed from the bundle on 21.6 % of the voxels (spleen-like, 2
classes, 1.5 x 1.5 x 2 mm, 307 200 voxels), 2.8 % (renal-like, 4 classes, 1 mm, 81 920
voxels) and 23.4 % (sigmoid + threshold variant of the spleen); now on 0, 0 and 1
voxels, each a tie (8, 0-1 and 20 ties found). On the trained phantom bundles: 0.

Bundles that take the argmax before ``Invertd(nearest_interp=True)`` (wholeBody) match
except where a source voxel centre is exactly half-way between two model voxels (a tie
either side may take; MONAI's float32 grid breaks it by rounding noise). Bundles with
no spatial transform (BraTS) must match exactly, and so must any bundle on a scan whose
grid already is the model grid (RAS, the bundle's spacing).

The run uses ``dataloader#num_workers=0`` (same transforms, in one process) to keep the
test light.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from bundle_factory import (
    write_brats_like,
    write_ct_phantom,
    write_mr_phantom,
    write_scripts_bundle,
    write_spleen_like,
    write_wholebody_like,
)
from geometry_cases import make_affine

from napari_medseg.inference.segmenter import Segmenter
from napari_medseg.io.nifti import read_nifti
from napari_medseg.models.bundle import load_bundle
from napari_medseg.samples import sample_path

LPS_GRID = make_affine("LPS", spacing=(0.8, 0.9, 2.5))


def _bundle_run(folder, out, run_id="run", **overrides):
    """``monai.bundle.run`` as a user runs it; returns (labels, affine) it saved."""
    import nibabel as nib
    from monai.bundle import run

    run(
        run_id=run_id,
        meta_file=str(folder / "configs" / "metadata.json"),
        config_file=str(folder / "configs" / "inference.json"),
        bundle_root=str(folder),
        output_dir=str(out),
        **{"dataloader#num_workers": 0},
        **overrides,
    )
    (saved,) = sorted(out.rglob("*.nii.gz"))
    image = nib.load(saved)
    return np.asanyarray(image.dataobj), image.affine


def _ours(folder, volumes):
    result = Segmenter(load_bundle(folder, trust=True), device="cpu").predict(volumes)
    np.testing.assert_array_equal(result.affine, volumes[0].affine)
    return result


#: Interpolated decisions closer than this are floating-point ties (either side is right).
TIE = 1e-6


def _argmax_ties(probabilities):
    """Voxels whose two best (brute-force interpolated) probabilities are within ``TIE``."""
    top = np.sort(probabilities, axis=0)
    return top[-1] - top[-2] < TIE


def _assert_equal_but_ties(ours, reference, ties, max_ties):
    """Every differing voxel is a tie, and ties are few; returns (differ, ties) counts."""
    differ = ours.astype(np.int64) != reference.astype(np.int64)
    assert not (differ & ~ties).any(), f"{int((differ & ~ties).sum())} differences off ties"
    assert ties.sum() <= max_ties, (int(ties.sum()), max_ties)
    return int(differ.sum()), int(ties.sum())


def _labels_path(model):
    """The same bundle with the labels path: argmax on the model grid, nearest back."""
    return dataclasses.replace(model, details={**model.details, "interpolate": None})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The LPS CT scan and the bundles that invert probabilities (written once)."""
    root = tmp_path_factory.mktemp("equivalence")
    ct = write_ct_phantom(root / "data" / "imagesTs" / "ct.nii.gz", affine=LPS_GRID)
    bundles = {
        "spleen": write_spleen_like(root / "pt"),
        "spleen_torchscript": write_spleen_like(root / "ts", weights="ts"),
        "scripts": write_scripts_bundle(root / "scripts"),
    }
    return root, ct, bundles


@pytest.mark.parametrize("kind", ["spleen", "spleen_torchscript", "scripts"])
def test_probability_inverting_bundles_give_the_bundles_labels(data, kind, tmp_path):
    root, ct, bundles = data
    folder = bundles[kind]
    if kind == "scripts":
        reference, affine = _bundle_run(
            folder, tmp_path / "out", run_id="evaluating", dataset_dir=str(ct.parent)
        )
    else:
        reference, affine = _bundle_run(folder, tmp_path / "out", dataset_dir=str(root / "data"))
    source = read_nifti(ct)
    model = load_bundle(folder, trust=True)
    assert model.details["interpolate"] == {"values": "softmax", "padding_mode": "border"}
    result = Segmenter(model, device="cpu").predict([source], return_probabilities=True)
    np.testing.assert_allclose(affine, source.affine, atol=1e-5)
    np.testing.assert_allclose(result.affine, source.affine)
    assert len(np.unique(reference)) >= 2 and 0.05 < (reference > 0).mean() < 0.95
    _assert_equal_but_ties(
        result.labels, reference, _argmax_ties(result.probabilities), max_ties=10
    )


@pytest.fixture(scope="module")
def real_ct(tmp_path_factory):
    """A block of the sample chest CT (real HU, LPS, 1.14 x 1.14 x 5 mm), 128 x 100 x 24,
    and a smaller 80 x 64 x 16 one for the 1 mm bundle, each in its own dataset folder."""
    import nibabel as nib

    root = tmp_path_factory.mktemp("real_ct")
    image = nib.load(sample_path("chest_ct"))
    out = {}
    for name, block in (
        ("block", (slice(64, 192), slice(50, 150), slice(12, 36))),
        ("small", (slice(88, 168), slice(60, 124), slice(16, 32))),
    ):
        path = root / name / "imagesTs" / "ct.nii.gz"
        path.parent.mkdir(parents=True)
        nib.save(image.slicer[block], path)
        out[name] = path
    return out


@pytest.mark.parametrize("kind", ["spleen", "renal"])
def test_real_ct_random_weights_labels_equal_the_bundles_but_ties(real_ct, kind, tmp_path):
    """Random weights on a real CT: the hardest case (soft, speckled probabilities).

    spleen-like: 2 classes, 1.5 x 1.5 x 2 mm; renal-like: the bundle's own ``scripts``
    network, 4 classes, 1 mm (finer than the scan in-plane, so fewer boundary voxels
    disagree). The labels path differed on 21.6 % / 2.8 % of the voxels; now every
    difference is a tie (measured: 0 differences, 8 / 0-1 ties).
    """
    if kind == "spleen":
        ct = real_ct["block"]
        folder = write_spleen_like(tmp_path, fit_steps=0)
        reference, _ = _bundle_run(folder, tmp_path / "out", dataset_dir=str(ct.parent.parent))
    else:
        ct = real_ct["small"]
        folder = write_scripts_bundle(tmp_path, fit_steps=0)
        reference, _ = _bundle_run(
            folder, tmp_path / "out", run_id="evaluating", dataset_dir=str(ct.parent)
        )
    source = read_nifti(ct)
    model = load_bundle(folder, trust=True)
    result = Segmenter(model, device="cpu").predict([source], return_probabilities=True)
    assert len(np.unique(reference)) >= 2
    differ, ties = _assert_equal_but_ties(
        result.labels,
        reference,
        _argmax_ties(result.probabilities),
        max_ties=source.array.size // 1000,
    )
    before = Segmenter(_labels_path(model), device="cpu").predict([source]).labels
    was = (before != reference).mean()
    assert was > {"spleen": 0.1, "renal": 0.01}[kind], was  # the labels path: the test can tell
    print(f"{kind}: labels path differed on {was:.1%}; now {differ} voxels, {ties} ties")


def test_real_ct_sigmoid_bundle_thresholds_interpolated_probabilities(real_ct, tmp_path):
    """``Activationsd(sigmoid) -> Invertd(bilinear) -> AsDiscreted(threshold)``: the
    bundle saves its 2 thresholded channels; ours paints channel c as c + 1 in channel
    order, so it must equal that painting of the bundle's channels except at ties."""
    ct = real_ct["block"]
    folder = write_spleen_like(tmp_path, fit_steps=0)
    path = folder / "configs" / "inference.json"
    config = json.loads(path.read_text())
    transforms = config["postprocessing"]["transforms"]
    transforms[0] = {"_target_": "Activationsd", "keys": "pred", "sigmoid": True}
    transforms[2] = {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5}
    path.write_text(json.dumps(config, indent=2))
    channels, _ = _bundle_run(folder, tmp_path / "out", dataset_dir=str(ct.parent.parent))
    source = read_nifti(ct)
    channels = np.moveaxis(channels, -1, 0) if channels.shape[-1] == 2 else channels
    assert channels.shape == (2, *source.shape)
    implied = np.zeros(source.shape, np.uint8)
    implied[channels[0] > 0] = 1
    implied[channels[1] > 0] = 2
    model = load_bundle(folder, trust=True)
    assert model.spec.activation == "sigmoid"
    assert model.details["interpolate"] == {"values": "sigmoid", "padding_mode": "border"}
    result = Segmenter(model, device="cpu").predict([source], return_probabilities=True)
    ties = (np.abs(result.probabilities - 0.5) < TIE).any(axis=0)
    differ, tied = _assert_equal_but_ties(
        result.labels, implied, ties, max_ties=source.array.size // 1000
    )
    assert len(np.unique(implied)) == 3
    before = Segmenter(_labels_path(model), device="cpu").predict([source]).labels
    was = (before != implied).mean()
    assert was > 0.1, was
    print(f"sigmoid: labels path differed on {was:.1%}; now {differ} voxels, {tied} ties")


def test_identity_grid_gives_exactly_the_bundles_labels(data, tmp_path):
    """A RAS scan at the bundle's own spacing: Orientation and Spacing do nothing."""
    ct = write_ct_phantom(
        tmp_path / "data" / "imagesTs" / "ras.nii.gz",
        shape=(48, 44, 40),
        affine=make_affine("RAS", spacing=(1.5, 1.5, 2.0)),
    )
    folder = data[2]["spleen"]
    reference, _ = _bundle_run(folder, tmp_path / "out", dataset_dir=str(tmp_path / "data"))
    model = load_bundle(folder, trust=True)
    source = read_nifti(ct)
    assert model.preprocess([source]).image.shape[1:] == source.shape  # no resampling
    np.testing.assert_array_equal(_ours(folder, [source]).labels, reference.astype(np.uint8))


@pytest.mark.parametrize("highres", [True, False])
def test_wholebody_argmax_then_nearest_differs_only_at_exact_ties(tmp_path, highres):
    """105 classes; the bundle takes the argmax, then Invertd(nearest) brings labels back.

    Both sides then pick the nearest model voxel of every source voxel, so they agree
    except where a source voxel centre lies exactly half-way between two model voxel
    centres: there either is right, we take the higher index, MONAI's float32 grid
    decides by rounding noise. 1.5 mm from 0.8 x 0.9 x 2.5 mm has no such ties: equal.
    3.0 mm (``highres: false``) from 0.7 x 0.7 x 1.25 mm puts a tie plane every 30
    voxels in-plane (21 mm = 7 model voxels) and every 12 slices, about 15 % of all
    voxels: those whose two candidate model voxels differ in label may differ (measured
    ~10 % here, where the untrained 105-class labels are speckled at the model voxel
    scale; 0.6 % on the 512 x 512 x 300 benchmark scan), and every one of them is on a
    tie. Also covers a model grid smaller than the window (replicate padding).
    """
    spacing = (0.8, 0.9, 2.5) if highres else (0.7, 0.7, 1.25)
    shape = (48, 44, 30) if highres else (64, 64, 40)
    ct = write_ct_phantom(
        tmp_path / "data" / "imagesTs" / "ct.nii.gz",
        shape=shape,
        affine=make_affine("LPS", spacing=spacing),
    )
    folder = write_wholebody_like(tmp_path, highres=highres)
    reference, affine = _bundle_run(folder, tmp_path / "out", dataset_dir=str(tmp_path / "data"))
    source = read_nifti(ct)
    result = _ours(folder, [source])
    np.testing.assert_allclose(affine, result.affine, atol=1e-5)
    assert len(np.unique(reference)) > 10  # many of the 105 classes present
    differ = result.labels != reference.astype(result.labels.dtype)
    if highres:
        assert not differ.any()
        return
    model_affine = load_bundle(folder, trust=True).preprocess([source]).affine
    to_model = np.linalg.inv(model_affine) @ source.affine
    where = np.argwhere(differ)
    coords = where @ to_model[:3, :3].T + to_model[:3, 3]
    on_tie = (np.abs(coords % 1.0 - 0.5) < 1e-4).any(axis=1)
    assert differ.any() and on_tie.all(), (int(differ.sum()), int((~on_tie).sum()))


@pytest.fixture(scope="module")
def mr_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("brats")
    names = write_mr_phantom(root / "data", "case", shape=(32, 28, 24))
    return root, names, [read_nifti(root / "data" / n) for n in names]


def test_brats_four_channels_painted_labels_match_exactly(mr_case, tmp_path):
    root, names, volumes = mr_case
    folder = write_brats_like(tmp_path, cases=[names], roi=(24, 24, 24))
    reference, affine = _bundle_run(folder, tmp_path / "out", dataset_dir=str(root / "data"))
    result = _ours(folder, volumes)
    np.testing.assert_allclose(affine, result.affine, atol=1e-5)
    assert set(np.unique(reference)) == {0, 1, 2, 4}
    np.testing.assert_array_equal(result.labels, reference)


def test_brats_three_binary_channels_are_what_our_labels_imply(mr_case, tmp_path):
    """Older BraTS bundles save the 3 thresholded channels, overlapping freely.

    Our label map paints channel c as c + 1 in channel order, so it must equal the
    painting of the bundle's own channels exactly; what it cannot carry is a voxel's
    other channels (counted: with random weights most tumour voxels have several on).
    """
    root, names, volumes = mr_case
    folder = write_brats_like(tmp_path, cases=[names], roi=(24, 24, 24), label_lambda=None)
    channels, _ = _bundle_run(folder, tmp_path / "out", dataset_dir=str(root / "data"))
    channels = np.moveaxis(channels, -1, 0) if channels.shape[-1] == 3 else channels
    assert channels.shape == (3, *volumes[0].shape)
    result = _ours(folder, volumes)
    implied = np.zeros(volumes[0].shape, np.uint8)
    for channel, value in ((0, 1), (1, 2), (2, 3)):
        implied[channels[channel] > 0] = value
    np.testing.assert_array_equal(result.labels, implied)
    hidden = (channels > 0).sum(axis=0) > 1
    assert 0 < hidden.mean() < 1  # channels overlap: that is the information left out


def test_medseg_segment_on_a_bundle_folder_needs_trust_and_writes_the_labels(
    data, tmp_path, capsys
):
    """The command line end to end: refused without --trust-bundle, then the same labels."""
    import nibabel as nib

    from napari_medseg.cli import main

    root, ct, bundles = data
    out = tmp_path / "labels.nii.gz"
    argv = [
        "segment",
        str(ct),
        "-o",
        str(out),
        "--model",
        str(bundles["spleen"]),
        "--device",
        "cpu",
    ]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "--trust-bundle" in error and str(bundles["spleen"]) in error and not out.exists()
    assert main([*argv, "--trust-bundle"]) == 0
    written = nib.load(out)
    source = read_nifti(ct)
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    np.testing.assert_array_equal(
        np.asanyarray(written.dataobj), _ours(bundles["spleen"], [source]).labels
    )
