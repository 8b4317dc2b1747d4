"""Run hostile cases through one entry point, one after the other, in this process.

::

    python tests/hostile/run_case.py TREES RESULTS [--max-as-mb N] CASE:ENTRY [...]

``TREES/<entry>`` is the entry point's own copy of the built corpus
(``corpus.build_corpus``; its ``manifest.json`` gives each case's files and command
lines). For every pair this writes two JSON lines to ``RESULTS``, flushed at once:
``{"event": "start", ...}``
before the run, so that a parent which has to kill a hung process knows which case
hung, and ``{"event": "done", ...}`` after it, with:

* ``rc``: the exit status (``medseg`` entry points run in-process through
  ``napari_medseg.cli.main(argv)``; an exception that escapes is printed as Python
  would and counts as 1); for the reader and ``viewer.open``: 0 for layers, 2 for a
  typed error, 1 for any other exception, ``"none"`` when the reader declines;
  ``"timeout"`` when the case ran past its time (a ``SIGALRM`` per case);
* ``output``: everything written to file descriptors 1 and 2 during the run;
* ``peak_rss_mb``: the process' peak resident memory during the run (``VmHWM`` after
  resetting it through ``/proc/self/clear_refs``);
* ``changed``: source files (the case's folder and ``_sources``) whose bytes, link
  target or presence changed; ``new_outputs``: files the run left in its output folder;
  ``markers``: files a malicious payload would have written;
* ``result``: what came out, for the number checks (shape, label volumes, layers...).

Why in-process: starting Python with torch costs 2-3 s, so a process per case and entry
point would not fit the suite's 3 minutes on 2 cores. What an entry point imports is
imported before the first case (:data:`PRELOAD`), so a case's time and memory are its
own. A case marked ``isolate`` gets a process of its own for all its entry points
(``harness.plan``), whose whole-process peak memory the parent measures too; a run
that a signal cannot stop is killed by the parent's watchdog, which records it as a
hang and starts a new process for the pairs left.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import signal
import stat
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

#: Files a malicious payload writes start with this (see ``corpus.MARKER``).
MARKER = "PWNED"


#: The warning filters Python starts with (``run_case`` restores them for every case).
PYTHON_FILTERS = list(warnings.filters)


class CaseTimeout(BaseException):
    """The case ran past its time (a BaseException: ``except Exception`` lets it through)."""


def _on_alarm(signum, frame):
    raise CaseTimeout()


# -- measuring -----------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset the process' peak RSS (``VmHWM``); False where Linux does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory (MB) since the last reset (or since the start)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def snapshot(*folders: Path) -> dict[str, str]:
    """Every entry under ``folders``: file -> sha256, link -> target, FIFO, folder.

    Nothing is followed or opened but regular files, so a FIFO or a link loop in the
    corpus cannot block or recurse.
    """
    found: dict[str, str] = {}
    for folder in folders:
        for top, dirs, files in os.walk(folder, followlinks=False):
            for name in dirs + files:
                path = os.path.join(top, name)
                info = os.lstat(path)
                if os.path.islink(path):
                    found[path] = "link:" + os.readlink(path)
                elif os.path.isdir(path):
                    found[path] = "dir"
                elif stat.S_ISREG(info.st_mode):
                    digest = hashlib.sha256()
                    with open(path, "rb") as handle:
                        for block in iter(lambda: handle.read(1 << 20), b""):
                            digest.update(block)
                    found[path] = digest.hexdigest()
                else:
                    found[path] = f"special:{info.st_mode:o}"
    return found


def changed_sources(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Sources changed or gone (new files are not sources and are allowed)."""
    return sorted(path for path, digest in before.items() if after.get(path) != digest)


def find_markers(tree: Path) -> list[str]:
    """Files named like a payload's marker: anywhere in ``tree``, or at the top of the
    temporary folder (where an archive member ``/tmp/PWNED...`` would land)."""
    hits = [str(p) for p in Path(tempfile.gettempdir()).glob(MARKER + "*")]
    for top, dirs, files in os.walk(tree, followlinks=False):
        hits += [os.path.join(top, n) for n in dirs + files if n.startswith(MARKER)]
    return sorted(hits)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


