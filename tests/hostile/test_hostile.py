"""Every hostile case through every entry point (issue 11): the corpus as a test suite.

One test per ``(case, entry point)`` of :data:`corpus.CASES` (napari's ``viewer.open``
is in ``test_hostile_gui.py``). Each asserts what :func:`harness.judge` checks: the
expected exit (2 with a message naming the file, or 0 with the stated warning and the
right numbers), no traceback, no hang, peak memory under the case's bound, sources
byte-identical, no payload run, nothing left behind by an error, no raw control
characters and no Python warning in the output. The runs themselves happen once, in
the session fixture ``hostile_runs`` (``conftest.py``).

Runs that fail today are ``xfail(strict=True)`` from :data:`corpus.KNOWN`: when a fix
lands, its test passes, which fails the suite until the line goes from ``KNOWN``.

Run it::

    python -m pytest tests/hostile                       # all but the GUI subset
    python -m pytest tests/hostile -k nii_huge           # one case, every entry point
    xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest tests/hostile   # with it
    python tests/hostile/corpus.py --table               # what each case expects

About a minute on 2 cores (70 s with the GUI subset, measured on the project machine);
the time is printed at the end.
"""

from __future__ import annotations

import pytest
from corpus import CASES, KNOWN
from harness import describe, judge

pytestmark = pytest.mark.hostile


def _params(gui: bool) -> list:
    params = []
    for name, one in CASES.items():
        for entry in one.expect:
            if (entry == "open") != gui:
                continue
            marks = []
            if (name, entry) in KNOWN:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN[(name, entry)]))
            params.append(pytest.param(name, entry, id=f"{name}-{entry}", marks=marks))
    return params


def check(name: str, entry: str, hostile_runs) -> None:
    """Assert that ``entry`` handled case ``name`` as its expectation says."""
    problems = judge(name, entry, hostile_runs.records, hostile_runs.manifest)
    assert not problems, describe(name, entry, hostile_runs.records, problems)


@pytest.mark.parametrize(("name", "entry"), _params(gui=False))
def test_hostile_input(name, entry, hostile_runs):
    check(name, entry, hostile_runs)


def test_every_case_has_a_documented_builder():
    """Every case says what it is, runs somewhere, and names real entry points."""
    from corpus import ENTRIES

    for name, one in CASES.items():
        assert one.doc, f"{name}: its builder has no docstring"
        assert one.expect, f"{name}: no entry point"
        assert set(one.expect) <= set(ENTRIES), f"{name}: {set(one.expect) - set(ENTRIES)}"
    for name, entry in KNOWN:
        assert entry in CASES[name].expect, f"KNOWN names {name}/{entry}, which is not run"


def test_the_samples_stay_as_committed(hostile_runs):
    """The corpus is built from copies: no run may touch the repository's samples."""
    assert hostile_runs.samples_changed == []
