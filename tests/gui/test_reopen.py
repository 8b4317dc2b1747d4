"""Everything napari-medseg writes reopens in napari, through ``viewer.open``, as labels
with their names and colours on the scan's grid.

The label maps are real: the default model's output on the sample CT (whose "body"
class is its most common value) and the sample's tumour map on the sample DICOM
series. Each is written by the plugin itself (the Save widget, ``save_segmentation``,
napari's *File > Save* through the plugin's writers), reopened with ``viewer.open``
and compared with the labels it was written from on the source grid
(:func:`layer_volume`, the grid the Save widget and the report use). Bad files in each
new format give one notification naming the file and no layer.
"""

from __future__ import annotations

import json
import shutil

import nrrd
import numpy as np
import pydicom
import pytest
from _helpers import dock

from napari_medseg._napari.label_classes import (
    layer_classes,
    layer_kwargs_for_classes,
    set_label_class,
)
from napari_medseg._napari.layer_volume import layer_volume
from napari_medseg._napari.layers import volume_to_layer_data
from napari_medseg.io import read_scan
from napari_medseg.io.save import SaveTargets, save_segmentation
from napari_medseg.samples import sample_path
from napari_medseg.volume import Volume

PLUGIN = "napari-medseg"
TIMEOUT = 60_000  # ms
TUMOUR = {1: ("tumour", "#ff0000")}


@pytest.fixture(scope="module")
def model_labels():
    """``(labels (I, J, K) on the sample CT's grid, classes)`` of the default model."""
    from napari_medseg.inference.segmenter import Segmenter
    from napari_medseg.labels.classes import classes_from_label_classes
    from napari_medseg.models.registry import DEFAULT_MODEL

    result = Segmenter(DEFAULT_MODEL, device="cpu").predict(read_scan(sample_path("chest_ct")))
    return result.labels, classes_from_label_classes(result.label_classes)


@pytest.fixture(scope="module")
def dicom_objects(tmp_path_factory):
    """A study folder ``CT/`` (the sample series), ``SEG/tumour_seg.dcm`` and
    ``tumour_rt.dcm`` (the sample tumour written by ``save_segmentation``)."""
    study = tmp_path_factory.mktemp("study")
    shutil.copytree(sample_path("chest_ct_dicom"), study / "CT")
    scan = read_scan(study / "CT")
    tumour = read_scan(sample_path("chest_ct_tumour")).array.astype(np.uint8)
    (study / "SEG").mkdir()
    seg, rt = study / "SEG" / "tumour_seg.dcm", study / "tumour_rt.dcm"
    save_segmentation(
        Volume(tumour, scan.affine, scan.metadata), SaveTargets(dicom_seg=seg, rtstruct=rt), TUMOUR
    )
    return study, tumour, seg, rt


def _open_one(viewer, path):
    layers = viewer.open(path, plugin=PLUGIN)
    assert len(layers) == 1, layers
    return layers[0]


def _check_labels(layer, image, expected: np.ndarray, classes: dict) -> None:
    """A labels layer on ``image``'s grid holding ``expected`` (source order), showing
    ``classes`` (names on hover, their colours) at half opacity."""
    assert layer._type_string == "labels"
    assert layer.opacity == pytest.approx(0.5)
    assert layer.data.shape == image.data.shape
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    on_grid, scan = layer_volume(layer), layer_volume(image)
    assert on_grid.volume.shape == scan.volume.shape
    np.testing.assert_allclose(on_grid.volume.affine, scan.volume.affine, atol=1e-6)
    np.testing.assert_array_equal(on_grid.volume.array, expected)
    shown = layer_classes(layer)
    assert {v: shown[v] for v in classes} == dict(classes)
    for value, (_, colour) in classes.items():
        rgba = layer.colormap.map(np.asarray([value]))[0]
        expected_rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        np.testing.assert_allclose(rgba[:3], expected_rgb, atol=1 / 255)


def _single_note(notes, path) -> str:
    mine = [n for n in notes if path.name in n]
    assert len(mine) == 1, notes
    assert mine[0].startswith(str(path)), mine[0]
    return mine[0]


