"""Names files in and out: ITK-SNAP label descriptions, 3D Slicer colour tables,
FreeSurfer's colour LUT and JSON, read as those tools write them and written so that
they read them (checked against the formats' own field layout)."""

from __future__ import annotations

import json
import shlex

import pytest

from napari_medseg.io.label_names import (
    LabelNamesError,
    names_format_for,
    read_label_classes,
    read_label_names,
    write_label_classes,
)

CLASSES = {
    1: ("liver", "#dc6440"),
    2: ("right kidney", "#b42828"),
    3: ("Couinaud's segment IV", "#00ff00"),
    300: ("tumour", "#ff00ff"),
}

# as ITK-SNAP 4 saves "Label Descriptions" (header lines abridged)
ITKSNAP = """\
################################################
# ITK-SnAP Label Description File
#    IDX:   Zero-based index
#  LABEL:   Label description
################################################
    0     0    0    0        0  0  0    "Clear Label"
    1   255    0    0        1  1  1    "Label 1"
    2     0  255    0        1  1  1    "left kidney"
"""
# lines of FreeSurferColorLUT.txt
FREESURFER = """\
#$Id: FreeSurferColorLUT.txt,v 1.105 2015/07/29 18:30:59 greve Exp $

#No. Label Name:                            R   G   B   A

0   Unknown                                 0   0   0   0
2   Left-Cerebral-White-Matter              245 245 245 0
17  Left-Hippocampus                        220 216 20  0
"""
# a 3D Slicer .ctbl colour table
SLICER = """\
# Color table file /tmp/GenericAnatomyColors.ctbl
# 3 values
0 background 0 0 0 0
1 tissue 128 174 128 255
4 bone 241 214 145 255
"""


@pytest.mark.parametrize(
    "text, expected",
    [
        (ITKSNAP, {0: ("Clear Label", "#000000"), 1: ("Label 1", "#ff0000"),
                   2: ("left kidney", "#00ff00")}),
        (FREESURFER, {0: ("Unknown", "#000000"), 2: ("Left-Cerebral-White-Matter", "#f5f5f5"),
                      17: ("Left-Hippocampus", "#dcd814")}),
        (SLICER, {0: ("background", "#000000"), 1: ("tissue", "#80ae80"),
                  4: ("bone", "#f1d691")}),
    ],
)  # fmt: skip
def test_files_as_the_tools_write_them(text, expected, tmp_path):
    path = tmp_path / "names.txt"
    path.write_text(text)
    assert read_label_classes(path) == expected
    assert read_label_names(path) == {v: n for v, (n, _) in expected.items()}


@pytest.mark.parametrize("fmt", ["itksnap", "slicer", "freesurfer", "json"])
def test_written_files_read_back(fmt, tmp_path):
    path = write_label_classes(tmp_path / f"names.{fmt}", CLASSES, fmt)
    back = read_label_classes(path)
    back.pop(0, None)  # ITK-SNAP files always list the clear label
    spaced = fmt in ("slicer", "freesurfer")
    for value, (name, colour) in CLASSES.items():
        want = "_".join(name.split()) if spaced else name
        assert back[value][0] == want
        assert back[value][1] == ("" if fmt == "json" else colour)
    assert sorted(back) == sorted(CLASSES)


def test_written_fields_follow_each_format(tmp_path):
    itk = write_label_classes(tmp_path / "labels.txt", CLASSES)
    rows = [shlex.split(line) for line in itk.read_text().splitlines() if line[:1] != "#"]
    assert rows[0] == ["0", "0", "0", "0", "0", "0", "0", "Clear Label"]
    assert rows[1] == ["1", "220", "100", "64", "1", "1", "1", "liver"]
    ctbl = write_label_classes(tmp_path / "labels.ctbl", CLASSES)
    rows = [line.split() for line in ctbl.read_text().splitlines() if line[:1] != "#"]
    assert rows[1] == ["2", "right_kidney", "180", "40", "40", "255"]
    lut = write_label_classes(tmp_path / "MyColorLUT.txt", CLASSES)
    rows = [line.split() for line in lut.read_text().splitlines() if line[:1] != "#"]
    assert rows[-1] == ["300", "tumour", "255", "0", "255", "0"]
    plain = write_label_classes(tmp_path / "labels.json", CLASSES)
    assert json.loads(plain.read_text()) == {str(v): n for v, (n, _) in CLASSES.items()}


def test_format_from_the_name_and_refusals(tmp_path):
    names = ("a.json", "a.ctbl", "FreeSurferColorLUT.txt", "a.txt")
    assert [names_format_for(n) for n in names] == ["json", "slicer", "freesurfer", "itksnap"]
    path = write_label_classes(tmp_path / "labels.txt", CLASSES)
    before = path.read_bytes()
    with pytest.raises(LabelNamesError, match="already exists") as caught:
        write_label_classes(path, {1: ("other", "")})
    assert str(path) in str(caught.value) and path.read_bytes() == before
    with pytest.raises(LabelNamesError, match="unknown names format"):
        write_label_classes(tmp_path / "x.txt", CLASSES, "csv")


def test_sidecar_colours_are_read(tmp_path):
    path = tmp_path / "seg.json"
    path.write_text(json.dumps({"labels": {"1": "liver"}, "colors": {"1": [220, 100, 64]}}))
    assert read_label_classes(path) == {1: ("liver", "#dc6440")}
    path.write_text(json.dumps({"labels": {"1": "liver"}, "colors": {"1": "red"}}))
    with pytest.raises(LabelNamesError, match="colour of label 1"):
        read_label_classes(path)
