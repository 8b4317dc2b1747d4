"""The hostile suite's set-up: one run of the corpus for all its tests.

Every test module here is marked ``hostile`` (``-m hostile``, ``-m "not hostile"``).
The corpus is built and run once per session (:func:`hostile_runs`), for the ``(case,
entry point)`` pairs of the tests that were selected (``-k``, node ids), so one test
alone runs only its own case. Its time is printed at the end of the session.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from harness import HAS_DISPLAY  # noqa: E402

#: ``config.stash`` key of the selected ``(case, entry)`` pairs.
SELECTED = pytest.StashKey[set]()
#: ``config.stash`` key of the run's duration and size, for the terminal summary.
TIMING = pytest.StashKey[dict]()


def _in_this_folder(item) -> bool:
    return HERE in Path(str(item.fspath)).resolve().parents


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: only what will run
def pytest_collection_modifyitems(config, items):
    selected = set()
    for item in items:
        if not _in_this_folder(item):  # (the modules mark themselves hostile, for -m)
            continue
        params = getattr(item, "callspec", None)
        if params is None or "name" not in params.params:
            continue
        pair = (params.params["name"], params.params["entry"])
        if pair[1] == "open" and not HAS_DISPLAY:  # skipped, see test_hostile_gui.py
            continue
        selected.add(pair)
    config.stash[SELECTED] = selected


@dataclass
class HostileRuns:
    """The corpus' run: its manifest, the records, and the repository's samples.

    Attributes
    ----------
    manifest : dict
        ``corpus.build_corpus``'s manifest.
    records : dict
        ``(case, entry) -> record`` (see ``run_case.py``).
    samples_changed : list of str
        Files of ``sample_scans/`` whose bytes changed during the run (none may).
    """

    manifest: dict
    records: dict
    samples_changed: list[str]


@pytest.fixture(scope="session")
def hostile_runs(request, tmp_path_factory) -> HostileRuns:
    """The selected cases built and run through their entry points (see :class:`HostileRuns`)."""
    from corpus import CASES, SAMPLES, build_corpus
    from harness import run_corpus
    from run_case import changed_sources, snapshot

    samples = snapshot(SAMPLES)
    pairs = set(request.config.stash.get(SELECTED, set()))
    # a case compared with a baseline needs the baseline's run too
    for name, entry in list(pairs):
        like = CASES[name].expect[entry].numbers.get("like")
        if like:
            pairs.add((like, entry))
    root = tmp_path_factory.mktemp("hostile")
    started = time.perf_counter()
    manifest = build_corpus(root / "corpus", sorted({name for name, _ in pairs}))
    built = time.perf_counter()
    selection: dict[str, list[str]] = {}
    for name, entry in sorted(pairs):
        selection.setdefault(entry, []).append(name)
    records = run_corpus(root / "corpus", root / "runs", selection)
    request.config.stash[TIMING] = {
        "build_s": built - started,
        "run_s": time.perf_counter() - built,
        "runs": len(records),
        "cases": len(manifest["cases"]),
        "folder": str(root),
    }
    return HostileRuns(manifest, records, changed_sources(samples, snapshot(SAMPLES)))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    timing = config.stash.get(TIMING, None)
    if timing:
        terminalreporter.write_line(
            f"hostile corpus: {timing['cases']} cases, {timing['runs']} runs; built in "
            f"{timing['build_s']:.1f} s, run in {timing['run_s']:.1f} s ({timing['folder']})"
        )
