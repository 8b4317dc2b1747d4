"""NaN and infinite input voxels: the model sees the scan's lowest finite value, and is told.

Before, one NaN spread through resampling, normalisation and the convolutions of every
window that saw it, and the labels came out empty, silently.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from model_factory import random_volume, write_unet_model

from napari_medseg.inference.segmenter import InputChannelsError, Segmenter
from napari_medseg.io import read_scan
from napari_medseg.models.loaded import LoadedModel, ModelInput
from napari_medseg.models.registry import load_model
from napari_medseg.models.spec import IntensitySpec
from napari_medseg.samples import sample_path
from napari_medseg.volume import ScanMetadata, Volume

AFFINE = np.diag([0.8, 0.9, 2.5, 1.0])
SHAPE = (40, 30, 36)


def scan(array: np.ndarray, source: str = "scan.nii.gz") -> Volume:
    return Volume(array, AFFINE, ScanMetadata(source=source, format="nifti"))


def filled(array: np.ndarray) -> np.ndarray:
    """The scan as the model should see it: non-finite voxels at the lowest finite value."""
    out = array.copy()
    out[~np.isfinite(out)] = out[np.isfinite(out)].min()
    return out


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    return write_unet_model(tmp_path_factory.mktemp("unet"), roi_size=(16, 16, 16))


@pytest.fixture(scope="module")
def normalized_resampled(tmp_path_factory):
    """z-scored on a 1.2 mm RAS grid: a NaN would spoil the mean, then every voxel."""
    return write_unet_model(
        tmp_path_factory.mktemp("normalized"),
        name="normalized",
        roi_size=(16, 16, 16),
        target_orientation="RAS",
        target_spacing=(1.2, 1.2, 1.2),
        intensity=IntensitySpec(kind="normalize"),
    )


def test_one_nan_changes_labels_only_next_to_it(unet):
    clean = random_volume(SHAPE, seed=1)
    dirty = clean.copy()
    dirty[20, 15, 18] = np.nan
    segmenter = Segmenter(unet, device="cpu")
    reference = segmenter.predict(scan(clean)).labels
    result = segmenter.predict(scan(dirty))
    # exactly what the model gives for the scan with that voxel at the lowest value...
    assert np.array_equal(result.labels, segmenter.predict(scan(filled(dirty))).labels)
    # ...which differs from the clean scan in a few voxels within a window (16) of it
    changed = np.argwhere(result.labels != reference)
    assert len(changed) < 200
    if len(changed):
        assert np.abs(changed - [20, 15, 18]).max() < 16
    assert np.isnan(dirty[20, 15, 18])  # the scan itself is not changed
    assert result.warnings == [
        "scan.nii.gz: the model saw its 1 NaN or infinite voxel as the scan's lowest finite "
        "value (background, which cannot create structure); check the labels near them."
    ]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_blocks_of_nan_or_inf_through_resampling_and_normalisation(normalized_resampled, bad):
    clean = random_volume(SHAPE, seed=2)
    dirty = clean.copy()
    dirty[5:15, 5:12, 10:20] = bad
    segmenter = Segmenter(normalized_resampled, device="cpu")
    result = segmenter.predict(scan(dirty), return_probabilities=True)
    expected = segmenter.predict(scan(filled(dirty)), return_probabilities=True)
    assert np.array_equal(result.labels, expected.labels)
    assert np.isfinite(result.probabilities).all()
    assert len(np.unique(result.labels)) > 1  # not the silent all-background of before
    assert "its 700 NaN or infinite voxels" in result.warnings[0]


def test_a_preprocessing_that_keeps_them_is_run_again_on_copies(unet):
    """A MONAI bundle runs its own transforms on the scan: they would keep the NaN."""
    spec_model = load_model(unet)
    calls = []

    def raw_preprocess(channels):
        calls.append([np.isfinite(v.array).all() for v in channels])
        image = np.stack([v.array for v in channels]).astype(np.float32)
        return ModelInput(image=torch.from_numpy(image), affine=channels[0].affine)

    model = LoadedModel(spec=spec_model.spec, network=spec_model.network, preprocess=raw_preprocess)
    dirty = random_volume(SHAPE, seed=3)
    dirty[0:4, 0:4, 0:4] = np.nan
    dirty[30, 20, 10] = np.inf
    segmenter = Segmenter(model, device="cpu")
    result = segmenter.predict(scan(dirty))
    assert calls == [[False], [True]]  # once as given, once on the cleaned copy
    assert np.isnan(dirty[0, 0, 0])
    assert np.array_equal(result.labels, segmenter.predict(scan(filled(dirty))).labels)
    assert "its 65 NaN or infinite voxels" in result.warnings[0]


def test_a_channel_without_a_finite_voxel_is_refused(unet):
    """read_scan refuses such files; a napari layer of NaN only comes here."""
    with pytest.raises(InputChannelsError, match="all 43200 voxels are NaN or infinite"):
        Segmenter(unet, device="cpu").predict(scan(np.full(SHAPE, np.nan, np.float32)))


def test_finite_scans_get_no_warning(unet):
    result = Segmenter(unet, device="cpu").predict(scan(random_volume(SHAPE, seed=4)))
    assert result.warnings == []


def test_default_model_on_the_float_sample_with_one_nan_in_the_air(tmp_path):
    """The finding: one NaN in the air of a float CT emptied the default model's labels."""
    source = nib.load(sample_path("chest_ct"))
    hu = np.asarray(source.dataobj).astype(np.float32)
    assert hu[3, 3, 20] < -900  # air, and a voxel the 3 mm model grid interpolates from
    hu[3, 3, 20] = np.nan
    header = source.header.copy()
    header.set_data_dtype(np.float32)
    path = tmp_path / "chest_ct_float.nii.gz"
    nib.save(nib.Nifti1Image(hu, source.affine, header), path)

    volume = read_scan(path)
    assert volume.metadata.nonfinite_voxels == 1 and volume.metadata.modality == "CT"
    segmenter = Segmenter("phantom-abdomen-3d", device="cpu")
    result = segmenter.predict(volume)
    reference = segmenter.predict(read_scan(sample_path("chest_ct"))).labels
    assert (result.labels != reference).sum() <= 10
    body = int(np.count_nonzero(result.labels))
    assert body > 1_000_000  # the whole body (7203 mL of 1.14 x 1.14 x 5 mm voxels)
    assert "its 1 NaN or infinite voxel" in result.warnings[-1]
