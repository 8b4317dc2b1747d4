"""CT window presets: the table in the docstring (the cited values) is the one in the code."""

from __future__ import annotations

import re

import pytest

from napari_medseg import window_presets
from napari_medseg.window_presets import CT_WINDOWS, get_preset, window_limits


def test_presets_match_the_documented_table():
    rows = re.findall(r"^(\w+)\s+(-?\d+)\s+(\d+)\s+\S", window_presets.__doc__, re.MULTILINE)
    documented = {name: (float(c), float(w)) for name, c, w in rows if name != "preset"}
    assert documented == {p.name: (p.center, p.width) for p in CT_WINDOWS}


def test_window_limits():
    assert window_limits(40, 80) == (0.0, 80.0)
    assert window_limits(-600, 1500) == (-1350.0, 150.0)
    assert get_preset("Bone").limits == (-500.0, 1300.0)
    assert window_limits(10, 0) == (9.5, 10.5)  # DICOM widths are >= 1


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(KeyError, match="lung"):
        get_preset("kidney")
