#!/usr/bin/env python
"""Load time and peak memory of a 512 x 512 x 300 CT series: napari-medseg vs SimpleITK.

Usage::

    python bench/bench_dicom_load.py                  # print a markdown table
    python bench/bench_dicom_load.py --write-results  # ... and append it to bench/RESULTS.md
    python bench/bench_dicom_load.py --profile        # cProfile of our reader (top 30)

The series is generated once into ``bench/_data/`` (gitignored) and reused: 300
single-frame CT files, Explicit VR Little Endian (uncompressed), 16-bit pixels
holding unsigned 12-bit stored values (BitsStored 12, as most CT scanners write
them) with RescaleIntercept -1024, so both readers return int16 HU; 0.7 mm pixels,
1.25 mm slices; random file names without extension (so neither reader can rely on
name order).

What is measured
----------------
Time (same process, same run): each reader is run once untimed first (this also
pulls the 150 MiB of files into the OS page cache, so every timed run reads from
memory, not disk: these are warm-cache numbers), then the readers alternate for
``--rounds`` rounds; the table gives the median and the minimum.

* ours: ``napari_medseg.io.dicom.index_dicom(folder)`` then
  ``read_dicom_series(series)`` -> ``Volume`` (array (I, J, K), HU).
* SimpleITK: ``ImageSeriesReader`` with ``GetGDCMSeriesFileNames(folder)``,
  ``Execute()``, then ``GetArrayViewFromImage`` (no copy).

Peak memory: each reader runs in a fresh subprocess. The child imports everything,
reads ``ru_maxrss`` (peak resident set size so far) as its baseline, reads the series
once, keeps the array alive and reads ``ru_maxrss`` again. The difference is the
extra peak RSS the read needed, native (C++/GDCM) allocations included, which
``tracemalloc`` would miss. It is reported as a multiple of the final array size
(512 * 512 * 300 * 2 bytes = 150 MiB): 1.0x is the floor (the result itself). As a
cross-check the child also resets the kernel's high-water mark
(``/proc/self/clear_refs``) before the read and reports ``VmHWM`` minus the RSS just
before the read.

Both readers must give identical voxel values and the same geometry (affine to
1e-4 mm); the script asserts it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA_ROOT = HERE / "_data"
RESULTS = HERE / "RESULTS.md"

SHAPE = (512, 512, 300)  # (I, J, K) = (columns, rows, slices)
PIXEL_MM = 0.7
SLICE_MM = 1.25
INTERCEPT = -1024.0
SEED = 20240601
MIB = 1024 * 1024


# ------------------------------------------------------------------------ the data


def data_dir(shape: tuple[int, int, int]) -> Path:
    return DATA_ROOT / f"ct_{shape[0]}x{shape[1]}x{shape[2]}_evrle"


def bench_affine(shape: tuple[int, int, int]) -> np.ndarray:
    """Axial LPS-stored CT centred on the table: voxel -> RAS+ mm."""
    aff = np.diag([-PIXEL_MM, -PIXEL_MM, SLICE_MM, 1.0])
    # LPS position of voxel (0, 0, 0): centre the field of view on x = y = 0
    lps0 = np.array([-(shape[0] - 1) * PIXEL_MM / 2, -(shape[1] - 1) * PIXEL_MM / 2, -600.0])
    aff[:3, 3] = lps0 * np.array([-1.0, -1.0, 1.0])
    return aff


def phantom_hu(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A chest-like int16 HU volume (I, J, K): air, body, lungs, spine, noise."""
    ni, nj, nk = shape
    x = (np.arange(ni) - (ni - 1) / 2) * PIXEL_MM  # towards patient left
    y = (np.arange(nj) - (nj - 1) / 2) * PIXEL_MM  # towards posterior
    xx, yy = np.meshgrid(x, y, indexing="ij")
    out = np.empty(shape, dtype=np.int16)
    for k in range(nk):
        t = k / max(nk - 1, 1)
        plane = np.full((ni, nj), -1000.0)
        body = (xx / 165) ** 2 + ((yy + 10) / 115) ** 2 <= 1
        plane[body] = 40.0
        lung_a, lung_b = 55 + 25 * np.sin(np.pi * t), 80 + 10 * t
        for cx in (-75.0, 75.0):
            plane[((xx - cx) / lung_a) ** 2 + ((yy + 5) / lung_b) ** 2 <= 1] = -850.0
        plane[(xx**2 + (yy - 75) ** 2) <= 18**2] = 700.0  # vertebra
        plane[(xx**2 + (yy + 20) ** 2) <= 14**2] = 180.0  # contrast-filled aorta
        plane += rng.normal(0.0, 15.0, size=plane.shape)
        out[:, :, k] = np.clip(np.rint(plane), -1024, 3071).astype(np.int16)
    return out