class Capture:
    """Everything written to file descriptors 1 and 2 (Python, C libraries, logging)."""

    def __enter__(self) -> Capture:
        _flush()
        self.file = tempfile.TemporaryFile()
        self.saved = (os.dup(1), os.dup(2))
        os.dup2(self.file.fileno(), 1)
        os.dup2(self.file.fileno(), 2)
        self.text = ""
        return self

    def __exit__(self, *exc) -> None:
        _flush()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in self.saved:
            os.close(fd)
        self.file.seek(0)
        self.text = self.file.read().decode("utf-8", "backslashreplace")
        self.file.close()


class Notes:
    """napari notifications dispatched meanwhile, as ``"<severity>: <message>"`` lines."""

    def __enter__(self) -> Notes:
        from napari.utils.notifications import notification_manager

        self.lines: list[str] = []
        self.manager = notification_manager
        notification_manager.notification_ready.connect(self._record)
        return self

    def _record(self, event) -> None:
        severity = str(getattr(event, "severity", "")).split(".")[-1].lower() or "note"
        self.lines.append(f"{severity}: {getattr(event, 'message', event)}")

    def __exit__(self, *exc) -> None:
        self.manager.notification_ready.disconnect(self._record)


# -- entry points --------------------------------------------------------------------------
def say(text: str) -> None:
    """Print a line of the runner's own, whatever the text holds.

    Control characters are escaped and lone surrogates replaced, so that only the
    product's own output can fail the judge's checks of them.
    """
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)
    sys.stdout.flush()
    os.write(1, (text + "\n").encode("utf-8", "backslashreplace"))


def run_cli(argv: list[str]) -> int:
    """``medseg ARGV`` in this process; an escaping exception is printed as Python would."""
    from napari_medseg.cli import main

    try:
        return int(main(argv) or 0)
    except SystemExit as stop:  # argparse
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except Exception:
        traceback.print_exc()
        return 1


def _medseg_error(error: BaseException):
    """The typed error in an exception's chain (napari wraps reader errors), or None."""
    from napari_medseg.errors import MedsegError

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, MedsegError):
            return error
        error = error.__cause__ or error.__context__
    return None


def run_reader(path: str) -> tuple[int | str, list]:
    """The npe2 reader: ``get_reader(path)`` then the function it returns."""
    from napari_medseg._napari.reader import get_reader

    try:
        function = get_reader(path)
        if function is None:
            say(f"reader: declined {path!r}")
            return "none", []
        return 0, function(path)
    except Exception as error:
        typed = _medseg_error(error)
        if typed is not None:
            say(f"reader: error: {typed}")
            return 2, []
        traceback.print_exc()
        return 1, []


_VIEWER = None


def run_open(path: str) -> tuple[int | str, list]:
    """napari's ``viewer.open(path, plugin="napari-medseg")`` in one viewer kept open."""
    global _VIEWER
    import napari

    if _VIEWER is None:
        _VIEWER = napari.Viewer(show=False)
    viewer = _VIEWER
    viewer.layers.clear()
    try:
        layers = viewer.open(path, plugin="napari-medseg")
        _process_events()
        return 0, [(layer.data, {"name": layer.name}, layer._type_string) for layer in layers]
    except Exception as error:
        _process_events()
        typed = _medseg_error(error)
        if typed is not None:
            say(f"open: error: {typed}")
            return 2, []
        text = str(error).lower()
        if "refused the file" in text or "no reader" in text or "no plugin" in text:
            say(f"open: declined: {error}")
            return "none", []
        traceback.print_exc()
        return 1, []


def _process_events() -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        app.processEvents()


# -- what came out -------------------------------------------------------------------------
#: The report columns the number checks read.
REPORT_COLUMNS = ("label", "voxels", "volume_ml", "intensity_mean", "intensity_excluded_voxels")


def _option(argv: list[str], *names: str) -> str | None:
    for n, value in enumerate(argv[:-1]):
        if value in names:
            return argv[n + 1]
    return None


def _label_volumes(path: Path) -> dict:
    import nibabel as nib
    import numpy as np

    image = nib.load(path)
    labels = np.asarray(image.dataobj)
    voxel_ml = abs(float(np.linalg.det(image.affine[:3, :3]))) / 1000.0
    counts = np.bincount(labels.astype(np.int64).ravel())
    return {
        "shape": list(labels.shape),
        "volumes_ml": {str(v): round(float(n) * voxel_ml, 4) for v, n in enumerate(counts) if n},
    }


