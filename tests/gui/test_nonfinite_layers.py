"""NaN and infinite voxels in napari: never a label map with NaN set to 0, never silent."""

from __future__ import annotations

import numpy as np
from _helpers import dock, save_nifti
from model_factory import random_volume, write_unet_model

AFFINE = np.array(
    [[-0.9, 0.0, 0.0, 30.0], [0.0, -1.1, 0.0, 25.0], [0.0, 0.0, 2.0, -40.0], [0, 0, 0, 1.0]]
)
SHAPE = (40, 36, 32)


def test_a_float_label_map_with_nan_opens_as_an_image_with_a_warning(
    make_napari_viewer, tmp_path, notes
):
    labels = np.zeros((20, 18, 12), np.float32)
    labels[4:10, 4:9, 2:6] = 1.0
    labels[12:16, 10:14, 6:9] = 2.0
    labels[5, 5, 3] = labels[13, 11, 7] = np.nan  # would be painted background as Labels
    path = save_nifti(tmp_path / "tumour_seg.nii.gz", labels, AFFINE)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-medseg")
    assert layer._type_string == "image"
    assert np.isnan(layer.data).sum() == 2  # shown as stored
    (warning,) = [n for n in notes if "NaN" in n]
    assert warning.startswith(
        f"tumour_seg.nii.gz: 2 of {labels.size} voxels are NaN or infinite (2 NaN)"
    )
    assert "never taken for labels" in warning
    # the same map without NaN is a label map
    labels[~np.isfinite(labels)] = 0
    clean = save_nifti(tmp_path / "clean_seg.nii.gz", labels, AFFINE)
    (layer,) = viewer.open(str(clean), plugin="napari-medseg")
    assert layer._type_string == "labels"


def test_segment_widget_shows_how_many_nan_the_model_saw(
    make_napari_viewer, qtbot, tmp_path, notes
):
    scan = random_volume(SHAPE, seed=0)
    scan[0:3, 0:3, 0:3] = np.nan
    path = save_nifti(tmp_path / "float_scan.nii.gz", scan, AFFINE)
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(path), plugin="napari-medseg")
    assert image._type_string == "image"
    widget = dock(viewer, "Segment")
    widget.set_model_path(write_unet_model(tmp_path / "model", roi_size=(16, 16, 16)))
    widget.image_combo.set_layer(image)
    with qtbot.waitSignal(widget.segmented, timeout=60_000) as blocker:
        widget.run_button.click()
    labels = blocker.args[0].data
    assert labels.shape == image.data.shape and len(np.unique(labels)) > 1
    assert any(
        "the model saw its 27 NaN or infinite voxels as the scan's lowest finite value" in n
        for n in notes
    ), notes
