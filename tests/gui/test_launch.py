"""``medseg view``/``demo``: the window opens on the whole scan, at the tumour."""

from __future__ import annotations

import numpy as np


def _canvas_box(viewer, world_box, canvas_hw):
    """Canvas pixel box (rows, cols) of a world box (min/max corners, axes S, P, L).

    Axial view, napari 2D camera with orientation ("down", "right"): the vertical
    screen axis is world P, the horizontal one world L.
    """
    camera = viewer.scene.camera
    centre = np.asarray(camera.center, dtype=float)[-2:]
    half = np.asarray(canvas_hw, dtype=float) / 2.0
    lo = half + (np.asarray(world_box[0][-2:]) - centre) * camera.zoom
    hi = half + (np.asarray(world_box[1][-2:]) - centre) * camera.zoom
    return lo, hi


def test_make_viewer_shows_the_whole_sample_at_the_tumour(make_napari_viewer, qtbot, artifacts):
    from napari_medseg._napari.launch import DOCKED_WIDGETS, make_viewer

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1400, 900)
    assert make_viewer(viewer=viewer) is viewer
    assert len(viewer.window.dock_widgets) >= len(DOCKED_WIDGETS)
    image, tumour = viewer.layers["chest CT"], viewer.layers["tumour"]
    assert tuple(viewer.dims.order) == (0, 1, 2)  # axial

    # the slider is on a slice that holds tumour voxels
    index = int(np.round(tumour.world_to_data(viewer.dims.point)[0]))
    assert np.count_nonzero(np.asarray(tumour.data)[index]) > 0

    # the whole image (voxel edges included) is inside the canvas ...
    shot = viewer.screenshot(canvas_only=True, flash=False)
    canvas_hw = shot.shape[:2]
    extent = np.asarray(image.extent.world, dtype=float)
    half_voxel = np.asarray(image.scale, dtype=float) / 2.0
    lo, hi = _canvas_box(viewer, (extent[0] - half_voxel, extent[1] + half_voxel), canvas_hw)
    assert np.all(lo >= -1.0) and np.all(hi <= np.asarray(canvas_hw) + 1.0), (lo, hi, canvas_hw)
    # ... and fills it along one axis: the view was fitted after the docks took their room
    zoom = viewer.scene.camera.zoom
    viewer.reset_view()
    np.testing.assert_allclose(zoom, viewer.scene.camera.zoom, rtol=1e-3)
    # what `medseg demo` shows, for the README, once the live report has measured
    from _helpers import dock

    report = dock(viewer, "Report")
    qtbot.waitUntil(lambda: report.report is not None and not report.live.busy, timeout=60_000)
    assert [row.label for row in report.report.labels] == [1]  # the sample's tumour
    viewer.screenshot(str(artifacts / "medseg_demo.png"), canvas_only=False, flash=False)


def test_the_sample_window_offers_the_lung_model(make_napari_viewer):
    """On the sample chest CT, Run segments real anatomy (the lungs) by default."""
    from _helpers import dock

    from napari_medseg._napari.launch import SAMPLE_MODEL, make_viewer

    viewer = make_napari_viewer()
    make_viewer(viewer=viewer)
    segment = dock(viewer, "Segment")
    assert SAMPLE_MODEL == "lungs-ct"
    assert segment.model_choice.ref == "lungs-ct"
    assert "Licence: MIT" in segment.model_info.text()
