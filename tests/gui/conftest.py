"""Fixtures of the GUI suite: a real napari viewer under an X display (Xvfb in CI).

Run with::

    xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest tests/gui

Every test here is marked ``gui``; without a display they are skipped, unless
``MEDSEG_REQUIRE_GUI=1`` (set by ``scripts/test.sh``), where a missing display is an
error rather than a silent skip. Qt's offscreen platform does not work for napari
(no OpenGL context).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARTIFACTS = REPO / "test-artifacts"

_HAS_DISPLAY = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or (
    sys.platform in ("darwin", "win32")
)


def pytest_collection_modifyitems(config, items):
    if not _HAS_DISPLAY and os.environ.get("MEDSEG_REQUIRE_GUI") == "1":
        raise pytest.UsageError("MEDSEG_REQUIRE_GUI=1 but there is no display (DISPLAY unset)")
    skip = pytest.mark.skip(reason="needs an X display with OpenGL (run under xvfb-run)")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.gui)
            if not _HAS_DISPLAY:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_registry():
    """Each test starts with an empty geometry registry."""
    from napari_medseg._napari import geometry_registry

    geometry_registry.clear()
    yield
    geometry_registry.clear()


@pytest.fixture
def notes():
    """Messages of the napari notifications dispatched during the test."""
    from napari.utils.notifications import notification_manager

    messages: list[str] = []

    def _record(event):
        messages.append(str(getattr(event, "message", event)))

    notification_manager.notification_ready.connect(_record)
    yield messages
    notification_manager.notification_ready.disconnect(_record)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A home folder of the test's own: default names of the samples go below it."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for screenshots (gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