def ensure_data(shape: tuple[int, int, int], regen: bool = False) -> Path:
    """Generate the benchmark series if it is missing (or ``regen``); return its folder."""
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from napari_medseg.synthetic.dicom_series import write_dicom_series

    folder = data_dir(shape)
    stamp = folder.with_suffix(".json")
    params = {
        "shape": list(shape),
        "pixel_mm": PIXEL_MM,
        "slice_mm": SLICE_MM,
        "intercept": INTERCEPT,
        "seed": SEED,
        "transfer_syntax": "1.2.840.10008.1.2.1",
        "pixel": "uint12 in 16",
    }
    if not regen and stamp.is_file() and folder.is_dir():
        if json.loads(stamp.read_text()) == params:
            return folder
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    stamp.unlink(missing_ok=True)
    print(f"generating {shape} series into {folder} ...", file=sys.stderr)
    t0 = time.perf_counter()
    rng = np.random.default_rng(SEED)
    hu = phantom_hu(shape, rng)
    stored = (hu.astype(np.int32) - int(INTERCEPT)).astype(np.int16)
    assert stored.min() >= 0 and stored.max() <= 4095
    names: set[str] = set()
    while len(names) < shape[2]:
        names.add(f"{int(rng.integers(0, 2**63)):016x}")
    write_dicom_series(
        stored,
        bench_affine(shape),
        folder,
        modality="CT",
        series_uid=generate_uid(entropy_srcs=["napari-medseg bench", str(SEED), str(shape)]),
        series_description="bench CT 512x512x300",
        rescale_slope=1.0,
        rescale_intercept=INTERCEPT,
        window=(40.0, 400.0),
        transfer_syntax=ExplicitVRLittleEndian,
        file_names=sorted(names),  # random names: name order != slice order
        # unsigned 12-bit stored values (0..4095) + intercept -1024, as most CT scanners
        # write them; the bytes are the same as the int16 the writer would pick
        extra={"PixelRepresentation": 0, "BitsStored": 12, "HighBit": 11},
    )
    stamp.write_text(json.dumps(params))
    print(f"  done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return folder


# --------------------------------------------------------------------- the readers


def read_ours(folder: Path):
    """Returns (array (I, J, K), affine RAS) and the index/read split in seconds."""
    from napari_medseg.io.dicom import index_dicom, read_dicom_series

    t0 = time.perf_counter()
    series = index_dicom(folder)
    t1 = time.perf_counter()
    assert len(series) == 1, f"expected one series, got {len(series)}"
    vol = read_dicom_series(series[0])
    t2 = time.perf_counter()
    return vol, (t1 - t0, t2 - t1)


def read_sitk(folder: Path):
    """Returns (image, array view (K, J, I)); keep the image alive with the view."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    return img, sitk.GetArrayViewFromImage(img)


def sitk_affine_ras(img) -> np.ndarray:
    direction = np.array(img.GetDirection(), dtype=float).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = direction * np.array(img.GetSpacing(), dtype=float)
    aff[:3, 3] = img.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff


# ---------------------------------------------------------------- memory (children)


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _hwm_kib() -> int | None:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(which: str, folder: Path) -> None:
    """Run in a fresh interpreter: import, baseline, read once, report JSON."""
    import pydicom  # noqa: F401
    import SimpleITK  # noqa: F401  (both children import the same modules)

    import napari_medseg.io.dicom  # noqa: F401

    base_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    base_rss = _rss_kib()
    reset = _reset_hwm()
    t0 = time.perf_counter()
    if which == "ours":
        vol, _ = read_ours(folder)
        keep = vol.array
    else:
        img, keep = read_sitk(folder)
    elapsed = time.perf_counter() - t0
    peak_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hwm = _hwm_kib()
    print(
        json.dumps(
            {
                "which": which,
                "nbytes": int(keep.nbytes),
                "dtype": str(keep.dtype),
                "base_maxrss_kib": base_maxrss,
                "peak_maxrss_kib": peak_maxrss,
                "base_rss_kib": base_rss,
                "hwm_kib": hwm if reset else None,
                "seconds": elapsed,
            }
        )
    )


#: Starts the measuring child from a small interpreter. Linux carries a process's
#: peak RSS (ru_maxrss) across exec, so a child spawned directly by this (large)
#: process would start with *our* peak as its ru_maxrss; a grandchild forked from
#: a small launcher starts from the launcher's few MiB instead.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def measure_memory(which: str, folder: Path) -> dict:
    """Peak-memory figures of one read in a fresh interpreter (see the module notes)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", which, str(folder)]
    out = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *cmd], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------- report


