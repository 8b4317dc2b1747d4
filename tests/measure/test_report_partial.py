"""Partial report updates: re-measuring the edited labels gives a full report's numbers."""

from __future__ import annotations

import numpy as np
import pytest
from geometry_cases import make_affine
from metrics_cases import SPACING, perturbed, random_blobs

from napari_medseg.measure.incremental import (
    ReportSettings,
    VoxelBox,
    measure_report,
    rename_labels,
    update_report,
)
from napari_medseg.measure.report import build_report, report_to_dict
from napari_medseg.volume import ScanMetadata, Volume

AFFINE = make_affine("LPS", spacing=SPACING, origin=(12.0, -3.0, 40.0))
SHAPE = (26, 22, 12)


def _document(report) -> dict:
    """The report as JSON-ready data, without its creation time (NaN -> None)."""
    document = report_to_dict(report)
    document["provenance"].pop("created_utc")
    return document


def _volumes(rng, *, layout: str = "C", image_kind: str = "int16", big_labels: bool = False):
    """Labels, image and reference volumes whose arrays are views as napari layers give."""
    labels = random_blobs(SHAPE, 4, seed=int(rng.integers(1000)))
    reference = perturbed(labels, seed=int(rng.integers(1000)))
    if big_labels:  # values above 255: the tally's lookup-table path
        lut = np.array([0, 300, 1000, 70000, 5], np.uint32)
        labels, reference = lut[labels], lut[reference]
    if image_kind == "int16":
        image = rng.integers(-1000, 1500, SHAPE).astype(np.int16)
        image[0] = -2000  # DICOM padding on one face
        extra = {"pixel_padding_range": (-2000, -2000)}
    else:  # a float MR-like image with fractional values
        image = rng.normal(300.0, 50.0, SHAPE).astype(np.float32)
        extra = {}
    if layout == "F":  # a display array (S, P, L) seen in source order: transposed
        labels = np.ascontiguousarray(labels.transpose(2, 1, 0)).transpose(2, 1, 0)
    elif layout == "flipped":  # transposed and flipped: neither C nor F contiguous
        labels = np.ascontiguousarray(labels[::-1].transpose(2, 1, 0)).transpose(2, 1, 0)[::-1]
    meta = ScanMetadata(source="ct.nii.gz", format="nifti", modality="CT", units="HU", extra=extra)
    return (
        Volume(labels, AFFINE, ScanMetadata(source="seg.nii.gz", format="nifti")),
        Volume(image, AFFINE, meta),
        Volume(reference, AFFINE, ScanMetadata(source="ref.nii.gz", format="nifti")),
    )


def _random_edit(rng, array: np.ndarray, values: list[int]) -> tuple[set[int], VoxelBox]:
    """Paint a random brush-like region of a random box with one value; return what changed."""
    start = [int(rng.integers(0, n - 1)) for n in array.shape]
    stop = [min(n, a + int(rng.integers(1, 7))) for a, n in zip(start, array.shape, strict=True)]
    box = VoxelBox(tuple(start), tuple(stop))
    region = array[box.slices()]
    mask = rng.random(region.shape) < rng.choice([0.4, 1.0])
    new = int(rng.choice(values))
    changed = {int(v) for v in np.unique(region[mask])} | {new}
    region[mask] = new
    return changed, box


def _full(labels, image, reference, settings: ReportSettings):
    """``build_report`` called directly (not through the settings)."""
    return build_report(
        labels,
        image,
        reference,
        names=settings.names,
        lesions=settings.lesions,
        connectivity=settings.connectivity,
        tolerance_mm=settings.tolerance_mm,
        iou_threshold=settings.iou_threshold,
        distances=settings.distances,
        diameters=settings.diameters,
    )


