"""Label colours that can be told apart: the default models' classes and the defaults
given to classes without a colour."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from napari_medseg.labels.classes import rgb_from_hex
from napari_medseg.labels.colors import MIN_NEIGHBOUR_DELTA_E, complete_colors, delta_e
from napari_medseg.models.spec import ModelSpec

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "src" / "napari_medseg" / "models" / "default"


def test_delta_e_of_known_colours():
    assert delta_e((255, 255, 255), (0, 0, 0)) == pytest.approx(100.0, abs=0.01)
    assert delta_e((255, 0, 0), (255, 0, 0)) == 0.0
    # the default model's old body, liver and right kidney: three near-identical browns
    assert delta_e((221, 130, 101), (185, 102, 83)) < 15


@pytest.mark.parametrize("name", ["phantom-abdomen-3d", "phantom-abdomen-2d"])
def test_default_model_classes_look_different(name):
    spec = ModelSpec.from_json(DEFAULT_DIR / f"{name}.json")
    classes = [c for c in spec.labels if c.value > 0]
    for a, b in itertools.combinations(classes, 2):
        assert delta_e(a.color, b.color) >= MIN_NEIGHBOUR_DELTA_E, (a.name, b.name)


def test_classes_without_a_colour_get_distinct_ones():
    given = {0: ("background", ""), 1: ("liver", "#dc6440"), 4: ("bad", "not a colour")}
    given.update({v: (f"c{v}", "") for v in (2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17)})
    out = complete_colors(given)
    assert list(out) == sorted(given)
    assert out[0] == ("background", "#000000") and out[1] == ("liver", "#dc6440")
    assert {v: n for v, (n, _) in out.items()} == {v: n for v, (n, _) in given.items()}
    rgb = {v: rgb_from_hex(c) for v, (_, c) in out.items()}
    for value, step in itertools.product(range(1, 18), (1, 2)):  # neighbours either side
        if value + step <= 17:
            assert delta_e(rgb[value], rgb[value + step]) >= MIN_NEIGHBOUR_DELTA_E
    assert len({c for v, (_, c) in out.items() if v > 0}) == 17  # no two alike