def _nifti_summary(path: Path) -> dict:
    import nibabel as nib
    import numpy as np

    image = nib.load(path)
    data = np.asanyarray(image.dataobj)
    return {
        "shape": list(data.shape),
        "nonfinite": int(data.size - np.count_nonzero(np.isfinite(data))),
    }


def _layers_summary(layers: list) -> list[dict]:
    import numpy as np

    out = []
    for data, meta, kind in layers:
        array = np.asarray(data)
        nonfinite = 0
        if array.dtype.kind == "f":
            nonfinite = int(array.size - np.count_nonzero(np.isfinite(array)))
        out.append(
            {
                "type": kind,
                "shape": list(array.shape),
                "dtype": str(array.dtype),
                "nonfinite": nonfinite,
                "name": str(meta.get("name", "")),
            }
        )
    return out


def summarise(entry: str, argv: list[str], out: Path, output: str, layers: list) -> dict:
    """What the run produced, for the number checks (empty when nothing came out)."""
    result: dict = {}
    if entry == "info":
        shape = re.search(r"shape\s*:\s*(\d+) x (\d+) x (\d+)", output)
        if shape:
            result["shape"] = [int(v) for v in shape.groups()]
        series = re.search(r": (\d+) series", output)
        if series:
            result["series"] = int(series.group(1))
        slices = [int(v) for v in re.findall(r"(\d+) slices of", output)]
        if slices:
            result["slices"] = slices
        values = re.search(r"values\s*:\s*(\S+), (\S+) \.\. (\S+)", output)
        if values:
            result["value_range"] = [values.group(2), values.group(3)]
    elif entry == "convert" and len(argv) > 2 and Path(argv[2]).is_file():
        result = _nifti_summary(Path(argv[2]))
    elif entry == "segment":
        target = _option(argv, "-o", "--output")
        if target and Path(target).is_file():
            result = _label_volumes(Path(target))
    elif entry == "report":
        target = _option(argv, "-o", "--output")
        if target and Path(target).is_file() and target.endswith(".json"):
            rows = json.loads(Path(target).read_text()).get("labels", [])
            result = {"labels": [{k: r.get(k) for k in REPORT_COLUMNS} for r in rows]}
    elif entry in ("reader", "open"):
        result = {"layers": _layers_summary(layers)}
    elif entry == "probe":
        result = dict(layers)  # a probe returns its result in place of layers
    return result


# -- one case ------------------------------------------------------------------------------
def fill(template: str, places: dict[str, str]) -> str:
    """``template`` with its ``{name}`` placeholders replaced (values are not re-read)."""
    return re.sub(r"\{(\w+)\}", lambda m: places[m.group(1)], template)


def run_case(tree: Path, name: str, spec: dict, entry: str) -> dict:
    """Run one case through ``entry``; the ``done`` record (see the module notes)."""
    folder = tree / name
    out = tree / "_out" / name
    out.mkdir(parents=True, exist_ok=True)
    places = {
        "input": os.path.join(folder, spec["input"]),
        "case": str(folder),
        "out": str(out),
        "labels": os.path.normpath(os.path.join(folder, spec["labels"])),
        "root": str(tree),
        **spec["extra"],
    }
    argv = [fill(part, places) for part in spec["argv"][entry]]
    sources = (folder, tree / "_sources")
    before = snapshot(*sources)
    outputs_before = set(snapshot(out))
    # Python's own filters, and every warning shown again, as in a new process
    warnings.filters[:] = PYTHON_FILTERS
    warnings._filters_mutated()
    layers: list = []
    measured = reset_peak_rss()
    started = time.perf_counter()
    rc: int | str
    notes = None
    with Capture() as captured:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, float(spec["timeout_s"]))
        try:
            if entry in ("reader", "open"):
                with Notes() as notes:
                    rc, layers = (run_reader if entry == "reader" else run_open)(argv[0])
            elif entry == "probe":
                from corpus import PROBES

                rc, layers = PROBES[name](folder, out, places)
            else:
                rc = run_cli(argv)
        except CaseTimeout:
            rc = "timeout"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    elapsed = time.perf_counter() - started
    peak = peak_rss_mb() if measured else None
    record = {
        "event": "done",
        "case": name,
        "entry": entry,
        "argv": argv,
        "rc": rc,
        "output": captured.text,
        "notes": notes.lines if notes is not None else [],
        "seconds": round(elapsed, 3),
        "peak_rss_mb": None if peak is None else round(peak, 1),
        "changed": [
            path
            for path in changed_sources(before, snapshot(*sources))
            if os.path.relpath(path, folder) not in spec.get("may_change", ())
        ],
        "new_outputs": sorted(
            path
            for path, kind in snapshot(out).items()
            if path not in outputs_before and kind != "dir"
        ),
        "markers": find_markers(tree),
    }
    try:  # what an error left is not a result (its -o may even name the input)
        record["result"] = summarise(entry, argv, out, captured.text, layers) if rc == 0 else {}
    except Exception as error:  # a result that cannot be read is a finding, not a crash
        record["result"] = {"unreadable": f"{type(error).__name__}: {error}"}
    return record


