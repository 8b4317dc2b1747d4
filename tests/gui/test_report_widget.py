"""The Report dock widget on a real viewer, docked through the manifest.

Numbers are checked against independent references: ``medseg report`` on the saved
file, a fresh ``build_report`` of the layers' data, MONAI's Dice/HD95,
``scipy.ndimage.label`` components, and voxel counts times the voxel volume read
from the NIfTI header. Waits are on Qt signals and conditions, never fixed sleeps.
"""

from __future__ import annotations

import csv
import math
import threading
import warnings

import nibabel as nib
import numpy as np
import pytest
from _helpers import dock, open_sample, save_nifti, voxel_world
from geometry_cases import orientation_affine
from qtpy.QtCore import Qt
from scipy import ndimage

import napari_medseg._napari.live_report as live_report
from napari_medseg._napari.label_classes import label_names, set_label_class
from napari_medseg._napari.layer_volume import layer_volume
from napari_medseg._napari.layers import MEDSEG_KEY, labels_like
from napari_medseg._napari.widgets.report import format_value
from napari_medseg.errors import OverwriteSourceError, ScanWriteError
from napari_medseg.measure.report import (
    build_report,
    label_rows,
    lesion_rows,
    report_to_dict,
    write_report,
)

WAIT_MS = 30000


# ------------------------------------------------------------------ helpers


def _ready(qtbot, widget, condition=None) -> None:
    """Wait until the widget shows a report of the data as it is now (and ``condition``)."""
    qtbot.waitUntil(
        lambda: (
            widget.report is not None
            and not widget.live.busy
            and (condition is None or condition(widget.report))
        ),
        timeout=WAIT_MS,
    )


def _document(report) -> dict:
    """A report as JSON-ready data without its creation time (NaN and inf as None)."""
    document = report_to_dict(report)
    document["provenance"].pop("created_utc")
    return document


def _fresh_report(widget):
    """``build_report`` of the widget's layers as they are now, with its settings."""
    settings = widget.settings()
    labels = widget.labels_layer
    volumes = [
        layer_volume(layer).volume if layer is not None else None
        for layer in (labels, widget.image_layer, widget.reference_layer)
    ]
    return build_report(
        *volumes,
        names=label_names(labels),
        lesions=settings.lesions,
        connectivity=settings.connectivity,
        distances=settings.distances,
        diameters=settings.diameters,
    )


def _row(report, value: int) -> dict:
    return next(row for row in label_rows(report) if row["label"] == value)


def _voxels(report, value: int) -> int:
    return next((s.voxels for s in report.labels if s.label == value), 0)


def _display_index(layer, affine, ijk) -> tuple[int, ...]:
    """Display (data) index of a source voxel, through napari's world transform."""
    return tuple(int(v) for v in np.round(layer.world_to_data(voxel_world(affine, ijk))))


def _setitem_cube(layer, centre, half: int, value: int) -> None:
    """Paint a cube of display voxels through napari's undoable ``data_setitem``."""
    ranges = [
        np.arange(max(c - half, 0), min(c + half + 1, n))
        for c, n in zip(centre, layer.data.shape, strict=True)
    ]
    grid = np.meshgrid(*ranges, indexing="ij")
    layer.data_setitem(tuple(g.ravel() for g in grid), value)


def _csv_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _voxel_ml(path) -> float:
    """Voxel volume (mL) from a NIfTI header's voxel sizes."""
    return float(np.prod(nib.load(str(path)).header.get_zooms()[:3])) / 1000.0


