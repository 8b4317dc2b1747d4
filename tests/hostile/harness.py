"""Run the hostile corpus through the entry points, two processes at a time, and judge it.

:func:`run_corpus` gives every entry point its own copy of the corpus (so a run that
writes next to its input cannot disturb another entry point's sources) and runs
``run_case.py`` over it: one process per entry point for the ordinary cases, one
process for all entry points of each case marked ``isolate`` (a fresh process, as a
user's run of it; memory is each run's own peak, see ``run_case.py``). A watchdog
kills a process whose current case runs past its time plus :data:`GRACE_S`, records
that case as a hang, and starts a new process for the pairs left. :func:`judge` turns
one record into the list of what is wrong with it; :func:`describe` into a failure
report.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from corpus import CASES, NAME, Expect

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "run_case.py"

#: Address-space cap of a runner (MB): protects the shared machine from a runaway
#: allocation; far above every bound the judge applies.
MAX_AS_MB = 12 * 1024
#: Extra seconds the watchdog gives a process (start-up, imports) beyond a case's time.
GRACE_S = 30.0

#: Whether napari can open a viewer here (``viewer.open`` needs an X display).
HAS_DISPLAY = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or (
    sys.platform in ("darwin", "win32")
)
#: Text that only a Python traceback prints.
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*File \".*\", line \d+", re.M)
#: A warning printed by Python's warnings module (``path.py:12: RuntimeWarning: ...``).
PY_WARNING = re.compile(r"^\S+\.py:\d+: \w*Warning: ", re.M)
#: Control characters that do not belong in a message (ESC, BEL, ...; not tab or newline).
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# -- running -------------------------------------------------------------------------------
def prepare_tree(corpus: Path, entry: str, runs: Path) -> Path:
    """The entry point's own copy of the corpus: links copied as links, named pipes made
    anew, files hard-linked to each other in the corpus hard-linked in the copy too."""
    tree = runs / entry
    if tree.exists():
        return tree
    copied: dict[tuple[int, int], str] = {}

    def copy(source: str, target: str) -> None:
        info = os.lstat(source)
        if stat.S_ISFIFO(info.st_mode):
            os.mkfifo(target)
        elif info.st_nlink > 1 and (info.st_dev, info.st_ino) in copied:
            os.link(copied[(info.st_dev, info.st_ino)], target)
        else:
            shutil.copy2(source, target)
            copied[(info.st_dev, info.st_ino)] = target

    shutil.copytree(corpus, tree, symlinks=True, copy_function=copy)
    return tree


@dataclass
class Job:
    """``(case, entry)`` pairs for one runner process."""

    pairs: list[tuple[str, str]]
    isolated: bool = False


@dataclass
class _Running:
    job: Job
    process: subprocess.Popen
    results: Path
    log: Path
    offset: int = 0
    current: tuple[str, str] | None = None
    since: float = 0.0
    done: set[tuple[str, str]] = field(default_factory=set)


def _environment(runs: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",  # two runners share two cores
        MKL_NUM_THREADS="1",
        XDG_CACHE_HOME=str(runs / "_cache"),
        MEDSEG_BUNDLE_CACHE=str(runs / "_cache" / "bundles"),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONIOENCODING="utf-8",  # what a UTF-8 terminal gives
    )
    env.pop("PYTHONWARNINGS", None)  # Python's own warning filters, as a user has them
    return env


def _start(job: Job, runs: Path, serial: int) -> _Running:
    logs = runs / "logs"
    label = "isolated" if job.isolated else job.pairs[0][1]
    results = logs / f"{serial:03d}-{label}.jsonl"
    log = logs / f"{serial:03d}-{label}.log"
    command = [
        sys.executable,
        str(RUNNER),
        str(runs),
        str(results),
        *[f"{name}:{entry}" for name, entry in job.pairs],
        "--max-as-mb",
        str(MAX_AS_MB),
    ]
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_environment(runs),
            start_new_session=True,
        )
    return _Running(job, process, results, log, since=time.monotonic())


def _read_events(running: _Running) -> list[dict]:
    if not running.results.exists():
        return []
    with open(running.results, encoding="ascii") as handle:
        handle.seek(running.offset)
        text = handle.read()
    complete = text[: text.rfind("\n") + 1]
    running.offset += len(complete)
    return [json.loads(line) for line in complete.splitlines() if line]


def plan(selection: dict[str, list[str]]) -> list[Job]:
    """The runner processes: one per entry point for the ordinary cases (the longest
    first, so that two workers finish together), one per isolated case."""
    jobs = []
    heavy = ("segment", "reader", "open", "probe")
    for entry in sorted(
        selection, key=lambda e: (e not in heavy, heavy.index(e) if e in heavy else 0)
    ):
        pairs = [(n, entry) for n in selection[entry] if not CASES[n].isolate]
        if pairs:
            jobs.append(Job(pairs))
    isolated = sorted({n for names in selection.values() for n in names if CASES[n].isolate})
    for name in isolated:
        pairs = [(name, entry) for entry in selection if name in selection[entry]]
        jobs.insert(2, Job(pairs, isolated=True))
    return jobs


def run_corpus(
    corpus: Path,
    runs: Path,
    selection: dict[str, list[str]],
    workers: int = 2,
) -> dict[tuple[str, str], dict]:
    """Run the selected cases; ``{(case, entry): record}`` (see ``run_case.py``).

    Parameters
    ----------
    corpus : Path
        A built corpus (``corpus.build_corpus``).
    runs : Path
        Where the entry points' copies (``runs/<entry>``), results and logs go.
    selection : dict
        Entry point -> case names.
    workers : int
        Runner processes at a time.
    """
    (runs / "logs").mkdir(parents=True, exist_ok=True)
    for entry in selection:
        prepare_tree(corpus, entry, runs)
    pending: deque[Job] = deque(plan(selection))
    records: dict[tuple[str, str], dict] = {}
    running: list[_Running] = []
    serial = 0
    while pending or running:
        while pending and len(running) < workers:
            serial += 1
            running.append(_start(pending.popleft(), runs, serial))
        time.sleep(0.05)
        for one in list(running):
            _collect(one, records)
            pid, status, usage = os.wait4(one.process.pid, os.WNOHANG)
            exited = pid != 0
            hung = (
                not exited
                and one.current is not None
                and time.monotonic() - one.since > CASES[one.current[0]].timeout_s + GRACE_S
            )
            if not exited and not hung:
                continue
            if hung:
                os.killpg(one.process.pid, signal.SIGKILL)
                _, status, usage = os.wait4(one.process.pid, 0)
            one.process.returncode = status  # reaped here, not by Popen
            _collect(one, records)
            # Memory is judged by each run's own VmHWM (run_case.py). The rusage of the
            # child is no measure: Linux carries the hiwater mark of the memory a process
            # had before exec into its ru_maxrss, and Popen's vfork/exec starts from this
            # process (inside pytest's whole suite, 1.8 GB), so every child would "peak"
            # at that. It is kept only as a note on runs that died or hung.
            peak_mb = round(usage.ru_maxrss / 1024.0, 1)
            if one.current is not None:
                name, entry = one.current
                records[one.current] = {
                    "event": "done",
                    "case": name,
                    "entry": entry,
                    "rc": "hang" if hung else f"died (wait status {status})",
                    "output": one.log.read_text(errors="backslashreplace")[-3000:],
                    "changed": [],
                    "new_outputs": [],
                    "markers": [],
                    "result": {},
                    "process_peak_rss_mb": None,
                    "process_rusage_maxrss_mb": peak_mb,  # not judged, see above
                }
                one.done.add(one.current)
            left = [pair for pair in one.job.pairs if pair not in one.done]
            if left:
                pending.appendleft(Job(left, one.job.isolated))
            running.remove(one)
    return records


def _collect(one: _Running, records: dict[tuple[str, str], dict]) -> None:
    for event in _read_events(one):
        pair = (event["case"], event["entry"])
        if event["event"] == "start":
            one.current, one.since = pair, time.monotonic()
        else:
            records[pair] = event
            one.done.add(pair)
            one.current = None


# -- judging -------------------------------------------------------------------------------
def _patterns(expect_patterns: tuple[str, ...], name: str) -> list[re.Pattern]:
    return [
        re.compile(p.replace(NAME, re.escape(name)), re.IGNORECASE | re.MULTILINE)
        for p in expect_patterns
    ]


def _slices(entry: str, result: dict) -> int | None:
    """Slices read: info's series table, the K axis of a file, a layer's shortest axis."""
    if entry == "info":
        if result.get("slices"):
            return result["slices"][0]
        return result["shape"][2] if result.get("shape") else None
    if entry in ("reader", "open"):
        layers = result.get("layers") or []
        return min(layers[0]["shape"]) if layers else None
    shape = result.get("shape")
    return shape[2] if shape and len(shape) > 2 else None


def check_numbers(
    numbers: dict, entry: str, record: dict, records: dict[tuple[str, str], dict]
) -> list[str]:
    """What is wrong with the numbers of a successful run (see ``corpus.Expect.numbers``)."""
    result = record.get("result") or {}
    problems = []
    if "unreadable" in result:
        return [f"its result cannot be read: {result['unreadable']}"]
    for key, want in numbers.items():
        if key == "shape":
            got = result.get("shape")
            if got != list(want):
                problems.append(f"shape {got}, expected {list(want)}")
        elif key in ("slices", "max_slices"):
            got = _slices(entry, result)
            if got is None or (got != want if key == "slices" else got > want):
                word = "expected" if key == "slices" else "expected at most"
                problems.append(f"{got} slices read, {word} {want}")
        elif key == "series":
            if result.get("series") != want:
                problems.append(f"{result.get('series')} series listed, expected {want}")
        elif key == "layers":
            got = len(result.get("layers") or [])
            if got != want:
                problems.append(f"{got} layers, expected {want}")
        elif key == "voxels":
            layers = result.get("layers") or []
            got = math.prod(layers[0]["shape"]) if layers else None
            if got != want:
                problems.append(f"{got} voxels in the layer, expected {want}")
        elif key == "finite":
            if result.get("nonfinite"):
                problems.append(f"{result['nonfinite']} non-finite voxels written")
        elif key == "finite_range":
            values = result.get("value_range") or []
            if any(v.lower() in ("nan", "inf", "-inf") for v in values):
                problems.append(f"value range printed as {' .. '.join(values)}")
        elif key == "finite_stats":
            means = [row.get("intensity_mean") for row in result.get("labels", [])]
            if not means or any(not _finite(m) for m in means):
                problems.append(f"intensity means {means}: not all finite numbers")
        elif key == "excluded_min":
            excluded = [row.get("intensity_excluded_voxels") for row in result.get("labels", [])]
            if not excluded or not all(isinstance(n, int) and n >= want for n in excluded):
                problems.append(f"voxels left out of the statistics {excluded}, expected >= {want}")
        elif key == "body_ml":
            body = (result.get("volumes_ml") or {}).get("1")
            if body is None or not want[0] <= body <= want[1]:
                problems.append(f"body {body} mL, expected {want[0]:g}..{want[1]:g} mL")
        elif key == "like":
            problems += _compare_volumes(want, numbers, entry, result, records)
        elif key in ("body_tol", "organ_tol"):
            continue
        elif key == "kept_winner":
            if not result.get("kept_winner"):
                problems.append(
                    f"exit codes {result.get('exit_codes')}: the output that appeared while "
                    "the run wrote was replaced, files of the run were published, or "
                    "temporary files were left"
                    if result.get("caught")
                    else "the run ended before the probe saw its temporary file (no race)"
                )
        elif key == "one_winner":
            if not result.get("one_winner"):
                codes = result.get("exit_codes")
                problems.append(f"exit codes {codes}: not exactly one run wrote the output")
        else:
            problems.append(f"unknown number check {key!r}")
    return problems


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _compare_volumes(
    like: str, numbers: dict, entry: str, result: dict, records: dict[tuple[str, str], dict]
) -> list[str]:
    baseline = records.get((like, entry))
    if not baseline or baseline.get("rc") != 0:
        return [f"the baseline {like} did not run through {entry}"]
    want = baseline["result"].get("volumes_ml", {})
    got = result.get("volumes_ml", {})
    problems = []
    for label, volume in want.items():
        if label == "0":
            continue
        tolerance = numbers.get("body_tol", 0.01) if label == "1" else numbers.get("organ_tol")
        if tolerance is None or (label != "1" and volume < 20.0):
            continue
        actual = got.get(label, 0.0)
        if abs(actual - volume) > tolerance * volume:
            problems.append(
                f"label {label}: {actual:.1f} mL, the clean scan gives {volume:.1f} mL "
                f"(tolerance {tolerance:.0%})"
            )
    return problems


def judge(name: str, entry: str, records: dict[tuple[str, str], dict], manifest: dict) -> list[str]:
    """Everything wrong with how ``entry`` handled case ``name`` (empty: it is right).

    ``manifest`` is the corpus manifest (it names the file at fault of each case).
    """
    one = CASES[name]
    expect: Expect = one.expect[entry]
    record = records.get((name, entry))
    if record is None:
        return ["it did not run"]
    rc, output = record["rc"], record.get("output", "")
    shown = "\n".join([output, *record.get("notes", [])])  # napari shows notifications
    problems = []
    if rc in ("timeout", "hang"):
        problems.append(f"hang: no answer within {one.timeout_s:g} s")
    elif isinstance(rc, str) and rc.startswith("died"):
        problems.append(f"the process {rc}")
    if rc == 1 or TRACEBACK.search(output):
        problems.append("a traceback instead of one clear message")
    accepted = []
    if expect.error is not None:
        accepted.append(2)
    if expect.ok is not None:
        accepted.append(0)
    if expect.none:
        accepted.append("none")
    if rc not in accepted and not problems:
        problems.append(f"exit {rc}, expected {' or '.join(map(str, accepted))}")
    file_name = manifest["cases"][name]["name"]
    if rc == 2 and expect.error is not None:
        for pattern in _patterns(expect.error, file_name):
            if not pattern.search(shown):
                problems.append(f"the message does not match /{pattern.pattern}/")
        if record.get("new_outputs"):
            problems.append(f"an error left files behind: {record['new_outputs']}")
    if rc == 0 and expect.ok is not None:
        for pattern in _patterns(expect.ok, file_name):
            if not pattern.search(shown):
                problems.append(f"the output does not match /{pattern.pattern}/ (no warning)")
        problems += check_numbers(dict(expect.numbers), entry, record, records)
    if record.get("changed"):
        problems.append(f"sources changed: {record['changed']}")
    if record.get("markers"):
        problems.append(f"a payload ran: {record['markers']}")
    peak = max(record.get("peak_rss_mb") or 0.0, record.get("process_peak_rss_mb") or 0.0)
    if peak > one.max_rss_mb:
        problems.append(f"peak memory {peak:.0f} MB > {one.max_rss_mb} MB")
    if CONTROL.search(output):
        problems.append("raw control characters in the output")
    if PY_WARNING.search(output):
        problems.append("a Python warning in the output")
    return problems


def describe(name: str, entry: str, records: dict, problems: list[str]) -> str:
    """A failure report: the problems, the command line and what the user saw."""
    record = records.get((name, entry)) or {}
    argv = " ".join(record.get("argv") or [])
    output = (record.get("output") or "").strip()
    if len(output) > 2500:
        output = output[:1200] + "\n[...]\n" + output[-1200:]
    return (
        f"{name} through {entry}: " + "; ".join(problems) + f"\n  command: {argv}\n"
        f"  exit: {record.get('rc')}  ({record.get('seconds')} s, "
        f"peak {record.get('peak_rss_mb')} MB)\n  output:\n    " + output.replace("\n", "\n    ")
    )


def load_records(runs: Path) -> dict[tuple[str, str], dict]:
    """The records of an earlier run, read back from ``runs/logs`` (for a look by hand).

    Runs the watchdog ended (hang, death) left no record there.
    """
    records = {}
    for path in sorted((Path(runs) / "logs").glob("*.jsonl")):
        for line in path.read_text(encoding="ascii").splitlines():
            event = json.loads(line)
            if event["event"] == "done":
                records[(event["case"], event["entry"])] = event
    return records
