"""Class names -> SNOMED CT codes (the published codes, written out here), and the
codes in a DICOM SEG read back with plain pydicom."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from napari_medseg.labels.terminology import structure_code


@pytest.mark.parametrize(
    "name, category, type_, modifier",
    [
        ("liver", "123037004", "10200004", None),
        ("Spleen", "123037004", "78961009", None),
        ("Right kidney", "123037004", "64033007", "24028007"),
        ("kidney_left", "123037004", "64033007", "7771000"),
        ("Left-Lung", "123037004", "39607008", "7771000"),
        ("brain", "123037004", "12738006", None),
        ("liver tumour", "49755003", "108369006", None),
        ("tumor", "49755003", "108369006", None),
        ("lesions", "49755003", "52988006", None),
        ("ribs", "123037004", "113197003", None),
        ("bone", "85756007", "272673000", None),
    ],
)
def test_known_structures_get_their_codes(name, category, type_, modifier):
    code = structure_code(name)
    assert code.known
    assert (code.category[0], code.type[0]) == (category, type_)
    assert (code.modifier[0] if code.modifier else None) == modifier


@pytest.mark.parametrize("name", ["body", "label_7", "liverish", "", "Segment_1"])
def test_other_names_are_tissue(name):
    code = structure_code(name)
    assert not code.known and code.category[0] == code.type[0] == "85756007"


def test_a_dicom_seg_carries_the_codes(tmp_path):
    from dicom_factory import phantom, write_series

    from napari_medseg.io import read_scan
    from napari_medseg.io.dicom_seg import write_dicom_seg
    from napari_medseg.volume import Volume

    written = write_series(tmp_path / "ct", phantom((12, 10, 4)))
    scan = read_scan(written.folder)
    labels = np.zeros(scan.shape, np.uint8)
    labels[2:5, 2:5, 1] = 1
    labels[6:9, 2:5, 2] = 2
    labels[2:5, 6:9, 3] = 3
    classes = {1: ("liver", "#dc6440"), 2: ("right kidney", "#b42828"), 3: ("body", "#aaaaaa")}
    out = tmp_path / "seg.dcm"
    write_dicom_seg(out, Volume(labels, scan.affine, scan.metadata), scan.metadata.files, classes)
    segments = {s.SegmentLabel: s for s in pydicom.dcmread(out).SegmentSequence}
    liver = segments["liver"]
    assert liver.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "123037004"
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    kidney = segments["right kidney"].SegmentedPropertyTypeCodeSequence[0]
    assert kidney.CodeValue == "64033007"
    assert kidney.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "24028007"
    body = segments["body"]
    assert body.SegmentedPropertyTypeCodeSequence[0].CodeValue == "85756007"
    body_type = body.SegmentedPropertyTypeCodeSequence[0]
    assert "SegmentedPropertyTypeModifierCodeSequence" not in body_type