def _click(qtbot, table, row: int) -> None:
    """A real mouse click on a table row."""
    table.scrollToItem(table.item(row, 0))
    rect = table.visualItemRect(table.item(row, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def _sample(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    image, labels = open_sample(viewer, "chest_ct")
    widget = dock(viewer, "Report")
    _ready(qtbot, widget)
    return viewer, image, labels, widget


# ------------------------------------------------------------------ tests


def test_report_matches_medseg_report_on_the_saved_file(make_napari_viewer, qtbot, tmp_path):
    from napari_medseg.cli import main

    viewer = make_napari_viewer(show=True)
    widget = dock(viewer, "Report")  # docked first: it picks up the layers as they come
    image, labels = open_sample(viewer, "chest_ct")
    _ready(qtbot, widget)
    assert (widget.labels_layer, widget.image_layer, widget.reference_layer) == (
        labels,
        image,
        None,
    )
    affine = layer_volume(labels).volume.affine
    _setitem_cube(labels, _display_index(labels, affine, (60, 80, 20)), 3, 2)  # a second label
    _ready(qtbot, widget, lambda r: _voxels(r, 2) > 0)

    # saved as a user does, with the Save widget (labels + the names file `report` reads)
    seg = tmp_path / "tumour_seg.nii.gz"
    save = dock(viewer, "Save labels")
    save.layer_combo.set_layer(labels)
    save.nifti_edit.setText(str(seg))
    with qtbot.waitSignal(save.saved, timeout=60_000):
        save.save_nifti()
    out = tmp_path / "cli.csv"
    source = image.metadata[MEDSEG_KEY]["source"]
    assert main(["report", str(seg), "--image", source, "-o", str(out)]) == 0
    cli_rows = _csv_rows(out)

    rows = label_rows(widget.report)
    assert [int(r["label"]) for r in cli_rows] == [r["label"] for r in rows] == [1, 2]
    assert [r["name"] for r in cli_rows] == [r["name"] for r in rows] == ["tumour", "label_2"]
    shared = set(cli_rows[0]) & set(rows[0])
    assert {"voxels", "volume_ml", "intensity_mean", "intensity_sd", "diameter_mm"} <= shared
    for cli_row, row in zip(cli_rows, rows, strict=True):
        for column in shared:
            text, value = cli_row[column], row[column]
            if isinstance(value, bool):
                assert text == str(value).lower(), column
            elif isinstance(value, float):
                assert math.isnan(value) if text == "nan" else float(text) == value, column
            else:
                assert text == str(value), column
    # the table shows these rows
    headers = [
        widget.table.horizontalHeaderItem(c).text() for c in range(widget.table.columnCount())
    ]
    volume_column, voxel_column = headers.index("Volume (mL)"), headers.index("Voxels")
    for r, cli_row in enumerate(cli_rows):
        assert widget.table.item(r, voxel_column).text() == cli_row["voxels"]
        assert widget.table.item(r, volume_column).text() == format_value(
            float(cli_row["volume_ml"])
        )
    assert "Mean (HU)" in headers


def test_painting_updates_the_report_and_undo_restores_it(make_napari_viewer, qtbot):
    viewer, image, labels, widget = _sample(make_napari_viewer, qtbot)
    before = _document(widget.report)
    old = _voxels(widget.report, 1)
    voxel_ml = _voxel_ml(image.metadata[MEDSEG_KEY]["source"])
    affine = layer_volume(labels).volume.affine
    centre = _display_index(labels, affine, (106, 118, 33))

    data_before = np.array(labels.data, copy=True)
    labels.brush_size = 7
    with labels.block_history():  # one brush stroke: two dabs, one undo step
        labels.paint(centre, 1)
        labels.paint((centre[0], centre[1] + 4, centre[2] - 3), 1)
    painted = int(np.count_nonzero((np.asarray(labels.data) == 1) & (data_before != 1)))
    assert painted > 20
    _ready(qtbot, widget, lambda r: _voxels(r, 1) == old + painted)
    assert _row(widget.report, 1)["volume_ml"] == pytest.approx(
        (old + painted) * voxel_ml, rel=1e-12
    )
    assert _document(widget.report) == _document(_fresh_report(widget))

    labels.undo()
    _ready(qtbot, widget, lambda r: _voxels(r, 1) == old)
    assert _document(widget.report) == before
    labels.redo()
    _ready(qtbot, widget, lambda r: _voxels(r, 1) == old + painted)
    assert _document(widget.report) == _document(_fresh_report(widget))

    # names come from the layer's features (as the label tools rename a class)
    set_label_class(labels, 1, name="GTV", color="#ffaa00")
    _ready(qtbot, widget, lambda r: _row(r, 1)["name"] == "GTV")
    assert widget.table.item(0, 1).text() == "GTV"
    assert widget.chart.bars[0].name == "GTV" and widget.chart.bars[0].color == "#ffaa00"
    assert _document(widget.report) == _document(_fresh_report(widget))


@pytest.mark.parametrize("case", ["PSR", "coronal_LIA"])
def test_edits_are_measured_label_by_label_in_any_orientation(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, case
):
    """Edits of a flipped/permuted scan update only the touched labels, with exact numbers."""
    affine = orientation_affine(case)
    rng = np.random.default_rng(1)
    scan = rng.integers(-1000, 1000, (30, 26, 18)).astype(np.int16)
    source = save_nifti(tmp_path / f"{case}.nii.gz", scan, affine)
    full = []  # full reports made (a spy that measures as usual)
    measure = live_report.measure_report
    monkeypatch.setattr(
        live_report, "measure_report", lambda *a, **k: full.append(1) or measure(*a, **k)
    )
    viewer = make_napari_viewer(show=True)
    (image,) = viewer.open(source, plugin="napari-medseg")
    data, kwargs, _ = labels_like(image, name="drawn")
    labels = viewer.add_labels(data, **kwargs)
    widget = dock(viewer, "Report")
    widget.lesions_check.setChecked(True)
    widget.diameters_check.setChecked(case == "PSR")
    _ready(qtbot, widget, lambda r: r.lesions is not None)
    assert widget.image_layer is image
    fulls = len(full)
    edits = [((5, 6, 7), 1), ((20, 8, 3), 2), ((6, 7, 8), 3), ((21, 9, 4), 0)]
    for step, (ijk, value) in enumerate(edits):
        centre = _display_index(labels, affine, ijk)
        if step % 2:
            _setitem_cube(labels, centre, 2, value)
        else:
            labels.brush_size = 5
            labels.paint(centre, value)
        assert widget.live.busy  # the edit was seen
        _ready(qtbot, widget)
        assert _document(widget.report) == _document(_fresh_report(widget)), f"edit {step}"
    assert len(full) == fulls  # only the touched labels were measured again
    assert [s.label for s in widget.report.labels] == [1, 2, 3]
    assert all(math.isnan(s.diameter_mm) for s in widget.report.labels) == (case != "PSR")


def test_reference_layer_gives_monai_dice_and_hd95(make_napari_viewer, qtbot, artifacts):
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance
    from napari.layers import Layer

    viewer, image, labels, widget = _sample(make_napari_viewer, qtbot)
    data, kwargs, kind = labels_like(labels, name="reference")
    data[:] = np.roll(np.asarray(labels.data), (0, 2, -1), axis=(0, 1, 2))
    reference = viewer.add_layer(Layer.create(data, kwargs, kind))
    widget.reference_combo.setCurrentIndex(widget.reference_combo.findText(reference.name))
    widget.lesions_check.setChecked(True)
    _ready(qtbot, widget, lambda r: r.overlap is not None and r.lesions is not None)

    def monai(value: int) -> tuple[float, float]:
        found = layer_volume(labels).volume
        pred = torch.from_numpy((found.array == value).astype(np.float32))[None, None]
        ref = torch.from_numpy((layer_volume(reference).volume.array == value).astype(np.float32))[
            None, None
        ]
        pred, ref = torch.cat([1 - pred, pred], 1), torch.cat([1 - ref, ref], 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dice = float(compute_dice(pred, ref, include_background=False)[0, 0])
            hd95 = float(
                compute_hausdorff_distance(
                    pred, ref, include_background=False, percentile=95, spacing=found.spacing
                )[0, 0]
            )
        return dice, hd95

    dice, hd95 = monai(1)
    row = _row(widget.report, 1)
    assert 0.2 < dice < 0.95
    assert row["dice"] == pytest.approx(dice, rel=1e-6)
    assert row["hd95_mm"] == pytest.approx(hd95, rel=1e-5)

    # editing the reference updates the comparison
    affine = layer_volume(labels).volume.affine
    _setitem_cube(reference, _display_index(reference, affine, (108, 123, 33)), 2, 0)
    _ready(qtbot, widget, lambda r: _row(r, 1)["dice"] != row["dice"])
    dice, hd95 = monai(1)
    assert _row(widget.report, 1)["dice"] == pytest.approx(dice, rel=1e-6)
    assert _row(widget.report, 1)["hd95_mm"] == pytest.approx(hd95, rel=1e-5)
    assert _document(widget.report) == _document(_fresh_report(widget))

    viewer.window.resize(1280, 1000)
    widget.go_to_label_row(0)
    viewer.screenshot(str(artifacts / "report_reference.png"), canvas_only=False, flash=False)
    assert widget.table.isVisible() and widget.chart.isVisible() and widget.lesion_table.isVisible()
    assert [bar.label for bar in widget.chart.bars] == [1]


def test_lesion_table_rows_are_the_components_and_a_click_goes_there(
    make_napari_viewer, qtbot, artifacts
):
    viewer, image, labels, widget = _sample(make_napari_viewer, qtbot)
    affine = layer_volume(labels).volume.affine
    for ijk, value, half in [
        ((60, 80, 20), 1, 2),
        ((60, 80, 26), 1, 1),
        ((200, 60, 10), 2, 3),
        ((30, 150, 40), 2, 0),
    ]:
        _setitem_cube(labels, _display_index(labels, affine, ijk), half, value)
    widget.lesions_check.setChecked(True)
    _ready(qtbot, widget, lambda r: r.lesions is not None and _voxels(r, 2) > 0)

    source = layer_volume(labels).volume.array
    shown = [row for row in lesion_rows(widget.report) if row["source"] == "labels"]
    assert widget.lesion_table.rowCount() == len(shown)
    for value in (1, 2):
        components, count = ndimage.label(source == value, structure=np.ones((3, 3, 3)))
        sizes = sorted(np.bincount(components.ravel())[1:].tolist(), reverse=True)
        assert [r["voxels"] for r in shown if r["label"] == value] == sizes
    assert len(shown) >= 5

    spacing = np.abs(np.asarray(labels.scale))
    for row_index in (len(shown) - 1, 1):
        row = shown[row_index]
        components, _ = ndimage.label(source == row["label"], structure=np.ones((3, 3, 3)))
        box = tuple(slice(row[f"bbox_{a}_min"], row[f"bbox_{a}_max"] + 1) for a in "ijk")
        number = np.bincount(components[box].ravel())[1:].argmax() + 1
        centroid = np.argwhere(components == number).mean(axis=0)
        _click(qtbot, widget.lesion_table, row_index)
        expected = voxel_world(affine, centroid)
        np.testing.assert_array_less(np.abs(np.asarray(viewer.dims.point) - expected), spacing / 2)

    _click(qtbot, widget.table, 0)
    centroid = np.argwhere(source == 1).mean(axis=0)
    np.testing.assert_array_less(
        np.abs(np.asarray(viewer.dims.point) - voxel_world(affine, centroid)), spacing / 2
    )
    _click(qtbot, widget.lesion_table, 0)  # the tumour, the largest lesion of label 1
    viewer.window.resize(1280, 1000)
    viewer.screenshot(str(artifacts / "report.png"), canvas_only=False, flash=False)
    assert [bar.label for bar in widget.chart.bars] == [1, 2]


def test_export_writes_what_write_report_writes(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from qtpy.QtWidgets import QFileDialog, QMessageBox

    viewer, image, labels, widget = _sample(make_napari_viewer, qtbot)
    widget.lesions_check.setChecked(True)
    _ready(qtbot, widget, lambda r: r.lesions is not None)
    expected = tmp_path / "expected"
    expected.mkdir()
    for suffix in (".csv", ".json"):
        written = widget.export(tmp_path / f"report{suffix}")
        references = write_report(widget.report, expected / f"report{suffix}")
        assert [p.name for p in written] == [p.name for p in references]
        for ours, theirs in zip(written, references, strict=True):
            assert ours.read_bytes() == theirs.read_bytes()
    assert [p.name for p in written] == ["report.json"]

    # never over an existing file without confirmation
    target = tmp_path / "report.csv"
    before = target.read_bytes()
    with pytest.raises(ScanWriteError, match="already exists"):
        widget.export(target)
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "CSV (*.csv)"))
    )
    answers = []
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: answers.pop(0)))
    old = _voxels(widget.report, 1)
    labels.data_setitem((np.array([2]), np.array([5]), np.array([5])), 1)  # new numbers
    _ready(qtbot, widget, lambda r: _voxels(r, 1) == old + 1)
    answers.append(QMessageBox.StandardButton.No)
    widget.csv_button.click()
    assert target.read_bytes() == before
    answers.append(QMessageBox.StandardButton.Yes)
    widget.csv_button.click()
    assert target.read_bytes() != before
    assert int(_csv_rows(target)[0]["voxels"]) == old + 1
    # asked while the report is catching up with an edit: written once it is up to date
    labels.data_setitem((np.array([2]), np.array([5]), np.array([6])), 1)
    assert widget.live.busy
    answers.append(QMessageBox.StandardButton.Yes)
    widget.csv_button.click()
    assert int(_csv_rows(target)[0]["voxels"]) == old + 1
    qtbot.waitUntil(lambda: int(_csv_rows(target)[0]["voxels"]) == old + 2, timeout=WAIT_MS)


