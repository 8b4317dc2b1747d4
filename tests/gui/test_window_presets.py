"""The Window presets widget on a real viewer, docked through the manifest."""

from __future__ import annotations

import numpy as np
import pydicom
from _helpers import dock, open_sample, save_nifti
from dicom_factory import make_affine

from napari_medseg.samples import sample_path
from napari_medseg.synthetic.dicom_series import write_dicom_series
from napari_medseg.window_presets import CT_WINDOWS


def _first_value(value) -> float:
    """WindowCenter/WindowWidth may hold several values; the first is the default."""
    return float(value[0]) if isinstance(value, pydicom.multival.MultiValue) else float(value)


def test_presets_set_the_exact_contrast_limits(make_napari_viewer, artifacts):
    viewer = make_napari_viewer()
    image, _ = open_sample(viewer, "chest_ct")
    widget = dock(viewer, "Window presets")
    assert widget.layer_combo.layer() is image
    assert all(button.isEnabled() for button in widget.buttons.values())
    for preset in CT_WINDOWS:
        widget.buttons[preset.name].click()
        low, high = image.contrast_limits
        assert (low, high) == (preset.center - preset.width / 2, preset.center + preset.width / 2)
        assert high - low == preset.width
    # Radiopaedia's worked example: brain W:80 L:40 shows 0..80 HU
    widget.buttons["brain"].click()
    assert tuple(image.contrast_limits) == (0.0, 80.0)
    widget.buttons["lung"].click()
    assert tuple(image.contrast_limits) == (-1350.0, 150.0)
    assert widget.note.text() == "chest CT: -1350.0 to 150.0 HU"  # HU with one decimal
    assert widget.buttons["lung"].toolTip() == "centre -600.0 HU, width 1500.0 HU"
    viewer.screenshot(str(artifacts / "window_presets.png"), canvas_only=False, flash=False)


def test_dicom_window_of_the_dicom_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    image, _ = open_sample(viewer, "chest_ct_dicom")
    widget = dock(viewer, "Window presets")
    # the window stored in the files, read with pydicom
    first = sorted(sample_path("chest_ct_dicom").glob("*.dcm"))[0]
    header = pydicom.dcmread(first, stop_before_pixels=True)
    center, width = _first_value(header.WindowCenter), _first_value(header.WindowWidth)
    assert widget.dicom_button.isEnabled()
    widget.apply_preset("bone")
    assert tuple(image.contrast_limits) != (center - width / 2, center + width / 2)
    widget.dicom_button.click()
    assert tuple(image.contrast_limits) == (center - width / 2, center + width / 2)


def test_non_ct_layers_are_named_and_hu_presets_disabled(make_napari_viewer, tmp_path):
    array = (np.arange(12 * 10 * 6).reshape(12, 10, 6) % 700).astype(np.int16)
    folder = tmp_path / "mr"
    write_dicom_series(array, make_affine("LPS"), folder, modality="MR", window=(300.0, 600.0))
    viewer = make_napari_viewer()
    (mr,) = viewer.open(str(folder), plugin="napari-medseg")
    plain = viewer.add_image(np.zeros((4, 5, 6), np.float32), name="plain")  # no metadata
    widget = dock(viewer, "Window presets")

    widget.layer_combo.set_layer(mr)
    assert "'" + mr.name + "' is MR, not CT" in widget.note.text()
    assert not any(button.isEnabled() for button in widget.buttons.values())
    assert widget.dicom_button.isEnabled()  # the MR file gives its own window
    widget.dicom_button.click()
    assert tuple(mr.contrast_limits) == (0.0, 600.0)

    widget.layer_combo.set_layer(plain)  # nothing recorded, values not HU-like: not CT
    assert widget.note.text() == (
        "'plain' records no modality and its values (0.0 to 1.0) do not look like CT in "
        "HU: the presets are CT windows in HU."
    )
    assert not any(button.isEnabled() for button in widget.buttons.values())
    assert not widget.dicom_button.isEnabled()  # no window in any file

    # another reader's CT (no metadata), air to bone in HU: guessed CT by its values
    hu = np.linspace(-1024, 1500, 4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    other = viewer.add_image(hu, name="other reader's CT")
    widget.layer_combo.set_layer(other)
    assert widget.note.text() == ""
    assert all(button.isEnabled() for button in widget.buttons.values())
    widget.apply_preset("abdomen")
    assert tuple(other.contrast_limits) == (-150.0, 250.0)


def test_a_nifti_mr_gets_no_ct_presets(make_napari_viewer, tmp_path):
    """NIfTI records no modality: an MR (values 0..1200) is not taken for CT."""
    rng = np.random.default_rng(0)
    mr = save_nifti(
        tmp_path / "t1.nii.gz", rng.integers(0, 1200, (12, 10, 6)).astype(np.int16), np.eye(4)
    )
    ct = save_nifti(
        tmp_path / "ct.nii.gz", rng.integers(-1024, 1200, (12, 10, 6)).astype(np.int16), np.eye(4)
    )
    viewer = make_napari_viewer()
    (mr_layer,) = viewer.open(str(mr), plugin="napari-medseg")
    (ct_layer,) = viewer.open(str(ct), plugin="napari-medseg")
    widget = dock(viewer, "Window presets")
    widget.layer_combo.set_layer(mr_layer)
    assert widget.note.text() == (
        "'t1': its file records no modality and its values do not look like CT in HU "
        "(air at -1000 HU), e.g. an MR: the presets are CT windows in HU."
    )
    assert not any(button.isEnabled() for button in widget.buttons.values())
    limits = tuple(mr_layer.contrast_limits)
    widget.apply_preset("brain")  # a disabled button does nothing
    assert tuple(mr_layer.contrast_limits) == limits
    widget.layer_combo.set_layer(ct_layer)  # the reader guessed CT from its HU values
    assert widget.note.text() == ""
    assert all(button.isEnabled() for button in widget.buttons.values())
