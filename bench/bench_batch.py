#!/usr/bin/env python
"""Cohort throughput: ``medseg batch`` with 1 and 2 Dask workers against a shell loop.

Usage::

    python bench/bench_batch.py                     # 20 cases, print the table
    python bench/bench_batch.py --write-results     # ... and append it to RESULTS.md
    python bench/bench_batch.py --cases 6 --spacing 1.5 1.5 3.0   # a quicker check

Input: ``--cases`` synthetic abdominal CTs (``make_phantom(seed)`` for seeds 0..N-1, each
its own anatomy, orientation and noise, resampled to ``--spacing`` mm: default
1.5 x 1.5 x 3 mm, about 3-6 M voxels a case; at the drawn 0.6-1 mm spacing, 40-70 M
voxels, a phantom takes about 7 s to draw and a ``medseg segment`` 9 s), written as int16
NIfTI to a temporary folder. The model is the default one (``phantom-abdomen-3d``) on the CPU.

Measured, each end to end (process start to exit) and into a fresh output folder:

* **peer, shell loop**: ``bash -c 'for f in ...; do medseg segment "$f" -o ... &&
  medseg report LABELS --image "$f" -o report.csv --lesions; done'``, so that the loop
  does the same work per case as ``medseg batch`` (labels and a report with lesions);
  each invocation pays the interpreter, torch and model start-up. Default torch threads.
  Peak memory: ``ru_maxrss`` of the bash process from ``os.wait4`` (the largest of its
  reaped children: the biggest ``medseg segment`` or ``medseg report``).
* **medseg batch, 1 worker** (``--workers 1 --threads-per-worker 2``) and **2 workers**
  (``--workers 2 --threads-per-worker 1``): a LocalCluster, its start-up included. Peak
  memory per worker: a thread samples every 0.2 s the RSS and the kernel's high-water mark
  (``VmHWM``) of every process under ``medseg batch``; the workers are the pids that the
  cases' ``done.json`` name. The driver's (``medseg batch`` itself) peak is shown apart.
* for reference, **medseg batch --workers 0**: the cases one after the other in the
  ``medseg batch`` process itself, without Dask (torch's default threads: the option
  ``--threads-per-worker`` is for Dask workers); its peak is that process's.

One untimed ``medseg segment`` runs first so that every method starts with the venv's
files in the page cache. Checked: every case's labels are voxel-identical (and on the same
affine) between the loop and each batch run; the bench fails otherwise. Reported: total
seconds, seconds per case, cases per hour, throughput against the loop, peak RSS; the
per-case stage times from ``done.json``; the warnings ``medseg batch`` printed.
Goal of issue 17: ``medseg batch`` at >= 2x the loop's throughput on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_dicom_load import machine_info  # noqa: E402

MIB = 1024 * 1024
MEDSEG = str(Path(sys.executable).with_name("medseg"))
TITLE = "Cohorts: medseg batch (issue 17)"


def write_cases(folder: Path, count: int, spacing: tuple[float, float, float]) -> list[dict]:
    """``count`` phantoms (seeds 0..count-1) at ``spacing`` as NIfTI; their shapes."""
    import nibabel as nib

    from napari_medseg.synthetic.phantom import make_phantom

    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for seed in range(count):
        phantom = make_phantom(seed, spacing=spacing)
        array = np.asarray(phantom.image.array, dtype=np.int16)
        path = folder / f"ph{seed:02d}.nii.gz"
        nib.save(nib.Nifti1Image(array, phantom.image.affine), path)
        cases.append({"id": path.name[: -len(".nii.gz")], "path": path, "shape": array.shape})
    return cases


class _MemorySampler(threading.Thread):
    """Peak RSS of a process and all its descendants, sampled every ``interval`` s
    (RSS and the kernel's ``VmHWM``, so a peak between two samples is not missed)."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak: dict[int, int] = {}
        self.stop = threading.Event()

    @staticmethod
    def _hwm(pid: int) -> int:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return 0
        match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
        return int(match.group(1)) * 1024 if match else 0

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                value = max(rss, self._hwm(proc.pid))
                self.peak[proc.pid] = max(self.peak.get(proc.pid, 0), value)
            self.stop.wait(self.interval)


def run_measured(cmd: list[str], log: Path, sample: bool = False) -> dict:
    """Run ``cmd``; wall time, ``ru_maxrss`` of it and its reaped children, and (with
    ``sample``) the sampled peak of each process under it."""
    with open(log, "w") as handle:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT)
        sampler = _MemorySampler(proc.pid) if sample else None
        if sampler:
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    if sampler:
        sampler.stop.set()
        sampler.join()
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise RuntimeError(
            f"{shlex.join(cmd)} failed ({code}); see {log}:\n" + log.read_text()[-3000:]
        )
    return {
        "wall_s": wall,
        "maxrss_mib": usage.ru_maxrss * 1024 / MIB,
        "pid": proc.pid,
        "peaks": dict(sampler.peak) if sampler else {},
    }


