"""The hostile suite's own machinery: the judge catches what it must, the runner measures.

These run without the corpus (fast): synthetic records through :func:`harness.judge`,
and the runner's capture, snapshot and placeholder helpers on real files.
"""

from __future__ import annotations

import os
import sys

import pytest
from corpus import CASES, Expect, error, ok
from harness import judge
from run_case import Capture, changed_sources, fill, snapshot

pytestmark = pytest.mark.hostile

MANIFEST = {"cases": {name: {"name": "scan.nii.gz"} for name in CASES}}


def _record(rc, output="", **extra) -> dict:
    return {
        "rc": rc,
        "output": output,
        "notes": [],
        "changed": [],
        "new_outputs": [],
        "markers": [],
        "result": {},
        "peak_rss_mb": 100.0,
        **extra,
    }


@pytest.fixture
def fake_case(monkeypatch):
    """Register a throw-away case with the given expectation; returns its name."""

    def make(expect: Expect, **options) -> str:
        from dataclasses import replace

        base = CASES["nii_empty_gz"]
        monkeypatch.setitem(CASES, "fake", replace(base, expect={"info": expect}, **options))
        return "fake"

    MANIFEST["cases"]["fake"] = {"name": "scan.nii.gz"}
    return make


def _judge(name: str, record: dict, others: dict | None = None) -> list[str]:
    return judge(name, "info", {(name, "info"): record, **(others or {})}, MANIFEST)


def test_a_clear_error_naming_the_file_passes(fake_case):
    name = fake_case(error())
    assert _judge(name, _record(2, "medseg: error: /x/scan.nii.gz: is empty.")) == []


@pytest.mark.parametrize(
    ("record", "complaint"),
    [
        (_record(2, "medseg: error: something is wrong."), "does not match"),
        (_record(1, 'Traceback (most recent call last):\n  File "x.py", line 3'), "traceback"),
        (_record(2, 'medseg: error: scan.nii.gz\n  File "a.py", line 9, in f'), "traceback"),
        (_record("timeout"), "hang"),
        (_record("hang"), "hang"),
        (_record(0, "wrote it"), "exit 0, expected 2"),
        (_record(2, "medseg: error: scan.nii.gz", changed=["/c/scan.nii.gz"]), "sources"),
        (_record(2, "medseg: error: scan.nii.gz", markers=["/c/PWNED-x"]), "payload"),
        (_record(2, "medseg: error: scan.nii.gz", peak_rss_mb=2000.0), "peak memory"),
        (_record(2, "medseg: error: scan.nii.gz", process_peak_rss_mb=1500.0), "peak memory"),
        (_record(2, "medseg: error: scan\x1b[31m.nii.gz"), "control characters"),
        (
            _record(2, "x.py:3: RuntimeWarning: overflow\nmedseg: error: scan.nii.gz"),
            "Python warning",
        ),
        (_record(2, "medseg: error: scan.nii.gz", new_outputs=["/o/l.nii.gz"]), "left files"),
    ],
)
def test_the_judge_catches(fake_case, record, complaint):
    name = fake_case(error())
    problems = _judge(name, record)
    assert any(complaint in p for p in problems), problems


def test_an_ok_run_needs_its_warning_and_numbers(fake_case):
    name = fake_case(ok(r"warning\b.*NaN", shape=(4, 5, 6)))
    good = _record(0, "warning: 1 voxel is NaN", result={"shape": [4, 5, 6]})
    assert _judge(name, good) == []
    silent = _record(0, "wrote it", result={"shape": [4, 5, 6]})
    assert any("no warning" in p for p in _judge(name, silent))
    wrong = _record(0, "warning: 1 voxel is NaN", result={"shape": [4, 5, 7]})
    assert any("shape" in p for p in _judge(name, wrong))


def test_either_accepts_both_outcomes_and_nothing_else(fake_case):
    name = fake_case(error("scan") | ok("warning"))
    assert _judge(name, _record(2, "medseg: error: scan.nii.gz: bad")) == []
    assert _judge(name, _record(0, "warning: kept")) == []
    assert _judge(name, _record("none", "declined"))


def test_volumes_are_compared_with_the_clean_scan(fake_case):
    name = fake_case(ok(like="base", body_tol=0.01, organ_tol=0.05))
    base = _record(0, result={"volumes_ml": {"1": 7000.0, "2": 900.0, "6": 5.0}})
    close = _record(0, result={"volumes_ml": {"1": 7050.0, "2": 880.0, "6": 0.0}})
    assert _judge(name, close, {("base", "info"): base}) == []  # 6 is under 20 mL
    shrunk = _record(0, result={"volumes_ml": {"1": 1205.0, "2": 900.0}})
    problems = _judge(name, shrunk, {("base", "info"): base})
    assert any("label 1: 1205.0 mL" in p for p in problems), problems
    assert any("baseline" in p for p in _judge(name, close))


def test_placeholders_are_filled_once():
    places = {"input": "/c/{out}.nii.gz", "out": "/o"}
    assert fill("{input}", places) == "/c/{out}.nii.gz"  # a name with braces stays a name
    assert fill("{out}/l.nii.gz", places) == "/o/l.nii.gz"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_snapshot_neither_blocks_nor_loops(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"1")
    os.mkfifo(tmp_path / "pipe")
    os.symlink(".", tmp_path / "again")
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    before = snapshot(tmp_path)
    assert before[str(tmp_path / "again")] == "link:."
    assert before[str(tmp_path / "pipe")].startswith("special:")
    (tmp_path / "a.bin").write_bytes(b"2")
    (tmp_path / "new").write_bytes(b"")
    assert changed_sources(before, snapshot(tmp_path)) == [str(tmp_path / "a.bin")]


def test_capture_sees_what_c_code_and_python_write():
    with Capture() as captured:  # (sys.stdout is pytest's here: the originals, as a runner has)
        print("from python", file=sys.__stdout__)
        sys.__stderr__.write("to stderr\n")
        os.write(1, b"from the file descriptor\n")
    assert captured.text.splitlines() == ["from python", "to stderr", "from the file descriptor"]