def machine_info() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        if dirty:
            commit += " (src/ modified)"
    except (subprocess.CalledProcessError, OSError):
        commit = "uncommitted"
    import pydicom
    import SimpleITK as sitk

    return {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} logical ({usable} usable)",
        "ram": ram,
        "commit": commit,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pydicom": pydicom.__version__,
        "SimpleITK": sitk.Version_VersionString(),
        "sitk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(),
    }


def drop_page_cache() -> bool:
    """Empty the OS page cache so the next read comes from disk (Linux, root only)."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
        return True
    except OSError:
        return False


def cold_times(folder: Path, rounds: int) -> dict[str, list[float]] | None:
    """Alternating reads, each after emptying the page cache; None where that is not allowed."""
    times: dict[str, list[float]] = {"ours": [], "sitk": []}
    for _ in range(rounds):
        for which, reader in (("ours", read_ours), ("sitk", read_sitk)):
            if not drop_page_cache():
                return None
            t0 = time.perf_counter()
            result = reader(folder)
            times[which].append(time.perf_counter() - t0)
            del result
    return times


def run(args: argparse.Namespace) -> str:
    shape = tuple(args.shape)
    folder = ensure_data(shape, regen=args.regen)
    load_before = os.getloadavg()
    n_files = sum(1 for p in folder.iterdir() if p.is_file())
    data_mib = sum(p.stat().st_size for p in folder.iterdir()) / MIB
    array_mib = shape[0] * shape[1] * shape[2] * 2 / MIB

    # correctness first (this is also the untimed warm-up of both readers + page cache)
    vol, _ = read_ours(folder)
    img, view = read_sitk(folder)
    ours_arr = vol.array
    ref = view.T  # (K, J, I) -> (I, J, K), no copy
    assert ours_arr.shape == ref.shape, (ours_arr.shape, ref.shape)
    assert np.array_equal(ours_arr, ref), "voxel values differ between the readers"
    aff_err = float(np.abs(vol.affine - sitk_affine_ras(img)).max())
    assert aff_err <= 1e-4, f"affines differ by {aff_err} mm"
    gen_err = float(np.abs(vol.affine - bench_affine(shape)).max())
    assert gen_err <= 1e-4, f"our affine differs from the written one by {gen_err} mm"
    check = (
        f"identical voxels ({ours_arr.dtype} vs SimpleITK {ref.dtype}, "
        f"{ours_arr.min()}..{ours_arr.max()} HU); affine max |diff| {aff_err:.1e} mm "
        f"(vs written: {gen_err:.1e} mm)"
    )
    del vol, img, view, ours_arr, ref

    times: dict[str, list[float]] = {"ours": [], "sitk": []}
    split: list[tuple[float, float]] = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        v, parts = read_ours(folder)
        times["ours"].append(time.perf_counter() - t0)
        split.append(parts)
        del v
        t0 = time.perf_counter()
        img, view = read_sitk(folder)
        times["sitk"].append(time.perf_counter() - t0)
        del img, view

    cold = cold_times(folder, args.cold_rounds) if args.cold_rounds else None
    load_after = os.getloadavg()
    mem = {w: measure_memory(w, folder) for w in ("ours", "sitk")}
    info = machine_info()

    def med(w: str) -> float:
        return statistics.median(times[w])

    def peak(w: str) -> tuple[float, float | None]:
        m = mem[w]
        d1 = (m["peak_maxrss_kib"] - m["base_maxrss_kib"]) / 1024
        d2 = (m["hwm_kib"] - m["base_rss_kib"]) / 1024 if m["hwm_kib"] else None
        return d1, d2

    lines = []
    lines.append(
        f"Series: {n_files} files, {data_mib:.0f} MiB on disk, Explicit VR Little "
        f"Endian, {shape[0]}x{shape[1]}x{shape[2]} int16, {PIXEL_MM} mm pixels, "
        f"{SLICE_MM} mm slices, RescaleIntercept {INTERCEPT:g}; final array "
        f"{array_mib:.0f} MiB."
    )
    lines.append(
        f"Timing: warm OS page cache (one untimed read of each first), "
        f"{args.rounds} alternating rounds in one process."
    )
    lines.append(f"Check: {check}.")
    lines.append("")
    lines.append(
        "| reader | median s | min s | ratio ours/SimpleITK (median) | "
        "peak RSS delta MiB (ru_maxrss) | peak / array | HWM - RSS before, MiB |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for w, name in (
        ("ours", "napari_medseg index_dicom + read_dicom_series"),
        ("sitk", "SimpleITK ImageSeriesReader (GDCM)"),
    ):
        d1, d2 = peak(w)
        ratio = f"{med('ours') / med('sitk'):.2f}" if w == "ours" else "1.00"
        lines.append(
            f"| {name} | {med(w):.3f} | {min(times[w]):.3f} | {ratio} | "
            f"{d1:.0f} | {d1 / array_mib:.2f}x | "
            f"{'n/a' if d2 is None else f'{d2:.0f}'} |"
        )
    idx = statistics.median(s[0] for s in split)
    rd = statistics.median(s[1] for s in split)
    lines.append("")
    lines.append(
        f"Ours split (median): index_dicom {idx:.3f} s + read_dicom_series {rd:.3f} s. "
        f"All runs, s: ours {', '.join(f'{t:.3f}' for t in times['ours'])}; "
        f"SimpleITK {', '.join(f'{t:.3f}' for t in times['sitk'])}."
    )
    if cold:
        cold_ours, cold_sitk = (statistics.median(cold[w]) for w in ("ours", "sitk"))
        lines.append(
            f"Cold page cache (emptied through /proc/sys/vm/drop_caches before every read, "
            f"{args.cold_rounds} alternating rounds): median ours {cold_ours:.3f} s, "
            f"SimpleITK {cold_sitk:.3f} s, ratio {cold_ours / cold_sitk:.2f}. "
            f"All runs, s: ours {', '.join(f'{t:.3f}' for t in cold['ours'])}; "
            f"SimpleITK {', '.join(f'{t:.3f}' for t in cold['sitk'])}."
        )
    elif args.cold_rounds:
        lines.append("Cold page cache: not measured (emptying the cache needs root on Linux).")
    r = med("ours") / med("sitk")
    p = peak("ours")[0] / array_mib
    lines.append(
        f"Goals: time ratio <= 1.0: {'met' if r <= 1.0 else 'NOT met'} ({r:.2f}); "
        f"peak memory <= 2x array: {'met' if p <= 2.0 else 'NOT met'} ({p:.2f}x)."
    )
    base = ", ".join(
        f"{w} {mem[w]['base_maxrss_kib'] / 1024:.0f} / {mem[w]['base_rss_kib'] / 1024:.0f}"
        for w in ("ours", "sitk")
    )
    lines.append(
        f"Memory children (fresh interpreters, after imports): ru_maxrss / RSS baseline MiB: "
        f"{base} (equal: no peak inherited from the parent). Read times in the children "
        f"(cold interpreter): ours {mem['ours']['seconds']:.2f} s, "
        f"SimpleITK {mem['sitk']['seconds']:.2f} s."
    )
    table = "\n".join(lines)
    header = (
        f"Machine: {info['cpu']}, {info['cores']}, {info['ram']} RAM. "
        f"Commit {info['commit']}. Python {info['python']}, numpy {info['numpy']}, "
        f"pydicom {info['pydicom']}, SimpleITK {info['SimpleITK']} "
        f"({info['sitk_threads']} ITK threads). Load average (1 min) before/after the "
        f"timing: {load_before[0]:.2f} / {load_after[0]:.2f} (other processes compete "
        f"for the cores when it is well above 0)."
    )
    return header + "\n\n" + table


def profile(args: argparse.Namespace) -> None:
    import cProfile
    import pstats

    folder = ensure_data(tuple(args.shape))
    read_ours(folder)  # warm
    prof = cProfile.Profile()
    prof.enable()
    read_ours(folder)
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    pstats.Stats(prof).sort_stats("tottime").print_stats(20)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--_child"]:
        child(argv[1], Path(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per reader")
    parser.add_argument(
        "--cold-rounds",
        type=int,
        default=3,
        help="rounds read from disk after emptying the page cache (Linux, root; 0: skip)",
    )
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=list(SHAPE),
        metavar=("I", "J", "K"),
        help="series size (default 512 512 300)",
    )
    parser.add_argument("--regen", action="store_true", help="regenerate the series")
    parser.add_argument(
        "--write-results",
        action="store_true",
        help=f"append a dated section to {RESULTS.relative_to(REPO)}",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile one read of our reader instead of benchmarking",
    )
    args = parser.parse_args(argv)
    if args.profile:
        profile(args)
        return 0
    text = run(args)
    print(text)
    if args.write_results:
        from _results import append_section

        append_section(
            "DICOM series load",
            f"`python bench/bench_dicom_load.py --rounds {args.rounds}`\n\n{text}",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