# ------------------------------------------------------------------ NIfTI + sidecar
def test_model_output_saved_by_the_widget_reopens_with_hand_renamed_classes(
    make_napari_viewer, qtbot, tmp_path, home, model_labels, artifacts
):
    labels, classes = model_labels
    values, counts = np.unique(labels, return_counts=True)
    assert values[np.argmax(counts[1:]) + 1] == 1 and len(values) == 7  # body, 6 classes
    viewer = make_napari_viewer(show=True)
    image = _open_one(viewer, sample_path("chest_ct"))
    scan = read_scan(sample_path("chest_ct"))
    layer = viewer.add_layer(
        _layer(
            Volume(labels, scan.affine, scan.metadata), "model", layer_kwargs_for_classes(classes)
        )
    )
    # what a Segment run records about the model that made the labels
    provenance = {"name": "phantom-abdomen-3d", "settings": {"license": "BSD-3-Clause"}}
    layer.metadata["medseg"]["model"] = provenance
    set_label_class(layer, 2, name="liver (checked)")
    renamed = {**classes, 2: ("liver (checked)", classes[2][1])}

    widget = dock(viewer, "Save labels")
    out = tmp_path / "ct_model.nii.gz"
    _save_nifti(widget, qtbot, layer, out)
    assert (tmp_path / "ct_model.json").is_file()

    reopened = _open_one(viewer, out)
    _check_labels(reopened, image, labels, renamed)
    assert "sidecar" in reopened.metadata["medseg"]["label_evidence"]
    # the model's provenance comes back with the names (and is written again below)
    assert reopened.metadata["medseg"]["model"] == provenance
    _screenshot(viewer, reopened, layer, artifacts / "reopen_model_output.png")

    # saved again from the reopened layer, the names and colours stay
    again = tmp_path / "ct_model_again.nii.gz"
    _save_nifti(widget, qtbot, reopened, again)
    _check_labels(_open_one(viewer, again), image, labels, renamed)
    assert json.loads((tmp_path / "ct_model_again.json").read_text())["model"] == provenance


def _save_nifti(widget, qtbot, layer, path) -> None:
    """Save ``layer`` as NIfTI + sidecar with the Save widget's *Save NIfTI* button."""
    widget.layer_combo.set_layer(layer)
    assert widget.layer() is layer
    widget.nifti_edit.setText(str(path))
    with qtbot.waitSignal(widget.saved, timeout=TIMEOUT):
        widget.save_button.click()


def _screenshot(viewer, layer, hidden, path) -> None:
    """The axial slice through the liver (2), the reopened layer over the CT."""
    from napari_medseg._napari.views import set_view

    hidden.visible = False
    set_view(viewer, "axial")
    centre = np.argwhere(np.asarray(layer.data) == 2).mean(axis=0)
    viewer.dims.point = tuple(np.asarray(layer.translate) + centre * np.asarray(layer.scale))
    viewer.reset_view()
    shot = viewer.screenshot(str(path), canvas_only=True, flash=False)
    assert shot[..., :3].max() > 100  # something is shown


def _layer(volume, name, kwargs):
    from napari.layers import Layer

    return Layer.create(*volume_to_layer_data(volume, layer_type="labels", name=name, **kwargs))


# ------------------------------------------------------------------ .seg.nrrd
def test_seg_nrrd_written_by_file_save_and_by_save_segmentation(
    make_napari_viewer, tmp_path, model_labels
):
    labels, classes = model_labels
    viewer = make_napari_viewer()
    image = _open_one(viewer, sample_path("chest_ct"))
    scan = read_scan(sample_path("chest_ct"))
    layer = viewer.add_layer(
        _layer(
            Volume(labels, scan.affine, scan.metadata), "model", layer_kwargs_for_classes(classes)
        )
    )
    set_label_class(layer, 6, name="lesion 1", color="#00ff80")
    expected_classes = {**classes, 6: ("lesion 1", "#00ff80")}

    by_writer = tmp_path / "by_writer.seg.nrrd"
    assert layer.save(str(by_writer), plugin=PLUGIN) == [str(by_writer)]
    # independently of our reader: pynrrd's header places the first voxel where the CT's is
    data, header = nrrd.read(str(by_writer), index_order="F")
    np.testing.assert_array_equal(data, labels)
    lps_origin = np.diag([-1.0, -1.0, 1.0]) @ scan.affine[:3, 3]
    np.testing.assert_allclose(header["space origin"], lps_origin, atol=1e-4)

    by_save = tmp_path / "by_save.seg.nrrd"
    save_segmentation(
        Volume(labels, scan.affine, scan.metadata), SaveTargets(seg_nrrd=by_save), expected_classes
    )
    for path in (by_writer, by_save):
        reopened = _open_one(viewer, path)
        _check_labels(reopened, image, labels, {v: c for v, c in expected_classes.items() if v})
        assert reopened.name == path.name[: -len(".seg.nrrd")]


