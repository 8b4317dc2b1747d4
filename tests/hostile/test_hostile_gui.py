"""The GUI subset of the hostile suite: napari's own ``viewer.open`` on hostile files.

Marked ``gui``: it needs an X display with OpenGL (``xvfb-run`` in CI). The viewer
runs in a runner process of its own (``run_case.py``, entry point ``open``), one viewer
for all cases, so a hang or a crash is caught there like any other run. The cases are
those of :data:`corpus.CASES` with an ``open`` expectation.
"""

from __future__ import annotations

import os

import pytest
from harness import HAS_DISPLAY
from test_hostile import _params, check

pytestmark = [pytest.mark.gui, pytest.mark.hostile]

if not HAS_DISPLAY:
    if os.environ.get("MEDSEG_REQUIRE_GUI") == "1":
        raise pytest.UsageError("MEDSEG_REQUIRE_GUI=1 but there is no display (DISPLAY unset)")
    pytestmark.append(pytest.mark.skip(reason="needs an X display with OpenGL (xvfb-run)"))


@pytest.mark.parametrize(("name", "entry"), _params(gui=True))
def test_hostile_input_in_napari(name, entry, hostile_runs):
    check(name, entry, hostile_runs)