def run_loop(inputs: Path, out: Path, model: str, log: Path) -> dict:
    """The shell loop of ``medseg segment`` + ``medseg report``, one case at a time."""
    script = (
        'for f in "$1"/*.nii.gz; do id=$(basename "$f" .nii.gz); mkdir -p "$2/$id" && '
        '"$3" segment "$f" -o "$2/$id/labels.nii.gz" --model "$4" && '
        '"$3" report "$2/$id/labels.nii.gz" --image "$f" -o "$2/$id/report.csv" --lesions '
        "|| exit 1; done"
    )
    cmd = ["bash", "-c", script, "loop", str(inputs), str(out), MEDSEG, model]
    result = run_measured(cmd, log)
    result["worker_peaks_mib"] = [result["maxrss_mib"]]
    result["driver_mib"] = None
    # medseg segment's own time (reading excluded): "model NAME on cpu, ...: 0.9 s (network"
    model_s = [
        float(m)
        for m in re.findall(r"^model .*: ([\d.]+) s \(network", log.read_text(), re.MULTILINE)
    ]
    result["segment_s"] = float(np.mean(model_s)) if model_s else float("nan")
    result["command"] = (
        f"for f in IN/*.nii.gz; do medseg segment $f -o OUT/$id/labels.nii.gz "
        f"--model {model} && medseg report ... --lesions; done"
    )
    return result


def run_batch(
    inputs: Path, out: Path, model: str, workers: int, threads: int | None, log: Path
) -> dict:
    """``medseg batch`` with a LocalCluster of ``workers`` processes (0: in its own
    process, without Dask; ``threads`` None: torch's default)."""
    args = ["batch", str(inputs), "-o", str(out), "--model", model, "--workers", str(workers)]
    if threads is not None:
        args += ["--threads-per-worker", str(threads)]
    result = run_measured([MEDSEG, *args], log, sample=True)
    done = [json.loads(path.read_text()) for path in sorted(out.glob("*/done.json"))]
    worker_pids = sorted({d["pid"] for d in done})
    peaks = result["peaks"]
    result["worker_peaks_mib"] = [peaks.get(pid, 0) / MIB for pid in worker_pids]
    result["cases_per_worker"] = [sum(d["pid"] == pid for d in done) for pid in worker_pids]
    result["driver_mib"] = peaks.get(result["pid"], 0) / MIB
    if workers == 0:  # the driver is the worker
        result["worker_peaks_mib"], result["driver_mib"] = [result["driver_mib"]], None
    result["done"] = done
    result["stage_s"] = {
        key: float(np.mean([d["timings_s"][key] for d in done]))
        for key in ("read", "segment", "save_and_measure", "total")
    }
    result["warnings"] = sorted({w for d in done for w in d.get("warnings", [])})
    text = log.read_text()
    result["log_warnings"] = [
        line
        for line in text.splitlines()
        if re.search(r"warn|error|traceback|exception", line, re.IGNORECASE)
    ]
    result["command"] = f"medseg {shlex.join(args[:1] + ['IN', '-o', 'OUT'] + args[4:])}"
    return result


