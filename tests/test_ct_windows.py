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


def test_dragged_window_maps_as_slicer():
    # gain: the value range over the view's smaller side (3000 HU over 500 px: 6 HU/px)
    drag = window_presets.dragged_window
    kwargs = {"value_range": (-1000.0, 2000.0), "view_pixels": 500}
    assert drag(40, 400, 0, 0, **kwargs) == (40.0, 400.0)
    assert drag(40, 400, 10, 0, **kwargs) == (40.0, 460.0)  # right: wider
    assert drag(40, 400, -10, 0, **kwargs) == (40.0, 340.0)  # left: narrower
    assert drag(40, 400, 0, -10, **kwargs) == (100.0, 400.0)  # up (y down on screen): higher
    assert drag(40, 400, 0, 10, **kwargs) == (-20.0, 400.0)
    assert drag(40, 400, -1000, 0, **kwargs) == (40.0, 6.0)  # at least one step wide
    # the window keeps overlapping the values: centre within [min - w/2, max + w/2]
    assert drag(40, 400, 0, 10_000, **kwargs) == (-1200.0, 400.0)
    assert drag(40, 400, 0, -10_000, **kwargs) == (2200.0, 400.0)
    # a constant image still moves (one unit over the view)
    assert drag(5, 1, 100, 0, value_range=(5.0, 5.0), view_pixels=100) == (5.0, 2.0)
