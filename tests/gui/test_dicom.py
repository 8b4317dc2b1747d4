"""DICOM through the plugin: round trip per orientation, folders of several series,
and the series browser dock widget (through the manifest's widget contribution)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from _helpers import voxel_world
from geometry_cases import make_affine, orientation_affine

from napari_medseg._napari.layers import MEDSEG_KEY, labels_like
from napari_medseg.geometry import DisplayGeometry
from napari_medseg.io import read_scan
from napari_medseg.synthetic.dicom_series import write_dicom_series

SHAPE = (12, 10, 7)  # columns (I), rows (J), slices (K)
PAINT_VOXELS = [(0, 0, 0), (11, 9, 6), (3, 5, 2), (7, 1, 5)]


def _series(folder, affine, *, shape=SHAPE, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    hu = rng.integers(-1000, 1500, shape).astype(np.int16)
    write_dicom_series(hu, affine, folder, **kwargs)
    return hu


def _display_index(geometry: DisplayGeometry, ijk) -> np.ndarray:
    marker = np.zeros(geometry.source_shape, dtype=np.uint8)
    marker[tuple(ijk)] = 1
    return np.argwhere(geometry.to_display(marker))[0]


@pytest.mark.parametrize(
    "case", ["axial_LPS", "axial_RAS", "sagittal_PIL", "coronal_LIA", "oblique_LPS"]
)
def test_dicom_paint_save_roundtrip(make_napari_viewer, tmp_path, case):
    affine = orientation_affine(case)
    folder = tmp_path / case
    _series(folder, affine, series_description=case, window=(40.0, 400.0))
    volume = read_scan(folder)  # the reader's grid: what a save must land on

    viewer = make_napari_viewer()
    (image,) = viewer.open(folder, plugin="napari-medseg")
    meta = image.metadata[MEDSEG_KEY]
    assert meta["format"] == "dicom" and meta["modality"] == "CT"
    assert image.name == case
    assert tuple(image.contrast_limits) == (-160.0, 240.0)  # the file's window
    geometry = DisplayGeometry.from_dict(meta)
    np.testing.assert_allclose(geometry.source_affine, volume.affine, atol=1e-6)

    plugin_labels = viewer.add_layer(_create(labels_like(image)))
    viewer.layers.selection.active = image
    viewer._new_labels()
    napari_labels = viewer.layers[-1]

    inverse = np.linalg.inv(volume.affine)
    expected = {}
    for value, ijk in enumerate(PAINT_VOXELS, start=1):
        ras = affine[:3, :3] @ np.asarray(ijk, dtype=float) + affine[:3, 3]
        read_index = np.round(inverse[:3, :3] @ ras + inverse[:3, 3]).astype(int)
        expected[value] = [tuple(int(n) for n in read_index)]
        world = np.asarray(image.data_to_world(_display_index(geometry, read_index)))
        if not geometry.deobliqued:
            np.testing.assert_allclose(world, voxel_world(affine, ijk), atol=1e-4)
        for layer in (plugin_labels, napari_labels):
            index = np.round(np.asarray(layer.world_to_data(world))).astype(int)
            layer.data_setitem(tuple(np.array([[i] for i in index])), value)

    for layer in (plugin_labels, napari_labels):
        out = tmp_path / f"{layer.name}.nii.gz"
        layer.save(str(out), plugin="napari-medseg")
        saved = nib.load(out)
        assert saved.shape == volume.shape
        np.testing.assert_allclose(saved.affine, volume.affine, atol=1e-5)
        data = np.asarray(saved.dataobj)
        got = {int(v): [tuple(int(n) for n in p) for p in np.argwhere(data == v)] for v in expected}
        assert got == expected
        # and each label sits at the patient position it was painted at
        for value, ijk in enumerate(PAINT_VOXELS, start=1):
            (idx,) = got[value]
            np.testing.assert_allclose(
                saved.affine[:3, :3] @ idx + saved.affine[:3, 3],
                affine[:3, :3] @ np.asarray(ijk) + affine[:3, 3],
                atol=1e-4,
            )


def _create(layer_data):
    from napari.layers import Layer

    return Layer.create(*layer_data)


def _two_series_folder(tmp_path):
    root = tmp_path / "study"
    axial = make_affine("LPS", spacing=(0.9, 0.9, 3.0), origin=(60.0, 40.0, -30.0))
    _series(root / "s1", axial, series_description="CT chest", series_number=2)
    coronal = make_affine("LIA", spacing=(1.0, 1.0, 2.0), origin=(60.0, 20.0, 30.0))
    _series(
        root / "s2",
        coronal,
        shape=(14, 16, 5),
        series_description="MR coronal",
        series_number=3,
        modality="MR",
        seed=1,
    )
    _series(
        root / "scout",
        make_affine("LIA", spacing=(1.5, 1.5, 1.0), origin=(90.0, 0.0, 80.0)),
        shape=(40, 40, 1),
        series_description="Scout",
        series_number=1,
        extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]},
    )
    return root


def test_folder_with_several_series_opens_each_and_points_to_browser(
    make_napari_viewer, tmp_path, notes
):
    root = _two_series_folder(tmp_path)
    viewer = make_napari_viewer()
    layers = viewer.open(root, plugin="napari-medseg")
    assert sorted(layer.metadata[MEDSEG_KEY]["series_description"] for layer in layers) == [
        "CT chest",
        "MR coronal",
    ]
    assert any("series browser" in n for n in notes)
    # one file opens its whole series
    one = sorted((root / "s2").glob("*.dcm"))[0]
    (layer,) = viewer.open(one, plugin="napari-medseg")
    assert layer.metadata[MEDSEG_KEY]["series_description"] == "MR coronal"
    assert layer.data.size == 14 * 16 * 5


def test_browser_widget_lists_and_loads(make_napari_viewer, qtbot, tmp_path):
    from napari_medseg._napari.widgets.dicom_browser import COLUMNS, DicomBrowser

    root = _two_series_folder(tmp_path)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "DICOM series browser")
    assert isinstance(widget, DicomBrowser)
    with qtbot.waitSignal(widget.indexed, timeout=20000):
        widget.set_folder(root)
    assert not widget.busy  # ready for the next action as soon as `indexed` is emitted
    table = widget.table
    assert table.rowCount() == 3
    cells = {
        table.item(r, COLUMNS.index("Description")).text(): [
            table.item(r, c).text() for c in range(table.columnCount())
        ]
        for r in range(table.rowCount())
    }
    assert "localizer" in cells["Scout"][COLUMNS.index("Warnings")]
    assert cells["CT chest"][COLUMNS.index("Slices")] == "7"
    assert cells["MR coronal"][COLUMNS.index("Modality")] == "MR"
    # the first non-localizer row is preselected; choose the MR one instead
    mr_row = next(r for r in range(table.rowCount()) if table.item(r, 1).text() == "MR coronal")
    table.clearSelection()
    table.selectRow(mr_row)
    with qtbot.waitSignal(widget.loaded, timeout=20000) as blocker:
        widget.load_selected()
    (layer,) = blocker.args[0]
    assert layer in viewer.layers
    assert layer.metadata[MEDSEG_KEY]["modality"] == "MR"
    assert layer.data.size == 14 * 16 * 5
    qtbot.waitUntil(lambda: not widget.busy, timeout=5000)


def test_browser_reports_errors(make_napari_viewer, qtbot, tmp_path, notes):
    from napari_medseg._napari.widgets.dicom_browser import DicomBrowser

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("nothing here")
    viewer = make_napari_viewer()
    widget = DicomBrowser(viewer)
    qtbot.addWidget(widget)
    with qtbot.waitSignal(widget.failed, timeout=20000) as blocker:
        widget.set_folder(tmp_path / "empty")
    assert "empty" in blocker.args[0]
    assert any(blocker.args[0] in n for n in notes)
    qtbot.waitUntil(lambda: not widget.busy, timeout=5000)
    assert widget.table.rowCount() == 0


def test_gantry_tilt_and_gap_are_notified_and_saved_on_the_true_grid(
    make_napari_viewer, tmp_path, notes
):
    # axial LPS grid whose slice step leans 15 deg towards posterior: a sheared affine
    affine = make_affine("LPS", spacing=(0.9, 0.9, 3.0), origin=(40.0, 30.0, -20.0))
    tilt = np.radians(15.0)
    affine[:3, 2] = 3.0 * np.array([0.0, -np.sin(tilt), np.cos(tilt)])
    folder = tmp_path / "tilted"
    _series(folder, affine, extra={"GantryDetectorTilt": 15.0})
    (sorted(folder.glob("*.dcm"))[3]).unlink()  # a missing slice
    viewer = make_napari_viewer()
    (image,) = viewer.open(folder, plugin="napari-medseg")
    text = " ".join(notes).lower()
    assert "gantry tilt" in text and "gap" in text and "de-obliqued" in text
    assert image.data.shape[0] == SHAPE[2]  # the missing slice keeps its place
    viewer._new_labels()
    labels = viewer.layers[-1]
    labels.data[1, 2, 3] = 1
    out = tmp_path / "tilted_labels.nii.gz"
    labels.save(str(out), plugin="napari-medseg")
    saved = nib.load(out)
    np.testing.assert_allclose(saved.affine, affine, atol=1e-4)  # the shear is kept
    assert np.count_nonzero(np.asarray(saved.dataobj)) == 1


def test_dicomdir_and_extensionless_folder(make_napari_viewer, tmp_path):
    import pydicom
    from pydicom.fileset import FileSet

    from napari_medseg._napari.reader import get_reader

    files = write_dicom_series(
        np.zeros((8, 9, 4), np.int16) + 40,
        make_affine("LPS"),
        tmp_path / "src",
        series_description="from DICOMDIR",
    )
    fileset = FileSet()
    for file in files:
        fileset.add(pydicom.dcmread(file))
    fileset.write(tmp_path / "media")  # PT000000/ST000000/SE000000/IM00000n, no extension
    assert get_reader(str(tmp_path / "media")) is not None
    viewer = make_napari_viewer()
    (layer,) = viewer.open(tmp_path / "media", plugin="napari-medseg")
    assert layer.name == "from DICOMDIR"
    assert layer.data.size == 8 * 9 * 4
    # the DICOMDIR file itself: our reader takes it, but npe2 (0.10) never offers it to us
    # on POSIX (it lower-cases the manifest pattern, not the file name)
    read = get_reader(str(tmp_path / "media" / "DICOMDIR"))
    ((data, kwargs, kind),) = read(str(tmp_path / "media" / "DICOMDIR"))
    assert kind == "image" and kwargs["name"] == "from DICOMDIR" and data.size == 8 * 9 * 4
