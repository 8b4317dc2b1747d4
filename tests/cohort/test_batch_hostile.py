"""medseg batch on the hostile-input corpus: every broken scan that ``medseg segment``
refuses lands in ``failures.jsonl`` with the message ``medseg segment`` gives for it (the
corpus's own expectation), and none stops the cohort."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from napari_medseg.cli import main

HOSTILE = Path(__file__).resolve().parents[1] / "hostile"
sys.path.insert(0, str(HOSTILE))

from corpus import CASES, build_corpus  # noqa: E402
from harness import _patterns  # noqa: E402

pytestmark = pytest.mark.slow

#: The corpus's plain ``medseg segment`` command line: the input is what is hostile.
PLAIN_SEGMENT = ["segment", "{input}", "-o", "{out}/labels.nii.gz"]


def _refused_by_segment() -> list[str]:
    """Corpus cases of one small input that ``medseg segment`` must refuse (exit 2)."""
    names = []
    for name, one in CASES.items():
        expect = one.expect.get("segment")
        if expect is None or expect.error is None or expect.ok is not None:
            continue
        if one.timeout_s > 10 or "segment" not in one.expect:
            continue
        names.append(name)
    return names


def test_every_refused_scan_lands_in_failures_with_segments_message(tmp_path, capsys):
    names = _refused_by_segment()
    assert len(names) >= 40  # the corpus's file-level cases
    manifest = build_corpus(tmp_path / "corpus", names)
    rows = []
    for name in names:
        entry = manifest["cases"][name]
        if entry["argv"].get("segment") != PLAIN_SEGMENT:
            continue  # a hazard of segment's own options (its output path...): not batch's
        image = tmp_path / "corpus" / name / entry["input"]
        try:
            str(image).encode("utf-8")
        except UnicodeEncodeError:  # a file name a CSV (text) cannot hold
            continue
        if image.exists():
            rows.append((name, str(image)))
    assert len(rows) >= 40
    listing = tmp_path / "cohort.csv"
    with open(listing, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "image"])
        writer.writerows(rows)

    out = tmp_path / "out"
    code = main(["batch", str(listing), "-o", str(out), "--workers", "0", "--retry", "0"])
    printed = capsys.readouterr()
    failures = {
        item["case_id"]: item
        for item in map(json.loads, (out / "failures.jsonl").read_text().splitlines())
    }
    assert code == 1  # every case failed: the run says so
    assert f"{len(rows)} cases: 0 done, 0 skipped (done before), {len(rows)} failed" in printed.out
    problems = []
    for name, _ in rows:
        failure = failures.get(name)
        if failure is None:
            problems.append(f"{name}: not in failures.jsonl")
            continue
        if failure["kind"] != "bad input":
            problems.append(f"{name}: {failure['kind']}: {failure['error']}")
            continue
        file_name = manifest["cases"][name]["name"]
        for pattern in _patterns(CASES[name].expect["segment"].error, file_name):
            if not pattern.search(failure["error"]):
                problems.append(f"{name}: {failure['error']!r} does not match /{pattern.pattern}/")
    assert problems == []
