"""The CI guard of ``strict_skips``: a missing test dependency fails instead of skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SAMPLE_TESTS = """
import pytest

def test_needs_a_missing_module():
    pytest.importorskip("medseg_no_such_module_for_the_guard")

def test_needs_missing_data():
    pytest.skip("XYZ.dcm not in pydicom-data")

def test_skips_for_another_reason():
    pytest.skip("this machine has CUDA")
"""

SAMPLE_MODULE = """
import pytest

missing = pytest.importorskip("medseg_no_such_module_for_the_guard")

def test_never_runs():
    pass
"""


def _run(folder: Path, strict: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MEDSEG_REQUIRE_GUI"}
    if strict:
        env["MEDSEG_REQUIRE_GUI"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "strict_skips",
            "-rA",
            "-q",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            str(folder),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
    )
    return result.stdout


def _write(tmp_path: Path) -> Path:
    (tmp_path / "test_sample.py").write_text(SAMPLE_TESTS)
    (tmp_path / "test_sample_module.py").write_text(SAMPLE_MODULE)
    return tmp_path


def test_missing_pieces_fail_under_the_ci_guard(tmp_path):
    out = _run(_write(tmp_path), strict=True)
    assert "FAILED test_sample.py::test_needs_a_missing_module" in out
    assert "FAILED test_sample.py::test_needs_missing_data" in out
    assert "ERROR test_sample_module.py" in out  # the module-level importorskip
    assert "SKIPPED [1] test_sample.py" in out and "this machine has CUDA" in out


def test_missing_pieces_skip_without_the_guard(tmp_path):
    out = _run(_write(tmp_path), strict=False)
    assert "FAILED" not in out and "ERROR" not in out
    assert "4 skipped" in out  # three tests and the module