def same_labels(cases: list[dict], a: Path, b: Path) -> list[str]:
    """Case ids whose labels differ (voxels or affine) between output folders a and b."""
    import nibabel as nib

    differ = []
    for case in cases:
        one, two = (nib.load(folder / case["id"] / "labels.nii.gz") for folder in (a, b))
        if not (
            np.array_equal(np.asarray(one.dataobj), np.asarray(two.dataobj))
            and np.allclose(one.affine, two.affine, atol=1e-5)
        ):
            differ.append(case["id"])
    return differ


def report(
    rows: list[dict],
    cases: list[dict],
    spacing,
    info: dict,
    agree: dict,
    argv: list[str],
    load: tuple,
) -> str:
    n = len(cases)
    loop = rows[0]
    voxels = [int(np.prod(c["shape"])) for c in cases]
    lines = [
        f"`python bench/bench_batch.py {' '.join(argv)}`".replace(" `", "`"),
        "",
        f"Machine: {info['cpu']}, {info['cores']}, {info['ram']} RAM. Commit {info['commit']}. "
        f"Load average before / after: {load[0]:.2f} / {load[1]:.2f}.",
        "",
        f"{n} phantom cases (`make_phantom(seed)`, seeds 0-{n - 1}) at "
        f"{spacing[0]:g} x {spacing[1]:g} x {spacing[2]:g} mm, "
        f"{min(voxels) / 1e6:.2f}-{max(voxels) / 1e6:.2f} M voxels "
        f"(mean {np.mean(voxels) / 1e6:.2f} M), int16 NIfTI; model `phantom-abdomen-3d` on "
        "the CPU. Each method end to end into a fresh output folder, one after the other in "
        "one run; the loop runs `medseg segment` then `medseg report --lesions` per case "
        "(the same outputs as batch's labels + report).",
        "",
        "| method | total s | s per case | cases / hour | vs loop | "
        "peak RSS per worker MiB | driver peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        total = row["wall_s"]
        peaks = " / ".join(f"{p:.0f}" for p in row["worker_peaks_mib"])
        driver = "" if row["driver_mib"] is None else f"{row['driver_mib']:.0f}"
        lines.append(
            f"| {row['name']} | {total:.1f} | {total / n:.2f} | {3600 * n / total:.0f} | "
            f"{loop['wall_s'] / total:.2f}x | {peaks} | {driver} |"
        )
    lines += ["", "Commands:", ""]
    lines += [f"- {row['name']}: `{row['command']}`" for row in rows]
    lines += [
        "",
        "Per case inside `medseg batch` (mean of `done.json` `timings_s`, seconds):",
        "",
        "| method | read | segment | save + report | case total | cases per worker |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows[1:]:
        s = row["stage_s"]
        lines.append(
            f"| {row['name']} | {s['read']:.2f} | {s['segment']:.2f} | "
            f"{s['save_and_measure']:.2f} | {s['total']:.2f} | "
            f"{' / '.join(map(str, row['cases_per_worker']))} |"
        )
    lines += [
        "",
        f"In the loop, `medseg segment`'s own time per case (its log's `model ...: N s`, "
        f"network and post-processing, no reading or start-up): {loop['segment_s']:.2f} s "
        f"of {loop['wall_s'] / n:.2f} s per case segmented and reported. In `medseg batch`, "
        "each worker's first case also loads the model (not in `timings_s`).",
    ]
    warned = (
        "; ".join(
            f"{row['name']}: " + ", ".join(row["warnings"] + row["log_warnings"])
            for row in rows[1:]
            if row["warnings"] or row["log_warnings"]
        )
        or "none from `medseg batch` (its log and the cases' `done.json`)"
    )
    # the goal is for the Dask runs (1 and 2 workers); --workers 0 is a reference
    ratios = {row["name"]: loop["wall_s"] / row["wall_s"] for row in rows[1:]}
    dask = [name for name in ratios if "--workers 0" not in name]
    met = min(ratios[name] for name in dask) >= 2
    lines += [
        "",
        "Labels voxel-identical to the loop's (same affine): "
        + "; ".join(
            f"{name}: {n - len(bad)}/{n}" + (f" (differ: {', '.join(bad)})" if bad else "")
            for name, bad in agree.items()
        )
        + ".",
        "",
        "Warnings: " + warned + ".",
        "",
        f"Goal >= 2x the loop's throughput with 1 and 2 Dask workers: "
        f"**{'met' if met else 'not met'}** ("
        + ", ".join(f"{name.removeprefix('medseg batch, ')}: {ratios[name]:.2f}x" for name in dask)
        + "; in-process `--workers 0`: "
        + ", ".join(f"{r:.2f}x" for name, r in ratios.items() if name not in dask)
        + ").",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=20, help="phantom cases (default 20)")
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        default=(1.5, 1.5, 3.0),
        metavar=("SX", "SY", "SZ"),
        help="mm (default 1.5 1.5 3.0)",
    )
    parser.add_argument("--model", default=None, help="default: medseg's default model")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    parser.add_argument("--write-results", action="store_true", help="append to RESULTS.md")
    args = parser.parse_args(argv)
    from napari_medseg.models.registry import DEFAULT_MODEL

    model = args.model or DEFAULT_MODEL
    spacing = tuple(args.spacing)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as scratch:
        work = Path(args.keep) if args.keep else Path(scratch)
        inputs = work / "inputs"
        cases = write_cases(inputs, args.cases, spacing)
        print(f"{len(cases)} cases in {inputs} ({time.perf_counter() - started:.1f} s)", flush=True)
        # warm the page cache (venv, torch, the model's weights): not timed
        subprocess.run(
            [
                MEDSEG,
                "segment",
                str(cases[0]["path"]),
                "-o",
                str(work / "warmup.nii.gz"),
                "--model",
                model,
            ],
            check=True,
            capture_output=True,
        )
        load_before = os.getloadavg()[0]
        rows = []
        loop = run_loop(inputs, work / "out_loop", model, work / "loop.log")
        rows.append({"name": "peer: shell loop (segment + report)", **loop})
        print(f"loop: {loop['wall_s']:.1f} s", flush=True)
        for workers, threads in ((1, 2), (2, 1), (0, None)):
            name = (
                f"medseg batch, {workers} worker{'s' if workers > 1 else ''} x "
                f"{threads} thread{'s' if threads > 1 else ''}"
                if workers
                else "medseg batch --workers 0 (in-process, no Dask)"
            )
            out = work / f"out_batch{workers}"
            result = run_batch(inputs, out, model, workers, threads, work / f"batch{workers}.log")
            got = len(result["done"])
            if got != len(cases):
                raise RuntimeError(
                    f"{name}: {got} of {len(cases)} cases done; see {work / f'batch{workers}.log'}"
                )
            rows.append({"name": name, "out": out, **result})
            print(f"{name}: {result['wall_s']:.1f} s", flush=True)
        load_after = os.getloadavg()[0]
        agree = {
            row["name"].removeprefix("medseg "): same_labels(cases, work / "out_loop", row["out"])
            for row in rows[1:]
        }
        text = report(rows, cases, spacing, machine_info(), agree, argv, (load_before, load_after))
    print(text)
    print(f"bench run time {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.write_results:
        from _results import append_section

        append_section(TITLE, text)
    if any(agree.values()):
        print("labels differ between the loop and medseg batch", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
