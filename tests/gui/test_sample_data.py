"""The sample chest CT through the manifest's sample-data contributions."""

from __future__ import annotations

import numpy as np

from napari_medseg._napari.layers import MEDSEG_KEY
from napari_medseg._napari.views import set_view
from napari_medseg.geometry import DisplayGeometry
from napari_medseg.io import read_scan
from napari_medseg.samples import sample_path


def _tumour_slice(labels) -> float:
    """World S coordinate (mm) of the tumour's middle slice."""
    index = np.argwhere(np.asarray(labels.data) > 0).mean(axis=0)
    return float(labels.data_to_world(index)[0])


def _to_canvas(viewer, world_pl, canvas_hw) -> np.ndarray:
    """Canvas pixel (row, col) of world (P, L) mm in the axial view ("down", "right")."""
    camera = viewer.scene.camera
    centre = np.asarray(camera.center, dtype=float)[-2:]
    return np.asarray(canvas_hw, dtype=float) / 2.0 + (np.asarray(world_pl) - centre) * camera.zoom


def _body_box(shot) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box (rows, cols) of the non-black canvas pixels."""
    lit = np.argwhere(shot[..., :3].max(axis=-1) > 40)
    return lit.min(axis=0), lit.max(axis=0)


def test_sample_nifti_with_tumour_and_axial_screenshot(make_napari_viewer, artifacts):
    viewer = make_napari_viewer(show=True)
    layers = viewer.open_sample("napari-medseg", "chest_ct")
    image, tumour = layers
    assert image._type_string == "image" and tumour._type_string == "labels"
    assert image.metadata[MEDSEG_KEY]["modality"] == "CT"
    assert image.colormap.name == "gray"
    assert tumour.data.shape == image.data.shape
    np.testing.assert_allclose(tumour.translate, image.translate, atol=1e-4)
    assert np.count_nonzero(tumour.data) > 0
    np.testing.assert_allclose(tumour.colormap.map(np.array([1]))[0], (1.0, 0.0, 0.0, 1.0))
    viewer.window.resize(1100, 800)
    set_view(viewer, "axial")
    viewer.dims.point = (_tumour_slice(tumour), *viewer.dims.point[1:])
    viewer.screenshot(str(artifacts / "sample_axial.png"), canvas_only=False, flash=False)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    height, width = shot.shape[:2]

    # the tumour shows as red (label colour over grey CT at opacity 0.6) where its
    # voxels on this slice are in the world
    rgb = shot[..., :3].astype(int)
    red = np.argwhere((rgb[..., 0] - rgb[..., 1] > 80) & (rgb[..., 0] - rgb[..., 2] > 80))
    assert len(red) > 20, "the tumour is not visible"
    index = int(np.round(tumour.world_to_data(viewer.dims.point)[0]))
    voxels = np.argwhere(np.asarray(tumour.data)[index] > 0)
    world = np.array([tumour.data_to_world((index, *v)) for v in voxels])
    expected = _to_canvas(viewer, world[:, 1:].mean(axis=0), (height, width))
    np.testing.assert_allclose(red.mean(axis=0), expected, atol=3.0)
    # the voxel grid is radiological: the tumour (patient right lung) is on the left
    assert expected[1] < width / 2

    # the body fills the middle of the canvas, all of it in view
    top_left, bottom_right = _body_box(shot)
    assert top_left[0] < height / 2 < bottom_right[0]
    assert top_left[1] < width / 2 < bottom_right[1]
    assert (bottom_right[1] - top_left[1]) > 0.5 * width or (
        bottom_right[0] - top_left[0]
    ) > 0.5 * height
    assert top_left.min() > 0 and bottom_right[0] < height - 1 and bottom_right[1] < width - 1


def test_sample_dicom_overlays_the_nifti(make_napari_viewer):
    viewer = make_napari_viewer()
    image, tumour = viewer.open_sample("napari-medseg", "chest_ct_dicom")
    assert image.metadata[MEDSEG_KEY]["format"] == "dicom"
    (nifti,) = viewer.open(sample_path("chest_ct"), plugin="napari-medseg")
    np.testing.assert_allclose(image.extent.world, nifti.extent.world, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(image.data), np.asarray(nifti.data))


def test_browser_screenshot_with_sample_dicom(make_napari_viewer, qtbot, tmp_path, artifacts):
    """README picture: the browser on a study folder holding the sample CT and a scout."""
    import shutil

    from geometry_cases import make_affine

    sample = sample_path("chest_ct_dicom")
    from napari_medseg.synthetic import dicom_series as export

    study = tmp_path / "study"
    shutil.copytree(sample, study / "chest_ct")
    rng = np.random.default_rng(3)
    export.write_dicom_series(
        rng.integers(-1000, 400, (128, 128, 1)).astype(np.int16),
        make_affine("LIA", spacing=(2.5, 2.5, 1.0), origin=(160.0, 0.0, 100.0)),
        study / "scout",
        series_description="Topogram 0.6 T20f",
        series_number=1,
        extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]},
    )
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1400, 850)
    dock, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "DICOM series browser")
    widget.setMinimumWidth(560)
    with qtbot.waitSignal(widget.indexed, timeout=20000):
        widget.set_folder(study)
    assert widget.table.rowCount() == 2
    with qtbot.waitSignal(widget.loaded, timeout=30000) as blocker:
        widget.load_selected()  # the CT row is preselected (the scout is a localizer)
    (ct,) = blocker.args[0]
    assert ct.metadata[MEDSEG_KEY]["modality"] == "CT"
    qtbot.waitUntil(lambda: not widget.busy, timeout=5000)
    set_view(viewer, "axial")
    viewer.dims.point = (float(ct.data_to_world((33, 0, 0))[0]), *viewer.dims.point[1:])
    viewer.screenshot(str(artifacts / "dicom_browser_window.png"), canvas_only=False, flash=False)
    # the loaded CT is what the canvas shows: the body in the middle, air around it,
    # and the slice on screen is the NIfTI sample's slice 33
    shot = viewer.screenshot(canvas_only=True, flash=False)
    height, width = shot.shape[:2]
    top_left, bottom_right = _body_box(shot)
    assert top_left[0] < height / 2 < bottom_right[0]
    assert top_left[1] < width / 2 < bottom_right[1]
    assert int(np.round(ct.world_to_data(viewer.dims.point)[0])) == 33
    nifti = read_scan(sample_path("chest_ct"))
    np.testing.assert_array_equal(
        np.asarray(ct.data)[33],
        DisplayGeometry.from_dict(ct.metadata[MEDSEG_KEY]).to_display(nifti.array)[33],
    )
    # the widget alone, wide enough to show every column, with both rows listed
    dock.setFloating(True)
    dock.resize(1120, 240)
    qtbot.waitUntil(lambda: widget.width() >= 1000, timeout=5000)
    picture = widget.grab()
    picture.save(str(artifacts / "dicom_browser.png"))
    assert picture.width() >= 1000
    texts = {widget.table.item(r, 1).text() for r in range(widget.table.rowCount())}
    assert texts == {"Topogram 0.6 T20f", ct.metadata[MEDSEG_KEY]["series_description"]}
    header = widget.table.horizontalHeader()
    assert all(not header.isSectionHidden(c) for c in range(widget.table.columnCount()))
    assert header.sectionViewportPosition(widget.table.columnCount() - 1) < widget.table.width()


def test_sample_brain_t1_opens_as_an_mr_image_with_its_geometry(make_napari_viewer):
    viewer = make_napari_viewer()
    (image,) = viewer.open_sample("napari-medseg", "brain_t1")
    assert image._type_string == "image"
    volume = read_scan(sample_path("brain_t1"))
    assert sorted(image.data.shape) == sorted(volume.shape)
    assert np.asarray(image.data).max() == volume.array.max()
    assert image.metadata[MEDSEG_KEY]["modality"] != "CT"  # no HU window presets for it
    # the display lies in patient millimetres: 1 mm voxels, 181 x 217 x 181 mm
    extent = np.asarray(image.extent.world[1]) - np.asarray(image.extent.world[0])
    np.testing.assert_allclose(sorted(extent), sorted([181.0, 217.0, 181.0]), atol=1.01)