#: What each entry point imports before its first case, so that no case pays for it
#: (and a case's time and memory are its own).
PRELOAD = {
    "info": ("napari_medseg.cli.entry", "napari_medseg.io.reader", "napari_medseg.io.dicom"),
    "convert": ("napari_medseg.cli.entry", "napari_medseg.io.reader", "napari_medseg.io.nifti"),
    "segment": (
        "napari_medseg.cli.entry",
        "napari_medseg.inference.segmenter",
        "monai.networks.nets",
    ),
    "report": ("napari_medseg.cli.entry", "napari_medseg.measure.report"),
    "mesh": ("napari_medseg.cli.entry", "napari_medseg.labels.mesh", "napari_medseg.io.mesh_files"),
    "prompt": (
        "napari_medseg.cli.entry",
        "napari_medseg.interactive.session",
        "napari_medseg.interactive.backends.seeded",
    ),
    "finetune": (
        "napari_medseg.cli.entry",
        "napari_medseg.training.finetune",
        "napari_medseg.training.data",
        "napari_medseg.inference.segmenter",
        "monai.networks.nets",
        "monai.losses",
        "monai.transforms",
    ),
    "reader": ("napari_medseg._napari.reader", "napari.utils.notifications"),
    "open": ("napari", "napari_medseg._napari.reader"),
    "probe": ("napari_medseg.cli.entry", "napari_medseg.models.zoo", "monai.apps.utils"),
}


def preload(entries: set[str]) -> None:
    """Import what the entry points need, with Python's own warning filters in force."""
    import importlib

    with Capture():  # import-time chatter is nobody's case
        for entry in sorted(entries):
            for module in PRELOAD.get(entry, ()):
                importlib.import_module(module)


def main(argv: list[str] | None = None) -> int:
    """Run ``CASE:ENTRY`` pairs of the corpus copies in ``TREES``, writing ``RESULTS``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", type=Path, help="folder of the entry points' corpus copies")
    parser.add_argument("results", type=Path, help="JSON lines file to append to")
    parser.add_argument("pairs", nargs="+", metavar="CASE:ENTRY")
    parser.add_argument("--max-as-mb", type=int, default=0, help="address-space cap (MB)")
    args = parser.parse_args(argv)
    if args.max_as_mb:  # a guard for the shared machine, far above any bound judged
        limit = args.max_as_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    pairs = [tuple(pair.rsplit(":", 1)) for pair in args.pairs]
    preload({entry for _, entry in pairs})
    manifests: dict[str, dict] = {}
    with open(args.results, "a", encoding="ascii") as results:
        for name, entry in pairs:
            tree = args.trees / entry
            if entry not in manifests:
                manifests[entry] = json.loads((tree / "manifest.json").read_text())
            spec = manifests[entry]["cases"][name]
            results.write(json.dumps({"event": "start", "case": name, "entry": entry}) + "\n")
            results.flush()
            record = run_case(tree, name, spec, entry)
            results.write(json.dumps(record, ensure_ascii=True) + "\n")
            results.flush()
    sys.stdout.flush()
    os._exit(0)  # threads a hostile input left blocked (a FIFO) must not hold the exit


if __name__ == "__main__":
    main()
