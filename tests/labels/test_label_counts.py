"""Voxel counts per label (napari_medseg.labels.maps.label_voxel_counts) against np.unique."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_medseg.errors import Cancelled
from napari_medseg.labels.maps import label_voxel_counts


def _reference(array: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(array, return_counts=True)
    return {int(v): int(n) for v, n in zip(values, counts, strict=True) if v > 0}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64, np.uint64])
def test_counts_equal_np_unique_in_any_dtype_and_axis_order(dtype):
    rng = np.random.default_rng(7)
    array = rng.choice([0, 0, 0, 1, 2, 7, 200], size=(13, 17, 19)).astype(dtype)
    for view in (array, array.transpose(2, 0, 1), array[::2, :, ::-1]):
        assert label_voxel_counts(view, block_voxels=101) == _reference(view)


def test_large_values_and_empty_maps():
    array = np.zeros((4, 5, 6), dtype=np.uint32)
    assert label_voxel_counts(array) == {}
    array[0, 0, :3] = 2**30
    array[1, 1, 1] = 3
    assert label_voxel_counts(array) == {3: 1, 2**30: 3}
    assert label_voxel_counts(np.zeros((0, 3), np.uint8)) == {}


def test_a_set_cancel_event_stops_the_count():
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        label_voxel_counts(np.ones((8, 8, 8), np.uint8), cancel=cancel)