# ------------------------------------------------------------------ DICOM SEG, RTSTRUCT
@pytest.mark.parametrize("which", ["seg", "rtstruct"])
def test_dicom_objects_open_on_their_series(make_napari_viewer, dicom_objects, which):
    study, tumour, seg, rt = dicom_objects
    path = seg if which == "seg" else rt
    # the series open first: the labels lie on that layer's grid
    viewer = make_napari_viewer()
    image = _open_one(viewer, study / "CT")
    layer = _open_one(viewer, path)
    _check_labels(layer, image, tumour, TUMOUR)
    assert layer.name == path.stem
    # opened alone: the series is found beside it (SEG/ in the study folder next to CT/)
    viewer.layers.clear()
    layer = _open_one(viewer, path)
    image = _open_one(viewer, study / "CT")
    _check_labels(layer, image, tumour, TUMOUR)


def test_a_study_folder_opens_its_series_with_its_seg_and_rtstruct(
    make_napari_viewer, dicom_objects
):
    study, tumour, seg, rt = dicom_objects
    viewer = make_napari_viewer()
    layers = viewer.open(study, plugin=PLUGIN)
    kinds = sorted((layer._type_string, layer.name) for layer in layers)
    assert [kind for kind, _ in kinds] == ["image", "labels", "labels"], kinds
    image = next(layer for layer in layers if layer._type_string == "image")
    by_name = {layer.name: layer for layer in layers}
    for path in (seg, rt):
        _check_labels(by_name[path.stem], image, tumour, TUMOUR)


def test_dicom_seg_without_its_series_is_one_clear_notification(
    make_napari_viewer, dicom_objects, tmp_path, notes
):
    _, _, seg, rt = dicom_objects
    viewer = make_napari_viewer()
    for source in (seg, rt):
        alone = tmp_path / source.stem
        alone.mkdir()
        path = alone / source.name
        shutil.copy(source, path)
        with pytest.raises(Exception, match="Open that series first"):
            viewer.open(path, plugin=PLUGIN)
        assert len(viewer.layers) == 0
        note = _single_note(notes, path)
        assert "was not found" in note


# ------------------------------------------------------------------ bad files
def _cut(source, target, keep: float = 0.5):
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def test_bad_files_give_one_notification_naming_them(
    make_napari_viewer, dicom_objects, tmp_path, notes
):
    study, tumour, seg, rt = dicom_objects
    scan = read_scan(study / "CT")
    good = tmp_path / "good.seg.nrrd"
    save_segmentation(
        Volume(tumour, scan.affine, scan.metadata), SaveTargets(seg_nrrd=good), TUMOUR
    )
    data, header = nrrd.read(str(good), index_order="F")

    bad_field = tmp_path / "bad_field.seg.nrrd"
    nrrd.write(str(bad_field), data, {**header, "Segment0_LabelValue": "one"}, index_order="F")
    unknown_field = tmp_path / "unknown_field.seg.nrrd"  # fields Slicer may add: ignored
    nrrd.write(str(unknown_field), data, {**header, "Segment0_Foo": "bar"}, index_order="F")

    (study / "cut").mkdir()
    outside = study / "outside_rt.dcm"  # its contours 500 mm above the scan
    ds = pydicom.dcmread(rt)
    for item in ds.ROIContourSequence[0].ContourSequence:
        points = [float(v) for v in item.ContourData]
        points[2::3] = [z + 500.0 for z in points[2::3]]
        item.ContourData = [f"{v:.6g}" for v in points]
    ds.save_as(outside)

    viewer = make_napari_viewer()
    bad = {
        _cut(good, tmp_path / "cut.seg.nrrd"): "cannot be read as NRRD",
        bad_field: "LabelValue",
        _cut(seg, study / "cut" / "cut_seg.dcm", 0.9): "cut short",
        _cut(rt, study / "cut" / "cut_rt.dcm", 0.5): "cut short",
        outside: "outside the scan",
    }
    for path, problem in bad.items():
        with pytest.raises(Exception):  # noqa: B017 - which type is the reader's business
            viewer.open(path, plugin=PLUGIN)
        assert len(viewer.layers) == 0, path
        assert problem in _single_note(notes, path)
    layer = _open_one(viewer, unknown_field)
    assert np.array_equal(layer_volume(layer).volume.array, tumour)
