"""pytest plugin: with ``MEDSEG_REQUIRE_GUI=1`` (set by ``scripts/test.sh``, so in CI) a
test that would skip because a test dependency or test data is missing fails instead.

Without it such tests skip, as they should on a developer's machine without
SimpleITK or pydicom-data; in CI a skip would hide a missing install step. Other
skips (e.g. a check that only makes sense without CUDA) are left alone.
"""

from __future__ import annotations

import os
import re

import pytest

#: The env variable that makes missing pieces fail (the GUI suite's guard, too).
STRICT_ENV = "MEDSEG_REQUIRE_GUI"
#: Skip reasons that mean "something is not installed": ``pytest.importorskip``'s,
#: and the ones tests give for files missing from pydicom-data.
MISSING_PIECE = re.compile(r"could not import|not in pydicom-data")


def _strict() -> bool:
    return os.environ.get(STRICT_ENV) == "1"


def _missing_piece(report) -> str | None:
    """The skip reason when ``report`` skipped for a missing piece, else None."""
    if not report.skipped:
        return None
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason if MISSING_PIECE.search(reason) else None


def _fail(report, reason: str) -> None:
    report.outcome = "failed"
    report.longrepr = (
        f"{reason}\n{STRICT_ENV}=1: a test may not skip because a test dependency or test "
        "data is missing; install it (scripts/test.sh installs the [test] extra)."
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    reason = _missing_piece(report) if _strict() else None
    if reason:
        _fail(report, reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    reason = _missing_piece(report) if _strict() else None
    if reason:
        _fail(report, reason)