def test_export_refuses_to_write_over_a_source_file(make_napari_viewer, qtbot, tmp_path):
    from geometry_cases import make_affine

    from napari_medseg.synthetic.dicom_series import write_dicom_series

    folder = tmp_path / "series"
    write_dicom_series(np.full((12, 10, 6), 40, np.int16), make_affine("LPS"), folder)
    viewer = make_napari_viewer()
    (image,) = viewer.open(folder, plugin="napari-medseg")
    data, kwargs, _ = labels_like(image)
    data[2:5, 3:6, 4:8] = 1
    viewer.add_labels(data, **kwargs)
    widget = dock(viewer, "Report")
    _ready(qtbot, widget, lambda r: _voxels(r, 1) == 36)
    inside = folder / "notes.json"
    inside.write_text("{}")
    with pytest.raises(OverwriteSourceError):
        widget.export(inside, overwrite=True)
    assert inside.read_text() == "{}"


def test_stale_results_are_dropped(make_napari_viewer, qtbot, monkeypatch):
    viewer, image, labels, widget = _sample(make_napari_viewer, qtbot)
    affine = layer_volume(labels).volume.affine
    reached, release, calls = threading.Event(), threading.Event(), []
    run = live_report.run_job

    def gated(job):
        result = run(job)  # measured on the data after the first edit only
        calls.append(job.generation)
        if len(calls) == 1:
            reached.set()
            release.wait(10)
        return result

    monkeypatch.setattr(live_report, "run_job", gated)
    shown = []
    widget.shown.connect(lambda report: report and shown.append(_voxels(report, 2)))
    _setitem_cube(labels, _display_index(labels, affine, (60, 80, 20)), 1, 2)  # 27 voxels
    qtbot.waitUntil(reached.is_set, timeout=WAIT_MS)
    _setitem_cube(labels, _display_index(labels, affine, (200, 60, 10)), 0, 2)  # 1 more
    release.set()
    _ready(qtbot, widget, lambda r: _voxels(r, 2) == 28)
    assert len(calls) >= 2
    assert 27 not in shown  # the first run's result came after the second edit: dropped
    assert _document(widget.report) == _document(_fresh_report(widget))


def test_an_image_on_another_grid_is_an_error_naming_the_layers(
    make_napari_viewer, qtbot, tmp_path, notes
):
    viewer, image, labels, widget = _sample(make_napari_viewer, qtbot)
    scan = np.random.default_rng(0).integers(-1000, 1000, (20, 20, 10)).astype(np.int16)
    other_path = save_nifti(tmp_path / "other.nii.gz", scan, np.eye(4))
    (other,) = viewer.open(other_path, plugin="napari-medseg")
    assert other._type_string == "image"
    assert widget.image_layer is image  # the default stays the scan on the labels' grid
    widget.image_combo.setCurrentIndex(widget.image_combo.findText(other.name))
    widget.image_combo.activated.emit(widget.image_combo.currentIndex())  # as a user's pick
    qtbot.waitUntil(lambda: any("not on the voxel grid" in n for n in notes), timeout=WAIT_MS)
    message = next(n for n in notes if "not on the voxel grid" in n)
    assert repr(other.name) in message and repr(labels.name) in message
    assert "not on the voxel grid" in widget.status.text()
    widget.image_combo.setCurrentIndex(0)  # "none": volumes only
    _ready(qtbot, widget, lambda r: "intensity_mean" not in label_rows(r)[0])