def _forbid_full_reports(monkeypatch) -> None:
    """Make sure the updates under test re-measure labels, not the whole map."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("a partial update made a full report")

    monkeypatch.setattr(ReportSettings, "build", refuse)


@pytest.mark.parametrize("layout", ["C", "F", "flipped"])
@pytest.mark.parametrize("with_reference", [False, True])
def test_random_edits_give_the_full_report(monkeypatch, layout, with_reference):
    rng = np.random.default_rng(11)
    labels, image, reference = _volumes(rng, layout=layout)
    reference = reference if with_reference else None
    settings = ReportSettings(names={1: "liver", 3: "tumour"}, lesions=True, connectivity=18)
    state = measure_report(labels, image, reference, settings)
    assert state.partial
    _forbid_full_reports(monkeypatch)
    for step in range(30):
        target = labels.array if step % 3 or reference is None else reference.array
        changed, box = _random_edit(rng, target, [0, 1, 2, 3, 4, 6])
        state = update_report(state, changed, box)
        expected = _full(labels, image, reference, settings)
        assert _document(state.report) == _document(expected), f"after edit {step}"
    assert {6} & set(state.present_values())  # a new label appeared along the way


def test_erasing_a_label_removes_its_rows_and_lesions(monkeypatch):
    rng = np.random.default_rng(3)
    labels, image, reference = _volumes(rng)
    settings = ReportSettings(lesions=True, iou_threshold=0.2)
    state = measure_report(labels, image, reference, settings)
    _forbid_full_reports(monkeypatch)
    for array in (labels.array, reference.array):
        where = np.argwhere(array == 2)
        box = VoxelBox(tuple(where.min(axis=0)), tuple(where.max(axis=0) + 1))
        array[array == 2] = 0
        state = update_report(state, {2}, box)
    assert 2 not in state.present_values()
    assert all(lesion.label != 2 for lesion in state.report.lesions.lesions)
    assert _document(state.report) == _document(_full(labels, image, reference, settings))


def test_label_values_above_255_and_fractional_images_give_the_full_report():
    """The lookup-table tally, and a float image whose statistics path needs a full report."""
    rng = np.random.default_rng(5)
    for kind in ("int16", "float"):
        labels, image, reference = _volumes(rng, image_kind=kind, big_labels=True)
        settings = ReportSettings(lesions=True)
        state = measure_report(labels, image, reference, settings)
        for _ in range(8):
            changed, box = _random_edit(rng, labels.array, [0, 300, 1000, 70000, 9])
            state = update_report(state, changed, box)
            assert _document(state.report) == _document(_full(labels, image, reference, settings))


def test_distances_off_and_no_image(monkeypatch):
    rng = np.random.default_rng(8)
    labels, _, reference = _volumes(rng)
    settings = ReportSettings(distances=False, diameters=False)
    state = measure_report(labels, None, reference, settings)
    _forbid_full_reports(monkeypatch)
    for _ in range(10):
        changed, box = _random_edit(rng, labels.array, [0, 1, 2, 5])
        state = update_report(state, changed, box)
        assert _document(state.report) == _document(_full(labels, None, reference, settings))


def test_reference_on_another_grid_updates_by_full_reports():
    rng = np.random.default_rng(9)
    labels, image, reference = _volumes(rng)
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.5  # half a millimetre off: resampled by build_report
    moved = Volume(reference.array, shifted, reference.metadata)
    state = measure_report(labels, image, moved)
    assert not state.partial
    changed, box = _random_edit(rng, labels.array, [1, 3])
    state = update_report(state, changed, box)
    assert _document(state.report) == _document(_full(labels, image, moved, ReportSettings()))


def test_unknown_region_gives_a_full_report():
    rng = np.random.default_rng(4)
    labels, image, _ = _volumes(rng)
    state = measure_report(labels, image)
    labels.array[:] = 0
    labels.array[3:6, 4:9, 2:5] = 7
    state = update_report(state, set(), None)
    assert state.present_values() == [7]
    assert _document(state.report) == _document(_full(labels, image, None, ReportSettings()))


def test_rename_changes_only_names():
    rng = np.random.default_rng(6)
    labels, image, reference = _volumes(rng)
    state = measure_report(labels, image, reference, ReportSettings(lesions=True))
    names = {1: "lung", 2: "heart"}
    renamed = rename_labels(state, names)
    expected = _full(labels, image, reference, ReportSettings(names=names, lesions=True))
    assert _document(renamed.report) == _document(expected)
    assert {lesion.name for lesion in renamed.report.lesions.lesions if lesion.label == 2} == {
        "heart"
    }


def test_voxel_box_union_and_clipping():
    a = VoxelBox((2, 3, 4), (5, 6, 7))
    b = VoxelBox.from_bbox(((0, 1), (4, 9), (5, 5)))
    assert b == VoxelBox((0, 4, 5), (2, 10, 6))
    assert a.union(b) == VoxelBox((0, 3, 4), (5, 10, 7))
    assert a.union(None) == a
    assert VoxelBox((-3, 2, 0), (4, 40, 3)).clipped((3, 8, 9)) == VoxelBox((0, 2, 0), (3, 8, 3))


def test_large_structures_edited_after_the_reference_give_the_full_report(monkeypatch):
    """Structures big enough for the pruned diameter search, brushed near their surface
    and compared with the map they were edited from (surface distances found by the
    local KD-tree), on an oblique grid."""
    from napari_medseg.measure.surface import _BRUTE_FORCE_POINTS, hull_candidates, surface_mask

    shape = (132, 120, 60)
    affine = make_affine("LPS", spacing=(0.7, 0.8, 2.5), rotation_deg=(8.0, -12.0, 20.0))
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]

    def ellipsoid(centre, radii):
        return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1

    labels = np.zeros(shape, np.uint8, order="F")  # a napari layer seen in scan order
    labels[ellipsoid((64, 30, 28), (62, 26, 14))] = 1  # elongated
    labels[ellipsoid((76, 76, 32), (36 / 0.7, 36 / 0.8, 36 / 2.5))] = 2  # round in mm
    labels[ellipsoid((70, 60, 30), (5, 5, 3))] = 3  # a small lesion
    for value in (1, 2):
        assert len(hull_candidates(labels == value)) > _BRUTE_FORCE_POINTS
    rng = np.random.default_rng(12)
    image = rng.integers(-1000, 1500, shape).astype(np.int16)
    meta = ScanMetadata(source="ct.nii.gz", format="nifti", modality="CT", units="HU")
    volumes = (
        Volume(labels, affine, ScanMetadata(source="seg.nii.gz", format="nifti")),
        Volume(image, affine, meta),
        Volume(labels.copy(order="F"), affine, ScanMetadata(source="ref.nii.gz", format="nifti")),
    )
    settings = ReportSettings()  # distances and diameters on, as the widget starts
    state = measure_report(*volumes, settings)
    _forbid_full_reports(monkeypatch)
    disc = np.add.outer(np.arange(-4, 5) ** 2, np.arange(-4, 5) ** 2) <= 16
    for step in range(6):
        surface = np.argwhere(surface_mask(labels == 1 + step % 2))
        i, j, k = surface[int(rng.integers(len(surface)))]
        start = (max(i - 4, 0), max(j - 4, 0), k)
        box = VoxelBox(start, (start[0] + 9, start[1] + 9, k + 1)).clipped(shape)
        region = labels[box.slices()]
        mask = disc[: region.shape[0], : region.shape[1], None]
        value = int(rng.choice([0, 1, 2]))
        changed = {int(v) for v in np.unique(region[mask])} | {value}
        region[mask] = value
        state = update_report(state, changed, box)
        assert _document(state.report) == _document(_full(*volumes, settings)), f"edit {step}"


def test_build_report_keywords_are_the_report_settings():
    """``build_report``'s keywords and ``ReportSettings`` are one description: same names,
    same defaults, so that neither can drift from the other."""
    import dataclasses
    import inspect

    keywords = {
        name: parameter.default
        for name, parameter in inspect.signature(build_report).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    fields = {field.name: field.default for field in dataclasses.fields(ReportSettings)}
    assert keywords == fields


def test_partial_updates_only_on_views_of_the_edited_arrays(monkeypatch):
    """A float label map or reference is converted (a copy): edits would not show in it."""
    rng = np.random.default_rng(13)
    labels, image, reference = _volumes(rng)
    as_float = Volume(labels.array.astype(np.float32), AFFINE, labels.metadata)
    assert not measure_report(as_float, image).partial
    float_reference = Volume(reference.array.astype(np.float64), AFFINE, reference.metadata)
    assert not measure_report(labels, image, float_reference).partial
    mask = Volume(labels.array == 1, AFFINE, labels.metadata)  # boolean: a uint8 view
    state = measure_report(mask, image, None, ReportSettings(lesions=True))
    assert state.partial
    _forbid_full_reports(monkeypatch)
    for _ in range(5):
        changed, box = _random_edit(rng, mask.array, [False, True])
        state = update_report(state, changed, box)
        assert _document(state.report) == _document(_full(mask, image, None, state.settings))
