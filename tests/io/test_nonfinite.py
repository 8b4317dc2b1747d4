"""NaN and infinite voxels: counted once by read_scan, warned about, or refused."""

from __future__ import annotations

import tracemalloc
import warnings

import nibabel as nib
import numpy as np
import pytest
from geometry_cases import make_affine

from napari_medseg.io import nonfinite, read_scan
from napari_medseg.io.nonfinite import (
    NonFiniteScanError,
    count_nonfinite,
    finite_range,
    replace_nonfinite,
)

AFFINE = make_affine("LPS", spacing=(0.8, 0.9, 2.0), origin=(40.0, 30.0, -60.0))
SHAPE = (20, 18, 12)


def ct_like(seed: int = 0) -> np.ndarray:
    """float32 HU: air around a soft-tissue block (what a float CT export looks like)."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(-1000.0, 10.0, SHAPE)
    hu[4:16, 4:14, 2:10] = rng.normal(40.0, 20.0, (12, 10, 8))
    return hu.astype(np.float32)


def save(path, array, *, slope=None):
    image = nib.Nifti1Image(array, AFFINE)
    image.header.set_qform(AFFINE, code=1)
    image.header.set_sform(AFFINE, code=1)
    if slope is not None:
        image.header.set_slope_inter(*slope)
    nib.save(image, path)
    return path


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 1000 voxels, so the blocked passes cross many block edges."""
    monkeypatch.setattr(nonfinite, "BLOCK_VOXELS", 1000)


@pytest.mark.parametrize("layout", ["C", "F", "view"])
def test_counts_range_and_replacement_over_block_edges(small_blocks, layout):
    array = ct_like()
    array[0, 0, 0] = np.nan
    array[7, 9, 5] = np.inf
    array[19, 17, 11] = -np.inf
    array[10, 2, 3] = np.nan
    if layout == "F":
        array = np.asfortranarray(array)
    elif layout == "view":  # strided and flipped: what a reorientation hands over
        array = np.ascontiguousarray(np.transpose(array, (2, 0, 1)))[:, ::-1, :]
        array = np.transpose(array, (1, 2, 0))
        assert not (array.flags.c_contiguous or array.flags.f_contiguous)
    finite = array[np.isfinite(array)]
    assert count_nonfinite(array) == 4
    assert nonfinite.count_nan(array) == 2
    assert finite_range(array) == (float(finite.min()), float(finite.max()))

    replaced = array.copy(order="K")
    assert replace_nonfinite(replaced) == 4
    assert np.isfinite(replaced).all()
    mask = ~np.isfinite(array)
    assert (replaced[mask] == finite.min()).all()
    assert np.array_equal(replaced[~mask], array[~mask])
    assert replace_nonfinite(replaced) == 0


def test_integer_arrays_have_none():
    labels = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    assert count_nonfinite(labels) == 0
    assert finite_range(labels) == (0.0, 59.0)
    assert finite_range(np.full((2, 2, 2), np.nan, np.float32)) is None


def test_counting_makes_no_full_size_temporary(small_blocks, monkeypatch):
    monkeypatch.setattr(nonfinite, "BLOCK_VOXELS", 1 << 16)
    array = np.zeros((128, 128, 128), dtype=np.float32)  # 8 MiB
    array[5, 6, 7] = np.nan
    tracemalloc.start()
    try:
        assert count_nonfinite(array) == 1
        assert finite_range(array) == (0.0, 0.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < array.size // 8  # a full boolean mask alone is array.size bytes


def test_read_scan_counts_and_warns_keeping_the_values_and_the_ct(tmp_path):
    hu = ct_like()
    hu[0, 0, 0] = np.nan
    hu[1, 0, 0] = np.nan
    hu[10, 10, 5] = np.inf
    path = save(tmp_path / "ct_float.nii.gz", hu)
    volume = read_scan(path)
    meta = volume.metadata
    assert meta.nonfinite_voxels == 3
    (warning,) = [w for w in meta.warnings if "NaN" in w]
    assert warning.startswith(f"3 of {hu.size} voxels are NaN or infinite (2 NaN, 1 infinite)")
    # kept as stored: the reader never changes values
    assert np.isnan(volume.array[0, 0, 0]) and np.isposinf(volume.array[10, 10, 5])
    # the NIfTI modality guess reads the value range: still a CT
    assert (meta.modality, meta.units) == ("CT", "HU")


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_finite_scans_have_no_count_and_no_warning(tmp_path, dtype):
    volume = read_scan(save(tmp_path / "ct.nii.gz", ct_like().astype(dtype)))
    assert volume.metadata.nonfinite_voxels == 0
    assert not [w for w in volume.metadata.warnings if "NaN" in w]
    assert volume.metadata.modality == "CT"


def test_an_all_nan_scan_is_refused_naming_the_file(tmp_path):
    path = save(tmp_path / "empty.nii.gz", np.full(SHAPE, np.nan, np.float32))
    with pytest.raises(NonFiniteScanError) as info:
        read_scan(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert f"all {np.prod(SHAPE)} voxels are NaN or infinite" in message


def test_an_overflowing_scl_slope_is_refused_or_counted(tmp_path):
    stored = np.full(SHAPE, 100, np.int16)
    stored[:2] = 0  # 0 x slope stays finite
    # every stored value times 1e37 overflows float32: refused
    everything = save(tmp_path / "all_inf.nii.gz", stored[2:], slope=(1e37, 0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's overflow warning stays quiet
        with pytest.raises(NonFiniteScanError, match="scl_slope"):
            read_scan(everything)
    # some voxels overflow: read, with their count
    partly = save(tmp_path / "some_inf.nii.gz", stored, slope=(1e37, 0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        volume = read_scan(partly)
    infinite = int(np.count_nonzero(stored))
    assert volume.metadata.nonfinite_voxels == infinite
    assert any(f"{infinite} of {stored.size} voxels" in w for w in volume.metadata.warnings)
