"""Open -> paint -> save through the plugin -> reload with nibabel, in every orientation.

Each case writes a scan with nibabel (RAS, LPS, PSR voxel orders, sagittal,
coronal and oblique affines), opens it with ``viewer.open(..., plugin=
"napari-medseg")``, paints voxels at known patient positions (converted with the
layer's ``world_to_data``) in two labels layers, one made by the plugin
(:func:`labels_like`, carries the metadata) and one by napari's own "new
labels" button (``viewer._new_labels()``, no metadata: matched by grid), saves
both with the plugin writer and checks the files land on the source grid.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from _helpers import save_nifti, voxel_world
from geometry_cases import ORIENTATIONS, orientation_affine

from napari_medseg._napari.layers import MEDSEG_KEY, labels_like
from napari_medseg.geometry import DisplayGeometry

SHAPE = (14, 17, 9)
#: Source voxels painted (corners included), label value = position in the list + 1.
PAINT_VOXELS = [(0, 0, 0), (13, 16, 8), (3, 5, 7), (10, 2, 1), (0, 16, 4)]


def _display_index(geometry: DisplayGeometry, ijk) -> np.ndarray:
    """Index in the displayed array of a source voxel."""
    marker = np.zeros(geometry.source_shape, dtype=np.uint8)
    marker[tuple(ijk)] = 1
    return np.argwhere(geometry.to_display(marker))[0]


def _paint(layer, world, value, use_brush: bool) -> None:
    """Paint one voxel at a world position (mm), through napari's paint API."""
    index = np.round(np.asarray(layer.world_to_data(world), dtype=float)).astype(int)
    if use_brush:
        layer.brush_size = 1
        layer.paint(tuple(index), value, refresh=True)
    else:
        layer.data_setitem(tuple(np.array([[i] for i in index])), value)


def _painted(path) -> dict[int, list[tuple[int, ...]]]:
    data = np.asarray(nib.load(path).dataobj)
    return {
        int(v): [tuple(int(n) for n in p) for p in np.argwhere(data == v)]
        for v in np.unique(data)
        if v
    }


@pytest.mark.parametrize("case", list(ORIENTATIONS))
def test_nifti_paint_save_roundtrip(make_napari_viewer, tmp_path, notes, case):
    affine = orientation_affine(case)
    rng = np.random.default_rng(7)
    scan = rng.integers(-1000, 1000, SHAPE).astype(np.int16)
    src = save_nifti(tmp_path / f"{case}.nii.gz", scan, affine, qform_code=1, sform_code=2)

    viewer = make_napari_viewer()
    (image,) = viewer.open(src, plugin="napari-medseg")
    geometry = DisplayGeometry.from_dict(image.metadata[MEDSEG_KEY])
    assert image.metadata[MEDSEG_KEY]["source"] == str(src)

    plugin_labels = viewer.add_layer(_layer(labels_like(image)))
    viewer.layers.selection.active = image
    viewer._new_labels()
    napari_labels = viewer.layers[-1]
    assert napari_labels.metadata == {}
    # napari 0.9.2 copies the grid exactly: no half-voxel shift
    np.testing.assert_array_equal(napari_labels.translate, image.translate)
    np.testing.assert_array_equal(napari_labels.scale, image.scale)

    for value, ijk in enumerate(PAINT_VOXELS, start=1):
        display_index = _display_index(geometry, ijk)
        world = np.asarray(image.data_to_world(display_index))
        if not geometry.deobliqued:
            # world coordinates are patient millimetres (S, P, L)
            np.testing.assert_allclose(world, voxel_world(affine, ijk), atol=1e-6)
        for layer in (plugin_labels, napari_labels):
            _paint(layer, world, value, use_brush=value % 2 == 0)

    out_plugin = tmp_path / "plugin_labels.nii.gz"
    out_napari = tmp_path / "napari_labels.nii"
    viewer.layers.selection = {plugin_labels}
    assert viewer.layers.save(str(out_plugin), selected=True, plugin="napari-medseg")
    assert napari_labels.save(str(out_napari), plugin="napari-medseg") == [str(out_napari)]

    expected = {value: [ijk] for value, ijk in enumerate(PAINT_VOXELS, start=1)}
    for out in (out_plugin, out_napari):
        saved = nib.load(out)
        assert saved.shape == SHAPE
        np.testing.assert_allclose(saved.affine, affine, atol=1e-5)
        assert int(saved.header["qform_code"]) == 1
        assert int(saved.header["sform_code"]) == 2
        assert saved.get_data_dtype() == np.uint8
        assert _painted(out) == expected

    # the image itself round-trips bit-exactly through write_image
    out_image = tmp_path / "image_copy.nii.gz"
    image.save(str(out_image), plugin="napari-medseg")
    saved = nib.load(out_image)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), scan)
    np.testing.assert_allclose(saved.affine, affine, atol=1e-5)

    if geometry.deobliqued:
        assert any("de-obliqued" in n for n in notes)
    else:
        assert not any("de-obliqued" in n for n in notes)


def _layer(layer_data):
    from napari.layers import Layer

    return Layer.create(*layer_data)


def test_distinct_qform_and_codes_survive(make_napari_viewer, tmp_path):
    affine = orientation_affine("axial_RAS")
    qform = affine.copy()
    qform[:3, 3] += (1.0, -2.0, 0.5)
    image = nib.Nifti1Image(np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE), affine)
    image.header.set_sform(affine, code=4)  # MNI
    image.header.set_qform(qform, code=1)
    src = tmp_path / "codes.nii"
    nib.save(image, src)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(src, plugin="napari-medseg")
    viewer._new_labels()
    viewer.layers[-1].data[0, 1, 2] = 1
    out = tmp_path / "codes_labels.nii.gz"
    viewer.layers[-1].save(str(out), plugin="napari-medseg")
    header = nib.load(out).header
    sform, scode = header.get_sform(coded=True)
    qaff, qcode = header.get_qform(coded=True)
    assert (int(scode), int(qcode)) == (4, 1)
    np.testing.assert_allclose(sform, affine, atol=1e-5)
    np.testing.assert_allclose(qaff, qform, atol=1e-4)
